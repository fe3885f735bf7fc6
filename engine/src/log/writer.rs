//! A shard's write-ahead log writer: framing into an in-memory tail, aligned block writes and
//! group commit.
//!
//! Appends are synchronous (encode into `tail`); durability is asynchronous. `sync_to(lsn)`
//! takes the flush lock; whoever holds it writes *everything* buffered and fdatasyncs once, so
//! all writers waiting meanwhile are acknowledged by one sync (leader-based group commit).
//!
//! The tail always starts at an aligned file offset; after a write, whole blocks are dropped
//! from its front and the last partial block is kept and rewritten by the next flush (the bytes
//! already on disk are rewritten identically, so a torn rewrite cannot damage them).
//!
//! Invariant: `durable_lsn <= written_lsn <= last_lsn`, and `durable_lsn` only advances over a
//! prefix of the log: every record up to it is on stable storage.
//! Invariant: after a failed sync, or a write that failed for any reason but a full device,
//! `failed` is set for good and nothing more is appended or acknowledged (the state of the
//! page cache and device is unknown).
//! Invariant: a write refused for lack of space (`no_space`) changed nothing that matters: the
//! tail keeps every byte, and the next flush rewrites the same image at the same offset (bytes
//! already on disk rewritten identically), so a retry once space returns loses nothing. The
//! shard refuses writes meanwhile; the log itself keeps accepting appends (evictions).
//! A failed preallocation is never a failure of the log: the reservation falls back to the
//! exact size needed, then to none (the file then grows by its writes).

use crate::error::{EngineError, Result};
use crate::log::record::Record;
use crate::storage::{align_up, StorageFile, IO_ALIGN};
use glommio::sync::Semaphore;
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

/// Default space reserved when a log file is created, so appends within it do not change the
/// file size (fdatasync then has no size to write). Small, because every shard has a log.
pub const WAL_PREALLOC_BYTES: u64 = 1024 * 1024;
/// Largest growth step of a log file's reservation (steps double up to this).
pub const WAL_PREALLOC_STEP_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// When to make the log durable (Redis's `appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// A write is acknowledged only after the fdatasync that covers it.
    Always,
    /// Written and fdatasynced by a timer about once a second; up to ~1 s lost in a crash.
    EverySec,
    /// Written by the timer, never synced by us: the device decides.
    No,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySec),
            "no" => Ok(FsyncPolicy::No),
            _ => Err(format!("invalid fsync policy '{s}': expected always, everysec or no")),
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        })
    }
}

/// Where a log ended at one moment (`Wal::mark`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalMark {
    pub path: PathBuf,
    pub end_offset: u64,
    pub last_lsn: u64,
}

/// How a log file's reservation grows (see `Wal::ensure_allocated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prealloc {
    Doubling,
    Exact,
    Off,
}

impl Prealloc {
    fn next(self) -> Prealloc {
        match self {
            Prealloc::Doubling => Prealloc::Exact,
            Prealloc::Exact | Prealloc::Off => Prealloc::Off,
        }
    }
}

struct Tail {
    /// Bytes of the log from `offset` on: the last partial block on disk plus new records.
    bytes: Vec<u8>,
    /// Aligned file offset of `bytes[0]`.
    offset: u64,
    /// Bytes of `bytes` that are already written to the file.
    written_len: usize,
}

/// A log file being appended to.
struct Segment<F> {
    file: Rc<F>,
    path: PathBuf,
    first_lsn: u64,
    allocated: u64,
}

/// The write-ahead log of one shard.
pub struct Wal<F: StorageFile> {
    current: RefCell<Segment<F>>,
    tail: RefCell<Tail>,
    last_lsn: Cell<u64>,
    written_lsn: Cell<u64>,
    durable_lsn: Cell<u64>,
    /// Bytes appended since the log was opened or rotated.
    bytes_since_rotation: Cell<u64>,
    failed: RefCell<Option<String>>,
    /// The last write refused for lack of space, until a write succeeds again.
    no_space: RefCell<Option<EngineError>>,
    /// How this file's reservation grows: by doubling steps, by exactly what is needed (after a
    /// step failed), or not at all (after that failed too); a new file starts doubling again.
    prealloc: Cell<Prealloc>,
    flush_lock: Semaphore,
}

/// What `rotate` hands back: the previous file and its unwritten tail, to be finished with
/// `finish_rotation` while the flush lock is held (or put back, if the disk is full).
pub struct Rotated<F> {
    old: Segment<F>,
    tail: Tail,
    last_lsn: u64,
    bytes_since_rotation: u64,
    prealloc: Prealloc,
}

impl<F: StorageFile> Wal<F> {
    /// A log appending to `file` (empty, preallocated to `allocated` bytes) whose first record
    /// gets `first_lsn`.
    pub fn new(file: F, path: PathBuf, first_lsn: u64, allocated: u64) -> Self {
        assert!(first_lsn >= 1 && allocated > 0);
        Wal {
            current: RefCell::new(Segment { file: Rc::new(file), path, first_lsn, allocated }),
            tail: RefCell::new(Tail { bytes: Vec::new(), offset: 0, written_len: 0 }),
            last_lsn: Cell::new(first_lsn - 1),
            written_lsn: Cell::new(first_lsn - 1),
            durable_lsn: Cell::new(first_lsn - 1),
            bytes_since_rotation: Cell::new(0),
            failed: RefCell::new(None),
            no_space: RefCell::new(None),
            prealloc: Cell::new(Prealloc::Doubling),
            flush_lock: Semaphore::new(1),
        }
    }

