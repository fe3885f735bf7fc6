//! A shard's part in a migration: giving a range away (a consistent cut, then deltas of the
//! keys written since, then a pause), taking batches in, and dropping the keys it no longer
//! owns. Every range walk goes through the position index, so its cost follows the range,
//! not the shard (a partition carved out of a shared shard of millions of keys walks only the
//! partition's keys).

use super::{gaps, Shard, WalSink};
use crate::error::{EngineError, Result};
use crate::keyspace::{Entry, Key, NoLog};
use crate::migration::{Gate, MigrationBatch, Outgoing};
use crate::routing::Position;
use crate::shard::segment::SegmentEntry;
use crate::storage::Storage;
use std::rc::Rc;

/// Keys removed between yields by `drop_foreign`.
const DROP_BATCH_KEYS: usize = 1024;

impl<S: Storage> Shard<S> {
    /// Starts giving away `lo..=hi`: records writes to it from now on and returns its entries
    /// as of now (shared, cheap). Nothing awaits in between, so the two form one cut.
    pub fn begin_outgoing(&self, lo: Position, hi: Position) -> Vec<(Key, Entry)> {
        self.begin_outgoing_for(lo, hi, 0)
    }

    /// `begin_outgoing` for the coordinator's migration number `migration`.
    pub fn begin_outgoing_for(
        &self,
        lo: Position,
        hi: Position,
        migration: u64,
    ) -> Vec<(Key, Entry)> {
        let mut out = self.outgoing.borrow_mut();
        assert!(out.is_none(), "{}: one outgoing migration at a time", self.meta.name());
        *out = Some(Outgoing { migration, ..Outgoing::new(lo, hi) });
        self.keyspace.borrow().share_range(lo, hi)
    }

    /// The number of the migration giving a range away, if one is.
    pub fn outgoing_migration(&self) -> Option<u64> {
        self.outgoing.borrow().as_ref().map(|o| o.migration)
    }

    /// The range being given away, if a migration runs.
    pub fn outgoing_range(&self) -> Option<(Position, Position)> {
        self.outgoing.borrow().as_ref().map(|o| (o.lo, o.hi))
    }

    pub fn is_migrating(&self) -> bool {
        self.outgoing.borrow().is_some()
    }

    /// Records a write to `key` at `position` if it falls in the range being given away.
    pub(super) fn note_outgoing_write(&self, key: &[u8], position: Position) {
        if let Some(out) = self.outgoing.borrow_mut().as_mut() {
            if out.contains(position) {
                out.dirty.insert(Rc::from(key));
            }
        }
    }

    /// Keys of the outgoing range written since the last delta.
    pub fn dirty_len(&self) -> usize {
        self.outgoing.borrow().as_ref().map_or(0, |o| o.dirty.len() + o.cleared as usize)
    }

    /// The next delta batch: the current state (value or deletion) of up to `entries_max`
    /// dirty keys or about `bytes_max` bytes of them, whichever comes first; the keys taken
    /// are no longer dirty.
    pub fn take_delta(&self, entries_max: usize, bytes_max: usize) -> MigrationBatch {
        let mut guard = self.outgoing.borrow_mut();
        let out = guard.as_mut().expect("take_delta without an outgoing migration");
        let mut batch = MigrationBatch { clear_range: out.cleared, ..Default::default() };
        out.cleared = false;
        let now = self.clock.now_ms();
        let ks = self.keyspace.borrow();
        let mut bytes = 0;
        let mut taken = Vec::new();
        for key in out.dirty.iter() {
            if taken.len() >= entries_max.max(1) || (bytes >= bytes_max && !taken.is_empty()) {
                break;
            }
            bytes += key.len();
            match ks.peek_live(key, now) {
                Some(e) => {
                    bytes += e.value.len();
                    batch.puts.push(SegmentEntry {
                        key: key.to_vec(),
                        value: e.value.to_vec(),
                        expire_at_ms: e.expire_at_ms,
                    })
                }
                None => batch.deletes.push(key.to_vec()),
            }
            taken.push(key.clone());
        }
        for key in taken {
            out.dirty.remove(&key);
        }
        batch
    }

