//! The hottest keys of a shard in a tick: a space-saving top-k (Metwally et al., 2005).

/// Keys a shard tracks per tick. Any key with more than 1/`TOP_KEYS_MAX` of the shard's ops
/// in the tick is among them, and a count overstates the truth by at most its `error`, which
/// is at most ops / `TOP_KEYS_MAX`.
pub const TOP_KEYS_MAX: usize = 16;

/// One tracked key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyCount {
    pub key: Vec<u8>,
    /// Ops counted (an over-estimate by at most `error`).
    pub count: u64,
    pub error: u64,
}

/// Space-saving over `TOP_KEYS_MAX` slots, looked up by the key's 64-bit hash with a linear
/// scan (16 hashes, two cache lines): a hit costs a compare loop, a miss also copies the key
/// into a reused buffer.
#[derive(Debug, Default, Clone)]
pub struct TopKeys {
    hashes: Vec<u64>,
    slots: Vec<KeyCount>,
}

impl TopKeys {
    #[inline]
    pub fn record(&mut self, hash: u64, key: &[u8]) {
        if let Some(i) = self.hashes.iter().position(|&h| h == hash) {
            self.slots[i].count += 1;
            return;
        }
        if self.slots.len() < TOP_KEYS_MAX {
            self.hashes.push(hash);
            self.slots.push(KeyCount { key: key.to_vec(), count: 1, error: 0 });
            return;
        }
        let (i, _) = self.slots.iter().enumerate().min_by_key(|(_, s)| s.count).expect("full");
        let s = &mut self.slots[i];
        self.hashes[i] = hash;
        s.key.clear();
        s.key.extend_from_slice(key);
        s.error = s.count;
        s.count += 1;
    }

    /// The tracked keys, hottest first, and a fresh start.
    pub fn take(&mut self) -> Vec<KeyCount> {
        self.hashes.clear();
        let mut out = std::mem::take(&mut self.slots);
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::stable_hash;

    /// Three hot keys among 200,000 cold ones are found, each counted within the bound.
    #[test]
    fn hot_keys_are_found_within_the_bound() {
        let mut top = TopKeys::default();
        let mut rng = crate::testing::SplitMix64::new(7);
        let mut exact = [0u64; 3];
        let n = 200_000u64;
        for i in 0..n {
            let r = rng.below(20);
            let key = if r < 3 {
                exact[r as usize] += 1;
                format!("hot:{r}")
            } else {
                format!("cold:{i}")
            };
            top.record(stable_hash(key.as_bytes()), key.as_bytes());
        }
        let keys = top.take();
        assert!(keys.len() <= TOP_KEYS_MAX);
        for (r, &truth) in exact.iter().enumerate() {
            let name = format!("hot:{r}");
            let k = keys.iter().find(|k| k.key == name.as_bytes()).expect("hot key kept");
            assert!(k.count >= truth && k.count - k.error <= truth, "{k:?} vs {truth}");
            assert!(k.error <= n / TOP_KEYS_MAX as u64);
        }
        assert!(top.take().is_empty());
    }
}
