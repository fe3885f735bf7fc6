//! Per-shard counters for the health monitor and the predictor: ops by kind, and per tick
//! (when telemetry is on) bytes, service times, distinct keys, hot keys and applications;
//! plus the bounded top-k of the partitions a shared shard serves.

use crate::ops::OpKind;
use crate::telemetry::{AppCounts, AppId, Hll, KeyCount, TopKeys};
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Partitions whose load a shard tracks exactly per rate period; the others are counted
/// together as the rest (a space-saving top-k: any partition with more than 1/k of the
/// shard's ops is among them, and its count is over by at most the `error` shown).
pub const PARTITION_STATS_MAX: usize = 32;

/// Per-shard counters.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub deletes: Cell<u64>,
    pub others: Cell<u64>,
    pub snapshots: Cell<u64>,
    /// Snapshot tasks spawned.
    pub snapshot_tasks: Cell<u64>,
    /// Operations per second over the last tick (`end_tick`).
    pub ops_per_sec: Cell<f64>,
    /// The counters at the last tick.
    at_tick: Cell<[u64; 4]>,
    tick_at_ms: Cell<u64>,
    /// The partitions of this tick (shared shards only).
    partitions: RefCell<PartitionTopK>,
    /// The busiest partitions of the last complete tick, with ops/s.
    last_partitions: RefCell<Vec<PartitionLoad>>,
    /// What telemetry gathers beyond the counters, when it is on.
    detail: RefCell<TickDetail>,
}

/// One op as the statistics see it, after it ran.
pub(crate) struct OpSample<'a> {
    pub key: &'a [u8],
    /// XXH3 of the whole key (tagged keys included), for the sketches.
    pub key_hash: u64,
    pub kind: OpKind,
    pub app: AppId,
    pub bytes_in: u64,
}

/// Telemetry's per-tick sketches of one shard; every one bounded (see `telemetry`).
#[derive(Debug, Default)]
struct TickDetail {
    bytes_in: u64,
    bytes_out: u64,
    service_ns: Option<Histogram<u64>>,
    distinct: Hll,
    top_keys: TopKeys,
    apps: AppCounts,
}

impl ShardStats {
    /// Counters whose first tick starts at `now_ms`.
    pub fn starting_at(now_ms: u64) -> Self {
        let stats = ShardStats::default();
        stats.tick_at_ms.set(now_ms);
        stats
    }

    fn counter(&self, kind: OpKind) -> &Cell<u64> {
        match kind {
            OpKind::Read => &self.reads,
            OpKind::Write => &self.writes,
            OpKind::Delete => &self.deletes,
            OpKind::Other => &self.others,
        }
    }

    fn counters(&self) -> [u64; 4] {
        [self.reads.get(), self.writes.get(), self.deletes.get(), self.others.get()]
    }

    /// Counts an op; with `detail`, also feeds the tick's sketches. `partition` (with its
    /// hash) is given for shared shards, whose partitions are counted in a top-k; the
    /// partition's slot is returned for `add_bytes_out`.
    pub(crate) fn record(
        &self,
        sample: &OpSample<'_>,
        partition: Option<(u64, &[u8])>,
        detail: bool,
    ) -> Option<usize> {
        let c = self.counter(sample.kind);
        c.set(c.get() + 1);
        let slot = partition
            .map(|(hash, name)| self.partitions.borrow_mut().record(hash, name, sample, detail));
        if detail {
            let mut d = self.detail.borrow_mut();
            d.bytes_in += sample.bytes_in;
            d.distinct.add(sample.key_hash);
            d.top_keys.record(sample.key_hash, sample.key);
            d.apps.add(sample.app, 1);
        }
        slot
    }

    /// Adds the reply bytes of the op just recorded (`slot` is what `record` returned).
    pub(crate) fn add_bytes_out(&self, slot: Option<usize>, bytes: u64) {
        self.detail.borrow_mut().bytes_out += bytes;
        if let Some(i) = slot {
            self.partitions.borrow_mut().add_bytes_out(i, bytes);
        }
    }

    /// Records the service time of one op (telemetry on).
    pub(crate) fn record_service_ns(&self, ns: u64) {
        let mut d = self.detail.borrow_mut();
        d.service_ns
            .get_or_insert_with(new_service_histogram)
            .saturating_record(ns.clamp(1, SERVICE_NS_MAX));
    }

