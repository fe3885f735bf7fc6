//! `GET /api/state`: everything the dashboard draws, as one JSON document (its fields are
//! documented in docs/dashboard.md). Built from what the control thread already published
//! (the last round, the forecasts and their trail, the shard map, the explanation log, the
//! load history) and the engine's migration journal: nothing is measured or computed anew,
//! so it costs a few copies and one serialization.
//!
//! Query: `partition=NAME` (repeatable; `(default)` is the default partition) chooses the
//! charts, else the `CHARTS_DEFAULT` busiest partitions of the history; `resolution=tick`
//! (default: the recent full-resolution rows) or `minute` (the last `MINUTE_POINTS_MAX`
//! minutes); `decisions=N` explanations (default `DECISIONS_DEFAULT`, at most
//! `DECISIONS_MAX`).

use crate::control::allocation::build_view;
use crate::control::forecast::Forecasts;
use crate::control::{Control, ControlView};
use crate::shared::Shared;
use serde::Serialize;
use shardcast_engine::placement::shard_map::ShardMap;
use shardcast_engine::runtime::journal::{ChangedBy, MigrationEntry};
use shardcast_engine::shard::partition_display;
use shardcast_engine::Core;
use shardcast_predictor::allocator::{Explanation, Policy};
use shardcast_predictor::health::Health;
use shardcast_predictor::history::MINUTE_MS;
use std::collections::HashMap;

/// The format of the document; bumped when a field changes meaning or goes.
pub const STATE_VERSION: u32 = 1;
/// Partitions listed (the busiest of the last round first); `partitions_total` says how many
/// there were.
pub const PARTITIONS_MAX: usize = 1000;
/// Shards listed per core (the busiest first); `shards_total` says how many it has.
pub const SHARDS_PER_CORE_MAX: usize = 256;
/// Charts drawn when the request names no partition, and at most.
pub const CHARTS_DEFAULT: usize = 4;
pub const CHARTS_MAX: usize = 16;
/// Minute rows per chart at `resolution=minute` (a day).
pub const MINUTE_POINTS_MAX: usize = 1440;
/// Explanations returned by default, and at most.
pub const DECISIONS_DEFAULT: usize = 50;
pub const DECISIONS_MAX: usize = 1000;

#[derive(Serialize)]
pub struct State {
    pub version: u32,
    /// `ok`, `starting` (no telemetry round or shard map yet) or `degraded` (a core or shard
    /// failed); `messages` say what.
    pub status: &'static str,
    pub messages: Vec<String>,
    /// Unix ms of the end of the last telemetry round, and the round's length.
    pub at_ms: u64,
    pub tick_ms: u64,
    pub server: ServerInfo,
    pub policy: PolicyInfo,
    pub cores: Vec<CoreEntry>,
    pub partitions_total: usize,
    pub partitions: Vec<PartitionEntry>,
    pub charts: Vec<Chart>,
    pub migrations: Migrations,
    pub decisions: Vec<Decision>,
}

#[derive(Serialize)]
pub struct ServerInfo {
    pub version: &'static str,
    pub cores: usize,
    pub uptime_s: u64,
    pub shard_map_epoch: Option<u64>,
    /// Forecast publication: when, its step and horizon (ms), the last fit's time.
    pub forecast_at_ms: u64,
    pub forecast_step_ms: u64,
    pub forecast_horizon_ms: u64,
    pub forecast_fit_at_ms: u64,
}

