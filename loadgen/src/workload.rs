//! Workloads: applications with their keyspace, distributions, op mix and rate profile, read
//! from TOML (with errors that name the field) or from a built-in preset.

use std::path::Path;

use crate::dist::{KeyDistribution, MixgraphKeys, ValueSize};
use crate::profile::{Diurnal, RateProfile};

/// The most applications in one workload.
pub const APPLICATIONS_MAX: usize = 64;
/// The largest keyspace of one application.
pub const KEYSPACE_MAX: u64 = 1 << 40;
/// The largest value written.
pub const VALUE_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// The most keys in one MGET or MSET, or commands in one transaction.
pub const MULTI_KEYS_MAX: u64 = 1000;
/// The most points in a replayed rate series.
pub const REPLAY_POINTS_MAX: usize = 1_000_000;
/// The longest key prefix or client name.
pub const NAME_BYTES_MAX: usize = 128;
/// The largest rate of one profile, ops/s.
pub const RATE_OPS_MAX: f64 = 1e9;
/// The most connections of one application.
pub const APP_CONNECTIONS_MAX: u64 = 10_000;

/// Operations a workload can mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Op {
    Get = 0,
    Set = 1,
    Del = 2,
    Incr = 3,
    Mget = 4,
    Mset = 5,
    /// SET of a new key past the keyspace (YCSB's insert; what `latest` reads follow).
    Insert = 6,
    /// Read-modify-write (YCSB F): GET then SET of the same key, pipelined; its latency runs
    /// to the SET's reply.
    Rmw = 7,
    /// A transaction: MULTI, `multi_keys` INCRs of counter keys, EXEC, pipelined; its latency
    /// runs to EXEC's reply.
    Multi = 8,
}

pub const OP_COUNT: usize = 9;
pub const OPS: [Op; OP_COUNT] =
    [Op::Get, Op::Set, Op::Del, Op::Incr, Op::Mget, Op::Mset, Op::Insert, Op::Rmw, Op::Multi];

impl Op {
    pub fn name(self) -> &'static str {
        ["get", "set", "del", "incr", "mget", "mset", "insert", "rmw", "multi"][self as usize]
    }

    pub fn from_index(i: usize) -> Op {
        OPS[i]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Application {
    pub name: String,
    /// Sent with CLIENT SETNAME on each of this application's connections.
    pub client_name: String,
    /// Every key starts with it: its partition on Shardcast (`web:` -> partition `web`).
    pub key_prefix: String,
    pub keyspace: u64,
    /// Connections of this application; by default the run's connections are split evenly.
    pub connections: Option<u64>,
    pub key_distribution: KeyDistribution,
    pub value_size: ValueSize,
    /// Weight of each op, indexed by `Op as usize`; they sum to 1.
    pub ops: [f64; OP_COUNT],
    /// Keys per MGET/MSET, uniform in [min, max].
    pub multi_keys: (u64, u64),
    /// MGET reads consecutive key ids from a drawn start (a range scan), not independent keys.
    pub scan: bool,
    /// Open-loop target rate; None means closed loop (as fast as the pipeline allows).
    pub rate: Option<RateProfile>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub name: String,
    pub duration_s: Option<f64>,
    /// Workload seconds per real second (profiles are written in workload time).
    pub time_compression: f64,
    pub applications: Vec<Application>,
}

/// A workload that cannot be used: which field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for WorkloadError {}

fn err<T>(field: &str, message: impl Into<String>) -> Result<T, WorkloadError> {
    Err(WorkloadError { field: field.to_string(), message: message.into() })
}

/// A TOML table being read: knows its path for messages and which keys were used.
struct Fields<'a> {
    path: String,
    table: &'a toml::Table,
    used: Vec<&'static str>,
}

fn type_name(v: &toml::Value) -> &'static str {
    v.type_str()
}

impl<'a> Fields<'a> {
    fn new(path: String, table: &'a toml::Table) -> Self {
        Fields { path, table, used: Vec::new() }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.used.push(key);
        self.table.get(key)
    }

