//! The choices behind an operator's `SHARDCAST SPLIT <partition>` and `SHARDCAST MERGE
//! <partition>`: one step more or less for the partition, placed by the last round's load.
//! No threshold applies (the operator decided that the change is wanted); the engine still
//! refuses what does not fit its map.

use super::{Action, View};

/// One step more: carve the partition out of its shared shard, or split its busiest shard;
/// the new shard goes to the least loaded other live core. `Err` says why not.
pub fn split(view: &View, partition: &[u8]) -> Result<Action, String> {
    let shown = String::from_utf8_lossy(partition);
    let own = own_shards(view, partition);
    let (source, source_core) = if own.is_empty() {
        let home = home_of(view, partition)
            .ok_or_else(|| format!("partition '{shown}' is not in the shard map"))?;
        (home.0, home.1)
    } else {
        // The busiest (last round), the widest-numbered first on a tie: deterministic.
        let s = own
            .iter()
            .filter_map(|n| view.shard(*n))
            .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec).then(b.number.cmp(&a.number)))
            .ok_or_else(|| format!("the shards of '{shown}' are not in the view"))?;
        (s.number, s.core)
    };
    let to_core = least_loaded(view, source_core);
    Ok(if own.is_empty() {
        Action::CarveOut { partition: partition.to_vec(), from_shard: source, to_core }
    } else {
        Action::Split { partition: partition.to_vec(), shard: source, to_core }
    })
}

/// One step less: merge the least loaded adjacent pair of the partition's shards (the one with
/// fewer keys moves), or fold its last shard back into a shared shard.
pub fn merge(view: &View, partition: &[u8]) -> Result<Action, String> {
    let own = own_shards(view, partition);
    let load = |n: u64| view.shard(n).map_or(0.0, |s| s.ops_per_sec);
    let keys = |n: u64| view.shard(n).map_or(0, |s| s.keys);
    match own.len() {
        0 => Err(format!(
            "partition '{}' has no shard of its own: nothing to merge",
            String::from_utf8_lossy(partition)
        )),
        1 => Ok(Action::FoldBack { partition: partition.to_vec(), shard: own[0] }),
        _ => {
            let i = (0..own.len() - 1)
                .min_by(|&a, &b| {
                    (load(own[a]) + load(own[a + 1])).total_cmp(&(load(own[b]) + load(own[b + 1])))
                })
                .expect("two shards");
            let (low, high) = (own[i], own[i + 1]);
            let (donor, absorber) = if keys(low) < keys(high) { (low, high) } else { (high, low) };
            Ok(Action::Merge { partition: partition.to_vec(), donor, absorber })
        }
    }
}

fn own_shards(view: &View, partition: &[u8]) -> Vec<u64> {
    view.partition(partition).map(|p| p.own.clone()).unwrap_or_default()
}

fn home_of(view: &View, partition: &[u8]) -> Option<(u64, usize)> {
    let home = view.partition(partition)?.home?;
    Some((home, view.shard(home)?.core))
}

/// The live core other than `except` (unless it is the only one) with the least load of the
/// last round, then the fewest shards; a core that is not alive is never chosen while a live
/// one exists, but one that only missed its last tick (a busy machine) is still better than
/// `except`: the operator asked for another core, and the engine refuses a core that is
/// really gone.
fn least_loaded(view: &View, except: usize) -> usize {
    let shards_on = |c: usize| view.shards.iter().filter(|s| s.core == c).count();
    let candidates: Vec<_> = view.cores.iter().filter(|c| c.alive && c.core != except).collect();
    let pick = candidates
        .iter()
        .min_by(|a, b| {
            a.ops_per_sec
                .total_cmp(&b.ops_per_sec)
                .then(shards_on(a.core).cmp(&shards_on(b.core)))
                .then(a.core.cmp(&b.core))
        })
        .map(|c| c.core);
    pick.or_else(|| view.cores.iter().map(|c| c.core).filter(|&c| c != except).min())
        .unwrap_or(except)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::{CoreState, PartitionState, ShardState};

    #[test]
    fn a_core_that_missed_a_tick_still_takes_an_operators_split() {
        let core = |c: usize, alive: bool| CoreState {
            core: c,
            alive,
            ops_per_sec: 0.0,
            remote_ops_per_sec: 0.0,
            busy: 0.0,
        };
        let shared = |n: u64| ShardState {
            number: n,
            core: n as usize,
            partition: None,
            ops_per_sec: 0.0,
            keys: 0,
            bytes: 0,
        };
        let view = View {
            cores: vec![core(0, true), core(1, false)],
            shards: vec![shared(0), shared(1)],
            partitions: vec![PartitionState {
                partition: b"orders".to_vec(),
                ops_per_sec: 0.0,
                own: Vec::new(),
                home: Some(0),
                forecast: None,
            }],
            ..View::default()
        };
        let action = split(&view, b"orders").unwrap();
        assert_eq!(
            action,
            Action::CarveOut { partition: b"orders".to_vec(), from_shard: 0, to_core: 1 }
        );
    }
}
