//! A data directory keeps the settings that decide where its keys live: restarted with another
//! partition separator it refuses to start, names the setting and the value it was made with,
//! and loses nothing (a key's position, so its shard, depends on the separator; opening the
//! shards under another one would drop the keys it moves as foreign).

mod common;
use common::Server;
use std::process::Command;

#[test]
fn another_partition_separator_is_refused_and_nothing_is_lost() {
    let mut server = Server::start("separator", &["--cores", "2"]);
    let mut c = server.client();
    for i in 0..200 {
        let () = redis::cmd("SET").arg(format!("user:{i}")).arg(i).query(&mut c).unwrap();
    }
    server.terminate();
    let config = server.dir.with_extension("toml");
    std::fs::write(&config, "partition-separator = \"/\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-server"))
        .args(["--port", "0", "--cores", "2", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&server.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("partition-separator") && err.contains("was made with ':'"), "{err}");
    std::fs::remove_file(&config).ok();
    server.restart();
    let mut c = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 200);
}
