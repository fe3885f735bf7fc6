//! A crash at every step of a carve-out, a split, a merge and a fold-back (fault points, which
//! exist only in debug builds, abort the process there as kill -9 would) leaves every key with
//! exactly one owner and every acknowledged write present after a restart; the map is the old
//! one if the crash came before the commit and the new one after it. The server then migrates
//! the partition again.

mod common;
use common::{assert_tiled, shards, Server};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FAULT_ENV: &str = "SHARDCAST_FAULT_POINT";
const BASE_KEYS: usize = 2000;
const WRITERS: usize = 3;

/// Every fault point of a migration, in order, and whether the crash comes after the commit.
const POINTS: [(&str, bool); 10] = [
    ("manifest:before_rename@1", false), // the intent's manifest write
    ("migrate:intent_written", false),
    ("migrate:target_prepared", false),
    ("migrate:streaming", false),
    ("migrate:paused", false),
    ("migrate:target_synced", false),
    ("migrate:target_durable", false),
    ("manifest:before_rename@2", false), // the commit's manifest write
    ("migrate:committed", true),
    ("migrate:installed", true),
];

type Acked = Arc<Mutex<HashMap<String, String>>>;

fn populate(server: &Server, acked: &Acked) {
    let mut c = server.client();
    for chunk in (0..BASE_KEYS).collect::<Vec<_>>().chunks(200) {
        let mut cmd = redis::cmd("MSET");
        for i in chunk {
            cmd.arg(format!("mig:base:{i}")).arg(format!("b{i}"));
        }
        let () = cmd.query(&mut c).unwrap();
        let mut a = acked.lock().unwrap();
        for i in chunk {
            a.insert(format!("mig:base:{i}"), format!("b{i}"));
        }
    }
}

/// Writers that overwrite base keys and add new ones until the server dies or `stop`.
fn start_writers(
    server: &Server,
    acked: &Acked,
    stop: &Arc<AtomicBool>,
    tag: &str,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let (url, acked, stop, tag) =
                (server.url(), acked.clone(), stop.clone(), tag.to_owned());
            std::thread::spawn(move || {
                let Ok(mut c) = redis::Client::open(url).unwrap().get_connection() else { return };
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let (key, value) = if i % 2 == 0 {
                        (format!("mig:base:{}", (i * 7 + w) % BASE_KEYS), format!("{tag}-w{w}-{i}"))
                    } else {
                        (format!("mig:{tag}:w{w}:{i}"), format!("n{i}"))
                    };
                    match redis::cmd("SET").arg(&key).arg(&value).query::<()>(&mut c) {
                        Ok(()) => {
                            acked.lock().unwrap().insert(key, value);
                        }
                        Err(_) => return, // the server died: never acknowledged
                    }
                }
            })
        })
        .collect()
}

/// Every acknowledged write is there with its last acknowledged value, and the shards tile the
/// position space; returns the number of shards of `mig`'s own.
fn check(server: &Server, acked: &Acked, when: &str) -> usize {
    let mut c = server.client();
    let acked = acked.lock().unwrap();
    let keys: Vec<&String> = acked.keys().collect();
    for chunk in keys.chunks(500) {
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
        for (k, v) in chunk.iter().zip(got) {
            // A write in flight at the crash may have landed after the last acknowledged one.
            let v = v.unwrap_or_else(|| panic!("{when}: acknowledged key {k} lost"));
            if v != acked[*k] {
                assert!(k.starts_with("mig:base:"), "{when}: {k} = {v}, want {}", acked[*k]);
            }
        }
    }
    // Every key has exactly one owner: the shards tile the hash space (and every acknowledged
    // key was read back through routing above); KEYS and DBSIZE agree, once per key.
    let counts = assert_tiled(&shards(&mut c));
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    let mut listed: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    let total = listed.len();
    listed.sort();
    listed.dedup();
    assert_eq!(listed.len(), total, "{when}: KEYS lists a key twice");
    assert_eq!(total as i64, size, "{when}: KEYS and DBSIZE disagree");
    let least = acked.len() as i64;
    // At most one unacknowledged write per writer may have landed.
    assert!(
        (least..=least + WRITERS as i64).contains(&size),
        "{when}: DBSIZE {size}, acked {least}"
    );
    counts.get("mig").copied().unwrap_or(0)
}