    fn f64_opt(&mut self, key: &'static str) -> Result<Option<f64>, WorkloadError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Float(f)) if f.is_finite() => Ok(Some(*f)),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(v) => err(&self.field(key), format!("expected a number, got {}", type_name(v))),
        }
    }

    fn f64_or(&mut self, key: &'static str, default: f64) -> Result<f64, WorkloadError> {
        Ok(self.f64_opt(key)?.unwrap_or(default))
    }

    /// A number within [lo, hi].
    fn f64_in(
        &mut self,
        key: &'static str,
        default: Option<f64>,
        lo: f64,
        hi: f64,
    ) -> Result<f64, WorkloadError> {
        let v = match (self.f64_opt(key)?, default) {
            (Some(v), _) => v,
            (None, Some(d)) => d,
            (None, None) => return err(&self.field(key), "missing (required)"),
        };
        if !(lo..=hi).contains(&v) {
            return err(&self.field(key), format!("must be between {lo} and {hi}, got {v}"));
        }
        Ok(v)
    }

    fn u64_opt(&mut self, key: &'static str) -> Result<Option<u64>, WorkloadError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(toml::Value::Integer(i)) => {
                err(&self.field(key), format!("must not be negative, got {i}"))
            }
            Some(v) => err(&self.field(key), format!("expected an integer, got {}", type_name(v))),
        }
    }

    fn u64_in(
        &mut self,
        key: &'static str,
        default: Option<u64>,
        lo: u64,
        hi: u64,
    ) -> Result<u64, WorkloadError> {
        let v = match (self.u64_opt(key)?, default) {
            (Some(v), _) => v,
            (None, Some(d)) => d,
            (None, None) => return err(&self.field(key), "missing (required)"),
        };
        if !(lo..=hi).contains(&v) {
            return err(&self.field(key), format!("must be between {lo} and {hi}, got {v}"));
        }
        Ok(v)
    }

    fn str_opt(&mut self, key: &'static str) -> Result<Option<&'a str>, WorkloadError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => err(&self.field(key), format!("expected a string, got {}", type_name(v))),
        }
    }

    fn table_opt(&mut self, key: &'static str) -> Result<Option<Fields<'a>>, WorkloadError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(Fields::new(self.field(key), t))),
            Some(v) => err(&self.field(key), format!("expected a table, got {}", type_name(v))),
        }
    }

    /// Fails on any key that was never asked for, naming it and the keys allowed.
    fn finish(self) -> Result<(), WorkloadError> {
        for k in self.table.keys() {
            if !self.used.iter().any(|u| u == k) {
                let mut allowed = self.used.clone();
                allowed.sort();
                allowed.dedup();
                return err(
                    &self.field(k),
                    format!("unknown field; expected one of: {}", allowed.join(", ")),
                );
            }
        }
        Ok(())
    }
}

/// A `{ type = "...", ... }` table, or a bare string naming the type with default parameters.
fn typed<'a>(
    f: &mut Fields<'a>,
    key: &'static str,
) -> Result<Option<(String, Fields<'a>)>, WorkloadError> {
    static EMPTY: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
    match f.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => {
            Ok(Some((s.clone(), Fields::new(f.field(key), EMPTY.get_or_init(toml::Table::new)))))
        }
        Some(toml::Value::Table(t)) => {
            let mut sub = Fields::new(f.field(key), t);
            match sub.str_opt("type")? {
                Some(ty) => Ok(Some((ty.to_string(), sub))),
                None => err(&sub.field("type"), "missing (required)"),
            }
        }
        Some(v) => {
            err(&f.field(key), format!("expected a table with a `type`, got {}", type_name(v)))
        }
    }
}

fn unknown_type<T>(field: &str, got: &str, expected: &[&str]) -> Result<T, WorkloadError> {
    err(
        &format!("{field}.type"),
        format!("unknown type {got:?}; expected one of: {}", expected.join(", ")),
    )
}