#[derive(Serialize)]
pub struct PolicyInfo {
    pub current: &'static str,
    pub choices: [&'static str; 3],
    /// Whether this request may switch it (`POST /api/policy`).
    pub switchable: bool,
    /// Whether the server asks for a password (`requirepass`).
    pub auth_required: bool,
}

#[derive(Serialize)]
pub struct CoreEntry {
    pub core: usize,
    pub health: &'static str,
    pub reason: String,
    pub ticks_missed: u32,
    pub busy_ratio: f64,
    pub ops_per_sec: f64,
    pub shards_total: usize,
    pub shards: Vec<ShardEntry>,
}

#[derive(Serialize)]
pub struct ShardEntry {
    pub shard: u64,
    /// The partition whose own shard it is, or `(shared)`.
    pub partition: String,
    pub shared: bool,
    pub ops_per_sec: f64,
    pub keys: u64,
    pub bytes: u64,
    pub p99_us: f64,
    /// healthy, slow, overloaded, failed, or unknown (no telemetry for it yet).
    pub health: &'static str,
    pub reason: String,
    pub migrating: bool,
}

#[derive(Serialize)]
pub struct PartitionEntry {
    pub name: String,
    pub ops_per_sec: f64,
    /// Its own shards (0 while it lives in a shared shard).
    pub shards: usize,
    /// The shared shard it lives in, when it has no own shard.
    pub home: Option<u64>,
    pub forecast_peak: Option<f64>,
    pub forecast_upper: Option<f64>,
    pub model: Option<String>,
    /// Whether the load history keeps it (only those have charts).
    pub charted: bool,
}

#[derive(Serialize)]
pub struct Chart {
    pub partition: String,
    pub resolution: &'static str,
    /// `[unix ms, ops/s]`, oldest first.
    pub load: Vec<(u64, f64)>,
    /// `[unix ms, peak, upper]`: what the forecaster expected, at that time, for the next
    /// horizon (ops/s).
    pub forecast: Vec<(u64, f64, f64)>,
    /// The allocator's changes of the partition in the chart's window.
    pub decisions: Vec<Mark>,
    /// Its own shards now.
    pub shards: usize,
}

#[derive(Serialize)]
pub struct Mark {
    pub at_ms: u64,
    pub action: String,
    pub change: String,
    /// `allocator` (its decision, from the explanation log) or `operator` (a SHARDCAST
    /// command's migration, from the migration journal).
    pub by: &'static str,
}

#[derive(Serialize)]
pub struct Migrations {
    pub running: Option<MigrationJson>,
    pub recent: Vec<MigrationJson>,
    pub completed: u64,
    pub aborted: u64,
}

#[derive(Serialize)]
pub struct MigrationJson {
    pub kind: &'static str,
    pub partition: String,
    pub source: u64,
    pub target: u64,
    pub source_core: usize,
    pub target_core: usize,
    pub started_ms: u64,
    pub ms: f64,
    pub keys: u64,
    pub bytes: u64,
    pub mb_per_sec: f64,
    pub pause_ms: Option<f64>,
    pub state: &'static str,
    pub error: Option<String>,
    /// `operator` or `allocator`.
    pub by: &'static str,
}

#[derive(Serialize)]
pub struct Decision {
    pub at_ms: u64,
    pub partition: String,
    pub policy: String,
    pub action: String,
    pub change: String,
    pub reason: String,
    pub rejected: String,
    pub observed: f64,
    pub demand: f64,
    pub forecast_peak: Option<f64>,
    pub forecast_upper: Option<f64>,
    pub model: String,
    pub shards: usize,
    pub wanted: usize,
}

/// What a request asks of the document.
#[derive(Debug, Default, PartialEq)]
pub struct Query {
    pub partitions: Vec<Vec<u8>>,
    pub minutes: bool,
    pub decisions: usize,
}

impl Query {
    pub fn parse(query: &[(String, Vec<u8>)]) -> Result<Query, String> {
        let mut q = Query { decisions: DECISIONS_DEFAULT, ..Default::default() };
        for (k, v) in query {
            match (k.as_str(), v.as_slice()) {
                ("partition", b"(default)") => q.partitions.push(Vec::new()),
                ("partition", name) => q.partitions.push(name.to_vec()),
                ("resolution", b"tick") => q.minutes = false,
                ("resolution", b"minute") => q.minutes = true,
                ("resolution", other) => {
                    let other = String::from_utf8_lossy(other);
                    return Err(format!("resolution '{other}': use tick or minute"));
                }
                ("decisions", n) => {
                    q.decisions = std::str::from_utf8(n)
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n <= DECISIONS_MAX)
                        .ok_or_else(|| format!("decisions must be 0 to {DECISIONS_MAX}"))?;
                }
                (other, _) => return Err(format!("unknown parameter '{other}'")),
            }
        }
        if q.partitions.len() > CHARTS_MAX {
            return Err(format!("at most {CHARTS_MAX} partitions"));
        }
        Ok(q)
    }
}

