//! End to end against a real redis-server (Debian's /usr/bin/redis-server, started here on a
//! free port): closed loop with verification and every output, and an open loop that keeps
//! its rate with each application's connections named by CLIENT SETNAME.

mod common;

use std::time::Duration;

use common::{wait_for, Redis};
use shardcast_loadgen::{client, run, LoopMode, RunConfig, Workload};

#[test]
fn ycsb_a_closed_loop_verifies_and_writes_every_output() {
    let redis = Redis::start("ycsb-a");
    let out = redis.dir.join("out");
    let mut c = RunConfig::new("127.0.0.1", redis.port, Workload::load("ycsb-a").unwrap());
    c.duration = Some(Duration::from_millis(1500));
    c.connections = 8;
    c.pipeline = 4;
    c.verify = true;
    c.verify_keys = 5_000;
    c.out_dir = Some(out.clone());
    let r = run(&c).unwrap();
    assert_eq!(r.mode, "closed");
    assert!(r.ops > 2_000, "{}", r.table());
    assert_eq!(r.errors, 0, "{}", r.table());
    let v = r.verify.unwrap();
    assert!(v.checked > 100, "{v:?}");
    assert_eq!(v.failures(), 0, "{v:?}");
    assert!(!r.shardcast, "Redis answers SHARDCAST with an error");
    for f in ["summary.json", "intervals.csv", "latency.hlog", "shards.csv", "plot.svg"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let json = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(
        json.starts_with('{') && json.contains("\"op\":\"get\"") && json.contains("\"p99.99\""),
        "{json}"
    );
    let csv = std::fs::read_to_string(out.join("intervals.csv")).unwrap();
    assert!(csv.lines().count() >= 3 && csv.contains(",ycsb,") && csv.contains(",all,"), "{csv}");
    let hlog = std::fs::read_to_string(out.join("latency.hlog")).unwrap();
    assert!(hlog.contains("Tag=ycsb.get,") && hlog.contains("Tag=ycsb.set,"), "{hlog}");
    // The interval log reads back with HdrHistogram's own log reader and decoder, and its
    // histograms add up to the ops counted.
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let mut logged = 0u64;
    for entry in IntervalLogIterator::new(hlog.as_bytes()) {
        if let LogEntry::Interval(h) = entry.expect("valid log line") {
            let bytes = base64_decode(h.encoded_histogram());
            let hist: hdrhistogram::Histogram<u64> =
                Deserializer::new().deserialize(&mut bytes.as_slice()).expect("decodes");
            logged += hist.len();
        }
    }
    assert_eq!(logged, r.ops, "every op is in the interval log");
    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{svg}");
    // The table names every percentile.
    let t = r.table();
    for col in ["p50", "p90", "p99", "p99.9", "p99.99", "max"] {
        assert!(t.contains(col), "{t}");
    }
}

#[test]
fn open_loop_keeps_its_rate_and_names_each_applications_connections() {
    let redis = Redis::start("diurnal");
    let mut c = RunConfig::new("127.0.0.1", redis.port, Workload::load("diurnal-3apps").unwrap());
    c.duration = Some(Duration::from_secs(2));
    c.rate = Some(3000.0);
    c.connections = 6;
    c.pipeline = 4;
    c.verify = true;
    c.mode = LoopMode::Open;
    let port = redis.port;
    let names = std::thread::spawn(move || {
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut s = client::connect_once(&addr, None, None).unwrap();
        let mut list = String::new();
        wait_for("named connections", Duration::from_secs(10), || {
            let r = client::call(&mut s, &[b"CLIENT", b"LIST"]).unwrap();
            list = String::from_utf8_lossy(&r).into_owned();
            ["name=web ", "name=batch ", "name=social "].iter().all(|n| list.contains(n))
        });
        list
    });
    let r = run(&c).unwrap();
    names.join().unwrap();
    assert_eq!(r.mode, "open");
    assert_eq!(r.errors, 0, "{}", r.table());
    // The target averages 3000 ops/s (scaled profiles); allow for the diurnal shape over
    // the 2 s actually run (2 s of 60 s of a compressed day) and scheduling noise.
    let target: f64 = r.apps.iter().filter_map(|a| a.target_mean_ops_s).sum();
    let achieved = r.ops as f64 / 2.0;
    assert!(
        (achieved - target).abs() < 0.15 * target,
        "achieved {achieved} vs target {target}\n{}",
        r.table()
    );
    assert_eq!(r.apps.len(), 3);
    assert!(r.apps.iter().all(|a| a.ops > 0));
    assert_eq!(r.verify_failures(), 0);
}

/// Standard base64 (the interval log's encoding of each histogram).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn preload_writes_every_key_before_the_run() {
    let redis = Redis::start("preload");
    let w = Workload::from_toml_str(
        r#"
        [[application]]
        name = "a"
        keyspace = 5000
        value_size = 100
        ops = { get = 1 }
        [[application]]
        name = "b"
        keyspace = 3000
        value_size = { type = "uniform", min = 10, max = 50 }
        ops = { get = 1 }
        "#,
        None,
    )
    .unwrap();
    let mut c = RunConfig::new("127.0.0.1", redis.port, w);
    c.duration = Some(Duration::from_millis(500));
    c.connections = 4;
    c.preload = true;
    c.verify = true;
    c.verify_keys = 8_000; // every key sampled: a nil read would be "missing"
    let r = run(&c).unwrap();
    let v = r.verify.unwrap();
    assert!(v.checked > 500, "{v:?}");
    assert_eq!(v.failures(), 0, "{}", r.table());
    let addr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let mut s = client::connect_once(&addr, None, None).unwrap();
    assert_eq!(client::call(&mut s, &[b"DBSIZE"]).unwrap(), b":8000\r\n");
}
