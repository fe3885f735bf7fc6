//! Latency histograms per (application, op), their merge across workers per interval, and
//! the final report (table and JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::profile::RateProfile;
use crate::runner::{Plan, RunConfig};
use crate::verify::VerifyCounts;
use crate::workload::{Op, OP_COUNT};

/// Latencies are recorded in nanoseconds, at 3 significant digits, from 1 µs up to an hour
/// (longer ones saturate at the hour).
pub const LATENCY_NS_LOW: u64 = 1_000;
pub const LATENCY_NS_MAX: u64 = 3_600 * 1_000_000_000;
pub const LATENCY_SIGFIG: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_NS_LOW, LATENCY_NS_MAX, LATENCY_SIGFIG)
        .expect("valid bounds")
}

pub struct OpStats {
    /// From the intended start (open loop) or the send (closed loop) to the reply.
    pub hist: Histogram<u64>,
    /// From the send to the reply (open loop only).
    pub service: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    /// Replies that were nil (a GET of a missing key: a cache miss).
    pub nil: u64,
}

impl OpStats {
    pub fn new() -> OpStats {
        OpStats { hist: new_histogram(), service: new_histogram(), ok: 0, errors: 0, nil: 0 }
    }

    fn add(&mut self, o: &OpStats) {
        self.hist.add(&o.hist).expect("same bounds");
        self.service.add(&o.service).expect("same bounds");
        self.ok += o.ok;
        self.errors += o.errors;
        self.nil += o.nil;
    }
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats::new()
    }
}

/// One worker's statistics for one interval.
pub struct WorkerInterval {
    pub worker: usize,
    pub index: u64,
    pub end_ns: u64,
    pub ops: Vec<Option<OpStats>>,
    /// Keys sent per application (`--trace-out`).
    pub sent: Vec<crate::sent::Sent>,
    pub verify: Vec<VerifyCounts>,
    pub errors: Vec<(String, u64)>,
    pub connections_lost: u64,
}

impl WorkerInterval {
    fn merge(&mut self, o: WorkerInterval) {
        self.end_ns = self.end_ns.max(o.end_ns);
        for (a, b) in self.ops.iter_mut().zip(o.ops) {
            if let (Some(a), Some(b)) = (a.as_mut(), b) {
                a.add(&b);
            }
        }
        for (a, b) in self.sent.iter_mut().zip(&o.sent) {
            a.merge(b);
        }
        for (a, b) in self.verify.iter_mut().zip(&o.verify) {
            a.add(b);
        }
        merge_errors(&mut self.errors, o.errors);
        self.connections_lost += o.connections_lost;
    }
}

fn merge_errors(into: &mut Vec<(String, u64)>, from: Vec<(String, u64)>) {
    for (m, n) in from {
        if let Some(e) = into.iter_mut().find(|e| e.0 == m) {
            e.1 += n;
        } else if into.len() < crate::runner::ERROR_MESSAGES_MAX {
            into.push((m, n));
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1e3;
        Percentiles {
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: h.max() as f64 / 1e3,
            mean_us: h.mean() / 1e3,
        }
    }
}

/// One application (or all) in one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppInterval {
    pub target_ops_s: Option<f64>,
    pub ops: u64,
    pub errors: u64,
    pub ops_s: f64,
    pub latency: Percentiles,
}

#[derive(Clone, Debug, Default)]
pub struct IntervalRecord {
    pub index: u64,
    pub start_s: f64,
    pub end_s: f64,
    pub apps: Vec<AppInterval>,
    pub all: AppInterval,
    /// Shards per partition (Shardcast only).
    pub shards: Option<BTreeMap<String, u64>>,
    pub verify_failures: u64,
    /// This interval's histograms per (application, op), for the interval log; emptied once
    /// written.
    pub hists: Vec<Option<Histogram<u64>>>,
    /// Keys sent per application (`--trace-out`).
    pub sent: Vec<crate::sent::Sent>,
}

