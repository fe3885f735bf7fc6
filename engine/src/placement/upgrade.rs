//! Converting a data directory of format 1, the layout before shared shards: one directory
//! per partition (`<readable>-<16 hex digits>/<number>/`, with `meta` format 1 naming the
//! partition and a hash range) and `SHARDMAP` format 1 (partition -> shards by hash range).
//!
//! The conversion runs at start, before any shard opens, and commits in one step:
//! 1. every old shard is read without changing its files (`read_keyspace`), and each of its
//!    live keys inside the range the old map gave it (keys outside it were a migration's
//!    leftovers) is written, through the log, into the new shard that owns its position;
//! 2. the new shards are synced; then the new `SHARDMAP` (format 2) replaces the old one:
//!    **this rename is the commit**;
//! 3. the old partition directories are removed.
//!
//! A crash before the commit leaves the old files untouched and the next start converts
//! again, from scratch (the partial `shards/` folder goes first); a crash after it leaves only
//! old directories to remove, which the next start does. An interrupted format-1 migration is
//! rolled back as format 1 did: each old shard keeps the range its map gave it.

use super::manifest::{manifest_path, write_manifest, LayoutInit, MANIFEST_FILE};
use super::shard_map::{manifest_body, ShardMap, MANIFEST_HEADER_LEN, MANIFEST_MAGIC_V1};
use crate::clock::Clock;
use crate::error::{EngineError, Result};
use crate::migration::{MigrationBatch, BATCH_ENTRIES_MAX};
use crate::routing::{key_position, PARTITION_LEN_MAX};
use crate::shard::segment::SegmentEntry;
use crate::shard::{read_keyspace, remove_shard_dir, shards_dir, Shard, ShardConfig, ShardMeta};
use crate::shard::{META_MAGIC_V1, SHARDS_DIR};
use crate::storage::{read_all, Storage, StorageFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Whether `name` looks like a format-1 partition directory (`<readable>-<16 hex digits>`).
fn is_partition_dir_name(name: &str) -> bool {
    match name.rsplit_once('-') {
        Some((_, hash)) => hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// Whether a format-1 shard directory is there: `meta` starting with the format-1 magic.
async fn holds_v1_shard<S: Storage>(storage: &S, dir: &Path) -> Result<bool> {
    if !storage.list_dir(dir)?.iter().any(|n| n == "meta") {
        return Ok(false);
    }
    let file = storage.open_rw(&dir.join("meta"), false).await?;
    let bytes = read_all(&file).await?;
    file.close().await?;
    Ok(bytes.starts_with(META_MAGIC_V1))
}

/// The format-1 partition directories: named so, a directory (a file of that name is not
/// one), and holding at least one format-1 shard. Nothing else is ever converted or removed.
async fn old_partition_dirs<S: Storage>(storage: &S, data_dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in storage.list_dir(data_dir)?.into_iter().filter(|n| is_partition_dir_name(n)) {
        let Ok(entries) = storage.list_dir(&data_dir.join(&name)) else { continue };
        let mut found = false;
        for entry in entries.iter().filter(|e| e.parse::<u64>().is_ok()) {
            if holds_v1_shard(storage, &data_dir.join(&name).join(entry)).await.unwrap_or(false) {
                found = true;
                break;
            }
        }
        if found {
            out.push(name);
        }
    }
    Ok(out)
}

async fn manifest_magic<S: Storage>(storage: &S, data_dir: &Path) -> Result<Option<Vec<u8>>> {
    if !storage.list_dir(data_dir)?.iter().any(|n| n == MANIFEST_FILE) {
        return Ok(None);
    }
    let path = manifest_path(data_dir);
    let file = storage.open_rw(&path, false).await?;
    let bytes = read_all(&file).await?;
    file.close().await?;
    Ok(Some(bytes))
}

/// Whether the data directory holds format-1 files: partition directories or a format-1
/// manifest.
pub async fn holds_old_layout<S: Storage>(storage: &S, data_dir: &Path) -> Result<bool> {
    if !old_partition_dirs(storage, data_dir).await?.is_empty() {
        return Ok(true);
    }
    let bytes = manifest_magic(storage, data_dir).await?;
    Ok(bytes.is_some_and(|b| b.starts_with(MANIFEST_MAGIC_V1)))
}

/// An old shard's identity (`meta` format 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaV1 {
    pub partition: Vec<u8>,
    pub number: u64,
}

/// Decodes a format-1 `meta`: magic, u32 version, u32 partition length, u64 number, u64 and
/// u64 creation range, the partition, crc32 of all before it.
pub fn decode_meta_v1(bytes: &[u8], path: &Path) -> Result<MetaV1> {
    let corrupt = |offset: u64, reason: &str| EngineError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.to_owned(),
    };
    if bytes.len() < 44 || &bytes[0..8] != META_MAGIC_V1 {
        return Err(corrupt(0, "not a format-1 shard meta file"));
    }
    let plen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    if plen > PARTITION_LEN_MAX || bytes.len() < 44 + plen {
        return Err(corrupt(12, "bad partition length"));
    }
    let expected = u32::from_le_bytes(bytes[40 + plen..44 + plen].try_into().unwrap());
    let got = crc32fast::hash(&bytes[..40 + plen]);
    if expected != got {
        return Err(EngineError::ChecksumMismatch {
            path: path.to_owned(),
            offset: 0,
            expected,
            got,
        });
    }
    Ok(MetaV1 {
        partition: bytes[40..40 + plen].to_vec(),
        number: u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
    })
}

/// A format-1 map: partition -> its shards as (number, inclusive key-position range).
pub type MapV1 = HashMap<Vec<u8>, Vec<(u64, u64, u64)>>;

/// Decodes a format-1 manifest: header (magic, u32 version 1, u32 body length, u32 crc32 of
/// the body, u32 reserved), body: u64 epoch, u32 partition count, per partition u32 name
/// length, name, u64 next number, u32 shard count, per shard u64 number, u64 lo, u64 hi, u32
/// core; then the migration in progress, which is ignored: format 1 rolled it back, leaving
/// every shard the range the map gives it.
pub fn decode_manifest_v1(bytes: &[u8], path: &Path) -> Result<MapV1> {
    let corrupt = |offset: usize, reason: String| EngineError::Corrupt {
        path: path.to_owned(),
        offset: offset as u64,
        reason,
    };
    let body = manifest_body(bytes, path, MANIFEST_MAGIC_V1, 1)?;
    struct Body<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl Body<'_> {
        fn take(&mut self, n: usize) -> std::result::Result<&[u8], usize> {
            if self.bytes.len() - self.at < n {
                return Err(MANIFEST_HEADER_LEN + self.at);
            }
            self.at += n;
            Ok(&self.bytes[self.at - n..self.at])
        }
        fn u32(&mut self) -> std::result::Result<u32, usize> {
            Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
        }
        fn u64(&mut self) -> std::result::Result<u64, usize> {
            Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
        }
    }
    let early = |at: usize| corrupt(at, "body ends early".into());
    let mut r = Body { bytes: body, at: 0 };
    let _epoch = r.u64().map_err(early)?;
    let count = r.u32().map_err(early)? as usize;
    let mut map = MapV1::new();
    for _ in 0..count {
        let at = MANIFEST_HEADER_LEN + r.at;
        let name_len = r.u32().map_err(early)? as usize;
        if name_len > PARTITION_LEN_MAX {
            return Err(corrupt(at, format!("partition name of {name_len} bytes")));
        }
        let name = r.take(name_len).map_err(early)?.to_vec();
        let _next = r.u64().map_err(early)?;
        let at = MANIFEST_HEADER_LEN + r.at;
        let shards = r.u32().map_err(early)? as usize;
        if shards > 4096 {
            return Err(corrupt(at, format!("{shards} shards in one partition")));
        }
        let mut list = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (number, lo, hi) =
                (r.u64().map_err(early)?, r.u64().map_err(early)?, r.u64().map_err(early)?);
            let _core = r.u32().map_err(early)?;
            list.push((number, lo, hi));
        }
        map.insert(name, list);
    }
    Ok(map)
}

