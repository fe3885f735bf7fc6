//! An SVG plot of a run, written by hand: throughput (with the target, dashed), p99 latency
//! (log scale) per application, and Shardcast's shard count per partition.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::stats::{IntervalRecord, Report};

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;
const COLORS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

struct Panel {
    y0: f64,
    x_max: f64,
}

impl Panel {
    fn x(&self, t: f64) -> f64 {
        LEFT + (t / self.x_max).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_num(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn axes(s: &mut String, p: &Panel, title: &str, y_label: &str) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let _ = writeln!(
        s,
        r##"<text x="{x0}" y="{}" font-size="14" font-weight="bold">{title}</text>"##,
        p.y0 - 10.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{}" width="{}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##,
        p.y0,
        x1 - x0
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="{}" font-size="11" transform="rotate(-90 16 {})" text-anchor="middle">{y_label}</text>"##,
        p.y0 + PANEL_HEIGHT / 2.0,
        p.y0 + PANEL_HEIGHT / 2.0
    );
    let step = nice_max(p.x_max / 8.0);
    let mut t = 0.0;
    while t <= p.x_max + 1e-9 {
        let x = p.x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/>"##,
            p.y0,
            p.y0 + PANEL_HEIGHT
        );
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            p.y0 + PANEL_HEIGHT + 14.0,
            fmt_num(t)
        );
        t += step;
    }
}

