//! The allocator's rules, applied once per round (`Allocator::choose`):
//!
//! 1. The capacity model takes the round's core figures.
//! 2. Each partition's demand: the forecast's upper quantile of its peak over the horizon
//!    (predictive), or its observed load (reactive); a predictive demand also includes the
//!    observed load *sustained* over the time a migration takes (so a real overload the
//!    forecast missed is answered, and a spike shorter than a migration is not).
//! 3. Thresholds with hysteresis: a partition with k shards splits above
//!    `target · capacity(k)` and merges only when the peak it remembers over `merge-delay`
//!    fits under `merge_fraction · target · capacity(k - 1)`, and not within `merge-delay` of
//!    its last change (CockroachDB #41317/#62700: merge against the recent maximum at half the
//!    split threshold).
//! 4. A split (or carve-out) only where it pays: a core with room for the new shard's share
//!    of the load, and, when the machine's idle CPU is known, an idle CPU for it.
//! 5. When no partition needs a change, a core planned over its target for longer than a
//!    move takes sheds a whole shard (of a partition settled for `merge-delay`) to a core
//!    without the partition's other shards, if that lowers the busier core by a margin (a
//!    move).
//! 6. At most one change at a time (the engine runs one migration at a time), within the
//!    migration budget per minute, the most urgent first.
//!
//! Every change and every near-threshold non-change goes to the explanation log.

use super::capacity::{partition_capacity, CapacityModel, CoreSample};
use super::explain::{ExplainLog, Explanation};
use super::{Action, Decision, PartitionState, Policy, Settings, View};
use std::collections::{HashMap, VecDeque};

/// Partitions the allocator remembers (recent peaks, last change); past it the one seen
/// longest ago is forgotten.
pub const PARTITION_MEMORY_MAX: usize = 10_000;
/// Partitions planned per round: those with own shards, then the busiest of the rest.
pub const PLAN_PARTITIONS_MAX: usize = 1_000;
/// Buckets of the remembered peak over `merge-delay`.
pub const PEAK_BUCKETS: u64 = 30;
/// Observed rates kept per partition for the spike filter.
pub const OBSERVED_KEPT_MAX: usize = 600;
/// A near-threshold explanation for the same partition and reason is repeated at most this
/// often.
pub const NOTE_INTERVAL_MS: u64 = 60_000;
/// A migration whose outcome never came is forgotten after this long.
pub const IN_FLIGHT_MAX_MS: u64 = 1_200_000;
/// A shard moved this recently that needs moving again is split instead (see
/// `relieve_cores`).
pub const MOVED_RECENTLY_MS: u64 = 3_600_000;
/// After a failed change, the partition is left alone this long.
pub const FAILURE_BACKOFF_MS: u64 = 60_000;
/// Migration throughput assumed until one is measured: 35 MB in 0.6 s on this project's
/// machine (docs/benchmarks.md).
pub const MIGRATION_BYTES_PER_SEC_PRIOR: f64 = 58e6;

/// What became of a decision the server executed.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done {
        at_ms: u64,
        bytes: u64,
        micros: u64,
    },
    /// Refused or rolled back; `error` is the engine's text.
    Failed {
        at_ms: u64,
        error: String,
    },
}

#[derive(Debug, Clone, Default)]
struct Memory {
    seen_ms: u64,
    /// (bucket start, max demand in it) over the last `merge-delay`.
    peaks: VecDeque<(u64, f64)>,
    /// (time, observed ops/s), newest last.
    observed: VecDeque<(u64, f64)>,
    last_change_ms: Option<u64>,
    /// When one of its shards was last moved.
    last_move_ms: Option<u64>,
    /// The own shards seen last round: a change made by anyone (an operator, or before a
    /// restart) counts as a change when the allocator first sees it.
    own_seen: Option<Vec<u64>>,
    blocked_until_ms: u64,
    last_note: Option<(u64, String)>,
}

