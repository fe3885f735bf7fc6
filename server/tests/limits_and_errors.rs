//! Bad input and limits: protocol errors close only the offending connection, garbage never
//! takes the server down, and maxclients, maxmemory, proto-max-bulk-len, the query buffer
//! limit and requirepass answer with Redis's errors.

mod common;
use common::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn raw(server: &Server) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends bytes and reads until the server closes the connection.
fn send_until_close(server: &Server, bytes: &[u8]) -> String {
    let mut s = raw(server);
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends bytes and reads one reply line (or more, up to `len` bytes).
fn roundtrip(s: &mut TcpStream, bytes: &[u8], len: usize) -> String {
    s.write_all(bytes).unwrap();
    let mut buf = vec![0; len];
    let mut got = 0;
    while got < len {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    String::from_utf8_lossy(&buf[..got]).into_owned()
}

fn ping_ok(server: &Server) {
    let mut c = server.client();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn protocol_errors_close_only_that_connection() {
    let server = Server::start("proto", &["--cores", "2"]);
    let mut bystander = server.client();
    let cases: [(&[u8], &str); 5] = [
        (b"*1\r\n$x\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
        (b"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*2\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*1\r\n$3\r\nabcde\r\n", "-ERR Protocol error: invalid bulk format\r\n"),
        (b"SET \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"),
    ];
    for (input, expected) in cases {
        assert_eq!(send_until_close(&server, input), expected);
    }
    // A valid command before the bad bytes is answered first.
    assert_eq!(
        send_until_close(&server, b"PING\r\n*1\r\n$-2\r\n"),
        "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
    let _: () = redis::cmd("SET").arg("still").arg("here").query(&mut bystander).unwrap();
    ping_ok(&server);
}

#[test]
fn garbage_never_takes_the_server_down() {
    let server = Server::start("garbage", &["--cores", "2"]);
    let mut rng =
        shardcast_engine::testing::SplitMix64::new(shardcast_engine::testing::seed_from_env());
    for _ in 0..50 {
        let len = 1 + rng.below(4096) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        if rng.chance(1, 2) {
            bytes[0] = b'*';
        }
        let mut s = raw(&server);
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    }
    ping_ok(&server);
}

#[test]
fn inline_commands_and_resp3() {
    let server = Server::start("inline", &["--cores", "1"]);
    let mut s = raw(&server);
    assert_eq!(roundtrip(&mut s, b"PING\r\n", 7), "+PONG\r\n");
    assert_eq!(roundtrip(&mut s, b"SET k \"a b\"\r\n", 5), "+OK\r\n");
    assert_eq!(roundtrip(&mut s, b"GET k\r\n", 9), "$3\r\na b\r\n");
    assert_eq!(roundtrip(&mut s, b"GET nokey\r\n", 5), "$-1\r\n");
    let hello = roundtrip(&mut s, b"HELLO 3\r\n", 3);
    assert_eq!(hello, "%7\r");
    let mut rest = vec![0; 4096];
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = s.read(&mut rest);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(roundtrip(&mut s, b"GET nokey\r\n", 3), "_\r\n");
    let noproto = "-NOPROTO unsupported protocol version\r\n";
    assert_eq!(roundtrip(&mut s, b"HELLO 4\r\n", noproto.len()), noproto);
}

#[test]
fn requirepass_needs_auth() {
    let server = Server::start("auth", &["--cores", "2", "--requirepass", "s3cret"]);
    let mut s = raw(&server);
    let noauth = "-NOAUTH Authentication required.\r\n";
    assert_eq!(roundtrip(&mut s, b"GET k\r\n", noauth.len()), noauth);
    let wrong = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    assert_eq!(roundtrip(&mut s, b"AUTH nope\r\n", wrong.len()), wrong);
    assert_eq!(roundtrip(&mut s, b"AUTH s3cret\r\n", 5), "+OK\r\n");
    assert_eq!(roundtrip(&mut s, b"SET k v\r\n", 5), "+OK\r\n");
    let c = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", server.port)).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut c.get_connection().unwrap()).unwrap();
    assert_eq!(v, "v");
    let mut s = raw(&server);
    let reply = roundtrip(&mut s, b"HELLO 3 AUTH default s3cret SETNAME app\r\n", 3);
    assert_eq!(reply, "%7\r");
}

#[test]
fn auth_without_password_configured() {
    let server = Server::start("noauth", &["--cores", "1"]);
    let mut s = raw(&server);
    let expected = "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n";
    assert_eq!(roundtrip(&mut s, b"AUTH x\r\n", expected.len()), expected);
}

#[test]
fn maxclients_refuses_extra_connections() {
    let server = Server::start("maxclients", &["--cores", "2", "--maxclients", "3"]);
    let held: Vec<_> = (0..3).map(|_| server.client()).collect();
    assert_eq!(send_until_close(&server, b""), "-ERR max number of clients reached\r\n");
    drop(held);
    // Slots free up once connections close (the server notices the close on its next read).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Until a slot is free, the connect handshake itself gets the error and a close.
        let pong = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if pong.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn maxmemory_refuses_writes_with_oom() {
    let server = Server::start("maxmemory", &["--cores", "2", "--maxmemory", "1mb"]);
    let mut c = server.client();
    let value = "x".repeat(10_000);
    let mut refused = None;
    for i in 0..1000 {
        if let Err(e) = redis::cmd("SET").arg(format!("k{i}")).arg(&value).query::<()>(&mut c) {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("maxmemory never refused a write");
    assert!(i > 50, "refused too early: {i}");
    assert_eq!(e.code(), Some("OOM"));
    assert_eq!(e.detail(), Some("command not allowed when used memory > 'maxmemory'."));
    let v: String = redis::cmd("GET").arg("k1").query(&mut c).unwrap();
    assert_eq!(v.len(), 10_000, "reads still work");
    let n: i64 = redis::cmd("DEL").arg("k1").arg("k2").query(&mut c).unwrap();
    assert_eq!(n, 2, "deletes still work");
}

#[test]
fn bulk_and_query_buffer_limits() {
    let dir = std::env::temp_dir().join(format!("shardcast-limits-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("limits.toml");
    std::fs::write(&cfg, "proto-max-bulk-len = \"1mb\"\nclient-query-buffer-limit = \"2mb\"\n")
        .unwrap();
    let server = Server::start("bulk", &["--cores", "1", "--config", cfg.to_str().unwrap()]);
    assert_eq!(
        send_until_close(&server, b"*2\r\n$3\r\nGET\r\n$2000000\r\n"),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    // Three 1 MB arguments: one command larger than the 2 MB query buffer: closed.
    let mut big = b"*4\r\n$3\r\nSET\r\n".to_vec();
    for _ in 0..3 {
        big.extend_from_slice(b"$1000000\r\n");
        big.extend(std::iter::repeat_n(b'a', 1_000_000));
        big.extend_from_slice(b"\r\n");
    }
    assert_eq!(send_until_close(&server, &big), "");
    ping_ok(&server);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_flags_and_config_files_are_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardcast-server"))
        .args(["--fsync", "sometimes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid fsync policy 'sometimes'"));
    let dir = std::env::temp_dir().join(format!("shardcast-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.toml"), "maxmemory = \"lots\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardcast-server"))
        .args(["--config", dir.join("c.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("maxmemory: invalid memory size 'lots'"));
    std::fs::remove_dir_all(&dir).ok();
}
