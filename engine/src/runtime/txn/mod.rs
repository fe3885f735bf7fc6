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

mod flush;
pub mod local;
pub mod locks;
pub mod watch;

use super::*;
use crate::error::{EngineError, Result};
use crate::log::record::{LoggedTxn, Record};
use crate::ops::{Op, Reply};
use crate::runtime::route::Route;
use crate::shard::Shard;
use crate::storage::dma::DmaStorage;
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
/// The longest a migration's cutover or a backup's hold waits for transactions to let go of
/// a core's keys before it gives up (and is retried).
pub const TXN_QUIET_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(1000);
/// How often a transaction whose records wait for disk space tries again.
const NOT_DURABLE_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
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
    /// Phase 1: lock `keys` for `txn` and check they are served here (and, if the part
    /// `writes`, that there is room and every shard takes writes, so no core's part is
    /// refused after another's was applied).
    Lock { txn: TxnId, keys: Vec<Vec<u8>>, watch: Option<WatchCheck>, writes: bool },
    /// Phase 1 of whole-core work: hold the core for `txn`.
    LockCore { txn: TxnId },
    /// Phase 2: run `ops` under `txn`'s locks.
    LockedOps { txn: TxnId, ops: Vec<Op>, app: AppId },
    /// After phase 2, a transaction over several shards: make its parts here durable.
    SyncParts { txn: TxnId },
    /// After phase 2: log `txn`'s commit in the shards holding its parts here (durably if
    /// `sync`, or if the fsync policy is `always`).
    Commit { txn: TxnId, sync: bool },
    /// After phase 2, a part not durable: forget `txn`'s parts here without a commit.
    Forget { txn: TxnId },
    /// Phase 3 (or giving up): release what `txn` holds here.
    Unlock { txn: TxnId },
    /// Wait until no migration or backup pauses `keys` here.
    WaitOpen { keys: Vec<Vec<u8>> },
    /// A FLUSHALL's part here: every serving shard cleared, framed for `txn` (`flush.rs`).
    FlushPart { txn: TxnId },
}

/// The answer to `TxnWork`.
#[derive(Debug)]
pub enum TxnAnswer {
    Ran(Vec<Result<Reply>>),
    /// A core's part of phase 2.
    Part(PartDone),
    /// The ops write to several shards here: run them on the locked path (the ops come back
    /// unrun).
    SeveralShards(Vec<Op>),
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
/// Phase 1 on one core: the core, its keys, its watches, whether its part writes.
type LockRequest = (usize, Vec<Vec<u8>>, Option<WatchCheck>, bool);

/// Keys locked on their cores by `Core::hold_keys`. Dropped without `release`, they are
/// released by a task (a caller that returns early cannot leave them held).
#[must_use = "held keys stop every other client's ops on them until released"]
pub struct HeldKeys {
    core: Rc<Core>,
    txn: TxnId,
    cores: Vec<usize>,
    owners: HashMap<Vec<u8>, usize>,
    /// What the steps logged: the cores with parts, and whether every part is durable.
    parts: std::cell::RefCell<Applied>,
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
        let applied = self.core.apply_locked(self.txn, ops, &op_cores, app).await;
        // Each core reports its shards with parts so far: the latest count is the one.
        self.parts.borrow_mut().shards.extend(applied.shards);
        applied.replies
    }

    /// Commits what the steps wrote (see `Core::settle`) and releases the keys.
    pub async fn release(mut self) {
        self.released = true;
        let parts = std::mem::replace(&mut *self.parts.borrow_mut(), Applied::empty());
        self.core.settle(self.txn, &parts).await;
        self.core.unlock_cores(self.txn, &self.cores).await;
    }
}

impl Drop for HeldKeys {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (core, txn, cores) = (self.core.clone(), self.txn, std::mem::take(&mut self.cores));
        let parts = std::mem::replace(&mut *self.parts.borrow_mut(), Applied::empty());
        glommio::spawn_local(async move {
            core.settle(txn, &parts).await;
            core.unlock_cores(txn, &cores).await
        })
        .detach();
    }
}

/// What one core's part of phase 2 did.
#[derive(Debug)]
pub struct PartDone {
    pub replies: Vec<Result<Reply>>,
    /// Shards here holding a part of the transaction so far (each needs a commit).
    pub shards: usize,
}

/// What phase 2 did on every core.
struct Applied {
    replies: Vec<Result<Reply>>,
    /// Shards holding a part, by core (cores absent hold none).
    shards: BTreeMap<usize, usize>,
}

