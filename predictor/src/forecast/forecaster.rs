//! The forecaster the server runs on its control thread: every partition's peak over the
//! horizon, with an upper quantile, from the load history, refit periodically.
//!
//! Per partition it keeps three candidates: SPAR (day period, fit per partition), one global
//! GBT over all partitions, and the last horizon's peak (for load without a season, such as
//! a flash crowd); each forecast is scored against the peak that then arrives, and a
//! partition's forecast comes from the candidate with the lowest mean absolute error over its
//! last `SCORE_WINDOW` scored forecasts (until all have scores: SPAR if fitted, else the GBT
//! if fitted, else the last peak). The upper quantile is
//! the peak plus the chosen candidate's `quantile` of past errors.
//!
//! Cold start: a partition with less than `cold_start_steps` of history since its first op (a
//! day and a horizon by default) has no seasonal model yet. It borrows the growth of the most similar partition
//! that has one (by op mix and application shares, distance at most `SIMILAR_DISTANCE_MAX`):
//! peak = its recent mean x (that partition's forecast peak / that partition's recent mean).
//! Without a similar partition, the reactive rule: peak = the largest value of its last
//! horizon, upper = 1.5 x peak.

use super::evaluate::{peak, quantile};
use super::features::{app_shares, op_mix};
use super::gbt::GlobalGbt;
use super::models::{Model, Period, Spar};
use super::Seasons;
use crate::trace::TraceRow;
use std::collections::{HashMap, VecDeque};

/// Scored forecasts a candidate's error is averaged over, per partition.
pub const SCORE_WINDOW: usize = 100;
/// Most dissimilar (sum of absolute differences of op-mix and app shares, 0..4) a partition
/// may be to lend its growth to a cold one.
pub const SIMILAR_DISTANCE_MAX: f64 = 0.5;
/// The reactive rule's headroom above the recent peak.
pub const REACTIVE_HEADROOM: f64 = 1.5;
/// Partitions forecast at most (the busiest of the history).
pub const FORECAST_PARTITIONS_MAX: usize = 10_000;

/// How a forecast was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Spar,
    Gbt,
    /// The peak of the last horizon (the best guess for load without a season).
    LastPeak,
    /// Borrowed from a similar partition (cold start).
    Similar,
    /// The reactive rule (cold start, nothing similar).
    Reactive,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Spar => "spar",
            Basis::Gbt => "gbt_global",
            Basis::LastPeak => "last_peak",
            Basis::Similar => "similar",
            Basis::Reactive => "reactive",
        }
    }
}

/// One partition's forecast, in ops per step.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionForecast {
    pub partition: Vec<u8>,
    pub peak: f64,
    pub upper: f64,
    pub basis: Basis,
    /// For `Similar`: the partition it borrowed from.
    pub borrowed_from: Option<Vec<u8>>,
    /// Steps of history it had (since its first step with load).
    pub history_steps: usize,
    /// Mean absolute error of the chosen candidate over its recent scored forecasts.
    pub recent_mae: Option<f64>,
}

/// A partition's input: its series (ops per step, oldest first), the absolute number of its
/// first step (time / step, so forecasts are scored at the right steps when the history's
/// window slides), and its rows (for the op mix and applications).
#[derive(Debug, Clone)]
pub struct PartitionInput<'a> {
    pub partition: &'a [u8],
    pub first_step: u64,
    pub values: &'a [f64],
    pub rows: &'a [TraceRow],
}

#[derive(Default)]
struct Track {
    spar: Option<Spar>,
    errors: [VecDeque<f64>; 3],
    /// Forecasts waiting for their horizon: (absolute step of the origin, peaks by
    /// candidate).
    pending: VecDeque<(u64, [f64; 3])>,
}

/// The server's forecaster (see the module doc).
pub struct Forecaster {
    pub seasons: Seasons,
    pub horizon: usize,
    pub quantile: f64,
    pub cold_start_steps: usize,
    global: GlobalGbt,
    tracks: HashMap<Vec<u8>, Track>,
}

