//! Backups (BGSAVE, SAVE): a consistent point-in-time copy of every shard and of the shard
//! map, taken while the server serves, copied from the files (the dataset is not copied in
//! memory), into a folder that is itself a data directory.
//!
//! The cut, run by the coordinator under the migration lock (so the map stands still and no
//! range is moving):
//! 1. `Hold`: every core makes its ops wait (a gate that `route` answers `Paused`).
//! 2. `MarkAndRelease`: once every core holds, each core marks the end of every shard's log
//!    (`Shard::pin_for_backup`: one synchronous moment per core) and releases its ops.
//!
//! Why this is one point in time: a write is in the backup if and only if its core applied it
//! before that core's hold. Suppose W2 is in (applied on core j before j's hold) and W1 was
//! acknowledged before W2 was sent (W1 happens before W2). If W1's core i had applied it after
//! i's hold, that was after i's release, so after every core's hold, j's included, so after W2:
//! a contradiction. So the backup is closed under "happened before": what a client saw
//! acknowledged before a write in the backup is in it too, whichever cores they live on. The
//! hold lasts two fan-outs (sub-millisecond here), each with a deadline of `BACKUP_CUT_WAIT`
//! (a slow core fails the backup rather than stall the others); a hold that is never followed
//! by its mark (the coordinator gave up) releases itself after two of them.
//!
//! Then every core makes the marked records durable (`Sync`), the coordinator copies the files
//! on a blocking thread (segments and older logs whole, the current log up to its mark), writes
//! the map and the `BACKUP` file, syncs, and renames `backup-<ms>.tmp` to `backup-<ms>`; every
//! core unpins (`End`, also after a failure). While pinned, a shard's snapshot removes no file.
//!
//! Invariant: a backup folder is complete exactly when it has its final name.
//! Invariant: every pin and hold of a backup ends (`End` after success or failure, the hold's
//! own timer), so a failed backup never stops snapshots from removing files.

use super::*;
use crate::error::{EngineError, Result};
use crate::migration::Gate;
use crate::runtime::coordinator::{closed, unexpected, COORDINATOR_CORE, MIGRATION_WAIT_MAX};
use crate::shard::ShardFiles;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The file in a backup folder that says what it holds; written last, before the rename.
pub const BACKUP_INFO_FILE: &str = "BACKUP";
/// A complete backup's folder is `backup-<unix ms>` in the backup directory.
pub const BACKUP_DIR_PREFIX: &str = "backup-";
/// Complete backups kept in the backup directory (the oldest go after a new one completes).
pub const BACKUPS_KEPT: usize = 2;
/// How long the cut may take to reach every core (each of its two fan-outs), and so the
/// longest any core's ops wait for it: a slow core fails the backup (retry) rather than
/// stall the others for `core_answer_wait_ms`.
pub const BACKUP_CUT_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);

/// Steps of a backup, sent between cores.
#[derive(Debug, Clone)]
pub enum BackupWork {
    /// To the coordinator: take a backup into the backup directory `dir`.
    Run { dir: PathBuf },
    /// To every core: hold ops for backup `id`.
    Hold { id: u64 },
    /// To every core: mark and pin every shard, release the hold.
    MarkAndRelease { id: u64 },
    /// To a core: make each shard's log durable up to its mark (shard number, LSN).
    Sync(Vec<(u64, u64)>),
    /// To every core: end backup `id` (release its hold and unpin its shards, if still so).
    End { id: u64 },
}

/// What a backup took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup's folder.
    pub path: PathBuf,
    /// When its cut was taken (Unix ms).
    pub unix_ms: u64,
    pub shards: usize,
    pub files: usize,
    pub bytes: u64,
    /// The shard map's epoch in the backup.
    pub epoch: u64,
    /// How long ops waited for the cut.
    pub hold_micros: u64,
    /// From the lock to the rename.
    pub micros: u64,
}

/// A core's state of the backup in progress: its hold and the shards it pinned.
#[derive(Default)]
pub(crate) struct BackupState {
    id: u64,
    pinned: Vec<u64>,
    /// The newest backup id ended here (a late hold for it is not taken).
    ended: u64,
}

impl Core {
    /// Takes a backup into `dir` (created if missing); returns once it is complete there.
    pub async fn backup(&self, dir: PathBuf) -> Result<BackupReport> {
        let work = CoreWork::Backup(BackupWork::Run { dir });
        match self.on_core_within(COORDINATOR_CORE, work, MIGRATION_WAIT_MAX, "a backup").await {
            CoreResult::BackedUp(r) => Ok(r),
            CoreResult::Done(Err(e)) => Err(e),
            other => Err(unexpected("backup", other)),
        }
    }

