//! Ops issued on one core reach the owning core of each key, in order, across partitions;
//! SCAN, DBSIZE and FLUSHALL see every core; all of it survives a restart.

mod common;
use common::*;
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::{CoreResult, CoreWork};
use std::collections::BTreeSet;

fn key(i: usize) -> String {
    format!("part{}:key{i}", i % 10)
}

async fn all_keys(core: &shardcast_engine::Core, count: usize) -> Vec<String> {
    let (mut cursor, mut keys) = (0, Vec::new());
    loop {
        let (next, page) = core.scan(cursor, count, None).await.unwrap();
        keys.extend(page.into_iter().map(|k| String::from_utf8(k).unwrap()));
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

async fn dbsize(core: &shardcast_engine::Core) -> u64 {
    core.on_every_core(CoreWork::DbSize, "DBSIZE")
        .await
        .into_iter()
        .map(|r| match r {
            CoreResult::Count(n) => n,
            other => panic!("{other:?}"),
        })
        .sum()
}

#[test]
fn ops_route_to_owners_and_survive_restart() {
    let dir = tempdir("cross-core");
    on_core0(config(&dir, 2), |core| async move {
        let owners: BTreeSet<usize> = (0..10).map(|i| core.owner_of(key(i).as_bytes())).collect();
        assert_eq!(owners.len(), 2, "the test needs partitions on both cores");
        let ops: Vec<Op> = (0..300).map(|i| set(&key(i), &format!("v{i}"))).collect();
        for r in core.execute(ops).await {
            r.unwrap();
        }
        let gets: Vec<Op> = (0..300).map(|i| get(&key(i))).collect();
        for (i, r) in core.execute(gets).await.into_iter().enumerate() {
            assert_eq!(r.unwrap(), value(&format!("v{i}")));
        }
        // Order within one batch is kept per key: SET then INCR then GET.
        let batch = vec![
            set("part3:n", "41"),
            Op::IncrBy { key: b"part3:n".to_vec(), delta: 1 },
            get("part3:n"),
        ];
        let r = core.execute(batch).await;
        assert_eq!(r[1], Ok(Reply::Int(42)));
        assert_eq!(r[2], Ok(value("42")));
    });
    on_core0(config(&dir, 2), |core| async move {
        assert_eq!(dbsize(&core).await, 301);
        for count in [1, 7, 1000] {
            let keys = all_keys(&core, count).await;
            let unique: BTreeSet<_> = keys.iter().cloned().collect();
            assert_eq!(unique.len(), keys.len(), "SCAN returned a key twice (count {count})");
            assert_eq!(unique.len(), 301, "SCAN missed keys (count {count})");
        }
        let (_, matched) = core.scan(0, 10_000, Some(b"part1:*".to_vec())).await.unwrap();
        assert_eq!(matched.len(), 30);
        core.flush_all_data().await.expect("FLUSHALL");
        assert_eq!(dbsize(&core).await, 0);
    });
    on_core0(config(&dir, 2), |core| async move {
        assert_eq!(dbsize(&core).await, 0, "FLUSHALL did not survive the restart");
    });
    std::fs::remove_dir_all(&dir).ok();
}
