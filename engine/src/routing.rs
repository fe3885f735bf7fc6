//! Key -> partition -> position in the partition's hash space.
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

/// The core that owns a partition which has not been placed explicitly.
pub fn default_core_of(partition: &[u8], cores: usize) -> usize {
    assert!(cores > 0);
    (stable_hash(partition) % cores as u64) as usize
}

/// Position of a key in the engine-wide SCAN order: partition hash in the high half, key hash in
/// the low half, so one partition's keys are contiguous and the order survives restarts.
pub fn scan_position(partition: &[u8], key: &[u8]) -> u64 {
    (stable_hash(partition) & 0xffff_ffff_0000_0000) | (stable_hash(key) >> 32)
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

    #[test]
    fn default_core_is_in_range() {
        for cores in 1..9 {
            for p in [&b""[..], b"user", b"session", b"x"] {
                assert!(default_core_of(p, cores) < cores);
            }
        }
    }
}
