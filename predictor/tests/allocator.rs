//! The allocator's rules on a small model machine, in fake time: each test drives
//! `Allocator::choose` tick by tick with a known load, applies its decisions to the model
//! layout at once, and checks what was decided and when.

use shardcast_predictor::allocator::{
    Action, Allocator, CoreState, ForecastInput, Outcome, PartitionState, Policy, Settings,
    ShardState, View,
};

const TICK_MS: u64 = 1_000;
const CAPACITY: f64 = 1_000.0;

/// A model machine: shards on cores, partitions owning shards or living in shared shard 0.
struct Model {
    cores: usize,
    shards: Vec<ShardState>,
    partitions: Vec<PartitionState>,
    next_shard: u64,
    host_idle_cpus: Option<f64>,
    dead: Vec<usize>,
}

impl Model {
    /// `cores` cores, one shared shard per core (numbers 0..cores), and `own[i]` own shards
    /// on core 0 for partition `names[i]` (0: it lives in shared shard 0).
    fn new(cores: usize, names: &[&str], own: &[usize]) -> Model {
        let mut m = Model {
            cores,
            shards: (0..cores as u64)
                .map(|n| ShardState {
                    number: n,
                    core: n as usize,
                    partition: None,
                    ops_per_sec: 0.0,
                    keys: 0,
                    bytes: 0,
                })
                .collect(),
            partitions: Vec::new(),
            next_shard: cores as u64,
            host_idle_cpus: None,
            dead: Vec::new(),
        };
        for (name, &k) in names.iter().zip(own) {
            let mut p = PartitionState {
                partition: name.as_bytes().to_vec(),
                ops_per_sec: 0.0,
                own: Vec::new(),
                home: (k == 0).then_some(0),
                forecast: None,
            };
            for _ in 0..k {
                let n = m.new_shard(name, 0);
                p.own.push(n);
            }
            m.partitions.push(p);
        }
        m
    }

    fn new_shard(&mut self, partition: &str, core: usize) -> u64 {
        let n = self.next_shard;
        self.next_shard += 1;
        self.shards.push(ShardState {
            number: n,
            core,
            partition: Some(partition.as_bytes().to_vec()),
            ops_per_sec: 0.0,
            keys: 1000,
            bytes: 100_000,
        });
        n
    }

    fn partition_mut(&mut self, p: &[u8]) -> &mut PartitionState {
        self.partitions.iter_mut().find(|x| x.partition == p).expect("known partition")
    }

    /// The view at `now_ms` with each partition's load (`loads`, spread evenly over its
    /// shards) and forecast upper (`forecasts`, `None` for none).
    fn view(&mut self, now_ms: u64, loads: &[f64], forecasts: &[Option<f64>]) -> View {
        for s in &mut self.shards {
            s.ops_per_sec = 0.0;
        }
        for (i, p) in self.partitions.iter_mut().enumerate() {
            p.ops_per_sec = loads[i];
            p.forecast = forecasts[i].map(|u| ForecastInput {
                peak: u * 0.9,
                upper: u,
                quantile: 0.9,
                model: "spar".into(),
            });
            let holders: Vec<u64> =
                if p.own.is_empty() { vec![p.home.unwrap()] } else { p.own.clone() };
            for n in &holders {
                let s = self.shards.iter_mut().find(|s| s.number == *n).unwrap();
                s.ops_per_sec += loads[i] / holders.len() as f64;
            }
        }
        let cores = (0..self.cores)
            .map(|c| {
                let ops: f64 =
                    self.shards.iter().filter(|s| s.core == c).map(|s| s.ops_per_sec).sum();
                CoreState {
                    core: c,
                    alive: !self.dead.contains(&c),
                    ops_per_sec: ops,
                    remote_ops_per_sec: 0.0,
                    busy: (ops / CAPACITY).min(1.0),
                }
            })
            .collect();
        View {
            now_ms,
            tick_ms: TICK_MS,
            cores,
            shards: self.shards.clone(),
            partitions: self.partitions.clone(),
            host_idle_cpus: self.host_idle_cpus,
            migrating: false,
            lookup: Default::default(),
        }
    }