/// The allocator and what it remembers between rounds.
#[derive(Debug, Clone)]
pub struct Allocator {
    pub settings: Settings,
    pub capacity: CapacityModel,
    pub log: ExplainLog,
    memory: HashMap<Vec<u8>, Memory>,
    /// Start times of recent migrations (the budget), newest last.
    starts: VecDeque<u64>,
    in_flight: Option<(u64, Action)>,
    /// Since when each core has been planned over its target.
    over_since: HashMap<usize, u64>,
    /// Measured migration throughput (smoothed), bytes/s.
    migration_rate: f64,
    /// Changes decided, done and failed since the start.
    pub decided: u64,
    pub done: u64,
    pub failed: u64,
}

/// A partition's figures in one round.
struct Judged {
    demand: f64,
    observed: f64,
    remembered: f64,
    split_at: f64,
    merge_at: f64,
    wanted: usize,
    shards: usize,
    overloaded_now: bool,
    basis: String,
}

impl Allocator {
    pub fn new(cores: usize, settings: Settings) -> Allocator {
        let capacity = CapacityModel::new(cores, settings.core_capacity_ops);
        Allocator {
            settings,
            capacity,
            log: ExplainLog::default(),
            memory: HashMap::new(),
            starts: VecDeque::new(),
            in_flight: None,
            over_since: HashMap::new(),
            migration_rate: MIGRATION_BYTES_PER_SEC_PRIOR,
            decided: 0,
            done: 0,
            failed: 0,
        }
    }

    pub fn set_policy(&mut self, policy: Policy) {
        self.settings.policy = policy;
    }

    /// The change being executed, if any.
    pub fn in_flight(&self) -> Option<&Action> {
        self.in_flight.as_ref().map(|(_, a)| a)
    }

    /// The measured migration throughput in bytes/s (the prior until one was measured).
    pub fn migration_rate(&self) -> f64 {
        self.migration_rate
    }

    /// The server reports what became of the decision in flight.
    pub fn outcome(&mut self, outcome: Outcome) {
        let Some((_, action)) = self.in_flight.take() else { return };
        let memory = self.memory.entry(action.partition().to_vec()).or_default();
        match outcome {
            Outcome::Done { at_ms, bytes, micros } => {
                self.done += 1;
                memory.last_change_ms = Some(at_ms);
                if matches!(action, Action::Move { .. }) {
                    memory.last_move_ms = Some(at_ms);
                }
                if bytes > 1_000_000 && micros > 0 {
                    let rate = bytes as f64 / (micros as f64 / 1e6);
                    self.migration_rate += 0.3 * (rate - self.migration_rate);
                }
            }
            Outcome::Failed { at_ms, error } => {
                self.failed += 1;
                memory.blocked_until_ms = at_ms + FAILURE_BACKOFF_MS;
                self.log.push(Explanation {
                    at_ms,
                    partition: action.partition().to_vec(),
                    policy: self.settings.policy.as_str().into(),
                    action: "failed".into(),
                    change: action.to_string(),
                    reason: format!(
                        "the engine did not carry it out: {error}; the partition is left alone for {} s",
                        FAILURE_BACKOFF_MS / 1000
                    ),
                    ..blank()
                });
            }
        }
    }

    /// One round: the decisions to execute now (at most one), most urgent first.
    pub fn choose(&mut self, view: &View) -> Vec<Decision> {
        let now = view.now_ms;
        let samples: Vec<CoreSample> = view
            .cores
            .iter()
            .filter(|c| c.alive)
            .map(|c| CoreSample {
                core: c.core,
                ops_per_sec: c.ops_per_sec,
                remote_ops_per_sec: c.remote_ops_per_sec,
                busy: c.busy,
            })
            .collect();
        self.capacity.observe(&samples);
        self.remember(view);
        self.track_cores(view);
        if self.settings.policy == Policy::Static {
            return Vec::new();
        }
        if let Some((since, _)) = &self.in_flight {
            if now.saturating_sub(*since) < IN_FLIGHT_MAX_MS {
                return Vec::new();
            }
            self.in_flight = None;
        }
        if view.migrating {
            return Vec::new();
        }
        let loads = core_loads(view, self);
        let mut candidates = Vec::new();
        for p in planned(view) {
            if let Some(d) = self.judge_partition(view, p, &loads) {
                candidates.push(d);
            }
        }
        if candidates.is_empty() {
            candidates.extend(self.relieve_cores(view));
        }
        candidates.sort_by(|a, b| b.urgency.total_cmp(&a.urgency));
        let Some(mut best) = candidates.into_iter().next() else { return Vec::new() };
        while self.starts.front().is_some_and(|t| now.saturating_sub(*t) >= 60_000) {
            self.starts.pop_front();
        }
        if self.starts.len() >= self.settings.migrations_per_minute_max as usize {
            best.explanation.action = "none".into();
            best.explanation.rejected = format!(
                "{} deferred: {} migrations started in the last minute (migrations-per-minute-max)",
                best.action,
                self.starts.len()
            );
            self.note(best.explanation, now);
            return Vec::new();
        }
        self.starts.push_back(now);
        self.in_flight = Some((now, best.action.clone()));
        self.decided += 1;
        self.log.push(best.explanation.clone());
        vec![best]
    }

