//! The simulated machine: N cores, each with a capacity in ops/s; shards placed on them by
//! the engine's own `ShardMap`, changed only through the engine's own `layout::check` and
//! `layout::plan` (the functions the server's shard manager calls); one migration at a time,
//! with a duration from its bytes and a foreground cost on its two cores; and per core a
//! queue whose latency percentiles follow from its utilization.
//!
//! The model (docs/simulation.md says where each figure comes from):
//! - A core serves `capacity_ops` unsplit ops/s at 100% busy. An op of a partition with k own
//!   shards costs `1 + remote_extra * (k - 1) / k` (the share that arrives on another core
//!   pays the hop).
//! - A migration moves `bytes` at `migration_bytes_per_sec` after `migration_fixed_ms`, and
//!   while it runs takes `migration_share` of its source's and target's capacity.
//! - A core is an M/M/1 queue: at utilization rho < 1 a request's time in the core is
//!   exponential with rate (1 - rho) / service time; past rho = 1 a backlog builds, and every
//!   request waits for the backlog ahead of it (at most `BACKLOG_MAX_S`). `floor_us` is added to every request (network,
//!   system calls, the client).

use shardcast_engine::placement::shard_map::ShardMap;
use shardcast_engine::runtime::layout;
use shardcast_engine::{EngineError, LayoutChange};
use std::collections::HashMap;

/// Seconds of work a core's queue holds at most: clients give up on a request that waited
/// longer (redis-benchmark and most client libraries time out within seconds), so an
/// overload costs the minutes it lasts, not hours of backlog after it.
pub const BACKLOG_MAX_S: f64 = 1.0;

/// Positions in one partition's span (a shard's share of its partition is its range's share).
const SPAN: f64 = 18_446_744_073_709_551_616.0;

impl TickLoad {
    /// A tick with nothing served yet.
    pub fn empty(cores: usize) -> TickLoad {
        TickLoad {
            core_ops: vec![0.0; cores],
            core_remote: vec![0.0; cores],
            core_busy: vec![0.0; cores],
            ..TickLoad::default()
        }
    }

    /// Adds a segment that lasted `weight` of the tick (rates and shares are weighted;
    /// tails and CPU seconds are already absolute).
    pub fn add(&mut self, seg: TickLoad, weight: f64) {
        for (a, b) in [
            (&mut self.core_ops, &seg.core_ops),
            (&mut self.core_remote, &seg.core_remote),
            (&mut self.core_busy, &seg.core_busy),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y * weight);
        }
        for (n, ops) in seg.shard_ops {
            *self.shard_ops.entry(n).or_default() += ops * weight;
        }
        self.tails.extend(seg.tails);
        self.cpu_s += seg.cpu_s;
    }
}

/// The machine's figures (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct MachineModel {
    pub capacity_ops: f64,
    pub remote_extra: f64,
    pub migration_bytes_per_sec: f64,
    pub migration_fixed_ms: f64,
    pub migration_share: f64,
    pub floor_us: f64,
    /// Shards per partition at most (the engine's `shards-per-partition-max` default).
    pub shards_per_partition_max: usize,
}

impl Default for MachineModel {
    fn default() -> Self {
        MachineModel {
            // 3.5 CPU-s per million SETs on one shard (16-core machine, redis-benchmark -P 16).
            capacity_ops: 285_000.0,
            // 7.3 CPU-s per million once the partition spans 8 cores: 1 + r * 7/8 = 7.3 / 3.5.
            remote_extra: 1.24,
            // 35 MB in 0.6 s on this project's machine.
            migration_bytes_per_sec: 58e6,
            // The smallest migrations of the policy evaluation (1-3 MB) took 34-51 ms.
            migration_fixed_ms: 40.0,
            // Foreground GET p99 rose 2-8x during migrations: at 50% busy an M/M/1 p99 rises
            // 2-8x when the core loses 25-44% of its capacity.
            migration_share: 0.35,
            // p50 of the load generator against the server at low load (policy evaluation).
            floor_us: 150.0,
            shards_per_partition_max: 16,
        }
    }
}

/// The migration running now.
#[derive(Debug, Clone)]
pub struct Running {
    pub change: LayoutChange,
    committed: ShardMap,
    pub bytes: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub source_core: usize,
    pub target_core: usize,
}

/// One core's queue over one tick, as the latency mixture needs it: its ops (the weight), the
/// delay every request has before its exponential part (floor + backlog wait), and that
/// exponential part's rate (per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tail {
    pub core: usize,
    pub ops: f64,
    pub delay_s: f64,
    pub rate: f64,
}

impl Tail {
    /// Share of this core's requests slower than `t` seconds.
    pub fn over(&self, t: f64) -> f64 {
        if t <= self.delay_s {
            1.0
        } else {
            (-(t - self.delay_s) * self.rate).exp()
        }
    }
}

