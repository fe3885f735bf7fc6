//! node-redis (the `redis` package for Node.js) against the real binary: its handshake,
//! multi(), WATCH with WatchError, EVAL/EVALSHA, a script inside multi(), and a rate limiter
//! from several connections (`fixtures/node_redis_client.js`). Debian's `nodejs` and
//! `node-redis` are installed by `.ci/run`.

mod common;

use common::{partitions_on_both_cores, Server};
use std::process::Command;

#[test]
fn node_redis_multi_watch_and_scripts_work() {
    let server = Server::start("node-client", &["--cores", "2"]);
    let (a, b) = partitions_on_both_cores(&mut server.client());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/node_redis_client.js");
    let out = Command::new("node")
        .arg(script)
        .arg(server.port.to_string())
        .arg(format!("{a}:balance"))
        .arg(format!("{b}:balance"))
        // Where Debian's node-* packages live (a Node.js not from Debian does not look there).
        .env("NODE_PATH", "/usr/share/nodejs")
        .output()
        .expect("node (with Debian's node-redis; .ci/run installs both)");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "node-redis failed:\n{stdout}\n{stderr}\n{}", server.log());
    assert!(stdout.contains("node-redis ok"), "{stdout}");
}
