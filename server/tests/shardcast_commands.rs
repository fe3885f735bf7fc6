//! SHARDCAST SHARDS / SPLIT / MERGE as a user sees them: replies, the map epoch, INFO's
//! migration figures, and the errors for an unknown partition, a merge of a one-shard
//! partition, a split past the configured maximum and a bad configuration value.

mod common;
use common::{assert_tiled, shards, Server};

fn admin(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<String> {
    let mut cmd = redis::cmd("SHARDCAST");
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn error_text(r: redis::RedisResult<String>) -> String {
    let e = r.expect_err("an error reply");
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

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

    assert_eq!(error_text(admin(&mut c, &["SPLIT", "nothing"])), "ERR unknown partition 'nothing'");
    assert_eq!(
        error_text(admin(&mut c, &["MERGE", "orders"])),
        "ERR partition 'orders' has only one shard: nothing to merge"
    );
    let rows = shards(&mut c);
    assert_eq!(rows.iter().filter(|r| r.partition == "orders").count(), 1);
    assert!(rows.iter().all(|r| r.epoch == 0));

    assert_eq!(admin(&mut c, &["SPLIT", "orders"]).unwrap(), "OK");
    let rows = shards(&mut c);
    let orders: Vec<_> = rows.iter().filter(|r| r.partition == "orders").collect();
    assert_eq!(orders.len(), 2);
    assert_ne!(orders[0].core, orders[1].core, "the new shard goes to the other core");
    assert_eq!(orders.iter().map(|r| r.keys).sum::<i64>(), 500);
    assert!(rows.iter().all(|r| r.epoch == 1));
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
    assert_eq!(rows.iter().filter(|r| r.partition == "(default)").count(), 2);

    let info: String = redis::cmd("INFO").arg("shards").query(&mut c).unwrap();
    let field = |name: &str| -> String {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("INFO shards lacks {name}: {info}"))
            .trim()
            .to_owned()
    };
    assert_eq!(field("shard_map_epoch"), "3");
    assert_eq!(field("migrations_completed"), "3");
    assert_eq!(field("migrations_aborted"), "0");
    assert!(field("migration_last_keys").parse::<u64>().unwrap() > 0);
    assert!(field("migration_last_bytes").parse::<u64>().unwrap() > 0);
    field("migration_last_pause_ms").parse::<f64>().unwrap();

    for _ in 0..2 {
        assert_eq!(admin(&mut c, &["MERGE", "orders"]).unwrap(), "OK");
    }
    assert_eq!(admin(&mut c, &["MERGE", "(default)"]).unwrap(), "OK");
    let rows = shards(&mut c);
    assert_eq!(rows.iter().filter(|r| r.partition == "orders").count(), 1);
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
    for sub in ["SHARDS", "SPLIT <partition>", "MERGE <partition>", "HELP"] {
        assert!(help.iter().any(|l| l == sub), "SHARDCAST HELP lacks {sub}: {help:?}");
    }
    let _ = std::fs::remove_file(&config);
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
    use shardcast_engine::routing::default_core_of;
    // Two partitions whose default cores differ, so each core holds exactly one shard.
    let names: Vec<String> = (0..64).map(|i| format!("part{i}")).collect();
    let a = names.iter().find(|n| default_core_of(n.as_bytes(), 2) == 0).unwrap().clone();
    let b = names.iter().find(|n| default_core_of(n.as_bytes(), 2) == 1).unwrap().clone();
    let config = std::env::temp_dir().join(format!("shardcast-full-{}.toml", std::process::id()));
    std::fs::write(&config, "shards-per-core-max = 1\n").unwrap();
    let mut server =
        Server::start("failed-split", &["--cores", "2", "--config", config.to_str().unwrap()]);
    let mut c = server.client();
    for p in [&a, &b] {
        for i in 0..300 {
            let () = redis::cmd("SET").arg(format!("{p}:{i}")).arg(i).query(&mut c).unwrap();
        }
    }
    let err = error_text(admin(&mut c, &["SPLIT", &a]));
    assert!(
        err.starts_with(&format!("ERR split of partition '{a}' abandoned, nothing moved: core 1")),
        "{err}"
    );
    let info: String = redis::cmd("INFO").arg("shards").query(&mut c).unwrap();
    assert!(info.contains("migrations_aborted:1"), "{info}");
    assert!(info.contains("shard_map_epoch:0"), "{info}");
    let check = |c: &mut redis::Connection| {
        let rows = shards(c);
        assert_eq!(rows.iter().filter(|r| r.partition == a).count(), 1);
        for p in [&a, &b] {
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
