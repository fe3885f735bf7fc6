//! One round of telemetry put together: every core's tick of one interval becomes the views
//! of cores, shards and partitions that INFO, SHARDCAST, `/metrics` and the load history
//! read. Counters that Prometheus wants monotonic are accumulated here per shard.

use shardcast_engine::routing::partition_of;
use shardcast_engine::shard::{new_service_histogram, partition_display};
use shardcast_engine::telemetry::{AppId, CoreTick, Hll, ShardTick};
use shardcast_predictor::health::{Health, HealthState};
use shardcast_predictor::trace::TraceRow;
use std::collections::{BTreeMap, HashMap};

/// Service-time quantiles shown per shard and core.
pub const SERVICE_QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

/// A core in the last round.
#[derive(Debug, Clone, Default)]
pub struct CoreView {
    pub core: usize,
    /// Consecutive rounds without this core's tick.
    pub ticks_missed: u32,
    pub busy_ratio: f64,
    pub queue_depth: u64,
    pub queue_depth_max: u64,
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Ops other cores sent here in the round, per second.
    pub remote_ops_per_sec: f64,
    /// Service-time quantiles (`SERVICE_QUANTILES`) in ns over the round.
    pub service_ns: [u64; 3],
    pub health: Health,
    pub reason: String,
}

/// Ops and bytes since the server started (monotonic, for Prometheus counters).
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Read, write, delete, other.
    pub ops: [u64; 4],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub service_count: u64,
    pub service_sum_ns: f64,
}

/// A shard in the last round.
#[derive(Debug, Clone)]
pub struct ShardView {
    pub number: u64,
    pub core: usize,
    /// The partition whose own shard this is; `None` for a shared shard.
    pub partition: Option<Vec<u8>>,
    pub totals: Totals,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub keys: u64,
    pub used_bytes: u64,
    pub distinct_keys: u64,
    pub service_ns: [u64; 3],
    /// The hottest keys of the round with their ops.
    pub top_keys: Vec<(Vec<u8>, u64)>,
    pub migrating: bool,
    pub failure: Option<String>,
    pub health: Health,
    pub reason: String,
}

impl ShardView {
    /// The partition as SHARDCAST SHARDS shows it.
    pub fn partition_label(&self) -> String {
        self.partition.as_deref().map_or_else(|| "(shared)".to_owned(), partition_display)
    }
}

/// Everything the last round showed.
#[derive(Debug, Clone, Default)]
pub struct ControlView {
    /// The round's interval: `[at_ms - tick_ms, at_ms)`; 0 before the first round.
    pub at_ms: u64,
    pub tick_ms: u64,
    pub rounds: u64,
    pub cores: Vec<CoreView>,
    pub shards: Vec<ShardView>,
    /// One trace row per partition that had ops in the round, busiest first.
    pub partitions: Vec<TraceRow>,
    pub ticks_deferred: u64,
    pub ticks_late: u64,
}

impl ControlView {
    pub fn shard(&self, number: u64) -> Option<&ShardView> {
        self.shards.iter().find(|s| s.number == number)
    }
}

fn quantiles(h: &hdrhistogram::Histogram<u64>) -> [u64; 3] {
    SERVICE_QUANTILES.map(|q| if h.is_empty() { 0 } else { h.value_at_quantile(q) })
}

/// A partition's row while a round is put together.
#[derive(Default)]
struct PartitionAcc {
    row: TraceRow,
    distinct: Option<Hll>,
    distinct_sum: u64,
    apps: BTreeMap<AppId, u64>,
    top_key_ops: u64,
}

impl PartitionAcc {
    /// Adds one shard's counts of the partition: ops by kind, bytes, keys held, ops per app.
    fn add(
        &mut self,
        ops: [u64; 4],
        bytes_in: u64,
        bytes_out: u64,
        keys: u64,
        apps: impl Iterator<Item = (AppId, u64)>,
    ) {
        let r = &mut self.row;
        r.reads += ops[0];
        r.writes += ops[1];
        r.deletes += ops[2];
        r.other += ops[3];
        r.bytes_in += bytes_in;
        r.bytes_out += bytes_out;
        r.keys += keys;
        for (app, n) in apps {
            *self.apps.entry(app).or_default() += n;
        }
    }
}