/// Merges worker intervals into interval records, in order, and keeps the run's totals.
pub struct Aggregator {
    pub app_names: Vec<String>,
    profiles: Vec<Option<RateProfile>>,
    time_compression: f64,
    open: bool,
    interval_s: f64,
    workers: usize,
    pending: BTreeMap<u64, WorkerInterval>,
    received: Vec<u64>,
    done: Vec<bool>,
    next_index: u64,
    totals: Vec<Option<OpStats>>,
    verify: Vec<VerifyCounts>,
    errors: Vec<(String, u64)>,
    connections_lost: u64,
    records: Vec<IntervalRecord>,
    cfg_summary: (String, u32, u32, u32, u64, f64, bool),
}

impl Aggregator {
    pub(crate) fn new(plan: &Plan, cfg: &RunConfig, workers: usize) -> Aggregator {
        let mut totals = Vec::new();
        for a in &plan.apps {
            for used in a.ops_used {
                totals.push(used.then(OpStats::new));
            }
        }
        Aggregator {
            app_names: plan.apps.iter().map(|a| a.name.clone()).collect(),
            profiles: plan.apps.iter().map(|a| a.profile.clone()).collect(),
            time_compression: plan.time_compression,
            open: plan.open,
            interval_s: cfg.interval.as_secs_f64(),
            workers,
            pending: BTreeMap::new(),
            received: vec![0; workers],
            done: vec![false; workers],
            next_index: 0,
            totals,
            verify: vec![VerifyCounts::default(); plan.apps.len()],
            errors: Vec::new(),
            connections_lost: 0,
            records: Vec::new(),
            cfg_summary: (
                cfg.workload.name.clone(),
                cfg.connections,
                cfg.pipeline,
                cfg.threads,
                cfg.seed,
                plan.duration.as_secs_f64(),
                cfg.verify,
            ),
        }
    }

    pub fn open(&self) -> bool {
        self.open
    }

    pub fn records(&self) -> &[IntervalRecord] {
        &self.records
    }

    pub(crate) fn add(&mut self, iv: WorkerInterval) {
        self.received[iv.worker] = iv.index + 1;
        match self.pending.get_mut(&iv.index) {
            Some(p) => p.merge(iv),
            None => {
                self.pending.insert(iv.index, iv);
            }
        }
    }

    pub(crate) fn worker_done(&mut self, w: usize, _last: u64) {
        self.done[w] = true;
    }

    /// The target rate of application `a` at real time `t` seconds.
    pub fn target(&self, a: usize, t: f64) -> Option<f64> {
        self.profiles[a].as_ref().map(|p| p.rate(t * self.time_compression))
    }

    /// The next interval that every worker has reported (or will never report).
    pub fn next_complete(&mut self) -> Option<IntervalRecord> {
        let idx = self.next_index;
        let complete = (0..self.workers).all(|w| self.received[w] > idx || self.done[w]);
        if !complete {
            return None;
        }
        let mut iv = self.pending.remove(&idx)?;
        self.next_index += 1;
        let start_s = idx as f64 * self.interval_s;
        let end_s = (iv.end_ns as f64 / 1e9).max(start_s + 1e-3);
        let span = end_s - start_s;
        let mid = (start_s + end_s) / 2.0;
        let mut rec = IntervalRecord {
            index: idx,
            start_s,
            end_s,
            sent: std::mem::take(&mut iv.sent),
            ..Default::default()
        };
        let mut all_h = new_histogram();
        let mut all = AppInterval::default();
        let mut any_target = false;
        let mut target_sum = 0.0;
        for a in 0..self.app_names.len() {
            let mut h = new_histogram();
            let mut ai = AppInterval { target_ops_s: self.target(a, mid), ..Default::default() };
            for op in 0..OP_COUNT {
                if let Some(s) = &iv.ops[a * OP_COUNT + op] {
                    h.add(&s.hist).expect("same bounds");
                    ai.ops += s.ok + s.errors;
                    ai.errors += s.errors;
                }
            }
            ai.ops_s = ai.ops as f64 / span;
            ai.latency = Percentiles::of(&h);
            all_h.add(&h).expect("same bounds");
            all.ops += ai.ops;
            all.errors += ai.errors;
            if let Some(t) = ai.target_ops_s {
                any_target = true;
                target_sum += t;
            }
            rec.apps.push(ai);
        }
        all.ops_s = all.ops as f64 / span;
        all.latency = Percentiles::of(&all_h);
        all.target_ops_s = any_target.then_some(target_sum);
        rec.all = all;
        for (t, s) in self.totals.iter_mut().zip(&iv.ops) {
            if let (Some(t), Some(s)) = (t.as_mut(), s) {
                t.add(s);
            }
        }
        for (t, v) in self.verify.iter_mut().zip(&iv.verify) {
            t.add(v);
            rec.verify_failures += v.failures();
        }
        merge_errors(&mut self.errors, iv.errors);
        self.connections_lost += iv.connections_lost;
        rec.hists = iv.ops.into_iter().map(|o| o.map(|s| s.hist)).collect();
        Some(rec)
    }

