//! Deterministic simulation of online carve-out, split, merge and fold-back: simulated cores in
//! one thread, keys of several partitions living in shared shards or in their own, every
//! message (client ops, migration batches, map installs) delivered after a random delay
//! (FIFO per pair of cores, interleaved at random across pairs), and crashes at random steps
//! that keep only what was synced plus a random subset of unsynced blocks.
//!
//! The cores run the engine's own migration pieces: `Shard::begin_outgoing`, `take_delta`,
//! `pause_outgoing`, `apply_batch`, `drop_foreign`, the batch codec, the manifest writer and
//! `recover_layout` + `open_placed_shards` + `create_placed_shard`, and the map's own
//! `with_split` / `with_merge`. The step order is the coordinator's
//! (`coordinator.rs`): intent, prepare, stream, deltas, pause, last delta, target sync, commit,
//! install target first. (The coordinator's own message plumbing is glommio's mesh; it is
//! tested with real processes in the server's `split_under_load` and
//! `migration_crash_points`.)
//!
//! Checked: every acknowledged write is read back exactly (one client per key, so the model
//! is exact) while ranges move; after every crash and at the end, every key has exactly one
//! owner, no shard holds a key outside its range, and every acknowledged write is present.
//! A failure prints its seed; replay with
//! `SHARDCAST_SEED=<seed> cargo test -p shardcast-engine --test migration_simulation`.

use shardcast_engine::clock::{Clock, ManualClock};
use shardcast_engine::keyspace::{SetCondition, SetExpiry};
use shardcast_engine::migration::{batches_of, decode_batch, encode_batch, MigrationBatch};
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::placement::manifest::{
    create_placed_shard, open_placed_shards, recover_layout, write_manifest, LayoutInit,
};
use shardcast_engine::placement::shard_map::{MigrationKind, ShardMap};
use shardcast_engine::routing::{partition_span, position_of, Position};
use shardcast_engine::shard::{remove_shard_dir, Shard, ShardConfig, ShardMeta};
use shardcast_engine::storage::sim::SimStorage;
use shardcast_engine::storage::Storage;
use shardcast_engine::testing::{seeds_from_env, SplitMix64};
use shardcast_engine::FsyncPolicy;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

const SEEDS: u64 = 64;
const STEPS: usize = 2500;
const CORES: usize = 3;
const KEYS: usize = 48;
/// The partitions the keys spread over (the last is the default one, `""`).
const PARTITIONS: [&str; 4] = ["p", "q", "r", ""];
/// Shared shards of the new data directory.
const SHARED: usize = 2;
/// Most shards of its own a partition gets.
const SHARDS_MAX: usize = 4;
/// Per step: one in CRASH_ODDS crashes the machine.
const CRASH_ODDS: u64 = 300;
const DELTA_CUTOVER_KEYS: usize = 2;
const DELTA_ROUNDS_MAX: usize = 4;
/// Small delta batches, so the cutover often takes several.
const DELTA_BATCH_KEYS: usize = 3;

type SimShard = Rc<Shard<SimStorage>>;

fn key(i: usize) -> Vec<u8> {
    match PARTITIONS[i % PARTITIONS.len()] {
        "" => format!("plain{i}").into_bytes(),
        p => format!("{p}:{i}").into_bytes(),
    }
}

fn position(key: &[u8]) -> Position {
    position_of(key, b':')
}

#[derive(Debug, Clone)]
enum ClientOp {
    Set(Vec<u8>),
    Del,
    Get,
}

enum Msg {
    Op {
        key: usize,
        op: ClientOp,
        hops: u32,
    },
    Batch {
        bytes: Vec<u8>,
        last: bool,
    },
    /// To the coordinator: the target made everything durable.
    TargetDurable,
    Install(Rc<ShardMap>),
}

struct SimCore {
    view: Rc<ShardMap>,
    shards: Vec<SimShard>,
    incoming: Option<(SimShard, Position, Position)>,
    /// Ops waiting for a cutover to end.
    parked: Vec<(usize, ClientOp, u32)>,
}

