//! MULTI / EXEC / DISCARD / WATCH / UNWATCH against the real binary: replies compared with
//! Debian's `redis-server`, WATCH conflicts from other connections on either core (writes,
//! expiry, FLUSHALL), and transfers between accounts on two cores while their partitions split
//! and merge, with every read (MGET across cores, and reads inside EXEC) seeing the total
//! conserved, and again after a restart.

mod common;

use common::{partitions_on_both_cores, spawn_readers, Redis, Server};
use redis::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn run(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<Value>(c) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error {} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

/// EXEC of integer replies: `None` when a watch failed it.
fn exec(c: &mut redis::Connection) -> Option<Vec<i64>> {
    redis::cmd("EXEC").query(c).unwrap()
}

/// EXEC of OK replies: `None` when a watch failed it.
fn exec_ok(c: &mut redis::Connection) -> Option<Vec<String>> {
    redis::cmd("EXEC").query(c).unwrap()
}

fn get(c: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(c).unwrap()
}

/// The same sessions against Redis and Shardcast: each reply the same (values, nils, errors
/// with their text), on one core and across both.
#[test]
fn replies_match_redis() {
    let redis = Redis::start();
    let server = Server::start("tx-replies", &["--cores", "2"]);
    let (a, b) = partitions_on_both_cores(&mut server.client());
    let (ka, kb) = (format!("{a}:x"), format!("{b}:y"));
    let sessions: Vec<Vec<Vec<&str>>> = vec![
        // One core, then both: every reply in order, a runtime error in its place.
        vec![
            vec!["SET", "s", "text"],
            vec!["MULTI"],
            vec!["SET", &ka, "1"],
            vec!["INCRBY", &ka, "5"],
            vec!["SET", &kb, "2"],
            vec!["INCR", "s"],
            vec!["MGET", &ka, &kb, "nokey"],
            vec!["PING"],
            vec!["EXEC"],
            vec!["MULTI"],
            vec!["GET", &ka],
            vec!["DEL", &ka, &kb],
            vec!["EXEC"],
            // MSETNX across cores: all or nothing.
            vec!["MSETNX", &ka, "1", &kb, "2"],
            vec!["MSETNX", &ka, "3", "fresh:key", "4"],
            vec!["MGET", &ka, &kb, "fresh:key"],
        ],
        // Errors at queue time abort; errors outside MULTI; nesting.
        vec![
            vec!["MULTI"],
            vec!["SET", "a"],
            vec!["SET", "a", "1"],
            vec!["EXEC"],
            vec!["GET", "a"],
            vec!["MULTI"],
            vec!["NOSUCHCOMMAND", "x"],
            vec!["EXEC"],
            vec!["EXEC"],
            vec!["DISCARD"],
            vec!["MULTI"],
            vec!["MULTI"],
            vec!["WATCH", "a"],
            vec!["SET", "a", "2"],
            vec!["DISCARD"],
            vec!["GET", "a"],
            vec!["MULTI"],
            vec!["EXEC"],
        ],
        // WATCH: a change (even our own) fails EXEC; an unchanged key, UNWATCH and a
        // missing key that stays missing do not.
        vec![
            vec!["WATCH", &ka, &kb],
            vec!["SET", &kb, "9"],
            vec!["MULTI"],
            vec!["SET", &ka, "1"],
            vec!["EXEC"],
            vec!["GET", &ka],
            vec!["WATCH", &ka],
            vec!["MULTI"],
            vec!["SET", &ka, "1"],
            vec!["EXEC"],
            vec!["WATCH", &ka],
            vec!["SET", &ka, "3"],
            vec!["UNWATCH"],
            vec!["MULTI"],
            vec!["GET", &ka],
            vec!["EXEC"],
            vec!["WATCH", "missing"],
            vec!["SET", "missing", "v", "NX", "GET"],
            vec!["DEL", "missing"],
            vec!["MULTI"],
            vec!["GET", &kb],
            vec!["EXEC"],
            vec!["WATCH", &ka],
            vec!["MULTI"],
            vec!["UNWATCH"],
            vec!["GET", &ka],
            vec!["EXEC"],
            vec!["WATCH", "stillmissing"],
            vec!["DEL", "stillmissing"],
            vec!["MULTI"],
            vec!["EXISTS", "stillmissing"],
            vec!["EXEC"],
            // GETEX without an option and SETRANGE of nothing change nothing; GETEX PERSIST
            // of a key with an expiry does.
            vec!["WATCH", &ka, "stillmissing"],
            vec!["GETEX", &ka],
            vec!["SETRANGE", &ka, "0", ""],
            vec!["SETRANGE", "stillmissing", "3", ""],
            vec!["MULTI"],
            vec!["GET", &ka],
            vec!["EXEC"],
            vec!["SET", &ka, "v", "EX", "100"],
            vec!["WATCH", &ka],
            vec!["GETEX", &ka, "PERSIST"],
            vec!["MULTI"],
            vec!["GET", &ka],
            vec!["EXEC"],
        ],
        // RENAME, RENAMENX and COPY within a core and across cores, with expiries kept.
        vec![
            vec!["SET", &ka, "v1", "EX", "100"],
            vec!["RENAME", &ka, &kb],
            vec!["MGET", &ka, &kb],
            vec!["TTL", &kb],
            vec!["RENAME", &ka, &kb],
            vec!["RENAME", &kb, &kb],
            vec!["RENAMENX", &kb, &kb],
            vec!["SET", &ka, "v2"],
            vec!["RENAMENX", &ka, &kb],
            vec!["RENAMENX", &kb, "fresh"],
            vec!["TTL", "fresh"],
            vec!["COPY", "fresh", &ka],
            vec!["COPY", "fresh", &ka, "REPLACE"],
            vec!["MGET", &ka, "fresh"],
            vec!["TTL", &ka],
            vec!["COPY", "fresh", "fresh"],
            vec!["COPY", "missing", &kb],
            vec!["COPY", "fresh", &kb, "DB", "0"],
            vec!["COPY", "fresh", &kb, "BOGUS"],
            vec!["RENAME", "missing", &kb],
            vec!["MULTI"],
            vec!["SET", &kb, "in-tx"],
            vec!["GET", &kb],
            vec!["EXEC"],
        ],
        // Scripts, RENAME, COPY and MSETNX inside MULTI, across cores: replies in order,
        // runtime errors in their places; a watched key changed fails the whole EXEC.
        vec![
            vec!["SET", &ka, "10"],
            vec!["MULTI"],
            vec!["EVAL", "return redis.call('incrby', KEYS[1], ARGV[1])", "1", &ka, "5"],
            vec!["RENAME", &ka, &kb],
            vec!["COPY", &kb, "copy:k"],
            vec!["MSETNX", &ka, "1", "fresh:m", "2"],
            vec!["MSETNX", &ka, "1", "fresh:m2", "2"],
            vec!["GET", &kb],
            vec!["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "copy:k"],
            vec!["SCRIPT", "LOAD", "return 1"],
            vec!["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"],
            vec!["EVALSHA", "0000000000000000000000000000000000000000", "0"],
            vec!["EVAL", "return 1", "-1"],
            vec!["EVAL", "return redis.call('incr', KEYS[1])", "1", "copy:k"],
            vec!["RENAME", "missing", &ka],
            vec!["RENAMENX", "copy:k", &kb],
            vec!["EXEC"],
            vec!["MGET", &ka, &kb, "copy:k", "fresh:m", "fresh:m2"],
            vec!["WATCH", &kb],
            vec!["SET", &kb, "changed"],
            vec!["MULTI"],
            vec!["RENAME", &kb, &ka],
            vec!["EXEC"],
            vec!["MGET", &ka, &kb],
            vec!["WATCH", &kb],
            vec!["MULTI"],
            vec!["RENAME", &kb, "moved"],
            vec!["EVAL", "return redis.call('get', KEYS[1])", "1", "moved"],
            vec!["EXEC"],
        ],
    ];
    for (i, session) in sessions.iter().enumerate() {
        let (mut r, mut s) = (redis.client(), server.client());
        run(&mut r, &["FLUSHALL"]);
        run(&mut s, &["FLUSHALL"]);
        for cmd in session {
            let (want, got) = (run(&mut r, cmd), run(&mut s, cmd));
            assert_eq!(got, want, "session {i}: {cmd:?}");
        }
    }
}

/// A watched key changed by another connection, on either core, by a write, by its expiry or
/// by FLUSHALL, fails EXEC; a write to another key does not.
#[test]
fn watch_sees_changes_from_other_connections_on_any_core() {
    let server = Server::start("tx-watch", &["--cores", "2"]);
    let mut me = server.client();
    let mut other = server.client();
    let (a, b) = partitions_on_both_cores(&mut me);
    for key in [format!("{a}:w"), format!("{b}:w")] {
        run(&mut me, &["SET", &key, "0"]);
        // Another key changed: EXEC runs.
        run(&mut me, &["WATCH", &key]);
        run(&mut other, &["SET", &format!("{key}:other"), "1"]);
        run(&mut me, &["MULTI"]);
        run(&mut me, &["INCR", &key]);
        assert_eq!(exec(&mut me), Some(vec![1]));
        // The key changed by another connection: nothing runs.
        run(&mut me, &["WATCH", &key]);
        run(&mut other, &["SET", &key, "10"]);
        run(&mut me, &["MULTI"]);
        run(&mut me, &["INCR", &key]);
        assert_eq!(exec(&mut me), None, "{key}");
        assert_eq!(get(&mut me, &key), Some("10".into()));
        // A SET NX that sets nothing changes nothing.
        run(&mut me, &["WATCH", &key]);
        run(&mut other, &["SET", &key, "11", "NX"]);
        run(&mut me, &["MULTI"]);
        run(&mut me, &["INCR", &key]);
        assert_eq!(exec(&mut me), Some(vec![11]));
        // Expiry: live when watched, gone at EXEC.
        run(&mut me, &["SET", &key, "v", "PX", "50"]);
        run(&mut me, &["WATCH", &key]);
        std::thread::sleep(Duration::from_millis(120));
        run(&mut me, &["MULTI"]);
        run(&mut me, &["SET", &key, "after"]);
        assert_eq!(exec_ok(&mut me), None, "expired {key}");
        // FLUSHALL removes a watched key that existed.
        run(&mut me, &["SET", &key, "v"]);
        run(&mut me, &["WATCH", &key]);
        run(&mut other, &["FLUSHALL"]);
        run(&mut me, &["MULTI"]);
        run(&mut me, &["SET", &key, "after"]);
        assert_eq!(exec_ok(&mut me), None, "flushed {key}");
    }
    // Watching keys on both cores and writing on one: EXEC across cores fails as a whole.
    let (ka, kb) = (format!("{a}:both"), format!("{b}:both"));
    run(&mut me, &["MSET", &ka, "1", &kb, "1"]);
    run(&mut me, &["WATCH", &ka, &kb]);
    run(&mut other, &["INCR", &kb]);
    run(&mut me, &["MULTI"]);
    run(&mut me, &["SET", &ka, "x"]);
    run(&mut me, &["SET", &kb, "x"]);
    assert_eq!(exec_ok(&mut me), None);
    let values: Vec<String> = redis::cmd("MGET").arg(&ka).arg(&kb).query(&mut me).unwrap();
    assert_eq!(values, ["1", "2"]);
}

/// The Rust `redis` crate's atomic pipeline (MULTI/EXEC) and its optimistic `transaction`
/// helper (WATCH, read, MULTI/EXEC, retried on a null reply), with keys on both cores.
#[test]
fn the_redis_crate_pipelines_and_transactions_work() {
    let server = Server::start("tx-crate", &["--cores", "2"]);
    let mut c = server.client();
    let (a, b) = partitions_on_both_cores(&mut c);
    let (ka, kb) = (format!("{a}:n"), format!("{b}:n"));
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .set(&ka, 5)
        .ignore()
        .incr(&ka, 2)
        .incr(&kb, 3)
        .query(&mut c)
        .unwrap();
    assert_eq!((x, y), (7, 3));
    let mut other = server.client();
    let mut tries = 0;
    let (na, nb): (i64, i64) = redis::transaction(&mut c, &[&ka, &kb], |con, pipe| {
        tries += 1;
        let (va, vb): (i64, i64) = redis::pipe().get(&ka).get(&kb).query(con)?;
        if tries == 1 {
            // Another client moves money between the read and EXEC: the first EXEC fails.
            let _: () = redis::cmd("INCRBY").arg(&kb).arg(100).query(&mut other)?;
        }
        pipe.set(&ka, va - 1).ignore().set(&kb, vb + 1).ignore().get(&ka).get(&kb).query(con)
    })
    .unwrap();
    assert_eq!(tries, 2, "the conflicting write forced one retry");
    assert_eq!((na, nb), (6, 104));
}

/// Clients move money between accounts on both cores with MULTI/EXEC (and WATCH), while both
/// partitions split and merge; every read of all accounts (an MGET across cores, or GETs
/// inside one EXEC) sees the total unchanged, and so does a restart.
#[test]
fn transfers_across_cores_conserve_the_total_under_splits_and_merges() {
    const ACCOUNTS: usize = 8;
    const START: i64 = 1000;
    let mut server = Server::start("tx-transfers", &["--cores", "2"]);
    let mut admin = server.client();
    let (a, b) = partitions_on_both_cores(&mut admin);
    let keys: Vec<String> = (0..ACCOUNTS)
        .map(|i| if i % 2 == 0 { format!("{a}:acct{i}") } else { format!("{b}:acct{i}") })
        .collect();
    let total = START * ACCOUNTS as i64;
    for k in &keys {
        run(&mut admin, &["SET", k, &START.to_string()]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (transfers, reads, watch_retries) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut threads = Vec::new();
    for t in 0..3u64 {
        let (mut c, keys, stop, transfers) =
            (server.client(), keys.clone(), stop.clone(), transfers.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = t;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let from = &keys[(n >> 33) as usize % ACCOUNTS];
                let to = &keys[(n >> 40) as usize % ACCOUNTS];
                let amount = (n >> 50) % 50;
                let replies: Vec<i64> = redis::pipe()
                    .atomic()
                    .decr(from, amount)
                    .incr(to, amount)
                    .query(&mut c)
                    .expect("a transfer");
                assert_eq!(replies.len(), 2);
                transfers.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    if std::env::var("NO_WATCH").is_err() {
        // Optimistic transfers: WATCH, read, write both, retried when another client won.
        let (mut c, keys, stop, transfers, retries) =
            (server.client(), keys.clone(), stop.clone(), transfers.clone(), watch_retries.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (from, to) = (&keys[i % ACCOUNTS], &keys[(i * 3 + 1) % ACCOUNTS]);
                if from == to {
                    continue;
                }
                let mut attempt = 0;
                let _: () = redis::transaction(&mut c, &[from, to], |con, pipe| {
                    attempt += 1;
                    let (f, t): (i64, i64) = redis::pipe().get(from).get(to).query(con)?;
                    pipe.set(from, f - 3).ignore().set(to, t + 3).ignore().query(con)
                })
                .expect("a watched transfer");
                retries.fetch_add(attempt - 1, Ordering::Relaxed);
                transfers.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for reader in 0..2 {
        let (mut c, keys, stop, reads) =
            (server.client(), keys.clone(), stop.clone(), reads.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<i64> = if reader == 0 {
                    redis::cmd("MGET").arg(&keys).query(&mut c).expect("MGET")
                } else {
                    let mut p = redis::pipe();
                    p.atomic();
                    for k in &keys {
                        p.get(k);
                    }
                    p.query(&mut c).expect("GETs in EXEC")
                };
                assert_eq!(
                    values.iter().sum::<i64>(),
                    total,
                    "a torn transaction was seen: {values:?}"
                );
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Both partitions carved out, split across the cores and merged back, twice.
    let mut migrations = 0;
    if std::env::var("NO_MIGRATIONS").is_ok() {
        std::thread::sleep(Duration::from_secs(3));
    }
    for _ in 0..(if std::env::var("NO_MIGRATIONS").is_ok() { 0 } else { 2 }) {
        for p in [&a, &b] {
            for verb in ["SPLIT", "SPLIT", "MERGE", "MERGE"] {
                let before = transfers.load(Ordering::Relaxed);
                let r: String =
                    redis::cmd("SHARDCAST").arg(verb).arg(p.as_str()).query(&mut admin).unwrap();
                assert_eq!(r, "OK");
                migrations += 1;
                let deadline = Instant::now() + DEADLINE;
                while transfers.load(Ordering::Relaxed) < before + 100 {
                    assert!(Instant::now() < deadline, "transfers made no progress");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a client saw an error or a torn read");
    }
    eprintln!(
        "{migrations} migrations, {} transfers ({} WATCH retries), {} reads",
        transfers.load(Ordering::Relaxed),
        watch_retries.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
    let before: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut admin).unwrap();
    assert_eq!(before.iter().sum::<i64>(), total);
    server.terminate();
    server.restart();
    let after: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut server.client()).unwrap();
    assert_eq!(after, before, "the restart changed the balances");
}

/// Transactions that hold their keys (a script and a RENAME in one MULTI) move money and a
/// key between the cores while readers look: the total is always 100 and the key always
/// under exactly one name.
#[test]
fn a_transaction_with_a_script_and_a_rename_is_atomic_across_cores() {
    let server = Server::start("tx-held", &["--cores", "2"]);
    let mut c = server.client();
    let (a, b) = partitions_on_both_cores(&mut c);
    let (acc_a, acc_b) = (format!("{a}:acc"), format!("{b}:acc"));
    let (ka, kb) = (format!("{a}:moving"), format!("{b}:moving"));
    run(&mut c, &["MSET", &acc_a, "100", &acc_b, "0", &ka, "payload"]);
    let transfer = "redis.call('decrby', KEYS[1], ARGV[1]) \
                    return redis.call('incrby', KEYS[2], ARGV[1])";
    let keys = [acc_a.clone(), acc_b.clone(), ka.clone(), kb.clone()];
    let readers = spawn_readers(&server, 2, move |c| {
        let v: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(c).unwrap();
        let total: i64 = v[..2].iter().flatten().map(|x| x.parse::<i64>().unwrap()).sum();
        assert_eq!(total, 100, "a torn transfer: {v:?}");
        assert_eq!(v[2..].iter().flatten().count(), 1, "a torn rename: {v:?}");
    });
    let mut balance_a = 100;
    for i in 0..300 {
        balance_a += if i % 2 == 0 { -(1 + i % 7) } else { 1 + i % 7 };
        let (from, to, kfrom, kto) =
            if i % 2 == 0 { (&acc_a, &acc_b, &ka, &kb) } else { (&acc_b, &acc_a, &kb, &ka) };
        let amount = (1 + i % 7).to_string();
        let mut p = redis::pipe();
        p.atomic()
            .cmd("EVAL")
            .arg(transfer)
            .arg(2)
            .arg(from)
            .arg(to)
            .arg(&amount)
            .cmd("RENAME")
            .arg(kfrom)
            .arg(kto);
        let (_, ok): (i64, String) = p.query(&mut c).unwrap();
        assert_eq!(ok, "OK");
    }
    assert!(readers.stop("a reader saw a torn transaction") > 0);
    let v: Vec<Option<String>> =
        redis::cmd("MGET").arg(&acc_a).arg(&acc_b).arg(&ka).query(&mut c).unwrap();
    let want = [balance_a.to_string(), (100 - balance_a).to_string(), "payload".into()];
    assert_eq!(v, want.map(Some));
}

/// Commands that touch no held key run after an EXEC's hold is released, as in a plain EXEC:
/// MEMORY USAGE of a key the hold covers used to wait for the hold, held by the EXEC itself.
#[test]
fn admin_commands_in_a_held_exec_do_not_wait_for_its_own_hold() {
    let server = Server::start("tx-held-admin", &["--cores", "2"]);
    let mut c = server.client();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    run(&mut c, &["SET", "src", "value"]);
    run(&mut c, &["MULTI"]);
    for cmd in
        [&["RENAME", "src", "dst"][..], &["MEMORY", "USAGE", "dst"], &["PING"], &["GET", "dst"]]
    {
        assert_eq!(run(&mut c, cmd), "simple-string(\"QUEUED\")", "{cmd:?}");
    }
    let replies: Vec<Value> = redis::cmd("EXEC").query(&mut c).expect("EXEC answers");
    assert_eq!(replies.len(), 4, "{replies:?}");
    assert!(matches!(replies[1], Value::Int(n) if n > 0), "{replies:?}");
    assert_eq!(replies[3], Value::BulkString(b"value".to_vec()));
}

/// A key renamed back and forth between two cores, while readers look at both names: every
/// read sees it under exactly one of them, never both or neither.
#[test]
fn rename_across_cores_is_atomic() {
    let server = Server::start("tx-rename", &["--cores", "2"]);
    let mut c = server.client();
    let (a, b) = partitions_on_both_cores(&mut c);
    let (ka, kb) = (format!("{a}:moving"), format!("{b}:moving"));
    run(&mut c, &["SET", &ka, "payload"]);
    let (ra, rb) = (ka.clone(), kb.clone());
    let readers = spawn_readers(&server, 2, move |c| {
        let v: Vec<Option<String>> = redis::cmd("MGET").arg(&ra).arg(&rb).query(c).unwrap();
        assert_eq!(v.iter().flatten().count(), 1, "seen under both or neither: {v:?}");
    });
    for i in 0..2000 {
        let (from, to) = if i % 2 == 0 { (&ka, &kb) } else { (&kb, &ka) };
        assert_eq!(run(&mut c, &["RENAME", from, to]), "ok");
    }
    assert!(readers.stop("a reader saw a torn rename") > 0);
    assert_eq!(get(&mut c, &ka), Some("payload".into()));
}

/// A crash between a cross-core transaction's steps leaves it whole or absent after the
/// restart: after every part is durable but before any commit is logged, the restart drops
/// every part; after one core's commit is durable, the restart applies every part (the other
/// core's log has its part without a commit, and the commit is found in the first core's).
#[test]
fn a_crash_between_the_steps_of_a_transaction_keeps_it_whole_or_absent() {
    for (point, applied) in [("txn:parts-durable", false), ("txn:one-commit", true)] {
        let name = format!("tx-crash-{}", point.replace(':', "-"));
        let mut server = Server::start(&name, &["--cores", "2"]);
        let mut c = server.client();
        let (a, b) = partitions_on_both_cores(&mut c);
        let (ka, kb, kc) = (format!("{a}:x"), format!("{b}:y"), format!("{a}:z"));
        run(&mut c, &["MSET", &ka, "old", &kb, "old"]);
        server.terminate();
        server.set_env("SHARDCAST_FAULT_POINT", Some(point));
        server.restart();
        let mut c = server.client();
        run(&mut c, &["MULTI"]);
        run(&mut c, &["SET", &ka, "new"]);
        run(&mut c, &["SET", &kb, "new"]);
        run(&mut c, &["SET", &kc, "new"]);
        let reply = redis::cmd("EXEC").query::<Value>(&mut c);
        assert!(reply.is_err(), "{point}: EXEC answered {reply:?} instead of crashing");
        assert!(server.wait_died(DEADLINE), "{point} was not reached");
        server.set_env("SHARDCAST_FAULT_POINT", None);
        server.restart();
        let got: Vec<Option<String>> =
            redis::cmd("MGET").arg(&ka).arg(&kb).arg(&kc).query(&mut server.client()).unwrap();
        let want = match applied {
            true => vec![Some("new".to_string()), Some("new".into()), Some("new".into())],
            false => vec![Some("old".to_string()), Some("old".into()), None],
        };
        assert_eq!(got, want, "after a crash at {point}");
        // Settled for good: the next restart reads the same.
        server.terminate();
        server.restart();
        let again: Vec<Option<String>> =
            redis::cmd("MGET").arg(&ka).arg(&kb).arg(&kc).query(&mut server.client()).unwrap();
        assert_eq!(again, want, "after a second restart ({point})");
    }
}

/// FLUSHALL is one transaction too: a crash after every shard's part is durable but before any
/// commit keeps every key; a crash after the first commit flushes every shard, the others'
/// parts decided by that commit at the restart. (Unframed, each shard's Clear stood alone,
/// and a crash between them left some shards flushed and others not.)
#[test]
fn a_crash_during_flushall_flushes_every_shard_or_none() {
    for (point, flushed) in [("txn:parts-durable", false), ("txn:one-commit", true)] {
        let name = format!("flush-crash-{}", point.replace(':', "-"));
        let mut server = Server::start(&name, &["--cores", "2"]);
        let mut c = server.client();
        let (a, b) = partitions_on_both_cores(&mut c);
        let keys = [format!("{a}:x"), format!("{b}:y"), "plain".to_owned()];
        run(&mut c, &["MSET", &keys[0], "1", &keys[1], "2", &keys[2], "3"]);
        server.terminate();
        server.set_env("SHARDCAST_FAULT_POINT", Some(point));
        server.restart();
        let reply = redis::cmd("FLUSHALL").query::<Value>(&mut server.client());
        assert!(reply.is_err(), "{point}: FLUSHALL answered {reply:?} instead of crashing");
        assert!(server.wait_died(DEADLINE), "{point} was not reached");
        server.set_env("SHARDCAST_FAULT_POINT", None);
        server.restart();
        let want: Vec<Option<String>> = match flushed {
            true => vec![None, None, None],
            false => vec![Some("1".into()), Some("2".into()), Some("3".into())],
        };
        for round in ["the restart", "a second restart"] {
            let got: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys[..]).query(&mut server.client()).unwrap();
            assert_eq!(got, want, "after a crash at {point}, {round}");
            server.terminate();
            server.restart();
        }
    }
}

/// kill -9 while clients move money between accounts, on one core (one shard: a framed
/// step) and across cores (parts and commits), several times: after every restart the total
/// is unchanged, whatever the crash cut.
#[test]
fn kill_9_under_transfers_never_leaves_a_transaction_half_applied() {
    const ACCOUNTS: usize = 8;
    const START: i64 = 1000;
    const KILLS: usize = 4;
    let mut server = Server::start("tx-kill9", &["--cores", "2", "--fsync", "always"]);
    let (a, b) = partitions_on_both_cores(&mut server.client());
    // Even accounts on one core, odd ones on the other; pairs (i, i+2) share a shard.
    let keys: Vec<String> = (0..ACCOUNTS)
        .map(|i| if i % 2 == 0 { format!("{a}:acct{i}") } else { format!("{b}:acct{i}") })
        .collect();
    let total = START * ACCOUNTS as i64;
    let mut c = server.client();
    for k in &keys {
        run(&mut c, &["SET", k, &START.to_string()]);
    }
    // The balances durable before the first kill (under `everysec` a kill -9 may take back
    // the last writes, whole transactions included, but never half of one).
    server.terminate();
    server.restart();
    for kill in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let transfers = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (url, keys, stop, transfers) =
                    (server.url(), keys.clone(), stop.clone(), transfers.clone());
                std::thread::spawn(move || {
                    let Ok(mut c) = redis::Client::open(url).and_then(|c| c.get_connection())
                    else {
                        return;
                    };
                    let mut n = t + kill as u64 * 17;
                    while !stop.load(Ordering::Relaxed) {
                        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let from = (n >> 33) as usize % ACCOUNTS;
                        // Half the transfers stay in one shard, half cross cores.
                        let to = if n >> 62 == 0 {
                            (from + 2) % ACCOUNTS
                        } else {
                            (from + 1) % ACCOUNTS
                        };
                        let r: redis::RedisResult<Vec<i64>> = redis::pipe()
                            .atomic()
                            .decr(&keys[from], 5)
                            .incr(&keys[to], 5)
                            .query(&mut c);
                        if r.is_err() {
                            return; // the server was killed
                        }
                        transfers.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + DEADLINE;
        while transfers.load(Ordering::Relaxed) < 200 * (kill as u64 + 1) {
            assert!(Instant::now() < deadline, "transfers made no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        server.restart();
        let values: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut server.client()).unwrap();
        assert_eq!(
            values.iter().sum::<i64>(),
            total,
            "after kill -9 number {}: a transaction was half applied: {values:?}",
            kill + 1
        );
    }
}
