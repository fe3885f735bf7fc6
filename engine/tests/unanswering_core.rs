//! A core that stops answering (here: its thread blocked, as a stuck syscall or a runaway
//! command would block it) holds no other core for ever. A fan-out (FLUSHALL, shard info)
//! answers `CoreTimeout` naming the core instead of waiting, or of counting it as empty; a
//! migration to it rolls back and releases the migration lock; once the core answers again,
//! everything works and no key is lost. Before the fix, FLUSHALL waited for the silent core
//! while holding the migration lock, and shard info silently left the core out.

mod common;

use common::{get, on_core0, set};
use shardcast_engine::ops::Reply;
use shardcast_engine::runtime::journal::ChangedBy;
use shardcast_engine::{Core, CoreResult, CoreWork, EngineError, LayoutChange};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The longest core 1 stays silent: it answers again when the test lets it (`Release`), or
/// after this if the test fails first.
const SILENCE_MAX: Duration = Duration::from_secs(60);
/// The deadline for another core's answer in these tests.
const ANSWER_WAIT_MS: u64 = 400;
/// Far longer than a give-up takes (the answer wait and a rollback), far shorter than
/// `SILENCE_MAX`: a step that waited for the silent core fails the test.
const GIVE_UP_MAX: Duration = Duration::from_secs(10);

/// Lets core 1 answer again when sent to (or dropped).
type Release = std::sync::mpsc::Sender<()>;

/// Blocks core 1's thread until released: a fixed silence would end by itself on a slow
/// machine before the steps that must give up on it had run.
async fn silence_core_1(core: &Rc<Core>) -> Release {
    let (release, silenced) = std::sync::mpsc::channel::<()>();
    let block = move |_: Rc<Core>| {
        let _ = silenced.recv_timeout(SILENCE_MAX);
    };
    core.run_on(1, Box::new(block)).await.expect("send to core 1");
    // Let core 1 take the job before anything else is sent to it.
    glommio::timer::sleep(Duration::from_millis(50)).await;
    release
}

/// Lets core 1 go and waits until it answers again.
async fn release_core_1(core: &Rc<Core>, release: Release) {
    drop(release);
    let deadline = Instant::now() + SILENCE_MAX;
    loop {
        let answers = core.on_every_core(CoreWork::ShardInfo, "shard info").await;
        if answers.iter().all(|a| matches!(a, CoreResult::Shards(_))) {
            return;
        }
        assert!(Instant::now() < deadline, "core 1 never answered again");
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn fan_outs_give_up_on_a_silent_core_and_name_it() {
    let dir = common::tempdir("unanswering-fanout");
    let mut config = common::config(&dir, 2);
    config.core_answer_wait_ms = ANSWER_WAIT_MS;
    let (flush, info, flush_after) = on_core0(config, |core| async move {
        let release = silence_core_1(&core).await;
        let t = Instant::now();
        let flush = (core.flush_all_data().await, t.elapsed());
        let t = Instant::now();
        let info = core.on_every_core(CoreWork::ShardInfo, "shard info").await;
        let info = (info, t.elapsed());
        // Once core 1 answers again, FLUSHALL works: the migration lock was released.
        release_core_1(&core, release).await;
        (flush, info, core.flush_all_data().await)
    });
    let limit = GIVE_UP_MAX;
    match flush {
        (Err(EngineError::CoreTimeout { core: 1, what: "FLUSHALL", .. }), took) => {
            assert!(took < limit, "FLUSHALL took {took:?}")
        }
        other => panic!("expected core 1's timeout, got {other:?}"),
    }
    let (answers, took) = info;
    assert!(took < limit, "shard info took {took:?}");
    assert!(matches!(answers[0], CoreResult::Shards(_)), "{:?}", answers[0]);
    assert!(
        matches!(answers[1], CoreResult::Done(Err(EngineError::CoreTimeout { core: 1, .. }))),
        "a silent core must be reported, not left out: {:?}",
        answers[1]
    );
    flush_after.expect("FLUSHALL once every core answers");
    std::fs::remove_dir_all(&dir).ok();
}

/// A partition whose shared home is on `core` (of 2).
fn partition_homed_on(core: &Core, home_core: usize) -> (Vec<u8>, u64) {
    let map = core.shard_map();
    (0..1000)
        .map(|i| format!("p{i}").into_bytes())
        .find_map(|p| {
            let (_, home) = map.shared_home(&p)?;
            (home.core(2) == home_core).then_some((p.clone(), home.number))
        })
        .expect("a partition on each core")
}

/// Core 1 is silenced while a partition is carved from core `home_core`'s shared shard onto
/// the other core: with `home_core` 0 core 1 is the target, with 1 it is the source (whose
/// stream the coordinator watches).
fn migration_with_silent_core_1(home_core: usize) {
    let dir = common::tempdir(&format!("unanswering-migration-{home_core}"));
    let mut config = common::config(&dir, 2);
    config.core_answer_wait_ms = ANSWER_WAIT_MS;
    let (first, second, read, keys) = on_core0(config, move |core| async move {
        let (partition, from_shard) = partition_homed_on(&core, home_core);
        let name = String::from_utf8(partition.clone()).unwrap();
        let keys: Vec<String> = (0..200).map(|i| format!("{name}:{i}")).collect();
        let replies = core.execute(keys.iter().map(|k| set(k, k)).collect()).await;
        assert!(replies.iter().all(|r| r.is_ok()));
        let to_core = 1 - home_core;
        let carve = || LayoutChange::CarveOut { partition: partition.clone(), from_shard, to_core };
        let release = silence_core_1(&core).await;
        let t = Instant::now();
        let first = (core.change_layout(carve(), ChangedBy::Operator).await, t.elapsed());
        release_core_1(&core, release).await;
        let second = core.change_layout(carve(), ChangedBy::Operator).await;
        let read = core.execute(keys.iter().map(|k| get(k)).collect()).await;
        (first, second, read, keys)
    });
    match first {
        (Err(EngineError::MigrationAbandoned { cause, .. }), took) => {
            assert!(matches!(*cause, EngineError::CoreTimeout { core: 1, .. }), "{cause}");
            assert!(took < GIVE_UP_MAX, "the rollback took {took:?}");
        }
        other => panic!("expected a rolled-back migration, got {other:?}"),
    }
    second.expect("the migration once core 1 answers again");
    for (k, r) in keys.iter().zip(read) {
        assert_eq!(r, Ok(Reply::Value(k.as_bytes().to_vec())), "GET {k}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_migration_to_a_silent_target_rolls_back_and_the_next_one_works() {
    migration_with_silent_core_1(0);
}

#[test]
fn a_migration_from_a_silent_source_rolls_back_and_the_next_one_works() {
    migration_with_silent_core_1(1);
}
