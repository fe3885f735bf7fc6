//! How recently and how often a key was used: the counters behind eviction (`allkeys-lru`,
//! `allkeys-lfu`, ...) and `OBJECT IDLETIME` / `OBJECT FREQ`.
//!
//! Both live in one `u32` per entry, as in Redis: 24 bits of a seconds clock (the last access)
//! and an 8-bit logarithmic frequency counter. Redis keeps one or the other depending on the
//! policy; here both are always kept (the last access doubles as the LFU decay time), so a
//! policy switched at runtime finds its counters ready.
//!
//! The frequency counter is Redis's: a new key starts at [`LFU_INIT`]; an access increments it
//! with probability `1 / ((counter - LFU_INIT) * LFU_LOG_FACTOR + 1)`, so about a million
//! accesses saturate it at 255; it loses one for every [`LFU_DECAY_S`] without an access.

/// The counter of a new key (so it is not evicted before it had a chance to be used again).
pub const LFU_INIT: u8 = 5;
/// Redis's `lfu-log-factor` default: how slowly the counter climbs.
pub const LFU_LOG_FACTOR: u32 = 10;
/// Redis's `lfu-decay-time` default (1 minute): the counter loses one per period idle.
pub const LFU_DECAY_S: u32 = 60;
/// The last-access clock wraps after 2^24 s (194 days), as Redis's does.
pub const CLOCK_MASK: u32 = (1 << 24) - 1;

/// Last access (24-bit seconds clock) and frequency counter of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u32);

/// The 24-bit seconds clock at `now_ms`.
pub fn clock_s(now_ms: u64) -> u32 {
    ((now_ms / 1000) as u32) & CLOCK_MASK
}

impl Access {
    /// A key created now.
    pub fn new(now_ms: u64) -> Self {
        Access::pack(clock_s(now_ms), LFU_INIT)
    }

    fn pack(clock: u32, freq: u8) -> Self {
        Access((clock << 8) | freq as u32)
    }

    fn clock(self) -> u32 {
        self.0 >> 8
    }

    fn raw_freq(self) -> u8 {
        self.0 as u8
    }

    /// Seconds since the last access (OBJECT IDLETIME).
    pub fn idle_s(self, now_ms: u64) -> u32 {
        clock_s(now_ms).wrapping_sub(self.clock()) & CLOCK_MASK
    }

    /// The frequency counter with the decay since the last access applied (OBJECT FREQ).
    pub fn freq(self, now_ms: u64) -> u8 {
        let periods = self.idle_s(now_ms) / LFU_DECAY_S;
        self.raw_freq().saturating_sub(periods.min(255) as u8)
    }

    /// An access now; `coin` is a uniform random number in 0..2^32.
    pub fn touched(self, now_ms: u64, coin: u32) -> Self {
        let freq = self.freq(now_ms);
        let freq = if freq == 255 {
            255
        } else {
            let base = freq.saturating_sub(LFU_INIT) as u64;
            // Increment with probability 1 / (base * factor + 1).
            let odds = base * LFU_LOG_FACTOR as u64 + 1;
            if (coin as u64) * odds < (1u64 << 32) {
                freq + 1
            } else {
                freq
            }
        };
        Access::pack(clock_s(now_ms), freq)
    }
}

/// A small, fast pseudo-random generator (xorshift64*) for the LFU coin and key sampling:
/// statistical quality is all that is needed, not unpredictability.
#[derive(Debug, Clone)]
pub struct Coin(u64);

impl Coin {
    pub fn seeded(seed: u64) -> Self {
        Coin(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u32() as u64 * n as u64) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_counts_seconds_and_wraps() {
        let a = Access::new(10_000);
        assert_eq!(a.idle_s(10_999), 0);
        assert_eq!(a.idle_s(25_000), 15);
        let late = Access::new((CLOCK_MASK as u64) * 1000);
        assert_eq!(late.idle_s((CLOCK_MASK as u64 + 3) * 1000), 3);
    }

    #[test]
    fn frequency_climbs_logarithmically_and_decays() {
        let mut coin = Coin::seeded(7);
        let mut a = Access::new(0);
        assert_eq!(a.freq(0), LFU_INIT);
        for _ in 0..100 {
            a = a.touched(0, coin.next_u32());
        }
        let after_100 = a.freq(0);
        for _ in 0..10_000 {
            a = a.touched(0, coin.next_u32());
        }
        let after_10k = a.freq(0);
        // Redis's table for factor 10: ~10 at 100 hits, ~18 at 1K, ~142 at 100K... the climb
        // slows as the counter grows.
        assert!((8..=14).contains(&after_100), "{after_100}");
        assert!((20..=60).contains(&after_10k), "{after_10k}");
        // Three idle minutes take three off.
        assert_eq!(a.freq(3 * 60 * 1000), after_10k - 3);
        // An access applies the decay first, then stamps the time.
        let b = a.touched(3 * 60 * 1000, u32::MAX);
        assert_eq!(b.freq(3 * 60 * 1000), after_10k - 3);
        assert_eq!(b.idle_s(3 * 60 * 1000), 0);
    }

    #[test]
    fn coin_is_uniform_enough() {
        let mut coin = Coin::seeded(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[coin.below(10)] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
    }
}