    /// Holds every request for the outgoing range until the cutover ends.
    pub fn pause_outgoing(&self) -> Rc<Gate> {
        let mut guard = self.outgoing.borrow_mut();
        let out = guard.as_mut().expect("pause without an outgoing migration");
        out.paused_at.get_or_insert_with(std::time::Instant::now);
        out.paused.get_or_insert_with(|| Rc::new(Gate::default())).clone()
    }

    /// The gate to wait on if `position` is in a paused outgoing range.
    #[inline]
    pub fn paused_gate(&self, position: Position) -> Option<Rc<Gate>> {
        let guard = self.outgoing.borrow();
        let out = guard.as_ref()?;
        out.paused.as_ref().filter(|_| out.contains(position)).cloned()
    }

    /// Ends the outgoing migration (committed or abandoned) and releases paused requests,
    /// which then route by the current map. Returns how long the range was paused, if it was.
    pub fn end_outgoing(&self) -> Option<std::time::Duration> {
        let out = self.outgoing.borrow_mut().take()?;
        if let Some(gate) = out.paused {
            gate.open();
        }
        out.paused_at.map(|t| t.elapsed())
    }

    /// Applies a migration batch for `lo..=hi` through the log. The keys stay foreign until
    /// the map gives this shard the range.
    /// A batch with a key outside `lo..=hi` is refused whole, before anything is applied.
    pub fn apply_batch(&self, batch: MigrationBatch, lo: Position, hi: Position) -> Result<()> {
        self.check_writable()?;
        let wal = self.serving_wal()?;
        let keys = batch
            .puts
            .iter()
            .map(|e| e.key.as_slice())
            .chain(batch.deletes.iter().map(Vec::as_slice));
        for key in keys {
            if !(lo..=hi).contains(&self.position(key)) {
                return Err(EngineError::MigrationStep {
                    reason: format!(
                        "a migration batch for {} holds key {:?} outside its range",
                        self.meta.name(),
                        String::from_utf8_lossy(key)
                    ),
                });
            }
        }
        if !super::covers(&self.ranges.borrow(), lo, hi) {
            self.foreign.set(true);
        }
        let mut sink = WalSink::new(wal);
        let mut ks = self.keyspace.borrow_mut();
        ks.set_now(self.clock.now_ms());
        if batch.clear_range {
            let doomed: Vec<Key> = ks.index().range(lo, hi).map(|(_, k)| k.clone()).collect();
            for key in doomed {
                ks.remove_logged(&key, &mut sink);
            }
        }
        for e in batch.puts {
            assert!(
                (lo..=hi).contains(&ks.index().position(&e.key)),
                "batch entry outside its range"
            );
            ks.restore(&e.key, e.value, e.expire_at_ms, &mut sink);
        }
        for key in batch.deletes {
            ks.remove_logged(&key, &mut sink);
        }
        Ok(())
    }

    /// The keys outside the owned ranges, found in the gaps between them through the index.
    fn foreign_keys(&self) -> Vec<Key> {
        let ks = self.keyspace.borrow();
        gaps(&self.ranges.borrow())
            .into_iter()
            .flat_map(|(lo, hi)| {
                ks.index().range(lo, hi).map(|(_, k)| k.clone()).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Removes (logged) every key outside the owned ranges, yielding between batches; after
    /// it the shard holds no foreign keys.
    pub async fn drop_foreign(&self) -> Result<usize> {
        if !self.foreign.get() {
            return Ok(0);
        }
        let pass = std::time::Instant::now();
        let doomed = self.foreign_keys();
        tracing::debug!(shard = %self.meta.name(), keys = doomed.len(),
            us = pass.elapsed().as_micros() as u64, "foreign keys found (index walk of the gaps)");
        for batch in doomed.chunks(DROP_BATCH_KEYS) {
            {
                let wal = self.serving_wal()?;
                let mut ks = self.keyspace.borrow_mut();
                // A full disk still takes appends (the tail keeps them for the retry): only a
                // failed log forgets in memory.
                if wal.failure().is_none() {
                    let mut sink = WalSink::new(wal);
                    for key in batch {
                        ks.remove_logged(key, &mut sink);
                    }
                } else {
                    // The log has failed: forget them in memory only; recovery drops them
                    // again by range.
                    for key in batch {
                        ks.remove_logged(key, &mut NoLog);
                    }
                }
            }
            glommio::yield_if_needed().await;
        }
        self.foreign.set(false);
        Ok(doomed.len())
    }
}
