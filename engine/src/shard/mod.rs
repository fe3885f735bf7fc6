//! A shard: the keys of some ranges of the position space, with their keyspace, log and
//! snapshot segments, all in its own directory `<data-dir>/shards/<number>/`:
//! ```text
//! meta                 identity: number, and the partition if it is one's own (checksummed)
//! seg-<lsn>.rkyv       snapshot of the keyspace at <lsn> (newest valid one is used)
//! wal-<seq>.log        log files in order; records carry consecutive LSNs across files
//! ```
//! A shared shard holds many partitions (every small or cold one of its ranges); a
//! partition's own shard holds part or all of one partition. Recovery = newest segment +
//! replay of every later record (`recover`). A shard whose files are damaged does not serve
//! (every op gets `ShardFailed` naming file and offset); the others do.
//!
//! Invariant: a write is acknowledged (per fsync policy) only after its record is appended to
//! the log; with `always`, only after the fdatasync covering it.
//! Invariant: a segment is visible under its final name only after its bytes are synced; the
//! log files it replaces are removed only after that rename is synced (`snapshot`).
//! Invariant: `ranges` is what the shard map gives this shard; keys outside them (`foreign`)
//! are never served and are removed by `drop_foreign` (`migrate`).

mod meta;
mod migrate;
mod recover;
pub mod segment;
mod snapshot;
mod stats;

pub use meta::{partition_display, shard_dir, shards_dir, ShardMeta, META_MAGIC_V1, SHARDS_DIR};
pub use recover::{read_keyspace, RecoveredKeyspace, UndecidedPart};
use stats::OpSample;
pub use stats::{
    new_service_histogram, PartitionLoad, PartitionTopK, ShardStats, TickCounts,
    PARTITION_STATS_MAX, SERVICE_NS_MAX,
};

use crate::clock::Clock;
use crate::error::{EngineError, Result};
use crate::keyspace::{
    incr_float_value, set_range_value, Entry, Key, Keyspace, LogSink, SetOptions,
};
use crate::log::record::{LoggedTxn, Record, KEY_LEN_MAX};
use crate::log::writer::{FsyncPolicy, Wal, WAL_PREALLOC_BYTES};
use crate::migration::{AccessHistogram, Outgoing};
use crate::ops::{Op, Reply};
use crate::routing::{
    hash_tag, partition_of, position_of, stable_hash, Position, PARTITION_SEPARATOR_DEFAULT,
};
use crate::storage::{read_all, Storage, StorageFile};
use crate::telemetry::{AppId, ShardTick, TelemetrySwitch};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Settings of a shard.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub fsync: FsyncPolicy,
    /// A snapshot is taken once the log has grown by this much and by at least the size of
    /// the last segment (so a big dataset is not rewritten for a little log).
    pub snapshot_min_wal_bytes: u64,
    /// Space reserved ahead in each log file.
    pub wal_prealloc_bytes: u64,
    /// Where a key's partition prefix ends (it decides the key's position).
    pub partition_separator: u8,
    /// Gather telemetry's per-tick sketches (bytes, distinct keys, hot keys, applications)
    /// on every op, besides the counters that are always kept.
    pub telemetry: TelemetrySwitch,
    /// Where log fsyncs and snapshots over the latency threshold are reported.
    pub latency_events: std::sync::Arc<crate::telemetry::LatencyEvents>,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            fsync: FsyncPolicy::EverySec,
            snapshot_min_wal_bytes: 64 * 1024 * 1024,
            wal_prealloc_bytes: WAL_PREALLOC_BYTES,
            partition_separator: PARTITION_SEPARATOR_DEFAULT,
            telemetry: TelemetrySwitch::default(),
            latency_events: Default::default(),
        }
    }
}

/// A segment write is issued once this many bytes are buffered.
const SEGMENT_WRITE_BYTES: usize = 1024 * 1024;

/// A shard's files as a backup copies them (`Shard::pin_for_backup`).
#[derive(Debug, Clone)]
pub struct ShardFiles {
    pub number: u64,
    pub dir: PathBuf,
    /// File names in `dir`, each with the length to copy (`None`: all of it).
    pub files: Vec<(String, Option<u64>)>,
    /// The last LSN the copy holds: it must be durable before the copy is taken.
    pub lsn: u64,
}

