//! Every command of the command table, sent with random arguments (random arity, from none to
//! too many; random bytes, integers, keys and the command's own option words) over several
//! connections at once, alone and in pipelines: each command gets one well-formed reply (a
//! value or an error, never `ERR internal error`), and afterwards the process is alive, its log
//! holds no panic, and every core still answers PING and serves a key.
//!
//! Skipped, because they must be: SHUTDOWN (it ends the server), `CONFIG SET requirepass` /
//! `maxclients` (they lock later connections out by design) and `CLIENT KILL` / `PAUSE`
//! (they close or stall the fuzzing connections by design; `operations.rs` tests them).
//! `DEBUG SLEEP` is capped at 50 ms. MONITOR, when it succeeds, ends its connection's
//! pipeline as QUIT does (the connection then streams, and is replaced).
//! The seed is printed; `SHARDCAST_SEED=<seed>` replays a run's command sequences (the
//! interleaving of the connections is the scheduler's).

mod common;
use common::Server;
use shardcast_engine::testing::{seed_from_env, SplitMix64};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Connections fuzzing at once.
const CONNECTIONS: u64 = 4;
/// Each connection sends every command of the table this many times (in a shuffled order).
const ROUNDS: usize = 150;
/// Most commands sent as one pipeline before their replies are read.
const PIPELINE_MAX: u64 = 8;
/// Most arguments beyond a command's arity.
const EXTRA_ARGS_MAX: u64 = 5;
/// Longest random byte argument.
const RANDOM_BYTES_MAX: u64 = 24;
/// How long one reply may take (a SHARDCAST SPLIT runs a migration).
const REPLY_DEADLINE: Duration = Duration::from_secs(10);
/// Largest reply element accepted as well-formed.
const REPLY_BYTES_MAX: usize = 64 << 20;

/// A RESP2/RESP3 reply, as far as this test needs to look into it.
#[derive(Debug)]
enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Value>),
    Other,
}

fn read_line(r: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(REPLY_BYTES_MAX as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed".into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(format!("line not ended by CRLF: {:?}", String::from_utf8_lossy(&line)));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_len(text: &[u8], allow_null: bool) -> Result<Option<usize>, String> {
    let t = std::str::from_utf8(text).map_err(|_| "length not UTF-8".to_owned())?;
    let n: i64 = t.parse().map_err(|_| format!("bad length {t:?}"))?;
    match n {
        -1 if allow_null => Ok(None),
        n if n < 0 || n as usize > REPLY_BYTES_MAX => Err(format!("bad length {n}")),
        n => Ok(Some(n as usize)),
    }
}

fn read_blob(r: &mut impl BufRead, len: usize) -> Result<Vec<u8>, String> {
    let mut data = vec![0; len + 2];
    r.read_exact(&mut data).map_err(|e| format!("read: {e}"))?;
    if !data.ends_with(b"\r\n") {
        return Err("bulk string not ended by CRLF".into());
    }
    data.truncate(len);
    Ok(data)
}

/// Reads one reply and checks its framing strictly.
fn read_value(r: &mut impl BufRead) -> Result<Value, String> {
    let line = read_line(r)?;
    let (&kind, rest) = line.split_first().ok_or("empty reply line")?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    Ok(match kind {
        b'+' => Value::Simple(text()),
        b'-' => {
            let t = text();
            let code = t.split(' ').next().unwrap_or("");
            if code.is_empty() || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("error reply without an upper-case code: {t:?}"));
            }
            Value::Error(t)
        }
        b':' => Value::Int(text().parse().map_err(|_| format!("bad integer {:?}", text()))?),
        b'$' => match parse_len(rest, true)? {
            None => Value::Bulk(None),
            Some(len) => Value::Bulk(Some(read_blob(r, len)?)),
        },
        b'=' | b'!' => {
            let len = parse_len(rest, false)?.expect("not null");
            read_blob(r, len)?;
            Value::Other
        }
        b'*' | b'~' | b'>' => match parse_len(rest, kind == b'*')? {
            None => Value::Bulk(None),
            Some(n) => Value::Array((0..n).map(|_| read_value(r)).collect::<Result<_, _>>()?),
        },
        b'%' | b'|' => {
            let n = parse_len(rest, false)?.expect("not null");
            let items = (0..2 * n).map(|_| read_value(r)).collect::<Result<Vec<_>, _>>()?;
            if kind == b'|' {
                // An attribute precedes the value it describes.
                return read_value(r);
            }
            Value::Array(items)
        }
        b'_' if rest.is_empty() => Value::Bulk(None),
        b'#' if rest == b"t" || rest == b"f" => Value::Other,
        b',' => {
            let t = text();
            if t.parse::<f64>().is_err() && !["inf", "-inf", "nan"].contains(&t.as_str()) {
                return Err(format!("bad double {t:?}"));
            }
            Value::Other
        }
        b'(' if !rest.is_empty()
            && rest
                .iter()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (i == 0 && *b == b'-')) =>
        {
            Value::Other
        }
        _ => return Err(format!("unknown reply line {:?}", String::from_utf8_lossy(&line))),
    })
}

