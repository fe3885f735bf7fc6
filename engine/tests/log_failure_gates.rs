//! What a shard refuses after its log failed is decided by `Op::mutates`, not by the
//! statistics label `Op::kind`: an op that says it does not mutate appends no record (checked
//! for every op, so a misclassified new op fails here), and after a failed fsync every
//! mutating op is refused with `PreviousIo` while every other op answers, none panicking.
//! Before, `kind() != Read` gated the check that protects the log sink's `expect`: relabelling
//! an op for the statistics could have crashed a core after a log failure.

mod common;

use shardcast_engine::keyspace::{ExpireCondition, SetCondition, SetExpiry};
use shardcast_engine::ops::Op;
use shardcast_engine::shard::{Shard, ShardConfig};
use shardcast_engine::storage::sim::SimStorage;
use shardcast_engine::{EngineError, FsyncPolicy};

const NOW_MS: u64 = 1_000_000;

/// One op of every kind, on key `k`. The match makes a new op fail to compile here until
/// it is added.
fn every_op(k: &str) -> Vec<Op> {
    let key = || k.as_bytes().to_vec();
    let ops = vec![
        Op::Get { key: key() },
        Op::Set {
            key: key(),
            value: b"v2".to_vec(),
            condition: SetCondition::Always,
            expiry: SetExpiry::Keep,
            return_old: true,
        },
        Op::Del { key: key() },
        Op::Exists { key: key() },
        Op::IncrBy { key: format!("{k}:n").into_bytes(), delta: 2 },
        Op::Append { key: key(), suffix: b"x".to_vec() },
        Op::Expire { key: key(), at_ms: NOW_MS + 50_000, condition: ExpireCondition::Always },
        Op::Persist { key: key() },
        Op::Ttl { key: key() },
        Op::ExpireTime { key: key() },
        Op::GetDel { key: key() },
        Op::GetEx { key: key(), expiry: Some(SetExpiry::At(NOW_MS + 90_000)) },
        Op::StrLen { key: key() },
        Op::GetRange { key: key(), start: 0, end: -1 },
        Op::SetRange { key: key(), offset: 1, value: b"yy".to_vec() },
        Op::IncrByFloat { key: format!("{k}:f").into_bytes(), delta: 1.5 },
        Op::Object { key: key() },
        Op::Dump { key: key() },
    ];
    for op in &ops {
        match op {
            Op::Get { .. }
            | Op::Set { .. }
            | Op::Del { .. }
            | Op::Exists { .. }
            | Op::IncrBy { .. }
            | Op::Append { .. }
            | Op::Expire { .. }
            | Op::Persist { .. }
            | Op::Ttl { .. }
            | Op::ExpireTime { .. }
            | Op::GetDel { .. }
            | Op::GetEx { .. }
            | Op::StrLen { .. }
            | Op::GetRange { .. }
            | Op::SetRange { .. }
            | Op::IncrByFloat { .. }
            | Op::Object { .. }
            | Op::Dump { .. } => {}
        }
    }
    ops
}

fn seed(k: &str) -> Op {
    Op::Set {
        key: k.as_bytes().to_vec(),
        value: b"value".to_vec(),
        condition: SetCondition::Always,
        expiry: SetExpiry::At(NOW_MS + 60_000),
        return_old: false,
    }
}

/// Runs `f` with a fresh shard under `fsync` on a simulated disk.
fn with_shard<F, Fut>(fsync: FsyncPolicy, f: F)
where
    F: FnOnce(SimStorage, Shard<SimStorage>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let storage = SimStorage::new();
            let config =
                ShardConfig { fsync, wal_prealloc_bytes: 16 * 1024, ..ShardConfig::default() };
            let shard = common::sim_shard(&storage, config, NOW_MS).await;
            f(storage, shard).await
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn an_op_that_does_not_mutate_appends_no_log_record() {
    with_shard(FsyncPolicy::EverySec, |_, shard| async move {
        for (i, op) in every_op("p:k").into_iter().enumerate() {
            // Each op meets a live key with an expiry, and the numeric keys exist.
            shard.execute(seed("p:k")).unwrap();
            shard.execute(seed("p:k:n")).ok();
            let before = shard.wal().unwrap().last_lsn();
            let mutates = op.mutates();
            let label = format!("{op:?}");
            let _ = shard.execute(op);
            let after = shard.wal().unwrap().last_lsn();
            assert!(
                mutates || after == before,
                "op {i} ({label}) says it does not mutate but appended {} record(s)",
                after - before
            );
        }
    });
}

#[test]
fn after_a_failed_fsync_every_mutating_op_is_refused_and_every_other_answers() {
    with_shard(FsyncPolicy::Always, |storage, shard| async move {
        let (_, lsn) = shard.execute(seed("p:k")).unwrap();
        shard.wait_durable(lsn.unwrap()).await.unwrap();
        storage.fail_syncs_after(0);
        let (_, lsn) = shard.execute(seed("p:other")).unwrap();
        shard.wait_durable(lsn.unwrap()).await.unwrap_err();
        for op in every_op("p:k") {
            let label = format!("{op:?}");
            match (op.mutates(), shard.execute(op)) {
                (true, Err(EngineError::PreviousIo { .. })) => {}
                (false, Ok(_)) => {}
                (mutates, r) => panic!("{label} (mutates: {mutates}) answered {r:?}"),
            }
        }
    });
}