    pub(super) async fn run_backup_work(&self, work: BackupWork) -> CoreResult {
        let done = CoreResult::Done;
        match work {
            BackupWork::Run { dir } => match self.take_backup(dir).await {
                Ok(r) => CoreResult::BackedUp(r),
                Err(e) => done(Err(e)),
            },
            BackupWork::Hold { id } => {
                // No transaction half applied here at the cut (see `txn`); bounded, and a
                // backup that ended while this core waited takes no hold.
                if super::mesh::within(BACKUP_CUT_WAIT, self.quiet_txns()).await.is_none() {
                    return done(Err(EngineError::Unavailable {
                        reason: format!(
                            "transactions held keys on core {} past the cut's wait",
                            self.id
                        ),
                    }));
                }
                if self.backup_state.borrow().ended >= id {
                    return done(Err(EngineError::Unavailable {
                        reason: format!("backup {id} ended before core {} could hold", self.id),
                    }));
                }
                self.hold_for_backup(id);
                done(Ok(()))
            }
            BackupWork::MarkAndRelease { id } => {
                if self.id != COORDINATOR_CORE {
                    // Tests widen the window between the cores' marks (still holding).
                    crate::fault_delay!("backup:mark");
                }
                self.mark_and_release(id)
            }
            BackupWork::Sync(marks) => {
                for (number, lsn) in marks {
                    if let Some(shard) = self.local_shard(number).filter(|_| lsn > 0) {
                        if let Err(e) = shard.wait_durable(lsn).await {
                            return done(Err(e));
                        }
                    }
                }
                done(Ok(()))
            }
            BackupWork::End { id } => {
                self.end_backup_here(id);
                done(Ok(()))
            }
        }
    }

    fn hold_for_backup(&self, id: u64) {
        let gate = Rc::new(Gate::default());
        let previous = self.backup_state.borrow().id;
        self.end_backup_here(previous);
        let ended = self.backup_state.borrow().ended;
        *self.backup_state.borrow_mut() = BackupState { id, pinned: Vec::new(), ended };
        *self.backup_hold.borrow_mut() = Some(gate.clone());
        // A hold whose mark never comes (the coordinator gave up) must not last.
        let me = self.me.upgrade().expect("a core outlives its handlers");
        // Both fan-outs of the cut, then it releases itself.
        let limit = BACKUP_CUT_WAIT * 2;
        glommio::spawn_local(async move {
            glommio::timer::sleep(limit).await;
            let still = me.backup_hold.borrow().as_ref().is_some_and(|g| Rc::ptr_eq(g, &gate));
            if still {
                tracing::warn!(core = me.id, backup = id, "a backup's hold timed out; released");
                me.release_backup_hold();
            }
        })
        .detach();
    }

    fn release_backup_hold(&self) {
        if let Some(gate) = self.backup_hold.borrow_mut().take() {
            gate.open();
        }
    }

