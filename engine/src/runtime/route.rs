//! Routing and executing single-key ops: each op goes to the core that owns its key, local
//! ops run at once, remote ones go as one batch per core, replies come back in op order.

use super::*;
use crate::error::{EngineError, Result};
use crate::log::writer::FsyncPolicy;
use crate::migration::Gate;
use crate::ops::{Op, Reply};
use crate::routing::{key_position, partition_of, partition_span, position_of, Position};
use crate::runtime::txn::locks::TxnId;
use crate::runtime::txn::NO_TXN;
use crate::shard::Shard;
use crate::storage::dma::DmaStorage;
use crate::telemetry::{AppId, SERVICE_SAMPLE_EVERY};
use std::cell::Cell;
use std::rc::Rc;

/// Where an op goes, as this core sees it now.
pub(crate) enum Route {
    /// A shard here serves it, at this position.
    Local(Rc<Shard<DmaStorage>>, Position),
    /// Another core owns it.
    Remote,
    /// Its range is in a cutover; wait, then route again.
    Paused(Rc<Gate>),
}

/// A shard's log position to wait for, and the ops whose replies wait for it.
pub(super) type DurabilityWait = (Rc<Shard<DmaStorage>>, u64, Vec<usize>);

/// Forwards after which an op is refused rather than sent on (routes settle in one or two).
pub const ROUTE_HOPS_MAX: u32 = 8;

/// One range of the map as a core routes it.
pub(super) struct RouteEntry {
    pub hi: Position,
    pub core: usize,
    /// The serving shard, for ranges this core owns.
    pub shard: Option<Rc<Shard<DmaStorage>>>,
}

/// The map's ranges, in position order, with what this core needs to route: O(log ranges).
#[derive(Default)]
pub(super) struct RouteTable {
    entries: Vec<RouteEntry>,
}

impl RouteTable {
    pub(super) fn build(
        map: &ShardMap,
        cores: usize,
        me: usize,
        shards: &HashMap<u64, Rc<Shard<DmaStorage>>>,
    ) -> Self {
        let entries = map
            .ranges()
            .iter()
            .map(|r| {
                let core = map.shard(r.shard).expect("ranges name mapped shards").core(cores);
                let shard = (core == me).then(|| shards.get(&r.shard).cloned()).flatten();
                RouteEntry { hi: r.hi, core, shard }
            })
            .collect();
        RouteTable { entries }
    }

    #[inline]
    pub(super) fn find(&self, position: Position) -> &RouteEntry {
        let i = self.entries.partition_point(|e| e.hi < position);
        &self.entries[i]
    }

    /// The core owning `key`. A partition that one range holds whole (every partition but a
    /// split one) is placed by its hash alone, so the key's own hash is taken only when a
    /// range boundary cuts the partition's span.
    #[inline]
    pub(super) fn core_of_key(&self, key: &[u8], separator: u8) -> usize {
        let (lo, hi) = partition_span(partition_of(key, separator));
        let entry = self.find(lo);
        if entry.hi >= hi {
            return entry.core;
        }
        self.find(lo | key_position(key) as u128).core
    }
}

impl Core {
    /// Where `key` goes, as this core sees it now.
    #[inline]
    pub(super) fn route(&self, key: &[u8]) -> Route {
        self.route_as(key, NO_TXN)
    }

    /// `route` for the holder `me` of key locks (`txn`): keys it holds do not stop it.
    #[inline]
    pub(super) fn route_as(&self, key: &[u8], me: TxnId) -> Route {
        let position = position_of(key, self.config.partition_separator);
        let routes = self.routes.borrow();
        let entry = routes.find(position);
        if entry.core != self.id {
            return Route::Remote;
        }
        if let Some(gate) = self.backup_hold.borrow().as_ref() {
            return Route::Paused(gate.clone());
        }
        if let Some(gate) = self.locks.borrow().blocked(key, me) {
            return Route::Paused(gate);
        }
        match &entry.shard {
            Some(s) => match s.paused_gate(position) {
                Some(gate) => Route::Paused(gate),
                None => Route::Local(s.clone(), position),
            },
            // The map places it here but no shard serves it (its files could not be created):
            // refuse rather than guess; the forwards end at ROUTE_HOPS_MAX.
            None => Route::Remote,
        }
    }

    /// Executes one op on its owning core.
    pub async fn execute_one(&self, op: Op) -> Result<Reply> {
        self.execute(vec![op]).await.pop().expect("one reply per op")
    }

    /// Executes ops on their owning cores: one message per remote core, replies in op order.
    pub async fn execute(&self, ops: Vec<Op>) -> Vec<Result<Reply>> {
        self.execute_for(ops, AppId::UNNAMED).await
    }

