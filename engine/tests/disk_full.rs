//! A full disk, on the simulated storage (the real one: server/tests/disk_full.rs): a failed
//! preallocation falls back to the exact size and then to none, so writes fail only when the
//! disk really is full; then writes are refused with `NoSpace` (MISCONF to a client), reads
//! answer, nothing acknowledged is lost, and writes resume by themselves once space returns,
//! with no restart. A snapshot on a full disk fails without taking the space the log needs.
//! Before, the first failed `fallocate` failed the log for good: every write was refused
//! until a restart, even after space returned.

mod common;

use shardcast_engine::clock::{Clock, ManualClock};
use shardcast_engine::keyspace::{SetCondition, SetExpiry};
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::shard::{Shard, ShardConfig};
use shardcast_engine::storage::sim::SimStorage;
use shardcast_engine::{EngineError, FsyncPolicy};
use std::path::Path;
use std::rc::Rc;

/// The log's first reservation; the next doubling step asks for as much again.
const PREALLOC_BYTES: u64 = 16 * 1024;
const VALUE_BYTES: usize = 1000;

fn set(i: u64) -> Op {
    Op::Set {
        key: format!("k:{i:05}").into_bytes(),
        value: vec![b'a' + (i % 26) as u8; VALUE_BYTES],
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        return_old: false,
    }
}

fn get(i: u64) -> Op {
    Op::Get { key: format!("k:{i:05}").into_bytes() }
}

fn value(i: u64) -> Reply {
    Reply::Value(vec![b'a' + (i % 26) as u8; VALUE_BYTES])
}

fn config(fsync: FsyncPolicy) -> ShardConfig {
    ShardConfig { fsync, wal_prealloc_bytes: PREALLOC_BYTES, ..ShardConfig::default() }
}

fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default().spawn(f).unwrap().join().unwrap();
}

async fn new_shard(storage: &SimStorage, fsync: FsyncPolicy) -> Shard<SimStorage> {
    common::sim_shard(storage, config(fsync), 1).await
}

async fn reopen(
    storage: &SimStorage,
    shard: Shard<SimStorage>,
    fsync: FsyncPolicy,
) -> Shard<SimStorage> {
    let dir = shard.dir().to_owned();
    drop(shard);
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1));
    let shard = Shard::open(storage.clone(), dir, vec![(0, u128::MAX)], config(fsync), clock)
        .await
        .unwrap();
    assert!(shard.is_serving(), "{:?}", shard.failure());
    shard
}

/// Writes `set(i)` under `always` and waits for its sync; `Ok` is an acknowledgement.
async fn write_always(shard: &Shard<SimStorage>, i: u64) -> Result<(), EngineError> {
    let (_, lsn) = shard.execute(set(i))?;
    match lsn {
        Some(lsn) => shard.wait_durable(lsn).await,
        None => Ok(()),
    }
}

#[test]
fn a_failed_preallocation_falls_back_to_the_exact_size() {
    run(|| async {
        let storage = SimStorage::new();
        let shard = new_shard(&storage, FsyncPolicy::Always).await;
        // Room for a few blocks beyond the first reservation, not for a doubling step.
        storage.set_free_bytes(Some(PREALLOC_BYTES / 2));
        for i in 0..20 {
            write_always(&shard, i).await.unwrap_or_else(|e| panic!("write {i}: {e}"));
        }
        assert!(shard.wal().unwrap().no_space().is_none());
    });
}

#[test]
fn under_always_a_full_disk_refuses_writes_and_reads_of_the_unsynced_and_resumes_by_itself() {
    run(|| async {
        let storage = SimStorage::new();
        let shard = new_shard(&storage, FsyncPolicy::Always).await;
        storage.set_free_bytes(Some(0));
        let mut acked = Vec::new();
        let mut unknown = None;
        for i in 0..100 {
            match write_always(&shard, i).await {
                Ok(()) => acked.push(i),
                Err(e) => {
                    // Applied in memory, not durable: its outcome is unknown to its client.
                    assert!(matches!(e, EngineError::NotDurable { .. }), "write {i}: {e:?}");
                    unknown = Some(i);
                    break;
                }
            }
        }
        let unknown = unknown.expect("the disk filled");
        assert!(!acked.is_empty(), "the first reservation holds some writes");
        // Writes are refused before they change anything; so are reads, which could show the
        // write whose record waits (under `always` nothing not durable is shown).
        let e = shard.execute(set(1000)).unwrap_err();
        assert!(e.is_no_space(), "{e:?}");
        assert!(e.to_string().contains("writes are refused until space is freed"), "{e}");
        assert!(shard.execute(get(acked[0])).unwrap_err().is_no_space());
        // The snapshot does not take the space either.
        assert!(shard.snapshot().await.unwrap_err().is_no_space());
        // Space returns: the retried flush writes what was held, and writes resume.
        storage.set_free_bytes(None);
        shard.flush(true).await.unwrap();
        assert!(shard.wal().unwrap().no_space().is_none());
        write_always(&shard, 2000).await.unwrap();
        assert_eq!(shard.execute(get(unknown)).unwrap().0, value(unknown));
        // Every acknowledged write, the one whose outcome its client could not know, and the
        // one after, all survive a crash.
        storage.crash(7);
        let shard = reopen(&storage, shard, FsyncPolicy::Always).await;
        for i in acked.iter().copied().chain([unknown, 2000]) {
            assert_eq!(shard.execute(get(i)).unwrap().0, value(i), "key {i}");
        }
        assert_eq!(shard.execute(get(1000)).unwrap().0, Reply::Nil, "a refused write");
    });
}

