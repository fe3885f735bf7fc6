//! Splits, merges, carve-outs and fold-backs as runtime operations: the coordinator on core 0
//! plans a migration, records it in the manifest, drives the source and target cores through
//! its steps (`migration_steps`), commits it by writing the next map, and installs that map on
//! every core.
//!
//! The coordinator chooses nothing: a `LayoutChange` names the shards and the target core
//! (the predictor's allocator or an operator chose them); it is checked against the map
//! (`NotApplicable` if it no longer fits) and becomes one migration:
//! - carve-out: a partition's whole span leaves its shared shard for a new shard of its own;
//! - split: an own shard is cut at its load median (the only choice made here, by the shard's
//!   core, which alone knows its access histogram); the upper part goes to a new shard;
//! - move: an own shard's whole range goes to a new shard on another core (a split that takes
//!   everything; the old shard is then gone, as a merge's donor is);
//! - merge: an own shard gives its range to the adjacent own shard;
//! - fold-back: a partition's last own shard gives its range to the shared shard beside it.
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
//! Invariant: every wait for another core's answer has a deadline (`core_answer_wait_ms` for a
//! short step, the constants below for long ones); a core that misses one is reported (`CoreTimeout`), and before the commit
//! the migration rolls back.

use super::migration_steps::MigrationWork;
use crate::error::{EngineError, Result};
use crate::fault_point;
use crate::placement::manifest::{write_manifest, write_manifest_staged};
use crate::placement::shard_map::{MigrationKind, MigrationRecord, ShardMap};
use crate::runtime::journal::{ChangedBy, MigrationEntry, MigrationJournal, MigrationState};
use crate::runtime::layout::{self, LayoutChange};
use crate::runtime::{Core, CoreResult, CoreWork};
use crate::shard::partition_display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The core that coordinates migrations.
pub const COORDINATOR_CORE: usize = 0;

/// How long the coordinator waits for a source to stream its range (35 MB took 0.6 s here;
/// this allows ~20 GB at that rate). A source that sends no batch for `core_answer_wait_ms`
/// counts as not answering long before this.
pub const STREAM_WAIT_MAX: Duration = Duration::from_secs(600);
/// How long the coordinator waits for a core's tidy (removing keys given away).
pub const TIDY_WAIT_MAX: Duration = Duration::from_secs(120);
/// How long `change_layout` waits for the coordinator: the lock (one migration at a time),
/// then a whole migration.
pub const MIGRATION_WAIT_MAX: Duration = Duration::from_secs(1200);

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
    /// The running migration and the recent ones.
    pub journal: MigrationJournal,
    /// Bumped by a source at the start of its stream and at every batch: the coordinator
    /// gives up on a source whose count stops moving, however long the stream may take.
    pub(crate) stream_beats: AtomicU64,
    /// The number of the last migration begun (numbers the steps of each).
    next_migration: AtomicU64,
    /// The last `ABANDONED_MIGRATIONS_MAX` migrations rolled back: a step of one that reaches
    /// a core late (it was silent) is undone there instead of being kept.
    abandoned: std::sync::Mutex<std::collections::VecDeque<u64>>,
}

/// Rolled-back migrations remembered for late steps (one migration runs at a time, so a late
/// step belongs to one of the last few).
pub const ABANDONED_MIGRATIONS_MAX: usize = 16;

impl MigrationCounters {
    /// A number for a backup (from the same sequence as migrations).
    pub(crate) fn begin_backup(&self) -> u64 {
        self.begin_migration()
    }

    fn begin_migration(&self) -> u64 {
        self.next_migration.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn abandon(&self, migration: u64) {
        let mut a = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
        a.push_back(migration);
        while a.len() > ABANDONED_MIGRATIONS_MAX {
            a.pop_front();
        }
    }

    pub(crate) fn is_abandoned(&self, migration: u64) -> bool {
        self.abandoned.lock().unwrap_or_else(|e| e.into_inner()).contains(&migration)
    }
}

pub(crate) fn unexpected(what: &str, r: CoreResult) -> EngineError {
    EngineError::Unavailable { reason: format!("{what} answered with {r:?}") }
}

pub(crate) fn closed() -> EngineError {
    EngineError::Unavailable { reason: "migration lock closed".into() }
}

impl Core {
    /// Carries out one layout change chosen by a policy; returns once the new map is installed
    /// everywhere. A change that no longer fits the map is refused (`NotApplicable`) and
    /// nothing moves.
    /// `by` says who asked, for the migration journal.
    pub async fn change_layout(
        &self,
        change: LayoutChange,
        by: ChangedBy,
    ) -> Result<MigrationReport> {
        let work = CoreWork::Migration(MigrationWork::Change(change, by));
        match self
            .on_core_within(COORDINATOR_CORE, work, MIGRATION_WAIT_MAX, "a layout change")
            .await
        {
            CoreResult::Migrated(r) => Ok(r),
            CoreResult::Done(Err(e)) => Err(e),
            other => Err(unexpected("coordinator", other)),
        }
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
        // Every core held: a transaction lands wholly before the flush or wholly after it;
        // and the flush is itself one transaction, so a crash keeps all of it or none.
        self.with_every_core_held("FLUSHALL", self.flush_all_framed()).await?
    }

