//! The command line of `shardcast-sim`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_BAD_INPUT: i32 = 2;

#[derive(Parser, Debug)]
#[command(name = "shardcast-sim", version, about = "Shardcast's simulator and evaluation tools")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Walk every forecasting model forward over a trace (the trace format, or two columns:
    /// timestamp, count) and print one row per model.
    Forecast {
        #[arg(long)]
        trace: PathBuf,
        /// Seconds ahead whose peak is forecast.
        #[arg(long, default_value_t = 300.0)]
        horizon_s: f64,
        /// Seconds in a day (compressed days in demos and tests).
        #[arg(long, default_value_t = 86_400.0)]
        day_s: f64,
        /// Seconds per step of the series (default: the trace's smallest gap between rows).
        #[arg(long)]
        step_s: Option<f64>,
        /// Seconds between forecast origins (default: the horizon).
        #[arg(long)]
        every_s: Option<f64>,
        /// Level of the upper quantile.
        #[arg(long, default_value_t = 0.9)]
        quantile: f64,
    },
    /// Judge the allocation policies (static for the mean, static for the peak, reactive,
    /// predictive, and the oracle) on a simulated machine, with the server's own allocator
    /// and forecaster; a synthetic workload, or a trace replayed (--trace).
    Policy(Box<PolicyArgs>),
}

