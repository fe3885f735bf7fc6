//! SHARDCAST MOVE, POLICY and EXPLAIN against the real server: a shard moved whole and online
//! keeps every key through a restart and a kill -9; bad arguments get clear errors; the
//! allocator acts on held load under a pinned capacity, explains itself, and its explanations
//! survive a restart.

mod common;

use common::{admin, assert_tiled, error_text, shards, Server};
use std::time::{Duration, Instant};

#[test]
fn move_keeps_every_key_and_bad_moves_are_refused() {
    let mut server = Server::start("move-cmd", &["--cores", "2", "--policy", "static"]);
    let mut c = server.client();
    for i in 0..500 {
        let _: () = redis::cmd("SET").arg(format!("acct:{i}")).arg(i).query(&mut c).unwrap();
    }
    assert_eq!(admin(&mut c, &["SPLIT", "acct"]).unwrap(), "OK");
    let rows = shards(&mut c);
    let own = rows.iter().find(|r| r.partition == "acct").expect("acct carved out").clone();
    let other = 1 - own.core;
    let moved = admin(&mut c, &["MOVE", "acct", &own.shard.to_string(), &other.to_string()]);
    assert_eq!(moved.unwrap(), "OK");
    let rows = shards(&mut c);
    let now = rows.iter().find(|r| r.partition == "acct").unwrap().clone();
    assert_eq!(now.core, other, "{rows:?}");
    assert_ne!(now.shard, own.shard, "a new shard took the range");
    assert_eq!(now.ranges, own.ranges);
    assert_eq!(now.keys, 500);
    assert!(rows.iter().all(|r| r.shard != own.shard), "the old shard is gone: {rows:?}");
    assert_tiled(&rows);
    let n = now.shard.to_string();
    let other_s = other.to_string();
    let cases = [
        (vec!["MOVE", "acct", n.as_str(), other_s.as_str()], "is already on core"),
        (vec!["MOVE", "acct", "9999", "0"], "is not a shard of partition 'acct'"),
        (vec!["MOVE", "acct", n.as_str(), "7"], "core 7 does not exist"),
        (vec!["MOVE", "acct", "x", "0"], "value is not an integer"),
        (vec!["MOVE", "nobody", n.as_str(), "0"], "is not a shard of partition 'nobody'"),
        (vec!["MOVE", "acct", n.as_str()], "wrong number of arguments"),
    ];
    for (args, want) in cases {
        let got = error_text(admin(&mut c, &args));
        assert!(got.contains(want), "{args:?}: {got}");
    }
    let info: String = redis::cmd("INFO").arg("shards").query(&mut c).unwrap();
    assert!(info.contains("migrations_completed:2"), "{info}");
    // Every key after a clean restart and after kill -9.
    for crash in [false, true] {
        if crash {
            server.kill9();
        } else {
            server.terminate();
        }
        server.restart();
        let mut c = server.client();
        let rows = shards(&mut c);
        let after = rows.iter().find(|r| r.partition == "acct").unwrap();
        assert_eq!((after.shard, after.core, after.keys), (now.shard, other, 500), "{rows:?}");
        for i in 0..500 {
            let v: i64 = redis::cmd("GET").arg(format!("acct:{i}")).query(&mut c).unwrap();
            assert_eq!(v, i);
        }
    }
    // The moved shard's old directory is gone: nothing left but the mapped shards.
    let dirs = std::fs::read_dir(server.dir.join("shards")).map(|d| d.count()).unwrap_or(0);
    let mapped = shards(&mut server.client()).len();
    assert_eq!(dirs, mapped, "shard directories besides the mapped ones");
}

#[test]
fn policy_is_set_at_run_time_and_the_allocator_explains_itself_across_a_restart() {
    let config =
        std::env::temp_dir().join(format!("shardcast-alloc-cmd-{}.toml", std::process::id()));
    // A pinned capacity of 300 ops/s: 400 ops/s held on one partition needs two shards.
    std::fs::write(
        &config,
        "policy = \"static\"\ncore-capacity-ops = 300\npredict-step-s = 1\n\
         forecast-horizon-s = 2\nhistory-save-interval-ms = 1000\n",
    )
    .unwrap();
    let mut server = Server::start(
        "policy-cmd",
        &["--cores", "2", "--tick-ms", "200", "--config", config.to_str().unwrap()],
    );
    let mut c = server.client();
    assert_eq!(admin(&mut c, &["POLICY"]).unwrap(), "static");
    assert!(error_text(admin(&mut c, &["POLICY", "psychic"]))
        .contains("static, reactive or predictive"));
    assert_eq!(admin(&mut c, &["POLICY", "REACTIVE"]).unwrap(), "OK");
    assert_eq!(admin(&mut c, &["POLICY"]).unwrap(), "reactive");
    assert!(error_text(admin(&mut c, &["EXPLAIN", "hot", "COUNT", "0"])).contains("out of range"));
    assert!(error_text(admin(&mut c, &["EXPLAIN", "hot", "LIMIT", "3"])).contains("syntax"));

    // 400 ops/s on partition hot, paced, until the allocator carves it out (the reactive rule
    // holds the load 10 s first).
    let port = server.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut i = 0u64;
        let start = Instant::now();
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let due = Duration::from_micros(i * 2_500);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let _: () =
                redis::cmd("SET").arg(format!("hot:{}", i % 1000)).arg(i).query(&mut c).unwrap();
            i += 1;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let carved = loop {
        let rows = shards(&mut c);
        if rows.iter().any(|r| r.partition == "hot") {
            break rows;
        }
        assert!(Instant::now() < deadline, "never carved out: {}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_tiled(&carved);
    let explained: Vec<Vec<(String, String)>> =
        redis::cmd("SHARDCAST").arg("EXPLAIN").arg("hot").query(&mut c).unwrap();
    let decision = explained
        .iter()
        .map(|e| e.iter().cloned().collect::<std::collections::HashMap<_, _>>())
        .find(|e| e["action"] == "carve-out")
        .unwrap_or_else(|| panic!("{explained:?}"));
    assert_eq!(decision["policy"], "reactive");
    assert_eq!(decision["core_capacity_ops_per_sec"], "300.0");
    let demand: f64 = decision["demand_ops_per_sec"].parse().unwrap();
    let threshold: f64 = decision["split_threshold_ops_per_sec"].parse().unwrap();
    assert!(demand > threshold && threshold == 225.0, "{decision:?}");
    assert!(decision["reason"].contains("split threshold"), "{decision:?}");
    // The map shows the new shard a moment before the control loop records the outcome.
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let info = server.cli(&["INFO", "predictor"]);
        if info.contains("allocator_changes_done:1") || Instant::now() > deadline {
            break info;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for want in [
        "allocator_policy:reactive",
        "allocator_core_capacity_source:pinned",
        "allocator_changes_done:1",
    ] {
        assert!(info.contains(want), "{want}: {info}");
    }
    let predict = server.cli(&["SHARDCAST", "PREDICT", "hot"]);
    assert!(predict.contains("actual_ops_per_sec"), "{predict}");
    // The explanations survive a restart (the policy comes from the settings again).
    server.terminate();
    server.restart();
    let mut c = server.client();
    let again: Vec<Vec<(String, String)>> =
        redis::cmd("SHARDCAST").arg("EXPLAIN").arg("COUNT").arg(1000).query(&mut c).unwrap();
    assert!(again.iter().any(|e| e.contains(&("action".into(), "carve-out".into()))), "{again:?}");
    assert_eq!(admin(&mut c, &["POLICY"]).unwrap(), "static");
    let _ = std::fs::remove_file(&config);
}