fn polyline(s: &mut String, pts: &[(f64, f64)], color: &str, dashed: bool) {
    if pts.is_empty() {
        return;
    }
    let mut d = String::new();
    for (x, y) in pts {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    let dash = if dashed { r#" stroke-dasharray="5,4""# } else { "" };
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>"##,
        d.trim_end()
    );
}

fn legend(s: &mut String, p: &Panel, items: &[(String, &str, bool)]) {
    for (i, (name, color, dashed)) in items.iter().enumerate() {
        let y = p.y0 + 12.0 + i as f64 * 16.0;
        let x = WIDTH - RIGHT + 10.0;
        let dash = if *dashed { r#" stroke-dasharray="5,4""# } else { "" };
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/>"##,
            x + 22.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="11">{}</text>"##,
            x + 27.0,
            y + 4.0,
            xml(name)
        );
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The plot. `apps` pairs each application with its partition.
pub fn svg(r: &Report, apps: &[(String, String)]) -> String {
    // The drain after the last full interval is too short for a rate: leave it out (it is in
    // the CSV and the totals).
    let full = r.intervals.first().map(|x| x.end_s - x.start_s).unwrap_or(1.0);
    let recs: Vec<&IntervalRecord> =
        r.intervals.iter().filter(|x| x.end_s - x.start_s >= full / 2.0).collect();
    let x_end = recs.last().map(|x| x.end_s).unwrap_or(1.0).max(r.duration_s);
    let x_step = nice_max(x_end / 8.0);
    let x_max = (x_end / x_step - 0.01).ceil() * x_step;
    let partitions: BTreeSet<String> =
        recs.iter().filter_map(|x| x.shards.as_ref()).flat_map(|m| m.keys().cloned()).collect();
    let panels = if partitions.is_empty() { 2.0 } else { 3.0 };
    let height = TOP + panels * (PANEL_HEIGHT + GAP) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="20" font-size="15">{} — {} loop, {} connections x pipeline {}, {:.0} ops/s overall, p99 {:.2} ms</text>"##,
        xml(&r.workload),
        r.mode,
        r.connections,
        r.pipeline,
        r.ops_s,
        r.latency.p99_us / 1e3
    );

    // Throughput.
    let p = Panel { y0: TOP + 20.0, x_max };
    let y_max = nice_max(
        recs.iter()
            .flat_map(|x| x.apps.iter().flat_map(|a| [a.ops_s, a.target_ops_s.unwrap_or(0.0)]))
            .fold(0.0, f64::max),
    );
    axes(&mut s, &p, "Throughput per application (ops/s; dashed: target)", "ops/s");
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let y = p.y0 + PANEL_HEIGHT * (1.0 - i as f64 / 4.0);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            LEFT - 5.0,
            y + 3.0,
            fmt_num(v)
        );
    }
    let yv = |v: f64| p.y0 + PANEL_HEIGHT * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let mut items = Vec::new();
    for (a, (name, _)) in apps.iter().enumerate() {
        let c = COLORS[a % COLORS.len()];
        let pts: Vec<_> =
            recs.iter().map(|x| (p.x((x.start_s + x.end_s) / 2.0), yv(x.apps[a].ops_s))).collect();
        polyline(&mut s, &pts, c, false);
        let tp: Vec<_> = recs
            .iter()
            .filter_map(|x| {
                x.apps[a].target_ops_s.map(|t| (p.x((x.start_s + x.end_s) / 2.0), yv(t)))
            })
            .collect();
        polyline(&mut s, &tp, c, true);
        items.push((name.clone(), c, false));
    }
    legend(&mut s, &p, &items);

    // p99 latency, log scale.
    let p = Panel { y0: TOP + 20.0 + PANEL_HEIGHT + GAP, x_max };
    let lat: Vec<f64> = recs
        .iter()
        .flat_map(|x| x.apps.iter().map(|a| a.latency.p99_us))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = lat.iter().cloned().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = lat.iter().cloned().fold(0.0, f64::max).max(lo * 10.0);
    let (d0, d1) = (lo.log10().floor(), hi.log10().ceil());
    let ly = |v: f64| {
        p.y0 + PANEL_HEIGHT * (1.0 - ((v.max(1.0).log10() - d0) / (d1 - d0)).clamp(0.0, 1.0))
    };
    axes(&mut s, &p, "p99 latency per application (log scale)", "p99 latency");
    let mut d = d0;
    while d <= d1 + 1e-9 {
        let y = ly(10f64.powf(d));
        let us = 10f64.powf(d);
        let label = if us >= 1e6 {
            format!("{} s", us / 1e6)
        } else if us >= 1e3 {
            format!("{} ms", us / 1e3)
        } else {
            format!("{us} µs")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/>"##,
            WIDTH - RIGHT
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{label}</text>"##,
            LEFT - 5.0,
            y + 3.0
        );
        d += 1.0;
    }
    for (a, _) in apps.iter().enumerate() {
        let c = COLORS[a % COLORS.len()];
        let pts: Vec<_> = recs
            .iter()
            .filter(|x| x.apps[a].ops > 0)
            .map(|x| (p.x((x.start_s + x.end_s) / 2.0), ly(x.apps[a].latency.p99_us)))
            .collect();
        polyline(&mut s, &pts, c, false);
    }
    legend(&mut s, &p, &items);

    // Shards per partition.
    if !partitions.is_empty() {
        let p = Panel { y0: TOP + 20.0 + 2.0 * (PANEL_HEIGHT + GAP), x_max };
        let max = recs
            .iter()
            .filter_map(|x| x.shards.as_ref())
            .flat_map(|m| m.values().copied())
            .max()
            .unwrap_or(1);
        let y_max = (max as f64 + 1.0).max(2.0).ceil();
        axes(&mut s, &p, "Shardcast shards per partition (SHARDCAST SHARDS)", "shards");
        for i in 0..=(y_max as u64) {
            let y = p.y0 + PANEL_HEIGHT * (1.0 - i as f64 / y_max);
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{i}</text>"##,
                LEFT - 5.0,
                y + 3.0
            );
        }
        let mut items = Vec::new();
        for (k, part) in partitions.iter().enumerate() {
            let c = apps
                .iter()
                .position(|a| &a.1 == part)
                .map(|a| COLORS[a % COLORS.len()])
                .unwrap_or(COLORS[(k + apps.len()) % COLORS.len()]);
            let mut pts = Vec::new();
            let mut prev: Option<f64> = None;
            for x in &recs {
                let Some(m) = &x.shards else { continue };
                let n = m.get(part).copied().unwrap_or(0) as f64;
                // Offset each partition slightly so equal counts stay visible.
                let yv = p.y0 + PANEL_HEIGHT * (1.0 - n / y_max) - k as f64 * 2.0;
                let xv = p.x(x.end_s);
                if let Some(py) = prev {
                    pts.push((xv, py));
                }
                pts.push((xv, yv));
                prev = Some(yv);
            }
            polyline(&mut s, &pts, c, false);
            items.push((part.clone(), c, false));
        }
        legend(&mut s, &p, &items);
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="middle">elapsed (s)</text>"##,
        (LEFT + WIDTH - RIGHT) / 2.0,
        height - 8.0
    );
    s.push_str("</svg>\n");
    s
}
