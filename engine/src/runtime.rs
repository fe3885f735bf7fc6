//! The thread-per-core runtime: one pinned glommio executor per data core, each owning the
//! shards of the partitions placed on it, joined by a channel mesh.
//!
//! A `Core` is the handle a connection uses on its executor: it routes every op to the core
//! that owns the op's key, executing local ops directly and batching remote ones into one mesh
//! message per destination core; replies come back in the order of the ops.
//!
//! Invariant: a shard's state is touched only by its owning executor; nothing on the data path
//! is locked or shared between threads (cross-core work is a message).
//! Invariant: every executor opens the iopoll probe file before any other DMA file (glommio
//! #605/#670, see DESIGN.md), or reads on that executor may fail with EOPNOTSUPP.

use crate::clock::{Clock, SystemClock};
use crate::error::{EngineError, Result};
use crate::glob::glob_match;
use crate::migration::Gate;
use crate::ops::{Op, OpKind, Reply};
use crate::routing::PARTITION_SEPARATOR_DEFAULT;
use crate::routing::{default_core_of, key_position, partition_of, scan_position};
use crate::shard::{Shard, ShardConfig, ShardMeta};
use crate::shard_map::ShardMap;
use crate::storage::dma::DmaStorage;
use crate::wal::FsyncPolicy;
use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::{Latency, LocalExecutorPoolBuilder, PoolPlacement, Shares, TaskQueueHandle};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Period over which per-shard ops/s are measured.
const OPS_RATE_PERIOD_MS: u64 = 1000;

/// Name of the file every executor opens first (the iopoll workaround).
pub const IOPOLL_PROBE_FILE: &str = ".iopoll-probe";
const IOPOLL_PROBE_LEN: usize = 8192;

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
    pub expire_cycle_interval_ms: u64,
    /// Expired keys removed per shard per active-expiry cycle.
    pub expire_cycle_keys_max: usize,
    /// Scheduler shares of the background queue (snapshots); the foreground has 1000.
    pub background_shares: usize,
    /// How long a task queue runs before `yield_if_needed` lets another one in (glommio's
    /// default, 100 ms). Measured with `benches/migration.sh`: 2 ms cut the worst GET during
    /// back-to-back migrations from ~300 to ~150 ms but doubled its p99 (6-7 to 15-18 ms), as
    /// the foreground queue is then preempted as often; so the default stays.
    pub preempt_interval_ms: u64,
    /// Most shards (so partitions) one core holds; each has its own files and log.
    pub shards_per_core_max: usize,
    /// Most shards one partition may be split into.
    pub shards_per_partition_max: usize,
}

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
            expire_cycle_keys_max: 1000,
            background_shares: 100,
            preempt_interval_ms: 100,
            shards_per_core_max: 4096,
            shards_per_partition_max: 64,
        }
    }
}

impl EngineConfig {
    pub(crate) fn shard_config(&self) -> ShardConfig {
        ShardConfig {
            fsync: self.fsync,
            snapshot_min_wal_bytes: self.snapshot_min_wal_bytes,
            wal_prealloc_bytes: self.wal_prealloc_bytes,
        }
    }
}

/// Work that is not a single-key op, run on every core.
#[derive(Debug, Clone)]
pub enum CoreWork {
    /// Ops whose keys the receiving core owned when they were sent; `hops` counts forwards.
    Ops {
        ops: Vec<Op>,
        hops: u32,
    },
    /// Keys on the core (expired ones not yet collected included, as Redis's DBSIZE).
    DbSize,
    FlushAll,
    /// Up to `count` entries at scan position >= `cursor`, filtered by `pattern`.
    Scan {
        cursor: u64,
        count: usize,
        pattern: Option<Vec<u8>>,
    },
    /// A summary of every local shard.
    ShardInfo,
    /// Sets every pair only if none of the keys exists, atomically (all keys on this core).
    /// Answers `Count(1)` if set, `Count(0)` if not.
    SetIfNoneExist(Vec<(Vec<u8>, Vec<u8>)>),
    /// A random live key of this core, if it has any.
    RandomKey {
        seed: u64,
    },
    /// Every live key matching `pattern` (all if `None`), up to `max`: one pass (KEYS).
    Keys {
        pattern: Option<Vec<u8>>,
        max: usize,
    },
    /// Migration steps (see `coordinator`).
    Migration(crate::coordinator::MigrationWork),
    /// The inner work, answered with the epoch of the map it ran under (`AtEpoch`).
    AtEpoch(Box<CoreWork>),
}

impl CoreWork {
    /// Work that yields to client traffic: it runs in the background task queue.
    fn is_background(&self) -> bool {
        use crate::coordinator::MigrationWork;
        matches!(
            self,
            CoreWork::Migration(MigrationWork::Apply { cutover: false, .. } | MigrationWork::Tidy)
        )
    }
}

/// What INFO and the admin commands show of a shard.
#[derive(Debug, Clone)]
pub struct ShardSummary {
    pub core: usize,
    pub partition: Vec<u8>,
    pub number: u64,
    pub range_lo: u64,
    pub range_hi: u64,
    pub keys: u64,
    /// Keys with an expiry.
    pub expiring_keys: u64,
    pub used_bytes: u64,
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
    pub others: u64,
    pub snapshots: u64,
    /// Operations per second over the last second.
    pub ops_per_sec: f64,
    /// Accesses counted by the split histogram since the range last changed.
    pub accesses: u64,
    /// A migration is moving part of this shard away.
    pub migrating: bool,
    /// Why the shard is not serving, if it is not.
    pub failure: Option<String>,
}

