//! What each core does in a migration: the target prepares and applies batches, the source
//! streams its range and its deltas and pauses it for the cutover, every core installs the
//! new map and tidies after it. The coordinator (`coordinator`) sends these steps.

use super::coordinator::MigrationReport;
use crate::error::{EngineError, Result};
use crate::fault_point;
use crate::migration::{batches_of, decode_batch, encode_batch, MigrationBatch};
use crate::migration::{
    BATCH_BYTES_TARGET, BATCH_ENTRIES_MAX, DELTA_CUTOVER_KEYS, DELTA_ROUNDS_MAX,
};
use crate::placement::shard_map::ShardMap;
use crate::routing::Position;
use crate::runtime::txn::TXN_QUIET_WAIT_MAX;
use crate::runtime::{Core, CoreResult};
use crate::shard::{remove_shard_dir, shard_dir, Shard, ShardMeta};
use crate::storage::dma::DmaStorage;
use crate::storage::Storage;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Migration steps, sent between cores.
#[derive(Debug, Clone)]
pub enum MigrationWork {
    /// To the coordinator: run one layout change.
    Change(super::layout::LayoutChange, super::journal::ChangedBy),
    /// To a source: where to cut shard `number` (its load median).
    SplitPoint { number: u64 },
    /// To a target: get ready to receive `lo..=hi` into shard `number` (a new shard labelled
    /// `partition`, or with `merge` the existing absorber).
    /// `migration` is the coordinator's number for this migration: a Prepare that arrives
    /// after its migration was abandoned (its target was silent) is undone, not kept.
    Prepare {
        partition: Option<Vec<u8>>,
        number: u64,
        lo: Position,
        hi: Position,
        merge: bool,
        migration: u64,
    },
    /// To a source: stream `lo..=hi` of shard `number` to `target_core`, ending paused.
    /// `migration` is the coordinator's number for it (see `Outgoing::migration`).
    StreamOut { number: u64, lo: Position, hi: Position, target_core: usize, migration: u64 },
    /// To a target: one encoded batch; `last` makes everything received durable. Batches of
    /// the cutover (`cutover`) run in the foreground queue, the others in the background.
    Apply { bytes: Vec<u8>, last: bool, cutover: bool },
    /// To source and target: abandon the migration (the source keeps the range).
    Abort { source: u64, migration: u64 },
    /// To every core: the new map.
    Install(Arc<ShardMap>),
    /// To every core, after every install: remove keys outside each shard's ranges.
    Tidy,
    /// To the coordinator: FLUSHALL, between migrations (a migration's copy of a range must
    /// not outlive a FLUSHALL that reached its source or target first).
    FlushAll,
}

/// The shard a migration is filling on its target core.
pub(crate) struct Incoming {
    pub shard: Rc<Shard<DmaStorage>>,
    pub number: u64,
    pub lo: Position,
    pub hi: Position,
    pub next_seq: u64,
    pub merge: bool,
}

/// Where a batch belongs: the bulk (and delta rounds), or the cutover.
#[derive(Clone, Copy)]
enum Phase {
    Bulk,
    Cutover { last: bool },
}

impl Core {
    pub(crate) async fn run_migration_work(&self, work: MigrationWork) -> CoreResult {
        if self.draining.get() {
            return CoreResult::Done(Err(EngineError::Unavailable {
                reason: "shutting down".into(),
            }));
        }
        let done = |r: Result<()>| CoreResult::Done(r);
        match work {
            MigrationWork::Change(change, by) => match self.coordinate(change, by).await {
                Ok(r) => CoreResult::Migrated(r),
                Err(e) => done(Err(e)),
            },
            MigrationWork::SplitPoint { number } => {
                match self.local_shard(number).and_then(|s| s.split_point()) {
                    Some(cut) => CoreResult::Position(cut),
                    None => done(Err(EngineError::Unsplittable { shard: number })),
                }
            }
            MigrationWork::Prepare { partition, number, lo, hi, merge, migration } => {
                done(self.prepare_incoming(partition, number, lo, hi, merge, migration).await)
            }
            MigrationWork::StreamOut { number, lo, hi, target_core, migration } => {
                match self.stream_out(number, lo, hi, target_core, migration).await {
                    Ok(r) => CoreResult::Migrated(r),
                    Err(e) => done(Err(e)),
                }
            }
            MigrationWork::Apply { bytes, last, .. } => {
                done(self.apply_incoming(&bytes, last).await)
            }
            MigrationWork::Abort { source, migration } => {
                done(self.abort_migration(source, migration).await)
            }
            MigrationWork::Install(map) => done(self.install_map(map).await),
            MigrationWork::Tidy => done(self.tidy().await),
            MigrationWork::FlushAll => done(self.flush_all_locked().await),
        }
    }

