//! kill -9 at `--fsync always` loses no acknowledged write; SIGTERM and SHUTDOWN at
//! `--fsync everysec` stop cleanly with everything durable, and a restart recovers it all.

mod common;
use common::Server;
use shardcast_engine::testing::{seed_from_env, SplitMix64};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KILLS: usize = 4;
const WRITERS: usize = 8;

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let seed = seed_from_env();
    eprintln!("seed {seed} (replay: SHARDCAST_SEED={seed})");
    let mut rng = SplitMix64::new(seed);
    let mut server = Server::start("kill9", &["--cores", "2", "--fsync", "always"]);
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (url, acked, stop) = (server.url(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let (key, value) = (format!("app{w}:r{round}:k{i}"), format!("v{i}"));
                        match redis::cmd("SET").arg(&key).arg(&value).query::<()>(&mut c) {
                            Ok(()) => {
                                acked.lock().unwrap().insert(key, value);
                            }
                            Err(_) => return, // the server died: this write was never acknowledged
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        server.restart();
        let mut c = server.client();
        let acked = acked.lock().unwrap();
        let keys: Vec<&String> = acked.keys().collect();
        for chunk in keys.chunks(1000) {
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
            for (k, v) in chunk.iter().zip(values) {
                assert_eq!(v.as_ref(), Some(&acked[*k]), "seed {seed}, kill {round}: {k} lost");
            }
        }
        eprintln!("kill {round}: {} acknowledged writes, all present", acked.len());
    }
}

fn fill(server: &Server, n: usize) {
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("part{}:k{i}", i % 5)).arg(format!("v{i}")).ignore();
    }
    pipe.cmd("EXPIRE").arg("part0:k0").arg(1000).ignore();
    pipe.query::<()>(&mut c).unwrap();
}

fn check(server: &Server, n: usize) {
    let mut c = server.client();
    let size: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, n);
    for i in (0..n).step_by(97) {
        let v: String = redis::cmd("GET").arg(format!("part{}:k{i}", i % 5)).query(&mut c).unwrap();
        assert_eq!(v, format!("v{i}"));
    }
    let ttl: i64 = redis::cmd("TTL").arg("part0:k0").query(&mut c).unwrap();
    // Set to 1,000 s before the fill; a lost expiry would read -1.
    assert!(ttl > 900, "expiry survives a restart: {ttl}");
}

#[test]
fn sigterm_flushes_everysec_data() {
    let mut server = Server::start("sigterm", &["--cores", "2", "--fsync", "everysec"]);
    fill(&server, 5000);
    server.terminate();
    server.restart();
    check(&server, 5000);
}

#[test]
fn shutdown_command_flushes_and_exits() {
    let mut server = Server::start("shutdown", &["--cores", "2", "--fsync", "everysec"]);
    fill(&server, 3000);
    let mut c = server.client();
    assert!(
        redis::cmd("SHUTDOWN").arg("NOW").query::<()>(&mut c).is_err(),
        "SHUTDOWN closes the connection"
    );
    server.wait_exit();
    server.restart();
    check(&server, 3000);
}
