//! A shard: one hash range of one partition, with its keyspace, its log and its snapshot
//! segments, all in its own directory `<data-dir>/<partition-dir>/<number>/`:
//! ```text
//! meta                 identity: partition, number, hash range (checksummed)
//! seg-<lsn>.rkyv       snapshot of the keyspace at <lsn> (newest valid one is used)
//! wal-<seq>.log        log files in order; records carry consecutive LSNs across files
//! ```
//! Recovery = newest segment + replay of every later record. A shard whose files are damaged
//! does not serve (every op gets `ShardFailed` naming file and offset); the others do.
//!
//! Invariant: a write is acknowledged (per fsync policy) only after its record is appended to
//! the log; with `always`, only after the fdatasync covering it.
//! Invariant: a segment is visible under its final name only after its bytes are synced; the
//! log files it replaces are removed only after that rename is synced.

pub mod segment;

use crate::clock::Clock;
use crate::error::{EngineError, Result};
use crate::keyspace::{incr_float_value, set_range_value, Keyspace, LogSink, SetOptions};
use crate::log::reader::{read_log, LogEnd};
use crate::log::record::{Record, KEY_LEN_MAX};
use crate::log::writer::{FsyncPolicy, Wal, WAL_PREALLOC_BYTES};
use crate::migration::{AccessHistogram, Gate, MigrationBatch, Outgoing};
use crate::ops::{Op, OpKind, Reply};
use crate::routing::{key_position, stable_hash};
use crate::storage::{read_all, Storage, StorageFile, IO_ALIGN};
use segment::SegmentEntry;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

const META_MAGIC: &[u8; 8] = b"SCMETA01";
const META_VERSION: u32 = 1;
/// A segment write is issued once this many bytes are buffered.
const SEGMENT_WRITE_BYTES: usize = 1024 * 1024;

/// Who a shard is: a partition, a number within it, and the inclusive range of key positions
/// it owned when it was created. The shard map, not this file, says what it owns now (a
/// merge widens a range without rewriting `meta`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardMeta {
    pub partition: Vec<u8>,
    pub number: u64,
    pub range_lo: u64,
    pub range_hi: u64,
}

impl ShardMeta {
    /// The first shard of a partition, owning the whole hash space.
    pub fn whole(partition: &[u8]) -> Self {
        ShardMeta { partition: partition.to_vec(), number: 0, range_lo: 0, range_hi: u64::MAX }
    }

    pub fn contains(&self, position: u64) -> bool {
        (self.range_lo..=self.range_hi).contains(&position)
    }

    /// A readable name for logs and errors: `user/0`.
    pub fn name(&self) -> String {
        format!("{}/{}", partition_display(&self.partition), self.number)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(IO_ALIGN);
        out.extend_from_slice(META_MAGIC);
        out.extend_from_slice(&META_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.partition.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&self.range_lo.to_le_bytes());
        out.extend_from_slice(&self.range_hi.to_le_bytes());
        out.extend_from_slice(&self.partition);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(crate::storage::align_up(out.len() as u64) as usize, 0);
        out
    }

    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |offset: u64, reason: &str| EngineError::Corrupt {
            path: path.to_owned(),
            offset,
            reason: reason.to_owned(),
        };
        if bytes.len() < 44 || &bytes[0..8] != META_MAGIC {
            return Err(corrupt(0, "not a shard meta file"));
        }
        let plen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        if plen > crate::routing::PARTITION_LEN_MAX || bytes.len() < 44 + plen {
            return Err(corrupt(12, "bad partition length"));
        }
        let body = &bytes[..40 + plen];
        let expected = u32::from_le_bytes(bytes[40 + plen..44 + plen].try_into().unwrap());
        let got = crc32fast::hash(body);
        if expected != got {
            return Err(EngineError::ChecksumMismatch {
                path: path.to_owned(),
                offset: 0,
                expected,
                got,
            });
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
        Ok(ShardMeta {
            partition: bytes[40..40 + plen].to_vec(),
            number: u64_at(16),
            range_lo: u64_at(24),
            range_hi: u64_at(32),
        })
    }
}

