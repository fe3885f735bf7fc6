//! Named regressions found by the randomized tests, each with a one-line postmortem.

use shardcast_engine::keyspace::{Keyspace, LogSink, SetExpiry, SetOptions};
use shardcast_engine::log::record::{decode, Record};

/// Collects encoded records, so a test can replay exactly what was logged.
#[derive(Default)]
struct Collect(Vec<u8>, u64);

impl LogSink for Collect {
    fn log(&mut self, r: &Record<'_>) {
        self.1 += 1;
        r.encode(self.1, self.1 - 1, &mut self.0);
    }
}

fn replay(log: &[u8]) -> Keyspace {
    let mut ks = Keyspace::new();
    let mut at = 0;
    while at < log.len() {
        let d = decode(&log[at..]).unwrap();
        ks.apply_record(&d.record);
        at += d.len;
    }
    ks
}

/// Model seed 1795490851912123952: APPEND to a lazily expired key was logged as Append; replay
/// (which never expires) extended the dead value and kept its expiry. Now logged as a Put.
#[test]
fn append_to_expired_key_replays_as_a_new_value() {
    let mut ks = Keyspace::new();
    let mut log = Collect::default();
    ks.set(
        b"k",
        b"old".to_vec(),
        SetOptions { expiry: SetExpiry::At(100), ..SetOptions::PLAIN },
        50,
        &mut log,
    )
    .unwrap();
    assert_eq!(ks.append(b"k", b"new", 200, &mut log).unwrap(), 3);
    let mut recovered = replay(&log.0);
    assert_eq!(recovered.get(b"k", 300).as_deref().map(|v| v.as_slice()), Some(&b"new"[..]));
    assert_eq!(ks.get(b"k", 300), recovered.get(b"k", 300));
}
