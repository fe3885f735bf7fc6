//! The data plane of a migration (split or merge), independent of cores and channels:
//! what the source records while a range moves, the checksummed rkyv batches that carry the
//! range to the target, and the gate that holds requests during the cutover.
//!
//! A migration of range R from shard S to shard T (DESIGN.md section 4):
//! 1. `Shard::begin_outgoing(R)` marks R on S and, in the same step, shares R's entries (a
//!    consistent cut: every later write to R is recorded as a dirty key).
//! 2. The entries go to T in bounded batches (`BATCH_BYTES_TARGET`, `BATCH_ENTRIES_MAX`), each
//!    with a crc; T checks and applies them through its log (`Shard::apply_batch`).
//! 3. Dirty keys go as delta batches (their current value, or a delete) until few remain; then
//!    S pauses R (`Shard::pause_outgoing`), sends the last delta, and T makes everything
//!    durable. The map's epoch advances; paused requests are routed again, to T.
//!
//! Invariant: batches are applied in the order they were taken, and every delta is taken after
//! the entries it may overwrite, so T ends with exactly S's state of R at the pause.

use crate::keyspace::{Entry, Key};
use crate::shard::segment::SegmentEntry;
use rkyv::rancor;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::task::{Poll, Waker};

pub const BATCH_MAGIC: &[u8; 8] = b"SCMIG001";
/// magic | u32 payload_len | u32 crc32(payload) | u64 sequence number
pub const BATCH_HEADER_LEN: usize = 24;
/// A batch is closed once its entries hold this many bytes of keys and values. Small enough
/// that applying one (synchronous on the target) delays client requests there by well under
/// a millisecond or two.
pub const BATCH_BYTES_TARGET: usize = 256 * 1024;
/// And after this many entries, whichever comes first.
pub const BATCH_ENTRIES_MAX: usize = 1024;
/// The decoder refuses a batch larger than this (one 512 MiB value still fits).
pub const BATCH_PAYLOAD_LEN_MAX: usize = 600 * 1024 * 1024;
/// Delta rounds before the cutover is forced even if writes keep dirtying keys.
pub const DELTA_ROUNDS_MAX: usize = 16;
/// The cutover starts once at most this many keys are dirty.
pub const DELTA_CUTOVER_KEYS: usize = 256;

/// One batch of a migration: values to put, keys to delete, and whether to first empty the
/// range (a FLUSHALL happened on the source while the range was moving).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Default, Clone, PartialEq)]
pub struct MigrationBatch {
    pub clear_range: bool,
    pub puts: Vec<SegmentEntry>,
    pub deletes: Vec<Vec<u8>>,
}

impl MigrationBatch {
    pub fn is_empty(&self) -> bool {
        !self.clear_range && self.puts.is_empty() && self.deletes.is_empty()
    }

    /// Bytes of keys and values carried.
    pub fn payload_bytes(&self) -> usize {
        self.puts.iter().map(|e| e.key.len() + e.value.len()).sum::<usize>()
            + self.deletes.iter().map(Vec::len).sum::<usize>()
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    Malformed(String),
    Checksum { expected: u32, got: u32 },
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Malformed(r) => write!(f, "malformed migration batch: {r}"),
            BatchError::Checksum { expected, got } => write!(
                f,
                "migration batch checksum mismatch: stored {expected:#010x}, computed {got:#010x}"
            ),
        }
    }
}

