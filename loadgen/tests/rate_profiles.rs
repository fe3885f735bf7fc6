//! Rate profiles: their shapes, time compression, CSV replay, and the open-loop schedule
//! that turns a rate into intended start times.

use shardcast_loadgen::profile::{Diurnal, RateProfile, Schedule, DAY_S};
use shardcast_loadgen::rng::Rng;
use shardcast_loadgen::workload::{parse_rate_csv, Workload};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn constant_ramp_step_and_spike_have_their_shapes() {
    assert_eq!(RateProfile::Constant { ops: 500.0 }.rate(123.0), 500.0);
    let ramp = RateProfile::Ramp { from: 100.0, to: 300.0, duration_s: 10.0 };
    assert_eq!(ramp.rate(0.0), 100.0);
    assert_eq!(ramp.rate(5.0), 200.0);
    assert_eq!(ramp.rate(10.0), 300.0);
    assert_eq!(ramp.rate(99.0), 300.0);
    let step = RateProfile::Step { steps: vec![(0.0, 10.0), (5.0, 50.0), (8.0, 20.0)] };
    assert_eq!(step.rate(4.999), 10.0);
    assert_eq!(step.rate(5.0), 50.0);
    assert_eq!(step.rate(100.0), 20.0);
    let spike =
        RateProfile::Spike { base: 100.0, peak: 1100.0, at_s: 10.0, duration_s: 5.0, rise_s: 2.0 };
    assert_eq!(spike.rate(7.0), 100.0);
    assert_eq!(spike.rate(9.0), 600.0); // half way up
    assert_eq!(spike.rate(12.0), 1100.0);
    assert_eq!(spike.rate(16.0), 600.0); // half way down
    assert_eq!(spike.rate(18.0), 100.0);
}

fn diurnal(noise: f64) -> Diurnal {
    Diurnal {
        mean: 1000.0,
        daily_amplitude: 0.5,
        peak_hour: 14.0,
        weekly_amplitude: 0.0,
        peak_day: 2.0,
        noise,
        noise_period_s: 900.0,
        start_s: 0.0,
        seed: 9,
    }
}

