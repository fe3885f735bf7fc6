//! The load a policy simulation replays: every partition's rate (ops/s) at every step, its op
//! mix, application and data size. Either synthetic, from the load generator's rate profiles
//! (daily and weekly seasonality with noise, a trend, flash crowds, applications with their
//! own mixes, Zipf skew across partitions), seeded; or a trace in the trace format replayed
//! as it is (docs/trace-format.md), such as a server's own `GET /history.csv`.

use shardcast_loadgen::profile::{Diurnal, RateProfile, DAY_S};
use shardcast_loadgen::rng::{mix64, Rng};
use shardcast_predictor::forecast::Series;
use shardcast_predictor::trace::TraceRow;

/// Partitions a workload may have (the scale: 10,000).
pub const PARTITIONS_MAX: usize = 10_000;
/// Steps a workload may have (a replayed trace is cut to its last ones): 4 weeks of minutes.
pub const STEPS_MAX: usize = 40_320;
/// Rates a workload evaluates ahead of a simulation at most (8 bytes each: 200 MB).
pub const MATERIALIZED_RATES_MAX: usize = 25_000_000;
/// Bytes a key holds on average when a trace does not say (its writes' bytes do when it has
/// writes).
pub const KEY_BYTES_DEFAULT: f64 = 200.0;

/// One partition of a workload.
#[derive(Debug, Clone)]
pub struct PartitionLoad {
    pub name: Vec<u8>,
    /// The client application behind it (its load profile).
    pub app: String,
    /// Shares of reads, writes, deletes and other ops.
    pub mix: [f64; 4],
    /// Bytes of data it holds (what a migration of all of it moves).
    pub bytes: u64,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    /// A rate profile, its flash crowds and a trend (relative growth per day).
    Profile { profile: RateProfile, flashes: Vec<RateProfile>, trend_per_day: f64 },
    /// Rates per step, from a trace.
    Replay(Vec<f64>),
}

/// A workload: partitions and their rates over `steps` steps of `step_ms`.
#[derive(Debug, Clone)]
pub struct Workload {
    pub step_ms: u64,
    pub steps: usize,
    /// Unix ms of the first step (a replayed trace keeps its own times).
    pub start_ms: u64,
    pub partitions: Vec<PartitionLoad>,
}

/// What a synthetic workload is made of.
#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    pub partitions: usize,
    pub days: f64,
    pub step_ms: u64,
    pub seed: u64,
    /// Mean total load, ops/s.
    pub mean_ops: f64,
    /// Zipf exponent of the partitions' shares of the load.
    pub zipf: f64,
    /// Bytes of data over all partitions (shared out like the load).
    pub dataset_bytes: u64,
    /// Flash crowds per partition per day (probability).
    pub flash_per_day: f64,
}