fn encode(args: &[Vec<u8>], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn show(args: &[Vec<u8>]) -> String {
    args.iter().map(|a| format!("{:?}", String::from_utf8_lossy(a))).collect::<Vec<_>>().join(" ")
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(REPLY_DEADLINE)).unwrap();
        Conn { writer: s.try_clone().unwrap(), reader: BufReader::new(s) }
    }

    fn send(&mut self, commands: &[Vec<Vec<u8>>]) {
        let mut out = Vec::new();
        for c in commands {
            encode(c, &mut out);
        }
        self.writer.write_all(&out).expect("send");
    }

    fn call(&mut self, args: &[&str]) -> Value {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        self.send(std::slice::from_ref(&args));
        read_value(&mut self.reader).unwrap_or_else(|e| panic!("{}: {e}", show(&args)))
    }
}

/// One table entry: its name, arity, and the words its arguments are drawn from.
struct Entry {
    name: String,
    arity: i64,
    words: &'static [&'static str],
}

/// The option and subcommand words each command knows (others draw from `WORDS`).
fn words_of(name: &str) -> &'static [&'static str] {
    match name {
        "set" => &["EX", "PX", "EXAT", "PXAT", "NX", "XX", "GET", "KEEPTTL"],
        "getex" => &["EX", "PX", "EXAT", "PXAT", "PERSIST"],
        "expire" | "pexpire" | "expireat" | "pexpireat" => &["NX", "XX", "GT", "LT"],
        "object" => &["ENCODING", "FREQ", "IDLETIME", "REFCOUNT", "HELP"],
        "scan" => &["0", "MATCH", "COUNT", "TYPE", "string", "*", "k*"],
        "keys" => &["*", "k*", "user:?", "[a-z]*", "\\"],
        "client" => &[
            "ID", "SETNAME", "GETNAME", "SETINFO", "INFO", "LIST", "HELP", "TYPE", "normal",
            "lib-name", "lib-ver", "NO-EVICT", "on", "off", "UNPAUSE",
        ],
        "slowlog" => &["GET", "LEN", "RESET", "HELP", "-1", "0", "10"],
        "latency" => {
            &["LATEST", "HISTORY", "RESET", "HISTOGRAM", "HELP", "command", "get", "config"]
        }
        "memory" => &["USAGE", "STATS", "DOCTOR", "MALLOC-STATS", "PURGE", "HELP", "SAMPLES", "k1"],
        "command" => &["COUNT", "INFO", "DOCS", "LIST", "get", "set"],
        // Not requirepass or maxclients: they lock later connections out by design.
        "config" => &[
            "GET",
            "SET",
            "RESETSTAT",
            "HELP",
            "maxmemory",
            "maxmemory-policy",
            "maxmemory-samples",
            "proto-max-bulk-len",
            "telemetry",
            "slowlog-log-slower-than",
            "slowlog-max-len",
            "latency-monitor-threshold",
            "latency-tracking",
            "latency-tracking-info-percentiles",
            "allkeys-lru",
            "noeviction",
            "volatile-ttl",
            "yes",
            "no",
            "*",
            "max*",
        ],
        "info" => &[
            "server",
            "clients",
            "memory",
            "persistence",
            "stats",
            "keyspace",
            "predictor",
            "shards",
            "all",
            "everything",
            "default",
        ],
        "flushall" | "flushdb" => &["ASYNC", "SYNC"],
        "hello" => &["2", "3", "AUTH", "SETNAME", "default"],
        "auth" => &["default"],
        "shardcast" => &[
            "SHARDS",
            "PARTITIONS",
            "HISTORY",
            "PREDICT",
            "SPLIT",
            "MERGE",
            "MOVE",
            "POLICY",
            "EXPLAIN",
            "HELP",
            "COUNT",
            "(default)",
            "user",
            "static",
            "reactive",
            "predictive",
        ],
        "debug" => &["SLEEP", "HELP"],
        _ => &[],
    }
}

