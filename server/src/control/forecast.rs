//! The forecaster on the control thread: every `step` it forecasts every partition of the
//! load history (the predictor's `Forecaster`), refitting every `fit_interval`; the result is
//! published for SHARDCAST PREDICT, INFO predictor and /metrics. Fitting runs here, never on
//! a data core.

use crate::config::PredictSettings;
use shardcast_predictor::forecast::forecaster::{Forecaster, PartitionForecast, PartitionInput};
use shardcast_predictor::forecast::{Seasons, Series};
use shardcast_predictor::history::LoadHistory;
use shardcast_predictor::trace::TraceRow;
use std::sync::Mutex;
use std::time::Instant;

/// The published forecasts, in ops per second.
#[derive(Debug, Clone, Default)]
pub struct Forecasts {
    /// Unix ms of the forecast (0: none yet).
    pub at_ms: u64,
    pub step_ms: u64,
    pub horizon_ms: u64,
    pub partitions: Vec<PartitionForecast>,
    /// When the models were last fit, and how long that took.
    pub fit_at_ms: u64,
    pub fit_ms: f64,
    pub forecast_ms: f64,
    /// The models in use came from the state file of a previous run (not yet refit).
    pub models_loaded: bool,
}

/// The forecaster's fitted models in the data directory (written after each fit and at
/// shutdown, read at start; a damaged one is set aside and the models refit).
pub const PREDICTOR_STATE_FILE: &str = "predictor.state";

/// Runs the forecaster when due.
pub struct Predictor {
    settings: PredictSettings,
    dir: std::path::PathBuf,
    /// The models came from the state file (until the next fit).
    pub loaded: bool,
    forecaster: Forecaster,
    next_at_ms: u64,
    next_fit_at_ms: u64,
    fit_at_ms: u64,
    fit_ms: f64,
}

impl Predictor {
    /// A predictor for `dir`'s history; its models come from `dir`'s state file if it has a
    /// good one (the first refit is then a fit interval away: the restart is warm).
    pub fn new(settings: PredictSettings, dir: &std::path::Path, now_ms: u64) -> Predictor {
        let seasons = Seasons::new(settings.step_ms, settings.day_ms);
        let horizon = (settings.horizon_ms / settings.step_ms).max(1) as usize;
        let mut p = Predictor {
            settings,
            dir: dir.to_path_buf(),
            loaded: false,
            forecaster: Forecaster::new(seasons, horizon, 0.9),
            next_at_ms: 0,
            next_fit_at_ms: 0,
            fit_at_ms: 0,
            fit_ms: 0.0,
        };
        let file = dir.join(PREDICTOR_STATE_FILE);
        match std::fs::read(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot read the forecaster's state")
            }
            Ok(bytes) => match p.forecaster.decode_state(&bytes) {
                Ok(()) => {
                    p.loaded = true;
                    p.next_fit_at_ms = now_ms + settings.fit_interval_ms;
                    tracing::info!(file = %file.display(), "forecaster models read");
                }
                Err(e) => {
                    let aside = super::persist::set_aside(dir, PREDICTOR_STATE_FILE);
                    tracing::error!(file = %file.display(), error = %e, set_aside = %aside.display(),
                        "the forecaster's state could not be read: set aside, the models will be refit");
                }
            },
        }
        p
    }

    /// Writes the fitted models to the data directory.
    pub fn save(&self) {
        let bytes = self.forecaster.encode_state();
        if let Err(e) = super::persist::save_as(&self.dir, PREDICTOR_STATE_FILE, &bytes) {
            tracing::error!(error = %e, "could not write the forecaster's state");
        }
    }

    /// The forecasts, if a step has passed since the last ones.
    pub fn maybe_run(&mut self, now_ms: u64, history: &Mutex<LoadHistory>) -> Option<Forecasts> {
        if now_ms < self.next_at_ms {
            return None;
        }
        let step = self.settings.step_ms;
        self.next_at_ms = now_ms - now_ms % step + step;
        // Copy the rows out, so the history's lock is held only that long.
        let rows: Vec<TraceRow> = {
            let h = history.lock().unwrap_or_else(|e| e.into_inner());
            if step >= 60_000 {
                h.minutes(None)
            } else {
                h.ticks(None)
            }
        };
        // The series end at the last complete step: the one in progress is not over yet.
        let complete: Vec<TraceRow> =
            rows.into_iter().filter(|r| r.ts_ms + step <= now_ms - now_ms % step).collect();
        let series = Series::from_rows(&complete, step);
        let by_partition: Vec<Vec<TraceRow>> = series
            .iter()
            .map(|s| complete.iter().filter(|r| r.partition == s.partition).cloned().collect())
            .collect();
        let inputs: Vec<PartitionInput<'_>> = series
            .iter()
            .zip(&by_partition)
            .map(|(s, rows)| PartitionInput {
                partition: &s.partition,
                first_step: s.start_ms / step,
                values: &s.values,
                rows,
            })
            .collect();
        if now_ms >= self.next_fit_at_ms {
            let start = Instant::now();
            self.forecaster.fit(&inputs);
            self.fit_ms = start.elapsed().as_secs_f64() * 1000.0;
            self.fit_at_ms = now_ms;
            self.next_fit_at_ms = now_ms + self.settings.fit_interval_ms;
            self.loaded = false;
            self.save();
        }
        let start = Instant::now();
        let mut partitions = self.forecaster.forecast(&inputs);
        let forecast_ms = start.elapsed().as_secs_f64() * 1000.0;
        // Ops per step to ops per second.
        let per_sec = 1000.0 / step as f64;
        for p in &mut partitions {
            p.peak *= per_sec;
            p.upper *= per_sec;
            p.recent_mae = p.recent_mae.map(|m| m * per_sec);
        }
        partitions.sort_by(|a, b| {
            b.upper.total_cmp(&a.upper).then_with(|| a.partition.cmp(&b.partition))
        });
        Some(Forecasts {
            at_ms: now_ms,
            step_ms: step,
            horizon_ms: self.settings.horizon_ms,
            partitions,
            fit_at_ms: self.fit_at_ms,
            fit_ms: self.fit_ms,
            forecast_ms,
            models_loaded: self.loaded,
        })
    }
}

