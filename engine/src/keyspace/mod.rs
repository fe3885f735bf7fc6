//! A shard's in-memory keyspace: keys -> string values with optional absolute expiry, and the
//! semantics of every string command. Pure: no I/O, time is passed in. Every mutation is
//! described to a [`LogSink`] as a [`Record`] *after* it is applied, so the WAL holds exactly
//! what changed.
//!
//! Invariant: `expiries` holds `(at, key)` for exactly the entries with `expire_at_ms != 0`.
//! Invariant: `used_bytes` is the sum of `entry_cost` over all entries.
//! Invariant: `keys[e.slot]` is the key of entry `e`, and `keys` holds every key once (so a
//! uniformly random key, for eviction's sampling, is one index away).
//! `Keyspace::assert_invariants` checks these and the position index's (O(n), for tests).

use crate::error::{EngineError, Result};
use crate::log::record::Record;
use crate::routing::Position;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// Largest string value (Redis's `proto-max-bulk-len` default, 512 MiB).
pub const VALUE_LEN_MAX: usize = 512 * 1024 * 1024;
/// Bookkeeping bytes charged per entry on top of key and value: its hash-table slot, the
/// key's and the value's allocations (headers, rounding), the position index and the sampling
/// array. Measured, not guessed: `engine/tests/memory_per_key.rs` counts the heap as glibc's
/// malloc charges it while a keyspace fills (225-262 bytes, mean 246, with 100-byte values)
/// and fails if this is more than 15% off. It was 64 until that test showed the real cost,
/// so `maxmemory` let the process grow to about 2.6 times the limit.
pub const ENTRY_OVERHEAD_BYTES: u64 = 240;
/// Draws per wanted sample when sampling only keys with an expiry.
pub const VOLATILE_DRAWS_PER_SAMPLE: usize = 4;

pub type Key = Rc<[u8]>;

mod access;
mod index;
mod values;

pub use access::{clock_s, Access, Coin, LFU_DECAY_S, LFU_INIT, LFU_LOG_FACTOR};
pub use index::PositionIndex;
pub use values::*;

/// A stored value.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Rc<Vec<u8>>,
    /// Absolute expiry, ms since the Unix epoch; 0 = persistent.
    pub expire_at_ms: u64,
    /// Last access and frequency (eviction, OBJECT IDLETIME / FREQ).
    pub access: Access,
    /// Where the key sits in `Keyspace::keys`.
    slot: u32,
}

/// Receives the records describing mutations.
pub trait LogSink {
    fn log(&mut self, record: &Record<'_>);
}

/// A sink that drops records (replay, tests).
pub struct NoLog;
impl LogSink for NoLog {
    fn log(&mut self, _: &Record<'_>) {}
}

/// SET's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    /// Only if the key does not exist (NX).
    IfAbsent,
    /// Only if the key exists (XX).
    IfPresent,
}

/// SET's effect on the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetExpiry {
    /// Remove any expiry (plain SET).
    Clear,
    /// Keep the current expiry (KEEPTTL).
    Keep,
    /// Expire at this absolute time in ms.
    At(u64),
}

/// EXPIRE's condition (Redis 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireCondition {
    Always,
    /// Only if the key has no expiry (NX).
    IfNone,
    /// Only if the key has an expiry (XX).
    IfSome,
    /// Only if the new expiry is greater (GT); no expiry counts as infinite.
    IfGreater,
    /// Only if the new expiry is less (LT); no expiry counts as infinite.
    IfLess,
    /// XX and LT together: the key has an expiry and the new one is less.
    IfSomeAndLess,
}

/// What a key's time to live is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Missing,
    Persistent,
    /// Remaining milliseconds.
    Ms(u64),
}

/// SET's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOptions {
    pub condition: SetCondition,
    pub expiry: SetExpiry,
    /// Return the previous value (SET ... GET).
    pub return_old: bool,
}

impl SetOptions {
    /// Plain SET: always, no expiry, no old value.
    pub const PLAIN: SetOptions =
        SetOptions { condition: SetCondition::Always, expiry: SetExpiry::Clear, return_old: false };
}