/// The answer to `CoreWork`.
#[derive(Debug)]
pub enum CoreResult {
    Ops(Vec<Result<Reply>>),
    Count(u64),
    Done(Result<()>),
    Scan(ScanPage),
    Shards(Vec<ShardSummary>),
    Key(Option<Vec<u8>>),
    /// KEYS: the matching keys, and whether `max` cut them short.
    Keys {
        keys: Vec<Vec<u8>>,
        truncated: bool,
    },
    /// What a migration moved.
    Migrated(crate::coordinator::MigrationReport),
    AtEpoch {
        epoch: u64,
        result: Box<CoreResult>,
    },
}

/// What one core's scan examined.
#[derive(Debug, Default)]
pub struct ScanPage {
    /// Matching keys with their scan positions, ascending.
    pub keys: Vec<(u64, Vec<u8>)>,
    /// Position of the first entry not examined; `None` when the core has no more.
    pub next: Option<u64>,
}

/// A job for another core, run there with its `Core` (the server hands connections over this
/// way).
pub type CoreJob = Box<dyn FnOnce(Rc<Core>) + Send>;

enum MeshMsg {
    Request { id: u64, from: usize, work: CoreWork },
    Reply { id: u64, result: CoreResult },
    Run(CoreJob),
}

#[derive(Default)]
struct ReplySlot {
    value: RefCell<Option<CoreResult>>,
    waker: RefCell<Option<Waker>>,
}

/// Bytes used per core, each slot written only by its core (for `maxmemory` and INFO).
pub struct MemoryGauge {
    per_core: Vec<PaddedU64>,
}

#[repr(align(128))]
#[derive(Default)]
struct PaddedU64(std::sync::atomic::AtomicU64);

impl MemoryGauge {
    fn new(cores: usize) -> Self {
        MemoryGauge { per_core: (0..cores).map(|_| PaddedU64::default()).collect() }
    }

    /// Bytes used by all cores, as last published (at most one batch old per core).
    pub fn total(&self) -> u64 {
        self.per_core.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// The per-executor engine handle.
pub struct Core {
    /// This core's own `Rc` (tasks spawned from `&self` need one).
    pub(crate) me: std::rc::Weak<Core>,
    pub(crate) id: usize,
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) storage: DmaStorage,
    pub(crate) clock: Rc<dyn Clock>,
    /// This core's copy of the shard map (replaced whole by `install_map`).
    pub(crate) map: RefCell<Arc<ShardMap>>,
    /// partition -> its shards on this core that serve, sorted by range.
    pub(crate) shards: RefCell<HashMap<Vec<u8>, ShardList>>,
    /// The shard a migration is filling here, before the map gives it its range.
    pub(crate) incoming: RefCell<Option<crate::coordinator::Incoming>>,
    /// Shards a merge took out of service; their files go at the tidy step.
    pub(crate) retired: RefCell<Vec<Rc<Shard<DmaStorage>>>>,
    /// Set on the coordinator when a failed migration's rollback could not be recorded:
    /// migrations and FLUSHALL are refused until a restart settles the map.
    pub(crate) rebalance_broken: RefCell<Option<String>>,
    create_lock: glommio::sync::Semaphore,
    /// Held by the coordinator (core 0) for the whole of a split or merge.
    pub(crate) migration_lock: glommio::sync::Semaphore,
    pub(crate) migrations: Arc<crate::coordinator::MigrationCounters>,
    senders: Senders<MeshMsg>,
    pending: RefCell<HashMap<u64, Rc<ReplySlot>>>,
    next_request: Cell<u64>,
    pub(crate) background: TaskQueueHandle,
    stopping: Arc<AtomicBool>,
    memory: Arc<MemoryGauge>,
    /// Set after every core's work ended: ops are refused so nothing changes after the final
    /// flush.
    pub(crate) draining: Cell<bool>,
}

/// One partition's serving shards on a core, sorted by range.
pub(crate) type ShardList = Vec<Rc<Shard<DmaStorage>>>;

/// Where an op goes, as this core sees it now.
enum Route {
    /// A shard here serves it.
    Local(Rc<Shard<DmaStorage>>, u64),
    /// The partition has its default placement here but no shard yet.
    Unplaced,
    /// Another core owns it.
    Remote,
    /// Its range is in a cutover; wait, then route again.
    Paused(Rc<Gate>),
}

/// Forwards after which an op is refused rather than sent on (routes settle in one or two).
pub const ROUTE_HOPS_MAX: u32 = 8;

/// Runs the engine: one executor per core, each recovering its shards and then running
/// `per_core(core)`. Returns when every executor's future has finished and every shard is
/// flushed and synced.
pub fn run<G, F, T>(config: EngineConfig, per_core: G) -> Result<Vec<T>>
where
    G: FnOnce(Rc<Core>) -> F + Clone + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    run_until(config, Arc::new(AtomicBool::new(false)), per_core)
}

