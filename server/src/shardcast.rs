//! SHARDCAST: the administration of shards and partitions (SHARDS, PARTITIONS, HISTORY,
//! PREDICT, HELP; the layout subcommands SPLIT, MERGE, MOVE, POLICY, EXPLAIN are in
//! `layout_cmds`), and the health lines INFO shows.

use crate::admin::{lower, shard_summaries, unknown_subcommand};
use crate::commands::{int_arg, ERR_SYNTAX};
use crate::connection::Session;
use crate::layout_cmds;
use crate::shared::Shared;
use shardcast_engine::shard::partition_display;
use shardcast_engine::{Core, ShardSummary};
use std::fmt::Write as _;

/// Partitions SHARDCAST PARTITIONS lists without COUNT.
pub const PARTITIONS_REPLY_DEFAULT: usize = 20;
/// Most partitions SHARDCAST PARTITIONS lists (each shared shard tracks at most
/// `PARTITION_STATS_MAX` of its own anyway).
pub const PARTITIONS_REPLY_MAX: usize = 10_000;
/// Rows SHARDCAST HISTORY returns without COUNT, and at most.
pub const HISTORY_REPLY_DEFAULT: usize = 20;
pub const HISTORY_REPLY_MAX: usize = 100_000;

/// A shard's health and its reason, as the control thread judged it last (`unknown` before
/// its first tick).
pub fn shard_health(shared: &Shared, number: u64) -> (String, String) {
    let view = shared.control.get().map(|c| c.view());
    match view.as_ref().and_then(|v| v.shard(number)) {
        Some(sh) => (sh.health.to_string(), sh.reason.clone()),
        None => ("unknown".into(), String::new()),
    }
}

/// INFO shards' lines for the cores' health and load.
pub fn info_health(shared: &Shared, out: &mut String) {
    let Some(control) = shared.control.get() else { return };
    let view = control.view();
    for c in &view.cores {
        let _ = write!(
            out,
            "core{}:health={},busy_ratio={:.3},queue_depth={},queue_depth_max={},ops_per_sec={:.0},service_p99_us={:.1},reason={}\r\n",
            c.core,
            c.health,
            c.busy_ratio,
            c.queue_depth,
            c.queue_depth_max,
            c.ops_per_sec,
            c.service_ns[1] as f64 / 1000.0,
            c.reason.replace(['\r', '\n'], " "),
        );
    }
    let _ = write!(
        out,
        "telemetry:{}\r\ntick_ms:{}\r\nticks_deferred:{}\r\nhistory_partitions:{}\r\n",
        if shared.config.engine.telemetry.is_on() { "on" } else { "off" },
        view.tick_ms,
        view.ticks_deferred,
        control.with_history(|h| h.stats().partitions),
    );
}

/// A shard's partition as SHARDCAST SHARDS and INFO show it: the partition whose own shard it
/// is, or `(shared)`.
pub fn shard_partition(sh: &ShardSummary) -> String {
    sh.partition.as_deref().map_or_else(|| "(shared)".to_owned(), partition_display)
}

/// A shard's ranges as 32-hex-digit `lo-hi` pairs, comma-separated.
fn ranges_text(sh: &ShardSummary) -> String {
    let pairs: Vec<String> =
        sh.ranges.iter().map(|(lo, hi)| format!("{lo:032x}-{hi:032x}")).collect();
    pairs.join(",")
}

/// One partition's load as SHARDCAST PARTITIONS shows it.
struct PartitionRow {
    partition: Vec<u8>,
    /// Shards of its own (0: it lives in a shared shard).
    shards: usize,
    keys: Option<u64>,
    ops_per_sec: f64,
    reads: f64,
    writes: f64,
    deletes: f64,
    others: f64,
    /// For a partition in a shared shard, how much its ops/s may be overstated (top-k bound).
    error_per_sec: f64,
}