fn key_distribution(f: &mut Fields<'_>) -> Result<KeyDistribution, WorkloadError> {
    let Some((ty, mut t)) = typed(f, "key_distribution")? else {
        return Ok(KeyDistribution::Uniform);
    };
    let d = match ty.as_str() {
        "uniform" => KeyDistribution::Uniform,
        "zipfian" => {
            let theta = t.f64_in("theta", Some(0.99), 1e-6, 0.999_999)?;
            let scrambled = match t.get("scrambled") {
                None => true,
                Some(toml::Value::Boolean(b)) => *b,
                Some(v) => {
                    return err(
                        &t.field("scrambled"),
                        format!("expected true or false, got {}", type_name(v)),
                    )
                }
            };
            KeyDistribution::Zipfian { theta, scrambled }
        }
        "hotspot" => KeyDistribution::Hotspot {
            hot_keys_fraction: t.f64_in("hot_keys_fraction", Some(0.2), 1e-9, 1.0)?,
            hot_ops_fraction: t.f64_in("hot_ops_fraction", Some(0.8), 0.0, 1.0)?,
        },
        "latest" => {
            KeyDistribution::Latest { theta: t.f64_in("theta", Some(0.99), 1e-6, 0.999_999)? }
        }
        "mixgraph" => {
            let d = MixgraphKeys::fast20();
            let m = MixgraphKeys {
                key_dist_a: t.f64_in("key_dist_a", Some(d.key_dist_a), 1e-12, 1e12)?,
                key_dist_b: t.f64_in("key_dist_b", Some(d.key_dist_b), 1e-6, 1e6)?,
                keyrange_dist_a: t.f64_or("keyrange_dist_a", d.keyrange_dist_a)?,
                keyrange_dist_b: t.f64_or("keyrange_dist_b", d.keyrange_dist_b)?,
                keyrange_dist_c: t.f64_or("keyrange_dist_c", d.keyrange_dist_c)?,
                keyrange_dist_d: t.f64_or("keyrange_dist_d", d.keyrange_dist_d)?,
                keyrange_num: t.u64_in("keyrange_num", Some(d.keyrange_num), 1, 1_000_000)?,
            };
            let total: f64 = (1..=m.keyrange_num)
                .map(|i| {
                    let x = i as f64;
                    m.keyrange_dist_a * (m.keyrange_dist_b * x).exp()
                        + m.keyrange_dist_c * (m.keyrange_dist_d * x).exp()
                })
                .filter(|w| w.is_finite())
                .map(|w| w.max(0.0))
                .sum();
            if !(total > 0.0 && total.is_finite()) {
                return err(&t.path, "the key-range weights a*exp(b*i) + c*exp(d*i) must be positive and finite for some range");
            }
            KeyDistribution::Mixgraph(m)
        }
        other => {
            return unknown_type(
                &t.path,
                other,
                &["uniform", "zipfian", "hotspot", "latest", "mixgraph"],
            )
        }
    };
    t.finish()?;
    Ok(d)
}

fn value_size(f: &mut Fields<'_>) -> Result<ValueSize, WorkloadError> {
    // A bare integer is a fixed size.
    if let Some(toml::Value::Integer(_)) = f.table.get("value_size") {
        let bytes = f.u64_in("value_size", None, 1, VALUE_BYTES_MAX)?;
        return Ok(ValueSize::Fixed { bytes });
    }
    let Some((ty, mut t)) = typed(f, "value_size")? else {
        return Ok(ValueSize::Fixed { bytes: 100 });
    };
    let v = match ty.as_str() {
        "fixed" => ValueSize::Fixed { bytes: t.u64_in("bytes", None, 1, VALUE_BYTES_MAX)? },
        "uniform" => {
            let min = t.u64_in("min", None, 1, VALUE_BYTES_MAX)?;
            let max = t.u64_in("max", None, 1, VALUE_BYTES_MAX)?;
            if max < min {
                return err(&t.field("max"), format!("must be at least min ({min}), got {max}"));
            }
            ValueSize::Uniform { min, max }
        }
        "pareto" => ValueSize::Pareto {
            k: t.f64_in("k", None, -10.0, 10.0)?,
            sigma: t.f64_in("sigma", None, 1e-9, 1e9)?,
            theta: t.f64_in("theta", Some(0.0), 0.0, 1e9)?,
            max: t.u64_in("max", Some(1024), 1, VALUE_BYTES_MAX)?,
        },
        other => return unknown_type(&t.path, other, &["fixed", "uniform", "pareto"]),
    };
    t.finish()?;
    Ok(v)
}

fn ops(f: &mut Fields<'_>) -> Result<[f64; OP_COUNT], WorkloadError> {
    let Some(mut t) = f.table_opt("ops")? else {
        return err(&f.field("ops"), "missing (required): e.g. ops = { get = 0.9, set = 0.1 }");
    };
    let mut w = [0.0; OP_COUNT];
    for op in OPS {
        let name: &'static str = op.name();
        w[op as usize] = t.f64_in(name, Some(0.0), 0.0, 1e9)?;
    }
    let path = t.path.clone();
    t.finish()?;
    let sum: f64 = w.iter().sum();
    if sum <= 0.0 {
        return err(&path, "the op weights sum to 0; give at least one op a positive weight");
    }
    Ok(w.map(|x| x / sum))
}

