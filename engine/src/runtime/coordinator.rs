//! Split and merge as runtime operations: the coordinator on core 0 plans a migration,
//! records it in the manifest, drives the source and target cores through its steps, commits
//! it by writing the next map, and installs that map on every core.
//!
//! Steps (each a `MigrationWork` message; the data plane is `migration`):
//! 1. intent: the manifest records the migration (the source still owns the range);
//! 2. prepare: the target core creates the new shard (split) or readies the absorber (merge);
//! 3. stream: the source streams the range and its deltas, pauses the range, sends the last
//!    delta; the target makes all of it durable;
//! 4. commit: the manifest gets the next map (epoch + 1), the only step that moves ownership;
//! 5. install: target, then source, then the other cores take the map; the source releases
//!    the paused requests, which route to the target;
//! 6. tidy: every core removes (in the background queue) the keys outside its shards' ranges,
//!    and the directory of a shard merged away.
//!
//! A failure before the commit rolls back: the source keeps the range, the target drops what it
//! received; a crash before the commit is rolled back the same way by `recover_layout`.
//! Invariant: at most one migration runs at a time (the lock on core 0), so a core has at most
//! one incoming and one outgoing range.

use crate::error::{EngineError, Result};
use crate::fault_point;
use crate::migration::{batches_of, decode_batch, encode_batch, MigrationBatch};
use crate::migration::{
    BATCH_BYTES_TARGET, BATCH_ENTRIES_MAX, DELTA_CUTOVER_KEYS, DELTA_ROUNDS_MAX,
};
use crate::placement::manifest::write_manifest;
use crate::placement::shard_map::{MigrationKind, MigrationRecord, ShardMap, ShardPlace};
use crate::runtime::{Core, CoreResult, CoreWork, ShardSummary};
use crate::shard::{partition_display, remove_shard_dir, shard_dir, Shard, ShardMeta};
use crate::storage::dma::DmaStorage;
use crate::storage::Storage;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The core that coordinates migrations.
pub const COORDINATOR_CORE: usize = 0;

/// Migration steps, sent between cores.
#[derive(Debug, Clone)]
pub enum MigrationWork {
    /// To the coordinator: split the busiest shard of a partition.
    Split { partition: Vec<u8> },
    /// To the coordinator: merge the least loaded adjacent pair of a partition.
    Merge { partition: Vec<u8> },
    /// To a source: where to cut shard `number` (its load median).
    SplitPoint { partition: Vec<u8>, number: u64 },
    /// To a target: get ready to receive `lo..=hi` into shard `number`.
    Prepare { partition: Vec<u8>, number: u64, lo: u64, hi: u64, merge: bool },
    /// To a source: stream `lo..=hi` of shard `number` to `target_core`, ending paused.
    StreamOut { partition: Vec<u8>, number: u64, lo: u64, hi: u64, target_core: usize },
    /// To a target: one encoded batch; `last` makes everything received durable. Batches of
    /// the cutover (`cutover`) run in the foreground queue, the others in the background.
    Apply { bytes: Vec<u8>, last: bool, cutover: bool },
    /// To source and target: abandon the migration (the source keeps the range).
    Abort { partition: Vec<u8>, source: u64 },
    /// To every core: the new map.
    Install(Arc<ShardMap>),
    /// To every core, after every install: remove keys outside each shard's range.
    Tidy,
    /// To the coordinator: FLUSHALL, between migrations (a migration's copy of a range must
    /// not outlive a FLUSHALL that reached its source or target first).
    FlushAll,
}

/// What a migration moved and how long it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub batches: u64,
    pub keys: u64,
    /// Encoded batch bytes sent.
    pub bytes: u64,
    /// From the intent to the end of the install.
    pub micros: u64,
    /// The new map's epoch.
    pub epoch: u64,
}

/// Engine-wide migration counters (INFO).
#[derive(Debug, Default)]
pub struct MigrationCounters {
    pub completed: AtomicU64,
    pub aborted: AtomicU64,
    pub bytes_total: AtomicU64,
    pub keys_total: AtomicU64,
    pub last_bytes: AtomicU64,
    pub last_keys: AtomicU64,
    pub last_micros: AtomicU64,
    /// How long the last cutover held requests for its range (pause to release).
    pub last_pause_micros: AtomicU64,
}