/// Partitions with shards of their own (their shards' figures summed), and the busiest of
/// those living in shared shards (from each shared shard's bounded top-k), busiest first.
fn partition_rows(shards: &[ShardSummary]) -> Vec<PartitionRow> {
    let mut rows: Vec<PartitionRow> = Vec::new();
    for sh in shards {
        match &sh.partition {
            Some(p) => {
                let row = match rows.iter_mut().position(|r| r.partition == *p && r.shards > 0) {
                    Some(i) => &mut rows[i],
                    None => {
                        rows.push(PartitionRow {
                            partition: p.clone(),
                            shards: 0,
                            keys: Some(0),
                            ops_per_sec: 0.0,
                            reads: 0.0,
                            writes: 0.0,
                            deletes: 0.0,
                            others: 0.0,
                            error_per_sec: 0.0,
                        });
                        rows.last_mut().expect("just pushed")
                    }
                };
                row.shards += 1;
                row.keys = row.keys.map(|k| k + sh.keys);
                row.ops_per_sec += sh.ops_per_sec;
            }
            None => {
                for l in &sh.top_partitions {
                    let per_sec = if l.ops > 0 { l.ops_per_sec / l.ops as f64 } else { 0.0 };
                    rows.push(PartitionRow {
                        partition: l.partition.clone(),
                        shards: 0,
                        keys: None,
                        ops_per_sec: l.ops_per_sec,
                        reads: l.reads as f64 * per_sec,
                        writes: l.writes as f64 * per_sec,
                        deletes: l.deletes as f64 * per_sec,
                        others: l.others as f64 * per_sec,
                        error_per_sec: l.error as f64 * per_sec,
                    });
                }
            }
        }
    }
    rows.sort_by(|a, b| {
        b.ops_per_sec.total_cmp(&a.ops_per_sec).then(a.partition.cmp(&b.partition))
    });
    rows
}