    /// `execute` for a client of application `app` (counted per application).
    pub async fn execute_for(&self, ops: Vec<Op>, app: AppId) -> Vec<Result<Reply>> {
        let _in_flight = self.enter_queue();
        self.execute_routed(ops, 0, app).await
    }

    pub(super) async fn execute_routed(
        &self,
        ops: Vec<Op>,
        hops: u32,
        app: AppId,
    ) -> Vec<Result<Reply>> {
        if hops > ROUTE_HOPS_MAX {
            let e = EngineError::Unavailable {
                reason: format!("routing did not settle after {ROUTE_HOPS_MAX} forwards"),
            };
            return ops.iter().map(|_| Err(e.clone())).collect();
        }
        // One owner lookup per op: the ops before the first remote one are known local.
        let Some(first_remote) = ops.iter().position(|op| self.owner_of(op.key()) != self.id)
        else {
            return self.execute_local(ops, hops, app).await;
        };
        let n = ops.len();
        let mut per_core: Vec<(Vec<usize>, Vec<Op>)> =
            (0..self.config.cores).map(|_| Default::default()).collect();
        for (i, op) in ops.into_iter().enumerate() {
            let c = if i < first_remote { self.id } else { self.owner_of(op.key()) };
            per_core[c].0.push(i);
            per_core[c].1.push(op);
        }
        let mut waiting = Vec::new();
        let mut local = None;
        for (c, (idx, ops)) in per_core.into_iter().enumerate() {
            if ops.is_empty() {
                continue;
            }
            if c == self.id {
                local = Some((idx, ops));
            } else {
                waiting.push((idx, self.send(c, CoreWork::Ops { ops, hops, app }).await));
            }
        }
        let mut out: Vec<Option<Result<Reply>>> = (0..n).map(|_| None).collect();
        if let Some((idx, ops)) = local {
            for (i, r) in idx.into_iter().zip(self.execute_local(ops, hops, app).await) {
                out[i] = Some(r);
            }
        }
        for (idx, pending) in waiting {
            let replies = match pending {
                Ok(slot) => match wait_reply(slot).await {
                    CoreResult::Ops(r) => r,
                    other => unreachable!("ops answered with {other:?}"),
                },
                Err(e) => idx.iter().map(|_| Err(e.clone())).collect(),
            };
            for (i, r) in idx.into_iter().zip(replies) {
                out[i] = Some(r);
            }
        }
        out.into_iter().map(|r| r.expect("every op answered")).collect()
    }

    /// The shards that serve `ops` if every op can run right now without awaiting: all are
    /// local and not paused, and replies need not wait for an fsync.
    pub(super) fn resolve_inline(
        &self,
        ops: &[Op],
    ) -> Option<Vec<(Rc<Shard<DmaStorage>>, Position)>> {
        if self.draining.get() || self.config.fsync == FsyncPolicy::Always {
            return None;
        }
        ops.iter()
            .map(|op| match self.route(op.key()) {
                Route::Local(shard, position) => Some((shard, position)),
                _ => None,
            })
            .collect()
    }

    /// `execute_local` for ops that `resolve_inline` placed: synchronous.
    pub(super) fn execute_now(
        &self,
        ops: Vec<Op>,
        targets: Vec<(Rc<Shard<DmaStorage>>, Position)>,
        app: AppId,
    ) -> Vec<Result<Reply>> {
        let (out, waits) = self.apply_ops(ops, targets, app);
        debug_assert!(waits.is_empty(), "no durability wait outside fsync=always");
        self.publish_memory();
        out
    }

    /// Executes ops sent here, in order; waits for durability per policy. Ops this core no
    /// longer owns (the map changed while they travelled) are forwarded; ops on a range in
    /// cutover wait for it to end, then route again.
    pub(super) async fn execute_local(
        &self,
        ops: Vec<Op>,
        hops: u32,
        app: AppId,
    ) -> Vec<Result<Reply>> {
        let targets = loop {
            if self.draining.get() {
                let e = EngineError::Unavailable { reason: "shutting down".into() };
                return ops.iter().map(|_| Err(e.clone())).collect();
            }
            let mut targets = Vec::with_capacity(ops.len());
            let mut paused = None;
            for op in &ops {
                match self.route(op.key()) {
                    Route::Local(shard, position) => targets.push((shard, position)),
                    Route::Paused(gate) => {
                        paused = Some(gate);
                        break;
                    }
                    Route::Remote => {
                        return Box::pin(self.execute_routed(ops, hops + 1, app)).await;
                    }
                }
            }
            match paused {
                None => break targets,
                // Waited: route every op again, so none runs on a stale route.
                Some(gate) => gate.wait().await,
            }
        };
        let (out, waits) = self.apply_ops(ops, targets, app);
        self.publish_memory();
        self.await_durable(out, waits).await
    }