/// A partition name as people read it: UTF-8 if it is, else hex; the default one is `(default)`.
pub fn partition_display(partition: &[u8]) -> String {
    if partition.is_empty() {
        return "(default)".into();
    }
    match std::str::from_utf8(partition) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_owned(),
        _ => partition.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The directory name of a partition: a filesystem-safe prefix of its name plus its hash, so
/// any bytes map to a unique, portable name.
pub fn partition_dir_name(partition: &[u8]) -> String {
    let readable: String = partition
        .iter()
        .take(40)
        .map(|&b| if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' { b as char } else { '_' })
        .collect();
    let readable = if partition.is_empty() { "_default".to_owned() } else { readable };
    format!("{readable}-{:016x}", stable_hash(partition))
}

/// The directory of a shard.
pub fn shard_dir(data_dir: &Path, meta: &ShardMeta) -> PathBuf {
    data_dir.join(partition_dir_name(&meta.partition)).join(meta.number.to_string())
}

/// Settings of a shard.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub fsync: FsyncPolicy,
    /// A snapshot is taken once the log has grown by this much and by at least the size of
    /// the last segment (so a big dataset is not rewritten for a little log).
    pub snapshot_min_wal_bytes: u64,
    /// Space reserved ahead in each log file.
    pub wal_prealloc_bytes: u64,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            fsync: FsyncPolicy::EverySec,
            snapshot_min_wal_bytes: 64 * 1024 * 1024,
            wal_prealloc_bytes: WAL_PREALLOC_BYTES,
        }
    }
}

/// Per-shard counters for the health monitor and the predictor.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub deletes: Cell<u64>,
    pub others: Cell<u64>,
    pub snapshots: Cell<u64>,
    /// Operations per second over the last rate period (`update_rate`).
    pub ops_per_sec: Cell<f64>,
    rate_ops: Cell<u64>,
    rate_at_ms: Cell<u64>,
}

impl ShardStats {
    fn count(&self, kind: OpKind) {
        let c = match kind {
            OpKind::Read => &self.reads,
            OpKind::Write => &self.writes,
            OpKind::Delete => &self.deletes,
            OpKind::Other => &self.others,
        };
        c.set(c.get() + 1);
    }

    pub fn total_ops(&self) -> u64 {
        self.reads.get() + self.writes.get() + self.deletes.get() + self.others.get()
    }

    /// Recomputes `ops_per_sec` if at least `period_ms` passed since the last time.
    pub fn update_rate(&self, now_ms: u64, period_ms: u64) {
        let since = now_ms.saturating_sub(self.rate_at_ms.get());
        if since < period_ms {
            return;
        }
        let total = self.total_ops();
        if self.rate_at_ms.get() != 0 {
            let ops = total - self.rate_ops.get();
            self.ops_per_sec.set(ops as f64 * 1000.0 / since as f64);
        }
        self.rate_ops.set(total);
        self.rate_at_ms.set(now_ms);
    }
}

struct WalSink<'a, F: StorageFile> {
    wal: &'a Wal<F>,
    last_lsn: Option<u64>,
}

impl<F: StorageFile> LogSink for WalSink<'_, F> {
    fn log(&mut self, record: &Record<'_>) {
        // The shard checked `failure()` before executing, and nothing in between can fail it.
        let lsn = self.wal.append(record).expect("append to a log that was healthy a moment ago");
        self.last_lsn = Some(lsn);
    }
}

fn wal_name(seq: u64) -> String {
    format!("wal-{seq:010}.log")
}

fn segment_name(lsn: u64) -> String {
    format!("seg-{lsn:020}.rkyv")
}

fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

/// One shard.
pub struct Shard<S: Storage> {
    meta: ShardMeta,
    dir: PathBuf,
    storage: S,
    config: ShardConfig,
    clock: Rc<dyn Clock>,
    keyspace: RefCell<Keyspace>,
    /// `None` when the shard failed to open.
    wal: Option<Wal<S::File>>,
    failure: Option<EngineError>,
    wal_seq: Cell<u64>,
    segment_len: Cell<u64>,
    snapshot_running: Cell<bool>,
    /// A background log write is scheduled (at most one at a time).
    write_scheduled: Cell<bool>,
    /// The inclusive range of key positions this shard owns now.
    range: Cell<(u64, u64)>,
    /// The keyspace may hold keys outside `range`: a range moving in (merge) or moved out and
    /// not yet removed. Counting and iteration then filter by position.
    foreign: Cell<bool>,
    /// The range being given away, while a migration runs.
    outgoing: RefCell<Option<Outgoing>>,
    access: RefCell<AccessHistogram>,
    pub stats: ShardStats,
}

impl<S: Storage> Shard<S> {
    pub fn meta(&self) -> &ShardMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_serving(&self) -> bool {
        self.failure.is_none()
    }

