//! The source side of a migration on one shard: delta batches respect their bounds and keep
//! every dirty key exactly once, and removing keys outside a shard's range works (in memory)
//! even after the shard's log has failed.

mod common;

use shardcast_engine::keyspace::{SetCondition, SetExpiry};
use shardcast_engine::ops::Op;
use shardcast_engine::routing::{partition_span, position_of};
use shardcast_engine::shard::{Shard, ShardConfig};
use shardcast_engine::storage::sim::SimStorage;
use shardcast_engine::testing::run_local;
use shardcast_engine::FsyncPolicy;
use std::collections::BTreeSet;

fn set(key: &str, value_len: usize) -> Op {
    Op::Set {
        key: key.as_bytes().to_vec(),
        value: vec![b'v'; value_len],
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        return_old: false,
    }
}

async fn shard(storage: &SimStorage, fsync: FsyncPolicy) -> Shard<SimStorage> {
    let config = ShardConfig { fsync, wal_prealloc_bytes: 64 * 1024, ..ShardConfig::default() };
    common::sim_shard(storage, config, 1).await
}

#[test]
fn delta_batches_are_bounded_and_lose_no_dirty_key() {
    run_local(|| async {
        let s = shard(&SimStorage::new(), FsyncPolicy::EverySec).await;
        assert!(s.begin_outgoing(0, u128::MAX).is_empty());
        let mut written = BTreeSet::new();
        for i in 0..3000 {
            s.execute(set(&format!("p:{i}"), 100)).unwrap();
            written.insert(format!("p:{i}").into_bytes());
        }
        s.execute(Op::Del { key: b"p:7".to_vec() }).unwrap();
        assert_eq!(s.dirty_len(), 3000);
        let mut seen = BTreeSet::new();
        let mut deletes = 0;
        // By entries: 1024 per batch.
        let first = s.take_delta(1024, usize::MAX);
        assert_eq!(first.puts.len() + first.deletes.len(), 1024);
        // By bytes: about 10 KiB of 100-byte values is about 90 entries, never fewer than one.
        let second = s.take_delta(usize::MAX, 10 * 1024);
        let n = second.puts.len() + second.deletes.len();
        assert!((80..=110).contains(&n), "{n} entries for 10 KiB");
        let one = s.take_delta(usize::MAX, 0);
        assert_eq!(one.puts.len() + one.deletes.len(), 1, "a batch holds at least one key");
        for batch in [first, second] {
            seen.extend(batch.puts.iter().map(|e| e.key.clone()));
            deletes += batch.deletes.len();
            seen.extend(batch.deletes);
        }
        while s.dirty_len() > 0 {
            let b = s.take_delta(1024, 256 * 1024);
            assert!(b.puts.len() + b.deletes.len() <= 1024);
            deletes += b.deletes.len();
            seen.extend(b.puts.into_iter().map(|e| e.key));
            seen.extend(b.deletes);
        }
        // One key went in the byte-0 batch above and is not in `seen`: 2999 here.
        assert_eq!(seen.len(), 2999);
        assert!(seen.is_subset(&written));
        assert!(deletes <= 1);
        s.end_outgoing();
    });
}

#[test]
fn keys_outside_the_range_go_even_after_the_log_failed() {
    run_local(|| async {
        let storage = SimStorage::new();
        let s = shard(&storage, FsyncPolicy::Always).await;
        for i in 0..200 {
            let (_, lsn) = s.execute(set(&format!("p:{i}"), 8)).unwrap();
            s.wait_durable(lsn.unwrap()).await.unwrap();
        }
        storage.fail_syncs_after(0);
        let (_, lsn) = s.execute(set("p:last", 8)).unwrap();
        assert!(s.wait_durable(lsn.unwrap()).await.is_err());
        assert!(s.check_writable().is_err(), "the log has failed");
        // Keep the lower half of partition `p`'s span.
        let cut = partition_span(b"p").0 + (1u128 << 63);
        s.set_ranges(vec![(0, cut - 1)]);
        let dropped = s.drop_foreign().await.unwrap();
        assert!(dropped > 50, "{dropped}");
        s.with_keyspace(|ks| {
            for (k, _) in ks.iter() {
                assert!(position_of(k, b':') < cut);
            }
        });
        assert!(!s.holds_foreign_keys());
    });
}

/// A batch holding a key outside the range it is applied to is refused whole, before any of it
/// is applied (a damaged or misrouted batch must not plant keys in the wrong shard).
#[test]
fn a_batch_with_a_key_outside_its_range_is_refused_whole() {
    use shardcast_engine::migration::MigrationBatch;
    use shardcast_engine::shard::segment::SegmentEntry;
    run_local(|| async {
        let storage = SimStorage::new();
        let s = shard(&storage, FsyncPolicy::EverySec).await;
        let (lo, hi) = partition_span(b"p");
        let entry = |k: &str| SegmentEntry {
            key: k.as_bytes().to_vec(),
            value: b"v".to_vec(),
            expire_at_ms: 0,
        };
        let batch = MigrationBatch {
            clear_range: false,
            puts: vec![entry("p:1"), entry("q:1")],
            deletes: vec![],
        };
        let err = s.apply_batch(batch, lo, hi).unwrap_err().to_string();
        assert!(err.contains("outside its range"), "{err}");
        assert_eq!(s.key_count(), 0, "nothing applied");
        let batch = MigrationBatch {
            clear_range: false,
            puts: vec![entry("p:1")],
            deletes: vec![b"q:2".to_vec()],
        };
        assert!(s.apply_batch(batch, lo, hi).is_err(), "deletes are checked too");
        let batch =
            MigrationBatch { clear_range: false, puts: vec![entry("p:1")], deletes: vec![] };
        s.apply_batch(batch, lo, hi).unwrap();
        assert_eq!(s.key_count(), 1);
    });
}
