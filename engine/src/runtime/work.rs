//! The work one core asks of another (`CoreWork`) and its answers (`CoreResult`).

use super::*;
use crate::error::Result;
use crate::ops::{Op, Reply};
use std::rc::Rc;

/// `CoreWork::SetIfNoneExist`'s answer when its keys live in several shards of the core.
pub const SET_IF_NONE_EXIST_SEVERAL_SHARDS: u64 = 2;

/// Work that is not a single-key op, run on every core.
#[derive(Debug, Clone)]
pub enum CoreWork {
    /// Ops whose keys the receiving core owned when they were sent; `hops` counts forwards;
    /// `app` is the client's application (for the statistics).
    Ops { ops: Vec<Op>, hops: u32, app: crate::telemetry::AppId },
    /// Keys on the core (expired ones not yet collected included, as Redis's DBSIZE).
    DbSize,
    /// Up to `count` entries at scan position >= `cursor`, filtered by `pattern`.
    Scan { cursor: u64, count: usize, pattern: Option<Vec<u8>> },
    /// A summary of every local shard.
    ShardInfo,
    /// Sets every pair only if none of the keys exists, atomically (all keys on this core).
    /// Answers `Count(1)` if set, `Count(0)` if not, `Count(SET_IF_NONE_EXIST_SEVERAL_SHARDS)`
    /// if the keys live in several shards (nothing done: the caller holds them instead).
    SetIfNoneExist(Vec<(Vec<u8>, Vec<u8>)>),
    /// A random live key of this core, if it has any.
    RandomKey { seed: u64 },
    /// Every live key matching `pattern` (all if `None`), up to `max`: one pass (KEYS).
    Keys { pattern: Option<Vec<u8>>, max: usize },
    /// Migration steps (see `coordinator`).
    Migration(crate::runtime::migration_steps::MigrationWork),
    /// Backup steps (see `backup`).
    Backup(crate::runtime::backup::BackupWork),
    /// The inner work, answered with the epoch of the map it ran under (`AtEpoch`).
    AtEpoch(Box<CoreWork>),
    /// Steps of atomic work across cores (see `txn`).
    Txn(crate::runtime::txn::TxnWork),
}

impl CoreWork {
    /// Work that yields to client traffic: it runs in the background task queue.
    pub(super) fn is_background(&self) -> bool {
        use crate::runtime::migration_steps::MigrationWork;
        matches!(
            self,
            CoreWork::Migration(MigrationWork::Apply { cutover: false, .. } | MigrationWork::Tidy)
        )
    }
}

/// What INFO and the admin commands show of a shard.
#[derive(Debug, Clone)]
pub struct ShardSummary {
    pub core: usize,
    /// The partition whose own shard this is; `None` for a shared shard.
    pub partition: Option<Vec<u8>>,
    pub number: u64,
    /// The ranges of positions it owns.
    pub ranges: Vec<(crate::routing::Position, crate::routing::Position)>,
    pub keys: u64,
    /// Keys with an expiry.
    pub expiring_keys: u64,
    pub used_bytes: u64,
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
    pub others: u64,
    pub snapshots: u64,
    /// Snapshot tasks spawned (at most one waits to start at any time).
    pub snapshot_tasks: u64,
    /// Operations per second over the last second.
    pub ops_per_sec: f64,
    /// Accesses counted by the split histogram since the range last changed.
    pub accesses: u64,
    /// A migration is moving part of this shard away.
    pub migrating: bool,
    /// Why the shard is not serving, if it is not.
    pub failure: Option<String>,
    /// Why a serving shard refuses writes (its log failed, or the disk is full), if it does.
    pub refuses_writes: Option<String>,
    /// A shared shard's busiest partitions over the last second (bounded top-k).
    pub top_partitions: Vec<crate::shard::PartitionLoad>,
}

/// The answer to `CoreWork`.
#[derive(Debug)]
pub enum CoreResult {
    Ops(Vec<Result<Reply>>),
    Count(u64),
    Done(Result<()>),
    Scan(ScanPage),
    Shards(Vec<ShardSummary>),
    /// A core's shards as a backup's cut marked them.
    BackupMarks(Vec<crate::shard::ShardFiles>),
    BackedUp(crate::runtime::backup::BackupReport),
    Key(Option<Vec<u8>>),
    /// KEYS: the matching keys, and whether `max` cut them short.
    Keys {
        keys: Vec<Vec<u8>>,
        truncated: bool,
    },
    /// Where to cut a split.
    Position(crate::routing::Position),
    /// What a migration moved.
    Migrated(crate::runtime::coordinator::MigrationReport),
    AtEpoch {
        epoch: u64,
        result: Box<CoreResult>,
    },
    Txn(crate::runtime::txn::TxnAnswer),
}

/// What one core's scan examined.
#[derive(Debug, Default)]
pub struct ScanPage {
    /// Matching keys with their scan positions, ascending.
    pub keys: Vec<(u64, Vec<u8>)>,
    /// Position of the first entry not examined; `None` when the core has no more.
    pub next: Option<u64>,
}

/// A job for another core, run there with its `Core` (the server hands connections over this
/// way).
pub type CoreJob = Box<dyn FnOnce(Rc<Core>) + Send>;