fn rate(f: &mut Fields<'_>, base_dir: Option<&Path>) -> Result<Option<RateProfile>, WorkloadError> {
    // A bare number is a constant rate.
    if let Some(toml::Value::Integer(_) | toml::Value::Float(_)) = f.table.get("rate") {
        let ops = f.f64_in("rate", None, 0.0, RATE_OPS_MAX)?;
        return Ok(Some(RateProfile::Constant { ops }));
    }
    let Some((ty, mut t)) = typed(f, "rate")? else { return Ok(None) };
    let ops =
        |t: &mut Fields<'_>, k: &'static str, d: Option<f64>| t.f64_in(k, d, 0.0, RATE_OPS_MAX);
    let p = match ty.as_str() {
        "closed" => {
            t.finish()?;
            return Ok(None);
        }
        "constant" => RateProfile::Constant { ops: ops(&mut t, "ops", None)? },
        "ramp" => RateProfile::Ramp {
            from: ops(&mut t, "from", None)?,
            to: ops(&mut t, "to", None)?,
            duration_s: t.f64_in("duration_s", None, 0.0, 1e12)?,
        },
        "step" => {
            let field = t.field("steps");
            let steps = points(t.get("steps"), &field)?;
            if steps[0].0 != 0.0 {
                return err(&field, format!("the first step must be at 0 s, got {}", steps[0].0));
            }
            RateProfile::Step { steps }
        }
        "spike" => {
            let base = ops(&mut t, "base", None)?;
            let peak = ops(&mut t, "peak", None)?;
            let at_s = t.f64_in("at_s", None, 0.0, 1e12)?;
            let duration_s = t.f64_in("duration_s", None, 0.0, 1e12)?;
            let rise_s = t.f64_in("rise_s", Some(1.0), 1e-6, 1e12)?;
            RateProfile::Spike { base, peak, at_s, duration_s, rise_s }
        }
        "diurnal" => RateProfile::Diurnal(Diurnal {
            mean: ops(&mut t, "mean", None)?,
            daily_amplitude: t.f64_in("daily_amplitude", Some(0.5), 0.0, 1.0)?,
            peak_hour: t.f64_in("peak_hour", Some(14.0), 0.0, 24.0)?,
            weekly_amplitude: t.f64_in("weekly_amplitude", Some(0.0), 0.0, 1.0)?,
            peak_day: t.f64_in("peak_day", Some(2.0), 0.0, 7.0)?,
            noise: t.f64_in("noise", Some(0.0), 0.0, 1.0)?,
            noise_period_s: t.f64_in("noise_period_s", Some(900.0), 1e-3, 1e9)?,
            start_s: t.f64_in("start_hour", Some(0.0), 0.0, 24.0 * 7.0)? * 3600.0,
            seed: t.u64_in("seed", Some(1), 0, u64::MAX >> 1)?,
        }),
        "sine" => RateProfile::Sine {
            a: t.f64_in("a", None, -RATE_OPS_MAX, RATE_OPS_MAX)?,
            b: t.f64_in("b", None, -1e6, 1e6)?,
            c: t.f64_or("c", 0.0)?,
            d: ops(&mut t, "d", None)?,
        },
        "replay" => {
            let csv = t.str_opt("csv")?;
            let inline = t.get("points");
            let pts = match (csv, inline) {
                (Some(path), None) => {
                    let p = match base_dir {
                        Some(d) => d.join(path),
                        None => Path::new(path).to_path_buf(),
                    };
                    let text = std::fs::read_to_string(&p).map_err(|e| WorkloadError {
                        field: t.field("csv"),
                        message: format!("cannot read {}: {e}", p.display()),
                    })?;
                    parse_rate_csv(&text).map_err(|m| WorkloadError {
                        field: t.field("csv"),
                        message: format!("{}: {m}", p.display()),
                    })?
                }
                (None, Some(v)) => points(Some(v), &t.field("points"))?,
                _ => return err(
                    &t.path,
                    "a replay needs exactly one of `csv` (a file of time_s,ops lines) or `points`",
                ),
            };
            RateProfile::Replay { points: pts }
        }
        other => {
            return unknown_type(
                &t.path,
                other,
                &["constant", "ramp", "step", "spike", "diurnal", "sine", "replay", "closed"],
            )
        }
    };
    t.finish()?;
    Ok(Some(p))
}

