//! Snapshot segments: a shard's keyspace at one LSN, as a series of checksummed rkyv chunks.
//!
//! Pure encoding and decoding; the shard writes the bytes through the storage seam. A migration
//! batch (`migration::batch`) carries the same `SegmentEntry` values in its own framing (one
//! rkyv archive of a `MigrationBatch` behind a magic, length, crc32 and sequence number), not
//! these chunks. Layout in `docs/format.md`:
//! ```text
//! header  32 B : magic "SCSEG001" | u32 version | u32 header crc | u64 lsn | u64 reserved
//! chunk*       : u32 payload_len | u32 crc32(payload) | u64 entries | payload (rkyv) | pad to 16
//! footer  40 B : magic "SCSEGEND" | u64 lsn | u64 chunks | u64 entries | u32 crc | u32 zero
//! zero padding to the file's alignment
//! ```

use rkyv::rancor;

pub const SEGMENT_MAGIC: &[u8; 8] = b"SCSEG001";
pub const SEGMENT_FOOTER_MAGIC: &[u8; 8] = b"SCSEGEND";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: usize = 32;
pub const SEGMENT_FOOTER_LEN: usize = 40;
pub const CHUNK_HEADER_LEN: usize = 16;
/// A chunk is closed once its entries hold this many bytes of keys and values.
pub const CHUNK_BYTES_TARGET: usize = 1024 * 1024;
/// And after this many entries, whichever comes first.
pub const CHUNK_ENTRIES_MAX: usize = 8192;
/// The decoder refuses a chunk larger than this (a single 512 MiB value still fits).
pub const CHUNK_PAYLOAD_LEN_MAX: usize = 600 * 1024 * 1024;

const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(16) && CHUNK_HEADER_LEN.is_multiple_of(16));

/// One key as stored in a segment.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Absolute expiry in ms since the Unix epoch; 0 = none.
    pub expire_at_ms: u64,
}

/// The archived body of one chunk.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Default)]
pub struct Chunk {
    pub entries: Vec<SegmentEntry>,
}

/// Why a segment could not be decoded; `offset` is from the start of the segment bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentError {
    BadMagic { offset: u64 },
    Checksum { offset: u64, expected: u32, got: u32 },
    Truncated { offset: u64 },
    Malformed { offset: u64, reason: String },
}

impl SegmentError {
    pub fn offset(&self) -> u64 {
        match self {
            SegmentError::BadMagic { offset }
            | SegmentError::Checksum { offset, .. }
            | SegmentError::Truncated { offset }
            | SegmentError::Malformed { offset, .. } => *offset,
        }
    }
}

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentError::BadMagic { .. } => write!(f, "bad segment magic"),
            SegmentError::Checksum { expected, got, .. } => {
                write!(f, "chunk checksum mismatch: stored {expected:#010x}, computed {got:#010x}")
            }
            SegmentError::Truncated { .. } => write!(f, "segment ends before its footer"),
            SegmentError::Malformed { reason, .. } => write!(f, "{reason}"),
        }
    }
}

pub fn encode_header(lsn: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(SEGMENT_MAGIC);
    out.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let crc = header_crc(&out[start..start + SEGMENT_HEADER_LEN]);
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
}

fn header_crc(header: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[0..12]);
    h.update(&header[16..32]);
    h.finalize()
}

/// Appends one chunk holding `entries` to `out`.
pub fn encode_chunk(entries: Vec<SegmentEntry>, out: &mut Vec<u8>) {
    let count = entries.len() as u64;
    let chunk = Chunk { entries };
    let payload = rkyv::to_bytes::<rancor::Error>(&chunk).expect("rkyv serialization into memory");
    assert!(payload.len() <= CHUNK_PAYLOAD_LEN_MAX);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&payload);
    pad_to(out, 16);
}

