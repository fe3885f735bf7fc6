//! Server settings: embedded defaults, overridden by a TOML file (`--config`), overridden by
//! flags. Names follow Redis's (`maxmemory`, `proto-max-bulk-len`) where Redis has one.

use clap::Parser;
use serde::Deserialize;
use shardcast_engine::runtime::eviction::{
    MAXMEMORY_SAMPLES_DEFAULT, MAXMEMORY_SAMPLES_MAX, MAXMEMORY_SAMPLES_MIN,
};
use shardcast_engine::{EngineConfig, EvictionPolicy, FsyncPolicy};
use std::path::{Path, PathBuf};

/// Redis's default `proto-max-bulk-len`.
pub const PROTO_MAX_BULK_LEN_DEFAULT: u64 = 512 * 1024 * 1024;
/// Redis's default `maxclients`.
pub const MAXCLIENTS_DEFAULT: u64 = 10_000;
/// Most shared shards per core a new data directory may get (each has its own files and log).
pub const SHARED_SHARDS_PER_CORE_MAX: usize = 64;
/// Redis's default `client-query-buffer-limit`.
pub const QUERY_BUFFER_MAX_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Command-line flags (every one optional: unset flags keep the file's or default value).
#[derive(Parser, Debug, Default)]
#[command(
    name = "shardcast-server",
    version,
    about = "Shardcast: a thread-per-core, Redis-compatible key-value server"
)]
pub struct Flags {
    /// TCP port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on.
    #[arg(long)]
    pub bind: Option<String>,
    /// Where shards keep their files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where BGSAVE and SAVE put backups (`backup-<unix ms>` folders; the newest 2 are kept);
    /// default: beside the data directory, `<data-dir>-backup`.
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// Start from a backup: copy it (a `backup-<ms>` folder, or the newest one in a backup
    /// directory) into the data directory, which must be empty or missing, then serve.
    #[arg(long)]
    pub restore: Option<PathBuf>,
    /// Data cores (one pinned executor each); default: all CPUs.
    #[arg(long)]
    pub cores: Option<usize>,
    /// Log durability: always | everysec | no.
    #[arg(long)]
    pub fsync: Option<String>,
    /// Password clients must AUTH with.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Memory limit for keys and values (e.g. 100mb, 2gb); 0 = none.
    #[arg(long)]
    pub maxmemory: Option<String>,
    /// What goes when memory reaches maxmemory: noeviction, allkeys-lru, allkeys-lfu,
    /// allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl.
    #[arg(long)]
    pub maxmemory_policy: Option<String>,
    /// Keys sampled per eviction (1-64; more is closer to true LRU/LFU and costs more).
    #[arg(long)]
    pub maxmemory_samples: Option<usize>,
    /// Most simultaneous client connections.
    #[arg(long)]
    pub maxclients: Option<u64>,
    /// Statistics tick in ms (telemetry, health, load history).
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Gather per-op telemetry (bytes, service times, distinct and hot keys, applications):
    /// yes | no.
    #[arg(long)]
    pub telemetry: Option<String>,
    /// How shards follow load: static | reactive | predictive (docs/allocator.md).
    #[arg(long)]
    pub policy: Option<String>,
    /// TOML file with any of these settings (flags win over it).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The TOML file: same names as the flags, kebab-case.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub port: Option<u16>,
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub backup_dir: Option<PathBuf>,
    pub cores: Option<usize>,
    pub cpu_list: Option<Vec<usize>>,
    pub fsync: Option<String>,
    pub requirepass: Option<String>,
    pub maxmemory: Option<String>,
    pub maxmemory_policy: Option<String>,
    pub maxmemory_samples: Option<usize>,
    pub maxclients: Option<u64>,
    pub proto_max_bulk_len: Option<String>,
    pub client_query_buffer_limit: Option<String>,
    pub io_memory: Option<String>,
    /// A shard's log grown this much (and past its last segment) is snapshotted and truncated
    /// (Redis's `auto-aof-rewrite-min-size`).
    pub snapshot_min_wal_size: Option<String>,
    /// How long a core waits for another core's answer to a short step before it counts as
    /// not answering (migration steps, FLUSHALL, shard info).
    pub core_answer_wait_ms: Option<u64>,
    pub ring_depth: Option<usize>,
    pub spin_before_park_us: Option<u64>,
    pub partition_separator: Option<String>,
    pub migrate_connections: Option<bool>,
    pub shards_per_core_max: Option<usize>,
    pub shards_per_partition_max: Option<usize>,
    pub shared_shards_per_core: Option<usize>,
    pub tick_ms: Option<u64>,
    pub telemetry: Option<bool>,
    pub history_partitions_max: Option<usize>,
    pub history_tick_rows_max: Option<usize>,
    pub history_minute_rows_max: Option<usize>,
    pub history_save_interval_ms: Option<u64>,
    pub predict_step_s: Option<f64>,
    #[serde(alias = "day-s")]
    pub predict_day_s: Option<f64>,
    #[serde(alias = "forecast-horizon-s")]
    pub predict_horizon_s: Option<f64>,
    pub predict_fit_interval_s: Option<f64>,
    pub policy: Option<String>,
    pub target_utilization: Option<f64>,
    pub merge_delay_s: Option<f64>,
    pub migrations_per_minute_max: Option<u32>,
    pub core_capacity_ops: Option<f64>,
    pub slowlog_log_slower_than: Option<i64>,
    pub slowlog_max_len: Option<u64>,
    pub latency_monitor_threshold: Option<u64>,
    pub latency_tracking: Option<bool>,
    pub latency_tracking_info_percentiles: Option<String>,
    /// How long a script may run before it is stopped, in ms (0: until SCRIPT KILL).
    #[serde(alias = "lua-time-limit")]
    pub busy_reply_threshold: Option<u64>,
}

