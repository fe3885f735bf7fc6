//! `GET /metrics`: Prometheus text format (version 0.0.4). Every series, with its labels:
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `shardcast_shard_ops_total` | counter | shard, core, partition, kind | ops since start, kind read/write/delete/other |
//! | `shardcast_shard_bytes_total` | counter | shard, core, partition, direction | key+value bytes in, value bytes out |
//! | `shardcast_shard_ops_per_second` | gauge | shard, core, partition | over the last tick |
//! | `shardcast_shard_keys` | gauge | shard, core, partition | keys held |
//! | `shardcast_shard_memory_bytes` | gauge | shard, core, partition | key and value bytes held |
//! | `shardcast_shard_distinct_keys` | gauge | shard, core, partition | distinct keys touched in the last tick (HyperLogLog) |
//! | `shardcast_shard_service_seconds` | summary | shard, core, partition, quantile | op service time: last tick's quantiles, `_sum`/`_count` since start |
//! | `shardcast_shard_health` | gauge | shard, core, partition, state | 1 for the shard's state |
//! | `shardcast_core_busy_ratio` | gauge | core | share of the last tick the executor was busy |
//! | `shardcast_core_queue_depth` | gauge | core | requests in progress at the tick's end |
//! | `shardcast_core_queue_depth_max` | gauge | core | most requests in progress during the tick |
//! | `shardcast_core_ops_per_second` | gauge | core | over the last tick |
//! | `shardcast_core_health` | gauge | core, state | 1 for the core's state |
//! | `shardcast_partition_ops_per_second` | gauge | partition, kind | over the last tick |
//! | `shardcast_partition_keys` | gauge | partition | keys held |
//! | `shardcast_partition_distinct_keys` | gauge | partition | distinct keys touched in the last tick |
//! | `shardcast_partition_top_key_share` | gauge | partition | share of the ops that went to the hottest key |
//! | `shardcast_partition_app_ops_per_second` | gauge | partition, app | per client application (`CLIENT SETNAME`) |
//! | `shardcast_partition_forecast_ops_per_second` | gauge | partition, bound | the forecast peak over the horizon (`bound="peak"`) and its upper quantile (`bound="upper"`) |
//! | `shardcast_migrations_total` | counter | outcome | migrations completed / aborted |
//! | `shardcast_migration_bytes_total` | counter | | bytes moved by migrations |
//! | `shardcast_migration_keys_total` | counter | | keys moved by migrations |
//! | `shardcast_shard_map_epoch` | gauge | | the shard map's epoch |
//! | `shardcast_telemetry_ticks_deferred_total` | counter | | core ticks folded into the next because the queue to the control thread was full (no count is lost) |
//! | `shardcast_history_partitions` | gauge | | partitions in the load history |
//! | `shardcast_history_rows` | gauge | resolution | rows kept |
//! | `shardcast_command_duration_seconds` | histogram | cmd, le | command latency (as `LATENCY HISTOGRAM`): buckets at powers of two from 1.024 µs to 1.07 s; `_sum` counts each value at its bucket's middle |
//! | `shardcast_command_calls_total` | counter | cmd | calls (`INFO commandstats`) |
//! | `shardcast_command_failed_calls_total` | counter | cmd | calls that answered an error |
//! | `shardcast_command_rejected_calls_total` | counter | cmd | calls refused before they ran |
//! | `shardcast_command_seconds_total` | counter | cmd | the server's time in the command (`usec`) |
//! | `shardcast_error_replies_total` | counter | code | error replies by code (`INFO errorstats`) |
//!
//! Partitions are the busiest `METRICS_PARTITIONS_MAX` of the last tick, so a server with
//! 100,000 partitions does not answer with millions of series.

use crate::control::{Control, ControlView};
use crate::shared::Shared;
use shardcast_engine::shard::partition_display;
use shardcast_engine::Core;
use shardcast_predictor::health::Health;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Partitions shown (the busiest of the last tick).
pub const METRICS_PARTITIONS_MAX: usize = 200;

/// A gauge family: name, help, and how to read the value.
type Gauge<T> = (&'static str, &'static str, fn(&T) -> f64);

const HEALTH_STATES: [Health; 4] =
    [Health::Healthy, Health::Slow, Health::Overloaded, Health::Failed];

/// A label value escaped as the text format wants (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", label(v));
            }
            self.0.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.0, " {value}");
        } else {
            let _ = writeln!(self.0, " NaN");
        }
    }
}

