//! CONFIG REWRITE writes what CONFIG SET changed back into the TOML file the server started
//! from, keeping the operator's comments and other keys, so a restart keeps the changes; a
//! server started without a file answers Redis's error.

mod common;

use common::Server;

fn config_get(c: &mut redis::Connection, name: &str) -> String {
    let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(c).unwrap();
    v[1].clone()
}

#[test]
fn config_rewrite_keeps_comments_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("shardcast-it-rewrite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shardcast.toml");
    let original = "# Our cache node.\nmaxclients = 100 # raised in March\ntick-ms = 500\n\
                    client-query-buffer-limit = \"64mb\"\nproto-max-bulk-len = \"16mb\"\n";
    std::fs::write(&file, original).unwrap();
    let f = file.to_str().unwrap().to_owned();
    let mut server = Server::start_at(&dir.join("data"), &["--cores", "1", "--config", &f]);
    let mut c = server.client();
    let ok: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("10mb")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .arg("maxclients")
        .arg("250")
        .arg("slowlog-log-slower-than")
        .arg("-1")
        .arg("latency-monitor-threshold")
        .arg("5")
        .arg("latency-tracking-info-percentiles")
        .arg("50 99.99")
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    // A bulk limit above the query buffer's would make the rewritten file refused at start.
    let r: redis::RedisResult<String> =
        redis::cmd("CONFIG").arg("SET").arg("proto-max-bulk-len").arg("128mb").query(&mut c);
    assert!(common::error_text(r).contains("client-query-buffer-limit"));
    let ok: String = redis::cmd("CONFIG").arg("REWRITE").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# Our cache node.\n"), "{text}");
    assert!(text.contains("tick-ms = 500"), "{text}");
    assert!(text.contains("maxclients = 250"), "{text}");
    assert!(text.contains("maxmemory-policy = \"allkeys-lru\""), "{text}");
    assert!(!text.contains("requirepass"), "no password, no key: {text}");
    server.terminate();
    server.restart();
    let mut c = server.client();
    assert_eq!(config_get(&mut c, "maxmemory"), "10485760");
    assert_eq!(config_get(&mut c, "maxmemory-policy"), "allkeys-lru");
    assert_eq!(config_get(&mut c, "maxclients"), "250");
    assert_eq!(config_get(&mut c, "tick-ms"), "500");
    assert_eq!(config_get(&mut c, "slowlog-log-slower-than"), "-1");
    assert_eq!(config_get(&mut c, "latency-monitor-threshold"), "5");
    assert_eq!(config_get(&mut c, "latency-tracking-info-percentiles"), "50 99.99");
    assert_eq!(config_get(&mut c, "slowlog-max-len"), "128");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_rewrite_without_a_config_file_is_refused_as_redis_does() {
    let server = Server::start("rewrite-none", &["--cores", "1"]);
    let mut c = server.client();
    let r: redis::RedisResult<String> = redis::cmd("CONFIG").arg("REWRITE").query(&mut c);
    assert_eq!(common::error_text(r), "ERR The server is running without a config file");
    // Values a rewritten file would make the next start refuse are refused at SET.
    let r: redis::RedisResult<String> =
        redis::cmd("CONFIG").arg("SET").arg("maxclients").arg("18446744073709551615").query(&mut c);
    assert!(common::error_text(r).contains("argument must be at most"));
    let r: redis::RedisResult<String> =
        redis::cmd("CONFIG").arg("REWRITE").arg("extra").query(&mut c);
    assert_eq!(common::error_text(r), "ERR wrong number of arguments for 'config|rewrite' command");
}
