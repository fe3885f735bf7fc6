//! Starting the engine: one pinned executor per core, the iopoll workaround, the recovery of
//! the data directory (core 0) and of each core's shards, and the final flush.

use super::*;
use crate::clock::SystemClock;
use crate::error::{EngineError, Result};
use crate::log::record::LoggedTxn;
use crate::placement::manifest::{create_placed_shard, recover_layout, LayoutInit};
use crate::placement::shard_map::ShardMap;
use crate::storage::dma::DmaStorage;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{Latency, LocalExecutorPoolBuilder, PoolPlacement, Shares};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    let lifecycle = Arc::new(Lifecycle::new(config.cores, stopping.clone()));
    let memory = Arc::new(MemoryGauge::new(config.cores));
    let layout: Arc<std::sync::OnceLock<Result<Arc<ShardMap>>>> = Arc::default();
    let migrations = Arc::new(crate::runtime::coordinator::MigrationCounters::default());
    // The transactions some shard's log says committed, gathered from every core before any
    // serves (`Shard::resolve_txns`).
    let commits: Arc<std::sync::Mutex<HashSet<LoggedTxn>>> = Arc::default();
    // Whether some shard did not recover (its log's commits are then unknown).
    let shard_failed: Arc<AtomicBool> = Arc::default();
    let handles = builder
        .on_all_shards(move || async move {
            let shared = Shared { stopping, memory, layout: layout.clone(), migrations };
            // Counts this core however its future ends, a panic included (see `Exit`).
            let mut exit = Exit { lifecycle: &lifecycle, layout: &layout, stage: Stage::Starting };
            let core = match Core::start(config.clone(), mesh, shared).await {
                Ok(core) => {
                    let found: Vec<LoggedTxn> = core
                        .all_local_shards()
                        .iter()
                        .flat_map(|s| s.recovered_commits())
                        .collect();
                    commits.lock().expect("no panic holds it").extend(found);
                    if core.all_local_shards().iter().any(|s| !s.is_serving()) {
                        shard_failed.store(true, Ordering::SeqCst);
                    }
                    exit.stage = Stage::Started;
                    lifecycle.started.fetch_add(1, Ordering::SeqCst);
                    Some(core)
                }
                Err(e) => {
                    exit.stage = Stage::Done;
                    lifecycle.fail(e, &layout);
                    None
                }
            };
            // No core serves until every core has started: a client must never reach a core
            // whose shards are not open, nor a request wait for one that will not answer.
            while lifecycle.failure().is_none()
                && lifecycle.started.load(Ordering::SeqCst) < config.cores
            {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            if let Some(e) = lifecycle.failure() {
                // Nothing was served: what recovery wrote it made durable itself.
                exit.stage = Stage::Done;
                return Err(e);
            }
            let core = core.expect("a core that did not fail has started");
            let committed = commits.lock().expect("no panic holds it").clone();
            let decided = !shard_failed.load(Ordering::SeqCst);
            if let Err(e) = core.resolve_recovered_txns(&committed, decided).await {
                exit.stage = Stage::Done;
                lifecycle.fail(e.clone(), &layout);
                return Err(e);
            }
            lifecycle.resolved.fetch_add(1, Ordering::SeqCst);
            while lifecycle.failure().is_none()
                && lifecycle.resolved.load(Ordering::SeqCst) < config.cores
            {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            if let Some(e) = lifecycle.failure() {
                exit.stage = Stage::Done;
                return Err(e);
            }
            core.clone().spawn_timers();
            let out = per_core(core.clone()).await;
            exit.finish();
            // Serve other cores until every core's own work is done, then refuse new work and
            // make everything durable.
            while lifecycle.finished.load(Ordering::SeqCst) < config.cores {
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

pub(super) fn write_iopoll_probe(data_dir: &Path) -> Result<()> {
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

/// How the executors agree on starting and on finishing. Every core's start is counted, a
/// failed one too, so no core waits for a core that will never come.
/// Invariant: no core serves (runs `per_core`) until every core has started; a core that fails
/// to start makes every core return that failure without serving, and puts an error in the
/// layout slot so no core waits for a map that core 0 will never publish.
/// Invariant: a core's own work counts as finished however it ends (a panic unwinding
/// through `per_core` included), so the others reach their final flush.
struct Lifecycle {
    started: AtomicUsize,
    /// Cores that settled the transactions their recovery held back (no core serves before
    /// every core has: a core serving early could show half a transaction, or have a write
    /// overwritten by a part applied after it).
    resolved: AtomicUsize,
    finished: AtomicUsize,
    /// The first core's failure to start.
    failed: std::sync::OnceLock<EngineError>,
    stopping: Arc<AtomicBool>,
}

impl Lifecycle {
    fn new(cores: usize, stopping: Arc<AtomicBool>) -> Self {
        assert!(cores > 0);
        Lifecycle {
            started: AtomicUsize::new(0),
            resolved: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            failed: std::sync::OnceLock::new(),
            stopping,
        }
    }

    fn fail(&self, e: EngineError, layout: &std::sync::OnceLock<Result<Arc<ShardMap>>>) {
        let _ = layout.set(Err(e.clone()));
        if self.failed.set(e.clone()).is_ok() {
            tracing::error!(error = %e, "a core failed to start; stopping every core");
        }
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn failure(&self) -> Option<EngineError> {
        self.failed.get().cloned()
    }
}

/// Where a core is in its life, for `Exit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// In `Core::start`: a panic here fails the start of every core.
    Starting,
    /// Started, its own work not done: a panic here counts it finished and stops the others.
    Started,
    /// Counted (finished, or its start failed and said so).
    Done,
}

/// Counts a core in the `Lifecycle` however its future ends: a panic unwinding through it
/// (from `Core::start`, a receive loop or `per_core`) fails the start or counts the core
/// finished, so no other core waits for it for ever.
struct Exit<'a> {
    lifecycle: &'a Lifecycle,
    layout: &'a std::sync::OnceLock<Result<Arc<ShardMap>>>,
    stage: Stage,
}

impl Exit<'_> {
    fn finish(&mut self) {
        if self.stage == Stage::Started {
            self.lifecycle.finished.fetch_add(1, Ordering::SeqCst);
        }
        self.stage = Stage::Done;
    }
}

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        match self.stage {
            Stage::Starting => {
                let e =
                    EngineError::Unavailable { reason: "a core panicked while starting".into() };
                self.lifecycle.fail(e, self.layout);
            }
            Stage::Started => {
                // Unwinding: the others must not wait for this core, and should stop too.
                self.lifecycle.stopping.store(true, Ordering::SeqCst);
                self.finish();
            }
            Stage::Done => {}
        }
    }
}

/// What every executor shares at startup.
pub(super) struct Shared {
    stopping: Arc<AtomicBool>,
    memory: Arc<MemoryGauge>,
    /// The recovered shard map, set by core 0 once the data directory is in order.
    layout: Arc<std::sync::OnceLock<Result<Arc<ShardMap>>>>,
    migrations: Arc<crate::runtime::coordinator::MigrationCounters>,
}

impl Core {
    /// Settles the transaction parts recovery held back, by the commits every core's logs
    /// hold (`committed`), and makes what that logged durable before this core serves.
    /// Every part is applied in memory first (no await), then the commits logged for them
    /// are made durable. `committed` is only final (`decided`) if every shard recovered: with
    /// a shard that did not, parts not known committed stay undecided (neither applied nor
    /// dropped).
    async fn resolve_recovered_txns(
        &self,
        committed: &HashSet<LoggedTxn>,
        decided: bool,
    ) -> Result<()> {
        let shards = self.all_local_shards();
        let mut waits = Vec::new();
        for shard in &shards {
            if let Some(lsn) = shard.resolve_txns(committed, decided)? {
                waits.push((shard.clone(), lsn));
            }
        }
        self.publish_memory();
        for (shard, lsn) in waits {
            shard.wait_durable(lsn).await?;
        }
        Ok(())
    }

    pub(super) async fn start(
        config: Arc<EngineConfig>,
        mesh: MeshBuilder<MeshMsg, glommio::channels::channel_mesh::Full>,
        shared: Shared,
    ) -> Result<Rc<Core>> {
        let Shared { stopping, memory, layout, migrations } = shared;
        // The mesh first: it needs no I/O, and a core that fails later must have joined it,
        // or the others would wait in `join` for ever.
        let (senders, mut receivers) = mesh
            .join()
            .await
            .map_err(|_| EngineError::Unavailable { reason: "joining the channel mesh".into() })?;
        let id = senders.peer_id();
        let failed = |e: EngineError| EngineError::CoreStart { core: id, cause: Box::new(e) };
        apply_iopoll_workaround(&config.data_dir).await.map_err(failed)?;
        // Core 0 puts the data directory in the state the manifest describes before any core
        // opens a shard.
        if id == 0 {
            let init = LayoutInit {
                shared_shards: config.cores * config.shared_shards_per_core,
                cores: config.cores,
                separator: config.partition_separator,
            };
            let clock: Rc<dyn Clock> = Rc::new(SystemClock);
            let r =
                recover_layout(&DmaStorage, &config.data_dir, init, &config.shard_config(), clock)
                    .await;
            let _ = layout.set(r.map(Arc::new));
        }
        let map = loop {
            if let Some(r) = layout.get() {
                break r.clone().map_err(|e| match (id, e) {
                    // Core 0's own failure is reported once, by core 0.
                    (0, e) => failed(e),
                    (_, e @ EngineError::CoreStart { .. }) => e,
                    (_, e) => EngineError::CoreStart { core: 0, cause: Box::new(e) },
                })?;
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
            routes: RefCell::new(Default::default()),
            incoming: RefCell::new(None),
            retired: RefCell::new(Vec::new()),
            rebalance_broken: RefCell::new(None),
            locks: RefCell::default(),
            watches: RefCell::default(),
            next_txn: Cell::new(0),
            txn_parts: RefCell::default(),
            backup_hold: RefCell::new(None),
            backup_state: RefCell::new(Default::default()),
            migration_lock: glommio::sync::Semaphore::new(1),
            migrations,
            senders,
            pending: RefCell::new(HashMap::new()),
            next_request: Cell::new(1),
            background,
            stopping,
            memory,
            draining: Cell::new(false),
            in_flight: Rc::new(Cell::new(0)),
            in_flight_max: Cell::new(0),
            remote_ops: Cell::new(0),
            service_sample: Cell::new(0),
            evictor: RefCell::new(super::eviction::Evictor::new(id)),
        });
        core.recover_local_shards().await.map_err(failed)?;
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
        Ok(core)
    }

    /// Opens every shard the map places on this core, and creates those without files.
    pub(super) async fn recover_local_shards(&self) -> Result<()> {
        let map = self.map.borrow().clone();
        let shards = crate::placement::manifest::open_placed_shards(
            &self.storage,
            &self.config.data_dir,
            &map,
            self.config.cores,
            Some(self.id),
            self.config.shard_config(),
            self.clock.clone(),
        )
        .await?;
        self.set_shards(shards.into_iter().map(|(_, s)| (s.number(), Rc::new(s))).collect());
        self.create_missing_mapped_shards().await
    }

    /// Creates, empty, every shard the map places here that has no files: a new data
    /// directory's shared shards, or a shard whose files were removed by hand.
    pub(crate) async fn create_missing_mapped_shards(&self) -> Result<()> {
        let map = self.map.borrow().clone();
        let mine = map.shards().filter(|p| p.core(self.config.cores) == self.id);
        let missing: Vec<u64> =
            mine.map(|p| p.number).filter(|n| self.local_shard(*n).is_none()).collect();
        for number in missing {
            let shard = create_placed_shard(
                &self.storage,
                &self.config.data_dir,
                &map,
                number,
                self.config.shard_config(),
                self.clock.clone(),
            )
            .await?;
            if map.epoch == 0 && shard.meta().partition.is_none() {
                tracing::info!(core = self.id, shard = %shard.meta().name(), "shard created");
            } else {
                // The map has moved on since the directory was made: its files were lost.
                tracing::error!(core = self.id, shard = %shard.meta().name(),
                    "a shard of the shard map had no files: created empty; keys it held are lost");
            }
            self.insert_local(Rc::new(shard));
        }
        Ok(())
    }
}
