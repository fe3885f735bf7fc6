//! One policy's control loop over the simulated machine: every step the load is served, the
//! forecaster (the server's `Forecaster`) forecasts the busiest partitions, and the
//! allocator (the server's `Allocator`) chooses; its decisions are carried out by the machine
//! through the engine's layout functions, and each outcome goes back to the allocator, as the
//! server's shard manager does. Static policies never act; the oracle is the predictive
//! allocator given the true future peak instead of a forecast.

use super::machine::{mixture_quantile, Machine, TickLoad};
use super::report::{PartitionPoint, PolicyReport, TimelinePoint};
use super::workload::Workload;
use super::{PolicyKind, SimConfig};
use shardcast_engine::LayoutChange;
use shardcast_predictor::allocator::capacity::partition_capacity;
use shardcast_predictor::allocator::{
    Action, Allocator, CoreState, ForecastInput, Outcome, PartitionState, Policy, Settings,
    ShardState, View,
};
use shardcast_predictor::forecast::forecaster::{Forecaster, PartitionInput};
use shardcast_predictor::forecast::Seasons;
use shardcast_predictor::history::{
    ACTIVITY_HALF_LIFE_MS, HISTORY_PARTITIONS_MAX, MINUTE_ROWS_MAX,
};
use shardcast_predictor::trace::TraceRow;

/// Bytes per key the simulated shards report (keys only inform the explanations).
const KEY_BYTES: u64 = 200;
/// The forecaster's upper quantile (the server's).
const QUANTILE: f64 = 0.9;
/// Forecasts of a peak below this share of a core's capacity are left out of the MAPE (a
/// relative error of a near-idle partition says nothing).
const MAPE_FLOOR_SHARE: f64 = 0.01;

/// The engine's form of an allocator action (the server's `layout_change`).
fn layout_change(action: &Action) -> LayoutChange {
    match action.clone() {
        Action::CarveOut { partition, from_shard, to_core } => {
            LayoutChange::CarveOut { partition, from_shard, to_core }
        }
        Action::Split { partition, shard, to_core } => {
            LayoutChange::Split { partition, shard, to_core }
        }
        Action::Merge { partition, donor, absorber } => {
            LayoutChange::Merge { partition, donor, absorber }
        }
        Action::FoldBack { partition, shard } => LayoutChange::FoldBack { partition, shard },
        Action::Move { partition, shard, to_core } => {
            LayoutChange::Move { partition, shard, to_core }
        }
    }
}

