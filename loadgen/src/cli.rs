//! The command line: flags to a `RunConfig`, the run, the table, and the exit code.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::runner::{self, LoopMode, RunConfig, RunError};
use crate::workload::{preset_toml, Workload, PRESETS};

/// Exit codes.
pub const EXIT_OK: i32 = 0;
/// Verification found wrong, missing or stale reads.
pub const EXIT_VERIFY_FAILED: i32 = 1;
/// A flag or the workload is invalid.
pub const EXIT_BAD_INPUT: i32 = 2;
/// The server could not be reached, or the run failed.
pub const EXIT_RUN_FAILED: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "shardcast-loadgen",
    version,
    about = "Drives a RESP server (Shardcast or Redis) with production-like workloads and reports latency corrected for coordinated omission.",
    after_help = "Presets: ycsb-a .. ycsb-f, diurnal-3apps, flash-crowd, mixgraph (see --list-presets).\nExit codes: 0 ok, 1 verification failures, 2 invalid input, 3 server unreachable or run failed."
)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// A preset name or a workload TOML file.
    #[arg(long, default_value = "ycsb-a")]
    pub workload: String,
    /// Seconds to run (default: the workload's duration_s, else 10).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Total target rate, ops/s: scales every application's rate profile (implies open loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Connections in all (split evenly over applications without their own `connections`).
    #[arg(long, default_value_t = 50)]
    pub connections: u32,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: u32,
    /// Directory for summary.json, intervals.csv, latency.hlog, shards.csv and plot.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write what was sent, one row per partition per interval, in the trace format
    /// (docs/trace-format.md) to this file.
    #[arg(long)]
    pub trace_out: Option<PathBuf>,
    /// Client threads (connections are dealt over them).
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Check every read of a sample of keys against what was written; exit 1 on any failure.
    #[arg(long)]
    pub verify: bool,
    /// Sampled keys per application in --verify mode.
    #[arg(long, default_value_t = crate::verify::VERIFY_KEYS_DEFAULT)]
    pub verify_keys: u64,
    /// Follow the rate profiles (latency measured from each request's intended start).
    #[arg(long, conflicts_with = "closed_loop")]
    pub open_loop: bool,
    /// Keep every connection's pipeline full, ignoring rate profiles.
    #[arg(long)]
    pub closed_loop: bool,
    /// Workload seconds per real second (e.g. 1440: a day lasts a minute).
    #[arg(long)]
    pub time_compression: Option<f64>,
    /// Seconds per statistics interval.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    #[arg(long)]
    pub password: Option<String>,
    /// Attempts to reach the server before giving up (exponential backoff from 100 ms).
    #[arg(long, default_value_t = 5)]
    pub connect_attempts: u32,
    /// Seconds to wait for replies in flight after the duration.
    #[arg(long, default_value_t = 5.0)]
    pub drain_timeout: f64,
    /// Before the run, SET every key once (not measured), so reads find values.
    #[arg(long)]
    pub preload: bool,
    /// Do not ask the server for SHARDCAST SHARDS.
    #[arg(long)]
    pub no_shards: bool,
    /// List the presets and exit.
    #[arg(long)]
    pub list_presets: bool,
    /// Print the workload (a preset's TOML) and exit.
    #[arg(long)]
    pub print_workload: bool,
}

fn secs(flag: &str, v: f64) -> Result<Duration, RunError> {
    Duration::try_from_secs_f64(v).ok().filter(|d| !d.is_zero()).ok_or_else(|| RunError::Config {
        field: flag.into(),
        message: format!("must be a positive number of seconds, got {v}"),
    })
}

/// Builds the run from flags.
pub fn config(a: &Args) -> Result<RunConfig, String> {
    let workload = Workload::load(&a.workload).map_err(|e| format!("invalid workload: {e}"))?;
    let mut c = RunConfig::new(&a.host, a.port, workload);
    let e = |e: RunError| e.to_string();
    c.duration = a.duration.map(|d| secs("--duration", d)).transpose().map_err(e)?;
    c.rate = a.rate;
    c.connections = a.connections;
    c.pipeline = a.pipeline;
    c.threads = a.threads;
    c.mode = if a.open_loop {
        LoopMode::Open
    } else if a.closed_loop {
        LoopMode::Closed
    } else {
        LoopMode::Auto
    };
    c.seed = a.seed;
    c.verify = a.verify;
    c.verify_keys = a.verify_keys;
    c.time_compression = a.time_compression;
    c.out_dir = a.out.clone();
    c.trace_out = a.trace_out.clone();
    c.interval = secs("--interval", a.interval).map_err(e)?;
    c.progress = !a.quiet;
    c.password = a.password.clone();
    c.retry.attempts = a.connect_attempts.max(1);
    c.drain_timeout = secs("--drain-timeout", a.drain_timeout).map_err(e)?;
    c.track_shards = !a.no_shards;
    c.preload = a.preload;
    Ok(c)
}

/// Runs the command line; returns the exit code.
pub fn main_with(args: Args) -> i32 {
    if args.list_presets {
        for (name, about, _) in PRESETS {
            println!("{name:<14} {about}");
        }
        return EXIT_OK;
    }
    if args.print_workload {
        match preset_toml(&args.workload) {
            Some(t) => print!("{}", t.trim_start()),
            None => match std::fs::read_to_string(&args.workload) {
                Ok(t) => print!("{t}"),
                Err(e) => {
                    eprintln!("shardcast-loadgen: cannot read {}: {e}", args.workload);
                    return EXIT_BAD_INPUT;
                }
            },
        }
        return EXIT_OK;
    }
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast-loadgen: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    match runner::run(&cfg) {
        Ok(report) => {
            print!("{}", report.table());
            if let Some(d) = &cfg.out_dir {
                println!(
                    "outputs in {}: summary.json intervals.csv latency.hlog shards.csv plot.svg",
                    d.display()
                );
            }
            if report.verify_failures() > 0 {
                eprintln!(
                    "shardcast-loadgen: verification failed: {} bad reads",
                    report.verify_failures()
                );
                EXIT_VERIFY_FAILED
            } else if !report.failures.is_empty() {
                EXIT_RUN_FAILED
            } else {
                EXIT_OK
            }
        }
        Err(e @ RunError::Config { .. }) => {
            eprintln!("shardcast-loadgen: {e}");
            EXIT_BAD_INPUT
        }
        Err(e) => {
            eprintln!("shardcast-loadgen: {e}");
            EXIT_RUN_FAILED
        }
    }
}

pub fn main() -> i32 {
    main_with(Args::parse())
}
