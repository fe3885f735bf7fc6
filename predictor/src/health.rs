//! The health monitor: a state for every core and shard (healthy, overloaded, slow, failed)
//! from each tick's figures, with the reason, changing only when a new state has held for
//! `HealthThresholds::ticks_to_change` ticks (failure at once), so one noisy tick does not
//! flap it. Pure: the figures come in, states and changes go out.
//!
//! Rules, per tick (thresholds in `HealthThresholds`, defaults in brackets):
//! - a core is **failed** when its tick has not arrived for `missed_ticks_failed` [3] ticks
//!   in a row (its executor is stuck); **overloaded** when its busy share is at least
//!   `busy_ratio_overloaded` [0.90] or its queue depth reached `queue_depth_overloaded`
//!   [256]; **slow** when its ops' p99 service time is at least `service_p99_slow_ns`
//!   [10 ms] over at least `slow_ops_min` [16] ops; else **healthy**;
//! - a shard is **failed** when it does not serve (damaged files, failed log) or its core is
//!   failed; **slow** by
//!   the same rule on its own ops; **overloaded** when its core is overloaded and
//!   it served at least `overload_share_min` [25 %] of the core's ops in the tick; else
//!   **healthy**.

use std::collections::HashMap;

/// A state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Health {
    #[default]
    Healthy,
    Slow,
    Overloaded,
    Failed,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Slow => "slow",
            Health::Overloaded => "overloaded",
            Health::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thresholds of the rules (module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthThresholds {
    pub busy_ratio_overloaded: f64,
    pub queue_depth_overloaded: u64,
    pub service_p99_slow_ns: u64,
    pub slow_ops_min: u64,
    pub overload_share_min: f64,
    pub ticks_to_change: u32,
    pub missed_ticks_failed: u32,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            busy_ratio_overloaded: 0.90,
            queue_depth_overloaded: 256,
            service_p99_slow_ns: 10_000_000,
            slow_ops_min: 16,
            overload_share_min: 0.25,
            ticks_to_change: 2,
            missed_ticks_failed: 3,
        }
    }
}

/// A core's figures for one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreFigures {
    pub core: usize,
    /// Consecutive ticks without this core's tick (0 when it arrived).
    pub ticks_missed: u32,
    pub busy_ratio: f64,
    pub queue_depth_max: u64,
    pub ops: u64,
    pub service_p99_ns: u64,
}

/// A shard's figures for one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardFigures {
    pub shard: u64,
    pub core: usize,
    pub failure: Option<String>,
    pub ops: u64,
    pub service_p99_ns: u64,
}

/// What a core or shard is, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthState {
    pub health: Health,
    pub reason: String,
    /// A different state seen in the last ticks, and for how many in a row.
    pending: Option<(Health, String, u32)>,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState { health: Health::Healthy, reason: String::new(), pending: None }
    }
}

/// Which thing changed state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Core(usize),
    Shard(u64),
}

/// A state change, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthChange {
    pub subject: Subject,
    pub from: Health,
    pub to: Health,
    pub reason: String,
}

/// States of every core and shard seen.
#[derive(Debug, Default)]
pub struct HealthMonitor {
    pub thresholds: HealthThresholds,
    cores: HashMap<usize, HealthState>,
    shards: HashMap<u64, HealthState>,
}

impl HealthMonitor {
    pub fn new(thresholds: HealthThresholds) -> Self {
        HealthMonitor { thresholds, ..Default::default() }
    }

    /// Judges one tick; returns the changes. Shards not in `shards` are forgotten (they
    /// were merged or moved away).
    pub fn observe(&mut self, cores: &[CoreFigures], shards: &[ShardFigures]) -> Vec<HealthChange> {
        let t = self.thresholds.clone();
        let mut changes = Vec::new();
        let mut core_health = HashMap::new();
        let mut core_ops = HashMap::new();
        for c in cores {
            let (h, why) = judge_core(&t, c);
            core_health.insert(c.core, h);
            core_ops.insert(c.core, c.ops);
            let state = self.cores.entry(c.core).or_default();
            if let Some((from, to, reason)) = advance(state, h, why, t.ticks_to_change) {
                changes.push(HealthChange { subject: Subject::Core(c.core), from, to, reason });
            }
        }
        self.shards.retain(|n, _| shards.iter().any(|s| s.shard == *n));
        for s in shards {
            let core = core_health.get(&s.core).copied().unwrap_or(Health::Healthy);
            let ops = core_ops.get(&s.core).copied().unwrap_or(0);
            let (h, why) = judge_shard(&t, s, core, ops);
            let state = self.shards.entry(s.shard).or_default();
            if let Some((from, to, reason)) = advance(state, h, why, t.ticks_to_change) {
                changes.push(HealthChange { subject: Subject::Shard(s.shard), from, to, reason });
            }
        }
        changes
    }

    pub fn core(&self, core: usize) -> HealthState {
        self.cores.get(&core).cloned().unwrap_or_default()
    }

    pub fn shard(&self, shard: u64) -> HealthState {
        self.shards.get(&shard).cloned().unwrap_or_default()
    }
}

fn slow(t: &HealthThresholds, ops: u64, p99_ns: u64) -> Option<String> {
    (ops >= t.slow_ops_min && p99_ns >= t.service_p99_slow_ns).then(|| {
        format!(
            "p99 service time {:.1} ms >= {:.1} ms",
            p99_ns as f64 / 1e6,
            t.service_p99_slow_ns as f64 / 1e6
        )
    })
}