#[derive(clap::Args, Debug)]
struct PolicyArgs {
    /// Cores of the simulated machine (1 to 1,024).
    #[arg(long, default_value_t = 64)]
    cores: usize,
    /// Partitions of the synthetic workload (1 to 10,000).
    #[arg(long, default_value_t = 1_000)]
    partitions: usize,
    /// Days scored (after the warm-up day).
    #[arg(long, default_value_t = 7.0)]
    days: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replay this trace (the trace format, e.g. a server's GET /history.csv) instead of a
    /// synthetic workload.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Write CSV files and SVG plots here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the synthetic workload here in the trace format (to replay it, or to read it).
    #[arg(long)]
    trace_out: Option<PathBuf>,
    /// Seconds per simulated step.
    #[arg(long, default_value_t = 60.0)]
    step_s: f64,
    /// Mean load of the synthetic workload as a share of the machine's capacity.
    #[arg(long, default_value_t = 0.35)]
    load: f64,
    /// Zipf exponent of the partitions' shares of the load (at 1.0 the busiest of 1,000
    /// partitions carries 13% of all load, more at its peak than 16 shards can serve).
    #[arg(long, default_value_t = 0.8)]
    zipf: f64,
    /// Flash crowds per partition per day.
    #[arg(long, default_value_t = 0.01)]
    flash_per_day: f64,
    /// Data held per core, MB (the synthetic dataset is this times the cores).
    #[arg(long, default_value_t = 256.0)]
    dataset_mb_per_core: f64,
    /// Multiply a replayed trace's rates by this (what if the load were bigger?).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// A core's capacity in unsplit ops/s.
    #[arg(long)]
    core_capacity_ops: Option<f64>,
    /// The latency objective, µs of p99.
    #[arg(long, default_value_t = 1_000.0)]
    slo_us: f64,
    /// Days every policy runs before figures are kept (the forecaster learns a day first).
    #[arg(long)]
    warmup_days: Option<f64>,
    /// Seconds between the forecaster's refits. The server refits every 600 s; the
    /// simulator every 6 h by default, since fitting is most of its time and a model with a
    /// daily season changes little in 6 h (docs/simulation.md).
    #[arg(long, default_value_t = 21_600.0)]
    fit_interval_s: f64,
    /// The forecast horizon, seconds (the server's default: 300).
    #[arg(long, default_value_t = 300.0)]
    horizon_s: f64,
    /// Share of a migration's source and target capacity it takes while it runs (the
    /// foreground cost; 0.35 by default, docs/simulation.md).
    #[arg(long)]
    migration_share: Option<f64>,
    /// A migration's throughput, MB/s (58 by default). With --migration-share, a throttled
    /// migration: slower, and cheaper for the foreground.
    #[arg(long)]
    migration_mb_per_s: Option<f64>,
    /// The allocator's target utilization (the server's `target-utilization`, 0.75).
    #[arg(long)]
    target_utilization: Option<f64>,
    /// Share of capacity over which the allocator relieves a core (the server's default:
    /// 0.75, the target).
    #[arg(long)]
    relieve_utilization: Option<f64>,
    /// How far ahead the oracle sees the true peak, seconds.
    #[arg(long, default_value_t = 7_200.0)]
    oracle_lookahead_s: f64,
    /// Seconds in a day (compressed days for short traces).
    #[arg(long, default_value_t = 86_400.0)]
    day_s: f64,
    /// Policies to run, comma-separated (default: all five).
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
}

fn ms(what: &str, s: f64) -> Result<u64, String> {
    if s.is_finite() && s > 0.0 && s < 1e9 {
        Ok(((s * 1000.0).round() as u64).max(1))
    } else {
        Err(format!("{what}: must be a positive number of seconds, got {s}"))
    }
}

pub fn main() -> i32 {
    let args = Args::parse();
    match run(args) {
        Ok(out) => {
            print!("{out}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("shardcast-sim: {e}");
            EXIT_BAD_INPUT
        }
    }
}

fn run(args: Args) -> Result<String, String> {
    match args.command {
        Command::Forecast { trace, horizon_s, day_s, step_s, every_s, quantile } => {
            if !(0.0..1.0).contains(&quantile) {
                return Err(format!("--quantile: must be in [0, 1), got {quantile}"));
            }
            let text = std::fs::read_to_string(&trace)
                .map_err(|e| format!("cannot read {}: {e}", trace.display()))?;
            let rows = shardcast_predictor::trace::parse_trace(&text)
                .map_err(|e| format!("{}: {e}", trace.display()))?;
            let cfg = crate::forecast::ForecastRun {
                horizon_ms: ms("--horizon-s", horizon_s)?,
                day_ms: ms("--day-s", day_s)?,
                step_ms: step_s.map(|s| ms("--step-s", s)).transpose()?,
                every_ms: every_s.map(|s| ms("--every-s", s)).transpose()?,
                quantile,
            };
            let report = crate::forecast::run(&rows, &cfg)?;
            Ok(crate::forecast::table(&report))
        }
        Command::Policy(a) => policy(*a),
    }
}

fn policy(a: PolicyArgs) -> Result<String, String> {
    use crate::policy::{workload, PolicyKind, SimConfig};
    let step_ms = ms("--step-s", a.step_s)?;
    let mut cfg = SimConfig::new(a.cores);
    if let Some(c) = a.core_capacity_ops {
        if !(c.is_finite() && c > 0.0) {
            return Err(format!("--core-capacity-ops: must be positive, got {c}"));
        }
        cfg.machine.capacity_ops = c;
    }
    if let Some(u) = a.target_utilization {
        if !(u > 0.0 && u <= 1.0) {
            return Err(format!("--target-utilization: must be in (0, 1], got {u}"));
        }
        cfg.settings.target_utilization = u;
        cfg.settings.relieve_utilization = u;
    }
    if let Some(u) = a.relieve_utilization {
        if !(u > 0.0 && u <= 2.0) {
            return Err(format!("--relieve-utilization: must be in (0, 2], got {u}"));
        }
        cfg.settings.relieve_utilization = u;
    }
    if let Some(r) = a.migration_mb_per_s {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!("--migration-mb-per-s: must be positive, got {r}"));
        }
        cfg.machine.migration_bytes_per_sec = r * 1e6;
    }
    if let Some(m) = a.migration_share {
        if !(0.0..1.0).contains(&m) {
            return Err(format!("--migration-share: must be in [0, 1), got {m}"));
        }
        cfg.machine.migration_share = m;
    }
    if !(a.slo_us.is_finite() && a.slo_us > 0.0) {
        return Err(format!("--slo-us: must be positive, got {}", a.slo_us));
    }
    cfg.slo_us = a.slo_us;
    cfg.fit_interval_ms = ms("--fit-interval-s", a.fit_interval_s)?;
    cfg.horizon_ms = ms("--horizon-s", a.horizon_s)?;
    cfg.oracle_lookahead_ms = ms("--oracle-lookahead-s", a.oracle_lookahead_s)?;
    cfg.day_ms = ms("--day-s", a.day_s)?;
    if !a.policies.is_empty() {
        cfg.policies = a
            .policies
            .iter()
            .map(|p| {
                PolicyKind::parse(p).ok_or_else(|| {
                    format!("--policies: unknown policy {p:?} (static-mean, static-peak, reactive, predictive, oracle)")
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if !(a.days.is_finite() && a.days > 0.0) {
        return Err(format!("--days: must be positive, got {}", a.days));
    }
    let started = std::time::Instant::now();
    let workload = match &a.trace {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let rows = shardcast_predictor::trace::parse_trace(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if !(a.scale.is_finite() && a.scale > 0.0) {
                return Err(format!("--scale: must be positive, got {}", a.scale));
            }
            let step = a.step_s.ne(&60.0).then_some(step_ms);
            workload::Workload::replay(&rows, step, a.scale)?
        }
        None => {
            if !(a.load.is_finite() && a.load > 0.0 && a.load <= 10.0) {
                return Err(format!("--load: a share of capacity in (0, 10], got {}", a.load));
            }
            let warm = a.warmup_days.unwrap_or(1.0);
            workload::Workload::synthetic(&workload::SyntheticSpec {
                partitions: a.partitions,
                days: a.days + warm,
                step_ms,
                seed: a.seed,
                mean_ops: a.load * a.cores as f64 * cfg.machine.capacity_ops,
                zipf: a.zipf,
                dataset_bytes: (a.dataset_mb_per_core * 1e6 * a.cores as f64) as u64,
                flash_per_day: a.flash_per_day,
            })?
        }
    };
    let warm_days = a.warmup_days.unwrap_or(if a.trace.is_some() { 0.0 } else { 1.0 });
    if !(warm_days.is_finite() && warm_days >= 0.0) {
        return Err(format!("--warmup-days: must be 0 or more, got {warm_days}"));
    }
    cfg.warmup_steps = (warm_days * 86_400_000.0 / workload.step_ms as f64).round() as usize;
    if let Some(path) = &a.trace_out {
        let text = shardcast_predictor::trace::write_trace(&workload.to_rows());
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let mut workload = workload;
    workload.materialize();
    let reports = crate::policy::run(&cfg, &workload)?;
    if let Some(dir) = &a.out {
        crate::policy::output::write(dir, &reports, &workload)?;
    }
    let scored = workload.steps - cfg.warmup_steps;
    Ok(format!(
        "# {} cores, {} partitions, {} steps of {} s scored ({:.1} days, after {} warm-up steps), SLO p99 {} µs, {:.1} s\n{}{}",
        cfg.cores,
        workload.partitions.len(),
        scored,
        workload.step_ms / 1000,
        scored as f64 * workload.step_ms as f64 / 86_400_000.0,
        cfg.warmup_steps,
        cfg.slo_us,
        started.elapsed().as_secs_f64(),
        crate::policy::report::table(&reports),
        crate::policy::report::verdict(&reports)
    ))
}