    /// Updates each partition's remembered peak and observed rates.
    fn remember(&mut self, view: &View) {
        let now = view.now_ms;
        let bucket_ms = (self.settings.merge_delay_ms / PEAK_BUCKETS).max(1);
        for p in &view.partitions {
            let m = self.memory.entry(p.partition.clone()).or_default();
            m.seen_ms = now;
            if m.own_seen.as_ref() != Some(&p.own) {
                if !p.own.is_empty() || m.own_seen.is_some() {
                    m.last_change_ms = Some(now);
                }
                m.own_seen = Some(p.own.clone());
            }
            let demand = match (&p.forecast, self.settings.policy) {
                (Some(f), Policy::Predictive) => f.upper.max(p.ops_per_sec),
                _ => p.ops_per_sec,
            };
            let bucket = now - now % bucket_ms;
            match m.peaks.back_mut() {
                Some((b, max)) if *b == bucket => *max = max.max(demand),
                _ => m.peaks.push_back((bucket, demand)),
            }
            // A bucket is forgotten once all of it is older than the delay (so a peak is
            // remembered for the delay at least, at most a bucket longer).
            while m
                .peaks
                .front()
                .is_some_and(|(b, _)| b + bucket_ms + self.settings.merge_delay_ms <= now)
            {
                m.peaks.pop_front();
            }
            m.observed.push_back((now, p.ops_per_sec));
            while m.observed.len() > OBSERVED_KEPT_MAX {
                m.observed.pop_front();
            }
        }
        if self.memory.len() > PARTITION_MEMORY_MAX {
            let mut by_age: Vec<(u64, Vec<u8>)> =
                self.memory.iter().map(|(k, m)| (m.seen_ms, k.clone())).collect();
            by_age.sort();
            for (_, k) in by_age.into_iter().take(self.memory.len() - PARTITION_MEMORY_MAX) {
                self.memory.remove(&k);
            }
        }
    }

    /// How long load must be sustained to count: at least two ticks, and at least as long as
    /// a migration of `bytes` would take.
    fn spike_ms(&self, view: &View, bytes: u64) -> u64 {
        let migration_ms = (bytes as f64 / self.migration_rate * 1000.0) as u64;
        (2 * view.tick_ms).max(migration_ms)
    }

    /// The lowest observed rate over the last `ms` (0 if the memory does not reach that far).
    fn sustained(&self, p: &[u8], now: u64, ms: u64) -> f64 {
        let Some(m) = self.memory.get(p) else { return 0.0 };
        let covers = m.observed.front().is_some_and(|(t, _)| *t + ms <= now);
        if !covers {
            return 0.0;
        }
        // Newest last: walk back only as far as the window reaches.
        m.observed
            .iter()
            .rev()
            .take_while(|(t, _)| t + ms >= now)
            .map(|(_, v)| *v)
            .fold(f64::INFINITY, f64::min)
    }

    fn partition_bytes(view: &View, p: &PartitionState) -> u64 {
        p.own.iter().filter_map(|n| view.shard(*n)).map(|s| s.bytes).sum()
    }

