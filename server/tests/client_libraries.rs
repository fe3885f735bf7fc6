//! Client libraries against the real binary. node-redis (the `redis` package for Node.js):
//! its handshake, multi(), WATCH with WatchError, EVAL/EVALSHA, a script inside multi(), and
//! a rate limiter from several connections (`fixtures/node_redis_client.js`); Debian's
//! `nodejs` and `node-redis` are installed by `.ci/run`. go-redis v9 cannot be fetched here
//! (no Go module proxy), so its handshake and TxPipeline are replayed as it sends them.

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

/// go-redis v9's connection handshake (HELLO 3 with the client name, then its library name
/// and version, pipelined) and a TxPipeline (MULTI ... EXEC), byte for byte as it sends them.
#[test]
fn go_redis_handshake_and_tx_pipeline_as_sent() {
    use std::io::{Read, Write};
    let server = Server::start("go-handshake", &["--cores", "2"]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let cmds: [&[&str]; 7] = [
        &["hello", "3", "setname", "go-app"],
        &["client", "setinfo", "LIB-NAME", "go-redis(,go1.21.0)"],
        &["client", "setinfo", "LIB-VER", "9.5.1"],
        &["multi"],
        &["set", "go:k", "1"],
        &["incr", "go:k"],
        &["exec"],
    ];
    let mut out = Vec::new();
    for c in cmds {
        out.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for a in c {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    s.write_all(&out).unwrap();
    let want_tail = "+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:2\r\n";
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).ends_with(want_tail) {
        let n = s.read(&mut buf).expect("the replies, within 10 s");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("%7\r\n$6\r\nserver\r\n"), "HELLO 3 answers a map: {text}");
    let mut c = server.client();
    let info: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert!(
        info.contains("name=go-app") && info.contains("lib-name=go-redis(,go1.21.0)"),
        "{info}"
    );
    assert!(info.contains("lib-ver=9.5.1") && info.contains("resp=3"), "{info}");
}
