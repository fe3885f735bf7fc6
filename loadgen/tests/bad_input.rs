//! Bad input gets a message naming the field and what is wrong; an unreachable server gets
//! retries with backoff and a clear report.

use std::process::Command;
use std::time::{Duration, Instant};

use shardcast_loadgen::client::Retry;
use shardcast_loadgen::workload::PRESETS;
use shardcast_loadgen::{run, RunConfig, RunError, Workload};

const APP: &str = "[[application]]\nname = \"web\"\nops = { get = 1 }\n";

#[test]
fn every_preset_parses() {
    for (name, _, _) in PRESETS {
        let w = Workload::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!w.applications.is_empty());
    }
}

#[test]
fn invalid_workloads_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[application]]\nname = \"web\"\nops = { get = 1 }\nkey_distribution = { type = \"zipf\" }\n",
            "application[0].key_distribution.type",
            "unknown type \"zipf\"; expected one of: uniform, zipfian, hotspot, latest, mixgraph",
        ),
        (
            "[[application]]\nname = \"web\"\nops = { get = 1 }\nkeyspace = 0\n",
            "application[0].keyspace",
            "must be between 1 and",
        ),
        (
            "[[application]]\nname = \"web\"\nops = { get = 1 }\nkey_distribution = { type = \"zipfian\", theta = 1.5 }\n",
            "application[0].key_distribution.theta",
            "must be between",
        ),
        ("[[application]]\nname = \"web\"\nops = { get = 0 }\n", "application[0].ops", "sum to 0"),
        ("[[application]]\nname = \"web\"\nops = { gett = 1 }\n", "application[0].ops.gett", "unknown field"),
        ("[[application]]\nname = \"web\"\n", "application[0].ops", "missing"),
        ("[[application]]\nops = { get = 1 }\n", "application[0].name", "missing"),
        ("name = \"x\"\n", "application", "at least one"),
        (
            "[[application]]\nname = \"web\"\nops = { get = 1 }\nvalue_size = { type = \"uniform\", min = 10, max = 5 }\n",
            "application[0].value_size.max",
            "must be at least min",
        ),
        (
            "[[application]]\nname = \"web\"\nops = { get = 1 }\nrate = { type = \"diurnal\", mean = 10, daily_amplitude = 2 }\n",
            "application[0].rate.daily_amplitude",
            "must be between 0 and 1",
        ),
        (
            "[[application]]\nname = \"web\"\nops = { get = 1 }\nrate = { type = \"step\", steps = [[0, 5], [0, 6]] }\n",
            "application[0].rate.steps[1]",
            "times must increase",
        ),
        (
            "[[application]]\nname = \"web\"\nops = { get = 1 }\nrate = { type = \"replay\", csv = \"/nonexistent/rates.csv\" }\n",
            "application[0].rate.csv",
            "cannot read",
        ),
        ("[[application]]\nname = \"web\"\nops = { get = \"lots\" }\n", "application[0].ops.get", "expected a number, got string"),
        ("[[application]]\nname = \"web\"\nops = { get = 1 }\nkey_prefix = \"a b\"\n", "application[0].key_prefix", "spaces"),
        (&format!("{APP}{APP}"), "application[1].name", "also application[0]'s name"),
        ("time_compression = -1\n[[application]]\nname = \"web\"\nops = { get = 1 }\n", "time_compression", "must be between"),
        (
            "[[application]]\nname = \"web\"\nops = { mget = 1 }\nmulti_keys = { consecutive = 1 }\n",
            "application[0].multi_keys.consecutive",
            "expected true or false, got integer",
        ),
        (
            "[[application]]\nname = \"web\"\nops = { get = 1 }\nkey_distribution = { type = \"mixgraph\", keyrange_dist_a = -1, keyrange_dist_c = 0 }\n",
            "application[0].key_distribution",
            "must be positive",
        ),
        ("[[application]]\nname = \"a,b\"\nops = { get = 1 }\n", "application[0].name", "must not contain"),
        ("[[application]\nname = 1", "", "not valid TOML"),
    ];
    for (toml, field, msg) in cases {
        let e = Workload::from_toml_str(toml, None).unwrap_err();
        assert_eq!(e.field, *field, "for {toml:?}: {e}");
        assert!(e.message.contains(msg), "for {toml:?}: {e}");
    }
    assert!(Workload::from_toml_str(APP, None).is_ok());
}

#[test]
fn unknown_preset_lists_the_presets() {
    let e = Workload::load("ycsb-z").unwrap_err().to_string();
    assert!(e.contains("ycsb-a") && e.contains("mixgraph") && e.contains("diurnal-3apps"), "{e}");
}

#[test]
fn the_binary_reports_a_bad_workload_file_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("loadgen-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(&f, "[[application]]\nname = \"web\"\nops = { get = 1 }\nkeyspace = -5\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-loadgen"))
        .arg("--workload")
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("application[0].keyspace: must not be negative, got -5"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens there.
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn an_unreachable_server_is_retried_with_backoff_then_reported() {
    let port = closed_port();
    let mut c = RunConfig::new("127.0.0.1", port, Workload::load("ycsb-c").unwrap());
    c.retry = Retry {
        attempts: 4,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
    };
    let t = Instant::now();
    let e = run(&c).unwrap_err();
    // Backoff 20 + 40 + 50 ms between the 4 attempts.
    assert!(t.elapsed() >= Duration::from_millis(100), "{:?}", t.elapsed());
    let RunError::Unreachable(u) = &e else { panic!("{e}") };
    assert_eq!(u.attempts, 4);
    let msg = e.to_string();
    assert!(msg.contains(&format!("cannot reach 127.0.0.1:{port}: 4 attempts")), "{msg}");
    assert!(msg.contains("refused"), "{msg}");
}

#[test]
fn the_binary_exits_3_when_the_server_is_unreachable() {
    let port = closed_port();
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-loadgen"))
        .args(["--port", &port.to_string(), "--connect-attempts", "2", "--workload", "ycsb-a"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("cannot reach") && err.contains("2 attempts"), "{err}");
}

#[test]
fn bad_flags_are_refused_before_connecting() {
    let mut c = RunConfig::new("127.0.0.1", closed_port(), Workload::load("ycsb-a").unwrap());
    c.pipeline = 0;
    assert!(matches!(run(&c), Err(RunError::Config { ref field, .. }) if field == "--pipeline"));
    let mut c = RunConfig::new("127.0.0.1", closed_port(), Workload::load("ycsb-a").unwrap());
    c.mode = shardcast_loadgen::LoopMode::Open;
    let e = run(&c).unwrap_err().to_string();
    assert!(e.contains("--rate") && e.contains("open loop needs a rate"), "{e}");
}
