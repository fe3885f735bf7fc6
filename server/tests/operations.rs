//! The operator's commands against the real binary: per-command statistics and latency
//! histograms (INFO commandstats | latencystats | errorstats, LATENCY HISTOGRAM, /metrics),
//! the slow log, the latency monitor, CLIENT KILL | PAUSE | UNPAUSE | NO-EVICT, MEMORY and
//! MONITOR. Where Redis has the command, the same commands go to Debian's `redis-server` and
//! the replies must have the same shape (and the same text, for errors).

mod common;

use common::{Redis, Server};
use redis::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn run(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

/// A reply's shape: its types and nesting, not its numbers (errors: their whole text).
fn shape(r: &redis::RedisResult<Value>) -> String {
    fn of(v: &Value) -> String {
        match v {
            Value::Nil => "nil".into(),
            Value::Int(_) => "int".into(),
            Value::BulkString(_) => "bulk".into(),
            Value::SimpleString(s) => format!("simple {s}"),
            Value::Okay => "OK".into(),
            Value::Array(items) => {
                format!("[{}]", items.iter().map(of).collect::<Vec<_>>().join(","))
            }
            other => format!("{other:?}"),
        }
    }
    match r {
        Ok(v) => of(v),
        Err(e) => format!("error {} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn info(c: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(c).unwrap()
}

/// The value of `field=` in INFO line `line_key:` (`cmdstat_get`, `calls`).
fn info_field(info: &str, line_key: &str, field: &str) -> Option<String> {
    let line = info.lines().find(|l| l.starts_with(&format!("{line_key}:")))?;
    let fields = line.split_once(':')?.1;
    fields.split(',').find_map(|f| f.strip_prefix(&format!("{field}=")).map(str::to_owned))
}

/// Every reply these commands give has the shape Redis's has, after the same setup.
#[test]
fn replies_have_redis_shapes() {
    let server = Server::start("ops-shapes", &[]);
    let redis = Redis::start();
    let script: &[&[&str]] = &[
        &["CONFIG", "SET", "slowlog-log-slower-than", "0"],
        &["SET", "a", "1"],
        &["GET", "a"],
        &["SLOWLOG", "GET", "1"],
        &["SLOWLOG", "LEN"],
        &["SLOWLOG", "GET", "-2"],
        &["SLOWLOG", "GET", "x"],
        &["SLOWLOG", "NOPE"],
        &["SLOWLOG", "RESET"],
        &["LATENCY", "HISTOGRAM", "get", "nosuchcommand"],
        &["LATENCY", "HISTORY", "nosuchevent"],
        &["LATENCY", "HISTORY"],
        &["LATENCY", "RESET", "nosuchevent"],
        &["LATENCY", "LATEST"],
        &["MEMORY", "USAGE", "a"],
        &["MEMORY", "USAGE", "nosuch"],
        &["MEMORY", "USAGE", "a", "SAMPLES", "x"],
        &["MEMORY", "USAGE", "a", "SAMPLES", "0"],
        &["MEMORY", "DOCTOR"],
        &["CLIENT", "KILL", "1.2.3.4:5"],
        &["CLIENT", "KILL", "ID", "0"],
        &["CLIENT", "KILL", "ID", "99999"],
        &["CLIENT", "KILL", "ADDR", "1.2.3.4:5", "SKIPME", "no"],
        &["CLIENT", "KILL", "USER", "nosuch"],
        &["CLIENT", "KILL", "SKIPME", "maybe"],
        &["CLIENT", "KILL", "foo", "bar"],
        &["CLIENT", "KILL", "TYPE", "pubsub"],
        &["CLIENT", "NO-EVICT", "on"],
        &["CLIENT", "NO-EVICT", "maybe"],
        &["CLIENT", "PAUSE", "-1"],
        &["CLIENT", "PAUSE", "abc"],
        &["CLIENT", "PAUSE", "10", "foo"],
        &["CLIENT", "PAUSE", "1", "WRITE"],
        &["CLIENT", "UNPAUSE"],
        &["CLIENT", "UNPAUSE", "x"],
    ];
    let (mut ours, mut theirs) = (server.client(), redis.client());
    for args in script {
        let (a, b) = (run(&mut ours, args), run(&mut theirs, args));
        assert_eq!(shape(&a), shape(&b), "{args:?}: ours {a:?}, Redis's {b:?}");
    }
    // LATENCY HISTOGRAM: the same nesting (command -> calls, histogram_usec -> pairs).
    for c in [&mut ours, &mut theirs] {
        let reply = run(c, &["LATENCY", "HISTOGRAM", "set"]).unwrap();
        let Value::Array(top) = &reply else { panic!("{reply:?}") };
        assert_eq!(top.len(), 2, "{reply:?}");
        assert_eq!(text(&top[0]), "set");
        let Value::Array(fields) = &top[1] else { panic!("{reply:?}") };
        assert_eq!(text(&fields[0]), "calls");
        assert_eq!(fields[1], Value::Int(1));
        assert_eq!(text(&fields[2]), "histogram_usec");
        let Value::Array(pairs) = &fields[3] else { panic!("{reply:?}") };
        assert!(
            pairs.len() >= 2
                && pairs.len() % 2 == 0
                && pairs.iter().all(|p| matches!(p, Value::Int(_)))
        );
    }
    // INFO lines with the same fields.
    for c in [&mut ours, &mut theirs] {
        let _ = run(c, &["GET", "a", "b"]);
        let _ = run(c, &["INCR", "nonnumeric"]);
        let _ = run(c, &["SET", "nonnumeric", "x"]);
        let _ = run(c, &["INCR", "nonnumeric"]);
        let stats = info(c, "commandstats");
        assert_eq!(
            info_field(&stats, "cmdstat_get", "rejected_calls").as_deref(),
            Some("1"),
            "{stats}"
        );
        assert_eq!(
            info_field(&stats, "cmdstat_incr", "failed_calls").as_deref(),
            Some("1"),
            "{stats}"
        );
        assert_eq!(info_field(&stats, "cmdstat_incr", "calls").as_deref(), Some("2"), "{stats}");
        assert!(info_field(&stats, "cmdstat_get", "usec_per_call").is_some(), "{stats}");
        assert!(stats.contains("cmdstat_config|set:"), "{stats}");
        let latency = info(c, "latencystats");
        for p in ["p50", "p99", "p99.9"] {
            let v = info_field(&latency, "latency_percentiles_usec_get", p).unwrap_or_default();
            assert!(v.parse::<f64>().is_ok_and(|us| us > 0.0), "{p} {latency}");
        }
        let errors = info(c, "errorstats");
        assert!(errors.contains("errorstat_ERR:count="), "{errors}");
        let default: String = redis::cmd("INFO").query(c).unwrap();
        assert!(!default.contains("# Commandstats") && default.contains("# Errorstats"));
        assert!(info(c, "all").contains("# Latencystats"));
    }
    // The same through redis-cli, as an operator types them.
    let hist = server.cli(&["LATENCY", "HISTOGRAM", "get"]);
    assert!(hist.starts_with("get\ncalls\n"), "{hist}");
    let doctor = server.cli(&["MEMORY", "DOCTOR"]);
    assert!(doctor.contains("little data"), "{doctor}");
}

/// Calls, failures and rejections are counted exactly, pipelined or not, on both cores, and
/// CONFIG RESETSTAT clears them.
#[test]
fn command_statistics_are_exact_and_reset() {
    let server = Server::start("ops-stats", &["--cores", "2"]);
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..16 {
        pipe.cmd("SET").arg(format!("p{i}:k")).arg(i);
    }
    for i in 0..16 {
        pipe.cmd("GET").arg(format!("p{i}:k"));
    }
    let _: Vec<Value> = pipe.query(&mut c).unwrap();
    let mut other = server.client();
    for i in 0..10 {
        let _: Option<String> = redis::cmd("GET").arg(format!("q{i}:k")).query(&mut other).unwrap();
    }
    let _ = run(&mut c, &["GET"]);
    let _ = run(&mut c, &["INCRBY", "p1:k", "notanumber"]);
    let stats = info(&mut c, "commandstats");
    assert_eq!(info_field(&stats, "cmdstat_set", "calls").as_deref(), Some("16"), "{stats}");
    assert_eq!(info_field(&stats, "cmdstat_get", "calls").as_deref(), Some("26"), "{stats}");
    assert_eq!(info_field(&stats, "cmdstat_get", "rejected_calls").as_deref(), Some("1"));
    assert_eq!(info_field(&stats, "cmdstat_incrby", "failed_calls").as_deref(), Some("1"));
    // The histograms count the same calls.
    let hist = run(&mut c, &["LATENCY", "HISTOGRAM", "get", "set"]).unwrap();
    let Value::Array(top) = hist else { panic!() };
    let calls: Vec<(String, Value)> = top
        .chunks(2)
        .map(|p| {
            let Value::Array(f) = &p[1] else { panic!() };
            (text(&p[0]), f[1].clone())
        })
        .collect();
    assert!(calls.contains(&("get".into(), Value::Int(26))), "{calls:?}");
    assert!(calls.contains(&("set".into(), Value::Int(16))), "{calls:?}");
    // /metrics has the same counts as Prometheus histograms.
    let metrics = http_get(server.port, "/metrics");
    assert!(
        metrics.contains("shardcast_command_duration_seconds_count{cmd=\"get\"} 26"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shardcast_command_duration_seconds_bucket{cmd=\"set\",le=\"+Inf\"} 16")
    );
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    let stats = info(&mut c, "commandstats");
    assert_eq!(info_field(&stats, "cmdstat_get", "calls"), None, "{stats}");
    assert!(info(&mut c, "errorstats").trim_end().ends_with("# Errorstats"));
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The slow log keeps slow commands with their arguments (read back from the pipeline's
/// input), trimmed as Redis trims them, newest first, up to slowlog-max-len.
#[test]
fn slow_log_keeps_slow_commands_with_their_arguments() {
    let server = Server::start("ops-slowlog", &[]);
    let mut c = server.client();
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg("app-1").query(&mut c).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg("30000")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET").arg("fast").arg("1").query(&mut c).unwrap();
    let _: () = redis::cmd("DEBUG").arg("SLEEP").arg("0.05").query(&mut c).unwrap();
    let entries = run(&mut c, &["SLOWLOG", "GET"]).unwrap();
    let Value::Array(entries) = entries else { panic!() };
    // The sleep is the newest entry (on a loaded machine an earlier command may be slow too).
    let Some(Value::Array(e)) = entries.first() else { panic!("no entry: {entries:?}") };
    let Value::Int(us) = e[2] else { panic!() };
    assert!(us >= 50_000, "{us}");
    assert_eq!(
        e[3],
        Value::Array(vec![
            Value::BulkString(b"DEBUG".to_vec()),
            Value::BulkString(b"SLEEP".to_vec()),
            Value::BulkString(b"0.05".to_vec()),
        ])
    );
    assert_eq!(text(&e[5]), "app-1");
    // Everything logged: a pipeline's commands each get their entry, with their arguments.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg("0")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    let big = "x".repeat(300);
    let many: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    // One write holding three commands (AUTH fails, which a client library's pipeline would
    // stop at), sent raw.
    let mut wire = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$300\r\n{big}\r\n");
    wire.push_str("*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n");
    wire.push_str(&format!("*{}\r\n$4\r\nMGET\r\n", many.len() + 1));
    for k in &many {
        wire.push_str(&format!("${}\r\n{k}\r\n", k.len()));
    }
    let mut raw = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    raw.write_all(wire.as_bytes()).unwrap();
    raw.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut replies = Vec::new();
    while replies.windows(5).filter(|w| w == b"$-1\r\n").count() < many.len() {
        let mut buf = [0u8; 4096];
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&replies));
        replies.extend_from_slice(&buf[..n]);
    }
    let entries = run(&mut c, &["SLOWLOG", "GET", "-1"]).unwrap();
    let Value::Array(entries) = entries else { panic!() };
    let args: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let Value::Array(e) = e else { panic!() };
            let Value::Array(a) = &e[3] else { panic!() };
            a.iter().map(text).collect()
        })
        .collect();
    let find = |name: &str| {
        args.iter()
            .find(|a| a[0].eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("{name} in {args:?}"))
    };
    assert_eq!(find("SET")[2], format!("{}... (172 more bytes)", &big[..128]));
    assert_eq!(find("AUTH")[1], "(redacted)");
    let _ = run(&mut c, &["CONFIG", "SET", "masterauth", "hunter2"]);
    let entries = run(&mut c, &["SLOWLOG", "GET", "1"]).unwrap();
    assert!(format!("{entries:?}").contains("(redacted)"), "{entries:?}");
    assert!(!format!("{entries:?}").contains("hunter2"), "{entries:?}");
    let mget = find("MGET");
    assert_eq!(mget.len(), 32);
    assert_eq!(mget[31], "... (10 more arguments)");
    // Bounded by slowlog-max-len; -1 turns it off.
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg("3").query(&mut c).unwrap();
    for _ in 0..10 {
        let _: () = redis::cmd("SET").arg("x").arg("1").query(&mut c).unwrap();
    }
    assert_eq!(run(&mut c, &["SLOWLOG", "LEN"]).unwrap(), Value::Int(3));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg("-1")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("x").arg("1").query(&mut c).unwrap();
    assert_eq!(run(&mut c, &["SLOWLOG", "LEN"]).unwrap(), Value::Int(0));
}

/// The latency monitor shows slow commands and the engine's own pauses (a backup's cut, a
/// snapshot, a migration's cutover, each widened with a delay point so it is over the
/// threshold whatever the machine), with LATEST, HISTORY and RESET as Redis has them.
#[test]
fn latency_monitor_shows_commands_and_engine_events() {
    let dir = std::env::temp_dir().join(format!("shardcast-it-ops-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Small logs, so a few hundred writes start a snapshot.
    let config = dir.join("shardcast.toml");
    // A 200 ms threshold: no ordinary command reaches it even on a loaded machine (20 ms did).
    std::fs::write(&config, "snapshot-min-wal-size = \"64kb\"\nlatency-monitor-threshold = 200\n")
        .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut server = Server::start_at(
        &dir.join("data"),
        &["--cores", "2", "--policy", "static", "--config", &config],
    );
    // Only debug builds have the delay points; the tests run them.
    let delays = "backup:mark@600,snapshot:write@400,migration:cutover@400";
    server.set_env("SHARDCAST_FAULT_DELAY", Some(delays));
    server.terminate();
    server.restart();
    let mut c = server.client();
    let _: () = redis::cmd("DEBUG").arg("SLEEP").arg("0.4").query(&mut c).unwrap();
    let _: String = redis::cmd("SAVE").query(&mut c).unwrap();
    let value = "v".repeat(1000);
    for i in 0..300 {
        let _: () = redis::cmd("SET").arg(format!("acct:{i}")).arg(&value).query(&mut c).unwrap();
    }
    let split: String = redis::cmd("SHARDCAST").arg("SPLIT").arg("acct").query(&mut c).unwrap();
    assert_eq!(split, "OK");
    let latest = |c: &mut redis::Connection| -> Vec<(String, i64, i64)> {
        let Value::Array(events) = run(c, &["LATENCY", "LATEST"]).unwrap() else { panic!() };
        events
            .iter()
            .map(|e| {
                let Value::Array(f) = e else { panic!() };
                let (Value::Int(latest), Value::Int(max)) = (&f[2], &f[3]) else { panic!() };
                (text(&f[0]), *latest, *max)
            })
            .collect()
    };
    // The snapshot runs in the background: wait for it.
    let deadline = Instant::now() + DEADLINE;
    let events = loop {
        let events = latest(&mut c);
        if events.iter().any(|e| e.0 == "snapshot") {
            break events;
        }
        assert!(Instant::now() < deadline, "no snapshot event: {events:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let find = |name: &str| {
        events
            .iter()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("{name} in {events:?}"))
            .clone()
    };
    let command = find("command");
    assert!(command.1 >= 400 && command.2 >= 400, "{events:?}");
    assert!(find("backup-cut").1 >= 600, "{events:?}");
    assert!(find("snapshot").1 >= 400, "{events:?}");
    assert!(find("migration-cutover").1 >= 400, "{events:?}");
    let history = run(&mut c, &["LATENCY", "HISTORY", "command"]).unwrap();
    let Value::Array(samples) = history else { panic!() };
    // DEBUG SLEEP, SAVE and SPLIT each took over 400 ms: one sample per second they fell in.
    assert!((1..=3).contains(&samples.len()), "{samples:?}");
    assert_eq!(run(&mut c, &["LATENCY", "RESET", "command", "nosuch"]).unwrap(), Value::Int(1));
    // The other events (a slow fsync on a loaded machine may have added one).
    let Value::Int(reset) = run(&mut c, &["LATENCY", "RESET"]).unwrap() else { panic!() };
    assert!(reset >= 3, "{reset}: {events:?}");
    assert_eq!(run(&mut c, &["LATENCY", "LATEST"]).unwrap(), Value::Array(vec![]));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn client_ids(c: &mut redis::Connection) -> Vec<(u64, String)> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(c).unwrap();
    list.lines()
        .map(|l| {
            let field = |k: &str| l.split(' ').find_map(|f| f.strip_prefix(k)).unwrap().to_owned();
            (field("id=").parse().unwrap(), field("addr="))
        })
        .collect()
}

/// CLIENT KILL closes idle connections on any core at once (their pending read is woken),
/// by ID, ADDR and LADDR; SKIPME spares the caller unless told otherwise.
#[test]
fn client_kill_closes_connections_on_every_core() {
    let server = Server::start("ops-kill", &["--cores", "2"]);
    let mut admin = server.client();
    let my_id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut admin).unwrap();
    // Idle raw connections, spread over both cores by the kernel.
    let mut idle: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.write_all(b"PING\r\n").unwrap();
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).unwrap();
            s
        })
        .collect();
    let others: Vec<(u64, String)> =
        client_ids(&mut admin).into_iter().filter(|(id, _)| *id != my_id).collect();
    assert_eq!(others.len(), 6);
    let started = Instant::now();
    let killed: i64 =
        redis::cmd("CLIENT").arg("KILL").arg("ID").arg(others[0].0).query(&mut admin).unwrap();
    assert_eq!(killed, 1);
    // The old form: one address, OK.
    redis::cmd("CLIENT").arg("KILL").arg(&others[1].1).query::<()>(&mut admin).unwrap();
    let killed: i64 =
        redis::cmd("CLIENT").arg("KILL").arg("ADDR").arg(&others[2].1).query(&mut admin).unwrap();
    assert_eq!(killed, 1);
    // Each killed connection sees end-of-file without sending anything; the others still
    // answer. (Told apart by address: a short read timeout on every socket could miss an EOF
    // that a loaded machine delivers late.)
    let killed_addrs: Vec<&String> = others[..3].iter().map(|(_, addr)| addr).collect();
    let mut closed = 0;
    for s in idle.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        if killed_addrs.contains(&&s.local_addr().unwrap().to_string()) {
            assert!(matches!(s.read(&mut buf), Ok(0)), "a killed connection stays open");
            closed += 1;
        } else {
            s.write_all(b"PING\r\n").unwrap();
            s.read_exact(&mut buf[..7]).unwrap();
            assert_eq!(&buf[..7], b"+PONG\r\n", "a connection not killed answers");
        }
    }
    assert_eq!(closed, 3, "three connections were killed");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(client_ids(&mut admin).len(), 4);
    // LADDR matches all of them; SKIPME (yes by default) spares the caller.
    let laddr = format!("127.0.0.1:{}", server.port);
    let killed: i64 =
        redis::cmd("CLIENT").arg("KILL").arg("LADDR").arg(&laddr).query(&mut admin).unwrap();
    assert_eq!(killed, 3);
    let deadline = Instant::now() + DEADLINE;
    while client_ids(&mut admin).len() > 1 {
        assert!(Instant::now() < deadline, "killed clients stay listed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SKIPME no: the caller gets its reply, then is closed.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(my_id)
        .arg("SKIPME")
        .arg("no")
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 1);
    assert!(redis::cmd("PING").query::<String>(&mut admin).is_err());
}

