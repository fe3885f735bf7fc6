//! SHARDCAST's layout subcommands: SPLIT and MERGE (one step more or less, chosen by the
//! predictor's `allocator::manual`), MOVE (a whole shard to a core), POLICY (the allocator's
//! policy at run time), EXPLAIN (the allocator's decisions and why), and INFO's allocator
//! lines.

use crate::commands::{error_text, int_arg};
use crate::connection::Session;
use crate::control::allocation::{build_view, layout_change, partition_state};
use crate::control::forecast::Forecasts;
use crate::shared::Shared;
use shardcast_engine::runtime::journal::ChangedBy;
use shardcast_engine::shard::partition_display;
use shardcast_engine::{Core, LayoutChange};
use shardcast_predictor::allocator::{manual, Explanation, Policy, View};
use std::fmt::Write as _;

/// Explanations SHARDCAST EXPLAIN returns without COUNT, and at most.
pub const EXPLAIN_REPLY_DEFAULT: usize = 10;
pub const EXPLAIN_REPLY_MAX: usize = shardcast_predictor::allocator::explain::EXPLAIN_LOG_MAX;

/// The allocator's view of now: the engine's map with the last round's load (and
/// `partition`, even if it had no load).
fn current_view(core: &Core, shared: &Shared, partition: &[u8]) -> View {
    let (round, forecasts) = match shared.control.get() {
        Some(c) => (c.view(), c.forecasts()),
        None => (Default::default(), std::sync::Arc::new(Forecasts::default())),
    };
    let map = core.shard_map();
    let mut view = build_view(&map, &round, &forecasts, core.cores(), None);
    if view.partition(partition).is_none() {
        view.partitions.push(partition_state(&map, partition.to_vec(), 0.0, None));
        view.refresh_lookup();
    }
    if round.cores.is_empty() {
        // Before the first round: every core counts as alive and idle.
        for c in &mut view.cores {
            (c.alive, c.busy) = (true, 0.0);
        }
    }
    view
}

/// SHARDCAST SPLIT|MERGE <partition>.
pub async fn split_or_merge(core: &Core, shared: &Shared, s: &mut Session, split: bool, p: &[u8]) {
    let view = current_view(core, shared, p);
    let chosen = if split { manual::split(&view, p) } else { manual::merge(&view, p) };
    let action = match chosen {
        Ok(a) => a,
        Err(e) => return s.w.error(&format!("ERR {e}")),
    };
    match core.change_layout(layout_change(&action), ChangedBy::Operator).await {
        Ok(_) => s.w.simple("OK"),
        Err(e) => s.w.error(&error_text(&e)),
    }
}

/// SHARDCAST MOVE <partition> <shard> <core>.
pub async fn move_shard(core: &Core, s: &mut Session, p: Vec<u8>, shard: &[u8], to: &[u8]) {
    let (shard, to_core) = match (int_arg(shard), int_arg(to)) {
        (Ok(a), Ok(b)) if a >= 0 && b >= 0 => (a as u64, b as usize),
        (Err(e), _) | (_, Err(e)) => return s.w.error(&e),
        _ => return s.w.error("ERR value is out of range, must be positive"),
    };
    let change = LayoutChange::Move { partition: p, shard, to_core };
    match core.change_layout(change, ChangedBy::Operator).await {
        Ok(_) => s.w.simple("OK"),
        Err(e) => s.w.error(&error_text(&e)),
    }
}

/// SHARDCAST POLICY [static|reactive|predictive].
pub fn policy(shared: &Shared, s: &mut Session, name: Option<&Vec<u8>>) {
    let Some(control) = shared.control.get() else {
        return s.w.error("ERR telemetry is not running");
    };
    match name {
        None => {
            let p = control.with_allocator(|a| a.settings.policy);
            s.w.bulk(p.as_str().as_bytes())
        }
        Some(n) => match Policy::parse(&String::from_utf8_lossy(n)) {
            Some(p) => {
                control.with_allocator(|a| a.set_policy(p));
                tracing::info!(policy = p.as_str(), "allocator policy set");
                s.w.simple("OK")
            }
            None => s.w.error("ERR policy must be static, reactive or predictive"),
        },
    }
}

