//! Recovery of a shard's keyspace from its files: the newest segment, then every later log
//! record; a torn tail is truncated, damage that a later record proves was synced is refused.

use super::{new_wal_file, parse_numbered, segment, segment_name, wal_name, Shard};
use crate::error::{EngineError, Result};
use crate::keyspace::Keyspace;
use crate::log::reader::{read_log, LogEnd};
use crate::log::record::{decode, LoggedTxn, Record};
use crate::log::writer::Wal;
use crate::storage::{read_all, Storage, StorageFile};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What the files of a shard directory hold.
pub struct RecoveredKeyspace {
    pub keyspace: Keyspace,
    /// LSN of the segment loaded (0 if none).
    pub segment_lsn: u64,
    pub segment_len: u64,
    /// The last LSN read from the logs.
    pub last_lsn: Option<u64>,
    /// Sequence numbers of the log files, ascending.
    pub wals: Vec<u64>,
    /// A torn tail to truncate: file and offset.
    pub torn: Option<(PathBuf, u64)>,
    /// Log files that hold no record.
    pub empty_files: Vec<PathBuf>,
    /// Transaction parts complete here whose commit this log does not hold: replayed only if
    /// another shard's log holds it (`Shard::resolve_txns`).
    pub undecided: Vec<UndecidedPart>,
    /// The transactions this log says committed (past the segment).
    pub commits: HashSet<LoggedTxn>,
}

/// A transaction's part in one shard, read but not applied: its records, encoded.
#[derive(Debug, Clone)]
pub struct UndecidedPart {
    pub txn: LoggedTxn,
    pub records: Vec<Vec<u8>>,
}

/// Replays a shard's log records into its keyspace, holding back each transaction's part
/// until the log says the transaction committed (docs/transactions.md, "Crashes").
///
/// A part is contiguous in its shard's log (written in one synchronous step): `TxnBegin`, its
/// records, then `TxnCommit` (a transaction with one part) or `TxnEnd` (one of several parts;
/// its `TxnCommit` comes later, here or in another shard's log). A part still open when its
/// log file ends was cut by a crash and is dropped. No later record of this log touches a part's
/// keys before its commit (the transaction holds them until every part's commit is logged),
/// so applying a part at its commit, or after the whole log, is the same as applying it where
/// it stands.
#[derive(Default)]
pub struct TxnReplay {
    open: Option<UndecidedPart>,
    ended: Vec<UndecidedPart>,
    commits: HashSet<LoggedTxn>,
}

impl TxnReplay {
    pub fn record(&mut self, keyspace: &mut Keyspace, record: &Record<'_>) {
        match *record {
            Record::TxnBegin { txn } => {
                if let Some(cut) = self.open.replace(UndecidedPart { txn, records: Vec::new() }) {
                    tracing::warn!(?cut.txn, "a transaction's part without its end; dropped");
                }
            }
            Record::TxnEnd { txn } => match self.open.take() {
                Some(part) if part.txn == txn => self.ended.push(part),
                other => {
                    self.open = other;
                    tracing::warn!(?txn, "a transaction end without its begin; ignored");
                }
            },
            Record::TxnCommit { txn } => {
                self.commits.insert(txn);
                // A transaction of several steps (RENAME) may have several parts here.
                let (parts, others): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.ended).into_iter().partition(|p| p.txn == txn);
                self.ended = others;
                parts.iter().for_each(|p| apply_part(keyspace, p));
                match self.open.take() {
                    Some(part) if part.txn == txn => apply_part(keyspace, &part),
                    other => self.open = other,
                }
            }
            _ => match self.open.as_mut() {
                Some(part) => {
                    let mut bytes = Vec::with_capacity(record.encoded_len());
                    record.encode(1, 0, &mut bytes);
                    part.records.push(bytes);
                }
                None => keyspace.apply_record(record),
            },
        }
    }

    /// The end of a log file: a part still open there was cut by a crash; dropped.
    pub fn end_of_file(&mut self) {
        if let Some(part) = self.open.take() {
            tracing::warn!(txn = ?part.txn, "a transaction's part cut by a crash; dropped");
        }
    }

    /// The parts complete but undecided when the log ended, and the commits it held.
    pub fn finish(mut self) -> (Vec<UndecidedPart>, HashSet<LoggedTxn>) {
        self.end_of_file();
        (self.ended, self.commits)
    }
}

/// Applies a committed part's records to `keyspace`.
pub fn apply_part(keyspace: &mut Keyspace, part: &UndecidedPart) {
    for bytes in &part.records {
        match decode(bytes) {
            Ok(d) => keyspace.apply_record(&d.record),
            Err(e) => tracing::error!(?e, "a held-back record does not decode"),
        }
    }
}