/// The shard a migration is filling on its target core.
pub(crate) struct Incoming {
    pub shard: Rc<Shard<DmaStorage>>,
    pub partition: Vec<u8>,
    pub number: u64,
    pub lo: u64,
    pub hi: u64,
    pub next_seq: u64,
    pub merge: bool,
}

fn unexpected(what: &str, r: CoreResult) -> EngineError {
    EngineError::Unavailable { reason: format!("{what} answered with {r:?}") }
}

impl Core {
    /// Splits the busiest shard of `partition` at its load median and moves the upper part to
    /// the least loaded core. Returns once the new map is installed everywhere.
    pub async fn split(&self, partition: &[u8]) -> Result<MigrationReport> {
        let work = MigrationWork::Split { partition: partition.to_vec() };
        self.to_coordinator(work).await
    }

    /// Merges the least loaded pair of adjacent shards of `partition`, moving the one with
    /// fewer keys into the other.
    pub async fn merge(&self, partition: &[u8]) -> Result<MigrationReport> {
        let work = MigrationWork::Merge { partition: partition.to_vec() };
        self.to_coordinator(work).await
    }

    /// FLUSHALL: every key of every core removed, never during a migration.
    pub async fn flush_all_data(&self) -> Result<()> {
        match self.on_core(COORDINATOR_CORE, CoreWork::Migration(MigrationWork::FlushAll)).await {
            CoreResult::Done(r) => r,
            other => Err(unexpected("flushall", other)),
        }
    }

