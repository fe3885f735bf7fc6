//! The ordered position index of a keyspace: every key by its place in the position space
//! (`routing::Position`), so a range of positions (a partition to carve out, the half of a
//! shard to split off, the next SCAN page, a random key) is found in O(log n + its size)
//! instead of a pass over the whole shard.
//!
//! Invariant: the index holds `(position_of(key), key)` for exactly the keys of the keyspace's
//! map (checked by `Keyspace::assert_invariants`, which the model test calls after every step).
//! Its cost is one B-tree element per key (a 16-byte position and the key's shared `Rc`, about
//! 45 bytes with the tree's slack).

use super::Key;
use crate::routing::{position_of, scan_cursor, scan_start, Position};
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::rc::Rc;

/// Keys ordered by position.
#[derive(Debug, Clone)]
pub struct PositionIndex {
    separator: u8,
    set: BTreeSet<(Position, Key)>,
    /// Keys per partition hash (the high half of the position): what a shared shard's
    /// partitions hold, for telemetry. One entry per partition present.
    partition_keys: HashMap<u64, u64, ahash::RandomState>,
    /// The empty key, the smallest at a position: range bounds are `(position, empty)`.
    empty: Key,
}

impl PositionIndex {
    pub fn new(separator: u8) -> Self {
        PositionIndex {
            separator,
            set: BTreeSet::new(),
            partition_keys: HashMap::default(),
            empty: Rc::from(&[][..]),
        }
    }

    /// The position of a key under this index's partition separator.
    #[inline]
    pub fn position(&self, key: &[u8]) -> Position {
        position_of(key, self.separator)
    }

    pub fn insert(&mut self, key: &Key) {
        let position = self.position(key);
        let fresh = self.set.insert((position, key.clone()));
        debug_assert!(fresh, "a key indexed twice");
        *self.partition_keys.entry((position >> 64) as u64).or_default() += 1;
    }

    pub fn remove(&mut self, key: &Key) {
        let position = self.position(key);
        let removed = self.set.remove(&(position, key.clone()));
        debug_assert!(removed, "removing a key the index does not hold");
        let hash = (position >> 64) as u64;
        if let Some(n) = self.partition_keys.get_mut(&hash) {
            *n -= 1;
            if *n == 0 {
                self.partition_keys.remove(&hash);
            }
        }
    }

    pub fn clear(&mut self) {
        self.set.clear();
        self.partition_keys.clear();
    }