    /// Carries out a decision as the engine would.
    fn apply(&mut self, action: &Action) {
        match action.clone() {
            Action::CarveOut { partition, to_core, .. } => {
                let name = String::from_utf8(partition.clone()).unwrap();
                let n = self.new_shard(&name, to_core);
                let p = self.partition_mut(&partition);
                p.own = vec![n];
                p.home = None;
            }
            Action::Split { partition, shard, to_core } => {
                let name = String::from_utf8(partition.clone()).unwrap();
                let n = self.new_shard(&name, to_core);
                let p = self.partition_mut(&partition);
                let i = p.own.iter().position(|x| *x == shard).unwrap();
                p.own.insert(i + 1, n);
            }
            Action::Merge { partition, donor, .. } => {
                self.partition_mut(&partition).own.retain(|x| *x != donor);
                self.shards.retain(|s| s.number != donor);
            }
            Action::FoldBack { partition, shard } => {
                let p = self.partition_mut(&partition);
                p.own.clear();
                p.home = Some(0);
                self.shards.retain(|s| s.number != shard);
            }
            Action::Move { partition, shard, to_core } => {
                let name = String::from_utf8(partition.clone()).unwrap();
                let n = self.new_shard(&name, to_core);
                let p = self.partition_mut(&partition);
                for x in &mut p.own {
                    if *x == shard {
                        *x = n;
                    }
                }
                self.shards.retain(|s| s.number != shard);
            }
        }
    }

    fn shards_of(&self, p: &str) -> usize {
        self.partitions.iter().find(|x| x.partition == p.as_bytes()).unwrap().own.len()
    }
}

fn settings(policy: Policy) -> Settings {
    Settings {
        policy,
        core_capacity_ops: Some(CAPACITY),
        merge_delay_ms: 300_000,
        ..Settings::default()
    }
}

/// Runs `seconds` ticks; `load(t_s)` gives each partition's load, `forecast(t_s)` each one's
/// forecast upper. Returns the decisions with their time in seconds.
fn run(
    model: &mut Model,
    allocator: &mut Allocator,
    seconds: u64,
    load: impl Fn(u64) -> Vec<f64>,
    forecast: impl Fn(u64) -> Vec<Option<f64>>,
) -> Vec<(u64, Action)> {
    let mut done = Vec::new();
    for t in 0..seconds {
        let now = 1_000_000 + t * TICK_MS;
        let view = model.view(now, &load(t), &forecast(t));
        for d in allocator.choose(&view) {
            model.apply(&d.action);
            allocator.outcome(Outcome::Done { at_ms: now, bytes: 100_000, micros: 2_000 });
            done.push((t, d.action));
        }
    }
    done
}

/// The peak of `f` over the next `horizon_s` seconds: a perfect forecast, so these tests judge
/// the allocator's rules, not the forecaster.
fn peak_ahead(f: &impl Fn(u64) -> f64, t: u64, horizon_s: u64) -> f64 {
    (t..=t + horizon_s).map(f).fold(0.0, f64::max)
}

#[test]
fn predictive_splits_ahead_of_a_predictable_ramp() {
    let mut model = Model::new(2, &["hot"], &[1]);
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    // 300 ops/s for 10 minutes, then a ramp to 1,400 over 10 minutes.
    let load = |t: u64| if t < 600 { 300.0 } else { (300.0 + (t - 600) as f64 * 1.1).min(1400.0) };
    let done = run(
        &mut model,
        &mut a,
        1_200,
        |t| vec![load(t)],
        |t| vec![Some(peak_ahead(&load, t, 120))],
    );
    let (t, action) = done.first().expect("a split");
    assert!(matches!(action, Action::Split { to_core: 1, .. }), "{done:?}");
    let threshold = 0.75 * CAPACITY;
    assert!(load(*t) < threshold, "split at {t} s with load {} already over {threshold}", load(*t));
    assert!(load(t + 120) > threshold, "split at {t} s is not for the ramp");
    // The reactive policy splits only after the threshold was crossed and held.
    let mut model = Model::new(2, &["hot"], &[1]);
    let mut r = Allocator::new(2, settings(Policy::Reactive));
    let done = run(&mut model, &mut r, 1_200, |t| vec![load(t)], |_| vec![None]);
    let (tr, _) = done.first().expect("a reactive split");
    assert!(load(*tr - 10) > threshold, "reactive split at {tr} s before the load held");
    assert!(tr > t, "predictive ({t} s) before reactive ({tr} s)");
    // The explanation says why, with the forecast in it.
    let e =
        &a.log.recent(Some(b"hot"), usize::MAX).into_iter().find(|e| e.action == "split").unwrap();
    assert!(e.forecast_upper.unwrap() > e.split_at && e.observed < e.split_at, "{e:?}");
    assert!(e.reason.contains("split threshold"), "{}", e.reason);
}

