//! BGSAVE, SAVE, LASTSAVE, INFO persistence's backup fields and `--restore`: the server's side
//! of backups. The engine takes them (`engine/src/runtime/backup.rs`: a consistent cut across
//! cores, copied from the files into `backup-<unix ms>` under `backup-dir`); a backup folder
//! is a data directory, so restoring is copying it into an empty data directory.

use crate::commands::error_text;
use crate::connection::Session;
use shardcast_engine::Core;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The backups of this process: the one running, and how the last one ended.
#[derive(Debug, Default)]
pub struct Backups {
    in_progress: AtomicBool,
    /// Unix seconds of the last successful backup, or of the start (Redis's LASTSAVE).
    last_save_unix_s: AtomicU64,
    last_failed: AtomicBool,
    last_duration_ms: AtomicU64,
    /// How long the last backup held ops for its cut, in microseconds.
    last_hold_us: AtomicU64,
    completed: AtomicU64,
    /// The last backup's folder, or why it failed.
    last_outcome: Mutex<String>,
}

impl Backups {
    pub fn new(started_unix_s: u64) -> Self {
        let b = Backups::default();
        b.last_save_unix_s.store(started_unix_s, Ordering::Relaxed);
        b
    }

    fn record(&self, r: &Result<shardcast_engine::BackupReport, shardcast_engine::EngineError>) {
        let mut outcome = self.last_outcome.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(report) => {
                self.last_save_unix_s.store(report.unix_ms / 1000, Ordering::Relaxed);
                self.last_failed.store(false, Ordering::Relaxed);
                self.last_duration_ms.store(report.micros / 1000, Ordering::Relaxed);
                self.last_hold_us.store(report.hold_micros, Ordering::Relaxed);
                self.completed.fetch_add(1, Ordering::Relaxed);
                *outcome = report.path.display().to_string();
            }
            Err(e) => {
                self.last_failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "backup failed");
                *outcome = e.to_string();
            }
        }
    }

    /// INFO persistence's backup lines (Redis's rdb_* names where Redis has them).
    pub fn info(&self, out: &mut String, dir: &Path) {
        use std::fmt::Write as _;
        let outcome = self.last_outcome.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = write!(
            out,
            "rdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_saves:{}\r\nbackup_dir:{}\r\nbackup_last:{}\r\nbackup_last_hold_us:{}\r\n",
            self.in_progress.load(Ordering::Relaxed) as u8,
            self.last_save_unix_s.load(Ordering::Relaxed),
            if self.last_failed.load(Ordering::Relaxed) { "err" } else { "ok" },
            match self.completed.load(Ordering::Relaxed) {
                0 => -1,
                _ => (self.last_duration_ms.load(Ordering::Relaxed) / 1000) as i64,
            },
            self.completed.load(Ordering::Relaxed),
            dir.display(),
            outcome,
            self.last_hold_us.load(Ordering::Relaxed),
        );
    }

    pub fn last_save_unix_s(&self) -> u64 {
        self.last_save_unix_s.load(Ordering::Relaxed)
    }
}

const ERR_IN_PROGRESS: &str = "ERR Background save already in progress";

/// BGSAVE [SCHEDULE]: starts a backup in the background.
pub fn bgsave(core: &Core, backups: &Arc<Backups>, dir: &Path, s: &mut Session, args: &[Vec<u8>]) {
    let schedule = match args.get(1) {
        None => false,
        Some(a) if args.len() == 2 && a.eq_ignore_ascii_case(b"schedule") => true,
        Some(_) => return s.w.error(crate::commands::ERR_SYNTAX),
    };
    if backups.in_progress.swap(true, Ordering::AcqRel) {
        // Redis schedules one only behind an AOF rewrite; a backup running now is as good.
        return match schedule {
            true => s.w.simple("Background saving scheduled"),
            false => s.w.error(ERR_IN_PROGRESS),
        };
    }
    let (core, backups, dir) = (core.handle(), backups.clone(), dir.to_owned());
    glommio::spawn_local(async move {
        let r = core.backup(dir).await;
        backups.record(&r);
        backups.in_progress.store(false, Ordering::Release);
    })
    .detach();
    s.w.simple("Background saving started");
}

/// SAVE: takes a backup and answers when it is complete.
pub async fn save(core: &Core, backups: &Backups, dir: &Path, s: &mut Session) {
    if backups.in_progress.swap(true, Ordering::AcqRel) {
        return s.w.error(ERR_IN_PROGRESS);
    }
    let r = core.backup(dir.to_owned()).await;
    backups.record(&r);
    backups.in_progress.store(false, Ordering::Release);
    match r {
        Ok(_) => s.w.ok(),
        Err(e) => s.w.error(&error_text(&e)),
    }
}

/// `--restore FROM`: copies the backup (FROM itself, or the newest backup in it) into the data
/// directory, which must be empty or missing, so the start recovers from it.
pub fn restore(from: &Path, data_dir: &Path) -> Result<PathBuf, String> {
    let backup = shardcast_engine::find_backup(from).ok_or_else(|| {
        format!("restore: {} is not a backup nor a folder of backups", from.display())
    })?;
    let occupied = std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if occupied {
        return Err(format!(
            "restore: the data directory {} is not empty; restore into a new one",
            data_dir.display()
        ));
    }
    // Copied beside it first, then renamed: a copy that fails half way leaves no half data
    // directory for the next start to serve from.
    let mut staging = data_dir.as_os_str().to_owned();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_dir_all(&staging);
    let copied = copy_tree(&backup, &staging).and_then(|()| {
        if data_dir.exists() {
            std::fs::remove_dir(data_dir)?; // empty, checked above
        }
        std::fs::rename(&staging, data_dir)?;
        let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty());
        std::fs::File::open(parent.unwrap_or(Path::new(".")))?.sync_all()
    });
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!(
            "restore: copying {} to {}: {e}",
            backup.display(),
            data_dir.display()
        ));
    }
    tracing::info!(from = %backup.display(), to = %data_dir.display(), "backup restored");
    Ok(backup)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()
}