    fn judge(&self, view: &View, p: &PartitionState, core_capacity: f64) -> Judged {
        let s = &self.settings;
        let r = self.capacity.split_cost().remote_extra;
        let shards = p.own.len();
        let k = shards.max(1);
        let max = s.shards_per_partition_max.max(1);
        let cap = |k: usize| s.target_utilization * partition_capacity(core_capacity, k, r);
        let split_at = cap(k);
        let merge_at = match shards {
            0 => 0.0,
            1 => s.fold_back_fraction * s.target_utilization * core_capacity,
            _ => s.merge_fraction * cap(k - 1),
        };
        let now = view.now_ms;
        let observed = p.ops_per_sec;
        let (demand, basis) = match (&p.forecast, s.policy) {
            (Some(f), Policy::Predictive) if f.model != "reactive" => {
                let spike = self.spike_ms(view, Self::partition_bytes(view, p) / k as u64);
                let held = self.sustained(&p.partition, now, spike);
                (f.upper.max(held), f.model.clone())
            }
            _ => {
                let hold = s.reactive_hold_ms.max(self.spike_ms(view, 0));
                (self.sustained(&p.partition, now, hold), "reactive".to_owned())
            }
        };
        let remembered = self
            .memory
            .get(&p.partition)
            .map_or(demand, |m| m.peaks.iter().map(|(_, v)| *v).fold(demand, f64::max));
        let wanted = (1..=max).find(|&k| demand <= cap(k)).unwrap_or(max);
        Judged {
            demand,
            observed,
            remembered,
            split_at,
            merge_at,
            wanted,
            shards,
            overloaded_now: observed > split_at,
            basis,
        }
    }

