//! Atomic work across cores: MULTI/EXEC, WATCH, multi-key commands whose keys span cores, and
//! the keyspace-wide commands that must not see a transaction half applied (docs/transactions.md).
//!
//! On one core, a batch of ops already runs atomically: once its keys are routed, nothing
//! awaits until the last op has run, so no other op of that core interleaves (`run_alone`).
//! Across cores the engine uses strict two-phase locking on keys:
//! 1. *Lock*, core by core in ascending core order: each core queues the request in its
//!    `KeyLocks` (FIFO), and once granted checks that every key is still routed here and not
//!    paused by a migration or a backup; if not, it lets go and the whole attempt starts over
//!    (nothing has been applied yet). Watched keys are locked too and checked here.
//! 2. *Apply*: once every core is locked and no watch failed, each core runs its part
//!    (`LockedOps`), all in parallel.
//! 3. *Unlock* everywhere, only after every part has run.
//!
//! Any op of another client on a locked key waits (`route` answers `Paused` with the lock
//! table's release gate), so no client sees some parts applied and others not. Locks are taken
//! in one global order (core, then all keys of that core at once), and nobody waits for a lock
//! while holding something another waiter is waiting on in a lower core, so there is no
//! deadlock. Whole-core requests (backup hold, migration pause, FLUSHALL, KEYS, DBSIZE) queue
//! in the same FIFO; a migration or backup cannot start on a core while a transaction holds
//! keys there, and a transaction that finds one started lets go before it waits.

pub mod locks;
pub mod watch;

use super::*;
use crate::error::{EngineError, Result};
use crate::ops::{Op, Reply};
use crate::runtime::route::Route;
use crate::telemetry::AppId;
use locks::{TxnId, Want};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use watch::WatchFlag;

/// The id ordinary ops route as: they hold no lock.
pub const NO_TXN: TxnId = 0;
/// Attempts of an atomic batch whose keys kept moving (a split or merge between its steps)
/// before it answers TRYAGAIN.
pub const ATOMIC_ATTEMPTS_MAX: u32 = 200;
/// Pause between attempts after the keys moved: the map reaches every core within it.
const MOVED_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// The keys a connection watches, and the flag their cores set when one changes.
#[derive(Debug, Clone)]
pub struct WatchSet {
    pub id: u64,
    pub flag: Arc<WatchFlag>,
    pub keys: Vec<Vec<u8>>,
}

/// The watched keys of one core, checked under its locks.
#[derive(Debug, Clone)]
pub struct WatchCheck {
    pub id: u64,
    pub flag: Arc<WatchFlag>,
    pub keys: Vec<Vec<u8>>,
}

/// Steps of atomic work, sent between cores.
#[derive(Debug, Clone)]
pub enum TxnWork {
    /// Register watch `id` of `keys` (all owned here as the sender saw it).
    Watch { id: u64, flag: Arc<WatchFlag>, keys: Vec<Vec<u8>> },
    /// Remove watch `id` of `keys`.
    Unwatch { id: u64, keys: Vec<Vec<u8>> },
    /// Run `ops` (all owned here) as one step, unless the watch failed.
    RunAlone { ops: Vec<Op>, watch: Option<WatchCheck>, app: AppId },
    /// Phase 1: lock `keys` for `txn` and check they are served here.
    Lock { txn: TxnId, keys: Vec<Vec<u8>>, watch: Option<WatchCheck> },
    /// Phase 1 of whole-core work: hold the core for `txn`.
    LockCore { txn: TxnId },
    /// Phase 2: run `ops` under `txn`'s locks.
    LockedOps { txn: TxnId, ops: Vec<Op>, app: AppId },
    /// Phase 3 (or giving up): release what `txn` holds here.
    Unlock { txn: TxnId },
    /// Wait until no migration or backup pauses `keys` here.
    WaitOpen { keys: Vec<Vec<u8>> },
}

/// The answer to `TxnWork`.
#[derive(Debug)]
pub enum TxnAnswer {
    Ran(Vec<Result<Reply>>),
    /// A watched key changed: nothing ran.
    Aborted,
    /// Some key is no longer served here; the ops come back unrun.
    Moved(Vec<Op>),
    Locked,
    /// A migration or backup pauses some key here: nothing is held; wait and retry.
    Paused,
    Done,
    Refused(EngineError),
}

