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
//! #605/#670, see docs/design.md), or reads on that executor may fail with EOPNOTSUPP.
//! Invariant: `routes` mirrors `map` and `shards` at all times (rebuilt by `set_shards`): an
//! op is executed only by a shard that owns its position by this core's map.

mod backup;
mod config;
pub mod coordinator;
pub mod eviction;
mod fanout;
pub mod journal;
pub mod layout;
mod mesh;
pub mod migration_steps;
mod route;
mod start;
mod timers;
pub mod txn;
mod work;

pub use backup::{find_backup, BackupReport, BACKUP_INFO_FILE};
pub use config::IOPOLL_PROBE_FILE;
use config::IOPOLL_PROBE_LEN;
pub use config::{EngineConfig, CORE_ANSWER_WAIT_MS_DEFAULT};
pub use eviction::{EvictionPolicy, EvictionSettings};
use mesh::{wait_reply, MeshMsg, ReplySlot};
pub use route::ROUTE_HOPS_MAX;
pub use start::{apply_iopoll_workaround, run, run_until};
pub use work::{
    CoreJob, CoreResult, CoreWork, ScanPage, ShardSummary, SET_IF_NONE_EXIST_SEVERAL_SHARDS,
};

use crate::clock::Clock;
use crate::placement::shard_map::ShardMap;
use crate::shard::Shard;
use crate::storage::dma::DmaStorage;
use glommio::channels::channel_mesh::Senders;
use glommio::TaskQueueHandle;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Per core: bytes used, keys expired and keys evicted; each slot written only by its core
/// (for `maxmemory`, INFO and `/metrics`).
pub struct MemoryGauge {
    per_core: Vec<CoreMemory>,
}

#[repr(align(128))]
#[derive(Default)]
struct CoreMemory {
    used: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
}

impl MemoryGauge {
    fn new(cores: usize) -> Self {
        MemoryGauge { per_core: (0..cores).map(|_| CoreMemory::default()).collect() }
    }

    /// Bytes used by all cores, as last published (at most one batch old per core).
    pub fn total(&self) -> u64 {
        self.per_core.iter().map(|c| c.used.load(Ordering::Relaxed)).sum()
    }

    /// Bytes used by one core, as last published.
    pub fn core_used(&self, core: usize) -> u64 {
        self.per_core[core].used.load(Ordering::Relaxed)
    }

    /// Keys removed because their time to live ended, since the start.
    pub fn expired_total(&self) -> u64 {
        self.per_core.iter().map(|c| c.expired.load(Ordering::Relaxed)).sum()
    }

    /// Keys evicted under `maxmemory`, since the start.
    pub fn evicted_total(&self) -> u64 {
        self.per_core.iter().map(|c| c.evicted.load(Ordering::Relaxed)).sum()
    }

    /// Zeroes the expired and evicted counts (CONFIG RESETSTAT).
    pub fn reset_counters(&self) {
        for c in &self.per_core {
            c.expired.store(0, Ordering::Relaxed);
            c.evicted.store(0, Ordering::Relaxed);
        }
    }

    fn sub_used(&self, core: usize, bytes: u64) {
        let slot = &self.per_core[core].used;
        slot.store(slot.load(Ordering::Relaxed).saturating_sub(bytes), Ordering::Relaxed);
    }

    fn add_evicted(&self, core: usize, keys: u64) {
        self.per_core[core].evicted.fetch_add(keys, Ordering::Relaxed);
    }

