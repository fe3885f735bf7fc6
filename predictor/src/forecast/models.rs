//! The forecasting models, behind one trait. Each forecasts the values of the next steps
//! from the history before the forecast origin; the peak of the horizon is their maximum.

use super::linalg::least_squares;
use super::Seasons;

/// A forecasting model. `history` is always everything before the forecast origin and nothing
/// after it (`evaluate` and the server both hold to that).
pub trait Model {
    fn name(&self) -> String;
    /// Learns from `history`; called before the first `forecast` and whenever the caller
    /// retrains. Models without parameters ignore it.
    fn fit(&mut self, history: &[f64], seasons: Seasons, horizon: usize);
    /// The forecasts of the `horizon` steps after `history`.
    fn forecast(&self, history: &[f64], seasons: Seasons, horizon: usize) -> Vec<f64>;
}

/// Every step is the last value seen (the reactive baseline).
#[derive(Debug, Default, Clone)]
pub struct LastValue;

impl Model for LastValue {
    fn name(&self) -> String {
        "last_value".into()
    }

    fn fit(&mut self, _: &[f64], _: Seasons, _: usize) {}

    fn forecast(&self, history: &[f64], _: Seasons, horizon: usize) -> Vec<f64> {
        vec![history.last().copied().unwrap_or(0.0); horizon]
    }
}

/// Which season a seasonal model repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn steps(self, seasons: Seasons) -> usize {
        match self {
            Period::Day => seasons.day_steps,
            Period::Week => seasons.week_steps,
        }
        .max(1)
    }
}

/// Each step is the value at the same time one period earlier; with less than a period of
/// history, the last value.
#[derive(Debug, Clone)]
pub struct SeasonalNaive(pub Period);

impl Model for SeasonalNaive {
    fn name(&self) -> String {
        match self.0 {
            Period::Day => "seasonal_naive_day".into(),
            Period::Week => "seasonal_naive_week".into(),
        }
    }

    fn fit(&mut self, _: &[f64], _: Seasons, _: usize) {}

    fn forecast(&self, history: &[f64], seasons: Seasons, horizon: usize) -> Vec<f64> {
        let p = self.0.steps(seasons);
        let n = history.len();
        if n < p {
            return LastValue.forecast(history, seasons, horizon);
        }
        // Step n + k repeats step n + k - p * (k / p + 1), always inside the history.
        (0..horizon).map(|k| history[n + k - p * (k / p + 1)]).collect()
    }
}

/// Past periods SPAR averages over, recent lags it corrects with, and the most training
/// samples per horizon step (the newest are kept).
pub const SPAR_PERIODS: usize = 3;
pub const SPAR_LAGS: usize = 4;
pub const SPAR_TRAIN_SAMPLES_MAX: usize = 4_096;

/// SPAR, the sparse periodic auto-regression of P-Store (Taft et al., SIGMOD 2018): the value
/// `tau` steps ahead is a weighted sum of the values at the same time in the last `n` periods,
/// plus a weighted sum of how far the last `m` values stood from their own periodic means,
/// plus a constant:
///
/// `y(t+tau) = sum_k a_k y(t+tau-kT) + sum_j b_j (y(t-j) - ybar(t-j)) + c`,
/// `ybar(s) = (1/n) sum_k y(s-kT)`,
///
/// one least-squares fit per `tau` (1..=horizon, at most one period) on the history's samples.
/// `T` is the day (or the week, `Period::Week`). Steps it has no fit for (too little history,
/// or beyond one period) are forecast as the seasonal naive of its period.
#[derive(Debug, Clone)]
pub struct Spar {
    pub period: Period,
    /// Coefficients per horizon step: `a` (n), `b` (m), `c`.
    coefficients: Vec<Vec<f64>>,
}

impl Spar {
    pub fn new(period: Period) -> Spar {
        Spar { period, coefficients: Vec::new() }
    }

    /// The fitted coefficients, per horizon step (for persisting a fitted model).
    pub fn coefficients(&self) -> &[Vec<f64>] {
        &self.coefficients
    }

    /// A fitted model from `coefficients` (each step's `a`, `b` and `c`); `None` if a step
    /// has the wrong number of them or a value that is not finite.
    pub fn from_coefficients(period: Period, coefficients: Vec<Vec<f64>>) -> Option<Spar> {
        let ok = coefficients
            .iter()
            .all(|c| c.len() == SPAR_PERIODS + SPAR_LAGS + 1 && c.iter().all(|v| v.is_finite()));
        ok.then_some(Spar { period, coefficients })
    }

    /// The regressors for forecasting `tau` steps after origin `t` (exclusive end of the
    /// known values), or `None` if the history is too short.
    fn regressors(y: &[f64], t: usize, tau: usize, p: usize) -> Option<Vec<f64>> {
        let (n, m) = (SPAR_PERIODS, SPAR_LAGS);
        // The same time one period earlier must be known at the origin (tau <= p), and the
        // oldest index touched (lag m-1, n periods back) must exist.
        if tau > p || t < m + n * p {
            return None;
        }
        let target = t + tau - 1;
        let mut x = Vec::with_capacity(n + m + 1);
        for k in 1..=n {
            x.push(y[target - k * p]);
        }
        for j in 0..m {
            let s = t - 1 - j;
            let mean = (1..=n).map(|k| y[s - k * p]).sum::<f64>() / n as f64;
            x.push(y[s] - mean);
        }
        x.push(1.0);
        Some(x)
    }
}

