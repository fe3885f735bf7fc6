//! The migrations an operator can look at: the one running now, with its progress, and the
//! last `MIGRATIONS_RECENT_MAX` that ended (committed or rolled back), newest first. Kept in
//! memory only (the manifest is the durable record of the layout; INFO has the totals): the
//! dashboard and `SHARDCAST MIGRATIONS`-style views read it.
//!
//! The coordinator begins and ends entries; the source core adds each batch's keys and bytes
//! while it streams. It is behind a mutex shared by every core, taken once per migration step
//! or batch, never by an op on the data path.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Ended migrations kept (the oldest is dropped first).
pub const MIGRATIONS_RECENT_MAX: usize = 32;

/// Who asked for a layout change: an operator (a command) or the allocator's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedBy {
    Operator,
    Policy,
}

impl ChangedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangedBy::Operator => "operator",
            ChangedBy::Policy => "allocator",
        }
    }
}

/// How a migration ended, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    Running,
    Committed,
    /// Rolled back before its commit; the source kept the range. The cause, in words.
    RolledBack(String),
    /// Not carried out and not rolled back: its intent could not be written (nothing moved),
    /// or its rollback could not be recorded (the range stays paused until a restart). Why.
    Failed(String),
}

impl MigrationState {
    pub fn as_str(&self) -> &'static str {
        match self {
            MigrationState::Running => "running",
            MigrationState::Committed => "committed",
            MigrationState::RolledBack(_) => "rolled back",
            MigrationState::Failed(_) => "failed",
        }
    }

    /// The cause, for a migration that did not commit.
    pub fn error(&self) -> Option<&str> {
        match self {
            MigrationState::RolledBack(e) | MigrationState::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// One migration as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationEntry {
    /// carve-out, split, move, merge or fold-back.
    pub kind: &'static str,
    pub by: ChangedBy,
    pub partition: Vec<u8>,
    pub source: u64,
    pub target: u64,
    pub source_core: usize,
    pub target_core: usize,
    /// Unix ms of its intent.
    pub started_ms: u64,
    /// Elapsed so far (running) or in all (ended).
    pub micros: u64,
    /// Keys and encoded batch bytes streamed so far (running) or in all.
    pub keys: u64,
    pub bytes: u64,
    /// How long the cutover held the range's requests (known once installed).
    pub pause_micros: Option<u64>,
    pub state: MigrationState,
}

impl MigrationEntry {
    /// Megabytes (10^6 bytes) per second over the whole migration.
    pub fn mb_per_sec(&self) -> f64 {
        if self.micros == 0 {
            return 0.0;
        }
        self.bytes as f64 / self.micros as f64
    }
}

#[derive(Debug, Default)]
struct Inner {
    running: Option<(MigrationEntry, Instant)>,
    ended: VecDeque<MigrationEntry>,
}

/// The running migration and the recent ones.
#[derive(Debug, Default)]
pub struct MigrationJournal {
    inner: Mutex<Inner>,
}

impl MigrationJournal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the start of `entry` (its counts and state are reset).
    pub(crate) fn begin(&self, mut entry: MigrationEntry) {
        entry.started_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        (entry.micros, entry.keys, entry.bytes) = (0, 0, 0);
        entry.pause_micros = None;
        entry.state = MigrationState::Running;
        self.lock().running = Some((entry, Instant::now()));
    }

    /// The running migration has streamed `keys` keys in `bytes` bytes so far.
    pub(crate) fn progress(&self, keys: u64, bytes: u64) {
        if let Some((e, _)) = &mut self.lock().running {
            (e.keys, e.bytes) = (keys, bytes);
        }
    }

    /// The running migration's cutover held its range for `micros`.
    pub(crate) fn paused(&self, micros: u64) {
        if let Some((e, _)) = &mut self.lock().running {
            e.pause_micros = Some(micros);
        }
    }

    /// Ends the running migration (`state` is not `Running`).
    pub(crate) fn end(&self, state: MigrationState) {
        let mut inner = self.lock();
        let Some((mut e, started)) = inner.running.take() else { return };
        e.micros = started.elapsed().as_micros() as u64;
        e.state = state;
        inner.ended.push_front(e);
        inner.ended.truncate(MIGRATIONS_RECENT_MAX);
    }

    /// The running migration (its elapsed time as of now), if any.
    pub fn running(&self) -> Option<MigrationEntry> {
        self.lock().running.as_ref().map(|(e, started)| {
            let mut e = e.clone();
            e.micros = started.elapsed().as_micros() as u64;
            e
        })
    }

    /// The ended migrations, newest first.
    pub fn recent(&self) -> Vec<MigrationEntry> {
        self.lock().ended.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(partition: &str) -> MigrationEntry {
        MigrationEntry {
            kind: "split",
            by: ChangedBy::Operator,
            partition: partition.as_bytes().to_vec(),
            source: 1,
            target: 2,
            source_core: 0,
            target_core: 1,
            started_ms: 0,
            micros: 0,
            keys: 0,
            bytes: 0,
            pause_micros: None,
            state: MigrationState::Committed,
        }
    }

    #[test]
    fn a_migration_runs_then_ends_newest_first_and_bounded() {
        let j = MigrationJournal::default();
        assert!(j.running().is_none());
        j.begin(entry("a"));
        j.progress(10, 1_000);
        j.paused(250);
        let r = j.running().expect("running");
        assert_eq!(
            (r.keys, r.bytes, r.pause_micros, r.state),
            (10, 1_000, Some(250), MigrationState::Running)
        );
        assert!(r.started_ms > 0);
        j.end(MigrationState::Committed);
        assert!(j.running().is_none());
        j.begin(entry("b"));
        j.end(MigrationState::RolledBack("disk full".into()));
        let recent = j.recent();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].partition, b"b");
        assert_eq!(recent[0].keys, 0, "counts start from zero for each migration");
        assert_eq!(recent[1].state, MigrationState::Committed);
        for i in 0..MIGRATIONS_RECENT_MAX + 5 {
            j.begin(entry(&i.to_string()));
            j.end(MigrationState::Committed);
        }
        assert_eq!(j.recent().len(), MIGRATIONS_RECENT_MAX);
        assert_eq!(j.recent()[0].partition, (MIGRATIONS_RECENT_MAX + 4).to_string().as_bytes());
        // Ending when nothing runs changes nothing.
        j.end(MigrationState::Committed);
        assert_eq!(j.recent().len(), MIGRATIONS_RECENT_MAX);
    }
}
