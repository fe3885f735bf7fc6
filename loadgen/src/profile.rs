//! Rate profiles: the target rate of one application as a function of workload time.
//!
//! All times here are *workload* seconds. A run maps real time to workload time with the
//! workload's time compression factor (`workload_s = real_s * time_compression`), so a
//! diurnal day of 86,400 workload seconds lasts one minute at a compression of 1440.

use crate::rng::{mix64, Rng};

pub const DAY_S: f64 = 86_400.0;
pub const WEEK_S: f64 = 7.0 * DAY_S;

/// Daily and weekly seasonality with noise.
#[derive(Clone, Debug, PartialEq)]
pub struct Diurnal {
    /// Mean rate, ops/s.
    pub mean: f64,
    /// Relative amplitude of the daily cycle: the peak is `mean * (1 + daily_amplitude)`.
    pub daily_amplitude: f64,
    /// Hour of the day (0..24) of the daily peak.
    pub peak_hour: f64,
    /// Relative amplitude of the weekly cycle.
    pub weekly_amplitude: f64,
    /// Day of the week (0..7) of the weekly peak.
    pub peak_day: f64,
    /// Relative noise: the rate is multiplied by 1 + noise * z, z in [-1, 1], a smooth
    /// (piecewise-linear) function of time, so the same seed gives the same curve.
    pub noise: f64,
    /// Spacing of the noise knots, workload seconds.
    pub noise_period_s: f64,
    /// Workload time at the start of the run, seconds since Monday 00:00.
    pub start_s: f64,
    pub seed: u64,
}

impl Diurnal {
    pub fn rate(&self, t: f64) -> f64 {
        let s = self.start_s + t;
        let day = (s.rem_euclid(DAY_S)) / 3600.0;
        let week_day = s.rem_euclid(WEEK_S) / DAY_S;
        let daily = 1.0
            + self.daily_amplitude * (std::f64::consts::TAU * (day - self.peak_hour) / 24.0).cos();
        let weekly = 1.0
            + self.weekly_amplitude
                * (std::f64::consts::TAU * (week_day - self.peak_day) / 7.0).cos();
        let mut r = self.mean * daily * weekly;
        if self.noise > 0.0 && self.noise_period_s > 0.0 {
            let x = s / self.noise_period_s;
            let k = x.floor();
            let f = x - k;
            let knot = |i: f64| {
                let h = mix64(self.seed ^ mix64(i as i64 as u64));
                (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            };
            let z = knot(k) * (1.0 - f) + knot(k + 1.0) * f;
            r *= 1.0 + self.noise * z;
        }
        r.max(0.0)
    }
}

/// A rate profile.
#[derive(Clone, Debug, PartialEq)]
pub enum RateProfile {
    Constant {
        ops: f64,
    },
    /// From `from` to `to` linearly over `duration_s`, then `to`.
    Ramp {
        from: f64,
        to: f64,
        duration_s: f64,
    },
    /// Piecewise constant: `(at_s, ops)`, sorted, the first at 0.
    Step {
        steps: Vec<(f64, f64)>,
    },
    /// `base`, rising linearly over `rise_s` to `peak` at `at_s`, holding for `duration_s`,
    /// falling back over `rise_s`.
    Spike {
        base: f64,
        peak: f64,
        at_s: f64,
        duration_s: f64,
        rise_s: f64,
    },
    Diurnal(Diurnal),
    /// db_bench's mixgraph QPS model: a * sin(b * t + c) + d.
    Sine {
        a: f64,
        b: f64,
        c: f64,
        d: f64,
    },
    /// Linear interpolation between `(time_s, ops)` points; the last rate holds after the end.
    Replay {
        points: Vec<(f64, f64)>,
    },
}

impl RateProfile {
    /// Target rate (ops/s) at workload time `t` seconds.
    pub fn rate(&self, t: f64) -> f64 {
        let r = match self {
            RateProfile::Constant { ops } => *ops,
            RateProfile::Ramp { from, to, duration_s } => {
                if t >= *duration_s || *duration_s <= 0.0 {
                    *to
                } else {
                    from + (to - from) * (t / duration_s)
                }
            }
            RateProfile::Step { steps } => {
                let i = steps.partition_point(|&(at, _)| at <= t);
                steps[i.saturating_sub(1)].1
            }
            RateProfile::Spike { base, peak, at_s, duration_s, rise_s } => {
                let up = at_s - rise_s;
                let top_end = at_s + duration_s;
                let down_end = top_end + rise_s;
                if t < up || t >= down_end {
                    *base
                } else if t < *at_s {
                    base + (peak - base) * ((t - up) / rise_s)
                } else if t < top_end {
                    *peak
                } else {
                    peak - (peak - base) * ((t - top_end) / rise_s)
                }
            }
            RateProfile::Diurnal(d) => d.rate(t),
            RateProfile::Sine { a, b, c, d } => a * (b * t + c).sin() + d,
            RateProfile::Replay { points } => {
                let i = points.partition_point(|&(at, _)| at <= t);
                if i == 0 {
                    points[0].1
                } else if i == points.len() {
                    points[i - 1].1
                } else {
                    let (t0, r0) = points[i - 1];
                    let (t1, r1) = points[i];
                    r0 + (r1 - r0) * (t - t0) / (t1 - t0)
                }
            }
        };
        if r.is_finite() {
            r.max(0.0)
        } else {
            0.0
        }
    }