    async fn flush_all_locked(&self) -> Result<()> {
        let _permit = self.migration_lock.acquire_permit(1).await.map_err(|_| closed())?;
        self.check_rebalance_usable()?;
        let mut first = Ok(());
        for r in self.on_every_core(CoreWork::FlushAll).await {
            if let CoreResult::Done(Err(e)) = r {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    pub fn migration_counters(&self) -> &MigrationCounters {
        &self.migrations
    }

    async fn to_coordinator(&self, work: MigrationWork) -> Result<MigrationReport> {
        match self.on_core(COORDINATOR_CORE, CoreWork::Migration(work)).await {
            CoreResult::Migrated(r) => Ok(r),
            CoreResult::Done(Err(e)) => Err(e),
            other => Err(unexpected("coordinator", other)),
        }
    }

    pub(crate) async fn run_migration_work(&self, work: MigrationWork) -> CoreResult {
        if self.draining.get() {
            return CoreResult::Done(Err(EngineError::Unavailable {
                reason: "shutting down".into(),
            }));
        }
        let done = |r: Result<()>| CoreResult::Done(r);
        match work {
            MigrationWork::Split { partition } => match self.coordinate_split(&partition).await {
                Ok(r) => CoreResult::Migrated(r),
                Err(e) => done(Err(e)),
            },
            MigrationWork::Merge { partition } => match self.coordinate_merge(&partition).await {
                Ok(r) => CoreResult::Migrated(r),
                Err(e) => done(Err(e)),
            },
            MigrationWork::SplitPoint { partition, number } => {
                match self.local_shard(&partition, number).and_then(|s| s.split_point()) {
                    Some(cut) => CoreResult::Count(cut),
                    None => done(Err(EngineError::Rebalance {
                        reason: format!(
                            "shard {}/{number} covers a single hash position and cannot be split",
                            partition_display(&partition)
                        ),
                    })),
                }
            }
            MigrationWork::Prepare { partition, number, lo, hi, merge } => {
                done(self.prepare_incoming(partition, number, lo, hi, merge).await)
            }
            MigrationWork::StreamOut { partition, number, lo, hi, target_core } => {
                match self.stream_out(&partition, number, lo, hi, target_core).await {
                    Ok(r) => CoreResult::Migrated(r),
                    Err(e) => done(Err(e)),
                }
            }
            MigrationWork::Apply { bytes, last, .. } => {
                done(self.apply_incoming(&bytes, last).await)
            }
            MigrationWork::Abort { partition, source } => {
                done(self.abort_migration(&partition, source).await)
            }
            MigrationWork::Install(map) => done(self.install_map(map).await),
            MigrationWork::Tidy => done(self.tidy().await),
            MigrationWork::FlushAll => done(self.flush_all_locked().await),
        }
    }

    pub(crate) fn local_shard(
        &self,
        partition: &[u8],
        number: u64,
    ) -> Option<Rc<Shard<DmaStorage>>> {
        self.shards.borrow().get(partition)?.iter().find(|s| s.meta().number == number).cloned()
    }

    async fn summaries(&self) -> Vec<ShardSummary> {
        let mut out = Vec::new();
        for r in self.on_every_core(CoreWork::ShardInfo).await {
            if let CoreResult::Shards(v) = r {
                out.extend(v);
            }
        }
        out
    }

    /// The core with the least measured load (then the fewest shards), other than `except`
    /// when there is another.
    fn least_loaded_core(&self, summaries: &[ShardSummary], except: usize) -> usize {
        let cores = self.config.cores;
        let load = |c: usize| {
            let mine = summaries.iter().filter(|s| s.core == c);
            let ops: f64 = mine.clone().map(|s| s.ops_per_sec).sum();
            (ops, mine.count())
        };
        (0..cores)
            .filter(|&c| c != except || cores == 1)
            .min_by(|&a, &b| {
                let (la, lb) = (load(a), load(b));
                la.0.total_cmp(&lb.0).then(la.1.cmp(&lb.1))
            })
            .expect("at least one core")
    }

    fn partition_summaries(
        summaries: &[ShardSummary],
        partition: &[u8],
    ) -> Result<Vec<ShardSummary>> {
        let mine: Vec<_> = summaries.iter().filter(|s| s.partition == partition).cloned().collect();
        if mine.is_empty() {
            return Err(EngineError::UnknownPartition { partition: partition_display(partition) });
        }
        Ok(mine)
    }

    /// What planning a split or merge of `partition` starts from, under the migration lock:
    /// every shard's summary, the partition's own, the map and the partition's placement.
    async fn plan_start(&self, partition: &[u8]) -> Result<Plan> {
        assert_eq!(self.id, COORDINATOR_CORE);
        self.check_rebalance_usable()?;
        let summaries = self.summaries().await;
        let mine = Self::partition_summaries(&summaries, partition)?;
        let map = self.shard_map();
        let entry = map.placement(partition, self.config.cores);
        Ok(Plan { summaries, mine, map, entry })
    }

    async fn coordinate_split(&self, partition: &[u8]) -> Result<MigrationReport> {
        let _permit = self.migration_lock.acquire_permit(1).await.map_err(|_| closed())?;
        let Plan { summaries, mine, map, mut entry } = self.plan_start(partition).await?;
        let cores = self.config.cores;
        let max = self
            .config
            .shards_per_partition_max
            .min(crate::placement::shard_map::SHARDS_PER_PARTITION_LIMIT);
        if entry.shards.len() >= max {
            return Err(EngineError::Rebalance {
                reason: format!(
                    "partition '{}' already has {} shards (shards-per-partition-max is {max})",
                    partition_display(partition),
                    entry.shards.len()
                ),
            });
        }
        // The busiest shard (accesses since its range last changed), widest on a tie.
        let accesses =
            |p: &ShardPlace| mine.iter().find(|s| s.number == p.number).map_or(0, |s| s.accesses);
        let source = *entry
            .shards
            .iter()
            .max_by_key(|p| (accesses(p), p.hi - p.lo))
            .expect("a partition has a shard");
        let source_core = source.core(cores);
        let work =
            MigrationWork::SplitPoint { partition: partition.to_vec(), number: source.number };
        let cut = match self.on_core(source_core, CoreWork::Migration(work)).await {
            CoreResult::Count(cut) => cut,
            CoreResult::Done(Err(e)) => return Err(e),
            other => return Err(unexpected("split point", other)),
        };
        let target_core = self.least_loaded_core(&summaries, source_core);
        let target = entry.next_number;
        entry.next_number += 1;
        let mut intent = (*map).clone();
        intent.set_partition(partition, entry);
        intent.migration = Some(MigrationRecord {
            kind: MigrationKind::Split,
            partition: partition.to_vec(),
            source: source.number,
            target,
            lo: cut,
            hi: source.hi,
            target_core: target_core as u32,
        });
        let committed =
            intent.with_split(partition, source.number, cut, target, target_core as u32);
        self.run_migration(intent, committed).await
    }

    async fn coordinate_merge(&self, partition: &[u8]) -> Result<MigrationReport> {
        let _permit = self.migration_lock.acquire_permit(1).await.map_err(|_| closed())?;
        let Plan { mine, map, entry, .. } = self.plan_start(partition).await?;
        if entry.shards.len() < 2 {
            return Err(EngineError::Rebalance {
                reason: format!(
                    "partition '{}' has only one shard: nothing to merge",
                    partition_display(partition)
                ),
            });
        }
        let stat = |p: &ShardPlace| mine.iter().find(|s| s.number == p.number);
        let load = |p: &ShardPlace| stat(p).map_or(0.0, |s| s.ops_per_sec);
        let i = (0..entry.shards.len() - 1)
            .min_by(|&a, &b| {
                let la = load(&entry.shards[a]) + load(&entry.shards[a + 1]);
                let lb = load(&entry.shards[b]) + load(&entry.shards[b + 1]);
                la.total_cmp(&lb)
            })
            .expect("two shards");
        let (low, high) = (entry.shards[i], entry.shards[i + 1]);
        let keys = |p: &ShardPlace| stat(p).map_or(0, |s| s.keys);
        // Move the smaller one.
        let (donor, absorber) = if keys(&low) < keys(&high) { (low, high) } else { (high, low) };
        let mut intent = (*map).clone();
        intent.set_partition(partition, entry.clone());
        intent.migration = Some(MigrationRecord {
            kind: MigrationKind::Merge,
            partition: partition.to_vec(),
            source: donor.number,
            target: absorber.number,
            lo: donor.lo,
            hi: donor.hi,
            target_core: absorber.core,
        });
        let committed = intent.with_merge(partition, absorber.number, donor.number);
        self.run_migration(intent, committed).await
    }

    /// Steps 1 to 6 for a planned migration (`intent` records it; `committed` is the result).
    async fn run_migration(
        &self,
        intent: ShardMap,
        committed: ShardMap,
    ) -> Result<MigrationReport> {
        let started = Instant::now();
        let m = intent.migration.clone().expect("an intent records its migration");
        let cores = self.config.cores;
        let source_core = intent
            .get(&m.partition)
            .and_then(|p| p.by_number(m.source))
            .expect("the source is mapped")
            .core(cores);
        let target_core = m.target_core as usize % cores;
        let data_dir = &self.config.data_dir;
        write_manifest(&self.storage, data_dir, &intent).await?;
        fault_point!("migrate:intent_written");
        let moved = async {
            let prepare = MigrationWork::Prepare {
                partition: m.partition.clone(),
                number: m.target,
                lo: m.lo,
                hi: m.hi,
                merge: m.kind == MigrationKind::Merge,
            };
            self.step(target_core, prepare).await?;
            fault_point!("migrate:target_prepared");
            let stream = MigrationWork::StreamOut {
                partition: m.partition.clone(),
                number: m.source,
                lo: m.lo,
                hi: m.hi,
                target_core,
            };
            let report = match self.on_core(source_core, CoreWork::Migration(stream)).await {
                CoreResult::Migrated(r) => r,
                CoreResult::Done(Err(e)) => return Err(e),
                other => return Err(unexpected("stream", other)),
            };
            fault_point!("migrate:target_durable");
            // The commit point: from here the target owns the range.
            write_manifest(&self.storage, data_dir, &committed).await?;
            Ok(report)
        }
        .await;
        let mut report = match moved {
            Ok(report) => report,
            Err(e) => return Err(self.roll_back(intent, &m, source_core, target_core, e).await),
        };
        fault_point!("migrate:committed");
        let committed = Arc::new(committed);
        // The target first, so requests the source releases find it serving.
        let mut order = vec![target_core];
        order.extend([source_core].into_iter().filter(|&c| c != target_core));
        order.extend((0..cores).filter(|c| *c != target_core && *c != source_core));
        for c in order {
            if let Err(e) = self.step(c, MigrationWork::Install(committed.clone())).await {
                // The commit is durable; a core that failed to install (it could not create
                // a missing shard) is put right by the next recovery.
                tracing::error!(core = c, error = %e, "installing the shard map");
            }
        }
        fault_point!("migrate:installed");
        // Routing has moved; removing the keys given away (and checking a merge absorber's)
        // happens after, in the background queue, so no cutover waits for it.
        for c in 0..cores {
            if let Err(e) = self.step(c, MigrationWork::Tidy).await {
                tracing::error!(core = c, error = %e, "removing keys outside shard ranges");
            }
        }
        report.micros = started.elapsed().as_micros() as u64;
        report.epoch = committed.epoch;
        let c = &self.migrations;
        c.completed.fetch_add(1, Ordering::Relaxed);
        c.bytes_total.fetch_add(report.bytes, Ordering::Relaxed);
        c.keys_total.fetch_add(report.keys, Ordering::Relaxed);
        c.last_bytes.store(report.bytes, Ordering::Relaxed);
        c.last_keys.store(report.keys, Ordering::Relaxed);
        c.last_micros.store(report.micros, Ordering::Relaxed);
        tracing::info!(partition = %partition_display(&m.partition), kind = ?m.kind,
            epoch = committed.epoch, keys = report.keys, bytes = report.bytes,
            ms = report.micros / 1000, "migration committed");
        Ok(report)
    }

    /// Undoes a migration that failed before its commit; returns the error to report.
    async fn roll_back(
        &self,
        intent: ShardMap,
        m: &MigrationRecord,
        source_core: usize,
        target_core: usize,
        cause: EngineError,
    ) -> EngineError {
        self.migrations.aborted.fetch_add(1, Ordering::Relaxed);
        let mut rolled = intent;
        rolled.migration = None;
        if let Err(e) = write_manifest(&self.storage, &self.config.data_dir, &rolled).await {
            // Whether the commit reached the disk is unknown: keep the range paused (its
            // requests wait) rather than let the source accept writes a restart might drop.
            tracing::error!(error = %e, cause = %cause,
                "cannot record the rollback of a migration; its range stays paused until restart");
            *self.rebalance_broken.borrow_mut() =
                Some(format!("a migration's rollback could not be recorded ({e})"));
            return EngineError::Rebalance {
                reason: format!("migration failed ({cause}) and its rollback could not be recorded ({e}); restart the server"),
            };
        }
        let abort = MigrationWork::Abort { partition: m.partition.clone(), source: m.source };
        for c in [target_core, source_core] {
            if let Err(e) = self.step(c, abort.clone()).await {
                tracing::error!(core = c, error = %e, "abandoning a migration");
            }
        }
        // Same epoch; the partition is now mapped and its next shard number moved on.
        let rolled = Arc::new(rolled);
        for c in 0..self.config.cores {
            let _ = self.step(c, MigrationWork::Install(rolled.clone())).await;
        }
        for c in 0..self.config.cores {
            let _ = self.step(c, MigrationWork::Tidy).await;
        }
        tracing::warn!(partition = %partition_display(&m.partition), error = %cause, "migration rolled back");
        EngineError::Rebalance {
            reason: format!(
                "{} of partition '{}' abandoned, nothing moved: {cause}",
                match m.kind {
                    MigrationKind::Split => "split",
                    MigrationKind::Merge => "merge",
                },
                partition_display(&m.partition)
            ),
        }
    }

    async fn step(&self, core: usize, work: MigrationWork) -> Result<()> {
        match self.on_core(core, CoreWork::Migration(work)).await {
            CoreResult::Done(r) => r,
            other => Err(unexpected("migration step", other)),
        }
    }

    async fn prepare_incoming(
        &self,
        partition: Vec<u8>,
        number: u64,
        lo: u64,
        hi: u64,
        merge: bool,
    ) -> Result<()> {
        if self.incoming.borrow().is_some() {
            return Err(EngineError::Rebalance {
                reason: format!("core {} is already receiving a migration", self.id),
            });
        }
        let shard = if merge {
            let shard =
                self.local_shard(&partition, number).ok_or_else(|| EngineError::Rebalance {
                    reason: format!(
                        "shard {}/{number} is not on core {}",
                        partition_display(&partition),
                        self.id
                    ),
                })?;
            shard.check_writable()?;
            // Keys left outside its range by a failed tidy must go before it absorbs more.
            shard.drop_foreign().await?;
            shard
        } else {
            if self.local_shard_count() >= self.config.shards_per_core_max {
                return Err(EngineError::TooManyShards {
                    core: self.id,
                    max: self.config.shards_per_core_max,
                });
            }
            let meta =
                ShardMeta { partition: partition.clone(), number, range_lo: lo, range_hi: hi };
            let dir = shard_dir(&self.config.data_dir, &meta);
            if !self.storage.list_dir(&dir)?.is_empty() {
                // Shard numbers are never reused: whatever is there is garbage.
                remove_shard_dir(&self.storage, &dir).await?;
            }
            Rc::new(self.create_shard(meta).await?)
        };
        *self.incoming.borrow_mut() =
            Some(Incoming { shard, partition, number, lo, hi, next_seq: 0, merge });
        Ok(())
    }

    async fn stream_out(
        &self,
        partition: &[u8],
        number: u64,
        lo: u64,
        hi: u64,
        target_core: usize,
    ) -> Result<MigrationReport> {
        let shard = self.local_shard(partition, number).ok_or_else(|| EngineError::Rebalance {
            reason: format!(
                "shard {}/{number} is not on core {}",
                partition_display(partition),
                self.id
            ),
        })?;
        shard.check_writable()?;
        shard.drop_foreign().await?;
        if shard.is_migrating() {
            return Err(EngineError::Rebalance {
                reason: format!("shard {} is already migrating", shard.meta().name()),
            });
        }
        let pass = std::time::Instant::now();
        let entries = shard.begin_outgoing(lo, hi);
        tracing::debug!(shard = %shard.meta().name(), keys = entries.len(),
            us = pass.elapsed().as_micros() as u64, "migration: range taken (one pass)");
        let me = self.me.upgrade().expect("a running core");
        let s = shard.clone();
        let bulk = async move { me.stream_bulk(&s, entries, target_core).await };
        let streamed = match glommio::spawn_local_into(bulk, self.background) {
            Ok(task) => task.await,
            Err(e) => Err(EngineError::Unavailable { reason: format!("spawning the stream: {e}") }),
        };
        // The cutover runs here, in the foreground queue: requests wait on the pause, so it
        // must not queue behind background work.
        let result = match streamed {
            Ok(mut report) => {
                shard.pause_outgoing();
                fault_point!("migrate:paused");
                self.send_final_delta(&shard, target_core, &mut report).await.map(|()| report)
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            shard.end_outgoing();
        }
        result
    }

    /// Runs in the background queue (it yields to client traffic): the range's entries, then
    /// deltas until few keys are dirty.
    async fn stream_bulk(
        &self,
        shard: &Shard<DmaStorage>,
        entries: Vec<(crate::keyspace::Key, crate::keyspace::Entry)>,
        target_core: usize,
    ) -> Result<MigrationReport> {
        let mut report = MigrationReport::default();
        for batch in batches_of(entries) {
            self.send_batch(target_core, &mut report, batch, Phase::Bulk).await?;
            fault_point!("migrate:streaming");
        }
        for _ in 0..DELTA_ROUNDS_MAX {
            if shard.dirty_len() <= DELTA_CUTOVER_KEYS {
                break;
            }
            // One round: the keys dirty now, in bounded batches (writes meanwhile go to the
            // next round).
            let mut left = shard.dirty_len();
            while left > 0 {
                let batch = shard.take_delta(BATCH_ENTRIES_MAX, BATCH_BYTES_TARGET);
                left = left.saturating_sub(batch.puts.len() + batch.deletes.len());
                if batch.is_empty() {
                    break;
                }
                self.send_batch(target_core, &mut report, batch, Phase::Bulk).await?;
            }
        }
        Ok(report)
    }

    /// The last delta, under pause (nothing dirties more keys): bounded batches, the last of
    /// which makes the target sync.
    async fn send_final_delta(
        &self,
        shard: &Shard<DmaStorage>,
        target_core: usize,
        report: &mut MigrationReport,
    ) -> Result<()> {
        loop {
            let batch = shard.take_delta(BATCH_ENTRIES_MAX, BATCH_BYTES_TARGET);
            let last = shard.dirty_len() == 0;
            self.send_batch(target_core, report, batch, Phase::Cutover { last }).await?;
            if last {
                return Ok(());
            }
        }
    }

    async fn send_batch(
        &self,
        target_core: usize,
        report: &mut MigrationReport,
        batch: MigrationBatch,
        phase: Phase,
    ) -> Result<()> {
        let bytes = encode_batch(report.batches, &batch);
        report.batches += 1;
        report.keys += batch.puts.len() as u64;
        report.bytes += bytes.len() as u64;
        drop(batch);
        let apply = match phase {
            Phase::Bulk => MigrationWork::Apply { bytes, last: false, cutover: false },
            Phase::Cutover { last } => MigrationWork::Apply { bytes, last, cutover: true },
        };
        self.step(target_core, apply).await
    }

    async fn apply_incoming(&self, bytes: &[u8], last: bool) -> Result<()> {
        let (seq, batch) = decode_batch(bytes).map_err(|e| EngineError::Rebalance {
            reason: format!("migration batch refused: {e}"),
        })?;
        let (shard, lo, hi) = {
            let mut guard = self.incoming.borrow_mut();
            let inc = guard.as_mut().ok_or_else(|| EngineError::Rebalance {
                reason: format!("core {} is not receiving a migration", self.id),
            })?;
            if seq != inc.next_seq {
                return Err(EngineError::Rebalance {
                    reason: format!("migration batch {seq} arrived, expected {}", inc.next_seq),
                });
            }
            inc.next_seq += 1;
            (inc.shard.clone(), inc.lo, inc.hi)
        };
        shard.apply_batch(batch, lo, hi)?;
        self.after_write(&shard);
        // Written each batch (bounded buffers); the last one also synced: the target's
        // durable acknowledgement that the commit waits for.
        shard.flush(last).await?;
        if last {
            fault_point!("migrate:target_synced");
        }
        Ok(())
    }

    async fn abort_migration(&self, partition: &[u8], source: u64) -> Result<()> {
        if let Some(s) = self.local_shard(partition, source) {
            s.end_outgoing();
        }
        let incoming = self.incoming.borrow_mut().take();
        if let Some(inc) = incoming {
            if inc.merge {
                // The absorber's range did not change: what arrived is foreign.
                inc.shard.drop_foreign().await?;
            } else {
                let dir = inc.shard.dir().to_owned();
                drop(inc);
                remove_shard_dir(&self.storage, &dir).await?;
                self.storage.sync_dir(dir.parent().expect("shard dir has a parent")).await?;
            }
        }
        Ok(())
    }

    /// Takes a new map: serving shards follow it (ranges set, an incoming shard starts serving,
    /// a merged-away shard stops serving and is kept for the tidy step), and requests held by
    /// a finished cutover are released. No key or file is removed here (see `tidy`).
    async fn install_map(&self, map: Arc<ShardMap>) -> Result<()> {
        if map.epoch < self.map_epoch() {
            return Ok(());
        }
        let cores = self.config.cores;
        *self.map.borrow_mut() = map.clone();
        let incoming = self.incoming.borrow_mut().take();
        let mut incoming_placed = false;
        let mut removed = Vec::new();
        for (partition, pmap) in map.partitions() {
            let mine: Vec<ShardPlace> =
                pmap.shards.iter().filter(|p| p.core(cores) == self.id).copied().collect();
            let old = self.shards.borrow_mut().remove(partition).unwrap_or_default();
            let mut list = Vec::with_capacity(mine.len());
            for place in &mine {
                let found = old.iter().find(|s| s.meta().number == place.number).cloned();
                let found = found.or_else(|| {
                    let inc = incoming.as_ref()?;
                    (inc.partition == partition && inc.number == place.number && !inc.merge).then(
                        || {
                            incoming_placed = true;
                            inc.shard.clone()
                        },
                    )
                });
                if let Some(shard) = found {
                    shard.set_range(place.lo, place.hi);
                    list.push(shard);
                }
            }
            for s in old {
                if !mine.iter().any(|p| p.number == s.meta().number) {
                    removed.push(s);
                }
            }
            list.sort_by_key(|s| s.range().0);
            if !list.is_empty() {
                self.shards.borrow_mut().insert(partition.to_vec(), list);
            }
        }
        // A rollback's Abort clears the incoming state before its install, so an incoming
        // migration seen here is the one this map commits: a split's shard was placed above,
        // a merge's absorber kept its place with a wider range.
        if let Some(inc) = incoming {
            if !inc.merge && !incoming_placed {
                tracing::error!(shard = %inc.shard.meta().name(), "committed map does not place the incoming shard");
            }
        }
        // Release requests held by a cutover whose range this core no longer serves.
        for shard in self.local_shards().iter().chain(&removed) {
            if let Some((lo, _)) = shard.outgoing_range() {
                let gone = removed.iter().any(|r| Rc::ptr_eq(r, shard)) || !shard.owns(lo);
                if gone {
                    if let Some(paused) = shard.end_outgoing() {
                        let us = paused.as_micros() as u64;
                        self.migrations.last_pause_micros.store(us, Ordering::Relaxed);
                    }
                }
            }
        }
        // Their files go at the tidy step: the install answers at once, so the cores' epochs
        // agree again quickly (whole-keyspace reads wait for that).
        self.retired.borrow_mut().extend(removed);
        self.create_missing_mapped_shards().await?;
        self.publish_memory();
        Ok(())
    }

    /// Removes, logged, every key outside its shard's range (recovery would too), and the
    /// directories of shards merged away.
    async fn tidy(&self) -> Result<()> {
        let retired = std::mem::take(&mut *self.retired.borrow_mut());
        for shard in retired {
            let dir = shard.dir().to_owned();
            drop(shard);
            // A failure leaves an unlisted directory, which recovery removes.
            let removed = match remove_shard_dir(&self.storage, &dir).await {
                Ok(()) => {
                    self.storage.sync_dir(dir.parent().expect("shard dir has a parent")).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                tracing::warn!(dir = %dir.display(), error = %e, "removing a merged-away shard; recovery will");
            }
        }
        for shard in self.local_shards() {
            if shard.holds_foreign_keys() && shard.is_serving() {
                shard.drop_foreign().await?;
            }
        }
        self.publish_memory();
        Ok(())
    }
}

impl Core {
    /// Refuses migrations and FLUSHALL after a rollback that could not be recorded: the map
    /// on disk is then unknown until a restart reads it.
    fn check_rebalance_usable(&self) -> Result<()> {
        match self.rebalance_broken.borrow().as_ref() {
            Some(why) => Err(EngineError::Rebalance {
                reason: format!("refused until the server restarts: {why}"),
            }),
            None => Ok(()),
        }
    }
}

/// See `Core::plan_start`.
struct Plan {
    summaries: Vec<ShardSummary>,
    mine: Vec<ShardSummary>,
    map: Arc<ShardMap>,
    entry: crate::placement::shard_map::PartitionMap,
}

/// Where a batch belongs: the bulk (and delta rounds), or the cutover.
#[derive(Clone, Copy)]
enum Phase {
    Bulk,
    Cutover { last: bool },
}

fn closed() -> EngineError {
    EngineError::Unavailable { reason: "migration lock closed".into() }
}