fn health_str(h: Health) -> &'static str {
    h.as_str()
}

/// The document for `query`; `switchable` says whether this request may switch the policy.
pub fn build(
    core: &Core,
    shared: &Shared,
    control: &Control,
    query: &Query,
    switchable: bool,
) -> State {
    let round = control.view();
    let forecasts = control.forecasts();
    let layout = control.layout();
    let cores = core.cores();
    let mut messages = Vec::new();
    let mut status = "ok";
    if round.at_ms == 0 {
        status = "starting";
        messages.push(format!(
            "waiting for the first telemetry round (one every {} ms)",
            control.config.tick_ms
        ));
    }
    let map = match &layout {
        Some(m) => m.clone(),
        None => {
            status = "starting";
            messages.push("the shard manager has not published the shard map yet".into());
            core.shard_map()
        }
    };
    for c in round.cores.iter().filter(|c| c.health == Health::Failed) {
        status = if status == "starting" { status } else { "degraded" };
        messages.push(format!("core {} is failed: {}", c.core, c.reason));
    }
    for s in round.shards.iter().filter(|s| s.health == Health::Failed) {
        status = if status == "starting" { status } else { "degraded" };
        messages.push(format!(
            "shard {} ({}, core {}) has failed: {}",
            s.number,
            s.partition_label(),
            s.core,
            s.failure.as_deref().unwrap_or(&s.reason)
        ));
    }
    let (policy, log) = control.with_allocator(|a| {
        let log = a.log.recent(None, query.decisions);
        (a.settings.policy, log)
    });
    let charted: Vec<Vec<u8>> = control.with_history(|h| h.partitions());
    let partitions = partitions(&map, &round, &forecasts, cores, &charted);
    let chart_names: Vec<Vec<u8>> = if query.partitions.is_empty() {
        partitions
            .iter()
            .filter(|p| p.charted)
            .take(CHARTS_DEFAULT)
            .map(|p| p.name_bytes.clone())
            .collect()
    } else {
        query.partitions.clone()
    };
    let charts = chart_names
        .iter()
        .map(|p| chart(core, control, &map, &round, p, query.minutes, &forecasts))
        .collect();
    let journal = &core.migration_counters().journal;
    let counters = core.migration_counters();
    let load = std::sync::atomic::Ordering::Relaxed;
    State {
        version: STATE_VERSION,
        status,
        messages,
        at_ms: round.at_ms,
        tick_ms: control.config.tick_ms,
        server: ServerInfo {
            version: env!("CARGO_PKG_VERSION"),
            cores,
            uptime_s: shared.started.elapsed().as_secs(),
            shard_map_epoch: layout.as_ref().map(|m| m.epoch),
            forecast_at_ms: forecasts.at_ms,
            forecast_step_ms: forecasts.step_ms,
            forecast_horizon_ms: forecasts.horizon_ms,
            forecast_fit_at_ms: forecasts.fit_at_ms,
        },
        policy: PolicyInfo {
            current: policy.as_str(),
            choices: [Policy::Static, Policy::Reactive, Policy::Predictive].map(Policy::as_str),
            switchable,
            auth_required: shared.auth_required(),
        },
        cores: core_entries(&map, &round, cores),
        partitions_total: partitions.len(),
        partitions: partitions.into_iter().take(PARTITIONS_MAX).map(|p| p.entry).collect(),
        charts,
        migrations: Migrations {
            running: journal.running().map(migration_json),
            recent: journal.recent().into_iter().map(migration_json).collect(),
            completed: counters.completed.load(load),
            aborted: counters.aborted.load(load),
        },
        decisions: log.into_iter().map(decision).collect(),
    }
}

