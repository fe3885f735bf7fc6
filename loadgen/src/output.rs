//! Files of a run in `--out DIR`: `intervals.csv` and `latency.hlog` (written as the run goes),
//! then `summary.json` and `plot.svg`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::runner::{Plan, RunConfig};
use crate::stats::{Aggregator, IntervalRecord, Report};
use crate::workload::{Op, OP_COUNT};

/// Shardcast's partition of keys starting with `prefix`: the `{hash tag}`, else the bytes
/// before the first ':', else the default partition (shown as "(default)").
pub fn partition_of(prefix: &str) -> String {
    if let Some(open) = prefix.find('{') {
        if let Some(len) = prefix[open + 1..].find('}') {
            if len > 0 {
                return prefix[open + 1..open + 1 + len].to_string();
            }
        }
    }
    match prefix.find(':') {
        Some(i) => prefix[..i].to_string(),
        None => "(default)".to_string(),
    }
}

pub struct Outputs {
    dir: PathBuf,
    csv: BufWriter<File>,
    hlog: BufWriter<File>,
    serializer: V2DeflateSerializer,
    apps: Vec<(String, String)>,
}

impl Outputs {
    pub(crate) fn create(dir: &Path, plan: &Plan, cfg: &RunConfig) -> std::io::Result<Outputs> {
        std::fs::create_dir_all(dir)?;
        let mut csv = BufWriter::new(File::create(dir.join("intervals.csv"))?);
        writeln!(
            csv,
            "start_s,end_s,app,target_ops_s,ops,ops_s,errors,p50_us,p90_us,p99_us,p999_us,max_us,shards"
        )?;
        let mut hlog = BufWriter::new(File::create(dir.join("latency.hlog"))?);
        let mut serializer = V2DeflateSerializer::new();
        let now = SystemTime::now();
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "shardcast-loadgen {} workload {} against {}:{}; values in ns, one histogram per application.op ({} loop{})",
                env!("CARGO_PKG_VERSION"),
                cfg.workload.name,
                cfg.host,
                cfg.port,
                if plan.open { "open" } else { "closed" },
                if plan.open { ", latency from the intended start" } else { "" },
            ))
            .with_start_time(now)
            .with_base_time(now)
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut hlog, &mut serializer)?;
        writeln!(hlog, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
        let apps = plan
            .apps
            .iter()
            .map(|a| (a.name.clone(), partition_of(&String::from_utf8_lossy(&a.prefix))))
            .collect();
        Ok(Outputs { dir: dir.to_path_buf(), csv, hlog, serializer, apps })
    }

    pub(crate) fn interval(
        &mut self,
        rec: &IntervalRecord,
        _agg: &Aggregator,
    ) -> std::io::Result<()> {
        let shards_of = |p: Option<&str>| -> String {
            match (&rec.shards, p) {
                (Some(m), Some(p)) => m.get(p).copied().unwrap_or(0).to_string(),
                (Some(m), None) => m.values().sum::<u64>().to_string(),
                (None, _) => String::new(),
            }
        };
        let rows = rec
            .apps
            .iter()
            .zip(&self.apps)
            .map(|(a, (name, part))| (a, name.as_str(), shards_of(Some(part))))
            .chain(std::iter::once((&rec.all, "all", shards_of(None))));
        for (a, name, shards) in rows {
            let l = &a.latency;
            writeln!(
                self.csv,
                "{:.3},{:.3},{},{},{},{:.1},{},{:.1},{:.1},{:.1},{:.1},{:.1},{}",
                rec.start_s,
                rec.end_s,
                name,
                a.target_ops_s.map(|t| format!("{t:.1}")).unwrap_or_default(),
                a.ops,
                a.ops_s,
                a.errors,
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p999_us,
                l.max_us,
                shards
            )?;
        }
        self.csv.flush()?;
        let start = Duration::from_secs_f64(rec.start_s);
        let len = Duration::from_secs_f64((rec.end_s - rec.start_s).max(0.0));
        // The builder repeats its MaxValueDivisor header each time; keep only the histograms.
        let mut buf = Vec::new();
        let mut w = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut buf, &mut self.serializer)?;
        for (i, h) in rec.hists.iter().enumerate() {
            let Some(h) = h else { continue };
            let (app, op) = (i / OP_COUNT, Op::from_index(i % OP_COUNT));
            let tag = format!("{}.{}", self.apps[app].0, op.name());
            w.write_histogram(h, start, len, Tag::new(&tag))
                .map_err(|e| std::io::Error::other(format!("interval log: {e:?}")))?;
        }
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if !line.starts_with(b"#") {
                self.hlog.write_all(line)?;
            }
        }
        self.hlog.flush()
    }

    pub(crate) fn finish(&mut self, report: &Report) -> std::io::Result<()> {
        std::fs::write(self.dir.join("summary.json"), report.to_json())?;
        std::fs::write(self.dir.join("plot.svg"), crate::plot::svg(report, &self.apps))?;
        let mut shards = BufWriter::new(File::create(self.dir.join("shards.csv"))?);
        writeln!(shards, "end_s,partition,shards")?;
        for r in &report.intervals {
            if let Some(m) = &r.shards {
                for (p, n) in m {
                    writeln!(shards, "{:.3},{},{}", r.end_s, p, n)?;
                }
            }
        }
        shards.flush()
    }
}