/// The `q` quantile (0..1) of the mixture of `tails`, by bisection (seconds).
pub fn mixture_quantile(tails: &[Tail], q: f64) -> f64 {
    let total: f64 = tails.iter().map(|t| t.ops).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let over = |t: f64| tails.iter().map(|x| x.ops * x.over(t)).sum::<f64>() / total;
    let target = 1.0 - q;
    let mut lo = 0.0;
    let mut hi = tails.iter().map(|x| x.delay_s + 10.0 / x.rate.max(1e-9)).fold(0.0, f64::max);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if over(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// What one tick did.
#[derive(Debug, Clone, Default)]
pub struct TickLoad {
    /// Per core: ops/s, ops/s of split partitions arriving from other cores, busy share.
    pub core_ops: Vec<f64>,
    pub core_remote: Vec<f64>,
    pub core_busy: Vec<f64>,
    /// Per shard number: ops/s.
    pub shard_ops: HashMap<u64, f64>,
    pub tails: Vec<Tail>,
    /// CPU core-seconds used (service, a split's extra, migrations' share).
    pub cpu_s: f64,
}

/// The simulated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    pub model: MachineModel,
    pub map: ShardMap,
    /// Per partition (the workload's order): its shards and each one's share of its load.
    placement: Vec<Vec<(u64, f64)>>,
    /// Bytes per shard, from `placement`.
    shard_bytes: HashMap<u64, u64>,
    names: Vec<Vec<u8>>,
    bytes: Vec<u64>,
    index: HashMap<Vec<u8>, usize>,
    /// Backlog per core, in unsplit ops.
    backlog: Vec<f64>,
    pub running: Option<Running>,
}

impl Machine {
    /// A machine whose map is a new data directory's (one shared shard per core) holding
    /// `partitions` (name, bytes).
    pub fn new(cores: usize, model: MachineModel, partitions: &[(Vec<u8>, u64)]) -> Machine {
        let map = ShardMap::initial(cores, cores, b':');
        let names: Vec<Vec<u8>> = partitions.iter().map(|p| p.0.clone()).collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let mut m = Machine {
            cores,
            model,
            map,
            placement: Vec::new(),
            shard_bytes: HashMap::new(),
            names,
            bytes: partitions.iter().map(|p| p.1).collect(),
            index,
            backlog: vec![0.0; cores],
            running: None,
        };
        m.place();
        m
    }

    /// Recomputes every partition's shards and shares from the map.
    fn place(&mut self) {
        self.placement = self
            .names
            .iter()
            .map(|name| {
                let own = self.map.partition_shards(name);
                if own.is_empty() {
                    let home = self.map.shared_home(name).map_or(0, |(_, s)| s.number);
                    vec![(home, 1.0)]
                } else {
                    own.iter().map(|(r, s)| (s.number, (r.hi - r.lo + 1) as f64 / SPAN)).collect()
                }
            })
            .collect();
        // Bytes change only with the layout: counted here, not in every allocator round.
        self.shard_bytes.clear();
        for (p, shards) in self.placement.iter().enumerate() {
            for (n, share) in shards {
                *self.shard_bytes.entry(*n).or_default() += (self.bytes[p] as f64 * share) as u64;
            }
        }
    }

    pub fn partition_index(&self, name: &[u8]) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Partition `p`'s shards with their shares of its load.
    pub fn placement(&self, p: usize) -> &[(u64, f64)] {
        &self.placement[p]
    }

    /// Own shards of partition `p` (0 while it lives in a shared shard).
    pub fn own_shards(&self, p: usize) -> usize {
        let own = self.placement[p].len();
        let shared =
            own == 1 && self.map.shard(self.placement[p][0].0).is_some_and(|s| s.is_shared());
        if shared {
            0
        } else {
            own
        }
    }

    /// The partitions' names, in the workload's order.
    pub fn names(&self) -> &[Vec<u8>] {
        &self.names
    }

    /// Bytes a shard holds (its share of each partition it holds), as of the last change.
    pub fn shard_bytes(&self) -> &HashMap<u64, u64> {
        &self.shard_bytes
    }

    /// Applies `change` at once, without a migration (a layout the data was loaded into).
    pub fn apply_now(&mut self, change: &LayoutChange) -> Result<(), EngineError> {
        let (_, committed, _) = self.plan(change)?;
        self.map = committed;
        self.place();
        Ok(())
    }

    /// The engine's check and plan of `change` against the map; a split cuts its source's
    /// range in the middle (the load median of a shard whose keys are hashed evenly).
    fn plan(&self, change: &LayoutChange) -> Result<(ShardMap, ShardMap, u64), EngineError> {
        let source =
            layout::check(&self.map, change, self.cores, self.model.shards_per_partition_max)?;
        let cut = source.map(|(r, _)| r.lo + (r.hi - r.lo) / 2 + 1);
        let (intent, committed) = layout::plan(&self.map, change, cut)?;
        let m = intent.migration.as_ref().expect("a plan records its migration");
        let share = (m.hi - m.lo + 1) as f64 / SPAN;
        let bytes = self
            .partition_index(&m.partition)
            .map_or(0, |p| (self.bytes[p] as f64 * share.min(1.0)) as u64);
        Ok((intent, committed, bytes))
    }

    /// Starts `change` at `now_ms` (one migration at a time, as in the engine).
    pub fn start(&mut self, change: LayoutChange, now_ms: u64) -> Result<(), EngineError> {
        if self.running.is_some() {
            return Err(EngineError::NotApplicable { reason: "a migration is running".into() });
        }
        let (intent, committed, bytes) = self.plan(&change)?;
        let m = intent.migration.as_ref().expect("a plan records its migration");
        let source_core = intent.shard(m.source).map_or(0, |s| s.core(self.cores));
        let target_core = m.target_core as usize % self.cores;
        let ms = self.model.migration_fixed_ms
            + bytes as f64 / self.model.migration_bytes_per_sec * 1000.0;
        self.running = Some(Running {
            change,
            committed,
            bytes,
            start_ms: now_ms,
            end_ms: now_ms + ms.ceil() as u64,
            source_core,
            target_core,
        });
        Ok(())
    }

    /// Commits the running migration if it ends by `until_ms`; returns it.
    pub fn finish_by(&mut self, until_ms: u64) -> Option<Running> {
        if self.running.as_ref().is_some_and(|r| r.end_ms <= until_ms) {
            let r = self.running.take().expect("checked");
            self.map = r.committed.clone();
            self.place();
            return Some(r);
        }
        None
    }

    /// Serves `rates` (ops/s per partition) for `from_ms..to_ms` with the current layout.
    pub fn serve(&mut self, rates: &[f64], from_ms: u64, to_ms: u64) -> TickLoad {
        let dt = (to_ms - from_ms) as f64 / 1000.0;
        let cores = self.cores;
        let mut load = TickLoad::empty(cores);
        let mut work = vec![0.0; cores];
        for (p, shards) in self.placement.iter().enumerate() {
            let rate = rates[p];
            if rate <= 0.0 {
                continue;
            }
            let k = shards.len() as f64;
            let remote_share = (k - 1.0) / k;
            let cost = 1.0 + self.model.remote_extra * remote_share;
            for (n, share) in shards {
                let ops = rate * share;
                *load.shard_ops.entry(*n).or_default() += ops;
                let c = self.map.shard(*n).map_or(0, |s| s.core(cores));
                load.core_ops[c] += ops;
                load.core_remote[c] += ops * remote_share;
                work[c] += ops * cost;
            }
        }
        // A migration takes its share of its cores for the part of the tick it runs.
        let mut available = vec![self.model.capacity_ops; cores];
        let mut migration_cpu = 0.0;
        if let Some(r) = &self.running {
            let overlap = r.end_ms.min(to_ms).saturating_sub(r.start_ms.max(from_ms)) as f64
                / (to_ms - from_ms).max(1) as f64;
            let mut cores_used = vec![r.source_core];
            if r.target_core != r.source_core {
                cores_used.push(r.target_core);
            }
            for c in cores_used {
                available[c] *= 1.0 - self.model.migration_share * overlap;
                migration_cpu += self.model.migration_share * overlap * dt;
            }
        }
        let floor = self.model.floor_us / 1e6;
        for c in 0..cores {
            let (w, a) = (work[c], available[c]);
            let start = self.backlog[c];
            let end = (start + (w - a) * dt).clamp(0.0, a * BACKLOG_MAX_S);
            self.backlog[c] = end;
            let served = (w * dt).min(a * dt + start);
            load.core_busy[c] = (served / dt / self.model.capacity_ops).min(1.0)
                + (self.model.capacity_ops - a) / self.model.capacity_ops;
            load.cpu_s += served / self.model.capacity_ops;
            let ops = load.core_ops[c];
            if ops <= 0.0 {
                continue;
            }
            // A request's exponential part has rate (a - w) / (w / ops) per second: the spare
            // capacity in requests of this core's mean cost.
            let spare = (a - w).max(a * 0.001);
            let rate = spare * ops / w.max(1e-9);
            if w >= a || start <= 0.0 {
                // A growing backlog (every request waits for its mean), or none.
                let wait = 0.5 * (start + end) / a;
                load.tails.push(Tail { core: c, ops: ops * dt, delay_s: floor + wait, rate });
            } else {
                // A backlog left by an earlier overload drains in start / (a - w) seconds:
                // only the requests arriving meanwhile wait (half of it on average).
                let drain_s = (start / (a - w)).min(dt);
                let waiting = drain_s / dt;
                load.tails.push(Tail {
                    core: c,
                    ops: ops * dt * waiting,
                    delay_s: floor + 0.5 * start / a,
                    rate,
                });
                if waiting < 1.0 {
                    load.tails.push(Tail {
                        core: c,
                        ops: ops * dt * (1.0 - waiting),
                        delay_s: floor,
                        rate,
                    });
                }
            }
        }
        load.cpu_s += migration_cpu;
        load.core_busy.iter_mut().for_each(|b| *b = b.min(1.0));
        load
    }
}