    pub fn push_record(&mut self, mut rec: IntervalRecord) {
        rec.hists = Vec::new();
        self.records.push(rec);
    }

    pub fn total_errors(&self) -> u64 {
        self.totals.iter().flatten().map(|s| s.errors).sum()
    }

    pub(crate) fn finish(
        mut self,
        elapsed: Duration,
        shardcast: bool,
        failures: Vec<String>,
    ) -> Report {
        while let Some(r) = self.next_complete() {
            self.push_record(r);
        }
        let elapsed_s = elapsed.as_secs_f64();
        let measured_s = self.records.last().map(|r| r.end_s).unwrap_or(elapsed_s).max(1e-3);
        let mut per_app_op = Vec::new();
        let mut per_op = Vec::new();
        let mut apps = Vec::new();
        let mut all = new_histogram();
        let mut all_service = new_histogram();
        for (i, op) in crate::workload::OPS.iter().enumerate() {
            let mut merged: Option<OpStats> = None;
            for (a, name) in self.app_names.iter().enumerate() {
                if let Some(s) = &self.totals[a * OP_COUNT + i] {
                    per_app_op.push(OpSummary::of(name, *op, s, measured_s, self.open));
                    merged.get_or_insert_with(OpStats::new).add(s);
                }
            }
            if let Some(m) = merged {
                all.add(&m.hist).expect("same bounds");
                all_service.add(&m.service).expect("same bounds");
                per_op.push(OpSummary::of("all", *op, &m, measured_s, self.open));
            }
        }
        for (a, name) in self.app_names.iter().enumerate() {
            let mut h = new_histogram();
            let (mut ops, mut errors) = (0, 0);
            for s in self.totals[a * OP_COUNT..(a + 1) * OP_COUNT].iter().flatten() {
                h.add(&s.hist).expect("same bounds");
                ops += s.ok + s.errors;
                errors += s.errors;
            }
            let targets: Vec<f64> =
                self.records.iter().filter_map(|r| r.apps[a].target_ops_s).collect();
            apps.push(AppSummary {
                name: name.clone(),
                ops,
                errors,
                ops_s: ops as f64 / measured_s,
                target_mean_ops_s: (!targets.is_empty())
                    .then(|| targets.iter().sum::<f64>() / targets.len() as f64),
                latency: Percentiles::of(&h),
                verify: self.cfg_summary.6.then_some(self.verify[a]),
            });
        }
        let ops: u64 = apps.iter().map(|a| a.ops).sum();
        let errors: u64 = apps.iter().map(|a| a.errors).sum();
        let verify = self.cfg_summary.6.then(|| {
            let mut v = VerifyCounts::default();
            self.verify.iter().for_each(|x| v.add(x));
            v
        });
        Report {
            workload: self.cfg_summary.0.clone(),
            mode: if self.open { "open" } else { "closed" },
            duration_s: self.cfg_summary.5,
            elapsed_s,
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
                .saturating_sub(elapsed.as_millis() as u64),
            connections: self.cfg_summary.1,
            pipeline: self.cfg_summary.2,
            threads: self.cfg_summary.3,
            seed: self.cfg_summary.4,
            ops,
            errors,
            ops_s: ops as f64 / measured_s,
            latency: Percentiles::of(&all),
            service: self.open.then(|| Percentiles::of(&all_service)),
            per_op,
            per_app_op,
            apps,
            verify,
            error_messages: self.errors,
            connections_lost: self.connections_lost,
            shardcast,
            intervals: self.records,
            failures,
        }
    }
}

