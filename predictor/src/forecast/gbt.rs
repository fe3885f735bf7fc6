//! Gradient-boosted regression trees (forust-ml, the XGBoost algorithm) that forecast the
//! peak of the horizon directly from features of the history at the origin.
//!
//! Features at origin `t` (history `y[..t]`), all divided by the history's scale (the mean of
//! its last day plus one), so one fit serves any load level:
//! calendar of `t` and of the horizon's middle (time of day and week, sin/cos), the last
//! three values, the peak at the same time one day and one week earlier, the mean and max of
//! the last horizon and of the last day, the trend of the last two horizons, and how far the
//! last horizon stands above the same steps a day and a week earlier (SPAR's correction,
//! as features). A value the
//! history does not have is NaN (forust learns where missing values go).
//! Target: the peak of `y[t..t+H]`, divided by the same scale.
//!
//! Why forust-ml: linfa-trees 0.8 has classification trees only; forust-ml 0.8 builds on
//! stable, fits and predicts single-threaded when asked (`parallel = false`: no thread pool,
//! the predictor's rule), is deterministic with its fixed seed and no subsampling, handles
//! missing values, and serializes a model to JSON in memory (`json_dump`, no file I/O).

use super::features::{calendar, lag, rolling, trend};
use super::models::Model;
use super::Seasons;
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};

/// Training samples per fit (the newest origins).
pub const GBT_TRAIN_SAMPLES_MAX: usize = 3_000;
/// Trees, depth and learning rate of a fit.
pub const GBT_TREES: usize = 80;
pub const GBT_DEPTH: usize = 4;
pub const GBT_LEARNING_RATE: f32 = 0.1;
/// Fewer samples than this: no fit (the seasonal naive answers instead).
pub const GBT_SAMPLES_MIN: usize = 50;

const FEATURES: usize = 19;

/// The boosted trees, fit per partition.
#[derive(Default)]
pub struct Gbt {
    booster: Option<GradientBooster>,
}

impl std::fmt::Debug for Gbt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gbt(fitted: {})", self.booster.is_some())
    }
}

/// The scale of a history: the mean of its last day, plus one.
fn scale(y: &[f64], seasons: Seasons) -> f64 {
    rolling(y, seasons.day_steps).map_or(1.0, |(mean, _)| mean + 1.0)
}

/// The peak of `y[from..from + len]`, if all of it is inside `y[..known]`.
fn window_peak(y: &[f64], from: Option<usize>, len: usize, known: usize) -> f64 {
    match from {
        Some(f) if f + len <= known => y[f..f + len].iter().copied().fold(f64::MIN, f64::max),
        _ => f64::NAN,
    }
}

/// How far the last `h` values stand above the same steps one `period` earlier (SPAR's
/// correction term, as a feature); NaN without that much history.
fn deviation(history: &[f64], period: usize, h: usize) -> f64 {
    let n = history.len();
    if n < period + h {
        return f64::NAN;
    }
    let now: f64 = history[n - h..].iter().sum();
    let then: f64 = history[n - h - period..n - period].iter().sum();
    (now - then) / h as f64
}

/// The features at origin `t` (see the module doc).
fn features(y: &[f64], t: usize, seasons: Seasons, h: usize) -> [f64; FEATURES] {
    let history = &y[..t];
    let s = scale(history, seasons);
    let now = calendar(t, seasons);
    let mid = calendar(t + h / 2, seasons);
    let l = |k: usize| lag(history, k).map_or(f64::NAN, |v| v / s);
    let day_ago = window_peak(y, t.checked_sub(seasons.day_steps), h, t) / s;
    let week_ago = window_peak(y, t.checked_sub(seasons.week_steps), h, t) / s;
    let (mean_h, max_h) = rolling(history, h).unwrap_or((f64::NAN, f64::NAN));
    let (mean_d, max_d) = rolling(history, seasons.day_steps).unwrap_or((f64::NAN, f64::NAN));
    [
        now[0],
        now[1],
        now[2],
        now[3],
        mid[0],
        mid[1],
        mid[2],
        mid[3],
        l(1),
        l(2),
        l(3),
        day_ago,
        week_ago,
        mean_h / s,
        max_h / s,
        max_d / s - mean_d / s,
        trend(history, 2 * h) / s,
        deviation(history, seasons.day_steps, h) / s,
        deviation(history, seasons.week_steps, h) / s,
    ]
}

