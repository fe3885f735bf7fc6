//! Eviction under `maxmemory`: which keys go when memory is full, Redis's way.
//!
//! Owns the eviction policy and its settings (shared by every core, switchable at runtime),
//! each core's pool of candidates, and the budget rule that decides when a core evicts.
//!
//! **Budgets.** Every core is guaranteed `maxmemory / cores`; a core may hold more while the
//! others hold less, so the budgets add up to `maxmemory` and no core's shards starve another's.
//! A core evicts when the server as a whole is above `maxmemory` *and* it holds more than its
//! share: a core under its share never loses keys because another core is full, and whenever
//! the total is above the limit some core is above its share and evicts (before its next
//! write, and in its 100 ms expiry cycle if no write comes).
//!
//! **Choosing.** As in Redis: `maxmemory-samples` random keys are drawn (uniformly over the
//! core's keys: a shard is picked in proportion to its keys, then a key in it) and offered to a
//! pool of the [`EVICTION_POOL_SIZE`] best candidates seen so far, the best of which is evicted
//! (if it still exists). The best is the longest idle (`*-lru`), the least frequently used with
//! the longest idle breaking ties (`*-lfu`, Redis's logarithmic counter with decay); `*-random`
//! takes a sampled key as is. `volatile-ttl` needs no sampling: every shard keeps its keys
//! ordered by expiry, so the key that expires first on the core goes first, exactly.
//! `volatile-*` never evicts a key without an expiry.
//!
//! An eviction is logged as a delete (a replica or recovery sees the key go) and counted in
//! `evicted_keys`.

use super::*;
use crate::error::{EngineError, Result};
use crate::keyspace::{Coin, Entry, Key};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize};

/// Redis's `maxmemory-samples` default.
pub const MAXMEMORY_SAMPLES_DEFAULT: usize = 5;
/// Redis's bounds for `maxmemory-samples`.
pub const MAXMEMORY_SAMPLES_MIN: usize = 1;
pub const MAXMEMORY_SAMPLES_MAX: usize = 64;
/// Candidates a core keeps between evictions (Redis's `EVPOOL_SIZE`).
pub const EVICTION_POOL_SIZE: usize = 16;
/// Keys one write evicts at most before it goes ahead: a large value never stalls a write for
/// long; the expiry cycle carries on evicting in the background.
pub const EVICTIONS_PER_CALL_MAX: usize = 1024;

/// Redis's `maxmemory-policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EvictionPolicy {
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl EvictionPolicy {
    pub const ALL: [EvictionPolicy; 8] = [
        EvictionPolicy::NoEviction,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::AllKeysLfu,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::VolatileLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
    ];

    /// The name Redis uses (`CONFIG GET maxmemory-policy`).
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::NoEviction => "noeviction",
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::AllKeysLfu => "allkeys-lfu",
            EvictionPolicy::AllKeysRandom => "allkeys-random",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    /// Parses a policy name, case-insensitively as Redis does.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Only keys with an expiry may go.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            EvictionPolicy::VolatileLru
                | EvictionPolicy::VolatileLfu
                | EvictionPolicy::VolatileRandom
                | EvictionPolicy::VolatileTtl
        )
    }

    /// How good a candidate an entry is: higher goes first.
    ///
    /// Recency is scored by *when* the key was last used, not by its idle time: a pool
    /// candidate keeps its score while it waits, and an idle time read seconds ago would lose
    /// to a more recently used key sampled now, whose idle time is read later (Redis's pool
    /// stores idle times; during a slow fill it evicted recently read keys this way).
    fn score(self, entry: &Entry, now_ms: u64) -> u64 {
        match self {
            EvictionPolicy::AllKeysLru | EvictionPolicy::VolatileLru => staleness(entry, now_ms),
            EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu => {
                let rarity = 255 - entry.access.freq(now_ms) as u64;
                (rarity << STALENESS_BITS) | staleness(entry, now_ms)
            }
            // Random policies take a sampled key as is; TTL does not sample.
            _ => 0,
        }
    }
}

/// Bits of [`staleness`]: seconds since the epoch fit until the year 10,000 and beyond.
const STALENESS_BITS: u32 = 40;