    pub fn failure(&self) -> Option<&EngineError> {
        self.failure.as_ref()
    }

    /// Keys held, those outside the owned range included (see `owned_key_count`).
    pub fn key_count(&self) -> usize {
        self.keyspace.borrow().len()
    }

    /// Keys in the owned range.
    pub fn owned_key_count(&self) -> usize {
        if !self.foreign.get() {
            return self.key_count();
        }
        self.keyspace.borrow().iter().filter(|(k, _)| self.owns_key(k)).count()
    }

    /// The inclusive range of key positions owned now.
    pub fn range(&self) -> (u64, u64) {
        self.range.get()
    }

    pub fn owns(&self, position: u64) -> bool {
        let (lo, hi) = self.range.get();
        (lo..=hi).contains(&position)
    }

    /// Whether `key` is in the owned range (always true unless the shard holds foreign keys).
    pub fn owns_key(&self, key: &[u8]) -> bool {
        !self.foreign.get() || self.owns(key_position(key))
    }

    /// Marks the keyspace as possibly holding keys outside the range (after recovery of a
    /// shard whose range is not the whole space); `drop_foreign` then checks every key.
    pub fn assume_foreign(&self) {
        self.foreign.set(true);
    }

    pub fn holds_foreign_keys(&self) -> bool {
        self.foreign.get()
    }

    /// Sets the owned range (from the shard map); keys outside it become foreign, to be
    /// removed by `drop_foreign`.
    pub fn set_range(&self, lo: u64, hi: u64) {
        assert!(lo <= hi);
        let (old_lo, old_hi) = self.range.get();
        if (old_lo, old_hi) == (lo, hi) {
            return;
        }
        if lo > old_lo || hi < old_hi {
            self.foreign.set(true);
        }
        self.range.set((lo, hi));
        *self.access.borrow_mut() = AccessHistogram::new(lo, hi);
    }

    /// Accesses counted since the range last changed.
    pub fn access_total(&self) -> u64 {
        self.access.borrow().total()
    }

    /// Where a split of this shard should cut its range (load median); `None` if it cannot
    /// be split (a single position).
    pub fn split_point(&self) -> Option<u64> {
        let (lo, hi) = self.range.get();
        self.access.borrow().split_point(lo, hi)
    }

    pub fn used_bytes(&self) -> u64 {
        self.keyspace.borrow().used_bytes()
    }

