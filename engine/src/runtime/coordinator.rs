//! Splits, merges, carve-outs and fold-backs as runtime operations: the coordinator on core 0
//! plans a migration, records it in the manifest, drives the source and target cores through
//! its steps (`migration_steps`), commits it by writing the next map, and installs that map on
//! every core.
//!
//! What `SHARDCAST SPLIT p` and `SHARDCAST MERGE p` do depends on where `p` lives:
//! - `p` lives in a shared shard: SPLIT **carves it out**: its whole span moves to a new shard
//!   of its own on the least loaded other core; MERGE is refused (nothing to merge).
//! - `p` has shards of its own: SPLIT cuts the busiest at its load median and moves the upper
//!   part to the least loaded other core; MERGE moves the smaller of the least loaded adjacent
//!   pair into the other; with one shard left, MERGE **folds it back** into a shared shard
//!   (the one beside its span, so the ranges coalesce again).
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

use super::migration_steps::MigrationWork;
use crate::error::{EngineError, Result};
use crate::fault_point;
use crate::placement::manifest::write_manifest;
use crate::placement::shard_map::{MigrationKind, MigrationRecord, ShardMap};
use crate::routing::partition_span;
use crate::runtime::{Core, CoreResult, CoreWork, ShardSummary};
use crate::shard::partition_display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The core that coordinates migrations.
pub const COORDINATOR_CORE: usize = 0;

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

pub(super) fn unexpected(what: &str, r: CoreResult) -> EngineError {
    EngineError::Unavailable { reason: format!("{what} answered with {r:?}") }
}

pub(super) fn closed() -> EngineError {
    EngineError::Unavailable { reason: "migration lock closed".into() }
}

impl Core {
    /// One step more for `partition`: carves it out of its shared shard into a shard of its
    /// own, or splits its busiest shard at the load median. Returns once the new map is
    /// installed everywhere.
    pub async fn split(&self, partition: &[u8]) -> Result<MigrationReport> {
        let work = MigrationWork::Split { partition: partition.to_vec() };
        self.to_coordinator(work).await
    }

    /// One step less for `partition`: merges the least loaded pair of its shards, or folds its
    /// last shard back into a shared shard.
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

