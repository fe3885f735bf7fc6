//! `shardcast-sim policy`: the allocation policies judged on a simulated machine of up to
//! 1,024 cores and 10,000 partitions, over days of load, in seconds and reproducibly (a seed
//! gives the same output). The decisions are made by the very code the server runs (the
//! predictor's `Forecaster` and `Allocator`) and carried out through the engine's own layout
//! functions (`layout::check`, `layout::plan` on a `ShardMap`); only the machine is
//! simulated. `docs/simulation.md` is the reference, with the calibration.
//!
//! - `workload`: the load (synthetic from the load generator's profiles, or a trace replayed).
//! - `machine`: the simulated cores, shards, migrations and queues.
//! - `control`: one policy's loop over the machine.
//! - `report`: the figures per policy; `output`: CSV files and SVG plots.

pub mod control;
pub mod machine;
pub mod output;
pub mod report;
pub mod workload;

use machine::MachineModel;
use report::PolicyReport;
use shardcast_predictor::allocator::Settings;
use workload::Workload;

/// Cores a simulated machine may have.
pub const CORES_MAX: usize = 1_024;

/// The policies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Shards fixed at the start, sized for each partition's mean load.
    StaticMean,
    /// Shards fixed at the start, sized for each partition's peak load.
    StaticPeak,
    Reactive,
    Predictive,
    /// The predictive allocator told the true peak of the horizon: a bound, not a competitor.
    Oracle,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::StaticMean,
        PolicyKind::StaticPeak,
        PolicyKind::Reactive,
        PolicyKind::Predictive,
        PolicyKind::Oracle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::StaticMean => "static-mean",
            PolicyKind::StaticPeak => "static-peak",
            PolicyKind::Reactive => "reactive",
            PolicyKind::Predictive => "predictive",
            PolicyKind::Oracle => "oracle",
        }
    }

    pub fn parse(s: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A simulation's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub cores: usize,
    pub machine: MachineModel,
    /// The allocator's settings (the server's defaults unless changed).
    pub settings: Settings,
    /// Length of a day for the forecaster's seasons.
    pub day_ms: u64,
    /// The forecast horizon (the server's `forecast-horizon-s`).
    pub horizon_ms: u64,
    /// How far ahead the oracle sees the true peak (longer than the horizon: it knows how
    /// long its migrations will take).
    pub oracle_lookahead_ms: u64,
    /// How often the forecaster refits (the server's `predict-fit-interval-s`).
    pub fit_interval_ms: u64,
    /// The latency objective: a step whose p99 exceeds it is a violation.
    pub slo_us: f64,
    /// Steps run by every policy before any figure is kept (the forecaster's first day).
    pub warmup_steps: usize,
    pub policies: Vec<PolicyKind>,
}

impl SimConfig {
    /// The server's defaults on `cores` cores.
    pub fn new(cores: usize) -> SimConfig {
        SimConfig {
            cores,
            machine: MachineModel::default(),
            settings: Settings::default(),
            day_ms: 86_400_000,
            horizon_ms: 300_000,
            oracle_lookahead_ms: 7_200_000,
            fit_interval_ms: 600_000,
            slo_us: 1_000.0,
            warmup_steps: 0,
            policies: PolicyKind::ALL.to_vec(),
        }
    }
}

/// Runs every policy of `cfg` over `workload`, on as many threads as there are CPUs (each
/// policy is independent and deterministic, so the figures do not depend on the threads).
pub fn run(cfg: &SimConfig, workload: &Workload) -> Result<Vec<PolicyReport>, String> {
    if cfg.cores == 0 || cfg.cores > CORES_MAX {
        return Err(format!("--cores: 1 to {CORES_MAX} (CORES_MAX), got {}", cfg.cores));
    }
    if cfg.warmup_steps >= workload.steps {
        return Err(format!(
            "the warm-up ({} steps) leaves nothing of the {} steps to score",
            cfg.warmup_steps, workload.steps
        ));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, PolicyReport)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(cfg.policies.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        // The adaptive policies (listed last) take longest: start them first.
                        let taken = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(i) = cfg.policies.len().checked_sub(taken + 1) else { break };
                        let kind = cfg.policies[i];
                        mine.push((i, control::run_policy(kind, cfg, workload)));
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a policy's run panicked")).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}