    /// A partition's decision, if it needs one (near-threshold non-decisions are logged).
    fn judge_partition(
        &mut self,
        view: &View,
        p: &PartitionState,
        loads: &HashMap<usize, f64>,
    ) -> Option<Decision> {
        let now = view.now_ms;
        let memory = self.memory.get(&p.partition);
        if memory.is_some_and(|m| m.blocked_until_ms > now) {
            return None;
        }
        let c = self.planning_capacity(view)?;
        let j = self.judge(view, p, c);
        let s = &self.settings;
        // Far from both thresholds: nothing to decide and nothing to explain (most partitions
        // of most rounds; the explanation is not even built).
        let near = s.near_fraction;
        if j.demand <= j.split_at * (1.0 - near)
            && !(j.shards >= 1 && j.remembered < j.merge_at * (1.0 + near))
        {
            return None;
        }
        let mut e = self.explanation(view, p, &j, c);
        if j.demand > j.split_at && j.shards < s.shards_per_partition_max.max(1) {
            let urgency = j.demand / j.split_at.max(1e-9) + j.overloaded_now as u8 as f64;
            let (action, new_load, source_core) = match (p.own.as_slice(), p.home) {
                ([], Some(home)) => {
                    let home_core = view.shard(home).map_or(usize::MAX, |s| s.core);
                    (None, j.demand / j.wanted.max(2) as f64, home_core)
                }
                ([], None) => return None,
                (own, _) => {
                    let busiest = *own
                        .iter()
                        .max_by(|a, b| {
                            let la = view.shard(**a).map_or(0.0, |s| s.ops_per_sec);
                            let lb = view.shard(**b).map_or(0.0, |s| s.ops_per_sec);
                            la.total_cmp(&lb).then(b.cmp(a))
                        })
                        .expect("own shards");
                    let core = view.shard(busiest).map_or(usize::MAX, |s| s.core);
                    (Some(busiest), j.demand / (j.shards + 1) as f64, core)
                }
            };
            let hosting: Vec<usize> =
                p.own.iter().filter_map(|n| view.shard(*n)).map(|s| s.core).collect();
            let target =
                best_core(view, loads, self, |c| c != source_core && !hosting.contains(&c))
                    .or_else(|| best_core(view, loads, self, |c| c != source_core));
            let what = if p.own.is_empty() { "carve-out" } else { "split" };
            let Some((to_core, room)) = target else {
                e.rejected = format!("{what}: no other live core to put a shard on");
                self.note(e, now);
                return None;
            };
            if room < new_load {
                e.rejected = format!(
                    "{what}: no core has room for the new shard's {new_load:.0} ops/s (core {to_core} has {room:.0} below its target); a split with nowhere to go costs CPU and gains nothing"
                );
                self.note(e, now);
                return None;
            }
            if let Some(idle) = view.host_idle_cpus {
                // The real machine's CPU per op (measured, even when the capacity the
                // thresholds use is pinned to model another machine).
                let per_op = 1.0
                    / self.capacity.measured(to_core).or(self.capacity.core(to_core)).unwrap_or(c);
                let needed = new_load * per_op;
                if idle < needed {
                    e.rejected = format!(
                        "{what}: the machine has {idle:.2} idle CPUs and the new shard needs {needed:.2}: no idle core to go to"
                    );
                    self.note(e, now);
                    return None;
                }
            }
            let action = match action {
                None => Action::CarveOut {
                    partition: p.partition.clone(),
                    from_shard: p.home.expect("checked"),
                    to_core,
                },
                Some(shard) => Action::Split { partition: p.partition.clone(), shard, to_core },
            };
            e.action = action.kind().into();
            e.change = action.to_string();
            e.reason = format!(
                "demand {:.0} ops/s ({}) is over the split threshold {:.0} of {} shard(s); {} wanted",
                j.demand, j.basis, j.split_at, j.shards.max(1), j.wanted
            );
            return Some(Decision { action, urgency, explanation: e });
        }
        let since_change = memory.and_then(|m| m.last_change_ms).map(|t| now.saturating_sub(t));
        let settled = since_change.is_none_or(|d| d >= s.merge_delay_ms);
        if j.shards >= 1 && j.remembered < j.merge_at {
            if !settled {
                e.rejected = format!(
                    "merge: the last change was {} s ago, merge-delay is {} s",
                    since_change.unwrap_or(0) / 1000,
                    s.merge_delay_ms / 1000
                );
                self.note(e, now);
                return None;
            }
            let action = if j.shards == 1 {
                Action::FoldBack { partition: p.partition.clone(), shard: p.own[0] }
            } else {
                let load = |n: u64| view.shard(n).map_or(0.0, |s| s.ops_per_sec);
                let i = (0..p.own.len() - 1)
                    .min_by(|&a, &b| {
                        let la = load(p.own[a]) + load(p.own[a + 1]);
                        let lb = load(p.own[b]) + load(p.own[b + 1]);
                        la.total_cmp(&lb)
                    })
                    .expect("two shards");
                let (low, high) = (p.own[i], p.own[i + 1]);
                let keys = |n: u64| view.shard(n).map_or(0, |s| s.keys);
                let (donor, absorber) =
                    if keys(low) < keys(high) { (low, high) } else { (high, low) };
                Action::Merge { partition: p.partition.clone(), donor, absorber }
            };
            e.action = action.kind().into();
            e.change = action.to_string();
            e.reason = format!(
                "the highest demand of the last {} s, {:.0} ops/s, is under the merge threshold {:.0}",
                s.merge_delay_ms / 1000,
                j.remembered,
                j.merge_at
            );
            let urgency = 0.1 * (1.0 - j.remembered / j.merge_at.max(1e-9));
            return Some(Decision { action, urgency, explanation: e });
        }
        // Near a threshold: say why nothing is done.
        if j.demand > j.split_at * (1.0 - near) {
            e.reason = if j.shards >= s.shards_per_partition_max.max(1) {
                format!(
                    "demand {:.0} ops/s is near or over the split threshold {:.0}, but the partition has shards-per-partition-max shards",
                    j.demand, j.split_at
                )
            } else {
                format!(
                    "demand {:.0} ops/s is under the split threshold {:.0} (within {:.0}%)",
                    j.demand,
                    j.split_at,
                    near * 100.0
                )
            };
            self.note(e, now);
        } else if j.shards >= 1 && j.remembered < j.merge_at * (1.0 + near) {
            e.reason = format!(
                "the highest demand of the last {} s, {:.0} ops/s, is over the merge threshold {:.0} (within {:.0}%)",
                s.merge_delay_ms / 1000,
                j.remembered,
                j.merge_at,
                near * 100.0
            );
            self.note(e, now);
        }
        None
    }