struct Listed {
    name_bytes: Vec<u8>,
    charted: bool,
    entry: PartitionEntry,
}

/// Every partition the allocator sees (loaded now, owning shards, or forecast), busiest first.
fn partitions(
    map: &ShardMap,
    round: &ControlView,
    forecasts: &Forecasts,
    cores: usize,
    charted: &[Vec<u8>],
) -> Vec<Listed> {
    let view = build_view(map, round, forecasts, cores, None);
    let mut listed: Vec<Listed> = view
        .partitions
        .into_iter()
        .map(|p| {
            let charted = charted.binary_search(&p.partition).is_ok();
            Listed {
                charted,
                entry: PartitionEntry {
                    name: partition_display(&p.partition),
                    ops_per_sec: p.ops_per_sec,
                    shards: p.own.len(),
                    home: p.home,
                    forecast_peak: p.forecast.as_ref().map(|f| f.peak),
                    forecast_upper: p.forecast.as_ref().map(|f| f.upper),
                    model: p.forecast.map(|f| f.model),
                    charted,
                },
                name_bytes: p.partition,
            }
        })
        .collect();
    listed.sort_by(|a, b| {
        b.entry
            .ops_per_sec
            .total_cmp(&a.entry.ops_per_sec)
            .then_with(|| b.entry.shards.cmp(&a.entry.shards))
            .then_with(|| a.name_bytes.cmp(&b.name_bytes))
    });
    listed
}

/// Every core with the shards the map places on it (the map is the truth; the round adds
/// load and health).
fn core_entries(map: &ShardMap, round: &ControlView, cores: usize) -> Vec<CoreEntry> {
    let seen: HashMap<u64, &crate::control::ShardView> =
        round.shards.iter().map(|s| (s.number, s)).collect();
    let mut entries: Vec<CoreEntry> = (0..cores)
        .map(|c| {
            let v = round.cores.get(c);
            CoreEntry {
                core: c,
                health: v.map_or("unknown", |v| health_str(v.health)),
                reason: v.map(|v| v.reason.clone()).unwrap_or_default(),
                ticks_missed: v.map_or(0, |v| v.ticks_missed),
                busy_ratio: v.map_or(0.0, |v| v.busy_ratio),
                ops_per_sec: v.map_or(0.0, |v| v.ops_per_sec),
                shards_total: 0,
                shards: Vec::new(),
            }
        })
        .collect();
    for place in map.shards() {
        let Some(entry) = entries.get_mut(place.core(cores)) else { continue };
        let s = seen.get(&place.number);
        entry.shards.push(ShardEntry {
            shard: place.number,
            partition: place
                .partition
                .as_deref()
                .map_or_else(|| "(shared)".to_owned(), partition_display),
            shared: place.partition.is_none(),
            ops_per_sec: s.map_or(0.0, |s| s.ops_per_sec),
            keys: s.map_or(0, |s| s.keys),
            bytes: s.map_or(0, |s| s.used_bytes),
            p99_us: s.map_or(0.0, |s| s.service_ns[1] as f64 / 1000.0),
            health: s.map_or("unknown", |s| health_str(s.health)),
            reason: s.map(|s| s.reason.clone()).unwrap_or_default(),
            migrating: s.is_some_and(|s| s.migrating),
        });
    }
    for e in &mut entries {
        e.shards_total = e.shards.len();
        e.shards
            .sort_by(|a, b| b.ops_per_sec.total_cmp(&a.ops_per_sec).then(a.shard.cmp(&b.shard)));
        e.shards.truncate(SHARDS_PER_CORE_MAX);
    }
    entries
}

