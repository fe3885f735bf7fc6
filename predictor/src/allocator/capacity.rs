//! The capacity model: how many ops per second a core serves when fully busy, and what a split
//! costs, both measured from the ticks (or pinned by the operator).
//!
//! - A core's capacity is its ops over its busy time in a round (`ops_per_sec / busy`),
//!   smoothed (exponentially, weight `CAPACITY_SMOOTHING`), from rounds busy enough to say
//!   something (`BUSY_MIN`). `core-capacity-ops` replaces the measurement.
//! - A split's cost: once a partition spans cores, some of its ops reach their shard from
//!   another core (`remote_ops`), and each of those costs more CPU. The model fits, over the
//!   last `COST_SAMPLES_MAX` busy rounds of all cores, CPU per op = a · (1 + r · remote share)
//!   by least squares (rounds busier than `COST_BUSY_MIN`); `r` is the extra cost of a remote
//!   op relative to a local one. Until the
//!   rounds spread over enough remote shares (`COST_SPREAD_MIN`) to fit it, or while the
//!   capacity is pinned, `r` is the value measured on 16 cores (`SPLIT_COST_PRIOR`), and the
//!   model says so.

use std::collections::VecDeque;

/// Rounds with a smaller busy share do not measure capacity (idle executors still poll).
pub const BUSY_MIN: f64 = 0.05;
/// Weight of a new round in the smoothed capacity.
pub const CAPACITY_SMOOTHING: f64 = 0.1;
/// Rounds busier than this fit the split cost: at low busy an executor's polling and timers
/// weigh more per op than the ops' own CPU, which hides the remote ops' extra.
pub const COST_BUSY_MIN: f64 = 0.25;
/// Rounds kept for fitting the split cost (a bounded window over all cores).
pub const COST_SAMPLES_MAX: usize = 512;
/// Rounds needed before a fit replaces the prior.
pub const COST_SAMPLES_MIN: usize = 64;
/// The remote shares of the kept rounds must spread this much (standard deviation) before the
/// fitted cost replaces the prior.
pub const COST_SPREAD_MIN: f64 = 0.1;
/// The extra CPU of a remote op relative to a local one measured on a 16-core machine: 3.5
/// CPU-seconds per million SETs on one shard, 7.3 split over 8 cores (remote share 7/8), so
/// 7.3 / 3.5 = 1 + r · 0.875, r = 1.24 (docs/allocator.md).
pub const SPLIT_COST_PRIOR: f64 = 1.24;
/// The fitted cost is clamped to this range (a noisy fit must not make splits free or absurd).
pub const SPLIT_COST_RANGE: (f64, f64) = (0.0, 4.0);

/// One core's figures for a round, as the capacity model reads them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoreSample {
    pub core: usize,
    pub ops_per_sec: f64,
    /// Ops per second other cores sent to this one.
    pub remote_ops_per_sec: f64,
    pub busy: f64,
}

/// Measured (or pinned) capacity and split cost.
#[derive(Debug, Clone)]
pub struct CapacityModel {
    pinned: Option<f64>,
    /// Smoothed ops/s at full busy per core (`None` until measured).
    measured: Vec<Option<f64>>,
    /// (remote share, busy seconds per op) of recent busy rounds.
    samples: VecDeque<(f64, f64)>,
    /// The split cost fitted on `samples` (refit when they change, read many times a round).
    cost: SplitCost,
}

/// What the model says of the split cost, and whether it was measured here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitCost {
    /// Extra CPU of a remote op relative to a local one.
    pub remote_extra: f64,
    /// Fitted from this server's rounds (else the 16-core prior).
    pub measured: bool,
}

impl CapacityModel {
    pub fn new(cores: usize, pinned: Option<f64>) -> CapacityModel {
        CapacityModel {
            pinned: pinned.filter(|c| *c > 0.0),
            measured: vec![None; cores],
            samples: VecDeque::new(),
            cost: SplitCost { remote_extra: SPLIT_COST_PRIOR, measured: false },
        }
    }

    pub fn pin(&mut self, pinned: Option<f64>) {
        self.pinned = pinned.filter(|c| *c > 0.0);
        self.cost = self.fit_split_cost();
    }

    pub fn pinned(&self) -> Option<f64> {
        self.pinned
    }

    /// Takes one round of every core's figures.
    pub fn observe(&mut self, cores: &[CoreSample]) {
        for s in cores {
            if s.busy < BUSY_MIN || s.ops_per_sec <= 0.0 || !s.busy.is_finite() {
                continue;
            }
            if s.core >= self.measured.len() {
                self.measured.resize(s.core + 1, None);
            }
            let now = s.ops_per_sec / s.busy.min(1.0);
            let slot = &mut self.measured[s.core];
            *slot = Some(match *slot {
                None => now,
                Some(old) => old + CAPACITY_SMOOTHING * (now - old),
            });
            if s.busy < COST_BUSY_MIN {
                continue;
            }
            let share = (s.remote_ops_per_sec / s.ops_per_sec).clamp(0.0, 1.0);
            self.samples.push_back((share, s.busy.min(1.0) / s.ops_per_sec));
            if self.samples.len() > COST_SAMPLES_MAX {
                self.samples.pop_front();
            }
        }
        self.cost = self.fit_split_cost();
    }