/// CLIENT PAUSE WRITE holds writes, not reads, until UNPAUSE; ALL holds everything until the
/// timeout; a paused command keeps its place in its pipeline.
#[test]
fn client_pause_holds_writes_or_everything() {
    let server = Server::start("ops-pause", &[]);
    let mut admin = server.client();
    let _: () =
        redis::cmd("CLIENT").arg("PAUSE").arg("20000").arg("WRITE").query(&mut admin).unwrap();
    let port = server.port;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_done = done.clone();
    let writer = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg("k").arg("v").cmd("GET").arg("k");
        let (_, v): ((), String) = pipe.query(&mut c).unwrap();
        writer_done.store(true, std::sync::atomic::Ordering::SeqCst);
        v
    });
    // The SET has arrived (CLIENT LIST names a connection's last command before it waits).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
        if list.contains("cmd=set ") {
            break;
        }
        assert!(Instant::now() < deadline, "the SET never arrived: {list}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut reader = server.client();
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut reader).unwrap();
    assert_eq!(v, None, "the write is held, so the read sees no value");
    assert!(!done.load(std::sync::atomic::Ordering::SeqCst), "the paused pipeline finished");
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut admin).unwrap();
    assert_eq!(writer.join().unwrap(), "v", "the read after the paused write saw it");
    // Held time is not the command's: a PING held 400 ms is not slow at 200 ms.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg("200000")
        .query(&mut admin)
        .unwrap();
    // Timed from before the pause began, so a slow test thread cannot shorten what it sees.
    let started = Instant::now();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg("400").arg("ALL").query(&mut admin).unwrap();
    let _: String = redis::cmd("PING").query(&mut reader).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    assert_eq!(run(&mut admin, &["SLOWLOG", "LEN"]).unwrap(), Value::Int(0));
    // A held write of a connection killed meanwhile never runs.
    let _: () =
        redis::cmd("CLIENT").arg("PAUSE").arg("20000").arg("WRITE").query(&mut admin).unwrap();
    let mut held = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    held.write_all(b"CLIENT ID\r\nSET killed yes\r\n").unwrap();
    let mut id_line = String::new();
    BufReader::new(held.try_clone().unwrap()).read_line(&mut id_line).unwrap();
    let id: u64 = id_line.trim_start_matches(':').trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query(&mut admin).unwrap();
    assert_eq!(killed, 1);
    std::thread::sleep(Duration::from_millis(100));
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut admin).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let v: Option<String> = redis::cmd("GET").arg("killed").query(&mut admin).unwrap();
    assert_eq!(v, None, "the killed connection's held SET ran");
}