    pub(super) async fn flush_all_locked(&self) -> Result<()> {
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

    pub(super) async fn coordinate_split(&self, partition: &[u8]) -> Result<MigrationReport> {
        let _permit = self.migration_lock.acquire_permit(1).await.map_err(|_| closed())?;
        assert_eq!(self.id, COORDINATOR_CORE);
        self.check_rebalance_usable()?;
        let summaries = self.summaries().await;
        let map = self.shard_map();
        let cores = self.config.cores;
        let own = map.partition_shards(partition);
        let (source, lo, hi, source_core) = if own.is_empty() {
            // Carve-out: the partition's whole span leaves its shared shard.
            let (lo, hi) = partition_span(partition);
            let (range, home) = map
                .shared_home(partition)
                .expect("a partition without shards of its own lies in one shared shard");
            if range.lo == lo && range.hi == hi && map.ranges_of(home.number).len() == 1 {
                return Err(EngineError::Rebalance {
                    reason: format!(
                        "shared shard {} holds only partition '{}': it is already on its own",
                        home.number,
                        partition_display(partition)
                    ),
                });
            }
            (home.number, lo, hi, home.core(cores))
        } else {
            let max = self
                .config
                .shards_per_partition_max
                .min(crate::placement::shard_map::SHARDS_PER_PARTITION_LIMIT);
            if own.len() >= max {
                return Err(EngineError::Rebalance {
                    reason: format!(
                        "partition '{}' already has {} shards (shards-per-partition-max is {max})",
                        partition_display(partition),
                        own.len()
                    ),
                });
            }
            // The busiest shard (accesses since its range last changed), widest on a tie.
            let accesses =
                |n: u64| summaries.iter().find(|s| s.number == n).map_or(0, |s| s.accesses);
            let (range, place) = *own
                .iter()
                .max_by_key(|(r, p)| (accesses(p.number), r.hi - r.lo))
                .expect("a partition with shards of its own");
            let source_core = place.core(cores);
            let work = MigrationWork::SplitPoint { number: place.number };
            let cut = match self.on_core(source_core, CoreWork::Migration(work)).await {
                CoreResult::Position(cut) => cut,
                CoreResult::Done(Err(e)) => return Err(e),
                other => return Err(unexpected("split point", other)),
            };
            (place.number, cut, range.hi, source_core)
        };
        // The target refuses a new shard past shards-per-core-max (then this rolls back).
        let target_core = self.least_loaded_core(&summaries, source_core);
        let (intent, committed) = map.plan_split(partition, source, lo, hi, target_core as u32);
        self.run_migration(intent, committed).await
    }

    pub(super) async fn coordinate_merge(&self, partition: &[u8]) -> Result<MigrationReport> {
        let _permit = self.migration_lock.acquire_permit(1).await.map_err(|_| closed())?;
        assert_eq!(self.id, COORDINATOR_CORE);
        self.check_rebalance_usable()?;
        let summaries = self.summaries().await;
        let map = self.shard_map();
        let own = map.partition_shards(partition);
        let stat = |n: u64| summaries.iter().find(|s| s.number == n);
        let (donor, absorber) = match own.len() {
            0 => {
                return Err(EngineError::Rebalance {
                    reason: format!(
                        "partition '{}' has no shard of its own: nothing to merge",
                        partition_display(partition)
                    ),
                })
            }
            // Fold-back: the last shard goes to a shared shard.
            1 => (own[0].0, map.fold_target(&own[0].0)),
            _ => {
                let load = |n: u64| stat(n).map_or(0.0, |s| s.ops_per_sec);
                let i = (0..own.len() - 1)
                    .min_by(|&a, &b| {
                        let la = load(own[a].1.number) + load(own[a + 1].1.number);
                        let lb = load(own[b].1.number) + load(own[b + 1].1.number);
                        la.total_cmp(&lb)
                    })
                    .expect("two shards");
                let (low, high) = (own[i], own[i + 1]);
                let keys = |n: u64| stat(n).map_or(0, |s| s.keys);
                // Move the smaller one.
                if keys(low.1.number) < keys(high.1.number) {
                    (low.0, high.1.number)
                } else {
                    (high.0, low.1.number)
                }
            }
        };
        let (intent, committed) = map.plan_merge(partition, &donor, absorber);
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
        let what = intent.describe(&m);
        let cores = self.config.cores;
        let source_core = intent.shard(m.source).expect("the source is mapped").core(cores);
        let target_core = m.target_core as usize % cores;
        let data_dir = &self.config.data_dir;
        write_manifest(&self.storage, data_dir, &intent).await?;
        fault_point!("migrate:intent_written");
        let moved = async {
            let prepare = MigrationWork::Prepare {
                partition: (m.kind == MigrationKind::Split).then(|| m.partition.clone()),
                number: m.target,
                lo: m.lo,
                hi: m.hi,
                merge: m.kind == MigrationKind::Merge,
            };
            self.step(target_core, prepare).await?;
            fault_point!("migrate:target_prepared");
            let stream =
                MigrationWork::StreamOut { number: m.source, lo: m.lo, hi: m.hi, target_core };
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
        tracing::info!(partition = %partition_display(&m.partition), what,
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
        let what = intent.describe(m);
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
        let abort = MigrationWork::Abort { source: m.source };
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
                what,
                partition_display(&m.partition)
            ),
        }
    }

    pub(super) async fn step(&self, core: usize, work: MigrationWork) -> Result<()> {
        match self.on_core(core, CoreWork::Migration(work)).await {
            CoreResult::Done(r) => r,
            other => Err(unexpected("migration step", other)),
        }
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
