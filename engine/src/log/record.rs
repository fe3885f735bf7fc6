//! WAL record framing: encode into a buffer, decode from a byte slice. Pure code, no I/O.
//!
//! Layout (little-endian), see `docs/format.md`:
//! ```text
//! 0   u32  body_len     bytes after the header: 17 + payload length (0 = end of log / padding)
//! 4   u32  crc32        over body_len bytes [0..4) and the body [8..8+body_len)
//! 8   u64  lsn          log sequence number, consecutive from 1
//! 16  u64  durable_lsn  the highest LSN known durable when this record was appended
//! 24  u8   kind         1 Put, 2 Delete, 3 Expire, 4 Append, 5 Clear,
//!                       6 TxnBegin, 7 TxnEnd, 8 TxnCommit (a transaction's frame)
//! 25  ...  payload
//! ```
//! `durable_lsn` is what lets recovery tell a torn in-flight write (blocks persisted out of
//! order: every record after the damage was appended while the damaged one was not yet synced)
//! from corruption of synced data (some later record was appended after it had been synced).
//! Records are logical-physical: a `Put` carries the resulting value and absolute expiry, so
//! replay never depends on the wall clock or on re-running command logic.

/// Size of the fixed record header (body_len + crc32).
pub const RECORD_HEADER_LEN: usize = 8;
/// Bytes of the body before the payload (lsn + durable_lsn + kind).
pub const RECORD_BODY_FIXED_LEN: usize = 17;
/// Largest LSN a record may carry: the reader and recovery compute the next record's LSN as
/// `lsn + 1`, so a crc-valid record with `u64::MAX` must be refused, not overflow them.
pub const LSN_MAX: u64 = u64::MAX - 1;
/// Largest key (the engine refuses longer ones before logging).
pub const KEY_LEN_MAX: usize = 64 * 1024;
/// Largest record body: a largest key and a largest value with their framing.
pub const RECORD_BODY_LEN_MAX: usize =
    RECORD_BODY_FIXED_LEN + 4 + KEY_LEN_MAX + 8 + 4 + crate::keyspace::VALUE_LEN_MAX;

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_EXPIRE: u8 = 3;
const KIND_APPEND: u8 = 4;
const KIND_CLEAR: u8 = 5;
const KIND_TXN_BEGIN: u8 = 6;
const KIND_TXN_END: u8 = 7;
const KIND_TXN_COMMIT: u8 = 8;

/// A transaction's name in the logs: unique across restarts (the process's start time in ns,
/// and the engine's id of the transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoggedTxn {
    pub boot: u64,
    pub txn: u64,
}

