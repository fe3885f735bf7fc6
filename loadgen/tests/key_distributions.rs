//! Statistical checks of the key distributions, with fixed seeds (so they are deterministic)
//! and tolerances several standard deviations wide.

use shardcast_loadgen::dist::{zeta, KeyDistribution, KeySampler, MixgraphKeys, Zipfian};
use shardcast_loadgen::rng::Rng;

const SAMPLES: usize = 400_000;

fn counts(s: &KeySampler, n: u64, latest: u64, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    let mut c = vec![0u64; n as usize];
    for _ in 0..SAMPLES {
        let k = s.sample(&mut rng, latest);
        assert!(k < n, "key {k} outside [0, {n})");
        c[k as usize] += 1;
    }
    c
}

#[test]
fn uniform_passes_a_chi_square_test() {
    let n = 100;
    let c = counts(&KeySampler::new(&KeyDistribution::Uniform, n, 1), n, n, 7);
    let e = SAMPLES as f64 / n as f64;
    let chi2: f64 = c.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
    // 99 degrees of freedom: P(chi2 > 170) < 1e-5.
    assert!(chi2 < 170.0, "chi2 {chi2}");
}

#[test]
fn zipfian_ranks_follow_the_power_law() {
    let n = 1000;
    let theta = 0.99;
    let d = KeyDistribution::Zipfian { theta, scrambled: false };
    let c = counts(&KeySampler::new(&d, n, 1), n, n, 11);
    let z = Zipfian::new(n, theta);
    // Ranks 0 and 1 are exact in Gray et al.'s method; sd of a share ~ 0.0006 here.
    for rank in [0u64, 1] {
        let got = c[rank as usize] as f64 / SAMPLES as f64;
        let want = z.probability(rank);
        assert!((got - want).abs() < 0.004, "rank {rank}: {got} vs {want}");
    }
    // The top 10% of ranks carry the share the ideal distribution gives (the method's
    // approximation for ranks >= 2 stays within 2 points).
    let top: u64 = c[..100].iter().sum();
    let want: f64 = (0..100).map(|i| z.probability(i)).sum();
    let got = top as f64 / SAMPLES as f64;
    assert!((got - want).abs() < 0.02, "top-100 share {got} vs {want}");
    // Popularity decreases with rank on the whole.
    assert!(c[0] > c[1] && c[1] > c[10] && c[10] > c[500]);
}

#[test]
fn zeta_tail_approximation_is_close() {
    // The Euler-Maclaurin tail used past 10^7 terms, against the plain sum on a small case
    // checked by hand: zeta(2, 0.99) = 1 + 2^-0.99.
    assert!((zeta(2, 0.99) - (1.0 + 2f64.powf(-0.99))).abs() < 1e-12);
    // For n = 10^9 the harmonic-like sum grows like n^(1-theta)/(1-theta) + constant.
    let big = zeta(1_000_000_000, 0.5);
    let approx = 2.0 * (1e9f64).sqrt() - 1.4603545; // zeta(1/2) = -1.4603545
    assert!((big - approx).abs() < 1e-3, "{big} vs {approx}");
}

#[test]
fn scrambled_zipfian_spreads_hot_keys_but_keeps_the_skew() {
    let n = 1000;
    let d = KeyDistribution::Zipfian { theta: 0.99, scrambled: true };
    let c = counts(&KeySampler::new(&d, n, 1), n, n, 13);
    let (hot, max) = c.iter().enumerate().max_by_key(|x| x.1).unwrap();
    let z = Zipfian::new(n, 0.99);
    assert!(*max as f64 / SAMPLES as f64 >= z.probability(0) - 0.004);
    assert_ne!(hot, 0, "scrambling moves the hottest rank away from key 0");
}

#[test]
fn hotspot_sends_the_configured_share_to_the_hot_set() {
    let n = 1000;
    let d = KeyDistribution::Hotspot { hot_keys_fraction: 0.1, hot_ops_fraction: 0.9 };
    let c = counts(&KeySampler::new(&d, n, 1), n, n, 17);
    let hot: u64 = c[..100].iter().sum();
    let share = hot as f64 / SAMPLES as f64;
    assert!((share - 0.9).abs() < 0.005, "hot share {share}");
    // Uniform within the hot set: no hot key far from the mean.
    let mean = hot as f64 / 100.0;
    assert!(c[..100].iter().all(|&x| (x as f64 - mean).abs() < 0.15 * mean));
}

#[test]
fn latest_prefers_the_most_recent_keys() {
    let n = 1000;
    let latest = 1500; // 500 keys inserted after the initial keyspace
    let s = KeySampler::new(&KeyDistribution::Latest { theta: 0.99 }, n, 1);
    let mut rng = Rng::new(19);
    let mut newest = 0u64;
    let mut recent10 = 0u64;
    for _ in 0..SAMPLES {
        let k = s.sample(&mut rng, latest);
        assert!(k < latest);
        newest += (k == latest - 1) as u64;
        recent10 += (k >= latest - 10) as u64;
    }
    let z = Zipfian::new(n, 0.99);
    let want10: f64 = (0..10).map(|i| z.probability(i)).sum();
    assert!((newest as f64 / SAMPLES as f64 - z.probability(0)).abs() < 0.004);
    assert!((recent10 as f64 / SAMPLES as f64 - want10).abs() < 0.02);
}

#[test]
fn mixgraph_key_ranges_follow_the_two_term_exponential() {
    let n = 30_000;
    let m = MixgraphKeys::fast20();
    let s = KeySampler::new(&KeyDistribution::Mixgraph(m.clone()), n, 3);
    let KeySampler::Mixgraph(ms) = &s else { panic!() };
    let per = ms.range_keys();
    let c = counts(&s, n, n, 23);
    let mut total_p = 0.0;
    for r in 0..m.keyrange_num {
        let got: u64 = c[(r * per) as usize..((r + 1) * per) as usize].iter().sum();
        let p = ms.range_probability(r);
        total_p += p;
        let got = got as f64 / SAMPLES as f64;
        assert!((got - p).abs() < 0.005 + 0.02 * p, "range {r}: {got} vs {p}");
    }
    assert!((total_p - 1.0).abs() < 1e-9);
    // Within a range, the key seed follows the power law F(x) = a x^b: seed 1 alone gets a
    // share `a` (0.23%) of the range's accesses, whatever the range's size (db_bench's
    // 50M keys make that key very hot; here a range has 1,000 keys, so 2.3x uniform).
    let hottest = (0..m.keyrange_num)
        .max_by(|a, b| ms.range_probability(*a).total_cmp(&ms.range_probability(*b)))
        .unwrap();
    let slice = &c[(hottest * per) as usize..((hottest + 1) * per) as usize];
    let sum: u64 = slice.iter().sum();
    let max = *slice.iter().max().unwrap();
    let share = max as f64 / sum as f64;
    assert!(share > m.key_dist_a + 0.5 / per as f64, "hottest key's share {share}");
}