/// Result of SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// The value was written (the condition held).
    pub applied: bool,
    /// The previous value, when asked for (SET ... GET).
    pub old: Option<Vec<u8>>,
}

/// Cost charged to `used_bytes` for one entry.
pub fn entry_cost(key: &[u8], value: &[u8]) -> u64 {
    key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD_BYTES
}

/// The keyspace of one shard.
pub struct Keyspace {
    map: HashMap<Key, Entry, ahash::RandomState>,
    expiries: BTreeSet<(u64, Key)>,
    /// Every key by position (ranges, SCAN, RANDOMKEY).
    index: PositionIndex,
    used_bytes: u64,
    /// Every key, densely, for uniform sampling (see the invariant).
    keys: Vec<Key>,
    /// The LFU counter's coin and the sampler's dice.
    coin: Coin,
    /// The latest time an operation passed in: the access time of entries put without one
    /// (replay, snapshot loading, migration).
    now_ms: u64,
    /// Expired keys removed (lazily or actively) since `take_expired` last asked.
    expired: u64,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::with_separator(crate::routing::PARTITION_SEPARATOR_DEFAULT)
    }
}

fn is_expired(entry: &Entry, now_ms: u64) -> bool {
    entry.expire_at_ms != 0 && entry.expire_at_ms <= now_ms
}