/// Everything the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub port: u16,
    pub bind: String,
    pub requirepass: Option<String>,
    pub maxmemory_bytes: u64,
    pub maxmemory_policy: EvictionPolicy,
    pub maxmemory_samples: usize,
    pub maxclients: u64,
    pub proto_max_bulk_len: u64,
    pub query_buffer_max_bytes: u64,
    pub config_file: Option<PathBuf>,
    /// Where BGSAVE and SAVE put backups (absolute once loaded).
    pub backup_dir: PathBuf,
    /// A backup to copy into the (empty) data directory before starting.
    pub restore: Option<PathBuf>,
    /// Move a connection to the core that owns (nearly) all the keys it uses.
    pub migrate_connections: bool,
    /// Limits of the load history.
    pub history: shardcast_predictor::history::HistoryLimits,
    /// How often the load history is written to the data directory (and at shutdown).
    pub history_save_interval_ms: u64,
    /// The forecaster's settings (docs/forecasting.md 6).
    pub predict: PredictSettings,
    /// The allocator's settings (docs/allocator.md); its `shards_per_partition_max` follows
    /// the engine's.
    pub allocator: shardcast_predictor::allocator::Settings,
    pub engine: EngineConfig,
    /// The slow log, latency monitor and latency tracking settings.
    pub observe: crate::stats::ObserveSettings,
    /// `busy-reply-threshold`: how long a script may run, in ms (0: until SCRIPT KILL).
    pub script_time_limit_ms: u64,
}

/// The forecaster's settings, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictSettings {
    /// Step of the forecast series: 60 s (or more) uses the history's minute rows, less its
    /// tick rows (10 minutes of them at the defaults).
    pub step_ms: u64,
    /// A day's length (shorter in demos and tests: a compressed day).
    pub day_ms: u64,
    /// How far ahead the peak is forecast.
    pub horizon_ms: u64,
    /// How often the models are refit.
    pub fit_interval_ms: u64,
}

impl Default for PredictSettings {
    fn default() -> Self {
        PredictSettings {
            step_ms: 60_000,
            day_ms: 86_400_000,
            horizon_ms: 300_000,
            fit_interval_ms: 600_000,
        }
    }
}

