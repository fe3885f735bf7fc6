//! Shardcast's storage engine: thread-per-core shards, each with an in-memory keyspace, a
//! write-ahead log and snapshot segments, recovered after a crash. Knows nothing of RESP, the
//! network or the predictor.

pub mod clock;
pub mod error;
pub mod keyspace;
pub mod record;
pub mod routing;
pub mod segment;
pub mod storage;
pub mod testing;

pub use error::{EngineError, Result};
