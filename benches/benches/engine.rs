//! Criterion benches of one shard: SET and GET through the shard (keyspace + log append), and
//! log append throughput under each fsync policy. Real files (glommio DMA) in the temp dir.
//! Run: `cargo bench -p shardcast-benches --bench engine`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast_benches::{bench_dir, time_on_executor};
use shardcast_engine::clock::{Clock, SystemClock};
use shardcast_engine::keyspace::SetOptions;
use shardcast_engine::ops::Op;
use shardcast_engine::runtime::apply_iopoll_workaround;
use shardcast_engine::shard::{Shard, ShardConfig, ShardMeta};
use shardcast_engine::storage::dma::DmaStorage;
use shardcast_engine::telemetry::TelemetrySwitch;
use shardcast_engine::FsyncPolicy;
use std::rc::Rc;
use std::time::{Duration, Instant};

const VALUE_LEN: usize = 64;
const KEYSPACE: u64 = 100_000;
/// Records per group commit in the batched `always` case.
const GROUP: u64 = 64;

fn set_op(i: u64) -> Op {
    Op::Set {
        key: format!("bench:{:08}", i % KEYSPACE).into_bytes(),
        value: vec![b'x'; VALUE_LEN],
        condition: SetOptions::PLAIN.condition,
        expiry: SetOptions::PLAIN.expiry,
        return_old: false,
    }
}

async fn new_shard(name: &str, fsync: FsyncPolicy) -> Shard<DmaStorage> {
    new_shard_with(name, fsync, true).await
}

async fn new_shard_with(name: &str, fsync: FsyncPolicy, telemetry: bool) -> Shard<DmaStorage> {
    let dir = bench_dir(name);
    apply_iopoll_workaround(&dir).await.unwrap();
    let clock: Rc<dyn Clock> = Rc::new(SystemClock);
    let config = ShardConfig {
        fsync,
        snapshot_min_wal_bytes: u64::MAX,
        telemetry: TelemetrySwitch::new(telemetry),
        ..ShardConfig::default()
    };
    Shard::create(DmaStorage, &dir, ShardMeta::shared(0), vec![(0, u128::MAX)], config, clock)
        .await
        .unwrap()
}

/// `iters` GETs of existing keys on a fresh shard of `KEYSPACE` keys (loading untimed).
fn time_gets(name: &'static str, telemetry: bool, iters: u64) -> Duration {
    time_on_executor(move || async move {
        let shard = new_shard_with(name, FsyncPolicy::No, telemetry).await;
        for i in 0..KEYSPACE {
            shard.execute(set_op(i)).unwrap();
        }
        let ops: Vec<Op> = (0..iters)
            .map(|i| Op::Get { key: format!("bench:{:08}", (i * 7919) % KEYSPACE).into_bytes() })
            .collect();
        let start = Instant::now();
        for op in ops {
            criterion::black_box(shard.execute(op).unwrap());
        }
        start.elapsed()
    })
}

fn shard_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("shard");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("set_64B_everysec", |b| {
        b.iter_custom(|iters| {
            time_on_executor(move || async move {
                let shard = new_shard("set", FsyncPolicy::EverySec).await;
                let start = Instant::now();
                for i in 0..iters {
                    shard.execute(set_op(i)).unwrap();
                    if shard.wal().unwrap().unwritten_bytes() >= 1 << 20 {
                        shard.flush(false).await.unwrap();
                    }
                }
                shard.flush(true).await.unwrap();
                start.elapsed()
            })
        })
    });
    g.bench_function("get_64B_hit", |b| b.iter_custom(|iters| time_gets("get", true, iters)));
    g.finish();
}

/// What telemetry adds to an op inside a shard (bytes, HyperLogLog, hot keys, applications,
/// the partition top-k's sketches), on and off in the same run; plus the one clock read per op
/// that the runtime adds for service times (`clock/instant_now`).
fn telemetry(c: &mut Criterion) {
    let mut g = c.benchmark_group("telemetry");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for on in [true, false] {
        let state = if on { "on" } else { "off" };
        g.bench_function(format!("get_64B_hit_{state}"), |b| {
            b.iter_custom(|iters| time_gets("tget", on, iters))
        });
        g.bench_function(format!("set_64B_{state}"), |b| {
            b.iter_custom(|iters| {
                time_on_executor(move || async move {
                    let shard = new_shard_with("tset", FsyncPolicy::No, on).await;
                    let ops: Vec<Op> = (0..iters).map(set_op).collect();
                    let start = Instant::now();
                    for op in ops {
                        shard.execute(op).unwrap();
                        if shard.wal().unwrap().unwritten_bytes() >= 1 << 20 {
                            shard.flush(false).await.unwrap();
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("clock");
    g.bench_function("instant_now", |b| b.iter(|| criterion::black_box(Instant::now())));
    g.finish();
}

fn wal_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (name, fsync, group) in [
        ("always_each", FsyncPolicy::Always, 1),
        ("always_group64", FsyncPolicy::Always, GROUP),
        ("everysec", FsyncPolicy::EverySec, 0),
        ("no", FsyncPolicy::No, 0),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                time_on_executor(move || async move {
                    let shard = new_shard(name, fsync).await;
                    let start = Instant::now();
                    for i in 0..iters {
                        let (_, wait) = shard.execute(set_op(i)).unwrap();
                        match wait {
                            // `always`: one fdatasync per `group` records (the batch a group
                            // commit acknowledges together).
                            Some(lsn) if (i + 1) % group == 0 || i + 1 == iters => {
                                shard.wait_durable(lsn).await.unwrap()
                            }
                            Some(_) => {}
                            None if shard.wal().unwrap().unwritten_bytes() >= 1 << 20 => {
                                shard.flush(false).await.unwrap()
                            }
                            None => {}
                        }
                    }
                    // everysec syncs once at the end here (its timer's one sync per second is
                    // amortized over far more records than a bench sample holds).
                    shard.flush(fsync == FsyncPolicy::EverySec).await.unwrap();
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

/// Active expiry's inner loop: removing expired keys from a keyspace of 500,000 that all
/// carry an expiry (the work `runtime::timers::expire_actively` bounds by CPU share), and
/// eviction's sampling of 5 keys.
fn expiry_and_eviction(c: &mut Criterion) {
    use shardcast_engine::keyspace::{Keyspace, NoLog, SetExpiry};
    const KEYS: u64 = 500_000;
    let filled = || {
        let mut ks = Keyspace::new();
        for i in 0..KEYS {
            let options = SetOptions { expiry: SetExpiry::At(10_000 + i), ..SetOptions::PLAIN };
            ks.set(format!("session:{i}").as_bytes(), vec![b's'; 16], options, 0, &mut NoLog)
                .unwrap();
        }
        ks
    };
    let mut g = c.benchmark_group("keyspace");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(KEYS));
    g.bench_function("remove_expired_500k", |b| {
        b.iter_batched(
            filled,
            |mut ks| assert_eq!(ks.remove_expired(u64::MAX, usize::MAX), KEYS as usize),
            criterion::BatchSize::PerIteration,
        )
    });
    let mut ks = filled();
    g.throughput(Throughput::Elements(1));
    g.bench_function("sample_5", |b| {
        b.iter(|| {
            let mut n = 0;
            ks.sample(5, false, |_, e| n += e.expire_at_ms);
            criterion::black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, shard_ops, telemetry, wal_append, expiry_and_eviction);
criterion_main!(benches);