    /// Notes since when each live core has been planned over its target.
    fn track_cores(&mut self, view: &View) {
        let loads = core_loads(view, self);
        let target = self.settings.target_utilization;
        for c in &view.cores {
            let over = c.alive
                && self
                    .capacity
                    .core(c.core)
                    .is_some_and(|cap| loads.get(&c.core).copied().unwrap_or(0.0) > target * cap);
            if !over {
                self.over_since.remove(&c.core);
            } else {
                self.over_since.entry(c.core).or_insert(view.now_ms);
            }
        }
    }

    /// A move for the core planned furthest over its target, when no partition needs a
    /// change. A move must pay: the core has been over its target for longer than the move's
    /// migration takes, the shard's partition has not changed within `merge-delay`, the
    /// target holds no other shard of the partition (that would undo its split), nothing ends
    /// over its target, and the busier of the two cores drops by `near_fraction` of the target
    /// at least (so two cores near their targets do not trade shards back and forth).
    fn relieve_cores(&mut self, view: &View) -> Option<Decision> {
        let now = view.now_ms;
        let loads = core_loads(view, self);
        let target = self.settings.target_utilization;
        let near = self.settings.near_fraction;
        let ratio_of = |core: usize, load: f64| -> Option<f64> {
            Some(load / (target * self.capacity.core(core)?))
        };
        let mut worst: Option<(usize, f64)> = None;
        for c in view.cores.iter().filter(|c| c.alive) {
            let Some(ratio) = ratio_of(c.core, loads.get(&c.core).copied().unwrap_or(0.0)) else {
                continue;
            };
            let relieve_at = self.settings.relieve_utilization / target.max(1e-9);
            if ratio > relieve_at && worst.is_none_or(|(_, r)| ratio > r) {
                worst = Some((c.core, ratio));
            }
        }
        let (core, ratio) = worst?;
        let over_ms = now.saturating_sub(*self.over_since.get(&core)?);
        let excess = loads[&core] - target * self.capacity.core(core)?;
        // What could leave the core: an own shard whole (a move), or a partition living in
        // a shared shard there (a carve-out to another core; shared shards themselves never
        // move). Each with its load, its bytes, and the cores of its partition's other shards.
        struct Leaving<'a> {
            state: &'a PartitionState,
            shard: u64,
            shared: bool,
            load: f64,
            bytes: u64,
            siblings: Vec<usize>,
        }
        let mut leaving: Vec<Leaving<'_>> = Vec::new();
        for s in view.shards.iter().filter(|s| s.core == core) {
            match &s.partition {
                Some(p) => {
                    let Some(state) = view.partition(p) else { continue };
                    let siblings = state
                        .own
                        .iter()
                        .filter(|n| **n != s.number)
                        .filter_map(|n| view.shard(*n))
                        .map(|x| x.core)
                        .collect();
                    let load = shard_demand(view, self, state, s.number);
                    leaving.push(Leaving {
                        state,
                        shard: s.number,
                        shared: false,
                        load,
                        bytes: s.bytes,
                        siblings,
                    });
                }
                None => {
                    for state in view.partitions.iter().filter(|p| p.home == Some(s.number)) {
                        let load = shard_demand(view, self, state, s.number);
                        if load <= 0.0 {
                            continue;
                        }
                        // Its bytes are not known apart from the shard's: its share of the
                        // shard's ops stands in.
                        let share = (state.ops_per_sec / s.ops_per_sec.max(1e-9)).min(1.0);
                        leaving.push(Leaving {
                            state,
                            shard: s.number,
                            shared: true,
                            load,
                            bytes: (s.bytes as f64 * share) as u64,
                            siblings: Vec::new(),
                        });
                    }
                }
            }
        }
        // A partition carved out must stay clear of the fold-back threshold, or the next
        // quiet hour folds it back and the core is over again.
        let planning = self.planning_capacity(view)?;
        let fold_back = self.settings.fold_back_fraction * target * planning;
        // A shard that needs moving again within `MOVED_RECENTLY_MS` of its last move, and
        // carries more than half a core's target, is split instead: whichever core it lands
        // on, that core's other load rises with the day and it is over again (the simulator
        // saw one shard moved nine times in a morning). Half of it leaves. A split needs an
        // idle CPU like any other.
        let halve_from = 0.5 * target * planning;
        let max_shards = self.settings.shards_per_partition_max.max(1);
        let idle_for = |load: f64| view.host_idle_cpus.is_none_or(|idle| idle >= load / planning);
        let splits = |l: &Leaving<'_>| {
            let moved_recently = self
                .memory
                .get(&l.state.partition)
                .and_then(|m| m.last_move_ms)
                .is_some_and(|t| now.saturating_sub(t) < MOVED_RECENTLY_MS);
            !l.shared
                && moved_recently
                && l.load > halve_from
                && l.state.own.len() < max_shards
                && idle_for(l.load / 2.0)
        };
        let mut best: Option<(f64, u64, &Leaving<'_>, usize)> = None;
        for l in &leaving {
            if l.shared && l.load < 2.0 * fold_back {
                continue;
            }
            let p = &l.state.partition;
            let memory = self.memory.get(p);
            let settled = memory
                .and_then(|m| m.last_change_ms)
                .is_none_or(|t| now.saturating_sub(t) >= self.settings.merge_delay_ms);
            if !settled || memory.is_some_and(|m| m.blocked_until_ms > now) {
                continue;
            }
            if over_ms < self.spike_ms(view, l.bytes) {
                continue;
            }
            for to in view.cores.iter().filter(|c| c.alive && c.core != core) {
                if l.siblings.contains(&to.core) {
                    continue;
                }
                let leaves = if splits(l) { l.load / 2.0 } else { l.load };
                let Some(after_to) =
                    ratio_of(to.core, loads.get(&to.core).copied().unwrap_or(0.0) + leaves)
                else {
                    continue;
                };
                let after_from = ratio_of(core, loads[&core] - leaves)?;
                let after_max = after_to.max(after_from);
                if after_to > 1.0 || after_max > ratio - near {
                    continue;
                }
                if best.as_ref().is_none_or(|b| (after_max, l.bytes) < (b.0, b.1)) {
                    best = Some((after_max, l.bytes, l, to.core));
                }
            }
        }
        let (after_max, _, l, to_core) = best?;
        let (partition, shard, shared, split) =
            (l.state.partition.clone(), l.shard, l.shared, splits(l));
        let p = l.state;
        let c = planning;
        let j = self.judge(view, p, c);
        let mut e = self.explanation(view, p, &j, c);
        let action = if shared {
            Action::CarveOut { partition, from_shard: shard, to_core }
        } else if split {
            Action::Split { partition, shard, to_core }
        } else {
            Action::Move { partition, shard, to_core }
        };
        e.action = action.kind().into();
        e.change = action.to_string();
        e.reason = format!(
            "core {core} has been planned at {:.0}% of its target ({:.0} ops/s over) for {} s; after the {} the busier of the two is at {:.0}%",
            ratio * 100.0,
            excess,
            over_ms / 1000,
            action.kind(),
            after_max * 100.0
        );
        Some(Decision { action, urgency: ratio, explanation: e })
    }

    /// The capacity the thresholds use: the mean of the live cores' (pinned or measured).
    fn planning_capacity(&self, view: &View) -> Option<f64> {
        let caps: Vec<f64> = view
            .cores
            .iter()
            .filter(|c| c.alive)
            .filter_map(|c| self.capacity.core(c.core))
            .collect();
        (!caps.is_empty()).then(|| caps.iter().sum::<f64>() / caps.len() as f64)
    }

    fn explanation(&self, view: &View, p: &PartitionState, j: &Judged, c: f64) -> Explanation {
        let f = p.forecast.as_ref();
        Explanation {
            at_ms: view.now_ms,
            partition: p.partition.clone(),
            policy: self.settings.policy.as_str().into(),
            action: "none".into(),
            change: String::new(),
            observed: j.observed,
            demand: j.demand,
            forecast_peak: f.map(|f| f.peak),
            forecast_upper: f.map(|f| f.upper),
            quantile: f.map_or(0.0, |f| f.quantile),
            model: j.basis.clone(),
            core_capacity: c,
            split_cost: self.capacity.split_cost().remote_extra,
            shards: j.shards,
            wanted: j.wanted,
            split_at: j.split_at,
            merge_at: j.merge_at,
            reason: String::new(),
            rejected: String::new(),
        }
    }

    /// Logs a non-decision, unless the same was said of the partition within
    /// `NOTE_INTERVAL_MS` (the same words; the figures in them may differ).
    fn note(&mut self, e: Explanation, now: u64) {
        let words = |t: &str| -> String {
            t.chars().filter(|c| !c.is_ascii_digit() && *c != '.').collect()
        };
        let said = format!("{}|{}", words(&e.reason), words(&e.rejected));
        let m = self.memory.entry(e.partition.clone()).or_default();
        if let Some((at, what)) = &m.last_note {
            if *what == said && now.saturating_sub(*at) < NOTE_INTERVAL_MS {
                return;
            }
        }
        m.last_note = Some((now, said));
        self.log.push(e);
    }
}