impl SimCore {
    fn new(view: Rc<ShardMap>) -> Self {
        SimCore { view, shards: Vec::new(), incoming: None, parked: Vec::new() }
    }
}

/// A running migration, as the coordinator tracks it.
struct Run {
    committed: Rc<ShardMap>,
    source_core: usize,
    target_core: usize,
    source: SimShard,
    bulk: VecDeque<MigrationBatch>,
    deltas: usize,
    paused: bool,
    seq: u64,
    phase: Phase,
    /// Cores still to install the committed map (the target first).
    installs: VecDeque<usize>,
}

#[derive(PartialEq, Debug)]
enum Phase {
    Streaming,
    AwaitDurable,
    Installing,
}

struct World {
    rng: SplitMix64,
    storage: SimStorage,
    clock: Rc<dyn Clock>,
    dir: PathBuf,
    /// The map as last written by the coordinator.
    map: ShardMap,
    cores: Vec<SimCore>,
    /// `queues[from * (CORES + 1) + to]`; index CORES is the clients / the coordinator.
    queues: Vec<VecDeque<Msg>>,
    run: Option<Run>,
    /// Acknowledged state of every key.
    model: BTreeMap<usize, Option<Vec<u8>>>,
    busy: Vec<bool>,
    version: u64,
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    acked: u64,
    reads_checked: u64,
    commits: u64,
    crashes: u64,
    forwards: u64,
    parked: u64,
    carves: u64,
    folds: u64,
}

fn config() -> ShardConfig {
    ShardConfig { fsync: FsyncPolicy::Always, wal_prealloc_bytes: 16 * 1024, ..Default::default() }
}

const CLIENT: usize = CORES;

