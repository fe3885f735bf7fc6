//! Per-shard counters for the health monitor and the predictor, and the bounded top-k of the
//! partitions a shared shard serves.

use crate::ops::OpKind;
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
    /// Operations per second over the last rate period (`update_rate`).
    pub ops_per_sec: Cell<f64>,
    rate_ops: Cell<u64>,
    rate_at_ms: Cell<u64>,
    /// The partitions of this rate period (shared shards only).
    partitions: RefCell<PartitionTopK>,
    /// The busiest partitions of the last complete rate period, with ops/s.
    last_partitions: RefCell<Vec<PartitionLoad>>,
}

impl ShardStats {
    pub(crate) fn count(&self, kind: OpKind) {
        let c = match kind {
            OpKind::Read => &self.reads,
            OpKind::Write => &self.writes,
            OpKind::Delete => &self.deletes,
            OpKind::Other => &self.others,
        };
        c.set(c.get() + 1);
    }

    /// Counts an op of `partition` (whose hash is `hash`) in the partition top-k.
    pub(crate) fn count_partition(&self, hash: u64, partition: &[u8], kind: OpKind) {
        self.partitions.borrow_mut().record(hash, partition, kind);
    }

    pub fn total_ops(&self) -> u64 {
        self.reads.get() + self.writes.get() + self.deletes.get() + self.others.get()
    }

    /// Recomputes `ops_per_sec` (and the partitions' rates) if at least `period_ms` passed
    /// since the last time.
    pub fn update_rate(&self, now_ms: u64, period_ms: u64) {
        let since = now_ms.saturating_sub(self.rate_at_ms.get());
        if since < period_ms {
            return;
        }
        let total = self.total_ops();
        if self.rate_at_ms.get() != 0 {
            let ops = total - self.rate_ops.get();
            let per_sec = 1000.0 / since as f64;
            self.ops_per_sec.set(ops as f64 * per_sec);
            let mut loads = self.partitions.borrow_mut().take();
            for l in &mut loads {
                l.ops_per_sec = l.ops as f64 * per_sec;
            }
            *self.last_partitions.borrow_mut() = loads;
        } else {
            self.partitions.borrow_mut().take();
        }
        self.rate_ops.set(total);
        self.rate_at_ms.set(now_ms);
    }

    /// The busiest partitions of the last rate period, busiest first.
    pub fn top_partitions(&self) -> Vec<PartitionLoad> {
        self.last_partitions.borrow().clone()
    }
}

/// One partition's load over a rate period.
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
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    name: Vec<u8>,
    total: u64,
    error: u64,
    by_kind: [u64; 4],
}

/// Space-saving top-k (Metwally et al., 2005) of partitions by ops, `PARTITION_STATS_MAX`
/// slots; names are copied into reused buffers, so a miss allocates nothing once warm.
#[derive(Debug, Default)]
pub struct PartitionTopK {
    slots: Vec<Slot>,
    by_hash: HashMap<u64, usize, ahash::RandomState>,
}

impl PartitionTopK {
    pub fn record(&mut self, hash: u64, partition: &[u8], kind: OpKind) {
        let k = kind as usize;
        if let Some(&i) = self.by_hash.get(&hash) {
            let s = &mut self.slots[i];
            s.total += 1;
            s.by_kind[k] += 1;
            return;
        }
        if self.slots.len() < PARTITION_STATS_MAX {
            let mut by_kind = [0; 4];
            by_kind[k] = 1;
            self.by_hash.insert(hash, self.slots.len());
            self.slots.push(Slot { hash, name: partition.to_vec(), total: 1, error: 0, by_kind });
            return;
        }
        // Replace the least counted: it inherits that count as its error bound.
        let i = (0..self.slots.len()).min_by_key(|&i| self.slots[i].total).expect("full");
        let s = &mut self.slots[i];
        self.by_hash.remove(&s.hash);
        s.hash = hash;
        s.name.clear();
        s.name.extend_from_slice(partition);
        s.error = s.total;
        s.total += 1;
        s.by_kind = [0; 4];
        s.by_kind[k] = 1;
        self.by_hash.insert(hash, i);
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
            })
            .collect();
        out.sort_by(|a, b| b.ops.cmp(&a.ops).then(a.partition.cmp(&b.partition)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                topk.record(r, name.as_bytes(), OpKind::Read);
            } else {
                let name = format!("cold{i}");
                topk.record(1000 + i, name.as_bytes(), OpKind::Write);
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
