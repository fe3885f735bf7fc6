//! The shard map: which shard owns which range of the position space, and on which core.
//! Pure data and its byte encoding; the manifest file that persists it is in `manifest`.
//!
//! The position space (`routing::Position`) is cut into ranges; each range belongs to one
//! shard, and a shard may own several ranges. A new data directory starts with a few
//! **shared** shards per core whose ranges cut the space at partition boundaries, so every
//! partition, however many there are, lives in one of them: a partition costs no shard, file
//! or log of its own. A partition gets shards of its own only when it is worth it: a
//! **carve-out** gives its whole span to a new shard labelled with the partition (its former
//! shared shard keeps the ranges on either side), a **split** cuts one of the partition's
//! shards in two, a **merge** folds one of them into its neighbour, and a **fold-back** gives
//! a partition's last shard back to a shared shard. Mechanically these are two operations:
//! `with_split` (a range leaves its shard for a new one) and `with_merge` (a shard gives all
//! its ranges to another).
//!
//! Invariant: the ranges are sorted, contiguous, cover `0..=Position::MAX` exactly, and two
//! neighbours never belong to the same shard (they are coalesced).
//! Invariant: every shard of the table owns at least one range, and every range's shard is in
//! the table.
//! Invariant: a boundary between two ranges lies at a partition boundary unless both sides are
//! shards of the partition that boundary cuts (so a partition outside any carve-out lies in
//! exactly one shard, and a carve-out has exactly one source).
//! Invariant: a partition's shard owns only positions of its partition.
//! Invariant: shard numbers are never reused (`next_number` only grows), so a directory left
//! behind by an interrupted migration can never be mistaken for a live shard.
//! All of them are checked on decode and on every change (`validate`).

use crate::error::{EngineError, Result};
use crate::routing::{is_partition_start, partition_span, Position, PARTITION_LEN_MAX};
use std::collections::BTreeMap;
use std::path::Path;

/// Most shards the map may hold (a hard format limit).
pub const SHARDS_MAX: usize = 1 << 20;
/// Most shards one partition may ever have (a hard format limit; the configured maximum is
/// `EngineConfig::shards_per_partition_max`, at most this).
pub const SHARDS_PER_PARTITION_LIMIT: usize = 4096;
/// Most ranges the map may hold: a carve-out adds at most two.
pub const RANGES_MAX: usize = 3 * SHARDS_MAX;

const MANIFEST_MAGIC: &[u8; 8] = b"SCMAP002";
/// The magic of the layout before partitions shared shards (one shard per partition).
pub const MANIFEST_MAGIC_V1: &[u8; 8] = b"SCMAP001";
const MANIFEST_VERSION: u32 = 2;
/// Bytes before the body: magic, version, body length, body crc, reserved.
pub const MANIFEST_HEADER_LEN: usize = 24;
/// Largest manifest body the decoder accepts.
pub const MANIFEST_BODY_LEN_MAX: usize = 256 * 1024 * 1024;

/// A shard as the map places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlace {
    pub number: u64,
    /// Owner core as recorded; the live owner is `core % cores` (the core count may change
    /// between runs).
    pub core: u32,
    /// The partition whose own shard this is; `None` for a shared shard.
    pub partition: Option<Vec<u8>>,
}

impl ShardPlace {
    pub fn core(&self, cores: usize) -> usize {
        self.core as usize % cores
    }

    pub fn is_shared(&self) -> bool {
        self.partition.is_none()
    }
}

/// One range of positions (inclusive) and the shard that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangePlace {
    pub lo: Position,
    pub hi: Position,
    pub shard: u64,
}

impl RangePlace {
    pub fn contains(&self, position: Position) -> bool {
        (self.lo..=self.hi).contains(&position)
    }
}

/// Kind of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationKind {
    /// `source` gives `lo..=hi` to the new shard `target` (a split, or a carve-out when the
    /// source is shared).
    Split,
    /// `source` (the donor) gives all of its range `lo..=hi` to `target` (the absorber): a
    /// merge, or a fold-back when the absorber is shared.
    Merge,
}

/// A migration in progress, as the manifest records it. Until the commit (which clears this
/// and advances the epoch) the source owns the range; recovery rolls the migration back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    pub kind: MigrationKind,
    /// The partition the migration is about (the new shard's label for a split).
    pub partition: Vec<u8>,
    pub source: u64,
    pub target: u64,
    pub lo: Position,
    pub hi: Position,
    pub target_core: u32,
}