    pub fn total_ops(&self) -> u64 {
        self.counters().iter().sum()
    }

    /// Ends a tick at `now_ms`: updates `ops_per_sec` and the partitions' rates, and returns
    /// the tick's counts and sketches (then starts afresh). The first call only starts.
    pub(crate) fn end_tick(&self, now_ms: u64) -> TickCounts {
        let counters = self.counters();
        let before = self.at_tick.replace(counters);
        let since = now_ms.saturating_sub(self.tick_at_ms.replace(now_ms));
        let mut loads = self.partitions.borrow_mut().take();
        let ops: [u64; 4] = std::array::from_fn(|i| counters[i] - before[i]);
        let per_sec = if since > 0 { 1000.0 / since as f64 } else { 0.0 };
        self.ops_per_sec.set(ops.iter().sum::<u64>() as f64 * per_sec);
        for l in &mut loads {
            l.ops_per_sec = l.ops as f64 * per_sec;
        }
        *self.last_partitions.borrow_mut() = loads.clone();
        let mut d = self.detail.borrow_mut();
        let service_ns = d.service_ns.as_mut().map(|h| {
            let out = h.clone();
            h.reset();
            out
        });
        let out = TickCounts {
            elapsed_ms: since,
            ops,
            bytes_in: std::mem::take(&mut d.bytes_in),
            bytes_out: std::mem::take(&mut d.bytes_out),
            service_ns,
            distinct: d.distinct.clone(),
            top_keys: d.top_keys.take(),
            apps: d.apps.clone(),
            partitions: loads,
        };
        d.distinct.clear();
        d.apps.clear();
        out
    }

    /// The busiest partitions of the last tick, busiest first.
    pub fn top_partitions(&self) -> Vec<PartitionLoad> {
        self.last_partitions.borrow().clone()
    }
}

/// The longest service time a histogram holds (longer ones count as this).
pub const SERVICE_NS_MAX: u64 = 60_000_000_000;
/// Significant digits of the service-time histograms (about 15 KiB each).
pub const SERVICE_SIGNIFICANT_DIGITS: u8 = 2;

/// An empty service-time histogram, 1 ns to `SERVICE_NS_MAX`.
pub fn new_service_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, SERVICE_NS_MAX, SERVICE_SIGNIFICANT_DIGITS)
        .expect("valid histogram bounds")
}

/// What one shard counted in one tick.
#[derive(Debug, Clone)]
pub struct TickCounts {
    /// Since the previous tick.
    pub elapsed_ms: u64,
    /// Ops by kind: read, write, delete, other.
    pub ops: [u64; 4],
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Service times in ns; `None` if no op was timed.
    pub service_ns: Option<Histogram<u64>>,
    /// Distinct keys touched.
    pub distinct: Hll,
    pub top_keys: Vec<KeyCount>,
    pub apps: AppCounts,
    /// A shared shard's busiest partitions.
    pub partitions: Vec<PartitionLoad>,
}

/// One partition's load over a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLoad {
    pub partition: Vec<u8>,
    /// Ops counted (an over-estimate by at most `error`).
    pub ops: u64,
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
    pub others: u64,
    /// The most `ops` may overstate (space-saving's bound).
    pub error: u64,
    pub ops_per_sec: f64,
    /// Telemetry only: key and value bytes received, value bytes sent.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Telemetry only: distinct keys touched (an estimate) and ops per application.
    pub distinct_keys: u64,
    /// Keys the partition holds in this shard at the end of the tick.
    pub keys: u64,
    pub apps: Vec<(AppId, u64)>,
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    name: Vec<u8>,
    total: u64,
    error: u64,
    by_kind: [u64; 4],
    /// Telemetry only (sketches reset when the slot changes partition).
    bytes_in: u64,
    bytes_out: u64,
    distinct: Hll,
    apps: AppCounts,
}

impl Slot {
    fn note(&mut self, sample: &OpSample<'_>, detail: bool) {
        self.total += 1;
        self.by_kind[sample.kind as usize] += 1;
        if detail {
            self.bytes_in += sample.bytes_in;
            self.distinct.add(sample.key_hash);
            self.apps.add(sample.app, 1);
        }
    }
}

