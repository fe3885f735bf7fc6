//! The manifest file `<data-dir>/SHARDMAP`, which persists the shard map, and the recovery of
//! the data directory's layout from it.
//!
//! Written as: new content to `SHARDMAP.tmp`, fdatasync, rename over `SHARDMAP`, fsync of the
//! data directory. A crash at any point leaves either the old or the new map.
//!
//! Invariant: a shard directory that the recovered map does not list is garbage (an
//! uncommitted split's new shard, or a merged-away donor) and is removed before any shard
//! opens; the map is the only authority on which shards exist and what they own.
//! Invariant: a data directory without a manifest but with shard directories is refused, never
//! emptied.

use crate::clock::Clock;
use crate::error::{EngineError, Result};
use crate::placement::shard_map::ShardMap;
use crate::shard::{partition_display, remove_shard_dir, shard_dir, shards_dir};
use crate::shard::{Shard, ShardConfig, ShardMeta};
use crate::storage::{read_all, Storage, StorageFile};
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
    write_manifest_staged(storage, data_dir, map).await.map_err(|f| f.error)
}

/// A failed `write_manifest_staged`, with how far it got.
#[derive(Debug)]
pub struct ManifestWriteFailure {
    pub error: EngineError,
    /// The rename was issued: the new map may be the one on disk. Before it, the manifest on
    /// disk is certainly the previous one (the new map went only to the temporary file).
    pub renamed: bool,
}

/// `write_manifest`, telling a failure that left the manifest on disk untouched (a full disk
/// fails the temporary file's write) from one whose outcome is unknown.
pub async fn write_manifest_staged<S: Storage>(
    storage: &S,
    data_dir: &Path,
    map: &ShardMap,
) -> std::result::Result<(), ManifestWriteFailure> {
    let before = |error| ManifestWriteFailure { error, renamed: false };
    let tmp = data_dir.join(MANIFEST_TMP_FILE);
    let file = storage.open_rw(&tmp, true).await.map_err(before)?;
    let bytes = map.encode();
    file.truncate(0).await.map_err(before)?;
    file.write_at(0, &bytes).await.map_err(before)?;
    file.truncate(bytes.len() as u64).await.map_err(before)?;
    file.sync().await.map_err(before)?;
    file.close().await.map_err(before)?;
    crate::fault_point!("manifest:before_rename");
    let after = |error| ManifestWriteFailure { error, renamed: true };
    storage.rename(&tmp, &manifest_path(data_dir)).await.map_err(after)?;
    storage.sync_dir(data_dir).await.map_err(after)
}

/// What a new data directory starts with.
#[derive(Debug, Clone, Copy)]
pub struct LayoutInit {
    /// Shared shards to create.
    pub shared_shards: usize,
    /// Cores to spread them over.
    pub cores: usize,
    /// The partition separator: a new directory records it, an existing one must match it.
    pub separator: u8,
}

