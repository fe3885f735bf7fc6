//! A latency histogram that one core writes and any thread reads, without locks.
//!
//! Buckets are log-linear over nanoseconds: every power of two from `2^FIRST_OCTAVE` ns to
//! `2^LAST_OCTAVE` ns is cut into `SUB_BUCKETS` equal parts, so a recorded value is known to
//! within 1/`SUB_BUCKETS` (3.1%) of itself. Values below the first octave count in the first
//! bucket, values past the last in the last one. The octave edges are powers of two, which are
//! exactly the edges Redis's `LATENCY HISTOGRAM` reports (1024 ns, 2048 ns, ... shown as 1, 2,
//! 4, ... 65, 131 µs), so that reply is exact, not interpolated.
//!
//! Counts are relaxed atomics that only their core writes (a load and a store, not a locked
//! add: `commands::bump`); a reader sums them as they are, which may miss the adds of the
//! moment (a merge is a snapshot, not a barrier). Bucket memory
//! (`BUCKETS` × 8 bytes = 8 KiB) is allocated on a histogram's first record, so a command
//! never called costs nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The first octave: values below 2^8 ns (256 ns) share the first bucket.
pub const FIRST_OCTAVE: u32 = 8;
/// The last octave: values from 2^39 ns (about 9 minutes) share the last bucket's octave.
pub const LAST_OCTAVE: u32 = 39;
/// Linear parts per octave (a power of two).
pub const SUB_BUCKETS: usize = 32;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Buckets in all.
pub const BUCKETS: usize = (LAST_OCTAVE - FIRST_OCTAVE + 1) as usize * SUB_BUCKETS;

/// The bucket holding `ns`.
pub fn bucket_of(ns: u64) -> usize {
    let v = ns.clamp(1 << FIRST_OCTAVE, (1u64 << (LAST_OCTAVE + 1)) - 1);
    let octave = 63 - v.leading_zeros();
    let sub = ((v >> (octave - SUB_BITS)) as usize) & (SUB_BUCKETS - 1);
    (octave - FIRST_OCTAVE) as usize * SUB_BUCKETS + sub
}

/// The smallest value bucket `b` holds (ns).
pub fn bucket_low(b: usize) -> u64 {
    let octave = FIRST_OCTAVE + (b / SUB_BUCKETS) as u32;
    let sub = (b % SUB_BUCKETS) as u64;
    (SUB_BUCKETS as u64 + sub) << (octave - SUB_BITS)
}

/// The first value past bucket `b` (ns).
pub fn bucket_high(b: usize) -> u64 {
    let octave = FIRST_OCTAVE + (b / SUB_BUCKETS) as u32;
    bucket_low(b) + (1u64 << (octave - SUB_BITS))
}

/// The histogram one core records into.
#[derive(Default)]
pub struct AtomicHistogram {
    buckets: OnceLock<Box<[AtomicU64]>>,
}

impl AtomicHistogram {
    /// Counts `n` values of `ns` nanoseconds. Only the owning core calls this.
    pub fn record_n(&self, ns: u64, n: u64) {
        let buckets =
            self.buckets.get_or_init(|| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect());
        super::commands::bump(&buckets[bucket_of(ns)], n);
    }

    /// Adds this histogram's counts into `into`.
    pub fn add_to(&self, into: &mut Histogram) {
        if let Some(buckets) = self.buckets.get() {
            for (sum, b) in into.counts.iter_mut().zip(buckets.iter()) {
                *sum += b.load(Ordering::Relaxed);
            }
        }
    }

    pub fn reset(&self) {
        if let Some(buckets) = self.buckets.get() {
            buckets.iter().for_each(|b| b.store(0, Ordering::Relaxed));
        }
    }
}

/// A merged, plain histogram (read side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS] }
    }
}

impl Histogram {
    pub fn record_n(&mut self, ns: u64, n: u64) {
        self.counts[bucket_of(ns)] += n;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value at quantile `q` (0..=1), in ns: the upper edge of the bucket where the
    /// cumulative count reaches `q` of the total (never below the true value); 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(b);
            }
        }
        bucket_high(BUCKETS - 1)
    }

    /// Values at or below `edge_ns` (a bucket edge; other values round down to one).
    pub fn count_below(&self, edge_ns: u64) -> u64 {
        self.counts
            .iter()
            .enumerate()
            .take_while(|(b, _)| bucket_high(*b) <= edge_ns)
            .map(|(_, c)| c)
            .sum()
    }

    /// Redis's `LATENCY HISTOGRAM` series: at each power of two from 1024 ns, the cumulative
    /// count of values below it, as (µs rounded down, count), listed where the count grew.
    pub fn power_of_two_cdf(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let (mut seen, mut previous) = (0u64, 0u64);
        let mut edge = 1024u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if bucket_high(b) == edge || b == BUCKETS - 1 {
                if seen > previous {
                    out.push((edge / 1000, seen));
                }
                previous = seen;
                edge *= 2;
            }
        }
        out
    }

    /// Sum of the values, each counted at its bucket's middle (ns).
    pub fn approx_sum_ns(&self) -> f64 {
        self.counts
            .iter()
            .enumerate()
            .map(|(b, &c)| c as f64 * (bucket_low(b) + bucket_high(b)) as f64 / 2.0)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        assert_eq!(bucket_low(0), 1 << FIRST_OCTAVE);
        for b in 1..BUCKETS {
            assert_eq!(bucket_low(b), bucket_high(b - 1), "bucket {b}");
        }
        for b in 0..BUCKETS {
            assert_eq!(bucket_of(bucket_low(b)), b);
            assert_eq!(bucket_of(bucket_high(b) - 1), b);
        }
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_bucket_is_within_its_precision_of_its_values() {
        for ns in [300u64, 1_000, 7_777, 123_456, 9_999_999, 3_000_000_000] {
            let b = bucket_of(ns);
            let width = bucket_high(b) - bucket_low(b);
            assert!(width as f64 <= ns as f64 / SUB_BUCKETS as f64 * 1.0001, "{ns}");
        }
    }

    #[test]
    fn quantiles_never_report_below_the_value() {
        let mut h = Histogram::default();
        h.record_n(5_000, 99);
        h.record_n(2_000_000, 1);
        let p50 = h.quantile_ns(0.5);
        assert!((5_000..=5_000 + 5_000 / 32 + 1).contains(&p50), "{p50}");
        assert!(h.quantile_ns(0.99) < 6_000);
        assert!(h.quantile_ns(0.999) >= 2_000_000);
        assert_eq!(Histogram::default().quantile_ns(0.5), 0);
    }

    /// The same series Redis prints for the same values (its hdr_histogram iterated by
    /// powers of two from 1024 ns).
    #[test]
    fn the_power_of_two_series_is_cumulative_like_redis() {
        let mut h = Histogram::default();
        h.record_n(500, 2); // below 1 µs
        h.record_n(3_000, 3); // in (2048, 4096]
        h.record_n(70_000, 1); // in (65536, 131072]
        assert_eq!(h.power_of_two_cdf(), vec![(1, 2), (4, 5), (131, 6)]);
    }

    #[test]
    fn the_atomic_side_merges_into_the_plain_side() {
        let a = AtomicHistogram::default();
        let mut h = Histogram::default();
        a.add_to(&mut h);
        assert_eq!(h.total(), 0);
        a.record_n(10_000, 4);
        a.record_n(20_000, 1);
        a.add_to(&mut h);
        a.add_to(&mut h);
        assert_eq!(h.total(), 10);
        a.reset();
        let mut after = Histogram::default();
        a.add_to(&mut after);
        assert_eq!(after.total(), 0);
    }
}