pub(super) fn render(core: &Core, shared: &Shared, control: &Control) -> String {
    let view = control.view();
    let mut o = Out(String::with_capacity(64 * 1024));
    shards(&mut o, &view);
    cores(&mut o, &view);
    partitions(&mut o, &view);
    forecasts(&mut o, control);
    let m = core.migration_counters();
    o.family(
        "shardcast_migrations_total",
        "counter",
        "Migrations (splits, merges, carve-outs, fold-backs) by outcome.",
    );
    o.sample(
        "shardcast_migrations_total",
        &[("outcome", "completed")],
        m.completed.load(Ordering::Relaxed) as f64,
    );
    o.sample(
        "shardcast_migrations_total",
        &[("outcome", "aborted")],
        m.aborted.load(Ordering::Relaxed) as f64,
    );
    o.family("shardcast_migration_bytes_total", "counter", "Bytes moved by migrations.");
    o.sample("shardcast_migration_bytes_total", &[], m.bytes_total.load(Ordering::Relaxed) as f64);
    o.family("shardcast_migration_keys_total", "counter", "Keys moved by migrations.");
    o.sample("shardcast_migration_keys_total", &[], m.keys_total.load(Ordering::Relaxed) as f64);
    let memory = core.memory();
    o.family(
        "shardcast_used_memory_bytes",
        "gauge",
        "Bytes of keys and values (INFO used_memory).",
    );
    o.sample("shardcast_used_memory_bytes", &[], memory.total() as f64);
    o.family("shardcast_maxmemory_bytes", "gauge", "The maxmemory limit; 0 = none.");
    o.sample("shardcast_maxmemory_bytes", &[], shared.eviction().maxmemory_bytes() as f64);
    o.family(
        "shardcast_expired_keys_total",
        "counter",
        "Keys removed because their time to live ended (INFO expired_keys).",
    );
    o.sample("shardcast_expired_keys_total", &[], memory.expired_total() as f64);
    o.family(
        "shardcast_evicted_keys_total",
        "counter",
        "Keys evicted under maxmemory by maxmemory-policy (INFO evicted_keys).",
    );
    o.sample("shardcast_evicted_keys_total", &[], memory.evicted_total() as f64);
    o.family("shardcast_shard_map_epoch", "gauge", "Epoch of the shard map.");
    o.sample("shardcast_shard_map_epoch", &[], core.map_epoch() as f64);
    o.family(
        "shardcast_telemetry_ticks_deferred_total",
        "counter",
        "Core ticks folded into the next because the control thread's queue was full (no count is lost).",
    );
    o.sample("shardcast_telemetry_ticks_deferred_total", &[], view.ticks_deferred as f64);
    let stats = control.with_history(|h| h.stats());
    o.family("shardcast_history_partitions", "gauge", "Partitions in the load history.");
    o.sample("shardcast_history_partitions", &[], stats.partitions as f64);
    o.family("shardcast_history_rows", "gauge", "Rows kept in the load history, by resolution.");
    o.sample("shardcast_history_rows", &[("resolution", "tick")], stats.tick_rows as f64);
    o.sample("shardcast_history_rows", &[("resolution", "minute")], stats.minute_rows as f64);
    commands(&mut o, shared);
    o.0
}

/// Bucket edges of `shardcast_command_duration_seconds`: 2^10 .. 2^30 ns, the edges of the
/// server's histograms (so each bucket is exact).
const COMMAND_BUCKET_EDGES_NS: std::ops::RangeInclusive<u32> = 10..=30;

