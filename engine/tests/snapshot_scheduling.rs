//! A run of writes that never yields schedules one snapshot, not one per write.
//!
//! Postmortem: `after_write` asked `wants_snapshot`, which looked only at a snapshot already
//! *running*; the task it spawned had not started yet, so every following write of the run
//! spawned another. A bench loop of 32 million SETs held 24 GB of such tasks and was killed
//! by the kernel; in the server each pipelined batch past the threshold spawned up to a batch
//! of them (this test: 30,210 tasks for one snapshot before the fix).

mod common;

use common::{config, on_core0, tempdir};
use shardcast_engine::keyspace::SetOptions;
use shardcast_engine::ops::Op;
use shardcast_engine::{CoreResult, CoreWork, FsyncPolicy};
use std::time::Duration;

#[test]
fn writes_that_never_yield_schedule_one_snapshot() {
    let dir = tempdir("snapshot-scheduling");
    let mut cfg = config(&dir, 1);
    cfg.fsync = FsyncPolicy::EverySec;
    cfg.snapshot_min_wal_bytes = 256 * 1024;
    let snapshots = on_core0(cfg, |core| async move {
        // About 4 MB of log, 16 writes a batch, with no await that yields in between.
        for batch in 0..2_000u64 {
            let ops: Vec<Op> = (0..16)
                .map(|i| Op::Set {
                    key: format!("k:{}", batch * 16 + i).into_bytes(),
                    value: vec![b'v'; 100],
                    condition: SetOptions::PLAIN.condition,
                    expiry: SetOptions::PLAIN.expiry,
                    return_old: false,
                })
                .collect();
            for r in core.execute(ops).await {
                r.unwrap();
            }
        }
        // Until the snapshot is done (a debug build on a loaded machine may take seconds);
        // tasks are counted when spawned, so the count below keeps its meaning.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (mut snapshots, mut tasks) = (0, 0);
            for r in core.on_every_core(CoreWork::ShardInfo, "shard info").await {
                if let CoreResult::Shards(v) = r {
                    snapshots += v.iter().map(|s| s.snapshots).sum::<u64>();
                    tasks += v.iter().map(|s| s.snapshot_tasks).sum::<u64>();
                }
            }
            if snapshots >= 1 || std::time::Instant::now() > deadline {
                break (snapshots, tasks);
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
    });
    std::fs::remove_dir_all(&dir).ok();
    let (snapshots, tasks) = snapshots;
    assert!(snapshots >= 1, "the grown log was snapshotted");
    assert!(tasks <= 3, "{tasks} snapshot tasks spawned for {snapshots} snapshots");
}