/// One logged mutation of a shard's keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// The key now has this value and absolute expiry (ms since the Unix epoch; 0 = none).
    Put { key: &'a [u8], value: &'a [u8], expire_at_ms: u64 },
    /// The key no longer exists.
    Delete { key: &'a [u8] },
    /// The key's expiry is now this absolute time (0 = persistent).
    Expire { key: &'a [u8], expire_at_ms: u64 },
    /// `suffix` was appended to the key's value (creating it, without expiry, if absent).
    Append { key: &'a [u8], suffix: &'a [u8] },
    /// Every key of the shard was removed.
    Clear,
    /// The records that follow, up to `TxnEnd` or `TxnCommit` of the same transaction, are
    /// its part in this shard: replayed only if the transaction committed.
    TxnBegin { txn: LoggedTxn },
    /// The transaction's part here is complete; whether it committed is said later (here or
    /// in another shard's log).
    TxnEnd { txn: LoggedTxn },
    /// The transaction committed: its parts, here and in every other shard, are replayed.
    TxnCommit { txn: LoggedTxn },
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The slice ends before the record does (a torn tail if it is the end of the log).
    Truncated { needed: usize },
    /// `body_len` is zero: the log ends here (zero padding).
    End,
    /// `body_len` is outside `RECORD_BODY_FIXED_LEN..=RECORD_BODY_LEN_MAX`.
    BadLength { body_len: u64 },
    /// The checksum does not match.
    Checksum { expected: u32, got: u32 },
    /// The checksum matched but the body does not parse (unknown kind, bad inner lengths).
    Malformed { reason: &'static str },
}

/// A decoded record and the number of bytes it occupied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub lsn: u64,
    pub durable_lsn: u64,
    pub record: Record<'a>,
    pub len: usize,
}

impl Record<'_> {
    fn payload_len(&self) -> usize {
        match self {
            Record::Put { key, value, .. } => 4 + key.len() + 8 + 4 + value.len(),
            Record::Delete { key } => 4 + key.len(),
            Record::Expire { key, .. } => 4 + key.len() + 8,
            Record::Append { key, suffix } => 4 + key.len() + 4 + suffix.len(),
            Record::Clear => 0,
            Record::TxnBegin { .. } | Record::TxnEnd { .. } | Record::TxnCommit { .. } => 16,
        }
    }

    /// Total encoded size of the record, header included.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + RECORD_BODY_FIXED_LEN + self.payload_len()
    }

    /// Appends the framed record with `lsn` to `out`; `durable_lsn` is the highest LSN known
    /// durable at this moment (below `lsn`).
    pub fn encode(&self, lsn: u64, durable_lsn: u64, out: &mut Vec<u8>) {
        assert!(durable_lsn < lsn, "durable_lsn {durable_lsn} must precede lsn {lsn}");
        assert!(lsn <= LSN_MAX, "lsn {lsn} over LSN_MAX");
        let body_len = RECORD_BODY_FIXED_LEN + self.payload_len();
        assert!(body_len <= RECORD_BODY_LEN_MAX, "record body {body_len} over the maximum");
        let start = out.len();
        out.reserve(RECORD_HEADER_LEN + body_len);
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]); // crc, filled below
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&durable_lsn.to_le_bytes());
        match self {
            Record::Put { key, value, expire_at_ms } => {
                out.push(KIND_PUT);
                put_bytes(out, key);
                out.extend_from_slice(&expire_at_ms.to_le_bytes());
                put_bytes(out, value);
            }
            Record::Delete { key } => {
                out.push(KIND_DELETE);
                put_bytes(out, key);
            }
            Record::Expire { key, expire_at_ms } => {
                out.push(KIND_EXPIRE);
                put_bytes(out, key);
                out.extend_from_slice(&expire_at_ms.to_le_bytes());
            }
            Record::Append { key, suffix } => {
                out.push(KIND_APPEND);
                put_bytes(out, key);
                put_bytes(out, suffix);
            }
            Record::Clear => out.push(KIND_CLEAR),
            Record::TxnBegin { txn } | Record::TxnEnd { txn } | Record::TxnCommit { txn } => {
                out.push(match self {
                    Record::TxnBegin { .. } => KIND_TXN_BEGIN,
                    Record::TxnEnd { .. } => KIND_TXN_END,
                    _ => KIND_TXN_COMMIT,
                });
                out.extend_from_slice(&txn.boot.to_le_bytes());
                out.extend_from_slice(&txn.txn.to_le_bytes());
            }
        }
        debug_assert_eq!(out.len() - start, RECORD_HEADER_LEN + body_len);
        let crc = record_crc(&out[start..start + 4], &out[start + RECORD_HEADER_LEN..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn record_crc(len_bytes: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_bytes);
    h.update(body);
    h.finalize()
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    if buf.len() < 4 {
        if buf.iter().all(|&b| b == 0) {
            return Err(DecodeError::End);
        }
        return Err(DecodeError::Truncated { needed: RECORD_HEADER_LEN });
    }
    let body_len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    if body_len == 0 {
        return Err(DecodeError::End);
    }
    if !(RECORD_BODY_FIXED_LEN..=RECORD_BODY_LEN_MAX).contains(&body_len) {
        return Err(DecodeError::BadLength { body_len: body_len as u64 });
    }
    let total = RECORD_HEADER_LEN + body_len;
    if buf.len() < total {
        return Err(DecodeError::Truncated { needed: total });
    }
    let expected = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let body = &buf[RECORD_HEADER_LEN..total];
    let got = record_crc(&buf[0..4], body);
    if expected != got {
        return Err(DecodeError::Checksum { expected, got });
    }
    let lsn = u64::from_le_bytes(body[0..8].try_into().unwrap());
    let durable_lsn = u64::from_le_bytes(body[8..16].try_into().unwrap());
    if durable_lsn >= lsn {
        return Err(DecodeError::Malformed { reason: "durable_lsn not below lsn" });
    }
    if lsn > LSN_MAX {
        return Err(DecodeError::Malformed { reason: "lsn over LSN_MAX" });
    }
    let mut r = Reader { buf: &body[17..] };
    let record = match body[16] {
        KIND_PUT => {
            let key = r.bytes()?;
            let expire_at_ms = r.u64()?;
            let value = r.bytes()?;
            Record::Put { key, value, expire_at_ms }
        }
        KIND_DELETE => Record::Delete { key: r.bytes()? },
        KIND_EXPIRE => {
            let key = r.bytes()?;
            Record::Expire { key, expire_at_ms: r.u64()? }
        }
        KIND_APPEND => {
            let key = r.bytes()?;
            Record::Append { key, suffix: r.bytes()? }
        }
        KIND_CLEAR => Record::Clear,
        KIND_TXN_BEGIN => Record::TxnBegin { txn: r.txn()? },
        KIND_TXN_END => Record::TxnEnd { txn: r.txn()? },
        KIND_TXN_COMMIT => Record::TxnCommit { txn: r.txn()? },
        _ => return Err(DecodeError::Malformed { reason: "unknown record kind" }),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError::Malformed { reason: "trailing bytes in record" });
    }
    Ok(Decoded { lsn, durable_lsn, record, len: total })
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u64(&mut self) -> Result<u64, DecodeError> {
        if self.buf.len() < 8 {
            return Err(DecodeError::Malformed { reason: "short u64" });
        }
        let (head, rest) = self.buf.split_at(8);
        self.buf = rest;
        Ok(u64::from_le_bytes(head.try_into().unwrap()))
    }

    fn txn(&mut self) -> Result<LoggedTxn, DecodeError> {
        Ok(LoggedTxn { boot: self.u64()?, txn: self.u64()? })
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < 4 {
            return Err(DecodeError::Malformed { reason: "short length" });
        }
        let len = u32::from_le_bytes(self.buf[0..4].try_into().unwrap()) as usize;
        if self.buf.len() - 4 < len {
            return Err(DecodeError::Malformed { reason: "inner length past record end" });
        }
        let out = &self.buf[4..4 + len];
        self.buf = &self.buf[4 + len..];
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record<'static>> {
        vec![
            Record::Put { key: b"user:1", value: b"alice", expire_at_ms: 0 },
            Record::Put { key: b"", value: b"", expire_at_ms: u64::MAX },
            Record::Delete { key: b"user:1" },
            Record::Expire { key: b"k", expire_at_ms: 1_700_000_000_000 },
            Record::Append { key: b"log", suffix: b"line\n" },
            Record::Clear,
            Record::TxnBegin { txn: LoggedTxn { boot: 1, txn: 2 } },
            Record::TxnEnd { txn: LoggedTxn { boot: u64::MAX, txn: 0 } },
            Record::TxnCommit { txn: LoggedTxn { boot: 7, txn: 1 << 50 } },
        ]
    }

    #[test]
    fn roundtrip_every_kind() {
        let mut buf = Vec::new();
        for (i, r) in samples().iter().enumerate() {
            r.encode(i as u64 + 1, i as u64, &mut buf);
        }
        let mut at = 0;
        for (i, r) in samples().iter().enumerate() {
            let d = decode(&buf[at..]).unwrap();
            assert_eq!(d.lsn, i as u64 + 1);
            assert_eq!(&d.record, r);
            assert_eq!(d.len, r.encoded_len());
            at += d.len;
        }
        assert_eq!(decode(&buf[at..]), Err(DecodeError::End));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        Record::Put { key: b"key", value: b"value", expire_at_ms: 7 }.encode(42, 40, &mut buf);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(decode(&bad).is_err(), "flip of byte {byte} bit {bit} went unnoticed");
            }
        }
    }

    /// Found by the wal_log fuzz target: a crc-valid record with LSN u64::MAX overflowed
    /// `read_log`'s next expected LSN (a panic in debug builds, a wrap to 0 in release).
    #[test]
    fn lsn_over_the_maximum_is_malformed() {
        let mut buf = Vec::new();
        Record::Clear.encode(LSN_MAX, 0, &mut buf);
        assert_eq!(decode(&buf).unwrap().lsn, LSN_MAX);
        buf[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&buf[0..4]);
        h.update(&buf[RECORD_HEADER_LEN..]);
        buf[4..8].copy_from_slice(&h.finalize().to_le_bytes());
        assert_eq!(decode(&buf), Err(DecodeError::Malformed { reason: "lsn over LSN_MAX" }));
    }

    #[test]
    fn truncation_and_padding() {
        let mut buf = Vec::new();
        Record::Delete { key: b"abc" }.encode(1, 0, &mut buf);
        for cut in 4..buf.len() {
            assert!(matches!(decode(&buf[..cut]), Err(DecodeError::Truncated { .. })));
        }
        assert_eq!(decode(&[0u8; 64]), Err(DecodeError::End));
        assert_eq!(decode(&[]), Err(DecodeError::End));
        let huge = [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        assert!(matches!(decode(&huge), Err(DecodeError::BadLength { .. })));
    }
}