/// One core's keys in an atomic batch: its ops' keys and its watched keys.
type CoreKeys = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Keys locked on their cores by `Core::hold_keys`. Dropped without `release`, they are
/// released by a task (a caller that returns early cannot leave them held).
#[must_use = "held keys stop every other client's ops on them until released"]
pub struct HeldKeys {
    core: Rc<Core>,
    txn: TxnId,
    cores: Vec<usize>,
    owners: HashMap<Vec<u8>, usize>,
    released: bool,
}

impl HeldKeys {
    /// Runs `ops` (on held keys only) as one step on each core, in parallel; replies in op
    /// order. An op on a key not held is refused.
    pub async fn run(&self, ops: Vec<Op>, app: AppId) -> Vec<Result<Reply>> {
        let op_cores: Option<Vec<usize>> =
            ops.iter().map(|op| self.owners.get(op.key()).copied()).collect();
        let Some(op_cores) = op_cores else {
            let e = EngineError::Unavailable { reason: "an op on a key that is not held".into() };
            return ops.iter().map(|_| Err(e.clone())).collect();
        };
        self.core.apply_locked(self.txn, ops, &op_cores, app).await
    }

    pub async fn release(mut self) {
        self.released = true;
        self.core.unlock_cores(self.txn, &self.cores).await;
    }
}

impl Drop for HeldKeys {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (core, txn, cores) = (self.core.clone(), self.txn, std::mem::take(&mut self.cores));
        glommio::spawn_local(async move { core.unlock_cores(txn, &cores).await }).detach();
    }
}

/// What `execute_atomic` did.
pub type AtomicOutcome = Option<Vec<Result<Reply>>>;

impl Core {
    fn new_txn_id(&self) -> TxnId {
        let n = self.next_txn.get() + 1;
        self.next_txn.set(n);
        // Unique across cores; never NO_TXN.
        ((self.id as u64 + 1) << 48) | n
    }

    /// Runs `ops` atomically wherever their keys live: no other client sees some of them
    /// applied and others not. With `watch`, nothing runs if a watched key changed since it
    /// was watched (`Ok(None)`, EXEC's null reply). Replies in op order.
    pub async fn execute_atomic(
        &self,
        mut ops: Vec<Op>,
        watch: Option<&WatchSet>,
        app: AppId,
    ) -> Result<AtomicOutcome> {
        let _in_flight = self.enter_queue();
        let watch_keys: &[Vec<u8>] = watch.map_or(&[], |w| &w.keys);
        for attempt in 0..ATOMIC_ATTEMPTS_MAX {
            if attempt > 0 {
                glommio::timer::sleep(MOVED_RETRY_PAUSE).await;
            }
            if watch.is_some_and(|w| w.flag.is_dirty()) {
                return Ok(None);
            }
            let op_cores: Vec<usize> = ops.iter().map(|op| self.owner_of(op.key())).collect();
            let mut parts: BTreeMap<usize, CoreKeys> = BTreeMap::new();
            for (op, &c) in ops.iter().zip(&op_cores) {
                parts.entry(c).or_default().0.push(op.key().to_vec());
            }
            for key in watch_keys {
                parts.entry(self.owner_of(key)).or_default().1.push(key.clone());
            }
            let check = |keys: Vec<Vec<u8>>| {
                watch.filter(|_| !keys.is_empty()).map(|w| WatchCheck {
                    id: w.id,
                    flag: w.flag.clone(),
                    keys,
                })
            };
            if parts.len() <= 1 {
                let (c, (_, wkeys)) = parts.pop_first().unwrap_or((self.id, Default::default()));
                let work = TxnWork::RunAlone { ops, watch: check(wkeys), app };
                match self.on_core(c, CoreWork::Txn(work)).await {
                    CoreResult::Txn(TxnAnswer::Ran(r)) => return Ok(Some(r)),
                    CoreResult::Txn(TxnAnswer::Aborted) => return Ok(None),
                    CoreResult::Txn(TxnAnswer::Moved(back)) => ops = back,
                    CoreResult::Txn(TxnAnswer::Refused(e)) | CoreResult::Done(Err(e)) => {
                        return Err(e)
                    }
                    other => unreachable!("RunAlone answered with {other:?}"),
                }
                continue;
            }
            let txn = self.new_txn_id();
            let requests = parts.into_iter().map(|(c, (op_keys, wkeys))| {
                let mut keys: Vec<Vec<u8>> = op_keys.into_iter().chain(wkeys.clone()).collect();
                keys.sort_unstable();
                keys.dedup();
                (c, keys, check(wkeys))
            });
            let Some(locked) = self.lock_in_order(txn, requests.collect()).await? else {
                continue;
            };
            if watch.is_some_and(|w| w.flag.is_dirty()) {
                self.unlock_cores(txn, &locked).await;
                return Ok(None);
            }
            let replies = self.apply_locked(txn, ops, &op_cores, app).await;
            self.unlock_cores(txn, &locked).await;
            return Ok(Some(replies));
        }
        Err(EngineError::TryAgain)
    }

