//! A connection the server closes mid-run: its requests in flight count as errors, it is
//! reconnected with backoff, and the load goes on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::FakeServer;
use shardcast_loadgen::{run, LoopMode, RunConfig, Workload};

#[test]
fn a_dropped_connection_is_reported_and_reconnected() {
    let server = FakeServer::start_with(
        None,
        Duration::ZERO,
        Some(300),
        Arc::new(|_, h: &[Vec<u8>]| h.last().cloned()),
    );
    let w = Workload::from_toml_str(
        "[[application]]\nname = \"app\"\nkeyspace = 100\nops = { get = 0.5, set = 0.5 }\nrate = 1000\n",
        None,
    )
    .unwrap();
    let mut c = RunConfig::new("127.0.0.1", server.port, w);
    c.connections = 2;
    c.pipeline = 4;
    c.mode = LoopMode::Open;
    c.duration = Some(Duration::from_millis(1500));
    c.track_shards = false;
    c.verify = true;
    let r = run(&c).unwrap();
    assert_eq!(r.connections_lost, 1, "{}", r.table());
    assert!(r.errors >= 1 && r.errors <= 4, "in flight on the lost connection: {}", r.table());
    assert!(r.error_messages.iter().any(|(m, _)| m.contains("connection lost")), "{}", r.table());
    // The run kept its rate: about 1500 requests, all but the lost ones answered.
    assert!(r.ops >= 1300, "{}", r.table());
    assert_eq!(r.verify_failures(), 0, "{}", r.table());
    // The probe, two load connections, and the reconnection.
    assert_eq!(server.accepted.load(std::sync::atomic::Ordering::Acquire), 4);
}