/// Lays out every partition as an operator sizing for `profiles` would before loading the
/// data. A profile is a partition's load per time bucket: one bucket holding its mean (sizing
/// for the mean), or its peak in each hour (sizing for the peak, knowing when each partition
/// peaks). A partition over one core's target at its highest gets the shards it needs, rounded
/// up to a power of two (a split halves its source, so only powers of two divide evenly); one
/// big enough that the allocator would never fold it back gets a shard of its own; the rest
/// stay in the shared shards their names hash to. Shards are placed largest first, each on
/// the core whose highest bucket stays lowest with it, in CPU (an op of a partition with k
/// shards costs 1 + r (k - 1) / k).
pub fn size_statically(machine: &mut Machine, profiles: &[Vec<f64>], settings: &Settings) {
    let cap = machine.model.capacity_ops;
    let r = machine.model.remote_extra;
    let max = settings.shards_per_partition_max.min(machine.model.shards_per_partition_max);
    let target = |k: usize| settings.target_utilization * partition_capacity(cap, k, r);
    let buckets = profiles.iter().map(|p| p.len()).max().unwrap_or(1).max(1);
    let demand: Vec<f64> = profiles.iter().map(|p| p.iter().copied().fold(0.0, f64::max)).collect();
    let own_from = 2.0 * settings.fold_back_fraction * target(1);
    let wanted: Vec<usize> = demand
        .iter()
        .map(|&d| {
            if d > target(1) {
                (2..=max).find(|&k| d <= target(k)).unwrap_or(max).next_power_of_two().min(max)
            } else if d >= own_from {
                1
            } else {
                0
            }
        })
        .collect();
    let cores = machine.cores;
    let mut core_load = vec![vec![0.0; buckets]; cores];
    let add = |load: &mut Vec<f64>, profile: &[f64], f: f64| {
        for (t, v) in profile.iter().enumerate() {
            load[t] += v * f;
        }
    };
    for p in 0..profiles.len() {
        if wanted[p] == 0 {
            let (n, _) = machine.placement(p)[0];
            let c = machine.map.shard(n).map_or(0, |s| s.core(cores));
            add(&mut core_load[c], &profiles[p], 1.0);
        }
    }
    // The core whose highest bucket stays lowest with `f` of `profile` added.
    let best = |load: &[Vec<f64>], profile: &[f64], f: f64, used: &[usize]| {
        let peak_with =
            |c: usize| load[c].iter().zip(profile).map(|(l, v)| l + v * f).fold(0.0, f64::max);
        (0..cores)
            .filter(|c| !used.contains(c))
            .min_by(|&a, &b| peak_with(a).total_cmp(&peak_with(b)).then(a.cmp(&b)))
            .unwrap_or(0)
    };
    let mut order: Vec<usize> = (0..profiles.len()).filter(|&p| wanted[p] > 0).collect();
    order.sort_by(|&a, &b| demand[b].total_cmp(&demand[a]).then(a.cmp(&b)));
    for p in order {
        let k = wanted[p];
        let per_shard = (1.0 + r * (k as f64 - 1.0) / k as f64) / k as f64;
        let name = machine_name(machine, p);
        let (home, _) = machine.placement(p)[0];
        let c = best(&core_load, &profiles[p], per_shard, &[]);
        let carve =
            LayoutChange::CarveOut { partition: name.clone(), from_shard: home, to_core: c };
        if machine.apply_now(&carve).is_err() {
            continue;
        }
        add(&mut core_load[c], &profiles[p], per_shard);
        let mut used = vec![c];
        for _ in 1..k {
            let (biggest, _) = machine
                .placement(p)
                .iter()
                .copied()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("an own shard");
            let to = best(&core_load, &profiles[p], per_shard, &used);
            let split =
                LayoutChange::Split { partition: name.clone(), shard: biggest, to_core: to };
            if machine.apply_now(&split).is_err() {
                break;
            }
            add(&mut core_load[to], &profiles[p], per_shard);
            used.push(to);
        }
    }
}

/// A partition's load per hour (the peak of each hour), for sizing for the peak.
pub fn hourly_peaks(workload: &Workload, p: usize) -> Vec<f64> {
    let per_hour = (3_600_000 / workload.step_ms.max(1)).max(1) as usize;
    (0..workload.steps.div_ceil(per_hour))
        .map(|h| workload.peak(p, h * per_hour, (h + 1) * per_hour))
        .collect()
}

fn machine_name(machine: &Machine, p: usize) -> Vec<u8> {
    machine.names()[p].clone()
}

