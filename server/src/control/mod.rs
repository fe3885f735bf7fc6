//! The control thread: receives every core's `CoreTick`, puts the ticks of each interval
//! together (`view`), judges health (the predictor's `HealthMonitor`), appends each
//! partition's row to the load history (the predictor's `LoadHistory`), persists that
//! history (`persist`), forecasts (`forecast`), runs the allocator on each round
//! (`allocation`), and publishes the result for INFO, SHARDCAST and HTTP to read.
//!
//! The allocator's decisions are carried out by the shard manager, a low-priority task on the
//! coordinator core (`manage_shards`): it takes one decision at a time from here, runs it
//! through the engine, reports the outcome back, and publishes the shard map the allocator
//! plans from.
//!
//! It is a plain thread, not a data core: nothing on the data path waits for it. Cores never
//! block on it either: their ticks go through a bounded queue (`TickSink`); when it is full a
//! core keeps counting and its next tick covers both intervals (counted as deferred). Readers take the published `ControlView` (an `Arc` swapped under a
//! mutex once per tick) and lock the history only to copy rows out.
//!
//! Invariant: a round (one interval) is closed when every core's tick for it arrived or
//! `ROUND_GRACE_MS` after its end; a tick arriving later is counted in the next round, never
//! lost or counted twice.

pub mod allocation;
pub mod forecast;
pub mod persist;
pub mod view;

use shardcast_engine::placement::shard_map::ShardMap;
use shardcast_engine::runtime::journal::ChangedBy;
use shardcast_engine::telemetry::{CoreTick, TickReceiver, TickSink};
use shardcast_engine::Core;
use shardcast_predictor::allocator::{Action, Allocator, ExplainLog, Outcome};
use shardcast_predictor::health::{
    CoreFigures, HealthChange, HealthMonitor, HealthThresholds, ShardFigures, Subject,
};
use shardcast_predictor::history::{HistoryLimits, LoadHistory};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
pub use view::{ControlView, CoreView, ShardView};

/// How long after an interval's end its round waits for late cores.
pub const ROUND_GRACE_MS_MAX: u64 = 250;
/// The explanation log's file in the data directory (docs/format.md).
pub const EXPLAIN_FILE: &str = "explain.log";
/// How often the shard manager looks for a decision and republishes the map.
pub const MANAGER_POLL_MS: u64 = 20;

/// Settings of the control thread.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub cores: usize,
    pub tick_ms: u64,
    pub separator: u8,
    pub data_dir: PathBuf,
    pub history: HistoryLimits,
    /// How often the history is written to the data directory (and at shutdown).
    pub history_save_interval_ms: u64,
    pub health: HealthThresholds,
    pub predict: crate::config::PredictSettings,
    pub allocator: shardcast_predictor::allocator::Settings,
}

/// What the control thread publishes; shared by every core.
pub struct Control {
    pub config: ControlConfig,
    view: Mutex<Arc<ControlView>>,
    history: Mutex<LoadHistory>,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    sink: TickSink,
    forecasts: Mutex<Arc<forecast::Forecasts>>,
    /// The forecasts as published over time (for the dashboard).
    trail: Mutex<forecast::ForecastTrail>,
    allocator: Mutex<Allocator>,
    /// The shard map as the shard manager last published it (`None` until it runs).
    layout: Mutex<Option<Arc<ShardMap>>>,
    /// The decision waiting for the shard manager, and outcomes waiting for the allocator.
    next_change: Mutex<Option<Action>>,
    outcomes: Mutex<Vec<Outcome>>,
}

impl Control {
    /// Loads the history and starts the thread; the engine's cores send to `sink`.
    pub fn start(config: ControlConfig, sink: TickSink, rx: TickReceiver) -> Arc<Control> {
        let history = persist::load(&config.data_dir, config.history);
        let mut allocator = Allocator::new(config.cores, config.allocator.clone());
        allocator.log = load_explanations(&config.data_dir);
        let control = Arc::new(Control {
            config,
            view: Mutex::new(Arc::new(ControlView::default())),
            history: Mutex::new(history),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            sink,
            forecasts: Mutex::new(Arc::new(forecast::Forecasts::default())),
            trail: Mutex::new(forecast::ForecastTrail::default()),
            allocator: Mutex::new(allocator),
            layout: Mutex::new(None),
            next_change: Mutex::new(None),
            outcomes: Mutex::new(Vec::new()),
        });
        let c = control.clone();
        let handle = std::thread::Builder::new()
            .name("shardcast-control".into())
            .spawn(move || c.run(rx))
            .expect("spawn the control thread");
        *control.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        control
    }