/// Converts a format-1 data directory to the current layout (see the module docs).
pub async fn convert<S: Storage>(
    storage: &S,
    data_dir: &Path,
    init: LayoutInit,
    config: &ShardConfig,
    clock: Rc<dyn Clock>,
) -> Result<()> {
    let old_dirs = old_partition_dirs(storage, data_dir).await?;
    let manifest = manifest_magic(storage, data_dir).await?;
    let committed = manifest.as_ref().is_some_and(|b| !b.starts_with(MANIFEST_MAGIC_V1));
    if !committed {
        let old_map = match &manifest {
            Some(bytes) => Some(decode_manifest_v1(bytes, &manifest_path(data_dir))?),
            None => None,
        };
        let started = std::time::Instant::now();
        let (partitions, keys) = copy_into_new_shards(
            storage,
            data_dir,
            &old_dirs,
            old_map.as_ref(),
            init,
            config,
            clock,
        )
        .await?;
        tracing::warn!(
            partitions,
            keys,
            ms = started.elapsed().as_millis() as u64,
            "converted a data directory of format 1 (one shard per partition) to shared shards"
        );
    }
    for name in &old_dirs {
        let pdir = data_dir.join(name);
        for shard in storage.list_dir(&pdir)? {
            remove_shard_dir(storage, &pdir.join(shard)).await?;
        }
        storage.sync_dir(&pdir).await?;
        storage.remove_dir(&pdir)?;
    }
    storage.sync_dir(data_dir).await
}

