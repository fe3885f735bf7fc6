//! Verification: remember what was written to a sample of keys and check every read of them.
//!
//! Every sampled key gets versions from a counter; its value starts with
//! `<version>:<id>:<run>;`, `<run>` a number drawn for each run. The loadgen must be the only
//! writer of its keys during a run; values left by earlier runs or other clients are accepted
//! until the run's first acknowledged write of that key.
//! At most one write per sampled key is in flight at a time (a write that finds another in
//! flight is sent as a GET instead and counted in `converted_writes`), so the server applies
//! a key's writes in version order and the last acknowledged version is the floor that any
//! later read must reach. A read is then:
//! - *wrong* if its value does not parse, names another key, or has a version never issued;
//! - *stale* if its version is below the floor acknowledged before the read was sent;
//! - *missing* if it is nil although a value was acknowledged before the read was sent and no
//!   delete was issued since.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Default number of sampled keys per application.
pub const VERIFY_KEYS_DEFAULT: u64 = 10_000;
/// The most sampled keys per application (memory: 33 bytes a key).
pub const VERIFY_KEYS_MAX: u64 = 16 << 20;
/// A state word meaning "unknown" (a write's outcome was lost with its connection).
const UNKNOWN: u64 = u64::MAX;

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyCounts {
    pub checked: u64,
    pub wrong: u64,
    pub missing: u64,
    pub stale: u64,
    pub converted_writes: u64,
}

impl VerifyCounts {
    pub fn add(&mut self, o: &VerifyCounts) {
        self.checked += o.checked;
        self.wrong += o.wrong;
        self.missing += o.missing;
        self.stale += o.stale;
        self.converted_writes += o.converted_writes;
    }

    pub fn failures(&self) -> u64 {
        self.wrong + self.missing + self.stale
    }
}

pub struct VerifyTable {
    /// Tags this run's values.
    run: u64,
    stride: u64,
    slots: u64,
    /// `version << 1 | is_delete` of the last acknowledged write, 0 if none, UNKNOWN.
    acked: Vec<AtomicU64>,
    /// Versions handed out (the highest issued).
    issued: Vec<AtomicU64>,
    /// Highest version issued for a delete.
    del_issued: Vec<AtomicU64>,
    writing: Vec<AtomicBool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Acked,
    Rejected,
    Lost,
}

/// What a read must be checked against, captured when it is sent.
#[derive(Clone, Copy, Debug)]
pub struct Floor(u64);

pub enum ReadResult<'a> {
    Value(&'a [u8]),
    Nil,
}

impl VerifyTable {
    /// Samples every `stride`-th key id, `stride` chosen so at most `keys_max` keys of
    /// `keyspace` are sampled; `extra` leaves room for inserted keys.
    pub fn new(keyspace: u64, extra: u64, keys_max: u64, run: u64) -> VerifyTable {
        let keys_max = keys_max.clamp(1, VERIFY_KEYS_MAX);
        let stride = keyspace.div_ceil(keys_max).max(1);
        let slots = ((keyspace + extra).div_ceil(stride)).min(keys_max);
        let mk = |n| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        VerifyTable {
            run,
            stride,
            slots,
            acked: mk(slots),
            issued: mk(slots),
            del_issued: mk(slots),
            writing: (0..slots).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    #[inline]
    pub fn slot(&self, id: u64) -> Option<u32> {
        if id.is_multiple_of(self.stride) && id / self.stride < self.slots {
            Some((id / self.stride) as u32)
        } else {
            None
        }
    }

    pub fn sampled_keys(&self) -> u64 {
        self.slots
    }

    /// Claims the right to write slot `s`: the version to write, or None if a write is in
    /// flight.
    #[inline]
    pub fn begin_write(&self, s: u32, delete: bool) -> Option<u64> {
        let s = s as usize;
        if self.writing[s].swap(true, Ordering::AcqRel) {
            return None;
        }
        let v = self.issued[s].fetch_add(1, Ordering::AcqRel) + 1;
        if delete {
            self.del_issued[s].fetch_max(v, Ordering::AcqRel);
        }
        Some(v)
    }

    /// The write of version `v` ended with `outcome`.
    #[inline]
    pub fn end_write(&self, s: u32, v: u64, delete: bool, outcome: WriteOutcome) {
        let s = s as usize;
        match outcome {
            WriteOutcome::Acked => {
                let _ = self.acked[s].fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                    (cur != UNKNOWN).then_some((v << 1) | delete as u64)
                });
            }
            // An error reply applied nothing.
            WriteOutcome::Rejected => {}
            // Its connection was lost: it may or may not have been applied.
            WriteOutcome::Lost => self.acked[s].store(UNKNOWN, Ordering::Release),
        }
        self.writing[s].store(false, Ordering::Release);
    }

    #[inline]
    pub fn floor(&self, s: u32) -> Floor {
        Floor(self.acked[s as usize].load(Ordering::Acquire))
    }

    /// Checks a read of key `id` (slot `s`) sent with `floor`.
    pub fn check(&self, s: u32, id: u64, floor: Floor, r: ReadResult<'_>, c: &mut VerifyCounts) {
        if floor.0 == UNKNOWN || self.acked[s as usize].load(Ordering::Acquire) == UNKNOWN {
            return;
        }
        c.checked += 1;
        let (fv, fdel) = (floor.0 >> 1, floor.0 & 1 == 1);
        match r {
            ReadResult::Nil => {
                let del_since = self.del_issued[s as usize].load(Ordering::Acquire) > fv;
                if !(fv == 0 || fdel || del_since) {
                    c.missing += 1;
                }
            }
            ReadResult::Value(v) => match parse_header(v) {
                Some((ver, vid, run)) if vid == id && run == self.run => {
                    if ver > self.issued[s as usize].load(Ordering::Acquire) {
                        c.wrong += 1;
                    } else if ver < fv {
                        c.stale += 1;
                    }
                }
                // Not this run's value for this key: data from before the run is fine until
                // the run's first acknowledged write.
                _ if fv == 0 => c.checked -= 1,
                _ => c.wrong += 1,
            },
        }
    }

    pub fn run_tag(&self) -> u64 {
        self.run
    }
}

/// Writes the value header for (`version`, `id`, `run`) into `buf`; returns its length.
#[inline]
pub fn header(version: u64, id: u64, run: u64, buf: &mut [u8; HEADER_BYTES_MAX]) -> usize {
    let mut n = 0;
    for (v, sep) in [(version, b':'), (id, b':'), (run, b';')] {
        let mut a = [0u8; 20];
        let digits = crate::resp::itoa(v, &mut a);
        buf[n..n + digits.len()].copy_from_slice(digits);
        n += digits.len();
        buf[n] = sep;
        n += 1;
    }
    n
}

/// The longest header: three 20-digit numbers and their separators.
pub const HEADER_BYTES_MAX: usize = 64;

fn parse_header(v: &[u8]) -> Option<(u64, u64, u64)> {
    let end = v.iter().take(HEADER_BYTES_MAX).position(|&b| b == b';')?;
    let mut parts = v[..end].split(|&b| b == b':');
    let mut num = || -> Option<u64> {
        let s = parts.next()?;
        if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let r = (num()?, num()?, num()?);
    parts.next().is_none().then_some(r)
}