    /// Phase 1: locks each core's keys for `txn`, in ascending core order (`requests` is in
    /// that order). Returns the cores locked, or `None` if a key moved or is paused (then
    /// nothing is held and the pause has ended: try again).
    async fn lock_in_order(
        &self,
        txn: TxnId,
        requests: Vec<(usize, Vec<Vec<u8>>, Option<WatchCheck>)>,
    ) -> Result<Option<Vec<usize>>> {
        let mut locked = Vec::with_capacity(requests.len());
        for (c, keys, watch) in requests {
            let work = TxnWork::Lock { txn, keys: keys.clone(), watch };
            match self.on_core(c, CoreWork::Txn(work)).await {
                CoreResult::Txn(TxnAnswer::Locked) => locked.push(c),
                answer => {
                    self.unlock_cores(txn, &locked).await;
                    return match answer {
                        CoreResult::Txn(TxnAnswer::Moved(_)) => Ok(None),
                        CoreResult::Txn(TxnAnswer::Paused) => {
                            self.on_core(c, CoreWork::Txn(TxnWork::WaitOpen { keys })).await;
                            Ok(None)
                        }
                        CoreResult::Txn(TxnAnswer::Refused(e)) | CoreResult::Done(Err(e)) => Err(e),
                        other => unreachable!("Lock answered with {other:?}"),
                    };
                }
            }
        }
        Ok(Some(locked))
    }

    /// Locks `keys` wherever they live, for work of several steps that must be atomic
    /// (RENAME reads, then writes): run the steps with `HeldKeys::run`, then `release`.
    pub async fn hold_keys(&self, keys: &[Vec<u8>]) -> Result<HeldKeys> {
        for attempt in 0..ATOMIC_ATTEMPTS_MAX {
            if attempt > 0 {
                glommio::timer::sleep(MOVED_RETRY_PAUSE).await;
            }
            let mut owners = HashMap::new();
            let mut parts: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
            for k in keys {
                let c = self.owner_of(k);
                if owners.insert(k.clone(), c).is_none() {
                    parts.entry(c).or_default().push(k.clone());
                }
            }
            let txn = self.new_txn_id();
            let requests = parts.into_iter().map(|(c, keys)| (c, keys, None)).collect();
            if let Some(cores) = self.lock_in_order(txn, requests).await? {
                return Ok(HeldKeys { core: self.handle(), txn, cores, owners, released: false });
            }
        }
        Err(EngineError::TryAgain)
    }

    /// Phase 2: every core runs its part under `txn`'s locks, in parallel.
    async fn apply_locked(
        &self,
        txn: TxnId,
        ops: Vec<Op>,
        op_cores: &[usize],
        app: AppId,
    ) -> Vec<Result<Reply>> {
        let n = ops.len();
        let mut per_core: BTreeMap<usize, (Vec<usize>, Vec<Op>)> = BTreeMap::new();
        for (i, (op, &c)) in ops.into_iter().zip(op_cores).enumerate() {
            let part = per_core.entry(c).or_default();
            part.0.push(i);
            part.1.push(op);
        }
        let mut waiting = Vec::new();
        let mut local = None;
        for (c, (idx, ops)) in per_core {
            if c == self.id {
                local = Some((idx, ops));
            } else {
                let work = CoreWork::Txn(TxnWork::LockedOps { txn, ops, app });
                waiting.push((idx, self.send(c, work).await));
            }
        }
        let mut out: Vec<Option<Result<Reply>>> = (0..n).map(|_| None).collect();
        if let Some((idx, ops)) = local {
            for (i, r) in idx.into_iter().zip(self.run_locked(txn, ops, app).await) {
                out[i] = Some(r);
            }
        }
        for (idx, pending) in waiting {
            let replies = match pending {
                Ok(slot) => match wait_reply(slot).await {
                    CoreResult::Txn(TxnAnswer::Ran(r)) => r,
                    other => unreachable!("LockedOps answered with {other:?}"),
                },
                Err(e) => idx.iter().map(|_| Err(e.clone())).collect(),
            };
            for (i, r) in idx.into_iter().zip(replies) {
                out[i] = Some(r);
            }
        }
        out.into_iter().map(|r| r.expect("every op answered")).collect()
    }

