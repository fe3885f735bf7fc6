//! The latency monitor (Redis's `LATENCY LATEST|HISTORY|RESET`): events that took at least
//! `latency-monitor-threshold` ms, by name, each with its latest samples. The engine reports
//! its own pauses here (a log fsync, a snapshot's write, a migration's cutover, a backup's
//! cut), the server its slow commands, so an operator sees what caused a spike.
//!
//! Only events over the threshold take the lock; below it, or with the monitor off (a
//! threshold of 0, the default as in Redis), reporting is one atomic load.
//!
//! Bounded: `LATENCY_SAMPLES_MAX` samples per event (one per second: a second's samples keep
//! the largest), `LATENCY_EVENTS_MAX` event names.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Samples kept per event (Redis's `LATENCY_TS_LEN`).
pub const LATENCY_SAMPLES_MAX: usize = 160;
/// Event names kept; later names are not recorded.
pub const LATENCY_EVENTS_MAX: usize = 64;

/// The engine's own events.
pub const EVENT_LOG_FSYNC: &str = "log-fsync";
pub const EVENT_SNAPSHOT: &str = "snapshot";
pub const EVENT_MIGRATION_CUTOVER: &str = "migration-cutover";
pub const EVENT_BACKUP_CUT: &str = "backup-cut";

/// One sample: when (Unix seconds) and how long (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySample {
    pub unix_s: u64,
    pub ms: u64,
}

/// An event's samples.
#[derive(Debug, Clone, Default)]
pub struct EventSeries {
    pub samples: VecDeque<LatencySample>,
    /// The largest since the event was first seen or reset.
    pub max_ms: u64,
}

/// The monitor, shared by every core and the server.
#[derive(Debug, Default)]
pub struct LatencyEvents {
    threshold_ms: AtomicU64,
    series: Mutex<BTreeMap<String, EventSeries>>,
}

impl LatencyEvents {
    pub fn threshold_ms(&self) -> u64 {
        self.threshold_ms.load(Ordering::Relaxed)
    }

    /// 0 turns the monitor off.
    pub fn set_threshold_ms(&self, ms: u64) {
        self.threshold_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether an event lasting `took` would be recorded.
    pub fn is_over(&self, took: Duration) -> bool {
        let threshold = self.threshold_ms();
        threshold > 0 && took.as_millis() as u64 >= threshold
    }

    /// Reports that `event` lasted `took`; recorded if over the threshold.
    pub fn observe(&self, event: &str, took: Duration) {
        if self.is_over(took) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.add_sample(event, now, took.as_millis() as u64);
        }
    }

    /// Records a sample as it is (the threshold already applied).
    pub fn add_sample(&self, event: &str, unix_s: u64, ms: u64) {
        let mut series = self.series.lock().expect("latency events poisoned");
        if !series.contains_key(event) && series.len() >= LATENCY_EVENTS_MAX {
            return;
        }
        let s = series.entry(event.to_owned()).or_default();
        s.max_ms = s.max_ms.max(ms);
        match s.samples.back_mut() {
            Some(last) if last.unix_s == unix_s => last.ms = last.ms.max(ms),
            _ => {
                if s.samples.len() == LATENCY_SAMPLES_MAX {
                    s.samples.pop_front();
                }
                s.samples.push_back(LatencySample { unix_s, ms });
            }
        }
    }

    /// Every event with samples, by name.
    pub fn all(&self) -> BTreeMap<String, EventSeries> {
        self.series.lock().expect("latency events poisoned").clone()
    }

    pub fn history(&self, event: &str) -> Option<EventSeries> {
        self.series.lock().expect("latency events poisoned").get(event).cloned()
    }

    /// Forgets the named events (every event with `None`); returns how many had samples.
    pub fn reset(&self, events: Option<&[String]>) -> usize {
        let mut series = self.series.lock().expect("latency events poisoned");
        match events {
            None => {
                let n = series.len();
                series.clear();
                n
            }
            Some(names) => names.iter().filter(|n| series.remove(n.as_str()).is_some()).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_below_the_threshold() {
        let m = LatencyEvents::default();
        m.observe("command", Duration::from_secs(5));
        assert!(m.all().is_empty());
        m.set_threshold_ms(10);
        m.observe("command", Duration::from_millis(9));
        assert!(m.all().is_empty());
        m.observe("command", Duration::from_millis(10));
        assert_eq!(m.history("command").unwrap().max_ms, 10);
    }

    #[test]
    fn one_sample_per_second_keeps_the_largest_and_the_series_is_bounded() {
        let m = LatencyEvents::default();
        m.add_sample("e", 100, 5);
        m.add_sample("e", 100, 9);
        m.add_sample("e", 100, 7);
        let s = m.history("e").unwrap();
        assert_eq!(
            s.samples.iter().copied().collect::<Vec<_>>(),
            vec![LatencySample { unix_s: 100, ms: 9 }]
        );
        for t in 0..(LATENCY_SAMPLES_MAX as u64 + 10) {
            m.add_sample("e", 200 + t, 1);
        }
        let s = m.history("e").unwrap();
        assert_eq!(s.samples.len(), LATENCY_SAMPLES_MAX);
        assert_eq!(s.max_ms, 9);
        assert_eq!(s.samples.back().unwrap().unix_s, 200 + LATENCY_SAMPLES_MAX as u64 + 9);
    }

    #[test]
    fn reset_counts_what_it_forgot_and_names_are_bounded() {
        let m = LatencyEvents::default();
        for i in 0..LATENCY_EVENTS_MAX + 5 {
            m.add_sample(&format!("e{i}"), 1, 1);
        }
        assert_eq!(m.all().len(), LATENCY_EVENTS_MAX);
        assert_eq!(m.reset(Some(&["e0".into(), "nope".into()])), 1);
        assert_eq!(m.reset(None), LATENCY_EVENTS_MAX - 1);
    }
}
