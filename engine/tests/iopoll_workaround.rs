//! glommio 0.9 probes polled I/O on an executor's first DMA open; if that file is empty the
//! probe wrongly succeeds and later reads fail with EOPNOTSUPP (DataDog/glommio#605, #670).
//! The engine opens a non-empty probe file first on every executor; this shows that reads then
//! work even when the first file the application opens is empty.

use glommio::io::{DmaFile, OpenOptions};

#[test]
fn reads_work_after_the_workaround_even_if_the_first_user_file_is_empty() {
    let dir = std::env::temp_dir().join(format!("shardcast-iopoll-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(shardcast_engine::runtime::IOPOLL_PROBE_FILE), vec![0u8; 8192])
        .unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    let d = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            shardcast_engine::runtime::apply_iopoll_workaround(&d).await.unwrap();
            let empty = DmaFile::open(d.join("empty")).await.unwrap();
            empty.close().await.unwrap();
            let f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .dma_open(d.join("data"))
                .await
                .unwrap();
            let mut buf = f.alloc_dma_buffer(4096);
            buf.as_bytes_mut().fill(0xab);
            f.write_at(buf, 0).await.unwrap();
            f.fdatasync().await.unwrap();
            let read = f.read_at(0, 4096).await.expect("read after the workaround");
            assert!(read.iter().all(|&b| b == 0xab));
            f.close().await.unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// Canary: without the workaround the same sequence fails with EOPNOTSUPP on glommio 0.9.0.
/// When this fails after a glommio upgrade, the bug is fixed and the workaround can go.
#[test]
fn glommio_still_needs_the_workaround() {
    let dir = std::env::temp_dir().join(format!("shardcast-iopoll-canary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    let d = dir.clone();
    let code = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let empty = DmaFile::open(d.join("empty")).await.unwrap();
            empty.close().await.unwrap();
            let f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .dma_open(d.join("data"))
                .await
                .unwrap();
            let mut buf = f.alloc_dma_buffer(4096);
            buf.as_bytes_mut().fill(0xab);
            f.write_at(buf, 0).await.unwrap();
            let err = f.read_at(0, 4096).await.err().map(|e| match e {
                glommio::GlommioError::EnhancedIoError { source, .. } => source.raw_os_error(),
                _ => None,
            });
            f.close().await.unwrap();
            err
        })
        .unwrap()
        .join()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        code,
        Some(Some(libc::EOPNOTSUPP)),
        "glommio's iopoll probe bug no longer reproduces"
    );
}
