//! What a backup's mark lists of a shard: the meta file, every segment, the logs before the
//! current one whole, and the current one up to its last record, never a later log file that a
//! snapshot has created for its coming rotation (it would receive writes from after the cut:
//! a second reading found that a mark in that window copied it whole).

mod common;

use shardcast_engine::keyspace::{SetCondition, SetExpiry};
use shardcast_engine::ops::Op;
use shardcast_engine::shard::ShardConfig;
use shardcast_engine::storage::sim::SimStorage;
use shardcast_engine::storage::Storage;

#[test]
fn a_mark_lists_the_current_log_up_to_its_last_record_and_no_later_log() {
    glommio::LocalExecutorBuilder::default()
        .spawn(|| async {
            let storage = SimStorage::new();
            let config = ShardConfig { wal_prealloc_bytes: 16 * 1024, ..ShardConfig::default() };
            let shard = common::sim_shard(&storage, config, 1).await;
            for i in 0..10 {
                shard
                    .execute(Op::Set {
                        key: format!("k{i}").into_bytes(),
                        value: b"v".to_vec(),
                        condition: SetCondition::Always,
                        expiry: SetExpiry::Clear,
                        return_old: false,
                    })
                    .unwrap();
            }
            // A snapshot's next log, created before its rotation.
            let next = shard.dir().join("wal-0000000002.log");
            storage.open_rw(&next, true).await.unwrap();
            let files = shard.pin_for_backup().unwrap();
            let names: Vec<&str> = files.files.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["meta", "wal-0000000001.log"], "{files:?}");
            assert!(files.files[1].1.is_some_and(|len| len > 0), "{files:?}");
            assert_eq!(files.lsn, 10);
            shard.unpin_backup();
        })
        .unwrap()
        .join()
        .unwrap();
}