    /// Releases `txn` on `cores`, all at once, and waits until each has.
    async fn unlock_cores(&self, txn: TxnId, cores: &[usize]) {
        let mut slots = Vec::new();
        for &c in cores {
            if c == self.id {
                self.locks.borrow_mut().release(txn);
            } else if let Ok(slot) = self.send(c, CoreWork::Txn(TxnWork::Unlock { txn })).await {
                slots.push(slot);
            }
        }
        for slot in slots {
            wait_reply(slot).await;
        }
    }

    /// Runs `work` on every core while every core is held against transactions (taken in core
    /// order, like a transaction's keys): FLUSHALL, DBSIZE and KEYS see no transaction half
    /// applied. A core that does not grant within `step_wait` fails it (`CoreTimeout`, naming
    /// `what`) before `work` starts; its request is withdrawn.
    pub async fn with_every_core_held<T>(
        &self,
        what: &'static str,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        let txn = self.new_txn_id();
        let mut held = Vec::with_capacity(self.config.cores);
        for c in 0..self.config.cores {
            let lock = CoreWork::Txn(TxnWork::LockCore { txn });
            match self.on_core_within(c, lock, self.step_wait(), what).await {
                CoreResult::Txn(TxnAnswer::Locked) => held.push(c),
                answer => {
                    // Releases the cores held; withdraws the request where it may still wait
                    // (without waiting for an answer from a core that is not answering).
                    self.unlock_cores(txn, &held).await;
                    if c == self.id {
                        self.locks.borrow_mut().release(txn);
                    } else {
                        let _ = self.send(c, CoreWork::Txn(TxnWork::Unlock { txn })).await;
                    }
                    return Err(match answer {
                        CoreResult::Done(Err(e)) | CoreResult::Txn(TxnAnswer::Refused(e)) => e,
                        other => EngineError::Unavailable {
                            reason: format!("core {c} answered {other:?} to a hold"),
                        },
                    });
                }
            }
        }
        let out = work.await;
        self.unlock_cores(txn, &held).await;
        Ok(out)
    }

    /// Waits until no transaction holds a key here; returns with nothing awaited after, so
    /// the caller's next synchronous step sees no transaction half applied on this core.
    pub(crate) async fn quiet_txns(&self) {
        if self.locks.borrow().is_idle() {
            return;
        }
        let id = self.new_txn_id();
        self.acquire(id, Want::Core).await;
        self.locks.borrow_mut().release(id);
    }