/// The per-command series, for the commands called since start (or CONFIG RESETSTAT).
fn commands(o: &mut Out, shared: &Shared) {
    use crate::stats::commands::{all_slots, merged, slot_name};
    let rows: Vec<_> = all_slots()
        .map(|slot| (slot_name(slot), merged(&shared.observe.commands, slot)))
        .filter(|(_, r)| r.calls + r.rejected > 0)
        .collect();
    let h = "shardcast_command_duration_seconds";
    o.family(
        h,
        "histogram",
        "Command latency: the wall time of the batch that held it, until its reply was ready.",
    );
    for (name, row) in &rows {
        for power in COMMAND_BUCKET_EDGES_NS {
            let edge = 1u64 << power;
            let le = format!("{}", edge as f64 / 1e9);
            o.sample(
                &format!("{h}_bucket"),
                &[("cmd", name), ("le", &le)],
                row.latency.count_below(edge) as f64,
            );
        }
        let total = row.latency.total() as f64;
        o.sample(&format!("{h}_bucket"), &[("cmd", name), ("le", "+Inf")], total);
        o.sample(&format!("{h}_sum"), &[("cmd", name)], row.latency.approx_sum_ns() / 1e9);
        o.sample(&format!("{h}_count"), &[("cmd", name)], total);
    }
    let counters: [Gauge<crate::stats::commands::CommandRow>; 4] = [
        ("shardcast_command_calls_total", "Commands run.", |r| r.calls as f64),
        ("shardcast_command_failed_calls_total", "Commands that answered an error.", |r| {
            r.failed as f64
        }),
        (
            "shardcast_command_rejected_calls_total",
            "Commands refused before they ran (arity, authentication, OOM).",
            |r| r.rejected as f64,
        ),
        (
            "shardcast_command_seconds_total",
            "The server's time in each command (a batch's time shared among its commands).",
            |r| r.ns as f64 / 1e9,
        ),
    ];
    for (name, help, value) in counters {
        o.family(name, "counter", help);
        for (cmd, row) in &rows {
            o.sample(name, &[("cmd", cmd)], value(row));
        }
    }
    o.family(
        "shardcast_error_replies_total",
        "counter",
        "Error replies by their code (INFO errorstats).",
    );
    for (code, count) in shared.observe.errors.by_code() {
        o.sample("shardcast_error_replies_total", &[("code", &code)], count as f64);
    }
}

fn shards(o: &mut Out, view: &ControlView) {
    let ids: Vec<(String, String, String)> = view
        .shards
        .iter()
        .map(|s| (s.number.to_string(), s.core.to_string(), s.partition_label()))
        .collect();
    let base = |i: usize| -> [(&str, &str); 3] {
        [("shard", &ids[i].0), ("core", &ids[i].1), ("partition", &ids[i].2)]
    };
    o.family(
        "shardcast_shard_ops_total",
        "counter",
        "Ops executed by the shard since the server started, by kind.",
    );
    for (i, s) in view.shards.iter().enumerate() {
        for (kind, n) in ["read", "write", "delete", "other"].iter().zip(s.totals.ops) {
            let b = base(i);
            o.sample("shardcast_shard_ops_total", &[b[0], b[1], b[2], ("kind", kind)], n as f64);
        }
    }
    o.family(
        "shardcast_shard_bytes_total",
        "counter",
        "Key and value bytes received (in) and value bytes sent (out) by the shard.",
    );
    for (i, s) in view.shards.iter().enumerate() {
        let b = base(i);
        o.sample(
            "shardcast_shard_bytes_total",
            &[b[0], b[1], b[2], ("direction", "in")],
            s.totals.bytes_in as f64,
        );
        o.sample(
            "shardcast_shard_bytes_total",
            &[b[0], b[1], b[2], ("direction", "out")],
            s.totals.bytes_out as f64,
        );
    }
    let gauges: [Gauge<crate::control::ShardView>; 4] = [
        ("shardcast_shard_ops_per_second", "Ops per second over the last tick.", |s| s.ops_per_sec),
        ("shardcast_shard_keys", "Keys held.", |s| s.keys as f64),
        ("shardcast_shard_memory_bytes", "Key and value bytes held.", |s| s.used_bytes as f64),
        (
            "shardcast_shard_distinct_keys",
            "Distinct keys touched in the last tick (HyperLogLog estimate).",
            |s| s.distinct_keys as f64,
        ),
    ];
    for (name, help, get) in gauges {
        o.family(name, "gauge", help);
        for (i, s) in view.shards.iter().enumerate() {
            o.sample(name, &base(i), get(s));
        }
    }
    o.family(
        "shardcast_shard_service_seconds",
        "summary",
        "Op service time on the shard: quantiles over the last tick, sum and count since start.",
    );
    for (i, s) in view.shards.iter().enumerate() {
        let b = base(i);
        for (q, ns) in ["0.5", "0.99", "0.999"].iter().zip(s.service_ns) {
            o.sample(
                "shardcast_shard_service_seconds",
                &[b[0], b[1], b[2], ("quantile", q)],
                ns as f64 / 1e9,
            );
        }
        o.sample("shardcast_shard_service_seconds_sum", &b, s.totals.service_sum_ns / 1e9);
        o.sample("shardcast_shard_service_seconds_count", &b, s.totals.service_count as f64);
    }
    o.family(
        "shardcast_shard_health",
        "gauge",
        "1 for the shard's health state (healthy, slow, overloaded, failed).",
    );
    for (i, s) in view.shards.iter().enumerate() {
        let b = base(i);
        for h in HEALTH_STATES {
            let v = (s.health == h) as u8 as f64;
            o.sample("shardcast_shard_health", &[b[0], b[1], b[2], ("state", h.as_str())], v);
        }
    }
}

