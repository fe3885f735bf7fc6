//! In-memory storage that models what a crash leaves on disk.
//!
//! Each file has a durable image and the writes made since its last sync; each directory entry
//! is durable only after its directory is synced. `crash` rebuilds the filesystem from the
//! durable state plus, chosen by a seeded generator, any subset of the unsynced block writes
//! (a disk may persist them partially and out of order). Faults: a sync that fails, and a disk
//! with little or no free space (a write or preallocation that would grow a file by more than
//! what is free fails with `NoSpace` and changes nothing).

use super::{Storage, StorageFile, IO_ALIGN};
use crate::error::{EngineError, Result};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

type Inode = u64;

#[derive(Default, Clone)]
struct FileNode {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Block writes since the last sync, in order.
    unsynced: Vec<(u64, Vec<u8>)>,
    /// Length changes since the last sync (truncate / preallocate).
    len_dirty: bool,
}

#[derive(Default)]
struct Fs {
    inodes: HashMap<Inode, FileNode>,
    next_inode: Inode,
    /// Names as a running process sees them.
    names: BTreeMap<PathBuf, Inode>,
    /// Names that survive a crash.
    durable_names: BTreeMap<PathBuf, Inode>,
    dirs: std::collections::BTreeSet<PathBuf>,
    /// Syncs left before syncs start failing (None = never fail).
    syncs_until_failure: Option<u64>,
    /// Bytes files may still grow by (`None`: no limit). Removing a file gives nothing back.
    free_bytes: Option<u64>,
}

/// The simulated filesystem; clones share it.
#[derive(Clone, Default)]
pub struct SimStorage {
    fs: Rc<RefCell<Fs>>,
}

/// An open simulated file.
pub struct SimFile {
    fs: Rc<RefCell<Fs>>,
    inode: Inode,
    path: PathBuf,
}

impl SimStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// After `n` more successful syncs, every sync (file or directory) fails.
    pub fn fail_syncs_after(&self, n: u64) {
        self.fs.borrow_mut().syncs_until_failure = Some(n);
    }

    /// Sets the bytes files may still grow by (`Some(0)`: a full disk; `None`: no limit).
    pub fn set_free_bytes(&self, free: Option<u64>) {
        self.fs.borrow_mut().free_bytes = free;
    }

    /// Simulates power loss: keeps durable state and a seeded random subset of unsynced block
    /// writes. Files opened before the crash must not be used afterwards.
    pub fn crash(&self, seed: u64) {
        let mut rng = crate::testing::SplitMix64::new(seed);
        let mut fs = self.fs.borrow_mut();
        fs.names = fs.durable_names.clone();
        fs.syncs_until_failure = None;
        let live: std::collections::HashSet<Inode> = fs.names.values().copied().collect();
        fs.inodes.retain(|k, _| live.contains(k));
        for node in fs.inodes.values_mut() {
            let mut image = node.durable.clone();
            for (pos, data) in std::mem::take(&mut node.unsynced) {
                for (i, block) in data.chunks(IO_ALIGN).enumerate() {
                    if rng.next_u64().is_multiple_of(2) {
                        let at = pos as usize + i * IO_ALIGN;
                        if image.len() < at + block.len() {
                            image.resize(at + block.len(), 0);
                        }
                        image[at..at + block.len()].copy_from_slice(block);
                    }
                }
            }
            node.durable = image.clone();
            node.current = image;
            node.len_dirty = false;
        }
    }

    /// The current content of a file, for tests that corrupt files on purpose.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let fs = self.fs.borrow();
        fs.names.get(path).map(|i| fs.inodes[i].current.clone())
    }

    /// Replaces a file's content durably (a test's corruption of the disk).
    pub fn write_file_durably(&self, path: &Path, content: Vec<u8>) {
        let mut fs = self.fs.borrow_mut();
        let inode = fs.names[path];
        let node = fs.inodes.get_mut(&inode).unwrap();
        node.durable = content.clone();
        node.current = content;
        node.unsynced.clear();
    }

    /// Every file path currently visible.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.fs.borrow().names.keys().cloned().collect()
    }
}

/// Takes `bytes` of free space for a file's growth, or fails (changing nothing).
fn take_space(fs: &mut Fs, bytes: u64, op: &'static str, path: &Path) -> Result<()> {
    match &mut fs.free_bytes {
        Some(free) if *free < bytes => Err(EngineError::NoSpace {
            op,
            path: path.to_owned(),
            reason: "injected fault: No space left on device".into(),
        }),
        Some(free) => {
            *free -= bytes;
            Ok(())
        }
        None => Ok(()),
    }
}

fn take_sync(fs: &mut Fs, what: &Path) -> Result<()> {
    match &mut fs.syncs_until_failure {
        Some(0) => Err(EngineError::io("fdatasync", what, "injected fault: EIO")),
        Some(n) => {
            *n -= 1;
            Ok(())
        }
        None => Ok(()),
    }
}