#[test]
fn a_full_disk_under_everysec_keeps_acknowledged_writes_for_the_retry() {
    run(|| async {
        let storage = SimStorage::new();
        let shard = new_shard(&storage, FsyncPolicy::EverySec).await;
        storage.set_free_bytes(Some(0));
        // `everysec` acknowledges from memory; the timer's flush finds the disk full.
        let mut acked = Vec::new();
        let mut i = 0;
        while shard.flush(true).await.is_ok() {
            shard.execute(set(i)).unwrap();
            acked.push(i);
            i += 1;
            assert!(i < 1000, "the disk never filled");
        }
        let e = shard.execute(set(5000)).unwrap_err();
        assert!(e.is_no_space(), "{e:?}");
        // Retries fail while the disk is full, and change nothing.
        assert!(shard.flush(true).await.unwrap_err().is_no_space());
        for &i in &acked {
            assert_eq!(shard.execute(get(i)).unwrap().0, value(i));
        }
        storage.set_free_bytes(None);
        shard.flush(true).await.unwrap();
        shard.execute(set(6000)).unwrap();
        shard.flush(true).await.unwrap();
        storage.crash(11);
        let shard = reopen(&storage, shard, FsyncPolicy::EverySec).await;
        for i in acked.iter().copied().chain([6000]) {
            assert_eq!(shard.execute(get(i)).unwrap().0, value(i), "key {i}");
        }
    });
}

#[test]
fn a_rotation_that_meets_a_full_disk_is_undone_and_nothing_is_lost() {
    use shardcast_engine::log::reader::{read_log, LogEnd};
    use shardcast_engine::log::record::Record;
    use shardcast_engine::log::writer::Wal;
    use shardcast_engine::storage::{Storage, StorageFile};
    run(|| async {
        let storage = SimStorage::new();
        storage.create_dir_all(Path::new("/w")).unwrap();
        let old_path = Path::new("/w/wal-1.log").to_owned();
        let file = storage.open_rw(&old_path, true).await.unwrap();
        file.preallocate(4096).await.unwrap();
        let wal = Wal::new(file, old_path.clone(), 1, 4096);
        let put = |i: u64| format!("value-{i}-{}", "x".repeat(200));
        let append = |i: u64| {
            let v = put(i);
            wal.append(&Record::Put { key: b"k", value: v.as_bytes(), expire_at_ms: 0 }).unwrap()
        };
        for i in 0..5 {
            append(i);
        }
        wal.flush(true).await.unwrap();
        // More than the old file's reservation is left in its tail when the rotation comes.
        for i in 5..40 {
            append(i);
        }
        let new_path = Path::new("/w/wal-2.log").to_owned();
        let new_file = storage.open_rw(&new_path, true).await.unwrap();
        new_file.preallocate(4096).await.unwrap();
        storage.set_free_bytes(Some(0));
        let lock = wal.lock().await;
        let rotated = wal.rotate(new_file, new_path.clone(), 4096);
        // Records appended to the new file's tail before the old one is finished.
        for i in 40..45 {
            append(i);
        }
        let e = wal.finish_rotation(rotated).await.unwrap_err();
        drop(lock);
        assert!(e.is_no_space(), "{e:?}");
        assert!(wal.no_space().is_some());
        assert_eq!(wal.current_path(), old_path, "the rotation is undone");
        storage.set_free_bytes(None);
        wal.flush(true).await.unwrap();
        assert!(wal.no_space().is_none());
        assert_eq!(wal.durable_lsn(), 45);
        // Every record, in order, in the old file.
        let bytes = storage.read_file(&old_path).unwrap();
        let mut lsns = Vec::new();
        let end = read_log(&bytes, Some(1), |lsn, r| {
            let Record::Put { value, .. } = r else { panic!("{r:?}") };
            assert_eq!(*value, put(lsn - 1).as_bytes());
            lsns.push(lsn);
        });
        assert!(matches!(end, LogEnd::Clean { .. }), "{end:?}");
        assert_eq!(lsns, (1..=45).collect::<Vec<_>>());
    });
}