/// `[[t, ops], ...]`, times strictly increasing, rates in range.
fn points(v: Option<&toml::Value>, field: &str) -> Result<Vec<(f64, f64)>, WorkloadError> {
    let Some(v) = v else { return err(field, "missing (required)") };
    let Some(arr) = v.as_array() else {
        return err(
            field,
            format!("expected an array of [time_s, ops] pairs, got {}", type_name(v)),
        );
    };
    if arr.is_empty() || arr.len() > REPLAY_POINTS_MAX {
        return err(field, format!("needs 1 to {REPLAY_POINTS_MAX} points, got {}", arr.len()));
    }
    let num = |x: &toml::Value| x.as_float().or_else(|| x.as_integer().map(|i| i as f64));
    let mut out = Vec::with_capacity(arr.len());
    for (i, p) in arr.iter().enumerate() {
        let pair = p.as_array().filter(|a| a.len() == 2);
        let (Some(t), Some(r)) = (pair.and_then(|a| num(&a[0])), pair.and_then(|a| num(&a[1])))
        else {
            return err(&format!("{field}[{i}]"), "expected [time_s, ops]");
        };
        check_point(&mut out, t, r)
            .map_err(|m| WorkloadError { field: format!("{field}[{i}]"), message: m })?;
    }
    Ok(out)
}

fn check_point(out: &mut Vec<(f64, f64)>, t: f64, r: f64) -> Result<(), String> {
    if !t.is_finite() || t < 0.0 {
        return Err(format!("time must be a number >= 0, got {t}"));
    }
    if let Some(&(prev, _)) = out.last() {
        if t <= prev {
            return Err(format!("times must increase, got {t} after {prev}"));
        }
    }
    if !(0.0..=RATE_OPS_MAX).contains(&r) {
        return Err(format!("rate must be between 0 and {RATE_OPS_MAX}, got {r}"));
    }
    out.push((t, r));
    Ok(())
}

/// A CSV of `time_s,ops` lines (a header line and `#` comments are skipped).
pub fn parse_rate_csv(text: &str) -> Result<Vec<(f64, f64)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split(',').map(str::trim);
        let (a, b) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""));
        let (Ok(t), Ok(r)) = (a.parse::<f64>(), b.parse::<f64>()) else {
            if out.is_empty() && n == 0 {
                continue; // header
            }
            return Err(format!("line {}: expected time_s,ops, got {line:?}", n + 1));
        };
        if out.len() == REPLAY_POINTS_MAX {
            return Err(format!("more than {REPLAY_POINTS_MAX} points"));
        }
        check_point(&mut out, t, r).map_err(|m| format!("line {}: {m}", n + 1))?;
    }
    if out.is_empty() {
        return Err("no time_s,ops lines".into());
    }
    Ok(out)
}

fn name_ok(field: &str, s: &str, allow_empty: bool) -> Result<(), WorkloadError> {
    if s.len() > NAME_BYTES_MAX {
        return err(field, format!("longer than {NAME_BYTES_MAX} bytes"));
    }
    if !allow_empty && s.is_empty() {
        return err(field, "must not be empty");
    }
    if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return err(field, format!("must not contain spaces or control characters, got {s:?}"));
    }
    Ok(())
}

