//! The commands and INFO sections that show what the server measured (`stats`): SLOWLOG,
//! LATENCY, MEMORY, MONITOR, and `INFO commandstats | latencystats | errorstats`. Replies
//! follow Redis 7's formats, so redis-cli and the tools built on them read them unchanged.

use crate::admin::{lower, unknown_subcommand};
use crate::commands::{error_text, int_arg, ERR_SYNTAX};
use crate::connection::Session;
use crate::resp::Writer;
use crate::shared::Shared;
use crate::stats::commands::{all_slots, merged, slot_name, CommandRow, Slot};
use crate::stats::percentile_text;
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::Core;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// SLOWLOG GET's count unless given (Redis's).
pub const SLOWLOG_GET_DEFAULT: usize = 10;

/// SLOWLOG GET [count] | LEN | RESET | HELP
pub fn slowlog(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let log = &shared.observe.slowlog;
    match (lower(&args[1]).as_str(), args.len()) {
        ("get", 2 | 3) => {
            let count = match args.get(2).map(|a| int_arg(a)) {
                None => Some(SLOWLOG_GET_DEFAULT),
                Some(Ok(-1)) => None,
                Some(Ok(n)) if n >= 0 => Some(n as usize),
                Some(_) => return s.w.error("ERR count should be greater than or equal to -1"),
            };
            let entries = log.newest(count);
            s.w.array(entries.len());
            for e in entries {
                s.w.array(6);
                s.w.int(e.id as i64);
                s.w.int(e.unix_s as i64);
                s.w.int(e.duration_us as i64);
                s.w.array(e.args.len());
                for a in &e.args {
                    s.w.bulk(a);
                }
                s.w.bulk(e.client_addr.as_bytes());
                s.w.bulk(&e.client_name);
            }
        }
        ("len", 2) => s.w.int(log.len() as i64),
        ("reset", 2) => {
            log.reset();
            s.w.ok();
        }
        ("help", 2) => s.w.lines(&[
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Print this help.",
        ]),
        (sub @ ("get" | "len" | "reset" | "help"), _) => {
            s.w.error(&format!("ERR wrong number of arguments for 'slowlog|{sub}' command"))
        }
        _ => unknown_subcommand(&mut s.w, &args[1], "slowlog"),
    }
}

/// LATENCY LATEST | HISTORY event | RESET [event ...] | HISTOGRAM [command ...] | HELP
pub fn latency(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let events = &shared.observe.events;
    match (lower(&args[1]).as_str(), args.len()) {
        ("latest", 2) => {
            let all = events.all();
            s.w.array(all.len());
            for (name, series) in all {
                let last = series.samples.back().copied().unwrap_or(
                    shardcast_engine::telemetry::LatencySample { unix_s: 0, ms: 0 },
                );
                s.w.array(4);
                s.w.bulk(name.as_bytes());
                s.w.int(last.unix_s as i64);
                s.w.int(last.ms as i64);
                s.w.int(series.max_ms as i64);
            }
        }
        ("history", 3) => {
            let name = String::from_utf8_lossy(&args[2]);
            let samples = events.history(&name).map(|h| h.samples).unwrap_or_default();
            s.w.array(samples.len());
            for sample in samples {
                s.w.array(2);
                s.w.int(sample.unix_s as i64);
                s.w.int(sample.ms as i64);
            }
        }
        ("reset", _) => {
            let names: Vec<String> =
                args[2..].iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let n = events.reset(if names.is_empty() { None } else { Some(&names) });
            s.w.int(n as i64);
        }
        ("histogram", _) => histogram(shared, &mut s.w, &args[2..]),
        ("help", 2) => s.w.lines(&[
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
                "    If no commands are specified then all histograms are replied.",
                "HELP",
                "    Prints this help.",
                "Events: command, fast-command (commands over latency-monitor-threshold ms),",
                "    log-fsync, snapshot, migration-cutover, backup-cut (the engine's pauses).",
            ]),
        (sub @ ("latest" | "history" | "help"), _) => {
            s.w.error(&format!("ERR wrong number of arguments for 'latency|{sub}' command"))
        }
        _ => unknown_subcommand(&mut s.w, &args[1], "latency"),
    }
}

/// The rows `names` asks for (every row with `names` empty), each with its container's
/// subcommands, in table order; rows never called are left out.
fn rows_named(shared: &Shared, names: &[Vec<u8>]) -> Vec<(Slot, CommandRow)> {
    let wanted: Vec<String> = names.iter().map(|n| lower(n)).collect();
    all_slots()
        .filter(|slot| {
            let name = slot_name(*slot);
            wanted.is_empty()
                || wanted.iter().any(|w| {
                    name == w || name.split_once('|').is_some_and(|(container, _)| container == w)
                })
        })
        .map(|slot| (slot, merged(&shared.observe.commands, slot)))
        .filter(|(_, row)| row.latency.total() > 0)
        .collect()
}

