//! Engine settings: every limit has a name and a default.

use super::EvictionSettings;
use crate::log::writer::FsyncPolicy;
use crate::routing::PARTITION_SEPARATOR_DEFAULT;
use crate::shard::ShardConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// Name of the file every executor opens first (the iopoll workaround).
pub const IOPOLL_PROBE_FILE: &str = ".iopoll-probe";

pub(super) const IOPOLL_PROBE_LEN: usize = 8192;

/// Engine settings; every limit has a name and a default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Number of data cores (executors).
    pub cores: usize,
    /// CPUs to pin the executors to; `None` spreads them over the machine.
    pub cpu_list: Option<Vec<usize>>,
    pub fsync: FsyncPolicy,
    /// Registered I/O buffer memory per executor (without CAP_IPC_LOCK keep <= 640 KiB).
    pub io_memory_bytes: usize,
    /// io_uring depth per executor (without CAP_IPC_LOCK keep <= 1024).
    pub ring_depth: usize,
    /// Busy-poll before parking; 0 (the default) never spins, which is right when client and
    /// server share cores.
    pub spin_before_park_us: u64,
    /// Messages in flight per ordered pair of cores.
    pub mesh_channel_capacity: usize,
    pub partition_separator: u8,
    pub snapshot_min_wal_bytes: u64,
    pub wal_prealloc_bytes: u64,
    /// Period of the `everysec`/`no` log writer.
    pub flush_interval_ms: u64,
    /// Unwritten log bytes that trigger a write before the timer.
    pub wal_write_batch_bytes: usize,
    /// Period of active expiry (and of background eviction).
    pub expire_cycle_interval_ms: u64,
    /// The share of a core's time active expiry may take while expired keys remain: each
    /// cycle removes them, earliest first, for at most this share of the period, yielding to
    /// requests every `EXPIRE_BATCH_KEYS` keys.
    pub expire_cycle_cpu_share: f64,
    /// `maxmemory`, `maxmemory-policy` and `maxmemory-samples`, shared by every core and
    /// changed at runtime by `CONFIG SET`.
    pub eviction: Arc<EvictionSettings>,
    /// Scheduler shares of the background queue (snapshots); the foreground has 1000.
    pub background_shares: usize,
    /// How long a task queue runs before `yield_if_needed` lets another one in (glommio's
    /// default, 100 ms). Measured with `benches/migration.sh`: 2 ms cut the worst GET during
    /// back-to-back migrations from ~300 to ~150 ms but doubled its p99 (6-7 to 15-18 ms), as
    /// the foreground queue is then preempted as often; so the default stays.
    pub preempt_interval_ms: u64,
    /// Most shards one core holds (shared ones and partitions' own); each has its own files
    /// and log. A carve-out or split whose target core is full is refused.
    pub shards_per_core_max: usize,
    /// Shared shards per core in a new data directory: every partition without shards of its
    /// own lives in one of them. Read only when the data directory is created.
    pub shared_shards_per_core: usize,
    /// Most shards one partition may be split into.
    pub shards_per_partition_max: usize,
    /// Length of a statistics tick: per-shard ops/s and top partitions are measured over
    /// it, and each core sends a `CoreTick` to `tick_sink` at its end.
    pub tick_ms: u64,
    /// Gather the per-op sketches of a tick (bytes, service times, distinct keys, hot keys,
    /// applications); off leaves only the counters. Switchable while running.
    pub telemetry: crate::telemetry::TelemetrySwitch,
    /// Where the cores send their ticks; `None` sends nothing.
    pub tick_sink: Option<crate::telemetry::TickSink>,
    /// How long a core waits for another core's answer to a short step (a migration step, a
    /// batch, a fan-out such as FLUSHALL or shard info); past it the other core counts as not
    /// answering (`CoreTimeout`). Data-path ops wait as long as their core takes, as Redis's
    /// clients wait for its one thread.
    pub core_answer_wait_ms: u64,
    /// The latency monitor the cores report their pauses to (log fsyncs, snapshots, cutovers,
    /// backup cuts); the server shares it and adds its slow commands.
    pub latency_events: Arc<crate::telemetry::LatencyEvents>,
}

/// `core_answer_wait_ms` unless set: far longer than any short step takes on a loaded machine.
pub const CORE_ANSWER_WAIT_MS_DEFAULT: u64 = 30_000;

impl Default for EngineConfig {
    fn default() -> Self {
        let shard = ShardConfig::default();
        EngineConfig {
            data_dir: PathBuf::from("./shardcast-data"),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_list: None,
            fsync: FsyncPolicy::EverySec,
            io_memory_bytes: 640 * 1024,
            ring_depth: 1024,
            spin_before_park_us: 0,
            mesh_channel_capacity: 1024,
            partition_separator: PARTITION_SEPARATOR_DEFAULT,
            snapshot_min_wal_bytes: shard.snapshot_min_wal_bytes,
            wal_prealloc_bytes: shard.wal_prealloc_bytes,
            flush_interval_ms: 1000,
            wal_write_batch_bytes: 1024 * 1024,
            expire_cycle_interval_ms: 100,
            expire_cycle_cpu_share: 0.25,
            eviction: Default::default(),
            background_shares: 100,
            preempt_interval_ms: 100,
            shards_per_core_max: 1024,
            shared_shards_per_core: 1,
            shards_per_partition_max: 64,
            tick_ms: crate::telemetry::TICK_MS_DEFAULT,
            telemetry: Default::default(),
            tick_sink: None,
            core_answer_wait_ms: CORE_ANSWER_WAIT_MS_DEFAULT,
            latency_events: Default::default(),
        }
    }
}

impl EngineConfig {
    pub(crate) fn shard_config(&self) -> ShardConfig {
        ShardConfig {
            fsync: self.fsync,
            snapshot_min_wal_bytes: self.snapshot_min_wal_bytes,
            wal_prealloc_bytes: self.wal_prealloc_bytes,
            partition_separator: self.partition_separator,
            telemetry: self.telemetry.clone(),
            latency_events: self.latency_events.clone(),
        }
    }
}
