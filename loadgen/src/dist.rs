//! Key and value-size distributions.
//!
//! Keys: uniform, zipfian (Gray et al. 1994, "Quickly generating billion-record synthetic
//! databases", the generator YCSB uses), hotspot and latest (as YCSB defines them), and the
//! key model of Meta's FAST'20 RocksDB study (mixgraph: key ranges whose hotness follows a
//! two-term exponential, keys within a range following a power law).
//! Value sizes: fixed, uniform, and generalized Pareto (the value model of the same study).

use crate::rng::{mix64, Rng};

/// Above this many keys the zeta constant is finished with an Euler-Maclaurin tail
/// instead of summing term by term (which would take seconds for 10^9 keys).
const ZETA_EXACT_TERMS_MAX: u64 = 10_000_000;

/// zeta(n, theta) = sum_{i=1..n} 1 / i^theta.
pub fn zeta(n: u64, theta: f64) -> f64 {
    let exact = n.min(ZETA_EXACT_TERMS_MAX);
    let mut sum = 0.0;
    for i in 1..=exact {
        sum += 1.0 / (i as f64).powf(theta);
    }
    if n > exact {
        // Euler-Maclaurin: sum_{m+1..n} f(i) ~ integral_m^n f + (f(n) - f(m)) / 2.
        let (m, nf) = (exact as f64, n as f64);
        let integral = (nf.powf(1.0 - theta) - m.powf(1.0 - theta)) / (1.0 - theta);
        sum += integral + (nf.powf(-theta) - m.powf(-theta)) / 2.0;
    }
    sum
}

/// Zipfian over ranks [0, n): rank 0 the most popular, P(i) ~ 1 / (i+1)^theta, 0 < theta < 1.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    half_pow_theta: f64,
}

