//! A flipped byte in the middle of a log is corruption, not a torn tail: that shard refuses to
//! serve, with an error naming the file and offset, and keeps its files untouched; the other
//! shards keep serving.

mod common;
use common::*;
use shardcast_engine::{EngineConfig, EngineError};

#[test]
fn flipped_byte_mid_log_fails_only_that_shard() {
    let dir = tempdir("corrupt-middle");
    // Two shared shards on one core, and a partition in each.
    let config = EngineConfig { shared_shards_per_core: 2, ..config(&dir, 1) };
    let (a, b) = partitions_in_two_shards(&config);
    let (a2, b2) = (a.clone(), b.clone());
    on_core0(config.clone(), |core| async move {
        for i in 0..20 {
            core.execute_one(set(&format!("{a2}:{i}"), &format!("va{i}"))).await.unwrap();
            core.execute_one(set(&format!("{b2}:{i}"), &format!("vb{i}"))).await.unwrap();
        }
    });
    let wal = wal_file(&dir, &config, &a);
    let mut bytes = std::fs::read(&wal).unwrap();
    let (starts, _) = record_offsets(&bytes);
    let damaged = starts[5];
    bytes[damaged + 20] ^= 0x01;
    std::fs::write(&wal, &bytes).unwrap();

    let wal_name = wal.file_name().unwrap().to_string_lossy().into_owned();
    on_core0(config, move |core| async move {
        let err = core.execute_one(get(&format!("{a}:1"))).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, EngineError::ShardFailed { .. }), "{err:?}");
        assert!(text.contains(&wal_name), "error does not name the file: {text}");
        assert!(
            text.contains(&format!("offset {damaged}")),
            "error does not name the offset: {text}"
        );
        // Writes to the failed shard are refused too (never silently a fresh shard).
        assert!(core.execute_one(set(&format!("{a}:new"), "x")).await.is_err());
        // The other partition serves reads and writes.
        for i in 0..20 {
            assert_eq!(
                core.execute_one(get(&format!("{b}:{i}"))).await.unwrap(),
                value(&format!("vb{i}"))
            );
        }
        core.execute_one(set(&format!("{b}:new"), "y")).await.unwrap();
    });
    assert_eq!(std::fs::read(&wal).unwrap(), bytes, "a corrupt log must be left as it is");
    std::fs::remove_dir_all(&dir).ok();
}
