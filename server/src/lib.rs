//! Shardcast's RESP server: accepts connections on every core, parses RESP, plans commands
//! into engine ops and renders the replies. The engine does the storage; this crate knows the
//! protocol, the sessions and the Redis semantics of each command.

pub mod accounting;
pub mod admin;
pub mod backup;
pub mod clients;
pub mod commands;
pub mod config;
pub mod config_rewrite;
pub mod connection;
pub mod control;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod http;
pub mod layout_cmds;
pub mod monitor;
pub mod observe;
pub mod rename;
pub mod resp;
pub mod scripting;
pub mod shardcast;
pub mod shared;
pub mod sockets;
pub mod stats;
pub mod table;
pub mod transaction;

use shardcast_engine::Core;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How often accept loops look at the stop flag.
const STOP_POLL_MS: u64 = 50;
/// The shard manager's task queue shares (client connections' queue has the default 1000).
const SHARD_MANAGER_SHARES: usize = 50;

/// Runs the server until SIGINT, SIGTERM or SHUTDOWN; returns after every shard is durable.
pub fn run(config: config::ServerConfig) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    if let Some(from) = &config.restore {
        backup::restore(from, &config.engine.data_dir)?;
    }
    let mut engine_config = config.engine.clone();
    let addr = format!("{}:{}", config.bind, config.port);
    // Fail fast with a clear message if another process holds the port (SO_REUSEPORT would
    // otherwise let us share it with that process, owned by the same user).
    std::net::TcpListener::bind(&addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let (sink, ticks) = shardcast_engine::telemetry::TickSink::new(engine_config.cores);
    engine_config.tick_sink = Some(sink.clone());
    let control = control::Control::start(
        control::ControlConfig {
            cores: engine_config.cores,
            tick_ms: engine_config.tick_ms,
            separator: engine_config.partition_separator,
            data_dir: engine_config.data_dir.clone(),
            history: config.history,
            history_save_interval_ms: config.history_save_interval_ms,
            health: Default::default(),
            predict: config.predict,
            allocator: config.allocator.clone(),
        },
        sink,
        ticks,
    );
    let shared = Arc::new(shared::Shared::new(config));
    let _ = shared.control.set(control.clone());
    tracing::info!(%addr, cores = engine_config.cores, fsync = %engine_config.fsync,
        data_dir = %engine_config.data_dir.display(), "starting");
    let served = shardcast_engine::run_until(engine_config, stop, move |core| async move {
        serve_core(core, shared, addr).await
    });
    // The history is written last, whatever the engine's outcome.
    control.stop();
    served.map_err(|e| e.to_string())?.into_iter().collect::<Result<Vec<()>, String>>()?;
    tracing::info!("stopped; all shards flushed");
    Ok(())
}

async fn serve_core(
    core: Rc<Core>,
    shared: Arc<shared::Shared>,
    addr: String,
) -> Result<(), String> {
    let listener = match sockets::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            // Serving on some cores only would hide the failure: stop them all.
            core.request_stop();
            return Err(format!("core {}: cannot listen on {addr}: {e}", core.id()));
        }
    };
    if core.id() == shardcast_engine::runtime::coordinator::COORDINATOR_CORE {
        if let Some(control) = shared.control.get() {
            // Its own queue with few shares: client traffic on this core comes first.
            let queue = glommio::executor().create_task_queue(
                glommio::Shares::Static(SHARD_MANAGER_SHARES),
                glommio::Latency::NotImportant,
                "shard-manager",
            );
            let manager = control::manage_shards(core.clone(), control.clone());
            match glommio::spawn_local_into(manager, queue) {
                Ok(task) => {
                    task.detach();
                }
                Err(e) => tracing::error!(error = %e, "cannot start the shard manager"),
            };
        }
    }
    if core.id() == 0 {
        tracing::info!("Ready to accept connections tcp on {addr}");
        println!("Ready to accept connections tcp on {addr}");
    }
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !core.stop_requested() {
                glommio::timer::sleep(Duration::from_millis(STOP_POLL_MS)).await;
            }
            None
        })
        .await;
        let stream = match accepted {
            None => return Ok(()),
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let (core, shared) = (core.clone(), shared.clone());
        glommio::spawn_local(async move {
            let Some(client) = shared.register(peer, local, core.id()) else {
                use futures_lite::AsyncWriteExt;
                let mut stream = stream;
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                return;
            };
            let carry = connection::Carry::new(client);
            connection::run_client(core, shared, stream, carry).await;
        })
        .detach();
    }
}