pub fn encode_footer(lsn: u64, chunks: u64, entries: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(SEGMENT_FOOTER_MAGIC);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&chunks.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    let crc = crc32fast::hash(&out[start..start + 32]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

fn pad_to(out: &mut Vec<u8>, align: usize) {
    let rem = out.len() % align;
    if rem != 0 {
        out.resize(out.len() + align - rem, 0);
    }
}

/// Summary of a decoded segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    pub lsn: u64,
    pub chunks: u64,
    pub entries: u64,
}

/// Decodes a whole segment, calling `each` for every entry of every chunk as that chunk
/// validates. A later chunk may still fail, so a caller must not treat entries as applied until
/// this returns `Ok` (the shard loads into a fresh keyspace and discards it on error).
pub fn decode_segment(
    bytes: &[u8],
    mut each: impl FnMut(&ArchivedSegmentEntry),
) -> Result<SegmentSummary, SegmentError> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(SegmentError::Truncated { offset: 0 });
    }
    if &bytes[0..8] != SEGMENT_MAGIC {
        return Err(SegmentError::BadMagic { offset: 0 });
    }
    let expected = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let got = header_crc(&bytes[0..SEGMENT_HEADER_LEN]);
    if expected != got {
        return Err(SegmentError::Checksum { offset: 0, expected, got });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != SEGMENT_VERSION {
        return Err(SegmentError::Malformed {
            offset: 8,
            reason: format!("unsupported segment version {version}"),
        });
    }
    let lsn = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let mut at = SEGMENT_HEADER_LEN;
    let (mut chunks, mut entries) = (0u64, 0u64);
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    loop {
        if bytes.len() - at >= 8 && &bytes[at..at + 8] == SEGMENT_FOOTER_MAGIC {
            return decode_footer(&bytes[at..], at as u64, lsn, chunks, entries);
        }
        if bytes.len() - at < CHUNK_HEADER_LEN {
            return Err(SegmentError::Truncated { offset: at as u64 });
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let expected = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let count = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        if len > CHUNK_PAYLOAD_LEN_MAX || bytes.len() - at - CHUNK_HEADER_LEN < len {
            return Err(SegmentError::Truncated { offset: at as u64 });
        }
        let payload = &bytes[at + CHUNK_HEADER_LEN..at + CHUNK_HEADER_LEN + len];
        let got = crc32fast::hash(payload);
        if got != expected {
            return Err(SegmentError::Checksum { offset: at as u64, expected, got });
        }
        aligned.clear();
        aligned.extend_from_slice(payload);
        let chunk = rkyv::access::<ArchivedChunk, rancor::Error>(&aligned).map_err(|e| {
            SegmentError::Malformed { offset: at as u64, reason: format!("invalid chunk: {e}") }
        })?;
        if chunk.entries.len() as u64 != count {
            return Err(SegmentError::Malformed {
                offset: at as u64,
                reason: "chunk entry count mismatch".into(),
            });
        }
        for e in chunk.entries.iter() {
            each(e);
        }
        chunks += 1;
        entries += count;
        at += CHUNK_HEADER_LEN + len;
        let pad_end = at.div_ceil(16) * 16;
        if pad_end > bytes.len() || bytes[at..pad_end].iter().any(|&b| b != 0) {
            return Err(SegmentError::Malformed {
                offset: at as u64,
                reason: "non-zero padding".into(),
            });
        }
        at = pad_end;
    }
}

fn decode_footer(
    f: &[u8],
    offset: u64,
    lsn: u64,
    chunks: u64,
    entries: u64,
) -> Result<SegmentSummary, SegmentError> {
    if f.len() < SEGMENT_FOOTER_LEN {
        return Err(SegmentError::Truncated { offset });
    }
    if f[36..40] != [0; 4] {
        return Err(SegmentError::Malformed { offset, reason: "non-zero footer padding".into() });
    }
    let expected = u32::from_le_bytes(f[32..36].try_into().unwrap());
    let got = crc32fast::hash(&f[0..32]);
    if expected != got {
        return Err(SegmentError::Checksum { offset, expected, got });
    }
    let f_lsn = u64::from_le_bytes(f[8..16].try_into().unwrap());
    let f_chunks = u64::from_le_bytes(f[16..24].try_into().unwrap());
    let f_entries = u64::from_le_bytes(f[24..32].try_into().unwrap());
    if (f_lsn, f_chunks, f_entries) != (lsn, chunks, entries) {
        return Err(SegmentError::Malformed {
            offset,
            reason: "footer does not match header and chunks".into(),
        });
    }
    Ok(SegmentSummary { lsn, chunks, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> SegmentEntry {
        SegmentEntry {
            key: format!("key:{i}").into_bytes(),
            value: vec![i as u8; (i % 50) as usize],
            expire_at_ms: i as u64 * 3,
        }
    }

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        encode_header(99, &mut out);
        encode_chunk((0..10).map(entry).collect(), &mut out);
        encode_chunk(Vec::new(), &mut out);
        encode_chunk((10..25).map(entry).collect(), &mut out);
        encode_footer(99, 3, 25, &mut out);
        out.resize(out.len() + 100, 0); // file padding
        out
    }

    #[test]
    fn roundtrip() {
        let bytes = sample();
        let mut seen = Vec::new();
        let s = decode_segment(&bytes, |e| {
            seen.push(SegmentEntry {
                key: e.key.to_vec(),
                value: e.value.to_vec(),
                expire_at_ms: e.expire_at_ms.to_native(),
            })
        })
        .unwrap();
        assert_eq!(s, SegmentSummary { lsn: 99, chunks: 3, entries: 25 });
        assert_eq!(seen, (0..25).map(entry).collect::<Vec<_>>());
    }

    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let bytes = sample();
        let body_end = bytes.len() - 100;
        for i in (0..body_end).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            assert!(decode_segment(&bad, |_| {}).is_err(), "flip at {i} accepted");
        }
        for cut in (0..body_end).step_by(13) {
            assert!(decode_segment(&bytes[..cut], |_| {}).is_err(), "cut at {cut} accepted");
        }
    }
}