/// The shortest and longest statistics tick.
pub const TICK_MS_MIN: u64 = 10;
pub const TICK_MS_MAX: u64 = 60_000;
/// The default interval between writes of the load history.
pub const HISTORY_SAVE_INTERVAL_MS_DEFAULT: u64 = 60_000;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 6379,
            bind: "127.0.0.1".into(),
            requirepass: None,
            maxmemory_bytes: 0,
            maxmemory_policy: EvictionPolicy::NoEviction,
            maxmemory_samples: MAXMEMORY_SAMPLES_DEFAULT,
            script_time_limit_ms: crate::scripting::SCRIPT_TIME_LIMIT_DEFAULT_MS,
            maxclients: MAXCLIENTS_DEFAULT,
            proto_max_bulk_len: PROTO_MAX_BULK_LEN_DEFAULT,
            query_buffer_max_bytes: QUERY_BUFFER_MAX_BYTES_DEFAULT,
            config_file: None,
            backup_dir: PathBuf::new(),
            restore: None,
            migrate_connections: true,
            history: Default::default(),
            history_save_interval_ms: HISTORY_SAVE_INTERVAL_MS_DEFAULT,
            predict: PredictSettings::default(),
            allocator: Default::default(),
            engine: EngineConfig::default(),
            observe: Default::default(),
        }
    }
}

/// Parses a `maxmemory-policy` name (Redis's, case-insensitive).
pub fn parse_policy(s: &str) -> Result<EvictionPolicy, String> {
    EvictionPolicy::parse(s).ok_or_else(|| {
        let names: Vec<&str> = EvictionPolicy::ALL.iter().map(|p| p.name()).collect();
        format!("unknown policy '{s}' (one of: {})", names.join(", "))
    })
}

/// Checks a `maxmemory-samples` value against Redis's bounds.
pub fn check_samples(n: usize) -> Result<usize, String> {
    if (MAXMEMORY_SAMPLES_MIN..=MAXMEMORY_SAMPLES_MAX).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "argument must be between {MAXMEMORY_SAMPLES_MIN} and {MAXMEMORY_SAMPLES_MAX} inclusive"
        ))
    }
}

/// Parses a Redis memory size: `1024`, `100kb`, `100k`, `1mb`, `1gb` (case-insensitive; `k` is
/// 1000 and `kb` 1024, as in Redis).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let units: [(&str, u64); 6] = [
        ("kb", 1024),
        ("mb", 1 << 20),
        ("gb", 1 << 30),
        ("k", 1000),
        ("m", 1_000_000),
        ("g", 1_000_000_000),
    ];
    for (suffix, mult) in units {
        if let Some(num) = lower.strip_suffix(suffix) {
            let n: u64 = num.parse().map_err(|_| format!("invalid memory size '{s}'"))?;
            return n.checked_mul(mult).ok_or_else(|| format!("memory size '{s}' is too large"));
        }
    }
    lower.parse().map_err(|_| format!("invalid memory size '{s}'"))
}

/// `yes`/`no` (also `true`/`false`, `on`/`off`), as Redis's boolean settings.
pub fn parse_yes_no(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("'{v}' is not yes or no")),
    }
}

fn policy(s: &str) -> Result<shardcast_predictor::allocator::Policy, String> {
    shardcast_predictor::allocator::Policy::parse(s)
        .ok_or_else(|| format!("policy: '{s}' is not static, reactive or predictive"))
}

/// The most migrations per minute `migrations-per-minute-max` accepts.
pub const MIGRATIONS_PER_MINUTE_LIMIT: u32 = 600;

fn fsync(s: &str) -> Result<FsyncPolicy, String> {
    s.parse()
}

