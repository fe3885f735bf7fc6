//! Benchmarks live in `benches/` (criterion, `cargo bench -p shardcast-benches`) and in
//! scripts beside this crate; this library holds what they share.

use std::future::Future;
use std::time::Duration;

/// Runs `f` on a fresh glommio executor thread and returns the duration it reports, so that a
/// criterion `iter_custom` can time async engine code with setup left out of the timing.
pub fn time_on_executor<F, Fut>(f: F) -> Duration
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Duration> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(640 * 1024)
        .spawn(f)
        .expect("start executor")
        .join()
        .expect("bench executor")
}

/// A scratch directory for one benchmark run, on the same filesystem as the target dir.
pub fn bench_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shardcast-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create bench dir");
    std::fs::write(dir.join(shardcast_engine::runtime::IOPOLL_PROBE_FILE), vec![0u8; 8192])
        .expect("write probe");
    dir
}
