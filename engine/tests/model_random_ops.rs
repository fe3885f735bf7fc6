//! Model test: random operation sequences on one shard, checked against a `BTreeMap` model,
//! with snapshots, clean restarts and crashes among the operations. Some writes are not waited
//! for and unsynced log writes (as the `everysec` timer makes) span several blocks, so a crash
//! (simulated storage: each unsynced block kept or lost at random, in any order) may cut
//! in-flight writes: the recovered state must then be the model's state after some op between
//! the last acknowledged one and the last issued one, and the shard must keep serving. After
//! every step the keyspace's invariants hold (`Keyspace::assert_invariants`) and the log read
//! back from the storage is in LSN order with no gap past the newest segment
//! (`log::reader::check_log_order`). A failure prints its seed; replay it with
//! `SHARDCAST_SEED=<seed> cargo test -p shardcast-engine --test model_random_ops`.

use shardcast_engine::clock::{Clock, ManualClock};
use shardcast_engine::keyspace::{ExpireCondition, SetCondition, SetExpiry, Ttl};
use shardcast_engine::log::reader::check_log_order;
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::shard::{Shard, ShardConfig, ShardMeta};
use shardcast_engine::storage::sim::SimStorage;
use shardcast_engine::testing::{seeds_from_env, SplitMix64};
use shardcast_engine::{EngineError, FsyncPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

/// key -> (value, absolute expiry ms or 0)
type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

const KEYS: u64 = 12;
const OPS_PER_SEED: usize = 1500;
const SEEDS: u64 = 24;

fn live(model: &mut Model, key: &[u8], now: u64) -> Option<(Vec<u8>, u64)> {
    match model.get(key) {
        Some((_, at)) if *at != 0 && *at <= now => {
            model.remove(key);
            None
        }
        other => other.cloned(),
    }
}

fn random_op(rng: &mut SplitMix64, now: u64) -> Op {
    let key = format!("k{}", rng.below(KEYS)).into_bytes();
    let value = format!("v{}", rng.below(1000)).repeat(1 + rng.below(4) as usize).into_bytes();
    let at = now + 1 + rng.below(50);
    match rng.below(11) {
        0 | 1 => Op::Set {
            key,
            value,
            condition: [SetCondition::Always, SetCondition::IfAbsent, SetCondition::IfPresent]
                [rng.below(3) as usize],
            expiry: match rng.below(4) {
                0 => SetExpiry::At(at),
                1 => SetExpiry::Keep,
                _ => SetExpiry::Clear,
            },
            return_old: rng.chance(1, 2),
        },
        2 => Op::Del { key },
        3 => Op::IncrBy { key, delta: rng.below(21) as i64 - 10 },
        4 => Op::Append { key, suffix: value },
        5 => Op::Expire {
            key,
            at_ms: if rng.chance(1, 8) { now } else { at },
            condition: [
                ExpireCondition::Always,
                ExpireCondition::IfNone,
                ExpireCondition::IfSome,
                ExpireCondition::IfGreater,
                ExpireCondition::IfLess,
                ExpireCondition::IfSomeAndLess,
            ][rng.below(6) as usize],
        },
        6 => Op::Persist { key },
        7 if rng.chance(1, 2) => Op::Ttl { key },
        7 => Op::ExpireTime { key },
        8 if rng.chance(1, 4) => Op::Dump { key },
        8 => Op::Exists { key },
        9 => match rng.below(7) {
            0 => Op::GetDel { key },
            1 => Op::GetEx {
                key,
                expiry: [
                    None,
                    Some(SetExpiry::Clear),
                    Some(SetExpiry::At(at)),
                    Some(SetExpiry::At(now)),
                ][rng.below(4) as usize],
            },
            2 => Op::StrLen { key },
            3 => {
                Op::GetRange { key, start: rng.below(10) as i64 - 5, end: rng.below(10) as i64 - 5 }
            }
            4 => Op::SetRange {
                key,
                offset: rng.below(8) as usize,
                value: value[..value.len().min(6)].to_vec(),
            },
            5 => Op::IncrByFloat { key, delta: (rng.below(100) as f64 - 50.0) / 4.0 },
            _ => Op::Get { key },
        },
        _ => Op::Get { key },
    }
}

/// What the model says `op` returns, applying it to the model.
fn model_apply(model: &mut Model, op: &Op, now: u64) -> Result<Reply, EngineError> {
    match op.clone() {
        Op::Get { key } => Ok(live(model, &key, now).map_or(Reply::Nil, |(v, _)| Reply::Value(v))),
        Op::Object { .. } => unreachable!("the generator makes no OBJECT ops"),
        Op::Dump { key } => Ok(live(model, &key, now)
            .map_or(Reply::Nil, |(value, expire_at_ms)| Reply::Entry { value, expire_at_ms })),
        Op::Exists { key } => Ok(Reply::Bool(live(model, &key, now).is_some())),
        Op::Ttl { key } => Ok(Reply::Ttl(match live(model, &key, now) {
            None => Ttl::Missing,
            Some((_, 0)) => Ttl::Persistent,
            Some((_, at)) => Ttl::Ms(at - now),
        })),
        Op::ExpireTime { key } => Ok(Reply::Ttl(match live(model, &key, now) {
            None => Ttl::Missing,
            Some((_, 0)) => Ttl::Persistent,
            Some((_, at)) => Ttl::Ms(at),
        })),
        Op::Set { key, value, condition, expiry, return_old } => {
            let cur = live(model, &key, now);
            let old = if return_old { cur.as_ref().map(|(v, _)| v.clone()) } else { None };
            let holds = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => cur.is_none(),
                SetCondition::IfPresent => cur.is_some(),
            };
            if holds {
                let at = match expiry {
                    SetExpiry::Clear => 0,
                    SetExpiry::Keep => cur.map_or(0, |(_, at)| at),
                    SetExpiry::At(at) => at,
                };
                model.insert(key, (value, at));
            }
            Ok(Reply::Set { applied: holds, old })
        }
        Op::Del { key } => {
            Ok(Reply::Bool(live(model, &key, now).is_some() && model.remove(&key).is_some()))
        }
        Op::IncrBy { key, delta } => {
            let (cur, at) = match live(model, &key, now) {
                None => (0, 0),
                Some((v, at)) => match shardcast_engine::keyspace::parse_i64(&v) {
                    Some(n) => (n, at),
                    None => return Err(EngineError::NotAnInteger),
                },
            };
            let next = cur.checked_add(delta).ok_or(EngineError::Overflow)?;
            model.insert(key, (next.to_string().into_bytes(), at));
            Ok(Reply::Int(next))
        }
        Op::Append { key, suffix } => {
            let (mut v, at) = live(model, &key, now).unwrap_or_default();
            v.extend_from_slice(&suffix);
            let len = v.len();
            model.insert(key, (v, at));
            Ok(Reply::Int(len as i64))
        }
        Op::Expire { key, at_ms, condition } => {
            let Some((v, cur)) = live(model, &key, now) else {
                return Ok(Reply::Bool(false));
            };
            let holds = match condition {
                ExpireCondition::Always => true,
                ExpireCondition::IfNone => cur == 0,
                ExpireCondition::IfSome => cur != 0,
                ExpireCondition::IfGreater => cur != 0 && at_ms > cur,
                ExpireCondition::IfLess => cur == 0 || at_ms < cur,
                ExpireCondition::IfSomeAndLess => cur != 0 && at_ms < cur,
            };
            if holds {
                if at_ms <= now {
                    model.remove(&key);
                } else {
                    model.insert(key, (v, at_ms));
                }
            }
            Ok(Reply::Bool(holds))
        }
        Op::GetDel { key } => Ok(match live(model, &key, now) {
            Some((v, _)) => {
                model.remove(&key);
                Reply::Value(v)
            }
            None => Reply::Nil,
        }),
        Op::GetEx { key, expiry } => Ok(match live(model, &key, now) {
            Some((v, at)) => {
                match expiry {
                    None | Some(SetExpiry::Keep) => {}
                    Some(SetExpiry::Clear) => {
                        model.insert(key, (v.clone(), 0));
                    }
                    Some(SetExpiry::At(new_at)) if new_at <= now => {
                        model.remove(&key);
                    }
                    Some(SetExpiry::At(new_at)) => {
                        model.insert(key, (v.clone(), new_at));
                    }
                }
                let _ = at;
                Reply::Value(v)
            }
            None => Reply::Nil,
        }),
        Op::StrLen { key } => {
            Ok(Reply::Int(live(model, &key, now).map_or(0, |(v, _)| v.len() as i64)))
        }
        Op::GetRange { key, start, end } => {
            let v = live(model, &key, now).map(|(v, _)| v).unwrap_or_default();
            let len = v.len() as i64;
            // Redis getrangeCommand, written out independently of the engine's code.
            let out = if len == 0 || (start < 0 && end < 0 && start > end) {
                Vec::new()
            } else {
                let s = if start < 0 { (len + start).max(0) } else { start };
                let e = if end < 0 { (len + end).max(0) } else { end.min(len - 1) };
                if s > e || s >= len {
                    Vec::new()
                } else {
                    v[s as usize..=e as usize].to_vec()
                }
            };
            Ok(Reply::Value(out))
        }
        Op::SetRange { key, offset, value } => {
            let cur = live(model, &key, now);
            if value.is_empty() {
                return Ok(Reply::Int(cur.map_or(0, |(v, _)| v.len() as i64)));
            }
            let (mut v, at) = cur.unwrap_or_default();
            if v.len() < offset + value.len() {
                v.resize(offset + value.len(), 0);
            }
            v[offset..offset + value.len()].copy_from_slice(&value);
            let len = v.len() as i64;
            model.insert(key, (v, at));
            Ok(Reply::Int(len))
        }
        Op::IncrByFloat { key, delta } => {
            let (cur, at) = match live(model, &key, now) {
                None => (0.0, 0),
                Some((v, at)) => {
                    match std::str::from_utf8(&v).ok().and_then(|s| s.parse::<f64>().ok()) {
                        Some(f) if !f.is_nan() => (f, at),
                        _ => return Err(EngineError::NotAFloat),
                    }
                }
            };
            let next = cur + delta;
            let text = shardcast_engine::keyspace::format_f64(next).into_bytes();
            model.insert(key, (text.clone(), at));
            Ok(Reply::Value(text))
        }
        Op::Persist { key } => match live(model, &key, now) {
            Some((v, at)) if at != 0 => {
                model.insert(key, (v, 0));
                Ok(Reply::Bool(true))
            }
            _ => Ok(Reply::Bool(false)),
        },
    }
}