fn blank() -> Explanation {
    Explanation {
        at_ms: 0,
        partition: Vec::new(),
        policy: String::new(),
        action: String::new(),
        change: String::new(),
        observed: 0.0,
        demand: 0.0,
        forecast_peak: None,
        forecast_upper: None,
        quantile: 0.0,
        model: String::new(),
        core_capacity: 0.0,
        split_cost: 0.0,
        shards: 0,
        wanted: 0,
        split_at: 0.0,
        merge_at: 0.0,
        reason: String::new(),
        rejected: String::new(),
    }
}

/// The partitions planned this round: every one with own shards, then the busiest others,
/// `PLAN_PARTITIONS_MAX` in all.
fn planned(view: &View) -> Vec<&PartitionState> {
    let mut own: Vec<&PartitionState> =
        view.partitions.iter().filter(|p| !p.own.is_empty()).collect();
    let mut rest: Vec<&PartitionState> =
        view.partitions.iter().filter(|p| p.own.is_empty()).collect();
    let demand =
        |p: &PartitionState| p.forecast.as_ref().map_or(0.0, |f| f.upper).max(p.ops_per_sec);
    rest.sort_by(|a, b| {
        demand(b).total_cmp(&demand(a)).then_with(|| a.partition.cmp(&b.partition))
    });
    own.extend(rest);
    own.truncate(PLAN_PARTITIONS_MAX);
    own
}

