//! A shard's write-ahead log: `record` frames one logged mutation, `writer` appends, flushes
//! and syncs them with group commit, `reader` reads a log file back and decides how it ends.

pub mod reader;
pub mod record;
pub mod writer;