#[test]
fn diurnal_peaks_at_its_hour_and_repeats_daily() {
    let d = RateProfile::Diurnal(diurnal(0.0));
    let h = 3600.0;
    assert!(close(d.rate(14.0 * h), 1500.0, 1e-6));
    assert!(close(d.rate(2.0 * h), 500.0, 1e-6));
    assert!(close(d.rate(14.0 * h + DAY_S), 1500.0, 1e-6));
    // The peak is the maximum over the day.
    let (argmax, _) = (0..24 * 60)
        .map(|m| (m, d.rate(m as f64 * 60.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(argmax, 14 * 60);
    // The mean over a day is the mean.
    let mean: f64 = (0..86_400).map(|s| d.rate(s as f64)).sum::<f64>() / 86_400.0;
    assert!(close(mean, 1000.0, 0.01));
}

#[test]
fn diurnal_weekly_cycle_and_noise_stay_within_bounds_and_are_reproducible() {
    let mut w = diurnal(0.0);
    w.weekly_amplitude = 0.2;
    w.peak_day = 2.0 + 14.0 / 24.0; // Wednesday 14:00
    let d = RateProfile::Diurnal(w);
    let at = |day: f64| d.rate(day * DAY_S + 14.0 * 3600.0);
    assert!(close(at(2.0), 1500.0 * 1.2, 1e-6));
    assert!(at(2.0) > at(0.0) && at(2.0) > at(5.0));
    let plain = RateProfile::Diurnal(diurnal(0.0));
    let noisy = RateProfile::Diurnal(diurnal(0.1));
    let again = RateProfile::Diurnal(diurnal(0.1));
    let mut differs = 0;
    for s in (0..86_400).step_by(37) {
        let (p, n) = (plain.rate(s as f64), noisy.rate(s as f64));
        assert!(n >= p * 0.9 - 1e-9 && n <= p * 1.1 + 1e-9, "noise out of bounds at {s}");
        assert_eq!(n, again.rate(s as f64), "same seed, same curve");
        differs += (n != p) as u32;
    }
    assert!(differs > 100);
}

#[test]
fn mixgraph_sine_has_a_one_day_period() {
    let s = RateProfile::Sine { a: 1000.0, b: 0.000073, c: 0.0, d: 4500.0 };
    let period = std::f64::consts::TAU / 0.000073;
    assert!(close(period, DAY_S, 0.005 * DAY_S), "period {period}");
    assert!(close(s.rate(period / 4.0), 5500.0, 1e-6));
    assert!(close(s.rate(3.0 * period / 4.0), 3500.0, 1e-6));
}

#[test]
fn replay_interpolates_a_csv() {
    let pts = parse_rate_csv("time_s,ops\n# comment\n0,100\n10,200\n20,0\n").unwrap();
    let r = RateProfile::Replay { points: pts };
    assert_eq!(r.rate(0.0), 100.0);
    assert_eq!(r.rate(5.0), 150.0);
    assert_eq!(r.rate(15.0), 100.0);
    assert_eq!(r.rate(25.0), 0.0);
    let e = parse_rate_csv("0,100\n5,x\n").unwrap_err();
    assert!(e.contains("line 2"), "{e}");
    let e = parse_rate_csv("0,100\n0,200\n").unwrap_err();
    assert!(e.contains("times must increase"), "{e}");
}

/// Intended start times of a schedule over `secs` seconds.
fn schedule_count(p: RateProfile, share: f64, compression: f64, secs: f64) -> Vec<u64> {
    let mut s = Schedule::new(p, share, compression, &mut Rng::new(1));
    let end = (secs * 1e9) as u64;
    let mut out = Vec::new();
    while let Some(t) = s.next_due(end - 1) {
        out.push(t);
    }
    out
}

#[test]
fn schedule_issues_the_integral_of_the_rate() {
    // Constant 1000/s for 2 s: 2000 requests evenly spaced.
    let t = schedule_count(RateProfile::Constant { ops: 1000.0 }, 1.0, 1.0, 2.0);
    assert!((1999..=2001).contains(&t.len()), "{}", t.len());
    assert!(t.windows(2).all(|w| (999_000..=1_001_000).contains(&(w[1] - w[0]))));
    // Ramp 0 -> 2000 over 2 s: integral 2000; a share of 0.25 carries a quarter.
    let t = schedule_count(
        RateProfile::Ramp { from: 0.0, to: 2000.0, duration_s: 2.0 },
        0.25,
        1.0,
        2.0,
    );
    assert!((470..=530).contains(&t.len()), "{}", t.len());
    // Rate zero issues nothing.
    assert!(schedule_count(RateProfile::Constant { ops: 0.0 }, 1.0, 1.0, 1.0).is_empty());
}

#[test]
fn time_compression_fits_a_day_into_a_minute() {
    // A full compressed day (60 s at 1440x) of a diurnal profile averages its mean.
    let t = schedule_count(RateProfile::Diurnal(diurnal(0.0)), 1.0, 1440.0, 60.0);
    assert!((t.len() as f64 - 60_000.0).abs() < 600.0, "{}", t.len());
    // The busiest real second is the one at 14:00 workload time: 14/24 of the minute = 35 s.
    let mut per_s = [0u32; 60];
    for x in &t {
        per_s[(*x / 1_000_000_000) as usize] += 1;
    }
    let busiest = per_s.iter().enumerate().max_by_key(|x| x.1).unwrap().0;
    assert!((34..=35).contains(&busiest), "busiest second {busiest}");
}

#[test]
fn diurnal_3apps_peaks_fall_at_different_hours() {
    let w = Workload::load("diurnal-3apps").unwrap();
    let peaks: Vec<u32> = w
        .applications
        .iter()
        .map(|a| {
            let p = a.rate.as_ref().unwrap();
            (0..24 * 4)
                .max_by(|x, y| p.rate(*x as f64 * 900.0).total_cmp(&p.rate(*y as f64 * 900.0)))
                .unwrap()
                / 4
        })
        .collect();
    // Noise moves a peak by at most an hour or so.
    for (got, want) in peaks.iter().zip([14u32, 3, 21]) {
        assert!(got.abs_diff(want) <= 1, "peaks {peaks:?}");
    }
}
