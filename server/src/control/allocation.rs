//! The wiring between the allocator (the predictor's, pure) and the engine: the allocator's
//! `View` built from the engine's shard map and the last round's telemetry and forecasts, the
//! machine's idle CPU from /proc/stat, and the allocator's `Action` as the engine's
//! `LayoutChange`.

use super::forecast::Forecasts;
use super::view::ControlView;
use shardcast_engine::placement::shard_map::ShardMap;
use shardcast_engine::LayoutChange;
use shardcast_predictor::allocator::{
    Action, CoreState, ForecastInput, PartitionState, ShardState, View,
};
use shardcast_predictor::health::Health;
use std::collections::{BTreeMap, HashMap};

/// The forecaster's upper quantile (docs/forecasting.md).
pub const FORECAST_QUANTILE: f64 = 0.9;

/// The allocator's view: the layout from `map` (the engine's truth), loads from `round`,
/// forecasts from `forecasts`.
pub fn build_view(
    map: &ShardMap,
    round: &ControlView,
    forecasts: &Forecasts,
    cores: usize,
    host_idle_cpus: Option<f64>,
) -> View {
    let core_states = (0..cores)
        .map(|c| {
            let seen = round.cores.get(c);
            CoreState {
                core: c,
                // A core that missed its tick, or failed, is never idle to the allocator.
                alive: seen.is_some_and(|v| v.ticks_missed == 0 && v.health != Health::Failed),
                ops_per_sec: seen.map_or(0.0, |v| v.ops_per_sec),
                remote_ops_per_sec: seen.map_or(0.0, |v| v.remote_ops_per_sec),
                busy: seen.map_or(1.0, |v| v.busy_ratio),
            }
        })
        .collect();
    let shards: Vec<ShardState> = map
        .shards()
        .map(|place| {
            let seen = round.shard(place.number);
            ShardState {
                number: place.number,
                core: place.core(cores),
                partition: place.partition.clone(),
                ops_per_sec: seen.map_or(0.0, |s| s.ops_per_sec),
                keys: seen.map_or(0, |s| s.keys),
                bytes: seen.map_or(0, |s| s.used_bytes),
            }
        })
        .collect();
    let secs = round.tick_ms.max(1) as f64 / 1000.0;
    let mut observed: BTreeMap<Vec<u8>, f64> = BTreeMap::new();
    for r in &round.partitions {
        *observed.entry(r.partition.clone()).or_default() +=
            (r.reads + r.writes + r.deletes + r.other) as f64 / secs;
    }
    for p in map.partitions_with_shards().into_keys() {
        observed.entry(p).or_default();
    }
    for f in &forecasts.partitions {
        observed.entry(f.partition.clone()).or_default();
    }
    let by_name: HashMap<&[u8], _> =
        forecasts.partitions.iter().map(|f| (f.partition.as_slice(), f)).collect();
    let partitions = observed
        .into_iter()
        .map(|(partition, ops)| {
            let forecast = by_name.get(partition.as_slice()).map(|f| ForecastInput {
                peak: f.peak,
                upper: f.upper,
                quantile: FORECAST_QUANTILE,
                model: f.basis.as_str().to_owned(),
            });
            partition_state(map, partition, ops, forecast)
        })
        .collect();
    View {
        now_ms: round.at_ms,
        tick_ms: round.tick_ms,
        cores: core_states,
        migrating: round.shards.iter().any(|s| s.migrating),
        shards,
        partitions,
        host_idle_cpus,
        lookup: Default::default(),
    }
}

/// A partition as the map places it: its own shards in position order, else its shared home.
pub fn partition_state(
    map: &ShardMap,
    partition: Vec<u8>,
    ops_per_sec: f64,
    forecast: Option<ForecastInput>,
) -> PartitionState {
    let own: Vec<u64> = map.partition_shards(&partition).iter().map(|(_, s)| s.number).collect();
    let home =
        if own.is_empty() { map.shared_home(&partition).map(|(_, s)| s.number) } else { None };
    PartitionState { partition, ops_per_sec, own, home, forecast }
}

/// The engine's form of an allocator action.
pub fn layout_change(action: &Action) -> LayoutChange {
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

/// The machine's idle CPUs between two reads of /proc/stat (every process counted).
#[derive(Default)]
pub struct HostIdle {
    last: Option<(u64, u64)>,
}

impl HostIdle {
    /// Idle CPUs since the previous call (`None` on the first, or without /proc/stat).
    pub fn sample(&mut self) -> Option<f64> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let cpus = text.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
        let line = text.lines().next().filter(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        let previous = self.last.replace((total, idle));
        let (t0, i0) = previous?;
        let dt = total.checked_sub(t0).filter(|d| *d > 0)?;
        let di = idle.saturating_sub(i0);
        Some(di as f64 / dt as f64 * cpus.max(1) as f64)
    }
}