fn application(f: &mut Fields<'_>, base_dir: Option<&Path>) -> Result<Application, WorkloadError> {
    let name = f
        .str_opt("name")?
        .ok_or(())
        .or_else(|_| err(&f.field("name"), "missing (required)"))?
        .to_string();
    name_ok(&f.field("name"), &name, false)?;
    if name.contains([',', '"', '.']) {
        // It is a CSV column and part of the interval log's tags.
        return err(&f.field("name"), format!("must not contain ',', '\"' or '.', got {name:?}"));
    }
    let client_name = f.str_opt("client_name")?.unwrap_or(&name).to_string();
    name_ok(&f.field("client_name"), &client_name, false)?;
    let key_prefix = match f.str_opt("key_prefix")? {
        Some(p) => p.to_string(),
        None => format!("{name}:"),
    };
    name_ok(&f.field("key_prefix"), &key_prefix, true)?;
    let keyspace = f.u64_in("keyspace", Some(100_000), 1, KEYSPACE_MAX)?;
    let connections = match f.u64_opt("connections")? {
        Some(c) if (1..=APP_CONNECTIONS_MAX).contains(&c) => Some(c),
        Some(c) => {
            return err(
                &f.field("connections"),
                format!("must be between 1 and {APP_CONNECTIONS_MAX}, got {c}"),
            )
        }
        None => None,
    };
    let key_distribution = key_distribution(f)?;
    let value_size = value_size(f)?;
    let ops = ops(f)?;
    let (multi_keys, scan) = match f.table_opt("multi_keys")? {
        None => ((1, 10), false),
        Some(mut t) => {
            let min = t.u64_in("min", Some(1), 1, MULTI_KEYS_MAX)?;
            let max = t.u64_in("max", Some(min.max(10)), 1, MULTI_KEYS_MAX)?;
            if max < min {
                return err(&t.field("max"), format!("must be at least min ({min}), got {max}"));
            }
            let scan = match t.get("consecutive") {
                None => false,
                Some(toml::Value::Boolean(b)) => *b,
                Some(v) => {
                    return err(
                        &t.field("consecutive"),
                        format!("expected true or false, got {}", type_name(v)),
                    )
                }
            };
            t.finish()?;
            ((min, max), scan)
        }
    };
    let rate = rate(f, base_dir)?;
    Ok(Application {
        name,
        client_name,
        key_prefix,
        keyspace,
        connections,
        key_distribution,
        value_size,
        ops,
        multi_keys,
        scan,
        rate,
    })
}

impl Workload {
    /// Parses a workload. `base_dir` resolves relative paths (replay CSVs).
    pub fn from_toml_str(text: &str, base_dir: Option<&Path>) -> Result<Workload, WorkloadError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| WorkloadError {
            field: String::new(),
            message: format!("not valid TOML: {}", e.to_string().trim_end()),
        })?;
        let mut f = Fields::new(String::new(), &table);
        let name = f.str_opt("name")?.unwrap_or("workload").to_string();
        let duration_s = match f.f64_opt("duration_s")? {
            Some(d) if d > 0.0 && d <= 1e7 => Some(d),
            Some(d) => {
                return err("duration_s", format!("must be between 0 and 1e7 seconds, got {d}"))
            }
            None => None,
        };
        let time_compression = f.f64_in("time_compression", Some(1.0), 1e-6, 1e9)?;
        let apps = match f.get("application") {
            Some(toml::Value::Array(a)) => a,
            Some(v) => {
                return err(
                    "application",
                    format!("expected [[application]] tables, got {}", type_name(v)),
                )
            }
            None => {
                return err("application", "missing: a workload needs at least one [[application]]")
            }
        };
        if apps.is_empty() || apps.len() > APPLICATIONS_MAX {
            return err(
                "application",
                format!("needs 1 to {APPLICATIONS_MAX} applications, got {}", apps.len()),
            );
        }
        let mut applications = Vec::with_capacity(apps.len());
        for (i, a) in apps.iter().enumerate() {
            let path = format!("application[{i}]");
            let Some(t) = a.as_table() else {
                return err(&path, format!("expected a table, got {}", type_name(a)));
            };
            let mut af = Fields::new(path, t);
            let app = application(&mut af, base_dir)?;
            af.finish()?;
            if let Some(prev) = applications.iter().position(|p: &Application| p.name == app.name) {
                return err(
                    &format!("application[{i}].name"),
                    format!("{:?} is also application[{prev}]'s name", app.name),
                );
            }
            applications.push(app);
        }
        f.finish()?;
        Ok(Workload { name, duration_s, time_compression, applications })
    }

    /// Reads a workload file.
    pub fn from_file(path: &Path) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|e| WorkloadError {
            field: String::new(),
            message: format!("cannot read workload file {}: {e}", path.display()),
        })?;
        Workload::from_toml_str(&text, path.parent()).map_err(|mut e| {
            e.message = format!("{} (in {})", e.message, path.display());
            e
        })
    }

    /// A preset by name, or a file path (anything ending in .toml or containing '/').
    pub fn load(spec: &str) -> Result<Workload, WorkloadError> {
        if let Some(text) = preset_toml(spec) {
            return Workload::from_toml_str(text, None);
        }
        if spec.ends_with(".toml") || spec.contains('/') || Path::new(spec).exists() {
            return Workload::from_file(Path::new(spec));
        }
        err(
            "--workload",
            format!(
                "{spec:?} is neither a preset nor a .toml file; presets: {}",
                PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            ),
        )
    }

    /// True when every application runs closed loop.
    pub fn is_closed(&self) -> bool {
        self.applications.iter().all(|a| a.rate.is_none())
    }
}