/// Words any command may get.
const WORDS: &[&str] = &["EX", "NX", "XX", "GET", "COUNT", "MATCH", "HELP", "*", "-"];
/// Keys: some share a partition, some a hash tag.
const KEYS: &[&str] = &["k", "k1", "user:1", "user:2", "{t}a", "{t}b", "app:x", "n", ""];
/// Integers and numbers at the edges.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "10",
    "100",
    "1024",
    "-100",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551616",
    "1.5",
    "-0",
    "+1",
    "1e3",
    "inf",
    "-inf",
    "nan",
    "0x10",
    " 1",
    "",
];

fn pick<'a>(rng: &mut SplitMix64, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len() as u64) as usize]
}

/// What each argument position of a command usually holds: `k` a key, `n` a number, `w` one of
/// its words, `v` anything; positions past the shape take anything. Each position follows its
/// shape most of the time, so the fuzz reaches past the argument checks.
fn shape_of(name: &str) -> &'static str {
    match name {
        "get" | "getdel" | "getex" | "incr" | "decr" | "strlen" | "ttl" | "pttl" | "persist"
        | "type" => "kwn",
        "set" => "kvwnwnw",
        "setnx" | "getset" | "append" => "kv",
        "setex" | "psetex" | "setrange" => "knv",
        "incrby" | "decrby" | "incrbyfloat" => "kn",
        "getrange" => "knn",
        "expire" | "pexpire" | "expireat" | "pexpireat" => "knww",
        "mget" | "del" | "unlink" | "exists" => "kkkkkkkk",
        "mset" | "msetnx" => "kvkvkvkv",
        "object" => "wk",
        "scan" => "nwwwnww",
        "keys" | "flushall" | "flushdb" | "info" | "command" => "wwww",
        "select" => "n",
        "hello" => "nwvvwv",
        "client" => "wwvvv",
        "config" => "wwvwv",
        "shardcast" => "wwnnn",
        "debug" => "wn",
        _ => "",
    }
}

fn random_arg(rng: &mut SplitMix64, entry: &Entry, position: usize) -> Vec<u8> {
    let shaped = shape_of(&entry.name).as_bytes().get(position).filter(|_| rng.chance(7, 10));
    let kind = match shaped {
        Some(&kind) => kind,
        None => match rng.below(100) {
            0..35 => b'k',
            35..60 => b'w',
            60..85 => b'n',
            _ => b'v',
        },
    };
    match kind {
        b'k' => pick(rng, KEYS).into(),
        b'w' if !entry.words.is_empty() => pick(rng, entry.words).into(),
        b'w' => pick(rng, WORDS).into(),
        b'n' => pick(rng, NUMBERS).into(),
        _ => {
            let len = rng.below(RANDOM_BYTES_MAX + 1);
            (0..len).map(|_| rng.below(256) as u8).collect()
        }
    }
}

