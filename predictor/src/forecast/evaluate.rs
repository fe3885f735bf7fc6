//! Walk-forward evaluation of forecasts of the peak: at each origin a model sees the values
//! before it and nothing later (the history is a prefix slice), forecasts the horizon, and is
//! scored on the horizon's actual peak once the data has it.
//!
//! Scores, pooled over origins (and over partitions with `Tally::merge`):
//! - `mape_pct`: mean of |peak error| / actual peak, over origins whose actual peak is > 0;
//! - `mase`: the model's mean absolute peak error over the reference's at the same origins,
//!   the reference being the weekly seasonal naive when the series covers two weeks and a
//!   horizon, else the daily one (below 1: better than the reference);
//! - `coverage_pct`: how often the actual peak was at most the upper quantile. The upper
//!   quantile is the peak plus the `quantile` of the model's own past peak errors, counting
//!   only errors already known at the origin (their horizons ended before it).
//!
//! The predictor reads no clock: the caller passes `now_ns` to time fits and forecasts.

use super::models::{Model, Period, SeasonalNaive};
use super::Seasons;
use std::collections::VecDeque;

/// Past peak errors kept per model for the upper quantile.
pub const RESIDUALS_MAX: usize = 1_000;

/// How to walk forward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalConfig {
    pub seasons: Seasons,
    /// Steps whose peak is forecast.
    pub horizon: usize,
    /// Steps between forecast origins.
    pub every: usize,
    /// Origins between refits (1: refit at every origin).
    pub retrain_every: usize,
    /// The upper quantile's level, e.g. 0.9.
    pub quantile: f64,
    /// Steps of history before the first origin (at least the reference's period).
    pub warmup: usize,
}

/// Sums that scores are derived from; merge them to pool partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub origins: u64,
    pub abs_error: f64,
    pub reference_abs_error: f64,
    pub ape_sum: f64,
    pub ape_count: u64,
    pub covered: u64,
    pub fit_ns: u64,
    pub forecast_ns: u64,
}

impl Tally {
    pub fn merge(&mut self, o: &Tally) {
        self.origins += o.origins;
        self.abs_error += o.abs_error;
        self.reference_abs_error += o.reference_abs_error;
        self.ape_sum += o.ape_sum;
        self.ape_count += o.ape_count;
        self.covered += o.covered;
        self.fit_ns += o.fit_ns;
        self.forecast_ns += o.forecast_ns;
    }

    pub fn mape_pct(&self) -> f64 {
        100.0 * self.ape_sum / self.ape_count.max(1) as f64
    }

    /// NaN when the reference made no error at all.
    pub fn mase(&self) -> f64 {
        if self.reference_abs_error > 0.0 {
            self.abs_error / self.reference_abs_error
        } else {
            f64::NAN
        }
    }

    pub fn coverage_pct(&self) -> f64 {
        100.0 * self.covered as f64 / self.origins.max(1) as f64
    }
}

/// One model's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelScore {
    pub model: String,
    pub tally: Tally,
}

/// All models' results on one series, and the reference used for MASE.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub reference: String,
    pub scores: Vec<ModelScore>,
}

/// The reference for MASE on a series of `len` steps.
pub fn reference_for(len: usize, cfg: &EvalConfig) -> SeasonalNaive {
    if len >= 2 * cfg.seasons.week_steps + cfg.horizon {
        SeasonalNaive(Period::Week)
    } else {
        SeasonalNaive(Period::Day)
    }
}

/// The forecast origins of a series of `len` steps.
pub fn origins(len: usize, cfg: &EvalConfig, reference: &SeasonalNaive) -> Vec<usize> {
    let first = cfg.warmup.max(reference.0.steps(cfg.seasons)).max(1);
    let h = cfg.horizon.max(1);
    if len < first + h {
        return Vec::new();
    }
    (first..=len - h).step_by(cfg.every.max(1)).collect()
}

