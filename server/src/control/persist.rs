//! The load history's file, `<data-dir>/history.bin` (format in docs/format.md): written
//! whole (temporary file, fsync, rename, fsync of the directory), read at start. A file that
//! does not decode is renamed `history.bin.corrupt-<unix ms>` and reported; the server starts
//! with an empty history rather than refusing to start.

use shardcast_predictor::history::{HistoryLimits, LoadHistory};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The history's file name in the data directory.
pub const HISTORY_FILE: &str = "history.bin";
/// The largest history file read (a bigger one is set aside as corrupt).
pub const HISTORY_FILE_BYTES_MAX: u64 = 1 << 30;

fn path(dir: &Path) -> PathBuf {
    dir.join(HISTORY_FILE)
}

/// The history kept in `dir`, or an empty one (a damaged file is set aside with an error in
/// the log).
pub fn load(dir: &Path, limits: HistoryLimits) -> LoadHistory {
    let file = path(dir);
    let bytes = match std::fs::metadata(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LoadHistory::new(limits),
        Ok(m) if m.len() > HISTORY_FILE_BYTES_MAX => Err(format!(
            "{} bytes, more than the {HISTORY_FILE_BYTES_MAX} a history may have",
            m.len()
        )),
        _ => std::fs::read(&file).map_err(|e| e.to_string()),
    };
    let decoded = bytes.and_then(|b| LoadHistory::decode(&b, limits).map_err(|e| e.to_string()));
    match decoded {
        Ok(h) => {
            tracing::info!(file = %file.display(), partitions = h.partitions().len(), "load history read");
            h
        }
        Err(e) => {
            let aside = set_aside(dir, HISTORY_FILE);
            tracing::error!(file = %file.display(), error = %e, set_aside = %aside.display(),
                "the load history could not be read: set aside, starting with an empty history");
            LoadHistory::new(limits)
        }
    }
}

/// Writes `bytes` as the history of `dir`, atomically.
pub fn save(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    save_as(dir, HISTORY_FILE, bytes)
}

/// Writes `bytes` as `dir/name`: a temporary file, fsync, rename, fsync of the directory.
pub fn save_as(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Renames `dir/name` to `name.corrupt-<unix ms>`; returns the new path.
pub fn set_aside(dir: &Path, name: &str) -> PathBuf {
    let aside = dir.join(format!("{name}.corrupt-{}", unix_ms()));
    let _ = std::fs::rename(dir.join(name), &aside);
    aside
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}
