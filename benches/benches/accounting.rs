//! What per-command accounting adds to a command on the data path, measured alone (the
//! whole-server comparison, `benches/accounting.sh`, is noisier than the effect on a 2-core
//! machine): the checks every command passes (its statistics row, CLIENT PAUSE, MONITOR) and
//! the ledger of a batch (a mark per command, the reply check, and at the batch's end one
//! clock read and the records), for a pipeline of 16 GETs and for single commands.

use criterion::{criterion_group, criterion_main, Criterion};
use shardcast_server::accounting::{Ledger, Mark};
use shardcast_server::config::ServerConfig;
use shardcast_server::shared::Shared;
use shardcast_server::stats::commands::slot_of;
use shardcast_server::table::lookup;
use std::hint::black_box;

/// What the connection does for one batch of `n` GETs, accounting only.
fn account_batch(
    shared: &Shared,
    client: &shardcast_server::shared::ClientInfo,
    n: usize,
    marks: &mut Vec<Mark>,
    args: &[Vec<u8>],
) {
    let raw = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    let mut ledger = Ledger::new(shared, 0, raw, std::mem::take(marks));
    for _ in 0..n {
        let (index, spec) = lookup(&args[0]).unwrap();
        let slot = slot_of(index, args);
        if client.is_killed() {
            unreachable!("nobody killed it");
        }
        if shared.pause.blocks(spec) {
            unreachable!("no pause is set");
        }
        if shared.monitors.active() {
            unreachable!("nobody monitors");
        }
        ledger.ran(slot, 0..raw.len());
    }
    for i in 0..n {
        ledger.replied(i, black_box(b"$5\r\nvalue\r\n"));
    }
    ledger.batch_done(client);
    *marks = ledger.into_marks();
}

fn bench(c: &mut Criterion) {
    let shared = Shared::new(ServerConfig::default());
    let client = shared.register("127.0.0.1:1".into(), "127.0.0.1:2".into(), 0).unwrap();
    let mut group = c.benchmark_group("accounting");
    for n in [1usize, 16] {
        group.bench_function(format!("batch of {n} GETs"), |b| {
            // The parser made the arguments already: not part of what is measured.
            let (mut marks, args) = (Vec::new(), [b"GET".to_vec(), b"key".to_vec()]);
            b.iter(|| account_batch(&shared, &client, n, &mut marks, &args))
        });
    }
    // The lookup alone, which the connection did before the accounting too: the difference
    // between the two is the accounting's own cost.
    group.bench_function("lookup only, 16 GETs", |b| {
        let args = [b"GET".to_vec(), b"key".to_vec()];
        b.iter(|| {
            for _ in 0..16 {
                black_box(lookup(black_box(&args[0])));
            }
        })
    });
    // The two clock reads a batch costs, for scale.
    group.bench_function("two clock reads", |b| {
        b.iter(|| black_box(std::time::Instant::now()).elapsed())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
