//! SHARDCAST SHARDS / PARTITIONS / SPLIT / MERGE as a user sees them: carve-out, splits,
//! merges and fold-back with their replies, the map epoch, INFO's migration figures, and the
//! errors for a merge of a partition without shards of its own, a split past the configured
//! maximum and a bad configuration value.

mod common;
use common::{admin, assert_tiled, error_text, shards, Server};

#[test]
fn split_merge_and_their_errors() {
    let config = std::env::temp_dir().join(format!("shardcast-cmds-{}.toml", std::process::id()));
    std::fs::write(&config, "shards-per-partition-max = 3\n").unwrap();
    let server =
        Server::start("shardcast-cmds", &["--cores", "2", "--config", config.to_str().unwrap()]);
    let mut c = server.client();
    for i in 0..500 {
        let () = redis::cmd("SET").arg(format!("orders:{i}")).arg(i).query(&mut c).unwrap();
        let () = redis::cmd("SET").arg(format!("plain{i}")).arg(i).query(&mut c).unwrap();
    }

    // Every partition starts in a shared shard: nothing of its own to merge.
    for p in ["nothing", "orders"] {
        assert_eq!(
            error_text(admin(&mut c, &["MERGE", p])),
            format!("ERR partition '{p}' has no shard of its own: nothing to merge")
        );
    }
    let initial = shards(&mut c);
    assert_eq!(initial.len(), 2, "one shared shard per core: {initial:?}");
    assert!(initial.iter().all(|r| r.partition == "(shared)" && r.epoch == 0));
    assert!(assert_tiled(&initial).is_empty());

    // The first SPLIT carves the partition out into a shard of its own, on the other core.
    assert_eq!(admin(&mut c, &["SPLIT", "orders"]).unwrap(), "OK");
    let rows = shards(&mut c);
    let orders: Vec<_> = rows.iter().filter(|r| r.partition == "orders").collect();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].keys, 500);
    assert_eq!(orders[0].ranges, vec![shardcast_engine::routing::partition_span(b"orders")]);
    let home = initial
        .iter()
        .find(|r| r.ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&orders[0].ranges[0].0)));
    assert_ne!(home.unwrap().core, orders[0].core, "carved out to the other core");
    assert!(rows.iter().all(|r| r.epoch == 1));
    assert_eq!(rows.iter().map(|r| r.keys).sum::<i64>(), 1000);
    assert_tiled(&rows);

    // Then splits cut the partition's own shards.
    assert_eq!(admin(&mut c, &["SPLIT", "orders"]).unwrap(), "OK");
    let rows = shards(&mut c);
    let orders: Vec<_> = rows.iter().filter(|r| r.partition == "orders").collect();
    assert_eq!(orders.len(), 2);
    assert_ne!(orders[0].core, orders[1].core, "the new shard goes to the other core");
    assert_eq!(orders.iter().map(|r| r.keys).sum::<i64>(), 500);
    assert_tiled(&rows);
    assert_eq!(admin(&mut c, &["SPLIT", "orders"]).unwrap(), "OK");
    assert_eq!(
        error_text(admin(&mut c, &["SPLIT", "orders"])),
        "ERR partition 'orders' already has 3 shards (shards-per-partition-max is 3)"
    );
    // Keys with one hash tag stay together through splits: MSETNX on them still works.
    for i in 0..20 {
        let r: i64 = redis::cmd("MSETNX")
            .arg(format!("{{orders}}a{i}"))
            .arg(i)
            .arg(format!("x{{orders}}b{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 1);
    }
    // The default partition, by the name SHARDS shows.
    assert_eq!(admin(&mut c, &["SPLIT", "(default)"]).unwrap(), "OK");
    let rows = shards(&mut c);
    assert_eq!(rows.iter().filter(|r| r.partition == "(default)").count(), 1);
    assert_eq!(assert_tiled(&rows).values().sum::<usize>(), 4);

    let info: String = redis::cmd("INFO").arg("shards").query(&mut c).unwrap();
    let field = |name: &str| -> String {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("INFO shards lacks {name}: {info}"))
            .trim()
            .to_owned()
    };
    assert_eq!(field("shard_map_epoch"), "4");
    assert_eq!(field("migrations_completed"), "4");
    assert_eq!(field("migrations_aborted"), "0");
    assert_eq!(field("shared_shards"), "2");
    assert_eq!(field("partitions_with_own_shards"), "2");
    assert!(field("migration_last_keys").parse::<u64>().unwrap() > 0);
    assert!(field("migration_last_bytes").parse::<u64>().unwrap() > 0);
    field("migration_last_pause_ms").parse::<f64>().unwrap();

    // Merges, then the fold-backs: every partition back in the shared shards, whose ranges
    // coalesce again.
    for _ in 0..2 {
        assert_eq!(admin(&mut c, &["MERGE", "orders"]).unwrap(), "OK");
    }
    assert_eq!(shards(&mut c).iter().filter(|r| r.partition == "orders").count(), 1);
    assert_eq!(admin(&mut c, &["MERGE", "orders"]).unwrap(), "OK");
    assert_eq!(admin(&mut c, &["MERGE", "(default)"]).unwrap(), "OK");
    let rows = shards(&mut c);
    assert!(assert_tiled(&rows).is_empty(), "{rows:?}");
    let ranges = |rows: &[common::ShardRow]| {
        let mut v: Vec<_> = rows.iter().map(|r| (r.shard, r.ranges.clone())).collect();
        v.sort();
        v
    };
    assert_eq!(ranges(&rows), ranges(&initial), "the shared shards own what they owned");
    for i in (0..500).step_by(37) {
        let v: i64 = redis::cmd("GET").arg(format!("orders:{i}")).query(&mut c).unwrap();
        assert_eq!(v, i);
        let v: i64 = redis::cmd("GET").arg(format!("plain{i}")).query(&mut c).unwrap();
        assert_eq!(v, i);
    }
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 1040);

    assert_eq!(
        error_text(admin(&mut c, &["SPLIT"])),
        "ERR wrong number of arguments for 'shardcast|split' command"
    );
    assert!(error_text(admin(&mut c, &["FROB"])).starts_with("ERR unknown subcommand"));
    let help: Vec<String> = redis::cmd("SHARDCAST").arg("HELP").query(&mut c).unwrap();
    assert!(help[0].starts_with("SHARDCAST <subcommand>"), "{help:?}");
    for sub in
        ["SHARDS", "PARTITIONS [COUNT <count>]", "SPLIT <partition>", "MERGE <partition>", "HELP"]
    {
        assert!(help.iter().any(|l| l == sub), "SHARDCAST HELP lacks {sub}: {help:?}");
    }
    let _ = std::fs::remove_file(&config);
}

