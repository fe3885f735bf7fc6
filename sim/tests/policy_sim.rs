//! The policy simulator: reproducible, a replayed trace is the load it contains, the
//! policies rank as their sizing says, and the command line works end to end.

use shardcast_sim::policy::workload::{SyntheticSpec, Workload};
use shardcast_sim::policy::{run, PolicyKind, SimConfig};
use std::process::Command;

/// A small machine: 16 cores, 60 partitions, 5-minute steps, a warm-up day and a scored day.
fn small() -> (SimConfig, Workload) {
    let mut cfg = SimConfig::new(16);
    let spec = SyntheticSpec {
        partitions: 60,
        days: 2.0,
        step_ms: 300_000,
        seed: 7,
        mean_ops: 0.3 * 16.0 * cfg.machine.capacity_ops,
        zipf: 0.8,
        dataset_bytes: 2_000_000_000,
        flash_per_day: 0.05,
    };
    let mut w = Workload::synthetic(&spec).unwrap();
    w.materialize();
    cfg.warmup_steps = 288;
    cfg.fit_interval_ms = 21_600_000;
    (cfg, w)
}

#[test]
fn the_same_seed_gives_the_same_figures() {
    let (cfg, w) = small();
    let a = run(&cfg, &w).unwrap();
    let b = run(&cfg, &w).unwrap();
    let table = shardcast_sim::policy::report::table;
    assert_eq!(table(&a), table(&b));
    assert!(a.iter().any(|r| r.splits + r.merges + r.moves > 0), "{}", table(&a));
}

/// What the sizing promises: the adaptive policies beat static-for-the-mean on violations,
/// and static-for-the-peak pays in shards. (That the oracle bounds the others was the
/// issue's test; it does not hold with this allocator, docs/simulation.md says why.)
#[test]
fn adaptive_policies_beat_sizing_for_the_mean_and_sizing_for_the_peak_costs_shards() {
    let (cfg, w) = small();
    let reports = run(&cfg, &w).unwrap();
    let get = |k: PolicyKind| reports.iter().find(|r| r.kind == k).unwrap();
    let table = shardcast_sim::policy::report::table(&reports);
    let mean = get(PolicyKind::StaticMean);
    let peak = get(PolicyKind::StaticPeak);
    assert!(peak.violation_minutes < mean.violation_minutes, "{table}");
    for k in [PolicyKind::Reactive, PolicyKind::Predictive, PolicyKind::Oracle] {
        let r = get(k);
        assert!(
            r.violation_minutes < mean.violation_minutes,
            "{} vs static-mean:\n{table}",
            k.as_str()
        );
        assert!(r.shard_hours < peak.shard_hours, "{} vs static-peak:\n{table}", k.as_str());
        assert!(r.splits + r.merges + r.moves > 0, "{} never acted:\n{table}", k.as_str());
    }
    assert!(get(PolicyKind::Predictive).mape_pct().is_some(), "{table}");
    assert!(get(PolicyKind::Reactive).mape_pct().is_none(), "{table}");
}

#[test]
fn a_trace_replays_to_the_load_it_contains() {
    let (_, w) = small();
    let rows = w.to_rows();
    let text = shardcast_predictor::trace::write_trace(&rows);
    let parsed = shardcast_predictor::trace::parse_trace(&text).unwrap();
    let replayed = Workload::replay(&parsed, None, 1.0).unwrap();
    assert_eq!(replayed.step_ms, w.step_ms);
    let step_s = w.step_ms as f64 / 1000.0;
    let mut checked = 0;
    for row in &rows {
        let p = replayed.partitions.iter().position(|x| x.name == row.partition).unwrap();
        let step = ((row.ts_ms - replayed.start_ms) / replayed.step_ms) as usize;
        let ops = replayed.rate(p, step) * step_s;
        assert!((ops - row.ops() as f64).abs() < 0.5, "{row:?}: {ops}");
        checked += 1;
    }
    assert!(checked > 1000);
    // A scaled replay is the same load times the scale.
    let doubled = Workload::replay(&parsed, None, 2.0).unwrap();
    assert!(
        (doubled.rate(0, 10) - 2.0 * replayed.rate(0, 10)).abs()
            < 1e-3 * replayed.rate(0, 10).max(1.0)
    );
}

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shardcast-sim")).args(args).output().unwrap()
}

#[test]
fn the_command_line_writes_its_table_files_and_plots_and_replays_what_it_wrote() {
    let dir = std::env::temp_dir().join(format!("shardcast-sim-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let trace = dir.join("trace.csv");
    std::fs::create_dir_all(&dir).unwrap();
    let args = [
        "policy",
        "--cores",
        "4",
        "--partitions",
        "12",
        "--days",
        "1",
        "--seed",
        "3",
        "--step-s",
        "600",
        "--warmup-days",
        "1",
    ];
    let mut first: Vec<&str> = args.to_vec();
    let out_dir = dir.join("out");
    first.extend(["--out", out_dir.to_str().unwrap(), "--trace-out", trace.to_str().unwrap()]);
    let out = sim(&first);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for policy in ["static-mean", "static-peak", "reactive", "predictive", "oracle"] {
        assert!(stdout.contains(policy), "{stdout}");
    }
    for file in [
        "summary.csv",
        "timeline.csv",
        "partitions.csv",
        "load_forecast.svg",
        "shards.svg",
        "p99.svg",
    ] {
        let text = std::fs::read_to_string(out_dir.join(file)).unwrap();
        assert!(text.len() > 100, "{file}: {text}");
    }
    assert_eq!(std::fs::read_to_string(out_dir.join("summary.csv")).unwrap().lines().count(), 6);
    // The written trace replays (what-if on a server's own history works the same way).
    let replay = sim(&[
        "policy",
        "--cores",
        "4",
        "--trace",
        trace.to_str().unwrap(),
        "--warmup-days",
        "1",
        "--policies",
        "reactive,oracle",
    ]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{text}{}", String::from_utf8_lossy(&replay.stderr));
    assert!(text.contains("12 partitions") && text.contains("oracle"), "{text}");
    // Bad input: a clear error and exit code 2, never a panic.
    for (bad, want) in [
        (vec!["policy", "--cores", "0"], "--cores"),
        (vec!["policy", "--cores", "2000"], "--cores"),
        (vec!["policy", "--partitions", "20000"], "--partitions"),
        (vec!["policy", "--policies", "psychic"], "unknown policy"),
        (vec!["policy", "--trace", "/nonexistent.csv"], "cannot read"),
        (vec!["policy", "--days=-1"], "--days"),
    ] {
        let out = sim(&bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains(want), "{bad:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