impl Applied {
    fn empty() -> Self {
        Applied { replies: Vec::new(), shards: BTreeMap::new() }
    }

    fn note(&mut self, core: usize, shards: usize) {
        if shards > 0 {
            self.shards.insert(core, shards);
        }
    }
}

/// Holds a core against transactions while alive (`Core::hold_against_txns`).
pub struct CoreHold<'a> {
    core: &'a Core,
    id: TxnId,
}

impl Drop for CoreHold<'_> {
    fn drop(&mut self) {
        self.core.locks.borrow_mut().release(self.id);
    }
}

/// The process's start in ns since the Unix epoch: with the engine's transaction id, a
/// transaction's name in the logs, never reused by a later run.
fn boot_nonce() -> u64 {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    })
}

/// `txn` as the logs name it.
pub fn logged(txn: TxnId) -> LoggedTxn {
    LoggedTxn { boot: boot_nonce(), txn }
}

/// How `apply_framed` logs a batch: for which transaction (`NO_TXN`: unframed), how each
/// shard's frame ends, and whether the batch may be refused for room here.
#[derive(Clone, Copy)]
struct Framing {
    txn: TxnId,
    frame: Frame,
    check_room: bool,
}

/// What `apply_framed` did: the replies, the durability waits of `apply_ops`, and each
/// framed shard with the LSN of its closing marker.
struct FramedRun {
    out: Vec<Result<Reply>>,
    waits: Vec<super::route::DurabilityWait>,
    ends: Vec<(Rc<Shard<DmaStorage>>, u64)>,
}

/// How a transaction's frame in a shard's log ends.
#[derive(Clone, Copy)]
enum Frame {
    /// `TxnCommit`: the transaction has no other part.
    Whole,
    /// `TxnEnd`: the commit comes once every part is durable.
    Part,
}

/// The distinct shards that `ops` (placed by `targets`) may change.
fn writer_shards(
    ops: &[Op],
    targets: &[(Rc<Shard<DmaStorage>>, crate::routing::Position)],
) -> Vec<Rc<Shard<DmaStorage>>> {
    let mut out: Vec<Rc<Shard<DmaStorage>>> = Vec::new();
    for (op, (shard, _)) in ops.iter().zip(targets) {
        if op.mutates() && !out.iter().any(|s| Rc::ptr_eq(s, shard)) {
            out.push(shard.clone());
        }
    }
    out
}

/// What `execute_atomic` did.
pub type AtomicOutcome = Option<Vec<Result<Reply>>>;

impl Core {
    pub(super) fn new_txn_id(&self) -> TxnId {
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
        // Set when the batch writes to several shards of one core: it then takes the locked
        // path, whose parts are logged so that a crash keeps all of them or none.
        let mut several_shards = false;
        let mut retry_now = false;
        for attempt in 0..ATOMIC_ATTEMPTS_MAX {
            if attempt > 0 && !std::mem::take(&mut retry_now) {
                glommio::timer::sleep(MOVED_RETRY_PAUSE).await;
            }
            if watch.is_some_and(|w| w.flag.is_dirty()) {
                return Ok(None);
            }
            let op_cores: Vec<usize> = ops.iter().map(|op| self.owner_of(op.key())).collect();
            let watch_cores: Vec<usize> = watch_keys.iter().map(|k| self.owner_of(k)).collect();
            let check = |keys: Vec<Vec<u8>>| {
                watch.filter(|_| !keys.is_empty()).map(|w| WatchCheck {
                    id: w.id,
                    flag: w.flag.clone(),
                    keys,
                })
            };
            // One core (the common case, and the cheap one): no key is copied.
            let first = op_cores.first().or(watch_cores.first()).copied();
            let one_core = op_cores.iter().chain(&watch_cores).all(|&c| Some(c) == first);
            if one_core && !several_shards {
                let c = first.unwrap_or(self.id);
                let work = TxnWork::RunAlone { ops, watch: check(watch_keys.to_vec()), app };
                match self.on_core(c, CoreWork::Txn(work)).await {
                    CoreResult::Txn(TxnAnswer::Ran(r)) => return Ok(Some(r)),
                    CoreResult::Txn(TxnAnswer::Aborted) => return Ok(None),
                    CoreResult::Txn(TxnAnswer::Moved(back)) => ops = back,
                    CoreResult::Txn(TxnAnswer::SeveralShards(back)) => {
                        (ops, several_shards, retry_now) = (back, true, true);
                    }
                    CoreResult::Txn(TxnAnswer::Refused(e)) | CoreResult::Done(Err(e)) => {
                        return Err(e)
                    }
                    other => unreachable!("RunAlone answered with {other:?}"),
                }
                continue;
            }
            let mut parts: BTreeMap<usize, CoreKeys> = BTreeMap::new();
            for (op, &c) in ops.iter().zip(&op_cores) {
                parts.entry(c).or_default().0.push(op.key().to_vec());
            }
            for (key, &c) in watch_keys.iter().zip(&watch_cores) {
                parts.entry(c).or_default().1.push(key.clone());
            }
            let txn = self.new_txn_id();
            let requests = parts.into_iter().map(|(c, (op_keys, wkeys))| {
                let writes = ops.iter().zip(&op_cores).any(|(op, &oc)| oc == c && op.mutates());
                let mut keys: Vec<Vec<u8>> = op_keys.into_iter().chain(wkeys.clone()).collect();
                keys.sort_unstable();
                keys.dedup();
                (c, keys, check(wkeys), writes)
            });
            let Some(locked) = self.lock_in_order(txn, requests.collect()).await? else {
                continue;
            };
            if watch.is_some_and(|w| w.flag.is_dirty()) {
                self.unlock_cores(txn, &locked).await;
                return Ok(None);
            }
            let applied = self.apply_locked(txn, ops, &op_cores, app).await;
            self.settle(txn, &applied).await;
            self.unlock_cores(txn, &locked).await;
            return Ok(Some(applied.replies));
        }
        Err(EngineError::TryAgain)
    }

