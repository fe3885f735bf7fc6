//! Deterministic helpers for tests and simulations: a seeded generator.
//!
//! Public (not `cfg(test)`) because integration tests, benches and the simulator use it; it
//! holds no fault points and costs nothing unless called.

/// SplitMix64: a tiny, fast, well-distributed seeded generator (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// The seed for a randomized test: `SHARDCAST_SEED` if set (to replay a failure), else derived
/// from the clock. Print it before using it.
pub fn seed_from_env() -> u64 {
    match std::env::var("SHARDCAST_SEED") {
        Ok(s) => s.parse().expect("SHARDCAST_SEED must be an unsigned integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// The seeds of a test that runs `count` of them: consecutive ones from `seed_from_env()`, or
/// only the one `SHARDCAST_SEED` names (to replay a failure).
pub fn seeds_from_env(count: u64) -> Vec<u64> {
    let base = seed_from_env();
    if std::env::var("SHARDCAST_SEED").is_ok() {
        vec![base]
    } else {
        (0..count).map(|i| base.wrapping_add(i)).collect()
    }
}

/// Runs `f` to completion on a fresh single glommio executor (tests of one shard).
pub fn run_local<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(|| async move { f().await })
        .expect("start a local executor")
        .join()
        .expect("the executor's thread");
}