    fn add_expired(&self, core: usize, keys: u64) {
        if keys > 0 {
            self.per_core[core].expired.fetch_add(keys, Ordering::Relaxed);
        }
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
    /// The shards of this core that serve, by number.
    shards: RefCell<HashMap<u64, Rc<Shard<DmaStorage>>>>,
    /// The map's ranges with their owner core and, for this core's, the serving shard.
    routes: RefCell<route::RouteTable>,
    /// The shard a migration is filling here, before the map gives it its range.
    pub(crate) incoming: RefCell<Option<migration_steps::Incoming>>,
    /// Shards a merge took out of service; their files go at the tidy step.
    pub(crate) retired: RefCell<Vec<Rc<Shard<DmaStorage>>>>,
    /// Set on the coordinator when a failed migration's rollback could not be recorded:
    /// migrations and FLUSHALL are refused until a restart settles the map.
    pub(crate) rebalance_broken: RefCell<Option<String>>,
    /// Key locks of atomic work across cores (`txn`).
    pub(crate) locks: RefCell<txn::locks::KeyLocks>,
    /// WATCHed keys of this core (`txn::watch`).
    pub(crate) watches: RefCell<txn::watch::WatchRegistry>,
    /// The last transaction id this core gave out.
    next_txn: Cell<u64>,
    /// Shards holding a part of a transaction whose commit is not logged yet, with the LSN of
    /// the part's last `TxnEnd` there, by transaction.
    pub(crate) txn_parts: RefCell<HashMap<u64, Vec<TxnPart>>>,
    /// While a backup takes its cut, ops on this core wait on this gate (`backup`).
    pub(crate) backup_hold: RefCell<Option<Rc<crate::migration::Gate>>>,
    /// The backup in progress here: its id and the shards it pinned.
    pub(crate) backup_state: RefCell<backup::BackupState>,
    /// Held by the coordinator (core 0) for the whole of a split or merge.
    pub(crate) migration_lock: glommio::sync::Semaphore,
    pub(crate) migrations: Arc<crate::runtime::coordinator::MigrationCounters>,
    senders: Senders<MeshMsg>,
    pending: RefCell<HashMap<u64, Rc<ReplySlot>>>,
    next_request: Cell<u64>,
    pub(crate) background: TaskQueueHandle,
    stopping: Arc<AtomicBool>,
    memory: Arc<MemoryGauge>,
    /// Set after every core's work ended: ops are refused so nothing changes after the final
    /// flush.
    pub(crate) draining: Cell<bool>,
    /// Requests in progress here (client batches, work from other cores), and the most since
    /// the last tick: the core's queue depth.
    in_flight: Rc<Cell<u64>>,
    in_flight_max: Cell<u64>,
    /// Ops other cores sent here (their connections' keys live here) since the last tick.
    remote_ops: Cell<u64>,
    /// Ops seen by the service-time sampler (`telemetry::SERVICE_SAMPLE_EVERY`).
    service_sample: Cell<u32>,
    /// Candidates for eviction under `maxmemory`.
    evictor: RefCell<eviction::Evictor>,
}

/// A shard holding part of a transaction, and the LSN of the part's last `TxnEnd` there.
pub(crate) type TxnPart = (Rc<Shard<DmaStorage>>, u64);

/// Counts a request in progress on a core until dropped.
pub(crate) struct InFlight(Rc<Cell<u64>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Core {
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
    /// This core's own `Rc`, for a task that outlives the caller's borrow (BGSAVE).
    pub fn handle(&self) -> Rc<Core> {
        self.me.upgrade().expect("a core outlives its connections")
    }

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

    /// The server's memory and expiry counters (INFO, `/metrics`).
    pub fn memory(&self) -> &MemoryGauge {
        &self.memory
    }

    /// Publishes this core's bytes used and the keys its shards expired since the last call.
    pub(crate) fn publish_memory(&self) {
        let (mut used, mut expired) = (0, 0);
        for shard in self.shards.borrow().values() {
            used += shard.used_bytes();
            expired += shard.take_expired();
        }
        self.memory.per_core[self.id].used.store(used, Ordering::Relaxed);
        self.memory.add_expired(self.id, expired);
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
        self.routes.borrow().core_of_key(key, self.config.partition_separator)
    }

    /// The serving shards of this core, by number.
    pub fn local_shards(&self) -> Vec<Rc<Shard<DmaStorage>>> {
        let mut v: Vec<_> = self.shards.borrow().values().cloned().collect();
        v.sort_by_key(|s| s.number());
        v
    }

    /// The serving shard `number` of this core, if it is here.
    pub(crate) fn local_shard(&self, number: u64) -> Option<Rc<Shard<DmaStorage>>> {
        self.shards.borrow().get(&number).cloned()
    }

    /// Replaces the serving shards and rebuilds the routes from them and the map.
    pub(crate) fn set_shards(&self, shards: HashMap<u64, Rc<Shard<DmaStorage>>>) {
        let routes =
            route::RouteTable::build(&self.map.borrow(), self.config.cores, self.id, &shards);
        *self.shards.borrow_mut() = shards;
        *self.routes.borrow_mut() = routes;
        self.drop_departed_watches();
    }

    /// Adds a serving shard (its ranges set from the map).
    pub(crate) fn insert_local(&self, shard: Rc<Shard<DmaStorage>>) {
        let mut shards = self.shards.borrow().clone();
        shards.insert(shard.number(), shard);
        self.set_shards(shards);
    }

    /// Serving shards plus a shard being filled by a migration (log flushes, expiry).
    fn all_local_shards(&self) -> Vec<Rc<Shard<DmaStorage>>> {
        let mut v: Vec<_> = self.shards.borrow().values().cloned().collect();
        if let Some(inc) = self.incoming.borrow().as_ref() {
            if !v.iter().any(|s| Rc::ptr_eq(s, &inc.shard)) {
                v.push(inc.shard.clone());
            }
        }
        v
    }

    /// Counts a request in progress until the guard drops.
    pub(crate) fn enter_queue(&self) -> InFlight {
        let n = self.in_flight.get() + 1;
        self.in_flight.set(n);
        if n > self.in_flight_max.get() {
            self.in_flight_max.set(n);
        }
        InFlight(self.in_flight.clone())
    }

    pub(crate) fn local_shard_count(&self) -> usize {
        self.shards.borrow().len() + self.incoming.borrow().is_some() as usize
    }
}
