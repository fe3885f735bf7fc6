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
    }
}