/// SHARDCAST EXPLAIN [partition] [COUNT n]: the newest explanations, newest first.
pub fn explain(shared: &Shared, s: &mut Session, partition: Option<Vec<u8>>, count: usize) {
    let Some(control) = shared.control.get() else {
        return s.w.error("ERR telemetry is not running");
    };
    let entries = control.with_allocator(|a| a.log.recent(partition.as_deref(), count));
    s.w.array(entries.len());
    for e in entries {
        write_explanation(s, &e);
    }
}

fn write_explanation(s: &mut Session, e: &Explanation) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    let fields: [(&str, String); 19] = [
        ("at_ms", e.at_ms.to_string()),
        ("partition", partition_display(&e.partition)),
        ("policy", e.policy.clone()),
        ("action", e.action.clone()),
        ("change", e.change.clone()),
        ("reason", e.reason.clone()),
        ("rejected", e.rejected.clone()),
        ("observed_ops_per_sec", format!("{:.1}", e.observed)),
        ("demand_ops_per_sec", format!("{:.1}", e.demand)),
        ("forecast_peak_ops_per_sec", opt(e.forecast_peak)),
        ("forecast_upper_ops_per_sec", opt(e.forecast_upper)),
        ("quantile", format!("{}", e.quantile)),
        ("model", e.model.clone()),
        ("core_capacity_ops_per_sec", format!("{:.1}", e.core_capacity)),
        ("split_cost", format!("{:.3}", e.split_cost)),
        ("shards", e.shards.to_string()),
        ("wanted_shards", e.wanted.to_string()),
        ("split_threshold_ops_per_sec", format!("{:.1}", e.split_at)),
        ("merge_threshold_ops_per_sec", format!("{:.1}", e.merge_at)),
    ];
    s.w.map(fields.len());
    for (k, v) in &fields {
        s.w.bulk(k.as_bytes());
        s.w.bulk(v.as_bytes());
    }
}

/// INFO's allocator lines (in `# Predictor`).
pub fn info_allocator(shared: &Shared, out: &mut String) {
    let Some(control) = shared.control.get() else { return };
    control.with_allocator(|a| {
        let cost = a.capacity.split_cost();
        let caps: Vec<String> = (0..shared.config.engine.cores)
            .map(|c| a.capacity.core(c).map_or_else(|| "unmeasured".into(), |v| format!("{v:.0}")))
            .collect();
        let counts: Vec<String> =
            a.log.counts().into_iter().map(|(k, n)| format!("{k}={n}")).collect();
        let last = a.log.recent(None, 1).into_iter().find(|e| e.action != "none");
        let _ = write!(
            out,
            "allocator_policy:{}\r\nallocator_target_utilization:{}\r\nallocator_merge_delay_s:{}\r\nallocator_migrations_per_minute_max:{}\r\nallocator_core_capacity_ops:{}\r\nallocator_core_capacity_source:{}\r\nallocator_split_cost:{:.3}\r\nallocator_split_cost_source:{}\r\nallocator_migration_bytes_per_sec:{:.0}\r\nallocator_decisions:{}\r\nallocator_changes_done:{}\r\nallocator_changes_failed:{}\r\nallocator_in_flight:{}\r\nallocator_explanations:{}\r\nallocator_explanations_by_action:{}\r\nallocator_last_change:{}\r\n",
            a.settings.policy.as_str(),
            a.settings.target_utilization,
            a.settings.merge_delay_ms as f64 / 1000.0,
            a.settings.migrations_per_minute_max,
            caps.join(","),
            if a.capacity.is_pinned() { "pinned" } else { "measured" },
            cost.remote_extra,
            if cost.measured { "measured" } else { "prior" },
            a.migration_rate(),
            a.decided,
            a.done,
            a.failed,
            a.in_flight().map(|x| x.to_string()).unwrap_or_default(),
            a.log.recorded,
            counts.join(","),
            last.map(|e| e.change.replace(['\r', '\n'], " ")).unwrap_or_default(),
        );
    });
}