/// Space-saving top-k (Metwally et al., 2005) of partitions by ops, `PARTITION_STATS_MAX`
/// slots; names are copied into reused buffers, so a miss allocates nothing once warm.
#[derive(Debug, Default)]
pub struct PartitionTopK {
    slots: Vec<Slot>,
    by_hash: HashMap<u64, usize, ahash::RandomState>,
}

impl PartitionTopK {
    pub(crate) fn record(
        &mut self,
        hash: u64,
        partition: &[u8],
        sample: &OpSample<'_>,
        detail: bool,
    ) -> usize {
        if let Some(&i) = self.by_hash.get(&hash) {
            self.slots[i].note(sample, detail);
            return i;
        }
        if self.slots.len() < PARTITION_STATS_MAX {
            self.by_hash.insert(hash, self.slots.len());
            self.slots.push(Slot {
                hash,
                name: partition.to_vec(),
                total: 0,
                error: 0,
                by_kind: [0; 4],
                bytes_in: 0,
                bytes_out: 0,
                distinct: Hll::default(),
                apps: AppCounts::default(),
            });
            self.slots.last_mut().expect("pushed").note(sample, detail);
            return self.slots.len() - 1;
        }
        // Replace the least counted: it inherits that count as its error bound.
        let i = (0..self.slots.len()).min_by_key(|&i| self.slots[i].total).expect("full");
        let s = &mut self.slots[i];
        self.by_hash.remove(&s.hash);
        s.hash = hash;
        s.name.clear();
        s.name.extend_from_slice(partition);
        s.error = s.total;
        s.by_kind = [0; 4];
        if detail {
            s.bytes_in = 0;
            s.bytes_out = 0;
            s.distinct.clear();
            s.apps.clear();
        }
        s.note(sample, detail);
        self.by_hash.insert(hash, i);
        i
    }

    fn add_bytes_out(&mut self, slot: usize, bytes: u64) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.bytes_out += bytes;
        }
    }

    /// The counted partitions, busiest first, and a fresh start.
    pub fn take(&mut self) -> Vec<PartitionLoad> {
        self.by_hash.clear();
        let mut out: Vec<PartitionLoad> = self
            .slots
            .drain(..)
            .map(|s| PartitionLoad {
                partition: s.name,
                ops: s.total,
                reads: s.by_kind[OpKind::Read as usize],
                writes: s.by_kind[OpKind::Write as usize],
                deletes: s.by_kind[OpKind::Delete as usize],
                others: s.by_kind[OpKind::Other as usize],
                error: s.error,
                ops_per_sec: 0.0,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                distinct_keys: if s.distinct.is_empty() { 0 } else { s.distinct.estimate() },
                keys: 0,
                apps: s.apps.nonzero().collect(),
            })
            .collect();
        out.sort_by(|a, b| b.ops.cmp(&a.ops).then(a.partition.cmp(&b.partition)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: OpKind) -> OpSample<'static> {
        OpSample { key: b"k", key_hash: 1, kind, app: AppId::UNNAMED, bytes_in: 1 }
    }

    /// Heavy hitters are found and counted within the bound among many cold partitions.
    #[test]
    fn the_top_k_finds_hot_partitions_among_a_million_cold_ones() {
        let mut topk = PartitionTopK::default();
        let mut rng = crate::testing::SplitMix64::new(1);
        let mut hot = [0u64; 3];
        let n = 1_000_000u64;
        for i in 0..n {
            let r = rng.below(10);
            if r < 3 {
                hot[r as usize] += 1;
                let name = format!("hot{r}");
                topk.record(r, name.as_bytes(), &sample(OpKind::Read), false);
            } else {
                let name = format!("cold{i}");
                topk.record(1000 + i, name.as_bytes(), &sample(OpKind::Write), false);
            }
        }
        let loads = topk.take();
        assert!(loads.len() <= PARTITION_STATS_MAX);
        for (r, &exact) in hot.iter().enumerate() {
            let name = format!("hot{r}");
            let l = loads.iter().find(|l| l.partition == name.as_bytes()).expect("hot one kept");
            assert!(l.ops >= exact && l.ops - l.error <= exact, "{l:?} vs {exact}");
            assert!(l.error <= n / PARTITION_STATS_MAX as u64);
        }
        assert!(loads[..3].iter().all(|l| l.partition.starts_with(b"hot")));
        assert!(topk.take().is_empty(), "take starts afresh");
    }
}
