//! What a policy did, in figures: SLO-violation minutes, p99, cost (shard-hours and CPU
//! core-hours), bytes migrated, splits, merges and moves, forecast MAPE; a timeline of the
//! whole machine and one of its busiest partitions, for the CSV files and the plots.

use super::machine::{mixture_quantile, Machine, Tail, TickLoad};
use super::workload::Workload;
use super::{PolicyKind, SimConfig};
use shardcast_engine::LayoutChange;
use shardcast_predictor::allocator::{Allocator, Explanation};

/// Partitions followed step by step (the busiest by peak).
pub const TRACKED_PARTITIONS: usize = 4;
/// Explanations a report keeps (the allocator's log keeps its last 1,000, with the notes on
/// changes not made; the report keeps every change decided, up to this many).
pub const EXPLANATIONS_MAX: usize = 100_000;

/// The whole machine at one step.
#[derive(Debug, Clone)]
pub struct TimelinePoint {
    pub step: usize,
    pub load_ops: f64,
    pub p99_us: f64,
    pub shards: usize,
    pub busy_max: f64,
}

/// A tracked partition at one step.
#[derive(Debug, Clone)]
pub struct PartitionPoint {
    pub step: usize,
    pub partition: usize,
    pub load_ops: f64,
    pub forecast_peak: Option<f64>,
    pub forecast_upper: Option<f64>,
    pub shards: usize,
    pub p99_us: f64,
}

/// One policy's result.
#[derive(Debug, Clone)]
pub struct PolicyReport {
    pub kind: PolicyKind,
    slo_s: f64,
    pub violation_minutes: f64,
    pub p99_us: f64,
    pub shard_hours: f64,
    pub core_hours: f64,
    pub bytes_migrated: u64,
    pub splits: u64,
    pub merges: u64,
    pub moves: u64,
    pub failed: u64,
    mape_sum: f64,
    mape_n: u64,
    pub decided: u64,
    /// Every change decided (scored steps), then the allocator's last log entries.
    pub explanations: Vec<Explanation>,
    tails: Vec<Tail>,
    pub tracked: Vec<usize>,
    pub timeline: Vec<TimelinePoint>,
    pub partitions: Vec<PartitionPoint>,
}

impl PolicyReport {
    pub fn new(kind: PolicyKind, cfg: &SimConfig, workload: &Workload) -> PolicyReport {
        let mut by_peak: Vec<(usize, f64)> = (0..workload.partitions.len())
            .map(|p| (p, workload.peak(p, 0, workload.steps)))
            .collect();
        by_peak.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        PolicyReport {
            kind,
            slo_s: cfg.slo_us / 1e6,
            violation_minutes: 0.0,
            p99_us: 0.0,
            shard_hours: 0.0,
            core_hours: 0.0,
            bytes_migrated: 0,
            splits: 0,
            merges: 0,
            moves: 0,
            failed: 0,
            mape_sum: 0.0,
            mape_n: 0,
            decided: 0,
            explanations: Vec::new(),
            tails: Vec::new(),
            tracked: by_peak.iter().take(TRACKED_PARTITIONS).map(|x| x.0).collect(),
            timeline: Vec::new(),
            partitions: Vec::new(),
        }
    }

    pub fn count_change(&mut self, change: &LayoutChange, bytes: u64) {
        self.bytes_migrated += bytes;
        match change {
            LayoutChange::CarveOut { .. } | LayoutChange::Split { .. } => self.splits += 1,
            LayoutChange::Merge { .. } | LayoutChange::FoldBack { .. } => self.merges += 1,
            LayoutChange::Move { .. } => self.moves += 1,
        }
    }

    pub fn forecast_error(&mut self, forecast: f64, actual: f64) {
        self.mape_sum += (forecast - actual).abs() / actual;
        self.mape_n += 1;
    }

    /// Forecast MAPE in percent (`None` for a policy without forecasts).
    pub fn mape_pct(&self) -> Option<f64> {
        (self.mape_n > 0).then(|| 100.0 * self.mape_sum / self.mape_n as f64)
    }