/// Built-in presets: (name, one-line description, TOML).
pub const PRESETS: &[(&str, &str, &str)] = &[
    ("ycsb-a", "YCSB A: update heavy, 50% read / 50% update, zipfian", YCSB_A),
    ("ycsb-b", "YCSB B: read mostly, 95% read / 5% update, zipfian", YCSB_B),
    ("ycsb-c", "YCSB C: read only, zipfian", YCSB_C),
    ("ycsb-d", "YCSB D: read latest, 95% read / 5% insert, latest", YCSB_D),
    (
        "ycsb-e",
        "YCSB E: short ranges, 95% scan (MGET of 1-100 consecutive keys) / 5% insert",
        YCSB_E,
    ),
    ("ycsb-f", "YCSB F: read-modify-write, 50% read / 50% RMW, zipfian", YCSB_F),
    (
        "diurnal-3apps",
        "three applications whose daily peaks fall at different hours; a day lasts 60 s",
        DIURNAL_3APPS,
    ),
    (
        "flash-crowd",
        "steady traffic, then one application's load jumps 20x on a few hot keys",
        FLASH_CROWD,
    ),
    ("mixgraph", "Meta's FAST'20 RocksDB workload model (db_bench mixgraph parameters)", MIXGRAPH),
];

pub fn preset_toml(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|p| p.0 == name).map(|p| p.2)
}

// YCSB core workloads: 1 KB records (10 fields of 100 bytes, stored as one value), the
// request distribution "zipfian" (YCSB's default, scrambled, theta 0.99). Closed loop.
const YCSB_A: &str = r#"
name = "ycsb-a"
[[application]]
name = "ycsb"
key_prefix = "user:"
keyspace = 100000
key_distribution = { type = "zipfian", theta = 0.99 }
value_size = 1000
ops = { get = 0.5, set = 0.5 }
"#;
const YCSB_B: &str = r#"
name = "ycsb-b"
[[application]]
name = "ycsb"
key_prefix = "user:"
keyspace = 100000
key_distribution = { type = "zipfian", theta = 0.99 }
value_size = 1000
ops = { get = 0.95, set = 0.05 }
"#;
const YCSB_C: &str = r#"
name = "ycsb-c"
[[application]]
name = "ycsb"
key_prefix = "user:"
keyspace = 100000
key_distribution = { type = "zipfian", theta = 0.99 }
value_size = 1000
ops = { get = 1.0 }
"#;
const YCSB_D: &str = r#"
name = "ycsb-d"
[[application]]
name = "ycsb"
key_prefix = "user:"
keyspace = 100000
key_distribution = { type = "latest", theta = 0.99 }
value_size = 1000
ops = { get = 0.95, insert = 0.05 }
"#;
const YCSB_E: &str = r#"
name = "ycsb-e"
[[application]]
name = "ycsb"
key_prefix = "user:"
keyspace = 100000
key_distribution = { type = "zipfian", theta = 0.99 }
value_size = 1000
ops = { mget = 0.95, insert = 0.05 }
multi_keys = { min = 1, max = 100, consecutive = true }
"#;
const YCSB_F: &str = r#"
name = "ycsb-f"
[[application]]
name = "ycsb"
key_prefix = "user:"
keyspace = 100000
key_distribution = { type = "zipfian", theta = 0.99 }
value_size = 1000
ops = { get = 0.5, rmw = 0.5 }
"#;
const DIURNAL_3APPS: &str = r#"
name = "diurnal-3apps"
duration_s = 60
# 1440 workload seconds per real second: a day lasts 60 s.
time_compression = 1440