fn judge_core(t: &HealthThresholds, c: &CoreFigures) -> (Health, String) {
    if c.ticks_missed >= t.missed_ticks_failed {
        return (Health::Failed, format!("no tick for {} ticks", c.ticks_missed));
    }
    if c.busy_ratio >= t.busy_ratio_overloaded {
        let why =
            format!("busy {:.0}% >= {:.0}%", c.busy_ratio * 100.0, t.busy_ratio_overloaded * 100.0);
        return (Health::Overloaded, why);
    }
    if c.queue_depth_max >= t.queue_depth_overloaded {
        let why = format!("queue depth {} >= {}", c.queue_depth_max, t.queue_depth_overloaded);
        return (Health::Overloaded, why);
    }
    if let Some(why) = slow(t, c.ops, c.service_p99_ns) {
        return (Health::Slow, why);
    }
    (Health::Healthy, String::new())
}

fn judge_shard(
    t: &HealthThresholds,
    s: &ShardFigures,
    core: Health,
    core_ops: u64,
) -> (Health, String) {
    if let Some(f) = &s.failure {
        return (Health::Failed, format!("not serving: {f}"));
    }
    if core == Health::Failed {
        return (Health::Failed, format!("its core {} is failed", s.core));
    }
    if let Some(why) = slow(t, s.ops, s.service_p99_ns) {
        return (Health::Slow, why);
    }
    let share = if core_ops > 0 { s.ops as f64 / core_ops as f64 } else { 0.0 };
    if core == Health::Overloaded && s.ops > 0 && share >= t.overload_share_min {
        let why = format!(
            "core {} is {core}, this shard served {:.0}% of its ops",
            s.core,
            share * 100.0
        );
        return (Health::Overloaded, why);
    }
    (Health::Healthy, String::new())
}

/// Moves a state toward `seen`: failure at once, other states after `ticks` in a row.
fn advance(
    state: &mut HealthState,
    seen: Health,
    why: String,
    ticks: u32,
) -> Option<(Health, Health, String)> {
    if seen == state.health {
        state.reason = why;
        state.pending = None;
        return None;
    }
    let held = match &state.pending {
        Some((h, _, n)) if *h == seen => n + 1,
        _ => 1,
    };
    if seen == Health::Failed || held >= ticks.max(1) {
        let from = state.health;
        state.health = seen;
        state.reason = why.clone();
        state.pending = None;
        return Some((from, seen, why));
    }
    state.pending = Some((seen, why, held));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(busy: f64, missed: u32) -> CoreFigures {
        CoreFigures {
            core: 0,
            ticks_missed: missed,
            busy_ratio: busy,
            queue_depth_max: 1,
            ops: 100,
            service_p99_ns: 1_000,
        }
    }

    fn shard(ops: u64, p99_ns: u64, failure: Option<&str>) -> ShardFigures {
        ShardFigures {
            shard: 7,
            core: 0,
            failure: failure.map(String::from),
            ops,
            service_p99_ns: p99_ns,
        }
    }

    /// A busy core becomes overloaded after two ticks (not one), with its busiest shard, and
    /// recovers after two quiet ticks.
    #[test]
    fn a_busy_core_becomes_overloaded_after_the_hold_and_recovers() {
        let mut m = HealthMonitor::default();
        assert!(m.observe(&[core(0.95, 0)], &[shard(100, 1_000, None)]).is_empty());
        assert_eq!(m.core(0).health, Health::Healthy);
        let changes = m.observe(&[core(0.97, 0)], &[shard(100, 1_000, None)]);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(m.core(0).health, Health::Overloaded);
        assert!(m.core(0).reason.contains("busy 97%"), "{}", m.core(0).reason);
        assert_eq!(m.shard(7).health, Health::Overloaded);
        m.observe(&[core(0.1, 0)], &[shard(100, 1_000, None)]);
        assert_eq!(m.core(0).health, Health::Overloaded, "held one tick only");
        m.observe(&[core(0.1, 0)], &[shard(100, 1_000, None)]);
        assert_eq!((m.core(0).health, m.shard(7).health), (Health::Healthy, Health::Healthy));
    }

    /// Failures count at once; a shard with slow ops is slow; a quiet shard on a busy core
    /// is not overloaded.
    #[test]
    fn failures_are_immediate_and_slow_shards_are_told_apart() {
        let mut m = HealthMonitor::default();
        m.observe(&[core(0.1, 3)], &[shard(0, 0, Some("checksum mismatch"))]);
        assert_eq!(m.core(0).health, Health::Failed);
        assert_eq!(m.shard(7).health, Health::Failed);
        assert!(m.shard(7).reason.contains("checksum mismatch"));
        let mut m = HealthMonitor::default();
        for _ in 0..2 {
            m.observe(&[core(0.1, 0)], &[shard(100, 50_000_000, None)]);
        }
        assert_eq!(m.shard(7).health, Health::Slow);
        let mut m = HealthMonitor::default();
        for _ in 0..2 {
            m.observe(&[core(0.99, 0)], &[shard(1, 1_000, None)]);
        }
        assert_eq!(m.shard(7).health, Health::Healthy, "1% of the core's ops");
    }
}