/// The bytes of a batch as they travel.
pub fn encode_batch(seq: u64, batch: &MigrationBatch) -> Vec<u8> {
    let payload = rkyv::to_bytes::<rancor::Error>(batch).expect("rkyv serialization into memory");
    assert!(payload.len() <= BATCH_PAYLOAD_LEN_MAX);
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + payload.len());
    out.extend_from_slice(BATCH_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Checks a batch's framing and crc and returns its sequence number and content.
pub fn decode_batch(bytes: &[u8]) -> Result<(u64, MigrationBatch), BatchError> {
    if bytes.len() < BATCH_HEADER_LEN || &bytes[0..8] != BATCH_MAGIC {
        return Err(BatchError::Malformed("bad magic or short header".into()));
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    if len > BATCH_PAYLOAD_LEN_MAX || bytes.len() != BATCH_HEADER_LEN + len {
        return Err(BatchError::Malformed(format!("payload length {len} does not match")));
    }
    let payload = &bytes[BATCH_HEADER_LEN..];
    let expected = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let got = crc32fast::hash(payload);
    if expected != got {
        return Err(BatchError::Checksum { expected, got });
    }
    let seq = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let batch = rkyv::from_bytes::<MigrationBatch, rancor::Error>(&aligned)
        .map_err(|e| BatchError::Malformed(format!("invalid payload: {e}")))?;
    Ok((seq, batch))
}

/// Cuts shared entries into bounded batches, in order.
pub fn batches_of(entries: Vec<(Key, Entry)>) -> impl Iterator<Item = MigrationBatch> {
    let mut iter = entries.into_iter().peekable();
    std::iter::from_fn(move || {
        iter.peek()?;
        let mut batch = MigrationBatch::default();
        let mut bytes = 0;
        for (key, entry) in iter.by_ref() {
            bytes += key.len() + entry.value.len();
            batch.puts.push(SegmentEntry {
                key: key.to_vec(),
                value: entry.value.to_vec(),
                expire_at_ms: entry.expire_at_ms,
            });
            if batch.puts.len() >= BATCH_ENTRIES_MAX || bytes >= BATCH_BYTES_TARGET {
                break;
            }
        }
        Some(batch)
    })
}

/// What a source shard records about the range it is giving away.
#[derive(Debug)]
pub struct Outgoing {
    pub lo: u64,
    pub hi: u64,
    /// Keys of the range written since the cut.
    pub dirty: HashSet<Key, ahash::RandomState>,
    /// The whole keyspace was cleared since the cut.
    pub cleared: bool,
    /// Set during the cutover: requests for the range wait on it.
    pub paused: Option<Rc<Gate>>,
    pub paused_at: Option<std::time::Instant>,
}

impl Outgoing {
    pub fn new(lo: u64, hi: u64) -> Self {
        Outgoing {
            lo,
            hi,
            dirty: HashSet::default(),
            cleared: false,
            paused: None,
            paused_at: None,
        }
    }

    pub fn contains(&self, position: u64) -> bool {
        (self.lo..=self.hi).contains(&position)
    }
}

/// A one-shot gate: tasks wait until it opens (at the end of a cutover, committed or not).
#[derive(Debug, Default)]
pub struct Gate {
    open: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    pub fn open(&self) {
        self.open.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.get()
    }

    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.open.get() {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Per-shard access counts over hash buckets of its range, to cut a split at the load median.
#[derive(Debug, Clone)]
pub struct AccessHistogram {
    lo: u64,
    /// Width of one bucket.
    scale: u64,
    counts: Box<[u64; ACCESS_BUCKETS]>,
}

/// Buckets of the access histogram.
pub const ACCESS_BUCKETS: usize = 256;
/// Fewer accesses than this say nothing about where the load is: cut at the midpoint.
pub const SPLIT_SAMPLES_MIN: u64 = 256;

impl AccessHistogram {
    pub fn new(lo: u64, hi: u64) -> Self {
        let scale = (hi - lo) / ACCESS_BUCKETS as u64 + 1;
        AccessHistogram { lo, scale, counts: Box::new([0; ACCESS_BUCKETS]) }
    }

    #[inline]
    pub fn record(&mut self, position: u64) {
        let b = (position.wrapping_sub(self.lo) / self.scale) as usize;
        self.counts[b.min(ACCESS_BUCKETS - 1)] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Where to cut `lo..=hi` so each side gets about half the accesses: the bucket boundary
    /// nearest the median, or the midpoint when nothing was counted. Always in `lo+1..=hi`;
    /// `None` if the range is a single position.
    pub fn split_point(&self, lo: u64, hi: u64) -> Option<u64> {
        if lo >= hi {
            return None;
        }
        let total = self.total();
        let cut = if total < SPLIT_SAMPLES_MIN {
            lo + (hi - lo) / 2 + 1
        } else {
            // The boundary with the least imbalance; among equals, the one nearest the middle.
            let mut left = 0u64;
            let mut best = ((u64::MAX, usize::MAX), 1usize);
            for k in 1..ACCESS_BUCKETS {
                left += self.counts[k - 1];
                let score = ((2 * left).abs_diff(total), k.abs_diff(ACCESS_BUCKETS / 2));
                if score < best.0 {
                    best = (score, k);
                }
            }
            lo.saturating_add(best.1 as u64 * self.scale)
        };
        Some(cut.clamp(lo + 1, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip_and_damage() {
        let batch = MigrationBatch {
            clear_range: true,
            puts: vec![SegmentEntry { key: b"k".to_vec(), value: b"v".to_vec(), expire_at_ms: 7 }],
            deletes: vec![b"d".to_vec()],
        };
        let bytes = encode_batch(3, &batch);
        assert_eq!(decode_batch(&bytes).unwrap(), (3, batch));
        for i in [0, 9, 13, BATCH_HEADER_LEN + 1, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode_batch(&bad).is_err(), "flipped byte {i} accepted");
        }
        assert!(decode_batch(&bytes[..bytes.len() - 1]).is_err());
    }

    /// Random damage is refused with an error, never a panic (the decoder validates the
    /// archive before reading it).
    #[test]
    fn damaged_batches_never_panic() {
        let mut rng = crate::testing::SplitMix64::new(0x5eed);
        let batch = MigrationBatch {
            clear_range: false,
            puts: (0..20)
                .map(|i| SegmentEntry {
                    key: format!("k{i}").into_bytes(),
                    value: vec![i as u8; i],
                    expire_at_ms: i as u64,
                })
                .collect(),
            deletes: vec![b"gone".to_vec()],
        };
        let good = encode_batch(0, &batch);
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            let i = rng.below(bytes.len() as u64) as usize;
            if rng.chance(1, 2) {
                bytes[i] ^= 1 << rng.below(8);
                // Keep the crc right half of the time, so the archive validation is reached.
                if rng.chance(1, 2) && bytes.len() > BATCH_HEADER_LEN {
                    let crc = crc32fast::hash(&bytes[BATCH_HEADER_LEN..]);
                    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
                }
            } else {
                bytes.truncate(i);
            }
            let _ = decode_batch(&bytes);
        }
    }

    #[test]
    fn split_point_follows_the_load() {
        let mut h = AccessHistogram::new(0, u64::MAX);
        assert_eq!(h.split_point(0, u64::MAX), Some(u64::MAX / 2 + 1));
        // All accesses in the lowest eighth: the cut moves down with them.
        h.record(1);
        assert_eq!(h.split_point(0, u64::MAX), Some(u64::MAX / 2 + 1), "one sample is no signal");
        for i in 0..1000u64 {
            h.record(i * (u64::MAX / 8 / 1000));
        }
        let cut = h.split_point(0, u64::MAX).unwrap();
        assert!(cut < u64::MAX / 8, "cut {cut:#x}");
        assert!(cut > 0);
        assert_eq!(AccessHistogram::new(5, 5).split_point(5, 5), None);
        assert_eq!(AccessHistogram::new(5, 6).split_point(5, 6), Some(6));
    }

    #[test]
    fn batches_are_bounded() {
        let mut ks = crate::keyspace::Keyspace::new();
        for i in 0..(BATCH_ENTRIES_MAX + 10) {
            ks.load(format!("k{i}").as_bytes(), vec![1], 0);
        }
        let sizes: Vec<usize> = batches_of(ks.share_all()).map(|b| b.puts.len()).collect();
        assert_eq!(sizes, vec![BATCH_ENTRIES_MAX, 10]);
    }
}
