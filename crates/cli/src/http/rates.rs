//! Records per second per stage, for `/api/stats` and so the page: over the last
//! [`WINDOW`], or since the server started while it is younger. Every `/api/stats`
//! request is a sample; the counters when the server started are the first, so the
//! very first request already has a rate. (`/metrics` carries counters alone:
//! Prometheus computes its own rates with `rate()`.)

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use millrace_runtime::RunSummary;
use serde::Serialize;

/// How far back a rate looks.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Samples kept at most: many requests within one window thin out, not pile up.
const MAX_SAMPLES: usize = 256;

/// Per second, over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StageRates {
    pub records_in: f64,
    pub emitted: f64,
}

pub struct Observed {
    /// In the order of the run's stages.
    pub per_stage: Vec<StageRates>,
    /// The time the rates are measured over.
    pub window_seconds: f64,
}

pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
}

struct Sample {
    at: Instant,
    /// Per stage: records in, records emitted.
    counts: Vec<[u64; 2]>,
}

fn counts(summary: &RunSummary) -> Vec<[u64; 2]> {
    summary
        .stages
        .iter()
        .map(|s| [s.counters.records_in, s.counters.emitted])
        .collect()
}

impl Rates {
    pub fn new(summary: &RunSummary) -> Rates {
        Rates::starting(Instant::now(), counts(summary))
    }

    fn starting(at: Instant, counts: Vec<[u64; 2]>) -> Rates {
        Rates {
            samples: Mutex::new(VecDeque::from([Sample { at, counts }])),
        }
    }

    pub fn observe(&self, summary: &RunSummary) -> Observed {
        self.observe_at(Instant::now(), counts(summary))
    }

    fn observe_at(&self, now: Instant, counts: Vec<[u64; 2]>) -> Observed {
        // Every update leaves the queue whole: a poisoned lock is still sound.
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back(Sample { at: now, counts });
        // The baseline is the newest sample at least WINDOW old (or the oldest there is).
        while samples
            .get(1)
            .is_some_and(|s| now.saturating_duration_since(s.at) >= WINDOW)
        {
            samples.pop_front();
        }
        if samples.len() > MAX_SAMPLES {
            samples.remove(1);
        }
        let (Some(base), Some(last)) = (samples.front(), samples.back()) else {
            return Observed {
                per_stage: Vec::new(),
                window_seconds: 0.0,
            };
        };
        let secs = now.saturating_duration_since(base.at).as_secs_f64();
        let per_second = |now: u64, then: u64| {
            if secs > 0.0 {
                now.saturating_sub(then) as f64 / secs
            } else {
                0.0
            }
        };
        let per_stage = last
            .counts
            .iter()
            .zip(&base.counts)
            .map(|(n, b)| StageRates {
                records_in: per_second(n[0], b[0]),
                emitted: per_second(n[1], b[1]),
            })
            .collect();
        Observed {
            per_stage,
            window_seconds: secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn the_first_request_has_a_rate_since_the_start() {
        let t0 = Instant::now();
        let r = Rates::starting(t0, vec![[0, 0]]);
        let o = r.observe_at(at(t0, 2), vec![[100, 300]]);
        assert_eq!(o.window_seconds, 2.0);
        assert_eq!(
            o.per_stage,
            vec![StageRates {
                records_in: 50.0,
                emitted: 150.0
            }]
        );
    }

    #[test]
    fn rates_look_back_one_window_only() {
        let t0 = Instant::now();
        let r = Rates::starting(t0, vec![[0, 0]]);
        // 1000 records in the first 5 s, then 20 a second.
        r.observe_at(at(t0, 5), vec![[1000, 0]]);
        r.observe_at(at(t0, 10), vec![[1100, 0]]);
        r.observe_at(at(t0, 15), vec![[1200, 0]]);
        let o = r.observe_at(at(t0, 20), vec![[1300, 0]]);
        assert_eq!(o.window_seconds, 10.0, "from the sample at 10 s");
        assert_eq!(o.per_stage[0].records_in, 20.0);
        // Nothing more for a long while: the rate falls to 0.
        let o = r.observe_at(at(t0, 60), vec![[1300, 0]]);
        assert_eq!(o.per_stage[0].records_in, 0.0);
    }

    #[test]
    fn a_count_that_goes_back_gives_no_negative_rate() {
        let t0 = Instant::now();
        let r = Rates::starting(t0, vec![[10, 0]]);
        // Records handed to another instance leave this one's count.
        let o = r.observe_at(at(t0, 1), vec![[4, 0]]);
        assert_eq!(o.per_stage[0].records_in, 0.0);
    }

    #[test]
    fn many_requests_in_a_window_keep_a_bounded_history() {
        let t0 = Instant::now();
        let r = Rates::starting(t0, vec![[0, 0]]);
        for i in 0..10_000u64 {
            r.observe_at(t0 + Duration::from_millis(i / 4), vec![[i, 0]]);
        }
        let n = r.samples.lock().map(|s| s.len()).unwrap_or(0);
        assert!(n <= MAX_SAMPLES, "{n} samples kept");
        let o = r.observe_at(at(t0, 3), vec![[12_000, 0]]);
        assert_eq!(o.window_seconds, 3.0, "the baseline is still the start");
    }
}
