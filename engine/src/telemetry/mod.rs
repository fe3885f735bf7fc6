//! Telemetry: what every shard and core did in a tick, gathered on the owning core without
//! locks and sent, one `CoreTick` per core per tick, to whoever listens (the server's control
//! thread). The engine only measures; it does not judge (health) or keep history.
//!
//! Bounded: a tick holds per shard one service-time histogram (`SERVICE_SIGNIFICANT_DIGITS`,
//! about 15 KiB), one HyperLogLog (1 KiB), `TOP_KEYS_MAX` keys, `APPS_MAX` application
//! counters and, for a shared shard, `PARTITION_STATS_MAX` partitions (each with its own
//! HyperLogLog). A listener that falls behind never blocks a core and loses no count: the
//! queue holds `TICK_QUEUE_PER_CORE_MAX` ticks per core, and a core that finds it full keeps
//! counting into its next tick (`TickSink`).

mod apps;
mod hll;
mod latency_events;
mod top_keys;

pub use apps::{app_names, AppCounts, AppId, APPS_MAX};
pub use hll::{Hll, HLL_PRECISION_BITS, HLL_REGISTERS, HLL_STANDARD_ERROR};
pub use latency_events::{
    EventSeries, LatencyEvents, LatencySample, EVENT_BACKUP_CUT, EVENT_LOG_FSYNC,
    EVENT_MIGRATION_CUTOVER, EVENT_SNAPSHOT, LATENCY_EVENTS_MAX, LATENCY_SAMPLES_MAX,
};
pub use top_keys::{KeyCount, TopKeys, TOP_KEYS_MAX};

use crate::routing::Position;
use crate::shard::TickCounts;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// One op in this many has its service time measured (two clock reads); the histogram is a
/// sample of the ops' service times.
pub const SERVICE_SAMPLE_EVERY: u32 = 8;

/// The default tick.
pub const TICK_MS_DEFAULT: u64 = 1000;
/// Ticks queued per core; past that, cores fold their ticks into the next.
pub const TICK_QUEUE_PER_CORE_MAX: usize = 8;

/// One core's tick.
#[derive(Debug, Clone)]
pub struct CoreTick {
    pub core: usize,
    /// The tick boundary this tick ended at: wall time / tick, rounded. Every core ends its
    /// ticks on the same boundaries, so the ticks of one interval share it.
    pub seq: u64,
    /// Wall clock (Unix ms) at the end of the tick.
    pub at_ms: u64,
    /// Length of the tick (since this core's previous one).
    pub elapsed_ms: u64,
    /// Share of the tick the executor spent running tasks or polling I/O (glommio's
    /// `total_runtime`), 0..=1; 1 when it was blocked by a long task.
    pub busy_ratio: f64,
    /// Requests in progress on the core (client batches and work from other cores) at the
    /// end of the tick, and the most at any time during it.
    pub queue_depth: u64,
    pub queue_depth_max: u64,
    /// Ops other cores sent to this one in the tick (a partition split over cores is served
    /// partly this way; the capacity model weighs their extra cost).
    pub remote_ops: u64,
    pub shards: Vec<ShardTick>,
}

/// One shard's tick.
#[derive(Debug, Clone)]
pub struct ShardTick {
    pub number: u64,
    /// The partition whose own shard this is; `None` for a shared shard.
    pub partition: Option<Vec<u8>>,
    pub ranges: Vec<(Position, Position)>,
    pub counts: TickCounts,
    pub keys: u64,
    pub used_bytes: u64,
    /// Accesses over the buckets of the shard's range since the range last changed (where a
    /// split would cut).
    pub access: Vec<u64>,
    /// Why the shard does not serve, if it does not.
    pub failure: Option<String>,
    /// Part of it is moving away.
    pub migrating: bool,
}

/// Whether the per-op sketches are gathered: one flag for every core, read (relaxed) once per
/// op and changed at run time (`CONFIG SET telemetry`). It is written only on a change, so its
/// cache line stays shared and a read costs about an L1 hit.
#[derive(Clone, Debug)]
pub struct TelemetrySwitch(Arc<std::sync::atomic::AtomicBool>);

impl TelemetrySwitch {
    pub fn new(on: bool) -> Self {
        TelemetrySwitch(Arc::new(std::sync::atomic::AtomicBool::new(on)))
    }

    #[inline]
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
}

impl Default for TelemetrySwitch {
    fn default() -> Self {
        TelemetrySwitch::new(true)
    }
}

/// Where cores send their ticks: a bounded queue that never blocks a core and never loses a
/// count. A core ends its tick only when the queue has room; otherwise it keeps counting, and
/// its next tick covers both intervals (`CoreTick::elapsed_ms` says how long), so a listener
/// that falls behind gets coarser ticks, not fewer ops.
#[derive(Clone)]
pub struct TickSink {
    tx: SyncSender<CoreTick>,
    /// Ticks sent and not yet received.
    queued: Arc<AtomicUsize>,
    capacity: usize,
    deferred: Arc<AtomicU64>,
}

impl std::fmt::Debug for TickSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TickSink(deferred {})", self.deferred.load(Ordering::Relaxed))
    }
}

/// The listener's end of a `TickSink`.
pub struct TickReceiver {
    rx: Receiver<CoreTick>,
    queued: Arc<AtomicUsize>,
}

impl TickReceiver {
    /// The next tick, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<CoreTick, RecvTimeoutError> {
        let tick = self.rx.recv_timeout(timeout)?;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        Ok(tick)
    }
}

impl TickSink {
    /// A sink for `cores` cores and the receiver the listener reads.
    pub fn new(cores: usize) -> (TickSink, TickReceiver) {
        let capacity = cores.max(1) * TICK_QUEUE_PER_CORE_MAX;
        // Room for every core past the check in `has_room`, so a send never fails for space.
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity + cores.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let sink = TickSink {
            tx,
            queued: queued.clone(),
            capacity,
            deferred: Arc::new(AtomicU64::new(0)),
        };
        (sink, TickReceiver { rx, queued })
    }

    /// Whether a tick may be sent now; if not, the caller keeps counting (counted as a
    /// deferred tick).
    pub fn has_room(&self) -> bool {
        let room = self.queued.load(Ordering::Relaxed) < self.capacity;
        if !room {
            self.deferred.fetch_add(1, Ordering::Relaxed);
        }
        room
    }

    /// Queues a tick (after `has_room`). A listener that is gone drops it.
    pub fn send(&self, tick: CoreTick) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(tick).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Ticks deferred so far (folded into a later tick because the queue was full).
    pub fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }
}
