//! Volume anomalies of the inputs: records per window of each topic, scored against the
//! trailing windows with a robust z-score (median and median absolute deviation, so one burst
//! or outage does not move the baseline it is judged by).
//!
//! The scores are gauges (`happystreams_input_volume_zscore{topic}`) that an alert compares with
//! a threshold (`deploy/prometheus/alerts.yml`); `docs/OPERATIONS.md` says how to read them.
//! Each instance counts the records of its own partitions, so a rebalance (which changes its
//! share) starts the baselines again rather than flagging the new share.

use super::metrics::TopicActivity;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Windows a baseline needs before it scores anything.
pub const MIN_WINDOWS: usize = 20;

/// Topics with fewer records per window than this (their median) are not scored: a handful of
/// records more or less (a rarely changed CDC table) is no anomaly.
pub const MIN_MEDIAN: f64 = 20.0;

/// A score beyond this (either way) is logged as an anomaly; the shipped alert uses it too.
pub const THRESHOLD: f64 = 6.0;

/// One topic's trailing window counts.
#[derive(Debug, Clone)]
pub struct Baseline {
    windows: VecDeque<u64>,
    capacity: usize,
}

impl Baseline {
    /// A baseline of the last `capacity` windows (at least [`MIN_WINDOWS`]).
    pub fn new(capacity: usize) -> Self {
        Baseline { windows: VecDeque::new(), capacity: capacity.max(MIN_WINDOWS) }
    }

    /// How far `count` is from the baseline, in robust standard deviations (`None` until the
    /// baseline has [`MIN_WINDOWS`] windows, and for topics below [`MIN_MEDIAN`]).
    ///
    /// The spread is 1.4826 × the median absolute deviation, but never below the Poisson noise
    /// of the median (√median) nor below 1: perfectly steady traffic (a deviation of zero) does
    /// not make every small wobble infinitely surprising.
    pub fn score(&self, count: u64) -> Option<f64> {
        if self.windows.len() < MIN_WINDOWS {
            return None;
        }
        let mut sorted: Vec<f64> = self.windows.iter().map(|&c| c as f64).collect();
        let median = median_of(&mut sorted);
        if median < MIN_MEDIAN {
            return None;
        }
        let mut deviations: Vec<f64> = sorted.iter().map(|c| (c - median).abs()).collect();
        let spread = (1.4826 * median_of(&mut deviations)).max(median.sqrt()).max(1.0);
        Some((count as f64 - median) / spread)
    }

    /// Adds a finished window.
    pub fn push(&mut self, count: u64) {
        if self.windows.len() == self.capacity {
            self.windows.pop_front();
        }
        self.windows.push_back(count);
    }
}

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Turns running totals per topic into window counts and scores.
#[derive(Debug, Default)]
pub struct Monitor {
    capacity: usize,
    last_totals: BTreeMap<String, u64>,
    baselines: BTreeMap<String, Baseline>,
}

/// One topic's last window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The topic.
    pub topic: String,
    /// Its records in the window.
    pub records: u64,
    /// Its score against the trailing windows, once there are enough.
    pub score: Option<f64>,
}

impl Monitor {
    /// A monitor keeping `capacity` windows per topic.
    pub fn new(capacity: usize) -> Self {
        Monitor { capacity, ..Monitor::default() }
    }

    /// Closes a window given each topic's running total now.
    pub fn close_window(&mut self, totals: &[(String, u64)]) -> Vec<Window> {
        totals
            .iter()
            .filter_map(|(topic, total)| {
                // A topic's first window is partial (it started with its first record): skipped.
                let last = self.last_totals.insert(topic.clone(), *total)?;
                let records = total.saturating_sub(last);
                let baseline = self.baselines.entry(topic.clone()).or_insert_with(|| Baseline::new(self.capacity));
                let score = baseline.score(records);
                baseline.push(records);
                Some(Window { topic: topic.clone(), records, score })
            })
            .collect()
    }
}

