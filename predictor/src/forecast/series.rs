//! Equally spaced load series from trace rows.

use crate::trace::TraceRow;
use std::collections::BTreeMap;

/// The most steps a series holds (a week of seconds is 604,800); longer inputs keep the end.
pub const SERIES_STEPS_MAX: usize = 1 << 21;

/// Ops per interval of one partition, `step_ms` apart from `start_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub partition: Vec<u8>,
    pub start_ms: u64,
    pub step_ms: u64,
    pub values: Vec<f64>,
}

impl Series {
    /// One series per partition of `rows`, on a grid of `step_ms` from the earliest row
    /// (rounded down to the step). Rows of one interval are summed; an interval without a row
    /// is zero ops (the history is sparse: no row means no ops).
    pub fn from_rows(rows: &[TraceRow], step_ms: u64) -> Vec<Series> {
        let step_ms = step_ms.max(1);
        let Some(first) = rows.iter().map(|r| r.ts_ms).min() else { return Vec::new() };
        let start_ms = first - first % step_ms;
        let last = rows.iter().map(|r| r.ts_ms).max().unwrap_or(first);
        let steps = (((last - start_ms) / step_ms) as usize + 1).min(SERIES_STEPS_MAX);
        let skip = ((last - start_ms) / step_ms) as usize + 1 - steps;
        let mut by_partition: BTreeMap<&[u8], Vec<f64>> = BTreeMap::new();
        for r in rows {
            let i = ((r.ts_ms - start_ms) / step_ms) as usize;
            if i < skip {
                continue;
            }
            let v = by_partition.entry(&r.partition).or_insert_with(|| vec![0.0; steps]);
            v[i - skip] += r.ops() as f64;
        }
        by_partition
            .into_iter()
            .map(|(p, values)| Series {
                partition: p.to_vec(),
                start_ms: start_ms + skip as u64 * step_ms,
                step_ms,
                values,
            })
            .collect()
    }

    /// The Unix ms at the start of step `i`.
    pub fn time_of(&self, i: usize) -> u64 {
        self.start_ms + i as u64 * self.step_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts_ms: u64, partition: &str, reads: u64) -> TraceRow {
        TraceRow { ts_ms, partition: partition.as_bytes().to_vec(), reads, ..Default::default() }
    }

    #[test]
    fn rows_become_a_grid_with_zeros_for_missing_intervals() {
        let rows = [row(1_000, "a", 5), row(1_500, "a", 1), row(4_200, "a", 7), row(2_000, "b", 2)];
        let s = Series::from_rows(&rows, 1_000);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].partition.as_slice(), s[0].start_ms), (&b"a"[..], 1_000));
        assert_eq!(s[0].values, vec![6.0, 0.0, 0.0, 7.0]);
        assert_eq!(s[1].values, vec![0.0, 2.0, 0.0, 0.0]);
        assert_eq!(s[0].time_of(3), 4_000);
        assert!(Series::from_rows(&[], 1_000).is_empty());
    }
}