/// The chart's load points `(end of interval, ops/s)` from rows `(start, ops)` of `span_ms`
/// intervals, oldest first: an interval without a row had no ops (the history records only
/// partitions with load), so a gap drops to zero and stays there until the next row, and the
/// line ends at `now_ms` (at most three points a row).
fn load_points(
    rows: impl Iterator<Item = (u64, u64)>,
    span_ms: u64,
    now_ms: u64,
) -> Vec<(u64, f64)> {
    let rate = |ops: u64| ops as f64 * 1000.0 / span_ms as f64;
    let mut out: Vec<(u64, f64)> = Vec::new();
    let zero_from = |out: &mut Vec<(u64, f64)>, from_end: u64, until_end: u64| {
        // The first empty interval ends at `from_end + span`, the last at `until_end`.
        if until_end > from_end {
            out.push((from_end + span_ms, 0.0));
            if until_end > from_end + span_ms {
                out.push((until_end, 0.0));
            }
        }
    };
    let mut last_end: Option<u64> = None;
    for (ts, ops) in rows {
        let end = ts + span_ms;
        if let Some(prev) = last_end {
            zero_from(&mut out, prev, ts);
        }
        out.push((end, rate(ops)));
        last_end = Some(end);
    }
    if let Some(prev) = last_end {
        zero_from(&mut out, prev, now_ms);
    }
    out
}

fn chart(
    core: &Core,
    control: &Control,
    map: &ShardMap,
    round: &ControlView,
    partition: &[u8],
    minutes: bool,
    forecasts: &Forecasts,
) -> Chart {
    let tick_ms = control.config.tick_ms.max(1);
    let rows = control.with_history(|h| {
        if minutes {
            // The last day's complete minutes (the minute in progress would read low; a
            // quiet partition's rows may reach back days, which are not drawn).
            let now_minute = round.at_ms - round.at_ms % MINUTE_MS;
            let from = now_minute.saturating_sub(MINUTE_POINTS_MAX as u64 * MINUTE_MS);
            h.minutes(Some(partition))
                .into_iter()
                .filter(|r| r.ts_ms >= from && r.ts_ms + MINUTE_MS <= now_minute)
                .collect::<Vec<_>>()
        } else {
            h.ticks(Some(partition))
        }
    });
    let span_ms = if minutes { MINUTE_MS } else { tick_ms };
    let load = load_points(
        rows.iter().map(|r| (r.ts_ms, r.ops())),
        span_ms,
        round.at_ms - round.at_ms % span_ms,
    );
    let since = rows.first().map_or(round.at_ms, |r| r.ts_ms);
    let mut forecast: Vec<(u64, f64, f64)> = control
        .with_trail(|t| t.points(partition, since))
        .into_iter()
        .map(|p| (p.at_ms, p.peak, p.upper))
        .collect();
    if forecast.is_empty() {
        // Not in the trail (not among its busiest): the newest forecast, if any.
        if let Some(f) = forecasts.partitions.iter().find(|f| f.partition == partition) {
            forecast.push((forecasts.at_ms, f.peak, f.upper));
        }
    }
    let mut decisions: Vec<Mark> = control.with_allocator(|a| {
        a.log
            .recent(Some(partition), DECISIONS_MAX)
            .into_iter()
            .filter(|e| e.action != "none" && e.at_ms >= since)
            .map(|e| Mark { at_ms: e.at_ms, action: e.action, change: e.change, by: "allocator" })
            .collect()
    });
    // Changes an operator made (SHARDCAST SPLIT, MERGE, MOVE), from the migration journal
    // (the allocator's are its decisions, above).
    let journal = &core.migration_counters().journal;
    for m in journal.recent().into_iter().chain(journal.running()) {
        if m.by == ChangedBy::Operator && m.partition == partition && m.started_ms >= since {
            let change = format!(
                "{} {} -> {} (core {} -> {}), {}",
                m.kind,
                m.source,
                m.target,
                m.source_core,
                m.target_core,
                m.state.as_str()
            );
            decisions.push(Mark {
                at_ms: m.started_ms,
                action: m.kind.into(),
                change,
                by: m.by.as_str(),
            });
        }
    }
    decisions.sort_by_key(|d| d.at_ms);
    Chart {
        partition: partition_display(partition),
        resolution: if minutes { "minute" } else { "tick" },
        load,
        forecast,
        decisions,
        shards: map.partition_shards(partition).len(),
    }
}

