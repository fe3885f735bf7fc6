//! The forecaster in the server: from the load history, on the control thread, every
//! partition gets a forecast peak with an upper quantile (SHARDCAST PREDICT, INFO predictor,
//! /metrics); a partition with enough history gets a seasonal model, a new one the cold-start
//! rule. Days are compressed to 2 s of 100 ms ticks here.

mod common;

use common::Server;
use std::time::{Duration, Instant};

fn predict(c: &mut redis::Connection) -> Vec<std::collections::HashMap<String, String>> {
    let rows: Vec<Vec<redis::Value>> = redis::cmd("SHARDCAST").arg("PREDICT").query(c).unwrap();
    rows.into_iter()
        .map(|fields| {
            fields
                .chunks(2)
                .map(|p| {
                    let k: String = redis::from_redis_value(&p[0]).unwrap();
                    let v: String = match &p[1] {
                        redis::Value::Int(i) => i.to_string(),
                        other => redis::from_redis_value(other).unwrap(),
                    };
                    (k, v)
                })
                .collect()
        })
        .collect()
}

/// How a partition with a day and a horizon of history is forecast: by a model (the steady
/// load here has no season, so the last peak often scores best), never by a cold-start rule.
const WARM: [&str; 3] = ["spar", "gbt_global", "last_peak"];

#[test]
fn partitions_get_forecasts_seasonal_when_warm_and_by_rule_when_new() {
    let dir = std::env::temp_dir().join(format!("shardcast-predict-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "tick-ms = 100\npredict-step-s = 0.1\npredict-day-s = 2\npredict-horizon-s = 0.5\npredict-fit-interval-s = 3\n",
    )
    .unwrap();
    let mut srv = Server::start("predict", &["--cores", "2", "--config", cfg.to_str().unwrap()]);
    let mut c = srv.client();
    // Three compressed days of steady writes to `busy`: past the cold start (a day and a
    // horizon of history).
    let until = Instant::now() + Duration::from_millis(3_500);
    let mut i = 0u64;
    while Instant::now() < until {
        let _: () =
            redis::cmd("SET").arg(format!("busy:{}", i % 500)).arg(i).query(&mut c).unwrap();
        i += 1;
        if i.is_multiple_of(50) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _: () = redis::cmd("SET").arg("fresh:1").arg(1).query(&mut c).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let rows = predict(&mut c);
        let busy_warm =
            rows.iter().any(|r| r["partition"] == "busy" && WARM.contains(&r["basis"].as_str()));
        let fresh = rows.iter().any(|r| r["partition"] == "fresh");
        if busy_warm && fresh {
            break rows;
        }
        assert!(Instant::now() < deadline, "no warm forecast for busy and one for fresh: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let busy = rows.iter().find(|r| r["partition"] == "busy").unwrap();
    assert!(WARM.contains(&busy["basis"].as_str()), "{busy:?}");
    let (peak, upper): (f64, f64) =
        (busy["peak_ops_per_sec"].parse().unwrap(), busy["upper_ops_per_sec"].parse().unwrap());
    assert!(peak > 0.0 && upper >= peak, "{busy:?}");
    let fresh = rows.iter().find(|r| r["partition"] == "fresh").unwrap();
    assert!(["similar", "reactive"].contains(&fresh["basis"].as_str()), "{fresh:?}");
    let info: String = redis::cmd("INFO").arg("predictor").query(&mut c).unwrap();
    assert!(
        info.contains("predictor_partitions:") && info.contains("predictor_horizon_s:0.5"),
        "{info}"
    );
    let one: Vec<redis::Value> =
        redis::cmd("SHARDCAST").arg("PREDICT").arg("busy").query(&mut c).unwrap();
    assert_eq!(one.len(), 1);
    let help = srv.cli(&["SHARDCAST", "HELP"]);
    assert!(help.contains("PREDICT"), "{help}");

    // A restart resumes warm: the models come back from `predictor.state` (written after each
    // fit and at shutdown) and forecast at once, before the next refit.
    drop(c);
    srv.terminate();
    assert!(srv.dir.join("predictor.state").exists());
    srv.restart();
    let mut c = srv.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO").arg("predictor").query(&mut c).unwrap();
        let rows = predict(&mut c);
        if rows.iter().any(|r| r["partition"] == "busy") {
            assert!(info.contains("predictor_models:loaded"), "{info}");
            let busy = rows.iter().find(|r| r["partition"] == "busy").unwrap();
            assert!(WARM.contains(&busy["basis"].as_str()), "{busy:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no forecast after the restart: {info}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(&dir).ok();
}