    async fn prepare_incoming(
        &self,
        partition: Option<Vec<u8>>,
        number: u64,
        lo: Position,
        hi: Position,
        merge: bool,
        migration: u64,
    ) -> Result<()> {
        let abandoned = || EngineError::MigrationStep {
            reason: format!("migration {migration} was abandoned before its target got ready"),
        };
        if self.migrations.is_abandoned(migration) {
            return Err(abandoned());
        }
        if self.incoming.borrow().is_some() {
            return Err(EngineError::MigrationStep {
                reason: format!("core {} is already receiving a migration", self.id),
            });
        }
        let shard = if merge {
            let shard = self.local_shard(number).ok_or_else(|| EngineError::MigrationStep {
                reason: format!("shard {number} is not on core {}", self.id),
            })?;
            shard.check_writable()?;
            // Keys left outside its ranges by a failed tidy must go before it absorbs more.
            shard.drop_foreign().await?;
            shard
        } else {
            if self.local_shard_count() >= self.config.shards_per_core_max {
                return Err(EngineError::TooManyShards {
                    core: self.id,
                    max: self.config.shards_per_core_max,
                });
            }
            let dir = shard_dir(&self.config.data_dir, number);
            if !self.storage.list_dir(&dir)?.is_empty() {
                // Shard numbers are never reused: whatever is there is garbage.
                remove_shard_dir(&self.storage, &dir).await?;
            }
            let meta = ShardMeta { number, partition };
            let config = self.config.shard_config();
            let data_dir = &self.config.data_dir;
            let clock = self.clock.clone();
            Rc::new(
                Shard::create(self.storage.clone(), data_dir, meta, vec![(lo, hi)], config, clock)
                    .await?,
            )
        };
        if self.migrations.is_abandoned(migration) {
            // The coordinator gave up while this core was silent or busy creating the shard:
            // keeping it as incoming would refuse every later migration to this core.
            if !merge {
                let dir = shard.dir().to_owned();
                drop(shard);
                remove_shard_dir(&self.storage, &dir).await?;
                self.storage.sync_dir(dir.parent().expect("shard dir has a parent")).await?;
            }
            return Err(abandoned());
        }
        *self.incoming.borrow_mut() = Some(Incoming { shard, number, lo, hi, next_seq: 0, merge });
        Ok(())
    }

