//! The engine's error type: one `#[non_exhaustive]` enum with structured fields.
//!
//! Programmer errors are `assert!`s, not variants here. Every variant's `Display` text is what a
//! client or an operator reads, so it names the file, offset or shard involved.

use std::fmt;
use std::path::PathBuf;

/// Everything the engine can refuse or fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The value is not an integer or out of range (Redis: "value is not an integer or out of range").
    NotAnInteger,
    /// The value is not a valid float (Redis: "value is not a valid float").
    NotAFloat,
    /// An increment or decrement would overflow a signed 64-bit integer.
    Overflow,
    /// A float increment produced NaN or infinity.
    NanOrInfinity,
    /// A key is longer than the engine accepts.
    KeyTooLarge { len: u64, max: u64 },
    /// A value would exceed the maximum string length.
    ValueTooLarge { len: u64, max: u64 },
    /// The shard is not serving: its files are corrupt or could not be read.
    ShardFailed { shard: String, reason: String },
    /// A write was applied in memory but its log record could not be written for lack of
    /// space: the log keeps it and retries, so it becomes durable once space returns, or is
    /// lost if the server stops first. Its outcome is unknown to its client.
    NotDurable { reason: String },
    /// The shard refuses writes because an earlier write or fsync of its log failed
    /// (after a failed fsync the page state is unknown, so nothing more is acknowledged).
    PreviousIo { shard: String, reason: String },
    /// An I/O operation failed.
    Io { op: &'static str, path: PathBuf, reason: String },
    /// The device is full (ENOSPC, or a quota): the write did not happen. A shard's log keeps
    /// what it could not write and retries; writes are refused until space returns, reads
    /// still answer (Redis's MISCONF after an AOF write error).
    NoSpace { op: &'static str, path: PathBuf, reason: String },
    /// A stored checksum did not match the bytes read.
    ChecksumMismatch { path: PathBuf, offset: u64, expected: u32, got: u32 },
    /// A file is structurally invalid (bad magic, impossible length, LSN gap).
    Corrupt { path: PathBuf, offset: u64, reason: String },
    /// A new shard (a carve-out or split) would exceed the shards one core may hold.
    TooManyShards { core: usize, max: usize },
    /// The engine is shutting down or a core stopped answering.
    Unavailable { reason: String },
    /// A layout change (split, merge, move) does not fit the current shard map: the shard is
    /// gone, elsewhere, not the partition's, or the change would do nothing. Plan again from
    /// the current map.
    NotApplicable { reason: String },
    /// A split would give a partition more shards than `shards-per-partition-max`.
    PartitionShardsMax { partition: String, shards: usize, max: usize },
    /// The shard covers a single position: there is nowhere to cut it.
    Unsplittable { shard: u64 },
    /// A migration failed before its commit and was rolled back: nothing moved.
    MigrationAbandoned { what: &'static str, partition: String, cause: Box<EngineError> },
    /// A step of a migration's protocol was refused (a batch out of order or out of range, a
    /// core already receiving): always reported inside `MigrationAbandoned`.
    MigrationStep { reason: String },
    /// Layout changes and FLUSHALL are refused until a restart: a rollback could not be
    /// recorded, so the map on disk is unknown.
    RebalanceBroken { reason: String },
    /// A core could not start (its shards could not be opened or created); no core serves.
    CoreStart { core: usize, cause: Box<EngineError> },
    /// A core did not answer `what` within `ms` milliseconds.
    CoreTimeout { core: usize, what: &'static str, ms: u64 },
    /// The data directory was made under settings that differ from the ones given now.
    Setting { name: &'static str, reason: String },
    /// A multi-key request met a range that is moving; retrying succeeds (Redis Cluster's
    /// TRYAGAIN during resharding).
    TryAgain,
    /// Memory is above `maxmemory` and the eviction policy found nothing it may evict.
    OutOfMemory,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::NotAnInteger => write!(f, "value is not an integer or out of range"),
            EngineError::NotAFloat => write!(f, "value is not a valid float"),
            EngineError::Overflow => write!(f, "increment or decrement would overflow"),
            EngineError::NanOrInfinity => write!(f, "increment would produce NaN or Infinity"),
            EngineError::KeyTooLarge { len, max } => {
                write!(f, "key of {len} bytes exceeds the maximum of {max} bytes")
            }
            EngineError::ValueTooLarge { .. } => {
                write!(f, "string exceeds maximum allowed size (proto-max-bulk-len)")
            }
            EngineError::ShardFailed { shard, reason } => {
                write!(f, "shard {shard} is not serving: {reason}")
            }
            EngineError::NotDurable { reason } => write!(
                f,
                "the write was applied in memory but could not be made durable ({reason}): it \
                 becomes durable once space is freed, or is lost if the server stops first"
            ),
            EngineError::PreviousIo { shard, reason } => write!(
                f,
                "shard {shard} refuses writes after a failed log write or fsync: {reason}"
            ),
            EngineError::Io { op, path, reason } => {
                write!(f, "I/O error during {op} of {}: {reason}", path.display())
            }
            EngineError::NoSpace { op, path, reason } => write!(
                f,
                "{reason} during {op} of {}; writes are refused until space is freed, reads still answer",
                path.display()
            ),
            EngineError::ChecksumMismatch { path, offset, expected, got } => write!(
                f,
                "checksum mismatch in {} at offset {offset}: stored {expected:#010x}, computed {got:#010x}",
                path.display()
            ),
            EngineError::Corrupt { path, offset, reason } => {
                write!(f, "corrupt file {} at offset {offset}: {reason}", path.display())
            }
            EngineError::TooManyShards { core, max } => write!(
                f,
                "core {core} already holds {max} shards (shards-per-core-max)"
            ),
            EngineError::Unavailable { reason } => write!(f, "engine unavailable: {reason}"),
            EngineError::NotApplicable { reason } => write!(f, "{reason}"),
            EngineError::PartitionShardsMax { partition, shards, max } => write!(
                f,
                "partition '{partition}' already has {shards} shards (shards-per-partition-max is {max})"
            ),
            EngineError::Unsplittable { shard } => {
                write!(f, "shard {shard} covers a single position and cannot be split")
            }
            EngineError::MigrationAbandoned { what, partition, cause } => {
                write!(f, "{what} of partition '{partition}' abandoned, nothing moved: {cause}")
            }
            EngineError::MigrationStep { reason } => write!(f, "{reason}"),
            EngineError::RebalanceBroken { reason } => {
                write!(f, "refused until the server restarts: {reason}")
            }
            EngineError::CoreStart { core, cause } => {
                write!(f, "core {core} could not start: {cause}")
            }
            EngineError::CoreTimeout { core, what, ms } => {
                write!(f, "core {core} did not answer {what} within {ms} ms")
            }
            EngineError::Setting { name, reason } => write!(f, "{name}: {reason}"),
            EngineError::TryAgain => write!(f, "Multiple keys request during rehashing of slot"),
            EngineError::OutOfMemory => {
                write!(f, "command not allowed when used memory > 'maxmemory'.")
            }
        }
    }
}

impl std::error::Error for EngineError {}

impl EngineError {
    /// Wraps an `std::io::Error` (or anything displayable) from operation `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, err: impl fmt::Display) -> Self {
        EngineError::Io { op, path: path.into(), reason: err.to_string() }
    }

    /// Wraps an `std::io::Error` from `op` on `path`, telling a full device (`NoSpace`) from
    /// any other failure.
    pub fn from_io(op: &'static str, path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        use std::io::ErrorKind::{QuotaExceeded, StorageFull};
        match err.kind() {
            StorageFull | QuotaExceeded => {
                // The kernel's words only ("No space left on device (os error 28)").
                let reason = match (err.raw_os_error(), err.kind()) {
                    (Some(code), _) => std::io::Error::from_raw_os_error(code).to_string(),
                    // glommio's errors keep the kind but not the code.
                    (None, StorageFull) => "No space left on device".to_owned(),
                    (None, _) => "Disk quota exceeded".to_owned(),
                };
                EngineError::NoSpace { op, path: path.into(), reason }
            }
            _ => EngineError::io(op, path, err),
        }
    }

    /// Whether this is a full device (the operation did not happen; retrying may succeed).
    pub fn is_no_space(&self) -> bool {
        matches!(self, EngineError::NoSpace { .. })
    }
}

/// Result alias of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
