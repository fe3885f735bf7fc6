//! Reading a log file back: which records it holds and how it ends. Pure code over bytes.
//!
//! A log ends cleanly at zero padding or at the end of the file. A record that does not decode
//! at expected LSN `d` is *corruption* when some later valid record was appended after `d` was
//! known durable (its `durable_lsn >= d`): synced bytes changed. Otherwise it is a *torn tail*:
//! the crash cut an in-flight write, whose blocks may have reached the disk partly and out of
//! order, and nothing after `d` was ever acknowledged. A flipped byte in a record that no later
//! record vouches for cannot be told from a torn write; it is dropped (see docs/format.md).

use crate::log::record::{decode, DecodeError, Record, RECORD_BODY_FIXED_LEN, RECORD_HEADER_LEN};

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
                if is_zero(&bytes[at..]) {
                    return LogEnd::Clean { offset: at as u64 };
                }
                // Zero length but non-zero bytes later: judge like any other bad record.
                return judge(bytes, at, expected);
            }
            Err(DecodeError::Malformed { reason }) => {
                // The checksum matched, so these bytes were written as they are: a bug, not a
                // torn write.
                return LogEnd::Corrupt { offset: at as u64, reason: reason.to_string() };
            }
            Err(_) => return judge(bytes, at, expected),
        }
    }
}

/// Checks the order of a shard's log read back: `files` are its log files' names and bytes in
/// ascending sequence number, above a segment holding everything up to `segment_lsn` (0
/// without one). Every file must read to a clean end; LSNs must increase strictly within and
/// across files, with no gap inside a file; and past the segment there is no gap at all: the
/// records after it are `segment_lsn + 1`, `+ 2`, ... (files the segment wholly covers may be
/// missing between survivors, as a snapshot removes them one by one). Returns the last LSN
/// read, if any, or what is wrong, naming the file.
///
/// Reads every byte of the log: for tests and checks (the model test calls it after every
/// step), not for the data path. Recovery makes the same continuity checks as it replays.
pub fn check_log_order<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    segment_lsn: u64,
) -> Result<Option<u64>, String> {
    let mut last: Option<u64> = None;
    for (name, bytes) in files {
        let mut out_of_order = None;
        let end = read_log(bytes, None, |lsn, _| {
            let follows = match last {
                None => lsn <= segment_lsn + 1,
                Some(prev) => lsn > prev && (lsn <= segment_lsn + 1 || lsn == prev + 1),
            };
            if !follows && out_of_order.is_none() {
                out_of_order = Some(match last {
                    None => format!(
                        "{name}: the log starts at LSN {lsn}, the segment ends at {segment_lsn}"
                    ),
                    Some(prev) => {
                        format!("{name}: LSN {lsn} follows LSN {prev} (segment at {segment_lsn})")
                    }
                });
            }
            last = Some(lsn);
        });
        if let Some(wrong) = out_of_order {
            return Err(wrong);
        }
        match end {
            LogEnd::Clean { .. } => {}
            other => return Err(format!("{name}: the log does not end cleanly: {other:?}")),
        }
    }
    Ok(last)
}

/// Whether every byte is zero (compared a block at a time: a log file is mostly padding).
fn is_zero(bytes: &[u8]) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    bytes.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// A bad record at `at` where LSN `expected` should be: corruption if a later valid record
/// was appended after `expected` was durable, otherwise a torn tail.
fn judge(bytes: &[u8], at: usize, expected: u64) -> LogEnd {
    let min_len = RECORD_HEADER_LEN + RECORD_BODY_FIXED_LEN;
    let mut pos = at + 1;
    while pos + min_len <= bytes.len() {
        let lsn = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
        if lsn > expected && lsn < expected.saturating_add(1 << 32) {
            if let Ok(d) = decode(&bytes[pos..]) {
                if d.durable_lsn >= expected {
                    return LogEnd::Corrupt {
                        offset: at as u64,
                        reason: format!(
                            "record at offset {at} (LSN {expected}) is damaged, but LSN {} at offset {pos} was written after it was durable",
                            d.lsn
                        ),
                    };
                }
                pos += d.len;
                continue;
            }
        }
        pos += 1;
    }
    LogEnd::Torn { offset: at as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` records, each appended after the previous one was synced (as `always` with one
    /// writer), unless `one_write`: all appended before any sync (one in-flight group).
    fn log_with(n: u64, one_write: bool) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for lsn in 1..=n {
            starts.push(buf.len());
            let key = format!("key{lsn}");
            let durable = if one_write { 0 } else { lsn - 1 };
            let record = Record::Put { key: key.as_bytes(), value: b"value", expire_at_ms: 0 };
            record.encode(lsn, durable, &mut buf);
        }
        (buf, starts)
    }

    fn log(n: u64) -> (Vec<u8>, Vec<usize>) {
        log_with(n, false)
    }

    #[test]
    fn damage_inside_one_unsynced_write_is_a_torn_tail() {
        // Blocks of one in-flight write can persist out of order: a hole followed by records
        // that were never acknowledged is not corruption.
        let (buf, starts) = log_with(5, true);
        let mut holed = buf.clone();
        holed[starts[1]..starts[2]].fill(0);
        let mut n = 0;
        let end = read_log(&holed, Some(1), |_, _| n += 1);
        assert_eq!(end, LogEnd::Torn { offset: starts[1] as u64 });
        assert_eq!(n, 1);
    }

    #[test]
    fn clean_end_with_padding() {
        let (mut buf, _) = log(5);
        let len = buf.len();
        buf.resize(8192, 0);
        let mut n = 0;
        assert_eq!(read_log(&buf, Some(1), |_, _| n += 1), LogEnd::Clean { offset: len as u64 });
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
                LogEnd::Torn { offset: starts[4] as u64 }
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
    fn log_order_is_checked_across_files_and_past_the_segment() {
        let file = |lsns: std::ops::RangeInclusive<u64>| {
            let mut buf = Vec::new();
            for lsn in lsns {
                Record::Delete { key: b"k" }.encode(lsn, lsn - 1, &mut buf);
            }
            buf.resize(buf.len().div_ceil(4096) * 4096, 0);
            buf
        };
        let (a, b, c, empty) = (file(1..=3), file(4..=6), file(8..=9), Vec::new());
        let check = |files: &[&[u8]], segment_lsn| {
            let named = files.iter().enumerate().map(|(i, f)| (["a", "b", "c", "d"][i], *f));
            check_log_order(named.collect::<Vec<_>>(), segment_lsn)
        };
        assert_eq!(check(&[&a, &empty, &b], 0), Ok(Some(6)));
        assert_eq!(check(&[], 0), Ok(None));
        // A gap past the segment, or a log that starts after it ends.
        assert_eq!(check(&[&a, &b, &c], 0), Err("c: LSN 8 follows LSN 6 (segment at 0)".into()));
        assert_eq!(
            check(&[&b], 2),
            Err("a: the log starts at LSN 4, the segment ends at 2".into())
        );
        // Files the segment covers may be missing between survivors.
        assert_eq!(check(&[&a, &c], 7), Ok(Some(9)));
        assert!(check(&[&b, &a], 9).unwrap_err().contains("LSN 1 follows LSN 6"));
        // A torn tail is not a clean end.
        let mut torn = b.clone();
        torn[30] ^= 1;
        assert!(check(&[&a, &torn], 0).unwrap_err().contains("does not end cleanly"));
    }

    #[test]
    fn lsn_gap_is_corruption() {
        let (buf, _) = log(3);
        assert!(matches!(read_log(&buf, Some(2), |_, _| {}), LogEnd::Corrupt { offset: 0, .. }));
    }
}
