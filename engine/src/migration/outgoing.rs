//! What a source shard records about the range it is giving away.

use super::Gate;
use crate::keyspace::Key;
use crate::routing::Position;
use std::collections::HashSet;
use std::rc::Rc;

/// What a source shard records about the range it is giving away.
#[derive(Debug)]
pub struct Outgoing {
    /// The coordinator's number for the migration (0 where none is given, as in tests): a
    /// stream checks it after every await, so one the coordinator gave up on stops instead of
    /// taking a later migration's deltas.
    pub migration: u64,
    pub lo: Position,
    pub hi: Position,
    /// Keys of the range written since the cut.
    pub dirty: HashSet<Key, ahash::RandomState>,
    /// The whole keyspace was cleared since the cut.
    pub cleared: bool,
    /// Set during the cutover: requests for the range wait on it.
    pub paused: Option<Rc<Gate>>,
    pub paused_at: Option<std::time::Instant>,
}

impl Outgoing {
    pub fn new(lo: Position, hi: Position) -> Self {
        Outgoing {
            migration: 0,
            lo,
            hi,
            dirty: HashSet::default(),
            cleared: false,
            paused: None,
            paused_at: None,
        }
    }

    pub fn contains(&self, position: Position) -> bool {
        (self.lo..=self.hi).contains(&position)
    }
}
