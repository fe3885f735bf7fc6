//! A synchronous run over keys of one shard (`Core::local_run`, what a script on local keys
//! uses): its steps see each other's writes, its changes are framed in the shard's log, and a
//! run cut before its commit (as a crash between its steps would cut it) leaves none of them
//! after recovery, while a finished one leaves all of them.

mod common;

use common::{get, on_core0, set, value};
use shardcast_engine::ops::Reply;
use shardcast_engine::telemetry::AppId;

fn keys() -> Vec<Vec<u8>> {
    vec![b"acct:a".to_vec(), b"acct:b".to_vec()]
}

fn read_both(config: shardcast_engine::EngineConfig) -> Vec<Reply> {
    on_core0(config, |core| async move {
        let replies = core.execute(vec![get("acct:a"), get("acct:b")]).await;
        replies.into_iter().map(Result::unwrap).collect::<Vec<_>>()
    })
}

#[test]
fn a_finished_local_run_keeps_every_change() {
    let dir = common::tempdir("local-run-finished");
    let config = common::config(&dir, 1);
    let replies = on_core0(config.clone(), |core| async move {
        let mut run = core.local_run(&keys(), AppId::UNNAMED, true).expect("both keys are local");
        let first = run.run(vec![set("acct:a", "1")]);
        let second = run.run(vec![set("acct:b", "2"), get("acct:a")]);
        run.finish().await.unwrap();
        (first, second)
    });
    assert!(replies.0[0].is_ok() && replies.1[0].is_ok(), "{replies:?}");
    assert_eq!(replies.1[1].as_ref().unwrap(), &value("1"), "a step sees the run's writes");
    assert_eq!(read_both(config), vec![value("1"), value("2")]);
}

#[test]
fn a_local_run_cut_before_its_commit_leaves_nothing_after_recovery() {
    let dir = common::tempdir("local-run-cut");
    let config = common::config(&dir, 1);
    on_core0(config.clone(), |core| async move {
        let mut run = core.local_run(&keys(), AppId::UNNAMED, true).expect("both keys are local");
        assert!(run.run(vec![set("acct:a", "1")])[0].is_ok());
        assert!(run.run(vec![set("acct:b", "2")])[0].is_ok());
        // Cut: no commit is logged. The engine's stop syncs the log, so both changes are on
        // disk, in a frame that never closes.
        std::mem::forget(run);
    });
    assert_eq!(read_both(config), vec![Reply::Nil, Reply::Nil]);
}

#[test]
fn a_local_run_needs_its_keys_in_one_shard_of_this_core() {
    let dir = common::tempdir("local-run-shards");
    let config = common::config(&dir, 2);
    let (p, q) = common::partitions_in_two_shards(&config);
    let ok = on_core0(config, move |core| async move {
        let here = |name: &str| core.owner_of(format!("{name}:k").as_bytes()) == core.id();
        let one = core.local_run(&[format!("{p}:x").into_bytes()], AppId::UNNAMED, true);
        let two = core.local_run(
            &[format!("{p}:x").into_bytes(), format!("{q}:y").into_bytes()],
            AppId::UNNAMED,
            true,
        );
        (here(&p), one.is_some(), two.is_some())
    });
    // One key: a run exactly when its shard is on core 0; two shards: never.
    assert_eq!(ok.1, ok.0, "{ok:?}");
    assert!(!ok.2, "{ok:?}");
}

#[test]
fn a_dropped_local_run_closes_its_frame_so_later_writes_survive() {
    let dir = common::tempdir("local-run-dropped");
    let config = common::config(&dir, 1);
    on_core0(config.clone(), |core| async move {
        let mut run = core.local_run(&keys(), AppId::UNNAMED, true).expect("both keys are local");
        assert!(run.run(vec![set("acct:a", "1")])[0].is_ok());
        drop(run);
        // Logged after the run's records: had the frame stayed open, recovery would take this
        // acknowledged write into it and drop it.
        assert!(core.execute(vec![set("acct:b", "2")]).await[0].is_ok());
    });
    assert_eq!(read_both(config), vec![value("1"), value("2")]);
}