#[test]
fn a_noisy_flat_load_causes_no_action() {
    for policy in [Policy::Predictive, Policy::Reactive] {
        let mut model = Model::new(2, &["flat", "other"], &[1, 0]);
        let mut a = Allocator::new(2, settings(policy));
        let noise = |t: u64| ((t.wrapping_mul(2_654_435_761) >> 7) % 1000) as f64 / 1000.0;
        let load = move |t: u64| vec![450.0 * (0.8 + 0.4 * noise(t)), 50.0];
        let fc = move |t: u64| vec![Some(450.0 * 1.2), Some(load(t)[1])];
        let done = run(&mut model, &mut a, 3_600, load, fc);
        assert!(done.is_empty(), "{policy:?}: {done:?}");
    }
}

#[test]
fn a_load_oscillating_near_the_threshold_does_not_thrash() {
    for policy in [Policy::Predictive, Policy::Reactive] {
        let mut model = Model::new(2, &["edge"], &[1]);
        let mut a = Allocator::new(2, settings(policy));
        // 700..800 around the 750 threshold, a two-minute period, for two hours.
        let load = |t: u64| 750.0 + 50.0 * ((t as f64) * std::f64::consts::TAU / 120.0).sin();
        let done = run(
            &mut model,
            &mut a,
            7_200,
            |t| vec![load(t)],
            |t| vec![Some(peak_ahead(&load, t, 60))],
        );
        let splits = done.iter().filter(|(_, a)| a.grows()).count();
        let merges = done.len() - splits;
        assert!(splits <= 1 && merges == 0, "{policy:?}: {done:?}");
    }
}

#[test]
fn no_split_where_there_is_no_idle_capacity() {
    // The machine's CPUs are busy (a client on the same cores): the split would gain nothing.
    let mut model = Model::new(2, &["hot"], &[1]);
    model.host_idle_cpus = Some(0.05);
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    let done = run(&mut model, &mut a, 600, |_| vec![900.0], |_| vec![Some(1000.0)]);
    assert!(done.is_empty(), "{done:?}");
    let e = a.log.recent(Some(b"hot"), 1).pop().expect("an explanation");
    assert!(e.rejected.contains("no idle core"), "{e:?}");
    // Every core planned full: no core has room for the new shard.
    let mut model = Model::new(2, &["hot", "busy"], &[1, 1]);
    model.apply(&Action::Move { partition: b"busy".to_vec(), shard: 3, to_core: 1 });
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    let done =
        run(&mut model, &mut a, 600, |_| vec![900.0, 740.0], |_| vec![Some(1000.0), Some(740.0)]);
    assert!(done.is_empty(), "{done:?}");
    let e = a.log.recent(Some(b"hot"), 1).pop().expect("an explanation");
    assert!(e.rejected.contains("no core has room"), "{e:?}");
}

#[test]
fn a_move_relieves_a_core_carrying_two_hot_partitions() {
    let mut model = Model::new(2, &["a", "b"], &[1, 1]);
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    let done =
        run(&mut model, &mut a, 900, |_| vec![450.0, 420.0], |_| vec![Some(460.0), Some(430.0)]);
    assert_eq!(done.len(), 1, "one move, and no move back: {done:?}");
    assert!(matches!(&done[0].1, Action::Move { to_core: 1, .. }), "{done:?}");
    // The layout was new to the allocator: it waited the merge delay before moving it.
    assert!(done[0].0 >= 300, "{done:?}");
    let cores: Vec<usize> =
        model.shards.iter().filter(|s| s.partition.is_some()).map(|s| s.core).collect();
    assert!(cores.contains(&0) && cores.contains(&1), "one hot shard on each core: {cores:?}");
}

