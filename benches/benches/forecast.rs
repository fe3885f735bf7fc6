//! Forecasting for many partitions at once: the prediction for 10,000 partitions must take
//! under 50 ms on one core (docs/forecasting.md). Models are fit before the timed part; the
//! time is one forecast of every partition's peak.
//! Run: `cargo bench -p shardcast-benches --bench forecast`.

use criterion::{criterion_group, criterion_main, Criterion};
use shardcast_predictor::forecast::models::{Model, Period, Spar};
use shardcast_predictor::forecast::{GlobalGbt, Seasons};

const PARTITIONS: usize = 10_000;
const STEPS: usize = 24 * 7 * 2 + 24;
const HORIZON: usize = 3;
const SEASONS: Seasons = Seasons { day_steps: 24, week_steps: 168 };

/// Hourly series with a daily shape, each partition its own level, phase and noise.
fn series() -> Vec<Vec<f64>> {
    let mut seed = 1u64;
    (0..PARTITIONS)
        .map(|p| {
            let level = 100.0 + (p % 97) as f64 * 10.0;
            (0..STEPS)
                .map(|i| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let noise = ((seed >> 33) % 1000) as f64 / 1000.0 - 0.5;
                    let day = ((i + p) % 24) as f64 / 24.0 * std::f64::consts::TAU;
                    level * (1.0 + 0.5 * day.sin()) * (1.0 + 0.1 * noise)
                })
                .collect()
        })
        .collect()
}

fn forecast_many(c: &mut Criterion) {
    let all = series();
    let histories: Vec<&[f64]> = all.iter().map(|s| s.as_slice()).collect();
    let mut g = c.benchmark_group("forecast_10000_partitions");
    g.sample_size(10);
    let mut global = GlobalGbt::default();
    global.fit(&histories, SEASONS, HORIZON);
    g.bench_function("gbt_global", |b| {
        b.iter(|| criterion::black_box(global.forecast_peaks(&histories, SEASONS, HORIZON)))
    });
    let spars: Vec<Spar> = histories
        .iter()
        .map(|h| {
            let mut m = Spar::new(Period::Day);
            m.fit(h, SEASONS, HORIZON);
            m
        })
        .collect();
    g.bench_function("spar_day", |b| {
        b.iter(|| {
            for (m, h) in spars.iter().zip(&histories) {
                criterion::black_box(m.forecast(h, SEASONS, HORIZON));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, forecast_many);
criterion_main!(benches);
