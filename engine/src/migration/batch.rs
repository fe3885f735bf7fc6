//! The batches that carry a range from the source shard to the target: bounded, each an rkyv
//! archive of `MigrationBatch` behind a header with its length, crc32 and sequence number.

use crate::keyspace::{Entry, Key};
use crate::shard::segment::SegmentEntry;
use rkyv::rancor;

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
    fn batches_are_bounded() {
        let mut ks = crate::keyspace::Keyspace::new();
        for i in 0..(BATCH_ENTRIES_MAX + 10) {
            ks.load(format!("k{i}").as_bytes(), vec![1], 0);
        }
        let sizes: Vec<usize> =
            batches_of(ks.share_range(0, u128::MAX)).map(|b| b.puts.len()).collect();
        assert_eq!(sizes, vec![BATCH_ENTRIES_MAX, 10]);
    }
}