impl Keyspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyspace whose keys' partitions end at `separator` (it decides their positions).
    pub fn with_separator(separator: u8) -> Self {
        Keyspace {
            map: HashMap::default(),
            expiries: BTreeSet::new(),
            index: PositionIndex::new(separator),
            used_bytes: 0,
            keys: Vec::new(),
            coin: Coin::seeded(0x5EED_CAFE_F00D),
            now_ms: 0,
            expired: 0,
        }
    }

    /// The ordered index of the keys (expired ones not yet collected included).
    pub fn index(&self) -> &PositionIndex {
        &self.index
    }

    /// Live and not yet collected expired keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Keys that carry an expiry.
    pub fn expiring_len(&self) -> usize {
        self.expiries.len()
    }

    /// The time entries put without one are stamped with (recovery, migration).
    pub fn set_now(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Counts every entry as accessed once at `now_ms` (after recovery: files hold no access
    /// history), and stamps later entries put without a time with it.
    pub fn reset_access(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        for entry in self.map.values_mut() {
            entry.access = Access::new(now_ms);
        }
    }

    /// The live entry of `key`, removing it first if it has expired; counts an access.
    fn live(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        self.now_ms = now_ms;
        let expired = match self.map.get(key) {
            None => return None,
            Some(e) => is_expired(e, now_ms),
        };
        if expired {
            self.remove_entry(key);
            self.expired += 1;
            return None;
        }
        let coin = self.coin.next_u32();
        let entry = self.map.get_mut(key)?;
        entry.access = entry.access.touched(now_ms, coin);
        Some(entry)
    }

    fn remove_entry(&mut self, key: &[u8]) -> Option<Entry> {
        let (k, e) = self.detach(key)?;
        if e.expire_at_ms != 0 {
            let removed = self.expiries.remove(&(e.expire_at_ms, k));
            debug_assert!(removed);
        }
        Some(e)
    }

    /// Removes `key` from everything but the expiry index (the caller sees to that).
    fn detach(&mut self, key: &[u8]) -> Option<(Key, Entry)> {
        let (k, e) = self.map.remove_entry(key)?;
        let slot = e.slot as usize;
        debug_assert!(Rc::ptr_eq(&self.keys[slot], &k));
        self.keys.swap_remove(slot);
        if let Some(moved) = self.keys.get(slot) {
            self.map.get_mut(moved).expect("listed keys are mapped").slot = slot as u32;
        }
        self.index.remove(&k);
        self.used_bytes -= entry_cost(&k, &e.value);
        Some((k, e))
    }

    /// Inserts or replaces, keeping the expiry index and memory count right.
    fn put(&mut self, key: &[u8], value: Rc<Vec<u8>>, expire_at_ms: u64) {
        if let Some(old) = self.map.get_mut(key) {
            self.used_bytes -= entry_cost(key, &old.value);
            self.used_bytes += entry_cost(key, &value);
            let previous = std::mem::replace(&mut old.expire_at_ms, expire_at_ms);
            old.value = value;
            if previous != expire_at_ms {
                let k = self.keys[old.slot as usize].clone();
                if previous != 0 {
                    self.expiries.remove(&(previous, k.clone()));
                }
                if expire_at_ms != 0 {
                    self.expiries.insert((expire_at_ms, k));
                }
            }
            return;
        }
        let k: Key = Rc::from(key);
        self.index.insert(&k);
        self.used_bytes += entry_cost(key, &value);
        if expire_at_ms != 0 {
            self.expiries.insert((expire_at_ms, k.clone()));
        }
        let slot = u32::try_from(self.keys.len()).expect("fewer than 2^32 keys in a shard");
        self.keys.push(k.clone());
        self.map.insert(k, Entry { value, expire_at_ms, access: Access::new(self.now_ms), slot });
    }

    fn set_expiry(&mut self, key: &[u8], at: u64) {
        let (k, entry) = self.map.get_key_value(key).expect("set_expiry on a missing key");
        let (k, old) = (k.clone(), entry.expire_at_ms);
        if old != 0 {
            self.expiries.remove(&(old, k.clone()));
        }
        if at != 0 {
            self.expiries.insert((at, k.clone()));
        }
        self.map.get_mut(key).unwrap().expire_at_ms = at;
    }

    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<Rc<Vec<u8>>> {
        self.live(key, now_ms).map(|e| e.value.clone())
    }

    pub fn exists(&mut self, key: &[u8], now_ms: u64) -> bool {
        self.live(key, now_ms).is_some()
    }

    /// The key's expiry as an absolute time: `Ttl::Ms` holds ms since the Unix epoch.
    pub fn expire_time(&mut self, key: &[u8], now_ms: u64) -> Ttl {
        match self.live(key, now_ms) {
            None => Ttl::Missing,
            Some(e) if e.expire_at_ms == 0 => Ttl::Persistent,
            Some(e) => Ttl::Ms(e.expire_at_ms),
        }
    }

    pub fn ttl(&mut self, key: &[u8], now_ms: u64) -> Ttl {
        match self.live(key, now_ms) {
            None => Ttl::Missing,
            Some(e) if e.expire_at_ms == 0 => Ttl::Persistent,
            Some(e) => Ttl::Ms(e.expire_at_ms - now_ms),
        }
    }

    pub fn set(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        options: SetOptions,
        now_ms: u64,
        log: &mut impl LogSink,
    ) -> Result<SetOutcome> {
        let SetOptions { condition, expiry, return_old } = options;
        if value.len() > VALUE_LEN_MAX {
            return Err(EngineError::ValueTooLarge {
                len: value.len() as u64,
                max: VALUE_LEN_MAX as u64,
            });
        }
        let current = self.live(key, now_ms).map(|e| (e.value.clone(), e.expire_at_ms));
        let old = if return_old { current.as_ref().map(|(v, _)| v.to_vec()) } else { None };
        let holds = match condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => current.is_none(),
            SetCondition::IfPresent => current.is_some(),
        };
        if !holds {
            return Ok(SetOutcome { applied: false, old });
        }
        let expire_at_ms = match expiry {
            SetExpiry::Clear => 0,
            SetExpiry::Keep => current.as_ref().map_or(0, |(_, at)| *at),
            SetExpiry::At(at) => at.max(1),
        };
        if expire_at_ms != 0 && expire_at_ms <= now_ms {
            // Already expired: the key is gone (Redis deletes it and propagates DEL).
            if self.remove_entry(key).is_some() {
                log.log(&Record::Delete { key });
            }
            return Ok(SetOutcome { applied: true, old });
        }
        log.log(&Record::Put { key, value: &value, expire_at_ms });
        self.put(key, Rc::new(value), expire_at_ms);
        Ok(SetOutcome { applied: true, old })
    }

    /// Removes the key; true if it existed (and had not expired).
    pub fn del(&mut self, key: &[u8], now_ms: u64, log: &mut impl LogSink) -> bool {
        if self.live(key, now_ms).is_none() {
            return false;
        }
        self.remove_entry(key);
        log.log(&Record::Delete { key });
        true
    }

    /// Adds `delta` to the integer value (0 if absent), keeping the expiry.
    pub fn incr_by(
        &mut self,
        key: &[u8],
        delta: i64,
        now_ms: u64,
        log: &mut impl LogSink,
    ) -> Result<i64> {
        let (current, expire_at_ms) = match self.live(key, now_ms) {
            None => (0, 0),
            Some(e) => (parse_i64(&e.value).ok_or(EngineError::NotAnInteger)?, e.expire_at_ms),
        };
        let next = current.checked_add(delta).ok_or(EngineError::Overflow)?;
        let value = next.to_string().into_bytes();
        log.log(&Record::Put { key, value: &value, expire_at_ms });
        self.put(key, Rc::new(value), expire_at_ms);
        Ok(next)
    }

    /// Replaces the value with `f(current)` (None if absent), keeping the expiry; for
    /// read-modify-write commands whose logic lives above the engine (INCRBYFLOAT, SETRANGE).
    pub fn update(
        &mut self,
        key: &[u8],
        now_ms: u64,
        log: &mut impl LogSink,
        f: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<usize>> {
        let (current, expire_at_ms) = match self.live(key, now_ms) {
            None => (None, 0),
            Some(e) => (Some(e.value.clone()), e.expire_at_ms),
        };
        let Some(value) = f(current.as_deref().map(|v| v.as_slice()))? else {
            return Ok(None);
        };
        if value.len() > VALUE_LEN_MAX {
            return Err(EngineError::ValueTooLarge {
                len: value.len() as u64,
                max: VALUE_LEN_MAX as u64,
            });
        }
        let len = value.len();
        log.log(&Record::Put { key, value: &value, expire_at_ms });
        self.put(key, Rc::new(value), expire_at_ms);
        Ok(Some(len))
    }

    /// Appends to the value (creating it); returns the new length.
    pub fn append(
        &mut self,
        key: &[u8],
        suffix: &[u8],
        now_ms: u64,
        log: &mut impl LogSink,
    ) -> Result<usize> {
        let current_len = self.live(key, now_ms).map(|e| e.value.len());
        let new_len = current_len.unwrap_or(0) + suffix.len();
        if new_len > VALUE_LEN_MAX {
            return Err(EngineError::ValueTooLarge {
                len: new_len as u64,
                max: VALUE_LEN_MAX as u64,
            });
        }
        if current_len.is_some() {
            log.log(&Record::Append { key, suffix });
        } else {
            // Logged as a Put: at replay an expired entry may still be in the map (replay never
            // expires), and an Append would extend it. (Found by the model test.)
            log.log(&Record::Put { key, value: suffix, expire_at_ms: 0 });
        }
        Ok(self.apply_append(key, suffix))
    }

    fn apply_append(&mut self, key: &[u8], suffix: &[u8]) -> usize {
        if let Some(entry) = self.map.get_mut(key) {
            // Copy-on-write: a snapshot in progress may share the old value.
            Rc::make_mut(&mut entry.value).extend_from_slice(suffix);
            self.used_bytes += suffix.len() as u64;
            entry.value.len()
        } else {
            self.put(key, Rc::new(suffix.to_vec()), 0);
            suffix.len()
        }
    }

    /// Sets the expiry to `at_ms` if the condition holds; an expiry in the past deletes the key.
    /// Returns whether the expiry was set (or the key deleted).
    pub fn expire(
        &mut self,
        key: &[u8],
        at_ms: u64,
        condition: ExpireCondition,
        now_ms: u64,
        log: &mut impl LogSink,
    ) -> bool {
        let Some(entry) = self.live(key, now_ms) else {
            return false;
        };
        let current = entry.expire_at_ms;
        let holds = match condition {
            ExpireCondition::Always => true,
            ExpireCondition::IfNone => current == 0,
            ExpireCondition::IfSome => current != 0,
            ExpireCondition::IfGreater => current != 0 && at_ms > current,
            ExpireCondition::IfLess => current == 0 || at_ms < current,
            ExpireCondition::IfSomeAndLess => current != 0 && at_ms < current,
        };
        if !holds {
            return false;
        }
        if at_ms <= now_ms {
            self.remove_entry(key);
            log.log(&Record::Delete { key });
            return true;
        }
        log.log(&Record::Expire { key, expire_at_ms: at_ms });
        self.set_expiry(key, at_ms);
        true
    }

    /// Returns the value and deletes the key (GETDEL).
    pub fn get_del(
        &mut self,
        key: &[u8],
        now_ms: u64,
        log: &mut impl LogSink,
    ) -> Option<Rc<Vec<u8>>> {
        let value = self.live(key, now_ms)?.value.clone();
        self.remove_entry(key);
        log.log(&Record::Delete { key });
        Some(value)
    }

    /// Returns the value and changes its expiry (GETEX); `At` in the past deletes the key.
    pub fn get_ex(
        &mut self,
        key: &[u8],
        expiry: Option<SetExpiry>,
        now_ms: u64,
        log: &mut impl LogSink,
    ) -> Option<Rc<Vec<u8>>> {
        let entry = self.live(key, now_ms)?;
        let (value, current) = (entry.value.clone(), entry.expire_at_ms);
        match expiry {
            None | Some(SetExpiry::Keep) => {}
            Some(SetExpiry::Clear) => {
                if current != 0 {
                    log.log(&Record::Expire { key, expire_at_ms: 0 });
                    self.set_expiry(key, 0);
                }
            }
            Some(SetExpiry::At(at)) if at <= now_ms => {
                self.remove_entry(key);
                log.log(&Record::Delete { key });
            }
            Some(SetExpiry::At(at)) => {
                log.log(&Record::Expire { key, expire_at_ms: at });
                self.set_expiry(key, at);
            }
        }
        Some(value)
    }

    pub fn strlen(&mut self, key: &[u8], now_ms: u64) -> usize {
        self.live(key, now_ms).map_or(0, |e| e.value.len())
    }

    /// GETRANGE: inclusive indices, negative from the end, clamped; empty when out of range.
    pub fn get_range(&mut self, key: &[u8], start: i64, end: i64, now_ms: u64) -> Vec<u8> {
        let Some(e) = self.live(key, now_ms) else { return Vec::new() };
        let len = e.value.len() as i64;
        if (start < 0 && end < 0 && start > end) || len == 0 {
            return Vec::new();
        }
        let start = if start < 0 { (len + start).max(0) } else { start };
        let end = if end < 0 { (len + end).max(0) } else { end.min(len - 1) };
        if start > end || start >= len {
            return Vec::new();
        }
        e.value[start as usize..=end as usize].to_vec()
    }

    /// Removes the expiry; true if there was one.
    pub fn persist(&mut self, key: &[u8], now_ms: u64, log: &mut impl LogSink) -> bool {
        match self.live(key, now_ms) {
            Some(e) if e.expire_at_ms != 0 => {
                log.log(&Record::Expire { key, expire_at_ms: 0 });
                self.set_expiry(key, 0);
                true
            }
            _ => false,
        }
    }

    /// Removes every key.
    pub fn clear(&mut self, log: &mut impl LogSink) {
        log.log(&Record::Clear);
        self.map.clear();
        self.expiries.clear();
        self.index.clear();
        self.keys.clear();
        self.used_bytes = 0;
    }

    /// Active expiry: removes up to `budget` keys whose expiry is at or before `now_ms`, the
    /// earliest first. Returns how many it removed. Not logged: the expiry is in the log already.
    pub fn remove_expired(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget && self.has_expired(now_ms) {
            let (_, key) = self.expiries.pop_first().expect("has_expired saw a first entry");
            self.detach(&key);
            removed += 1;
        }
        self.expired += removed as u64;
        removed
    }

    /// Expired keys removed since the last call (INFO's `expired_keys`).
    pub fn take_expired(&mut self) -> u64 {
        std::mem::take(&mut self.expired)
    }

    /// Whether any key's expiry is at or before `now_ms`.
    pub fn has_expired(&self, now_ms: u64) -> bool {
        self.expiries.first().is_some_and(|(at, _)| *at <= now_ms)
    }

    /// Calls `f` with up to `n` keys drawn uniformly at random (with replacement), for
    /// eviction. With `volatile_only`, only keys with an expiry are offered: draws that find
    /// a persistent key are retried, at most `VOLATILE_DRAWS_PER_SAMPLE` times per sample, so
    /// a keyspace with few expiring keys offers fewer (`soonest_expiring` finds those).
    pub fn sample(&mut self, n: usize, volatile_only: bool, mut f: impl FnMut(&Key, &Entry)) {
        if self.keys.is_empty() || (volatile_only && self.expiries.is_empty()) {
            return;
        }
        let draws = if volatile_only { n * VOLATILE_DRAWS_PER_SAMPLE } else { n };
        let mut offered = 0;
        for _ in 0..draws {
            let key = &self.keys[self.coin.below(self.keys.len())];
            let entry = &self.map[key];
            if volatile_only && entry.expire_at_ms == 0 {
                continue;
            }
            f(key, entry);
            offered += 1;
            if offered == n {
                break;
            }
        }
    }

    /// The key whose expiry comes first, with that expiry.
    pub fn soonest_expiring(&self) -> Option<(u64, Key)> {
        self.expiries.first().cloned()
    }

    /// Applies a replayed log record.
    pub fn apply_record(&mut self, record: &Record<'_>) {
        match *record {
            Record::Put { key, value, expire_at_ms } => {
                self.put(key, Rc::new(value.to_vec()), expire_at_ms)
            }
            Record::Delete { key } => {
                self.remove_entry(key);
            }
            Record::Expire { key, expire_at_ms } => {
                if self.map.contains_key(key) {
                    self.set_expiry(key, expire_at_ms);
                }
            }
            Record::Append { key, suffix } => {
                self.apply_append(key, suffix);
            }
            Record::Clear => self.clear(&mut NoLog),
            // A transaction's frame: its records reach here only once recovery knows it
            // committed (`shard::recover::TxnReplay`), so the markers change nothing.
            Record::TxnBegin { .. } | Record::TxnEnd { .. } | Record::TxnCommit { .. } => {}
        }
    }

    /// Puts an entry received from a migration, logged as one record.
    pub fn restore(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        expire_at_ms: u64,
        log: &mut impl LogSink,
    ) {
        log.log(&Record::Put { key, value: &value, expire_at_ms });
        self.put(key, Rc::new(value), expire_at_ms);
    }

    /// Removes a key whether or not it has expired, logged; true if it was present.
    pub fn remove_logged(&mut self, key: &[u8], log: &mut impl LogSink) -> bool {
        if self.remove_entry(key).is_none() {
            return false;
        }
        log.log(&Record::Delete { key });
        true
    }

    /// The live entry of a key without removing it if expired (`None` then), for migration.
    pub fn peek_live(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.map.get(key).filter(|e| !is_expired(e, now_ms))
    }

    /// Loads one entry from a snapshot.
    pub fn load(&mut self, key: &[u8], value: Vec<u8>, expire_at_ms: u64) {
        self.put(key, Rc::new(value), expire_at_ms);
    }

    /// Iterates every entry, expired ones included.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Entry)> {
        self.map.iter()
    }

    /// The entry of a key, expired or not (`None` if absent).
    pub fn peek(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Checks every invariant of the module doc against the entries, recomputing each index
    /// and counter from the map: the expiry index holds exactly the keys with an expiry, at
    /// their expiry; `used_bytes` is the sum of the entries' costs; `keys` holds every key
    /// once, each at its entry's slot; the position index holds exactly the map's keys, each at
    /// its position, with its per-partition counts. Panics naming the first broken one.
    ///
    /// O(n) in keys: for tests and checks (the model test calls it after every step), not for
    /// the data path.
    pub fn assert_invariants(&self) {
        if let Some(broken) = self.broken_invariant() {
            panic!("keyspace invariant broken: {broken}");
        }
    }

    /// The first invariant `assert_invariants` finds broken, if any.
    fn broken_invariant(&self) -> Option<String> {
        let mut expiring = 0;
        let mut used_bytes = 0;
        for (key, entry) in &self.map {
            used_bytes += entry_cost(key, &entry.value);
            if entry.expire_at_ms != 0 {
                expiring += 1;
                if !self.expiries.contains(&(entry.expire_at_ms, key.clone())) {
                    let at = entry.expire_at_ms;
                    return Some(format!("expiries: {key:?} expires at {at} but is not listed"));
                }
            }
            match self.keys.get(entry.slot as usize) {
                Some(listed) if Rc::ptr_eq(listed, key) => {}
                other => {
                    let slot = entry.slot;
                    return Some(format!("keys: slot {slot} of {key:?} holds {other:?}"));
                }
            }
            if !self.index_holds(key) {
                return Some(format!("index: {key:?} is not indexed"));
            }
        }
        if expiring != self.expiries.len() {
            let listed = self.expiries.len();
            return Some(format!("expiries: {listed} listed, {expiring} entries expire"));
        }
        if used_bytes != self.used_bytes {
            let counted = self.used_bytes;
            return Some(format!("used_bytes: {counted} counted, the entries cost {used_bytes}"));
        }
        if self.keys.len() != self.map.len() {
            let (listed, mapped) = (self.keys.len(), self.map.len());
            return Some(format!("keys: {listed} listed, {mapped} mapped"));
        }
        if self.index.len() != self.map.len() {
            let (indexed, mapped) = (self.index.len(), self.map.len());
            return Some(format!("index: {indexed} indexed, {mapped} mapped"));
        }
        self.index.broken_invariant()
    }

    /// Whether the position index holds `key` at its position.
    fn index_holds(&self, key: &Key) -> bool {
        let position = self.index.position(key);
        self.index.range(position, position).any(|(_, k)| k == key)
    }

    /// Every entry with a position in `lo..=hi`, shared (cheap: reference counts), in
    /// position order: one walk of that range of the index, not of the keyspace.
    pub fn share_range(&self, lo: Position, hi: Position) -> Vec<(Key, Entry)> {
        self.index
            .range(lo, hi)
            .map(|(_, k)| (k.clone(), self.map.get(k).expect("indexed keys are mapped").clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_i64_is_strict() {
        for ok in ["0", "1", "-1", "9223372036854775807", "-9223372036854775808", "10"] {
            assert_eq!(parse_i64(ok.as_bytes()), Some(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["", "-", "+1", "01", "-0", " 1", "1 ", "1.0", "9223372036854775808", "abc"] {
            assert_eq!(parse_i64(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn expiry_index_follows_entries() {
        let mut ks = Keyspace::new();
        let now = 1000;
        ks.set(
            b"a",
            b"1".to_vec(),
            SetOptions { expiry: SetExpiry::At(2000), ..SetOptions::PLAIN },
            now,
            &mut NoLog,
        )
        .unwrap();
        ks.set(
            b"b",
            b"1".to_vec(),
            SetOptions { expiry: SetExpiry::At(3000), ..SetOptions::PLAIN },
            now,
            &mut NoLog,
        )
        .unwrap();
        assert_eq!(ks.expiring_len(), 2);
        ks.set(
            b"a",
            b"2".to_vec(),
            SetOptions { expiry: SetExpiry::Keep, ..SetOptions::PLAIN },
            now,
            &mut NoLog,
        )
        .unwrap();
        assert_eq!(ks.ttl(b"a", now), Ttl::Ms(1000));
        ks.set(
            b"a",
            b"3".to_vec(),
            SetOptions { expiry: SetExpiry::Clear, ..SetOptions::PLAIN },
            now,
            &mut NoLog,
        )
        .unwrap();
        assert_eq!(ks.ttl(b"a", now), Ttl::Persistent);
        assert_eq!(ks.expiring_len(), 1);
        assert_eq!(ks.remove_expired(2999, 10), 0);
        assert_eq!(ks.remove_expired(3000, 10), 1);
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.used_bytes(), entry_cost(b"a", b"3"));
    }

    #[test]
    fn lazy_expiry_hides_and_removes() {
        let mut ks = Keyspace::new();
        ks.set(
            b"k",
            b"v".to_vec(),
            SetOptions { expiry: SetExpiry::At(10), ..SetOptions::PLAIN },
            5,
            &mut NoLog,
        )
        .unwrap();
        assert!(ks.exists(b"k", 9));
        assert!(!ks.exists(b"k", 10));
        assert_eq!(ks.len(), 0);
        assert_eq!(ks.used_bytes(), 0);
    }

    /// A keyspace with keys in two partitions, some expiring, after every kind of change.
    fn busy_keyspace() -> Keyspace {
        let mut ks = Keyspace::new();
        let at = |ms| SetOptions { expiry: SetExpiry::At(ms), ..SetOptions::PLAIN };
        for i in 0..20u64 {
            let key = format!("{}:{i}", if i % 2 == 0 { "user" } else { "app" });
            let options = if i % 3 == 0 { at(1000 + i) } else { SetOptions::PLAIN };
            ks.set(key.as_bytes(), vec![b'v'; i as usize], options, 0, &mut NoLog).unwrap();
        }
        ks.del(b"user:4", 0, &mut NoLog);
        ks.append(b"app:5", b"more", 0, &mut NoLog).unwrap();
        ks.expire(b"app:7", 5000, ExpireCondition::Always, 0, &mut NoLog);
        ks.persist(b"user:6", 0, &mut NoLog);
        ks.remove_expired(1003, 10);
        ks
    }

    #[test]
    fn invariants_hold_and_each_damage_is_named() {
        let ks = busy_keyspace();
        ks.assert_invariants();
        assert_eq!(ks.broken_invariant(), None);

        let mut ks = busy_keyspace();
        ks.used_bytes += 1;
        assert!(ks.broken_invariant().unwrap().starts_with("used_bytes:"));

        let mut ks = busy_keyspace();
        let (_, key) = ks.expiries.pop_first().unwrap();
        assert!(ks.broken_invariant().unwrap().starts_with("expiries:"), "{key:?}");

        let mut ks = busy_keyspace();
        let key = ks.keys[0].clone();
        ks.expiries.insert((1, key));
        assert!(ks.broken_invariant().unwrap().starts_with("expiries:"));

        let mut ks = busy_keyspace();
        ks.keys.swap(0, 1);
        assert!(ks.broken_invariant().unwrap().starts_with("keys:"));

        let mut ks = busy_keyspace();
        let key = ks.keys[2].clone();
        ks.index.remove(&key);
        assert!(ks.broken_invariant().unwrap().starts_with("index:"));

        let mut ks = busy_keyspace();
        let stray: Key = Rc::from(&b"stray"[..]);
        ks.index.insert(&stray);
        assert!(ks.broken_invariant().unwrap().starts_with("index:"));

        let ks = busy_keyspace();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut ks = ks;
            ks.used_bytes -= 1;
            ks.assert_invariants();
        }));
        assert!(result.is_err(), "assert_invariants panics on a broken invariant");
    }

    #[test]
    fn incr_errors() {
        let mut ks = Keyspace::new();
        assert_eq!(ks.incr_by(b"n", 5, 0, &mut NoLog), Ok(5));
        assert_eq!(ks.incr_by(b"n", i64::MAX, 0, &mut NoLog), Err(EngineError::Overflow));
        ks.set(
            b"s",
            b"x".to_vec(),
            SetOptions { expiry: SetExpiry::Clear, ..SetOptions::PLAIN },
            0,
            &mut NoLog,
        )
        .unwrap();
        assert_eq!(ks.incr_by(b"s", 1, 0, &mut NoLog), Err(EngineError::NotAnInteger));
    }
}