    pub fn wal(&self) -> Option<&Wal<S::File>> {
        self.wal.as_ref()
    }

    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.config.fsync
    }

    /// Read access to the keyspace (SCAN, KEYS, RANDOMKEY, snapshots in tests).
    pub fn with_keyspace<T>(&self, f: impl FnOnce(&mut Keyspace) -> T) -> T {
        f(&mut self.keyspace.borrow_mut())
    }

    /// Creates a new, empty shard on disk.
    pub async fn create(
        storage: S,
        data_dir: &Path,
        meta: ShardMeta,
        config: ShardConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Self> {
        let dir = shard_dir(data_dir, &meta);
        storage.create_dir_all(&dir)?;
        let meta_path = dir.join("meta");
        let tmp = dir.join("meta.tmp");
        let f = storage.open_rw(&tmp, true).await?;
        f.write_at(0, &meta.encode()).await?;
        f.sync().await?;
        f.close().await?;
        storage.rename(&tmp, &meta_path).await?;
        let (wal_file, path) = new_wal_file(&storage, &dir, 1, config.wal_prealloc_bytes).await?;
        storage.sync_dir(&dir).await?;
        let partition_dir = dir.parent().expect("shard dir has a parent");
        storage.sync_dir(partition_dir).await?;
        storage.sync_dir(partition_dir.parent().expect("partition dir has a parent")).await?;
        let wal = Wal::new(wal_file, path, 1, config.wal_prealloc_bytes);
        let shard = Shard::empty(meta, dir, storage, config, clock);
        shard.wal_seq.set(1);
        Ok(Shard { wal: Some(wal), ..shard })
    }

    /// A shard with an empty keyspace and no log yet (the common part of create and open).
    fn empty(
        meta: ShardMeta,
        dir: PathBuf,
        storage: S,
        config: ShardConfig,
        clock: Rc<dyn Clock>,
    ) -> Self {
        let (lo, hi) = (meta.range_lo, meta.range_hi);
        Shard {
            range: Cell::new((lo, hi)),
            access: RefCell::new(AccessHistogram::new(lo, hi)),
            meta,
            dir,
            storage,
            config,
            clock,
            keyspace: RefCell::new(Keyspace::new()),
            wal: None,
            failure: None,
            wal_seq: Cell::new(0),
            segment_len: Cell::new(0),
            snapshot_running: Cell::new(false),
            write_scheduled: Cell::new(false),
            foreign: Cell::new(false),
            outgoing: RefCell::new(None),
            stats: ShardStats::default(),
        }
    }

    /// Opens a shard from its directory, recovering its keyspace. Damage does not make this
    /// fail: the shard comes back not serving, with the reason (unless even its identity is
    /// unreadable, which is an error).
    pub async fn open(
        storage: S,
        dir: PathBuf,
        config: ShardConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Self> {
        let meta_path = dir.join("meta");
        let meta_file = storage.open_rw(&meta_path, false).await?;
        let meta = ShardMeta::decode(&read_all(&meta_file).await?, &meta_path)?;
        meta_file.close().await?;
        let mut shard = Shard::empty(meta, dir, storage, config, clock);
        if let Err(e) = shard.recover().await {
            tracing::error!(shard = %shard.meta.name(), error = %e, "shard is not serving");
            shard.keyspace = RefCell::new(Keyspace::new());
            shard.failure =
                Some(EngineError::ShardFailed { shard: shard.meta.name(), reason: e.to_string() });
        }
        Ok(shard)
    }

    async fn recover(&mut self) -> Result<()> {
        let names = self.storage.list_dir(&self.dir)?;
        for name in names.iter().filter(|n| n.ends_with(".tmp")) {
            self.storage.remove(&self.dir.join(name)).await?;
        }
        let mut segments: Vec<u64> =
            names.iter().filter_map(|n| parse_numbered(n, "seg-", ".rkyv")).collect();
        segments.sort_unstable();
        let mut wals: Vec<u64> =
            names.iter().filter_map(|n| parse_numbered(n, "wal-", ".log")).collect();
        wals.sort_unstable();

        let mut keyspace = Keyspace::new();
        let mut segment_lsn = 0;
        if let Some(&lsn) = segments.last() {
            let path = self.dir.join(segment_name(lsn));
            let file = self.storage.open_rw(&path, false).await?;
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
            self.segment_len.set(bytes.len() as u64);
        }

        let mut last_lsn: Option<u64> = None;
        let mut torn: Option<(PathBuf, u64)> = None;
        let mut empty_files = Vec::new();
        for &seq in &wals {
            let path = self.dir.join(wal_name(seq));
            let file = self.storage.open_rw(&path, false).await?;
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
                    keyspace.apply_record(record);
                }
            });
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
                    tracing::warn!(path = %path.display(), offset, "truncating a torn log tail");
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
        if let Some((path, offset)) = torn {
            let file = self.storage.open_rw(&path, false).await?;
            file.truncate(offset).await?;
            file.sync().await?;
            file.close().await?;
        }
        for path in &empty_files {
            self.storage.remove(path).await?;
        }
        let next_lsn = last_lsn.unwrap_or(0).max(segment_lsn) + 1;
        let seq = wals.last().copied().unwrap_or(0) + 1;
        let (file, path) =
            new_wal_file(&self.storage, &self.dir, seq, self.config.wal_prealloc_bytes).await?;
        self.storage.sync_dir(&self.dir).await?;
        self.wal = Some(Wal::new(file, path, next_lsn, self.config.wal_prealloc_bytes));
        self.wal_seq.set(seq);
        *self.keyspace.get_mut() = keyspace;
        Ok(())
    }

    fn serving_wal(&self) -> Result<&Wal<S::File>> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        Ok(self.wal.as_ref().expect("a serving shard has a log"))
    }

    /// Executes `op` against memory and the log; returns the reply and the LSN to wait for
    /// (before replying) when the fsync policy is `always`.
    pub fn execute(&self, op: Op) -> Result<(Reply, Option<u64>)> {
        let position = key_position(op.key());
        self.execute_at(op, position)
    }

    /// `execute`, with the key's position already computed by the router.
    pub fn execute_at(&self, op: Op, position: u64) -> Result<(Reply, Option<u64>)> {
        let wal = self.serving_wal()?;
        let kind = op.kind();
        debug_assert!(self.owns(position), "{} got a key outside its range", self.meta.name());
        if op.key().len() > KEY_LEN_MAX {
            return Err(EngineError::KeyTooLarge {
                len: op.key().len() as u64,
                max: KEY_LEN_MAX as u64,
            });
        }
        if kind != OpKind::Read {
            if let Some(reason) = wal.failure() {
                return Err(EngineError::PreviousIo { shard: self.meta.name(), reason });
            }
        }
        self.stats.count(kind);
        self.access.borrow_mut().record(position);
        if kind != OpKind::Read {
            if let Some(out) = self.outgoing.borrow_mut().as_mut() {
                if out.contains(position) {
                    out.dirty.insert(Rc::from(op.key()));
                }
            }
        }
        let now = self.clock.now_ms();
        let mut sink = WalSink { wal, last_lsn: None };
        let mut ks = self.keyspace.borrow_mut();
        let reply = match op {
            Op::Get { key } => ks.get(&key, now).map_or(Reply::Nil, |v| Reply::Value(v.to_vec())),
            Op::Exists { key } => Reply::Bool(ks.exists(&key, now)),
            Op::Ttl { key } => Reply::Ttl(ks.ttl(&key, now)),
            Op::Set { key, value, condition, expiry, return_old } => {
                let options = SetOptions { condition, expiry, return_old };
                let o = ks.set(&key, value, options, now, &mut sink)?;
                Reply::Set { applied: o.applied, old: o.old }
            }
            Op::Del { key } => Reply::Bool(ks.del(&key, now, &mut sink)),
            Op::IncrBy { key, delta } => Reply::Int(ks.incr_by(&key, delta, now, &mut sink)?),
            Op::Append { key, suffix } => {
                Reply::Int(ks.append(&key, &suffix, now, &mut sink)? as i64)
            }
            Op::Expire { key, at_ms, condition } => {
                Reply::Bool(ks.expire(&key, at_ms, condition, now, &mut sink))
            }
            Op::Persist { key } => Reply::Bool(ks.persist(&key, now, &mut sink)),
            Op::GetDel { key } => {
                ks.get_del(&key, now, &mut sink).map_or(Reply::Nil, |v| Reply::Value(v.to_vec()))
            }
            Op::GetEx { key, expiry } => ks
                .get_ex(&key, expiry, now, &mut sink)
                .map_or(Reply::Nil, |v| Reply::Value(v.to_vec())),
            Op::StrLen { key } => Reply::Int(ks.strlen(&key, now) as i64),
            Op::GetRange { key, start, end } => Reply::Value(ks.get_range(&key, start, end, now)),
            Op::SetRange { key, offset, value } => {
                let len =
                    ks.update(&key, now, &mut sink, |cur| set_range_value(cur, offset, &value))?;
                Reply::Int(len.unwrap_or_else(|| ks.strlen(&key, now)) as i64)
            }
            Op::IncrByFloat { key, delta } => {
                let mut out = Vec::new();
                ks.update(&key, now, &mut sink, |cur| {
                    out = incr_float_value(cur, delta)?;
                    Ok(Some(out.clone()))
                })?;
                Reply::Value(out)
            }
        };
        // Under `always` no reply may reveal state that is not durable yet: a write waits for
        // its own record, and a read (or a write that changed nothing, such as SET NX on an
        // existing key) waits for the records it observed. Redis likewise replies only after
        // the fsync of the event-loop turn. After a failed log write, reads still answer.
        let wait = match self.config.fsync {
            FsyncPolicy::Always if wal.failure().is_none() => {
                let last = wal.last_lsn();
                (last > wal.durable_lsn()).then_some(last)
            }
            _ => None,
        };
        Ok((reply, wait))
    }

    /// Ok if the shard accepts writes now (serving, and its log has not failed).
    pub fn check_writable(&self) -> Result<()> {
        let wal = self.serving_wal()?;
        match wal.failure() {
            Some(reason) => Err(EngineError::PreviousIo { shard: self.meta.name(), reason }),
            None => Ok(()),
        }
    }

    /// Removes every key of the shard (FLUSHALL); returns the LSN to wait for.
    pub fn clear(&self) -> Result<Option<u64>> {
        let wal = self.serving_wal()?;
        if let Some(reason) = wal.failure() {
            return Err(EngineError::PreviousIo { shard: self.meta.name(), reason });
        }
        let mut sink = WalSink { wal, last_lsn: None };
        self.keyspace.borrow_mut().clear(&mut sink);
        if let Some(out) = self.outgoing.borrow_mut().as_mut() {
            out.cleared = true;
            out.dirty.clear();
        }
        Ok(match self.config.fsync {
            FsyncPolicy::Always => sink.last_lsn,
            _ => None,
        })
    }

    /// Waits until the record `lsn` is durable.
    pub async fn wait_durable(&self, lsn: u64) -> Result<()> {
        let wal = self.serving_wal()?;
        wal.sync_to(lsn)
            .await
            .map_err(|e| EngineError::PreviousIo { shard: self.meta.name(), reason: e.to_string() })
    }

    /// Writes buffered records, and syncs them if `sync` (timers, shutdown).
    pub async fn flush(&self, sync: bool) -> Result<()> {
        match &self.wal {
            Some(wal) if self.failure.is_none() => wal.flush(sync).await,
            _ => Ok(()),
        }
    }

    /// Whether a background log write should be started now: at least `batch_bytes` are
    /// unwritten and none is scheduled. A `true` marks one scheduled; the writer calls
    /// `background_write`.
    pub fn schedule_background_write(&self, batch_bytes: usize) -> bool {
        match &self.wal {
            Some(wal) if self.failure.is_none() && !self.write_scheduled.get() => {
                let due = wal.unwritten_bytes() >= batch_bytes;
                self.write_scheduled.set(due);
                due
            }
            _ => false,
        }
    }

    /// The write `schedule_background_write` asked for (no sync).
    pub async fn background_write(&self) -> Result<()> {
        let r = self.flush(false).await;
        self.write_scheduled.set(false);
        r
    }

    /// Active expiry: removes up to `budget` expired keys.
    pub fn remove_expired(&self, budget: usize) -> usize {
        if self.failure.is_some() {
            return 0;
        }
        self.keyspace.borrow_mut().remove_expired(self.clock.now_ms(), budget)
    }

    /// Starts giving away `lo..=hi`: records writes to it from now on and returns its entries
    /// as of now (shared, cheap). Nothing awaits in between, so the two form one cut.
    pub fn begin_outgoing(
        &self,
        lo: u64,
        hi: u64,
    ) -> Vec<(crate::keyspace::Key, crate::keyspace::Entry)> {
        let mut out = self.outgoing.borrow_mut();
        assert!(out.is_none(), "{}: one outgoing migration at a time", self.meta.name());
        *out = Some(Outgoing::new(lo, hi));
        let ks = self.keyspace.borrow();
        ks.iter()
            .filter(|(k, _)| (lo..=hi).contains(&key_position(k)))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    }

    /// The range being given away, if a migration runs.
    pub fn outgoing_range(&self) -> Option<(u64, u64)> {
        self.outgoing.borrow().as_ref().map(|o| (o.lo, o.hi))
    }

    pub fn is_migrating(&self) -> bool {
        self.outgoing.borrow().is_some()
    }

    /// Keys of the outgoing range written since the last delta.
    pub fn dirty_len(&self) -> usize {
        self.outgoing.borrow().as_ref().map_or(0, |o| o.dirty.len() + o.cleared as usize)
    }

    /// The next delta batch: the current state (value or deletion) of up to `entries_max`
    /// dirty keys or about `bytes_max` bytes of them, whichever comes first; the keys taken
    /// are no longer dirty.
    pub fn take_delta(&self, entries_max: usize, bytes_max: usize) -> MigrationBatch {
        let mut guard = self.outgoing.borrow_mut();
        let out = guard.as_mut().expect("take_delta without an outgoing migration");
        let mut batch = MigrationBatch { clear_range: out.cleared, ..Default::default() };
        out.cleared = false;
        let now = self.clock.now_ms();
        let ks = self.keyspace.borrow();
        let mut bytes = 0;
        let mut taken = Vec::new();
        for key in out.dirty.iter() {
            if taken.len() >= entries_max.max(1) || (bytes >= bytes_max && !taken.is_empty()) {
                break;
            }
            bytes += key.len();
            match ks.peek_live(key, now) {
                Some(e) => {
                    bytes += e.value.len();
                    batch.puts.push(crate::shard::segment::SegmentEntry {
                        key: key.to_vec(),
                        value: e.value.to_vec(),
                        expire_at_ms: e.expire_at_ms,
                    })
                }
                None => batch.deletes.push(key.to_vec()),
            }
            taken.push(key.clone());
        }
        for key in taken {
            out.dirty.remove(&key);
        }
        batch
    }

    /// Holds every request for the outgoing range until the cutover ends.
    pub fn pause_outgoing(&self) -> Rc<Gate> {
        let mut guard = self.outgoing.borrow_mut();
        let out = guard.as_mut().expect("pause without an outgoing migration");
        out.paused_at.get_or_insert_with(std::time::Instant::now);
        out.paused.get_or_insert_with(|| Rc::new(Gate::default())).clone()
    }

    /// The gate to wait on if `position` is in a paused outgoing range.
    #[inline]
    pub fn paused_gate(&self, position: u64) -> Option<Rc<Gate>> {
        let guard = self.outgoing.borrow();
        let out = guard.as_ref()?;
        out.paused.as_ref().filter(|_| out.contains(position)).cloned()
    }

    /// Ends the outgoing migration (committed or abandoned) and releases paused requests,
    /// which then route by the current map.
    /// Returns how long the range was paused, if it was.
    pub fn end_outgoing(&self) -> Option<std::time::Duration> {
        let out = self.outgoing.borrow_mut().take()?;
        if let Some(gate) = out.paused {
            gate.open();
        }
        out.paused_at.map(|t| t.elapsed())
    }

    /// Applies a migration batch for `lo..=hi` through the log. The keys stay foreign until
    /// the map gives this shard the range.
    pub fn apply_batch(&self, batch: MigrationBatch, lo: u64, hi: u64) -> Result<()> {
        self.check_writable()?;
        let wal = self.serving_wal()?;
        let (own_lo, own_hi) = self.range.get();
        if lo < own_lo || hi > own_hi {
            self.foreign.set(true);
        }
        let mut sink = WalSink { wal, last_lsn: None };
        let mut ks = self.keyspace.borrow_mut();
        if batch.clear_range {
            let doomed: Vec<_> = ks
                .iter()
                .filter(|(k, _)| (lo..=hi).contains(&key_position(k)))
                .map(|(k, _)| k.clone())
                .collect();
            for key in doomed {
                ks.remove_logged(&key, &mut sink);
            }
        }
        for e in batch.puts {
            assert!((lo..=hi).contains(&key_position(&e.key)), "batch entry outside its range");
            ks.restore(&e.key, e.value, e.expire_at_ms, &mut sink);
        }
        for key in batch.deletes {
            ks.remove_logged(&key, &mut sink);
        }
        Ok(())
    }

    /// Removes (logged) every key outside the owned range, yielding between batches; after
    /// it the shard holds no foreign keys.
    pub async fn drop_foreign(&self) -> Result<usize> {
        const DROP_BATCH_KEYS: usize = 1024;
        if !self.foreign.get() {
            return Ok(0);
        }
        let pass = std::time::Instant::now();
        let doomed: Vec<_> = self
            .keyspace
            .borrow()
            .iter()
            .filter(|(k, _)| !self.owns(key_position(k)))
            .map(|(k, _)| k.clone())
            .collect();
        tracing::debug!(shard = %self.meta.name(), keys = doomed.len(),
            us = pass.elapsed().as_micros() as u64, "foreign keys collected (one pass)");
        for batch in doomed.chunks(DROP_BATCH_KEYS) {
            {
                let wal = self.serving_wal()?;
                let mut ks = self.keyspace.borrow_mut();
                if self.check_writable().is_ok() {
                    let mut sink = WalSink { wal, last_lsn: None };
                    for key in batch {
                        ks.remove_logged(key, &mut sink);
                    }
                } else {
                    // The log has failed: forget them in memory only; recovery drops them
                    // again by range.
                    for key in batch {
                        ks.remove_logged(key, &mut crate::keyspace::NoLog);
                    }
                }
            }
            glommio::yield_if_needed().await;
        }
        self.foreign.set(false);
        Ok(doomed.len())
    }

    /// Whether the log has grown enough to be worth a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        match &self.wal {
            Some(wal) if self.failure.is_none() && !self.snapshot_running.get() => {
                let grown = wal.bytes_since_rotation();
                grown >= self.config.snapshot_min_wal_bytes && grown >= self.segment_len.get()
            }
            _ => false,
        }
    }

    /// Writes a snapshot segment of the keyspace and removes the log files it makes obsolete.
    /// Foreground traffic continues meanwhile: the keyspace is captured by sharing reference
    /// counts at the rotation point, and the encoding yields between chunks.
    pub async fn snapshot(&self) -> Result<()> {
        let wal = self.serving_wal()?;
        if self.snapshot_running.replace(true) {
            return Ok(());
        }
        let result = self.snapshot_inner(wal).await;
        self.snapshot_running.set(false);
        if let Err(e) = &result {
            tracing::error!(shard = %self.meta.name(), error = %e, "snapshot failed");
        }
        result
    }

    async fn snapshot_inner(&self, wal: &Wal<S::File>) -> Result<()> {
        let seq = self.wal_seq.get() + 1;
        let (file, path) =
            new_wal_file(&self.storage, &self.dir, seq, self.config.wal_prealloc_bytes).await?;
        self.storage.sync_dir(&self.dir).await?;
        let (entries, lsn) = {
            let _lock = wal.lock().await;
            let rotated = wal.rotate(file, path, self.config.wal_prealloc_bytes);
            self.wal_seq.set(seq);
            let entries = self.keyspace.borrow().share_all();
            let lsn = wal.last_lsn();
            wal.finish_rotation(rotated).await?;
            (entries, lsn)
        };
        let tmp = self.dir.join(format!("{}.tmp", segment_name(lsn)));
        let file = self.storage.open_rw(&tmp, true).await?;
        let mut buf = Vec::with_capacity(SEGMENT_WRITE_BYTES * 2);
        let mut written = 0u64;
        segment::encode_header(lsn, &mut buf);
        let (mut chunks, total) = (0u64, entries.len() as u64);
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut iter = entries.into_iter().peekable();
        while iter.peek().is_some() {
            for (key, entry) in iter.by_ref() {
                chunk_bytes += key.len() + entry.value.len();
                chunk.push(SegmentEntry {
                    key: key.to_vec(),
                    value: entry.value.to_vec(),
                    expire_at_ms: entry.expire_at_ms,
                });
                if chunk.len() >= segment::CHUNK_ENTRIES_MAX
                    || chunk_bytes >= segment::CHUNK_BYTES_TARGET
                {
                    break;
                }
            }
            segment::encode_chunk(std::mem::take(&mut chunk), &mut buf);
            chunk_bytes = 0;
            chunks += 1;
            if buf.len() >= SEGMENT_WRITE_BYTES {
                let whole = buf.len() / IO_ALIGN * IO_ALIGN;
                file.write_at(written, &buf[..whole]).await?;
                buf.drain(..whole);
                written += whole as u64;
            }
            glommio::yield_if_needed().await;
        }
        segment::encode_footer(lsn, chunks, total, &mut buf);
        buf.resize(crate::storage::align_up(buf.len() as u64) as usize, 0);
        file.write_at(written, &buf).await?;
        written += buf.len() as u64;
        file.sync().await?;
        file.close().await?;
        let final_path = self.dir.join(segment_name(lsn));
        self.storage.rename(&tmp, &final_path).await?;
        self.storage.sync_dir(&self.dir).await?;
        self.segment_len.set(written);
        // The segment covers everything up to `lsn`: older segments and logs are obsolete.
        for name in self.storage.list_dir(&self.dir)? {
            let obsolete = parse_numbered(&name, "seg-", ".rkyv").is_some_and(|l| l < lsn)
                || parse_numbered(&name, "wal-", ".log").is_some_and(|s| s < seq);
            if obsolete {
                self.storage.remove(&self.dir.join(&name)).await?;
            }
        }
        self.storage.sync_dir(&self.dir).await?;
        self.stats.snapshots.set(self.stats.snapshots.get() + 1);
        tracing::debug!(shard = %self.meta.name(), lsn, entries = total, bytes = written, "snapshot written");
        Ok(())
    }
}

/// Removes a shard directory and everything in it (the caller syncs the parent).
pub async fn remove_shard_dir<S: Storage>(storage: &S, dir: &Path) -> Result<()> {
    // The log and segments first, `meta` last: a directory that still has `meta` is
    // recognisable as a shard's, and recovery removes unlisted ones whatever they hold.
    let mut names = storage.list_dir(dir)?;
    names.sort_by_key(|n| n == "meta");
    for name in names {
        storage.remove(&dir.join(name)).await?;
    }
    storage.sync_dir(dir).await?;
    storage.remove_dir(dir)
}

async fn new_wal_file<S: Storage>(
    storage: &S,
    dir: &Path,
    seq: u64,
    prealloc_bytes: u64,
) -> Result<(S::File, PathBuf)> {
    let path = dir.join(wal_name(seq));
    let file = storage.open_rw(&path, true).await?;
    file.preallocate(prealloc_bytes).await?;
    file.sync().await?;
    Ok((file, path))
}