/// Steps 1 and 2 of the conversion; returns the partitions and keys carried over.
async fn copy_into_new_shards<S: Storage>(
    storage: &S,
    data_dir: &Path,
    old_dirs: &[String],
    old_map: Option<&MapV1>,
    init: LayoutInit,
    config: &ShardConfig,
    clock: Rc<dyn Clock>,
) -> Result<(usize, u64)> {
    // First decide, for every old shard, the range of key positions its map gave it; a
    // refusal changes nothing.
    let mut sources: Vec<(usize, PathBuf, u64, u64)> = Vec::new();
    for (p, name) in old_dirs.iter().enumerate() {
        let pdir = data_dir.join(name);
        for shard_name in storage.list_dir(&pdir)? {
            let dir: PathBuf = pdir.join(&shard_name);
            if !storage.list_dir(&dir)?.iter().any(|n| n == "meta") {
                continue;
            }
            let meta_path = dir.join("meta");
            let file = storage.open_rw(&meta_path, false).await?;
            let meta = decode_meta_v1(&read_all(&file).await?, &meta_path)?;
            file.close().await?;
            let range = match (old_map, old_map.and_then(|m| m.get(&meta.partition))) {
                (_, Some(list)) => list.iter().find(|s| s.0 == meta.number).map(|s| (s.1, s.2)),
                (Some(_), None) | (None, None) if meta.number == 0 => Some((0, u64::MAX)),
                (Some(_), None) => None,
                (None, None) => {
                    // Only a format-1 map creates shards past 0: without it, which keys this
                    // one owns is unknown. Refuse, as format 1 did, and change nothing.
                    return Err(EngineError::Corrupt {
                        path: manifest_path(data_dir),
                        offset: 0,
                        reason: format!(
                            "missing, but format-1 shard directory {} exists and only the shard map can place it",
                            dir.display()
                        ),
                    });
                }
            };
            // Not in the old map: an uncommitted split's target, or a merged-away donor.
            if let Some((lo, hi)) = range {
                sources.push((p, dir, lo, hi));
            }
        }
    }
    // The remains of an interrupted conversion.
    let shards = shards_dir(data_dir);
    if storage.list_dir(data_dir)?.iter().any(|n| n == SHARDS_DIR) {
        for name in storage.list_dir(&shards)? {
            remove_shard_dir(storage, &shards.join(name)).await?;
        }
        storage.sync_dir(&shards).await?;
    }
    let map = ShardMap::initial(init.shared_shards, init.cores, init.separator);
    let mut new_shards: HashMap<u64, Shard<S>> = HashMap::new();
    for place in map.shards() {
        let meta = ShardMeta::shared(place.number);
        let ranges = map.ranges_of(place.number);
        let shard =
            Shard::create(storage.clone(), data_dir, meta, ranges, config.clone(), clock.clone())
                .await?;
        new_shards.insert(place.number, shard);
    }
    let now = clock.now_ms();
    let mut partitions: std::collections::HashSet<usize> = Default::default();
    let mut keys = 0u64;
    let mut pending: HashMap<u64, MigrationBatch> = HashMap::new();
    for (p, dir, lo, hi) in sources {
        partitions.insert(p);
        {
            let found = read_keyspace(storage, &dir, config.partition_separator).await?;
            for (_, key) in found.keyspace.index().iter() {
                let entry = found.keyspace.peek(key).expect("indexed keys are mapped");
                let live = entry.expire_at_ms == 0 || entry.expire_at_ms > now;
                if !live || !(lo..=hi).contains(&key_position(key)) {
                    continue;
                }
                let position = found.keyspace.index().position(key);
                let number = map.find(position).shard;
                let batch = pending.entry(number).or_default();
                batch.puts.push(SegmentEntry {
                    key: key.to_vec(),
                    value: entry.value.to_vec(),
                    expire_at_ms: entry.expire_at_ms,
                });
                keys += 1;
                if batch.puts.len() >= BATCH_ENTRIES_MAX {
                    let batch = std::mem::take(batch);
                    new_shards[&number].apply_batch(batch, 0, u128::MAX)?;
                    new_shards[&number].flush(false).await?;
                }
            }
        }
    }
    for (number, batch) in pending {
        new_shards[&number].apply_batch(batch, 0, u128::MAX)?;
    }
    for shard in new_shards.values() {
        shard.flush(true).await?;
    }
    crate::fault_point!("upgrade:before_commit");
    write_manifest(storage, data_dir, &map).await?;
    crate::fault_point!("upgrade:committed");
    Ok((partitions.len(), keys))
}