#[test]
fn a_move_never_lands_on_a_core_holding_the_partitions_other_shard_nor_trades_back() {
    // Two cores near their targets: moving either hot shard would only move the excess.
    let mut model = Model::new(2, &["a", "b"], &[1, 1]);
    model.apply(&Action::Move { partition: b"b".to_vec(), shard: 3, to_core: 1 });
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    let load = |_| vec![800.0, 760.0];
    let done = run(&mut model, &mut a, 900, load, |_| vec![Some(800.0), Some(760.0)]);
    assert!(done.iter().all(|(_, x)| !matches!(x, Action::Move { .. })), "{done:?}");
    // Core 0 holds hot h and one of split s's shards, core 1 s's other shard: moving s's
    // shard to core 1 would balance the cores but undo s's split, so it is not done (and h
    // does not fit on core 1).
    let mut model = Model::new(2, &["s", "h"], &[1, 1]);
    model.apply(&Action::Split { partition: b"s".to_vec(), shard: 2, to_core: 1 });
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    let done =
        run(&mut model, &mut a, 900, |_| vec![600.0, 600.0], |_| vec![Some(600.0), Some(600.0)]);
    let cores: Vec<usize> = model
        .shards
        .iter()
        .filter(|s| s.partition.as_deref() == Some(b"s"))
        .map(|s| s.core)
        .collect();
    assert_eq!(cores.len(), 2, "{done:?}");
    assert_ne!(cores[0], cores[1], "{done:?}");
}

#[test]
fn merges_come_after_the_peak_only_once_the_merge_delay_has_passed() {
    for policy in [Policy::Predictive, Policy::Reactive] {
        let mut model = Model::new(2, &["wave"], &[1]);
        let mut a = Allocator::new(2, settings(policy));
        // 1,100 ops/s for 15 minutes, then 100.
        let load = |t: u64| if t < 900 { 1100.0 } else { 100.0 };
        let done = run(
            &mut model,
            &mut a,
            2_400,
            |t| vec![load(t)],
            |t| vec![Some(peak_ahead(&load, t, 60))],
        );
        let split = done.iter().find(|(_, a)| matches!(a, Action::Split { .. })).expect("a split");
        let merge = done.iter().find(|(_, a)| matches!(a, Action::Merge { .. })).expect("a merge");
        assert!(split.0 < 900, "{policy:?}: {done:?}");
        assert!(
            merge.0 >= 900 + 300,
            "{policy:?}: merged at {} s, before the 300 s delay after the peak",
            merge.0
        );
        assert!(merge.0 <= 900 + 400, "{policy:?}: merged late at {} s", merge.0);
        assert_eq!(model.shards_of("wave"), 1, "{policy:?}: {done:?}");
    }
}

#[test]
fn a_dead_core_is_never_a_target_and_static_never_acts() {
    let mut model = Model::new(2, &["hot"], &[1]);
    model.dead = vec![1];
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    let done = run(&mut model, &mut a, 300, |_| vec![900.0], |_| vec![Some(1000.0)]);
    assert!(done.is_empty(), "{done:?}");
    let mut model = Model::new(2, &["hot"], &[1]);
    let mut s = Allocator::new(2, settings(Policy::Static));
    let done = run(&mut model, &mut s, 300, |_| vec![1500.0], |_| vec![Some(1500.0)]);
    assert!(done.is_empty() && s.log.is_empty(), "{done:?}");
}

#[test]
fn the_migration_budget_and_one_change_at_a_time_hold() {
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut model = Model::new(8, &refs, &[0; 8]);
    let mut a = Allocator::new(
        8,
        Settings { migrations_per_minute_max: 2, ..settings(Policy::Predictive) },
    );
    let done = run(&mut model, &mut a, 180, |_| vec![1200.0; 8], |_| vec![Some(1300.0); 8]);
    assert!(!done.is_empty());
    for (t, _) in &done {
        let in_minute = done.iter().filter(|(u, _)| *u <= *t && *u + 60 > *t).count();
        assert!(in_minute <= 2, "{done:?}");
    }
    // A change still in flight (no outcome yet) blocks the next.
    let mut model = Model::new(2, &["hot"], &[1]);
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    let v = model.view(1_000_000, &[900.0], &[Some(1000.0)]);
    assert_eq!(a.choose(&v).len(), 1);
    let v = model.view(1_001_000, &[900.0], &[Some(1000.0)]);
    assert!(a.choose(&v).is_empty(), "one change at a time");
}

