//! State shared by all cores of the server: live settings (CONFIG SET), the client registry
//! (CLIENT LIST), counters for INFO. Nothing here is touched per key: the registry changes on
//! connect, disconnect and CLIENT SETNAME; counters are per-core atomics on their own cache
//! lines.

use crate::config::ServerConfig;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A counter per core, each on its own cache line.
pub struct PerCore {
    slots: Vec<Padded>,
}

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

impl PerCore {
    pub fn new(cores: usize) -> Self {
        PerCore { slots: (0..cores).map(|_| Padded::default()).collect() }
    }

    pub fn add(&self, core: usize, n: u64) {
        self.slots[core].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    pub fn reset(&self) {
        for s in &self.slots {
            s.0.store(0, Ordering::Relaxed);
        }
    }
}

/// Counters shown by INFO stats.
pub struct Stats {
    pub commands: PerCore,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub keyspace_hits: PerCore,
    pub keyspace_misses: PerCore,
}

/// One connected client, as CLIENT LIST shows it.
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    /// The core serving it now (connections move to the core that owns their keys).
    pub core: std::sync::atomic::AtomicUsize,
    pub created: Instant,
    pub name: Mutex<Vec<u8>>,
    pub lib_name: Mutex<String>,
    pub lib_ver: Mutex<String>,
    /// ms since `created` of the last command.
    pub last_command_ms: AtomicU64,
    /// Index of the last command in the command table.
    pub last_command: AtomicU64,
    pub resp3: AtomicBool,
    /// The application id of `name` (`CLIENT SETNAME`), which every op of the client carries
    /// for the per-application statistics.
    pub app: std::sync::atomic::AtomicU16,
    /// The socket's fd while a core serves the connection, else -1 (between cores, closed).
    /// Its lock orders CLIENT KILL's shutdown before the fd's close (`sockets::shutdown_held`).
    socket: Mutex<std::os::fd::RawFd>,
    /// CLIENT KILL chose it: it closes at its next step, wherever it is.
    killed: AtomicBool,
    /// CLIENT NO-EVICT ON (recorded and listed; no client is ever evicted here).
    pub no_evict: AtomicBool,
    /// It ran MONITOR.
    pub monitor: AtomicBool,
}

impl ClientInfo {
    /// Its socket is `fd`, served on this core from now on.
    pub fn attach_socket(&self, fd: std::os::fd::RawFd) {
        *self.socket.lock().expect("client socket poisoned") = fd;
    }

    /// Its socket is about to be closed (or handed to another core): no kill may use the fd
    /// after this returns.
    pub fn detach_socket(&self) {
        *self.socket.lock().expect("client socket poisoned") = -1;
    }

    /// CLIENT KILL: marks it killed and wakes it by shutting its socket down.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        let fd = self.socket.lock().expect("client socket poisoned");
        if *fd >= 0 {
            // An error means the peer is gone already: the connection is closing anyway.
            let _ = crate::sockets::shutdown_held(*fd);
        }
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    pub fn app(&self) -> shardcast_engine::telemetry::AppId {
        shardcast_engine::telemetry::AppId(self.app.load(Ordering::Relaxed))
    }
}

/// The server's shared state.
pub struct Shared {
    pub config: ServerConfig,
    pub maxclients: AtomicU64,
    pub proto_max_bulk_len: AtomicU64,
    requirepass: RwLock<Option<String>>,
    /// Whether a password is set (read on every command, so an atomic, not the lock).
    auth_required: AtomicBool,
    pub clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    next_client_id: AtomicU64,
    pub stats: Stats,
    pub started: Instant,
    pub started_unix_s: u64,
    pub run_id: String,
    /// The control thread (telemetry, health, load history), once started.
    pub control: std::sync::OnceLock<Arc<crate::control::Control>>,
    /// BGSAVE and SAVE: the one running and the last outcome.
    pub backups: Arc<crate::backup::Backups>,
    /// Command statistics, error counts, the slow log and the latency monitor.
    pub observe: crate::stats::Observability,
    /// CLIENT PAUSE.
    pub pause: crate::clients::ClientPause,
    /// MONITOR's listeners.
    pub monitors: crate::monitor::Monitors,
    /// Scripts by SHA-1 (EVALSHA, SCRIPT), and the ones running.
    pub scripts: crate::scripting::ScriptCache,
}

