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

/// Space-saving over `TOP_KEYS_MAX` slots, looked up by the key's 64-bit hash. Hashes and
/// counts sit in their own arrays (two cache lines each), so a hit is one scan of the hashes
/// and a miss one more scan of the counts and a copy of the key into a reused buffer: no
/// allocation once warm.
#[derive(Debug, Default, Clone)]
pub struct TopKeys {
    len: usize,
    hashes: [u64; TOP_KEYS_MAX],
    counts: [u64; TOP_KEYS_MAX],
    errors: [u64; TOP_KEYS_MAX],
    keys: Vec<Vec<u8>>,
}

impl TopKeys {
    #[inline]
    pub fn record(&mut self, hash: u64, key: &[u8]) {
        if let Some(i) = self.hashes[..self.len].iter().position(|&h| h == hash) {
            self.counts[i] += 1;
            return;
        }
        let i = if self.len < TOP_KEYS_MAX {
            self.len += 1;
            self.errors[self.len - 1] = 0;
            self.counts[self.len - 1] = 0;
            self.len - 1
        } else {
            // Replace the least counted: it inherits that count as its error bound.
            let (i, &min) = self.counts.iter().enumerate().min_by_key(|(_, &c)| c).expect("full");
            self.errors[i] = min;
            i
        };
        self.hashes[i] = hash;
        self.counts[i] += 1;
        if self.keys.len() <= i {
            self.keys.resize_with(i + 1, Vec::new);
        }
        let buf = &mut self.keys[i];
        buf.clear();
        buf.extend_from_slice(key);
    }

    /// The tracked keys, hottest first, and a fresh start.
    pub fn take(&mut self) -> Vec<KeyCount> {
        let mut out: Vec<KeyCount> = (0..self.len)
            .map(|i| KeyCount {
                key: self.keys[i].clone(),
                count: self.counts[i],
                error: self.errors[i],
            })
            .collect();
        self.len = 0;
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
        top.record(1, b"again");
        assert_eq!(top.take(), vec![KeyCount { key: b"again".to_vec(), count: 1, error: 0 }]);
    }
}