/// A command for `entry` with a random number of arguments (none, too few, right, too many).
fn random_command(rng: &mut SplitMix64, entry: &Entry) -> Vec<Vec<u8>> {
    let arity = entry.arity.unsigned_abs();
    let args = arity.saturating_sub(1);
    let count = match rng.below(10) {
        0 => 0,
        1 => args.saturating_sub(1),
        2..=3 => args + 1 + rng.below(EXTRA_ARGS_MAX),
        _ if entry.arity < 0 => args + rng.below(4),
        _ => args,
    };
    let mut command = vec![entry.name.clone().into_bytes()];
    for position in 0..count as usize {
        command.push(random_arg(rng, entry, position));
    }
    // Random case for the name: the lookup ignores it.
    if rng.chance(1, 4) {
        command[0].make_ascii_uppercase();
    }
    if entry.name == "debug" && command.len() == 3 && command[1].eq_ignore_ascii_case(b"sleep") {
        command[2] = format!("0.0{}", rng.below(6)).into_bytes();
    }
    command
}

/// One connection's fuzzing: every entry `ROUNDS` times, shuffled, in random pipelines.
/// Returns, per entry, how many of its commands got a value and how many an error.
fn fuzz_connection(port: u16, entries: &[Entry], seed: u64) -> Vec<(usize, usize)> {
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<usize> = (0..entries.len()).cycle().take(entries.len() * ROUNDS).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut conn = Conn::open(port);
    let mut replies = vec![(0, 0); entries.len()];
    let mut next = order.into_iter().peekable();
    while next.peek().is_some() {
        let size = 1 + rng.below(PIPELINE_MAX);
        let mut batch = Vec::new();
        let mut quit = false;
        while (batch.len() as u64) < size && !quit {
            let Some(i) = next.next() else { break };
            let command = random_command(&mut rng, &entries[i]);
            // QUIT closes the connection and MONITOR turns it into a stream: either ends the
            // pipeline.
            quit = command[0].eq_ignore_ascii_case(b"quit")
                || (command[0].eq_ignore_ascii_case(b"monitor") && command.len() == 1);
            batch.push((i, command));
        }
        conn.send(&batch.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>());
        for (n, (i, command)) in batch.iter().enumerate() {
            let started = Instant::now();
            match read_value(&mut conn.reader) {
                Ok(Value::Error(e)) if e.starts_with("ERR internal error") => {
                    panic!("seed {seed}: `{}` found a server bug: {e}", show(command))
                }
                Ok(Value::Error(_)) => replies[*i].1 += 1,
                Ok(_) => replies[*i].0 += 1,
                Err(e) => panic!(
                    "seed {seed}: no well-formed reply to `{}` (command {} of a pipeline of {}) \
                     after {:?}: {e}",
                    show(command),
                    n + 1,
                    batch.len(),
                    started.elapsed()
                ),
            }
        }
        if quit {
            conn = Conn::open(port);
        }
    }
    replies
}

/// The number of data cores, from INFO server.
fn cores(conn: &mut Conn) -> usize {
    let Value::Bulk(Some(info)) = conn.call(&["INFO", "server"]) else { panic!("INFO") };
    let info = String::from_utf8(info).unwrap();
    info.lines().find_map(|l| l.strip_prefix("cores:")).expect("cores line").parse().unwrap()
}

/// The core serving `conn`, from CLIENT INFO.
fn core_of(conn: &mut Conn) -> usize {
    let Value::Bulk(Some(line)) = conn.call(&["CLIENT", "INFO"]) else { panic!("CLIENT INFO") };
    let line = String::from_utf8(line).unwrap();
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("core="))
        .expect("core= field")
        .parse()
        .unwrap()
}