    /// Runs `ops` on the shards `targets` names, in order, with nothing awaited: one moment of
    /// this core. Returns the replies and, per shard, the LSN to wait for (fsync `always`)
    /// with the ops whose replies wait for it.
    pub(super) fn apply_ops(
        &self,
        ops: Vec<Op>,
        targets: Vec<(Rc<Shard<DmaStorage>>, Position)>,
        app: AppId,
    ) -> (Vec<Result<Reply>>, Vec<DurabilityWait>) {
        self.apply_ops_room(ops, targets, app, true)
    }

    /// `apply_ops`; `check_room` false when the caller made room already (a transaction's
    /// part, checked for every core at its lock, must not be refused on one core alone).
    pub(super) fn apply_ops_room(
        &self,
        ops: Vec<Op>,
        targets: Vec<(Rc<Shard<DmaStorage>>, Position)>,
        app: AppId,
        check_room: bool,
    ) -> (Vec<Result<Reply>>, Vec<DurabilityWait>) {
        let mut out = Vec::with_capacity(ops.len());
        let mut waits: Vec<DurabilityWait> = Vec::new();
        let refused = match check_room {
            true => self.room_for(ops.iter().any(Op::may_grow)),
            false => None,
        };
        let timer = ServiceTimer::start(self.config.telemetry.is_on(), &self.service_sample);
        for (i, (op, (shard, position))) in ops.into_iter().zip(targets).enumerate() {
            if let Some(e) = refused.as_ref().filter(|_| op.may_grow()) {
                out.push(Err(e.clone()));
                continue;
            }
            let watched = self.watched_key(&op);
            let started = timer.begin();
            let done = shard.execute_at(op, position, app);
            timer.end(started, &shard);
            let done = done.map(|(reply, wait)| {
                if let Some(lsn) = wait {
                    match waits.iter_mut().find(|(s, _, _)| Rc::ptr_eq(s, &shard)) {
                        Some(w) => {
                            w.1 = w.1.max(lsn);
                            w.2.push(i);
                        }
                        None => waits.push((shard.clone(), lsn, vec![i])),
                    }
                }
                reply
            });
            // A change refused by a failed log is still made in memory: its watches fail too.
            match &done {
                Ok(reply) => self.note_watched(watched, Some(reply)),
                Err(EngineError::PreviousIo { .. }) => self.note_watched(watched, None),
                Err(_) => {}
            }
            out.push(done);
            self.after_write(&shard);
        }
        (out, waits)
    }

    /// Waits for the records `apply_ops` named; an op whose record failed gets the error.
    pub(super) async fn await_durable(
        &self,
        mut out: Vec<Result<Reply>>,
        waits: Vec<DurabilityWait>,
    ) -> Vec<Result<Reply>> {
        for (shard, lsn, idx) in waits {
            if let Err(e) = shard.wait_durable(lsn).await {
                for i in idx {
                    out[i] = Err(e.clone());
                }
            }
        }
        out
    }

    /// The serving shard here that owns `key` by this core's map, pauses and locks aside.
    pub(super) fn serving_shard_of(&self, key: &[u8]) -> Option<Rc<Shard<DmaStorage>>> {
        let position = position_of(key, self.config.partition_separator);
        let routes = self.routes.borrow();
        let entry = routes.find(position);
        (entry.core == self.id).then(|| entry.shard.clone()).flatten()
    }