/// The largest value (0 for none: loads are not negative).
pub(crate) fn peak(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// The `q` quantile of `v` (nearest rank), 0 for none.
pub(crate) fn quantile(v: &VecDeque<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    let i = ((q.clamp(0.0, 1.0) * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

/// Evaluates `models` on `values` (see the module doc).
pub fn evaluate(
    values: &[f64],
    models: &mut [Box<dyn Model>],
    cfg: &EvalConfig,
    now_ns: &dyn Fn() -> u64,
) -> Evaluation {
    let h = cfg.horizon.max(1);
    let reference = reference_for(values.len(), cfg);
    let at = origins(values.len(), cfg, &reference);
    let reference_errors: Vec<f64> = at
        .iter()
        .map(|&o| {
            let f = reference.forecast(&values[..o], cfg.seasons, h);
            (peak(&values[o..o + h]) - peak(&f)).abs()
        })
        .collect();
    let mut scores = Vec::new();
    for model in models.iter_mut() {
        let mut t = Tally::default();
        // Past origins and their errors, for the upper quantile: (origin, error).
        let mut pending: VecDeque<(usize, f64)> = VecDeque::new();
        let mut known: VecDeque<f64> = VecDeque::new();
        for (n, &o) in at.iter().enumerate() {
            let history = &values[..o];
            if n % cfg.retrain_every.max(1) == 0 {
                let start = now_ns();
                model.fit(history, cfg.seasons, h);
                t.fit_ns += now_ns().saturating_sub(start);
            }
            let start = now_ns();
            let forecast = model.forecast(history, cfg.seasons, h);
            t.forecast_ns += now_ns().saturating_sub(start);
            // Errors whose horizon ended by this origin are known now.
            while pending.front().is_some_and(|&(p, _)| p + h <= o) {
                let (_, e) = pending.pop_front().expect("checked");
                known.push_back(e);
                if known.len() > RESIDUALS_MAX {
                    known.pop_front();
                }
            }
            let predicted = peak(&forecast);
            let upper = predicted + quantile(&known, cfg.quantile).max(0.0);
            let actual = peak(&values[o..o + h]);
            let error = actual - predicted;
            pending.push_back((o, error));
            t.origins += 1;
            t.abs_error += error.abs();
            t.reference_abs_error += reference_errors[n];
            if actual > 0.0 {
                t.ape_sum += error.abs() / actual;
                t.ape_count += 1;
            }
            t.covered += u64::from(actual <= upper);
        }
        scores.push(ModelScore { model: model.name(), tally: t });
    }
    Evaluation { reference: reference.name_for_report(), scores }
}

/// Walks one model of all series (`GlobalGbt`) forward over series of equal length (the
/// partitions of one trace on one grid): at each origin it is refit (per `retrain_every`) on
/// every series' prefix and forecasts every series' peak in one batch. Scored as `evaluate`
/// scores a model, pooled over the series.
pub fn evaluate_global(
    series: &[&[f64]],
    model: &mut super::gbt::GlobalGbt,
    cfg: &EvalConfig,
    now_ns: &dyn Fn() -> u64,
) -> Tally {
    let h = cfg.horizon.max(1);
    let len = series.iter().map(|s| s.len()).min().unwrap_or(0);
    let reference = reference_for(len, cfg);
    let at = origins(len, cfg, &reference);
    let mut t = Tally::default();
    let mut pending: VecDeque<(usize, Vec<f64>)> = VecDeque::new();
    let mut known: Vec<VecDeque<f64>> = vec![VecDeque::new(); series.len()];
    for (n, &o) in at.iter().enumerate() {
        let prefixes: Vec<&[f64]> = series.iter().map(|s| &s[..o]).collect();
        if n % cfg.retrain_every.max(1) == 0 {
            let start = now_ns();
            model.fit(&prefixes, cfg.seasons, h);
            t.fit_ns += now_ns().saturating_sub(start);
        }
        let start = now_ns();
        let peaks = model.forecast_peaks(&prefixes, cfg.seasons, h);
        t.forecast_ns += now_ns().saturating_sub(start);
        while pending.front().is_some_and(|(p, _)| p + h <= o) {
            let (_, errors) = pending.pop_front().expect("checked");
            for (k, e) in known.iter_mut().zip(errors) {
                k.push_back(e);
                if k.len() > RESIDUALS_MAX {
                    k.pop_front();
                }
            }
        }
        let mut errors = Vec::with_capacity(series.len());
        for (i, s) in series.iter().enumerate() {
            let actual = peak(&s[o..o + h]);
            let error = actual - peaks[i];
            let upper = peaks[i] + quantile(&known[i], cfg.quantile).max(0.0);
            let reference_peak = peak(&reference.forecast(&s[..o], cfg.seasons, h));
            t.origins += 1;
            t.abs_error += error.abs();
            t.reference_abs_error += (actual - reference_peak).abs();
            if actual > 0.0 {
                t.ape_sum += error.abs() / actual;
                t.ape_count += 1;
            }
            t.covered += u64::from(actual <= upper);
            errors.push(error);
        }
        pending.push_back((o, errors));
    }
    t
}

impl SeasonalNaive {
    fn name_for_report(&self) -> String {
        use super::models::Model as _;
        self.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::models::{LastValue, Spar};
    use std::cell::RefCell;
    use std::rc::Rc;

    const S: Seasons = Seasons { day_steps: 24, week_steps: 168 };

    fn cfg(horizon: usize) -> EvalConfig {
        EvalConfig { seasons: S, horizon, every: 3, retrain_every: 4, quantile: 0.9, warmup: 0 }
    }

    /// Records what each call was given, and checks it against the whole series.
    struct Spy {
        full: Vec<f64>,
        calls: Rc<RefCell<Vec<(usize, usize)>>>,
    }

    impl Model for Spy {
        fn name(&self) -> String {
            "spy".into()
        }

        fn fit(&mut self, history: &[f64], _: Seasons, _: usize) {
            assert_eq!(history, &self.full[..history.len()], "fit on a prefix");
            self.calls.borrow_mut().push((history.len(), 0));
        }

        fn forecast(&self, history: &[f64], _: Seasons, horizon: usize) -> Vec<f64> {
            assert_eq!(history, &self.full[..history.len()], "forecast from a prefix");
            self.calls.borrow_mut().push((history.len(), horizon));
            vec![0.0; horizon]
        }
    }

    /// No model ever sees a value at or after its forecast origin: every fit and forecast gets
    /// exactly the prefix before the origin, and the horizon scored is the steps after it.
    #[test]
    fn no_model_sees_a_row_later_than_its_forecast_time() {
        let full: Vec<f64> = (0..500).map(|i| ((i * 37) % 101) as f64).collect();
        let calls = Rc::new(RefCell::new(Vec::new()));
        let mut models: Vec<Box<dyn Model>> =
            vec![Box::new(Spy { full: full.clone(), calls: calls.clone() })];
        let c = cfg(6);
        let e = evaluate(&full, &mut models, &c, &|| 0);
        let origins = origins(full.len(), &c, &reference_for(full.len(), &c));
        assert_eq!(e.scores[0].tally.origins as usize, origins.len());
        let forecasts: Vec<usize> =
            calls.borrow().iter().filter(|c| c.1 > 0).map(|c| c.0).collect();
        assert_eq!(forecasts, origins, "one forecast per origin, from the prefix before it");
        for &(len, _) in calls.borrow().iter() {
            assert!(origins.contains(&len), "a call saw {len} values, not an origin's prefix");
        }
        assert!(origins.iter().all(|&o| o + 6 <= full.len()));
    }

    /// A series that repeats daily: the daily seasonal naive is exact (MASE 0 against itself
    /// is undefined, so the reference here is the weekly one over three weeks), last value is
    /// far off, and the upper quantile covers what it should.
    #[test]
    fn scores_rank_models_on_a_daily_series() {
        let y: Vec<f64> = (0..24 * 7 * 3)
            .map(|i| 100.0 + 80.0 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin())
            .collect();
        let mut models: Vec<Box<dyn Model>> = vec![
            Box::new(LastValue),
            Box::new(SeasonalNaive(Period::Day)),
            Box::new(Spar::new(Period::Day)),
        ];
        let e = evaluate(&y, &mut models, &cfg(6), &|| 0);
        assert_eq!(e.reference, "seasonal_naive_week");
        let [last, naive, spar] = [&e.scores[0].tally, &e.scores[1].tally, &e.scores[2].tally];
        assert!(naive.abs_error < 1e-9, "the daily naive is exact here: {naive:?}");
        assert!(spar.mape_pct() < 1.0, "{}", spar.mape_pct());
        assert!(last.mape_pct() > 10.0, "{}", last.mape_pct());
        assert!(last.coverage_pct() >= 80.0, "the residual quantile widens last value's bound");
    }

    #[test]
    fn too_short_a_series_has_no_origins() {
        let mut models: Vec<Box<dyn Model>> = vec![Box::new(LastValue)];
        let e = evaluate(&[1.0; 20], &mut models, &cfg(6), &|| 0);
        assert_eq!(e.scores[0].tally.origins, 0);
        assert!(e.scores[0].tally.mase().is_nan());
    }
}