#[test]
fn every_command_with_random_arguments_gets_a_reply_and_no_core_dies() {
    let seed = seed_from_env();
    println!("seed {seed} (SHARDCAST_SEED={seed} replays it)");
    let started = Instant::now();
    let mut server = Server::start("command-fuzz", &["--cores", "2", "--policy", "static"]);
    let mut setup = Conn::open(server.port);

    let Value::Array(names) = setup.call(&["COMMAND", "LIST"]) else { panic!("COMMAND LIST") };
    let mut entries = Vec::new();
    for name in names {
        let Value::Bulk(Some(name)) = name else { panic!("COMMAND LIST: {name:?}") };
        let name = String::from_utf8(name).unwrap();
        if name == "shutdown" {
            continue;
        }
        let Value::Array(info) = setup.call(&["COMMAND", "INFO", &name]) else {
            panic!("COMMAND INFO {name}")
        };
        let Some(Value::Array(fields)) = info.first() else { panic!("COMMAND INFO {name}") };
        let Some(&Value::Int(arity)) = fields.get(1) else { panic!("arity of {name}") };
        let words = words_of(&name);
        entries.push(Entry { name, arity, words });
    }
    assert!(entries.len() >= 40, "COMMAND LIST gave {} commands", entries.len());

    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let entries: Vec<Entry> = entries
                .iter()
                .map(|e| Entry { name: e.name.clone(), arity: e.arity, words: e.words })
                .collect();
            let port = server.port;
            let seed = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            std::thread::spawn(move || fuzz_connection(port, &entries, seed))
        })
        .collect();
    let mut replies = vec![(0, 0); entries.len()];
    for t in threads {
        match t.join() {
            Ok(counts) => {
                for (total, (values, errors)) in replies.iter_mut().zip(counts) {
                    total.0 += values;
                    total.1 += errors;
                }
            }
            Err(e) => {
                eprintln!("seed {seed}: the server's log:\n{}", server.log());
                std::panic::resume_unwind(e)
            }
        }
    }

    assert!(server.is_running(), "seed {seed}: the server died\n{}", server.log());
    // The fuzz may have set a tiny maxmemory; the checks below write.
    assert!(matches!(setup.call(&["CONFIG", "SET", "maxmemory", "0"]), Value::Simple(_)));
    let cores = cores(&mut setup);
    let mut on_core: Vec<Option<Conn>> = (0..cores).map(|_| None).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while on_core.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "seed {seed}: no connection reached every core");
        let mut c = Conn::open(server.port);
        let core = core_of(&mut c);
        on_core[core].get_or_insert(c);
    }
    for (core, conn) in on_core.iter_mut().enumerate() {
        let conn = conn.as_mut().unwrap();
        match conn.call(&["PING"]) {
            Value::Simple(s) if s == "PONG" => {}
            other => panic!("seed {seed}: core {core} answered PING with {other:?}"),
        }
        // And a key command from each core to keys across cores.
        for key in KEYS {
            let value = format!("after-{core}");
            assert!(matches!(conn.call(&["SET", key, &value]), Value::Simple(_)), "SET {key}");
            match conn.call(&["GET", key]) {
                Value::Bulk(Some(v)) => assert_eq!(v, value.as_bytes()),
                other => panic!("seed {seed}: GET {key} on core {core}: {other:?}"),
            }
        }
        assert!(matches!(conn.call(&["DBSIZE"]), Value::Int(n) if n >= KEYS.len() as i64));
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "seed {seed}: a thread panicked:\n{log}");
    let sent: usize = replies.iter().map(|(v, e)| v + e).sum();
    println!(
        "{sent} commands over {CONNECTIONS} connections ({} table entries) in {:?}",
        entries.len(),
        started.elapsed()
    );
    for (entry, (values, errors)) in entries.iter().zip(&replies) {
        println!("  {:<12} {values:>5} values {errors:>5} errors", entry.name);
    }
}