    /// Waits until `want` is granted to `txn` here (`true`), or the request is withdrawn by
    /// a release of `txn` (`false`). If the wait is dropped, the request is withdrawn (or
    /// released, if it was granted meanwhile).
    async fn acquire(&self, txn: TxnId, want: Want) -> bool {
        let Some(grant) = self.locks.borrow_mut().request(txn, want) else {
            return true;
        };
        struct Withdraw<'a>(&'a Core, TxnId, bool);
        impl Drop for Withdraw<'_> {
            fn drop(&mut self) {
                if self.2 {
                    self.0.locks.borrow_mut().release(self.1);
                }
            }
        }
        let mut withdraw = Withdraw(self, txn, true);
        let granted = std::future::poll_fn(|cx| {
            if let Some(granted) = grant.outcome() {
                return std::task::Poll::Ready(granted);
            }
            grant.set_waker(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await;
        withdraw.2 = false;
        granted
    }

    pub(super) async fn run_txn_work(&self, work: TxnWork) -> CoreResult {
        let answer = match work {
            TxnWork::Watch { id, flag, keys } => self.watch_here(id, &flag, &keys),
            TxnWork::Unwatch { id, keys } => {
                self.watches.borrow_mut().remove(id, &keys);
                TxnAnswer::Done
            }
            TxnWork::RunAlone { ops, watch, app } => self.run_alone(ops, watch, app).await,
            TxnWork::Lock { txn, keys, watch } => self.lock_here(txn, keys, watch).await,
            TxnWork::LockCore { txn } => match self.acquire(txn, Want::Core).await {
                true => TxnAnswer::Locked,
                false => TxnAnswer::Refused(EngineError::Unavailable {
                    reason: "the hold was withdrawn".into(),
                }),
            },
            TxnWork::LockedOps { txn, ops, app } => {
                TxnAnswer::Ran(self.run_locked(txn, ops, app).await)
            }
            TxnWork::Unlock { txn } => {
                self.locks.borrow_mut().release(txn);
                TxnAnswer::Done
            }
            TxnWork::WaitOpen { keys } => {
                self.wait_open(&keys).await;
                TxnAnswer::Done
            }
        };
        CoreResult::Txn(answer)
    }

    fn watch_here(&self, id: u64, flag: &Arc<WatchFlag>, keys: &[Vec<u8>]) -> TxnAnswer {
        for key in keys {
            let live = match self.route(key) {
                Route::Local(shard, _) => shard.is_live(key),
                Route::Paused(_) => match self.serving_shard_of(key) {
                    Some(shard) => shard.is_live(key),
                    None => {
                        flag.mark_dirty();
                        continue;
                    }
                },
                // Moved since the sender routed it: the watch cannot follow, so it fails.
                Route::Remote => {
                    flag.mark_dirty();
                    continue;
                }
            };
            if self.watches.borrow_mut().add(key, id, flag, live).is_err() {
                return TxnAnswer::Refused(EngineError::Unavailable {
                    reason: format!(
                        "core {} watches {} keys already (the most it holds)",
                        self.id,
                        watch::WATCHED_KEYS_PER_CORE_MAX
                    ),
                });
            }
        }
        TxnAnswer::Done
    }

    /// Fails the watches of `check` whose keys were live when watched and are not now.
    fn check_watch(&self, check: &WatchCheck) {
        for key in &check.keys {
            let live = self.serving_shard_of(key).is_some_and(|s| s.is_live(key));
            self.watches.borrow().check_gone(key, check.id, live);
        }
    }

    /// All of `ops` on this core in one synchronous step, after waiting for any pause or lock
    /// on their keys (and the watched keys).
    async fn run_alone(&self, ops: Vec<Op>, watch: Option<WatchCheck>, app: AppId) -> TxnAnswer {
        let targets = loop {
            if self.draining.get() {
                return TxnAnswer::Refused(EngineError::Unavailable {
                    reason: "shutting down".into(),
                });
            }
            let mut targets = Vec::with_capacity(ops.len());
            let mut paused = None;
            let watched = watch.as_ref().map_or(&[][..], |w| &w.keys[..]);
            for (i, key) in
                ops.iter().map(Op::key).chain(watched.iter().map(|k| &k[..])).enumerate()
            {
                match self.route(key) {
                    Route::Local(shard, position) => {
                        if i < ops.len() {
                            targets.push((shard, position));
                        }
                    }
                    Route::Paused(gate) => {
                        paused = Some(gate);
                        break;
                    }
                    Route::Remote => return TxnAnswer::Moved(ops),
                }
            }
            match paused {
                None => break targets,
                Some(gate) => gate.wait().await,
            }
        };
        // From here to the last op nothing awaits: no other op of this core interleaves.
        if let Some(w) = &watch {
            self.check_watch(w);
            if w.flag.is_dirty() {
                return TxnAnswer::Aborted;
            }
        }
        let (out, waits) = self.apply_ops(ops, targets, app);
        self.publish_memory();
        TxnAnswer::Ran(self.await_durable(out, waits).await)
    }

    /// Phase 1 on this core.
    async fn lock_here(
        &self,
        txn: TxnId,
        keys: Vec<Vec<u8>>,
        watch: Option<WatchCheck>,
    ) -> TxnAnswer {
        if self.draining.get() {
            return TxnAnswer::Refused(EngineError::Unavailable { reason: "shutting down".into() });
        }
        if !self.acquire(txn, Want::Keys(keys.clone())).await {
            return TxnAnswer::Refused(EngineError::Unavailable {
                reason: "the lock request was withdrawn".into(),
            });
        }
        for key in &keys {
            match self.route_as(key, txn) {
                Route::Local(..) => {}
                Route::Remote => {
                    self.locks.borrow_mut().release(txn);
                    return TxnAnswer::Moved(Vec::new());
                }
                Route::Paused(_) => {
                    self.locks.borrow_mut().release(txn);
                    return TxnAnswer::Paused;
                }
            }
        }
        if let Some(w) = &watch {
            self.check_watch(w);
        }
        TxnAnswer::Locked
    }

    /// Phase 2 on this core: the keys are locked for `txn` and were checked to be served
    /// here; a migration's pause or a backup's hold waits for the locks, so they still are.
    async fn run_locked(&self, txn: TxnId, ops: Vec<Op>, app: AppId) -> Vec<Result<Reply>> {
        let mut targets = Vec::with_capacity(ops.len());
        for op in &ops {
            match self.route_as(op.key(), txn) {
                Route::Local(shard, position) => targets.push((shard, position)),
                _ => {
                    // Unreachable by the lock protocol; refuse the whole part rather than
                    // apply some of it.
                    tracing::error!(core = self.id, txn, "a locked key is not served here");
                    let e = EngineError::Unavailable {
                        reason: "a locked key moved during its transaction".into(),
                    };
                    return ops.iter().map(|_| Err(e.clone())).collect();
                }
            }
        }
        let (out, waits) = self.apply_ops(ops, targets, app);
        self.publish_memory();
        self.await_durable(out, waits).await
    }

    async fn wait_open(&self, keys: &[Vec<u8>]) {
        loop {
            let gate = keys.iter().find_map(|k| match self.route(k) {
                Route::Paused(gate) => Some(gate),
                _ => None,
            });
            match gate {
                Some(g) => g.wait().await,
                None => return,
            }
        }
    }

    /// Registers `watch` on the cores owning its keys.
    pub async fn watch(&self, id: u64, flag: &Arc<WatchFlag>, keys: &[Vec<u8>]) -> Result<()> {
        for (c, keys) in self.by_owner(keys) {
            let work = TxnWork::Watch { id, flag: flag.clone(), keys };
            match self.on_core(c, CoreWork::Txn(work)).await {
                CoreResult::Txn(TxnAnswer::Done) => {}
                CoreResult::Txn(TxnAnswer::Refused(e)) | CoreResult::Done(Err(e)) => return Err(e),
                other => unreachable!("Watch answered with {other:?}"),
            }
        }
        Ok(())
    }

    /// Removes watch `id` of `keys` from the cores owning them.
    pub async fn unwatch(&self, id: u64, keys: &[Vec<u8>]) {
        for (c, keys) in self.by_owner(keys) {
            self.on_core(c, CoreWork::Txn(TxnWork::Unwatch { id, keys })).await;
        }
    }

    fn by_owner(&self, keys: &[Vec<u8>]) -> BTreeMap<usize, Vec<Vec<u8>>> {
        let mut per: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
        for k in keys {
            per.entry(self.owner_of(k)).or_default().push(k.clone());
        }
        per
    }

    /// The key of `op` if a watch must hear of this op (it may change a watched key).
    #[inline]
    pub(super) fn watched_key(&self, op: &Op) -> Option<Vec<u8>> {
        let watches = self.watches.borrow();
        if watches.is_empty() || !op.mutates() || !watches.is_watched(op.key()) {
            return None;
        }
        Some(op.key().to_vec())
    }

    /// After an op on a watched key: if it changed the key, its watches fail.
    pub(super) fn note_watched(&self, key: Option<Vec<u8>>, reply: Option<&Reply>) {
        if let (Some(key), Some(reply)) = (key, reply) {
            if reply.changed() {
                self.watches.borrow().touched(&key);
            }
        }
    }

    /// After the map changed: watches of keys no longer served here fail.
    pub(super) fn drop_departed_watches(&self) {
        if self.watches.borrow().is_empty() {
            return;
        }
        self.watches.borrow_mut().keys_left(|k| self.owner_of(k) != self.id);
    }

    /// What the lock table and the watch registry hold now (INFO).
    pub fn txn_state(&self) -> (usize, usize, usize) {
        let l = self.locks.borrow();
        (l.held_keys(), l.waiting(), self.watches.borrow().entries())
    }
}
