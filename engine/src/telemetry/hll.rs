//! HyperLogLog (Flajolet et al., 2007) of distinct keys touched in a tick.

/// Index bits of a HyperLogLog: `2^HLL_PRECISION_BITS` one-byte registers (1 KiB), a
/// standard error of 1.04 / sqrt(1024) = 3.25 %.
pub const HLL_PRECISION_BITS: u32 = 10;
/// Registers of a HyperLogLog.
pub const HLL_REGISTERS: usize = 1 << HLL_PRECISION_BITS;
/// The documented standard error of an estimate (tests allow a few of these).
pub const HLL_STANDARD_ERROR: f64 = 1.04 / 32.0;

const _: () = assert!(HLL_REGISTERS == 1024);

/// Distinct-count sketch of 64-bit hashes: 1 KiB, merged by register-wise max (so the
/// sketches of a partition's shards merge into the partition's).
#[derive(Clone, PartialEq, Eq)]
pub struct Hll {
    registers: Box<[u8; HLL_REGISTERS]>,
}

impl std::fmt::Debug for Hll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hll(~{})", self.estimate())
    }
}

impl Default for Hll {
    fn default() -> Self {
        Hll { registers: Box::new([0; HLL_REGISTERS]) }
    }
}

impl Hll {
    /// Adds a well-mixed 64-bit hash (XXH3 of the key).
    #[inline]
    pub fn add(&mut self, hash: u64) {
        let index = (hash >> (64 - HLL_PRECISION_BITS)) as usize;
        // The rank of the first 1 bit in the remaining bits; a sentinel bit bounds it.
        let rest = (hash << HLL_PRECISION_BITS) | (1 << (HLL_PRECISION_BITS - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        let r = &mut self.registers[index];
        if rank > *r {
            *r = rank;
        }
    }

    /// Register-wise max: the sketch of the union.
    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    pub fn clear(&mut self) {
        self.registers.fill(0);
    }

    pub fn is_empty(&self) -> bool {
        self.registers.iter().all(|&r| r == 0)
    }

    /// The estimated number of distinct hashes added, with linear counting for small sets.
    pub fn estimate(&self) -> u64 {
        let m = HLL_REGISTERS as f64;
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in self.registers.iter() {
            sum += 1.0 / (1u64 << r) as f64;
            zeros += (r == 0) as usize;
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw };
        estimate.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::stable_hash;

    fn sketch(from: u64, n: u64) -> Hll {
        let mut h = Hll::default();
        for i in from..from + n {
            h.add(stable_hash(format!("key:{i}").as_bytes()));
        }
        h
    }

    /// Estimates stay within three standard errors from ten keys to a million, and adding
    /// the same keys again changes nothing.
    #[test]
    fn estimates_are_within_the_documented_error() {
        for n in [10u64, 100, 1_000, 10_000, 100_000, 1_000_000] {
            let h = sketch(0, n);
            let err = (h.estimate() as f64 - n as f64).abs() / n as f64;
            assert!(err <= 3.0 * HLL_STANDARD_ERROR, "n={n}: estimate {} ({err})", h.estimate());
            let mut again = h.clone();
            for i in 0..n.min(1000) {
                again.add(stable_hash(format!("key:{i}").as_bytes()));
            }
            assert_eq!(again, h);
        }
        assert_eq!(Hll::default().estimate(), 0);
    }

    /// Merging the sketches of two overlapping sets estimates their union.
    #[test]
    fn merged_sketches_count_the_union() {
        let mut a = sketch(0, 60_000);
        a.merge(&sketch(40_000, 60_000));
        let err = (a.estimate() as f64 - 100_000.0).abs() / 100_000.0;
        assert!(err <= 3.0 * HLL_STANDARD_ERROR, "{}", a.estimate());
    }
}