#[derive(Clone, Debug)]
pub struct OpSummary {
    pub app: String,
    pub op: Op,
    pub count: u64,
    pub errors: u64,
    /// Nil replies (for GET: misses; `hit_ratio` is the rest's share).
    pub nil: u64,
    pub ops_s: f64,
    /// Corrected latency (from the intended start) in open loop; from the send in closed.
    pub latency: Percentiles,
    /// Open loop only: from the actual send (what a client that omits coordination sees).
    pub service: Option<Percentiles>,
}

impl OpSummary {
    /// The share of successful replies that were not nil (for GET, the cache hit ratio).
    pub fn hit_ratio(&self) -> Option<f64> {
        let answered = self.count - self.errors;
        (answered > 0).then(|| (answered - self.nil) as f64 / answered as f64)
    }

    fn of(app: &str, op: Op, s: &OpStats, secs: f64, open: bool) -> OpSummary {
        OpSummary {
            app: app.to_string(),
            op,
            count: s.ok + s.errors,
            errors: s.errors,
            nil: s.nil,
            ops_s: (s.ok + s.errors) as f64 / secs,
            latency: Percentiles::of(&s.hist),
            service: open.then(|| Percentiles::of(&s.service)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AppSummary {
    pub name: String,
    pub ops: u64,
    pub errors: u64,
    pub ops_s: f64,
    pub target_mean_ops_s: Option<f64>,
    pub latency: Percentiles,
    pub verify: Option<VerifyCounts>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub workload: String,
    pub mode: &'static str,
    pub duration_s: f64,
    pub elapsed_s: f64,
    /// When the run's clock started (interval `start_s` 0), in ms since the Unix epoch: the
    /// intervals' times on the wall clock, to line them up with a server's own events.
    pub started_unix_ms: u64,
    pub connections: u32,
    pub pipeline: u32,
    pub threads: u32,
    pub seed: u64,
    pub ops: u64,
    pub errors: u64,
    pub ops_s: f64,
    pub latency: Percentiles,
    pub service: Option<Percentiles>,
    /// Per op over all applications.
    pub per_op: Vec<OpSummary>,
    pub per_app_op: Vec<OpSummary>,
    pub apps: Vec<AppSummary>,
    pub verify: Option<VerifyCounts>,
    pub error_messages: Vec<(String, u64)>,
    pub connections_lost: u64,
    /// The server answered SHARDCAST SHARDS.
    pub shardcast: bool,
    pub intervals: Vec<IntervalRecord>,
    /// Worker failures (the run ended early).
    pub failures: Vec<String>,
}

fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

impl Report {
    pub fn verify_failures(&self) -> u64 {
        self.verify.map(|v| v.failures()).unwrap_or(0)
    }

    /// The final table: per op, then per application.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let kind = if self.mode == "open" { "latency from intended start" } else { "latency" };
        let _ = writeln!(
            s,
            "{} | {} loop | {:.1} s | {} connections x pipeline {} | {} thread(s) | seed {}",
            self.workload,
            self.mode,
            self.elapsed_s,
            self.connections,
            self.pipeline,
            self.threads,
            self.seed
        );
        let _ = writeln!(
            s,
            "{:<16} {:>10} {:>7} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   ({kind})",
            "op", "count", "errors", "ops/s", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let mut row = |name: &str, count: u64, errors: u64, ops_s: f64, l: &Percentiles| {
            let _ = writeln!(
                s,
                "{:<16} {:>10} {:>7} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                count,
                errors,
                ops_s,
                fmt_us(l.p50_us),
                fmt_us(l.p90_us),
                fmt_us(l.p99_us),
                fmt_us(l.p999_us),
                fmt_us(l.p9999_us),
                fmt_us(l.max_us)
            );
        };
        for o in &self.per_op {
            row(o.op.name(), o.count, o.errors, o.ops_s, &o.latency);
        }
        let hit_ratios: Vec<String> = self
            .per_op
            .iter()
            .filter(|o| o.op == Op::Get)
            .filter_map(|o| o.hit_ratio().map(|r| format!("{} {:.2}%", o.op.name(), r * 100.0)))
            .collect();
        row("all", self.ops, self.errors, self.ops_s, &self.latency);
        if self.apps.len() > 1 {
            for a in &self.apps {
                row(&format!("app {}", a.name), a.ops, a.errors, a.ops_s, &a.latency);
            }
        }
        if !hit_ratios.is_empty() {
            let _ = writeln!(s, "hit ratio (replies not nil): {}", hit_ratios.join(", "));
        }
        if let Some(sv) = &self.service {
            let _ = writeln!(
                s,
                "service time (from actual send, not corrected): p50 {} p99 {} p99.9 {} max {}",
                fmt_us(sv.p50_us),
                fmt_us(sv.p99_us),
                fmt_us(sv.p999_us),
                fmt_us(sv.max_us)
            );
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                s,
                "verify: {} reads checked, {} wrong, {} missing, {} stale ({} writes sent as reads to keep one write per key in flight)",
                v.checked, v.wrong, v.missing, v.stale, v.converted_writes
            );
        }
        if self.connections_lost > 0 {
            let _ = writeln!(s, "connections lost: {}", self.connections_lost);
        }
        for (m, n) in &self.error_messages {
            let _ = writeln!(s, "error x{n}: {m}");
        }
        for f in &self.failures {
            let _ = writeln!(s, "failure: {f}");
        }
        s
    }

    pub fn to_json(&self) -> String {
        let mut j = Json::default();
        j.open('{');
        j.key("workload").str(&self.workload);
        j.key("mode").str(self.mode);
        j.key("duration_s").num(self.duration_s);
        j.key("elapsed_s").num(self.elapsed_s);
        j.key("started_unix_ms").num(self.started_unix_ms as f64);
        j.key("connections").num(self.connections as f64);
        j.key("pipeline").num(self.pipeline as f64);
        j.key("threads").num(self.threads as f64);
        j.key("seed").num(self.seed as f64);
        j.key("ops").num(self.ops as f64);
        j.key("errors").num(self.errors as f64);
        j.key("ops_per_s").num(self.ops_s);
        j.key("latency_us");
        j.pct(&self.latency);
        if let Some(sv) = &self.service {
            j.key("service_latency_us");
            j.pct(sv);
        }
        j.key("per_op").open('[');
        for o in self.per_op.iter().chain(&self.per_app_op) {
            j.open('{');
            j.key("app").str(&o.app);
            j.key("op").str(o.op.name());
            j.key("count").num(o.count as f64);
            j.key("errors").num(o.errors as f64);
            j.key("nil").num(o.nil as f64);
            if let Some(r) = o.hit_ratio() {
                j.key("hit_ratio").num(r);
            }
            j.key("ops_per_s").num(o.ops_s);
            j.key("latency_us");
            j.pct(&o.latency);
            if let Some(sv) = &o.service {
                j.key("service_latency_us");
                j.pct(sv);
            }
            j.close('}');
        }
        j.close(']');
        j.key("applications").open('[');
        for a in &self.apps {
            j.open('{');
            j.key("name").str(&a.name);
            j.key("ops").num(a.ops as f64);
            j.key("errors").num(a.errors as f64);
            j.key("ops_per_s").num(a.ops_s);
            if let Some(t) = a.target_mean_ops_s {
                j.key("target_mean_ops_per_s").num(t);
            }
            j.key("latency_us");
            j.pct(&a.latency);
            if let Some(v) = &a.verify {
                j.key("verify");
                j.verify(v);
            }
            j.close('}');
        }
        j.close(']');
        if let Some(v) = &self.verify {
            j.key("verify");
            j.verify(v);
        }
        j.key("connections_lost").num(self.connections_lost as f64);
        j.key("error_messages").open('[');
        for (m, n) in &self.error_messages {
            j.open('{');
            j.key("message").str(m);
            j.key("count").num(*n as f64);
            j.close('}');
        }
        j.close(']');
        j.key("shardcast").raw(if self.shardcast { "true" } else { "false" });
        j.key("failures").open('[');
        for f in &self.failures {
            j.str(f);
        }
        j.close(']');
        j.key("intervals").num(self.intervals.len() as f64);
        j.close('}');
        j.s.push('\n');
        j.s
    }
}

/// A minimal JSON writer (objects, arrays, strings, numbers).
#[derive(Default)]
struct Json {
    s: String,
    need_comma: bool,
}

impl Json {
    fn comma(&mut self) {
        if self.need_comma {
            self.s.push(',');
        }
    }
    fn open(&mut self, c: char) -> &mut Self {
        self.comma();
        self.s.push(c);
        self.need_comma = false;
        self
    }
    fn close(&mut self, c: char) {
        self.s.push(c);
        self.need_comma = true;
    }
    fn key(&mut self, k: &str) -> &mut Self {
        self.comma();
        escape(&mut self.s, k);
        self.s.push(':');
        self.need_comma = false;
        self
    }
    fn str(&mut self, v: &str) {
        self.comma();
        escape(&mut self.s, v);
        self.need_comma = true;
    }
    fn num(&mut self, v: f64) {
        self.comma();
        if v.is_finite() {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                let _ = write!(self.s, "{}", v as i64);
            } else {
                let _ = write!(self.s, "{v:.3}");
            }
        } else {
            self.s.push_str("null");
        }
        self.need_comma = true;
    }
    fn raw(&mut self, v: &str) {
        self.comma();
        self.s.push_str(v);
        self.need_comma = true;
    }
    fn pct(&mut self, p: &Percentiles) {
        self.open('{');
        for (k, v) in [
            ("p50", p.p50_us),
            ("p90", p.p90_us),
            ("p99", p.p99_us),
            ("p99.9", p.p999_us),
            ("p99.99", p.p9999_us),
            ("max", p.max_us),
            ("mean", p.mean_us),
        ] {
            self.key(k).num(v);
        }
        self.close('}');
    }
    fn verify(&mut self, v: &VerifyCounts) {
        self.open('{');
        for (k, x) in [
            ("checked", v.checked),
            ("wrong", v.wrong),
            ("missing", v.missing),
            ("stale", v.stale),
            ("converted_writes", v.converted_writes),
        ] {
            self.key(k).num(x as f64);
        }
        self.close('}');
    }
}

fn escape(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The live line: elapsed of total, rate, p99, errors.
pub fn progress_line(rec: &IntervalRecord, agg: &Aggregator, total: Duration) {
    use std::io::IsTerminal;
    let errors: u64 = agg.records().iter().map(|r| r.all.errors).sum::<u64>() + rec.all.errors;
    let target = rec.all.target_ops_s.map(|t| format!(" (target {t:.0})")).unwrap_or_default();
    let line = format!(
        "[{:>5.0}/{:.0} s] {:>9.0} ops/s{target}  p99 {}  errors {errors}",
        rec.end_s,
        total.as_secs_f64(),
        rec.all.ops_s,
        fmt_us(rec.all.latency.p99_us)
    );
    if std::io::stderr().is_terminal() {
        eprint!("\r{line:<80}");
    } else {
        eprintln!("{line}");
    }
}
