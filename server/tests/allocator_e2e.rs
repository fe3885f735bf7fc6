//! The predictive allocator end to end: the real server with `--policy predictive`, a
//! compressed day of 30 s and a pinned core capacity so that the daily peak needs two shards
//! and the off-peak one, driven by the bundled load generator with a repeating daily pattern.
//! After the first days, the partition is split *before* its daily peak (the split's recorded
//! load is under the split threshold, and the load generator sees two shards before the peak)
//! and merged after it; every read is verified.

mod common;

use common::Server;
use shardcast_loadgen::{run, LoopMode, RunConfig, Workload};
use std::time::Duration;

const DAY_S: f64 = 30.0;
const DAYS: f64 = 6.0;
/// The daily peak is at noon: half a day after the load generator starts.
const PEAK_PHASE_S: f64 = DAY_S / 2.0;

const WORKLOAD: &str = r#"
name = "daily"
# 86,400 / 30: a day lasts 30 s.
time_compression = 2880

[[application]]
name = "day"
key_prefix = "day:"
keyspace = 4000
key_distribution = "uniform"
value_size = 100
ops = { get = 0.7, set = 0.3 }
# 135 ops/s at midnight, 1,665 at noon.
rate = { type = "diurnal", mean = 900, daily_amplitude = 0.85, peak_hour = 12, seed = 1 }
"#;

/// `SHARDCAST EXPLAIN` entries as field maps.
fn explanations(server: &Server) -> Vec<std::collections::HashMap<String, String>> {
    let mut c = server.client();
    let v: Vec<Vec<(String, String)>> = redis::cmd("SHARDCAST")
        .arg("EXPLAIN")
        .arg("day")
        .arg("COUNT")
        .arg(1000)
        .query::<Vec<redis::Value>>(&mut c)
        .unwrap()
        .into_iter()
        .map(|e| redis::from_redis_value(&e).unwrap())
        .collect();
    v.into_iter().map(|e| e.into_iter().collect()).collect()
}

