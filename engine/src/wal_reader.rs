//! Reading a log file back: which records it holds and how it ends. Pure code over bytes.
//!
//! A log ends cleanly at zero padding or at the end of the file. A record that does not decode
//! is a *torn tail* when nothing valid follows it (the crash cut the last, unacknowledged write)
//! and *corruption* when a valid record with a later LSN follows it (bytes of acknowledged
//! records changed). A flipped byte in the very last record cannot be told from a torn write;
//! that record is dropped (see docs/format.md).

use crate::record::{decode, DecodeError, Record, RECORD_BODY_FIXED_LEN, RECORD_HEADER_LEN};

/// How a log file ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// Zero padding or end of file at this offset.
    Clean { offset: u64 },
    /// An incomplete or garbled last write starts here; nothing valid follows.
    Torn { offset: u64 },
    /// The log is damaged at this offset and later records exist.
    Corrupt { offset: u64, reason: String },
}

/// Decodes the records of `bytes` in order, calling `each(lsn, record)`. Every record must
/// carry the LSN after the previous one; the first must be `first_lsn` if given (the log's
/// continuation of an earlier file). A gap is corruption.
pub fn read_log(
    bytes: &[u8],
    first_lsn: Option<u64>,
    mut each: impl FnMut(u64, &Record<'_>),
) -> LogEnd {
    let mut at = 0usize;
    let mut expected = first_lsn.unwrap_or(0);
    loop {
        match decode(&bytes[at..]) {
            Ok(d) => {
                if at == 0 && first_lsn.is_none() {
                    expected = d.lsn;
                }
                if d.lsn != expected {
                    return LogEnd::Corrupt {
                        offset: at as u64,
                        reason: format!("LSN {} where {expected} was expected", d.lsn),
                    };
                }
                each(d.lsn, &d.record);
                expected += 1;
                at += d.len;
            }
            Err(DecodeError::End) => {
                if bytes[at..].iter().all(|&b| b == 0) {
                    return LogEnd::Clean { offset: at as u64 };
                }
                // Zero length but non-zero bytes later: judge like any other bad record.
                return judge(bytes, at, expected);
            }
            Err(DecodeError::Malformed { reason }) => {
                // The checksum matched, so these bytes were written as they are: a bug, not a
                // torn write.
                return LogEnd::Corrupt {
                    offset: at as u64,
                    reason: reason.to_string(),
                };
            }
            Err(_) => return judge(bytes, at, expected),
        }
    }
}

/// A bad record at `at`: corruption if any later offset holds a valid record with an LSN at or
/// after `expected`, otherwise a torn tail.
fn judge(bytes: &[u8], at: usize, expected: u64) -> LogEnd {
    let min_len = RECORD_HEADER_LEN + RECORD_BODY_FIXED_LEN;
    let mut pos = at + 1;
    while pos + min_len <= bytes.len() {
        let lsn = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
        if lsn >= expected && lsn < expected.saturating_add(1 << 32) {
            if let Ok(d) = decode(&bytes[pos..]) {
                return LogEnd::Corrupt {
                    offset: at as u64,
                    reason: format!(
                        "record at offset {at} is damaged but a valid record (LSN {}) follows at offset {pos}",
                        d.lsn
                    ),
                };
            }
        }
        pos += 1;
    }
    LogEnd::Torn { offset: at as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for lsn in 1..=n {
            starts.push(buf.len());
            let key = format!("key{lsn}");
            Record::Put {
                key: key.as_bytes(),
                value: b"value",
                expire_at_ms: 0,
            }
            .encode(lsn, &mut buf);
        }
        (buf, starts)
    }

    #[test]
    fn clean_end_with_padding() {
        let (mut buf, _) = log(5);
        let len = buf.len();
        buf.resize(8192, 0);
        let mut n = 0;
        assert_eq!(
            read_log(&buf, Some(1), |_, _| n += 1),
            LogEnd::Clean { offset: len as u64 }
        );
        assert_eq!(n, 5);
    }

    #[test]
    fn torn_tail_is_truncated() {
        let (buf, starts) = log(5);
        for cut in starts[4] + 1..buf.len() {
            let mut torn = buf[..cut].to_vec();
            torn.resize(8192, 0);
            let mut n = 0;
            assert_eq!(
                read_log(&torn, Some(1), |_, _| n += 1),
                LogEnd::Torn {
                    offset: starts[4] as u64
                }
            );
            assert_eq!(n, 4);
        }
    }

    #[test]
    fn flipped_byte_in_the_middle_is_corruption() {
        let (buf, starts) = log(5);
        for i in starts[1]..starts[2] {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            match read_log(&bad, Some(1), |_, _| {}) {
                LogEnd::Corrupt { offset, .. } => assert_eq!(offset, starts[1] as u64),
                other => panic!("flip at {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn lsn_gap_is_corruption() {
        let (buf, _) = log(3);
        assert!(matches!(
            read_log(&buf, Some(2), |_, _| {}),
            LogEnd::Corrupt { offset: 0, .. }
        ));
    }
}