/// The whole map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    pub epoch: u64,
    /// The partition separator the data directory was made with: it decides every key's
    /// position, so a directory keeps it for good.
    pub separator: u8,
    ranges: Vec<RangePlace>,
    shards: BTreeMap<u64, ShardPlace>,
    /// The number the next new shard gets.
    next_number: u64,
    pub migration: Option<MigrationRecord>,
}

impl ShardMap {
    /// The map of a new data directory: `shared` shared shards, spread round robin over
    /// `cores`, cutting the space into equal ranges at partition boundaries; keys' partitions
    /// end at `separator`.
    pub fn initial(shared: usize, cores: usize, separator: u8) -> Self {
        assert!(shared > 0 && shared <= SHARDS_MAX && cores > 0);
        let n = shared as u128;
        let mut ranges = Vec::with_capacity(shared);
        let mut shards = BTreeMap::new();
        for i in 0..shared as u64 {
            // Cut at partition boundaries: the low 64 bits of every cut are zero.
            let lo = (((1u128 << 64) * i as u128 / n) as u64 as u128) << 64;
            ranges.push(RangePlace { lo, hi: 0, shard: i });
            shards.insert(
                i,
                ShardPlace { number: i, core: (i % cores as u64) as u32, partition: None },
            );
        }
        for i in 0..shared {
            ranges[i].hi = ranges.get(i + 1).map_or(Position::MAX, |next| next.lo - 1);
        }
        let map = ShardMap {
            epoch: 0,
            separator,
            ranges,
            shards,
            next_number: shared as u64,
            migration: None,
        };
        map.check();
        map
    }

    /// The range owning `position`.
    #[inline]
    pub fn find(&self, position: Position) -> &RangePlace {
        let i = self.ranges.partition_point(|r| r.hi < position);
        &self.ranges[i]
    }

    /// The core owning `position`.
    #[inline]
    pub fn core_of(&self, position: Position, cores: usize) -> usize {
        self.shards[&self.find(position).shard].core(cores)
    }

    pub fn shard(&self, number: u64) -> Option<&ShardPlace> {
        self.shards.get(&number)
    }

    /// Every shard, by number.
    pub fn shards(&self) -> impl Iterator<Item = &ShardPlace> {
        self.shards.values()
    }

    /// Every range, in position order.
    pub fn ranges(&self) -> &[RangePlace] {
        &self.ranges
    }

    /// The ranges a shard owns, in position order.
    pub fn ranges_of(&self, number: u64) -> Vec<(Position, Position)> {
        self.ranges.iter().filter(|r| r.shard == number).map(|r| (r.lo, r.hi)).collect()
    }

    pub fn next_number(&self) -> u64 {
        self.next_number
    }

    /// Takes a shard number for a migration's new shard (the intent records it, so it is
    /// never given twice even if the migration rolls back).
    pub fn reserve_number(&mut self) -> u64 {
        self.next_number += 1;
        self.next_number - 1
    }

    /// The partition's own shards with their ranges, in position order (empty while it lives
    /// in a shared shard).
    pub fn partition_shards(&self, partition: &[u8]) -> Vec<(RangePlace, &ShardPlace)> {
        let (lo, hi) = partition_span(partition);
        let first = self.ranges.partition_point(|r| r.hi < lo);
        self.ranges[first..]
            .iter()
            .take_while(|r| r.lo <= hi)
            .map(|r| (*r, &self.shards[&r.shard]))
            .filter(|(_, s)| s.partition.as_deref() == Some(partition))
            .collect()
    }

    /// The shared shard whose range holds the whole span of `partition` (a partition that has
    /// no shard of its own), with that range.
    pub fn shared_home(&self, partition: &[u8]) -> Option<(RangePlace, &ShardPlace)> {
        let (lo, hi) = partition_span(partition);
        let r = self.find(lo);
        let s = &self.shards[&r.shard];
        (s.is_shared() && r.hi >= hi).then_some((*r, s))
    }

