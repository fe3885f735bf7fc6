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
            | Op::Ttl { key } => key,
        }
    }

    /// The kind counted in per-shard statistics.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Get { .. } | Op::Exists { .. } | Op::Ttl { .. } => OpKind::Read,
            Op::Del { .. } => OpKind::Delete,
            Op::Set { .. } | Op::IncrBy { .. } | Op::Append { .. } => OpKind::Write,
            Op::Expire { .. } | Op::Persist { .. } => OpKind::Other,
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
}
