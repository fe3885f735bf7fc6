//! forust-ml 0.8 against gbdt 0.1 on one regression: 5,000 training rows of 20 features
//! (a seeded nonlinear function with noise, like the forecaster's scale-free features), 100
//! trees of depth 5, learning rate 0.1, single-threaded; then 1,000 held-out rows.
//! Prints fit time, prediction time per row and the held-out RMSE of each.

use std::time::Instant;

const TRAIN: usize = 5_000;
const TEST: usize = 1_000;
const FEATURES: usize = 20;

fn data(n: usize, seed: &mut u64) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut next = || {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let mut xs = Vec::with_capacity(n);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let x: Vec<f64> = (0..FEATURES).map(|_| next()).collect();
        let y = (x[0] * 6.0).sin()
            + 2.0 * x[1] * x[2]
            + (x[3] - 0.5).abs() * 3.0
            + if x[4] > 0.7 { 1.5 } else { 0.0 }
            + 0.1 * (next() - 0.5);
        xs.push(x);
        ys.push(y);
    }
    (xs, ys)
}

fn rmse(p: &[f64], y: &[f64]) -> f64 {
    (p.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64).sqrt()
}

fn main() {
    let mut seed = 42;
    let (xtr, ytr) = data(TRAIN, &mut seed);
    let (xte, yte) = data(TEST, &mut seed);

    // forust-ml: column-major matrix.
    let col = |xs: &[Vec<f64>]| -> Vec<f64> {
        let mut d = vec![0.0; xs.len() * FEATURES];
        for (r, x) in xs.iter().enumerate() {
            for c in 0..FEATURES {
                d[c * xs.len() + r] = x[c];
            }
        }
        d
    };
    let (dtr, dte) = (col(&xtr), col(&xte));
    let mut b = forust_ml::GradientBooster::default()
        .set_objective_type(forust_ml::objective::ObjectiveType::SquaredLoss)
        .set_iterations(100)
        .set_max_depth(5)
        .set_learning_rate(0.1)
        .set_parallel(false);
    let t = Instant::now();
    b.fit(&forust_ml::Matrix::new(&dtr, TRAIN, FEATURES), &ytr, &vec![1.0; TRAIN], None).unwrap();
    let fit = t.elapsed();
    let t = Instant::now();
    let p = b.predict(&forust_ml::Matrix::new(&dte, TEST, FEATURES), false);
    let pred = t.elapsed();
    println!(
        "forust-ml 0.8: fit {:.3} s, predict {:.2} us/row, held-out RMSE {:.4}",
        fit.as_secs_f64(),
        pred.as_secs_f64() * 1e6 / TEST as f64,
        rmse(&p, &yte)
    );

    // gbdt: its own config and data vector.
    use gbdt::config::Config;
    use gbdt::decision_tree::{Data, DataVec};
    use gbdt::gradient_boost::GBDT;
    let mut cfg = Config::new();
    cfg.set_feature_size(FEATURES);
    cfg.set_max_depth(5);
    cfg.set_iterations(100);
    cfg.set_shrinkage(0.1);
    cfg.set_loss("SquaredError");
    let to_data = |xs: &[Vec<f64>], ys: &[f64]| -> DataVec {
        xs.iter()
            .zip(ys)
            .map(|(x, y)| {
                Data::new_training_data(x.iter().map(|v| *v as f32).collect(), 1.0, *y as f32, None)
            })
            .collect()
    };
    let mut train = to_data(&xtr, &ytr);
    let test = to_data(&xte, &yte);
    let mut g = GBDT::new(&cfg);
    let t = Instant::now();
    g.fit(&mut train);
    let fit = t.elapsed();
    let t = Instant::now();
    let p: Vec<f64> = g.predict(&test).iter().map(|v| *v as f64).collect();
    let pred = t.elapsed();
    println!(
        "gbdt 0.1:     fit {:.3} s, predict {:.2} us/row, held-out RMSE {:.4}",
        fit.as_secs_f64(),
        pred.as_secs_f64() * 1e6 / TEST as f64,
        rmse(&p, &yte)
    );
}
