//! Verification mode catches a server that lies: stale values and lost keys are counted and
//! the binary exits non-zero; an honest server passes.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::FakeServer;
use shardcast_loadgen::{run, RunConfig, Workload};

fn workload() -> Workload {
    Workload::from_toml_str(
        r#"
        name = "verify"
        [[application]]
        name = "app"
        keyspace = 200
        key_distribution = "uniform"
        value_size = { type = "uniform", min = 10, max = 100 }
        ops = { get = 0.5, set = 0.3, mget = 0.1, del = 0.05, mset = 0.05 }
        multi_keys = { min = 2, max = 5 }
        "#,
        None,
    )
    .unwrap()
}

fn config(port: u16) -> RunConfig {
    let mut c = RunConfig::new("127.0.0.1", port, workload());
    c.duration = Some(Duration::from_millis(800));
    c.connections = 4;
    c.pipeline = 8;
    c.verify = true;
    c.track_shards = false;
    c
}

#[test]
fn an_honest_server_passes() {
    let server = FakeServer::honest(None, Duration::ZERO);
    let r = run(&config(server.port)).unwrap();
    let v = r.verify.unwrap();
    assert!(v.checked > 200, "{v:?}");
    assert_eq!(v.failures(), 0, "{}", r.table());
}

#[test]
fn stale_and_missing_reads_are_counted() {
    // Every 5th GET returns the previous value (stale when a newer one was acknowledged);
    // every 7th returns nothing (missing).
    let liar = FakeServer::start(
        None,
        Duration::ZERO,
        Arc::new(|g: u64, h: &[Vec<u8>]| {
            if g % 7 == 3 {
                None
            } else if g % 5 == 1 && h.len() >= 2 {
                Some(h[h.len() - 2].clone())
            } else {
                h.last().cloned()
            }
        }),
    );
    let r = run(&config(liar.port)).unwrap();
    let v = r.verify.unwrap();
    assert!(v.stale > 0 && v.missing > 0, "{v:?}");
    assert!(r.table().contains("stale"), "{}", r.table());
}

#[test]
fn wrong_values_fail_the_binary_with_exit_1() {
    let liar = FakeServer::start(
        None,
        Duration::ZERO,
        Arc::new(|_, _: &[Vec<u8>]| Some(b"garbage".to_vec())),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-loadgen"))
        .args(["--port", &liar.port.to_string(), "--workload", "ycsb-a", "--duration", "0.5"])
        .args(["--verify", "--connections", "2", "--pipeline", "4", "--quiet", "--no-shards"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("verification failed"), "{stderr}");
    assert!(stdout.contains("wrong"), "{stdout}");
}

#[test]
fn data_left_by_an_earlier_run_is_not_a_failure() {
    let server = FakeServer::honest(None, Duration::ZERO);
    // A first run writes unverified values (and, verified, values of another run's tag).
    let mut first = config(server.port);
    first.verify = false;
    run(&first).unwrap();
    run(&config(server.port)).unwrap();
    let r = run(&config(server.port)).unwrap();
    let v = r.verify.unwrap();
    assert!(v.checked > 100, "{v:?}");
    assert_eq!(v.failures(), 0, "{}", r.table());
}
