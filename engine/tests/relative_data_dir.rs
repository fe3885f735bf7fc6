//! A relative data directory works (the default one, `./shardcast-data`, is relative). glommio
//! 0.9's `Directory::open` passes a relative path to openat with dirfd -1 instead of
//! AT_FDCWD and fails with EBADF; the storage seam resolves it (docs/design.md, "Relative
//! paths"). Before the fix, the first write of every partition failed.

mod common;

use common::{get, on_core0, set};
use shardcast_engine::ops::Reply;
use shardcast_engine::storage::dma::DmaStorage;
use shardcast_engine::storage::Storage;
use std::path::{Component, Path, PathBuf};

/// A path to `target`, relative to the current directory (`..` up to the root, then down).
fn relative_to_cwd(target: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut rel = PathBuf::new();
    for c in cwd.components() {
        if matches!(c, Component::Normal(_)) {
            rel.push("..");
        }
    }
    rel.join(target.strip_prefix("/").unwrap())
}

#[test]
fn the_engine_writes_reads_and_recovers_under_a_relative_data_dir() {
    let abs = common::tempdir("relative-data-dir");
    let rel = relative_to_cwd(&abs);
    assert!(rel.is_relative());
    let keys = ["plain", "user:1", "{tag}:a", "order:7"];
    let config = common::config(&rel, 2);
    // Assertions run outside the engine: a panic on a core would leave the others waiting.
    let written = on_core0(config.clone(), move |core| async move {
        let replies = core.execute(keys.iter().map(|k| set(k, &format!("v-{k}"))).collect()).await;
        (replies, core.snapshot_all().await)
    });
    for (k, r) in keys.iter().zip(written.0) {
        assert_eq!(r, Ok(Reply::Set { applied: true, old: None }), "SET {k}");
    }
    written.1.expect("snapshot");
    let read = on_core0(config, move |core| async move {
        core.execute(keys.iter().map(|k| get(k)).collect()).await
    });
    for (k, r) in keys.iter().zip(read) {
        assert_eq!(r, Ok(Reply::Value(format!("v-{k}").into_bytes())), "GET {k} after restart");
    }
    std::fs::remove_dir_all(&abs).ok();
}

#[test]
fn the_dma_storage_syncs_a_relative_directory() {
    let abs = common::tempdir("relative-sync-dir");
    let rel = relative_to_cwd(&abs);
    let result = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { DmaStorage.sync_dir(&rel).await })
        .unwrap()
        .join()
        .unwrap();
    result.unwrap();
    std::fs::remove_dir_all(&abs).ok();
}