/// Higher the longer ago the entry was last used, and the same whenever it is computed: the
/// last use in seconds on the engine's clock, counted down from 2^[`STALENESS_BITS`].
fn staleness(entry: &Entry, now_ms: u64) -> u64 {
    let last_use_s = (now_ms / 1000).saturating_sub(entry.access.idle_s(now_ms) as u64);
    (1u64 << STALENESS_BITS) - 1 - last_use_s.min((1 << STALENESS_BITS) - 1)
}

/// The eviction settings every core reads: changed at runtime by `CONFIG SET`.
#[derive(Debug)]
pub struct EvictionSettings {
    maxmemory_bytes: AtomicU64,
    policy: AtomicU8,
    samples: AtomicUsize,
}

impl Default for EvictionSettings {
    fn default() -> Self {
        EvictionSettings {
            maxmemory_bytes: AtomicU64::new(0),
            policy: AtomicU8::new(EvictionPolicy::NoEviction as u8),
            samples: AtomicUsize::new(MAXMEMORY_SAMPLES_DEFAULT),
        }
    }
}

impl EvictionSettings {
    /// The limit on the keys' and values' bytes, 0 = none.
    pub fn maxmemory_bytes(&self) -> u64 {
        self.maxmemory_bytes.load(Ordering::Relaxed)
    }

    pub fn set_maxmemory_bytes(&self, bytes: u64) {
        self.maxmemory_bytes.store(bytes, Ordering::Relaxed)
    }

    pub fn policy(&self) -> EvictionPolicy {
        EvictionPolicy::ALL[self.policy.load(Ordering::Relaxed) as usize]
    }

    pub fn set_policy(&self, policy: EvictionPolicy) {
        self.policy.store(policy as u8, Ordering::Relaxed)
    }

    pub fn samples(&self) -> usize {
        self.samples.load(Ordering::Relaxed)
    }

    /// Sets `maxmemory-samples`, clamped to Redis's bounds.
    pub fn set_samples(&self, samples: usize) {
        let n = samples.clamp(MAXMEMORY_SAMPLES_MIN, MAXMEMORY_SAMPLES_MAX);
        self.samples.store(n, Ordering::Relaxed)
    }
}

/// One candidate in a core's pool.
struct Candidate {
    score: u64,
    shard: u64,
    key: Key,
}

/// A core's eviction state: its pool of candidates and its dice.
pub(crate) struct Evictor {
    /// Sorted by score, ascending: the best candidate is last.
    pool: Vec<Candidate>,
    /// The policy the pool's scores were computed for: a switch empties the pool (an LRU
    /// score means nothing to LFU, and an allkeys candidate may have no expiry).
    policy: EvictionPolicy,
    coin: Coin,
}

impl Evictor {
    pub(crate) fn new(core: usize) -> Self {
        Evictor {
            pool: Vec::with_capacity(EVICTION_POOL_SIZE),
            policy: EvictionPolicy::NoEviction,
            coin: Coin::seeded(0xE71C_7000 ^ core as u64),
        }
    }

    /// Empties the pool if it was filled under another policy.
    fn follow(&mut self, policy: EvictionPolicy) {
        if self.policy != policy {
            self.pool.clear();
            self.policy = policy;
        }
    }

    /// Offers a sampled key: kept if the pool has room or it beats the worst candidate.
    fn offer(&mut self, score: u64, shard: u64, key: &Key) {
        if self.pool.iter().any(|c| c.shard == shard && c.key == *key) {
            return;
        }
        if self.pool.len() == EVICTION_POOL_SIZE {
            if score <= self.pool[0].score {
                return;
            }
            self.pool.remove(0);
        }
        let at = self.pool.partition_point(|c| c.score <= score);
        self.pool.insert(at, Candidate { score, shard, key: key.clone() });
    }
}

