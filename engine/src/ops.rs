//! The operations a shard executes and their replies. Owned data only: ops and replies cross
//! cores through the channel mesh.

use crate::keyspace::{ExpireCondition, SetCondition, SetExpiry, Ttl};

/// One single-key operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Get {
        key: Vec<u8>,
    },
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        condition: SetCondition,
        expiry: SetExpiry,
        return_old: bool,
    },
    Del {
        key: Vec<u8>,
    },
    Exists {
        key: Vec<u8>,
    },
    IncrBy {
        key: Vec<u8>,
        delta: i64,
    },
    Append {
        key: Vec<u8>,
        suffix: Vec<u8>,
    },
    Expire {
        key: Vec<u8>,
        at_ms: u64,
        condition: ExpireCondition,
    },
    Persist {
        key: Vec<u8>,
    },
    Ttl {
        key: Vec<u8>,
    },
    /// The absolute expiry (EXPIRETIME, PEXPIRETIME): `Reply::Ttl` whose `Ms` is ms since the
    /// Unix epoch.
    ExpireTime {
        key: Vec<u8>,
    },
    /// Get and delete (GETDEL).
    GetDel {
        key: Vec<u8>,
    },
    /// Get and change the expiry (GETEX): `None` leaves it, `Clear` persists, `At` sets it.
    GetEx {
        key: Vec<u8>,
        expiry: Option<SetExpiry>,
    },
    StrLen {
        key: Vec<u8>,
    },
    /// Substring by inclusive, possibly negative, indices (GETRANGE).
    GetRange {
        key: Vec<u8>,
        start: i64,
        end: i64,
    },
    /// Overwrite from `offset`, zero-padding (SETRANGE).
    SetRange {
        key: Vec<u8>,
        offset: usize,
        value: Vec<u8>,
    },
    IncrByFloat {
        key: Vec<u8>,
        delta: f64,
    },
    /// The key's access counters and encoding, not counted as an access (OBJECT).
    Object {
        key: Vec<u8>,
    },
    /// The key's value and absolute expiry, not counted as an access (RENAME, COPY):
    /// `Reply::Entry`, or `Nil` if it is missing.
    Dump {
        key: Vec<u8>,
    },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Get { key }
            | Op::Set { key, .. }
            | Op::Del { key }
            | Op::Exists { key }
            | Op::IncrBy { key, .. }
            | Op::Append { key, .. }
            | Op::Expire { key, .. }
            | Op::Persist { key }
            | Op::Ttl { key }
            | Op::ExpireTime { key }
            | Op::GetDel { key }
            | Op::GetEx { key, .. }
            | Op::StrLen { key }
            | Op::GetRange { key, .. }
            | Op::SetRange { key, .. }
            | Op::IncrByFloat { key, .. }
            | Op::Object { key }
            | Op::Dump { key } => key,
        }
    }

    /// Whether the op may change the keyspace, and so append a log record. This, not the
    /// statistics label `kind`, decides what a shard whose log failed refuses and what a
    /// migration's delta records, so relabelling an op for the statistics cannot let a write
    /// reach a failed log. Exhaustive on purpose: a new op must say which it is.
    pub fn mutates(&self) -> bool {
        match self {
            Op::Get { .. }
            | Op::Exists { .. }
            | Op::Ttl { .. }
            | Op::ExpireTime { .. }
            | Op::StrLen { .. }
            | Op::GetRange { .. }
            | Op::Object { .. }
            | Op::Dump { .. } => false,
            Op::Set { .. }
            | Op::Del { .. }
            | Op::IncrBy { .. }
            | Op::Append { .. }
            | Op::Expire { .. }
            | Op::Persist { .. }
            | Op::GetDel { .. }
            | Op::GetEx { .. }
            | Op::SetRange { .. }
            | Op::IncrByFloat { .. } => true,
        }
    }

    /// Whether the op can change its key, as a WATCH sees it: a mutating op, except those
    /// Redis does not count as a change whatever the key holds (GETEX without an option,
    /// SETRANGE of nothing).
    pub fn may_change(&self) -> bool {
        match self {
            Op::GetEx { expiry: None, .. } => false,
            Op::SetRange { value, .. } if value.is_empty() => false,
            op => op.mutates(),
        }
    }

    /// The kind counted in per-shard statistics (the mix the predictor learns); it decides
    /// nothing else (see `mutates`).
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Get { .. }
            | Op::Exists { .. }
            | Op::Ttl { .. }
            | Op::ExpireTime { .. }
            | Op::StrLen { .. }
            | Op::GetRange { .. }
            | Op::Object { .. }
            | Op::Dump { .. } => OpKind::Read,
            Op::Del { .. } | Op::GetDel { .. } => OpKind::Delete,
            Op::Set { .. }
            | Op::IncrBy { .. }
            | Op::Append { .. }
            | Op::SetRange { .. }
            | Op::IncrByFloat { .. } => OpKind::Write,
            Op::Expire { .. } | Op::Persist { .. } | Op::GetEx { .. } => OpKind::Other,
        }
    }
}