struct WalSink<'a, F: StorageFile> {
    wal: &'a Wal<F>,
    last_lsn: Option<u64>,
    /// Set if an append was refused (the log had failed): the change is in memory only.
    refused: Option<String>,
}

impl<'a, F: StorageFile> WalSink<'a, F> {
    fn new(wal: &'a Wal<F>) -> Self {
        WalSink { wal, last_lsn: None, refused: None }
    }
}

impl<F: StorageFile> LogSink for WalSink<'_, F> {
    fn log(&mut self, record: &Record<'_>) {
        // Every caller checked `failure()` first (`Op::mutates` gates execution), and nothing
        // in between can fail the log; if that ever breaks, the op is reported failed, not
        // the core crashed.
        match self.wal.append(record) {
            Ok(lsn) => self.last_lsn = Some(lsn),
            Err(reason) => {
                debug_assert!(false, "append to a failed log: {reason}");
                tracing::error!(%reason, "a change reached a failed log; it is in memory only");
                self.refused = Some(reason);
            }
        }
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

/// Whether the sorted, disjoint `ranges` cover all of `lo..=hi`.
fn covers(ranges: &[(Position, Position)], lo: Position, hi: Position) -> bool {
    let mut next = lo;
    for &(a, b) in ranges {
        if b < next {
            continue;
        }
        if a > next {
            return false;
        }
        if b >= hi {
            return true;
        }
        next = b + 1;
    }
    false
}

/// The gaps between sorted, disjoint `ranges` within the whole position space.
fn gaps(ranges: &[(Position, Position)]) -> Vec<(Position, Position)> {
    let mut out = Vec::new();
    let mut next: Option<Position> = Some(0);
    for &(a, b) in ranges {
        if let Some(n) = next {
            if a > n {
                out.push((n, a - 1));
            }
        }
        next = b.checked_add(1);
    }
    if let Some(n) = next {
        out.push((n, Position::MAX));
    }
    out
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
    /// What recovery found of transactions: parts it could not decide alone, and the commits
    /// its log holds (`resolve_txns` settles them once every shard has recovered).
    recovered_txns: RefCell<(Vec<recover::UndecidedPart>, HashSet<LoggedTxn>)>,
    /// Backups copying this shard's files: while any is, a snapshot removes no file.
    backup_pins: Cell<u32>,
    /// A task that will run `snapshot` is spawned and has not started.
    snapshot_scheduled: Cell<bool>,
    /// A background log write is scheduled (at most one at a time).
    write_scheduled: Cell<bool>,
    /// The inclusive ranges of positions this shard owns now, sorted and disjoint.
    ranges: RefCell<Vec<(Position, Position)>>,
    /// The keyspace may hold keys outside `ranges`: a range moving in (merge) or moved out and
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

    pub fn number(&self) -> u64 {
        self.meta.number
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

    /// Keys held, those outside the owned ranges included (see `owned_key_count`).
    pub fn key_count(&self) -> usize {
        self.keyspace.borrow().len()
    }

    /// Keys in the owned ranges: all keys less those in the gaps between the ranges, counted
    /// through the index (so only foreign keys are walked).
    pub fn owned_key_count(&self) -> usize {
        if !self.foreign.get() {
            return self.key_count();
        }
        let ks = self.keyspace.borrow();
        let foreign: usize = gaps(&self.ranges.borrow())
            .iter()
            .map(|&(lo, hi)| ks.index().range(lo, hi).count())
            .sum();
        ks.len() - foreign
    }

    /// The inclusive ranges of positions owned now.
    pub fn ranges(&self) -> Vec<(Position, Position)> {
        self.ranges.borrow().clone()
    }

    pub fn owns(&self, position: Position) -> bool {
        let ranges = self.ranges.borrow();
        let i = ranges.partition_point(|r| r.1 < position);
        ranges.get(i).is_some_and(|r| r.0 <= position)
    }

    /// Whether `key` is in the owned ranges (always true unless the shard holds foreign keys).
    pub fn owns_key(&self, key: &[u8]) -> bool {
        !self.foreign.get() || self.owns(self.position(key))
    }

    /// The position of a key (under this shard's partition separator).
    pub fn position(&self, key: &[u8]) -> Position {
        position_of(key, self.config.partition_separator)
    }

    /// Marks the keyspace as possibly holding keys outside the ranges (after recovery);
    /// `drop_foreign` then looks in the gaps between them.
    pub fn assume_foreign(&self) {
        self.foreign.set(true);
    }

    pub fn holds_foreign_keys(&self) -> bool {
        self.foreign.get()
    }

    /// Sets the owned ranges (from the shard map); keys of ranges no longer owned become
    /// foreign, to be removed by `drop_foreign`.
    pub fn set_ranges(&self, ranges: Vec<(Position, Position)>) {
        assert!(!ranges.is_empty(), "a shard owns at least one range");
        assert!(
            ranges.windows(2).all(|w| w[0].1 < w[1].0) && ranges.iter().all(|r| r.0 <= r.1),
            "ranges sorted and disjoint"
        );
        let old = self.ranges.replace(ranges.clone());
        if old == ranges {
            return;
        }
        if !old.iter().all(|&(lo, hi)| covers(&ranges, lo, hi)) {
            self.foreign.set(true);
        }
        let (lo, hi) = (ranges[0].0, ranges[ranges.len() - 1].1);
        *self.access.borrow_mut() = AccessHistogram::new(lo, hi);
    }

    /// Accesses counted since the ranges last changed.
    pub fn access_total(&self) -> u64 {
        self.access.borrow().total()
    }

    /// Where a split of this shard should cut its range (load median); `None` if it cannot
    /// be split (a single position, or several ranges).
    pub fn split_point(&self) -> Option<Position> {
        let ranges = self.ranges.borrow();
        let [(lo, hi)] = ranges.as_slice() else { return None };
        self.access.borrow().split_point(*lo, *hi)
    }

    pub fn used_bytes(&self) -> u64 {
        self.keyspace.borrow().used_bytes()
    }

    /// Ends this shard's tick at `now_ms` (see `ShardStats::end_tick`) and describes it.
    pub fn end_tick(&self, now_ms: u64) -> ShardTick {
        let mut counts = self.stats.end_tick(now_ms);
        {
            let ks = self.keyspace.borrow();
            for l in &mut counts.partitions {
                l.keys = ks.index().partition_keys(stable_hash(&l.partition));
            }
        }
        ShardTick {
            number: self.meta.number,
            partition: self.meta.partition.clone(),
            ranges: self.ranges(),
            counts,
            keys: self.owned_key_count() as u64,
            used_bytes: self.used_bytes(),
            access: self.access.borrow().counts().to_vec(),
            failure: self.failure.as_ref().map(|e| e.to_string()),
            migrating: self.outgoing.borrow().is_some(),
        }
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

    /// Creates a new, empty shard on disk, owning `ranges`.
    pub async fn create(
        storage: S,
        data_dir: &Path,
        meta: ShardMeta,
        ranges: Vec<(Position, Position)>,
        config: ShardConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Self> {
        let dir = shard_dir(data_dir, meta.number);
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
        let parent = dir.parent().expect("shard dir has a parent");
        storage.sync_dir(parent).await?;
        storage.sync_dir(parent.parent().expect("the shards folder has a parent")).await?;
        let wal = Wal::new(wal_file, path, 1, config.wal_prealloc_bytes);
        let shard = Shard::empty(meta, dir, ranges, storage, config, clock);
        shard.wal_seq.set(1);
        Ok(Shard { wal: Some(wal), ..shard })
    }

    /// A shard with an empty keyspace and no log yet (the common part of create and open).
    fn empty(
        meta: ShardMeta,
        dir: PathBuf,
        ranges: Vec<(Position, Position)>,
        storage: S,
        config: ShardConfig,
        clock: Rc<dyn Clock>,
    ) -> Self {
        let (lo, hi) = (ranges[0].0, ranges[ranges.len() - 1].1);
        let stats = ShardStats::starting_at(clock.now_ms());
        Shard {
            ranges: RefCell::new(ranges),
            access: RefCell::new(AccessHistogram::new(lo, hi)),
            meta,
            dir,
            storage,
            keyspace: RefCell::new(Keyspace::with_separator(config.partition_separator)),
            config,
            clock,
            wal: None,
            failure: None,
            wal_seq: Cell::new(0),
            segment_len: Cell::new(0),
            snapshot_running: Cell::new(false),
            recovered_txns: RefCell::default(),
            backup_pins: Cell::new(0),
            snapshot_scheduled: Cell::new(false),
            write_scheduled: Cell::new(false),
            foreign: Cell::new(false),
            outgoing: RefCell::new(None),
            stats,
        }
    }

    /// Opens a shard from its directory, recovering its keyspace, owning `ranges` (from the
    /// map; keys outside them are foreign). Damage does not make this fail: the shard comes
    /// back not serving, with the reason (unless even its identity is unreadable, which is an
    /// error).
    pub async fn open(
        storage: S,
        dir: PathBuf,
        ranges: Vec<(Position, Position)>,
        config: ShardConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Self> {
        let meta_path = dir.join("meta");
        let meta_file = storage.open_rw(&meta_path, false).await?;
        let meta = ShardMeta::decode(&read_all(&meta_file).await?, &meta_path)?;
        meta_file.close().await?;
        let mut shard = Shard::empty(meta, dir, ranges, storage, config, clock);
        if let Err(e) = shard.recover().await {
            tracing::error!(shard = %shard.meta.name(), error = %e, "shard is not serving");
            shard.keyspace =
                RefCell::new(Keyspace::with_separator(shard.config.partition_separator));
            shard.failure =
                Some(EngineError::ShardFailed { shard: shard.meta.name(), reason: e.to_string() });
        }
        // It may hold keys of an interrupted or finished migration.
        shard.foreign.set(true);
        Ok(shard)
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
        let position = self.position(op.key());
        self.execute_at(op, position, AppId::UNNAMED)
    }

    /// `execute`, with the key's position already computed by the router, for a client of
    /// application `app` (counted in the statistics).
    pub fn execute_at(
        &self,
        op: Op,
        position: Position,
        app: AppId,
    ) -> Result<(Reply, Option<u64>)> {
        let wal = self.serving_wal()?;
        let kind = op.kind();
        let mutates = op.mutates();
        debug_assert!(self.owns(position), "{} got a key outside its range", self.meta.name());
        if op.key().len() > KEY_LEN_MAX {
            return Err(EngineError::KeyTooLarge {
                len: op.key().len() as u64,
                max: KEY_LEN_MAX as u64,
            });
        }
        if mutates {
            if let Some(reason) = wal.failure() {
                return Err(EngineError::PreviousIo { shard: self.meta.name(), reason });
            }
            if let Some(e) = wal.no_space() {
                return Err(e);
            }
        } else if self.config.fsync == FsyncPolicy::Always
            && wal.failure().is_none()
            && wal.last_lsn() > wal.durable_lsn()
        {
            // Under `always` no reply may reveal state that is not durable, and while the disk
            // is full the records waiting cannot become so: refuse rather than show a write
            // that a crash could still take back (Redis exits here instead).
            if let Some(e) = wal.no_space() {
                return Err(e);
            }
        }
        let detail = self.config.telemetry.is_on();
        let key = op.key();
        let key_hash = match detail {
            false => 0,
            // Every key of a tag sits at the tag's hash: the sketches need the key's own.
            true if hash_tag(key).is_some() => stable_hash(key),
            true => position as u64,
        };
        let sample = OpSample {
            key,
            key_hash,
            kind,
            app,
            bytes_in: if detail { op.payload_bytes() } else { 0 },
        };
        let partition = match self.meta.partition {
            Some(_) => None,
            None => {
                let name = partition_of(key, self.config.partition_separator);
                Some(((position >> 64) as u64, name))
            }
        };
        let slot = self.stats.record(&sample, partition, detail);
        self.access.borrow_mut().record(position);
        if mutates {
            self.note_outgoing_write(op.key(), position);
        }
        let reply = self.apply(op, wal)?;
        if detail {
            self.stats.add_bytes_out(slot, reply.payload_bytes());
        }
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

    /// Runs `op` on the keyspace, logging what it changes.
    fn apply(&self, op: Op, wal: &Wal<S::File>) -> Result<Reply> {
        let now = self.clock.now_ms();
        let mut sink = WalSink::new(wal);
        let mut ks = self.keyspace.borrow_mut();
        let reply = match op {
            Op::Get { key } => ks.get(&key, now).map_or(Reply::Nil, |v| Reply::Value(v.to_vec())),
            Op::Exists { key } => Reply::Bool(ks.exists(&key, now)),
            Op::Ttl { key } => Reply::Ttl(ks.ttl(&key, now)),
            Op::ExpireTime { key } => Reply::Ttl(ks.expire_time(&key, now)),
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
            Op::Object { key } => match ks.peek_live(&key, now) {
                Some(e) => Reply::Object {
                    idle_s: e.access.idle_s(now),
                    freq: e.access.freq(now),
                    encoding: string_encoding(&e.value),
                    bytes: crate::keyspace::entry_cost(&key, &e.value),
                },
                None => Reply::Nil,
            },
            Op::Dump { key } => match ks.peek_live(&key, now) {
                Some(e) => Reply::Entry { value: e.value.to_vec(), expire_at_ms: e.expire_at_ms },
                None => Reply::Nil,
            },
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
        if let Some(reason) = sink.refused {
            return Err(EngineError::PreviousIo { shard: self.meta.name(), reason });
        }
        Ok(reply)
    }

    /// The transactions this shard's log said committed when it was recovered.
    pub fn recovered_commits(&self) -> Vec<LoggedTxn> {
        self.recovered_txns.borrow().1.iter().copied().collect()
    }

    /// After every shard has recovered: applies the parts held back whose transaction some
    /// shard's log said committed (`committed`), logging the commit here too so this log
    /// decides alone next time, and drops the others (their transaction never committed).
    /// Unless `decided` (a shard did not recover, and may hold a commit), the others are left
    /// undecided instead: not applied, and decided again at the next start.
    /// Returns the LSN to make durable before serving.
    pub fn resolve_txns(
        &self,
        committed: &HashSet<LoggedTxn>,
        decided: bool,
    ) -> Result<Option<u64>> {
        if !self.is_serving() {
            return Ok(None);
        }
        let (parts, _) = std::mem::take(&mut *self.recovered_txns.borrow_mut());
        let mut last = None;
        for part in parts {
            if !committed.contains(&part.txn) {
                match decided {
                    true => tracing::warn!(shard = %self.meta.name(), txn = ?part.txn,
                        "a transaction that did not commit before the crash: its part is dropped"),
                    false => tracing::error!(shard = %self.meta.name(), txn = ?part.txn,
                        "a transaction's part is undecided (a shard did not recover): not applied"),
                }
                continue;
            }
            recover::apply_part(&mut self.keyspace.borrow_mut(), &part);
            last = Some(self.log_marker(&Record::TxnCommit { txn: part.txn })?);
        }
        Ok(last)
    }

    /// Appends a transaction marker (`TxnBegin`, `TxnEnd`, `TxnCommit`) to the log.
    pub fn log_marker(&self, record: &Record<'_>) -> Result<u64> {
        let wal = self.serving_wal()?;
        wal.append(record)
            .map_err(|reason| EngineError::PreviousIo { shard: self.meta.name(), reason })
    }

    /// Whether `key` is here and not expired (not counted as an access).
    pub fn is_live(&self, key: &[u8]) -> bool {
        self.keyspace.borrow().peek_live(key, self.clock.now_ms()).is_some()
    }

    /// Ok if the shard accepts writes now (serving, and its log has not failed).
    pub fn check_writable(&self) -> Result<()> {
        let wal = self.serving_wal()?;
        match (wal.failure(), wal.no_space()) {
            (Some(reason), _) => Err(EngineError::PreviousIo { shard: self.meta.name(), reason }),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        }
    }

    /// What a backup copies of this shard as of now, with the shard pinned (its files stay
    /// until `unpin_backup`): the meta file, every segment, the logs before the current one
    /// whole, and the current one up to the last record appended. Synchronous, so it is one
    /// moment of the shard.
    pub fn pin_for_backup(&self) -> Result<ShardFiles> {
        let wal = self.serving_wal()?;
        let mark = wal.mark();
        let current = mark.path.file_name().expect("a log file has a name").to_string_lossy();
        let marked_seq = parse_numbered(&current, "wal-", ".log").expect("a log file's name");
        let mut files = vec![("meta".to_owned(), None)];
        for name in self.storage.list_dir(&self.dir)? {
            let segment = parse_numbered(&name, "seg-", ".rkyv").is_some();
            // Logs before the marked one; not a later one that a snapshot has created for
            // its coming rotation (it would receive writes from after the cut).
            let earlier_log = parse_numbered(&name, "wal-", ".log").is_some_and(|s| s < marked_seq);
            if segment || earlier_log {
                files.push((name, None));
            }
        }
        files.push((current.into_owned(), Some(mark.end_offset)));
        self.backup_pins.set(self.backup_pins.get() + 1);
        Ok(ShardFiles {
            number: self.meta.number,
            dir: self.dir.clone(),
            files,
            lsn: mark.last_lsn,
        })
    }

    /// Ends a backup's pin (`pin_for_backup`).
    pub fn unpin_backup(&self) {
        self.backup_pins.set(self.backup_pins.get().saturating_sub(1));
    }

    pub(crate) fn pinned_for_backup(&self) -> bool {
        self.backup_pins.get() > 0
    }

    /// Whether the log holds writes it could not write for lack of space (a flush retries).
    pub fn log_out_of_space(&self) -> bool {
        self.wal.as_ref().is_some_and(|w| w.no_space().is_some())
    }

    /// Removes every key of the shard (FLUSHALL); returns the LSN to wait for.
    pub fn clear(&self) -> Result<Option<u64>> {
        self.check_writable()?;
        let wal = self.serving_wal()?;
        let mut sink = WalSink::new(wal);
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
        let started = std::time::Instant::now();
        let synced = wal.sync_to(lsn).await;
        self.config.latency_events.observe(crate::telemetry::EVENT_LOG_FSYNC, started.elapsed());
        synced.map_err(|e| match e {
            // The log keeps the record and retries: the write's outcome is unknown.
            EngineError::NoSpace { reason, .. } => EngineError::NotDurable { reason },
            e => EngineError::PreviousIo { shard: self.meta.name(), reason: e.to_string() },
        })
    }

    /// Writes buffered records, and syncs them if `sync` (timers, shutdown).
    pub async fn flush(&self, sync: bool) -> Result<()> {
        match &self.wal {
            Some(wal) if self.failure.is_none() => {
                let started = std::time::Instant::now();
                let flushed = wal.flush(sync).await;
                if sync {
                    let took = started.elapsed();
                    self.config.latency_events.observe(crate::telemetry::EVENT_LOG_FSYNC, took);
                }
                flushed
            }
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

    /// Whether some key has expired and is still held (active expiry's to-do).
    pub fn has_expired(&self) -> bool {
        self.failure.is_none() && self.keyspace.borrow().has_expired(self.clock.now_ms())
    }

    /// Expired keys removed since the last call.
    pub fn take_expired(&self) -> u64 {
        self.keyspace.borrow_mut().take_expired()
    }

    /// Whether eviction may take keys from this shard: it serves and its log accepts writes.
    pub fn evictable(&self) -> bool {
        self.check_writable().is_ok()
    }

    /// Offers up to `n` random keys to `f` (eviction's sampling); see `Keyspace::sample`.
    pub fn sample(&self, n: usize, volatile_only: bool, f: impl FnMut(&Key, &Entry)) {
        if self.evictable() {
            self.keyspace.borrow_mut().sample(n, volatile_only, f);
        }
    }

    /// The key whose expiry comes first, with that expiry (`volatile-ttl`).
    pub fn soonest_expiring(&self) -> Option<(u64, Key)> {
        if !self.evictable() {
            return None;
        }
        self.keyspace.borrow().soonest_expiring()
    }

    /// Evicts `key` (maxmemory): logged as a delete, like DEL, so recovery and a migration in
    /// progress see it go. With `volatile_only`, a key without an expiry is left alone (it may
    /// have lost its expiry since it was sampled). Returns the bytes freed, `None` if the key
    /// is gone or was left.
    pub fn evict(&self, key: &[u8], volatile_only: bool) -> Option<u64> {
        let wal = self.serving_wal().ok()?;
        if wal.failure().is_some() {
            return None;
        }
        let mut ks = self.keyspace.borrow_mut();
        let before = ks.used_bytes();
        let entry = ks.peek(key)?;
        if volatile_only && entry.expire_at_ms == 0 {
            return None;
        }
        self.note_outgoing_write(key, ks.index().position(key));
        ks.remove_logged(key, &mut WalSink::new(wal));
        Some(before - ks.used_bytes())
    }
}

/// Redis's name for how it would store a string value (OBJECT ENCODING): an integer, a short
/// string in one allocation with its header, or a separate buffer.
fn string_encoding(value: &[u8]) -> &'static str {
    /// Redis's `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`.
    const EMBSTR_LEN_MAX: usize = 44;
    if value.len() <= 20 && crate::keyspace::parse_i64(value).is_some() {
        "int"
    } else if value.len() <= EMBSTR_LEN_MAX {
        "embstr"
    } else {
        "raw"
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
