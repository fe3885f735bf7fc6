//! Per-shard access counts over buckets of its range, to cut a split at the load median.

use crate::routing::Position;

/// Buckets of the access histogram.
pub const ACCESS_BUCKETS: usize = 256;
/// Fewer accesses than this say nothing about where the load is: cut at the midpoint.
pub const SPLIT_SAMPLES_MIN: u64 = 256;

/// Access counts over `ACCESS_BUCKETS` equal buckets of a range. A bucket's width is a power
/// of two (a shift, not a division, on every access); the buckets then cover up to twice the
/// range, so at least half of them are in use.
#[derive(Debug, Clone)]
pub struct AccessHistogram {
    lo: Position,
    shift: u32,
    counts: Box<[u64; ACCESS_BUCKETS]>,
}

impl AccessHistogram {
    pub fn new(lo: Position, hi: Position) -> Self {
        let span = hi - lo;
        let bits = 128 - span.leading_zeros();
        let shift = bits.saturating_sub(ACCESS_BUCKETS.trailing_zeros());
        AccessHistogram { lo, shift, counts: Box::new([0; ACCESS_BUCKETS]) }
    }

    #[inline]
    pub fn record(&mut self, position: Position) {
        let b = (position.wrapping_sub(self.lo) >> self.shift) as usize;
        self.counts[b.min(ACCESS_BUCKETS - 1)] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The count of every bucket, from the range's start.
    pub fn counts(&self) -> &[u64] {
        &self.counts[..]
    }

    /// Where to cut `lo..=hi` so each side gets about half the accesses: the bucket boundary
    /// nearest the median, or the midpoint when too little was counted. Always in
    /// `lo+1..=hi`; `None` if the range is a single position.
    pub fn split_point(&self, lo: Position, hi: Position) -> Option<Position> {
        if lo >= hi {
            return None;
        }
        let total = self.total();
        let cut = if total < SPLIT_SAMPLES_MIN {
            lo + (hi - lo) / 2 + 1
        } else {
            // The boundary with the least imbalance; among equals, the one nearest the middle
            // of the range.
            let used = (((hi - lo) >> self.shift) as usize + 1).min(ACCESS_BUCKETS);
            let mut left = 0u64;
            let mut best = ((u64::MAX, usize::MAX), 1usize);
            for k in 1..used.max(2) {
                left += self.counts[k - 1];
                let score = ((2 * left).abs_diff(total), k.abs_diff(used / 2));
                if score < best.0 {
                    best = (score, k);
                }
            }
            lo.saturating_add((best.1 as u128) << self.shift)
        };
        Some(cut.clamp(lo + 1, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_follows_the_load() {
        let mut h = AccessHistogram::new(0, u64::MAX as u128);
        assert_eq!(h.split_point(0, u64::MAX as u128), Some(u64::MAX as u128 / 2 + 1));
        // All accesses in the lowest eighth: the cut moves down with them.
        h.record(1);
        assert_eq!(
            h.split_point(0, u64::MAX as u128),
            Some(u64::MAX as u128 / 2 + 1),
            "one sample is no signal"
        );
        for i in 0..1000u64 {
            h.record((i * (u64::MAX / 8 / 1000)) as u128);
        }
        let cut = h.split_point(0, u64::MAX as u128).unwrap();
        assert!(cut < u64::MAX as u128 / 8, "cut {cut:#x}");
        assert!(cut > 0);
        assert_eq!(AccessHistogram::new(5, 5).split_point(5, 5), None);
        assert_eq!(AccessHistogram::new(5, 6).split_point(5, 6), Some(6));
    }

    #[test]
    fn the_cut_follows_the_load_within_one_partition_of_the_position_space() {
        let (lo, hi) = crate::routing::partition_span(b"user");
        let mut h = AccessHistogram::new(lo, hi);
        for i in 0..1000u128 {
            h.record(lo + (hi - lo) / 4 + i);
        }
        let cut = h.split_point(lo, hi).unwrap();
        assert!(cut > lo && cut <= lo + (hi - lo) / 4 + (hi - lo) / 128, "cut {cut:#x}");
    }
}