/// SHARDCAST PARTITIONS: the busiest partitions over the last second, those in shared shards
/// found by each shard's bounded top-k among many cold ones, a carved one with its shards.
#[test]
fn partitions_shows_the_busiest_ones() {
    let server = Server::start("partitions", &["--cores", "2"]);
    let mut c = server.client();
    assert_eq!(admin(&mut c, &["SPLIT", "carved"]).unwrap(), "OK");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let rows = loop {
        // Hot partitions, many cold ones (one op each), and the carved one, for over a second.
        let started = std::time::Instant::now();
        let mut cold = 0;
        while started.elapsed() < std::time::Duration::from_millis(1200) {
            let mut p = redis::pipe();
            for i in 0..100 {
                p.cmd("SET").arg(format!("hot:{i}")).arg(i).ignore();
                p.cmd("GET").arg(format!("warm:{i}")).ignore();
                p.cmd("SET").arg(format!("cold{cold}:x")).arg(1).ignore();
                p.cmd("SET").arg(format!("carved:{i}")).arg(i).ignore();
                cold += 1;
            }
            let () = p.query(&mut c).unwrap();
        }
        let rows: Vec<std::collections::HashMap<String, redis::Value>> =
            redis::cmd("SHARDCAST").arg("PARTITIONS").arg("COUNT").arg(3).query(&mut c).unwrap();
        let named = |name: &str| {
            rows.iter().any(|r| r["partition"] == redis::Value::BulkString(name.into()))
        };
        if named("hot") && named("warm") && named("carved") {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "hot partitions not found: {rows:?}");
    };
    assert_eq!(rows.len(), 3);
    let int = |r: &std::collections::HashMap<String, redis::Value>, k: &str| -> i64 {
        redis::from_redis_value(&r[k]).unwrap()
    };
    for r in &rows {
        let name: String = redis::from_redis_value(&r["partition"]).unwrap();
        assert!(!name.starts_with("cold"), "a cold partition among the busiest: {rows:?}");
        assert!(int(r, "ops_per_sec") > 0);
        if name == "carved" {
            assert_eq!(int(r, "shards"), 1);
            assert_eq!(int(r, "keys"), 100);
        } else {
            assert_eq!(int(r, "shards"), 0);
            assert_eq!(r["keys"], redis::Value::Nil);
        }
        if name == "warm" {
            assert!(int(r, "reads_per_sec") > 0 && int(r, "writes_per_sec") == 0, "{r:?}");
        }
    }
    assert_eq!(
        error_text(admin(&mut c, &["PARTITIONS", "COUNT", "0"])),
        "ERR value is out of range, must be positive"
    );
    assert_eq!(error_text(admin(&mut c, &["PARTITIONS", "LIMIT", "3"])), "ERR syntax error");
}

