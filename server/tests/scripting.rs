//! EVAL, EVALSHA, EVAL_RO and SCRIPT against the real binary: replies compared with Debian's
//! `redis-server` (conversions both ways, redis.call / pcall, error_reply / status_reply,
//! the script cache, argument errors), a script that moves money between keys on two cores
//! while readers check the total, the time limit (the server keeps serving), and keys a
//! script did not declare.

mod common;

use common::{partitions_on_both_cores, spawn_readers, Redis, Server};
use redis::Value;
use std::time::{Duration, Instant};

fn run(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<Value>(c) {
        Ok(v) => format!("{v:?}"),
        // Redis appends where in the script an error was raised; the text before is the same.
        Err(e) => {
            let detail = e.detail().unwrap_or("");
            let detail = detail.split(" script: ").next().unwrap_or(detail);
            format!("error {} {}", e.code().unwrap_or("?"), detail)
        }
    }
}

#[test]
fn replies_match_redis() {
    let redis = Redis::start();
    let server = Server::start("script-replies", &["--cores", "2"]);
    let (a, b) = partitions_on_both_cores(&mut server.client());
    let (ka, kb) = (format!("{a}:k"), format!("{b}:k"));
    let session: Vec<Vec<&str>> = vec![
        vec!["EVAL", "return 1", "0"],
        vec!["EVAL", "return 3.99", "0"],
        vec!["EVAL", "return -2", "0"],
        vec!["EVAL", "return 'text'", "0"],
        vec!["EVAL", "return true", "0"],
        vec!["EVAL", "return false", "0"],
        vec!["EVAL", "return nil", "0"],
        vec!["EVAL", "return {1, 'two', {3, {'four'}}, nil, 5}", "0"],
        vec!["EVAL", "return redis.status_reply('FINE')", "0"],
        vec!["EVAL", "return redis.error_reply('MY failure')", "0"],
        vec!["EVAL", "return {ok = 'ALSO'}", "0"],
        vec!["EVAL", "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}", "2", &ka, &kb, "x", "y"],
        vec!["EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", "1", &ka, "10"],
        vec!["EVAL", "return redis.call('incrby', KEYS[1], 5)", "1", &ka],
        vec!["EVAL", "return redis.call('get', KEYS[1])", "1", &kb],
        vec!["EVAL", "return redis.call('mget', KEYS[1], KEYS[2])", "2", &ka, &kb],
        vec!["EVAL", "return redis.call('set', KEYS[1], 'x', 'NX')", "1", &ka],
        vec!["EVAL", "return type(redis.call('get', KEYS[1]))", "1", "missing"],
        vec!["EVAL", "return redis.pcall('incr', KEYS[1])", "1", &kb],
        vec!["SET", &kb, "text"],
        vec!["EVAL", "return redis.pcall('incr', KEYS[1])", "1", &kb],
        vec!["EVAL", "local r = redis.pcall('incr', KEYS[1]) return r['err']", "1", &kb],
        vec!["EVAL", "return redis.call('incr', KEYS[1])", "1", &kb],
        vec!["EVAL", "return redis.call('ping')", "0"],
        vec!["EVAL", "return tonumber(ARGV[1]) * 2", "0", "21"],
        vec!["EVAL", "return redis.sha1hex('abc')", "0"],
        vec!["EVAL", "return 1", "-1"],
        vec!["EVAL", "return 1", "3", "a"],
        vec!["EVAL", "return 1", "x"],
        vec!["SCRIPT", "LOAD", "return ARGV[1]"],
        vec!["EVALSHA", "5d4a2ee0ee8fc1e8e1aa85beb5ed5d3a5a39f19a", "0", "hello"],
        vec![
            "SCRIPT",
            "EXISTS",
            "5d4a2ee0ee8fc1e8e1aa85beb5ed5d3a5a39f19a",
            "0000000000000000000000000000000000000000",
        ],
        vec!["SCRIPT", "FLUSH"],
        vec!["EVALSHA", "5d4a2ee0ee8fc1e8e1aa85beb5ed5d3a5a39f19a", "0", "hello"],
        vec!["SCRIPT", "KILL"],
        vec!["EVAL_RO", "return redis.call('get', KEYS[1])", "1", &ka],
        // Compile errors name the place as Redis's wrapped function does.
        vec!["EVAL", "return 1 2", "0"],
        vec!["EVAL", "local x = ", "0"],
        vec!["SCRIPT", "LOAD", "return (("],
        vec!["EVAL", "return select('#', ...)", "0"],
        // cjson and bit, as Redis links them.
        vec!["EVAL", "return cjson.encode({1, 2.5, 'a/b', {x = true}})", "0"],
        vec!["EVAL", "return cjson.encode({})", "0"],
        vec!["EVAL", "return cjson.encode({[1] = 1, [3] = 3})", "0"],
        vec!["EVAL", "return cjson.encode(1e20)", "0"],
        vec![
            "EVAL",
            "local t = cjson.decode(ARGV[1]) return {t.n, t.list[2], #t.list}",
            "0",
            r#"{"n": 7, "list": ["a", "b", null]}"#,
        ],
        vec!["EVAL", "return cjson.decode('[null]')[1] == cjson.null", "0"],
        vec!["EVAL", "return cjson.encode(cjson.decode(ARGV[1]))", "0", r#"{"a":[1,2,"x\/y"]}"#],
        vec!["EVAL", "return {bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.bxor(5, 1)}", "0"],
        vec!["EVAL", "return {bit.tobit(0xffffffff), bit.lshift(1, 31), bit.rshift(-1, 28)}", "0"],
        vec!["EVAL", "return {bit.tohex(255), bit.tohex(-1, -4), bit.bnot(0)}", "0"],
        // The shared libraries and globals cannot be changed by a script.
        vec!["EVAL", "string.len = nil return 1", "0"],
        vec!["EVAL", "cjson.encode = nil return 1", "0"],
        vec!["EVAL", "_G.x = 1 return 1", "0"],
        vec!["EVAL", "return string.len('abc')", "0"],
        vec!["EVAL", "return loadstring('return 1 + 1')()", "0"],
    ];
    let (mut r, mut s) = (redis.client(), server.client());
    for cmd in &session {
        let (want, got) = (run(&mut r, cmd), run(&mut s, cmd));
        assert_eq!(got, want, "{cmd:?}");
    }
    // The sha Shardcast computes is Redis's.
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg("return 7").query(&mut s).unwrap();
    let want: String = redis::cmd("SCRIPT").arg("LOAD").arg("return 7").query(&mut r).unwrap();
    assert_eq!(sha, want);
}

/// What a Redis Cluster user meets, and the limits: an undeclared key, a write from EVAL_RO,
/// a global, a script that never ends (stopped, the server serving on), memory.
#[test]
fn undeclared_keys_read_only_scripts_and_limits() {
    let server = Server::start("script-limits", &["--cores", "2"]);
    let mut c = server.client();
    let e = run(&mut c, &["EVAL", "return redis.call('get', 'elsewhere')", "0"]);
    assert!(e.contains("not declared in KEYS"), "{e}");
    let e = run(&mut c, &["EVAL_RO", "return redis.call('set', KEYS[1], 1)", "1", "k"]);
    assert!(e.contains("Write commands are not allowed from read-only scripts"), "{e}");
    let e = run(&mut c, &["EVAL", "x = 1", "0"]);
    assert!(e.contains("Script attempted to create global variable 'x'"), "{e}");
    // Nothing reads files or reaches the globals every script of a core shares.
    for banned in ["loadfile", "dofile", "getfenv", "setfenv", "rawset", "print", "load"] {
        let e = run(&mut c, &["EVAL", &format!("return {banned}")[..], "0"]);
        assert!(e.contains(&format!("nonexistent global variable '{banned}'")), "{e}");
    }
    let e = run(&mut c, &["EVAL", "getmetatable('').__index = nil", "0"]);
    assert!(e.contains("attempt to index"), "{e}");
    // Nor through a C function calling loadstring (getfenv(2) there is the real globals),
    // the table functions that write raw, the collector's switches, or coroutines (a yield
    // or a loop in a coroutine of its own would slip past the time limit's hook).
    let e =
        run(&mut c, &["EVAL", "local _, f = pcall(loadstring, 'return dofile') return f()", "0"]);
    assert!(e.contains("nonexistent global variable 'dofile'"), "{e}");
    for (script, want) in [
        ("table.insert(redis, 1)", "Attempt to modify a readonly table"),
        ("table.sort(string)", "Attempt to modify a readonly table"),
        ("collectgarbage('stop')", "collectgarbage('stop') is not allowed"),
        ("return coroutine", "nonexistent global variable 'coroutine'"),
    ] {
        let e = run(&mut c, &["EVAL", script, "0"]);
        assert!(e.contains(want), "{script}: {e}");
    }
    assert_eq!(run(&mut c, &["EVAL", "return #redis", "0"]), "int(0)");
    // A reply that holds a value many times over is refused, not expanded without end (one
    // 1 MB string 70 times here; `t = {t, t}` doubled 40 times is refused the same way).
    let many = "local s, t = string.rep('x', 1e6), {} for i = 1, 70 do t[i] = s end return t";
    let e = run(&mut c, &["EVAL", many, "0"]);
    assert!(e.contains("reply is larger than"), "{e}");
    // Bytecode (a known way out of a Lua sandbox) is refused; source text compiles.
    let bytecode = "return select(2, loadstring(string.dump(function() end)))";
    let e = run(&mut c, &["EVAL", bytecode, "0"]);
    assert!(e.contains("loadstring takes Lua source text"), "{e}");
    let e = run(&mut c, &["EVAL", "local t = {} for i = 1, 1e9 do t[i] = i end", "0"]);
    assert!(e.contains("more memory than allowed"), "{e}");
    // A script that never ends is stopped at busy-reply-threshold (lua-time-limit is its
    // alias); meanwhile another connection is served.
    assert_eq!(run(&mut c, &["CONFIG", "SET", "busy-reply-threshold", "800"]), "ok");
    let limit: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("lua-time-limit").query(&mut c).unwrap();
    assert_eq!(limit, ["lua-time-limit", "800"]);
    let e = run(&mut c, &["CONFIG", "SET", "busy-reply-threshold", "-1"]);
    assert!(e.contains("argument must be between 0"), "{e}");
    let url = server.url();
    let looping = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let started = Instant::now();
        let e = run(&mut c, &["EVAL", "while true do end", "0"]);
        (e, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut other = server.client();
    for i in 0..20 {
        assert_eq!(run(&mut other, &["SET", &format!("k{i}"), "v"]), "ok");
    }
    let (e, took) = looping.join().unwrap();
    assert!(e.contains("busy-reply-threshold (800 ms)"), "{e}");
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(30), "{took:?}");
    let still: String = redis::cmd("EVAL").arg("return 'still here'").arg(0).query(&mut c).unwrap();
    assert_eq!(still, "still here");
}

/// A script moves money between an account on each core (GET both, SET both) while readers
/// MGET both: the total never changes, because the script holds its declared keys.
#[test]
fn a_script_over_keys_on_two_cores_is_atomic() {
    let server = Server::start("script-atomic", &["--cores", "2"]);
    let mut c = server.client();
    let (a, b) = partitions_on_both_cores(&mut c);
    // Keys on two cores (held with the lock protocol), then two keys of one partition (one
    // shard: the script runs synchronously on its core, without locks).
    for (ka, kb) in
        [(format!("{a}:acct"), format!("{b}:acct")), (format!("{a}:x"), format!("{a}:y"))]
    {
        transfers_by_script_are_never_seen_half_done(&server, &ka, &kb);
    }
}

/// Two writers move money between `ka` and `kb` with a script while two readers MGET both.
fn transfers_by_script_are_never_seen_half_done(server: &Server, ka: &str, kb: &str) {
    let mut c = server.client();
    run(&mut c, &["MSET", ka, "500", kb, "500"]);
    let script = "local x = tonumber(redis.call('get', KEYS[1])) \
                  local y = tonumber(redis.call('get', KEYS[2])) \
                  redis.call('set', KEYS[1], x - ARGV[1]) \
                  redis.call('set', KEYS[2], y + ARGV[1]) return x - ARGV[1]";
    let (ra, rb) = (ka.to_owned(), kb.to_owned());
    let readers = spawn_readers(server, 2, move |c| {
        let v: Vec<i64> = redis::cmd("MGET").arg(&ra).arg(&rb).query(c).unwrap();
        assert_eq!(v[0] + v[1], 1000, "a script seen half done: {v:?}");
    });
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(script).query(&mut c).unwrap();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (mut c, sha) = (server.client(), sha.clone());
            let (ka, kb) = (ka.to_owned(), kb.to_owned());
            std::thread::spawn(move || {
                for i in 0..250 {
                    let amount = if i % 2 == 0 { "7" } else { "-7" };
                    let _: i64 = redis::cmd("EVALSHA")
                        .arg(&sha)
                        .arg(2)
                        .arg(&ka)
                        .arg(&kb)
                        .arg(amount)
                        .query(&mut c)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer failed");
    }
    assert!(readers.stop("a reader saw a torn script") > 0);
    let v: Vec<i64> = redis::cmd("MGET").arg(ka).arg(kb).query(&mut c).unwrap();
    assert_eq!(v, [500, 500], "{ka} {kb}");
}

/// With memory full (noeviction), read-only scripts still run, alone and inside MULTI, on one
/// core and across both; a script that may write is refused with OOM.
#[test]
fn read_only_scripts_run_when_memory_is_full() {
    let server = Server::start(
        "script-oom",
        &["--cores", "2", "--maxmemory", "1mb", "--maxmemory-policy", "noeviction"],
    );
    let mut c = server.client();
    let (a, b) = partitions_on_both_cores(&mut c);
    let (ka, kb) = (format!("{a}:k"), format!("{b}:k"));
    run(&mut c, &["MSET", &ka, "1", &kb, "2"]);
    let value = "v".repeat(1000);
    let full = (0..5000).any(|i| {
        redis::cmd("SET").arg(format!("{a}:fill{i}")).arg(&value).query::<()>(&mut c).is_err()
    });
    assert!(full, "memory never filled");
    let get = "return redis.call('get', KEYS[1])";
    let both = "return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}";
    assert_eq!(run(&mut c, &["EVAL_RO", get, "1", &ka]), "bulk-string('\"1\"')");
    let reply = run(&mut c, &["EVAL_RO", both, "2", &ka, &kb]);
    assert_eq!(reply, "array([bulk-string('\"1\"'), bulk-string('\"2\"')])");
    run(&mut c, &["WATCH", &kb]);
    run(&mut c, &["MULTI"]);
    run(&mut c, &["EVAL_RO", both, "2", &ka, &kb]);
    run(&mut c, &["GET", &ka]);
    let exec = run(&mut c, &["EXEC"]);
    assert!(exec.starts_with("array([array("), "{exec}");
    let e = run(&mut c, &["EVAL", "return redis.call('set', KEYS[1], 'x')", "1", &ka]);
    assert!(e.contains("OOM"), "{e}");
}
