//! The shard map: partition -> ordered shards (hash range, shard number, owner core), with a
//! monotonic epoch and the migration in progress, if any. Pure data and its byte encoding; the
//! manifest file that persists it is in `manifest`.
//!
//! A partition absent from the map has its default placement: one shard, number 0, the whole
//! hash space, on `default_core_of(partition)`. A partition enters the map when it is first
//! split (or merged back), and stays.
//!
//! Invariant: every mapped partition's shards are sorted by range, contiguous, and cover
//! `0..=u64::MAX` exactly (checked on decode and on every change).
//! Invariant: shard numbers are never reused within a partition (`next_number` only grows), so
//! a directory left behind by an interrupted migration can never be mistaken for a live shard.

use crate::error::{EngineError, Result};
use crate::routing::{default_core_of, key_position, PARTITION_LEN_MAX};
use std::collections::HashMap;
use std::path::Path;

/// Most shards one partition may ever have (a hard format limit; the configured maximum is
/// `EngineConfig::shards_per_partition_max`, at most this).
pub const SHARDS_PER_PARTITION_LIMIT: usize = 4096;
/// Most partitions the map may hold.
pub const MAPPED_PARTITIONS_MAX: usize = 1 << 20;

const MANIFEST_MAGIC: &[u8; 8] = b"SCMAP001";
const MANIFEST_VERSION: u32 = 1;
/// Bytes before the body: magic, version, body length, body crc, reserved.
pub const MANIFEST_HEADER_LEN: usize = 24;
/// Largest manifest body the decoder accepts.
pub const MANIFEST_BODY_LEN_MAX: usize = 256 * 1024 * 1024;

/// One shard of a partition as the map places it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPlace {
    pub number: u64,
    /// Inclusive range of key positions.
    pub lo: u64,
    pub hi: u64,
    /// Owner core as recorded; the live owner is `core % cores` (the core count may change
    /// between runs).
    pub core: u32,
}

impl ShardPlace {
    pub fn contains(&self, position: u64) -> bool {
        (self.lo..=self.hi).contains(&position)
    }

    pub fn core(&self, cores: usize) -> usize {
        self.core as usize % cores
    }
}

/// A mapped partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMap {
    pub shards: Vec<ShardPlace>,
    /// The number the next new shard of this partition gets.
    pub next_number: u64,
}

impl PartitionMap {
    /// The default placement of a partition, as a map entry.
    pub fn default_for(partition: &[u8], cores: usize) -> Self {
        let core = default_core_of(partition, cores) as u32;
        PartitionMap {
            shards: vec![ShardPlace { number: 0, lo: 0, hi: u64::MAX, core }],
            next_number: 1,
        }
    }

    /// The shard owning `position`.
    pub fn find(&self, position: u64) -> &ShardPlace {
        let i = self.shards.partition_point(|s| s.hi < position);
        &self.shards[i]
    }

    pub fn by_number(&self, number: u64) -> Option<&ShardPlace> {
        self.shards.iter().find(|s| s.number == number)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.shards.is_empty() || self.shards.len() > SHARDS_PER_PARTITION_LIMIT {
            return Err(format!("{} shards", self.shards.len()));
        }
        let mut expect_lo = 0u64;
        for (i, s) in self.shards.iter().enumerate() {
            if s.lo != expect_lo || s.hi < s.lo {
                return Err(format!(
                    "shard {} range {:#x}..={:#x} leaves a gap",
                    s.number, s.lo, s.hi
                ));
            }
            if s.number >= self.next_number {
                return Err(format!(
                    "shard number {} not below next {}",
                    s.number, self.next_number
                ));
            }
            if self.shards[..i].iter().any(|o| o.number == s.number) {
                return Err(format!("shard number {} twice", s.number));
            }
            if s.hi == u64::MAX {
                return if i + 1 == self.shards.len() {
                    Ok(())
                } else {
                    Err("shards after the end of the hash space".into())
                };
            }
            expect_lo = s.hi + 1;
        }
        Err("the hash space is not covered to its end".into())
    }
}

