//! After a failed fsync the shard refuses writes (the device state is unknown), the write whose
//! sync failed is not acknowledged, and reads keep working.

mod common;

use shardcast_engine::keyspace::{SetCondition, SetExpiry};
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::shard::ShardConfig;
use shardcast_engine::storage::sim::SimStorage;
use shardcast_engine::{EngineError, FsyncPolicy};

fn set(key: &str) -> Op {
    Op::Set {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        return_old: false,
    }
}

#[test]
fn failed_fsync_refuses_further_writes() {
    glommio::LocalExecutorBuilder::default()
        .spawn(|| async {
            let storage = SimStorage::new();
            let config = ShardConfig {
                fsync: FsyncPolicy::Always,
                wal_prealloc_bytes: 16 * 1024,
                ..ShardConfig::default()
            };
            let shard = common::sim_shard(&storage, config, 1).await;
            let (_, lsn) = shard.execute(set("p:1")).unwrap();
            shard.wait_durable(lsn.unwrap()).await.unwrap();

            storage.fail_syncs_after(0);
            let (_, lsn) = shard.execute(set("p:2")).unwrap();
            let err = shard.wait_durable(lsn.unwrap()).await.unwrap_err();
            assert!(matches!(err, EngineError::PreviousIo { .. }), "{err:?}");

            let err = shard.execute(set("p:3")).unwrap_err();
            assert!(matches!(err, EngineError::PreviousIo { .. }), "{err:?}");
            assert!(err.to_string().contains("refuses writes"), "{err}");
            let (reply, _) = shard.execute(Op::Get { key: b"p:1".to_vec() }).unwrap();
            assert_eq!(reply, Reply::Value(b"v".to_vec()));
        })
        .unwrap()
        .join()
        .unwrap();
}