/// Reads the keyspace a shard directory holds, changing nothing on disk (the upgrade of an
/// old layout reads old shards this way; `Shard::recover` then repairs the files).
pub async fn read_keyspace<S: Storage>(
    storage: &S,
    dir: &Path,
    separator: u8,
) -> Result<RecoveredKeyspace> {
    let names = storage.list_dir(dir)?;
    let mut segments: Vec<u64> =
        names.iter().filter_map(|n| parse_numbered(n, "seg-", ".rkyv")).collect();
    segments.sort_unstable();
    let mut wals: Vec<u64> =
        names.iter().filter_map(|n| parse_numbered(n, "wal-", ".log")).collect();
    wals.sort_unstable();

    let mut keyspace = Keyspace::with_separator(separator);
    let mut segment_lsn = 0;
    let mut segment_len = 0;
    if let Some(&lsn) = segments.last() {
        let path = dir.join(segment_name(lsn));
        let file = storage.open_rw(&path, false).await?;
        let bytes = read_all(&file).await?;
        file.close().await?;
        let summary = segment::decode_segment(&bytes, |e| {
            keyspace.load(&e.key, e.value.to_vec(), e.expire_at_ms.to_native())
        })
        .map_err(|e| match e {
            segment::SegmentError::Checksum { offset, expected, got } => {
                EngineError::ChecksumMismatch { path: path.clone(), offset, expected, got }
            }
            other => EngineError::Corrupt {
                path: path.clone(),
                offset: other.offset(),
                reason: other.to_string(),
            },
        })?;
        if summary.lsn != lsn {
            return Err(EngineError::Corrupt {
                path,
                offset: 16,
                reason: format!("segment holds LSN {} but is named {lsn}", summary.lsn),
            });
        }
        segment_lsn = lsn;
        segment_len = bytes.len() as u64;
    }

    let mut last_lsn: Option<u64> = None;
    let mut replay = TxnReplay::default();
    let mut torn: Option<(PathBuf, u64)> = None;
    let mut empty_files = Vec::new();
    for &seq in &wals {
        let path = dir.join(wal_name(seq));
        let file = storage.open_rw(&path, false).await?;
        let bytes = read_all(&file).await?;
        file.close().await?;
        let mut records = 0u64;
        // Continuity is required only past the segment: files it covers may survive a
        // snapshot's removals in any subset (their removal is not atomic).
        let expected = last_lsn.filter(|&l| l >= segment_lsn).map(|l| l + 1);
        let mut first_in_file = None;
        let end = read_log(&bytes, expected, |lsn, record| {
            first_in_file.get_or_insert(lsn);
            records += 1;
            last_lsn = Some(lsn);
            if lsn > segment_lsn {
                replay.record(&mut keyspace, record);
            }
        });
        // A frame never spans files (framing and rotation are each one synchronous step): a
        // part still open here was cut by a crash, and must not take in the next file's
        // records (the torn frame stays in this file after recovery).
        replay.end_of_file();
        if records > 0 {
            if let Some((torn_path, offset)) = torn.take() {
                return Err(EngineError::Corrupt {
                    path: torn_path,
                    offset,
                    reason: "damaged record followed by records in a later log file".into(),
                });
            }
            if expected.is_none() && first_in_file.unwrap() > segment_lsn + 1 {
                return Err(EngineError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "log starts at LSN {} but the segment ends at {segment_lsn}",
                        first_in_file.unwrap()
                    ),
                });
            }
        }
        match end {
            LogEnd::Clean { .. } => {}
            LogEnd::Torn { offset } => {
                tracing::warn!(path = %path.display(), offset, "a torn log tail");
                torn = Some((path.clone(), offset));
            }
            LogEnd::Corrupt { offset, reason } => {
                return Err(EngineError::Corrupt { path, offset, reason });
            }
        }
        if records == 0 {
            empty_files.push(path);
        }
    }
    let (undecided, commits) = replay.finish();
    Ok(RecoveredKeyspace {
        keyspace,
        segment_lsn,
        segment_len,
        last_lsn,
        wals,
        torn,
        empty_files,
        undecided,
        commits,
    })
}

