//! Debian's redis-cli and redis-benchmark work against the server unchanged.

mod common;
use common::Server;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn redis_cli_commands_and_pipe_mode() {
    let server = Server::start("cli", &["--cores", "2"]);
    assert_eq!(server.cli(&["SET", "greeting", "hello world"]).trim(), "OK");
    assert_eq!(server.cli(&["GET", "greeting"]).trim(), "hello world");
    assert_eq!(server.cli(&["INCRBY", "n", "5"]).trim(), "5");
    assert!(server.cli(&["GET"]).contains("ERR wrong number of arguments for 'get' command"));
    assert!(server.cli(&["INFO", "server"]).contains("redis_version:"));
    // --pipe: mass insertion, terminated by redis-cli's ECHO marker.
    let mut input = String::new();
    for i in 0..10_000 {
        input.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\nbulk:{i}\r\n$1\r\nx\r\n",
            format!("bulk:{i}").len()
        ));
    }
    let mut child = Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("errors: 0, replies: 10000"), "{text}");
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "10002");
}

#[test]
fn redis_benchmark_runs_every_test() {
    let server = Server::start("benchmark", &["--cores", "2"]);
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &server.port.to_string(),
            "-t",
            "set,get,incr,mset",
            "-n",
            "20000",
            "-c",
            "50",
            "-P",
            "16",
            "--csv",
        ])
        .output()
        .expect("redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for test in ["SET", "GET", "INCR", "MSET (10 keys)"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))
            .unwrap_or_else(|| panic!("no {test} in {text}"));
        let rps: f64 = line.split(',').nth(1).unwrap().trim_matches('"').parse().unwrap();
        assert!(rps > 0.0, "{line}");
    }
    // redis-benchmark's keys are there afterwards.
    assert!(server.cli(&["EXISTS", "key:__rand_int__"]).trim() == "1");
}
