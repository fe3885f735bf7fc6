//! `--out DIR`: the figures as CSV (`summary.csv`, `timeline.csv`, `partitions.csv`,
//! `explain.csv`: every change decided and the allocator's last notes) and as
//! SVG plots (`load_forecast.svg`, `shards.svg`, `p99.svg`), self-contained, no scripts.

use super::report::PolicyReport;
use super::workload::Workload;
use super::PolicyKind;
use std::fmt::Write as _;
use std::path::Path;

/// Points a plotted line keeps at most (longer series are thinned to each bucket's maximum).
pub const PLOT_POINTS_MAX: usize = 2_000;

/// One plotted line: its label, its points, and whether it is dashed.
type Line = (String, Vec<(f64, f64)>, bool);

const COLOURS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// Writes every file into `dir` (created if missing).
pub fn write(dir: &Path, reports: &[PolicyReport], workload: &Workload) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let put = |name: &str, text: String| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))
    };
    let mut summary = String::from(
        "policy,slo_violation_minutes,p99_us,shard_hours,core_hours,bytes_migrated,splits,merges,moves,failed,forecast_mape_pct\n",
    );
    for r in reports {
        let _ = writeln!(
            summary,
            "{},{:.1},{:.1},{:.3},{:.3},{},{},{},{},{},{}",
            r.kind.as_str(),
            r.violation_minutes,
            r.p99_us,
            r.shard_hours,
            r.core_hours,
            r.bytes_migrated,
            r.splits,
            r.merges,
            r.moves,
            r.failed,
            r.mape_pct().map_or(String::new(), |m| format!("{m:.2}"))
        );
    }
    put("summary.csv", summary)?;
    let mut timeline = String::from("policy,step,minute,load_ops,p99_us,shards,busy_max\n");
    for r in reports {
        for t in &r.timeline {
            let _ = writeln!(
                timeline,
                "{},{},{:.1},{:.1},{:.1},{},{:.3}",
                r.kind.as_str(),
                t.step,
                t.step as f64 * workload.step_ms as f64 / 60_000.0,
                t.load_ops,
                t.p99_us,
                t.shards,
                t.busy_max
            );
        }
    }
    put("timeline.csv", timeline)?;
    let mut parts = String::from(
        "policy,partition,step,load_ops,forecast_peak_ops,forecast_upper_ops,shards,p99_us\n",
    );
    let name = |p: usize| String::from_utf8_lossy(&workload.partitions[p].name).into_owned();
    for r in reports {
        for x in &r.partitions {
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
            let _ = writeln!(
                parts,
                "{},{},{},{:.1},{},{},{},{:.1}",
                r.kind.as_str(),
                name(x.partition),
                x.step,
                x.load_ops,
                opt(x.forecast_peak),
                opt(x.forecast_upper),
                x.shards,
                x.p99_us
            );
        }
    }
    put("partitions.csv", parts)?;
    let mut explain =
        String::from("policy,minute,partition,action,change,demand_ops,split_at_ops,merge_at_ops,model,reason,rejected\n");
    let field = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for r in reports {
        for e in &r.explanations {
            let _ = writeln!(
                explain,
                "{},{:.1},{},{},{},{:.0},{:.0},{:.0},{},{},{}",
                r.kind.as_str(),
                e.at_ms.saturating_sub(workload.start_ms) as f64 / 60_000.0,
                field(&String::from_utf8_lossy(&e.partition)),
                e.action,
                field(&e.change),
                e.demand,
                e.split_at,
                e.merge_at,
                e.model,
                field(&e.reason),
                field(&e.rejected)
            );
        }
    }
    put("explain.csv", explain)?;
    let hours = |step: usize| step as f64 * workload.step_ms as f64 / 3_600_000.0;
    // Load and forecast of the busiest partitions (the predictive policy's forecasts).
    if let Some(pred) =
        reports.iter().find(|r| r.kind == PolicyKind::Predictive).or(reports.first())
    {
        let mut lines = Vec::new();
        for &p in &pred.tracked {
            let pts = |f: &dyn Fn(&super::report::PartitionPoint) -> Option<f64>| {
                pred.partitions
                    .iter()
                    .filter(|x| x.partition == p)
                    .filter_map(|x| f(x).map(|v| (hours(x.step), v)))
                    .collect::<Vec<_>>()
            };
            lines.push((format!("{} load", name(p)), pts(&|x| Some(x.load_ops)), false));
            lines.push((format!("{} forecast upper", name(p)), pts(&|x| x.forecast_upper), true));
        }
        put(
            "load_forecast.svg",
            chart(
                "Busiest partitions: load and forecast (upper quantile)",
                "hours",
                "ops/s",
                &lines,
                false,
            ),
        )?;
    }
    let mut shards = Vec::new();
    for r in reports {
        if let Some(&p) = r.tracked.first() {
            let pts = r
                .partitions
                .iter()
                .filter(|x| x.partition == p)
                .map(|x| (hours(x.step), x.shards as f64))
                .collect();
            shards.push((format!("{} ({})", r.kind.as_str(), name(p)), pts, false));
        }
    }
    put("shards.svg", chart("Shards of the busiest partition", "hours", "shards", &shards, false))?;
    let p99: Vec<_> = reports
        .iter()
        .map(|r| {
            let pts = r.timeline.iter().map(|t| (hours(t.step), t.p99_us.max(1.0))).collect();
            (r.kind.as_str().to_owned(), pts, false)
        })
        .collect();
    put("p99.svg", chart("Machine p99 per step", "hours", "µs (log)", &p99, true))?;
    Ok(())
}