/// The allocator's view of the machine after a tick (the server's `build_view`).
fn view(
    machine: &Machine,
    load: &TickLoad,
    rates: &[f64],
    forecasts: &[Option<ForecastInput>],
    now_ms: u64,
    tick_ms: u64,
) -> View {
    let cores = (0..machine.cores)
        .map(|c| CoreState {
            core: c,
            alive: true,
            ops_per_sec: load.core_ops[c],
            remote_ops_per_sec: load.core_remote[c],
            busy: load.core_busy[c],
        })
        .collect();
    let bytes = machine.shard_bytes();
    let shards = machine
        .map
        .shards()
        .map(|s| {
            let b = bytes.get(&s.number).copied().unwrap_or(0);
            ShardState {
                number: s.number,
                core: s.core(machine.cores),
                partition: s.partition.clone(),
                ops_per_sec: load.shard_ops.get(&s.number).copied().unwrap_or(0.0),
                keys: b / KEY_BYTES,
                bytes: b,
            }
        })
        .collect();
    let partitions = (0..rates.len())
        .map(|p| {
            let placed = machine.placement(p);
            let own = machine.own_shards(p) > 0;
            PartitionState {
                partition: machine_name(machine, p),
                ops_per_sec: rates[p],
                own: if own { placed.iter().map(|(n, _)| *n).collect() } else { Vec::new() },
                home: if own { None } else { Some(placed[0].0) },
                forecast: forecasts[p].clone(),
            }
        })
        .collect();
    View {
        now_ms,
        tick_ms,
        cores,
        shards,
        partitions,
        host_idle_cpus: Some(load.core_busy.iter().map(|b| 1.0 - b).sum()),
        migrating: machine.running.is_some(),
        lookup: Default::default(),
    }
}

/// The forecaster as the server runs it: the busiest partitions' minute series (at most the
/// server's history keeps), refit every `fit_every` steps.
struct Forecasting {
    forecaster: Forecaster,
    /// Ops per step of every partition, from the first step.
    series: Vec<Vec<f64>>,
    /// One row per partition for its op mix and application (the forecaster's similarity).
    rows: Vec<Vec<TraceRow>>,
    /// Activity decayed with the history's half-life (which partitions the history keeps).
    activity: Vec<f64>,
    fit_every: usize,
    first_step: u64,
}

impl Forecasting {
    fn new(cfg: &SimConfig, workload: &Workload) -> Forecasting {
        let seasons = Seasons::new(workload.step_ms, cfg.day_ms);
        let horizon = (cfg.horizon_ms / workload.step_ms).max(1) as usize;
        let rows = workload
            .partitions
            .iter()
            .map(|p| {
                let n = |share: f64| (share * 1e6) as u64;
                vec![TraceRow {
                    ts_ms: workload.start_ms,
                    partition: p.name.clone(),
                    reads: n(p.mix[0]),
                    writes: n(p.mix[1]),
                    deletes: n(p.mix[2]),
                    other: n(p.mix[3]),
                    bytes_in: 0,
                    bytes_out: 0,
                    keys: 0,
                    distinct_keys: 0,
                    top_key_share: 0.0,
                    apps: vec![(p.app.clone().into_bytes(), 1_000_000)],
                }]
            })
            .collect();
        Forecasting {
            forecaster: Forecaster::new(seasons, horizon, QUANTILE),
            series: vec![Vec::new(); workload.partitions.len()],
            rows,
            activity: vec![0.0; workload.partitions.len()],
            fit_every: (cfg.fit_interval_ms / workload.step_ms).max(1) as usize,
            first_step: workload.start_ms / workload.step_ms.max(1),
        }
    }

    /// Records a step's rates and forecasts (ops/s) the partitions the history keeps.
    fn step(&mut self, step: usize, rates: &[f64], step_ms: u64) -> Vec<Option<ForecastInput>> {
        let step_s = step_ms as f64 / 1000.0;
        let decay = 0.5f64.powf(step_ms as f64 / ACTIVITY_HALF_LIFE_MS as f64);
        for (p, r) in rates.iter().enumerate() {
            self.series[p].push(r * step_s);
            self.activity[p] = self.activity[p] * decay + r * step_s;
        }
        let mut kept: Vec<usize> = (0..rates.len()).filter(|&p| self.activity[p] > 0.0).collect();
        kept.sort_by(|&a, &b| self.activity[b].total_cmp(&self.activity[a]).then(a.cmp(&b)));
        kept.truncate(HISTORY_PARTITIONS_MAX);
        let names: Vec<Vec<u8>> = kept.iter().map(|&p| self.rows[p][0].partition.clone()).collect();
        let inputs: Vec<PartitionInput<'_>> = kept
            .iter()
            .zip(&names)
            .map(|(&p, name)| {
                let s = &self.series[p];
                let skip = s.len().saturating_sub(MINUTE_ROWS_MAX);
                PartitionInput {
                    partition: name,
                    first_step: self.first_step + skip as u64,
                    values: &s[skip..],
                    rows: &self.rows[p],
                }
            })
            .collect();
        if (step + 1).is_multiple_of(self.fit_every) {
            self.forecaster.fit(&inputs);
        }
        let mut out = vec![None; rates.len()];
        for (f, &p) in self.forecaster.forecast(&inputs).into_iter().zip(&kept) {
            out[p] = Some(ForecastInput {
                peak: f.peak / step_s,
                upper: f.upper / step_s,
                quantile: QUANTILE,
                model: f.basis.as_str().to_owned(),
            });
        }
        out
    }
}