    /// MSETNX on one core and one shard: nothing awaits between the checks and the writes,
    /// so no other op interleaves, and the writes are framed in the shard's log so a crash
    /// keeps all or none. Returns whether the pairs were set, or `None` if the keys live in
    /// several shards here (the caller then holds them: `Core::hold_keys`).
    pub async fn set_if_none_exist(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Option<bool>> {
        if self.draining.get() {
            return Err(EngineError::Unavailable { reason: "shutting down".into() });
        }
        // A backup's cut is being taken: wait for it, as single-key ops do.
        loop {
            let hold = self.backup_hold.borrow().clone();
            match hold {
                Some(gate) => gate.wait().await,
                None => break,
            }
        }
        let shards = loop {
            let mut shards = Vec::with_capacity(pairs.len());
            let mut paused = None;
            for (key, _) in &pairs {
                match self.route(key) {
                    Route::Local(shard, _) => shards.push(shard),
                    // A transaction holds the key, or a cutover pauses it: wait, route again.
                    Route::Paused(gate) => {
                        paused = Some(gate);
                        break;
                    }
                    // The keys moved since the caller routed them here.
                    Route::Remote => return Err(EngineError::TryAgain),
                }
            }
            match paused {
                Some(gate) => gate.wait().await,
                None => break shards,
            }
        };
        if shards.iter().any(|s| !Rc::ptr_eq(s, &shards[0])) {
            return Ok(None);
        }
        for shard in &shards {
            shard.check_writable()?;
        }
        if let Some(e) = self.room_for(true) {
            return Err(e);
        }
        for ((key, _), shard) in pairs.iter().zip(&shards) {
            if shard.execute(Op::Exists { key: key.clone() })?.0 == Reply::Bool(true) {
                return Ok(Some(false));
            }
        }
        let framed = pairs.len() > 1;
        let name = crate::runtime::txn::logged(self.new_txn_id());
        if framed {
            shards[0].log_marker(&crate::log::record::Record::TxnBegin { txn: name })?;
        }
        let mut waits = Vec::new();
        let mut first_err = None;
        for ((key, value), shard) in pairs.into_iter().zip(&shards) {
            let op = Op::Set {
                key,
                value,
                condition: crate::keyspace::SetCondition::Always,
                expiry: crate::keyspace::SetExpiry::Clear,
                return_old: false,
            };
            let watched = self.watched_key(&op);
            // No early return: the frame below must be closed whatever an op answers, or
            // replay would take the records after it for the transaction's.
            match shard.execute(op) {
                Ok(done) => {
                    self.note_watched(watched, Some(&done.0));
                    if let (_, Some(lsn)) = done {
                        waits.push((shard.clone(), lsn));
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if framed {
            if let Ok(lsn) =
                shards[0].log_marker(&crate::log::record::Record::TxnCommit { txn: name })
            {
                waits.push((shards[0].clone(), lsn));
            }
        }
        self.publish_memory();
        if let Some(e) = first_err {
            return Err(e);
        }
        if self.config.fsync == FsyncPolicy::Always {
            for (shard, lsn) in waits {
                shard.wait_durable(lsn).await?;
            }
        }
        Ok(Some(true))
    }

    /// Before ops run here: if they may add data (`grows`) and memory is above `maxmemory`,
    /// evicts by the policy; returns the error those ops get when there is no room.
    /// `noeviction` is checked by the server before a command starts (whole commands are
    /// refused), so nothing is done for it here.
    pub(super) fn room_for(&self, grows: bool) -> Option<EngineError> {
        let policy = self.config.eviction.policy();
        if policy == super::EvictionPolicy::NoEviction || !grows {
            return None;
        }
        self.make_room().err()
    }
}

/// Times one op in `SERVICE_SAMPLE_EVERY` (a clock read before and after it), counting ops
/// across batches in the core's `service_sample`; nothing when telemetry is off. A clock read
/// costs about 27 ns here (`clock/instant_now`), so timing every op would cost two of them.
struct ServiceTimer<'a> {
    on: bool,
    counter: &'a Cell<u32>,
}

impl<'a> ServiceTimer<'a> {
    fn start(on: bool, counter: &'a Cell<u32>) -> Self {
        ServiceTimer { on, counter }
    }

    /// Before an op: its start, if this op is timed.
    #[inline]
    fn begin(&self) -> Option<std::time::Instant> {
        if !self.on {
            return None;
        }
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        n.is_multiple_of(SERVICE_SAMPLE_EVERY).then(std::time::Instant::now)
    }

    /// After the op: records its service time if it was timed.
    #[inline]
    fn end(&self, started: Option<std::time::Instant>, shard: &Shard<DmaStorage>) {
        if let Some(at) = started {
            shard.stats.record_service_ns(at.elapsed().as_nanos() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash-of-the-partition shortcut places every key where its full position does, for
    /// partitions held whole and for a partition cut over several shards.
    #[test]
    fn owner_by_partition_agrees_with_owner_by_position() {
        let map = ShardMap::initial(2, 2, b':');
        let (lo, hi) = crate::routing::partition_span(b"user");
        let home = map.shared_home(b"user").unwrap().1.number;
        let (_, carved) = map.plan_split(b"user", home, lo, hi, 1);
        let own = carved.partition_shards(b"user")[0].1.number;
        let (_, split) = carved.plan_split(b"user", own, lo + (1u128 << 63), hi, 0);
        let table = RouteTable::build(&split, 2, 0, &HashMap::new());
        for i in 0..2000 {
            for key in [format!("user:{i}"), format!("plain{i}"), format!("{{t{i}}}x")] {
                let by_position = table.find(position_of(key.as_bytes(), b':')).core;
                assert_eq!(table.core_of_key(key.as_bytes(), b':'), by_position, "{key}");
            }
        }
    }
}