/// Kind of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationKind {
    /// `source` gives `lo..=hi` (its upper part) to the new shard `target`.
    Split,
    /// `source` (the donor) gives all of `lo..=hi` to its neighbour `target` (the absorber).
    Merge,
}

/// A migration in progress, as the manifest records it. Until the commit (which clears this
/// and advances the epoch) the source owns the range; recovery rolls the migration back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    pub kind: MigrationKind,
    pub partition: Vec<u8>,
    pub source: u64,
    pub target: u64,
    pub lo: u64,
    pub hi: u64,
    pub target_core: u32,
}

/// The whole map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    pub epoch: u64,
    partitions: HashMap<Vec<u8>, PartitionMap, ahash::RandomState>,
    pub migration: Option<MigrationRecord>,
}

impl ShardMap {
    pub fn get(&self, partition: &[u8]) -> Option<&PartitionMap> {
        self.partitions.get(partition)
    }

    /// The partition's shards: its map entry, or its default placement.
    pub fn placement(&self, partition: &[u8], cores: usize) -> PartitionMap {
        self.get(partition).cloned().unwrap_or_else(|| PartitionMap::default_for(partition, cores))
    }

    /// Mapped partitions, sorted by name.
    pub fn partitions(&self) -> Vec<(&[u8], &PartitionMap)> {
        let mut v: Vec<_> = self.partitions.iter().map(|(k, v)| (k.as_slice(), v)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The core owning `key` of `partition`. Hashes the key only for mapped partitions.
    #[inline]
    pub fn core_of(&self, partition: &[u8], key: &[u8], cores: usize) -> usize {
        match self.partitions.get(partition) {
            None => default_core_of(partition, cores),
            Some(p) if p.shards.len() == 1 => p.shards[0].core(cores),
            Some(p) => p.find(key_position(key)).core(cores),
        }
    }

    /// Replaces (or inserts) a partition's entry; checks it.
    pub fn set_partition(&mut self, partition: &[u8], entry: PartitionMap) {
        if let Err(e) = entry.validate() {
            panic!("invalid shard map entry for {partition:?}: {e}");
        }
        self.partitions.insert(partition.to_vec(), entry);
    }

    /// The map after a committed split of shard `source` at `cut` (the new shard `target`
    /// owns `cut..=old hi`): epoch advanced, migration cleared.
    pub fn with_split(
        &self,
        partition: &[u8],
        source: u64,
        cut: u64,
        target: u64,
        core: u32,
    ) -> Self {
        let mut entry = self.get(partition).expect("a split partition is mapped").clone();
        let i = entry.shards.iter().position(|s| s.number == source).expect("source shard");
        let old = entry.shards[i];
        assert!(old.lo < cut && cut <= old.hi, "cut inside the range");
        entry.shards[i].hi = cut - 1;
        entry.shards.insert(i + 1, ShardPlace { number: target, lo: cut, hi: old.hi, core });
        entry.next_number = entry.next_number.max(target + 1);
        let mut next = self.clone();
        next.set_partition(partition, entry);
        next.epoch += 1;
        next.migration = None;
        next
    }

    /// The map after a committed merge of `donor` into its neighbour `absorber`.
    pub fn with_merge(&self, partition: &[u8], absorber: u64, donor: u64) -> Self {
        let mut entry = self.get(partition).expect("a merged partition is mapped").clone();
        let a = entry.shards.iter().position(|s| s.number == absorber).expect("absorber");
        let d = entry.shards.iter().position(|s| s.number == donor).expect("donor");
        assert!(a.abs_diff(d) == 1, "merge of adjacent shards");
        let donor_place = entry.shards.remove(d);
        let a = entry.shards.iter().position(|s| s.number == absorber).unwrap();
        let abs = &mut entry.shards[a];
        abs.lo = abs.lo.min(donor_place.lo);
        abs.hi = abs.hi.max(donor_place.hi);
        let mut next = self.clone();
        next.set_partition(partition, entry);
        next.epoch += 1;
        next.migration = None;
        next
    }

    /// The manifest bytes (header + body, padded to the I/O alignment).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.epoch.to_le_bytes());
        let parts = self.partitions();
        body.extend_from_slice(&(parts.len() as u32).to_le_bytes());
        for (name, p) in parts {
            body.extend_from_slice(&(name.len() as u32).to_le_bytes());
            body.extend_from_slice(name);
            body.extend_from_slice(&p.next_number.to_le_bytes());
            body.extend_from_slice(&(p.shards.len() as u32).to_le_bytes());
            for s in &p.shards {
                body.extend_from_slice(&s.number.to_le_bytes());
                body.extend_from_slice(&s.lo.to_le_bytes());
                body.extend_from_slice(&s.hi.to_le_bytes());
                body.extend_from_slice(&s.core.to_le_bytes());
            }
        }
        match &self.migration {
            None => body.push(0),
            Some(m) => {
                body.push(match m.kind {
                    MigrationKind::Split => 1,
                    MigrationKind::Merge => 2,
                });
                body.extend_from_slice(&(m.partition.len() as u32).to_le_bytes());
                body.extend_from_slice(&m.partition);
                for v in [m.source, m.target, m.lo, m.hi] {
                    body.extend_from_slice(&v.to_le_bytes());
                }
                body.extend_from_slice(&m.target_core.to_le_bytes());
            }
        }
        let mut out = Vec::with_capacity(MANIFEST_HEADER_LEN + body.len());
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&body);
        out.resize(crate::storage::align_up(out.len() as u64) as usize, 0);
        out
    }