/// The migrations, by what they do to partition `mig`: the command that runs it, the commands
/// that set it up, and its own shards before.
fn plan(kind: &str) -> (&'static str, &'static [&'static str], usize) {
    match kind {
        "CARVE" => ("SPLIT", &[], 0),
        "SPLIT" => ("SPLIT", &["SPLIT"], 1),
        "MERGE" => ("MERGE", &["SPLIT", "SPLIT"], 2),
        "FOLD" => ("MERGE", &["SPLIT"], 1),
        other => unreachable!("{other}"),
    }
}

fn crash_during(kind: &str, point: &str, after_commit: bool) {
    let (verb, setup, shards_before) = plan(kind);
    let name = format!("crash-{kind}-{}", point.replace([':', '@'], "-"));
    let mut server = Server::start(&name, &["--cores", "2", "--fsync", "always"]);
    let acked: Acked = Arc::default();
    populate(&server, &acked);
    let mut admin = server.client();
    for step in setup {
        let r: String = redis::cmd("SHARDCAST").arg(step).arg("mig").query(&mut admin).unwrap();
        assert_eq!(r, "OK");
    }
    server.terminate();
    server.set_env(FAULT_ENV, Some(point));
    server.restart();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&server, &acked, &stop, &format!("{kind}{}", point.len()));
    // Let the writers get going, then migrate: the fault point aborts the server.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < BASE_KEYS + 20 {
        assert!(std::time::Instant::now() < deadline, "writers made no progress");
        std::thread::yield_now();
    }
    let reply = redis::cmd("SHARDCAST").arg(verb).arg("mig").query::<String>(&mut server.client());
    assert!(reply.is_err(), "{kind} at {point} answered {reply:?} instead of crashing");
    assert!(server.wait_died(Duration::from_secs(30)), "{point} was not reached");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    server.set_env(FAULT_ENV, None);
    server.restart();
    let expect = match (verb, after_commit) {
        (_, false) => shards_before,
        ("SPLIT", true) => shards_before + 1,
        _ => shards_before - 1,
    };
    let when = format!("after a crash at {point} during {kind}");
    assert_eq!(check(&server, &acked, &when), expect, "{when}: shard count");
    // The server migrates again after recovery, and keys deleted meanwhile stay deleted (a
    // copy of a range left behind by the crash must not come back when ranges move again).
    let mut admin = server.client();
    let deleted: Vec<String> = (0..BASE_KEYS).step_by(7).map(|i| format!("mig:base:{i}")).collect();
    let n: i64 = redis::cmd("DEL").arg(&deleted).query(&mut admin).unwrap();
    assert_eq!(n as usize, deleted.len());
    {
        let mut a = acked.lock().unwrap();
        for k in &deleted {
            a.remove(k);
        }
    }
    for verb in ["SPLIT", "MERGE", "SPLIT", "MERGE"] {
        let r: String = redis::cmd("SHARDCAST").arg(verb).arg("mig").query(&mut admin).unwrap();
        assert_eq!(r, "OK", "{when}: {verb} afterwards");
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&deleted).query(&mut admin).unwrap();
        assert!(got.iter().all(Option::is_none), "{when}: deleted keys came back after {verb}");
    }
    check(&server, &acked, &format!("{when}, then splits and merges"));
}

#[test]
fn crash_at_every_carve_out_step() {
    for (point, after_commit) in POINTS {
        crash_during("CARVE", point, after_commit);
    }
}

#[test]
fn crash_at_every_split_step() {
    for (point, after_commit) in POINTS {
        crash_during("SPLIT", point, after_commit);
    }
}

#[test]
fn crash_at_every_merge_step() {
    for (point, after_commit) in POINTS {
        crash_during("MERGE", point, after_commit);
    }
}

#[test]
fn crash_at_every_fold_back_step() {
    for (point, after_commit) in POINTS {
        crash_during("FOLD", point, after_commit);
    }
}