impl World {
    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        self.queues[from * (CORES + 1) + to].push_back(msg);
    }

    fn owner(view: &ShardMap, key: &[u8]) -> usize {
        view.core_of(position(key), CORES)
    }

    async fn step(&mut self) {
        match self.rng.below(10) {
            0..=3 => self.start_client_op(),
            4 => self.maybe_start_migration().await,
            5 => self.advance_migration().await,
            _ => self.deliver_one().await,
        }
        self.retry_parked().await;
    }

    fn start_client_op(&mut self) {
        let k = self.rng.below(KEYS as u64) as usize;
        if self.busy[k] {
            return;
        }
        self.busy[k] = true;
        self.version += 1;
        let op = match self.rng.below(6) {
            0..=2 => ClientOp::Set(format!("v{}", self.version).into_bytes()),
            3 => ClientOp::Del,
            _ => ClientOp::Get,
        };
        let entry = self.rng.below(CORES as u64) as usize;
        self.send(CLIENT, entry, Msg::Op { key: k, op, hops: 0 });
    }

    async fn deliver_one(&mut self) {
        let ready: Vec<usize> =
            (0..self.queues.len()).filter(|&i| !self.queues[i].is_empty()).collect();
        if ready.is_empty() {
            return;
        }
        let q = ready[self.rng.below(ready.len() as u64) as usize];
        let msg = self.queues[q].pop_front().unwrap();
        let to = q % (CORES + 1);
        match msg {
            Msg::Op { key, op, hops } => self.on_op(to, key, op, hops).await,
            Msg::Batch { bytes, last } => self.on_batch(to, &bytes, last).await,
            Msg::TargetDurable => self.on_target_durable().await,
            Msg::Install(map) => self.on_install(to, map).await,
        }
    }

    /// A client op arriving at `core`: forward, park, or execute and acknowledge.
    async fn on_op(&mut self, core: usize, k: usize, op: ClientOp, hops: u32) {
        assert!(hops < 16, "op on key {k} forwarded {hops} times: routes do not settle");
        let kb = key(k);
        let owner = Self::owner(&self.cores[core].view, &kb);
        if owner != core {
            self.stats.forwards += 1;
            self.send(core, owner, Msg::Op { key: k, op, hops: hops + 1 });
            return;
        }
        let pos = position(&kb);
        let shard = self.cores[core].shards.iter().find(|s| s.owns(pos)).cloned();
        let shard = shard.unwrap_or_else(|| {
            panic!("core {core} owns key {k} by its map but no shard serves it")
        });
        if shard.paused_gate(pos).is_some() {
            self.stats.parked += 1;
            self.cores[core].parked.push((k, op, hops));
            return;
        }
        let engine_op = match &op {
            ClientOp::Set(v) => Op::Set {
                key: kb.clone(),
                value: v.clone(),
                condition: SetCondition::Always,
                expiry: SetExpiry::Clear,
                return_old: false,
            },
            ClientOp::Del => Op::Del { key: kb.clone() },
            ClientOp::Get => Op::Get { key: kb.clone() },
        };
        let (reply, wait) = shard.execute(engine_op).expect("op on a serving shard");
        if let Some(lsn) = wait {
            shard.wait_durable(lsn).await.expect("sync");
        }
        match op {
            ClientOp::Set(v) => {
                self.model.insert(k, Some(v));
                self.stats.acked += 1;
            }
            ClientOp::Del => {
                self.model.insert(k, None);
                self.stats.acked += 1;
            }
            ClientOp::Get => {
                let want = self.model.get(&k).cloned().flatten();
                let got = match reply {
                    Reply::Value(v) => Some(v),
                    Reply::Nil => None,
                    other => panic!("GET answered {other:?}"),
                };
                assert_eq!(got, want, "key {k} read on core {core}: stale or lost");
                self.stats.reads_checked += 1;
            }
        }
        self.busy[k] = false;
    }

    async fn retry_parked(&mut self) {
        for core in 0..CORES {
            let parked = std::mem::take(&mut self.cores[core].parked);
            for (k, op, hops) in parked {
                let pos = position(&key(k));
                let still = self.cores[core].shards.iter().any(|s| s.paused_gate(pos).is_some());
                if still {
                    self.cores[core].parked.push((k, op, hops));
                } else {
                    self.on_op(core, k, op, hops).await;
                }
            }
        }
    }

    /// Plans a random migration the way the coordinator would: a carve-out of a partition
    /// living in a shared shard, a split of one of a partition's shards, a merge of two of
    /// them, or the fold-back of its last one (into a shared shard owning a neighbouring
    /// position, else any shared shard).
    async fn maybe_start_migration(&mut self) {
        if self.run.is_some() {
            return;
        }
        let partition = PARTITIONS[self.rng.below(PARTITIONS.len() as u64) as usize].as_bytes();
        let own: Vec<_> =
            self.map.partition_shards(partition).into_iter().map(|(r, p)| (r, p.clone())).collect();
        let grow = own.is_empty() || (own.len() < SHARDS_MAX && self.rng.chance(1, 2));
        // The map's own planning, as the coordinator's: intent and committed map.
        let (intent, committed) = if grow {
            let target_core = self.rng.below(CORES as u64) as u32;
            let (source, lo, hi) = if own.is_empty() {
                let (lo, hi) = partition_span(partition);
                let (_, home) = self.map.shared_home(partition).expect("in a shared shard");
                (home.number, lo, hi)
            } else {
                let (range, place) = &own[self.rng.below(own.len() as u64) as usize];
                let Some(cut) = self.shard_of(place.number).split_point() else { return };
                (place.number, cut, range.hi)
            };
            self.map.plan_split(partition, source, lo, hi, target_core)
        } else {
            let (donor, absorber) = if own.len() == 1 {
                // The coordinator's own choice of the shared shard to fold into.
                (own[0].0, self.map.fold_target(&own[0].0))
            } else {
                let i = self.rng.below(own.len() as u64 - 1) as usize;
                let (a, b) = (&own[i], &own[i + 1]);
                if self.rng.chance(1, 2) {
                    (a.0, b.1.number)
                } else {
                    (b.0, a.1.number)
                }
            };
            self.map.plan_merge(partition, &donor, absorber)
        };
        let record = intent.migration.clone().expect("an intent records its migration");
        write_manifest(&self.storage, &self.dir, &intent).await.unwrap();
        self.map = intent;
        // Prepare the target.
        let target_core = record.target_core as usize % CORES;
        let target = match record.kind {
            MigrationKind::Split => {
                let meta = ShardMeta { number: record.target, partition: Some(partition.to_vec()) };
                let s = Shard::create(
                    self.storage.clone(),
                    &self.dir,
                    meta,
                    vec![(record.lo, record.hi)],
                    config(),
                    self.clock.clone(),
                )
                .await
                .unwrap();
                Rc::new(s)
            }
            MigrationKind::Merge => self.shard_of(record.target),
        };
        self.stats.carves += (record.kind == MigrationKind::Split && own.is_empty()) as u64;
        self.stats.folds += (record.kind == MigrationKind::Merge && own.len() == 1) as u64;
        self.cores[target_core].incoming = Some((target, record.lo, record.hi));
        // The source's cut.
        let source = self.shard_of(record.source);
        let source_core = self.core_of_shard(record.source);
        let bulk: VecDeque<_> = batches_of(source.begin_outgoing(record.lo, record.hi)).collect();
        self.run = Some(Run {
            committed: Rc::new(committed),
            source_core,
            target_core,
            source,
            bulk,
            deltas: 0,
            paused: false,
            seq: 0,
            phase: Phase::Streaming,
            installs: VecDeque::new(),
        });
    }

    fn shard_of(&self, number: u64) -> SimShard {
        self.cores
            .iter()
            .flat_map(|c| &c.shards)
            .find(|s| s.meta().number == number)
            .cloned()
            .unwrap()
    }

    fn core_of_shard(&self, number: u64) -> usize {
        self.cores.iter().position(|c| c.shards.iter().any(|s| s.meta().number == number)).unwrap()
    }

    /// The source's (or the coordinator's) next move.
    async fn advance_migration(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        match run.phase {
            Phase::Streaming => {
                let (batch, last) = if let Some(b) = run.bulk.pop_front() {
                    (b, false)
                } else if run.source.dirty_len() > DELTA_CUTOVER_KEYS
                    && run.deltas < DELTA_ROUNDS_MAX
                    && !run.paused
                {
                    run.deltas += 1;
                    (run.source.take_delta(DELTA_BATCH_KEYS, usize::MAX), false)
                } else {
                    // The cutover: paused, the last delta in bounded batches, the last of
                    // which makes the target sync.
                    run.source.pause_outgoing();
                    run.paused = true;
                    let batch = run.source.take_delta(DELTA_BATCH_KEYS, usize::MAX);
                    let last = run.source.dirty_len() == 0;
                    if last {
                        run.phase = Phase::AwaitDurable;
                    }
                    (batch, last)
                };
                let bytes = encode_batch(run.seq, &batch);
                run.seq += 1;
                let (from, to) = (run.source_core, run.target_core);
                self.send(from, to, Msg::Batch { bytes, last });
            }
            Phase::AwaitDurable => {}
            Phase::Installing => {
                // One core at a time, each after the previous one installed (as the
                // coordinator awaits each step).
                let in_flight =
                    self.queues.iter().any(|q| q.iter().any(|m| matches!(m, Msg::Install(_))));
                if in_flight {
                    return;
                }
                let run = self.run.as_mut().unwrap();
                if let Some(core) = run.installs.pop_front() {
                    let map = run.committed.clone();
                    self.send(CLIENT, core, Msg::Install(map));
                }
            }
        }
    }

    async fn on_batch(&mut self, core: usize, bytes: &[u8], last: bool) {
        let (_, batch) = decode_batch(bytes).expect("batch intact in memory");
        let (shard, lo, hi) = self.cores[core].incoming.clone().expect("a target is receiving");
        shard.apply_batch(batch, lo, hi).unwrap();
        shard.flush(last).await.unwrap();
        if last {
            self.send(core, CLIENT, Msg::TargetDurable);
        }
    }

    async fn on_target_durable(&mut self) {
        let run = self.run.as_mut().expect("a migration runs");
        assert_eq!(run.phase, Phase::AwaitDurable);
        write_manifest(&self.storage, &self.dir, &run.committed).await.unwrap();
        self.map = (*run.committed).clone();
        self.stats.commits += 1;
        run.phase = Phase::Installing;
        let (t, s) = (run.target_core, run.source_core);
        run.installs.push_back(t);
        if s != t {
            run.installs.push_back(s);
        }
        run.installs.extend((0..CORES).filter(|&c| c != t && c != s));
    }

    /// The core takes the map: the same reconciliation as `Core::install_map`.
    async fn on_install(&mut self, core: usize, map: Rc<ShardMap>) {
        let c = &mut self.cores[core];
        c.view = map.clone();
        let incoming = c.incoming.take();
        let mut keep = Vec::new();
        let mut removed = Vec::new();
        let placed_here = |n: u64| map.shard(n).is_some_and(|p| p.core(CORES) == core);
        for s in c.shards.drain(..) {
            if placed_here(s.meta().number) {
                s.set_ranges(map.ranges_of(s.meta().number));
                keep.push(s);
            } else {
                removed.push(s);
            }
        }
        if let Some((s, _, _)) = incoming {
            if placed_here(s.meta().number) && !keep.iter().any(|k| Rc::ptr_eq(k, &s)) {
                s.set_ranges(map.ranges_of(s.meta().number));
                keep.push(s);
            }
        }
        for s in keep.iter().chain(&removed) {
            if let Some((lo, _)) = s.outgoing_range() {
                if removed.iter().any(|r| Rc::ptr_eq(r, s)) || !s.owns(lo) {
                    s.end_outgoing();
                }
            }
        }
        c.shards = keep;
        for s in removed {
            let dir = s.dir().to_owned();
            remove_shard_dir(&self.storage, &dir).await.unwrap();
            self.storage.sync_dir(dir.parent().unwrap()).await.unwrap();
        }
        for s in self.cores[core].shards.clone() {
            s.drop_foreign().await.unwrap();
        }
        let run = self.run.as_ref().unwrap();
        let last_install = run.phase == Phase::Installing
            && run.installs.is_empty()
            && self.queues.iter().all(|q| !q.iter().any(|m| matches!(m, Msg::Install(_))));
        if last_install {
            self.run = None;
        }
    }

    /// Power loss, then recovery exactly as the server does it.
    async fn crash_and_recover(&mut self, seed: u64) {
        self.stats.crashes += 1;
        self.storage.crash(seed);
        self.recover().await;
    }

    async fn recover(&mut self) {
        for q in &mut self.queues {
            q.clear();
        }
        self.run = None;
        self.busy = vec![false; KEYS];
        let init = LayoutInit { shared_shards: SHARED, cores: CORES, separator: b':' };
        let map = recover_layout(&self.storage, &self.dir, init, &config(), self.clock.clone())
            .await
            .unwrap();
        assert!(map.migration.is_none());
        let mut shards = open_placed_shards(
            &self.storage,
            &self.dir,
            &map,
            CORES,
            None,
            config(),
            self.clock.clone(),
        )
        .await
        .unwrap();
        // Shards the map places without files (the first start).
        for place in map.shards() {
            if !shards.iter().any(|(_, s)| s.meta().number == place.number) {
                let s = create_placed_shard(
                    &self.storage,
                    &self.dir,
                    &map,
                    place.number,
                    config(),
                    self.clock.clone(),
                )
                .await
                .unwrap();
                shards.push((place.core(CORES), s));
            }
        }
        let view = Rc::new(map.clone());
        self.cores = (0..CORES).map(|_| SimCore::new(view.clone())).collect();
        for (core, s) in shards {
            self.cores[core].shards.push(Rc::new(s));
        }
        self.map = map;
        self.check_ownership("after recovery");
    }

    /// Every key has exactly one owner holding exactly its acknowledged state, and no shard
    /// holds a key outside its range.
    fn check_ownership(&self, when: &str) {
        let mut numbers: Vec<u64> =
            self.cores.iter().flat_map(|c| &c.shards).map(|s| s.meta().number).collect();
        numbers.sort_unstable();
        let mapped: Vec<u64> = self.map.shards().map(|p| p.number).collect();
        assert_eq!(numbers, mapped, "{when}: serving shards differ from the map");
        for c in &self.cores {
            for s in &c.shards {
                assert_eq!(s.ranges(), self.map.ranges_of(s.meta().number), "{when}: ranges");
                s.with_keyspace(|ks| {
                    for (k, _) in ks.iter() {
                        assert!(
                            s.owns(position(k)),
                            "{when}: shard {} holds foreign key {:?}",
                            s.meta().name(),
                            String::from_utf8_lossy(k)
                        );
                    }
                });
            }
        }
        for k in 0..KEYS {
            let kb = key(k);
            let holders: Vec<Option<Vec<u8>>> = self
                .cores
                .iter()
                .flat_map(|c| &c.shards)
                .filter_map(|s| {
                    s.with_keyspace(|ks| {
                        ks.iter()
                            .find(|(key, _)| key.as_ref() == kb.as_slice())
                            .map(|(_, e)| e.value.to_vec())
                    })
                    .map(Some)
                })
                .collect();
            let want = self.model.get(&k).cloned().flatten();
            match &want {
                Some(v) => assert_eq!(holders, vec![Some(v.clone())], "{when}: key {k}"),
                None => assert!(holders.is_empty(), "{when}: deleted key {k} is back: {holders:?}"),
            }
        }
    }

    /// Delivers everything and lets the migration finish.
    async fn quiesce(&mut self) {
        for _ in 0..100_000 {
            if self.run.is_none()
                && self.queues.iter().all(VecDeque::is_empty)
                && self.cores.iter().all(|c| c.parked.is_empty())
            {
                return;
            }
            self.advance_migration().await;
            self.deliver_one().await;
            self.retry_parked().await;
        }
        panic!("the simulation did not quiesce: {:?}", self.run.as_ref().map(|r| &r.phase));
    }
}

