//! Starting the engine: one pinned executor per core, the iopoll workaround, the recovery of
//! the data directory (core 0) and of each core's shards, and the final flush.

use super::*;
use crate::clock::SystemClock;
use crate::error::{EngineError, Result};
use crate::placement::manifest::{create_placed_shard, recover_layout, LayoutInit};
use crate::placement::shard_map::ShardMap;
use crate::storage::dma::DmaStorage;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{Latency, LocalExecutorPoolBuilder, PoolPlacement, Shares};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
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
    let finished = Arc::new(AtomicUsize::new(0));
    let memory = Arc::new(MemoryGauge::new(config.cores));
    let layout: Arc<std::sync::OnceLock<Result<Arc<ShardMap>>>> = Arc::default();
    let migrations = Arc::new(crate::runtime::coordinator::MigrationCounters::default());
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

/// What every executor shares at startup.
pub(super) struct Shared {
    stopping: Arc<AtomicBool>,
    memory: Arc<MemoryGauge>,
    /// The recovered shard map, set by core 0 once the data directory is in order.
    layout: Arc<std::sync::OnceLock<Result<Arc<ShardMap>>>>,
    migrations: Arc<crate::runtime::coordinator::MigrationCounters>,
}

impl Core {
    pub(super) async fn start(
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
            routes: RefCell::new(Default::default()),
            incoming: RefCell::new(None),
            retired: RefCell::new(Vec::new()),
            rebalance_broken: RefCell::new(None),
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