/// Builds the round's views from the cores' ticks (a core may have sent none, or more than
/// one if some were late), and accumulates the shards' totals.
pub fn build_round(
    ticks: &[CoreTick],
    cores: usize,
    at_ms: u64,
    tick_ms: u64,
    separator: u8,
    totals: &mut HashMap<u64, Totals>,
    ticks_missed: &mut [u32],
) -> ControlView {
    let mut core_views: Vec<CoreView> =
        (0..cores).map(|core| CoreView { core, ..Default::default() }).collect();
    let mut core_hist: Vec<_> = (0..cores).map(|_| new_service_histogram()).collect();
    let mut shards: BTreeMap<u64, (ShardView, hdrhistogram::Histogram<u64>)> = BTreeMap::new();
    let mut partitions: HashMap<Vec<u8>, PartitionAcc> = HashMap::new();
    let mut seen = vec![false; cores];
    for t in ticks {
        let Some(cv) = core_views.get_mut(t.core) else { continue };
        seen[t.core] = true;
        cv.busy_ratio = cv.busy_ratio.max(t.busy_ratio);
        cv.queue_depth = t.queue_depth;
        cv.queue_depth_max = cv.queue_depth_max.max(t.queue_depth_max);
        cv.remote_ops_per_sec += t.remote_ops as f64;
        for st in &t.shards {
            let (view, hist) = shards
                .entry(st.number)
                .or_insert_with(|| (new_shard_view(st, t.core), new_service_histogram()));
            add_shard_tick(view, hist, st, totals);
            cv.ops += st.counts.ops.iter().sum::<u64>();
            if let Some(h) = &st.counts.service_ns {
                let _ = core_hist[t.core].add(h);
            }
            add_partitions(&mut partitions, st, separator);
        }
    }
    let secs = tick_ms.max(1) as f64 / 1000.0;
    for (cv, h) in core_views.iter_mut().zip(&core_hist) {
        cv.ops_per_sec = cv.ops as f64 / secs;
        cv.remote_ops_per_sec /= secs;
        cv.service_ns = quantiles(h);
        ticks_missed[cv.core] = if seen[cv.core] { 0 } else { ticks_missed[cv.core] + 1 };
        cv.ticks_missed = ticks_missed[cv.core];
    }
    let shards: Vec<ShardView> = shards
        .into_values()
        .map(|(mut v, h)| {
            v.ops_per_sec = v.ops as f64 / secs;
            v.service_ns = quantiles(&h);
            v
        })
        .collect();
    let mut rows: Vec<TraceRow> = partitions
        .into_iter()
        .map(|(name, mut acc)| {
            acc.row.partition = name;
            acc.row.ts_ms = at_ms.saturating_sub(tick_ms);
            acc.row.distinct_keys = match &acc.distinct {
                Some(h) => h.estimate() + acc.distinct_sum,
                None => acc.distinct_sum,
            };
            let ops = acc.row.ops();
            acc.row.top_key_share =
                if ops > 0 { (acc.top_key_ops as f64 / ops as f64).min(1.0) } else { 0.0 };
            acc.row.apps = acc.apps.into_iter().map(|(app, n)| (app.name(), n)).collect();
            acc.row.apps.sort();
            acc.row
        })
        .filter(|r| r.ops() > 0)
        .collect();
    rows.sort_by(|a, b| b.ops().cmp(&a.ops()).then_with(|| a.partition.cmp(&b.partition)));
    ControlView {
        at_ms,
        tick_ms,
        cores: core_views,
        shards,
        partitions: rows,
        ..Default::default()
    }
}

fn new_shard_view(st: &ShardTick, core: usize) -> ShardView {
    ShardView {
        number: st.number,
        core,
        partition: st.partition.clone(),
        totals: Totals::default(),
        ops: 0,
        ops_per_sec: 0.0,
        keys: 0,
        used_bytes: 0,
        distinct_keys: 0,
        service_ns: [0; 3],
        top_keys: Vec::new(),
        migrating: false,
        failure: None,
        health: Health::Healthy,
        reason: String::new(),
    }
}

fn add_shard_tick(
    view: &mut ShardView,
    hist: &mut hdrhistogram::Histogram<u64>,
    st: &ShardTick,
    totals: &mut HashMap<u64, Totals>,
) {
    let c = &st.counts;
    let total = totals.entry(st.number).or_default();
    for (t, n) in total.ops.iter_mut().zip(c.ops) {
        *t += n;
    }
    total.bytes_in += c.bytes_in;
    total.bytes_out += c.bytes_out;
    if let Some(h) = &c.service_ns {
        total.service_count += h.len();
        total.service_sum_ns += h.mean() * h.len() as f64;
        let _ = hist.add(h);
    }
    view.totals = *total;
    view.ops += c.ops.iter().sum::<u64>();
    view.keys = st.keys;
    view.used_bytes = st.used_bytes;
    view.distinct_keys = view.distinct_keys.max(c.distinct.estimate());
    view.top_keys = c.top_keys.iter().map(|k| (k.key.clone(), k.count)).collect();
    view.migrating = st.migrating;
    view.failure = st.failure.clone();
}

/// Adds a shard's tick to its partitions' rows: an own shard to its partition (sketches
/// merged over the partition's shards), a shared shard's top-k partitions each to its own.
fn add_partitions(partitions: &mut HashMap<Vec<u8>, PartitionAcc>, st: &ShardTick, sep: u8) {
    let c = &st.counts;
    match &st.partition {
        Some(p) => {
            let acc = partitions.entry(p.clone()).or_default();
            acc.add(c.ops, c.bytes_in, c.bytes_out, st.keys, c.apps.nonzero());
            acc.distinct.get_or_insert_with(Hll::default).merge(&c.distinct);
            if let Some(k) = c.top_keys.first() {
                acc.top_key_ops = acc.top_key_ops.max(k.count);
            }
        }
        None => {
            for l in &c.partitions {
                let acc = partitions.entry(l.partition.clone()).or_default();
                let ops = [l.reads, l.writes, l.deletes, l.others];
                acc.add(ops, l.bytes_in, l.bytes_out, l.keys, l.apps.iter().copied());
                acc.distinct_sum += l.distinct_keys;
                // The partition's hottest key, if it is among the shard's hottest.
                if let Some(k) =
                    c.top_keys.iter().find(|k| partition_of(&k.key, sep) == l.partition)
                {
                    acc.top_key_ops = acc.top_key_ops.max(k.count);
                }
            }
        }
    }
}

/// The health of each core and shard, written into the views.
pub fn apply_health(
    view: &mut ControlView,
    core: impl Fn(usize) -> HealthState,
    shard: impl Fn(u64) -> HealthState,
) {
    for c in &mut view.cores {
        let h = core(c.core);
        (c.health, c.reason) = (h.health, h.reason);
    }
    for s in &mut view.shards {
        let h = shard(s.number);
        (s.health, s.reason) = (h.health, h.reason);
    }
}