impl ServerConfig {
    /// Defaults, then the file, then the flags.
    pub fn load(flags: Flags) -> Result<Self, String> {
        let mut c = ServerConfig::default();
        if let Some(path) = &flags.config {
            let file = read_file(path)?;
            c.apply_file(file)?;
            c.config_file = Some(path.clone());
        }
        if let Some(v) = flags.port {
            c.port = v;
        }
        if let Some(v) = flags.bind {
            c.bind = v;
        }
        if let Some(v) = flags.data_dir {
            c.engine.data_dir = v;
        }
        if let Some(v) = flags.backup_dir {
            c.backup_dir = v;
        }
        c.restore = flags.restore;
        if let Some(v) = flags.cores {
            c.engine.cores = v;
        }
        if let Some(v) = flags.fsync {
            c.engine.fsync = fsync(&v)?;
        }
        if let Some(v) = flags.requirepass {
            c.requirepass = Some(v).filter(|p| !p.is_empty());
        }
        if let Some(v) = flags.maxmemory {
            c.maxmemory_bytes = parse_memory(&v)?;
        }
        if let Some(v) = flags.maxmemory_policy {
            c.maxmemory_policy = parse_policy(&v)?;
        }
        if let Some(v) = flags.maxmemory_samples {
            c.maxmemory_samples = check_samples(v)?;
        }
        if let Some(v) = flags.maxclients {
            c.maxclients = v;
        }
        if let Some(v) = flags.tick_ms {
            c.engine.tick_ms = v;
        }
        if let Some(v) = flags.telemetry {
            c.engine.telemetry.set(parse_yes_no(&v).map_err(|e| format!("telemetry: {e}"))?);
        }
        if let Some(v) = flags.policy {
            c.allocator.policy = policy(&v)?;
        }
        c.allocator.shards_per_partition_max = c.engine.shards_per_partition_max;
        c.engine.data_dir = absolute_dir(&c.engine.data_dir)?;
        if c.backup_dir.as_os_str().is_empty() {
            c.backup_dir = backup_dir_beside(&c.engine.data_dir);
        }
        c.backup_dir = absolute_dir(&c.backup_dir)?;
        if let Some(r) = &c.restore {
            c.restore = Some(absolute_dir(r)?);
        }
        c.validate()?;
        Ok(c)
    }