    /// Marks and pins every local shard, then releases the hold: no await in between, so it
    /// is one moment of this core.
    fn mark_and_release(&self, id: u64) -> CoreResult {
        let held = self.backup_hold.borrow().is_some() && self.backup_state.borrow().id == id;
        if !held {
            return CoreResult::Done(Err(EngineError::Unavailable {
                reason: format!("core {} no longer holds for backup {id}", self.id),
            }));
        }
        let mut marks = Vec::new();
        let mut failed = None;
        for shard in self.local_shards() {
            match shard.pin_for_backup() {
                Ok(files) => {
                    self.backup_state.borrow_mut().pinned.push(files.number);
                    marks.push(files);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.release_backup_hold();
        match failed {
            None => CoreResult::BackupMarks(marks),
            Some(e) => CoreResult::Done(Err(e)),
        }
    }

    /// Ends backup `id` on this core: its hold released, its shards unpinned.
    fn end_backup_here(&self, id: u64) {
        {
            let mut state = self.backup_state.borrow_mut();
            state.ended = state.ended.max(id);
        }
        if self.backup_state.borrow().id != id {
            return;
        }
        self.release_backup_hold();
        let pinned = std::mem::take(&mut self.backup_state.borrow_mut().pinned);
        for number in pinned {
            if let Some(shard) = self.local_shard(number) {
                shard.unpin_backup();
            }
        }
    }

    /// The coordinator's part: the cut, the syncs, the copy, then `End` everywhere.
    async fn take_backup(&self, dir: PathBuf) -> Result<BackupReport> {
        let _permit = self.migration_lock.acquire_permit(1).await.map_err(|_| closed())?;
        let started = Instant::now();
        let id = self.migrations.begin_backup();
        let taken = self.cut_and_copy(id, dir).await;
        for r in
            self.on_every_core(CoreWork::Backup(BackupWork::End { id }), "a backup's end").await
        {
            if let CoreResult::Done(Err(e)) = r {
                tracing::error!(error = %e, backup = id, "ending a backup");
            }
        }
        let mut report = taken?;
        report.micros = started.elapsed().as_micros() as u64;
        tracing::info!(path = %report.path.display(), shards = report.shards,
            bytes = report.bytes, hold_us = report.hold_micros, ms = report.micros / 1000,
            "backup complete");
        Ok(report)
    }

    async fn cut_and_copy(&self, id: u64, dir: PathBuf) -> Result<BackupReport> {
        let map = self.shard_map();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let hold_started = Instant::now();
        let hold = CoreWork::Backup(BackupWork::Hold { id });
        for r in self.on_every_core_within(hold, "a backup's hold", BACKUP_CUT_WAIT).await {
            if let CoreResult::Done(Err(e)) = r {
                return Err(e);
            }
        }
        let mark = CoreWork::Backup(BackupWork::MarkAndRelease { id });
        let mut per_core = Vec::new();
        let marks = self.on_every_core_within(mark, "a backup's mark", BACKUP_CUT_WAIT).await;
        for (core, r) in marks.into_iter().enumerate() {
            match r {
                CoreResult::BackupMarks(files) => per_core.push((core, files)),
                CoreResult::Done(Err(e)) => return Err(e),
                other => return Err(unexpected("a backup's mark", other)),
            }
        }
        let held = hold_started.elapsed();
        self.config.latency_events.observe(crate::telemetry::EVENT_BACKUP_CUT, held);
        let hold_micros = held.as_micros() as u64;
        for (core, files) in &per_core {
            let marks = files.iter().map(|f| (f.number, f.lsn)).collect();
            let sync = CoreWork::Backup(BackupWork::Sync(marks));
            match self.on_core_within(*core, sync, self.step_wait(), "a backup's sync").await {
                CoreResult::Done(Ok(())) => {}
                CoreResult::Done(Err(e)) => return Err(e),
                other => return Err(unexpected("a backup's sync", other)),
            }
        }
        let shards: Vec<ShardFiles> = per_core.into_iter().flat_map(|(_, f)| f).collect();
        let info = backup_info(unix_ms, map.epoch, &shards);
        let map_bytes = map.encode();
        let shard_count = shards.len();
        let epoch = map.epoch;
        let copied = glommio::executor()
            .spawn_blocking(move || write_backup(&dir, unix_ms, &map_bytes, &shards, &info))
            .await?;
        Ok(BackupReport {
            path: copied.path,
            unix_ms,
            shards: shard_count,
            files: copied.files,
            bytes: copied.bytes,
            epoch,
            hold_micros,
            micros: 0,
        })
    }
}

/// The `BACKUP` file: what the backup holds, one `name value` per line.
fn backup_info(unix_ms: u64, epoch: u64, shards: &[ShardFiles]) -> String {
    let mut s = format!("shardcast-backup 1\nunix_ms {unix_ms}\nepoch {epoch}\n");
    for f in shards {
        s.push_str(&format!("shard {} lsn {}\n", f.number, f.lsn));
    }
    s
}

struct Copied {
    path: PathBuf,
    files: usize,
    bytes: u64,
}

/// Copies the marked files into `root/backup-<ms>.tmp`, syncs everything, renames it to
/// `root/backup-<ms>` and removes the older backups past `BACKUPS_KEPT`. Blocking.
fn write_backup(
    root: &Path,
    unix_ms: u64,
    map_bytes: &[u8],
    shards: &[ShardFiles],
    info: &str,
) -> Result<Copied> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| EngineError::from_io(op, path, e)
    };
    let done = root.join(format!("{BACKUP_DIR_PREFIX}{unix_ms}"));
    let tmp = root.join(format!("{BACKUP_DIR_PREFIX}{unix_ms}.tmp"));
    std::fs::create_dir_all(root).map_err(io("create directory", root))?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
    }
    let shards_dir = tmp.join(crate::shard::SHARDS_DIR);
    std::fs::create_dir_all(&shards_dir).map_err(io("create directory", &shards_dir))?;
    let (mut files, mut bytes) = (0usize, 0u64);
    let result = (|| {
        for shard in shards {
            let to = shards_dir.join(shard.number.to_string());
            std::fs::create_dir(&to).map_err(io("create directory", &to))?;
            for (name, len) in &shard.files {
                let from = shard.dir.join(name);
                if len.is_none() && !from.exists() {
                    // A snapshot was removing it as the mark listed it: it is obsolete, covered
                    // by the segment that snapshot wrote (renamed before any removal, so
                    // listed too). The marked log itself is never removed while pinned.
                    tracing::debug!(path = %from.display(), "an obsolete file went before the copy");
                    continue;
                }
                bytes += copy_prefix(&from, &to.join(name), *len)?;
                files += 1;
            }
            sync_dir(&to)?;
        }
        sync_dir(&shards_dir)?;
        write_synced(&tmp.join(crate::placement::manifest::MANIFEST_FILE), map_bytes)?;
        write_synced(&tmp.join(BACKUP_INFO_FILE), info.as_bytes())?;
        sync_dir(&tmp)?;
        std::fs::rename(&tmp, &done).map_err(io("rename", &tmp))?;
        sync_dir(root)
    })();
    if let Err(e) = result {
        // A partial backup must not hold the space (a full disk is the likely cause).
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    prune_backups(root, &done);
    Ok(Copied { path: done, files, bytes })
}

/// Copies `len` bytes of `from` (all if `None`) to a new file `to`, synced; returns the bytes.
fn copy_prefix(from: &Path, to: &Path, len: Option<u64>) -> Result<u64> {
    use std::io::Read as _;
    let src = std::fs::File::open(from).map_err(|e| EngineError::from_io("open", from, e))?;
    let mut dst = std::fs::File::create(to).map_err(|e| EngineError::from_io("create", to, e))?;
    let n = std::io::copy(&mut src.take(len.unwrap_or(u64::MAX)), &mut dst)
        .map_err(|e| EngineError::from_io("copy", to, e))?;
    if len.is_some_and(|l| l != n) {
        return Err(EngineError::Corrupt {
            path: from.to_owned(),
            offset: n,
            reason: format!("the log ends before its backup mark at {}", len.unwrap_or(0)),
        });
    }
    dst.sync_all().map_err(|e| EngineError::from_io("fsync", to, e))?;
    Ok(n)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| EngineError::from_io("create", path, e))?;
    f.write_all(bytes).map_err(|e| EngineError::from_io("write", path, e))?;
    f.sync_all().map_err(|e| EngineError::from_io("fsync", path, e))
}

