//! Load forecasting: a partition's ops per interval in, the peak of the coming horizon out,
//! with an upper quantile (the allocator provisions for the likely peak, not the mean).
//!
//! - `series`: equally spaced series from trace rows (missing intervals are zero ops).
//! - `features`: pure feature functions of a history (calendar, lags, rolling statistics,
//!   trend, op mix, sketches, application shares).
//! - `models`: the models behind one trait, `Model`: last value, seasonal naive (a day or a
//!   week ago), SPAR, the sparse periodic auto-regression of P-Store (Taft et al., SIGMOD
//!   2018), and gradient-boosted regression trees (`gbt`, forust-ml) of the peak.
//! - `forecaster`: what the server runs: per partition the better of SPAR and the global GBT
//!   by recent error, an upper quantile, and the cold-start rule.
//! - `evaluate`: walk-forward evaluation: at each forecast origin a model sees the values
//!   before it and nothing later; peaks are scored by MAPE, MASE against a seasonal naive,
//!   and the coverage of the upper quantile.
//!
//! Time is in steps of the series (an interval each); a day is `Seasons::day_steps` steps, so
//! a compressed day (a demo's minute) works like a real one.

pub mod evaluate;
pub mod features;
pub mod forecaster;
pub mod gbt;
mod linalg;
pub mod models;
pub mod series;

pub use evaluate::{evaluate, Evaluation, ModelScore};
pub use gbt::{Gbt, GlobalGbt};
pub use models::{LastValue, Model, SeasonalNaive, Spar};
pub use series::Series;

/// The seasonal periods of a series, in steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seasons {
    pub day_steps: usize,
    pub week_steps: usize,
}

impl Seasons {
    /// Periods for a series of `step_ms` intervals and a day of `day_ms` (a week is 7 days).
    pub fn new(step_ms: u64, day_ms: u64) -> Seasons {
        let day_steps = (day_ms / step_ms.max(1)).max(1) as usize;
        Seasons { day_steps, week_steps: day_steps * 7 }
    }
}
