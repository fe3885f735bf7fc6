//! glommio 0.9 probes polled I/O on an executor's first DMA open; if that file is empty the
//! probe wrongly succeeds and later reads fail with EOPNOTSUPP (DataDog/glommio#605, #670).
//! The engine opens a non-empty probe file first on every executor; this shows that reads then
//! work even when the first file the application opens is empty.

use glommio::io::{DmaFile, OpenOptions};

/// On a fresh executor: optionally the workaround, then open an empty file first, then write
/// and read back a block. Returns the OS error of the read, if it failed.
fn read_after_empty_first_open(name: &str, workaround: bool) -> Option<i32> {
    let dir = std::env::temp_dir().join(format!("shardcast-iopoll-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(shardcast_engine::runtime::IOPOLL_PROBE_FILE), vec![0u8; 8192])
        .unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    let d = dir.clone();
    let result = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            if workaround {
                shardcast_engine::runtime::apply_iopoll_workaround(&d).await.unwrap();
            }
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
            let result = match f.read_at(0, 4096).await {
                Ok(read) => {
                    assert!(read.iter().all(|&b| b == 0xab), "read back other bytes");
                    None
                }
                Err(glommio::GlommioError::EnhancedIoError { source, .. }) => {
                    Some(source.raw_os_error().unwrap_or(-1))
                }
                Err(e) => panic!("read failed: {e}"),
            };
            f.close().await.unwrap();
            result
        })
        .unwrap()
        .join()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    result
}

#[test]
fn reads_work_after_the_workaround_even_if_the_first_user_file_is_empty() {
    assert_eq!(read_after_empty_first_open("fixed", true), None);
}

/// Canary: without the workaround the same sequence fails with EOPNOTSUPP on glommio 0.9.0.
/// When this fails after a glommio upgrade, the bug is fixed and the workaround can go.
#[test]
fn glommio_still_needs_the_workaround() {
    assert_eq!(
        read_after_empty_first_open("canary", false),
        Some(libc::EOPNOTSUPP),
        "glommio's iopoll probe bug no longer reproduces"
    );
}