    fn apply_file(&mut self, f: FileConfig) -> Result<(), String> {
        let field = |name: &str, r: Result<u64, String>| r.map_err(|e| format!("{name}: {e}"));
        if let Some(v) = f.port {
            self.port = v;
        }
        if let Some(v) = f.bind {
            self.bind = v;
        }
        if let Some(v) = f.backup_dir {
            self.backup_dir = v;
        }
        if let Some(v) = f.data_dir {
            self.engine.data_dir = v;
        }
        if let Some(v) = f.cores {
            self.engine.cores = v;
        }
        if let Some(v) = f.cpu_list {
            self.engine.cpu_list = Some(v);
        }
        if let Some(v) = f.fsync {
            self.engine.fsync = fsync(&v).map_err(|e| format!("fsync: {e}"))?;
        }
        if let Some(v) = f.requirepass {
            self.requirepass = Some(v).filter(|p| !p.is_empty());
        }
        if let Some(v) = f.maxmemory {
            self.maxmemory_bytes = field("maxmemory", parse_memory(&v))?;
        }
        if let Some(v) = f.maxmemory_policy {
            self.maxmemory_policy =
                parse_policy(&v).map_err(|e| format!("maxmemory-policy: {e}"))?;
        }
        if let Some(v) = f.maxmemory_samples {
            self.maxmemory_samples =
                check_samples(v).map_err(|e| format!("maxmemory-samples: {e}"))?;
        }
        if let Some(v) = f.maxclients {
            self.maxclients = v;
        }
        if let Some(v) = f.proto_max_bulk_len {
            self.proto_max_bulk_len = field("proto-max-bulk-len", parse_memory(&v))?;
        }
        if let Some(v) = f.client_query_buffer_limit {
            self.query_buffer_max_bytes = field("client-query-buffer-limit", parse_memory(&v))?;
        }
        if let Some(v) = f.io_memory {
            self.engine.io_memory_bytes = field("io-memory", parse_memory(&v))? as usize;
        }
        if let Some(v) = f.snapshot_min_wal_size {
            self.engine.snapshot_min_wal_bytes = field("snapshot-min-wal-size", parse_memory(&v))?;
        }
        if let Some(v) = f.core_answer_wait_ms {
            if v == 0 {
                return Err("core-answer-wait-ms: must be at least 1".into());
            }
            self.engine.core_answer_wait_ms = v;
        }
        if let Some(v) = f.ring_depth {
            self.engine.ring_depth = v;
        }
        if let Some(v) = f.spin_before_park_us {
            self.engine.spin_before_park_us = v;
        }
        if let Some(v) = f.shards_per_core_max {
            if v == 0 {
                return Err("shards-per-core-max: must be at least 1".into());
            }
            self.engine.shards_per_core_max = v;
        }
        if let Some(v) = f.shared_shards_per_core {
            if !(1..=SHARED_SHARDS_PER_CORE_MAX).contains(&v) {
                return Err(format!(
                    "shared-shards-per-core: must be 1 to {SHARED_SHARDS_PER_CORE_MAX}"
                ));
            }
            self.engine.shared_shards_per_core = v;
        }
        if let Some(v) = f.shards_per_partition_max {
            if !(1..=shardcast_engine::placement::shard_map::SHARDS_PER_PARTITION_LIMIT)
                .contains(&v)
            {
                return Err(format!(
                    "shards-per-partition-max: must be 1 to {}",
                    shardcast_engine::placement::shard_map::SHARDS_PER_PARTITION_LIMIT
                ));
            }
            self.engine.shards_per_partition_max = v;
        }
        if let Some(v) = f.migrate_connections {
            self.migrate_connections = v;
        }
        if let Some(v) = f.tick_ms {
            self.engine.tick_ms = v;
        }
        if let Some(v) = f.telemetry {
            self.engine.telemetry.set(v);
        }
        if let Some(v) = f.history_partitions_max {
            self.history.partitions_max = v;
        }
        if let Some(v) = f.history_tick_rows_max {
            self.history.tick_rows_max = v;
        }
        if let Some(v) = f.history_minute_rows_max {
            self.history.minute_rows_max = v;
        }
        if let Some(v) = f.history_save_interval_ms {
            self.history_save_interval_ms = v;
        }
        if let Some(v) = f.slowlog_log_slower_than {
            if v < -1 {
                return Err("slowlog-log-slower-than: must be -1 (off) or more".into());
            }
            self.observe.slowlog_slower_than_us = v;
        }
        if let Some(v) = f.slowlog_max_len {
            if v > crate::stats::slowlog::SLOWLOG_LEN_MAX {
                return Err(format!(
                    "slowlog-max-len: at most {}",
                    crate::stats::slowlog::SLOWLOG_LEN_MAX
                ));
            }
            self.observe.slowlog_max_len = v;
        }
        if let Some(v) = f.busy_reply_threshold {
            self.script_time_limit_ms = v;
        }
        if let Some(v) = f.latency_monitor_threshold {
            self.observe.latency_monitor_threshold_ms = v;
        }
        if let Some(v) = f.latency_tracking {
            self.observe.latency_tracking = v;
        }
        if let Some(v) = f.latency_tracking_info_percentiles {
            self.observe.latency_percentiles = crate::stats::parse_percentiles(&v)?;
        }
        let secs = |name: &str, v: f64| -> Result<u64, String> {
            if v.is_finite() && v > 0.0 && v <= 1e8 {
                Ok(((v * 1000.0).round() as u64).max(1))
            } else {
                Err(format!("{name}: must be a positive number of seconds"))
            }
        };
        if let Some(v) = f.predict_step_s {
            self.predict.step_ms = secs("predict-step-s", v)?;
        }
        if let Some(v) = f.predict_day_s {
            self.predict.day_ms = secs("predict-day-s", v)?;
        }
        if let Some(v) = f.predict_horizon_s {
            self.predict.horizon_ms = secs("predict-horizon-s", v)?;
        }
        if let Some(v) = f.predict_fit_interval_s {
            self.predict.fit_interval_ms = secs("predict-fit-interval-s", v)?;
        }
        if let Some(v) = f.policy {
            self.allocator.policy = policy(&v)?;
        }
        if let Some(v) = f.target_utilization {
            if !(v > 0.0 && v <= 1.0) {
                return Err("target-utilization: must be above 0 and at most 1".into());
            }
            self.allocator.target_utilization = v;
        }
        if let Some(v) = f.merge_delay_s {
            if !(v.is_finite() && (0.0..=1e7).contains(&v)) {
                return Err("merge-delay-s: must be 0 to 10000000 seconds".into());
            }
            self.allocator.merge_delay_ms = (v * 1000.0).round() as u64;
        }
        if let Some(v) = f.migrations_per_minute_max {
            if !(1..=MIGRATIONS_PER_MINUTE_LIMIT).contains(&v) {
                return Err(format!(
                    "migrations-per-minute-max: must be 1 to {MIGRATIONS_PER_MINUTE_LIMIT}"
                ));
            }
            self.allocator.migrations_per_minute_max = v;
        }
        if let Some(v) = f.core_capacity_ops {
            if !(v.is_finite() && v >= 1.0) {
                return Err("core-capacity-ops: must be at least 1 op/s".into());
            }
            self.allocator.core_capacity_ops = Some(v);
        }
        if let Some(v) = f.partition_separator {
            let [b] = v.as_bytes() else {
                return Err("partition-separator: must be exactly one byte".into());
            };
            self.engine.partition_separator = *b;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        if self.engine.cores == 0 {
            return Err("cores: must be at least 1".into());
        }
        if self.proto_max_bulk_len < 1024 || self.proto_max_bulk_len > PROTO_MAX_BULK_LEN_DEFAULT {
            return Err(format!(
                "proto-max-bulk-len: must be between 1kb and {PROTO_MAX_BULK_LEN_DEFAULT}"
            ));
        }
        if self.query_buffer_max_bytes < self.proto_max_bulk_len {
            return Err("client-query-buffer-limit: must be at least proto-max-bulk-len".into());
        }
        if self.maxclients == 0 {
            return Err("maxclients: must be at least 1".into());
        }
        if !(TICK_MS_MIN..=TICK_MS_MAX).contains(&self.engine.tick_ms) {
            return Err(format!("tick-ms: must be {TICK_MS_MIN} to {TICK_MS_MAX}"));
        }
        if self.history_save_interval_ms < 1000 {
            return Err("history-save-interval-ms: must be at least 1000".into());
        }
        let p = &self.predict;
        if p.step_ms < self.engine.tick_ms || p.day_ms < p.step_ms || p.horizon_ms < p.step_ms {
            return Err(
                "predict-step-s must be at least a tick, and predict-day-s and predict-horizon-s \
                 at least a step"
                    .into(),
            );
        }
        let h = &self.history;
        if h.partitions_max == 0 || h.tick_rows_max == 0 || h.minute_rows_max == 0 {
            return Err("history limits: must be at least 1".into());
        }
        Ok(())
    }
}

/// The data directory as an absolute path, resolved once against the current directory at
/// start (as Redis's `dir`): the start log line and `CONFIG GET dir` then say where the data
/// really is, and no later file operation depends on the current directory (glommio's
/// `Directory::open` does not resolve relative paths: docs/design.md, "Relative paths").
fn absolute_dir(dir: &Path) -> Result<PathBuf, String> {
    std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Where backups go unless told: beside the data directory, named after it
/// (`./shardcast-data` backs up into `./shardcast-data-backup`), so two servers never share
/// one and removing the data directory leaves the backups.
pub fn backup_dir_beside(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push("-backup");
    data_dir.with_file_name(name)
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("0"), Ok(0));
        assert_eq!(parse_memory("100mb"), Ok(100 << 20));
        assert_eq!(parse_memory("1GB"), Ok(1 << 30));
        assert_eq!(parse_memory("5k"), Ok(5000));
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn flags_override_file_and_bad_fields_are_named() {
        let dir = std::env::temp_dir().join(format!("shardcast-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "port = 7000\nfsync = \"always\"\nmaxmemory = \"1mb\"\n").unwrap();
        let c = ServerConfig::load(Flags {
            config: Some(file.clone()),
            port: Some(7001),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(
            (c.port, c.engine.fsync, c.maxmemory_bytes),
            (7001, FsyncPolicy::Always, 1 << 20)
        );
        std::fs::write(&file, "maxmemory-policy = \"volatile-lfu\"\nmaxmemory-samples = 10\n")
            .unwrap();
        let c =
            ServerConfig::load(Flags { config: Some(file.clone()), ..Flags::default() }).unwrap();
        assert_eq!((c.maxmemory_policy, c.maxmemory_samples), (EvictionPolicy::VolatileLfu, 10));
        assert_eq!(c.script_time_limit_ms, crate::scripting::SCRIPT_TIME_LIMIT_DEFAULT_MS);
        for key in ["busy-reply-threshold", "lua-time-limit"] {
            std::fs::write(&file, format!("{key} = 250\n")).unwrap();
            let c = ServerConfig::load(Flags { config: Some(file.clone()), ..Flags::default() });
            assert_eq!(c.unwrap().script_time_limit_ms, 250);
        }
        std::fs::write(&file, "maxmemory-policy = \"volatile-lfu\"\nmaxmemory-samples = 10\n")
            .unwrap();
        let c = ServerConfig::load(Flags {
            config: Some(file.clone()),
            maxmemory_policy: Some("allkeys-random".into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(c.maxmemory_policy, EvictionPolicy::AllKeysRandom, "flags win over the file");
        for (bad, says) in [
            ("maxmemory-policy = \"lru\"\n", "maxmemory-policy: unknown policy 'lru'"),
            ("maxmemory-samples = 0\n", "maxmemory-samples: argument must be between 1 and 64"),
        ] {
            std::fs::write(&file, bad).unwrap();
            let err = ServerConfig::load(Flags { config: Some(file.clone()), ..Flags::default() })
                .unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        std::fs::write(&file, "prot = 7000\n").unwrap();
        let err = ServerConfig::load(Flags { config: Some(file.clone()), ..Flags::default() })
            .unwrap_err();
        assert!(err.contains("unknown field `prot`"), "{err}");
        std::fs::write(&file, "fsync = \"sometimes\"\n").unwrap();
        let err = ServerConfig::load(Flags { config: Some(file), ..Flags::default() }).unwrap_err();
        assert!(err.contains("fsync") && err.contains("sometimes"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn allocator_settings_are_read_checked_and_named() {
        use shardcast_predictor::allocator::Policy;
        let dir =
            std::env::temp_dir().join(format!("shardcast-config-alloc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        let load = |text: &str, policy: Option<&str>| {
            std::fs::write(&file, text).unwrap();
            ServerConfig::load(Flags {
                config: Some(file.clone()),
                policy: policy.map(str::to_owned),
                ..Flags::default()
            })
        };
        let c = load(
            "policy = \"reactive\"\ntarget-utilization = 0.6\nmerge-delay-s = 30\n\
             migrations-per-minute-max = 3\ncore-capacity-ops = 5000\nday-s = 60\n\
             forecast-horizon-s = 5\npredict-step-s = 1\nshards-per-partition-max = 4\n",
            None,
        )
        .unwrap();
        let a = &c.allocator;
        assert_eq!(a.policy, Policy::Reactive);
        assert_eq!((a.target_utilization, a.merge_delay_ms), (0.6, 30_000));
        assert_eq!((a.migrations_per_minute_max, a.core_capacity_ops), (3, Some(5000.0)));
        assert_eq!(a.shards_per_partition_max, 4, "follows the engine's limit");
        assert_eq!((c.predict.day_ms, c.predict.horizon_ms), (60_000, 5_000));
        // The flag wins over the file.
        let c = load("policy = \"reactive\"\n", Some("static")).unwrap();
        assert_eq!(c.allocator.policy, Policy::Static);
        assert_eq!(load("", None).unwrap().allocator.policy, Policy::Predictive);
        for (text, flag, want) in [
            (
                "policy = \"psychic\"\n",
                None,
                "policy: 'psychic' is not static, reactive or predictive",
            ),
            ("", Some("sometimes"), "policy: 'sometimes'"),
            ("target-utilization = 0\n", None, "target-utilization: must be above 0"),
            ("target-utilization = 1.5\n", None, "target-utilization"),
            ("merge-delay-s = -1\n", None, "merge-delay-s"),
            (
                "migrations-per-minute-max = 0\n",
                None,
                "migrations-per-minute-max: must be 1 to 600",
            ),
            ("core-capacity-ops = 0\n", None, "core-capacity-ops: must be at least 1"),
        ] {
            let err = load(text, flag).unwrap_err();
            assert!(err.contains(want), "{text}{flag:?}: {err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
