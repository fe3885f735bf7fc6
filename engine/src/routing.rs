//! Key -> partition -> position: where every key sits in the one ordered position space that
//! shards cut into ranges.
//!
//! Owns the routing hash. Invariant: the hash decides where data lives on disk, so it must never
//! change across versions; `tests` pins it with test vectors. It is XXH3-64 with seed 0, a
//! published, versioned algorithm (not `std`'s `DefaultHasher`, whose output may change between
//! Rust releases, nor ahash, which is seeded per process).

/// The default separator between a key's partition prefix and the rest of the key.
pub const PARTITION_SEPARATOR_DEFAULT: u8 = b':';
/// The longest partition name; a longer prefix is not a partition and the key goes to the
/// default partition (keeps directory names and the shard map bounded).
pub const PARTITION_LEN_MAX: usize = 128;

/// The stable 64-bit routing hash of some bytes.
#[inline]
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The partition a key belongs to: the content of its first `{hash tag}` if non-empty (as Redis
/// Cluster), else the bytes before the first `separator`, else the default partition (empty).
pub fn partition_of(key: &[u8], separator: u8) -> &[u8] {
    if let Some(tag) = hash_tag(key) {
        return tag;
    }
    match key.iter().position(|&b| b == separator) {
        Some(end) if end > 0 && end <= PARTITION_LEN_MAX => &key[..end],
        _ => &[],
    }
}

/// The content of a key's first `{...}` if it is non-empty and at most `PARTITION_LEN_MAX`
/// bytes (Redis Cluster's rule).
#[inline]
pub fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0 && len <= PARTITION_LEN_MAX).then(|| &key[open + 1..open + 1 + len])
}

/// Where a key sits in its partition's hash space; shards own contiguous ranges of it. The
/// hash of the whole key, except that keys with a hash tag all sit at the hash of the tag:
/// a split never separates them, so multi-key commands on one tag stay on one core (the
/// promise a hash tag makes in Redis Cluster).
#[inline]
pub fn key_position(key: &[u8]) -> u64 {
    stable_hash(hash_tag(key).unwrap_or(key))
}

/// A place in the engine's one ordered position space: the partition's hash in the high 64
/// bits, the key's position within the partition in the low 64. Every partition is one
/// contiguous span of it (`partition_span`), so a shard that owns a range of positions owns
/// whole partitions (many small ones together, as TiKV and CockroachDB keep many tables in
/// one keyspace) or a part of one (a split partition's shard).
pub type Position = u128;

/// Where `key` sits in the position space (see `Position`).
#[inline]
pub fn position_of(key: &[u8], separator: u8) -> Position {
    let partition = partition_of(key, separator);
    ((stable_hash(partition) as u128) << 64) | key_position(key) as u128
}

/// The inclusive span of positions of a partition.
pub fn partition_span(partition: &[u8]) -> (Position, Position) {
    let lo = (stable_hash(partition) as u128) << 64;
    (lo, lo | u64::MAX as u128)
}

/// Whether `position` is the first of some partition's span (a partition boundary).
#[inline]
pub fn is_partition_start(position: Position) -> bool {
    position as u64 == 0
}

/// The 64-bit SCAN cursor of a position: the top halves of the partition hash and of the key
/// position (the SCAN order Redis clients see). It is not monotone in the position where two
/// partitions share the top half of their hash (a "bucket"), so a SCAN walks each bucket's
/// partitions side by side (`PositionIndex::scan_page`); keys that share a cursor (a hash
/// tag's keys share their position) come in one SCAN page.
#[inline]
pub fn scan_cursor(position: Position) -> u64 {
    (((position >> 64) as u64) & 0xffff_ffff_0000_0000) | ((position as u64) >> 32)
}

