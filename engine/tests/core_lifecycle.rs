//! Starting and finishing when a core fails: a core that cannot start stops every core with its
//! error instead of leaving them waiting, and a core whose work panics still lets the others
//! reach their final flush. Before the fix, a core whose shards could not be opened never
//! counted as finished: the other cores served without it and then waited for it for ever
//! after SIGTERM, never flushing.
//!
//! Each run happens on a thread the test waits for with a deadline, so a hang fails the test
//! instead of hanging the suite.

mod common;

use common::{get, on_core0, set};
use shardcast_engine::ops::Reply;
use shardcast_engine::{EngineConfig, EngineError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Far longer than a start or a stop takes here (milliseconds), far shorter than a hang.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the engine on a thread with `per_core` counting the cores that served; returns the
/// engine's outcome and that count, or panics past the deadline.
fn run_with_deadline(
    config: EngineConfig,
    panic_on_core: Option<usize>,
) -> (Result<(), EngineError>, usize) {
    let served = Arc::new(AtomicUsize::new(0));
    let counted = served.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = shardcast_engine::run(config, move |core| {
            let served = counted.clone();
            async move {
                served.fetch_add(1, Ordering::SeqCst);
                if Some(core.id()) == panic_on_core {
                    panic!("core {} fails while serving (on purpose)", core.id());
                }
                // Serve until told to stop, as the server does.
                while !core.stop_requested() {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let _ = tx.send(r.map(|_| ()));
    });
    let r = rx.recv_timeout(RUN_DEADLINE).unwrap_or_else(|_| {
        panic!("the engine did not return within {RUN_DEADLINE:?}: a core is waiting for ever")
    });
    (r, served.load(Ordering::SeqCst))
}

/// A data directory with one key per shared shard, written and flushed by a normal run.
fn populated(name: &str) -> (std::path::PathBuf, EngineConfig) {
    let dir = common::tempdir(name);
    let config = common::config(&dir, 2);
    let replies = on_core0(config.clone(), |core| async move {
        core.execute(vec![set("a", "1"), set("b", "2"), set("c", "3"), set("d", "4")]).await
    });
    assert!(replies.iter().all(|r| r.is_ok()), "{replies:?}");
    (dir, config)
}

#[test]
fn a_core_that_cannot_open_its_shards_stops_every_core_with_its_error() {
    let (dir, config) = populated("lifecycle-core1");
    // Core 1's shared shard cannot be opened: its meta file is a directory.
    let meta = dir.join("shards/1/meta");
    std::fs::remove_file(&meta).unwrap();
    std::fs::create_dir(&meta).unwrap();
    let (r, served) = run_with_deadline(config, None);
    match r {
        Err(EngineError::CoreStart { core: 1, cause }) => {
            assert!(cause.to_string().contains("shards/1/meta"), "{cause}")
        }
        other => panic!("expected core 1's start failure, got {other:?}"),
    }
    assert_eq!(served, 0, "no core may serve while another could not start");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_core_zero_that_cannot_read_the_shard_map_stops_every_core() {
    let (dir, config) = populated("lifecycle-core0");
    std::fs::write(dir.join("SHARDMAP"), b"not a shard map").unwrap();
    let (r, served) = run_with_deadline(config, None);
    match r {
        Err(EngineError::CoreStart { core: 0, .. }) => {}
        other => panic!("expected core 0's start failure, got {other:?}"),
    }
    assert_eq!(served, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_core_that_panics_while_serving_lets_the_others_flush_and_return() {
    let (dir, config) = populated("lifecycle-panic");
    let (r, served) = run_with_deadline(config.clone(), Some(1));
    assert!(r.is_err(), "a panicking core is reported: {r:?}");
    assert_eq!(served, 2);
    // What was there is still there.
    let read = on_core0(config, |core| async move {
        core.execute(vec![get("a"), get("b"), get("c"), get("d")]).await
    });
    for (r, v) in read.into_iter().zip(["1", "2", "3", "4"]) {
        assert_eq!(r, Ok(Reply::Value(v.as_bytes().to_vec())));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