async fn run_seed(seed: u64) -> Stats {
    let storage = SimStorage::new();
    let dir = PathBuf::from("/data");
    storage.create_dir_all(&dir).unwrap();
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_000));
    let mut world = World {
        rng: SplitMix64::new(seed),
        storage: storage.clone(),
        clock: clock.clone(),
        dir: dir.clone(),
        map: ShardMap::initial(SHARED, CORES, b':'),
        cores: Vec::new(),
        queues: (0..(CORES + 1) * (CORES + 1)).map(|_| VecDeque::new()).collect(),
        run: None,
        model: BTreeMap::new(),
        busy: vec![false; KEYS],
        version: 0,
        stats: Stats::default(),
    };
    // A new data directory: its map and shared shards, as the server makes them.
    let _ = clock;
    world.recover().await;
    let _ = Path::new("/");
    for step in 0..STEPS {
        world.step().await;
        if world.rng.chance(1, CRASH_ODDS) {
            let crash_seed = world.rng.next_u64();
            world.crash_and_recover(crash_seed).await;
        }
        if step % 500 == 499 {
            world.quiesce().await;
            world.check_ownership("at a quiet point");
        }
    }
    world.quiesce().await;
    world.check_ownership("at the end");
    let crash_seed = world.rng.next_u64();
    world.crash_and_recover(crash_seed).await;
    world.stats
}

#[test]
fn migrations_keep_one_owner_and_every_acknowledged_write() {
    let seeds = seeds_from_env(SEEDS);
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let mut total = Stats::default();
            for seed in seeds {
                eprintln!("migration simulation seed {seed} (replay: SHARDCAST_SEED={seed})");
                let s = run_seed(seed).await;
                total.acked += s.acked;
                total.reads_checked += s.reads_checked;
                total.commits += s.commits;
                total.crashes += s.crashes;
                total.forwards += s.forwards;
                total.parked += s.parked;
                total.carves += s.carves;
                total.folds += s.folds;
            }
            eprintln!("{total:?}");
            assert!(total.commits > 0 && total.crashes > 0 && total.forwards > 0);
            assert!(total.carves > 0 && total.folds > 0, "carve-outs and fold-backs ran");
        })
        .unwrap()
        .join()
        .unwrap();
}