impl Core {
    /// This core's shards eviction may take keys from, each with its number of keys.
    fn evictable_shards(&self) -> Vec<(Rc<Shard<DmaStorage>>, usize)> {
        self.shards
            .borrow()
            .values()
            .filter(|s| s.evictable())
            .map(|s| (s.clone(), s.with_keyspace(|k| k.len())))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Whether this core must evict before it adds data: the server is above `maxmemory` and
    /// this core above its share (see the module docs).
    pub(crate) fn over_budget(&self) -> bool {
        let max = self.config.eviction.maxmemory_bytes();
        max > 0
            && self.memory.total() > max
            && self.memory.core_used(self.id) > max / self.config.cores as u64
    }

    /// Evicts by the current policy until this core is within its budget (or
    /// `EVICTIONS_PER_CALL_MAX` keys went). `OutOfMemory` if it is over and nothing could be
    /// evicted (the policy is `noeviction`, or `volatile-*` finds no key with an expiry).
    pub(crate) fn make_room(&self) -> Result<()> {
        if !self.over_budget() {
            return Ok(());
        }
        // The published figure may be stale (a migration's tidy-up frees without publishing).
        self.publish_memory();
        if !self.over_budget() {
            return Ok(());
        }
        let policy = self.config.eviction.policy();
        if policy == EvictionPolicy::NoEviction {
            return Err(EngineError::OutOfMemory);
        }
        self.evictor.borrow_mut().follow(policy);
        let shards = self.evictable_shards();
        let mut evicted = 0;
        let mut nothing_to_evict = false;
        // `over_budget` reads the other cores' figures, which change under this loop: it may
        // turn false before the first eviction, and that is room, not a refusal.
        while evicted < EVICTIONS_PER_CALL_MAX && self.over_budget() {
            let Some(freed) = self.evict_one(policy, &shards) else {
                nothing_to_evict = true;
                break;
            };
            self.memory.sub_used(self.id, freed);
            evicted += 1;
        }
        if evicted > 0 {
            self.memory.add_evicted(self.id, evicted as u64);
            self.publish_memory();
        }
        if nothing_to_evict && evicted == 0 {
            return Err(EngineError::OutOfMemory);
        }
        Ok(())
    }

    /// Evicts `key` unless a transaction holds it (its part, not yet committed, must not be
    /// followed in the log by another change of the key; docs/transactions.md).
    fn evict_unheld(&self, shard: &Shard<DmaStorage>, key: &[u8], volatile: bool) -> Option<u64> {
        let held = self.locks.borrow().blocked(key, crate::runtime::txn::NO_TXN).is_some();
        if held {
            return None;
        }
        shard.evict(key, volatile)
    }

    /// Evicts one key from `shards` (with their key counts when `make_room` began) by
    /// `policy`; the bytes freed, `None` if there is nothing to evict.
    fn evict_one(
        &self,
        policy: EvictionPolicy,
        shards: &[(Rc<Shard<DmaStorage>>, usize)],
    ) -> Option<u64> {
        if shards.is_empty() {
            return None;
        }
        let volatile = policy.volatile_only();
        let soonest_expiring = || {
            let (_, shard, key) = shards
                .iter()
                .filter_map(|(s, _)| s.soonest_expiring().map(|(at, k)| (at, s, k)))
                .min_by_key(|(at, _, _)| *at)?;
            self.evict_unheld(shard, &key, volatile)
        };
        if policy == EvictionPolicy::VolatileTtl {
            return soonest_expiring();
        }
        let samples = self.config.eviction.samples();
        let total: usize = shards.iter().map(|(_, n)| n).sum();
        let now = self.clock.now_ms();
        let mut evictor = self.evictor.borrow_mut();
        // A few rounds of sampling: a volatile policy may find no candidate in one.
        for _ in 0..4 {
            let mut pick = evictor.coin.below(total);
            let (shard, _) = shards
                .iter()
                .find(|(_, n)| {
                    let here = pick < *n;
                    pick = pick.saturating_sub(*n);
                    here
                })
                .expect("the pick is below the total");
            let number = shard.number();
            let mut sampled: Vec<(u64, Key)> = Vec::with_capacity(samples);
            shard.sample(samples, volatile, |k, e| sampled.push((policy.score(e, now), k.clone())));
            if matches!(policy, EvictionPolicy::AllKeysRandom | EvictionPolicy::VolatileRandom) {
                if let Some(freed) =
                    sampled.first().and_then(|(_, k)| self.evict_unheld(shard, k, volatile))
                {
                    return Some(freed);
                }
                continue;
            }
            for (score, key) in &sampled {
                evictor.offer(*score, number, key);
            }
            while let Some(best) = evictor.pool.pop() {
                let owner = shards.iter().find(|(s, _)| s.number() == best.shard);
                // The key may have gone, or lost its expiry, since it was sampled.
                if let Some(freed) =
                    owner.and_then(|(s, _)| self.evict_unheld(s, &best.key, volatile))
                {
                    return Some(freed);
                }
            }
        }
        // Sampling all keys found none with an expiry (they are rare): the soonest to expire
        // is as good a volatile candidate as any, and found exactly.
        if volatile {
            return soonest_expiring();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{Keyspace, NoLog, SetExpiry, SetOptions};

    #[test]
    fn policy_names_round_trip_like_redis() {
        for p in EvictionPolicy::ALL {
            assert_eq!(EvictionPolicy::parse(p.name()), Some(p));
            assert_eq!(EvictionPolicy::parse(&p.name().to_uppercase()), Some(p));
        }
        assert_eq!(EvictionPolicy::parse("lru"), None);
        let s = EvictionSettings::default();
        assert_eq!(s.policy(), EvictionPolicy::NoEviction);
        s.set_policy(EvictionPolicy::VolatileTtl);
        assert_eq!(s.policy(), EvictionPolicy::VolatileTtl);
        s.set_samples(1000);
        assert_eq!(s.samples(), MAXMEMORY_SAMPLES_MAX);
    }

    #[test]
    fn the_pool_keeps_the_best_candidates() {
        let mut e = Evictor::new(0);
        let keys: Vec<Key> = (0..40).map(|i| Rc::from(format!("k{i}").as_bytes())).collect();
        for (i, k) in keys.iter().enumerate() {
            e.offer((i * 7 % 40) as u64, 1, k);
            e.offer((i * 7 % 40) as u64, 1, k); // a second offer of the same key is ignored
        }
        assert_eq!(e.pool.len(), EVICTION_POOL_SIZE);
        let scores: Vec<u64> = e.pool.iter().map(|c| c.score).collect();
        assert_eq!(scores, (24..40).collect::<Vec<u64>>());
    }

    /// A candidate waiting in the pool keeps its rank: a key last used at 0 s, sampled at 3 s,
    /// still beats a key last used at 5 s and sampled at 10 s (by idle time, 3 < 5, it lost).
    #[test]
    fn a_candidate_sampled_long_ago_keeps_its_rank() {
        let mut ks = Keyspace::new();
        let opts = SetOptions { expiry: SetExpiry::Clear, ..SetOptions::PLAIN };
        ks.set(b"cold", vec![0; 8], opts, 0, &mut NoLog).unwrap();
        ks.set(b"hot", vec![0; 8], opts, 5_000, &mut NoLog).unwrap();
        for policy in [EvictionPolicy::AllKeysLru, EvictionPolicy::AllKeysLfu] {
            let cold = policy.score(ks.peek(b"cold").unwrap(), 3_000);
            let hot = policy.score(ks.peek(b"hot").unwrap(), 10_000);
            assert!(cold > hot, "{policy:?}: cold {cold} <= hot {hot}");
        }
    }

    /// Sampled LRU with a pool approximates true LRU: filling a keyspace's worth of new keys
    /// past a limit, the keys used most recently are the ones that stay.
    #[test]
    fn sampled_lru_keeps_recent_keys() {
        let mut ks = Keyspace::new();
        let mut evictor = Evictor::new(0);
        let policy = EvictionPolicy::AllKeysLru;
        let limit = 1000;
        let opts = SetOptions { expiry: SetExpiry::Clear, ..SetOptions::PLAIN };
        // Key i is written at second i / 10 (old ones idle longest).
        for i in 0..3000u64 {
            let now = i / 10 * 1000;
            ks.set(format!("k{i}").as_bytes(), vec![0; 8], opts, now, &mut NoLog).unwrap();
            while ks.len() > limit {
                let mut sampled = Vec::new();
                ks.sample(5, false, |k, e| sampled.push((policy.score(e, now), k.clone())));
                for (s, k) in &sampled {
                    evictor.offer(*s, 0, k);
                }
                while let Some(best) = evictor.pool.pop() {
                    if ks.remove_logged(&best.key, &mut NoLog) {
                        break;
                    }
                }
            }
        }
        let recent = (2000..3000u64).filter(|i| ks.peek(format!("k{i}").as_bytes()).is_some());
        // True LRU would keep all 1000; Redis's approximation with 5 samples keeps most.
        let kept = recent.count();
        assert!(kept > 800, "kept {kept} of the 1000 most recent keys");
    }
}
