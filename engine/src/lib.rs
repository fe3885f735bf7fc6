//! Shardcast's storage engine: thread-per-core shards, each with an in-memory keyspace, a
//! write-ahead log and snapshot segments, recovered after a crash. Knows nothing of RESP, the
//! network or the predictor.

pub mod clock;
pub mod coordinator;
pub mod error;
pub mod fault;
pub mod glob;
pub mod keyspace;
pub mod manifest;
pub mod migration;
pub mod ops;
pub mod record;
pub mod routing;
pub mod runtime;
pub mod segment;
pub mod shard;
pub mod shard_map;
pub mod storage;
pub mod testing;
pub mod wal;
pub mod wal_reader;

pub use error::{EngineError, Result};

pub use runtime::{
    run, run_until, Core, CoreJob, CoreResult, CoreWork, EngineConfig, ShardSummary,
};
pub use wal::FsyncPolicy;
