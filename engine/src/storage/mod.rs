//! The I/O seam: files and directories behind two small traits.
//!
//! `dma` implements them with glommio DMA files (O_DIRECT, io_uring); `sim` in memory with
//! crash images and injected faults, so tests can produce exactly the on-disk state a crash
//! leaves. Everything above this module (WAL, segments, shards) is written against the traits.

pub mod dma;
pub mod sim;

use crate::error::Result;
use std::path::Path;

/// Alignment of every write offset and length (O_DIRECT needs the device's logical block).
pub const IO_ALIGN: usize = 4096;

/// A filesystem.
#[allow(async_fn_in_trait, reason = "single-threaded executors: futures need not be Send")]
pub trait Storage: Clone + 'static {
    type File: StorageFile;
    /// Opens for reading and writing, creating the file if `create`.
    async fn open_rw(&self, path: &Path, create: bool) -> Result<Self::File>;
    /// Renames atomically; durable once the parent directory is synced.
    async fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Removes a file; durable once the parent directory is synced.
    async fn remove(&self, path: &Path) -> Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    async fn sync_dir(&self, path: &Path) -> Result<()>;
    /// Creates a directory and its parents (parents' entries are synced by the caller).
    fn create_dir_all(&self, path: &Path) -> Result<()>;
    /// Removes an empty directory; durable once its parent is synced.
    fn remove_dir(&self, path: &Path) -> Result<()>;
    /// Names of the entries of a directory (empty if it does not exist).
    fn list_dir(&self, path: &Path) -> Result<Vec<String>>;
}

/// An open file. Writes must be at `IO_ALIGN`-aligned offsets with aligned lengths.
#[allow(async_fn_in_trait, reason = "single-threaded executors: futures need not be Send")]
pub trait StorageFile: 'static {
    /// Reads up to `len` bytes at `pos`; shorter at the end of the file.
    async fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>>;
    /// Writes `data` at `pos`; both aligned to `IO_ALIGN`.
    async fn write_at(&self, pos: u64, data: &[u8]) -> Result<()>;
    /// fdatasync: written data (and the size needed to read it) is durable on return.
    async fn sync(&self) -> Result<()>;
    async fn size(&self) -> Result<u64>;
    async fn truncate(&self, len: u64) -> Result<()>;
    /// Reserves space up to `len` bytes, growing the file size (new space reads as zeros).
    async fn preallocate(&self, len: u64) -> Result<()>;
    async fn close(self) -> Result<()>;
}

/// Reads a whole file.
pub async fn read_all<F: StorageFile>(file: &F) -> Result<Vec<u8>> {
    const READ_CHUNK_LEN: usize = 4 * 1024 * 1024;
    let size = file.size().await?;
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let want = READ_CHUNK_LEN.min((size - out.len() as u64) as usize);
        let part = file.read_at(out.len() as u64, want).await?;
        if part.is_empty() {
            break;
        }
        out.extend_from_slice(&part);
    }
    Ok(out)
}

pub(crate) fn align_up(v: u64) -> u64 {
    v.div_ceil(IO_ALIGN as u64) * IO_ALIGN as u64
}