/// The first position whose SCAN cursor is `cursor`: every position of that cursor, and of
/// every greater cursor in the same bucket, lies at or after it.
#[inline]
pub fn scan_start(cursor: u64) -> Position {
    (((cursor & 0xffff_ffff_0000_0000) as u128) << 64) | (((cursor & 0xffff_ffff) << 32) as u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned vectors, computed independently with Python's `xxhash.xxh3_64_intdigest`: if this test fails, data written by earlier versions would be routed to
    /// the wrong shard. Never update the expected values; change the code back.
    #[test]
    fn routing_hash_is_pinned() {
        assert_eq!(stable_hash(b""), 0x2d06800538d394c2);
        assert_eq!(stable_hash(b"user"), 0x99e389d25c10af32);
        assert_eq!(stable_hash(b"user:1000"), 0xfb6841b2068c0c9f);
    }

    /// Pinned like the hash: the position decides which shard of a split partition holds a
    /// key on disk. Never update these; change the code back.
    #[test]
    fn key_positions_are_pinned() {
        assert_eq!(key_position(b"user:1000"), 0xfb6841b2068c0c9f);
        assert_eq!(key_position(b"{user}:1000"), 0x99e389d25c10af32);
    }

    #[test]
    fn tagged_keys_share_a_position() {
        assert_eq!(key_position(b"{t}a"), key_position(b"x{t}y"));
        assert_eq!(key_position(b"{t}a"), stable_hash(b"t"));
        assert_eq!(key_position(b"user:1"), stable_hash(b"user:1"));
        assert_eq!(key_position(b"{}a"), stable_hash(b"{}a"));
    }

    #[test]
    fn partition_rules() {
        assert_eq!(partition_of(b"user:1000", b':'), b"user");
        assert_eq!(partition_of(b"user:1000:name", b':'), b"user");
        assert_eq!(partition_of(b"{tenant7}:user:1", b':'), b"tenant7");
        assert_eq!(partition_of(b"x{tag}y", b':'), b"tag");
        assert_eq!(partition_of(b"{}user:1", b':'), b"{}user");
        assert_eq!(partition_of(b"plainkey", b':'), b"");
        assert_eq!(partition_of(b":leading", b':'), b"");
        assert_eq!(partition_of(b"a/b", b'/'), b"a");
        let long = [b'a'; PARTITION_LEN_MAX + 1];
        let mut key = long.to_vec();
        key.extend_from_slice(b":x");
        assert_eq!(partition_of(&key, b':'), b"");
    }

    /// Pinned like the hash: positions decide which shard holds a key on disk.
    #[test]
    fn positions_are_pinned() {
        assert_eq!(position_of(b"user:1000", b':'), 0x99e389d25c10af32_fb6841b2068c0c9f);
        assert_eq!(position_of(b"{user}:1000", b':'), 0x99e389d25c10af32_99e389d25c10af32);
        assert_eq!(position_of(b"plain", b':') >> 64, 0x2d06800538d394c2);
    }

    #[test]
    fn a_partition_is_one_span_and_cursors_follow_positions() {
        let (lo, hi) = partition_span(b"user");
        for k in [&b"user:1"[..], b"user:2", b"{user}x", b"user:"] {
            assert!((lo..=hi).contains(&position_of(k, b':')));
        }
        assert!(is_partition_start(lo) && !is_partition_start(lo + 1));
        assert!(is_partition_start(hi + 1));
        let mut rng = crate::testing::SplitMix64::new(7);
        for _ in 0..10_000 {
            let a = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
            let c = scan_cursor(a);
            assert_eq!(scan_cursor(scan_start(c)), c);
            assert!(scan_start(c) <= a, "a cursor's first position comes before its keys");
            // Within one partition, cursors follow positions.
            let b = (a & !(u64::MAX as u128)) | rng.next_u64() as u128;
            if a <= b {
                assert!(scan_cursor(a) <= scan_cursor(b));
            } else {
                assert!(scan_cursor(a) >= scan_cursor(b));
            }
        }
    }
}
