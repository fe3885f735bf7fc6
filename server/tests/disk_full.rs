//! A full disk for real: the data directory on a size-limited tmpfs, filled by writes (with
//! snapshots running) and by a migration. Writes then get Redis's `MISCONF` error, reads keep
//! working, nothing acknowledged is lost (checked after kill -9), no partial segment or unused
//! log keeps the space, and writes succeed again by themselves once space returns, with no
//! restart. A migration that meets the full disk rolls back and the next one works.
//!
//! Before the fix, the log's first failed preallocation (`fallocate`) failed it for good: with
//! the tmpfs half empty every write was refused until a restart, even after space returned.
//!
//! Mounting needs root (CI runs as root); elsewhere each test says why it is skipped.

mod common;

use common::{admin, Server};
use redis::Commands;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const VALUE_BYTES: usize = 100 * 1024;
/// How long writes may take to resume once space returns (the retry runs every second).
const RESUME_DEADLINE: Duration = Duration::from_secs(15);

/// A tmpfs mounted for one test, unmounted (and its mount point removed) at drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(name: &str, size_mib: u64) -> Option<Tmpfs> {
        let path =
            std::env::temp_dir().join(format!("shardcast-tmpfs-{name}-{}", std::process::id()));
        let _ = Command::new("umount").arg(&path).output();
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path }),
            Ok(o) => {
                println!(
                    "SKIPPED: cannot mount a tmpfs here (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).output();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Fills the filesystem of `path` with a ballast file, then gives `leave_mib` back.
fn ballast(path: &Path, leave_mib: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave_mib << 20)).unwrap();
}

fn value(key: &str) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    v.resize(VALUE_BYTES, b'.');
    v
}

/// Starts the server on `dir` with `fsync`, snapshots every 2 MiB of log.
fn start(dir: &Path, fsync: &str) -> Server {
    let config = dir.parent().unwrap().join("disk-full.toml");
    std::fs::write(&config, "snapshot-min-wal-size = \"2mb\"\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    Server::start_at(dir, &["--cores", "2", "--fsync", fsync, "--config", &config])
}

/// Writes keys `{prefix}:{i}` until the disk refuses `refusals_max` writes in a row; returns
/// the acknowledged keys and the first refusal's text.
fn fill(c: &mut redis::Connection, prefixes: &[&str]) -> (Vec<String>, String) {
    const REFUSALS_IN_A_ROW: usize = 10;
    const WRITES_MAX: usize = 2_000;
    let (mut acked, mut refusal, mut in_a_row) = (Vec::new(), None, 0);
    for i in 0..WRITES_MAX {
        let key = format!("{}:{i}", prefixes[i % prefixes.len()]);
        match c.set::<_, _, ()>(&key, value(&key)) {
            Ok(()) => {
                acked.push(key);
                in_a_row = 0;
            }
            Err(e) => {
                refusal.get_or_insert_with(|| common::error_text(Err(e)));
                in_a_row += 1;
                if in_a_row == REFUSALS_IN_A_ROW {
                    break;
                }
            }
        }
    }
    (acked, refusal.expect("the disk filled"))
}

fn assert_all_present(c: &mut redis::Connection, keys: &[String], when: &str) {
    for key in keys {
        let got: Option<Vec<u8>> = c.get(key).unwrap();
        assert!(got.as_deref() == Some(&value(key)[..]), "{key} {when}");
    }
}

/// Waits until a write to every prefix succeeds; returns the keys written.
fn wait_for_writes(c: &mut redis::Connection, prefixes: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + RESUME_DEADLINE;
    let mut written = Vec::new();
    for p in prefixes {
        let key = format!("{p}:after");
        loop {
            match c.set::<_, _, ()>(&key, value(&key)) {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    assert!(common::error_text(Err(e)).starts_with("MISCONF"));
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("writes did not resume within {RESUME_DEADLINE:?}: {e}"),
            }
        }
        written.push(key);
    }
    written
}

fn persistence(c: &mut redis::Connection) -> String {
    redis::cmd("INFO").arg("persistence").query(c).unwrap()
}

/// Partial segments a full disk left behind, once the snapshots running have had time to end.
fn leftover_partial_segments(dir: &Path) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = partial_segments(dir);
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn partial_segments(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir.join("shards")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "tmp") {
                out.push(p);
            }
        }
    }
    out
}

