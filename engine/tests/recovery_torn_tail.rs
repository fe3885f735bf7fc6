//! A torn tail (a partial last record, as a crash mid-write leaves) is truncated on recovery;
//! every complete record survives and the shard keeps accepting writes.

mod common;
use common::*;
use shardcast_engine::log::record::Record;

#[test]
fn torn_tail_is_truncated_and_everything_before_it_recovers() {
    let dir = tempdir("torn-tail");
    on_core0(config(&dir, 1), |core| async move {
        for i in 0..50 {
            core.execute_one(set(&format!("t:{i}"), &format!("v{i}"))).await.unwrap();
        }
    });
    let wal = wal_file(&dir, &config(&dir, 1), "t");
    let mut bytes = std::fs::read(&wal).unwrap();
    let (starts, end) = record_offsets(&bytes);
    assert_eq!(starts.len(), 50);
    // Half of a 51st record, as if the crash cut the write.
    let mut partial = Vec::new();
    Record::Put { key: b"t:torn", value: b"never acknowledged", expire_at_ms: 0 }.encode(
        51,
        50,
        &mut partial,
    );
    bytes[end..end + partial.len() / 2].copy_from_slice(&partial[..partial.len() / 2]);
    std::fs::write(&wal, &bytes).unwrap();

    on_core0(config(&dir, 1), |core| async move {
        for i in 0..50 {
            assert_eq!(
                core.execute_one(get(&format!("t:{i}"))).await.unwrap(),
                value(&format!("v{i}"))
            );
        }
        assert_eq!(
            core.execute_one(get("t:torn")).await.unwrap(),
            shardcast_engine::ops::Reply::Nil
        );
        for i in 50..60 {
            core.execute_one(set(&format!("t:{i}"), &format!("v{i}"))).await.unwrap();
        }
    });
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), end as u64, "torn tail not truncated");

    on_core0(config(&dir, 1), |core| async move {
        for i in 0..60 {
            assert_eq!(
                core.execute_one(get(&format!("t:{i}"))).await.unwrap(),
                value(&format!("v{i}"))
            );
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}