#[test]
fn a_bad_shards_per_partition_max_is_refused_at_start() {
    let config = std::env::temp_dir().join(format!("shardcast-badmax-{}.toml", std::process::id()));
    std::fs::write(&config, "shards-per-partition-max = 0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardcast-server"))
        .args(["--port", "0", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shards-per-partition-max: must be 1 to 4096"), "{err}");
    let _ = std::fs::remove_file(&config);
}

/// While splits and merges run back to back: DBSIZE, KEYS and a full SCAN see every key
/// exactly once, and a FLUSHALL leaves nothing behind (no copy of a moving range survives it).
#[test]
fn whole_keyspace_reads_and_flushall_during_migrations() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const N: usize = 3000;
    let server = Server::start("whole-reads", &["--cores", "2"]);
    let mut c = server.client();
    // Each round writes different keys, so a key resurrected from an earlier round shows.
    let fill = |c: &mut redis::Connection, round: usize| {
        for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
            let mut cmd = redis::cmd("MSET");
            for i in chunk {
                cmd.arg(format!("z:r{round}:{i}")).arg(i);
            }
            let () = cmd.query(c).unwrap();
        }
    };
    fill(&mut c, 0);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let migrations = {
        let (url, stop, done) = (server.url(), stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut a = redis::Client::open(url).unwrap().get_connection().unwrap();
            while !stop.load(Ordering::Relaxed) {
                for verb in ["SPLIT", "SPLIT", "MERGE", "MERGE"] {
                    let r: String =
                        redis::cmd("SHARDCAST").arg(verb).arg("z").query(&mut a).unwrap();
                    assert_eq!(r, "OK");
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    // Read until at least 12 migrations completed while reading.
    let started = done.load(Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut reads = 0;
    while done.load(Ordering::SeqCst) < started + 12 {
        assert!(std::time::Instant::now() < deadline, "migrations made no progress");
        reads += 1;
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size as usize, N, "DBSIZE during a migration");
        let keys: Vec<String> = redis::cmd("KEYS").arg("z:*").query(&mut c).unwrap();
        assert_eq!(keys.len(), N, "KEYS during a migration");
        let mut seen = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(200).query(&mut c).unwrap();
            seen.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let total = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), total, "a full SCAN returned a key twice");
        assert_eq!(seen.len(), N, "a full SCAN during migrations missed keys");
    }
    assert!(reads >= 2, "{reads} rounds of reads");
    for round in 1..=40 {
        let () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, 0, "keys survived FLUSHALL");
        fill(&mut c, round);
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size as usize, N, "keys flushed before round {round} came back");
    }
    let () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    stop.store(true, Ordering::Relaxed);
    migrations.join().expect("migration loop");
    // Let any migration in flight finish, then nothing may reappear.
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 0);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert!(keys.is_empty(), "{} keys came back after FLUSHALL", keys.len());
}

/// A migration that fails at runtime (here: the target core is full) is rolled back: the
/// error says so, nothing moved, every key stays readable, and a restart finds the same map.
#[test]
fn a_failed_split_is_rolled_back() {
    let config = std::env::temp_dir().join(format!("shardcast-full-{}.toml", std::process::id()));
    // Each core already holds its shared shard: no room for a carved one.
    std::fs::write(&config, "shards-per-core-max = 1\n").unwrap();
    let mut server =
        Server::start("failed-split", &["--cores", "2", "--config", config.to_str().unwrap()]);
    let mut c = server.client();
    let (a, b) = ("parta", "partb");
    for p in [a, b] {
        for i in 0..300 {
            let () = redis::cmd("SET").arg(format!("{p}:{i}")).arg(i).query(&mut c).unwrap();
        }
    }
    let err = error_text(admin(&mut c, &["SPLIT", a]));
    assert!(
        err.starts_with(&format!(
            "ERR carve-out of partition '{a}' abandoned, nothing moved: core "
        )) && err.contains("already holds 1 shards (shards-per-core-max)"),
        "{err}"
    );
    let info: String = redis::cmd("INFO").arg("shards").query(&mut c).unwrap();
    assert!(info.contains("migrations_aborted:1"), "{info}");
    assert!(info.contains("shard_map_epoch:0"), "{info}");
    let check = |c: &mut redis::Connection| {
        let rows = shards(c);
        assert!(assert_tiled(&rows).is_empty(), "nothing carved: {rows:?}");
        for p in [a, b] {
            for i in (0..300).step_by(13) {
                let v: i64 = redis::cmd("GET").arg(format!("{p}:{i}")).query(c).unwrap();
                assert_eq!(v, i);
            }
        }
        let size: i64 = redis::cmd("DBSIZE").query(c).unwrap();
        assert_eq!(size, 600);
        // Writes to the partition work after the rollback (its range is not paused).
        let () = redis::cmd("SET").arg(format!("{a}:after")).arg(1).query(c).unwrap();
        let _: i64 = redis::cmd("DEL").arg(format!("{a}:after")).query(c).unwrap();
    };
    check(&mut c);
    server.terminate();
    server.restart();
    check(&mut server.client());
    let _ = std::fs::remove_file(&config);
}