    /// Phase 1: locks each core's keys for `txn`, in ascending core order (`requests` is in
    /// that order). Returns the cores locked, or `None` if a key moved or is paused (then
    /// nothing is held and the pause has ended: try again).
    async fn lock_in_order(
        &self,
        txn: TxnId,
        requests: Vec<LockRequest>,
    ) -> Result<Option<Vec<usize>>> {
        let mut locked = Vec::with_capacity(requests.len());
        for (c, keys, watch, writes) in requests {
            let work = TxnWork::Lock { txn, keys: keys.clone(), watch, writes };
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
        Ok(self.hold_keys_watched(keys, None, true).await?.expect("no watch to fail"))
    }

    /// `hold_keys` for an EXEC whose steps need the keys held (a script, RENAME), or for a
    /// script: the watched keys are locked too and checked under the locks; `Ok(None)` if one
    /// changed since it was watched (EXEC's null reply), and then nothing is held. With
    /// `writes`, each core holding keys checks it has room and takes writes (as a
    /// transaction's phase 1 does); a read-only hold, and a core with only watched keys, do
    /// not (a full memory does not refuse a read).
    pub async fn hold_keys_watched(
        &self,
        keys: &[Vec<u8>],
        watch: Option<&WatchSet>,
        writes: bool,
    ) -> Result<Option<HeldKeys>> {
        let watch_keys: &[Vec<u8>] = watch.map_or(&[], |w| &w.keys);
        for attempt in 0..ATOMIC_ATTEMPTS_MAX {
            if attempt > 0 {
                glommio::timer::sleep(MOVED_RETRY_PAUSE).await;
            }
            if watch.is_some_and(|w| w.flag.is_dirty()) {
                return Ok(None);
            }
            let mut owners = HashMap::new();
            let mut parts: BTreeMap<usize, CoreKeys> = BTreeMap::new();
            for k in keys {
                let c = self.owner_of(k);
                if owners.insert(k.clone(), c).is_none() {
                    parts.entry(c).or_default().0.push(k.clone());
                }
            }
            for k in watch_keys {
                parts.entry(self.owner_of(k)).or_default().1.push(k.clone());
            }
            let txn = self.new_txn_id();
            let requests = parts
                .into_iter()
                .map(|(c, (held, watched))| {
                    let check = watch.filter(|_| !watched.is_empty()).map(|w| WatchCheck {
                        id: w.id,
                        flag: w.flag.clone(),
                        keys: watched.clone(),
                    });
                    let core_writes = writes && !held.is_empty();
                    let mut keys: Vec<Vec<u8>> = held.into_iter().chain(watched).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    (c, keys, check, core_writes)
                })
                .collect();
            if let Some(cores) = self.lock_in_order(txn, requests).await? {
                if watch.is_some_and(|w| w.flag.is_dirty()) {
                    self.unlock_cores(txn, &cores).await;
                    return Ok(None);
                }
                let parts = std::cell::RefCell::new(Applied::empty());
                return Ok(Some(HeldKeys {
                    core: self.handle(),
                    txn,
                    cores,
                    owners,
                    parts,
                    released: false,
                }));
            }
        }
        Err(EngineError::TryAgain)
    }

    /// Phase 2: every core runs its part under `txn`'s locks, in parallel, and makes it
    /// durable (framed in each shard's log by `TxnBegin` .. `TxnEnd`).
    async fn apply_locked(
        &self,
        txn: TxnId,
        ops: Vec<Op>,
        op_cores: &[usize],
        app: AppId,
    ) -> Applied {
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
                waiting.push((c, idx, self.send(c, work).await));
            }
        }
        let mut out: Vec<Option<Result<Reply>>> = (0..n).map(|_| None).collect();
        let mut applied = Applied::empty();
        if let Some((idx, ops)) = local {
            let part = self.run_locked(txn, ops, app).await;
            applied.note(self.id, part.shards);
            for (i, r) in idx.into_iter().zip(part.replies) {
                out[i] = Some(r);
            }
        }
        for (c, idx, pending) in waiting {
            let replies = match pending {
                Ok(slot) => match wait_reply(slot).await {
                    CoreResult::Txn(TxnAnswer::Part(part)) => {
                        applied.note(c, part.shards);
                        part.replies
                    }
                    other => unreachable!("LockedOps answered with {other:?}"),
                },
                // The core did not take the part: nothing of it to commit there.
                Err(e) => idx.iter().map(|_| Err(e.clone())).collect(),
            };
            for (i, r) in idx.into_iter().zip(replies) {
                out[i] = Some(r);
            }
        }
        applied.replies = out.into_iter().map(|r| r.expect("every op answered")).collect();
        applied
    }

    /// Phase 2's end: if every part is durable, logs the commit in every shard that holds a
    /// part and waits until each commit is durable; otherwise forgets the parts (a crash
    /// drops them all: the transaction is applied in memory, as a write whose log failed is,
    /// and its ops answered the error). Runs before the unlock, so no snapshot (which waits
    /// for the locks) takes in a part whose commit is not durable everywhere. Whether the
    /// transaction committed (or had nothing to commit).
    async fn settle(&self, txn: TxnId, applied: &Applied) -> bool {
        let total: usize = applied.shards.values().sum();
        if total == 0 {
            return true;
        }
        let cores: Vec<usize> = applied.shards.keys().copied().collect();
        // One shard: its parts and its commit are in one log, read back as a prefix, so the
        // commit needs no sync before it. Several: every part durable before any commit is
        // logged, so a commit found after a crash means every part is there too.
        let several = total > 1;
        if several {
            let mut durable = true;
            for &c in &cores {
                let answer = self.on_core(c, CoreWork::Txn(TxnWork::SyncParts { txn })).await;
                durable &= matches!(answer, CoreResult::Txn(TxnAnswer::Done));
            }
            if !durable {
                for &c in &cores {
                    self.on_core(c, CoreWork::Txn(TxnWork::Forget { txn })).await;
                }
                return false;
            }
            crate::fault_point!("txn:parts-durable");
        }
        for (i, &c) in cores.iter().enumerate() {
            self.on_core(c, CoreWork::Txn(TxnWork::Commit { txn, sync: several })).await;
            if i == 0 && several {
                crate::fault_point!("txn:one-commit");
            }
        }
        true
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
            TxnWork::Lock { txn, keys, watch, writes } => {
                self.lock_here(txn, keys, watch, writes).await
            }
            TxnWork::LockCore { txn } => match self.acquire(txn, Want::Core).await {
                true => TxnAnswer::Locked,
                false => TxnAnswer::Refused(EngineError::Unavailable {
                    reason: "the hold was withdrawn".into(),
                }),
            },
            TxnWork::LockedOps { txn, ops, app } => {
                TxnAnswer::Part(self.run_locked(txn, ops, app).await)
            }
            TxnWork::SyncParts { txn } => match self.sync_parts(txn).await {
                Ok(()) => TxnAnswer::Done,
                Err(e) => TxnAnswer::Refused(e),
            },
            TxnWork::Commit { txn, sync } => {
                self.commit_parts(txn, sync).await;
                TxnAnswer::Done
            }
            TxnWork::Forget { txn } => {
                self.txn_parts.borrow_mut().remove(&txn);
                TxnAnswer::Done
            }
            TxnWork::FlushPart { txn } => self.flush_part_here(txn),
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
            // Not routed: a key another transaction holds stays here, and its watch with it.
            let position = crate::routing::position_of(key, self.config.partition_separator);
            let live = match self.serving_shard_of(key) {
                // In a migration's cutover, the key's next writes happen on its new core,
                // which this watch would not hear; moved already, it cannot follow: it fails.
                Some(shard) if shard.paused_gate(position).is_none() => shard.is_live(key),
                _ => {
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
            self.watches.borrow().check_gone(key, check.id, &check.flag, live);
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
        let writers = writer_shards(&ops, &targets);
        if writers.len() > 1 {
            // A crash could keep one shard's records and lose another's: the locked path
            // logs each part and a commit.
            return TxnAnswer::SeveralShards(ops);
        }
        if let Some(w) = &watch {
            self.check_watch(w);
            if w.flag.is_dirty() {
                return TxnAnswer::Aborted;
            }
        }
        // Two changes or more in one shard: framed, so a crash keeps both or neither.
        let framed = ops.iter().filter(|op| op.mutates()).count() > 1;
        let txn = if framed { self.new_txn_id() } else { NO_TXN };
        let framing = Framing { txn, frame: Frame::Whole, check_room: true };
        let FramedRun { out, waits, .. } = self.apply_framed(framing, ops, targets, app, &writers);
        self.publish_memory();
        TxnAnswer::Ran(self.await_durable(out, waits).await)
    }

    /// Phase 1 on this core.
    async fn lock_here(
        &self,
        txn: TxnId,
        keys: Vec<Vec<u8>>,
        watch: Option<WatchCheck>,
        writes: bool,
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
        if writes {
            let refused = self.room_for(true).map(Err).unwrap_or(Ok(())).and_then(|()| {
                keys.iter()
                    .filter_map(|k| self.serving_shard_of(k))
                    .try_for_each(|s| s.check_writable())
            });
            if let Err(e) = refused {
                self.locks.borrow_mut().release(txn);
                return TxnAnswer::Refused(e);
            }
        }
        if let Some(w) = &watch {
            self.check_watch(w);
        }
        TxnAnswer::Locked
    }

    /// Phase 2 on this core: the keys are locked for `txn` and were checked to be served
    /// here; a migration's pause or a backup's hold waits for the locks, so they still are.
    async fn run_locked(&self, txn: TxnId, ops: Vec<Op>, app: AppId) -> PartDone {
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
                    let replies = ops.iter().map(|_| Err(e.clone())).collect();
                    return PartDone { replies, shards: 0 };
                }
            }
        }
        let writers = writer_shards(&ops, &targets);
        // Room and writability were checked under the lock, for every core's part at once.
        let framing = Framing { txn, frame: Frame::Part, check_room: false };
        let FramedRun { out, waits, ends } =
            self.apply_framed(framing, ops, targets, app, &writers);
        self.publish_memory();
        let out = self.await_durable(out, waits).await;
        // The parts' durability is settled once, before the commit (`settle`), for every
        // step of the transaction at once.
        let mut parts = self.txn_parts.borrow_mut();
        let here = parts.entry(txn).or_default();
        for (shard, lsn) in ends {
            match here.iter_mut().find(|(s, _)| Rc::ptr_eq(s, &shard)) {
                Some(part) => part.1 = part.1.max(lsn),
                None => here.push((shard, lsn)),
            }
        }
        let shards = here.len();
        if shards == 0 {
            parts.remove(&txn);
        }
        PartDone { replies: out, shards }
    }

    /// Runs `ops` with each shard in `writers` framed for transaction `txn` (nothing is framed
    /// for `NO_TXN`): `TxnBegin` before the first op, then `TxnCommit` (`Frame::Whole`, the
    /// transaction's only part) or `TxnEnd` (`Frame::Part`) after the last. One synchronous
    /// step, so each shard's frame is contiguous in its log. Returns `apply_ops`'s results and
    /// each framed shard with the LSN of its closing marker.
    fn apply_framed(
        &self,
        framing: Framing,
        ops: Vec<Op>,
        targets: Vec<(Rc<Shard<DmaStorage>>, crate::routing::Position)>,
        app: AppId,
        writers: &[Rc<Shard<DmaStorage>>],
    ) -> FramedRun {
        let Framing { txn, frame, check_room } = framing;
        if txn == NO_TXN || writers.is_empty() {
            let (out, waits) = self.apply_ops_room(ops, targets, app, check_room);
            return FramedRun { out, waits, ends: Vec::new() };
        }
        let name = logged(txn);
        // A shard whose log refuses the marker refuses the ops too (`execute_at`).
        let begun: Vec<_> = writers
            .iter()
            .filter(|s| s.log_marker(&Record::TxnBegin { txn: name }).is_ok())
            .cloned()
            .collect();
        let (out, waits) = self.apply_ops_room(ops, targets, app, check_room);
        let close = match frame {
            Frame::Whole => Record::TxnCommit { txn: name },
            Frame::Part => Record::TxnEnd { txn: name },
        };
        let ends = begun
            .into_iter()
            .filter_map(|s| s.log_marker(&close).ok().map(|lsn| (s, lsn)))
            .collect();
        FramedRun { out, waits, ends }
    }

    /// Waits until a transaction's record `lsn` is durable. A full disk (`NotDurable`: the log
    /// keeps the record and retries) is waited out, the keys still held: a part forgotten
    /// while applied in memory could reach a snapshot without its siblings.
    async fn wait_part_durable(&self, shard: &Shard<DmaStorage>, lsn: u64) -> Result<()> {
        loop {
            match shard.wait_durable(lsn).await {
                Err(EngineError::NotDurable { .. }) if !self.draining.get() => {
                    glommio::timer::sleep(NOT_DURABLE_RETRY).await;
                }
                other => return other,
            }
        }
    }

    /// Logs `txn`'s commit in every shard of this core that holds one of its parts, and waits
    /// until each is durable.
    async fn commit_parts(&self, txn: TxnId, sync: bool) {
        let parts = self.txn_parts.borrow_mut().remove(&txn).unwrap_or_default();
        let sync = sync || self.config.fsync == crate::log::writer::FsyncPolicy::Always;
        let mut logged_at = Vec::with_capacity(parts.len());
        for (shard, _) in parts {
            match shard.log_marker(&Record::TxnCommit { txn: logged(txn) }) {
                Ok(lsn) => logged_at.push((shard, lsn)),
                Err(e) => tracing::error!(core = self.id, txn, error = %e,
                    "a transaction's commit could not be logged; a crash would drop its part"),
            }
        }
        for (shard, lsn) in logged_at.into_iter().filter(|_| sync) {
            if let Err(e) = self.wait_part_durable(&shard, lsn).await {
                tracing::error!(core = self.id, txn, error = %e, "a transaction's commit is not durable");
            }
        }
    }

    /// Makes `txn`'s parts on this core durable (a transaction over several shards, before
    /// any of its commits is logged).
    async fn sync_parts(&self, txn: TxnId) -> Result<()> {
        let parts = self.txn_parts.borrow().get(&txn).cloned().unwrap_or_default();
        for (shard, lsn) in parts {
            self.wait_part_durable(&shard, lsn).await?;
        }
        Ok(())
    }

    /// Holds this core against transactions until the guard drops: waits (in the FIFO) until
    /// no key is held, then no key is granted. A snapshot's cut is taken under it.
    pub async fn hold_against_txns(&self) -> CoreHold<'_> {
        let id = self.new_txn_id();
        self.acquire(id, Want::Core).await;
        CoreHold { core: self, id }
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
        if watches.is_empty() || !op.may_change() || !watches.is_watched(op.key()) {
            return None;
        }
        Some(op.key().to_vec())
    }

    /// After an op on a watched key: if it changed the key, its watches fail.
    /// `reply` `None`: the op failed but may have changed the key (a failed log).
    pub(super) fn note_watched(&self, key: Option<Vec<u8>>, reply: Option<&Reply>) {
        if let Some(key) = key {
            if reply.is_none_or(Reply::changed) {
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

    /// A range stops being served here (a migration's pause): watches of its keys fail.
    pub(super) fn fail_watches_in(
        &self,
        lo: crate::routing::Position,
        hi: crate::routing::Position,
    ) {
        if self.watches.borrow().is_empty() {
            return;
        }
        let separator = self.config.partition_separator;
        self.watches.borrow_mut().keys_left(|k| {
            let p = crate::routing::position_of(k, separator);
            lo <= p && p <= hi
        });
    }

    /// What the lock table and the watch registry hold now (INFO).
    pub fn txn_state(&self) -> (usize, usize, usize) {
        let l = self.locks.borrow();
        (l.held_keys(), l.waiting(), self.watches.borrow().entries())
    }
}