/// Thins `pts` to at most `PLOT_POINTS_MAX`, keeping each bucket's largest value (so peaks
/// stay visible).
fn thin(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if pts.len() <= PLOT_POINTS_MAX {
        return pts.to_vec();
    }
    pts.chunks(pts.len().div_ceil(PLOT_POINTS_MAX))
        .map(|c| c.iter().copied().fold((c[0].0, f64::MIN), |a, b| (a.0, a.1.max(b.1))))
        .collect()
}

/// A line chart: `(label, points, dashed)` per line, y linear or log10.
fn chart(title: &str, x_label: &str, y_label: &str, lines: &[Line], log_y: bool) -> String {
    let (w, h, left, right, top, bottom) = (960.0, 420.0, 70.0, 220.0, 30.0, 40.0);
    let ty = |v: f64| if log_y { v.max(1e-9).log10() } else { v };
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.1.iter().copied()).collect();
    let (x0, x1) = all.iter().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (y0, y1) =
        all.iter().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(ty(p.1)), a.1.max(ty(p.1))));
    let (x0, x1) = if all.is_empty() { (0.0, 1.0) } else { (x0, x1.max(x0 + 1e-9)) };
    let (y0, y1) = if all.is_empty() {
        (0.0, 1.0)
    } else {
        (if log_y { y0 } else { y0.min(0.0) }, y1.max(y0 + 1e-9))
    };
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (ty(y) - y0) / (y1 - y0) * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"18\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>",
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let yv = y0 + f * (y1 - y0);
        let shown = if log_y { 10f64.powf(yv) } else { yv };
        let y = h - bottom - f * (h - top - bottom);
        let _ = writeln!(s, "<text x=\"4\" y=\"{:.1}\">{}</text>", y + 4.0, short(shown));
        let xv = x0 + f * (x1 - x0);
        let x = left + f * (w - left - right);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\">{}</text>",
            x - 8.0,
            h - bottom + 16.0,
            short(xv)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{}\">{}</text>",
        (w - right) / 2.0,
        h - 4.0,
        escape(x_label)
    );
    let _ = writeln!(s, "<text x=\"4\" y=\"{}\">{}</text>", top - 4.0, escape(y_label));
    for (i, (label, pts, dashed)) in lines.iter().enumerate() {
        let colour = COLOURS[(i / if lines.iter().any(|l| l.2) { 2 } else { 1 }) % COLOURS.len()];
        let path: Vec<String> =
            thin(pts).iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let dash = if *dashed { " stroke-dasharray=\"4 3\"" } else { "" };
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.2\"{dash} points=\"{}\"/>",
            path.join(" ")
        );
        let ly = top + 16.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            w - right + 10.0,
            w - right + 30.0,
            w - right + 34.0,
            ly + 4.0,
            escape(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