impl Shared {
    /// `maxmemory`, `maxmemory-policy` and `maxmemory-samples` as they are now (the engine's
    /// cores read the same settings).
    pub fn eviction(&self) -> &shardcast_engine::EvictionSettings {
        &self.config.engine.eviction
    }

    pub fn new(config: ServerConfig) -> Self {
        let cores = config.engine.cores;
        let eviction = &config.engine.eviction;
        eviction.set_maxmemory_bytes(config.maxmemory_bytes);
        eviction.set_policy(config.maxmemory_policy);
        eviction.set_samples(config.maxmemory_samples);
        let started_unix_s =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let run_id = format!(
            "{:040x}",
            shardcast_engine::routing::stable_hash(&started_unix_s.to_le_bytes()) as u128
                ^ (std::process::id() as u128) << 64
        );
        Shared {
            maxclients: AtomicU64::new(config.maxclients),
            proto_max_bulk_len: AtomicU64::new(config.proto_max_bulk_len),
            auth_required: AtomicBool::new(config.requirepass.is_some()),
            requirepass: RwLock::new(config.requirepass.clone()),
            clients: Mutex::new(BTreeMap::new()),
            next_client_id: AtomicU64::new(1),
            stats: Stats {
                commands: PerCore::new(cores),
                connections_received: AtomicU64::new(0),
                rejected_connections: AtomicU64::new(0),
                keyspace_hits: PerCore::new(cores),
                keyspace_misses: PerCore::new(cores),
            },
            started: Instant::now(),
            started_unix_s,
            backups: Arc::new(crate::backup::Backups::new(started_unix_s)),
            run_id: run_id[..40].to_owned(),
            control: std::sync::OnceLock::new(),
            observe: crate::stats::Observability::new(
                cores,
                &config.observe,
                config.engine.latency_events.clone(),
            ),
            pause: Default::default(),
            monitors: Default::default(),
            scripts: crate::scripting::ScriptCache::with_time_limit_ms(config.script_time_limit_ms),
            config,
        }
    }

    /// Registers a client, or `None` past `maxclients`.
    pub fn register(&self, addr: String, laddr: String, core: usize) -> Option<Arc<ClientInfo>> {
        let mut clients = self.clients.lock().expect("client registry poisoned");
        if clients.len() as u64 >= self.maxclients.load(Ordering::Relaxed) {
            self.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            core: std::sync::atomic::AtomicUsize::new(core),
            created: Instant::now(),
            name: Mutex::new(Vec::new()),
            lib_name: Mutex::new(String::new()),
            lib_ver: Mutex::new(String::new()),
            last_command_ms: AtomicU64::new(0),
            last_command: AtomicU64::new(u64::MAX),
            resp3: AtomicBool::new(false),
            app: std::sync::atomic::AtomicU16::new(0),
            socket: Mutex::new(-1),
            killed: AtomicBool::new(false),
            no_evict: AtomicBool::new(false),
            monitor: AtomicBool::new(false),
        });
        clients.insert(id, info.clone());
        self.stats.connections_received.fetch_add(1, Ordering::Relaxed);
        Some(info)
    }

    pub fn unregister(&self, id: u64) {
        self.clients.lock().expect("client registry poisoned").remove(&id);
    }

    pub fn connected_clients(&self) -> usize {
        self.clients.lock().expect("client registry poisoned").len()
    }

    pub fn password(&self) -> Option<String> {
        self.requirepass.read().expect("requirepass lock poisoned").clone()
    }

    /// Sets or clears (`None`) the password; takes effect for every connection at once.
    pub fn set_password(&self, password: Option<String>) {
        let mut p = self.requirepass.write().expect("requirepass lock poisoned");
        self.auth_required.store(password.is_some(), Ordering::Relaxed);
        *p = password;
    }

    pub fn auth_required(&self) -> bool {
        self.auth_required.load(Ordering::Relaxed)
    }
}