/// Training samples of `histories`: up to `per_series` of the newest origins of each whose
/// horizon is inside it. Each sample's features use only the values before its origin.
fn samples(
    histories: &[&[f64]],
    seasons: Seasons,
    h: usize,
    per_series: usize,
) -> (Vec<[f64; FEATURES]>, Vec<f64>) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for history in histories {
        let last = history.len().saturating_sub(h);
        let first = last.saturating_sub(per_series).max(h.max(3));
        for t in first..last {
            xs.push(features(&history[..t], t, seasons, h));
            let s = scale(&history[..t], seasons);
            ys.push(history[t..t + h].iter().copied().fold(f64::MIN, f64::max) / s);
        }
    }
    (xs, ys)
}

/// Boosted trees fit on `samples`, or `None` with too few.
fn fit_booster(xs: &[[f64; FEATURES]], ys: &[f64]) -> Option<GradientBooster> {
    let rows = xs.len();
    if rows < GBT_SAMPLES_MIN {
        return None;
    }
    let mut data = vec![0.0; rows * FEATURES];
    for (r, x) in xs.iter().enumerate() {
        for (c, v) in x.iter().enumerate() {
            data[c * rows + r] = *v;
        }
    }
    let matrix = Matrix::new(&data, rows, FEATURES);
    let mut booster = GradientBooster::default()
        .set_objective_type(ObjectiveType::SquaredLoss)
        .set_iterations(GBT_TREES)
        .set_max_depth(GBT_DEPTH)
        .set_learning_rate(GBT_LEARNING_RATE)
        .set_parallel(false)
        .set_seed(0);
    let weights = vec![1.0; rows];
    booster.fit(&matrix, ys, &weights, None).ok().map(|_| booster)
}

/// The forecast peaks of every history at its end, in one batch through `booster`.
fn predict_peaks(
    booster: &GradientBooster,
    histories: &[&[f64]],
    seasons: Seasons,
    h: usize,
) -> Vec<f64> {
    let rows = histories.len();
    let mut data = vec![0.0; rows * FEATURES];
    for (r, history) in histories.iter().enumerate() {
        for (c, v) in features(history, history.len(), seasons, h).iter().enumerate() {
            data[c * rows + r] = *v;
        }
    }
    let out = booster.predict(&Matrix::new(&data, rows, FEATURES), false);
    out.iter().zip(histories).map(|(p, history)| (p * scale(history, seasons)).max(0.0)).collect()
}

impl Model for Gbt {
    fn name(&self) -> String {
        "gbt".into()
    }

    fn fit(&mut self, history: &[f64], seasons: Seasons, horizon: usize) {
        let (xs, ys) = samples(&[history], seasons, horizon.max(1), GBT_TRAIN_SAMPLES_MAX);
        self.booster = fit_booster(&xs, &ys);
    }

    fn forecast(&self, history: &[f64], seasons: Seasons, horizon: usize) -> Vec<f64> {
        let h = horizon.max(1);
        let Some(booster) = &self.booster else {
            return super::models::SeasonalNaive(super::models::Period::Day)
                .forecast(history, seasons, horizon);
        };
        vec![predict_peaks(booster, &[history], seasons, h)[0]; horizon]
    }
}

/// One boosted-trees model for every partition (cross-learning, as the M5 winners did): fit
/// on the samples of all partitions together (the features are scale-free), forecast every
/// partition's peak in one batch.
#[derive(Default)]
pub struct GlobalGbt {
    booster: Option<GradientBooster>,
}

impl GlobalGbt {
    pub fn is_fitted(&self) -> bool {
        self.booster.is_some()
    }

    /// The fitted trees as JSON, if fitted.
    pub fn to_json(&self) -> Option<String> {
        booster_json(&self.booster)
    }

    /// A model from `to_json`'s text.
    pub fn from_json(text: &str) -> Result<GlobalGbt, String> {
        booster_from_json(text).map(|b| GlobalGbt { booster: Some(b) })
    }

    /// Fits on every history (at most `GBT_TRAIN_SAMPLES_MAX` samples in all, the newest
    /// origins of each series alike).
    pub fn fit(&mut self, histories: &[&[f64]], seasons: Seasons, horizon: usize) {
        let per_series = GBT_TRAIN_SAMPLES_MAX / histories.len().max(1);
        let (xs, ys) = samples(histories, seasons, horizon.max(1), per_series.max(1));
        self.booster = fit_booster(&xs, &ys);
    }

    /// The forecast peak of the `horizon` after each history; the daily seasonal naive's
    /// while unfitted.
    pub fn forecast_peaks(
        &self,
        histories: &[&[f64]],
        seasons: Seasons,
        horizon: usize,
    ) -> Vec<f64> {
        let h = horizon.max(1);
        match &self.booster {
            Some(b) => predict_peaks(b, histories, seasons, h),
            None => histories
                .iter()
                .map(|y| {
                    let f = super::models::SeasonalNaive(super::models::Period::Day)
                        .forecast(y, seasons, h);
                    f.into_iter().fold(0.0, f64::max)
                })
                .collect(),
        }
    }
}