/// `run`, with a stop flag that the caller (a signal handler, a SHUTDOWN command through
/// `Core::request_stop`) sets; the per-core futures watch it through `Core::stop_requested`.
pub fn run_until<G, F, T>(
    config: EngineConfig,
    stopping: Arc<AtomicBool>,
    per_core: G,
) -> Result<Vec<T>>
where
    G: FnOnce(Rc<Core>) -> F + Clone + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    assert!(config.cores > 0, "at least one core");
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| EngineError::io("create directory", &config.data_dir, e))?;
    write_iopoll_probe(&config.data_dir)?;
    let placement = match &config.cpu_list {
        Some(cpus) => {
            let set = glommio::CpuSet::online()
                .map_err(|e| EngineError::io("read cpus", "/sys", e))?
                .filter(|l| cpus.contains(&l.cpu));
            PoolPlacement::MaxSpread(config.cores, Some(set))
        }
        None => PoolPlacement::MaxSpread(config.cores, None),
    };
    let mut builder = LocalExecutorPoolBuilder::new(placement)
        .name("shardcast")
        .io_memory(config.io_memory_bytes)
        .ring_depth(config.ring_depth)
        .preempt_timer(Duration::from_millis(config.preempt_interval_ms.max(1)));
    if config.spin_before_park_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(config.spin_before_park_us));
    }
    let mesh = MeshBuilder::full(config.cores, config.mesh_channel_capacity);
    let config = Arc::new(config);
    let finished = Arc::new(AtomicUsize::new(0));
    let memory = Arc::new(MemoryGauge::new(config.cores));
    let layout: Arc<std::sync::OnceLock<Result<Arc<ShardMap>>>> = Arc::default();
    let migrations = Arc::new(crate::coordinator::MigrationCounters::default());
    let handles = builder
        .on_all_shards(move || async move {
            let shared = Shared { stopping, memory, layout, migrations };
            let core = Core::start(config.clone(), mesh, shared).await?;
            let out = per_core(core.clone()).await;
            // Serve other cores until every core's own work is done, then refuse new work and
            // make everything durable.
            finished.fetch_add(1, Ordering::SeqCst);
            while finished.load(Ordering::SeqCst) < config.cores {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            core.draining.set(true);
            core.flush_all(true).await?;
            Ok::<T, EngineError>(out)
        })
        .map_err(|e| EngineError::Unavailable { reason: format!("starting executors: {e}") })?;
    let mut out = Vec::new();
    for r in handles.join_all() {
        match r {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(EngineError::Unavailable { reason: format!("executor failed: {e}") })
            }
        }
    }
    Ok(out)
}

fn write_iopoll_probe(data_dir: &Path) -> Result<()> {
    let path = data_dir.join(IOPOLL_PROBE_FILE);
    let ok =
        std::fs::metadata(&path).map(|m| m.len() as usize >= IOPOLL_PROBE_LEN).unwrap_or(false);
    if !ok {
        std::fs::write(&path, vec![0u8; IOPOLL_PROBE_LEN])
            .map_err(|e| EngineError::io("write", &path, e))?;
    }
    Ok(())
}

/// The iopoll workaround: opens (and closes) a non-empty file with DMA before anything else on
/// this executor, so glommio's polled-I/O probe sees a real file.
pub async fn apply_iopoll_workaround(data_dir: &Path) -> Result<()> {
    let path = data_dir.join(IOPOLL_PROBE_FILE);
    let f =
        glommio::io::DmaFile::open(&path).await.map_err(|e| EngineError::io("open", &path, e))?;
    f.close().await.map_err(|e| EngineError::io("close", &path, e))
}

/// What every executor shares at startup.
struct Shared {
    stopping: Arc<AtomicBool>,
    memory: Arc<MemoryGauge>,
    /// The recovered shard map, set by core 0 once the data directory is in order.
    layout: Arc<std::sync::OnceLock<Result<Arc<ShardMap>>>>,
    migrations: Arc<crate::coordinator::MigrationCounters>,
}

