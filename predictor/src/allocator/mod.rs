//! The allocator: from each partition's forecast and the capacity model, which shards a
//! partition should have and on which cores, as explicit decisions (carve-out, split, merge,
//! fold-back, move), each with its explanation. Pure: the server (and the simulator) pass a
//! `View` of the shard layout and the last round's load, with the time in it, and execute the
//! decisions they get back; `docs/allocator.md` is the reference.
//!
//! - `capacity`: a core's ops/s at full busy and the extra CPU of a split, measured.
//! - `plan`: the `Allocator` and its rules (thresholds with hysteresis, merge delay with the
//!   memory of recent peaks, spike filter, migration budget).
//! - `explain`: the bounded log of decisions and near-decisions.
//! - `manual`: the choices behind an operator's `SHARDCAST SPLIT|MERGE <partition>`.

use std::collections::HashMap;

pub mod capacity;
pub mod explain;
pub mod manual;
mod plan;

pub use explain::{ExplainLog, Explanation};
pub use plan::{Allocator, Outcome, PARTITION_MEMORY_MAX, PLAN_PARTITIONS_MAX};

/// How the allocator decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Never acts: shards stay as they are.
    Static,
    /// Acts on observed load held above a threshold for `reactive_hold_ms` (TiKV's rule).
    Reactive,
    /// Acts on the forecast's upper quantile of the peak over the horizon.
    #[default]
    Predictive,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Static => "static",
            Policy::Reactive => "reactive",
            Policy::Predictive => "predictive",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        match s.to_ascii_lowercase().as_str() {
            "static" => Some(Policy::Static),
            "reactive" => Some(Policy::Reactive),
            "predictive" => Some(Policy::Predictive),
            _ => None,
        }
    }
}

/// The allocator's settings (the server's names in brackets).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub policy: Policy,
    /// Share of a core's capacity the plan fills at most (`target-utilization`).
    pub target_utilization: f64,
    /// A partition merges when its remembered peak fits this share of the target on one shard
    /// fewer (CockroachDB merges at half the split threshold).
    pub merge_fraction: f64,
    /// How long a peak is remembered, and how long after a change the partition may merge
    /// (`merge-delay-s`).
    pub merge_delay_ms: u64,
    /// Migrations started in any 60 s at most (`migrations-per-minute-max`).
    pub migrations_per_minute_max: u32,
    /// Shards one partition may have (`shards-per-partition-max`).
    pub shards_per_partition_max: usize,
    /// A pinned core capacity in ops/s instead of the measured one (`core-capacity-ops`).
    pub core_capacity_ops: Option<f64>,
    /// The reactive policy acts on load held this long (TiKV holds 10 s).
    pub reactive_hold_ms: u64,
    /// A partition's last own shard folds back into a shared shard when its remembered peak is
    /// below this share of one core's target load.
    pub fold_back_fraction: f64,
    /// A partition whose load is within this share of a threshold gets an explanation of
    /// why nothing was done.
    pub near_fraction: f64,
    /// A core is relieved (a shard moved or a partition carved out of it) when its planned
    /// load passes this share of its capacity: the target by default. The simulator's sweep
    /// (0.75, 0.85, 0.95 on three seeds, docs/simulation.md) found nothing better.
    pub relieve_utilization: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: Policy::Predictive,
            target_utilization: 0.75,
            merge_fraction: 0.5,
            merge_delay_ms: 300_000,
            migrations_per_minute_max: 6,
            shards_per_partition_max: 16,
            core_capacity_ops: None,
            reactive_hold_ms: 10_000,
            fold_back_fraction: 0.05,
            near_fraction: 0.2,
            relieve_utilization: 0.75,
        }
    }
}

/// A data core as the last round showed it.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreState {
    pub core: usize,
    /// It sent its tick and is not failed; a core that is not alive is never a target and
    /// never counts as idle.
    pub alive: bool,
    pub ops_per_sec: f64,
    pub remote_ops_per_sec: f64,
    /// Share of the round the executor was busy.
    pub busy: f64,
}

/// A shard as the map places it, with its last round's load.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardState {
    pub number: u64,
    pub core: usize,
    /// The partition whose own shard this is; `None` for a shared shard.
    pub partition: Option<Vec<u8>>,
    pub ops_per_sec: f64,
    pub keys: u64,
    pub bytes: u64,
}

/// A partition's forecast, in ops/s.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastInput {
    pub peak: f64,
    pub upper: f64,
    pub quantile: f64,
    /// The model behind it (`reactive` when the forecaster had nothing to go on).
    pub model: String,
}

