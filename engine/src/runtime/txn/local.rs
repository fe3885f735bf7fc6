//! A run of several steps over keys of one shard of this core, synchronous from its first step
//! to its last (a script whose keys all live here): atomic without key locks, because nothing
//! awaits between its steps, so no other op of the core interleaves, as in Redis's single
//! thread. The steps' changes are framed in the shard's log (`TxnBegin` at the first change,
//! `TxnCommit` at the end), so a crash keeps all of them or none.
//!
//! Invariant: between `Core::local_run` and `LocalRun::finish` (or its drop), the caller
//! does not await (the keys are not locked: an await would let other ops in, and into the
//! open frame).

use super::*;

/// Keys of one shard of this core, checked routable here (not moved, paused, or locked by a
/// transaction) when the run began. Made by `Core::local_run`.
#[must_use = "a run's changes are committed by `finish`"]
pub struct LocalRun {
    core: Rc<Core>,
    /// The shard every key lives in (`None`: the run declared no key).
    shard: Option<Rc<Shard<DmaStorage>>>,
    txn: TxnId,
    begun: bool,
    app: AppId,
    /// The highest LSN whose durability the fsync policy makes a reply wait for.
    wait_lsn: Option<u64>,
}

impl Core {
    /// Starts a synchronous run over `keys` if they all live in one shard of this core and
    /// may be used now (none moved away, paused by a migration or backup, or locked by a
    /// transaction), and, if the run `writes`, the core has room and the shard takes writes
    /// (checked once, as a lock does: no eviction runs between the steps). `None`: take the
    /// locked path (`hold_keys`).
    pub fn local_run(&self, keys: &[Vec<u8>], app: AppId, writes: bool) -> Option<LocalRun> {
        if self.draining.get() {
            return None;
        }
        let mut shard: Option<Rc<Shard<DmaStorage>>> = None;
        for key in keys {
            match self.route(key) {
                Route::Local(s, _) => match &shard {
                    Some(first) if !Rc::ptr_eq(first, &s) => return None,
                    Some(_) => {}
                    None => shard = Some(s),
                },
                Route::Remote | Route::Paused(_) => return None,
            }
        }
        let refused = || {
            self.room_for(true).is_some()
                || shard.as_ref().is_some_and(|s| s.check_writable().is_err())
        };
        if writes && refused() {
            return None;
        }
        Some(LocalRun {
            core: self.handle(),
            shard,
            txn: self.new_txn_id(),
            begun: false,
            app,
            wait_lsn: None,
        })
    }
}

impl LocalRun {
    /// Runs `ops` now, in order, on the run's shard; replies in op order. An op on a key of
    /// another shard (or one the run cannot reach) is refused, and so are the others of the
    /// call: nothing of it runs.
    pub fn run(&mut self, ops: Vec<Op>) -> Vec<Result<Reply>> {
        let refuse = |ops: &[Op], reason: &str| {
            let e = EngineError::Unavailable { reason: reason.into() };
            ops.iter().map(|_| Err(e.clone())).collect()
        };
        let Some(shard) = self.shard.clone() else {
            return refuse(&ops, "an op on a key the run does not hold");
        };
        let mut targets = Vec::with_capacity(ops.len());
        for op in &ops {
            match self.core.route(op.key()) {
                Route::Local(s, position) if Rc::ptr_eq(&s, &shard) => targets.push((s, position)),
                _ => return refuse(&ops, "an op on a key the run does not hold"),
            }
        }
        if !self.begun && ops.iter().any(Op::mutates) {
            if let Err(e) = shard.log_marker(&Record::TxnBegin { txn: logged(self.txn) }) {
                return ops.iter().map(|_| Err(e.clone())).collect();
            }
            self.begun = true;
        }
        let (out, waits) = self.core.apply_ops_room(ops, targets, self.app, false);
        for (_, lsn, _) in waits {
            self.wait_lsn = self.wait_lsn.max(Some(lsn));
        }
        self.core.publish_memory();
        out
    }

    /// Logs the frame's `TxnCommit` if the run changed anything and has not committed yet;
    /// the commit's LSN.
    fn commit(&mut self) -> Result<Option<u64>> {
        match (&self.shard, std::mem::take(&mut self.begun)) {
            (Some(shard), true) => {
                shard.log_marker(&Record::TxnCommit { txn: logged(self.txn) }).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Commits the run's changes (its frame's `TxnCommit`) and waits until they are as durable
    /// as the fsync policy makes a reply wait for.
    pub async fn finish(mut self) -> Result<()> {
        let commit = self.commit()?;
        let wait = match (self.wait_lsn, commit) {
            (Some(_), Some(lsn)) => Some(lsn),
            (wait, _) => wait,
        };
        match (&self.shard, wait) {
            (Some(shard), Some(lsn)) => shard.wait_durable(lsn).await,
            _ => Ok(()),
        }
    }
}

impl Drop for LocalRun {
    /// A run dropped without `finish` still closes its frame at once: an open frame would
    /// take in every later record of the log, other clients' acknowledged writes included,
    /// and recovery would drop them with it.
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::error!(error = %e, "a script's changes could not be committed in the log");
        }
    }
}
