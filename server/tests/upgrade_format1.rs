//! A data directory written by the layout before shared shards (format 1: one directory per
//! partition) is converted at start, and nothing is lost: the fixtures under
//! `tests/fixtures/` were written by the format-1 server (commit a30f41b) through redis-cli
//! (`v1-split`: several partitions, a split and merged partition, a hash tag, an expiring, an
//! expired, a deleted and an appended key; `v1-interrupted-split`: a split aborted at the
//! `migrate:streaming` fault point, so its manifest records the migration and the target's
//! directory is partial). A crash at either side of the conversion's commit loses nothing
//! either, and a damaged format-1 manifest stops the start with the file named.

mod common;
use common::Server;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A server on a fresh copy of a fixture.
fn start_on(fixture_name: &str, test: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("shardcast-upgrade-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixture(fixture_name), &dir);
    Server::start_at(&dir, &["--cores", "2"])
}

/// What `v1-split` holds, key by key.
fn v1_split_expected() -> Vec<(String, Option<String>)> {
    let mut want = Vec::new();
    for i in 1..=300 {
        let v = match i {
            7 => None,
            i if i % 3 == 0 => Some(format!("u{i}-v2")),
            i => Some(format!("u{i}")),
        };
        want.push((format!("user:{i}"), v));
    }
    for i in 1..=50 {
        let v = if i == 1 { "p1-more".to_owned() } else { format!("p{i}") };
        want.push((format!("plain{i}"), Some(v)));
    }
    for i in 1..=20 {
        want.push((format!("{{cart7}}:item{i}"), Some(format!("c{i}"))));
    }
    for i in 1..=30 {
        want.push((format!("order:{i}"), (i != 5).then(|| format!("o{i}"))));
    }
    want.push(("session:1".into(), Some("s1".into())));
    want.push(("session:2".into(), None));
    want
}

fn check_values(c: &mut redis::Connection, want: &[(String, Option<String>)], when: &str) {
    for chunk in want.chunks(200) {
        let keys: Vec<&String> = chunk.iter().map(|(k, _)| k).collect();
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(c).unwrap();
        for ((k, v), g) in chunk.iter().zip(got) {
            assert_eq!(&g, v, "{when}: {k}");
        }
    }
    let live = want.iter().filter(|(_, v)| v.is_some()).count() as i64;
    let size: i64 = redis::cmd("DBSIZE").query(c).unwrap();
    assert_eq!(size, live, "{when}: DBSIZE");
}

/// After the conversion: the current layout only, and the server keeps working.
fn check_layout(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "shards"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains('-') && n.len() > 17),
        "format-1 dirs left: {names:?}"
    );
    let manifest = std::fs::read(dir.join("SHARDMAP")).unwrap();
    assert_eq!(&manifest[..8], b"SCMAP002");
}

#[test]
fn a_format_1_directory_is_converted_without_losing_a_key() {
    let mut server = start_on("v1-split", "split");
    let want = v1_split_expected();
    let mut c = server.client();
    check_values(&mut c, &want, "after the conversion");
    let ttl: i64 = redis::cmd("TTL").arg("session:1").query(&mut c).unwrap();
    assert!(ttl > 0, "the expiry survives: {ttl}");
    check_layout(&server.dir);
    // Writes, a carve-out and a restart on the converted directory.
    let () = redis::cmd("SET").arg("user:1").arg("after").query(&mut c).unwrap();
    let r: String = redis::cmd("SHARDCAST").arg("SPLIT").arg("user").query(&mut c).unwrap();
    assert_eq!(r, "OK");
    server.terminate();
    server.restart();
    let mut c = server.client();
    let mut want = want;
    want[0].1 = Some("after".into());
    check_values(&mut c, &want, "after a restart");
}

#[test]
fn an_interrupted_format_1_split_is_rolled_back_by_the_conversion() {
    let server = start_on("v1-interrupted-split", "interrupted");
    let mut want: Vec<(String, Option<String>)> =
        (1..=3000).map(|i| (format!("user:{i}"), Some(format!("u{i}")))).collect();
    want.push(("plain".into(), Some("x".into())));
    check_values(&mut server.client(), &want, "after the conversion");
    check_layout(&server.dir);
}

/// The conversion aborted just before and just after its commit (the manifest's rename):
/// the next start finishes the job, and every key is there.
#[test]
fn a_crash_during_the_conversion_loses_nothing() {
    for point in ["upgrade:before_commit", "upgrade:committed"] {
        let dir = std::env::temp_dir().join(format!(
            "shardcast-upgrade-crash-{}-{}",
            &point[8..],
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&fixture("v1-split"), &dir);
        let out = Command::new(env!("CARGO_BIN_EXE_shardcast-server"))
            .args(["--port", "0", "--cores", "2", "--data-dir"])
            .arg(&dir)
            .env("SHARDCAST_FAULT_POINT", point)
            .env("SHARDCAST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point} was not reached");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("fault point {point} reached")), "{stderr}");
        let server = Server::start_at(&dir, &["--cores", "2"]);
        check_values(
            &mut server.client(),
            &v1_split_expected(),
            &format!("after a crash at {point}"),
        );
        check_layout(&server.dir);
    }
}

#[test]
fn a_damaged_format_1_manifest_stops_the_start_and_names_the_file() {
    let dir =
        std::env::temp_dir().join(format!("shardcast-upgrade-damaged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixture("v1-split"), &dir);
    let manifest = dir.join("SHARDMAP");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[30] ^= 0x20;
    std::fs::write(&manifest, &bytes).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardcast-server"))
        .args(["--port", "0", "--cores", "2", "--data-dir"])
        .arg(&dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the server started on a damaged manifest");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("checksum mismatch") && stderr.contains("SHARDMAP"), "{stderr}");
    // Nothing was touched: the format-1 directories are all there.
    assert!(dir.join("user-99e389d25c10af32").is_dir());
    assert!(
        !dir.join("shards").exists() || std::fs::read_dir(dir.join("shards")).unwrap().count() == 0
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Without its format-1 shard map, a directory holding split shards (numbers past 0) cannot be
/// placed: the conversion refuses, as format 1 did, and changes nothing. A stray file whose
/// name looks like a format-1 directory is no format-1 directory and is left alone.
#[test]
fn a_format_1_directory_without_its_map_is_refused_and_strays_are_left_alone() {
    let dir = std::env::temp_dir().join(format!("shardcast-upgrade-nomap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixture("v1-split"), &dir);
    std::fs::remove_file(dir.join("SHARDMAP")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-server"))
        .args(["--port", "0", "--cores", "2", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only the shard map can place it"), "{stderr}");
    assert!(dir.join("user-99e389d25c10af32/1/meta").is_file(), "nothing removed");
    assert!(!dir.join("shards").exists(), "nothing converted");
    std::fs::remove_dir_all(&dir).ok();

    let mut server = Server::start("stray", &["--cores", "2"]);
    server.terminate();
    let stray = server.dir.join("notes-0123456789abcdef");
    std::fs::write(&stray, b"mine").unwrap();
    server.restart();
    let () = redis::cmd("SET").arg("k").arg("v").query(&mut server.client()).unwrap();
    server.terminate();
    assert_eq!(std::fs::read(&stray).unwrap(), b"mine");
}