impl Op {
    /// Bytes the client sent for this op: the key and any value (telemetry's bytes in).
    pub fn payload_bytes(&self) -> u64 {
        let value = match self {
            Op::Set { value, .. } | Op::SetRange { value, .. } => value.len(),
            Op::Append { suffix, .. } => suffix.len(),
            _ => 0,
        };
        (self.key().len() + value) as u64
    }

    /// Whether the op may add data (refused past `maxmemory`).
    pub fn may_grow(&self) -> bool {
        match self {
            Op::Set { .. }
            | Op::IncrBy { .. }
            | Op::Append { .. }
            | Op::SetRange { .. }
            | Op::IncrByFloat { .. } => true,
            Op::Get { .. }
            | Op::Exists { .. }
            | Op::Ttl { .. }
            | Op::ExpireTime { .. }
            | Op::StrLen { .. }
            | Op::GetRange { .. }
            | Op::Object { .. }
            | Op::Dump { .. }
            | Op::Del { .. }
            | Op::GetDel { .. }
            | Op::Expire { .. }
            | Op::Persist { .. }
            | Op::GetEx { .. } => false,
        }
    }
}

/// Read / write / delete / other, the mix the predictor learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Write,
    Delete,
    Other,
}

impl Reply {
    /// Whether the mutating op that gave this reply changed its key (what a WATCH hears):
    /// a SET NX that did not set, a DEL or EXPIRE that found nothing, changed nothing.
    pub fn changed(&self) -> bool {
        match self {
            Reply::Set { applied, .. } => *applied,
            Reply::Bool(b) => *b,
            Reply::Nil => false,
            _ => true,
        }
    }

    /// Value bytes in this reply (telemetry's bytes out).
    pub fn payload_bytes(&self) -> u64 {
        match self {
            Reply::Value(v) => v.len() as u64,
            Reply::Set { old: Some(v), .. } => v.len() as u64,
            _ => 0,
        }
    }
}

/// The reply to an `Op`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// No value (GET of a missing key).
    Nil,
    /// A yes/no outcome (DEL, EXISTS, EXPIRE, PERSIST).
    Bool(bool),
    Int(i64),
    Value(Vec<u8>),
    Ttl(Ttl),
    /// SET: whether it applied, and the old value if asked for.
    Set {
        applied: bool,
        old: Option<Vec<u8>>,
    },
    /// OBJECT: seconds since the last access, the LFU counter, Redis's name for the encoding,
    /// and the bytes the entry is charged for (`keyspace::entry_cost`, as `maxmemory` counts).
    Object {
        idle_s: u32,
        freq: u8,
        encoding: &'static str,
        bytes: u64,
    },
    /// DUMP-like: a key's value and absolute expiry in ms (0: none).
    Entry {
        value: Vec<u8>,
        expire_at_ms: u64,
    },
}