impl Storage for SimStorage {
    type File = SimFile;

    async fn open_rw(&self, path: &Path, create: bool) -> Result<SimFile> {
        let mut fs = self.fs.borrow_mut();
        let inode = match fs.names.get(path) {
            Some(&i) => i,
            None if create => {
                let parent = path.parent().unwrap_or(Path::new("")).to_owned();
                if !fs.dirs.contains(&parent) {
                    return Err(EngineError::io("open", path, "No such file or directory"));
                }
                fs.next_inode += 1;
                let i = fs.next_inode;
                fs.inodes.insert(i, FileNode::default());
                fs.names.insert(path.to_owned(), i);
                i
            }
            None => return Err(EngineError::io("open", path, "No such file or directory")),
        };
        Ok(SimFile { fs: self.fs.clone(), inode, path: path.to_owned() })
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut fs = self.fs.borrow_mut();
        let inode =
            fs.names.remove(from).ok_or_else(|| EngineError::io("rename", from, "not found"))?;
        fs.names.insert(to.to_owned(), inode);
        Ok(())
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.names.remove(path).ok_or_else(|| EngineError::io("remove", path, "not found"))?;
        Ok(())
    }

    async fn sync_dir(&self, path: &Path) -> Result<()> {
        let mut fs = self.fs.borrow_mut();
        take_sync(&mut fs, path)?;
        let in_dir = |p: &Path| p.parent() == Some(path);
        let durable: Vec<_> = fs.durable_names.keys().filter(|p| in_dir(p)).cloned().collect();
        for p in durable {
            fs.durable_names.remove(&p);
        }
        let current: Vec<_> =
            fs.names.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)).collect();
        fs.durable_names.extend(current);
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let mut fs = self.fs.borrow_mut();
        let mut p = Some(path);
        while let Some(d) = p {
            fs.dirs.insert(d.to_owned());
            p = d.parent();
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        let mut fs = self.fs.borrow_mut();
        if fs.names.keys().any(|p| p.starts_with(path)) {
            return Err(EngineError::io("remove directory", path, "Directory not empty"));
        }
        fs.dirs.remove(path);
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let fs = self.fs.borrow();
        let mut names: Vec<String> = fs
            .names
            .keys()
            .filter(|p| p.parent() == Some(path))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for d in &fs.dirs {
            if d.parent() == Some(path) {
                names.push(d.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

impl StorageFile for SimFile {
    async fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let fs = self.fs.borrow();
        let data = &fs.inodes[&self.inode].current;
        let start = (pos as usize).min(data.len());
        let end = (start + len).min(data.len());
        Ok(data[start..end].to_vec())
    }

    async fn write_at(&self, pos: u64, data: &[u8]) -> Result<()> {
        assert!(
            pos.is_multiple_of(IO_ALIGN as u64) && data.len().is_multiple_of(IO_ALIGN),
            "unaligned write"
        );
        let mut fs = self.fs.borrow_mut();
        let end = pos as usize + data.len();
        let growth = end.saturating_sub(fs.inodes[&self.inode].current.len()) as u64;
        take_space(&mut fs, growth, "write", &self.path)?;
        let node = fs.inodes.get_mut(&self.inode).unwrap();
        if node.current.len() < end {
            node.current.resize(end, 0);
        }
        node.current[pos as usize..end].copy_from_slice(data);
        node.unsynced.push((pos, data.to_vec()));
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        let mut fs = self.fs.borrow_mut();
        take_sync(&mut fs, &self.path)?;
        let node = fs.inodes.get_mut(&self.inode).unwrap();
        node.durable = node.current.clone();
        node.unsynced.clear();
        node.len_dirty = false;
        Ok(())
    }

    async fn size(&self) -> Result<u64> {
        Ok(self.fs.borrow().inodes[&self.inode].current.len() as u64)
    }

    async fn truncate(&self, len: u64) -> Result<()> {
        let mut fs = self.fs.borrow_mut();
        let node = fs.inodes.get_mut(&self.inode).unwrap();
        node.current.resize(len as usize, 0);
        node.unsynced.retain(|(pos, _)| *pos < len);
        node.len_dirty = true;
        Ok(())
    }

    async fn preallocate(&self, len: u64) -> Result<()> {
        let mut fs = self.fs.borrow_mut();
        let growth = len.saturating_sub(fs.inodes[&self.inode].current.len() as u64);
        take_space(&mut fs, growth, "fallocate", &self.path)?;
        let node = fs.inodes.get_mut(&self.inode).unwrap();
        if (node.current.len() as u64) < len {
            node.current.resize(len as usize, 0);
            node.len_dirty = true;
        }
        Ok(())
    }

    async fn close(self) -> Result<()> {
        Ok(())
    }
}