pub async fn run(core: &Core, shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    match lower(&args[1]).as_str() {
        "shards" if args.len() == 2 => {
            let shards = match shard_summaries(core).await {
                Ok(v) => v,
                Err(e) => return s.w.error(&crate::commands::error_text(&e)),
            };
            let epoch = core.map_epoch();
            s.w.array(shards.len());
            for sh in shards {
                s.w.map(14);
                s.w.bulk(b"partition");
                s.w.bulk(shard_partition(&sh).as_bytes());
                s.w.bulk(b"shard");
                s.w.int(sh.number as i64);
                s.w.bulk(b"ranges");
                s.w.bulk(ranges_text(&sh).as_bytes());
                s.w.bulk(b"core");
                s.w.int(sh.core as i64);
                s.w.bulk(b"keys");
                s.w.int(sh.keys as i64);
                s.w.bulk(b"reads");
                s.w.int(sh.reads as i64);
                s.w.bulk(b"writes");
                s.w.int((sh.writes + sh.deletes + sh.others) as i64);
                s.w.bulk(b"ops_per_sec");
                s.w.int(sh.ops_per_sec.round() as i64);
                s.w.bulk(b"epoch");
                s.w.int(epoch as i64);
                s.w.bulk(b"migrating");
                s.w.int(sh.migrating as i64);
                s.w.bulk(b"state");
                let state = sh.failure.as_deref().or(sh.refuses_writes.as_deref());
                s.w.bulk(state.unwrap_or("serving").as_bytes());
                s.w.bulk(b"top_partitions");
                let top: Vec<String> = sh
                    .top_partitions
                    .iter()
                    .map(|l| format!("{}={:.0}", partition_display(&l.partition), l.ops_per_sec))
                    .collect();
                s.w.bulk(top.join(",").as_bytes());
                let (health, reason) = shard_health(shared, sh.number);
                s.w.bulk(b"health");
                s.w.bulk(health.as_bytes());
                s.w.bulk(b"health_reason");
                s.w.bulk(reason.as_bytes());
            }
        }
        "history" if matches!(args.len(), 3 | 5) => history(shared, s, args),
        "predict" if matches!(args.len(), 2 | 3) => predict(shared, s, args.get(2)),
        "partitions" if matches!(args.len(), 2 | 4) => {
            let count = match count_arg(&args[2..], PARTITIONS_REPLY_DEFAULT, PARTITIONS_REPLY_MAX)
            {
                Ok(n) => n,
                Err(e) => return s.w.error(&e),
            };
            let shards = match shard_summaries(core).await {
                Ok(v) => v,
                Err(e) => return s.w.error(&crate::commands::error_text(&e)),
            };
            let mut rows = partition_rows(&shards);
            rows.truncate(count);
            s.w.array(rows.len());
            for r in rows {
                s.w.map(9);
                s.w.bulk(b"partition");
                s.w.bulk(partition_display(&r.partition).as_bytes());
                s.w.bulk(b"shards");
                s.w.int(r.shards as i64);
                s.w.bulk(b"keys");
                match r.keys {
                    Some(k) => s.w.int(k as i64),
                    None => s.w.null(),
                }
                s.w.bulk(b"ops_per_sec");
                s.w.int(r.ops_per_sec.round() as i64);
                s.w.bulk(b"reads_per_sec");
                s.w.int(r.reads.round() as i64);
                s.w.bulk(b"writes_per_sec");
                s.w.int(r.writes.round() as i64);
                s.w.bulk(b"deletes_per_sec");
                s.w.int(r.deletes.round() as i64);
                s.w.bulk(b"others_per_sec");
                s.w.int(r.others.round() as i64);
                s.w.bulk(b"error_per_sec");
                s.w.int(r.error_per_sec.round() as i64);
            }
        }
        sub @ ("split" | "merge") if args.len() == 3 => {
            let partition = partition_arg(&args[2]);
            layout_cmds::split_or_merge(core, shared, s, sub == "split", &partition).await
        }
        "move" if args.len() == 5 => {
            layout_cmds::move_shard(core, s, partition_arg(&args[2]), &args[3], &args[4]).await
        }
        "policy" if matches!(args.len(), 2 | 3) => layout_cmds::policy(shared, s, args.get(2)),
        "explain" if (2..=5).contains(&args.len()) => {
            // EXPLAIN [partition] [COUNT n]: a lone argument or one before COUNT n is the
            // partition.
            let rest = &args[2..];
            let (partition, count_args) = match rest.len() {
                1 | 3 => (Some(partition_arg(&rest[0])), &rest[1..]),
                _ => (None, rest),
            };
            let count = match count_arg(
                count_args,
                layout_cmds::EXPLAIN_REPLY_DEFAULT,
                layout_cmds::EXPLAIN_REPLY_MAX,
            ) {
                Ok(n) => n,
                Err(e) => return s.w.error(&e),
            };
            layout_cmds::explain(shared, s, partition, count)
        }
        "help" if args.len() == 2 => {
            let lines = [
                "SHARDCAST <subcommand> [<arg> ...]. Subcommands are:",
                "SHARDS",
                "    List every shard: its partition (or (shared)), number, position ranges, core,",
                "    keys, load, state, and a shared shard's busiest partitions.",
                "PARTITIONS [COUNT <count>]",
                "    The busiest partitions over the last second: those with shards of their own and",
                "    the busiest of those living in shared shards.",
                "HISTORY <partition> [COUNT <count>]",
                "    The partition's most recent load rows (one per tick) in the trace format, the",
                "    header first (docs/trace-format.md).",
                "PREDICT [<partition>]",
                "    The forecast peak of each partition (or one) over the horizon, in ops/s, with",
                "    its upper quantile and how it was made (docs/forecasting.md).",
                "SPLIT <partition>",
                "    One step more for the partition, online: carve it out of its shared shard into",
                "    a shard of its own, or cut its busiest shard at the load median. The new shard",
                "    goes to the least loaded other core. `(default)` names the default partition.",
                "MERGE <partition>",
                "    One step less: move the smaller of its least loaded adjacent pair of shards into",
                "    the other, or fold its last shard back into a shared shard.",
                "MOVE <partition> <shard> <core>",
                "    Move one of the partition's own shards, whole and online, to another core.",
                "POLICY [static|reactive|predictive]",
                "    Show or set how the allocator follows load (docs/allocator.md).",
                "EXPLAIN [<partition>] [COUNT <count>]",
                "    The allocator's newest decisions (and decisions not to act near a threshold)",
                "    with the figures behind them, newest first.",
                "HELP",
                "    Print this help.",
            ];
            s.w.lines(&lines);
        }
        "shards" | "split" | "merge" | "help" | "partitions" | "history" | "predict" | "move"
        | "policy" | "explain" => {
            let name = format!("shardcast|{}", lower(&args[1]));
            s.w.error(&format!("ERR wrong number of arguments for '{name}' command"))
        }
        _ => unknown_subcommand(&mut s.w, &args[1], "shardcast"),
    }
}

/// A partition named in an admin command: `(default)` (as SHARDCAST SHARDS shows it) or an
/// empty string name the default partition.
fn partition_arg(arg: &[u8]) -> Vec<u8> {
    if arg == b"(default)" {
        Vec::new()
    } else {
        arg.to_vec()
    }
}

/// An optional `COUNT n` (the caller checked there are 0 or 2 arguments): `default` without
/// it, at most `max`, Redis's error texts otherwise.
fn count_arg(args: &[Vec<u8>], default: usize, max: usize) -> Result<usize, String> {
    match args.first().map(|a| lower(a)) {
        None => Ok(default),
        Some(w) if w == "count" => match int_arg(&args[1])? {
            n if n > 0 => Ok((n as usize).min(max)),
            _ => Err("ERR value is out of range, must be positive".into()),
        },
        Some(_) => Err(ERR_SYNTAX.into()),
    }
}