/// MONITOR streams the commands every core runs, quoted as Redis quotes them, AUTH redacted,
/// admin commands left out; QUIT ends it.
#[test]
fn monitor_streams_commands_from_every_core() {
    let server = Server::start("ops-monitor", &["--cores", "2"]);
    let mut m = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    // A PING pipelined behind MONITOR is answered, not lost.
    m.write_all(b"MONITOR\r\nPING\r\n").unwrap();
    let mut lines = BufReader::new(m.try_clone().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(first, "+OK\r\n");
    let mut pong = String::new();
    lines.read_line(&mut pong).unwrap();
    assert_eq!(pong, "+PONG\r\n");
    // Clients on both cores (connections move to the core owning their keys).
    let mut clients: Vec<_> = (0..4).map(|_| server.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let _: () = redis::cmd("SET").arg(format!("p{i}:key")).arg("a \"b\"\n").query(c).unwrap();
    }
    let _ = run(&mut clients[0], &["AUTH", "secret"]);
    let _: String = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query::<Vec<String>>(&mut clients[0])
        .map(|v| v.join(" "))
        .unwrap();
    let _: () = redis::cmd("SET").arg("last").arg("1").query(&mut clients[1]).unwrap();
    m.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        if line.contains("\"last\"") {
            break;
        }
        seen.push(line);
    }
    for i in 0..4 {
        let expected = format!("\"SET\" \"p{i}:key\" \"a \\\"b\\\"\\n\"\r\n");
        let line = seen
            .iter()
            .find(|l| l.ends_with(&expected))
            .unwrap_or_else(|| panic!("{expected} in {seen:?}"));
        let (stamp, rest) = line.trim_start_matches('+').split_once(' ').unwrap();
        assert!(
            stamp.split_once('.').is_some_and(|(s, us)| s.len() >= 10 && us.len() == 6),
            "{line}"
        );
        assert!(rest.starts_with("[0 127.0.0.1:"), "{line}");
    }
    assert!(seen.iter().any(|l| l.ends_with("\"AUTH\" \"(redacted)\"\r\n")), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains("CONFIG")), "{seen:?}");
    let list = String::from_utf8_lossy(
        &redis::cmd("CLIENT").arg("LIST").query::<Vec<u8>>(&mut clients[0]).unwrap(),
    )
    .into_owned();
    assert!(list.contains("flags=O"), "{list}");
    m.write_all(b"QUIT\r\n").unwrap();
    let mut rest = String::new();
    let _ = lines.read_to_string(&mut rest);
    assert!(rest.ends_with("+OK\r\n"), "{rest}");
}