fn visible(model: &Model, now: u64) -> Model {
    model
        .iter()
        .filter(|(_, (_, at))| *at == 0 || *at > now)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The keyspace's state; checks on the way that its position index holds exactly its keys, in
/// position order.
fn actual_state(shard: &Shard<SimStorage>, now: u64) -> Model {
    shard.with_keyspace(|ks| {
        let indexed: Vec<_> = ks.index().iter().collect();
        assert_eq!(indexed.len(), ks.len(), "the index holds every key once");
        for (position, key) in &indexed {
            assert!(ks.peek(key).is_some(), "indexed key {key:?} is not in the map");
            assert_eq!(*position, ks.index().position(key));
        }
        assert!(indexed.windows(2).all(|w| w[0] < w[1]), "the index is in position order");
        let mut per_partition = std::collections::HashMap::<u64, u64>::new();
        for (position, _) in &indexed {
            *per_partition.entry((*position >> 64) as u64).or_default() += 1;
        }
        for (hash, n) in per_partition {
            assert_eq!(ks.index().partition_keys(hash), n, "keys counted per partition");
        }
        ks.iter()
            .filter(|(_, e)| e.expire_at_ms == 0 || e.expire_at_ms > now)
            .map(|(k, e)| (k.to_vec(), (e.value.to_vec(), e.expire_at_ms)))
            .collect()
    })
}

fn check_state(shard: &Shard<SimStorage>, model: &mut Model, now: u64, seed: u64, step: usize) {
    *model = visible(model, now);
    assert_eq!(
        &actual_state(shard, now),
        model,
        "seed {seed}, step {step}: recovered state differs from the model"
    );
}

/// The number in a file name `<prefix><number><suffix>` (`wal-0000000003.log`).
fn numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

/// What must hold after every step, whatever the model says: the keyspace's invariants, and
/// the shard's log, read back from the storage as it is now, in LSN order with no gap past the
/// newest segment.
fn check_invariants(shard: &Shard<SimStorage>, storage: &SimStorage, seed: u64, step: usize) {
    let keyspace = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shard.with_keyspace(|ks| ks.assert_invariants())
    }));
    assert!(keyspace.is_ok(), "seed {seed}, step {step}: a keyspace invariant is broken");
    let mut logs = Vec::new();
    let mut segment_lsn = 0;
    for path in storage.paths().into_iter().filter(|p| p.parent() == Some(shard.dir())) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(seq) = numbered(&name, "wal-", ".log") {
            logs.push((seq, name, storage.read_file(&path).unwrap()));
        } else if let Some(lsn) = numbered(&name, "seg-", ".rkyv") {
            segment_lsn = segment_lsn.max(lsn);
        }
    }
    logs.sort();
    let files = logs.iter().map(|(_, name, bytes)| (name.as_str(), bytes.as_slice()));
    if let Err(e) = check_log_order(files, segment_lsn) {
        panic!("seed {seed}, step {step}: the log read back is out of order: {e}");
    }
}

