//! The data plane of a migration (split or merge), independent of cores and channels:
//! what the source records while a range moves (`outgoing`), the checksummed rkyv batches
//! that carry the range to the target (`batch`), the gate that holds requests during the
//! cutover (`gate`), and where to cut a split (`access`).
//!
//! A migration of range R from shard S to shard T (docs/migration.md):
//! 1. `Shard::begin_outgoing(R)` marks R on S and, in the same step, shares R's entries (a
//!    consistent cut: every later write to R is recorded as a dirty key). The entries come
//!    from S's position index: a walk of R, not of S.
//! 2. The entries go to T in bounded batches (`BATCH_BYTES_TARGET`, `BATCH_ENTRIES_MAX`), each
//!    with a crc; T checks and applies them through its log (`Shard::apply_batch`).
//! 3. Dirty keys go as delta batches (their current value, or a delete) until few remain; then
//!    S pauses R (`Shard::pause_outgoing`), sends the last delta, and T makes everything
//!    durable. The map's epoch advances; paused requests are routed again, to T.
//!
//! Invariant: batches are applied in the order they were taken, and every delta is taken after
//! the entries it may overwrite, so T ends with exactly S's state of R at the pause.

mod access;
mod batch;
mod gate;
mod outgoing;

pub use access::{AccessHistogram, ACCESS_BUCKETS, SPLIT_SAMPLES_MIN};
pub use batch::*;
pub use gate::Gate;
pub use outgoing::Outgoing;
