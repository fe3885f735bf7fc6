//! Layout changes: the explicit requests the engine executes. A policy (the predictor's
//! allocator, or an operator's `SHARDCAST SPLIT|MERGE|MOVE`) chooses *what* to change; the
//! engine checks that the change still fits its shard map and carries it out (`coordinator`),
//! choosing nothing itself but where inside a shard to cut (its load median, which only the
//! shard's own core knows).
//!
//! `check` and `plan` are the pure half of carrying a change out: whether it fits a map, and
//! the maps it gives (the intent to record, the map its commit installs). The coordinator calls
//! them around the migration's I/O; the policy simulator calls the very same functions to
//! evolve its simulated layout.

use crate::error::{EngineError, Result};
use crate::placement::shard_map::{RangePlace, ShardMap, ShardPlace, SHARDS_PER_PARTITION_LIMIT};
use crate::routing::{partition_span, Position};
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

/// A partition's own shard `n`, with its range, or why it is not one.
fn own_shard(map: &ShardMap, partition: &[u8], n: u64) -> Result<(RangePlace, ShardPlace)> {
    map.partition_shards(partition)
        .into_iter()
        .find(|(_, p)| p.number == n)
        .map(|(r, p)| (r, p.clone()))
        .ok_or_else(|| EngineError::NotApplicable {
            reason: format!(
                "shard {n} is not a shard of partition '{}'",
                partition_display(partition)
            ),
        })
}

/// Whether `change` fits `map` on `cores` cores with at most `shards_max` shards per
/// partition (`NotApplicable`, `PartitionShardsMax` if not). For a split it returns the
/// source shard's range, whose cut point the caller then chooses (the engine: the load median,
/// measured by the source's core).
pub fn check(
    map: &ShardMap,
    change: &LayoutChange,
    cores: usize,
    shards_max: usize,
) -> Result<Option<(RangePlace, ShardPlace)>> {
    let partition = change.partition();
    let shown = partition_display(partition);
    let not_applicable = |reason: String| EngineError::NotApplicable { reason };
    let check_core = |c: usize| {
        if c < cores {
            Ok(())
        } else {
            Err(not_applicable(format!("core {c} does not exist (cores: {cores})")))
        }
    };
    match change {
        LayoutChange::CarveOut { from_shard, to_core, .. } => {
            check_core(*to_core)?;
            let (lo, hi) = partition_span(partition);
            let Some((range, home)) = map.shared_home(partition) else {
                return Err(not_applicable(format!(
                    "partition '{shown}' has shards of its own: nothing to carve out"
                )));
            };
            if home.number != *from_shard {
                return Err(not_applicable(format!(
                    "partition '{shown}' lives in shared shard {}, not {from_shard}",
                    home.number
                )));
            }
            if range.lo == lo && range.hi == hi && map.ranges_of(home.number).len() == 1 {
                return Err(not_applicable(format!(
                    "shared shard {} holds only partition '{shown}': it is already on its own",
                    home.number
                )));
            }
            Ok(None)
        }
        LayoutChange::Split { shard, to_core, .. } => {
            check_core(*to_core)?;
            let source = own_shard(map, partition, *shard)?;
            let own = map.partition_shards(partition).len();
            let max = shards_max.min(SHARDS_PER_PARTITION_LIMIT);
            if own >= max {
                return Err(EngineError::PartitionShardsMax { partition: shown, shards: own, max });
            }
            Ok(Some(source))
        }
        LayoutChange::Move { shard, to_core, .. } => {
            check_core(*to_core)?;
            let (_, place) = own_shard(map, partition, *shard)?;
            if place.core(cores) == *to_core {
                return Err(not_applicable(format!(
                    "shard {shard} of '{shown}' is already on core {to_core}"
                )));
            }
            Ok(None)
        }
        LayoutChange::Merge { donor, absorber, .. } => {
            let (donor_range, _) = own_shard(map, partition, *donor)?;
            let (absorber_range, _) = own_shard(map, partition, *absorber)?;
            let adjacent = donor_range.hi.checked_add(1) == Some(absorber_range.lo)
                || absorber_range.hi.checked_add(1) == Some(donor_range.lo);
            if !adjacent || donor == absorber {
                return Err(not_applicable(format!(
                    "shards {donor} and {absorber} of '{shown}' are not neighbours"
                )));
            }
            Ok(None)
        }
        LayoutChange::FoldBack { shard, .. } => {
            own_shard(map, partition, *shard)?;
            let own = map.partition_shards(partition).len();
            if own != 1 {
                return Err(not_applicable(format!(
                    "partition '{shown}' has {own} shards: merge them before folding back"
                )));
            }
            Ok(None)
        }
    }
}

/// The maps a checked `change` gives: the intent (the migration recorded, the new shard's
/// number reserved) and the map its commit installs. A split needs `cut`, the first position
/// of the part that leaves (`Unsplittable` if it is not inside the source's range).
pub fn plan(
    map: &ShardMap,
    change: &LayoutChange,
    cut: Option<Position>,
) -> Result<(ShardMap, ShardMap)> {
    let partition = change.partition();
    let shown = partition_display(partition);
    let not_applicable = |reason: String| EngineError::NotApplicable { reason };
    Ok(match change {
        LayoutChange::CarveOut { to_core, .. } => {
            let (lo, hi) = partition_span(partition);
            let (_, home) = map
                .shared_home(partition)
                .ok_or_else(|| not_applicable(format!("partition '{shown}' has no shared home")))?;
            map.plan_split(partition, home.number, lo, hi, *to_core as u32)
        }
        LayoutChange::Split { shard, to_core, .. } => {
            let (range, place) = own_shard(map, partition, *shard)?;
            match cut {
                Some(cut) if cut > range.lo && cut <= range.hi => {
                    map.plan_split(partition, place.number, cut, range.hi, *to_core as u32)
                }
                _ => return Err(EngineError::Unsplittable { shard: place.number }),
            }
        }
        LayoutChange::Move { shard, to_core, .. } => {
            // An own shard has one range (its neighbours are the partition's other shards or
            // other partitions' spans); all of it moves, and the source is then gone.
            let (range, place) = own_shard(map, partition, *shard)?;
            map.plan_split(partition, place.number, range.lo, range.hi, *to_core as u32)
        }
        LayoutChange::Merge { donor, absorber, .. } => {
            let (donor_range, _) = own_shard(map, partition, *donor)?;
            map.plan_merge(partition, &donor_range, *absorber)
        }
        LayoutChange::FoldBack { shard, .. } => {
            let (range, _) = own_shard(map, partition, *shard)?;
            map.plan_merge(partition, &range, map.fold_target(&range))
        }
    })
}
