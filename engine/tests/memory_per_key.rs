//! What a key really costs in memory, against what `used_memory` charges for it.
//!
//! `maxmemory` bounds `used_memory`, the sum of `entry_cost` (key + value +
//! `ENTRY_OVERHEAD_BYTES`). For the limit to mean something, the constant must match the heap
//! the keyspace really takes per entry: its hash-table slot, the key's and the value's
//! allocations, the position index and the sampling array. This test counts every allocation
//! as glibc's malloc charges it (the request plus an 8-byte header, rounded up to 16, at least
//! 32) while a keyspace fills, and checks the constant against the measured overhead.
//! Run with `--nocapture` to see the figures.

use shardcast_engine::keyspace::{Keyspace, NoLog, SetOptions, ENTRY_OVERHEAD_BYTES};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

struct Counting;

static HEAP: AtomicI64 = AtomicI64::new(0);

/// What glibc's malloc takes for a request of `size` bytes.
fn chunk(size: usize) -> i64 {
    (size + 8).div_ceil(16).max(2) as i64 * 16
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
#[expect(unsafe_code, reason = "a global allocator is an unsafe trait; it only counts")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn entry_overhead_matches_the_measured_heap() {
    const VALUE_LEN: usize = 100;
    let mut ks = Keyspace::new();
    let start = HEAP.load(Ordering::Relaxed);
    let mut overheads = Vec::new();
    let mut n = 0usize;
    // Hash tables and arrays grow in doublings: measure at several fill levels between two
    // doublings and average, as a keyspace of any size sits somewhere in between.
    for target in [140_000usize, 170_000, 200_000, 230_000, 262_000] {
        while n < target {
            let key = format!("user:{n}");
            ks.set(key.as_bytes(), vec![b'v'; VALUE_LEN], SetOptions::PLAIN, 0, &mut NoLog)
                .unwrap();
            n += 1;
        }
        let heap = (HEAP.load(Ordering::Relaxed) - start) as f64 / n as f64;
        let payload = ks.used_bytes() as f64 / n as f64 - ENTRY_OVERHEAD_BYTES as f64;
        let overhead = heap - payload;
        eprintln!("{n} keys: {heap:.0} bytes of heap per key, {overhead:.0} beyond key and value");
        overheads.push(overhead);
    }
    let mean = overheads.iter().sum::<f64>() / overheads.len() as f64;
    eprintln!("mean overhead {mean:.0} bytes; ENTRY_OVERHEAD_BYTES is {ENTRY_OVERHEAD_BYTES}");
    let charged = ENTRY_OVERHEAD_BYTES as f64;
    assert!(
        (charged - mean).abs() <= mean * 0.15,
        "ENTRY_OVERHEAD_BYTES ({charged}) is more than 15% off the measured {mean:.0}"
    );
}