/// Brings the data directory to the state its manifest describes, before shards open: a new
/// directory gets its initial map; a directory of the layout before shared shards is
/// converted (`upgrade`); a migration the manifest records as in progress is rolled back;
/// every shard directory the map does not list is removed. Returns the map.
pub async fn recover_layout<S: Storage>(
    storage: &S,
    data_dir: &Path,
    init: LayoutInit,
    shard_config: &ShardConfig,
    clock: Rc<dyn Clock>,
) -> Result<ShardMap> {
    let names = storage.list_dir(data_dir)?;
    if names.iter().any(|n| n == MANIFEST_TMP_FILE) {
        storage.remove(&data_dir.join(MANIFEST_TMP_FILE)).await?;
    }
    if super::upgrade::holds_old_layout(storage, data_dir).await? {
        super::upgrade::convert(storage, data_dir, init, shard_config, clock).await?;
    }
    let found = read_manifest(storage, data_dir).await?;
    let shards = shards_dir(data_dir);
    let on_disk: Vec<(String, u64)> = storage
        .list_dir(&shards)?
        .into_iter()
        // Only canonical numbers name shards (`7`, not `007`): anything else is not ours.
        .filter_map(|n| n.parse::<u64>().ok().filter(|x| x.to_string() == n).map(|x| (n, x)))
        .collect();
    let mut map = match found {
        Some(map) => map,
        None => {
            if let Some((name, _)) = on_disk.first() {
                // Only a map creates a shard (its intent is written first): without the map,
                // removing it could destroy data. Refuse and say why.
                return Err(EngineError::Corrupt {
                    path: manifest_path(data_dir),
                    offset: 0,
                    reason: format!(
                        "missing, but shard directory {} exists and only the shard map can place it",
                        shards.join(name).display()
                    ),
                });
            }
            let map = ShardMap::initial(init.shared_shards, init.cores, init.separator);
            tracing::info!(shared_shards = init.shared_shards, "a new data directory");
            write_manifest(storage, data_dir, &map).await?;
            map
        }
    };
    if map.separator != init.separator {
        return Err(EngineError::Setting {
            name: "partition-separator",
            reason: format!(
                "the data directory {} was made with {:?} and the configuration says {:?}; a key's partition, so where it is stored, depends on it: start with partition-separator = {:?}",
                data_dir.display(),
                map.separator as char,
                init.separator as char,
                map.separator as char,
            ),
        });
    }
    let mut removed = false;
    for (name, number) in on_disk {
        if map.shard(number).is_none() {
            tracing::warn!(dir = %shards.join(&name).display(),
                "removing a shard directory the shard map does not list");
            remove_shard_dir(storage, &shards.join(&name)).await?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(&shards).await?;
    }
    if let Some(m) = map.migration.take() {
        let what = map.describe(&m);
        tracing::warn!(partition = %partition_display(&m.partition), source = m.source,
            target = m.target, "rolling back an interrupted {what}: the source keeps its range");
        match write_manifest(storage, data_dir, &map).await {
            Ok(()) => {}
            // The manifest keeps the intent, which every start rolls back the same way: a
            // still-full disk must not keep the server from starting.
            Err(e) if e.is_no_space() => tracing::warn!(error = %e,
                "the rollback could not be recorded; the next start rolls the intent back again"),
            Err(e) => return Err(e),
        }
    }
    Ok(map)
}

/// Opens every shard of `map` placed on core `only_core` (every core if `None`) that has
/// files, with its ranges from the map, and returns each with its owner core. Keys outside a
/// shard's ranges (left by a migration) are removed, logged. Shards without files are left to
/// the caller to create. Run after `recover_layout`.
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
    for place in map.shards() {
        let core = place.core(cores);
        if only_core.is_some_and(|c| c != core) {
            continue;
        }
        let dir = shard_dir(data_dir, place.number);
        if !storage.list_dir(&dir)?.iter().any(|n| n == "meta") {
            continue;
        }
        let ranges = map.ranges_of(place.number);
        let shard =
            Shard::open(storage.clone(), dir, ranges, config.clone(), clock.clone()).await?;
        let meta = shard.meta();
        if meta.number != place.number || meta.partition != place.partition {
            return Err(EngineError::Corrupt {
                path: shard.dir().join("meta"),
                offset: 0,
                reason: format!(
                    "names shard {} but the shard map places {} there",
                    meta.name(),
                    ShardMeta { number: place.number, partition: place.partition.clone() }.name()
                ),
            });
        }
        let dropped = if shard.is_serving() { shard.drop_foreign().await? } else { 0 };
        tracing::info!(core, shard = %shard.meta().name(), keys = shard.key_count(),
            dropped_foreign = dropped, serving = shard.is_serving(), "shard recovered");
        out.push((core, shard));
    }
    Ok(out)
}

/// Creates, empty, shard `number` of `map` (a new directory's shared shards, or a shard whose
/// files were lost). A directory without `meta` there is the remains of an interrupted
/// creation (a shard writes `meta` before anything else) and goes first.
pub async fn create_placed_shard<S: Storage>(
    storage: &S,
    data_dir: &Path,
    map: &ShardMap,
    number: u64,
    config: ShardConfig,
    clock: Rc<dyn Clock>,
) -> Result<Shard<S>> {
    let place = map.shard(number).expect("a mapped shard");
    let dir = shard_dir(data_dir, number);
    let present = storage.list_dir(&dir)?;
    assert!(!present.iter().any(|n| n == "meta"), "creating shard {number} over its files");
    if !present.is_empty() {
        remove_shard_dir(storage, &dir).await?;
    }
    let meta = ShardMeta { number, partition: place.partition.clone() };
    Shard::create(storage.clone(), data_dir, meta, map.ranges_of(number), config, clock).await
}