    /// The rate that `--rate` scales against: the profile's nominal (mean or base) rate.
    pub fn nominal(&self) -> f64 {
        match self {
            RateProfile::Constant { ops } => *ops,
            RateProfile::Ramp { to, .. } => *to,
            RateProfile::Step { steps } => steps.iter().map(|s| s.1).fold(0.0, f64::max),
            RateProfile::Spike { base, .. } => *base,
            RateProfile::Diurnal(d) => d.mean,
            RateProfile::Sine { d, .. } => *d,
            RateProfile::Replay { points } => {
                points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64
            }
        }
    }

    /// The same profile with every rate multiplied by `f`.
    pub fn scaled(&self, f: f64) -> RateProfile {
        let mut p = self.clone();
        match &mut p {
            RateProfile::Constant { ops } => *ops *= f,
            RateProfile::Ramp { from, to, .. } => {
                *from *= f;
                *to *= f;
            }
            RateProfile::Step { steps } => steps.iter_mut().for_each(|s| s.1 *= f),
            RateProfile::Spike { base, peak, .. } => {
                *base *= f;
                *peak *= f;
            }
            RateProfile::Diurnal(d) => d.mean *= f,
            RateProfile::Sine { a, d, .. } => {
                *a *= f;
                *d *= f;
            }
            RateProfile::Replay { points } => points.iter_mut().for_each(|p| p.1 *= f),
        }
        p
    }
}

/// Intended start times for an open loop: request i+1 is due 1 / rate(t_i) after request i
/// (wrk2's schedule, with a rate that may change over time). Times are real nanoseconds
/// since the run started.
#[derive(Clone, Debug)]
pub struct Schedule {
    profile: RateProfile,
    /// Fraction of the profile's rate this schedule carries (its share of connections).
    share: f64,
    time_compression: f64,
    next_ns: u64,
}

/// While the rate is zero (or tiny), look again this often.
const IDLE_RECHECK_NS: u64 = 10_000_000;

impl Schedule {
    pub fn new(profile: RateProfile, share: f64, time_compression: f64, rng: &mut Rng) -> Self {
        let mut s = Schedule { profile, share, time_compression, next_ns: 0 };
        // Start each schedule at a random phase within its first gap so several schedules
        // do not fire in lockstep.
        let gap = s.gap_ns(0).unwrap_or(IDLE_RECHECK_NS);
        s.next_ns = (rng.f64() * gap as f64) as u64;
        s
    }

    /// Target rate of this schedule (ops/s) at real time `ns`.
    pub fn rate_at(&self, ns: u64) -> f64 {
        self.profile.rate(ns as f64 / 1e9 * self.time_compression) * self.share
    }

    /// The gap to the next request: 1 / rate, with the rate taken at the gap's midpoint so
    /// a changing rate is followed without lag (one midpoint refinement).
    fn gap_ns(&self, ns: u64) -> Option<u64> {
        let r = self.rate_at(ns);
        if r < 1e-3 {
            return None;
        }
        let g = 1e9 / r;
        let mid = self.rate_at(ns + (g / 2.0) as u64);
        let g = if mid >= 1e-3 { 1e9 / mid } else { g };
        Some((g as u64).max(1))
    }

    /// The next due time, without consuming it.
    pub fn peek(&self) -> u64 {
        self.next_ns
    }

    /// If a request is due at or before `now_ns`, its intended start time.
    #[inline]
    pub fn next_due(&mut self, now_ns: u64) -> Option<u64> {
        loop {
            if self.next_ns > now_ns {
                return None;
            }
            let t = self.next_ns;
            match self.gap_ns(t) {
                Some(g) => {
                    self.next_ns = t + g;
                    return Some(t);
                }
                None => self.next_ns = t + IDLE_RECHECK_NS,
            }
        }
    }
}
