//! Per-core timers and the work that follows a write: log flushes, snapshots, active
//! expiry and the statistics tick.

use super::*;
use crate::log::writer::FsyncPolicy;
use crate::shard::Shard;
use crate::storage::dma::DmaStorage;
use crate::telemetry::{CoreTick, ShardTick};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Expired keys active expiry removes between two looks at the clock (and chances for
/// requests to run).
pub const EXPIRE_BATCH_KEYS: usize = 256;

/// The share of wall time the executor spent running tasks or polling I/O. glommio's
/// `executor_stats()` hands over the time accumulated since its previous call and resets it,
/// so this is its only caller.
struct BusyMeter {
    at: Instant,
}

impl BusyMeter {
    fn start() -> Self {
        let _ = glommio::executor().executor_stats();
        BusyMeter { at: Instant::now() }
    }

    /// The share since the last call (or the start), 0..=1.
    fn ratio(&mut self) -> f64 {
        let busy = glommio::executor().executor_stats().total_runtime().as_secs_f64();
        let now = Instant::now();
        let wall = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        if wall > 0.0 {
            (busy / wall).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

impl Core {
    pub(super) fn spawn_timers(self: Rc<Self>) {
        let core = self.clone();
        glommio::spawn_local(async move {
            let period = Duration::from_millis(core.config.flush_interval_ms);
            loop {
                glommio::timer::sleep(period).await;
                let result = match core.config.fsync {
                    FsyncPolicy::EverySec => core.flush_all(true).await,
                    FsyncPolicy::No => core.flush_all(false).await,
                    // Under `always` every write syncs its own records; this timer only retries
                    // logs that a full disk stopped, so writes resume once space returns.
                    FsyncPolicy::Always => core.retry_out_of_space_logs().await,
                };
                match result {
                    // The log said so once when the disk filled; it retries every period.
                    Err(e) if e.is_no_space() => {}
                    Err(e) => tracing::error!(core = core.id, error = %e, "log flush failed"),
                    Ok(()) => {}
                }
            }
        })
        .detach();
        let core = self.clone();
        glommio::spawn_local(async move {
            let mut next_shard = 0;
            let period = Duration::from_millis(core.config.expire_cycle_interval_ms);
            let mut cycle_started = Instant::now();
            loop {
                // One cycle per period, counted from the start of the last: the cycle's own
                // time is part of the period, so its share is `expire_cycle_cpu_share` of the
                // wall time, not of the time between cycles.
                glommio::timer::sleep(period.saturating_sub(cycle_started.elapsed())).await;
                cycle_started = Instant::now();
                let budget = period.mul_f64(core.config.expire_cycle_cpu_share.clamp(0.0, 1.0));
                let (next, spent) = core.expire_actively(next_shard, budget).await;
                next_shard = next;
                core.publish_memory();
                if core.config.eviction.policy() != super::EvictionPolicy::NoEviction {
                    core.evict_in_background(budget.saturating_sub(spent)).await;
                }
            }
        })
        .detach();
        let core = self;
        glommio::spawn_local(async move {
            let tick_ms = core.config.tick_ms.max(1);
            let mut busy = BusyMeter::start();
            // Every core ends its ticks on the same wall-clock boundaries (multiples of the
            // tick), so a listener can put the cores' ticks of one interval together. A
            // shard's first tick starts when the shard opens (`ShardStats::starting_at`): ops
            // it serves before this task first runs belong to that tick.
            loop {
                let now = core.clock.now_ms();
                glommio::timer::sleep(Duration::from_millis(tick_ms - now % tick_ms)).await;
                match &core.config.tick_sink {
                    // The listener is behind: keep counting, the next tick covers this one.
                    Some(sink) if !sink.has_room() => continue,
                    Some(sink) => sink.send(core.end_tick(tick_ms, busy.ratio())),
                    None => drop(core.end_tick(tick_ms, busy.ratio())),
                }
            }
        })
        .detach();
    }

    /// One active-expiry cycle: removes expired keys, earliest first in each shard, starting
    /// at shard `first` (in `all_local_shards` order), until none remain or the cycle has
    /// spent `budget` (its share of the period, `expire_cycle_cpu_share`); offers the core
    /// back (`yield_if_needed`) between batches of `EXPIRE_BATCH_KEYS`. The effort follows the
    /// backlog exactly (each shard's expiry index says whether a key is due, so nothing is
    /// sampled in vain), and the shard where a cut-short cycle stopped is the next cycle's
    /// first. Returns that shard and the time spent.
    async fn expire_actively(&self, first: usize, budget: Duration) -> (usize, Duration) {
        let shards = self.all_local_shards();
        let mut spent = Duration::ZERO;
        for i in 0..shards.len() {
            let at = (first + i) % shards.len();
            while shards[at].has_expired() {
                let started = Instant::now();
                shards[at].remove_expired(EXPIRE_BATCH_KEYS);
                spent += started.elapsed();
                if spent >= budget {
                    return (at, spent);
                }
                glommio::yield_if_needed().await;
            }
        }
        (0, spent)
    }

    /// Background eviction, in what the expiry cycle left of its `budget`: a core above its
    /// share of `maxmemory` that gets no writes (or whose last write batch left it above)
    /// evicts until it is within budget, `EVICTIONS_PER_CALL_MAX` keys at a time.
    async fn evict_in_background(&self, budget: Duration) {
        let mut spent = Duration::ZERO;
        while spent < budget && self.over_budget() {
            let started = Instant::now();
            let made_room = self.make_room().is_ok();
            spent += started.elapsed();
            if !made_room {
                break;
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Ends the statistics tick of every local shard and describes the core's; `seq` is the
    /// number of the tick boundary it ended at (wall time / `tick_ms`, rounded).
    fn end_tick(&self, tick_ms: u64, busy_ratio: f64) -> CoreTick {
        let now = self.clock.now_ms();
        let seq = (now + tick_ms / 2).checked_div(tick_ms).unwrap_or(0);
        let shards: Vec<ShardTick> =
            self.all_local_shards().iter().map(|s| s.end_tick(now)).collect();
        let depth = self.in_flight.get();
        let depth_max = self.in_flight_max.replace(depth);
        CoreTick {
            core: self.id,
            seq,
            at_ms: now,
            elapsed_ms: shards.first().map_or(self.config.tick_ms, |s| s.counts.elapsed_ms),
            busy_ratio,
            queue_depth: depth,
            queue_depth_max: depth_max.max(depth),
            remote_ops: self.remote_ops.replace(0),
            shards,
        }
    }

    /// Keeps log buffers bounded and starts snapshots when a log has grown.
    pub(crate) fn after_write(&self, shard: &Rc<Shard<DmaStorage>>) {
        if self.config.fsync != FsyncPolicy::Always
            && shard.schedule_background_write(self.config.wal_write_batch_bytes)
        {
            let s = shard.clone();
            glommio::spawn_local(async move {
                let _ = s.background_write().await;
            })
            .detach();
        }
        if shard.wants_snapshot() {
            let (s, core) = (shard.clone(), self.handle());
            let spawned = glommio::spawn_local_into(
                async move {
                    let _ = s.snapshot_with(core.hold_against_txns()).await;
                },
                self.background,
            );
            if let Ok(task) = spawned {
                shard.set_snapshot_scheduled(true);
                shard.stats.snapshot_tasks.set(shard.stats.snapshot_tasks.get() + 1);
                task.detach();
            }
        }
    }
}