    /// Keys of the partition whose hash is `partition_hash` (expired ones not yet removed
    /// included).
    pub fn partition_keys(&self, partition_hash: u64) -> u64 {
        self.partition_keys.get(&partition_hash).copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Keys with positions in `lo..=hi`, in position order.
    pub fn range(&self, lo: Position, hi: Position) -> impl Iterator<Item = &(Position, Key)> {
        let upper = match hi.checked_add(1) {
            Some(next) => Bound::Excluded((next, self.empty.clone())),
            None => Bound::Unbounded,
        };
        self.set.range((Bound::Included((lo, self.empty.clone())), upper))
    }

    /// The first key at `position` or after it.
    pub fn first_from(&self, position: Position) -> Option<&(Position, Key)> {
        self.range(position, Position::MAX).next()
    }

    /// Every indexed pair, in position order.
    pub fn iter(&self) -> impl Iterator<Item = &(Position, Key)> {
        self.set.iter()
    }

    /// What is wrong with the index on its own, if anything: a key at another position than
    /// its own, or a partition's key count that is not the number of its keys (or kept at 0).
    /// O(n); for `Keyspace::assert_invariants`.
    pub(super) fn broken_invariant(&self) -> Option<String> {
        let mut counted: HashMap<u64, u64> = HashMap::new();
        for (position, key) in &self.set {
            if *position != self.position(key) {
                return Some(format!("index: key {key:?} at position {position:#x}"));
            }
            *counted.entry((position >> 64) as u64).or_default() += 1;
        }
        if counted.len() != self.partition_keys.len() {
            return Some(format!(
                "index: {} partitions counted, {} hold keys",
                self.partition_keys.len(),
                counted.len()
            ));
        }
        for (hash, n) in counted {
            let kept = self.partition_keys(hash);
            if kept != n {
                return Some(format!("index: partition {hash:#x} counted {kept}, holds {n}"));
            }
        }
        None
    }
}

/// One shard's part of a SCAN step.
#[derive(Debug, Default)]
pub struct ScanStep {
    /// Kept keys with their cursors, ascending.
    pub keys: Vec<(u64, Key)>,
    /// The first cursor not examined; `None` when the walk reached the end.
    pub next: Option<u64>,
}

/// Positions whose cursors share their top half (the partition hash's top 32 bits).
const BUCKET_BITS: u32 = 96;

impl PositionIndex {
    /// About `count` keys from SCAN cursor `cursor` on, in cursor order: every key with a
    /// cursor at least `cursor` and below `next` is examined (and returned if `keep` says so),
    /// never stopping inside a group of keys that share a cursor.
    ///
    /// Cursors follow positions within a partition but not across the partitions of one
    /// bucket (they share the cursor's top half), so a bucket's partitions are walked side by
    /// side: from each, the first keys from the cursor on; then only cursors below the first
    /// one a partition's walk did not reach are kept. A bucket usually holds one partition.
    pub fn scan_page(&self, cursor: u64, count: usize, keep: impl Fn(&Key) -> bool) -> ScanStep {
        let count = count.max(1);
        let mut out = ScanStep::default();
        let mut examined = 0usize;
        let mut from = cursor;
        loop {
            let bucket = (scan_start(from) >> BUCKET_BITS) as u32;
            let bucket_hi = (((bucket as u128) + 1) << BUCKET_BITS).wrapping_sub(1);
            let mut found: Vec<(u64, &Key)> = Vec::new();
            let mut reached: Option<u64> = None;
            let budget = count - examined.min(count - 1);
            // Each partition of the bucket, from `from`'s key half on.
            let mut at = self.first_from(scan_start(from) & !(u64::MAX as u128)).map(|e| e.0);
            while let Some(p) = at.filter(|&p| p <= bucket_hi) {
                let partition = p >> 64;
                let start = (partition << 64) | (scan_start(from) & u64::MAX as u128);
                let mut last = None;
                let keys = self.range(start, (partition << 64) | u64::MAX as u128);
                for (taken, (position, key)) in keys.enumerate() {
                    let c = scan_cursor(*position);
                    if taken >= budget && last != Some(c) {
                        reached = Some(reached.map_or(c, |r| r.min(c)));
                        break;
                    }
                    last = Some(c);
                    found.push((c, key));
                }
                at = (partition < u64::MAX as u128)
                    .then(|| self.first_from((partition + 1) << 64))
                    .flatten()
                    .map(|e| e.0);
            }
            found.retain(|(c, _)| reached.is_none_or(|r| *c < r));
            found.sort_unstable_by_key(|e| e.0);
            examined += found.len();
            out.keys
                .extend(found.into_iter().filter(|(_, k)| keep(k)).map(|(c, k)| (c, k.clone())));
            if let Some(r) = reached {
                out.next = Some(r);
                return out;
            }
            // The bucket is done: on to the next one holding a key.
            if bucket == u32::MAX {
                return out;
            }
            let Some(&(p, _)) = self.first_from((bucket as u128 + 1) << BUCKET_BITS) else {
                return out;
            };
            from = scan_cursor(p) & 0xffff_ffff_0000_0000;
            if examined >= count {
                out.next = Some(from);
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_partition_count_or_position_is_named() {
        let mut ix = PositionIndex::new(b':');
        for k in ["a:1", "a:2", "b:1"] {
            ix.insert(&Rc::from(k.as_bytes()));
        }
        assert_eq!(ix.broken_invariant(), None);
        let a = (ix.position(b"a:1") >> 64) as u64;
        let mut damaged = ix.clone();
        *damaged.partition_keys.get_mut(&a).unwrap() += 1;
        assert!(damaged.broken_invariant().unwrap().contains("counted 3, holds 2"));
        let mut damaged = ix.clone();
        damaged.partition_keys.insert(a ^ 1, 0);
        assert!(damaged.broken_invariant().unwrap().contains("partitions counted"));
        let mut damaged = ix.clone();
        damaged.set.insert((0, Rc::from(&b"c:1"[..])));
        assert!(damaged.broken_invariant().unwrap().contains("at position 0x0"));
    }

    #[test]
    fn ranges_are_inclusive_and_ordered() {
        let mut ix = PositionIndex::new(b':');
        let keys: Vec<Key> = ["a:1", "a:2", "b:1", "{t}x", "{t}y", "plain"]
            .iter()
            .map(|k| Rc::from(k.as_bytes()))
            .collect();
        for k in &keys {
            ix.insert(k);
        }
        assert_eq!(ix.len(), keys.len());
        let all: Vec<_> = ix.range(0, Position::MAX).collect();
        assert_eq!(all.len(), keys.len());
        assert!(all.windows(2).all(|w| w[0] <= w[1]));
        let (lo, hi) = crate::routing::partition_span(b"a");
        let a: Vec<&[u8]> = ix.range(lo, hi).map(|(_, k)| &k[..]).collect();
        assert_eq!(a.len(), 2);
        assert!(a.contains(&&b"a:1"[..]) && a.contains(&&b"a:2"[..]));
        // Tagged keys share a position and both come back for it.
        let p = ix.position(b"{t}x");
        assert_eq!(ix.range(p, p).count(), 2);
        assert_eq!(ix.first_from(p).map(|(q, _)| *q), Some(p));
        assert_eq!(ix.range(p + 1, p).count(), 0, "an empty range");
        ix.remove(&keys[0]);
        assert_eq!(ix.range(lo, hi).count(), 1);
    }

    /// Partitions that share a bucket (the top 32 bits of their hash): a full SCAN in steps of
    /// any size returns every key exactly once, in cursor order.
    #[test]
    fn scan_pages_cover_every_key_once_even_across_a_shared_bucket() {
        let mut ix = PositionIndex::new(b':');
        let mut all = Vec::new();
        // Find two partitions in one bucket by brute force over short names.
        let mut by_bucket: std::collections::HashMap<u32, String> = Default::default();
        let mut pair = None;
        for i in 0..2_000_000u32 {
            let name = format!("b{i}");
            let bucket = (crate::routing::stable_hash(name.as_bytes()) >> 32) as u32;
            if let Some(other) = by_bucket.insert(bucket, name.clone()) {
                pair = Some((other, name));
                break;
            }
        }
        let (a, b) = pair.expect("a shared bucket among 2M names (birthday bound)");
        for p in [a.as_str(), b.as_str(), "x", "y", "z"] {
            for i in 0..300 {
                let k: Key = Rc::from(format!("{p}:{i}").as_bytes());
                ix.insert(&k);
                all.push(k);
            }
        }
        for t in 0..20 {
            let k: Key = Rc::from(format!("{{tag}}{t}").as_bytes());
            ix.insert(&k);
            all.push(k);
        }
        for count in [1, 7, 100, 5000] {
            let mut cursor = 0u64;
            let mut seen: Vec<Key> = Vec::new();
            let mut last_cursor = 0u64;
            loop {
                let step = ix.scan_page(cursor, count, |_| true);
                for (c, k) in &step.keys {
                    assert!(*c >= last_cursor, "cursor order");
                    last_cursor = *c;
                    seen.push(k.clone());
                }
                match step.next {
                    Some(n) => {
                        assert!(n > cursor || (cursor == 0 && n > 0), "progress");
                        cursor = n;
                    }
                    None => break,
                }
            }
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), seen.len(), "count {count}: a key came twice");
            assert_eq!(seen.len(), all.len(), "count {count}: keys missed");
        }
    }
}
