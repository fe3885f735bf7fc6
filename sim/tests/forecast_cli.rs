//! `shardcast-sim forecast` as a user runs it: a trace file in, one row per model out. The
//! trace here is the foreign two-column form (Unix seconds, one count per row), four weeks of
//! hourly counts with a daily and a weekly pattern and noise.

use std::process::Command;

fn sim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-sim")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("shardcast-sim-{name}-{}", std::process::id()))
}

/// A seeded daily + weekly series with 5% noise, hourly, as `ts,count` lines.
fn weekly_trace(weeks: u64) -> String {
    let mut seed = 7u64;
    let mut text = String::from("timestamp,count\n");
    for h in 0..weeks * 7 * 24 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let noise = ((seed >> 33) % 1000) as f64 / 1000.0 - 0.5;
        let day = (h % 24) as f64 / 24.0 * std::f64::consts::TAU;
        let weekend = if (h / 24) % 7 >= 5 { 0.5 } else { 1.0 };
        let v = (1000.0 + 600.0 * day.sin()) * weekend * (1.0 + 0.1 * noise);
        text.push_str(&format!("{},{}\n", 1_700_000_000 + h * 3600, v.round() as u64));
    }
    text
}

#[test]
fn a_two_column_trace_gets_one_row_per_model() {
    let path = temp("weekly.csv");
    std::fs::write(&path, weekly_trace(4)).unwrap();
    let (code, out, err) =
        sim(&["forecast", "--trace", path.to_str().unwrap(), "--horizon-s", "10800"]);
    std::fs::remove_file(&path).ok();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("MASE against seasonal_naive_week"), "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("model,"))
        .map(|l| l.split(',').collect())
        .collect();
    let mase = |model: &str| -> f64 {
        let r = rows.iter().find(|r| r[0] == model).unwrap_or_else(|| panic!("{model}: {out}"));
        r[3].parse().unwrap()
    };
    for r in &rows {
        assert_eq!(r.len(), 7, "{out}");
        let origins: u64 = r[1].parse().unwrap();
        assert!(origins > 100, "{out}");
    }
    assert!((mase("seasonal_naive_week") - 1.0).abs() < 1e-9, "the reference scores 1: {out}");
    assert!(mase("last_value") > 1.5, "{out}");
    assert!(mase("spar_day") < mase("last_value"), "{out}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let (code, _, err) = sim(&["forecast", "--trace", "/nonexistent/trace.csv"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /nonexistent/trace.csv"), "{err}");
    let path = temp("short.csv");
    std::fs::write(&path, "1700000000,5\n1700000060,6\n").unwrap();
    let (code, _, err) = sim(&["forecast", "--trace", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("too short to evaluate"), "{err}");
    std::fs::write(&path, "1700000000,5\n1700000060,x\n").unwrap();
    let (code, _, err) = sim(&["forecast", "--trace", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    assert_eq!(code, 2);
    assert!(err.contains("line 2"), "{err}");
}
