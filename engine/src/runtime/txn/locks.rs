//! One core's key locks: what atomic work across cores (EXEC, a multi-key command whose keys
//! span cores) holds while it runs, and the queue of those waiting for them.
//!
//! A request is for a set of keys (a transaction's keys on this core) or for the whole core
//! (`Want::Core`: a backup's hold, a migration's pause, FLUSHALL and the keyspace-wide reads,
//! which must not see a transaction half applied). Requests are granted strictly in arrival
//! order: one that cannot be granted stops every later one, so neither a stream of small
//! transactions nor a whole-core request can starve the other (fair, FIFO).
//!
//! Invariant: a key is held by at most one transaction; `Want::Core` is granted only when no
//! key is held, and while it is held no key is granted.

use crate::migration::Gate;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::task::Waker;

/// Names one holder of locks (a transaction, or a whole-core request).
pub type TxnId = u64;

/// What a request wants.
#[derive(Debug, Clone)]
pub enum Want {
    Keys(Vec<Vec<u8>>),
    Core,
}

/// Where a waiting request learns it was granted, or withdrawn.
#[derive(Default)]
pub struct Grant {
    granted: Cell<bool>,
    withdrawn: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Grant {
    pub fn is_granted(&self) -> bool {
        self.granted.get()
    }

    /// `Some(true)` once granted, `Some(false)` once withdrawn, `None` while it waits.
    pub fn outcome(&self) -> Option<bool> {
        match (self.granted.get(), self.withdrawn.get()) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    }

    fn withdraw(&self) {
        self.withdrawn.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn set_waker(&self, waker: Waker) {
        self.waker.set(Some(waker));
    }

    fn grant(&self) {
        self.granted.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The lock table of one core.
pub struct KeyLocks {
    /// Each held key and its holder.
    held: HashMap<Vec<u8>, TxnId, ahash::RandomState>,
    /// The keys each holder holds.
    by_holder: HashMap<TxnId, Vec<Vec<u8>>, ahash::RandomState>,
    /// The holder of the whole core, if any.
    core_holder: Option<TxnId>,
    queue: VecDeque<(TxnId, Want, Rc<Grant>)>,
    /// Opened at every release: ops waiting for a held key wait on it, then route again.
    released: Rc<Gate>,
}

impl Default for KeyLocks {
    fn default() -> Self {
        KeyLocks {
            held: HashMap::default(),
            by_holder: HashMap::default(),
            core_holder: None,
            queue: VecDeque::new(),
            released: Rc::new(Gate::default()),
        }
    }
}

impl KeyLocks {
    /// Whether nothing is held or waiting (the fast path of every op's routing).
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.held.is_empty() && self.core_holder.is_none() && self.queue.is_empty()
    }

    /// The gate to wait on if `key` is held by someone other than `me`.
    #[inline]
    pub fn blocked(&self, key: &[u8], me: TxnId) -> Option<Rc<Gate>> {
        if self.held.is_empty() {
            return None;
        }
        match self.held.get(key) {
            Some(&holder) if holder != me => Some(self.released.clone()),
            _ => None,
        }
    }

    /// Grants `want` to `txn` now if nothing earlier waits and nothing held conflicts;
    /// otherwise queues it and returns where its grant will be signalled.
    pub fn request(&mut self, txn: TxnId, want: Want) -> Option<Rc<Grant>> {
        if self.queue.is_empty() && self.compatible(&want) {
            self.take(txn, want);
            return None;
        }
        let grant = Rc::new(Grant::default());
        self.queue.push_back((txn, want, grant.clone()));
        Some(grant)
    }

    /// Releases everything `txn` holds, or withdraws its queued request; then grants what
    /// waits, in order.
    pub fn release(&mut self, txn: TxnId) {
        if let Some(keys) = self.by_holder.remove(&txn) {
            for k in keys {
                self.held.remove(&k);
            }
        }
        if self.core_holder == Some(txn) {
            self.core_holder = None;
        }
        self.queue.retain(|(t, _, grant)| {
            if *t == txn {
                grant.withdraw();
            }
            *t != txn
        });
        while let Some((_, want, _)) = self.queue.front() {
            if !self.compatible(want) {
                break;
            }
            let (t, want, grant) = self.queue.pop_front().expect("a front");
            self.take(t, want);
            grant.grant();
        }
        let gate = std::mem::replace(&mut self.released, Rc::new(Gate::default()));
        gate.open();
    }

    /// Keys held now, by all holders.
    pub fn held_keys(&self) -> usize {
        self.held.len()
    }

    /// Requests waiting.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    fn compatible(&self, want: &Want) -> bool {
        if self.core_holder.is_some() {
            return false;
        }
        match want {
            Want::Core => self.held.is_empty(),
            Want::Keys(keys) => keys.iter().all(|k| !self.held.contains_key(k)),
        }
    }

    fn take(&mut self, txn: TxnId, want: Want) {
        match want {
            Want::Core => self.core_holder = Some(txn),
            Want::Keys(keys) => {
                for k in &keys {
                    self.held.insert(k.clone(), txn);
                }
                self.by_holder.entry(txn).or_default().extend(keys);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&str]) -> Want {
        Want::Keys(ks.iter().map(|k| k.as_bytes().to_vec()).collect())
    }

    #[test]
    fn disjoint_sets_are_granted_together_and_conflicts_wait() {
        let mut l = KeyLocks::default();
        assert!(l.request(1, keys(&["a", "b"])).is_none());
        assert!(l.request(2, keys(&["c"])).is_none());
        let g3 = l.request(3, keys(&["b", "d"])).expect("b is held");
        assert!(l.blocked(b"a", 9).is_some());
        assert!(l.blocked(b"a", 1).is_none(), "the holder passes its own lock");
        assert!(l.blocked(b"z", 9).is_none());
        l.release(1);
        assert!(g3.is_granted());
        assert!(l.blocked(b"a", 9).is_none());
        assert!(l.blocked(b"d", 9).is_some());
    }

    #[test]
    fn requests_are_granted_in_arrival_order() {
        let mut l = KeyLocks::default();
        assert!(l.request(1, keys(&["a"])).is_none());
        let core = l.request(2, Want::Core).expect("a key is held");
        // A later request for a free key waits behind the whole-core request: no starvation.
        let later = l.request(3, keys(&["z"])).expect("queued behind the core request");
        l.release(1);
        assert!(core.is_granted() && !later.is_granted());
        l.release(2);
        assert!(later.is_granted());
        assert!(l.request(4, Want::Core).is_some(), "z is held");
        l.release(3);
        l.release(4);
        assert!(l.is_idle());
    }

    #[test]
    fn a_withdrawn_request_lets_the_next_one_through() {
        let mut l = KeyLocks::default();
        assert!(l.request(1, keys(&["a"])).is_none());
        let g2 = l.request(2, keys(&["a"])).unwrap();
        let g3 = l.request(3, keys(&["b"])).unwrap();
        l.release(2);
        assert!(g3.is_granted() && !g2.is_granted());
        assert_eq!(g2.outcome(), Some(false), "its waiter learns it was withdrawn");
        assert_eq!(l.waiting(), 0);
        assert_eq!(l.held_keys(), 2);
    }
}