impl Model for Spar {
    fn name(&self) -> String {
        match self.period {
            Period::Day => "spar_day".into(),
            Period::Week => "spar_week".into(),
        }
    }

    fn fit(&mut self, history: &[f64], seasons: Seasons, horizon: usize) {
        let p = self.period.steps(seasons);
        self.coefficients.clear();
        for tau in 1..=horizon {
            let mut rows = Vec::new();
            let mut ys = Vec::new();
            // Origins t whose target t + tau - 1 is inside the history, newest first.
            let last = history.len().saturating_sub(tau);
            for t in (0..=last).rev() {
                if rows.len() >= SPAR_TRAIN_SAMPLES_MAX {
                    break;
                }
                if let Some(x) = Spar::regressors(history, t, tau, p) {
                    rows.push(x);
                    ys.push(history[t + tau - 1]);
                }
            }
            // Fewer samples than coefficients: no fit for this step (and those after it).
            if rows.len() <= SPAR_PERIODS + SPAR_LAGS + 1 {
                break;
            }
            match least_squares(&rows, &ys) {
                Some(c) if c.iter().all(|v| v.is_finite()) => self.coefficients.push(c),
                _ => break,
            }
        }
    }

    fn forecast(&self, history: &[f64], seasons: Seasons, horizon: usize) -> Vec<f64> {
        let p = self.period.steps(seasons);
        let naive = SeasonalNaive(self.period).forecast(history, seasons, horizon);
        (1..=horizon)
            .map(|tau| {
                let c = self.coefficients.get(tau - 1);
                match (c, Spar::regressors(history, history.len(), tau, p)) {
                    (Some(c), Some(x)) => {
                        let v: f64 = c.iter().zip(&x).map(|(a, b)| a * b).sum();
                        v.max(0.0)
                    }
                    _ => naive[tau - 1],
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seasons(day: usize) -> Seasons {
        Seasons { day_steps: day, week_steps: day * 7 }
    }

    #[test]
    fn last_value_repeats_the_last_value() {
        assert_eq!(LastValue.forecast(&[1.0, 5.0], seasons(4), 3), vec![5.0; 3]);
        assert_eq!(LastValue.forecast(&[], seasons(4), 2), vec![0.0; 2]);
    }

    /// The seasonal naive repeats the last period, wrapping for horizons past one period.
    #[test]
    fn seasonal_naive_repeats_the_last_period() {
        let h: Vec<f64> = (0..8).map(f64::from).collect();
        let m = SeasonalNaive(Period::Day);
        assert_eq!(m.forecast(&h, seasons(4), 6), vec![4.0, 5.0, 6.0, 7.0, 4.0, 5.0]);
        assert_eq!(m.forecast(&h[..3], seasons(4), 2), vec![2.0, 2.0], "short: last value");
        let w = SeasonalNaive(Period::Week);
        let long: Vec<f64> = (0..30).map(f64::from).collect();
        assert_eq!(w.forecast(&long, seasons(2), 2), vec![16.0, 17.0]);
    }

    /// On a daily pattern whose level jumps by a random amount every morning, SPAR's
    /// correction by the recent deviation from the periodic mean beats the seasonal naive
    /// (yesterday's level) and last value (no pattern), in the afternoon after a jump.
    #[test]
    fn spar_corrects_a_daily_pattern_by_the_days_level() {
        let day = 24;
        let mut seed = 12345u64;
        let mut levels = Vec::new();
        for _ in 0..40 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            levels.push(100.0 + ((seed >> 33) % 100) as f64);
        }
        let y: Vec<f64> = (0..day * 40)
            .map(|i| {
                let shape = 50.0 * (std::f64::consts::TAU * (i % day) as f64 / day as f64).sin();
                // The day's level holds from 06:00 to the next 06:00.
                levels[(i + day - 6) / day % 40] + shape
            })
            .collect();
        let s = seasons(day);
        let (mut e_spar, mut e_naive, mut e_last) = (0.0, 0.0, 0.0);
        for d in 30..39 {
            let origin = d * day + 12;
            let (history, actual) = (&y[..origin], &y[origin..origin + 6]);
            let mut spar = Spar::new(Period::Day);
            spar.fit(history, s, 6);
            let err = |f: Vec<f64>| f.iter().zip(actual).map(|(a, b)| (a - b).abs()).sum::<f64>();
            e_spar += err(spar.forecast(history, s, 6));
            e_naive += err(SeasonalNaive(Period::Day).forecast(history, s, 6));
            e_last += err(LastValue.forecast(history, s, 6));
        }
        assert!(
            e_spar < e_naive / 2.0 && e_spar < e_last / 2.0,
            "spar {e_spar} naive {e_naive} last {e_last}"
        );
    }
}