/// Forecasts kept per partition for the dashboard's chart (the newest; at the default
/// one-minute step, six hours).
pub const TRAIL_POINTS_MAX: usize = 360;
/// Partitions whose forecasts are kept: the highest upper quantiles of the newest forecast
/// (the others' points are dropped, so the trail holds at most
/// `TRAIL_PARTITIONS_MAX * TRAIL_POINTS_MAX` points, about 2 MiB).
pub const TRAIL_PARTITIONS_MAX: usize = 256;

/// One published forecast of a partition: at `at_ms` it expected a peak of `peak` ops/s
/// (upper quantile `upper`) over the next horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrailPoint {
    pub at_ms: u64,
    pub peak: f64,
    pub upper: f64,
}

/// The forecasts as they were published over time, per partition, so a chart can lay the
/// forecast beside the load that then came.
#[derive(Debug, Default)]
pub struct ForecastTrail {
    partitions: std::collections::HashMap<Vec<u8>, std::collections::VecDeque<TrailPoint>>,
}

impl ForecastTrail {
    /// Adds a publication (`f.partitions` is sorted by upper quantile, highest first).
    pub fn record(&mut self, f: &Forecasts) {
        let kept = &f.partitions[..f.partitions.len().min(TRAIL_PARTITIONS_MAX)];
        self.partitions.retain(|name, _| kept.iter().any(|p| &p.partition == name));
        for p in kept {
            let points = self.partitions.entry(p.partition.clone()).or_default();
            points.push_back(TrailPoint { at_ms: f.at_ms, peak: p.peak, upper: p.upper });
            while points.len() > TRAIL_POINTS_MAX {
                points.pop_front();
            }
        }
    }

    /// `partition`'s points from `since_ms` on, oldest first.
    pub fn points(&self, partition: &[u8], since_ms: u64) -> Vec<TrailPoint> {
        self.partitions
            .get(partition)
            .map(|v| v.iter().filter(|p| p.at_ms >= since_ms).copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_predictor::forecast::forecaster::{Basis, PartitionForecast};

    fn published(at_ms: u64, names: &[&str]) -> Forecasts {
        let partitions = names
            .iter()
            .enumerate()
            .map(|(i, n)| PartitionForecast {
                partition: n.as_bytes().to_vec(),
                peak: 100.0 - i as f64,
                upper: 120.0 - i as f64,
                basis: Basis::Spar,
                borrowed_from: None,
                history_steps: 10,
                recent_mae: None,
            })
            .collect();
        Forecasts { at_ms, partitions, ..Default::default() }
    }

    #[test]
    fn the_trail_is_bounded_in_points_and_partitions() {
        let mut t = ForecastTrail::default();
        for i in 0..TRAIL_POINTS_MAX as u64 + 10 {
            t.record(&published(i * 1000, &["a", "b"]));
        }
        let a = t.points(b"a", 0);
        assert_eq!(a.len(), TRAIL_POINTS_MAX);
        assert_eq!(a[0].at_ms, 10_000, "the oldest points went first");
        assert_eq!((a[0].peak, a[0].upper), (100.0, 120.0));
        assert_eq!(t.points(b"a", 300_000).len(), TRAIL_POINTS_MAX + 10 - 300);
        // A partition no longer forecast loses its points.
        t.record(&published(1_000_000, &["b"]));
        assert!(t.points(b"a", 0).is_empty());
        let many: Vec<String> = (0..TRAIL_PARTITIONS_MAX + 50).map(|i| format!("p{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        t.record(&published(2_000_000, &names));
        assert_eq!(t.partitions.len(), TRAIL_PARTITIONS_MAX);
    }
}
