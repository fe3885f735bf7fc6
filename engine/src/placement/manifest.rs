//! The manifest file `<data-dir>/SHARDMAP`, which persists the shard map, and the recovery of
//! the data directory's layout from it.
//!
//! Written as: new content to `SHARDMAP.tmp`, fdatasync, rename over `SHARDMAP`, fsync of the
//! data directory. A crash at any point leaves either the old or the new map.
//!
//! Invariant: a shard directory that the recovered map does not list is garbage (an
//! uncommitted split's new shard, or a merged-away donor) and is removed before any shard
//! opens; the map is the only authority on which shards exist and what they own.

use crate::clock::Clock;
use crate::error::{EngineError, Result};
use crate::placement::shard_map::{MigrationKind, ShardMap};
use crate::shard::{partition_dir_name, remove_shard_dir, Shard, ShardConfig, ShardMeta};
use crate::storage::{read_all, Storage, StorageFile};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub const MANIFEST_FILE: &str = "SHARDMAP";
const MANIFEST_TMP_FILE: &str = "SHARDMAP.tmp";

pub fn manifest_path(data_dir: &Path) -> PathBuf {
    data_dir.join(MANIFEST_FILE)
}

/// Reads the manifest; `None` if there is none (a new data directory, or one from before
/// splits existed: every partition then has its default placement).
pub async fn read_manifest<S: Storage>(storage: &S, data_dir: &Path) -> Result<Option<ShardMap>> {
    let path = manifest_path(data_dir);
    if !storage.list_dir(data_dir)?.iter().any(|n| n == MANIFEST_FILE) {
        return Ok(None);
    }
    let file = storage.open_rw(&path, false).await?;
    let bytes = read_all(&file).await?;
    file.close().await?;
    ShardMap::decode(&bytes, &path).map(Some).map_err(|e| match e {
        EngineError::Corrupt { offset, reason, .. } => {
            EngineError::Corrupt { path: path.clone(), offset, reason }
        }
        other => other,
    })
}

/// Replaces the manifest durably with `map`.
pub async fn write_manifest<S: Storage>(
    storage: &S,
    data_dir: &Path,
    map: &ShardMap,
) -> Result<()> {
    let tmp = data_dir.join(MANIFEST_TMP_FILE);
    let file = storage.open_rw(&tmp, true).await?;
    let bytes = map.encode();
    file.truncate(0).await?;
    file.write_at(0, &bytes).await?;
    file.truncate(bytes.len() as u64).await?;
    file.sync().await?;
    file.close().await?;
    crate::fault_point!("manifest:before_rename");
    storage.rename(&tmp, &manifest_path(data_dir)).await?;
    storage.sync_dir(data_dir).await
}

/// Brings the data directory to the state its manifest describes, before shards open: rolls
/// back a migration the manifest records as in progress and removes every shard directory
/// the map does not list. Returns the map.
pub async fn recover_layout<S: Storage>(storage: &S, data_dir: &Path) -> Result<ShardMap> {
    let names = storage.list_dir(data_dir)?;
    if names.iter().any(|n| n == MANIFEST_TMP_FILE) {
        storage.remove(&data_dir.join(MANIFEST_TMP_FILE)).await?;
    }
    let found = read_manifest(storage, data_dir).await?;
    let manifest_missing = found.is_none();
    let mut map = found.unwrap_or_default();
    let mapped: HashMap<String, HashSet<u64>> = map
        .partitions()
        .into_iter()
        .map(|(name, p)| (partition_dir_name(name), p.shards.iter().map(|s| s.number).collect()))
        .collect();
    for name in names.into_iter().filter(|n| is_partition_dir_name(n)) {
        let pdir = data_dir.join(&name);
        let mut removed = false;
        for number in storage.list_dir(&pdir)? {
            let Ok(n) = number.parse::<u64>() else { continue };
            let listed = match mapped.get(&name) {
                Some(numbers) => numbers.contains(&n),
                None => n == 0,
            };
            if !listed && manifest_missing {
                // Only a map creates such a shard (its intent is written first): without the
                // map, removing it could destroy data. Refuse and say why.
                return Err(EngineError::Corrupt {
                    path: manifest_path(data_dir),
                    offset: 0,
                    reason: format!(
                        "missing, but shard directory {} exists and only the shard map can place it",
                        pdir.join(&number).display()
                    ),
                });
            }
            if !listed {
                tracing::warn!(dir = %pdir.join(&number).display(),
                    "removing a shard directory the shard map does not list");
                remove_shard_dir(storage, &pdir.join(&number)).await?;
                removed = true;
            }
        }
        if removed {
            storage.sync_dir(&pdir).await?;
        }
    }
    if let Some(m) = map.migration.take() {
        let what = match m.kind {
            MigrationKind::Split => "split",
            MigrationKind::Merge => "merge",
        };
        tracing::warn!(partition = %crate::shard::partition_display(&m.partition), source = m.source,
            target = m.target, "rolling back an interrupted {what}: the source keeps its range");
        write_manifest(storage, data_dir, &map).await?;
    }
    Ok(map)
}

