//! Telemetry end to end: per-tick statistics counted exactly per kind and per application,
//! the load history over a restart and a corrupt history file, health states from a busy
//! core, and HTTP on the main port (`/metrics` checked by Prometheus's own `promtool`,
//! `/history.csv` through the trace parser).

mod common;

use common::Server;
use shardcast_predictor::trace::{parse_trace, write_trace, TraceRow};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

/// Sends `request` on a new connection; returns all it answered until it closed.
fn raw(port: u16, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `request` raw on a new connection; returns the status code and the body.
fn http(port: u16, request: &str) -> (u16, String) {
    let text = raw(port, request);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn get(port: u16, path: &str) -> (u16, String) {
    http(port, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"))
}

/// Waits until `f` returns `Ok`, or fails with `what` and the last `Err` (what was seen).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f() {
            Ok(v) => return v,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last seen:\n{seen}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sums of a partition's rows.
fn sums(rows: &[TraceRow], partition: &str) -> TraceRow {
    let mut t = TraceRow { partition: partition.as_bytes().to_vec(), ..Default::default() };
    for r in rows.iter().filter(|r| r.partition == partition.as_bytes()) {
        t.reads += r.reads;
        t.writes += r.writes;
        t.deletes += r.deletes;
        t.other += r.other;
        t.bytes_in += r.bytes_in;
        t.bytes_out += r.bytes_out;
        for (app, n) in &r.apps {
            match t.apps.iter_mut().find(|(a, _)| a == app) {
                Some(e) => e.1 += n,
                None => t.apps.push((app.clone(), *n)),
            }
        }
    }
    t.apps.sort();
    t
}

fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn promtool_check(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; .ci/run installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every op a test sends shows in the tick rows of its partition, exactly, by kind, by
/// application (CLIENT SETNAME) and in bytes; and in `/metrics`' per-shard counters, which
/// promtool accepts.
#[test]
fn tick_statistics_count_every_op_by_kind_and_application() {
    let srv = Server::start("telemetry-counts", &["--tick-ms", "100", "--cores", "2"]);
    let mut named = srv.client();
    let mut unnamed = srv.client();
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg("checkout").query(&mut named).unwrap();
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    for i in 0..30 {
        let key = format!("cart:{i}");
        let _: () = redis::cmd("SET").arg(&key).arg("vv").query(&mut named).unwrap();
        bytes_in += key.len() as u64 + 2;
    }
    for i in 0..20 {
        let key = format!("cart:{i}");
        let v: String = redis::cmd("GET").arg(&key).query(&mut named).unwrap();
        assert_eq!(v, "vv");
        bytes_in += key.len() as u64;
        bytes_out += 2;
    }
    for i in 0..5 {
        let key = format!("cart:{i}");
        let _: i64 = redis::cmd("DEL").arg(&key).query(&mut named).unwrap();
        bytes_in += key.len() as u64;
    }
    for i in 10..13 {
        let key = format!("cart:{i}");
        let _: i64 = redis::cmd("EXPIRE").arg(&key).arg(100).query(&mut named).unwrap();
        bytes_in += key.len() as u64;
    }
    for i in 0..7 {
        let _: Option<String> =
            redis::cmd("GET").arg(format!("user:{i}")).query(&mut unnamed).unwrap();
    }
    let rows = wait_for("every op in the tick history", || {
        let (status, body) = get(srv.port, "/history.csv?resolution=tick");
        assert_eq!(status, 200, "{body}");
        let rows = parse_trace(&body).expect("the export parses as a trace");
        let (cart, user) = (sums(&rows, "cart"), sums(&rows, "user"));
        if cart.ops() == 58 && user.ops() == 7 {
            Ok(rows)
        } else {
            Err(body)
        }
    });
    let cart = sums(&rows, "cart");
    assert_eq!((cart.reads, cart.writes, cart.deletes, cart.other), (20, 30, 5, 3));
    assert_eq!((cart.bytes_in, cart.bytes_out), (bytes_in, bytes_out));
    assert_eq!(cart.apps, vec![(b"checkout".to_vec(), 58)]);
    let user = sums(&rows, "user");
    assert_eq!((user.reads, user.writes), (7, 0));
    assert_eq!(user.apps, vec![(Vec::new(), 7)], "unnamed clients are one group");
    let cart_rows: Vec<&TraceRow> = rows.iter().filter(|r| r.partition == b"cart").collect();
    assert!(
        cart_rows.iter().all(|r| r.distinct_keys >= 1 && r.distinct_keys <= 30),
        "{cart_rows:?}"
    );

    let metrics = wait_for("the counters in /metrics", || {
        let (status, text) = get(srv.port, "/metrics");
        assert_eq!(status, 200);
        let reads = metric_sum(&text, "shardcast_shard_ops_total", "kind=\"read\"");
        if reads == 27.0 {
            Ok(text)
        } else {
            Err(text)
        }
    });
    for (kind, n) in [("write", 30.0), ("delete", 5.0), ("other", 3.0)] {
        let got = metric_sum(&metrics, "shardcast_shard_ops_total", &format!("kind=\"{kind}\""));
        assert_eq!(got, n, "{kind}");
    }
    for name in [
        "shardcast_core_busy_ratio",
        "shardcast_shard_health",
        "shardcast_partition_ops_per_second",
    ] {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    promtool_check(&metrics);
}

/// The history is written at shutdown and read at start; a damaged history file is set aside
/// with an error in the log, and the server starts anyway.
#[test]
fn history_survives_a_restart_and_a_corrupt_file_is_set_aside() {
    let mut srv = Server::start("telemetry-history", &["--tick-ms", "100", "--cores", "2"]);
    let mut c = srv.client();
    for i in 0..200 {
        let _: () = redis::cmd("SET").arg(format!("hist:{i}")).arg(i).query(&mut c).unwrap();
    }
    let history = |c: &mut redis::Connection| -> Vec<String> {
        redis::cmd("SHARDCAST").arg("HISTORY").arg("hist").arg("COUNT").arg(1000).query(c).unwrap()
    };
    let before = wait_for("the writes in the history", || {
        let rows = history(&mut c);
        let parsed = parse_trace(&rows.join("\n")).unwrap();
        if sums(&parsed, "hist").writes == 200 {
            Ok(rows)
        } else {
            Err(rows.join("\n"))
        }
    });
    assert!(before[0].starts_with("ts_ms,partition,reads,writes"), "{before:?}");
    drop(c);
    srv.terminate();
    srv.restart();
    let mut c = srv.client();
    let after = history(&mut c);
    assert_eq!(&after[..before.len()], &before[..], "the rows before the restart are kept");
    drop(c);
    srv.terminate();

    let file = srv.dir.join("history.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    srv.restart();
    let mut c = srv.client();
    assert_eq!(history(&mut c).len(), 1, "an empty history: the header only");
    let log = srv.log();
    assert!(log.contains("the load history could not be read"), "{log}");
    let aside = std::fs::read_dir(&srv.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("history.bin.corrupt-"));
    assert!(aside, "the damaged file is kept aside");
    let _: () = redis::cmd("SET").arg("hist:new").arg(1).query(&mut c).unwrap();
}

/// A core kept busy (DEBUG SLEEP in a loop) turns overloaded, a core blocked for a second
/// turns failed (no ticks), each with a log line; both are healthy again once released.
#[test]
fn a_busy_core_is_overloaded_and_a_blocked_one_failed_then_healthy_again() {
    let srv = Server::start("telemetry-health", &["--tick-ms", "100", "--cores", "2"]);
    let url = srv.url();
    // Busy until the overload is seen (three 20 ms sleeps per round trip, so the core stays
    // above 90% busy even when the client is slow to send the next), then blocked for 1 s.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let until = Instant::now() + DEADLINE;
            while !seen.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                let mut p = redis::pipe();
                for _ in 0..3 {
                    p.cmd("DEBUG").arg("SLEEP").arg("0.02").ignore();
                }
                p.query::<()>(&mut c).unwrap();
            }
            let _: () = redis::cmd("DEBUG").arg("SLEEP").arg("1").query(&mut c).unwrap();
        })
    };
    let core = wait_for("an overloaded core in the log", || {
        let log = srv.log();
        let n = log
            .lines()
            .find(|l| l.contains(" is overloaded"))
            .and_then(|line| line.split("core ").nth(1)?.split(' ').next()?.parse::<usize>().ok());
        n.ok_or(log)
    });
    seen.store(true, std::sync::atomic::Ordering::Relaxed);
    busy.join().unwrap();
    wait_for("the blocked core failed in the log", || {
        let log = srv.log();
        if log.contains(&format!("core {core} is failed")) {
            Ok(())
        } else {
            Err(log)
        }
    });
    let mut c = srv.client();
    wait_for("every core healthy again", || {
        let info: String = redis::cmd("INFO").arg("shards").query(&mut c).unwrap();
        let healthy =
            info.lines().filter(|l| l.starts_with("core") && l.contains("health=healthy")).count();
        if healthy == 2 {
            Ok(())
        } else {
            Err(info)
        }
    });
    let bad = std::process::Command::new("redis-cli")
        .args(["-p", &srv.port.to_string(), "DEBUG", "SLEEP", "nope"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stdout).contains("ERR value is not a valid float"));
}

/// HTTP and RESP share the port: `/history.csv` round-trips through the trace parser, bad
/// requests get 4xx and a closed connection, and with requirepass HTTP needs basic auth.
#[test]
fn http_serves_metrics_and_history_on_the_main_port() {
    let srv = Server::start("telemetry-http", &["--tick-ms", "100", "--cores", "2"]);
    let mut c = srv.client();
    for i in 0..50 {
        let _: () = redis::cmd("SET").arg(format!("{{t,ag}}:{i}")).arg(i).query(&mut c).unwrap();
    }
    let body = wait_for("the tag's rows", || {
        let (status, body) = get(srv.port, "/history.csv?partition=t%2Cag");
        assert_eq!(status, 200);
        let rows = parse_trace(&body).unwrap();
        if sums(&rows, "t,ag").writes == 50 {
            Ok(body)
        } else {
            Err(body)
        }
    });
    assert_eq!(write_trace(&parse_trace(&body).unwrap()), body, "the export round-trips");
    assert!(body.lines().skip(1).all(|l| l.contains("\"t,ag\"")), "{body}");
    let (status, body) = get(srv.port, "/history.csv?resolution=hour");
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(srv.port, "/nope").0, 404);
    assert_eq!(http(srv.port, "POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http(srv.port, "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n").0, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(http(srv.port, &huge).0, 431);
    // An inline command that starts like HTTP is still RESP.
    let inline = raw(srv.port, "GET {t,ag}:1\r\nQUIT\r\n");
    assert_eq!(inline, "$1\r\n1\r\n+OK\r\n", "an inline GET is answered in RESP");
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");

    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("s3cret").query(&mut c).unwrap();
    assert_eq!(get(srv.port, "/metrics").0, 401);
    let wrong = "GET /metrics HTTP/1.1\r\nAuthorization: Basic dTp3cm9uZw==\r\n\r\n";
    assert_eq!(http(srv.port, wrong).0, 401);
    // "default:s3cret" in base64.
    let right = "GET /metrics HTTP/1.1\r\nAuthorization: Basic ZGVmYXVsdDpzM2NyZXQ=\r\n\r\n";
    let (status, text) = http(srv.port, right);
    assert_eq!(status, 200);
    promtool_check(&text);
}

/// CONFIG SET telemetry no stops the per-op sketches at once (ops are still counted by kind),
/// and yes starts them again; a bad value gets Redis's CONFIG SET error.
#[test]
fn telemetry_is_switched_off_and_on_at_run_time() {
    let srv = Server::start("telemetry-switch", &["--tick-ms", "100", "--cores", "2"]);
    let mut c = srv.client();
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg("switcher").query(&mut c).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("telemetry").arg("no").query(&mut c).unwrap();
    let got: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("telemetry").query(&mut c).unwrap();
    assert_eq!(got, vec!["telemetry", "no"]);
    for i in 0..10 {
        let _: () = redis::cmd("SET").arg(format!("off:{i}")).arg("v").query(&mut c).unwrap();
    }
    let _: () = redis::cmd("CONFIG").arg("SET").arg("telemetry").arg("yes").query(&mut c).unwrap();
    for i in 0..10 {
        let _: () = redis::cmd("SET").arg(format!("on:{i}")).arg("v").query(&mut c).unwrap();
    }
    let rows = wait_for("both partitions' writes", || {
        let (_, body) = get(srv.port, "/history.csv?resolution=tick");
        let rows = parse_trace(&body).unwrap();
        if sums(&rows, "off").writes == 10 && sums(&rows, "on").writes == 10 {
            Ok(rows)
        } else {
            Err(body)
        }
    });
    let (off, on) = (sums(&rows, "off"), sums(&rows, "on"));
    assert_eq!((off.bytes_in, off.apps.len()), (0, 0), "no sketches while off: {off:?}");
    assert_eq!(on.bytes_in, 10 * 5);
    assert_eq!(on.apps, vec![(b"switcher".to_vec(), 10)]);
    let err = redis::cmd("CONFIG").arg("SET").arg("telemetry").arg("maybe").query::<()>(&mut c);
    let text = err.unwrap_err().to_string();
    assert!(text.contains("CONFIG SET failed") && text.contains("telemetry"), "{text}");
}

/// The load generator's `--trace-out` and the server's history of the same run agree, row
/// sums per partition: ops by kind, bytes in and ops per application.
#[test]
fn the_load_generators_trace_matches_the_servers_history() {
    use shardcast_loadgen::{run, LoopMode, RunConfig, Workload};
    let srv = Server::start("telemetry-loadgen", &["--tick-ms", "200", "--cores", "2"]);
    let trace = srv.dir.with_extension("trace.csv");
    let mut c = RunConfig::new("127.0.0.1", srv.port, Workload::load("diurnal-3apps").unwrap());
    c.duration = Some(Duration::from_secs(3));
    c.interval = Duration::from_millis(500);
    c.rate = Some(2000.0);
    c.connections = 6;
    c.pipeline = 4;
    c.mode = LoopMode::Open;
    c.preload = false;
    c.trace_out = Some(trace.clone());
    let report = run(&c).unwrap();
    assert_eq!(report.errors, 0, "{}", report.table());
    let sent = parse_trace(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    std::fs::remove_file(&trace).ok();
    let mut partitions: Vec<Vec<u8>> = sent.iter().map(|r| r.partition.clone()).collect();
    partitions.sort();
    partitions.dedup();
    assert!(partitions.len() >= 2, "{partitions:?}");
    wait_for("the server's history to hold every op sent", || {
        let (_, body) = get(srv.port, "/history.csv?resolution=tick");
        let served = parse_trace(&body).unwrap();
        let mut differences = String::new();
        for p in &partitions {
            let name = String::from_utf8_lossy(p).into_owned();
            let (a, b) = (sums(&sent, &name), sums(&served, &name));
            let kinds = |r: &TraceRow| (r.reads, r.writes, r.deletes, r.other, r.bytes_in);
            if kinds(&a) != kinds(&b) || a.apps != b.apps {
                differences += &format!("{name}: sent {a:?}\n served {b:?}\n");
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(differences)
        }
    });
}