    /// What a migration recorded in this map (its intent) is, in words: a carve-out (a split
    /// of a shared shard), a split, a fold-back (a merge into a shared shard) or a merge.
    pub fn describe(&self, m: &MigrationRecord) -> &'static str {
        let shared = |n: u64| self.shard(n).is_some_and(|s| s.is_shared());
        let whole = |n: u64| self.ranges_of(n) == [(m.lo, m.hi)];
        match m.kind {
            MigrationKind::Split if shared(m.source) => "carve-out",
            MigrationKind::Split if whole(m.source) => "move",
            MigrationKind::Split => "split",
            MigrationKind::Merge if shared(m.target) => "fold-back",
            MigrationKind::Merge => "merge",
        }
    }

    /// The shared shard a partition's last shard (owning `donor`) folds back into: the one
    /// owning the positions just below it, else just above (so the ranges coalesce again);
    /// else, when both neighbours are other partitions' shards, the nearest shared shard below
    /// (wrapping).
    pub fn fold_target(&self, donor: &RangePlace) -> u64 {
        let shared = |p: Position| {
            let n = self.find(p).shard;
            self.shard(n).filter(|s| s.is_shared()).map(|s| s.number)
        };
        let below = donor.lo.checked_sub(1).and_then(shared);
        let above = donor.hi.checked_add(1).and_then(shared);
        below.or(above).unwrap_or_else(|| {
            let i = self.ranges.partition_point(|r| r.hi < donor.lo);
            let n = self.ranges.len();
            (1..n)
                .map(|k| self.ranges[(i + n - k) % n].shard)
                .find(|&s| self.shard(s).is_some_and(|p| p.is_shared()))
                .expect("a shared shard exists: they only ever lose ranges to carve-outs")
        })
    }

    /// Shards of every partition that has its own: partition -> shard count.
    pub fn partitions_with_shards(&self) -> BTreeMap<Vec<u8>, usize> {
        let mut out = BTreeMap::new();
        for s in self.shards.values() {
            if let Some(p) = &s.partition {
                *out.entry(p.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// A split (or carve-out, or move) planned: the intent (this map with the migration recorded and a
    /// shard number reserved for the new shard) and the map its commit gives. `lo..=hi` of
    /// `source` goes to the new shard on `core`, labelled `partition`.
    pub fn plan_split(
        &self,
        partition: &[u8],
        source: u64,
        lo: Position,
        hi: Position,
        core: u32,
    ) -> (ShardMap, ShardMap) {
        let mut intent = self.clone();
        let target = intent.reserve_number();
        let committed = intent.with_split(source, lo, hi, target, core, partition);
        intent.migration = Some(MigrationRecord {
            kind: MigrationKind::Split,
            partition: partition.to_vec(),
            source,
            target,
            lo,
            hi,
            target_core: core,
        });
        (intent, committed)
    }

    /// A merge (or fold-back) planned: the intent and the map its commit gives. The shard
    /// owning `donor` (its only range) gives it to `absorber`.
    pub fn plan_merge(
        &self,
        partition: &[u8],
        donor: &RangePlace,
        absorber: u64,
    ) -> (ShardMap, ShardMap) {
        let mut intent = self.clone();
        intent.migration = Some(MigrationRecord {
            kind: MigrationKind::Merge,
            partition: partition.to_vec(),
            source: donor.shard,
            target: absorber,
            lo: donor.lo,
            hi: donor.hi,
            target_core: self.shard(absorber).expect("a mapped absorber").core,
        });
        let committed = intent.with_merge(donor.shard, absorber);
        (intent, committed)
    }

    /// The map after a committed split: `lo..=hi`, owned by `source`, goes to the new shard
    /// `target` on `core`, labelled `partition` (the range must lie in that partition's span).
    /// A carve-out is the split of a shared shard at a partition's span; a move is the split of
    /// an own shard's whole range, after which the source owns nothing and is gone. Epoch
    /// advanced, migration cleared.
    pub fn with_split(
        &self,
        source: u64,
        lo: Position,
        hi: Position,
        target: u64,
        core: u32,
        partition: &[u8],
    ) -> Self {
        let mut next = self.clone();
        let i = next.ranges.partition_point(|r| r.hi < lo);
        let r = next.ranges[i];
        assert!(
            r.shard == source && r.lo <= lo && hi <= r.hi,
            "split inside one range of the source"
        );
        assert!(!next.shards.contains_key(&target), "a split's target is a new shard");
        let mut pieces = Vec::with_capacity(3);
        if r.lo < lo {
            pieces.push(RangePlace { lo: r.lo, hi: lo - 1, shard: source });
        }
        pieces.push(RangePlace { lo, hi, shard: target });
        if hi < r.hi {
            pieces.push(RangePlace { lo: hi + 1, hi: r.hi, shard: source });
        }
        next.ranges.splice(i..=i, pieces);
        if !next.ranges.iter().any(|r| r.shard == source) {
            assert!(!next.shards[&source].is_shared(), "a shared shard never moves whole");
            next.shards.remove(&source);
        }
        next.shards.insert(
            target,
            ShardPlace { number: target, core, partition: Some(partition.to_vec()) },
        );
        next.next_number = next.next_number.max(target + 1);
        next.epoch += 1;
        next.migration = None;
        next.check();
        next
    }

    /// The map after a committed merge: `donor` gives all its ranges to `absorber` and is
    /// gone; neighbouring ranges of the absorber coalesce. Epoch advanced, migration cleared.
    pub fn with_merge(&self, donor: u64, absorber: u64) -> Self {
        assert_ne!(donor, absorber);
        let mut next = self.clone();
        assert!(next.shards.contains_key(&absorber), "the absorber is mapped");
        next.shards.remove(&donor).expect("the donor is mapped");
        for r in &mut next.ranges {
            if r.shard == donor {
                r.shard = absorber;
            }
        }
        next.coalesce();
        next.epoch += 1;
        next.migration = None;
        next.check();
        next
    }

    fn coalesce(&mut self) {
        let mut out: Vec<RangePlace> = Vec::with_capacity(self.ranges.len());
        for r in self.ranges.drain(..) {
            match out.last_mut() {
                Some(last) if last.shard == r.shard => last.hi = r.hi,
                _ => out.push(r),
            }
        }
        self.ranges = out;
    }

    fn check(&self) {
        if let Err(e) = self.validate() {
            panic!("invalid shard map: {e}");
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.ranges.is_empty() || self.ranges.len() > RANGES_MAX {
            return Err(format!("{} ranges", self.ranges.len()));
        }
        if self.shards.is_empty() || self.shards.len() > SHARDS_MAX {
            return Err(format!("{} shards", self.shards.len()));
        }
        let mut expect_lo: Position = 0;
        let mut owning = std::collections::HashSet::new();
        for (i, r) in self.ranges.iter().enumerate() {
            if r.lo != expect_lo || r.hi < r.lo {
                return Err(format!("range {:#x}..={:#x} leaves a gap or overlaps", r.lo, r.hi));
            }
            let Some(s) = self.shards.get(&r.shard) else {
                return Err(format!(
                    "range {:#x}..={:#x} names unknown shard {}",
                    r.lo, r.hi, r.shard
                ));
            };
            if let Some(p) = &s.partition {
                let (plo, phi) = partition_span(p);
                if r.lo < plo || r.hi > phi {
                    return Err(format!(
                        "shard {} of a partition owns positions outside it",
                        r.shard
                    ));
                }
            }
            if i > 0 {
                let prev = &self.ranges[i - 1];
                if prev.shard == r.shard {
                    return Err(format!("neighbouring ranges of shard {} not coalesced", r.shard));
                }
                if !is_partition_start(r.lo) {
                    let (a, b) = (&self.shards[&prev.shard].partition, &s.partition);
                    let cut_partition = (r.lo >> 64) as u64;
                    let of_it = |p: &Option<Vec<u8>>| {
                        p.as_deref()
                            .is_some_and(|p| (partition_span(p).0 >> 64) as u64 == cut_partition)
                    };
                    if !(of_it(a) && of_it(b)) {
                        return Err(format!(
                            "boundary {:#x} cuts a partition between other shards",
                            r.lo
                        ));
                    }
                }
            }
            owning.insert(r.shard);
            if r.hi == Position::MAX {
                if i + 1 != self.ranges.len() {
                    return Err("ranges after the end of the space".into());
                }
            } else {
                expect_lo = r.hi + 1;
            }
        }
        if self.ranges.last().map(|r| r.hi) != Some(Position::MAX) {
            return Err("the space is not covered to its end".into());
        }
        for (n, s) in &self.shards {
            if s.number != *n {
                return Err(format!("shard {n} recorded as {}", s.number));
            }
            if *n >= self.next_number {
                return Err(format!("shard number {n} not below next {}", self.next_number));
            }
            if !owning.contains(n) {
                return Err(format!("shard {n} owns no range"));
            }
        }
        Ok(())
    }

    /// The manifest bytes (header + body, padded to the I/O alignment).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.epoch.to_le_bytes());
        body.extend_from_slice(&self.next_number.to_le_bytes());
        body.push(self.separator);
        body.extend_from_slice(&(self.shards.len() as u32).to_le_bytes());
        for s in self.shards.values() {
            body.extend_from_slice(&s.number.to_le_bytes());
            body.extend_from_slice(&s.core.to_le_bytes());
            match &s.partition {
                None => body.push(0),
                Some(p) => {
                    body.push(1);
                    body.extend_from_slice(&(p.len() as u32).to_le_bytes());
                    body.extend_from_slice(p);
                }
            }
        }
        body.extend_from_slice(&(self.ranges.len() as u32).to_le_bytes());
        for r in &self.ranges {
            body.extend_from_slice(&r.lo.to_le_bytes());
            body.extend_from_slice(&r.shard.to_le_bytes());
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
                body.extend_from_slice(&m.source.to_le_bytes());
                body.extend_from_slice(&m.target.to_le_bytes());
                body.extend_from_slice(&m.lo.to_le_bytes());
                body.extend_from_slice(&m.hi.to_le_bytes());
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
        if bytes.len() >= 8 && &bytes[0..8] == MANIFEST_MAGIC_V1 {
            return Err(corrupt(0, "a shard map of the layout before shared shards (format 1); the server converts such a data directory at start".into()));
        }
        let body = manifest_body(bytes, path, MANIFEST_MAGIC, MANIFEST_VERSION)?;
        let mut r = Reader { body, at: 0, path };
        let epoch = r.u64()?;
        let next_number = r.u64()?;
        let separator = r.u8()?;
        let count = r.u32()? as usize;
        if count > SHARDS_MAX {
            return Err(corrupt(MANIFEST_HEADER_LEN + 17, format!("{count} shards")));
        }
        let mut shards = BTreeMap::new();
        for _ in 0..count {
            let at = MANIFEST_HEADER_LEN + r.at;
            let (number, core) = (r.u64()?, r.u32()?);
            if shards.last_key_value().is_some_and(|(last, _)| *last >= number) {
                return Err(corrupt(at, format!("shard {number} out of order or twice")));
            }
            let partition = match r.u8()? {
                0 => None,
                1 => Some(r.name()?),
                other => {
                    return Err(corrupt(
                        MANIFEST_HEADER_LEN + r.at - 1,
                        format!("partition flag {other}"),
                    ))
                }
            };
            shards.insert(number, ShardPlace { number, core, partition });
        }
        let count = r.u32()? as usize;
        if count > RANGES_MAX {
            return Err(corrupt(MANIFEST_HEADER_LEN + r.at - 4, format!("{count} ranges")));
        }
        // Each range takes 24 body bytes: a damaged count cannot make this allocate much.
        let mut ranges: Vec<RangePlace> = Vec::with_capacity(count.min(body.len() / 24));
        for _ in 0..count {
            let (lo, shard) = (r.u128()?, r.u64()?);
            if let Some(prev) = ranges.last_mut() {
                if lo == 0 {
                    return Err(corrupt(
                        MANIFEST_HEADER_LEN + r.at - 24,
                        "ranges out of order".into(),
                    ));
                }
                prev.hi = lo.wrapping_sub(1);
            }
            ranges.push(RangePlace { lo, hi: Position::MAX, shard });
        }
        let at = MANIFEST_HEADER_LEN + r.at;
        let migration = match r.u8()? {
            0 => None,
            kind @ (1 | 2) => Some(MigrationRecord {
                kind: if kind == 1 { MigrationKind::Split } else { MigrationKind::Merge },
                partition: r.name()?,
                source: r.u64()?,
                target: r.u64()?,
                lo: r.u128()?,
                hi: r.u128()?,
                target_core: r.u32()?,
            }),
            other => return Err(corrupt(at, format!("unknown migration kind {other}"))),
        };
        if r.at != body.len() {
            return Err(corrupt(MANIFEST_HEADER_LEN + r.at, "trailing bytes in the body".into()));
        }
        let map = ShardMap { epoch, separator, ranges, shards, next_number, migration };
        map.validate().map_err(|e| corrupt(MANIFEST_HEADER_LEN, e))?;
        if let Some(m) = &map.migration {
            let sound = m.lo <= m.hi
                && map.shards.contains_key(&m.source)
                && m.target < map.next_number
                && (m.kind == MigrationKind::Split || map.shards.contains_key(&m.target));
            if !sound {
                return Err(corrupt(at, format!("migration record does not fit the map: {m:?}")));
            }
        }
        Ok(map)
    }
}

/// The body of a manifest file, after checking its header: the magic, the version, a body
/// length within the file and `MANIFEST_BODY_LEN_MAX`, and the body's crc (every format of the
/// manifest has this header).
pub(crate) fn manifest_body<'a>(
    bytes: &'a [u8],
    path: &Path,
    magic: &[u8; 8],
    version: u32,
) -> Result<&'a [u8]> {
    let corrupt = |offset: u64, reason: String| EngineError::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
    };
    if bytes.len() < MANIFEST_HEADER_LEN || &bytes[0..8] != magic {
        return Err(corrupt(0, "not a shard map manifest".into()));
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    if u32_at(8) != version {
        return Err(corrupt(8, format!("unsupported manifest version {}", u32_at(8))));
    }
    let len = u32_at(12) as usize;
    if len > MANIFEST_BODY_LEN_MAX || bytes.len() < MANIFEST_HEADER_LEN + len {
        return Err(corrupt(12, format!("body length {len} exceeds the file")));
    }
    let body = &bytes[MANIFEST_HEADER_LEN..MANIFEST_HEADER_LEN + len];
    let (expected, got) = (u32_at(16), crc32fast::hash(body));
    if expected != got {
        return Err(EngineError::ChecksumMismatch {
            path: path.to_owned(),
            offset: 16,
            expected,
            got,
        });
    }
    Ok(body)
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.body.len() - self.at < n {
            return Err(EngineError::Corrupt {
                path: self.path.to_owned(),
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
    fn u128(&mut self) -> Result<u128> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().unwrap()))
    }
    fn name(&mut self) -> Result<Vec<u8>> {
        let len = self.u32()? as usize;
        if len > PARTITION_LEN_MAX {
            return Err(EngineError::Corrupt {
                path: self.path.to_owned(),
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
    use crate::routing::position_of;

    fn carve(map: &ShardMap, partition: &[u8], core: u32) -> ShardMap {
        let (lo, hi) = partition_span(partition);
        let (_, home) = map.shared_home(partition).expect("in a shared shard");
        let mut intent = map.clone();
        let target = intent.reserve_number();
        intent.with_split(home.number, lo, hi, target, core, partition)
    }

    #[test]
    fn the_initial_map_cuts_at_partition_boundaries() {
        let map = ShardMap::initial(4, 2, b':');
        assert_eq!(map.ranges().len(), 4);
        assert!(map.ranges().iter().all(|r| is_partition_start(r.lo)));
        assert_eq!(map.shards().filter(|s| s.core == 1).count(), 2);
        for p in [&b"user"[..], b"", b"order", b"x"] {
            let (_, home) = map.shared_home(p).unwrap();
            assert_eq!(map.find(position_of(&[p, b":1"].concat(), b':')).shard, home.number);
        }
        assert_eq!(
            ShardMap::initial(1, 3, b':').ranges(),
            &[RangePlace { lo: 0, hi: Position::MAX, shard: 0 }]
        );
    }

    #[test]
    fn carve_split_merge_and_fold_keep_the_space_covered() {
        let map = ShardMap::initial(2, 2, b':');
        let (lo, hi) = partition_span(b"user");
        let home = map.shared_home(b"user").unwrap().1.number;
        let carved = carve(&map, b"user", 1);
        assert_eq!(carved.epoch, 1);
        let own = carved.partition_shards(b"user");
        assert_eq!(own.len(), 1);
        assert_eq!((own[0].0.lo, own[0].0.hi, own[0].1.core), (lo, hi, 1));
        assert!(carved.shared_home(b"user").is_none());
        // The shared shard keeps both sides: one shard, two ranges.
        let home_ranges = carved.ranges_of(home);
        assert_eq!(home_ranges.len(), 2);
        assert_eq!((home_ranges[0].1, home_ranges[1].0), (lo - 1, hi + 1));
        // Split the partition's shard, then merge and fold back.
        let t = own[0].1.number;
        let mut intent = carved.clone();
        let n = intent.reserve_number();
        let cut = lo + (1u128 << 63);
        let split = intent.with_split(t, cut, hi, n, 0, b"user");
        assert_eq!(split.partition_shards(b"user").len(), 2);
        assert_eq!(split.core_of(cut, 2), 0);
        assert_eq!(split.core_of(cut - 1, 2), 1);
        let merged = split.with_merge(n, t);
        assert_eq!(merged.partition_shards(b"user").len(), 1);
        let folded = merged.with_merge(t, home);
        assert!(folded.partition_shards(b"user").is_empty());
        assert_eq!(folded.ranges_of(home).len(), 1, "the home ranges coalesce again");
        assert_eq!(folded.ranges(), map.ranges());
        assert_eq!(folded.next_number(), 4, "numbers are never reused");
        assert_eq!(folded.epoch, 4);
    }

    #[test]
    fn a_move_gives_the_whole_range_to_a_new_shard_and_the_old_one_is_gone() {
        let map = ShardMap::initial(2, 2, b':');
        let carved = carve(&map, b"user", 1);
        let (range, place) = carved.partition_shards(b"user")[0];
        let old = place.number;
        let (intent, moved) = carved.plan_split(b"user", old, range.lo, range.hi, 0);
        assert_eq!(intent.describe(intent.migration.as_ref().unwrap()), "move");
        let own = moved.partition_shards(b"user");
        assert_eq!(own.len(), 1);
        assert_eq!((own[0].0.lo, own[0].0.hi, own[0].1.core), (range.lo, range.hi, 0));
        assert_ne!(own[0].1.number, old);
        assert!(moved.shard(old).is_none(), "the source owns nothing and is unmapped");
        assert_eq!(moved.epoch, carved.epoch + 1);
        // A carve-out is not a move, even though the new shard takes the partition's span.
        let (intent, _) = map.plan_split(
            b"user",
            map.shared_home(b"user").unwrap().1.number,
            range.lo,
            range.hi,
            1,
        );
        assert_eq!(intent.describe(intent.migration.as_ref().unwrap()), "carve-out");
    }

    #[test]
    fn invalid_maps_are_refused() {
        // A boundary inside a partition between two shared shards.
        let mut bad = ShardMap::initial(2, 2, b':');
        let cut = bad.ranges[1].lo + 6;
        bad.ranges[0].hi = cut - 1;
        bad.ranges[1].lo = cut;
        assert!(bad.validate().unwrap_err().contains("cuts a partition"));
        let mut uncoalesced = ShardMap::initial(2, 2, b':');
        uncoalesced.ranges[1].shard = 0;
        uncoalesced.shards.remove(&1);
        assert!(uncoalesced.validate().unwrap_err().contains("not coalesced"));
        let mut gap = ShardMap::initial(2, 2, b':');
        gap.ranges[1].lo += 1 << 64;
        assert!(gap.validate().is_err());
    }

    #[test]
    fn manifest_round_trips_and_detects_damage() {
        let mut map = carve(&ShardMap::initial(3, 2, b':'), b"user", 1);
        let (lo, hi) = partition_span(b"user");
        let t = map.partition_shards(b"user")[0].1.number;
        let n = map.reserve_number();
        map.migration = Some(MigrationRecord {
            kind: MigrationKind::Split,
            partition: b"user".to_vec(),
            source: t,
            target: n,
            lo: lo + 99,
            hi,
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
        let mut v1 = bytes.clone();
        v1[..8].copy_from_slice(MANIFEST_MAGIC_V1);
        let err = ShardMap::decode(&v1, path).unwrap_err().to_string();
        assert!(err.contains("format 1"), "{err}");
    }

    /// Random damage (flips, truncations, garbage) is refused with an error, never a panic.
    #[test]
    fn damaged_manifests_never_panic() {
        let mut rng = crate::testing::SplitMix64::new(0x5eed);
        let map = carve(&carve(&ShardMap::initial(4, 2, b':'), b"user", 1), b"orders", 0);
        let good = map.encode();
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            match rng.below(4) {
                0 => {
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                2 => {
                    // Damage the body but keep its crc right, so the decoder's checks run.
                    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
                    let i = MANIFEST_HEADER_LEN + rng.below(len as u64) as usize;
                    bytes[i] ^= 1 << rng.below(8);
                    let crc =
                        crc32fast::hash(&bytes[MANIFEST_HEADER_LEN..MANIFEST_HEADER_LEN + len]);
                    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
                }
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
}
