//! The bundled load generator against the real shardcast-server: a compressed-day run of
//! three applications with verification, while a partition is carved out of its shared shard
//! and split online; the loadgen sees the shard count change through SHARDCAST SHARDS.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use shardcast_loadgen::{run, LoopMode, RunConfig, Workload};

#[test]
fn diurnal_3apps_verifies_and_tracks_shards_through_a_split() {
    // A 100 ms tick, so the partition shows in PARTITIONS soon, and a run long enough for two
    // splits under load to end well before it does, even on a loaded machine.
    let server = Server::start("loadgen-e2e", &["--tick-ms", "100"]);
    let out = server.dir.join("loadgen-out");
    let mut c = RunConfig::new("127.0.0.1", server.port, Workload::load("diurnal-3apps").unwrap());
    c.duration = Some(Duration::from_secs(10));
    c.interval = Duration::from_millis(500);
    c.rate = Some(3000.0);
    c.connections = 6;
    c.pipeline = 4;
    c.mode = LoopMode::Open;
    c.verify = true;
    c.out_dir = Some(out.clone());
    let runner = std::thread::spawn(move || run(&c));

    // Once the web application's traffic shows among the busiest partitions, carve its
    // partition out of its shared shard and split it, under load.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let partitions = server.cli(&["SHARDCAST", "PARTITIONS"]);
        if partitions.contains("web") {
            break;
        }
        assert!(Instant::now() < deadline, "partition web never appeared: {partitions}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..2 {
        let split = server.cli(&["SHARDCAST", "SPLIT", "web"]);
        assert!(!split.starts_with("ERR"), "split refused: {split}");
    }

    let r = runner.join().unwrap().unwrap();
    assert!(r.shardcast, "SHARDCAST SHARDS answered");
    assert_eq!(r.errors, 0, "{}", r.table());
    assert_eq!(r.verify_failures(), 0, "{}", r.table());
    assert!(r.verify.unwrap().checked > 100);
    let counts: Vec<u64> = r
        .intervals
        .iter()
        .filter_map(|i| i.shards.as_ref().and_then(|m| m.get("web").copied()))
        .collect();
    assert!(counts.iter().any(|&n| n >= 2), "web shards over time: {counts:?}");
    // The other applications' partitions stay in the shared shards.
    assert!(
        r.intervals.iter().any(|i| i.shards.as_ref().is_some_and(|m| m.contains_key("(shared)"))),
        "shared shards tracked"
    );
    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(svg.contains("shards per partition"), "the plot has the shard panel");
    let shards_csv = std::fs::read_to_string(out.join("shards.csv")).unwrap();
    assert!(shards_csv.contains(",web,2"), "{shards_csv}");
}
