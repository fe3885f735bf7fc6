//! Shardcast's storage engine: thread-per-core shards, each with an in-memory keyspace, a
//! write-ahead log and snapshot segments, recovered after a crash. Knows nothing of RESP, the
//! network or the predictor.
//!
//! The folders follow the layers, bottom-up: `storage` (the I/O seam), `log` (records, the
//! writer, the reader), `keyspace` (one shard's data in memory), `shard` (a keyspace with its
//! log and segments), `placement` (the shard map and its manifest), `migration` (the data
//! plane of a split or merge), `runtime` (the executors, routing, fan-out and the
//! coordinator). ARCHITECTURE.md has the map; docs/design.md the reasons.

pub mod clock;
pub mod error;
pub mod fault;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod glob;
pub mod keyspace;
pub mod log;
pub mod migration;
pub mod ops;
pub mod placement;
pub mod routing;
pub mod runtime;
pub mod shard;
pub mod storage;
pub mod telemetry;
pub mod testing;

pub use error::{EngineError, Result};

pub use log::writer::FsyncPolicy;
pub use runtime::layout::LayoutChange;
pub use runtime::{
    find_backup, run, run_until, BackupReport, Core, CoreJob, CoreResult, CoreWork, EngineConfig,
    EvictionPolicy, EvictionSettings, ShardSummary, SET_IF_NONE_EXIST_SEVERAL_SHARDS,
};