    pub fn last_lsn(&self) -> u64 {
        self.last_lsn.get()
    }

    pub fn durable_lsn(&self) -> u64 {
        self.durable_lsn.get()
    }

    pub fn bytes_since_rotation(&self) -> u64 {
        self.bytes_since_rotation.get()
    }

    /// Bytes appended but not yet written to the file.
    pub fn unwritten_bytes(&self) -> usize {
        let t = self.tail.borrow();
        t.bytes.len() - t.written_len
    }

    pub fn current_path(&self) -> PathBuf {
        self.current.borrow().path.clone()
    }

    pub fn current_first_lsn(&self) -> u64 {
        self.current.borrow().first_lsn
    }

    /// The reason the log failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Where the log ends now: its current file, the byte offset just past the last record
    /// appended (written or not), and that record's LSN. A backup copies the log up to here.
    pub fn mark(&self) -> WalMark {
        let tail = self.tail.borrow();
        WalMark {
            path: self.current.borrow().path.clone(),
            end_offset: tail.offset + tail.bytes.len() as u64,
            last_lsn: self.last_lsn.get(),
        }
    }

    /// Why the last write was refused for lack of space, while no write has succeeded since:
    /// the shard refuses writes meanwhile, and every flush retries.
    pub fn no_space(&self) -> Option<EngineError> {
        self.no_space.borrow().clone()
    }

    /// Frames `record` into the tail and returns its LSN. Fails if the log has failed before.
    pub fn append(&self, record: &Record<'_>) -> std::result::Result<u64, String> {
        if let Some(reason) = self.failed.borrow().as_ref() {
            return Err(reason.clone());
        }
        let lsn = self.last_lsn.get() + 1;
        let mut tail = self.tail.borrow_mut();
        let before = tail.bytes.len();
        record.encode(lsn, self.durable_lsn.get(), &mut tail.bytes);
        self.bytes_since_rotation
            .set(self.bytes_since_rotation.get() + (tail.bytes.len() - before) as u64);
        self.last_lsn.set(lsn);
        Ok(lsn)
    }

    fn fail(&self, err: &EngineError) {
        let mut failed = self.failed.borrow_mut();
        if failed.is_none() {
            tracing::error!(error = %err, "write-ahead log failed; the shard refuses writes");
            *failed = Some(err.to_string());
        }
    }

