//! Child process of `tests/crash_kill9.rs`.
//!
//! `shardcast-crash-writer write <data-dir> <run>`: runs the engine on 2 cores with
//! `fsync=always`; 4 tasks per core write unique keys over several partitions and print
//! `ACK <key> <value>` after each write is acknowledged, until killed.
//! `shardcast-crash-writer dump <data-dir>`: recovers, prints `KV <key> <value>` for every key
//! (found by SCAN, read by GET), then `END <count>`.

use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::{EngineConfig, FsyncPolicy};
use std::io::Write;
use std::path::PathBuf;

const TASKS_PER_CORE: usize = 4;
const PARTITIONS: usize = 6;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args[1].clone();
    let config = EngineConfig {
        data_dir: PathBuf::from(&args[2]),
        cores: 2,
        fsync: FsyncPolicy::Always,
        // Small, so rotations and snapshots happen while the parent kills us.
        snapshot_min_wal_bytes: 64 * 1024,
        wal_prealloc_bytes: 1024 * 1024,
        ..EngineConfig::default()
    };
    let run: u64 = args.get(3).map_or(0, |r| r.parse().unwrap());
    let result = shardcast_engine::run(config, move |core| async move {
        if mode == "dump" {
            if core.id() != 0 {
                return;
            }
            let mut cursor = 0;
            let mut keys = Vec::new();
            loop {
                let (next, page) = core.scan(cursor, 100, None).await.unwrap();
                keys.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            let mut out = std::io::stdout().lock();
            let n = keys.len();
            for key in keys {
                match core.execute_one(Op::Get { key: key.clone() }).await.unwrap() {
                    Reply::Value(v) => writeln!(
                        out,
                        "KV {} {}",
                        String::from_utf8(key).unwrap(),
                        String::from_utf8(v).unwrap()
                    )
                    .unwrap(),
                    other => panic!("scanned key has no value: {other:?}"),
                }
            }
            writeln!(out, "END {n}").unwrap();
            return;
        }
        let mut tasks = Vec::new();
        for t in 0..TASKS_PER_CORE {
            let core = core.clone();
            tasks.push(glommio::spawn_local(async move {
                for n in 0u64.. {
                    let key =
                        format!("p{}:r{run}-c{}-t{t}-{n}", n as usize % PARTITIONS, core.id());
                    let value = format!("v{n}-{}", "x".repeat(n as usize % 300));
                    let op = Op::Set {
                        key: key.clone().into_bytes(),
                        value: value.clone().into_bytes(),
                        condition: shardcast_engine::keyspace::SetCondition::Always,
                        expiry: shardcast_engine::keyspace::SetExpiry::Clear,
                        return_old: false,
                    };
                    core.execute_one(op).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {value}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
    if let Err(e) = result {
        eprintln!("engine failed: {e}");
        std::process::exit(1);
    }
}
