//! The production storage: glommio DMA files (O_DIRECT through io_uring).

use super::{Storage, StorageFile, IO_ALIGN};
use crate::error::{EngineError, Result};
use glommio::io::{DmaFile, OpenOptions};
use std::path::{Path, PathBuf};

/// Storage on the local filesystem through glommio.
#[derive(Clone, Debug, Default)]
pub struct DmaStorage;

/// A glommio DMA file and its path (for error messages).
pub struct DmaStorageFile {
    file: DmaFile,
    path: PathBuf,
}

impl Storage for DmaStorage {
    type File = DmaStorageFile;

    async fn open_rw(&self, path: &Path, create: bool) -> Result<DmaStorageFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await
            .map_err(|e| EngineError::io("open", path, e))?;
        assert!(
            (IO_ALIGN as u64).is_multiple_of(file.alignment()),
            "device alignment {} does not divide IO_ALIGN",
            file.alignment()
        );
        Ok(DmaStorageFile { file, path: path.to_owned() })
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        glommio::io::rename(from, to).await.map_err(|e| EngineError::io("rename", from, e))
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        glommio::io::remove(path).await.map_err(|e| EngineError::io("remove", path, e))
    }

    async fn sync_dir(&self, path: &Path) -> Result<()> {
        // glommio 0.9's `Directory::open` hands the path to io_uring's openat with dirfd -1
        // instead of AT_FDCWD, so a relative path fails with EBADF (its file opens resolve
        // relative paths first; this one does not). Resolve it here.
        let absolute;
        let path = if path.is_relative() {
            absolute = std::path::absolute(path)
                .map_err(|e| EngineError::io("resolve directory", path, e))?;
            absolute.as_path()
        } else {
            path
        };
        let dir = glommio::io::Directory::open(path)
            .await
            .map_err(|e| EngineError::io("open directory", path, e))?;
        dir.sync().await.map_err(|e| EngineError::io("fsync directory", path, e))?;
        dir.close().await.map_err(|e| EngineError::io("close directory", path, e))
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).map_err(|e| EngineError::io("create directory", path, e))
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        std::fs::remove_dir(path).map_err(|e| EngineError::io("remove directory", path, e))
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EngineError::io("list directory", path, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| EngineError::io("list directory", path, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

impl StorageFile for DmaStorageFile {
    async fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let r = self
            .file
            .read_at(pos, len)
            .await
            .map_err(|e| EngineError::io("read", &self.path, e))?;
        Ok(r.to_vec())
    }

    async fn write_at(&self, pos: u64, data: &[u8]) -> Result<()> {
        assert!(
            pos.is_multiple_of(IO_ALIGN as u64) && data.len().is_multiple_of(IO_ALIGN),
            "unaligned DMA write"
        );
        // A full device answers an O_DIRECT write with a short count; writing the rest gets
        // the reason (ENOSPC) from the kernel. A retry rewrites the same bytes.
        let mut done = 0usize;
        while done < data.len() {
            let rest = &data[done..];
            let mut buf = self.file.alloc_dma_buffer(rest.len());
            buf.as_bytes_mut().copy_from_slice(rest);
            let written = self
                .file
                .write_at(buf, pos + done as u64)
                .await
                .map_err(|e| EngineError::from_io("write", &self.path, e.into()))?;
            done += written;
            if written == 0 || !done.is_multiple_of(IO_ALIGN) {
                // Nothing more can be written from here: a full device is the one cause for a
                // regular file. Retryable as such: a retry rewrites from the aligned start.
                return Err(EngineError::NoSpace {
                    op: "write",
                    path: self.path.clone(),
                    reason: format!("short write: {done} of {} bytes", data.len()),
                });
            }
        }
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        self.file.fdatasync().await.map_err(|e| EngineError::io("fdatasync", &self.path, e))
    }

    async fn size(&self) -> Result<u64> {
        self.file.file_size().await.map_err(|e| EngineError::io("stat", &self.path, e))
    }

    async fn truncate(&self, len: u64) -> Result<()> {
        self.file.truncate(len).await.map_err(|e| EngineError::io("truncate", &self.path, e))
    }

    async fn preallocate(&self, len: u64) -> Result<()> {
        self.file
            .pre_allocate(len, false)
            .await
            .map_err(|e| EngineError::from_io("fallocate", &self.path, e.into()))
    }

    async fn close(self) -> Result<()> {
        self.file.close().await.map_err(|e| EngineError::io("close", &self.path, e))
    }
}
