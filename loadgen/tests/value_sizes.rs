//! Statistical checks of the value-size distributions (fixed seeds).

use shardcast_loadgen::dist::ValueSize;
use shardcast_loadgen::rng::Rng;

const SAMPLES: usize = 200_000;

fn sample(v: &ValueSize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    (0..SAMPLES).map(|_| v.sample(&mut rng)).collect()
}

#[test]
fn fixed_is_fixed() {
    assert!(sample(&ValueSize::Fixed { bytes: 1000 }, 1).iter().all(|&x| x == 1000));
}

#[test]
fn uniform_covers_its_bounds_with_the_right_mean() {
    let s = sample(&ValueSize::Uniform { min: 100, max: 400 }, 2);
    assert_eq!(*s.iter().min().unwrap(), 100);
    assert_eq!(*s.iter().max().unwrap(), 400);
    let mean = s.iter().sum::<u64>() as f64 / SAMPLES as f64;
    // sd of the mean: 87 / sqrt(200000) ~ 0.2
    assert!((mean - 250.0).abs() < 1.5, "mean {mean}");
}

#[test]
fn pareto_matches_the_fast20_value_model() {
    // Generalized Pareto, k = 0.2615, sigma = 25.45, theta = 0 (db_bench -value_k/-value_sigma).
    let (k, sigma) = (0.2615f64, 25.45f64);
    let v = ValueSize::Pareto { k, sigma, theta: 0.0, max: 1024 };
    let mut s = sample(&v, 3);
    s.sort_unstable();
    let q = |p: f64| s[(p * SAMPLES as f64) as usize] as f64;
    let quantile = |p: f64| sigma * ((1.0 - p).powf(-k) - 1.0) / k;
    for p in [0.5, 0.9, 0.99] {
        let want = quantile(p);
        assert!((q(p) - want).abs() < 1.0 + 0.03 * want, "q{p}: {} vs {want}", q(p));
    }
    // Mean sigma / (1 - k) = 34.5 bytes (the truncation at 1024 removes < 0.1% of the mass).
    let mean = s.iter().sum::<u64>() as f64 / SAMPLES as f64;
    assert!((mean - sigma / (1.0 - k)).abs() < 1.5, "mean {mean}");
    assert!(*s.first().unwrap() >= 1 && *s.last().unwrap() <= 1024);
}