fn mean(v: &VecDeque<f64>) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn recent_mean(v: &[f64], h: usize) -> f64 {
    let w = &v[v.len().saturating_sub(h.max(1))..];
    if w.is_empty() {
        0.0
    } else {
        w.iter().sum::<f64>() / w.len() as f64
    }
}

/// Magic of an encoded forecaster state.
pub const STATE_MAGIC: [u8; 8] = *b"SCPRED01";
/// The largest state decoded (a bigger one is refused as damaged).
pub const STATE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Reads little-endian fields of an encoded state, refusing lengths past its end.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let out = &self.b[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

/// Op-mix and application-share distance of two partitions' rows (0 = alike, at most 4).
pub fn distance(a: &[TraceRow], b: &[TraceRow]) -> f64 {
    let (ma, mb) = (op_mix(a), op_mix(b));
    let mix: f64 = ma.iter().zip(mb).map(|(x, y)| (x - y).abs()).sum();
    let (sa, sb) = (app_shares(a), app_shares(b));
    let mut apps = 0.0;
    for (name, share) in &sa {
        apps += (share - sb.iter().find(|(n, _)| n == name).map_or(0.0, |x| x.1)).abs();
    }
    for (name, share) in &sb {
        if !sa.iter().any(|(n, _)| n == name) {
            apps += share;
        }
    }
    mix + apps
}

/// Steps since the first step with load: how much history a partition really has (series on
/// a shared grid start with zeros before a partition's first op).
fn active_steps(values: &[f64]) -> usize {
    values.iter().position(|&v| v > 0.0).map_or(0, |first| values.len() - first)
}

impl Forecaster {
    pub fn new(seasons: Seasons, horizon: usize, quantile: f64) -> Forecaster {
        Forecaster {
            seasons,
            horizon: horizon.max(1),
            quantile,
            cold_start_steps: seasons.day_steps + horizon.max(1),
            global: GlobalGbt::default(),
            tracks: HashMap::new(),
        }
    }

    /// The fitted models as bytes (magic, then the global GBT as JSON and each partition's
    /// SPAR coefficients, then a crc32 of all before it), so a restart resumes warm. Scores
    /// are not kept: they rebuild within a horizon.
    pub fn encode_state(&self) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        let json = self.global.to_json().unwrap_or_default();
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(json.as_bytes());
        let mut fitted: Vec<(&Vec<u8>, &Spar)> =
            self.tracks.iter().filter_map(|(k, t)| t.spar.as_ref().map(|s| (k, s))).collect();
        fitted.sort_by(|a, b| a.0.cmp(b.0));
        out.extend_from_slice(&(fitted.len() as u32).to_le_bytes());
        for (name, spar) in fitted {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name);
            let c = spar.coefficients();
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            for v in c.iter().flatten() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Restores `encode_state`'s models; a damaged state is an error and changes nothing.
    pub fn decode_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() > STATE_BYTES_MAX || bytes.len() < STATE_MAGIC.len() + 4 {
            return Err(format!("{} bytes is not a forecaster state", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let (expected, got) =
            (u32::from_le_bytes(crc.try_into().expect("4")), crc32fast::hash(body));
        if expected != got {
            return Err(format!("checksum mismatch: expected {expected:08x}, got {got:08x}"));
        }
        if body[..8] != STATE_MAGIC {
            return Err("not a forecaster state (bad magic)".into());
        }
        let mut r = Reader { b: body, at: 8 };
        let n = r.u32()?;
        let json = std::str::from_utf8(r.take(n)?).map_err(|_| "the GBT is not UTF-8")?;
        let global =
            if json.is_empty() { GlobalGbt::default() } else { GlobalGbt::from_json(json)? };
        let mut tracks: HashMap<Vec<u8>, Track> = HashMap::new();
        for _ in 0..r.u32()? {
            let len = r.u32()?;
            let name = r.take(len)?.to_vec();
            let steps = r.u32()?;
            let width = super::models::SPAR_PERIODS + super::models::SPAR_LAGS + 1;
            if steps.saturating_mul(width * 8) > body.len() {
                return Err(format!("{steps} SPAR steps do not fit in the state"));
            }
            let mut c = Vec::with_capacity(steps);
            for _ in 0..steps {
                c.push((0..width).map(|_| r.f64()).collect::<Result<Vec<f64>, String>>()?);
            }
            let spar = Spar::from_coefficients(Period::Day, c).ok_or("bad SPAR coefficients")?;
            tracks.entry(name).or_default().spar = Some(spar);
        }
        if r.at != body.len() {
            return Err(format!("{} bytes after the state", body.len() - r.at));
        }
        self.global = global;
        self.tracks = tracks;
        Ok(())
    }

    /// Refits the models on the inputs' histories (the caller decides how often).
    pub fn fit(&mut self, inputs: &[PartitionInput<'_>]) {
        let warm: Vec<&PartitionInput<'_>> =
            inputs.iter().filter(|p| active_steps(p.values) >= self.cold_start_steps).collect();
        let histories: Vec<&[f64]> = warm.iter().map(|p| p.values).collect();
        self.global.fit(&histories, self.seasons, self.horizon);
        for p in warm {
            let mut spar = Spar::new(Period::Day);
            spar.fit(p.values, self.seasons, self.horizon);
            self.tracks.entry(p.partition.to_vec()).or_default().spar = Some(spar);
        }
        let names: Vec<&[u8]> = inputs.iter().map(|p| p.partition).collect();
        self.tracks.retain(|k, _| names.contains(&k.as_slice()));
    }

    /// Every input partition's forecast at the end of its values. Scores the forecasts whose
    /// horizon has now passed (those whose steps have left the window are dropped).
    pub fn forecast(&mut self, inputs: &[PartitionInput<'_>]) -> Vec<PartitionForecast> {
        let h = self.horizon;
        let warm: Vec<usize> = (0..inputs.len().min(FORECAST_PARTITIONS_MAX))
            .filter(|&i| active_steps(inputs[i].values) >= self.cold_start_steps)
            .collect();
        let histories: Vec<&[f64]> = warm.iter().map(|&i| inputs[i].values).collect();
        let gbt_peaks = self.global.forecast_peaks(&histories, self.seasons, h);
        let mut out: Vec<Option<PartitionForecast>> = vec![None; inputs.len()];
        for (k, &i) in warm.iter().enumerate() {
            let p = &inputs[i];
            let track = self.tracks.entry(p.partition.to_vec()).or_default();
            let n = p.values.len();
            let end = p.first_step + n as u64;
            // Score the forecasts whose horizon is over (if their steps are still in view).
            while track.pending.front().is_some_and(|(o, _)| o + h as u64 <= end) {
                let (o, peaks) = track.pending.pop_front().expect("checked");
                let Some(from) = o.checked_sub(p.first_step) else { continue };
                let from = from as usize;
                let actual = peak(&p.values[from..from + h]);
                for (errors, predicted) in track.errors.iter_mut().zip(peaks) {
                    errors.push_back(actual - predicted);
                    if errors.len() > SCORE_WINDOW {
                        errors.pop_front();
                    }
                }
            }
            let spar_peak = match &track.spar {
                Some(m) => peak(&m.forecast(p.values, self.seasons, h)),
                None => peak(&p.values[n.saturating_sub(h)..]),
            };
            let last_peak = peak(&p.values[n.saturating_sub(h)..]);
            let peaks = [spar_peak, gbt_peaks[k], last_peak];
            if track.pending.back().is_none_or(|(o, _)| *o < end) {
                track.pending.push_back((end, peaks));
            }
            let mae =
                |c: usize| mean(&track.errors[c].iter().map(|e| e.abs()).collect::<VecDeque<_>>());
            // The candidate with the lowest recent error among those that exist (a fitted
            // SPAR, a fitted GBT, the last peak always); until all have scores, the first
            // that exists.
            let exists = [track.spar.is_some(), self.global.is_fitted(), true];
            let scores: Vec<Option<f64>> = (0..3).map(mae).collect();
            let available: Vec<usize> = (0..3).filter(|&c| exists[c]).collect();
            let chosen = if available.iter().all(|&c| scores[c].is_some()) {
                available
                    .iter()
                    .copied()
                    .min_by(|&a, &b| {
                        scores[a].unwrap_or(f64::MAX).total_cmp(&scores[b].unwrap_or(f64::MAX))
                    })
                    .unwrap_or(2)
            } else {
                available[0]
            };
            let upper = peaks[chosen] + quantile(&track.errors[chosen], self.quantile).max(0.0);
            out[i] = Some(PartitionForecast {
                partition: p.partition.to_vec(),
                peak: peaks[chosen],
                upper,
                basis: [Basis::Spar, Basis::Gbt, Basis::LastPeak][chosen],
                borrowed_from: None,
                history_steps: n,
                recent_mae: mae(chosen),
            });
            out[i].as_mut().expect("just set").history_steps = active_steps(p.values);
        }
        for i in 0..inputs.len() {
            if out[i].is_none() {
                out[i] = Some(self.cold_start(inputs, i, &out));
            }
        }
        out.into_iter().flatten().collect()
    }

    /// The cold-start forecast of input `i` (module doc).
    fn cold_start(
        &self,
        inputs: &[PartitionInput<'_>],
        i: usize,
        warm: &[Option<PartitionForecast>],
    ) -> PartitionForecast {
        let p = &inputs[i];
        let h = self.horizon;
        let own = recent_mean(p.values, h);
        let similar = warm
            .iter()
            .enumerate()
            .filter_map(|(j, f)| f.as_ref().map(|f| (j, f)))
            .map(|(j, f)| (distance(p.rows, inputs[j].rows), j, f))
            .filter(|(d, _, _)| *d <= SIMILAR_DISTANCE_MAX)
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, j, f)) = similar {
            let theirs = recent_mean(inputs[j].values, h);
            if theirs > 0.0 && own > 0.0 {
                let ratio = f.peak / theirs;
                let upper_ratio = f.upper / theirs;
                return PartitionForecast {
                    partition: p.partition.to_vec(),
                    peak: own * ratio,
                    upper: own * upper_ratio,
                    basis: Basis::Similar,
                    borrowed_from: Some(inputs[j].partition.to_vec()),
                    history_steps: active_steps(p.values),
                    recent_mae: None,
                };
            }
        }
        let recent = peak(&p.values[p.values.len().saturating_sub(h)..]);
        PartitionForecast {
            partition: p.partition.to_vec(),
            peak: recent,
            upper: recent * REACTIVE_HEADROOM,
            basis: Basis::Reactive,
            borrowed_from: None,
            history_steps: active_steps(p.values),
            recent_mae: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Seasons = Seasons { day_steps: 24, week_steps: 168 };

    fn rows(reads: u64, writes: u64, app: &str) -> Vec<TraceRow> {
        vec![TraceRow {
            reads,
            writes,
            apps: vec![(app.as_bytes().to_vec(), reads + writes)],
            ..Default::default()
        }]
    }

    fn daily(days: usize, level: f64) -> Vec<f64> {
        (0..days * 24)
            .map(|i| level * (1.0 + 0.5 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin()))
            .collect()
    }

    /// Warm partitions get a seasonal forecast; a new partition like one of them borrows its
    /// growth; a new partition like none of them gets the reactive rule.
    #[test]
    fn cold_partitions_borrow_from_similar_ones_or_fall_back_to_the_reactive_rule() {
        let (warm, new_like, new_other) =
            (daily(10, 100.0), vec![50.0, 60.0, 55.0], vec![7.0, 9.0]);
        let (rw, rl, ro) = (rows(90, 10, "web"), rows(45, 5, "web"), rows(0, 100, "batch"));
        let inputs = [
            PartitionInput { partition: b"web", first_step: 0, values: &warm, rows: &rw },
            PartitionInput { partition: b"web2", first_step: 0, values: &new_like, rows: &rl },
            PartitionInput { partition: b"etl", first_step: 0, values: &new_other, rows: &ro },
        ];
        let mut f = Forecaster::new(S, 3, 0.9);
        f.fit(&inputs);
        let out = f.forecast(&inputs);
        assert_eq!(out[0].basis, Basis::Spar);
        // The next 3 hours of the daily shape, from hour 0 of day 11: rising from the level.
        assert!(out[0].peak > 100.0 && out[0].peak < 150.0, "{:?}", out[0]);
        assert_eq!(
            (out[1].basis, out[1].borrowed_from.as_deref()),
            (Basis::Similar, Some(&b"web"[..]))
        );
        let ratio = out[0].peak / recent_mean(&warm, 3);
        assert!((out[1].peak - recent_mean(&new_like, 3) * ratio).abs() < 1e-9);
        assert_eq!(out[2].basis, Basis::Reactive);
        assert_eq!((out[2].peak, out[2].upper), (9.0, 9.0 * REACTIVE_HEADROOM));
        assert!(distance(&rw, &rl) < 1e-9 && distance(&rw, &ro) > 3.0);
    }

    /// A fitted forecaster's state round-trips: the restored one forecasts the same; a
    /// damaged state is refused and leaves the models as they were.
    #[test]
    fn the_state_round_trips_and_damage_is_refused() {
        let (a, b) = (daily(10, 100.0), daily(10, 300.0));
        let rw = rows(1, 1, "a");
        let inputs = [
            PartitionInput { partition: b"a", first_step: 0, values: &a, rows: &rw },
            PartitionInput { partition: b"b", first_step: 0, values: &b, rows: &rw },
        ];
        let mut f = Forecaster::new(S, 3, 0.9);
        f.fit(&inputs);
        let state = f.encode_state();
        let mut g = Forecaster::new(S, 3, 0.9);
        g.decode_state(&state).unwrap();
        assert_eq!(f.forecast(&inputs), g.forecast(&inputs));
        for i in [0, 9, state.len() / 2, state.len() - 1] {
            let mut bad = state.clone();
            bad[i] ^= 0x40;
            assert!(g.decode_state(&bad).is_err(), "flip at {i}");
        }
        assert!(g.decode_state(&state[..state.len() - 7]).is_err());
        assert_eq!(f.forecast(&inputs), g.forecast(&inputs), "unchanged by refused states");
    }

    /// Forecasts are scored when their horizon has passed, and the candidate with the lower
    /// recent error is chosen.
    #[test]
    fn the_candidate_with_the_lower_recent_error_is_chosen() {
        let y = daily(20, 100.0);
        let rw = rows(1, 1, "a");
        let mut f = Forecaster::new(S, 3, 0.9);
        for n in (24 * 10..24 * 20).step_by(3) {
            // A sliding window of 5 days, as the history's ring slides.
            let from = n - 24 * 5;
            let inputs = [PartitionInput {
                partition: b"p",
                first_step: from as u64,
                values: &y[from..n],
                rows: &rw,
            }];
            if n % 24 == 0 {
                f.fit(&inputs);
            }
            let out = f.forecast(&inputs);
            assert!(out[0].upper >= out[0].peak);
        }
        let inputs = [PartitionInput {
            partition: b"p",
            first_step: 24 * 15,
            values: &y[24 * 15..],
            rows: &rw,
        }];
        let out = f.forecast(&inputs);
        // A clean daily shape: SPAR is exact, so it stays chosen, with a small recent error.
        assert_eq!(out[0].basis, Basis::Spar);
        assert!(out[0].recent_mae.unwrap() < 1.0, "{:?}", out[0]);
    }
}