/// Fills the disk under `fsync`, checks the refusals and the reads, frees space, checks that
/// writes resume, restarts (with kill -9 under `always`, where every acknowledged write is
/// durable; gracefully under `everysec`, which may lose its last second to a crash anyway)
/// and checks every acknowledged write.
fn fill_free_and_restart(name: &str, fsync: &str) {
    let Some(fs) = Tmpfs::mount(name, 24) else { return };
    let dir = fs.path.join("data");
    let prefixes = ["a", "b", "c", "d"];
    let mut server = start(&dir, fsync);
    ballast(&fs.path.join("ballast"), 12);
    let mut c = server.client();
    let (acked, refusal) = fill(&mut c, &prefixes);
    assert!(refusal.starts_with("MISCONF "), "{refusal}");
    assert!(refusal.contains("No space left on device"), "{refusal}");
    assert!(acked.len() >= 40, "only {} writes before the disk filled", acked.len());
    for key in &acked {
        match c.get::<_, Option<Vec<u8>>>(key) {
            Ok(got) => assert!(got.as_deref() == Some(&value(key)[..]), "{key} while full"),
            // Under `always`, a shard whose last write could not be made durable refuses reads
            // too (they could show it); under `everysec` every read answers.
            Err(e) if fsync == "always" => {
                let text = common::error_text(Err(e));
                assert!(text.starts_with("MISCONF Errors writing to the log"), "{text}");
            }
            Err(e) => panic!("{key} while full: {e}"),
        }
    }
    let info = persistence(&mut c);
    assert!(info.contains("aof_last_write_status:err"), "{info}");
    assert!(info.contains("shards_refusing_writes_reason:No space left on device"), "{info}");
    // Space returns: no restart, writes resume on every shard.
    std::fs::remove_file(fs.path.join("ballast")).unwrap();
    let after = wait_for_writes(&mut c, &prefixes);
    assert_all_present(&mut c, &acked, "once space returned");
    let info = persistence(&mut c);
    assert!(info.contains("aof_last_write_status:ok"), "{info}");
    assert!(info.contains("shards_refusing_writes:0"), "{info}");
    assert_eq!(leftover_partial_segments(&dir), Vec::<PathBuf>::new());
    match fsync {
        "always" => server.kill9(),
        _ => server.terminate(),
    }
    server.restart();
    let mut c = server.client();
    assert_all_present(&mut c, &acked, "after the restart");
    assert_all_present(&mut c, &after, "after the restart");
}

#[test]
fn under_always_a_full_disk_refuses_writes_and_loses_nothing_through_kill_9() {
    fill_free_and_restart("always", "always");
}

#[test]
fn under_everysec_a_full_disk_refuses_writes_keeps_every_read_and_writes_resume() {
    fill_free_and_restart("everysec", "everysec");
}

#[test]
fn a_migration_that_fills_the_disk_rolls_back_and_the_next_one_works() {
    let Some(fs) = Tmpfs::mount("migration", 32) else { return };
    let dir = fs.path.join("data");
    let mut server = start(&dir, "always");
    let mut c = server.client();
    // 6 MB in one partition, then less room than a copy of it needs.
    let keys: Vec<String> = (0..60).map(|i| format!("big:{i}")).collect();
    for k in &keys {
        c.set::<_, _, ()>(k, value(k)).unwrap();
    }
    ballast(&fs.path.join("ballast"), 3);
    let refused = admin(&mut c, &["SPLIT", "big"]);
    let text = common::error_text(refused);
    assert!(text.contains("abandoned, nothing moved"), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert_all_present(&mut c, &keys, "after the rolled-back migration");
    std::fs::remove_file(fs.path.join("ballast")).unwrap();
    let after = wait_for_writes(&mut c, &["big", "other"]);
    assert_eq!(admin(&mut c, &["SPLIT", "big"]).unwrap(), "OK");
    assert_eq!(leftover_partial_segments(&dir), Vec::<PathBuf>::new());
    server.kill9();
    server.restart();
    let mut c = server.client();
    assert_all_present(&mut c, &keys, "after kill -9");
    assert_all_present(&mut c, &after, "after kill -9");
    let rows = common::shards(&mut c);
    assert!(rows.iter().any(|r| r.partition == "big"), "big has its own shard");
}