#[test]
fn a_spike_shorter_than_its_migration_causes_no_split_and_a_longer_one_does() {
    for (spike_s, splits) in [(5, false), (40, true)] {
        let mut model = Model::new(2, &["big"], &[1]);
        // 1.16 GB: 20 s to migrate at the prior 58 MB/s.
        model.shards.iter_mut().find(|s| s.partition.is_some()).unwrap().bytes = 1_160_000_000;
        let mut a = Allocator::new(2, settings(Policy::Predictive));
        // The forecast never sees it coming; the observed load jumps past the threshold.
        let load =
            move |t: u64| vec![if (100..100 + spike_s).contains(&t) { 1400.0 } else { 300.0 }];
        let done = run(&mut model, &mut a, 300, load, |_| vec![Some(350.0)]);
        assert_eq!(done.iter().any(|(_, a)| a.grows()), splits, "{spike_s} s spike: {done:?}");
        if splits {
            let (t, _) = done.iter().find(|(_, a)| a.grows()).unwrap();
            assert!(*t >= 120, "split at {t} s, before the spike outlasted the 20 s migration");
        }
    }
}

#[test]
fn near_threshold_notes_are_not_repeated_every_round() {
    let mut model = Model::new(2, &["near"], &[1]);
    let mut a = Allocator::new(2, settings(Policy::Predictive));
    // Demand wobbling just under the 750 threshold: the same reason with other figures.
    let load = |t: u64| vec![680.0 + (t % 7) as f64 * 5.0];
    let done = run(&mut model, &mut a, 600, load, move |t| vec![Some(load(t)[0])]);
    assert!(done.is_empty(), "{done:?}");
    let notes = a.log.recent(Some(b"near"), usize::MAX).len();
    assert!((9..=11).contains(&notes), "{notes} notes in 10 minutes");
}

#[test]
fn a_view_changed_after_a_lookup_still_finds_what_was_added() {
    use shardcast_predictor::allocator::PartitionState;
    let state = |name: &str| PartitionState {
        partition: name.as_bytes().to_vec(),
        ops_per_sec: 1.0,
        own: Vec::new(),
        home: Some(0),
        forecast: None,
    };
    let mut view = View { partitions: vec![state("a")], ..View::default() };
    assert!(view.partition(b"a").is_some());
    assert!(view.partition(b"b").is_none());
    view.partitions.push(state("b"));
    assert!(view.partition(b"b").is_some(), "a stale index must not hide a new partition");
    view.refresh_lookup();
    assert!(view.partition(b"b").is_some() && view.partition(b"a").is_some());
}

#[test]
fn a_shard_that_needs_moving_again_within_the_hour_is_split_instead() {
    // Core 0: a (450) and b (420), over the 750 target; core 1: c (100).
    let mut model = Model::new(2, &["a", "b", "c"], &[1, 1, 1]);
    let c_shard = model.partitions[2].own[0];
    model.apply(&Action::Move { partition: b"c".to_vec(), shard: c_shard, to_core: 1 });
    let mut alloc = Allocator::new(2, settings(Policy::Predictive));
    // Then c's load rises to 450 and core 1, holding the moved shard, is over it.
    let load = |t: u64| vec![450.0, 420.0, if t < 900 { 100.0 } else { 450.0 }];
    let forecast = move |t: u64| load(t).into_iter().map(Some).collect();
    let done = run(&mut model, &mut alloc, 1_800, load, forecast);
    let moves: Vec<&(u64, Action)> =
        done.iter().filter(|(_, a)| matches!(a, Action::Move { .. })).collect();
    assert_eq!(moves.len(), 1, "{done:?}");
    let moved = moves[0].1.partition().to_vec();
    let second = done.iter().find(|(t, _)| *t >= 900).unwrap_or_else(|| panic!("{done:?}"));
    assert!(
        matches!(&second.1, Action::Split { partition, to_core: 0, .. } if *partition == moved),
        "the moved shard is split back toward core 0, not moved again: {done:?}"
    );
    let e = alloc.log.recent(None, usize::MAX).into_iter().find(|e| e.action == "split").unwrap();
    assert!(e.reason.contains("after the split"), "{}", e.reason);
}