/// A partition: its shards, its load and its forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionState {
    pub partition: Vec<u8>,
    pub ops_per_sec: f64,
    /// Its own shards in position order (empty while it lives in a shared shard).
    pub own: Vec<u64>,
    /// The shared shard it lives in (when it has no own shard).
    pub home: Option<u64>,
    pub forecast: Option<ForecastInput>,
}

/// What the allocator sees in one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub now_ms: u64,
    pub tick_ms: u64,
    pub cores: Vec<CoreState>,
    pub shards: Vec<ShardState>,
    pub partitions: Vec<PartitionState>,
    /// Idle CPUs of the whole machine (every process counted), when known: a split needs an
    /// idle CPU to go to, not only an idle executor.
    pub host_idle_cpus: Option<f64>,
    /// A migration is running now (the engine runs one at a time).
    pub migrating: bool,
    /// Positions of `shards` by number and of `partitions` by name, built on first use (the
    /// allocator looks them up for every shard and partition of a round: with thousands of
    /// each, a scan per lookup was most of a round).
    pub lookup: std::cell::OnceCell<Lookup>,
}

/// `View`'s index (see `View::lookup`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lookup {
    shards: HashMap<u64, usize>,
    partitions: HashMap<Vec<u8>, usize>,
}

impl View {
    fn index(&self) -> &Lookup {
        self.lookup.get_or_init(|| Lookup {
            shards: self.shards.iter().enumerate().map(|(i, s)| (s.number, i)).collect(),
            partitions: self
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| (p.partition.clone(), i))
                .collect(),
        })
    }

    /// The index, if it still describes the vectors (a view changed after its first lookup,
    /// as the server's manual commands do when they add the partition asked about, is
    /// scanned instead; `refresh_lookup` rebuilds it).
    fn fresh(&self) -> Option<&Lookup> {
        let l = self.index();
        (l.shards.len() == self.shards.len() && l.partitions.len() == self.partitions.len())
            .then_some(l)
    }

    /// Forgets the index (call after changing `shards` or `partitions`).
    pub fn refresh_lookup(&mut self) {
        self.lookup = Default::default();
    }

    pub fn shard(&self, number: u64) -> Option<&ShardState> {
        match self.fresh() {
            Some(l) => l.shards.get(&number).map(|&i| &self.shards[i]),
            None => self.shards.iter().find(|s| s.number == number),
        }
    }

    pub fn partition(&self, p: &[u8]) -> Option<&PartitionState> {
        match self.fresh() {
            Some(l) => l.partitions.get(p).map(|&i| &self.partitions[i]),
            None => self.partitions.iter().find(|x| x.partition == p),
        }
    }
}

/// One layout change, named by shards and cores (the engine's `LayoutChange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CarveOut { partition: Vec<u8>, from_shard: u64, to_core: usize },
    Split { partition: Vec<u8>, shard: u64, to_core: usize },
    Merge { partition: Vec<u8>, donor: u64, absorber: u64 },
    FoldBack { partition: Vec<u8>, shard: u64 },
    Move { partition: Vec<u8>, shard: u64, to_core: usize },
}

impl Action {
    pub fn partition(&self) -> &[u8] {
        match self {
            Action::CarveOut { partition, .. }
            | Action::Split { partition, .. }
            | Action::Merge { partition, .. }
            | Action::FoldBack { partition, .. }
            | Action::Move { partition, .. } => partition,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::CarveOut { .. } => "carve-out",
            Action::Split { .. } => "split",
            Action::Merge { .. } => "merge",
            Action::FoldBack { .. } => "fold-back",
            Action::Move { .. } => "move",
        }
    }

    /// Whether it adds a shard (carve-out, split): the changes that need an idle core.
    pub fn grows(&self) -> bool {
        matches!(self, Action::CarveOut { .. } | Action::Split { .. })
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = String::from_utf8_lossy(self.partition());
        match self {
            Action::CarveOut { from_shard, to_core, .. } => {
                write!(f, "carve-out of '{p}' from shared shard {from_shard} to core {to_core}")
            }
            Action::Split { shard, to_core, .. } => {
                write!(f, "split of '{p}' shard {shard} to core {to_core}")
            }
            Action::Merge { donor, absorber, .. } => {
                write!(f, "merge of '{p}' shard {donor} into shard {absorber}")
            }
            Action::FoldBack { shard, .. } => write!(f, "fold-back of '{p}' shard {shard}"),
            Action::Move { shard, to_core, .. } => {
                write!(f, "move of '{p}' shard {shard} to core {to_core}")
            }
        }
    }
}

/// A decision: the change, how urgent it is (higher first: the ratio of the load it answers
/// to the threshold it crossed, plus 1 when the partition is over it now) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub urgency: f64,
    pub explanation: Explanation,
}
