//! What the load generator sent, per application and interval, for `--trace-out`: ops by kind,
//! key and value bytes, distinct keys and the hottest key, measured per key with the server's
//! own sketches (the engine's HyperLogLog and space-saving top-k over the same XXH3 key hash),
//! so a trace written here and the server's `/history.csv` of the same run compare like for
//! like. Rows are written in the trace format (docs/trace-format.md), one per partition per
//! interval, with one `app:<client name>` column per application.
//!
//! The load generator does not see the server's keyspace or replies' sizes: `keys` and
//! `bytes_out` are written as 0.

use shardcast_engine::routing::{partition_of, stable_hash, PARTITION_SEPARATOR_DEFAULT};
use shardcast_engine::telemetry::{Hll, KeyCount, TopKeys};
use shardcast_predictor::trace::{format_row, header, TraceRow};
use std::collections::BTreeMap;
use std::io::Write;

/// The kinds of the trace format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read = 0,
    Write = 1,
    Delete = 2,
}

/// One application's keys sent in one interval.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    pub ops: [u64; 4],
    pub bytes_in: u64,
    distinct: Hll,
    top: TopKeys,
    /// `top` once taken (for merging and writing).
    top_taken: Vec<KeyCount>,
}

impl Sent {
    /// Counts one key of a command (an MGET of n keys is n reads, as the server counts it).
    #[inline]
    pub fn note(&mut self, key: &[u8], kind: Kind, value_len: usize) {
        self.ops[kind as usize] += 1;
        self.bytes_in += (key.len() + value_len) as u64;
        let hash = stable_hash(key);
        self.distinct.add(hash);
        self.top.record(hash, key);
    }

    /// This interval's counts, and a fresh start.
    pub fn take(&mut self) -> Sent {
        let mut out = std::mem::take(self);
        out.top_taken = out.top.take();
        out
    }

    /// Adds another worker's counts of the same application and interval.
    pub fn merge(&mut self, o: &Sent) {
        for (a, b) in self.ops.iter_mut().zip(o.ops) {
            *a += b;
        }
        self.bytes_in += o.bytes_in;
        self.distinct.merge(&o.distinct);
        for k in &o.top_taken {
            match self.top_taken.iter_mut().find(|x| x.key == k.key) {
                Some(x) => x.count += k.count,
                None => self.top_taken.push(k.clone()),
            }
        }
    }

    fn total(&self) -> u64 {
        self.ops.iter().sum()
    }
}

/// Writes `--trace-out`: a header, then each interval's rows.
pub struct TraceOut {
    file: std::io::BufWriter<std::fs::File>,
    /// Each application's partition and client name.
    apps: Vec<(Vec<u8>, Vec<u8>)>,
    columns: Vec<Vec<u8>>,
    /// Unix ms of the run's start.
    start_ms: u64,
}

impl TraceOut {
    /// `apps`: each application's key prefix and client name.
    pub fn create(
        path: &std::path::Path,
        apps: &[(Vec<u8>, String)],
        start_ms: u64,
    ) -> std::io::Result<TraceOut> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let apps: Vec<(Vec<u8>, Vec<u8>)> = apps
            .iter()
            .map(|(prefix, name)| {
                // Every key of an application starts with its prefix: its partition is the
                // prefix's (a prefix without the separator puts keys in the default one).
                let mut probe = prefix.clone();
                probe.push(b'0');
                (
                    partition_of(&probe, PARTITION_SEPARATOR_DEFAULT).to_vec(),
                    name.as_bytes().to_vec(),
                )
            })
            .collect();
        let mut columns: Vec<Vec<u8>> = apps.iter().map(|a| a.1.clone()).collect();
        columns.sort();
        columns.dedup();
        file.write_all(header(&columns).as_bytes())?;
        Ok(TraceOut { file, apps, columns, start_ms })
    }

    /// Writes one interval (starting `start_s` after the run's start): one row per partition.
    pub fn interval(&mut self, start_s: f64, sent: &[Sent]) -> std::io::Result<()> {
        let ts_ms = self.start_ms + (start_s * 1000.0).round() as u64;
        let mut rows: BTreeMap<&[u8], (TraceRow, Hll, u64)> = BTreeMap::new();
        for ((partition, name), s) in self.apps.iter().zip(sent) {
            if s.total() == 0 {
                continue;
            }
            let (row, hll, top) = rows.entry(partition).or_insert_with(|| {
                let row = TraceRow { ts_ms, partition: partition.clone(), ..Default::default() };
                (row, Hll::default(), 0)
            });
            row.reads += s.ops[Kind::Read as usize];
            row.writes += s.ops[Kind::Write as usize];
            row.deletes += s.ops[Kind::Delete as usize];
            row.other += s.ops[3];
            row.bytes_in += s.bytes_in;
            hll.merge(&s.distinct);
            *top = (*top).max(s.top_taken.iter().map(|k| k.count).max().unwrap_or(0));
            match row.apps.iter_mut().find(|(a, _)| a == name) {
                Some(e) => e.1 += s.total(),
                None => row.apps.push((name.clone(), s.total())),
            }
        }
        for (_, (mut row, hll, top)) in rows {
            row.distinct_keys = hll.estimate();
            let ops = row.ops();
            row.top_key_share = if ops > 0 { top as f64 / ops as f64 } else { 0.0 };
            row.apps.sort();
            self.file.write_all(format_row(&row, &self.columns).as_bytes())?;
        }
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merged worker counts sum; distinct keys and the hot key come out of the sketches.
    #[test]
    fn sent_counts_merge_and_write_rows() {
        let mut a = Sent::default();
        let mut b = Sent::default();
        for i in 0..100 {
            a.note(format!("user:{i}").as_bytes(), Kind::Read, 0);
            b.note(b"user:hot", Kind::Write, 10);
        }
        let mut a = a.take();
        a.merge(&b.take());
        assert_eq!(a.ops, [100, 100, 0, 0]);
        assert_eq!(a.bytes_in, 100 * 6 + 90 + 100 * 18);
        let dir = std::env::temp_dir().join(format!("shardcast-sent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trace.csv");
        let mut out = TraceOut::create(&path, &[(b"user:".to_vec(), "web".into())], 1_000).unwrap();
        out.interval(2.0, &[a]).unwrap();
        drop(out);
        let rows =
            shardcast_predictor::trace::parse_trace(&std::fs::read_to_string(&path).unwrap())
                .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.ts_ms, r.partition.as_slice(), r.reads, r.writes),
            (3_000, &b"user"[..], 100, 100)
        );
        assert!((98..=103).contains(&r.distinct_keys), "{}", r.distinct_keys);
        assert!((r.top_key_share - 0.5).abs() < 0.01, "{}", r.top_key_share);
        assert_eq!(r.apps, vec![(b"web".to_vec(), 200)]);
    }
}