/// A shard's share of its partition's demand (by its share of the partition's observed ops,
/// evenly when there were none); a shared shard's observed load.
fn shard_demand(view: &View, a: &Allocator, p: &PartitionState, shard: u64) -> f64 {
    let demand = match (&p.forecast, a.settings.policy) {
        (Some(f), Policy::Predictive) => f.upper.max(p.ops_per_sec),
        _ => p.ops_per_sec,
    };
    let ops = |n: u64| view.shard(n).map_or(0.0, |s| s.ops_per_sec);
    let total: f64 = p.own.iter().map(|n| ops(*n)).sum();
    if total > 0.0 {
        demand * ops(shard) / total
    } else {
        demand / p.own.len().max(1) as f64
    }
}

/// Each core's planned load: its own shards' demand plus its shared shards' observed load.
fn core_loads(view: &View, a: &Allocator) -> HashMap<usize, f64> {
    let mut loads: HashMap<usize, f64> = view.cores.iter().map(|c| (c.core, 0.0)).collect();
    for s in &view.shards {
        let load = match s.partition.as_ref().and_then(|p| view.partition(p)) {
            Some(p) => shard_demand(view, a, p, s.number),
            None => s.ops_per_sec,
        };
        *loads.entry(s.core).or_default() += load;
    }
    loads
}

/// The live core (among those `allowed`) with the most room below its target, and that room
/// in ops/s.
fn best_core(
    view: &View,
    loads: &HashMap<usize, f64>,
    a: &Allocator,
    allowed: impl Fn(usize) -> bool,
) -> Option<(usize, f64)> {
    view.cores
        .iter()
        .filter(|c| c.alive && allowed(c.core))
        .filter_map(|c| {
            let cap = a.capacity.core(c.core)?;
            let room =
                a.settings.target_utilization * cap - loads.get(&c.core).copied().unwrap_or(0.0);
            Some((c.core, room))
        })
        .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)))
}