impl<S: Storage> Shard<S> {
    /// Recovers the keyspace and repairs the files: leftover temporaries removed, a torn tail
    /// truncated, empty log files removed; a new log file is started.
    pub(super) async fn recover(&mut self) -> Result<()> {
        let names = self.storage.list_dir(&self.dir)?;
        for name in names.iter().filter(|n| n.ends_with(".tmp")) {
            self.storage.remove(&self.dir.join(name)).await?;
        }
        let found =
            read_keyspace(&self.storage, &self.dir, self.config.partition_separator).await?;
        if let Some((path, offset)) = &found.torn {
            tracing::warn!(path = %path.display(), offset, "truncating a torn log tail");
            let file = self.storage.open_rw(path, false).await?;
            file.truncate(*offset).await?;
            file.sync().await?;
            file.close().await?;
        }
        for path in &found.empty_files {
            self.storage.remove(path).await?;
        }
        self.segment_len.set(found.segment_len);
        let next_lsn = found.last_lsn.unwrap_or(0).max(found.segment_lsn) + 1;
        let seq = found.wals.last().copied().unwrap_or(0) + 1;
        let (file, path) =
            new_wal_file(&self.storage, &self.dir, seq, self.config.wal_prealloc_bytes).await?;
        self.storage.sync_dir(&self.dir).await?;
        self.wal = Some(Wal::new(file, path, next_lsn, self.config.wal_prealloc_bytes));
        self.wal_seq.set(seq);
        let mut keyspace = found.keyspace;
        // What the files hold has no access history: count every key as used now.
        keyspace.reset_access(self.clock.now_ms());
        *self.keyspace.get_mut() = keyspace;
        *self.recovered_txns.get_mut() = (found.undecided, found.commits);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: LoggedTxn = LoggedTxn { boot: 1, txn: 1 };
    const T2: LoggedTxn = LoggedTxn { boot: 1, txn: 2 };

    fn put<'a>(key: &'a [u8], value: &'a [u8]) -> Record<'a> {
        Record::Put { key, value, expire_at_ms: 0 }
    }

    fn value(ks: &mut Keyspace, key: &[u8]) -> Option<Vec<u8>> {
        ks.get(key, 1).map(|v| v.to_vec())
    }

    #[test]
    fn a_whole_frame_is_applied_at_its_commit_and_a_cut_one_never() {
        let mut ks = Keyspace::with_separator(b':');
        let mut r = TxnReplay::default();
        r.record(&mut ks, &Record::TxnBegin { txn: T1 });
        r.record(&mut ks, &put(b"a", b"1"));
        assert_eq!(value(&mut ks, b"a"), None, "held back until the commit");
        r.record(&mut ks, &Record::TxnCommit { txn: T1 });
        assert_eq!(value(&mut ks, b"a"), Some(b"1".to_vec()));
        // A frame cut by a crash at the end of a file takes in nothing of the next file.
        r.record(&mut ks, &Record::TxnBegin { txn: T2 });
        r.record(&mut ks, &put(b"a", b"torn"));
        r.end_of_file();
        r.record(&mut ks, &put(b"b", b"after the restart"));
        let (undecided, commits) = r.finish();
        assert_eq!(value(&mut ks, b"a"), Some(b"1".to_vec()));
        assert_eq!(value(&mut ks, b"b"), Some(b"after the restart".to_vec()));
        assert!(undecided.is_empty());
        assert_eq!(commits, HashSet::from([T1]));
    }

    #[test]
    fn ended_parts_wait_for_a_commit_here_or_elsewhere() {
        let mut ks = Keyspace::with_separator(b':');
        let mut r = TxnReplay::default();
        // Two parts of T1 (a transaction of two steps), committed later in this log.
        for (k, v) in [(b"x", b"1"), (b"y", b"2")] {
            r.record(&mut ks, &Record::TxnBegin { txn: T1 });
            r.record(&mut ks, &put(k, v));
            r.record(&mut ks, &Record::TxnEnd { txn: T1 });
        }
        r.record(&mut ks, &put(b"other", b"o"));
        // T2's part ends here; its commit is in another shard's log, or nowhere.
        r.record(&mut ks, &Record::TxnBegin { txn: T2 });
        r.record(&mut ks, &put(b"z", b"3"));
        r.record(&mut ks, &Record::TxnEnd { txn: T2 });
        r.record(&mut ks, &Record::TxnCommit { txn: T1 });
        let (undecided, _) = r.finish();
        assert_eq!(value(&mut ks, b"x"), Some(b"1".to_vec()));
        assert_eq!(value(&mut ks, b"y"), Some(b"2".to_vec()));
        assert_eq!(value(&mut ks, b"other"), Some(b"o".to_vec()));
        assert_eq!(value(&mut ks, b"z"), None);
        assert_eq!(undecided.len(), 1);
        assert_eq!(undecided[0].txn, T2);
        apply_part(&mut ks, &undecided[0]);
        assert_eq!(value(&mut ks, b"z"), Some(b"3".to_vec()));
    }
}
