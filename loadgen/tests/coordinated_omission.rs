//! Coordinated omission: against a server that stalls once for 500 ms, the open loop's
//! latency (from each request's intended start) shows the stall in its high percentiles,
//! while the latency from the actual send, and the closed loop, hide it.

mod common;

use std::time::Duration;

use common::FakeServer;
use shardcast_loadgen::{run, LoopMode, RunConfig, Workload};

const STALL: Duration = Duration::from_millis(500);

fn workload() -> Workload {
    Workload::from_toml_str(
        r#"
        name = "co"
        [[application]]
        name = "app"
        keyspace = 1000
        value_size = 16
        ops = { get = 0.5, set = 0.5 }
        rate = 200
        "#,
        None,
    )
    .unwrap()
}

fn config(port: u16, mode: LoopMode) -> RunConfig {
    let mut c = RunConfig::new("127.0.0.1", port, workload());
    c.connections = 1;
    c.pipeline = 1;
    c.mode = mode;
    c.duration = Some(Duration::from_secs(2));
    c.track_shards = false;
    c
}

#[test]
fn open_loop_counts_the_stall_from_each_requests_intended_start() {
    // ~200 ops/s for 2 s (a round trip may take up to 5 ms before the rate slips, so a loaded
    // machine keeps it); the stall starts at the 100th command (about 0.5 s in).
    let server = FakeServer::honest(Some(100), STALL);
    let r = run(&config(server.port, LoopMode::Open)).unwrap();
    eprintln!("{}", r.table()); // shown with --nocapture; quoted in docs/loadgen.md
    assert_eq!(r.errors, 0, "{}", r.table());
    // The rate was kept: about 400 requests (the backlog after the stall is caught up).
    assert!((340..=460).contains(&r.ops), "ops {}\n{}", r.ops, r.table());
    let corrected = r.latency;
    let service = r.service.expect("open loop reports service time");
    // ~100 requests were due during the stall: a quarter of the run waited 0-500 ms.
    assert!(corrected.p90_us > 100_000.0, "corrected p90 {} µs\n{}", corrected.p90_us, r.table());
    assert!(corrected.p99_us > 350_000.0, "corrected p99 {} µs\n{}", corrected.p99_us, r.table());
    assert!(corrected.max_us >= 450_000.0, "corrected max {} µs", corrected.max_us);
    // Measured from the send, one request saw the stall: it vanishes below p99.
    assert!(service.p99_us < 100_000.0, "service p99 {} µs\n{}", service.p99_us, r.table());
    assert!(service.max_us >= 450_000.0, "service max {} µs", service.max_us);
}

#[test]
fn closed_loop_hides_the_stall_below_p99() {
    let server = FakeServer::honest(Some(100), STALL);
    let r = run(&config(server.port, LoopMode::Closed)).unwrap();
    eprintln!("{}", r.table());
    assert_eq!(r.errors, 0);
    assert!(r.ops > 200, "ops {}", r.ops);
    // The one stalled request is the only slow one: what coordinated omission looks like.
    assert!(r.latency.max_us >= 450_000.0, "max {} µs", r.latency.max_us);
    assert!(r.latency.p99_us < 100_000.0, "p99 {} µs\n{}", r.latency.p99_us, r.table());
}