fn sync_dir(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::from_io("fsync directory", path, e))
}

/// Removes unfinished backups (other than the one just made) and the complete ones past
/// `BACKUPS_KEPT`, oldest first. Failures are logged: the new backup is complete either way.
fn prune_backups(root: &Path, newest: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut complete: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(BACKUP_DIR_PREFIX) else { continue };
        if let Some(ms) = rest.strip_suffix(".tmp").and_then(|m| m.parse::<u64>().ok()) {
            // An unfinished one of a backup that failed or was interrupted.
            let _ = ms;
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing an unfinished backup");
            }
        } else if let Ok(ms) = rest.parse::<u64>() {
            complete.push((ms, path));
        }
    }
    complete.sort();
    let excess = complete.len().saturating_sub(BACKUPS_KEPT);
    for (_, path) in complete.into_iter().take(excess).filter(|(_, p)| p != newest) {
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), error = %e, "removing an old backup");
        }
    }
}

/// The newest complete backup in `dir`, or `dir` itself if it is a backup.
pub fn find_backup(dir: &Path) -> Option<PathBuf> {
    if dir.join(BACKUP_INFO_FILE).is_file() {
        return Some(dir.to_owned());
    }
    let mut complete: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ms = name.strip_prefix(BACKUP_DIR_PREFIX)?.parse::<u64>().ok()?;
            e.path().join(BACKUP_INFO_FILE).is_file().then(|| (ms, e.path()))
        })
        .collect();
    complete.sort();
    complete.pop().map(|(_, p)| p)
}
