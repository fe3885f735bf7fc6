//! What telemetry costs per op on the data path, measured inside one engine process so the
//! machine's drift cancels: one core, 100,000 keys loaded, then rounds that alternate telemetry
//! on and off (the run-time switch) over the same ops, pipelined 16 to a batch through
//! `Core::execute_for` (routing, the shard, the statistics: everything but the network and RESP).
//! The time is the executor thread's CPU time from `/proc/thread-self/schedstat` (ns), so
//! other processes on the machine do not count.
//!
//!   cargo run --release -p shardcast-benches --bin telemetry_cost [rounds=20] [ops=400000]
//!
//! Prints per round the ns per op with telemetry on and off, then the medians and the median
//! of the rounds' differences.

use shardcast_engine::keyspace::SetOptions;
use shardcast_engine::ops::Op;
use shardcast_engine::telemetry::{AppId, TelemetrySwitch};
use shardcast_engine::EngineConfig;

const KEYS: u64 = 100_000;
const BATCH: usize = 16;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat")
}

fn key(i: u64) -> Vec<u8> {
    format!("key:{:08}", (i * 7919) % KEYS).into_bytes()
}

fn set(i: u64) -> Op {
    Op::Set {
        key: key(i),
        value: vec![b'v'; 16],
        condition: SetOptions::PLAIN.condition,
        expiry: SetOptions::PLAIN.expiry,
        return_old: false,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let ops: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(400_000);
    let dir = shardcast_benches::bench_dir("telemetry-cost");
    let switch = TelemetrySwitch::new(true);
    let config = EngineConfig {
        data_dir: dir.clone(),
        cores: 1,
        telemetry: switch.clone(),
        ..EngineConfig::default()
    };
    let rows = shardcast_engine::run(config, move |core| async move {
        let app = AppId::of(b"bench");
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(BATCH) {
            core.execute_for(chunk.iter().map(|&i| set(i)).collect(), app).await;
        }
        let mut rows = Vec::new();
        for round in 0..rounds {
            let mut row = [0f64; 4];
            // The order of on and off alternates by round.
            for step in 0..2 {
                let on = (round + step) % 2 == 0;
                switch.set(on);
                for (k, write) in [(0, false), (2, true)] {
                    let start = thread_cpu_ns();
                    let mut i = 0;
                    while i < ops {
                        let batch: Vec<Op> = (i..i + BATCH as u64)
                            .map(|j| if write { set(j) } else { Op::Get { key: key(j) } })
                            .collect();
                        core.execute_for(batch, app).await;
                        i += BATCH as u64;
                    }
                    let ns = (thread_cpu_ns() - start) as f64 / ops as f64;
                    row[k + usize::from(!on)] = ns;
                }
            }
            rows.push(row);
        }
        rows
    })
    .expect("engine ran")
    .pop()
    .expect("one core");
    let _ = std::fs::remove_dir_all(&dir);
    println!("round,get_on_ns,get_off_ns,set_on_ns,set_off_ns");
    for (r, row) in rows.iter().enumerate() {
        println!("{},{:.1},{:.1},{:.1},{:.1}", r + 1, row[0], row[1], row[2], row[3]);
    }
    let col = |k: usize| -> Vec<f64> { rows.iter().map(|r| r[k]).collect() };
    let diff = |a: usize, b: usize| -> Vec<f64> { rows.iter().map(|r| r[a] - r[b]).collect() };
    println!(
        "GET: on {:.1} ns/op, off {:.1} ns/op, median difference {:.1} ns/op",
        median(&mut col(0)),
        median(&mut col(1)),
        median(&mut diff(0, 1))
    );
    println!(
        "SET: on {:.1} ns/op, off {:.1} ns/op, median difference {:.1} ns/op",
        median(&mut col(2)),
        median(&mut col(3)),
        median(&mut diff(2, 3))
    );
}