/// Runs `kind` over `workload`; the metrics of steps before `cfg.warmup_steps` are not kept.
pub fn run_policy(kind: PolicyKind, cfg: &SimConfig, workload: &Workload) -> PolicyReport {
    let step_ms = workload.step_ms;
    let partitions: Vec<(Vec<u8>, u64)> =
        workload.partitions.iter().map(|p| (p.name.clone(), p.bytes)).collect();
    let mut machine = Machine::new(cfg.cores, cfg.machine.clone(), &partitions);
    let settings = Settings {
        policy: match kind {
            PolicyKind::Reactive => Policy::Reactive,
            PolicyKind::Predictive | PolicyKind::Oracle => Policy::Predictive,
            PolicyKind::StaticMean | PolicyKind::StaticPeak => Policy::Static,
        },
        ..cfg.settings.clone()
    };
    // Every policy starts from a layout sized for the mean; static-peak from one sized for
    // the peak. Sizing uses the whole workload (what the operator knew).
    let sizing: Vec<Vec<f64>> = (0..workload.partitions.len())
        .map(|p| {
            if kind == PolicyKind::StaticPeak {
                hourly_peaks(workload, p)
            } else {
                vec![workload.mean_and_peak(p).0]
            }
        })
        .collect();
    size_statically(&mut machine, &sizing, &settings);
    let mut allocator = Allocator::new(cfg.cores, settings.clone());
    let mut forecasting = (kind == PolicyKind::Predictive).then(|| Forecasting::new(cfg, workload));
    let horizon = (cfg.horizon_ms / step_ms).max(1) as usize;
    let oracle_steps = (cfg.oracle_lookahead_ms / step_ms).max(1) as usize;
    let oracle_peaks: Vec<Vec<f64>> = if kind == PolicyKind::Oracle {
        (0..workload.partitions.len()).map(|p| workload.future_peaks(p, oracle_steps)).collect()
    } else {
        Vec::new()
    };
    let mut report = PolicyReport::new(kind, cfg, workload);
    let mut forecasts: Vec<Option<ForecastInput>> = vec![None; workload.partitions.len()];
    let mut last: Option<(TickLoad, Vec<f64>)> = None;
    let mape_floor = MAPE_FLOOR_SHARE * cfg.machine.capacity_ops;
    for step in 0..workload.steps {
        let from = workload.start_ms + step as u64 * step_ms;
        let to = from + step_ms;
        let rates: Vec<f64> =
            (0..workload.partitions.len()).map(|p| workload.rate(p, step)).collect();
        let scored = step >= cfg.warmup_steps;
        // The tick in segments: a migration that ends inside it commits there, and the
        // allocator gets its outcome and another round at that moment (with the last tick's
        // view, the newest the server would have).
        let mut tick = TickLoad::empty(cfg.cores);
        let mut t = from;
        loop {
            let end = machine.running.as_ref().map_or(to, |r| r.end_ms.clamp(t, to));
            if end > t {
                let seg = machine.serve(&rates, t, end);
                tick.add(seg, (end - t) as f64 / step_ms as f64);
            }
            t = end;
            let Some(done) = machine.finish_by(to) else { break };
            if scored {
                report.count_change(&done.change, done.bytes);
            }
            allocator.outcome(Outcome::Done {
                at_ms: done.end_ms,
                bytes: done.bytes,
                micros: (done.end_ms - done.start_ms) * 1000,
            });
            if let Some((load, seen)) = &last {
                let v = view(&machine, load, seen, &forecasts, done.end_ms, step_ms);
                decide(&mut allocator, &mut machine, &v, &mut report, scored);
            }
        }
        let p99 = mixture_quantile(&tick.tails, 0.99);
        // Forecasts at the end of the step, from the history up to it.
        if let Some(f) = forecasting.as_mut() {
            forecasts = f.step(step, &rates, step_ms);
        } else if kind == PolicyKind::Oracle {
            for (p, slot) in forecasts.iter_mut().enumerate() {
                let peak = oracle_peaks[p].get(step).copied().unwrap_or(0.0);
                *slot = Some(ForecastInput {
                    peak,
                    upper: peak,
                    quantile: 1.0,
                    model: "oracle".into(),
                });
            }
        }
        if scored {
            if kind == PolicyKind::Predictive {
                for (p, f) in forecasts.iter().enumerate() {
                    let Some(f) = f else { continue };
                    let actual = workload.peak(p, step + 1, step + 1 + horizon);
                    if actual >= mape_floor && step + 1 + horizon <= workload.steps {
                        report.forecast_error(f.peak, actual);
                    }
                }
            }
            report.tick(&machine, &tick, p99, step_ms);
            let total: f64 = rates.iter().sum();
            report.timeline.push(TimelinePoint {
                step,
                load_ops: total,
                p99_us: p99 * 1e6,
                shards: machine.map.shards().count(),
                busy_max: tick.core_busy.iter().copied().fold(0.0, f64::max),
            });
            for &p in &report.tracked.clone() {
                let cores: Vec<(usize, f64)> = machine
                    .placement(p)
                    .iter()
                    .map(|(n, share)| {
                        (machine.map.shard(*n).map_or(0, |s| s.core(cfg.cores)), *share)
                    })
                    .collect();
                let tails: Vec<_> = tick
                    .tails
                    .iter()
                    .filter_map(|tail| {
                        cores.iter().find(|(k, _)| *k == tail.core).map(|(_, share)| {
                            let mut t = *tail;
                            t.ops = share * tail.ops.max(1e-9);
                            t
                        })
                    })
                    .collect();
                report.partitions.push(PartitionPoint {
                    step,
                    partition: p,
                    load_ops: rates[p],
                    forecast_peak: forecasts[p].as_ref().map(|f| f.peak),
                    forecast_upper: forecasts[p].as_ref().map(|f| f.upper),
                    shards: machine.placement(p).len(),
                    p99_us: mixture_quantile(&tails, 0.99) * 1e6,
                });
            }
        }
        let v = view(&machine, &tick, &rates, &forecasts, to, step_ms);
        decide(&mut allocator, &mut machine, &v, &mut report, scored);
        last = Some((tick, rates));
    }
    report.finish(&allocator);
    report
}

/// One allocator round: its decision (at most one) started on the machine, or its failure
/// reported back.
fn decide(
    allocator: &mut Allocator,
    machine: &mut Machine,
    v: &View,
    report: &mut PolicyReport,
    scored: bool,
) {
    for d in allocator.choose(v) {
        if scored {
            report.explain(&d.explanation);
        }
        if let Err(e) = machine.start(layout_change(&d.action), v.now_ms) {
            report.failed += 1;
            allocator.outcome(Outcome::Failed { at_ms: v.now_ms, error: e.to_string() });
        }
    }
}