    pub fn migration_counters(&self) -> &MigrationCounters {
        &self.migrations
    }

    /// Checks `change` against the map and runs it (on the coordinator, under the lock).
    pub(super) async fn coordinate(
        &self,
        change: LayoutChange,
        by: ChangedBy,
    ) -> Result<MigrationReport> {
        let _permit = self.migration_lock.acquire_permit(1).await.map_err(|_| closed())?;
        assert_eq!(self.id, COORDINATOR_CORE);
        self.check_rebalance_usable()?;
        let map = self.shard_map();
        let cores = self.config.cores;
        let max = self.config.shards_per_partition_max;
        // A split's cut point is the source's load median, which only its core knows.
        let cut = match layout::check(&map, &change, cores, max)? {
            Some((range, place)) => {
                let work = CoreWork::Migration(MigrationWork::SplitPoint { number: place.number });
                let source_core = place.core(cores);
                match self.on_core_within(source_core, work, self.step_wait(), "split point").await
                {
                    CoreResult::Position(cut) if cut > range.lo && cut <= range.hi => Some(cut),
                    CoreResult::Position(_) => {
                        return Err(EngineError::Unsplittable { shard: place.number })
                    }
                    CoreResult::Done(Err(e)) => return Err(e),
                    other => return Err(unexpected("split point", other)),
                }
            }
            None => None,
        };
        let (intent, committed) = layout::plan(&map, &change, cut)?;
        self.run_migration(intent, committed, by).await
    }

