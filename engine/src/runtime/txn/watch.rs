//! WATCH: which connections watch which keys of this core, and the flag each one's EXEC reads.
//!
//! A watch is registered on the core that owns the key. That core marks the watcher's flag
//! when the key changes: a write that changed it (`touched`), a key that was live when
//! watched and is gone or expired when EXEC checks (`check_gone`: expiry, eviction, FLUSHALL,
//! as Redis 7 counts them), or the key's range leaving this core (`keys_left`: writes on its
//! new core would not be seen here, so the watch fails rather than miss one). A flag once set
//! stays set: EXEC returns a null array.
//!
//! Invariant: the registry holds at most `WATCHED_KEYS_PER_CORE_MAX` entries; watches of a
//! connection that ended without UNWATCH are dropped when the registry is next pruned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Most (key, watcher) entries one core holds. A WATCH past it gets an error.
pub const WATCHED_KEYS_PER_CORE_MAX: usize = 1_000_000;

/// Shared by a connection and every core holding one of its watches.
#[derive(Debug, Default)]
pub struct WatchFlag {
    dirty: AtomicBool,
    /// The connection ended or unwatched: its entries may go.
    abandoned: AtomicBool,
}

impl WatchFlag {
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::SeqCst)
    }

    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::SeqCst);
    }

    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }

    fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }
}

struct Watcher {
    id: u64,
    flag: Arc<WatchFlag>,
    /// The key was live when watched (an expiry or delete after that counts as a change).
    live: bool,
}

/// One core's watches.
#[derive(Default)]
pub struct WatchRegistry {
    keys: HashMap<Vec<u8>, Vec<Watcher>, ahash::RandomState>,
    entries: usize,
    /// Entries at which abandoned watches are next swept out.
    prune_at: usize,
}

/// The registry refused a watch.
#[derive(Debug, PartialEq, Eq)]
pub struct RegistryFull;

impl WatchRegistry {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    #[inline]
    pub fn is_watched(&self, key: &[u8]) -> bool {
        self.entries > 0 && self.keys.contains_key(key)
    }

    /// Registers watch `id` of `key`; `live` says whether the key is live now.
    pub fn add(
        &mut self,
        key: &[u8],
        id: u64,
        flag: &Arc<WatchFlag>,
        live: bool,
    ) -> Result<(), RegistryFull> {
        if self.entries >= self.prune_at || self.entries >= WATCHED_KEYS_PER_CORE_MAX {
            self.prune();
            self.prune_at = (self.entries * 2).clamp(1024, WATCHED_KEYS_PER_CORE_MAX);
        }
        let watchers = self.keys.entry(key.to_vec()).or_default();
        if watchers.iter().any(|w| w.id == id) {
            return Ok(());
        }
        if self.entries >= WATCHED_KEYS_PER_CORE_MAX {
            if watchers.is_empty() {
                self.keys.remove(key);
            }
            return Err(RegistryFull);
        }
        watchers.push(Watcher { id, flag: flag.clone(), live });
        self.entries += 1;
        Ok(())
    }

    /// Removes watch `id` of `keys`.
    pub fn remove(&mut self, id: u64, keys: &[Vec<u8>]) {
        for key in keys {
            if let Some(ws) = self.keys.get_mut(key.as_slice()) {
                let before = ws.len();
                ws.retain(|w| w.id != id);
                self.entries -= before - ws.len();
                if ws.is_empty() {
                    self.keys.remove(key.as_slice());
                }
            }
        }
    }

    /// `key` was changed: every watch of it fails.
    #[inline]
    pub fn touched(&self, key: &[u8]) {
        if let Some(ws) = self.keys.get(key) {
            ws.iter().for_each(|w| w.flag.mark_dirty());
        }
    }

    /// At EXEC, on the core that serves `key` now: watch `id` of `key` fails if the key was
    /// live when watched and is not now, and if this core does not hold the watch at all
    /// (it was registered where the key used to be).
    pub fn check_gone(&self, key: &[u8], id: u64, flag: &WatchFlag, live_now: bool) {
        match self.keys.get(key).and_then(|ws| ws.iter().find(|w| w.id == id)) {
            Some(w) if w.live && !live_now => w.flag.mark_dirty(),
            Some(_) => {}
            None => flag.mark_dirty(),
        }
    }

    /// The map changed: watches of keys for which `left` is true fail and are dropped (this
    /// core no longer sees their writes).
    pub fn keys_left(&mut self, left: impl Fn(&[u8]) -> bool) {
        let mut dropped = 0;
        self.keys.retain(|key, ws| {
            if !left(key) {
                return true;
            }
            ws.iter().for_each(|w| w.flag.mark_dirty());
            dropped += ws.len();
            false
        });
        self.entries -= dropped;
    }

    fn prune(&mut self) {
        let mut dropped = 0;
        self.keys.retain(|_, ws| {
            let before = ws.len();
            ws.retain(|w| !w.flag.is_abandoned());
            dropped += before - ws.len();
            !ws.is_empty()
        });
        self.entries -= dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_fails_every_watch_of_the_key_and_only_those() {
        let mut r = WatchRegistry::default();
        let (a, b) = (Arc::new(WatchFlag::default()), Arc::new(WatchFlag::default()));
        r.add(b"x", 1, &a, true).unwrap();
        r.add(b"x", 2, &b, false).unwrap();
        r.add(b"y", 2, &b, false).unwrap();
        r.touched(b"y");
        assert!(!a.is_dirty() && b.is_dirty());
        r.remove(2, &[b"x".to_vec(), b"y".to_vec()]);
        assert_eq!(r.entries(), 1);
        assert!(!r.is_watched(b"y"));
    }

    #[test]
    fn a_key_live_when_watched_and_gone_at_exec_fails_the_watch() {
        let mut r = WatchRegistry::default();
        let (live, absent) = (Arc::new(WatchFlag::default()), Arc::new(WatchFlag::default()));
        r.add(b"x", 1, &live, true).unwrap();
        r.add(b"x", 2, &absent, false).unwrap();
        r.check_gone(b"x", 1, &live, true);
        assert!(!live.is_dirty());
        r.check_gone(b"x", 1, &live, false);
        r.check_gone(b"x", 2, &absent, false);
        assert!(live.is_dirty() && !absent.is_dirty(), "absent then, absent now: unchanged");
        let elsewhere = Arc::new(WatchFlag::default());
        r.check_gone(b"x", 3, &elsewhere, true);
        assert!(elsewhere.is_dirty(), "a watch this core does not hold fails");
    }

    #[test]
    fn keys_that_leave_fail_their_watches_and_abandoned_ones_are_pruned() {
        let mut r = WatchRegistry::default();
        let (a, b) = (Arc::new(WatchFlag::default()), Arc::new(WatchFlag::default()));
        r.add(b"moving:1", 1, &a, true).unwrap();
        r.add(b"staying", 2, &b, true).unwrap();
        r.keys_left(|k| k.starts_with(b"moving"));
        assert!(a.is_dirty() && !b.is_dirty());
        assert_eq!(r.entries(), 1);
        b.abandon();
        r.prune();
        assert!(r.is_empty());
    }
}
