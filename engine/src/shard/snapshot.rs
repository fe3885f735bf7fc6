//! Snapshots: the log is rotated, the keyspace is captured by sharing reference counts at the
//! rotation point, and a checksummed segment is written while foreground traffic continues;
//! the log files it makes obsolete go after its rename is synced.

use super::{new_wal_file, parse_numbered, segment, segment_name, Shard, SEGMENT_WRITE_BYTES};
use crate::error::Result;
use crate::log::writer::Wal;
use crate::shard::segment::SegmentEntry;
use crate::storage::{Storage, StorageFile, IO_ALIGN};

impl<S: Storage> Shard<S> {
    /// Whether the log has grown enough to be worth a snapshot, and none is running or
    /// scheduled.
    pub fn wants_snapshot(&self) -> bool {
        match &self.wal {
            Some(wal)
                if self.failure.is_none()
                    && !self.snapshot_running.get()
                    && !self.snapshot_scheduled.get() =>
            {
                let grown = wal.bytes_since_rotation();
                grown >= self.config.snapshot_min_wal_bytes && grown >= self.segment_len.get()
            }
            _ => false,
        }
    }

    /// Notes that a task will run `snapshot` (see `wants_snapshot`): until it starts, ops that
    /// see the grown log do not schedule another. Without this, a run of ops that never
    /// yields (a deep pipeline, a bench loop) spawned one task per op.
    pub fn set_snapshot_scheduled(&self, scheduled: bool) {
        self.snapshot_scheduled.set(scheduled);
    }

    /// Writes a snapshot segment of the keyspace and removes the log files it makes obsolete.
    /// Foreground traffic continues meanwhile: the keyspace is captured by sharing reference
    /// counts at the rotation point, and the encoding yields between chunks.
    pub async fn snapshot(&self) -> Result<()> {
        self.snapshot_with(async {}).await
    }

    /// `snapshot`, whose cut is taken while the guard `hold` resolves to is alive: the core
    /// passes a hold that waits until no transaction holds keys there, so no segment holds a
    /// transaction's part before its commit is logged (docs/transactions.md, "Crashes").
    pub async fn snapshot_with<G>(&self, hold: impl std::future::Future<Output = G>) -> Result<()> {
        self.snapshot_scheduled.set(false);
        let wal = self.serving_wal()?;
        if self.snapshot_running.replace(true) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let result = self.snapshot_inner(wal, hold).await;
        self.config.latency_events.observe(crate::telemetry::EVENT_SNAPSHOT, started.elapsed());
        self.snapshot_running.set(false);
        if let Err(e) = &result {
            tracing::error!(shard = %self.meta.name(), error = %e, "snapshot failed");
        }
        result
    }

    async fn snapshot_inner<G>(
        &self,
        wal: &Wal<S::File>,
        hold: impl std::future::Future<Output = G>,
    ) -> Result<()> {
        if let Some(e) = wal.no_space() {
            // The disk is full: a snapshot would only take space the log needs.
            return Err(e);
        }
        let seq = self.wal_seq.get() + 1;
        let new_log = self.dir.join(super::wal_name(seq));
        let rotated = async {
            let (file, path) =
                new_wal_file(&self.storage, &self.dir, seq, self.config.wal_prealloc_bytes).await?;
            self.storage.sync_dir(&self.dir).await?;
            // Taken before the log's lock: a transaction the hold waits for may need that
            // lock to make its part durable.
            let held = hold.await;
            let _lock = wal.lock().await;
            // Written first, so what the rotation leaves to write in the old file is small.
            wal.flush_held(false).await?;
            let rotated = wal.rotate(file, path, self.config.wal_prealloc_bytes);
            self.wal_seq.set(seq);
            let entries = self.keyspace.borrow().share_range(0, crate::routing::Position::MAX);
            let lsn = wal.last_lsn();
            drop(held);
            wal.finish_rotation(rotated).await?;
            Ok((entries, lsn))
        }
        .await;
        let (entries, lsn) = match rotated {
            Ok(r) => r,
            Err(e) => {
                if wal.current_path() != new_log {
                    // Not rotated, or the rotation undone (a full disk): the new log file is
                    // unused, and must not hold space.
                    self.wal_seq.set(seq - 1);
                    let _ = self.storage.remove(&new_log).await;
                }
                return Err(e);
            }
        };
        let tmp = self.dir.join(format!("{}.tmp", segment_name(lsn)));
        crate::fault_delay!("snapshot:write");
        let total = entries.len() as u64;
        let written = self.write_segment(&tmp, entries, lsn).await;
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                // A full disk mid-segment: the partial segment must not hold the space.
                let _ = self.storage.remove(&tmp).await;
                return Err(e);
            }
        };
        let final_path = self.dir.join(segment_name(lsn));
        self.storage.rename(&tmp, &final_path).await?;
        self.storage.sync_dir(&self.dir).await?;
        self.segment_len.set(written);
        // The segment covers everything up to `lsn`: older segments and logs are obsolete,
        // unless a backup is copying them (the next snapshot removes them).
        for name in self.storage.list_dir(&self.dir)? {
            let obsolete = parse_numbered(&name, "seg-", ".rkyv").is_some_and(|l| l < lsn)
                || parse_numbered(&name, "wal-", ".log").is_some_and(|s| s < seq);
            // Checked before each removal: a backup may mark the shard while this loop awaits.
            if obsolete && !self.pinned_for_backup() {
                self.storage.remove(&self.dir.join(&name)).await?;
            }
        }
        self.storage.sync_dir(&self.dir).await?;
        self.stats.snapshots.set(self.stats.snapshots.get() + 1);
        tracing::debug!(shard = %self.meta.name(), lsn, entries = total, bytes = written, "snapshot written");
        Ok(())
    }

    /// Writes and syncs a segment of `entries` as of `lsn` to `tmp`; returns its length.
    async fn write_segment(
        &self,
        tmp: &std::path::Path,
        entries: Vec<(crate::keyspace::Key, crate::keyspace::Entry)>,
        lsn: u64,
    ) -> Result<u64> {
        let file = self.storage.open_rw(tmp, true).await?;
        let mut buf = Vec::with_capacity(SEGMENT_WRITE_BYTES * 2);
        let mut written = 0u64;
        segment::encode_header(lsn, &mut buf);
        let (mut chunks, total) = (0u64, entries.len() as u64);
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut iter = entries.into_iter().peekable();
        while iter.peek().is_some() {
            for (key, entry) in iter.by_ref() {
                chunk_bytes += key.len() + entry.value.len();
                chunk.push(SegmentEntry {
                    key: key.to_vec(),
                    value: entry.value.to_vec(),
                    expire_at_ms: entry.expire_at_ms,
                });
                if chunk.len() >= segment::CHUNK_ENTRIES_MAX
                    || chunk_bytes >= segment::CHUNK_BYTES_TARGET
                {
                    break;
                }
            }
            segment::encode_chunk(std::mem::take(&mut chunk), &mut buf);
            chunk_bytes = 0;
            chunks += 1;
            if buf.len() >= SEGMENT_WRITE_BYTES {
                let whole = buf.len() / IO_ALIGN * IO_ALIGN;
                file.write_at(written, &buf[..whole]).await?;
                buf.drain(..whole);
                written += whole as u64;
            }
            glommio::yield_if_needed().await;
        }
        segment::encode_footer(lsn, chunks, total, &mut buf);
        buf.resize(crate::storage::align_up(buf.len() as u64) as usize, 0);
        file.write_at(written, &buf).await?;
        written += buf.len() as u64;
        file.sync().await?;
        file.close().await?;
        Ok(written)
    }
}