impl Zipfian {
    pub fn new(n: u64, theta: f64) -> Zipfian {
        assert!(n >= 1 && theta > 0.0 && theta < 1.0, "validated by the workload parser");
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2.min(n), theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = if n <= 2 {
            0.0
        } else {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        };
        Zipfian { n, theta, alpha, zetan, eta, half_pow_theta: 0.5f64.powf(theta) }
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// The exact probability of rank `i` under the ideal distribution.
    pub fn probability(&self, i: u64) -> f64 {
        1.0 / ((i + 1) as f64).powf(self.theta) / self.zetan
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.f64();
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < 1.0 + self.half_pow_theta || self.n == 2 {
            return 1;
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

/// The key model of mixgraph (db_bench), fitted by Cao et al., FAST'20.
#[derive(Clone, Debug, PartialEq)]
pub struct MixgraphKeys {
    /// Power-law CDF of key seeds within a range: F(x) = a * x^b.
    pub key_dist_a: f64,
    pub key_dist_b: f64,
    /// Key-range hotness: f(i) = a * exp(b * i) + c * exp(d * i), i = 1..=ranges.
    pub keyrange_dist_a: f64,
    pub keyrange_dist_b: f64,
    pub keyrange_dist_c: f64,
    pub keyrange_dist_d: f64,
    pub keyrange_num: u64,
}

impl MixgraphKeys {
    /// The parameters published with the paper (db_bench `-key_dist_a=0.002312 ...`).
    pub fn fast20() -> MixgraphKeys {
        MixgraphKeys {
            key_dist_a: 0.002312,
            key_dist_b: 0.3467,
            keyrange_dist_a: 14.18,
            keyrange_dist_b: -2.917,
            keyrange_dist_c: 0.0164,
            keyrange_dist_d: -0.08082,
            keyrange_num: 30,
        }
    }
}

/// How keys are chosen, as configured.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyDistribution {
    Uniform,
    /// `scrambled` spreads the popular ranks over the keyspace by hashing (as YCSB does).
    Zipfian {
        theta: f64,
        scrambled: bool,
    },
    /// `hot_keys_fraction` of the keys receive `hot_ops_fraction` of the operations.
    Hotspot {
        hot_keys_fraction: f64,
        hot_ops_fraction: f64,
    },
    /// Recently inserted keys are the most popular (zipfian over recency).
    Latest {
        theta: f64,
    },
    Mixgraph(MixgraphKeys),
}

/// A ready sampler for one keyspace.
#[derive(Clone, Debug)]
pub enum KeySampler {
    Uniform { n: u64 },
    Zipfian { z: Zipfian, scrambled: bool },
    Hotspot { n: u64, hot_n: u64, hot_ops_fraction: f64 },
    Latest { z: Zipfian },
    Mixgraph(MixgraphSampler),
}

impl KeySampler {
    /// `n` keys, ids [0, n). `seed` fixes anything the sampler randomises once (mixgraph's
    /// order of range hotness).
    pub fn new(dist: &KeyDistribution, n: u64, seed: u64) -> KeySampler {
        assert!(n >= 1);
        match dist {
            KeyDistribution::Uniform => KeySampler::Uniform { n },
            KeyDistribution::Zipfian { theta, scrambled } => {
                KeySampler::Zipfian { z: Zipfian::new(n, *theta), scrambled: *scrambled }
            }
            KeyDistribution::Hotspot { hot_keys_fraction, hot_ops_fraction } => {
                let hot_n = ((n as f64 * hot_keys_fraction).round() as u64).clamp(1, n);
                KeySampler::Hotspot { n, hot_n, hot_ops_fraction: *hot_ops_fraction }
            }
            KeyDistribution::Latest { theta } => KeySampler::Latest { z: Zipfian::new(n, *theta) },
            KeyDistribution::Mixgraph(m) => KeySampler::Mixgraph(MixgraphSampler::new(m, n, seed)),
        }
    }

    /// A key id. `latest` is the number of keys that exist now (keyspace plus inserts); only
    /// the `latest` distribution uses it.
    #[inline]
    pub fn sample(&self, rng: &mut Rng, latest: u64) -> u64 {
        match self {
            KeySampler::Uniform { n } => rng.below(*n),
            KeySampler::Zipfian { z, scrambled } => {
                let r = z.sample(rng);
                if *scrambled {
                    mix64(r) % z.n()
                } else {
                    r
                }
            }
            KeySampler::Hotspot { n, hot_n, hot_ops_fraction } => {
                if rng.f64() < *hot_ops_fraction || hot_n == n {
                    rng.below(*hot_n)
                } else {
                    hot_n + rng.below(n - hot_n)
                }
            }
            KeySampler::Latest { z } => {
                let back = z.sample(rng);
                latest.saturating_sub(1).saturating_sub(back)
            }
            KeySampler::Mixgraph(m) => m.sample(rng),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MixgraphSampler {
    n: u64,
    range_keys: u64,
    /// Cumulative probability of picking each range (in hotness order).
    cdf: Vec<f64>,
    /// Which range (by position in the keyspace) holds the i-th hottest weight.
    order: Vec<u64>,
    key_dist_a: f64,
    inv_key_dist_b: f64,
}

impl MixgraphSampler {
    fn new(m: &MixgraphKeys, n: u64, seed: u64) -> MixgraphSampler {
        let ranges = m.keyrange_num.clamp(1, n);
        let mut cdf = Vec::with_capacity(ranges as usize);
        let mut sum = 0.0;
        for i in 1..=ranges {
            let x = i as f64;
            let w = m.keyrange_dist_a * (m.keyrange_dist_b * x).exp()
                + m.keyrange_dist_c * (m.keyrange_dist_d * x).exp();
            sum += if w.is_finite() { w.max(0.0) } else { 0.0 };
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        // As db_bench does, the hot ranges are not simply the first ones: shuffle (seeded).
        let mut order: Vec<u64> = (0..ranges).collect();
        let mut rng = Rng::derive(seed, 0x6d69_7867);
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        MixgraphSampler {
            n,
            range_keys: n.div_ceil(ranges),
            cdf,
            order,
            key_dist_a: m.key_dist_a,
            inv_key_dist_b: 1.0 / m.key_dist_b,
        }
    }

    /// The probability that a key falls in range position `pos` of the keyspace.
    pub fn range_probability(&self, pos: u64) -> f64 {
        let rank = self.order.iter().position(|&o| o == pos).expect("range");
        let prev = if rank == 0 { 0.0 } else { self.cdf[rank - 1] };
        self.cdf[rank] - prev
    }

    pub fn range_keys(&self) -> u64 {
        self.range_keys
    }

    #[inline]
    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.f64();
        let rank = self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1);
        let range = self.order[rank];
        // Key seed from the power law F(x) = a x^b, then scattered inside the range.
        let v = rng.f64();
        let seed = (v / self.key_dist_a).powf(self.inv_key_dist_b).ceil() as u64;
        let offset = mix64(seed ^ mix64(range)) % self.range_keys;
        (range * self.range_keys + offset).min(self.n - 1)
    }
}

/// Value sizes, as configured. Every size is clamped to [1, max].
#[derive(Clone, Debug, PartialEq)]
pub enum ValueSize {
    Fixed {
        bytes: u64,
    },
    Uniform {
        min: u64,
        max: u64,
    },
    /// Generalized Pareto: x = theta + sigma * ((1 - u)^-k - 1) / k, clamped to [1, max].
    Pareto {
        k: f64,
        sigma: f64,
        theta: f64,
        max: u64,
    },
}

impl ValueSize {
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            ValueSize::Fixed { bytes } => *bytes,
            ValueSize::Uniform { min, max } => rng.range_inclusive(*min, *max),
            ValueSize::Pareto { k, sigma, theta, max } => {
                let u = rng.f64();
                let x = if k.abs() < 1e-12 {
                    theta - sigma * (1.0 - u).ln()
                } else {
                    theta + sigma * ((1.0 - u).powf(-k) - 1.0) / k
                };
                (x.round().max(1.0) as u64).min(*max)
            }
        }
    }

    /// The largest size this distribution can produce.
    pub fn max_bytes(&self) -> u64 {
        match self {
            ValueSize::Fixed { bytes } => *bytes,
            ValueSize::Uniform { max, .. } => *max,
            ValueSize::Pareto { max, .. } => *max,
        }
    }
}