fn migration_json(m: MigrationEntry) -> MigrationJson {
    MigrationJson {
        kind: m.kind,
        partition: partition_display(&m.partition),
        source: m.source,
        target: m.target,
        source_core: m.source_core,
        target_core: m.target_core,
        started_ms: m.started_ms,
        ms: m.micros as f64 / 1000.0,
        keys: m.keys,
        bytes: m.bytes,
        mb_per_sec: m.mb_per_sec(),
        pause_ms: m.pause_micros.map(|us| us as f64 / 1000.0),
        state: m.state.as_str(),
        error: m.state.error().map(str::to_owned),
        by: m.by.as_str(),
    }
}

fn decision(e: Explanation) -> Decision {
    Decision {
        at_ms: e.at_ms,
        partition: partition_display(&e.partition),
        policy: e.policy,
        action: e.action,
        change: e.change,
        reason: e.reason,
        rejected: e.rejected,
        observed: e.observed,
        demand: e.demand,
        forecast_peak: e.forecast_peak,
        forecast_upper: e.forecast_upper,
        model: e.model,
        shards: e.shards,
        wanted: e.wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_points_drop_to_zero_over_gaps_and_run_to_now() {
        // Rows of 500 ms intervals starting at 0, 500, then 2,000; now is 3,500.
        let got = load_points([(0, 10), (500, 20), (2000, 5)].into_iter(), 500, 3500);
        assert_eq!(
            got,
            vec![
                (500, 20.0),
                (1000, 40.0),
                (1500, 0.0),
                (2000, 0.0),
                (2500, 10.0),
                (3000, 0.0),
                (3500, 0.0)
            ]
        );
        // Adjacent rows up to now: nothing added.
        assert_eq!(load_points([(0, 1), (500, 1)].into_iter(), 500, 1000).len(), 2);
        // One empty interval: one zero point.
        assert_eq!(load_points([(0, 1), (1000, 1)].into_iter(), 500, 1500)[1], (1000, 0.0));
        assert!(load_points(std::iter::empty(), 500, 1000).is_empty());
    }

    fn q(pairs: &[(&str, &str)]) -> Result<Query, String> {
        let v: Vec<(String, Vec<u8>)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        Query::parse(&v)
    }

    #[test]
    fn queries_parse_and_bad_ones_say_why() {
        assert_eq!(q(&[]).unwrap(), Query { decisions: DECISIONS_DEFAULT, ..Default::default() });
        let got = q(&[("partition", "user"), ("partition", "(default)"), ("resolution", "minute")])
            .unwrap();
        assert_eq!(got.partitions, vec![b"user".to_vec(), vec![]]);
        assert!(got.minutes);
        assert_eq!(q(&[("decisions", "7")]).unwrap().decisions, 7);
        assert!(q(&[("decisions", "x")]).unwrap_err().contains("decisions must be"));
        assert!(q(&[("decisions", "1000000")]).is_err());
        assert!(q(&[("resolution", "hour")]).unwrap_err().contains("use tick or minute"));
        assert!(q(&[("nope", "1")]).unwrap_err().contains("unknown parameter 'nope'"));
        let many: Vec<(&str, &str)> = (0..=CHARTS_MAX).map(|_| ("partition", "a")).collect();
        assert!(q(&many).unwrap_err().contains("at most"));
    }
}