/// Opens every shard on disk that `map` places on core `only_core` (every core if `None`),
/// with its range from the map, and returns each with its owner core. Keys outside a shard's
/// range (left by a migration) are removed, logged. Run after `recover_layout`.
pub async fn open_placed_shards<S: Storage>(
    storage: &S,
    data_dir: &Path,
    map: &ShardMap,
    cores: usize,
    only_core: Option<usize>,
    config: ShardConfig,
    clock: Rc<dyn Clock>,
) -> Result<Vec<(usize, Shard<S>)>> {
    let mut out = Vec::new();
    for name in storage.list_dir(data_dir)?.into_iter().filter(|n| is_partition_dir_name(n)) {
        let pdir = data_dir.join(&name);
        for number in storage.list_dir(&pdir)? {
            let dir = pdir.join(&number);
            if !storage.list_dir(&dir)?.iter().any(|n| n == "meta") {
                continue;
            }
            let meta_path = dir.join("meta");
            let file = storage.open_rw(&meta_path, false).await?;
            let meta = ShardMeta::decode(&read_all(&file).await?, &meta_path)?;
            file.close().await?;
            let placement = map.placement(&meta.partition, cores);
            let Some(place) = placement.by_number(meta.number).copied() else {
                // recover_layout removed unlisted shards; this one appeared since.
                tracing::warn!(shard = %meta.name(), "shard not in the shard map: ignored");
                continue;
            };
            let core = place.core(cores);
            if only_core.is_some_and(|c| c != core) {
                continue;
            }
            let shard = Shard::open(storage.clone(), dir, config.clone(), clock.clone()).await?;
            shard.set_range(place.lo, place.hi);
            if (place.lo, place.hi) != (0, u64::MAX) {
                // It may hold keys of an interrupted or finished migration.
                shard.assume_foreign();
            }
            let dropped = if shard.is_serving() { shard.drop_foreign().await? } else { 0 };
            tracing::info!(core, shard = %meta.name(), keys = shard.key_count(),
                dropped_foreign = dropped, serving = shard.is_serving(), "shard recovered");
            out.push((core, shard));
        }
    }
    Ok(out)
}

/// Whether a data-directory entry is a partition directory (`<readable>-<16 hex digits>`).
fn is_partition_dir_name(name: &str) -> bool {
    match name.rsplit_once('-') {
        Some((_, hash)) => hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::shard_map::PartitionMap;
    use crate::storage::sim::SimStorage;

    #[test]
    fn unlisted_shards_are_removed_and_a_missing_map_with_split_shards_is_refused() {
        crate::testing::run_local(|| async {
            let storage = SimStorage::new();
            let data = Path::new("/d");
            let pdir = data.join(partition_dir_name(b"user"));
            for n in ["0", "1", "2"] {
                storage.create_dir_all(&pdir.join(n)).unwrap();
                let f = storage.open_rw(&pdir.join(n).join("meta"), true).await.unwrap();
                f.close().await.unwrap();
            }
            // No SHARDMAP, yet shards 1 and 2 exist: refuse, touch nothing.
            let err = recover_layout(&storage, data).await.unwrap_err();
            assert!(err.to_string().contains("only the shard map can place it"), "{err}");
            assert_eq!(storage.list_dir(&pdir).unwrap(), vec!["0", "1", "2"]);
            // A map listing 0 and 2 (1 was merged away): 1 goes, the others stay.
            let mut map = ShardMap::default();
            map.set_partition(b"user", PartitionMap::default_for(b"user", 2));
            let map = map.with_split(b"user", 0, 1 << 60, 2, 1);
            write_manifest(&storage, data, &map).await.unwrap();
            let got = recover_layout(&storage, data).await.unwrap();
            assert_eq!(got, map);
            assert_eq!(storage.list_dir(&pdir).unwrap(), vec!["0", "2"]);
        });
    }
}