#[test]
fn predictive_policy_splits_before_the_daily_peak_and_merges_after() {
    let config =
        std::env::temp_dir().join(format!("shardcast-alloc-e2e-{}.toml", std::process::id()));
    // Capacity 2,000 ops/s per core at 75 %: one shard carries 1,500, two ~1,850 (a split's
    // remote ops cost more); the merge threshold of two shards is half of one's, 750. The
    // forecast's upper quantile may overshoot the 1,665 peak past 1,850: two shards at most,
    // so that this tests timing, not the quantile's width.
    std::fs::write(
        &config,
        "policy = \"predictive\"\ncore-capacity-ops = 2000\ntarget-utilization = 0.75\n\
         merge-delay-s = 4\nmigrations-per-minute-max = 30\nshards-per-partition-max = 2\npredict-step-s = 1\nday-s = 30\n\
         forecast-horizon-s = 5\npredict-fit-interval-s = 10\n",
    )
    .unwrap();
    let server = Server::start(
        "alloc-e2e",
        &["--cores", "2", "--tick-ms", "500", "--config", config.to_str().unwrap()],
    );
    let out = server.dir.join("loadgen-out");
    let mut c =
        RunConfig::new("127.0.0.1", server.port, Workload::from_toml_str(WORKLOAD, None).unwrap());
    c.duration = Some(Duration::from_secs_f64(DAY_S * DAYS));
    c.interval = Duration::from_millis(500);
    c.connections = 4;
    c.mode = LoopMode::Open;
    c.verify = true;
    c.out_dir = Some(out.clone());
    let r = run(&c).unwrap();
    // The run's own clock origin: taken before `run`, it would include the connection setup
    // and shift every phase (on a loaded machine, by more than the margins below).
    let started_ms = r.started_unix_ms;
    assert_eq!(r.errors, 0, "{}", r.table());
    assert_eq!(r.verify_failures(), 0, "{}", r.table());
    assert!(r.verify.unwrap().checked > 1000, "{}", r.table());

    // Where in its day (seconds after midnight) a time falls, and which day.
    let phase = |at_ms: u64| ((at_ms.saturating_sub(started_ms)) as f64 / 1000.0) % DAY_S;
    let day = |at_ms: u64| ((at_ms.saturating_sub(started_ms)) as f64 / 1000.0 / DAY_S) as u64;
    let log = explanations(&server);
    let shown = || format!("{log:#?}\n{}", server.log());
    let field = |e: &std::collections::HashMap<String, String>, k: &str| -> f64 {
        e[k].parse().unwrap_or_else(|_| panic!("{k} = {:?}", e[k]))
    };
    let grows: Vec<_> =
        log.iter().filter(|e| matches!(e["action"].as_str(), "carve-out" | "split")).collect();
    let merges: Vec<_> = log.iter().filter(|e| e["action"] == "merge").collect();
    for e in log.iter().rev().filter(|e| e["action"] != "none") {
        let at = field(e, "at_ms") as u64;
        eprintln!(
            "day {} at {:5.1} s: {:9} observed {:6.0} demand {:6.0} split at {:6.0} merge at {:6.0} model {} | {}",
            day(at), phase(at), e["action"], field(e, "observed_ops_per_sec"),
            field(e, "demand_ops_per_sec"), field(e, "split_threshold_ops_per_sec"),
            field(e, "merge_threshold_ops_per_sec"), e["model"], e["change"]
        );
    }
    // From the third day on, the forecast knows the day: every growth is made ahead of the
    // peak, while the observed load was under the threshold, by a forecasting model.
    let late: Vec<_> = grows.iter().filter(|e| day(field(e, "at_ms") as u64) >= 2).collect();
    assert!(!late.is_empty(), "no split on days 3 to {DAYS}: {}", shown());
    for e in &late {
        let at = field(e, "at_ms") as u64;
        let p = phase(at);
        assert!(
            p < PEAK_PHASE_S - 1.0,
            "a split at {p:.1} s into day {} is not ahead of the peak at {PEAK_PHASE_S} s: {}",
            day(at),
            shown()
        );
        assert!(
            field(e, "observed_ops_per_sec") < field(e, "split_threshold_ops_per_sec"),
            "split after the load crossed the threshold: {}",
            shown()
        );
        assert!(!e["model"].is_empty() && e["model"] != "reactive", "{}", shown());
    }
    // No thrash: at most a split and a merge a day, on average, after the first day.
    let changes = log.iter().filter(|e| e["action"] != "none" && e["action"] != "failed");
    let late_changes = changes.filter(|e| day(field(e, "at_ms") as u64) >= 1).count();
    assert!(late_changes as f64 <= 2.0 * (DAYS - 1.0) + 1.0, "{late_changes} changes: {}", shown());
    // Merges come after the peak.
    let late_merges: Vec<_> =
        merges.iter().filter(|e| day(field(e, "at_ms") as u64) >= 2).collect();
    assert!(late_merges.len() >= 2, "merges on days 3 to {DAYS}: {}", shown());
    for e in &late_merges {
        let p = phase(field(e, "at_ms") as u64);
        assert!(
            !(PEAK_PHASE_S - 0.2 * DAY_S..PEAK_PHASE_S + 0.1 * DAY_S).contains(&p),
            "a merge at {p:.1} s, around the peak: {}",
            shown()
        );
    }
    // The load generator saw it too: from the third day on, two shards in the last seconds
    // before every peak; one (or the partition back in a shared shard) in a night.
    let counts: Vec<(f64, u64)> = r
        .intervals
        .iter()
        .filter_map(|i| Some((i.start_s, i.shards.as_ref()?.get("day").copied().unwrap_or(0))))
        .collect();
    for d in 2..DAYS as u64 {
        let peak = d as f64 * DAY_S + PEAK_PHASE_S;
        let before: Vec<u64> = counts
            .iter()
            .filter(|(t, _)| (peak - 2.0..peak).contains(t))
            .map(|(_, n)| *n)
            .collect();
        assert!(
            !before.is_empty() && before.iter().all(|&n| n >= 2),
            "day {d}: shards before the peak {before:?}; over time: {counts:?}\n{}",
            shown()
        );
    }
    let night =
        counts.iter().any(|&(t, n)| t >= 2.0 * DAY_S && (t % DAY_S) > 0.85 * DAY_S && n <= 1);
    assert!(night, "shards over time: {counts:?}\n{}", shown());
    let shards_csv = std::fs::read_to_string(out.join("shards.csv")).unwrap();
    assert!(shards_csv.lines().count() > 10, "{shards_csv}");
    // INFO sums it up.
    let info = server.cli(&["INFO", "predictor"]);
    assert!(info.contains("allocator_policy:predictive"), "{info}");
    assert!(info.contains("allocator_core_capacity_source:pinned"), "{info}");
    let _ = std::fs::remove_file(&config);
}