    /// The last round's views.
    pub fn view(&self) -> Arc<ControlView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last forecasts of every partition.
    pub fn forecasts(&self) -> Arc<forecast::Forecasts> {
        self.forecasts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on the forecast trail (briefly: the control thread waits meanwhile).
    pub fn with_trail<T>(&self, f: impl FnOnce(&forecast::ForecastTrail) -> T) -> T {
        f(&self.trail.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The shard map as the shard manager last published it (`None` before it ran).
    pub fn layout(&self) -> Option<Arc<ShardMap>> {
        self.layout.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on the load history (briefly: the control thread waits meanwhile).
    pub fn with_history<T>(&self, f: impl FnOnce(&LoadHistory) -> T) -> T {
        f(&self.history.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the allocator (briefly: the control thread waits meanwhile).
    pub fn with_allocator<T>(&self, f: impl FnOnce(&mut Allocator) -> T) -> T {
        f(&mut self.allocator.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops the thread and writes the history one last time.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }

    fn run(&self, rx: TickReceiver) {
        let tick_ms = self.config.tick_ms.max(1);
        let grace_ms = (tick_ms / 2).min(ROUND_GRACE_MS_MAX);
        let mut monitor = HealthMonitor::new(self.config.health.clone());
        let mut totals = HashMap::new();
        let mut missed = vec![0u32; self.config.cores];
        let mut pending: BTreeMap<u64, Vec<CoreTick>> = BTreeMap::new();
        let mut next_round = now_ms() / tick_ms + 1;
        let mut rounds = 0u64;
        let mut late = 0u64;
        let mut saved_at = now_ms();
        let mut predictor =
            forecast::Predictor::new(self.config.predict, &self.config.data_dir, now_ms());
        let mut host_idle = allocation::HostIdle::default();
        while !self.stop.load(Ordering::SeqCst) {
            // Every tick already queued is filed before any round is judged complete or late:
            // after a long forecast the queue holds several rounds' ticks, and closing a round
            // with its ticks still queued would count their cores as silent.
            let mut wait = Duration::from_millis(10);
            let disconnected = loop {
                match rx.recv_timeout(wait) {
                    Ok(t) => {
                        let round = if t.seq < next_round {
                            late += 1;
                            next_round
                        } else {
                            t.seq
                        };
                        pending.entry(round).or_default().push(t);
                        wait = Duration::ZERO;
                    }
                    Err(RecvTimeoutError::Timeout) => break false,
                    Err(RecvTimeoutError::Disconnected) => break true,
                }
            };
            if disconnected {
                break;
            }
            let now = now_ms();
            loop {
                let complete = pending
                    .get(&next_round)
                    .is_some_and(|v| (0..self.config.cores).all(|c| v.iter().any(|t| t.core == c)));
                if !complete && now < next_round * tick_ms + grace_ms {
                    break;
                }
                let ticks = pending.remove(&next_round).unwrap_or_default();
                let mut view = view::build_round(
                    &ticks,
                    self.config.cores,
                    next_round * tick_ms,
                    tick_ms,
                    self.config.separator,
                    &mut totals,
                    &mut missed,
                );
                rounds += 1;
                self.judge(&mut monitor, &mut view);
                view.rounds = rounds;
                view.ticks_late = late;
                view.ticks_deferred = self.sink.deferred();
                {
                    let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
                    for row in &view.partitions {
                        history.record(row.clone());
                    }
                }
                let view = Arc::new(view);
                *self.view.lock().unwrap_or_else(|e| e.into_inner()) = view.clone();
                self.allocate(&view, host_idle.sample());
                next_round += 1;
            }
            if let Some(f) = predictor.maybe_run(now, &self.history) {
                self.trail.lock().unwrap_or_else(|e| e.into_inner()).record(&f);
                *self.forecasts.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(f);
            }
            if now.saturating_sub(saved_at) >= self.config.history_save_interval_ms {
                self.save();
                saved_at = now;
            }
        }
        self.save();
        predictor.save();
    }

    fn judge(&self, monitor: &mut HealthMonitor, view: &mut ControlView) {
        // A core whose tick is missing keeps its shards in the view, as last seen and with
        // nothing served this round, so they are judged with it (failed with a stuck core).
        let previous = self.view();
        for s in &previous.shards {
            let silent = view.cores.get(s.core).is_some_and(|c| c.ticks_missed > 0);
            if silent && view.shard(s.number).is_none() {
                let mut kept = s.clone();
                (kept.ops, kept.ops_per_sec, kept.service_ns) = (0, 0.0, [0; 3]);
                view.shards.push(kept);
            }
        }
        let cores: Vec<CoreFigures> = view
            .cores
            .iter()
            .map(|c| CoreFigures {
                core: c.core,
                ticks_missed: c.ticks_missed,
                busy_ratio: c.busy_ratio,
                queue_depth_max: c.queue_depth_max,
                ops: c.ops,
                service_p99_ns: c.service_ns[1],
            })
            .collect();
        let shards: Vec<ShardFigures> = view
            .shards
            .iter()
            .map(|s| ShardFigures {
                shard: s.number,
                core: s.core,
                failure: s.failure.clone(),
                ops: s.ops,
                service_p99_ns: s.service_ns[1],
            })
            .collect();
        for change in monitor.observe(&cores, &shards) {
            log_change(view, &change);
        }
        view::apply_health(view, |c| monitor.core(c), |s| monitor.shard(s));
    }

    /// One round of the allocator: outcomes in, then at most one decision for the shard
    /// manager (none while one waits or runs, or before the manager published the map).
    fn allocate(&self, round: &ControlView, host_idle_cpus: Option<f64>) {
        let Some(map) = self.layout.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        let outcomes =
            std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(|e| e.into_inner()));
        let forecasts = self.forecasts();
        let view =
            allocation::build_view(&map, round, &forecasts, self.config.cores, host_idle_cpus);
        let decisions = self.with_allocator(|a| {
            for o in outcomes {
                a.outcome(o);
            }
            a.choose(&view)
        });
        if let Some(d) = decisions.into_iter().next() {
            tracing::info!(change = %d.action, reason = %d.explanation.reason, "allocator decided");
            *self.next_change.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.action);
        }
    }

    fn save(&self) {
        let bytes = self.with_history(|h| h.encode());
        if let Err(e) = persist::save(&self.config.data_dir, &bytes) {
            tracing::error!(error = %e, "could not write the load history");
        }
        let bytes = self.with_allocator(|a| a.log.encode());
        if let Err(e) = persist::save_as(&self.config.data_dir, EXPLAIN_FILE, &bytes) {
            tracing::error!(error = %e, "could not write the explanation log");
        }
    }
}

/// The explanation log of `dir`, or an empty one (a damaged file is set aside).
fn load_explanations(dir: &std::path::Path) -> ExplainLog {
    let file = dir.join(EXPLAIN_FILE);
    match std::fs::read(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ExplainLog::default(),
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot read the explanation log");
            ExplainLog::default()
        }
        Ok(bytes) => ExplainLog::decode(&bytes).unwrap_or_else(|e| {
            let aside = persist::set_aside(dir, EXPLAIN_FILE);
            tracing::error!(file = %file.display(), error = %e, set_aside = %aside.display(),
                "the explanation log could not be read: set aside");
            ExplainLog::default()
        }),
    }
}

/// The shard manager, on the coordinator core at low priority: publishes the shard map for
/// the allocator and carries out its decisions one at a time, reporting each outcome. The
/// data path never waits for it (it is a task in its own queue, and a migration's steps are
/// the engine's).
pub async fn manage_shards(core: Rc<Core>, control: Arc<Control>) {
    let publish = |m: &Mutex<Option<Arc<ShardMap>>>| {
        *m.lock().unwrap_or_else(|e| e.into_inner()) = Some(core.shard_map());
    };
    while !core.stop_requested() {
        publish(&control.layout);
        let next = control.next_change.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(action) = next else {
            glommio::timer::sleep(Duration::from_millis(MANAGER_POLL_MS)).await;
            continue;
        };
        let change = allocation::layout_change(&action);
        let outcome = match core.change_layout(change, ChangedBy::Policy).await {
            Ok(r) => {
                tracing::info!(change = %action, keys = r.keys, bytes = r.bytes,
                    ms = r.micros / 1000, "allocator's change done");
                Outcome::Done { at_ms: now_ms(), bytes: r.bytes, micros: r.micros }
            }
            Err(e) => {
                tracing::warn!(change = %action, error = %e, "allocator's change not carried out");
                Outcome::Failed { at_ms: now_ms(), error: e.to_string() }
            }
        };
        publish(&control.layout);
        let mut outcomes = control.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        outcomes.push(outcome);
        // One decision at a time, so at most a few outcomes ever wait; bound it anyway.
        let excess = outcomes.len().saturating_sub(OUTCOMES_QUEUED_MAX);
        outcomes.drain(..excess);
    }
}

/// Outcomes kept for the allocator's next round.
pub const OUTCOMES_QUEUED_MAX: usize = 16;

fn log_change(view: &ControlView, c: &HealthChange) {
    let what = match c.subject {
        Subject::Core(n) => format!("core {n}"),
        Subject::Shard(n) => match view.shard(n) {
            Some(s) => format!("shard {n} ({}, core {})", s.partition_label(), s.core),
            None => format!("shard {n}"),
        },
    };
    if c.to > c.from {
        tracing::warn!(from = %c.from, to = %c.to, reason = %c.reason, "{what} is {}", c.to);
    } else {
        tracing::info!(from = %c.from, to = %c.to, "{what} is {} again", c.to);
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