    /// A core's capacity in ops/s at full busy: pinned, else measured, else `None`.
    pub fn core(&self, core: usize) -> Option<f64> {
        self.pinned.or_else(|| self.measured.get(core).copied().flatten())
    }

    /// A core's measured capacity, pinned or not (the real machine's ops/s at full busy).
    pub fn measured(&self, core: usize) -> Option<f64> {
        self.measured.get(core).copied().flatten()
    }

    /// Whether the capacity is pinned by the operator rather than measured.
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// The split cost: fitted when the rounds spread over remote shares, else the prior.
    pub fn split_cost(&self) -> SplitCost {
        self.cost
    }

    fn fit_split_cost(&self) -> SplitCost {
        let n = self.samples.len() as f64;
        let prior = SplitCost { remote_extra: SPLIT_COST_PRIOR, measured: false };
        // A pinned capacity describes another machine than the one measured here, so its
        // split cost is the prior measured elsewhere too.
        if self.pinned.is_some() || n < COST_SAMPLES_MIN as f64 {
            return prior;
        }
        let mx = self.samples.iter().map(|s| s.0).sum::<f64>() / n;
        let my = self.samples.iter().map(|s| s.1).sum::<f64>() / n;
        let sxx = self.samples.iter().map(|s| (s.0 - mx).powi(2)).sum::<f64>();
        let sxy = self.samples.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum::<f64>();
        if (sxx / n).sqrt() < COST_SPREAD_MIN || sxx <= 0.0 {
            return prior;
        }
        // y = a + b·x, with a the CPU of a local op and b/a the extra of a remote one.
        let b = sxy / sxx;
        let a = my - b * mx;
        if a <= 0.0 || !b.is_finite() {
            return prior;
        }
        let r = (b / a).clamp(SPLIT_COST_RANGE.0, SPLIT_COST_RANGE.1);
        SplitCost { remote_extra: r, measured: true }
    }
}

/// A partition's capacity in ops/s with `shards` shards on distinct cores of capacity `core`:
/// each shard is one core at most, and with `shards` > 1 a share (shards-1)/shards of its ops
/// arrive from other cores at `1 + r` the CPU.
pub fn partition_capacity(core: f64, shards: usize, remote_extra: f64) -> f64 {
    let k = shards.max(1) as f64;
    let remote_share = (k - 1.0) / k;
    k * core / (1.0 + remote_extra * remote_share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_ops_over_busy_smoothed_and_a_pin_replaces_it() {
        let mut m = CapacityModel::new(2, None);
        assert_eq!(m.core(0), None, "nothing measured yet");
        m.observe(&[CoreSample {
            core: 0,
            ops_per_sec: 5_000.0,
            remote_ops_per_sec: 0.0,
            busy: 0.5,
        }]);
        assert_eq!(m.core(0), Some(10_000.0));
        // Idle rounds say nothing.
        m.observe(&[CoreSample {
            core: 0,
            ops_per_sec: 10.0,
            remote_ops_per_sec: 0.0,
            busy: 0.01,
        }]);
        assert_eq!(m.core(0), Some(10_000.0));
        m.observe(&[CoreSample {
            core: 0,
            ops_per_sec: 6_000.0,
            remote_ops_per_sec: 0.0,
            busy: 0.5,
        }]);
        assert!((m.core(0).unwrap() - 10_200.0).abs() < 1e-6);
        m.pin(Some(3_000.0));
        assert_eq!(m.core(1), Some(3_000.0));
    }

    #[test]
    fn the_split_cost_is_fitted_once_remote_shares_spread() {
        let mut m = CapacityModel::new(2, None);
        assert_eq!(m.split_cost(), SplitCost { remote_extra: SPLIT_COST_PRIOR, measured: false });
        // CPU per op = 1e-4 · (1 + 0.5 · share).
        for i in 0..64 {
            let share = (i % 8) as f64 / 8.0;
            let ops = 4_000.0;
            let busy = ops * 1e-4 * (1.0 + 0.5 * share);
            m.observe(&[CoreSample {
                core: 0,
                ops_per_sec: ops,
                remote_ops_per_sec: share * ops,
                busy,
            }]);
        }
        let c = m.split_cost();
        assert!(c.measured);
        assert!((c.remote_extra - 0.5).abs() < 1e-6, "{c:?}");
    }

    #[test]
    fn a_split_raises_capacity_by_less_than_its_shards() {
        assert_eq!(partition_capacity(100.0, 1, 1.24), 100.0);
        let two = partition_capacity(100.0, 2, 1.24);
        assert!(two > 100.0 && two < 200.0, "{two}");
        // The 16-core measurement: 8 shards gave ~3.2x one.
        let eight = partition_capacity(100.0, 8, 1.24) / 100.0;
        assert!((3.0..4.0).contains(&eight), "{eight}");
    }
}