impl Core {
    async fn start(
        config: Arc<EngineConfig>,
        mesh: MeshBuilder<MeshMsg, glommio::channels::channel_mesh::Full>,
        shared: Shared,
    ) -> Result<Rc<Core>> {
        let Shared { stopping, memory, layout, migrations } = shared;
        apply_iopoll_workaround(&config.data_dir).await?;
        let (senders, mut receivers) = mesh
            .join()
            .await
            .map_err(|_| EngineError::Unavailable { reason: "joining the channel mesh".into() })?;
        let id = senders.peer_id();
        // Core 0 puts the data directory in the state the manifest describes before any core
        // opens a shard.
        if id == 0 {
            let r = crate::manifest::recover_layout(&DmaStorage, &config.data_dir).await;
            let _ = layout.set(r.map(Arc::new));
        }
        let map = loop {
            if let Some(r) = layout.get() {
                break r.clone()?;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        };
        let background = glommio::executor().create_task_queue(
            Shares::Static(config.background_shares),
            Latency::NotImportant,
            "background",
        );
        let core = Rc::new_cyclic(|me| Core {
            me: me.clone(),
            id,
            config: config.clone(),
            storage: DmaStorage,
            clock: Rc::new(SystemClock),
            map: RefCell::new(map),
            shards: RefCell::new(HashMap::new()),
            incoming: RefCell::new(None),
            retired: RefCell::new(Vec::new()),
            rebalance_broken: RefCell::new(None),
            create_lock: glommio::sync::Semaphore::new(1),
            migration_lock: glommio::sync::Semaphore::new(1),
            migrations,
            senders,
            pending: RefCell::new(HashMap::new()),
            next_request: Cell::new(1),
            background,
            stopping,
            memory,
            draining: Cell::new(false),
        });
        core.recover_local_shards().await?;
        core.publish_memory();
        for (_, rx) in receivers.streams() {
            let core = core.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    core.on_message(msg);
                }
            })
            .detach();
        }
        core.clone().spawn_timers();
        Ok(core)
    }

    /// Opens every shard on disk whose partition this core owns.
    async fn recover_local_shards(&self) -> Result<()> {
        let map = self.map.borrow().clone();
        let shards = crate::manifest::open_placed_shards(
            &self.storage,
            &self.config.data_dir,
            &map,
            self.config.cores,
            Some(self.id),
            self.config.shard_config(),
            self.clock.clone(),
        )
        .await?;
        for (_, shard) in shards {
            self.insert_local(Rc::new(shard));
        }
        self.create_missing_mapped_shards().await
    }

    /// Adds a serving shard to the routing table, keeping each partition's list sorted.
    pub(crate) fn insert_local(&self, shard: Rc<Shard<DmaStorage>>) {
        let mut shards = self.shards.borrow_mut();
        let list = shards.entry(shard.meta().partition.clone()).or_default();
        list.push(shard);
        list.sort_by_key(|s| s.range().0);
    }

    /// Creates, empty, every shard the map places here that has no directory (its files were
    /// removed by hand, or it was never written).
    pub(crate) async fn create_missing_mapped_shards(&self) -> Result<()> {
        let map = self.map.borrow().clone();
        for (partition, pmap) in map.partitions() {
            for place in pmap.shards.iter().filter(|p| p.core(self.config.cores) == self.id) {
                let exists = self
                    .shards
                    .borrow()
                    .get(partition)
                    .is_some_and(|l| l.iter().any(|s| s.meta().number == place.number));
                if exists {
                    continue;
                }
                let meta = ShardMeta {
                    partition: partition.to_vec(),
                    number: place.number,
                    range_lo: place.lo,
                    range_hi: place.hi,
                };
                tracing::warn!(shard = %meta.name(), "mapped shard has no files: created empty");
                let shard = self.create_shard(meta).await?;
                self.insert_local(Rc::new(shard));
            }
        }
        Ok(())
    }

    fn spawn_timers(self: Rc<Self>) {
        if self.config.fsync != FsyncPolicy::Always {
            let core = self.clone();
            glommio::spawn_local(async move {
                let sync = core.config.fsync == FsyncPolicy::EverySec;
                loop {
                    glommio::timer::sleep(Duration::from_millis(core.config.flush_interval_ms))
                        .await;
                    if let Err(e) = core.flush_all(sync).await {
                        tracing::error!(core = core.id, error = %e, "log flush failed");
                    }
                }
            })
            .detach();
        }
        let core = self;
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(core.config.expire_cycle_interval_ms))
                    .await;
                let now = core.clock.now_ms();
                for shard in core.all_local_shards() {
                    shard.remove_expired(core.config.expire_cycle_keys_max);
                    shard.stats.update_rate(now, OPS_RATE_PERIOD_MS);
                }
                core.publish_memory();
            }
        })
        .detach();
    }

    /// This core's index, `0..cores`.
    pub fn id(&self) -> usize {
        self.id
    }

    pub fn cores(&self) -> usize {
        self.config.cores
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Asks every core to stop (the server's accept loops watch this).
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Bytes of keys and values held by every core (as last published).
    pub fn used_memory(&self) -> u64 {
        self.memory.total()
    }

    pub(crate) fn publish_memory(&self) {
        let used: u64 = self.shards.borrow().values().flatten().map(|s| s.used_bytes()).sum();
        self.memory.per_core[self.id].0.store(used, Ordering::Relaxed);
    }

    /// The epoch of this core's copy of the shard map.
    pub fn map_epoch(&self) -> u64 {
        self.map.borrow().epoch
    }

    /// This core's copy of the shard map.
    pub fn shard_map(&self) -> Arc<ShardMap> {
        self.map.borrow().clone()
    }

    /// The core that owns a key's shard, as this core's map says.
    #[inline]
    pub fn owner_of(&self, key: &[u8]) -> usize {
        let partition = partition_of(key, self.config.partition_separator);
        self.map.borrow().core_of(partition, key, self.config.cores)
    }

    /// The serving shards of this core, sorted by partition and range.
    pub fn local_shards(&self) -> Vec<Rc<Shard<DmaStorage>>> {
        let mut v: Vec<_> = self.shards.borrow().values().flatten().cloned().collect();
        v.sort_by(|a, b| {
            (&a.meta().partition, a.range().0).cmp(&(&b.meta().partition, b.range().0))
        });
        v
    }

    /// Serving shards plus a shard being filled by a migration (log flushes, expiry).
    fn all_local_shards(&self) -> Vec<Rc<Shard<DmaStorage>>> {
        let mut v: Vec<_> = self.shards.borrow().values().flatten().cloned().collect();
        if let Some(inc) = self.incoming.borrow().as_ref() {
            if !v.iter().any(|s| Rc::ptr_eq(s, &inc.shard)) {
                v.push(inc.shard.clone());
            }
        }
        v
    }

    /// Where `key` goes, as this core sees it now.
    #[inline]
    fn route(&self, key: &[u8]) -> Route {
        let partition = partition_of(key, self.config.partition_separator);
        let position = key_position(key);
        let map = self.map.borrow();
        let mapped = map.get(partition);
        let owner = match mapped {
            None => default_core_of(partition, self.config.cores),
            Some(p) => p.find(position).core(self.config.cores),
        };
        if owner != self.id {
            return Route::Remote;
        }
        let shards = self.shards.borrow();
        let shard = shards.get(partition).and_then(|l| l.iter().find(|s| s.owns(position)));
        match shard {
            Some(s) => match s.paused_gate(position) {
                Some(gate) => Route::Paused(gate),
                None => Route::Local(s.clone(), position),
            },
            None if mapped.is_none() => Route::Unplaced,
            // The map places it here but no shard serves it: impossible while install_map
            // keeps both in step; refuse rather than guess.
            None => Route::Remote,
        }
    }

    /// Executes one op on its owning core.
    pub async fn execute_one(&self, op: Op) -> Result<Reply> {
        self.execute(vec![op]).await.pop().expect("one reply per op")
    }

    /// Executes ops on their owning cores: one message per remote core, replies in op order.
    pub async fn execute(&self, ops: Vec<Op>) -> Vec<Result<Reply>> {
        self.execute_routed(ops, 0).await
    }

    async fn execute_routed(&self, ops: Vec<Op>, hops: u32) -> Vec<Result<Reply>> {
        if hops > ROUTE_HOPS_MAX {
            let e = EngineError::Unavailable {
                reason: format!("routing did not settle after {ROUTE_HOPS_MAX} forwards"),
            };
            return ops.iter().map(|_| Err(e.clone())).collect();
        }
        // One owner lookup per op: the ops before the first remote one are known local.
        let Some(first_remote) = ops.iter().position(|op| self.owner_of(op.key()) != self.id)
        else {
            return self.execute_local(ops, hops).await;
        };
        let n = ops.len();
        let mut per_core: Vec<(Vec<usize>, Vec<Op>)> =
            (0..self.config.cores).map(|_| Default::default()).collect();
        for (i, op) in ops.into_iter().enumerate() {
            let c = if i < first_remote { self.id } else { self.owner_of(op.key()) };
            per_core[c].0.push(i);
            per_core[c].1.push(op);
        }
        let mut waiting = Vec::new();
        let mut local = None;
        for (c, (idx, ops)) in per_core.into_iter().enumerate() {
            if ops.is_empty() {
                continue;
            }
            if c == self.id {
                local = Some((idx, ops));
            } else {
                waiting.push((idx, self.send(c, CoreWork::Ops { ops, hops }).await));
            }
        }
        let mut out: Vec<Option<Result<Reply>>> = (0..n).map(|_| None).collect();
        if let Some((idx, ops)) = local {
            for (i, r) in idx.into_iter().zip(self.execute_local(ops, hops).await) {
                out[i] = Some(r);
            }
        }
        for (idx, pending) in waiting {
            let replies = match pending {
                Ok(slot) => match wait_reply(slot).await {
                    CoreResult::Ops(r) => r,
                    other => unreachable!("ops answered with {other:?}"),
                },
                Err(e) => idx.iter().map(|_| Err(e.clone())).collect(),
            };
            for (i, r) in idx.into_iter().zip(replies) {
                out[i] = Some(r);
            }
        }
        out.into_iter().map(|r| r.expect("every op answered")).collect()
    }

    /// Runs `job` on core `target` (fire and forget); on this core it runs right away.
    pub async fn run_on(self: &Rc<Self>, target: usize, job: CoreJob) -> Result<()> {
        if target == self.id {
            job(self.clone());
            return Ok(());
        }
        self.senders.send_to(target, MeshMsg::Run(job)).await.map_err(|_| {
            EngineError::Unavailable { reason: format!("core {target} is not answering") }
        })
    }

    /// Runs `work` on one core (this one included).
    pub async fn on_core(&self, core: usize, work: CoreWork) -> CoreResult {
        if core == self.id {
            return self.run_work(work).await;
        }
        match self.send(core, work).await {
            Ok(slot) => wait_reply(slot).await,
            Err(e) => CoreResult::Done(Err(e)),
        }
    }

    /// Runs `work` on every core (this one included) and returns the results by core index.
    pub async fn on_every_core(&self, work: CoreWork) -> Vec<CoreResult> {
        let mut slots = Vec::new();
        for c in 0..self.config.cores {
            if c != self.id {
                slots.push((c, self.send(c, work.clone()).await));
            }
        }
        let mut out: Vec<Option<CoreResult>> = (0..self.config.cores).map(|_| None).collect();
        out[self.id] = Some(self.run_work(work).await);
        for (c, slot) in slots {
            out[c] = Some(match slot {
                Ok(slot) => wait_reply(slot).await,
                Err(e) => CoreResult::Done(Err(e)),
            });
        }
        out.into_iter().map(|r| r.expect("every core answered")).collect()
    }

    /// `on_every_core` for reads that must see every key once (DBSIZE, KEYS, SCAN): all cores
    /// must answer under the same map epoch, else (a migration's install was between them)
    /// the fan-out is repeated.
    pub async fn on_every_core_settled(&self, work: CoreWork) -> Result<Vec<CoreResult>> {
        // Installs answer at once, so epochs agree again within one round of installs; the
        // budget is generous for a loaded machine.
        const SETTLE_WAIT_MAX: Duration = Duration::from_secs(10);
        let deadline = std::time::Instant::now() + SETTLE_WAIT_MAX;
        while std::time::Instant::now() < deadline {
            let answers = self.on_every_core(CoreWork::AtEpoch(Box::new(work.clone()))).await;
            let mut epochs = Vec::with_capacity(answers.len());
            let mut results = Vec::with_capacity(answers.len());
            for a in answers {
                match a {
                    CoreResult::AtEpoch { epoch, result } => {
                        epochs.push(epoch);
                        results.push(*result);
                    }
                    CoreResult::Done(Err(e)) => return Err(e),
                    other => unreachable!("AtEpoch answered with {other:?}"),
                }
            }
            if epochs.windows(2).all(|w| w[0] == w[1]) {
                return Ok(results);
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Err(EngineError::Unavailable { reason: "the shard map kept changing; retry".into() })
    }

    /// Keys in the whole engine (DBSIZE), each counted once even during a migration.
    pub async fn dbsize(&self) -> Result<u64> {
        let answers = self.on_every_core_settled(CoreWork::DbSize).await?;
        answers
            .into_iter()
            .map(|r| match r {
                CoreResult::Count(n) => Ok(n),
                CoreResult::Done(Err(e)) => Err(e),
                other => unreachable!("DbSize answered with {other:?}"),
            })
            .sum()
    }

    async fn send(&self, core: usize, work: CoreWork) -> Result<Rc<ReplySlot>> {
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        let slot = Rc::new(ReplySlot::default());
        self.pending.borrow_mut().insert(id, slot.clone());
        if self.senders.send_to(core, MeshMsg::Request { id, from: self.id, work }).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(EngineError::Unavailable {
                reason: format!("core {core} is not answering"),
            });
        }
        Ok(slot)
    }

    fn on_message(self: &Rc<Self>, msg: MeshMsg) {
        match msg {
            MeshMsg::Request { id, from, work: CoreWork::Ops { ops, hops } } => {
                match self.resolve_inline(&ops) {
                    Some(targets) => {
                        // Fast path: nothing here can await (shards exist, no durability
                        // wait), so run it in the receive loop instead of spawning a task.
                        let result = CoreResult::Ops(self.execute_now(ops, targets));
                        self.reply_to(from, id, result);
                    }
                    None => {
                        let core = self.clone();
                        glommio::spawn_local(async move {
                            let result = CoreResult::Ops(core.execute_local(ops, hops).await);
                            let _ = core.senders.send_to(from, MeshMsg::Reply { id, result }).await;
                        })
                        .detach();
                    }
                }
            }
            MeshMsg::Request { id, from, work } => {
                let core = self.clone();
                let background = work.is_background();
                let task = async move {
                    let result = core.run_work(work).await;
                    // The requester's receive loop always drains, so this cannot deadlock.
                    let _ = core.senders.send_to(from, MeshMsg::Reply { id, result }).await;
                };
                if background {
                    if let Ok(t) = glommio::spawn_local_into(task, self.background) {
                        t.detach();
                        return;
                    }
                    unreachable!("the background queue exists as long as the core");
                }
                glommio::spawn_local(task).detach();
            }
            MeshMsg::Run(job) => job(self.clone()),
            MeshMsg::Reply { id, result } => {
                let slot = self.pending.borrow_mut().remove(&id);
                if let Some(slot) = slot {
                    *slot.value.borrow_mut() = Some(result);
                    if let Some(w) = slot.waker.borrow_mut().take() {
                        w.wake();
                    }
                }
            }
        }
    }

    /// Sends a reply from the receive loop without awaiting when the channel has room.
    fn reply_to(self: &Rc<Self>, from: usize, id: u64, result: CoreResult) {
        {
            {
                let reply = MeshMsg::Reply { id, result };
                if let Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                    reply,
                ))) = self.senders.try_send_to(from, reply)
                {
                    let core = self.clone();
                    glommio::spawn_local(async move {
                        let _ = core.senders.send_to(from, reply).await;
                    })
                    .detach();
                }
            }
        }
    }

    async fn run_work(&self, work: CoreWork) -> CoreResult {
        match work {
            CoreWork::Ops { ops, hops } => CoreResult::Ops(self.execute_local(ops, hops).await),
            CoreWork::DbSize => CoreResult::Count(
                self.shards.borrow().values().flatten().map(|s| s.owned_key_count() as u64).sum(),
            ),
            // Boxed: a migration step may await other steps through `on_core`.
            CoreWork::Migration(work) => Box::pin(self.run_migration_work(work)).await,
            CoreWork::AtEpoch(work) => {
                // The fan-out reads (DbSize, Keys, Scan) do not await, so the epoch read here is
                // the one they ran under.
                let epoch = self.map_epoch();
                let result = Box::new(Box::pin(self.run_work(*work)).await);
                CoreResult::AtEpoch { epoch, result }
            }
            CoreWork::FlushAll if self.draining.get() => {
                CoreResult::Done(Err(EngineError::Unavailable { reason: "shutting down".into() }))
            }
            CoreWork::FlushAll => {
                let r = self.flush_all_keys().await;
                self.publish_memory();
                CoreResult::Done(r)
            }
            CoreWork::ShardInfo => CoreResult::Shards(self.shard_summaries()),
            CoreWork::SetIfNoneExist(pairs) => match self.set_if_none_exist(pairs).await {
                Ok(set) => CoreResult::Count(set as u64),
                Err(e) => CoreResult::Done(Err(e)),
            },
            CoreWork::RandomKey { seed } => CoreResult::Key(self.random_key(seed)),
            CoreWork::Keys { pattern, max } => {
                let (keys, truncated) = self.keys_local(pattern.as_deref(), max);
                CoreResult::Keys { keys, truncated }
            }
            CoreWork::Scan { cursor, count, pattern } => {
                CoreResult::Scan(self.scan_local(cursor, count, pattern.as_deref()))
            }
        }
    }

    /// Creates the default-placed shard of `partition` on this core (first write to it).
    async fn create_default_shard(&self, partition: &[u8]) -> Result<()> {
        let _permit = self.create_lock.acquire_permit(1).await.expect("create lock closed");
        if self.shards.borrow().contains_key(partition)
            || self.map.borrow().get(partition).is_some()
        {
            return Ok(());
        }
        if self.local_shard_count() >= self.config.shards_per_core_max {
            return Err(EngineError::TooManyShards {
                core: self.id,
                max: self.config.shards_per_core_max,
            });
        }
        let shard = self.create_shard(ShardMeta::whole(partition)).await?;
        if self.map.borrow().get(partition).is_none() {
            self.insert_local(Rc::new(shard));
        }
        Ok(())
    }

    /// Creates a new, empty shard on disk with this core's settings.
    pub(crate) async fn create_shard(&self, meta: ShardMeta) -> Result<Shard<DmaStorage>> {
        let config = self.config.shard_config();
        Shard::create(self.storage.clone(), &self.config.data_dir, meta, config, self.clock.clone())
            .await
    }

    pub(crate) fn local_shard_count(&self) -> usize {
        self.shards.borrow().values().map(Vec::len).sum::<usize>()
            + self.incoming.borrow().is_some() as usize
    }

    /// The shards that serve `ops` if every op can run right now without awaiting: all are
    /// local and not paused, and replies need not wait for an fsync.
    fn resolve_inline(&self, ops: &[Op]) -> Option<Vec<(Rc<Shard<DmaStorage>>, u64)>> {
        if self.draining.get() || self.config.fsync == FsyncPolicy::Always {
            return None;
        }
        ops.iter()
            .map(|op| match self.route(op.key()) {
                Route::Local(shard, position) => Some((shard, position)),
                _ => None,
            })
            .collect()
    }

    /// `execute_local` for ops that `resolve_inline` placed: synchronous.
    fn execute_now(
        &self,
        ops: Vec<Op>,
        targets: Vec<(Rc<Shard<DmaStorage>>, u64)>,
    ) -> Vec<Result<Reply>> {
        let mut out = Vec::with_capacity(ops.len());
        for (op, (shard, position)) in ops.into_iter().zip(targets) {
            out.push(shard.execute_at(op, position).map(|(reply, wait)| {
                debug_assert!(wait.is_none(), "no durability wait outside fsync=always");
                reply
            }));
            self.after_write(&shard);
        }
        self.publish_memory();
        out
    }

    /// Executes ops sent here, in order; waits for durability per policy. Ops this core no
    /// longer owns (the map changed while they travelled) are forwarded; ops on a range in
    /// cutover wait for it to end, then route again.
    async fn execute_local(&self, ops: Vec<Op>, hops: u32) -> Vec<Result<Reply>> {
        let targets = loop {
            if self.draining.get() {
                let e = EngineError::Unavailable { reason: "shutting down".into() };
                return ops.iter().map(|_| Err(e.clone())).collect();
            }
            let mut targets = Vec::with_capacity(ops.len());
            let mut blocked = None;
            for op in &ops {
                match self.route(op.key()) {
                    Route::Local(shard, position) => targets.push(Some((shard, position))),
                    Route::Unplaced if op.kind() == OpKind::Write => {
                        blocked =
                            Some(Err(
                                partition_of(op.key(), self.config.partition_separator).to_vec()
                            ));
                        break;
                    }
                    Route::Unplaced => targets.push(None),
                    Route::Paused(gate) => {
                        blocked = Some(Ok(gate));
                        break;
                    }
                    Route::Remote => {
                        return Box::pin(self.execute_routed(ops, hops + 1)).await;
                    }
                }
            }
            match blocked {
                None => break targets,
                Some(Ok(gate)) => gate.wait().await,
                Some(Err(partition)) => {
                    if let Err(e) = self.create_default_shard(&partition).await {
                        return ops.iter().map(|_| Err(e.clone())).collect();
                    }
                }
            }
            // Something awaited: route every op again, so none runs on a stale route.
        };
        let mut out = Vec::with_capacity(ops.len());
        let mut waits: Vec<(Rc<Shard<DmaStorage>>, u64, Vec<usize>)> = Vec::new();
        for (i, (op, target)) in ops.into_iter().zip(targets).enumerate() {
            let Some((shard, position)) = target else {
                out.push(Ok(reply_without_shard(&op)));
                continue;
            };
            match shard.execute_at(op, position) {
                Ok((reply, wait)) => {
                    out.push(Ok(reply));
                    if let Some(lsn) = wait {
                        match waits.iter_mut().find(|(s, _, _)| Rc::ptr_eq(s, &shard)) {
                            Some(w) => {
                                w.1 = w.1.max(lsn);
                                w.2.push(i);
                            }
                            None => waits.push((shard.clone(), lsn, vec![i])),
                        }
                    }
                }
                Err(e) => out.push(Err(e)),
            }
            self.after_write(&shard);
        }
        self.publish_memory();
        for (shard, lsn, idx) in waits {
            if let Err(e) = shard.wait_durable(lsn).await {
                for i in idx {
                    out[i] = Err(e.clone());
                }
            }
        }
        out
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
            let s = shard.clone();
            let _ = glommio::spawn_local_into(
                async move {
                    let _ = s.snapshot().await;
                },
                self.background,
            )
            .map(|t| t.detach());
        }
    }

    async fn flush_all_keys(&self) -> Result<()> {
        let shards = self.local_shards();
        for shard in shards {
            if !shard.is_serving() {
                continue;
            }
            if let Some(lsn) = shard.clear()? {
                shard.wait_durable(lsn).await?;
            }
        }
        Ok(())
    }

    fn shard_summaries(&self) -> Vec<ShardSummary> {
        self.local_shards()
            .iter()
            .map(|s| {
                let m = s.meta();
                let (range_lo, range_hi) = s.range();
                ShardSummary {
                    core: self.id,
                    partition: m.partition.clone(),
                    number: m.number,
                    range_lo,
                    range_hi,
                    keys: s.owned_key_count() as u64,
                    expiring_keys: s.with_keyspace(|ks| ks.expiring_len() as u64),
                    used_bytes: s.used_bytes(),
                    reads: s.stats.reads.get(),
                    writes: s.stats.writes.get(),
                    deletes: s.stats.deletes.get(),
                    others: s.stats.others.get(),
                    snapshots: s.stats.snapshots.get(),
                    ops_per_sec: s.stats.ops_per_sec.get(),
                    accesses: s.access_total(),
                    migrating: s.is_migrating(),
                    failure: s.failure().map(|e| e.to_string()),
                }
            })
            .collect()
    }

    /// MSETNX on one core: nothing awaits between the checks and the writes, so no other op
    /// interleaves. Returns whether the pairs were set.
    pub async fn set_if_none_exist(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<bool> {
        if self.draining.get() {
            return Err(EngineError::Unavailable { reason: "shutting down".into() });
        }
        let sep = self.config.partition_separator;
        for (key, _) in &pairs {
            // Shard creation is the only await; it happens before any check.
            if let Route::Unplaced = self.route(key) {
                self.create_default_shard(partition_of(key, sep)).await?;
            }
        }
        if self.draining.get() {
            return Err(EngineError::Unavailable { reason: "shutting down".into() });
        }
        let mut shards = Vec::with_capacity(pairs.len());
        for (key, _) in &pairs {
            match self.route(key) {
                Route::Local(shard, _) => shards.push(shard),
                // The keys moved (or are moving) since the caller routed them here.
                _ => return Err(EngineError::TryAgain),
            }
        }
        for shard in &shards {
            shard.check_writable()?;
        }
        for ((key, _), shard) in pairs.iter().zip(&shards) {
            if shard.execute(Op::Exists { key: key.clone() })?.0 == Reply::Bool(true) {
                return Ok(false);
            }
        }
        let mut waits = Vec::new();
        for ((key, value), shard) in pairs.into_iter().zip(&shards) {
            let op = Op::Set {
                key,
                value,
                condition: crate::keyspace::SetCondition::Always,
                expiry: crate::keyspace::SetExpiry::Clear,
                return_old: false,
            };
            if let (_, Some(lsn)) = shard.execute(op)? {
                waits.push((shard.clone(), lsn));
            }
        }
        self.publish_memory();
        for (shard, lsn) in waits {
            shard.wait_durable(lsn).await?;
        }
        Ok(true)
    }

    fn keys_local(&self, pattern: Option<&[u8]>, max: usize) -> (Vec<Vec<u8>>, bool) {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for shard in self.local_shards() {
            let full = shard.with_keyspace(|ks| {
                for (key, entry) in ks.iter() {
                    let live = entry.expire_at_ms == 0 || entry.expire_at_ms > now;
                    if live && pattern.is_none_or(|p| glob_match(p, key)) && shard.owns_key(key) {
                        if out.len() >= max {
                            return true;
                        }
                        out.push(key.to_vec());
                    }
                }
                false
            });
            if full {
                return (out, true);
            }
        }
        (out, false)
    }

    fn random_key(&self, seed: u64) -> Option<Vec<u8>> {
        let shards: Vec<_> =
            self.local_shards().into_iter().filter(|s| s.key_count() > 0).collect();
        if shards.is_empty() {
            return None;
        }
        let mut rng = crate::testing::SplitMix64::new(seed);
        let now = self.clock.now_ms();
        for _ in 0..16 {
            let shard = &shards[rng.below(shards.len() as u64) as usize];
            let n = shard.key_count() as u64;
            let found = shard.with_keyspace(|ks| {
                let key = ks.key_at(rng.below(n.max(1)) as usize)?;
                (ks.exists(&key, now) && shard.owns_key(&key)).then(|| key.to_vec())
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Writes (and syncs, if `sync`) every local shard's buffered log.
    pub async fn flush_all(&self, sync: bool) -> Result<()> {
        let shards = self.all_local_shards();
        let mut first_err = None;
        for shard in shards {
            if let Err(e) = shard.flush(sync).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Takes a snapshot of every local shard now (BGSAVE-like; tests and benches).
    pub async fn snapshot_all(&self) -> Result<()> {
        let shards = self.local_shards();
        for shard in shards {
            if shard.is_serving() {
                shard.snapshot().await?;
            }
        }
        Ok(())
    }

    fn scan_local(&self, cursor: u64, count: usize, pattern: Option<&[u8]>) -> ScanPage {
        let now = self.clock.now_ms();
        let mut all: Vec<(u64, Vec<u8>)> = Vec::new();
        for shard in self.local_shards() {
            let partition = &shard.meta().partition;
            shard.with_keyspace(|ks| {
                for (key, entry) in ks.iter() {
                    if entry.expire_at_ms != 0 && entry.expire_at_ms <= now {
                        continue;
                    }
                    if !shard.owns_key(key) {
                        continue;
                    }
                    let pos = scan_position(partition, key);
                    if pos >= cursor {
                        all.push((pos, key.to_vec()));
                    }
                }
            });
        }
        all.sort_unstable();
        let mut take = count.max(1).min(all.len());
        // Never split a group of equal positions across pages.
        while take < all.len() && take > 0 && all[take].0 == all[take - 1].0 {
            take += 1;
        }
        let next = all.get(take).map(|(p, _)| *p);
        all.truncate(take);
        if let Some(p) = pattern {
            all.retain(|(_, k)| glob_match(p, k));
        }
        ScanPage { keys: all, next }
    }

    /// One SCAN step over the whole engine: keys at positions >= `cursor` (about `count`
    /// examined), and the next cursor (0 when done). Every key present for the whole
    /// iteration is returned at least once; no key is returned twice in one iteration.
    pub async fn scan(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<Vec<u8>>,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let pages = self.on_every_core_settled(CoreWork::Scan { cursor, count, pattern }).await?;
        let mut pages: Vec<ScanPage> = pages
            .into_iter()
            .map(|r| match r {
                CoreResult::Scan(p) => Ok(p),
                CoreResult::Done(Err(e)) => Err(e),
                other => unreachable!("scan answered with {other:?}"),
            })
            .collect::<Result<_>>()?;
        let next = pages.iter().filter_map(|p| p.next).min();
        let mut keys: Vec<(u64, Vec<u8>)> = Vec::new();
        for p in pages.iter_mut() {
            keys.extend(p.keys.drain(..).filter(|(pos, _)| next.is_none_or(|n| *pos < n)));
        }
        keys.sort_unstable();
        Ok((next.unwrap_or(0), keys.into_iter().map(|(_, k)| k).collect()))
    }
}

/// The reply to an op on a partition that has no shard yet (so no keys).
fn reply_without_shard(op: &Op) -> Reply {
    match op {
        Op::Get { .. } | Op::GetDel { .. } | Op::GetEx { .. } => Reply::Nil,
        Op::Ttl { .. } => Reply::Ttl(crate::keyspace::Ttl::Missing),
        Op::StrLen { .. } => Reply::Int(0),
        Op::GetRange { .. } => Reply::Value(Vec::new()),
        _ => Reply::Bool(false),
    }
}

async fn wait_reply(slot: Rc<ReplySlot>) -> CoreResult {
    std::future::poll_fn(|cx| {
        if let Some(v) = slot.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        *slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}
