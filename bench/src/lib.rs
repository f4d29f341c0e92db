//! Bench-only crate: the timing harness the `gate` benchmark uses.
//!
//! Every engine is timed the same way. One *pass* decides the workload's requests once, in the
//! same order, and gives one sample: the pass's time divided by its request count. Arms are
//! timed in turns (a slice of passes for each arm, then the next arm, for several rounds), so
//! that other work on the machine slows every engine alike rather than whichever ran during it.
//! A figure is the median (p50) over an arm's samples; the p10–p90 spread is printed beside it.
//!
//! A pass, not a single call, is the unit because one call of the gate takes tens of
//! nanoseconds, about what reading the clock costs; a pass of 512 calls takes tens of
//! microseconds, so the clock's cost is under 0.1 %. The median of per-pass means is close to
//! the mean cost per call; for costs skewed to the right it is at or above the per-call median,
//! so the figures lean against the engine measured, the gate included.

#![allow(clippy::indexing_slicing, reason = "a benchmark fails loudly")]

use std::time::{Duration, Instant};

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Turns each arm gets.
    pub rounds: usize,
    /// Time an arm runs passes for in one turn (at least one pass).
    pub slice: Duration,
    /// An arm stops early once it has this many samples and has run `max_time`: a slow engine
    /// (Cedar with one policy per grant at 10,000 rules takes seconds per pass) must not hold up
    /// the run for `rounds` passes.
    pub min_samples: usize,
    pub max_time: Duration,
    /// Untimed passes before the first round, for this long per arm (none when zero: the
    /// agreement check before timing has already run every request through every engine once).
    pub warm_up: Duration,
}

impl Settings {
    pub const FULL: Settings = Settings {
        rounds: 40,
        slice: Duration::from_millis(50),
        min_samples: 7,
        max_time: Duration::from_secs(20),
        warm_up: Duration::from_millis(300),
    };

    pub const QUICK: Settings = Settings {
        rounds: 5,
        slice: Duration::from_millis(30),
        min_samples: 2,
        max_time: Duration::from_secs(1),
        warm_up: Duration::ZERO,
    };
}

/// One thing to time: `pass` decides every request once.
pub struct Arm<'a> {
    pub name: &'static str,
    pass: Box<dyn FnMut() + 'a>,
    requests: usize,
    /// Nanoseconds per request, one entry per pass.
    samples: Vec<f64>,
    spent: Duration,
}

impl<'a> Arm<'a> {
    pub fn new(name: &'static str, requests: usize, pass: impl FnMut() + 'a) -> Arm<'a> {
        Arm {
            name,
            pass: Box::new(pass),
            requests,
            samples: Vec::new(),
            spent: Duration::ZERO,
        }
    }

    fn done(&self, settings: &Settings) -> bool {
        self.samples.len() >= settings.min_samples && self.spent >= settings.max_time
    }

    fn timed_pass(&mut self) {
        let started = Instant::now();
        (self.pass)();
        let elapsed = started.elapsed();
        self.spent += elapsed;
        self.samples
            .push(elapsed.as_nanos() as f64 / self.requests as f64);
    }

    pub fn stats(&self) -> Stats {
        Stats {
            p10: percentile(&self.samples, 10.0),
            p50: percentile(&self.samples, 50.0),
            p90: percentile(&self.samples, 90.0),
            samples: self.samples.len(),
        }
    }
}

/// Nanoseconds per request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub samples: usize,
}

/// Warms every arm up, then times them in turns.
pub fn run(arms: &mut [Arm<'_>], settings: &Settings) {
    for arm in arms.iter_mut() {
        let started = Instant::now();
        while started.elapsed() < settings.warm_up {
            (arm.pass)();
        }
    }
    for _ in 0..settings.rounds {
        for arm in arms.iter_mut() {
            if arm.done(settings) {
                continue;
            }
            let started = Instant::now();
            loop {
                arm.timed_pass();
                if started.elapsed() >= settings.slice || arm.done(settings) {
                    break;
                }
            }
        }
    }
}

/// The `p`th percentile (0–100) by linear interpolation between closest ranks; NaN when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

/// The machine's load averages (`/proc/loadavg`), to print beside figures taken while other
/// work may be running; empty where there is no such file.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A duration in nanoseconds, in the unit that reads best.
pub fn time(nanoseconds: f64) -> String {
    if nanoseconds >= 1e6 {
        format!("{:.1} ms", nanoseconds / 1e6)
    } else if nanoseconds >= 1e4 {
        format!("{:.0} µs", nanoseconds / 1e3)
    } else if nanoseconds >= 1e3 {
        format!("{:.1} µs", nanoseconds / 1e3)
    } else {
        format!("{nanoseconds:.0} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let samples = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&samples, 50.0), 3.0);
        assert_eq!(percentile(&samples, 0.0), 1.0);
        assert_eq!(percentile(&samples, 100.0), 5.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.5);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn a_slow_arm_stops_at_its_minimum_once_its_time_is_spent() {
        let settings = Settings {
            rounds: 50,
            slice: Duration::ZERO,
            min_samples: 3,
            max_time: Duration::ZERO,
            warm_up: Duration::ZERO,
        };
        let mut passes = 0;
        let mut arms = [Arm::new("count", 1, || passes += 1)];
        run(&mut arms, &settings);
        assert_eq!(arms[0].stats().samples, 3);
        drop(arms);
        assert_eq!(passes, 3, "no warm-up pass and three timed ones");
    }

    #[test]
    fn times_read_in_their_unit() {
        assert_eq!(time(212.4), "212 ns");
        assert_eq!(time(4_812.0), "4.8 µs");
        assert_eq!(time(61_000.0), "61 µs");
        assert_eq!(time(11_700_000.0), "11.7 ms");
    }
}