    fn check(&self) -> Result<()> {
        match self.failed.borrow().as_ref() {
            Some(reason) => Err(EngineError::Io {
                op: "log",
                path: self.current.borrow().path.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Returns once every record up to `lsn` is durable, syncing if needed.
    pub async fn sync_to(&self, lsn: u64) -> Result<()> {
        loop {
            self.check()?;
            if self.durable_lsn.get() >= lsn {
                return Ok(());
            }
            let _permit = self.flush_lock.acquire_permit(1).await.expect("flush lock closed");
            if self.durable_lsn.get() >= lsn {
                return Ok(());
            }
            self.flush_locked(true).await?;
        }
    }

    /// Writes everything buffered, and fdatasyncs if `sync`. Used by the timers of the
    /// `everysec` and `no` policies and at shutdown.
    pub async fn flush(&self, sync: bool) -> Result<()> {
        self.check()?;
        let _permit = self.flush_lock.acquire_permit(1).await.expect("flush lock closed");
        self.flush_locked(sync).await
    }

    /// `flush`, for a caller that holds the flush lock (see `lock`): a snapshot writes the
    /// tail before rotating, so the old file's last write is small.
    pub async fn flush_held(&self, sync: bool) -> Result<()> {
        self.check()?;
        self.flush_locked(sync).await
    }

    async fn flush_locked(&self, sync: bool) -> Result<()> {
        let (image, offset, copied_len, upto) = {
            let tail = self.tail.borrow();
            let upto = self.last_lsn.get();
            if tail.written_len == tail.bytes.len() {
                (Vec::new(), tail.offset, tail.bytes.len(), upto)
            } else {
                let mut image = tail.bytes.clone();
                image.resize(align_up(image.len() as u64) as usize, 0);
                (image, tail.offset, tail.bytes.len(), upto)
            }
        };
        let file = self.current.borrow().file.clone();
        if !image.is_empty() {
            self.ensure_allocated(&file, offset + image.len() as u64).await;
            if let Err(e) = file.write_at(offset, &image).await {
                if e.is_no_space() {
                    // Nothing is lost: the tail keeps the image for the next flush.
                    if self.no_space.replace(Some(e.clone())).is_none() {
                        tracing::error!(error = %e, "log write refused: the disk is full; \
                            the shard refuses writes and retries");
                    }
                } else {
                    self.fail(&e);
                }
                return Err(e);
            }
            if self.no_space.take().is_some() {
                tracing::info!(path = %self.current.borrow().path.display(),
                    "log write succeeded again: the shard accepts writes");
            }
            self.written_lsn.set(upto);
            let mut tail = self.tail.borrow_mut();
            assert_eq!(tail.offset, offset, "tail moved during a flush");
            let whole = copied_len / IO_ALIGN * IO_ALIGN;
            tail.bytes.drain(..whole);
            tail.offset += whole as u64;
            tail.written_len = copied_len - whole;
        }
        if sync && self.durable_lsn.get() < self.written_lsn.get() {
            if let Err(e) = file.sync().await {
                self.fail(&e);
                return Err(e);
            }
            self.durable_lsn.set(self.written_lsn.get().min(upto));
        }
        Ok(())
    }

    /// Reserves room for the file to reach `end`: a doubling step, else the exact size, else
    /// nothing (the write then grows the file itself, and fails on its own if it cannot).
    async fn ensure_allocated(&self, file: &F, end: u64) {
        let allocated = self.current.borrow().allocated;
        if end <= allocated {
            return;
        }
        loop {
            let target = match self.prealloc.get() {
                Prealloc::Doubling => {
                    align_up(end.max(allocated + allocated.min(WAL_PREALLOC_STEP_MAX_BYTES)))
                }
                Prealloc::Exact => align_up(end),
                Prealloc::Off => return,
            };
            match file.preallocate(target).await {
                Ok(()) => {
                    self.current.borrow_mut().allocated = target;
                    return;
                }
                Err(e) => {
                    let next = self.prealloc.get().next();
                    tracing::warn!(error = %e, target, ?next, "log preallocation failed");
                    self.prealloc.set(next);
                }
            }
        }
    }

    /// Starts a new log file: records appended from now on go to `file`; the old file's
    /// unwritten tail is returned. The caller must hold the flush lock (see `lock`) from before
    /// this call until `finish_rotation` returns, so nothing later becomes durable first.
    pub fn rotate(&self, file: F, path: PathBuf, allocated: u64) -> Rotated<F> {
        let first_lsn = self.last_lsn.get() + 1;
        let old = std::mem::replace(
            &mut *self.current.borrow_mut(),
            Segment { file: Rc::new(file), path, first_lsn, allocated },
        );
        let tail = std::mem::replace(
            &mut *self.tail.borrow_mut(),
            Tail { bytes: Vec::new(), offset: 0, written_len: 0 },
        );
        let bytes_since_rotation = self.bytes_since_rotation.replace(0);
        let prealloc = self.prealloc.replace(Prealloc::Doubling);
        Rotated { old, tail, last_lsn: first_lsn - 1, bytes_since_rotation, prealloc }
    }

    /// Holds the flush lock (for a rotation).
    pub async fn lock(&self) -> glommio::sync::Permit<'_> {
        self.flush_lock.acquire_permit(1).await.expect("flush lock closed")
    }

    /// Writes and syncs the old file's tail; afterwards everything up to the rotation point is
    /// durable. If the disk is full, the rotation is undone instead (the old file is current
    /// again, with every record appended since in its tail, and the new file unused: the
    /// caller removes it), and the log is out of space as after any refused write.
    pub async fn finish_rotation(&self, rotated: Rotated<F>) -> Result<()> {
        self.check()?;
        let Rotated { old, tail, last_lsn, bytes_since_rotation, prealloc } = rotated;
        let file = old.file.clone();
        if tail.written_len < tail.bytes.len() {
            let mut image = tail.bytes.clone();
            image.resize(align_up(image.len() as u64) as usize, 0);
            if let Err(e) = file.write_at(tail.offset, &image).await {
                if e.is_no_space() {
                    self.undo_rotation(old, tail, bytes_since_rotation, prealloc);
                    if self.no_space.replace(Some(e.clone())).is_none() {
                        tracing::error!(error = %e, "log write refused: the disk is full; \
                            the shard refuses writes and retries");
                    }
                } else {
                    self.fail(&e);
                }
                return Err(e);
            }
        }
        if let Err(e) = file.sync().await {
            self.fail(&e);
            return Err(e);
        }
        self.written_lsn.set(self.written_lsn.get().max(last_lsn));
        self.durable_lsn.set(self.durable_lsn.get().max(last_lsn));
        Ok(())
    }

    /// Puts the old file back as the current one, its tail followed by what was appended to the
    /// new file's tail meanwhile (nothing of which was written: the flush lock is held).
    fn undo_rotation(&self, old: Segment<F>, old_tail: Tail, since: u64, prealloc: Prealloc) {
        drop(std::mem::replace(&mut *self.current.borrow_mut(), old));
        let mut tail = self.tail.borrow_mut();
        let newer = std::mem::replace(&mut *tail, old_tail);
        assert!(newer.offset == 0 && newer.written_len == 0, "the new log file was written");
        tail.bytes.extend_from_slice(&newer.bytes);
        self.bytes_since_rotation.set(since + self.bytes_since_rotation.get());
        self.prealloc.set(prealloc);
    }
}