    /// One scored step: its p99 against the SLO, its cost.
    pub fn tick(&mut self, machine: &Machine, tick: &TickLoad, p99_s: f64, step_ms: u64) {
        let minutes = step_ms as f64 / 60_000.0;
        if p99_s > self.slo_s {
            self.violation_minutes += minutes;
        }
        self.shard_hours += machine.map.shards().count() as f64 * minutes / 60.0;
        self.core_hours += tick.cpu_s / 3600.0;
        self.tails.extend_from_slice(&tick.tails);
    }

    pub fn finish(&mut self, allocator: &Allocator) {
        self.p99_us = mixture_quantile(&self.tails, 0.99) * 1e6;
        self.tails = Vec::new();
        self.decided = allocator.decided;
        // The log's notes (changes not made, and why) that are not decisions already kept.
        for e in allocator.log.recent(None, usize::MAX) {
            if !e.rejected.is_empty() && self.explanations.len() < EXPLANATIONS_MAX {
                self.explanations.push(e);
            }
        }
    }

    /// Keeps a decided change's explanation.
    pub fn explain(&mut self, e: &Explanation) {
        if self.explanations.len() < EXPLANATIONS_MAX {
            self.explanations.push(e.clone());
        }
    }
}

/// The result table (aligned columns), one row per policy.
pub fn table(reports: &[PolicyReport]) -> String {
    let mut out = format!(
        "{:<12} {:>14} {:>10} {:>12} {:>11} {:>13} {:>7} {:>7} {:>6} {:>9}\n",
        "policy",
        "slo_viol_min",
        "p99_us",
        "shard_hours",
        "core_hours",
        "migrated_gb",
        "splits",
        "merges",
        "moves",
        "mape_pct"
    );
    for r in reports {
        out.push_str(&format!(
            "{:<12} {:>14.0} {:>10.0} {:>12.1} {:>11.1} {:>13.2} {:>7} {:>7} {:>6} {:>9}\n",
            r.kind.as_str(),
            r.violation_minutes,
            r.p99_us,
            r.shard_hours,
            r.core_hours,
            r.bytes_migrated as f64 / 1e9,
            r.splits,
            r.merges,
            r.moves,
            r.mape_pct().map_or("-".into(), |m| format!("{m:.1}")),
        ));
    }
    out
}

/// The comparisons the issue asks for, in words.
pub fn verdict(reports: &[PolicyReport]) -> String {
    let get = |k: PolicyKind| reports.iter().find(|r| r.kind == k);
    let mut out = String::new();
    if let (Some(p), Some(r)) = (get(PolicyKind::Predictive), get(PolicyKind::Reactive)) {
        let fewer = if r.violation_minutes > 0.0 {
            format!("{:.0}%", 100.0 * (1.0 - p.violation_minutes / r.violation_minutes))
        } else {
            "n/a (reactive had none)".into()
        };
        out.push_str(&format!(
            "predictive vs reactive: {fewer} fewer SLO-violation minutes, core-hours x{:.3}\n",
            p.core_hours / r.core_hours.max(1e-9)
        ));
    }
    if let (Some(p), Some(s)) = (get(PolicyKind::Predictive), get(PolicyKind::StaticPeak)) {
        out.push_str(&format!(
            "predictive vs static-peak: core-hours x{:.3}, shard-hours x{:.3}, violation minutes {:.0} vs {:.0}\n",
            p.core_hours / s.core_hours.max(1e-9),
            p.shard_hours / s.shard_hours.max(1e-9),
            p.violation_minutes,
            s.violation_minutes
        ));
    }
    if let (Some(p), Some(s)) = (get(PolicyKind::Predictive), get(PolicyKind::StaticMean)) {
        out.push_str(&format!(
            "predictive vs static-mean: violation minutes {:.0} vs {:.0}\n",
            p.violation_minutes, s.violation_minutes
        ));
    }
    out
}