impl Gbt {
    /// The fitted trees as JSON (so the server can persist them and restart warm), if fitted.
    pub fn to_json(&self) -> Option<String> {
        booster_json(&self.booster)
    }

    /// A model from `to_json`'s text.
    pub fn from_json(text: &str) -> Result<Gbt, String> {
        booster_from_json(text).map(|b| Gbt { booster: Some(b) })
    }
}

fn booster_json(booster: &Option<GradientBooster>) -> Option<String> {
    booster.as_ref().and_then(|b| b.json_dump().ok())
}

fn booster_from_json(text: &str) -> Result<GradientBooster, String> {
    GradientBooster::from_json(text).map_err(|e| format!("not a boosted-trees model: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::evaluate::{evaluate, EvalConfig};
    use crate::forecast::models::{LastValue, Period, SeasonalNaive};

    /// Four weeks of hourly load with a daily and a weekly pattern, a trend and 10 % noise.
    fn series() -> Vec<f64> {
        let mut seed = 99u64;
        (0..24 * 7 * 4)
            .map(|h: usize| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = ((seed >> 33) % 1000) as f64 / 1000.0 - 0.5;
                let day = (h % 24) as f64 / 24.0 * std::f64::consts::TAU;
                let weekend = if (h / 24) % 7 >= 5 { 0.6 } else { 1.0 };
                let trend = 1.0 + h as f64 / 700.0;
                (1000.0 + 600.0 * day.sin()) * weekend * trend * (1.0 + 0.1 * noise)
            })
            .collect()
    }

    /// The GBT learns the daily and weekly pattern with the trend better than last value and
    /// both seasonal naives, walking forward.
    #[test]
    fn gbt_beats_last_value_and_the_seasonal_naives_on_a_seasonal_series_with_trend() {
        let y = series();
        let s = Seasons { day_steps: 24, week_steps: 168 };
        let cfg = EvalConfig {
            seasons: s,
            horizon: 3,
            every: 3,
            retrain_every: 8,
            quantile: 0.9,
            warmup: 24 * 9,
        };
        let mut models: Vec<Box<dyn Model>> = vec![
            Box::new(LastValue),
            Box::new(SeasonalNaive(Period::Day)),
            Box::new(SeasonalNaive(Period::Week)),
            Box::new(Gbt::default()),
        ];
        let e = evaluate(&y, &mut models, &cfg, &|| 0);
        let mae: Vec<f64> = e.scores.iter().map(|s| s.tally.abs_error).collect();
        let names: Vec<&str> = e.scores.iter().map(|s| s.model.as_str()).collect();
        assert!(
            mae[3] < mae[0] && mae[3] < mae[1] && mae[3] < mae[2],
            "{:?}",
            names.iter().zip(&mae).collect::<Vec<_>>()
        );
    }

    /// One model fit on two partitions at once (at different load levels: the features are
    /// scale-free) forecasts both better than last value.
    #[test]
    fn a_global_model_learns_partitions_of_different_levels_together() {
        use crate::forecast::evaluate::evaluate_global;
        let a = series();
        let b: Vec<f64> = a.iter().map(|v| v * 7.0 + 300.0).collect();
        let s = Seasons { day_steps: 24, week_steps: 168 };
        let cfg = EvalConfig {
            seasons: s,
            horizon: 3,
            every: 3,
            retrain_every: 16,
            quantile: 0.9,
            warmup: 24 * 9,
        };
        let global = evaluate_global(&[&a, &b], &mut GlobalGbt::default(), &cfg, &|| 0);
        let mut last = 0.0;
        for y in [&a, &b] {
            let mut models: Vec<Box<dyn Model>> = vec![Box::new(LastValue)];
            last += evaluate(y, &mut models, &cfg, &|| 0).scores[0].tally.abs_error;
        }
        let per_series = evaluate(&a, &mut [Box::new(LastValue) as Box<dyn Model>], &cfg, &|| 0);
        assert_eq!(global.origins, 2 * per_series.scores[0].tally.origins);
        assert!(global.abs_error < last / 2.0, "global {} last value {last}", global.abs_error);
    }

    /// A fitted model survives a JSON round trip with the same forecasts.
    #[test]
    fn a_fitted_model_round_trips_through_json() {
        let y = series();
        let s = Seasons { day_steps: 24, week_steps: 168 };
        let mut m = Gbt::default();
        m.fit(&y[..400], s, 3);
        let back = Gbt::from_json(&m.to_json().expect("fitted")).unwrap();
        assert_eq!(m.forecast(&y[..450], s, 3), back.forecast(&y[..450], s, 3));
        assert!(Gbt::from_json("{").is_err());
    }
}