    async fn stream_out(
        &self,
        number: u64,
        lo: Position,
        hi: Position,
        target_core: usize,
        migration: u64,
    ) -> Result<MigrationReport> {
        self.check_stream_wanted(migration)?;
        self.migrations.stream_beats.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shard = self.local_shard(number).ok_or_else(|| EngineError::MigrationStep {
            reason: format!("shard {number} is not on core {}", self.id),
        })?;
        shard.check_writable()?;
        shard.drop_foreign().await?;
        self.check_stream_wanted(migration)?;
        if shard.is_migrating() {
            return Err(EngineError::MigrationStep {
                reason: format!("shard {} is already migrating", shard.meta().name()),
            });
        }
        let pass = std::time::Instant::now();
        let entries = shard.begin_outgoing_for(lo, hi, migration);
        tracing::debug!(shard = %shard.meta().name(), keys = entries.len(),
            us = pass.elapsed().as_micros() as u64, "migration: range taken (an index walk of the range)");
        let me = self.me.upgrade().expect("a running core");
        let s = shard.clone();
        let bulk = async move { me.stream_bulk(&s, entries, target_core, migration).await };
        let streamed = match glommio::spawn_local_into(bulk, self.background) {
            Ok(task) => task.await,
            Err(e) => Err(EngineError::Unavailable { reason: format!("spawning the stream: {e}") }),
        };
        // The cutover runs here, in the foreground queue: requests wait on the pause, so it
        // must not queue behind background work.
        let result = match streamed.and_then(|r| self.check_outgoing(&shard, migration).map(|()| r))
        {
            Ok(mut report) => {
                // No transaction holds keys here when the range pauses; later ones see the
                // pause and wait (see `txn`). The wait is bounded (the coordinator hears no
                // heartbeat meanwhile), and the migration checked again after it: it may have
                // been given up while this core waited.
                let quiet = super::mesh::within(TXN_QUIET_WAIT_MAX, self.quiet_txns()).await;
                match quiet.ok_or_else(|| EngineError::MigrationStep {
                    reason: format!(
                        "transactions kept keys held on core {} for {} ms; the cutover waits for the next migration",
                        self.id,
                        TXN_QUIET_WAIT_MAX.as_millis()
                    ),
                }).and_then(|()| self.check_outgoing(&shard, migration))
                {
                    Ok(()) => {
                        shard.pause_outgoing();
                        // From now on the range's writes happen on the target, which these
                        // watches do not hear: they fail (a client retries, as after any
                        // conflict).
                        self.fail_watches_in(lo, hi);
                        fault_point!("migrate:paused");
                        self.send_final_delta(&shard, target_core, &mut report, migration)
                            .await
                            .map(|()| report)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if result.is_err() && shard.outgoing_migration() == Some(migration) {
            shard.end_outgoing();
        }
        result
    }

    /// Refuses a stream of a migration the coordinator gave up on (a late StreamOut).
    fn check_stream_wanted(&self, migration: u64) -> Result<()> {
        match self.migrations.is_abandoned(migration) {
            true => Err(EngineError::MigrationStep {
                reason: format!("migration {migration} was abandoned; its stream stops"),
            }),
            false => Ok(()),
        }
    }

    /// After an await: the shard still gives the range away for this migration (a rollback
    /// ends it, and a later migration may have begun its own).
    fn check_outgoing(&self, shard: &Shard<DmaStorage>, migration: u64) -> Result<()> {
        self.check_stream_wanted(migration)?;
        match shard.outgoing_migration() == Some(migration) {
            true => Ok(()),
            false => Err(EngineError::MigrationStep {
                reason: format!("migration {migration} no longer streams from this shard"),
            }),
        }
    }

    /// Runs in the background queue (it yields to client traffic): the range's entries, then
    /// deltas until few keys are dirty.
    async fn stream_bulk(
        &self,
        shard: &Shard<DmaStorage>,
        entries: Vec<(crate::keyspace::Key, crate::keyspace::Entry)>,
        target_core: usize,
        migration: u64,
    ) -> Result<MigrationReport> {
        let mut report = MigrationReport::default();
        for batch in batches_of(entries) {
            self.check_outgoing(shard, migration)?;
            self.send_batch(target_core, &mut report, batch, Phase::Bulk).await?;
            fault_point!("migrate:streaming");
        }
        for _ in 0..DELTA_ROUNDS_MAX {
            self.check_outgoing(shard, migration)?;
            if shard.dirty_len() <= DELTA_CUTOVER_KEYS {
                break;
            }
            // One round: the keys dirty now, in bounded batches (writes meanwhile go to the
            // next round).
            let mut left = shard.dirty_len();
            while left > 0 {
                self.check_outgoing(shard, migration)?;
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
        migration: u64,
    ) -> Result<()> {
        crate::fault_delay!("migration:cutover");
        loop {
            self.check_outgoing(shard, migration)?;
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
        self.migrations.journal.progress(report.keys, report.bytes);
        self.migrations.stream_beats.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        drop(batch);
        let apply = match phase {
            Phase::Bulk => MigrationWork::Apply { bytes, last: false, cutover: false },
            Phase::Cutover { last } => MigrationWork::Apply { bytes, last, cutover: true },
        };
        self.step(target_core, apply).await
    }

    async fn apply_incoming(&self, bytes: &[u8], last: bool) -> Result<()> {
        let (seq, batch) = decode_batch(bytes).map_err(|e| EngineError::MigrationStep {
            reason: format!("migration batch refused: {e}"),
        })?;
        let (shard, lo, hi) = {
            let mut guard = self.incoming.borrow_mut();
            let inc = guard.as_mut().ok_or_else(|| EngineError::MigrationStep {
                reason: format!("core {} is not receiving a migration", self.id),
            })?;
            if seq != inc.next_seq {
                return Err(EngineError::MigrationStep {
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

    async fn abort_migration(&self, source: u64, migration: u64) -> Result<()> {
        if let Some(s) = self.local_shard(source) {
            if s.outgoing_migration() == Some(migration) {
                s.end_outgoing();
            }
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
        let mut old: HashMap<u64, Rc<Shard<DmaStorage>>> =
            self.local_shards().into_iter().map(|s| (s.number(), s)).collect();
        let mut serving = HashMap::new();
        let mut incoming_placed = false;
        for place in map.shards().filter(|p| p.core(cores) == self.id) {
            let found = old.remove(&place.number).or_else(|| {
                let inc = incoming.as_ref()?;
                (inc.number == place.number && !inc.merge).then(|| {
                    incoming_placed = true;
                    inc.shard.clone()
                })
            });
            if let Some(shard) = found {
                shard.set_ranges(map.ranges_of(place.number));
                serving.insert(place.number, shard);
            }
        }
        let removed: Vec<_> = old.into_values().collect();
        self.set_shards(serving);
        // A rollback's Abort clears the incoming state before its install, so an incoming
        // migration seen here is the one this map commits: a split's shard was placed above,
        // a merge's absorber kept its place with more ranges.
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
                        let events = &self.config.latency_events;
                        events.observe(crate::telemetry::EVENT_MIGRATION_CUTOVER, paused);
                        self.migrations.last_pause_micros.store(us, Ordering::Relaxed);
                        self.migrations.journal.paused(us);
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

    /// Removes, logged, every key outside its shard's ranges (recovery would too), and the
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