/// Bumped whenever this process's share of the input partitions changes (a rebalance).
static ASSIGNMENT_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Says that this process's partitions changed: its volumes are another share of each topic
/// from now on, so the baselines start again (instead of flagging the new share as an anomaly).
pub fn assignment_changed() {
    ASSIGNMENT_EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Every `window`, scores each input topic's records of the window and sets
/// `happystreams_input_volume_records{topic}` and `happystreams_input_volume_zscore{topic}`.
pub async fn watch(inputs: &'static TopicActivity, window: Duration, baseline_windows: usize) {
    let mut monitor = Monitor::new(baseline_windows);
    let mut ticks = tokio::time::interval(window);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let epoch = || ASSIGNMENT_EPOCH.load(std::sync::atomic::Ordering::Relaxed);
    let mut seen_epoch = epoch();
    monitor.close_window(&inputs.totals());
    loop {
        ticks.tick().await;
        if epoch() != seen_epoch {
            // A window spanning a rebalance is a mix of two shares: skipped, and the baselines
            // start again with the next one.
            seen_epoch = epoch();
            monitor = Monitor::new(baseline_windows);
            monitor.close_window(&inputs.totals());
            for (topic, _) in inputs.totals() {
                metrics::gauge!("happystreams_input_volume_zscore", "topic" => topic).set(0.0);
            }
            continue;
        }
        for window in monitor.close_window(&inputs.totals()) {
            metrics::gauge!("happystreams_input_volume_records", "topic" => window.topic.clone())
                .set(window.records as f64);
            if let Some(score) = window.score {
                metrics::gauge!("happystreams_input_volume_zscore", "topic" => window.topic.clone()).set(score);
                if score.abs() > THRESHOLD {
                    tracing::info!(topic = %window.topic, records = window.records, score, "input volume anomaly");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A steady stream around `mean` records per window from `seed`: noise of 1.5× the Poisson
    /// deviation, bounded at 3 deviations (a sum of three uniforms).
    fn steady(seed: u64, mean: f64, windows: usize) -> Vec<u64> {
        let mut state = seed | 1;
        (0..windows)
            .map(|_| {
                let mut sum = 0.0;
                for _ in 0..3 {
                    // xorshift64*
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    sum += (state >> 11) as f64 / (1u64 << 53) as f64;
                }
                let deviate = (sum - 1.5) / 0.5;
                (mean + deviate * mean.sqrt() * 1.5).max(0.0).round() as u64
            })
            .collect()
    }

    fn scores(counts: &[u64]) -> Vec<Option<f64>> {
        let mut monitor = Monitor::new(60);
        let mut total = 0;
        monitor.close_window(&[("t".into(), 0)]);
        counts
            .iter()
            .map(|c| {
                total += c;
                monitor.close_window(&[("t".into(), total)])[0].score
            })
            .collect()
    }

    proptest! {
        #[test]
        fn steady_traffic_is_never_flagged(seed in any::<u64>(), mean in 20.0f64..50_000.0) {
            let scores = scores(&steady(seed, mean, 200));
            let flagged: Vec<_> = scores.iter().enumerate().filter(|(_, s)| s.is_some_and(|s| s.abs() > THRESHOLD)).collect();
            prop_assert!(flagged.is_empty(), "steady traffic flagged: {flagged:?}");
        }

        #[test]
        fn a_drop_and_a_spike_are_flagged(seed in any::<u64>(), mean in 200.0f64..50_000.0, at in 30usize..150) {
            let mut counts = steady(seed, mean, 200);
            counts[at] /= 10;
            counts[at + 20] *= 5;
            let scores = scores(&counts);
            prop_assert!(scores[at].is_some_and(|s| s < -THRESHOLD), "drop not flagged: {:?}", scores[at]);
            prop_assert!(scores[at + 20].is_some_and(|s| s > THRESHOLD), "spike not flagged: {:?}", scores[at + 20]);
        }
    }

    #[test]
    fn a_trickle_is_not_scored() {
        let mut counts = vec![3; 30];
        counts.push(40);
        assert!(scores(&counts).iter().all(Option::is_none));
    }

    #[test]
    fn nothing_is_scored_before_the_baseline_fills() {
        let mut counts = vec![100; MIN_WINDOWS];
        counts.push(0);
        let scores = scores(&counts);
        assert_eq!(scores[..MIN_WINDOWS], [None; MIN_WINDOWS]);
        assert!(scores[MIN_WINDOWS].is_some_and(|s| s < -THRESHOLD));
    }

    #[test]
    fn an_outage_is_flagged_for_as_long_as_it_lasts_within_the_baseline() {
        let mut counts = vec![1000; 30];
        counts.extend([0; 10]);
        let scores = scores(&counts);
        assert!(scores[30..].iter().all(|s| s.is_some_and(|s| s < -THRESHOLD)), "{scores:?}");
    }
}