/// After a crash: the recovered state must be one of `history[acked..]` (states after each
/// issued op, from the last acknowledged one on). Returns the one it is.
fn check_crash_state(
    shard: &Shard<SimStorage>,
    history: &[Model],
    acked: usize,
    now: u64,
    seed: u64,
    step: usize,
) -> Model {
    let actual = actual_state(shard, now);
    for candidate in &history[acked..] {
        if visible(candidate, now) == actual {
            return candidate.clone();
        }
    }
    panic!(
        "seed {seed}, step {step}: recovered state is not the state after any op from the last acknowledged ({} candidates)\nrecovered: {actual:?}\nacknowledged: {:?}",
        history.len() - acked,
        visible(&history[acked], now)
    );
}

async fn run_seed(seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let data_dir = Path::new("/data");
    let config = ShardConfig {
        fsync: FsyncPolicy::Always,
        snapshot_min_wal_bytes: 1,
        wal_prealloc_bytes: 16 * 1024,
        ..ShardConfig::default()
    };
    let meta = ShardMeta::shared(0);
    let clock_rc: Rc<dyn Clock> = Rc::new(clock.clone());
    let mut shard = Shard::create(
        storage.clone(),
        data_dir,
        meta,
        vec![(0, u128::MAX)],
        config.clone(),
        clock_rc.clone(),
    )
    .await
    .unwrap();
    let dir = shard.dir().to_owned();
    let mut model = Model::new();
    // States after each op since the last crash; `acked`: index of the last one acknowledged.
    let mut history = vec![model.clone()];
    let mut acked = 0;
    let trace = std::env::var("SHARDCAST_TRACE").is_ok();
    let reopen = || {
        let (storage, dir, config, clock) =
            (storage.clone(), dir.clone(), config.clone(), clock_rc.clone());
        async move { Shard::open(storage, dir, vec![(0, u128::MAX)], config, clock).await.unwrap() }
    };
    for step in 0..OPS_PER_SEED {
        let now = clock.now_ms();
        let choice = rng.below(100);
        if trace {
            eprintln!("step {step} choice {choice} now {now} files {:?}", storage.paths());
        }
        match choice {
            0..=3 => {
                storage.crash(rng.next_u64());
                shard = reopen().await;
                assert!(shard.is_serving(), "seed {seed}, step {step}: {:?}", shard.failure());
                model = check_crash_state(&shard, &history, acked, now, seed, step);
                history = vec![model.clone()];
                acked = 0;
            }
            4..=5 => {
                shard.flush(true).await.unwrap();
                shard = reopen().await;
                check_state(&shard, &mut model, now, seed, step);
                history = vec![model.clone()];
                acked = 0;
            }
            6..=7 => {
                shard.snapshot().await.unwrap();
                acked = history.len() - 1;
            }
            8..=11 => {
                // What the everysec timer does: write without syncing.
                shard.flush(false).await.unwrap();
            }
            12..=15 => clock.advance(rng.below(20)),
            16 => {
                shard.remove_expired(usize::MAX);
            }
            _ => {
                let op = random_op(&mut rng, now);
                let expected = model_apply(&mut model, &op, now);
                if trace {
                    eprintln!("  {op:?} -> {expected:?}");
                }
                let got = match shard.execute(op.clone()) {
                    Ok((reply, wait)) => {
                        history.push(model.clone());
                        match wait {
                            // Odd seeds: half the writes wait for their acknowledgement.
                            // Even seeds: none do (the everysec pattern: many unsynced
                            // blocks, written by the timer, in flight at a crash).
                            Some(lsn) if seed % 2 == 1 && rng.chance(1, 2) => {
                                shard.wait_durable(lsn).await.unwrap();
                                acked = history.len() - 1;
                            }
                            _ => {}
                        }
                        Ok(reply)
                    }
                    Err(e) => Err(e),
                };
                assert_eq!(got, expected, "seed {seed}, step {step}: {op:?}");
            }
        }
        check_invariants(&shard, &storage, seed, step);
    }
    storage.crash(rng.next_u64());
    let shard =
        Shard::open(storage.clone(), dir, vec![(0, u128::MAX)], config, clock_rc).await.unwrap();
    assert!(shard.is_serving(), "seed {seed}: {:?}", shard.failure());
    check_crash_state(&shard, &history, acked, clock.now_ms(), seed, OPS_PER_SEED);
    check_invariants(&shard, &storage, seed, OPS_PER_SEED);
}

#[test]
fn random_ops_with_restarts_and_crashes_match_the_model() {
    let seeds = seeds_from_env(SEEDS);
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            for seed in seeds {
                eprintln!("model seed {seed} (replay: SHARDCAST_SEED={seed})");
                run_seed(seed).await;
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