    /// Decodes and checks manifest bytes; `path` names the file in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |offset: usize, reason: String| EngineError::Corrupt {
            path: path.to_owned(),
            offset: offset as u64,
            reason,
        };
        if bytes.len() < MANIFEST_HEADER_LEN || &bytes[0..8] != MANIFEST_MAGIC {
            return Err(corrupt(0, "not a shard map manifest".into()));
        }
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let version = u32_at(bytes, 8);
        if version != MANIFEST_VERSION {
            return Err(corrupt(8, format!("unsupported manifest version {version}")));
        }
        let len = u32_at(bytes, 12) as usize;
        if len > MANIFEST_BODY_LEN_MAX || bytes.len() < MANIFEST_HEADER_LEN + len {
            return Err(corrupt(12, format!("body length {len} exceeds the file")));
        }
        let body = &bytes[MANIFEST_HEADER_LEN..MANIFEST_HEADER_LEN + len];
        let (expected, got) = (u32_at(bytes, 16), crc32fast::hash(body));
        if expected != got {
            return Err(EngineError::ChecksumMismatch {
                path: path.to_owned(),
                offset: 16,
                expected,
                got,
            });
        }
        let mut r = Reader { body, at: 0 };
        let mut map = ShardMap { epoch: r.u64()?, ..Default::default() };
        let count = r.u32()? as usize;
        if count > MAPPED_PARTITIONS_MAX {
            return Err(corrupt(MANIFEST_HEADER_LEN + 8, format!("{count} partitions")));
        }
        for _ in 0..count {
            let at = MANIFEST_HEADER_LEN + r.at;
            let name = r.name()?;
            let next_number = r.u64()?;
            let shards = r.u32()? as usize;
            if shards > SHARDS_PER_PARTITION_LIMIT {
                return Err(corrupt(at, format!("{shards} shards in one partition")));
            }
            let mut entry = PartitionMap { shards: Vec::with_capacity(shards), next_number };
            for _ in 0..shards {
                let (number, lo, hi, core) = (r.u64()?, r.u64()?, r.u64()?, r.u32()?);
                entry.shards.push(ShardPlace { number, lo, hi, core });
            }
            entry.validate().map_err(|e| corrupt(at, format!("partition {name:?}: {e}")))?;
            map.partitions.insert(name, entry);
        }
        let at = MANIFEST_HEADER_LEN + r.at;
        map.migration = match r.u8()? {
            0 => None,
            kind @ (1 | 2) => Some(MigrationRecord {
                kind: if kind == 1 { MigrationKind::Split } else { MigrationKind::Merge },
                partition: r.name()?,
                source: r.u64()?,
                target: r.u64()?,
                lo: r.u64()?,
                hi: r.u64()?,
                target_core: r.u32()?,
            }),
            other => return Err(corrupt(at, format!("unknown migration kind {other}"))),
        };
        if r.at != body.len() {
            return Err(corrupt(MANIFEST_HEADER_LEN + r.at, "trailing bytes in the body".into()));
        }
        Ok(map)
    }
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.body.len() - self.at < n {
            return Err(EngineError::Corrupt {
                path: Default::default(),
                offset: (MANIFEST_HEADER_LEN + self.at) as u64,
                reason: "manifest body ends early".into(),
            });
        }
        self.at += n;
        Ok(&self.body[self.at - n..self.at])
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn name(&mut self) -> Result<Vec<u8>> {
        let len = self.u32()? as usize;
        if len > PARTITION_LEN_MAX {
            return Err(EngineError::Corrupt {
                path: Default::default(),
                offset: (MANIFEST_HEADER_LEN + self.at) as u64,
                reason: format!("partition name of {len} bytes"),
            });
        }
        Ok(self.take(len)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_shards() -> ShardMap {
        let mut map = ShardMap::default();
        map.set_partition(b"user", PartitionMap::default_for(b"user", 2));
        map.with_split(b"user", 0, 1 << 63, 1, 1)
    }

    #[test]
    fn split_and_merge_keep_the_space_covered() {
        let map = two_shards();
        assert_eq!(map.epoch, 1);
        let p = map.get(b"user").unwrap();
        assert_eq!(p.shards.len(), 2);
        assert_eq!(p.find(0).number, 0);
        assert_eq!(p.find((1 << 63) - 1).number, 0);
        assert_eq!(p.find(1 << 63).number, 1);
        assert_eq!(p.find(u64::MAX).number, 1);
        let merged = map.with_merge(b"user", 1, 0);
        let p = merged.get(b"user").unwrap();
        assert_eq!(p.shards, vec![ShardPlace { number: 1, lo: 0, hi: u64::MAX, core: 1 }]);
        assert_eq!(p.next_number, 2, "numbers are never reused");
    }

    #[test]
    fn manifest_round_trips_and_detects_damage() {
        let mut map = two_shards();
        map.migration = Some(MigrationRecord {
            kind: MigrationKind::Merge,
            partition: b"user".to_vec(),
            source: 1,
            target: 0,
            lo: 1 << 63,
            hi: u64::MAX,
            target_core: 0,
        });
        let bytes = map.encode();
        assert_eq!(bytes.len() % crate::storage::IO_ALIGN, 0);
        let path = Path::new("SHARDMAP");
        assert_eq!(ShardMap::decode(&bytes, path).unwrap(), map);
        for i in [0, 9, 13, 17, MANIFEST_HEADER_LEN + 3, MANIFEST_HEADER_LEN + 20] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(ShardMap::decode(&bad, path).is_err(), "flipped byte {i} accepted");
        }
        assert!(ShardMap::decode(&bytes[..30], path).is_err());
    }

    /// Random damage (flips, truncations, garbage) is refused with an error, never a panic.
    #[test]
    fn damaged_manifests_never_panic() {
        let mut rng = crate::testing::SplitMix64::new(0x5eed);
        let mut map = two_shards();
        map.set_partition(b"orders", PartitionMap::default_for(b"orders", 2));
        let good = map.encode();
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            match rng.below(3) {
                0 => {
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                _ => {
                    let i = rng.below(bytes.len() as u64) as usize;
                    for b in &mut bytes[i..] {
                        *b = rng.next_u64() as u8;
                    }
                }
            }
            let _ = ShardMap::decode(&bytes, Path::new("SHARDMAP"));
        }
    }

    #[test]
    fn unmapped_partitions_use_the_default_core() {
        let map = two_shards();
        for p in [&b"a"[..], b"b", b""] {
            assert_eq!(map.core_of(p, b"k", 3), default_core_of(p, 3));
        }
    }
}
