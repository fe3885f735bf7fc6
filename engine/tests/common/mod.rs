//! Shared helpers of the engine's integration tests.
#![allow(dead_code)]

use shardcast_engine::keyspace::{SetCondition, SetExpiry};
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::{Core, EngineConfig, FsyncPolicy};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A fresh directory under the system temp dir, unique per test.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardcast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn config(dir: &Path, cores: usize) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_owned(),
        cores,
        fsync: FsyncPolicy::Always,
        wal_prealloc_bytes: 64 * 1024,
        ..EngineConfig::default()
    }
}

/// Runs the engine until `f`, run on core 0, finishes; returns its result.
pub fn on_core0<F, Fut, T>(config: EngineConfig, f: F) -> T
where
    F: FnOnce(Rc<Core>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut out = shardcast_engine::run(config, move |core| async move {
        if core.id() == 0 {
            Some(f(core).await)
        } else {
            None
        }
    })
    .expect("engine run");
    out.iter_mut().find_map(Option::take).expect("core 0 result")
}

pub fn set(key: &str, value: &str) -> Op {
    Op::Set {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        return_old: false,
    }
}

pub fn get(key: &str) -> Op {
    Op::Get { key: key.as_bytes().to_vec() }
}

pub fn value(s: &str) -> Reply {
    Reply::Value(s.as_bytes().to_vec())
}

/// The shared shard that holds `partition` in a new data directory made with `config`.
pub fn home_shard(config: &EngineConfig, partition: &str) -> u64 {
    let shared = config.cores * config.shared_shards_per_core;
    let map = shardcast_engine::placement::shard_map::ShardMap::initial(
        shared,
        config.cores,
        config.partition_separator,
    );
    map.shared_home(partition.as_bytes()).expect("in a shared shard").1.number
}

/// Two partition names that a new data directory made with `config` keeps in different
/// shards.
pub fn partitions_in_two_shards(config: &EngineConfig) -> (String, String) {
    let names: Vec<String> = (0..64).map(|i| format!("p{i}")).collect();
    let a = names[0].clone();
    let b =
        names.iter().find(|n| home_shard(config, n) != home_shard(config, &a)).expect("two shards");
    (a, b.clone())
}

/// The only log file of the shared shard holding `partition`.
pub fn wal_file(dir: &Path, config: &EngineConfig, partition: &str) -> PathBuf {
    let shard = shardcast_engine::shard::shard_dir(dir, home_shard(config, partition));
    let mut wals: Vec<_> = std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    wals.sort();
    assert_eq!(wals.len(), 1, "expected one log file in {}: {wals:?}", shard.display());
    wals.pop().unwrap()
}

/// Offsets where each record of a log file starts, and where the records end.
pub fn record_offsets(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut at = 0;
    let mut starts = Vec::new();
    while let Ok(d) = shardcast_engine::log::record::decode(&bytes[at..]) {
        starts.push(at);
        at += d.len;
    }
    (starts, at)
}

/// A new shared shard owning every position, in `/d` on the simulated `storage`, its clock
/// standing at `now_ms` (the shard-level tests' starting point).
pub async fn sim_shard(
    storage: &shardcast_engine::storage::sim::SimStorage,
    config: shardcast_engine::shard::ShardConfig,
    now_ms: u64,
) -> shardcast_engine::shard::Shard<shardcast_engine::storage::sim::SimStorage> {
    use shardcast_engine::clock::{Clock, ManualClock};
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(now_ms));
    shardcast_engine::shard::Shard::create(
        storage.clone(),
        Path::new("/d"),
        shardcast_engine::shard::ShardMeta::shared(0),
        vec![(0, u128::MAX)],
        config,
        clock,
    )
    .await
    .unwrap()
}