/// An application of a synthetic workload: name, share of partitions, daily amplitude, peak
/// hour, weekly amplitude, peak day (0 = Monday), mix.
type App = (&'static str, f64, f64, f64, f64, f64, [f64; 4]);

/// The applications of a synthetic workload.
const APPS: [App; 4] = [
    ("web", 0.4, 0.7, 20.0, 0.15, 5.0, [0.9, 0.1, 0.0, 0.0]),
    ("api", 0.3, 0.4, 11.0, 0.3, 2.0, [0.7, 0.25, 0.05, 0.0]),
    ("batch", 0.2, 0.9, 3.0, 0.3, 1.0, [0.3, 0.7, 0.0, 0.0]),
    ("cache", 0.1, 0.1, 12.0, 0.0, 0.0, [0.95, 0.05, 0.0, 0.0]),
];

/// The growth of every synthetic partition's load per day.
pub const TREND_PER_DAY: f64 = 0.01;

impl Workload {
    /// A seeded synthetic workload (the same spec always gives the same workload).
    pub fn synthetic(spec: &SyntheticSpec) -> Result<Workload, String> {
        if spec.partitions == 0 || spec.partitions > PARTITIONS_MAX {
            return Err(format!(
                "--partitions: 1 to {PARTITIONS_MAX} (PARTITIONS_MAX), got {}",
                spec.partitions
            ));
        }
        let steps = (spec.days * DAY_S * 1000.0 / spec.step_ms as f64).round() as usize;
        if !(2..=STEPS_MAX).contains(&steps) {
            return Err(format!(
                "{} steps of {} ms: a simulation has 2 to {STEPS_MAX} steps (STEPS_MAX)",
                steps, spec.step_ms
            ));
        }
        let mut rng = Rng::new(spec.seed);
        // Zipf shares, shuffled so that a partition's name says nothing about its rank.
        let mut weights: Vec<f64> =
            (1..=spec.partitions).map(|k| 1.0 / (k as f64).powf(spec.zipf)).collect();
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        for i in (1..weights.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            weights.swap(i, j);
        }
        let duration_s = steps as f64 * spec.step_ms as f64 / 1000.0;
        let mut partitions = Vec::with_capacity(spec.partitions);
        for (i, w) in weights.iter().enumerate() {
            let pick = rng.f64();
            let mut acc = 0.0;
            let app = APPS
                .iter()
                .find(|a| {
                    acc += a.1;
                    pick < acc
                })
                .unwrap_or(&APPS[0]);
            let (name, _, daily, hour, weekly, day, mix) = *app;
            let mean = spec.mean_ops * w;
            let profile = RateProfile::Diurnal(Diurnal {
                mean,
                daily_amplitude: daily,
                peak_hour: (hour + (rng.f64() - 0.5) * 4.0).rem_euclid(24.0),
                weekly_amplitude: weekly,
                peak_day: day,
                noise: 0.1,
                noise_period_s: 900.0,
                start_s: 0.0,
                seed: mix64(spec.seed ^ i as u64),
            });
            let mut flashes = Vec::new();
            let expected = spec.flash_per_day * spec.days;
            let mut k = 0.0;
            while k < expected.ceil() {
                if rng.f64() < (expected - k).min(1.0) {
                    let at_s = rng.f64() * duration_s;
                    flashes.push(RateProfile::Spike {
                        base: 0.0,
                        peak: mean * (5.0 + rng.f64() * 15.0),
                        at_s,
                        duration_s: 1800.0 + rng.f64() * 3600.0,
                        rise_s: 600.0,
                    });
                }
                k += 1.0;
            }
            partitions.push(PartitionLoad {
                name: format!("p{i:05}").into_bytes(),
                app: name.into(),
                mix,
                bytes: (spec.dataset_bytes as f64 * w) as u64,
                source: Source::Profile { profile, flashes, trend_per_day: TREND_PER_DAY },
            });
        }
        Ok(Workload { step_ms: spec.step_ms, steps, start_ms: 0, partitions })
    }

    /// A trace replayed as it is: every partition's ops per step become its rate, at
    /// `step_ms` (the trace's own step when `None`), times `scale`.
    pub fn replay(rows: &[TraceRow], step_ms: Option<u64>, scale: f64) -> Result<Workload, String> {
        if rows.is_empty() {
            return Err("the trace has no rows".into());
        }
        let step_ms = step_ms.unwrap_or_else(|| crate::forecast::trace_step_ms(rows));
        let series = Series::from_rows(rows, step_ms);
        if series.len() > PARTITIONS_MAX {
            return Err(format!(
                "the trace has {} partitions; at most {PARTITIONS_MAX} (PARTITIONS_MAX)",
                series.len()
            ));
        }
        let steps = series.iter().map(|s| s.values.len()).max().unwrap_or(0).min(STEPS_MAX);
        if steps < 2 {
            return Err("the trace covers fewer than 2 steps".into());
        }
        let start_ms = series.iter().map(|s| s.start_ms).min().unwrap_or(0);
        let per_sec = 1000.0 / step_ms as f64;
        let mut partitions = Vec::with_capacity(series.len());
        for s in &series {
            let mine: Vec<&TraceRow> = rows.iter().filter(|r| r.partition == s.partition).collect();
            let [mut r, mut w, mut d, mut o] = [0u64; 4];
            let (mut bytes_in, mut keys) = (0u64, 0u64);
            let mut apps: std::collections::BTreeMap<&[u8], u64> = Default::default();
            for row in &mine {
                r += row.reads;
                w += row.writes;
                d += row.deletes;
                o += row.other;
                bytes_in += row.bytes_in;
                keys = keys.max(row.keys);
                for (name, n) in &row.apps {
                    *apps.entry(name).or_default() += n;
                }
            }
            let total = (r + w + d + o).max(1) as f64;
            let key_bytes = if w > 0 { bytes_in as f64 / w as f64 } else { KEY_BYTES_DEFAULT };
            let app = apps
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default();
            // Series share a grid from the earliest row: pad the front to `start_ms`.
            let offset = ((s.start_ms - start_ms) / step_ms) as usize;
            let mut rates = vec![0f64; offset];
            rates.extend(s.values.iter().map(|v| v * per_sec * scale));
            rates.truncate(steps);
            partitions.push(PartitionLoad {
                name: s.partition.clone(),
                app,
                mix: [r as f64 / total, w as f64 / total, d as f64 / total, o as f64 / total],
                bytes: (keys as f64 * key_bytes) as u64,
                source: Source::Replay(rates),
            });
        }
        Ok(Workload { step_ms, steps, start_ms, partitions })
    }

    /// Evaluates every profile once into rates per step (the simulation reads each rate
    /// several times), when that takes at most `MATERIALIZED_RATES_MAX` rates.
    pub fn materialize(&mut self) {
        if self.partitions.len() * self.steps > MATERIALIZED_RATES_MAX {
            return;
        }
        for p in 0..self.partitions.len() {
            if matches!(self.partitions[p].source, Source::Profile { .. }) {
                let rates = (0..self.steps).map(|s| self.rate(p, s)).collect();
                self.partitions[p].source = Source::Replay(rates);
            }
        }
    }

    /// For every step, the largest rate of partition `p` over the next `window` steps (after
    /// the step), in one pass.
    pub fn future_peaks(&self, p: usize, window: usize) -> Vec<f64> {
        let rates: Vec<f64> = (0..self.steps).map(|s| self.rate(p, s)).collect();
        let mut out = vec![0.0; self.steps];
        // A deque of indices with decreasing rates over steps s+1..=s+window, walked back.
        let mut q: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
        for s in (0..self.steps).rev() {
            let entering = s + 1;
            if entering < self.steps {
                while q.back().is_some_and(|&i| rates[i] <= rates[entering]) {
                    q.pop_back();
                }
                q.push_back(entering);
            }
            while q.front().is_some_and(|&i| i > s + window) {
                q.pop_front();
            }
            out[s] = q.front().map_or(0.0, |&i| rates[i]);
        }
        out
    }

    /// Partition `p`'s rate (ops/s) during step `step` (0 past the end).
    pub fn rate(&self, p: usize, step: usize) -> f64 {
        if step >= self.steps {
            return 0.0;
        }
        let t = step as f64 * self.step_ms as f64 / 1000.0;
        match &self.partitions[p].source {
            Source::Profile { profile, flashes, trend_per_day } => {
                let base = profile.rate(t) * (1.0 + trend_per_day * t / DAY_S);
                base + flashes.iter().map(|f| f.rate(t)).sum::<f64>()
            }
            Source::Replay(rates) => rates.get(step).copied().unwrap_or(0.0),
        }
    }

    /// The largest rate of partition `p` over steps `from..to`.
    pub fn peak(&self, p: usize, from: usize, to: usize) -> f64 {
        (from..to.min(self.steps)).map(|s| self.rate(p, s)).fold(0.0, f64::max)
    }

    /// Partition `p`'s mean and peak rates over the whole workload.
    pub fn mean_and_peak(&self, p: usize) -> (f64, f64) {
        let (mut sum, mut max) = (0.0, 0.0f64);
        for s in 0..self.steps {
            let r = self.rate(p, s);
            sum += r;
            max = max.max(r);
        }
        (sum / self.steps.max(1) as f64, max)
    }

    /// The workload as trace rows (one per partition and step with load), so it can be
    /// written with the trace format and replayed.
    pub fn to_rows(&self) -> Vec<TraceRow> {
        let step_s = self.step_ms as f64 / 1000.0;
        let mut rows = Vec::new();
        for s in 0..self.steps {
            for (i, p) in self.partitions.iter().enumerate() {
                let ops = (self.rate(i, s) * step_s).round() as u64;
                if ops == 0 {
                    continue;
                }
                let part = |share: f64, left: u64| ((ops as f64 * share).round() as u64).min(left);
                let reads = part(p.mix[0], ops);
                let writes = part(p.mix[1], ops - reads);
                let deletes = part(p.mix[2], ops - reads - writes);
                let other = ops - reads - writes - deletes;
                rows.push(TraceRow {
                    ts_ms: self.start_ms + s as u64 * self.step_ms,
                    partition: p.name.clone(),
                    reads,
                    writes,
                    deletes,
                    other,
                    bytes_in: writes * KEY_BYTES_DEFAULT as u64,
                    bytes_out: 0,
                    keys: (p.bytes as f64 / KEY_BYTES_DEFAULT) as u64,
                    distinct_keys: 0,
                    top_key_share: 0.0,
                    apps: vec![(p.app.clone().into_bytes(), ops)],
                });
            }
        }
        rows
    }
}
