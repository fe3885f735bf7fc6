//! What the server measures about its commands, for operators: per-command calls, time and
//! latency histograms (`commands`, `histogram`), error replies by code (`ErrorStats`), the
//! slow log (`slowlog`) and, shared with the engine, the latency monitor's events.
//!
//! How a command's time is measured (`connection.rs` records it): a pipeline runs as batches
//! of commands, and every command of a batch gets its reply when the batch ends. So a
//! command's *latency* (histograms, percentiles, the slow log) is the wall time of the batch
//! that held it, from the end of the previous batch of its connection (or the read that
//! brought it) to its reply being ready, durability wait included; and its share of the
//! server's *time* (`usec` in `INFO commandstats`) is that time divided by the batch's
//! commands, so the sum over commands is the time spent. Redis, one command at a time,
//! measures the same two as one number; it excludes its `appendfsync always` fsync, which
//! runs after the command, where ours is inside the batch. Admin commands run alone.

pub mod commands;
pub mod histogram;
pub mod slowlog;

use commands::CoreCommandStats;
use shardcast_engine::telemetry::LatencyEvents;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Distinct error codes counted (Redis's `ERROR_STATS_NUMBER`); past it new codes count
/// only in `total_error_replies`.
pub const ERROR_CODES_MAX: usize = 128;
/// Percentiles `INFO latencystats` shows unless set (Redis's default).
pub const LATENCY_PERCENTILES_DEFAULT: [f64; 3] = [50.0, 99.0, 99.9];
/// Most percentiles `latency-tracking-info-percentiles` may list.
pub const LATENCY_PERCENTILES_MAX: usize = 16;

/// `INFO errorstats`: error replies by their first word (`ERR`, `WRONGTYPE`, `MISCONF`).
/// Errors are off the fast path, so one lock.
#[derive(Default)]
pub struct ErrorStats {
    total: AtomicU64,
    by_code: Mutex<BTreeMap<String, u64>>,
}

impl ErrorStats {
    /// Counts the error reply `line` (without its leading `-`).
    pub fn count(&self, line: &[u8]) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let code_len = line.iter().position(|&b| b == b' ' || b == b'\r').unwrap_or(line.len());
        let code = String::from_utf8_lossy(&line[..code_len.min(64)]).into_owned();
        let mut by_code = self.by_code.lock().expect("error stats poisoned");
        if let Some(n) = by_code.get_mut(&code) {
            *n += 1;
        } else if by_code.len() < ERROR_CODES_MAX {
            by_code.insert(code, 1);
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn by_code(&self) -> BTreeMap<String, u64> {
        self.by_code.lock().expect("error stats poisoned").clone()
    }

    pub fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.by_code.lock().expect("error stats poisoned").clear();
    }
}

/// The settings of what is measured, as `CONFIG SET` changes them.
#[derive(Debug, Clone)]
pub struct ObserveSettings {
    pub slowlog_slower_than_us: i64,
    pub slowlog_max_len: u64,
    pub latency_monitor_threshold_ms: u64,
    pub latency_tracking: bool,
    pub latency_percentiles: Vec<f64>,
}

impl Default for ObserveSettings {
    fn default() -> Self {
        ObserveSettings {
            slowlog_slower_than_us: slowlog::SLOWLOG_SLOWER_THAN_US_DEFAULT,
            slowlog_max_len: slowlog::SLOWLOG_LEN_DEFAULT,
            latency_monitor_threshold_ms: 0,
            latency_tracking: true,
            latency_percentiles: LATENCY_PERCENTILES_DEFAULT.to_vec(),
        }
    }
}

/// Parses `latency-tracking-info-percentiles`: numbers in 0..=100 separated by spaces.
pub fn parse_percentiles(text: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        match word.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => out.push(p),
            _ => {
                return Err(
                    "latency-tracking-info-percentiles: each must be between 0 and 100".into()
                )
            }
        }
    }
    if out.len() > LATENCY_PERCENTILES_MAX {
        return Err(format!(
            "latency-tracking-info-percentiles: at most {LATENCY_PERCENTILES_MAX}"
        ));
    }
    Ok(out)
}

/// Percentiles as Redis prints them in CONFIG GET and INFO (`99.9`, `50`).
pub fn percentile_text(p: f64) -> String {
    let text = format!("{p}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// Everything measured, shared by every core.
pub struct Observability {
    /// One per core, written only by its core.
    pub commands: Vec<CoreCommandStats>,
    pub errors: ErrorStats,
    pub slowlog: slowlog::SlowLog,
    /// The latency monitor (the engine reports into the same one).
    pub events: Arc<LatencyEvents>,
    pub tracking: AtomicBool,
    pub percentiles: RwLock<Vec<f64>>,
}

impl Observability {
    pub fn new(cores: usize, settings: &ObserveSettings, events: Arc<LatencyEvents>) -> Self {
        events.set_threshold_ms(settings.latency_monitor_threshold_ms);
        Observability {
            commands: (0..cores).map(|_| CoreCommandStats::default()).collect(),
            errors: ErrorStats::default(),
            slowlog: slowlog::SlowLog::new(
                settings.slowlog_slower_than_us,
                settings.slowlog_max_len,
            ),
            events,
            tracking: AtomicBool::new(settings.latency_tracking),
            percentiles: RwLock::new(settings.latency_percentiles.clone()),
        }
    }

    pub fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    pub fn percentiles(&self) -> Vec<f64> {
        self.percentiles.read().expect("percentiles poisoned").clone()
    }

    /// CONFIG RESETSTAT: command and error statistics (not the slow log or the monitor,
    /// which have their own RESET, as in Redis).
    pub fn reset(&self) {
        self.commands.iter().for_each(CoreCommandStats::reset);
        self.errors.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_the_first_word_and_bounded() {
        let e = ErrorStats::default();
        e.count(b"ERR syntax error");
        e.count(b"WRONGTYPE Operation against a key holding the wrong kind of value");
        e.count(b"ERR x");
        for i in 0..ERROR_CODES_MAX + 10 {
            e.count(format!("CODE{i} x").as_bytes());
        }
        let by_code = e.by_code();
        assert_eq!(by_code.get("ERR"), Some(&2));
        assert_eq!(by_code.get("WRONGTYPE"), Some(&1));
        assert_eq!(by_code.len(), ERROR_CODES_MAX);
        assert_eq!(e.total(), 3 + ERROR_CODES_MAX as u64 + 10);
    }

    #[test]
    fn percentiles_parse_and_print_as_redis() {
        assert_eq!(parse_percentiles("50 99 99.9").unwrap(), vec![50.0, 99.0, 99.9]);
        assert_eq!(parse_percentiles("").unwrap(), Vec::<f64>::new());
        assert!(parse_percentiles("101").is_err() && parse_percentiles("x").is_err());
        assert_eq!(percentile_text(99.9), "99.9");
        assert_eq!(percentile_text(50.0), "50");
    }
}