/// SHARDCAST HISTORY <partition> [COUNT n]: the header, then the newest n tick rows, oldest
/// first, each a trace-format CSV line.
fn history(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let count = match count_arg(&args[3..], HISTORY_REPLY_DEFAULT, HISTORY_REPLY_MAX) {
        Ok(n) => n,
        Err(e) => return s.w.error(&e),
    };
    let Some(control) = shared.control.get() else {
        return s.w.error("ERR telemetry is not running");
    };
    let partition = partition_arg(&args[2]);
    let rows = control.with_history(|h| h.recent(&partition, count));
    let apps = shardcast_predictor::trace::app_columns(&rows);
    s.w.array(rows.len() + 1);
    let header = shardcast_predictor::trace::header(&apps);
    s.w.bulk(header.trim_end().as_bytes());
    for r in &rows {
        s.w.bulk(shardcast_predictor::trace::format_row(r, &apps).trim_end().as_bytes());
    }
}

/// SHARDCAST PREDICT [partition]: the last forecasts, highest upper quantile first.
fn predict(shared: &Shared, s: &mut Session, partition: Option<&Vec<u8>>) {
    let Some(control) = shared.control.get() else {
        return s.w.error("ERR telemetry is not running");
    };
    let f = control.forecasts();
    let wanted = partition.map(|p| partition_arg(p));
    let rows: Vec<_> =
        f.partitions.iter().filter(|p| wanted.as_ref().is_none_or(|w| &p.partition == w)).collect();
    let round = control.view();
    let secs = round.tick_ms.max(1) as f64 / 1000.0;
    let actual = |p: &[u8]| -> f64 {
        round
            .partitions
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| (r.reads + r.writes + r.deletes + r.other) as f64 / secs)
            .sum()
    };
    s.w.array(rows.len());
    for p in rows {
        s.w.map(9);
        s.w.bulk(b"partition");
        s.w.bulk(partition_display(&p.partition).as_bytes());
        s.w.bulk(b"actual_ops_per_sec");
        s.w.bulk(format!("{:.1}", actual(&p.partition)).as_bytes());
        s.w.bulk(b"peak_ops_per_sec");
        s.w.bulk(format!("{:.1}", p.peak).as_bytes());
        s.w.bulk(b"upper_ops_per_sec");
        s.w.bulk(format!("{:.1}", p.upper).as_bytes());
        s.w.bulk(b"horizon_s");
        s.w.bulk(format!("{}", f.horizon_ms as f64 / 1000.0).as_bytes());
        s.w.bulk(b"basis");
        s.w.bulk(p.basis.as_str().as_bytes());
        s.w.bulk(b"borrowed_from");
        s.w.bulk(p.borrowed_from.as_deref().map(partition_display).unwrap_or_default().as_bytes());
        s.w.bulk(b"history_steps");
        s.w.int(p.history_steps as i64);
        s.w.bulk(b"recent_mae_ops_per_sec");
        s.w.bulk(p.recent_mae.map(|m| format!("{m:.1}")).unwrap_or_default().as_bytes());
    }
}

/// INFO's `# Predictor` section.
pub fn info_predictor(shared: &Shared, out: &mut String) {
    let Some(control) = shared.control.get() else { return };
    let f = control.forecasts();
    let p = &shared.config.predict;
    let cold =
        f.partitions.iter().filter(|p| matches!(p.basis.as_str(), "similar" | "reactive")).count();
    let _ = write!(
        out,
        "# Predictor\r\npredictor_candidates:spar,gbt_global,last_peak\r\npredictor_step_s:{}\r\npredictor_day_s:{}\r\npredictor_horizon_s:{}\r\npredictor_partitions:{}\r\npredictor_cold_partitions:{}\r\npredictor_last_forecast_ms:{}\r\npredictor_forecast_duration_ms:{:.3}\r\npredictor_last_fit_ms:{}\r\npredictor_fit_duration_ms:{:.3}\r\npredictor_models:{}\r\n",
        p.step_ms as f64 / 1000.0,
        p.day_ms as f64 / 1000.0,
        p.horizon_ms as f64 / 1000.0,
        f.partitions.len(),
        cold,
        f.at_ms,
        f.forecast_ms,
        f.fit_at_ms,
        f.fit_ms,
        if f.models_loaded { "loaded" } else { "fitted" },
    );
    layout_cmds::info_allocator(shared, out);
    out.push_str("\r\n");
}