/// An operator's session, every command typed into `redis-cli` as Redis's users type them.
#[test]
fn an_operator_session_with_redis_cli() {
    let server = Server::start("ops-cli", &[]);
    let port = server.port.to_string();
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &port, "monitor"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    let mut monitored = BufReader::new(monitor.stdout.take().unwrap());
    let mut ok = String::new();
    monitored.read_line(&mut ok).unwrap();
    assert_eq!(ok.trim(), "OK");
    assert_eq!(server.cli(&["config", "set", "slowlog-log-slower-than", "0"]).trim(), "OK");
    assert_eq!(server.cli(&["set", "user:1", "alice"]).trim(), "OK");
    assert_eq!(server.cli(&["get", "user:1"]).trim(), "alice");
    let mut line = String::new();
    while !line.contains("\"user:1\" \"alice\"") {
        line.clear();
        assert!(monitored.read_line(&mut line).unwrap() > 0, "redis-cli monitor ended");
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    let slowlog = server.cli(&["slowlog", "get", "3"]);
    assert!(slowlog.contains("user:1") && slowlog.contains("127.0.0.1:"), "{slowlog}");
    assert!(server.cli(&["slowlog", "len"]).trim().parse::<i64>().unwrap() >= 3);
    let hist = server.cli(&["latency", "histogram", "set"]);
    assert!(hist.starts_with("set\ncalls\n1\nhistogram_usec\n"), "{hist}");
    let stats = server.cli(&["info", "commandstats"]);
    assert!(stats.contains("cmdstat_get:calls=1,usec="), "{stats}");
    assert!(server.cli(&["info", "latencystats"]).contains("latency_percentiles_usec_get:p50="));
    assert_eq!(server.cli(&["latency", "latest"]).trim(), "");
    let usage: u64 = server.cli(&["memory", "usage", "user:1"]).trim().parse().unwrap();
    assert!(usage >= "user:1alice".len() as u64, "{usage}");
    let memory = server.cli(&["memory", "stats"]);
    assert!(memory.contains("keys.count\n1\n") && memory.contains("dataset.bytes"), "{memory}");
    // The monitor's connection closes when its redis-cli is gone.
    let deadline = Instant::now() + DEADLINE;
    while server.cli(&["client", "list"]).lines().count() > 1 {
        assert!(Instant::now() < deadline, "the MONITOR connection stays listed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.cli(&["client", "kill", "id", "999999"]).trim(), "0");
    assert_eq!(server.cli(&["client", "no-evict", "on"]).trim(), "OK");
    assert_eq!(server.cli(&["client", "pause", "10", "write"]).trim(), "OK");
    assert_eq!(server.cli(&["client", "unpause"]).trim(), "OK");
    assert_eq!(server.cli(&["bgsave"]).trim(), "Background saving started");
    assert_eq!(server.cli(&["slowlog", "reset"]).trim(), "OK");
    assert_eq!(server.cli(&["latency", "reset"]).trim(), "0");
}