/// LATENCY HISTOGRAM: per command, `calls` and `histogram_usec` (cumulative counts at each
/// power of two µs), as Redis 7 replies.
fn histogram(shared: &Shared, w: &mut Writer, names: &[Vec<u8>]) {
    let rows = rows_named(shared, names);
    w.map(rows.len());
    for (slot, row) in rows {
        w.bulk(slot_name(slot).as_bytes());
        w.map(2);
        w.bulk(b"calls");
        w.int(row.latency.total() as i64);
        w.bulk(b"histogram_usec");
        let cdf = row.latency.power_of_two_cdf();
        w.map(cdf.len());
        for (us, count) in cdf {
            w.int(us as i64);
            w.int(count as i64);
        }
    }
}

/// `# Commandstats`, `# Errorstats` and `# Latencystats`, as INFO asks.
pub fn info_sections(shared: &Shared, out: &mut String, want: &dyn Fn(&str) -> bool) {
    if want("commandstats") {
        out.push_str("# Commandstats\r\n");
        for slot in all_slots() {
            let row = merged(&shared.observe.commands, slot);
            if row.calls + row.rejected + row.failed == 0 {
                continue;
            }
            let usec = row.ns / 1000;
            let per_call =
                if row.calls == 0 { 0.0 } else { row.ns as f64 / 1000.0 / row.calls as f64 };
            let _ = write!(
                out,
                "cmdstat_{}:calls={},usec={usec},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                slot_name(slot),
                row.calls,
                row.rejected,
                row.failed
            );
        }
        out.push_str("\r\n");
    }
    if want("errorstats") {
        out.push_str("# Errorstats\r\n");
        for (code, count) in shared.observe.errors.by_code() {
            let _ = write!(out, "errorstat_{code}:count={count}\r\n");
        }
        out.push_str("\r\n");
    }
    if want("latencystats") {
        out.push_str("# Latencystats\r\n");
        let percentiles = shared.observe.percentiles();
        for (slot, row) in rows_named(shared, &[]) {
            let _ = write!(out, "latency_percentiles_usec_{}:", slot_name(slot));
            for (i, p) in percentiles.iter().enumerate() {
                let us = row.latency.quantile_ns(p / 100.0) as f64 / 1000.0;
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(out, "{sep}p{}={us:.3}", percentile_text(*p));
            }
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
    }
}

/// MEMORY USAGE key [SAMPLES n] | STATS | DOCTOR | MALLOC-STATS | PURGE | HELP
pub async fn memory(core: &Core, shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    match (lower(&args[1]).as_str(), args.len()) {
        ("usage", n) if n == 3 || n == 5 => {
            if n == 5 {
                if lower(&args[3]) != "samples" {
                    return s.w.error(ERR_SYNTAX);
                }
                // Strings have no parts to sample: the count is checked, then not needed.
                if let Err(e) = int_arg(&args[4]) {
                    return s.w.error(&e);
                }
            }
            match core.execute_one(Op::Object { key: args[2].clone() }).await {
                Ok(Reply::Object { bytes, .. }) => s.w.int(bytes as i64),
                Ok(_) => s.w.null(),
                Err(e) => s.w.error(&error_text(&e)),
            }
        }
        ("usage", _) => s.w.error(ERR_SYNTAX),
        ("stats", 2) => memory_stats(core, shared, s).await,
        ("doctor", 2) => {
            let report = memory_doctor(core, shared).await;
            s.w.bulk(report.as_bytes());
        }
        ("malloc-stats", 2) => s.w.bulk(b"Stats not supported for the current allocator"),
        ("purge", 2) => s.w.ok(),
        ("help", 2) => s.w.lines(&[
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value, as maxmemory counts it.",
            "HELP",
            "    Print this help.",
        ]),
        (sub @ ("stats" | "doctor" | "malloc-stats" | "purge" | "help"), _) => {
            s.w.error(&format!("ERR wrong number of arguments for 'memory|{sub}' command"))
        }
        _ => unknown_subcommand(&mut s.w, &args[1], "memory"),
    }
}

/// What MEMORY STATS and DOCTOR read.
struct MemoryFacts {
    /// Keys, values and per-entry overhead, as `maxmemory` counts them.
    dataset: u64,
    per_core: Vec<u64>,
    keys: Option<u64>,
    rss: u64,
    peak_rss: u64,
    maxmemory: u64,
}

async fn memory_facts(core: &Core, shared: &Shared) -> MemoryFacts {
    let keys =
        crate::admin::shard_summaries(core).await.ok().map(|v| v.iter().map(|s| s.keys).sum());
    let (rss, peak_rss) = process_memory();
    MemoryFacts {
        dataset: core.used_memory(),
        per_core: (0..core.cores()).map(|c| core.memory().core_used(c)).collect(),
        keys,
        rss,
        peak_rss,
        maxmemory: shared.eviction().maxmemory_bytes(),
    }
}

/// (resident now, resident at its peak), bytes, from /proc/self/status.
fn process_memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// MEMORY STATS: Redis's field names where the meaning is the same (`keys.count`,
/// `keys.bytes-per-key`, `dataset.bytes`, `dataset.percentage`, `fragmentation`); the rest
/// are this server's own (per-core bytes, resident memory from /proc).
async fn memory_stats(core: &Core, shared: &Shared, s: &mut Session) {
    let f = memory_facts(core, shared).await;
    let mut fields: Vec<(String, Value)> = vec![
        ("peak.rss".into(), Value::Int(f.peak_rss)),
        ("rss.bytes".into(), Value::Int(f.rss)),
        ("maxmemory".into(), Value::Int(f.maxmemory)),
        ("clients.normal.count".into(), Value::Int(shared.connected_clients() as u64)),
    ];
    for (c, bytes) in f.per_core.iter().enumerate() {
        fields.push((format!("core.{c}.dataset.bytes"), Value::Int(*bytes)));
    }
    if let Some(keys) = f.keys {
        fields.push(("keys.count".into(), Value::Int(keys)));
        fields.push((
            "keys.bytes-per-key".into(),
            Value::Int(f.dataset.checked_div(keys).unwrap_or(0)),
        ));
    }
    fields.push(("dataset.bytes".into(), Value::Int(f.dataset)));
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    fields.push(("dataset.percentage".into(), Value::Float(100.0 * ratio(f.dataset, f.rss))));
    fields.push(("rss-overhead.bytes".into(), Value::Int(f.rss.saturating_sub(f.dataset))));
    fields.push(("fragmentation".into(), Value::Float(ratio(f.rss, f.dataset))));
    s.w.map(fields.len());
    for (name, value) in fields {
        s.w.bulk(name.as_bytes());
        match value {
            Value::Int(v) => s.w.int(v as i64),
            Value::Float(v) => s.w.bulk(format!("{v:.4}").as_bytes()),
        }
    }
}

enum Value {
    Int(u64),
    Float(f64),
}

/// Data below which MEMORY DOCTOR has nothing to judge.
const DOCTOR_DATASET_MIN_BYTES: u64 = 5 * 1024 * 1024;

/// MEMORY DOCTOR: a few checks on the figures MEMORY STATS shows, said plainly.
async fn memory_doctor(core: &Core, shared: &Shared) -> String {
    let f = memory_facts(core, shared).await;
    let mb = |b: u64| b as f64 / 1048576.0;
    if f.dataset < DOCTOR_DATASET_MIN_BYTES {
        return format!(
            "This instance holds little data ({:.1} MB of keys and values): there is nothing to diagnose yet.",
            mb(f.dataset)
        );
    }
    let mut issues = Vec::new();
    if f.maxmemory > 0 && f.dataset * 10 >= f.maxmemory * 9 {
        issues.push(format!(
            "* Near maxmemory: the data uses {:.1} MB of {:.1} MB; writes will evict or be refused (maxmemory-policy {}).",
            mb(f.dataset),
            mb(f.maxmemory),
            shared.eviction().policy().name()
        ));
    }
    if f.rss > f.dataset * 3 / 2 && f.rss - f.dataset > 100 * 1024 * 1024 {
        issues.push(format!(
            "* High overhead: the process is {:.1} MB resident for {:.1} MB of data ({:.2}x). Freed memory the allocator keeps, large buffers or many connections are the usual causes.",
            mb(f.rss),
            mb(f.dataset),
            f.rss as f64 / f.dataset as f64
        ));
    }
    if f.peak_rss > f.rss * 3 / 2 {
        issues.push(format!(
            "* Peak: the process was {:.1} MB resident at its peak, {:.1} MB now; the peak may have been a large load, a migration or a backup.",
            mb(f.peak_rss),
            mb(f.rss)
        ));
    }
    let busiest = f.per_core.iter().copied().max().unwrap_or(0);
    let cores = f.per_core.len().max(1) as u64;
    if cores > 1 && busiest > 2 * f.dataset / cores && busiest > DOCTOR_DATASET_MIN_BYTES {
        issues.push(format!(
            "* Skew: one core holds {:.1} MB of the {:.1} MB; its partitions may be worth splitting (SHARDCAST SPLIT).",
            mb(busiest),
            mb(f.dataset)
        ));
    }
    if issues.is_empty() {
        format!(
            "No memory issue found: {:.1} MB of data in {:.1} MB resident. I can only judge what happens inside this process.",
            mb(f.dataset),
            mb(f.rss)
        )
    } else {
        format!("Memory issues found:\n{}", issues.join("\n"))
    }
}

/// MONITOR: this connection streams every command from now on (`monitor::serve`, which
/// subscribes once the reply is written, so a connection that ends first leaves no feed).
pub fn monitor(s: &mut Session) {
    // Where its input ends is set by the connection, which knows the command's bytes.
    s.monitor_from = Some(0);
    s.client.monitor.store(true, Ordering::Relaxed);
    s.w.ok();
}
