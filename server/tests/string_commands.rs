//! Every string and keyspace command, with its error cases, through the `redis` crate against
//! the real server; replies and error texts are Redis 7's.

mod common;
use common::Server;
use redis::{cmd, Connection, Value};

fn q<T: redis::FromRedisValue>(c: &mut Connection, args: &[&str]) -> T {
    let mut command = cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The error line the server sent (code and message), e.g. `ERR syntax error`.
fn err(c: &mut Connection, args: &[&str]) -> String {
    let mut command = cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    match command.query::<Value>(c) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or(""))
            .trim_end()
            .to_owned(),
    }
}

#[test]
fn string_commands_match_redis() {
    let server = Server::start("strings", &["--cores", "2"]);
    let c = &mut server.client();
    assert_eq!(q::<String>(c, &["PING"]), "PONG");
    assert_eq!(q::<String>(c, &["PING", "hi"]), "hi");
    assert_eq!(q::<String>(c, &["ECHO", "x y"]), "x y");

    // SET and its options
    assert_eq!(q::<String>(c, &["SET", "user:1", "alice"]), "OK");
    assert_eq!(q::<String>(c, &["GET", "user:1"]), "alice");
    assert_eq!(q::<Option<String>>(c, &["GET", "nope"]), None);
    assert_eq!(q::<Option<String>>(c, &["SET", "user:1", "x", "NX"]), None);
    assert_eq!(q::<Option<String>>(c, &["SET", "user:2", "x", "XX"]), None);
    assert_eq!(q::<String>(c, &["SET", "user:1", "bob", "XX", "GET"]), "alice");
    assert_eq!(q::<String>(c, &["SET", "t", "v", "EX", "100"]), "OK");
    assert!((99..=100).contains(&q::<i64>(c, &["TTL", "t"])));
    assert_eq!(q::<String>(c, &["SET", "t", "w", "KEEPTTL"]), "OK");
    assert!(q::<i64>(c, &["PTTL", "t"]) > 98_000);
    assert_eq!(q::<String>(c, &["SET", "t", "w"]), "OK");
    assert_eq!(q::<i64>(c, &["TTL", "t"]), -1);
    assert_eq!(q::<String>(c, &["SET", "past", "v", "PXAT", "1"]), "OK");
    assert_eq!(q::<i64>(c, &["EXISTS", "past"]), 0);
    assert_eq!(err(c, &["SET", "k", "v", "EX", "0"]), "ERR invalid expire time in 'set' command");
    assert_eq!(
        err(c, &["SET", "k", "v", "EX", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err(c, &["SET", "k", "v", "NX", "XX"]), "ERR syntax error");
    assert_eq!(err(c, &["SET", "k", "v", "EX", "1", "PX", "1"]), "ERR syntax error");
    assert_eq!(err(c, &["SET", "k", "v", "BOGUS"]), "ERR syntax error");
    assert_eq!(err(c, &["SET", "k"]), "ERR wrong number of arguments for 'set' command");

    assert_eq!(q::<i64>(c, &["SETNX", "n1", "a"]), 1);
    assert_eq!(q::<i64>(c, &["SETNX", "n1", "b"]), 0);
    assert_eq!(q::<String>(c, &["SETEX", "se", "50", "v"]), "OK");
    assert!((49..=50).contains(&q::<i64>(c, &["TTL", "se"])));
    assert_eq!(err(c, &["SETEX", "se", "-1", "v"]), "ERR invalid expire time in 'setex' command");
    assert_eq!(q::<String>(c, &["PSETEX", "pse", "5000", "v"]), "OK");
    assert_eq!(err(c, &["PSETEX", "pse", "0", "v"]), "ERR invalid expire time in 'psetex' command");
    assert_eq!(q::<String>(c, &["GETSET", "n1", "c"]), "a");
    assert_eq!(q::<Option<String>>(c, &["GETSET", "fresh", "c"]), None);
    assert_eq!(q::<String>(c, &["GETDEL", "n1"]), "c");
    assert_eq!(q::<Option<String>>(c, &["GETDEL", "n1"]), None);
    assert_eq!(q::<String>(c, &["GETEX", "fresh", "EX", "100"]), "c");
    assert!(q::<i64>(c, &["TTL", "fresh"]) > 90);
    assert_eq!(q::<String>(c, &["GETEX", "fresh", "PERSIST"]), "c");
    assert_eq!(q::<i64>(c, &["TTL", "fresh"]), -1);
    assert_eq!(
        err(c, &["GETEX", "fresh", "EX", "0"]),
        "ERR invalid expire time in 'getex' command"
    );
    assert_eq!(err(c, &["GETEX", "fresh", "FOO"]), "ERR syntax error");

    // Multi-key, across partitions and so across cores
    assert_eq!(q::<String>(c, &["MSET", "a:1", "1", "b:1", "2", "c:1", "3"]), "OK");
    assert_eq!(
        q::<Vec<Option<String>>>(c, &["MGET", "a:1", "b:1", "x:1", "c:1"]),
        vec![Some("1".into()), Some("2".into()), None, Some("3".into())]
    );
    assert_eq!(
        err(c, &["MSET", "a", "1", "b"]),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "a:1", "a:1", "x:1"]), 2);
    assert_eq!(q::<i64>(c, &["DEL", "a:1", "b:1", "x:1"]), 2);
    assert_eq!(q::<i64>(c, &["UNLINK", "c:1"]), 1);
    assert_eq!(q::<i64>(c, &["MSETNX", "{t}a", "1", "{t}b", "2"]), 1);
    assert_eq!(q::<i64>(c, &["MSETNX", "{t}b", "9", "{t}c", "3"]), 0);
    assert_eq!(q::<Option<String>>(c, &["GET", "{t}c"]), None);

    // Counters
    assert_eq!(q::<i64>(c, &["INCR", "cnt"]), 1);
    assert_eq!(q::<i64>(c, &["INCRBY", "cnt", "41"]), 42);
    assert_eq!(q::<i64>(c, &["DECR", "cnt"]), 41);
    assert_eq!(q::<i64>(c, &["DECRBY", "cnt", "1"]), 40);
    assert_eq!(err(c, &["INCR", "user:1"]), "ERR value is not an integer or out of range");
    assert_eq!(err(c, &["INCRBY", "cnt", "1.5"]), "ERR value is not an integer or out of range");
    q::<String>(c, &["SET", "big", "9223372036854775807"]);
    assert_eq!(err(c, &["INCR", "big"]), "ERR increment or decrement would overflow");
    assert_eq!(err(c, &["DECRBY", "cnt", "-9223372036854775808"]), "ERR decrement would overflow");
    q::<String>(c, &["SET", "f", "10.50"]);
    assert_eq!(q::<String>(c, &["INCRBYFLOAT", "f", "0.1"]), "10.6");
    q::<String>(c, &["SET", "f", "5.0e3"]);
    assert_eq!(q::<String>(c, &["INCRBYFLOAT", "f", "2.0e2"]), "5200");
    assert_eq!(err(c, &["INCRBYFLOAT", "user:1", "1"]), "ERR value is not a valid float");
    assert_eq!(err(c, &["INCRBYFLOAT", "f", "abc"]), "ERR value is not a valid float");
    assert_eq!(err(c, &["INCRBYFLOAT", "f", "inf"]), "ERR increment would produce NaN or Infinity");

    // Strings
    q::<String>(c, &["SET", "s", "Hello World"]);
    assert_eq!(q::<i64>(c, &["APPEND", "s", "!"]), 12);
    assert_eq!(q::<i64>(c, &["APPEND", "s2", "ab"]), 2);
    assert_eq!(q::<i64>(c, &["STRLEN", "s"]), 12);
    assert_eq!(q::<i64>(c, &["STRLEN", "nope"]), 0);
    assert_eq!(q::<String>(c, &["GETRANGE", "s", "0", "4"]), "Hello");
    assert_eq!(q::<String>(c, &["GETRANGE", "s", "-6", "-2"]), "World");
    assert_eq!(q::<String>(c, &["GETRANGE", "s", "5", "1"]), "");
    assert_eq!(q::<String>(c, &["GETRANGE", "nope", "0", "-1"]), "");
    assert_eq!(q::<i64>(c, &["SETRANGE", "s", "6", "Redis"]), 12);
    assert_eq!(q::<String>(c, &["GET", "s"]), "Hello Redis!");
    assert_eq!(q::<i64>(c, &["SETRANGE", "pad", "3", "x"]), 4);
    assert_eq!(q::<Vec<u8>>(c, &["GET", "pad"]), b"\0\0\0x");
    assert_eq!(q::<i64>(c, &["SETRANGE", "none", "5", ""]), 0);
    assert_eq!(q::<i64>(c, &["EXISTS", "none"]), 0);
    assert_eq!(err(c, &["SETRANGE", "s", "-1", "x"]), "ERR offset is out of range");
    assert_eq!(
        err(c, &["SETRANGE", "s", "536870912", "x"]),
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );

    // Expiry
    q::<String>(c, &["SET", "e", "v"]);
    assert_eq!(q::<i64>(c, &["EXPIRE", "e", "100"]), 1);
    assert_eq!(q::<i64>(c, &["EXPIRE", "e", "200", "NX"]), 0);
    assert_eq!(q::<i64>(c, &["EXPIRE", "e", "200", "GT"]), 1);
    assert_eq!(q::<i64>(c, &["EXPIRE", "e", "300", "LT"]), 0);
    assert_eq!(q::<i64>(c, &["EXPIRE", "e", "50", "XX", "LT"]), 1);
    assert_eq!(q::<i64>(c, &["PEXPIRE", "e", "60000"]), 1);
    assert_eq!(q::<i64>(c, &["EXPIREAT", "e", "4000000000"]), 1);
    assert_eq!(q::<i64>(c, &["PEXPIREAT", "e", "4000000000000"]), 1);
    assert_eq!(q::<i64>(c, &["PERSIST", "e"]), 1);
    assert_eq!(q::<i64>(c, &["PERSIST", "e"]), 0);
    assert_eq!(q::<i64>(c, &["TTL", "e"]), -1);
    assert_eq!(q::<i64>(c, &["TTL", "missing"]), -2);
    assert_eq!(q::<i64>(c, &["EXPIRE", "missing", "10"]), 0);
    assert_eq!(
        err(c, &["EXPIRE", "e", "10", "NX", "XX"]),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        err(c, &["EXPIRE", "e", "10", "GT", "LT"]),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(err(c, &["EXPIRE", "e", "10", "FOO"]), "ERR Unsupported option FOO");
    assert_eq!(q::<i64>(c, &["EXPIRE", "e", "-1"]), 1);
    assert_eq!(q::<i64>(c, &["EXISTS", "e"]), 0);
    q::<String>(c, &["SET", "soon", "v", "PX", "50"]);
    std::thread::sleep(std::time::Duration::from_millis(120));
    assert_eq!(q::<Option<String>>(c, &["GET", "soon"]), None, "lazy expiry");

    assert_eq!(q::<String>(c, &["TYPE", "s"]), "string");
    assert_eq!(q::<String>(c, &["TYPE", "nope"]), "none");

    // Keyspace-wide
    q::<String>(c, &["FLUSHALL"]);
    assert_eq!(q::<i64>(c, &["DBSIZE"]), 0);
    assert_eq!(q::<Option<String>>(c, &["RANDOMKEY"]), None);
    for i in 0..50 {
        q::<String>(c, &["SET", &format!("p{}:k{i}", i % 5), "v"]);
    }
    assert_eq!(q::<i64>(c, &["DBSIZE"]), 50);
    assert!(q::<String>(c, &["RANDOMKEY"]).contains(":k"));
    let mut keys: Vec<String> = q(c, &["KEYS", "p1:*"]);
    keys.sort();
    assert_eq!(keys.len(), 10);
    let (mut cursor, mut seen) = ("0".to_owned(), std::collections::BTreeSet::new());
    loop {
        let (next, page): (String, Vec<String>) = q(c, &["SCAN", &cursor, "COUNT", "7"]);
        seen.extend(page);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 50);
    let (_, matched): (String, Vec<String>) =
        q(c, &["SCAN", "0", "MATCH", "p2:*", "COUNT", "1000"]);
    assert_eq!(matched.len(), 10);
    let (_, typed): (String, Vec<String>) = q(c, &["SCAN", "0", "TYPE", "hash", "COUNT", "1000"]);
    assert!(typed.is_empty());
    assert_eq!(err(c, &["SCAN", "x"]), "ERR invalid cursor");
    assert_eq!(err(c, &["SCAN", "0", "COUNT", "0"]), "ERR syntax error");
    assert_eq!(q::<String>(c, &["FLUSHDB", "ASYNC"]), "OK");
    assert_eq!(q::<i64>(c, &["DBSIZE"]), 0);

    // Connection and server
    assert_eq!(q::<String>(c, &["SELECT", "0"]), "OK");
    assert_eq!(err(c, &["SELECT", "1"]), "ERR DB index is out of range");
    let t: Vec<String> = q(c, &["TIME"]);
    assert!(t[0].parse::<u64>().unwrap() > 1_700_000_000);
    assert_eq!(
        err(c, &["NOSUCH", "a", "b"]),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b'"
    );
    assert_eq!(err(c, &["GET"]), "ERR wrong number of arguments for 'get' command");
}

#[test]
fn client_config_command_and_info() {
    let server = Server::start("admin", &["--cores", "2"]);
    let c = &mut server.client();
    let id: i64 = q(c, &["CLIENT", "ID"]);
    assert!(id > 0);
    assert_eq!(q::<Option<String>>(c, &["CLIENT", "GETNAME"]), None);
    assert_eq!(q::<String>(c, &["CLIENT", "SETNAME", "checkout-svc"]), "OK");
    assert_eq!(q::<String>(c, &["CLIENT", "GETNAME"]), "checkout-svc");
    assert_eq!(
        err(c, &["CLIENT", "SETNAME", "a b"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    let list: String = q(c, &["CLIENT", "LIST"]);
    assert!(list.contains(&format!("id={id} ")) && list.contains("name=checkout-svc"), "{list}");
    let info: String = q(c, &["CLIENT", "INFO"]);
    assert!(info.contains("name=checkout-svc"));
    assert_eq!(err(c, &["CLIENT", "NOPE"]), "ERR unknown subcommand 'NOPE'. Try CLIENT HELP.");

    let n: i64 = q(c, &["COMMAND", "COUNT"]);
    assert!(n >= 50);
    let docs: Value = q(c, &["COMMAND", "DOCS", "get"]);
    assert!(format!("{docs:?}").contains("Returns the string value of a key."));
    let info: Value = q(c, &["COMMAND", "INFO", "get", "nosuch"]);
    assert!(matches!(info, Value::Array(ref v) if v.len() == 2 && v[1] == Value::Nil), "{info:?}");

    let cfg: Vec<String> = q(c, &["CONFIG", "GET", "maxmemory"]);
    assert_eq!(cfg, vec!["maxmemory", "0"]);
    assert_eq!(q::<String>(c, &["CONFIG", "SET", "maxmemory", "10mb"]), "OK");
    let cfg: Vec<String> = q(c, &["CONFIG", "GET", "maxmemory"]);
    assert_eq!(cfg, vec!["maxmemory", "10485760"]);
    let none: Vec<String> = q(c, &["CONFIG", "GET", "nosuchparam"]);
    assert!(none.is_empty());
    assert_eq!(
        err(c, &["CONFIG", "SET", "nosuch", "1"]),
        "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"
    );
    assert!(err(c, &["CONFIG", "SET", "maxmemory", "lots"])
        .starts_with("ERR CONFIG SET failed (possibly related to argument 'maxmemory')"));

    q::<String>(c, &["SET", "user:1", "x"]);
    let info: String = q(c, &["INFO"]);
    for section in
        ["# Server", "# Clients", "# Memory", "# Persistence", "# Stats", "# Keyspace", "# Shards"]
    {
        assert!(info.contains(section), "INFO lacks {section}");
    }
    assert!(info.contains("db0:keys=1"));
    assert!(info.contains("partition=(shared)"));
    let shards: String = q(c, &["INFO", "shards"]);
    assert!(shards.starts_with("# Shards") && !shards.contains("# Server"));
    let shards: Value = q(c, &["SHARDCAST", "SHARDS"]);
    assert!(format!("{shards:?}").contains("(shared)"));
}

/// Keys that expire are removed by the active cycle even if nobody reads them again
/// (DBSIZE, like Redis's, counts expired keys not yet collected).
#[test]
fn active_expiry_removes_untouched_keys() {
    let server = Server::start("active-expiry", &["--cores", "2"]);
    let c = &mut server.client();
    for i in 0..200 {
        q::<String>(c, &["SET", &format!("sess{}:{i}", i % 4), "v", "PX", "100"]);
    }
    q::<String>(c, &["SET", "keep:1", "v"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n: i64 = q(c, &["DBSIZE"]);
        if n == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "active expiry left {n} keys");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Findings of a review, pinned: Redis 7 behaviours the first version got wrong.
#[test]
fn review_regressions() {
    let server = Server::start("review", &["--cores", "2"]);
    let c = &mut server.client();
    // INCRBYFLOAT sums like Redis's long double for decimal inputs.
    q::<String>(c, &["SET", "f", "0.1"]);
    assert_eq!(q::<String>(c, &["INCRBYFLOAT", "f", "0.2"]), "0.3");
    q::<String>(c, &["SET", "g", "0"]);
    for _ in 0..10 {
        q::<String>(c, &["INCRBYFLOAT", "g", "0.1"]);
    }
    assert_eq!(q::<String>(c, &["GET", "g"]), "1");
    // Repeated SET options are accepted; conflicting ones are not.
    assert_eq!(q::<String>(c, &["SET", "k", "v", "NX", "NX"]), "OK");
    assert_eq!(q::<String>(c, &["SET", "k", "v", "EX", "10", "EX", "20"]), "OK");
    assert!(q::<i64>(c, &["TTL", "k"]) > 10);
    assert_eq!(err(c, &["SET", "k", "v", "EX", "10", "KEEPTTL"]), "ERR syntax error");
    // SETRANGE with an empty value never checks the size limit.
    assert_eq!(q::<i64>(c, &["SETRANGE", "missing", "536870912", ""]), 0);
    // Without a password, AUTH default <anything> succeeds (Redis 7's nopass default user).
    assert_eq!(q::<String>(c, &["AUTH", "default", "whatever"]), "OK");
    // Clearing requirepass takes effect for connections that never authenticated.
    assert_eq!(q::<String>(c, &["CONFIG", "SET", "requirepass", "pw"]), "OK");
    let mut other = redis::Client::open(server.url())
        .unwrap()
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(err(&mut other, &["GET", "k"]), "NOAUTH Authentication required.");
    assert_eq!(q::<String>(c, &["CONFIG", "SET", "requirepass", ""]), "OK");
    assert_eq!(q::<String>(&mut other, &["GET", "k"]), "v");
    assert_eq!(
        err(c, &["CLIENT", "SETNAME"]),
        "ERR wrong number of arguments for 'client|setname' command"
    );
    q::<String>(c, &["SET", "ttl:1", "v", "EX", "100"]);
    let info: String = q(c, &["INFO", "keyspace"]);
    assert!(info.contains(",expires=2,"), "k (EX 20 above) and ttl:1 expire: {info}");
    assert_eq!(err(c, &["CONFIG", "SET", "maxclients", "10k"]), "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer");
}

/// A partition costs no shard: with room for a single shard per core, writes to any number of
/// new prefixes and hash tags still work (they once failed past `shards-per-core-max`), while
/// a carve-out, which does need a shard, is refused with the limit named.
#[test]
fn new_partitions_never_need_a_shard() {
    let dir = std::env::temp_dir().join(format!("shardcast-shardmax-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "shards-per-core-max = 1\n").unwrap();
    let server = Server::start("shardmax", &["--cores", "1", "--config", cfg.to_str().unwrap()]);
    let c = &mut server.client();
    for p in 0..500 {
        q::<String>(c, &["SET", &format!("p{p}:k"), "v"]);
        q::<String>(c, &["SET", &format!("{{tag{p}}}:k"), "v"]);
    }
    assert_eq!(q::<i64>(c, &["DBSIZE"]), 1000);
    let e = err(c, &["SHARDCAST", "SPLIT", "p0"]);
    assert!(e.contains("core 0 already holds 1 shards (shards-per-core-max)"), "{e}");
    assert_eq!(q::<String>(c, &["GET", "p0:k"]), "v", "nothing moved");
    std::fs::remove_dir_all(&dir).ok();
}

/// EXPIRETIME, PEXPIRETIME and TOUCH, as Redis 7 answers them, on keys of both cores.
#[test]
fn expiretime_and_touch() {
    let server = Server::start("expiretime", &["--cores", "2"]);
    let c = &mut server.client();
    let at_ms: i64 = 4_102_444_800_123; // 2100-01-01T00:00:00.123Z
    for p in 0..4 {
        let (k, persistent) = (format!("p{p}:k"), format!("p{p}:persistent"));
        assert_eq!(q::<String>(c, &["SET", &k, "v"]), "OK");
        assert_eq!(q::<i64>(c, &["PEXPIREAT", &k, &at_ms.to_string()]), 1);
        assert_eq!(q::<i64>(c, &["PEXPIRETIME", &k]), at_ms);
        // Seconds are rounded as TTL's are ((ms + 500) / 1000).
        assert_eq!(q::<i64>(c, &["EXPIRETIME", &k]), (at_ms + 500) / 1000);
        assert_eq!(q::<String>(c, &["SET", &persistent, "v"]), "OK");
        assert_eq!(q::<i64>(c, &["EXPIRETIME", &persistent]), -1);
        assert_eq!(q::<i64>(c, &["PEXPIRETIME", &format!("p{p}:missing")]), -2);
        let touched = q::<i64>(c, &["TOUCH", &k, &persistent, &format!("p{p}:missing"), &k]);
        assert_eq!(touched, 3, "each existing key counts, repeats too");
    }
    assert_eq!(err(c, &["EXPIRETIME"]), "ERR wrong number of arguments for 'expiretime' command");
    assert_eq!(err(c, &["TOUCH"]), "ERR wrong number of arguments for 'touch' command");
    // TOUCH resets the idle time OBJECT IDLETIME reports.
    assert_eq!(q::<String>(c, &["SET", "idle", "v"]), "OK");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert!(q::<i64>(c, &["OBJECT", "IDLETIME", "idle"]) >= 2);
    assert_eq!(q::<i64>(c, &["TOUCH", "idle"]), 1);
    // A whole-second clock: a second may turn between the TOUCH and the OBJECT.
    assert!(q::<i64>(c, &["OBJECT", "IDLETIME", "idle"]) <= 1);
}
