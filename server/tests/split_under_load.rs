//! Online carve-out, split, merge and fold-back under load: many connections write and read
//! back their own keys in several partitions while each partition, over and over, is carved
//! out of its shared shard, split twice, merged twice and folded back. No client sees an
//! error or a wrong value, and every key is intact at the end and after a restart.

mod common;
use common::{assert_tiled, shards, Server};
use shardcast_engine::testing::{seed_from_env, SplitMix64};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const CLIENTS: usize = 12;
const KEYS_PER_CLIENT: usize = 150;
/// Cycles (carve-out, two splits, two merges, fold-back) across the partitions.
const CYCLES: usize = 15;
const PARTITIONS: [&str; 3] = ["alpha", "beta", "gamma"];

/// A client's keys: spread over the partitions, a hash-tagged one and the default partition.
fn key(client: usize, i: usize) -> String {
    match i % 5 {
        0..=2 => format!("{}:c{client}:k{i}", PARTITIONS[i % 3]),
        3 => format!("{{alpha}}c{client}.k{i}"),
        _ => format!("plain-c{client}-k{i}"),
    }
}

/// What a client expects of its own keys: a value, or absent.
type Model = HashMap<String, Option<String>>;

#[test]
fn split_and_merge_under_load_lose_nothing() {
    let seed = seed_from_env();
    eprintln!("seed {seed} (replay: SHARDCAST_SEED={seed})");
    let mut server = Server::start("split-load", &["--cores", "2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let models: Arc<Mutex<Vec<Model>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, stop, ops, models, ready) =
                (server.url(), stop.clone(), ops.clone(), models.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(seed ^ (c as u64 + 1).wrapping_mul(0x9e37));
                let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut model: Model = HashMap::new();
                for i in 0..KEYS_PER_CLIENT {
                    let (k, v) = (key(c, i), format!("c{c}-init"));
                    let () = redis::cmd("SET").arg(&k).arg(&v).query(&mut con).unwrap();
                    model.insert(k, Some(v));
                }
                ready.fetch_add(1, Ordering::SeqCst);
                let mut version = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    version += 1;
                    let i = rng.below(KEYS_PER_CLIENT as u64) as usize;
                    let k = key(c, i);
                    match rng.below(10) {
                        0..=3 => {
                            let v = format!("c{c}-v{version}");
                            let () = redis::cmd("SET").arg(&k).arg(&v).query(&mut con).unwrap();
                            model.insert(k, Some(v));
                        }
                        4 => {
                            let _: i64 = redis::cmd("DEL").arg(&k).query(&mut con).unwrap();
                            model.insert(k, None);
                        }
                        5 => {
                            // A pipelined MSET across partitions (and so cores).
                            let picks: Vec<usize> = (0..4)
                                .map(|_| rng.below(KEYS_PER_CLIENT as u64) as usize)
                                .collect();
                            let mut cmd = redis::cmd("MSET");
                            for &j in &picks {
                                cmd.arg(key(c, j)).arg(format!("c{c}-m{version}-{j}"));
                            }
                            let () = cmd.query(&mut con).unwrap();
                            for &j in &picks {
                                model.insert(key(c, j), Some(format!("c{c}-m{version}-{j}")));
                            }
                        }
                        6 => {
                            let picks: Vec<String> = (0..5)
                                .map(|_| key(c, rng.below(KEYS_PER_CLIENT as u64) as usize))
                                .collect();
                            let got: Vec<Option<String>> =
                                redis::cmd("MGET").arg(&picks).query(&mut con).unwrap();
                            for (k, v) in picks.iter().zip(got) {
                                let want = model.get(k).cloned().flatten();
                                assert_eq!(v, want, "client {c}: MGET {k} is stale or lost");
                            }
                        }
                        _ => {
                            let got: Option<String> =
                                redis::cmd("GET").arg(&k).query(&mut con).unwrap();
                            let want = model.get(&k).cloned().flatten();
                            assert_eq!(got, want, "client {c}: GET {k} is stale or lost");
                        }
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                models.lock().unwrap().push(model);
            })
        })
        .collect();

    // While the clients run, each cycle carves one partition out of its shared shard, splits
    // it twice, merges it twice and folds it back, so ranges move between the two cores in
    // both directions and between shared and own shards.
    let mut admin = server.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ready.load(Ordering::SeqCst) < CLIENTS as u64 {
        assert!(std::time::Instant::now() < deadline, "clients did not populate their keys");
        std::thread::yield_now();
    }
    let mut migrations = 0;
    let mut most_shards = 0;
    for cycle in 0..CYCLES {
        let p = PARTITIONS[cycle % PARTITIONS.len()];
        for (verb, own_after) in
            [("SPLIT", 1), ("SPLIT", 2), ("SPLIT", 3), ("MERGE", 2), ("MERGE", 1), ("MERGE", 0)]
        {
            let before = ops.load(Ordering::Relaxed);
            let r: String = redis::cmd("SHARDCAST").arg(verb).arg(p).query(&mut admin).unwrap();
            assert_eq!(r, "OK");
            migrations += 1;
            let counts = assert_tiled(&shards(&mut admin));
            let own = counts.get(p).copied().unwrap_or(0);
            assert_eq!(own, own_after, "{verb} {p}: {counts:?}");
            most_shards = most_shards.max(own);
            // Let traffic run between migrations (a condition with a deadline, not a sleep).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while ops.load(Ordering::Relaxed) < before + 200 {
                assert!(std::time::Instant::now() < deadline, "clients made no progress");
                std::thread::yield_now();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client saw an error or a wrong value");
    }
    eprintln!(
        "{migrations} migrations, {} client ops, up to {most_shards} shards per partition",
        ops.load(Ordering::Relaxed)
    );
    assert!(most_shards >= 3);

    let models = std::mem::take(&mut *models.lock().unwrap());
    let expected: HashMap<String, Option<String>> = models.into_iter().flatten().collect();
    let live = expected.values().filter(|v| v.is_some()).count() as i64;
    let check = |con: &mut redis::Connection, when: &str| {
        let keys: Vec<&String> = expected.keys().collect();
        for chunk in keys.chunks(500) {
            let got: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(con).unwrap();
            for (k, v) in chunk.iter().zip(got) {
                assert_eq!(&v, &expected[*k], "{when}: {k}");
            }
        }
        let size: i64 = redis::cmd("DBSIZE").query(con).unwrap();
        assert_eq!(size, live, "{when}: DBSIZE counts every key exactly once");
        let rows = shards(con);
        assert_tiled(&rows);
        assert_eq!(rows.iter().map(|r| r.keys).sum::<i64>(), live, "{when}: shard key counts");
    };
    check(&mut admin, "after the migrations");
    server.terminate();
    server.restart();
    check(&mut server.client(), "after a restart");
}
