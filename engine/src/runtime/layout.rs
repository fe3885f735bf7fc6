//! Layout changes: the explicit requests the engine executes. A policy (the predictor's
//! allocator, or an operator's `SHARDCAST SPLIT|MERGE|MOVE`) chooses *what* to change; the
//! engine checks that the change still fits its shard map and carries it out (`coordinator`),
//! choosing nothing itself but where inside a shard to cut (its load median, which only the
//! shard's own core knows).

use crate::shard::partition_display;

/// One change of the shard layout, named by the shards it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutChange {
    /// `partition` leaves the shared shard `from_shard` for a new shard of its own on core
    /// `to_core`.
    CarveOut { partition: Vec<u8>, from_shard: u64, to_core: usize },
    /// `partition`'s own shard `shard` is cut at its load median; the upper part goes to a new
    /// shard on core `to_core`.
    Split { partition: Vec<u8>, shard: u64, to_core: usize },
    /// `partition`'s own shard `donor` gives its whole range to the adjacent `absorber` (also
    /// the partition's own) and is gone.
    Merge { partition: Vec<u8>, donor: u64, absorber: u64 },
    /// `partition`'s last own shard `shard` folds back into the shared shard beside its span.
    FoldBack { partition: Vec<u8>, shard: u64 },
    /// `partition`'s own shard `shard` moves whole to core `to_core` (a new shard there takes
    /// its range).
    Move { partition: Vec<u8>, shard: u64, to_core: usize },
}

impl LayoutChange {
    pub fn partition(&self) -> &[u8] {
        match self {
            LayoutChange::CarveOut { partition, .. }
            | LayoutChange::Split { partition, .. }
            | LayoutChange::Merge { partition, .. }
            | LayoutChange::FoldBack { partition, .. }
            | LayoutChange::Move { partition, .. } => partition,
        }
    }

    /// The change's kind in one word: carve-out, split, merge, fold-back or move.
    pub fn kind(&self) -> &'static str {
        match self {
            LayoutChange::CarveOut { .. } => "carve-out",
            LayoutChange::Split { .. } => "split",
            LayoutChange::Merge { .. } => "merge",
            LayoutChange::FoldBack { .. } => "fold-back",
            LayoutChange::Move { .. } => "move",
        }
    }
}

impl std::fmt::Display for LayoutChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = partition_display(self.partition());
        match self {
            LayoutChange::CarveOut { from_shard, to_core, .. } => {
                write!(f, "carve-out of '{p}' from shared shard {from_shard} to core {to_core}")
            }
            LayoutChange::Split { shard, to_core, .. } => {
                write!(f, "split of '{p}' shard {shard} to core {to_core}")
            }
            LayoutChange::Merge { donor, absorber, .. } => {
                write!(f, "merge of '{p}' shard {donor} into shard {absorber}")
            }
            LayoutChange::FoldBack { shard, .. } => write!(f, "fold-back of '{p}' shard {shard}"),
            LayoutChange::Move { shard, to_core, .. } => {
                write!(f, "move of '{p}' shard {shard} to core {to_core}")
            }
        }
    }
}