fn cores(o: &mut Out, view: &ControlView) {
    let gauges: [Gauge<crate::control::CoreView>; 4] = [
        (
            "shardcast_core_busy_ratio",
            "Share of the last tick the core's executor was busy.",
            |c| c.busy_ratio,
        ),
        (
            "shardcast_core_queue_depth",
            "Requests in progress on the core at the end of the last tick.",
            |c| c.queue_depth as f64,
        ),
        (
            "shardcast_core_queue_depth_max",
            "Most requests in progress on the core during the last tick.",
            |c| c.queue_depth_max as f64,
        ),
        (
            "shardcast_core_ops_per_second",
            "Ops per second executed by the core over the last tick.",
            |c| c.ops_per_sec,
        ),
    ];
    for (name, help, get) in gauges {
        o.family(name, "gauge", help);
        for c in &view.cores {
            o.sample(name, &[("core", &c.core.to_string())], get(c));
        }
    }
    o.family(
        "shardcast_core_health",
        "gauge",
        "1 for the core's health state (healthy, slow, overloaded, failed).",
    );
    for c in &view.cores {
        for h in HEALTH_STATES {
            let core = c.core.to_string();
            o.sample(
                "shardcast_core_health",
                &[("core", &core), ("state", h.as_str())],
                (c.health == h) as u8 as f64,
            );
        }
    }
}

fn partitions(o: &mut Out, view: &ControlView) {
    let rows = &view.partitions[..view.partitions.len().min(METRICS_PARTITIONS_MAX)];
    let names: Vec<String> = rows.iter().map(|r| partition_display(&r.partition)).collect();
    let secs = view.tick_ms.max(1) as f64 / 1000.0;
    o.family(
        "shardcast_partition_ops_per_second",
        "gauge",
        "Ops per second of the partition over the last tick, by kind.",
    );
    for (r, name) in rows.iter().zip(&names) {
        for (kind, n) in
            [("read", r.reads), ("write", r.writes), ("delete", r.deletes), ("other", r.other)]
        {
            o.sample(
                "shardcast_partition_ops_per_second",
                &[("partition", name), ("kind", kind)],
                n as f64 / secs,
            );
        }
    }
    let gauges: [Gauge<shardcast_predictor::trace::TraceRow>; 3] = [
        ("shardcast_partition_keys", "Keys the partition holds.", |r| r.keys as f64),
        (
            "shardcast_partition_distinct_keys",
            "Distinct keys of the partition touched in the last tick.",
            |r| r.distinct_keys as f64,
        ),
        (
            "shardcast_partition_top_key_share",
            "Share of the partition's ops that went to its hottest key in the last tick.",
            |r| r.top_key_share,
        ),
    ];
    for (name, help, get) in gauges {
        o.family(name, "gauge", help);
        for (r, p) in rows.iter().zip(&names) {
            o.sample(name, &[("partition", p)], get(r));
        }
    }
    o.family("shardcast_partition_app_ops_per_second", "gauge", "Ops per second of the partition from each client application (CLIENT SETNAME; empty: unnamed clients).");
    for (r, p) in rows.iter().zip(&names) {
        for (app, n) in &r.apps {
            let app = String::from_utf8_lossy(app);
            o.sample(
                "shardcast_partition_app_ops_per_second",
                &[("partition", p), ("app", &app)],
                *n as f64 / secs,
            );
        }
    }
}

fn forecasts(o: &mut Out, control: &Control) {
    let f = control.forecasts();
    let name = "shardcast_partition_forecast_ops_per_second";
    o.family(name, "gauge", "Forecast peak ops/s of the partition over the predictor's horizon, and its upper quantile.");
    for p in f.partitions.iter().take(METRICS_PARTITIONS_MAX) {
        let partition = partition_display(&p.partition);
        o.sample(name, &[("partition", &partition), ("bound", "peak")], p.peak);
        o.sample(name, &[("partition", &partition), ("bound", "upper")], p.upper);
    }
}