# Interactive traffic, peaking mid-afternoon, busier on weekdays.
[[application]]
name = "web"
key_prefix = "web:"
keyspace = 200000
key_distribution = { type = "zipfian", theta = 0.9 }
value_size = { type = "uniform", min = 100, max = 400 }
ops = { get = 0.85, set = 0.1, mget = 0.05 }
multi_keys = { min = 2, max = 8 }
rate = { type = "diurnal", mean = 6000, daily_amplitude = 0.7, peak_hour = 14, weekly_amplitude = 0.1, peak_day = 2, noise = 0.05, seed = 1 }

# Nightly batch jobs: write heavy, peaking at 3 am.
[[application]]
name = "batch"
key_prefix = "batch:"
keyspace = 500000
key_distribution = "uniform"
value_size = { type = "uniform", min = 500, max = 2000 }
ops = { set = 0.6, mset = 0.1, get = 0.2, del = 0.1 }
multi_keys = { min = 4, max = 16 }
rate = { type = "diurnal", mean = 3000, daily_amplitude = 0.9, peak_hour = 3, noise = 0.05, seed = 2 }

# Social feed: evening peak, reads of recent items and counters.
[[application]]
name = "social"
key_prefix = "social:"
keyspace = 100000
key_distribution = { type = "hotspot", hot_keys_fraction = 0.05, hot_ops_fraction = 0.7 }
value_size = { type = "uniform", min = 50, max = 300 }
ops = { get = 0.7, incr = 0.2, set = 0.1 }
rate = { type = "diurnal", mean = 4000, daily_amplitude = 0.6, peak_hour = 21, noise = 0.05, seed = 3 }
"#;
const FLASH_CROWD: &str = r#"
name = "flash-crowd"
duration_s = 60

[[application]]
name = "shop"
key_prefix = "shop:"
keyspace = 200000
key_distribution = { type = "zipfian", theta = 0.8 }
value_size = { type = "uniform", min = 100, max = 1000 }
ops = { get = 0.9, set = 0.1 }
rate = { type = "constant", ops = 5000 }

# A promotion: 20x the traffic for 15 s, 90% of it on 0.1% of the keys.
[[application]]
name = "promo"
key_prefix = "promo:"
keyspace = 100000
key_distribution = { type = "hotspot", hot_keys_fraction = 0.001, hot_ops_fraction = 0.9 }
value_size = 200
ops = { get = 0.8, incr = 0.15, set = 0.05 }
rate = { type = "spike", base = 1000, peak = 20000, at_s = 20, duration_s = 15, rise_s = 2 }
"#;
// Cao et al., "Characterizing, Modeling, and Benchmarking RocksDB Key-Value Workloads at
// Facebook", FAST'20, and db_bench's mixgraph options published with it:
// -key_dist_a=0.002312 -key_dist_b=0.3467 -keyrange_dist_a=14.18 -keyrange_dist_b=-2.917
// -keyrange_dist_c=0.0164 -keyrange_dist_d=-0.08082 -keyrange_num=30 -value_k=0.2615
// -value_sigma=25.45 -iter_k=2.517 -iter_sigma=14.236 -mix_get_ratio=0.83
// -mix_put_ratio=0.14 -mix_seek_ratio=0.03 -sine_a=1000 -sine_b=0.000073 -sine_d=4500.
// A seek and its nexts become an MGET of 1-10 consecutive keys (RESP has no ordered scan); the keyspace is 1M keys
// instead of 50M; sine_b = 0.000073 rad/s is a period of one day, compressed to 60 s.
const MIXGRAPH: &str = r#"
name = "mixgraph"
duration_s = 60
time_compression = 1440

[[application]]
name = "graph"
key_prefix = "graph:"
keyspace = 1000000
key_distribution = { type = "mixgraph", key_dist_a = 0.002312, key_dist_b = 0.3467, keyrange_dist_a = 14.18, keyrange_dist_b = -2.917, keyrange_dist_c = 0.0164, keyrange_dist_d = -0.08082, keyrange_num = 30 }
value_size = { type = "pareto", k = 0.2615, sigma = 25.45, theta = 0, max = 1024 }
ops = { get = 0.83, set = 0.14, mget = 0.03 }
multi_keys = { min = 1, max = 10, consecutive = true }
rate = { type = "sine", a = 1000, b = 0.000073, c = 0, d = 4500 }
"#;
