//! Features of a partition's history, as pure functions: what the models (and, next, the
//! gradient-boosted trees) learn from. Steps are intervals of the series; `Seasons` says how
//! many make a day and a week.

use super::Seasons;
use crate::trace::TraceRow;
use std::f64::consts::TAU;

/// Time of day and of week as (sin, cos) pairs of step `i`: continuous across midnight and
/// the week's turn, over a day of `seasons.day_steps` steps (a compressed day works the same).
pub fn calendar(i: usize, seasons: Seasons) -> [f64; 4] {
    let day = (i % seasons.day_steps) as f64 / seasons.day_steps as f64;
    let week = (i % seasons.week_steps) as f64 / seasons.week_steps as f64;
    [(TAU * day).sin(), (TAU * day).cos(), (TAU * week).sin(), (TAU * week).cos()]
}

/// The value `lag` steps before the origin (the end of `history`), if there is one.
pub fn lag(history: &[f64], lag: usize) -> Option<f64> {
    history.len().checked_sub(lag).and_then(|i| history.get(i)).copied()
}

/// The value at the time of step `target` (at or after the origin) one day and one week
/// earlier, if known.
pub fn seasonal_lags(history: &[f64], target: usize, seasons: Seasons) -> [Option<f64>; 2] {
    let at = |back: usize| target.checked_sub(back).and_then(|i| history.get(i)).copied();
    [at(seasons.day_steps), at(seasons.week_steps)]
}

/// Mean and max of the last `window` values (`None` for an empty history).
pub fn rolling(history: &[f64], window: usize) -> Option<(f64, f64)> {
    let w = &history[history.len().saturating_sub(window.max(1))..];
    if w.is_empty() {
        return None;
    }
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    Some((mean, w.iter().copied().fold(f64::MIN, f64::max)))
}

/// Least-squares slope per step of the last `window` values (0 for fewer than two).
pub fn trend(history: &[f64], window: usize) -> f64 {
    let w = &history[history.len().saturating_sub(window.max(2))..];
    let n = w.len() as f64;
    if w.len() < 2 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = w.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in w.iter().enumerate() {
        num += (i as f64 - mean_x) * (y - mean_y);
        den += (i as f64 - mean_x).powi(2);
    }
    num / den
}

/// Shares of reads, writes, deletes and other ops over `rows` (zeros without ops).
pub fn op_mix(rows: &[TraceRow]) -> [f64; 4] {
    let mut sums = [0u64; 4];
    for r in rows {
        for (s, v) in sums.iter_mut().zip([r.reads, r.writes, r.deletes, r.other]) {
            *s += v;
        }
    }
    let total: u64 = sums.iter().sum();
    if total == 0 {
        return [0.0; 4];
    }
    sums.map(|s| s as f64 / total as f64)
}

/// Distinct keys touched per op and the ops-weighted top-key share over `rows`: how spread
/// or concentrated the load is (a hot key does not get cooler by a split).
pub fn key_spread(rows: &[TraceRow]) -> (f64, f64) {
    let ops: u64 = rows.iter().map(TraceRow::ops).sum();
    if ops == 0 {
        return (0.0, 0.0);
    }
    let distinct: u64 = rows.iter().map(|r| r.distinct_keys).sum();
    let share: f64 = rows.iter().map(|r| r.top_key_share * r.ops() as f64).sum::<f64>();
    (distinct as f64 / ops as f64, share / ops as f64)
}

/// Each application's share of the ops over `rows`, by name, largest first.
pub fn app_shares(rows: &[TraceRow]) -> Vec<(Vec<u8>, f64)> {
    let mut by: std::collections::BTreeMap<&[u8], u64> = Default::default();
    for r in rows {
        for (name, n) in &r.apps {
            *by.entry(name).or_default() += n;
        }
    }
    let total: u64 = by.values().sum();
    let mut out: Vec<(Vec<u8>, f64)> = by
        .into_iter()
        .map(|(n, v)| (n.to_vec(), if total > 0 { v as f64 / total as f64 } else { 0.0 }))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Seasons = Seasons { day_steps: 24, week_steps: 168 };

    #[test]
    fn calendar_features_wrap_at_midnight_and_at_the_week() {
        let c = calendar(6, S);
        assert!((c[0] - 1.0).abs() < 1e-12 && c[1].abs() < 1e-12, "a quarter day: {c:?}");
        let (a, b) = (calendar(0, S), calendar(24 * 7, S));
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12);
        }
        assert!((calendar(23, S)[0] - calendar(0, S)[0]).abs() < 0.3, "continuous at midnight");
    }

    #[test]
    fn lags_and_seasonal_lags_never_reach_past_the_history() {
        let h: Vec<f64> = (0..200).map(f64::from).collect();
        assert_eq!(lag(&h, 1), Some(199.0));
        assert_eq!(lag(&h, 200), Some(0.0));
        assert_eq!(lag(&h, 201), None);
        assert_eq!(seasonal_lags(&h, 200, S), [Some(176.0), Some(32.0)]);
        assert_eq!(seasonal_lags(&h[..100], 100, S), [Some(76.0), None]);
        // A target 30 steps ahead: a day before it is 6 steps ahead of the origin, unknown.
        assert_eq!(seasonal_lags(&h[..100], 130, S)[0], None);
    }

    #[test]
    fn rolling_statistics_and_trend() {
        let h = [1.0, 2.0, 3.0, 10.0];
        assert_eq!(rolling(&h, 2), Some((6.5, 10.0)));
        assert_eq!(rolling(&[], 3), None);
        let line: Vec<f64> = (0..10).map(|i| 5.0 + 2.0 * i as f64).collect();
        assert!((trend(&line, 5) - 2.0).abs() < 1e-12);
        assert_eq!(trend(&[3.0], 5), 0.0);
    }

    #[test]
    fn mix_spread_and_app_shares_come_from_the_rows() {
        let rows = [
            TraceRow {
                reads: 6,
                writes: 2,
                distinct_keys: 4,
                top_key_share: 0.5,
                apps: vec![(b"web".to_vec(), 6), (b"batch".to_vec(), 2)],
                ..Default::default()
            },
            TraceRow {
                deletes: 2,
                distinct_keys: 2,
                top_key_share: 1.0,
                apps: vec![(b"batch".to_vec(), 2)],
                ..Default::default()
            },
        ];
        assert_eq!(op_mix(&rows), [0.6, 0.2, 0.2, 0.0]);
        let (per_op, share) = key_spread(&rows);
        assert!((per_op - 0.6).abs() < 1e-12 && (share - 0.6).abs() < 1e-12);
        assert_eq!(app_shares(&rows), vec![(b"web".to_vec(), 0.6), (b"batch".to_vec(), 0.4)]);
        assert_eq!(op_mix(&[]), [0.0; 4]);
    }
}