    /// Steps 1 to 6 for a planned migration (`intent` records it; `committed` is the result).
    async fn run_migration(
        &self,
        intent: ShardMap,
        committed: ShardMap,
        by: ChangedBy,
    ) -> Result<MigrationReport> {
        let started = Instant::now();
        let m = intent.migration.clone().expect("an intent records its migration");
        let what = intent.describe(&m);
        let cores = self.config.cores;
        let source_core = intent.shard(m.source).expect("the source is mapped").core(cores);
        let target_core = m.target_core as usize % cores;
        let data_dir = &self.config.data_dir;
        self.migrations.journal.begin(MigrationEntry {
            kind: what,
            by,
            partition: m.partition.clone(),
            source: m.source,
            target: m.target,
            source_core,
            target_core,
            started_ms: 0,
            micros: 0,
            keys: 0,
            bytes: 0,
            pause_micros: None,
            state: MigrationState::Running,
        });
        if let Err(e) = write_manifest(&self.storage, data_dir, &intent).await {
            // Nothing moved and nothing to roll back: the intent never reached the disk.
            self.migrations.journal.end(MigrationState::Failed(e.to_string()));
            return Err(e);
        }
        fault_point!("migrate:intent_written");
        let number = self.migrations.begin_migration();
        // Whether the committed map may be on disk: only a commit write that got as far as its
        // rename. Until then a crash, or a rollback nobody could record, leaves the intent,
        // which recovery rolls back.
        let commit_maybe_on_disk = std::cell::Cell::new(false);
        let moved = async {
            let prepare = MigrationWork::Prepare {
                partition: (m.kind == MigrationKind::Split).then(|| m.partition.clone()),
                number: m.target,
                lo: m.lo,
                hi: m.hi,
                merge: m.kind == MigrationKind::Merge,
                migration: number,
            };
            self.step(target_core, prepare).await?;
            fault_point!("migrate:target_prepared");
            let stream = MigrationWork::StreamOut {
                number: m.source,
                lo: m.lo,
                hi: m.hi,
                target_core,
                migration: number,
            };
            let stream = CoreWork::Migration(stream);
            let report = match self.stream_watched(source_core, stream).await {
                CoreResult::Migrated(r) => r,
                CoreResult::Done(Err(e)) => return Err(e),
                other => return Err(unexpected("stream", other)),
            };
            fault_point!("migrate:target_durable");
            // The commit point: from here the target owns the range.
            if let Err(f) = write_manifest_staged(&self.storage, data_dir, &committed).await {
                commit_maybe_on_disk.set(f.renamed);
                return Err(f.error);
            }
            Ok(report)
        }
        .await;
        let mut report = match moved {
            Ok(report) => report,
            Err(e) => {
                self.migrations.abandon(number);
                let on_disk = commit_maybe_on_disk.get();
                let e = self
                    .roll_back(intent, &m, (source_core, target_core), e, on_disk, number)
                    .await;
                let state = match &e {
                    // The range stays paused until a restart settles the map.
                    EngineError::RebalanceBroken { .. } => MigrationState::Failed(e.to_string()),
                    _ => MigrationState::RolledBack(e.to_string()),
                };
                self.migrations.journal.end(state);
                return Err(e);
            }
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
        c.journal.progress(report.keys, report.bytes);
        c.journal.end(MigrationState::Committed);
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
        (source_core, target_core): (usize, usize),
        cause: EngineError,
        commit_maybe_on_disk: bool,
        migration: u64,
    ) -> EngineError {
        self.migrations.aborted.fetch_add(1, Ordering::Relaxed);
        let what = intent.describe(m);
        let mut rolled = intent;
        rolled.migration = None;
        let recorded = write_manifest(&self.storage, &self.config.data_dir, &rolled).await;
        match recorded {
            Ok(()) => {}
            Err(e) if !commit_maybe_on_disk => {
                // The disk holds the intent (a full disk, say, refused both writes), which
                // recovery rolls back just as this does: the source can go on.
                tracing::warn!(error = %e, cause = %cause,
                    "the rollback of a migration could not be recorded; the manifest still \
                     holds its intent, which recovery rolls back");
            }
            Err(e) => {
                // Whether the commit reached the disk is unknown: keep the range paused (its
                // requests wait) rather than let the source accept writes a restart might drop.
                tracing::error!(error = %e, cause = %cause,
                "cannot record the rollback of a migration; its range stays paused until restart");
                *self.rebalance_broken.borrow_mut() =
                    Some(format!("a migration's rollback could not be recorded ({e})"));
                return EngineError::RebalanceBroken {
                    reason: format!(
                        "migration failed ({cause}) and its rollback could not be recorded ({e})"
                    ),
                };
            }
        }
        // A core that does not answer a step here still gets the work (its queue keeps it, and
        // it runs the work when it answers again); it is not waited for again.
        let mut silent = std::collections::BTreeSet::new();
        let abort = MigrationWork::Abort { source: m.source, migration };
        for c in [target_core, source_core] {
            if let Err(e) = self.step(c, abort.clone()).await {
                if matches!(e, EngineError::CoreTimeout { .. }) {
                    silent.insert(c);
                }
                tracing::error!(core = c, error = %e, "abandoning a migration");
            }
        }
        // Same epoch; the partition is now mapped and its next shard number moved on.
        let rolled = Arc::new(rolled);
        for c in 0..self.config.cores {
            let installed = self.step(c, MigrationWork::Install(rolled.clone())).await;
            if let Err(EngineError::CoreTimeout { .. }) = installed {
                silent.insert(c);
            }
        }
        for c in 0..self.config.cores {
            // A tidy may take long (`TIDY_WAIT_MAX`), but not on a core that is not answering.
            let tidy = CoreWork::Migration(MigrationWork::Tidy);
            match silent.contains(&c) {
                true => {
                    self.on_core_within(c, tidy, self.step_wait(), "a migration step").await;
                }
                false => {
                    let _ = self.step(c, MigrationWork::Tidy).await;
                }
            }
        }
        tracing::warn!(partition = %partition_display(&m.partition), error = %cause, "migration rolled back");
        EngineError::MigrationAbandoned {
            what,
            partition: partition_display(&m.partition),
            cause: Box::new(cause),
        }
    }

    /// Runs a stream on `source_core` until it answers, for at most `STREAM_WAIT_MAX`, giving
    /// up as soon as the source has sent nothing (no `stream_beats`) for `step_wait`.
    async fn stream_watched(&self, source_core: usize, work: CoreWork) -> CoreResult {
        if source_core == self.id {
            return self.run_work(work).await;
        }
        let timeout = |ms| {
            CoreResult::Done(Err(EngineError::CoreTimeout {
                core: source_core,
                what: "a stream",
                ms,
            }))
        };
        let started = Instant::now();
        let slot = match self.send(source_core, work).await {
            Ok(slot) => slot,
            Err(e) => return CoreResult::Done(Err(e)),
        };
        let mut answer = Box::pin(super::wait_reply(slot));
        let beats = || self.migrations.stream_beats.load(Ordering::Relaxed);
        let mut last = beats();
        loop {
            match super::mesh::within(self.step_wait(), &mut answer).await {
                Some(r) => return r,
                None if started.elapsed() >= STREAM_WAIT_MAX => {
                    return timeout(STREAM_WAIT_MAX.as_millis() as u64)
                }
                None if beats() == last => return timeout(self.config.core_answer_wait_ms),
                None => last = beats(),
            }
        }
    }

    pub(super) async fn step(&self, core: usize, work: MigrationWork) -> Result<()> {
        let limit =
            if matches!(work, MigrationWork::Tidy) { TIDY_WAIT_MAX } else { self.step_wait() };
        match self.on_core_within(core, CoreWork::Migration(work), limit, "a migration step").await
        {
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
            Some(why) => Err(EngineError::RebalanceBroken { reason: why.clone() }),
            None => Ok(()),
        }
    }
}
