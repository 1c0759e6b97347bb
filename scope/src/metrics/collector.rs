//! The recording side of scope metrics: atomics for counters, a bounded sample store for
//! durations.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::ScopeMetrics;

/// Samples kept exactly before switching to the bounded histogram.
const EXACT_SAMPLES: usize = 10_000;
/// Bucket growth factor: a bucket's midpoint is within `sqrt(GROWTH) - 1` < 1 % of any value in it.
const GROWTH: f64 = 1.02;
/// Enough buckets to cover every `u64` nanosecond value.
const BUCKETS: usize = 2_240;

pub(crate) struct MetricsCollector {
    spawned: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    resources_registered: AtomicU64,
    resources_disposed: AtomicU64,
    disposal_errors: AtomicU64,
    durations: Mutex<Durations>,
}

impl MetricsCollector {
    pub(crate) fn new() -> MetricsCollector {
        MetricsCollector {
            spawned: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            resources_registered: AtomicU64::new(0),
            resources_disposed: AtomicU64::new(0),
            disposal_errors: AtomicU64::new(0),
            durations: Mutex::new(Durations::default()),
        }
    }

    pub(crate) fn task_spawned(&self) {
        self.spawned.fetch_add(1, Relaxed);
    }

    pub(crate) fn task_ended(&self, ok: bool, duration: Duration) {
        if ok {
            self.durations
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .record(duration);
            self.completed.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn resource_registered(&self) {
        self.resources_registered.fetch_add(1, Relaxed);
    }

    pub(crate) fn resource_disposed(&self, ok: bool) {
        self.resources_disposed.fetch_add(1, Relaxed);
        if !ok {
            self.disposal_errors.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(
        &self,
        scope_name: &str,
        scope_duration: Option<Duration>,
    ) -> ScopeMetrics {
        let durations = self
            .durations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let completed = self.completed.load(Relaxed);
        let total = durations.total;
        let avg = if durations.count == 0 {
            Duration::ZERO
        } else {
            let nanos = total.as_nanos() / u128::from(durations.count);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        };
        ScopeMetrics {
            scope_name: scope_name.to_owned(),
            tasks_spawned: self.spawned.load(Relaxed),
            tasks_completed: completed,
            tasks_failed: self.failed.load(Relaxed),
            total_task_duration: total,
            avg_task_duration: avg,
            p95_task_duration: durations.percentile(0.95),
            resources_registered: self.resources_registered.load(Relaxed),
            resources_disposed: self.resources_disposed.load(Relaxed),
            disposal_errors: self.disposal_errors.load(Relaxed),
            scope_duration,
        }
    }
}

/// Durations of completed tasks: exact while few, a log-bucket histogram once many.
#[derive(Default)]
struct Durations {
    count: u64,
    total: Duration,
    exact: Vec<u64>,
    histogram: Option<Box<[u64]>>,
}

impl Durations {
    fn record(&mut self, d: Duration) {
        self.count += 1;
        self.total = self.total.saturating_add(d);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match &mut self.histogram {
            Some(buckets) => buckets[bucket_of(nanos)] += 1,
            None if self.exact.len() < EXACT_SAMPLES => self.exact.push(nanos),
            None => {
                let mut buckets = vec![0_u64; BUCKETS].into_boxed_slice();
                for &v in self.exact.iter().chain(std::iter::once(&nanos)) {
                    buckets[bucket_of(v)] += 1;
                }
                self.exact = Vec::new();
                self.histogram = Some(buckets);
            }
        }
    }

    /// Nearest-rank percentile: the value at rank `ceil(q * n)` (1-based).
    fn percentile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        match &self.histogram {
            None => {
                let mut sorted = self.exact.clone();
                sorted.sort_unstable();
                Duration::from_nanos(sorted[(rank - 1) as usize])
            }
            Some(buckets) => {
                let mut seen = 0_u64;
                for (index, &n) in buckets.iter().enumerate() {
                    seen += n;
                    if seen >= rank {
                        return Duration::from_nanos(bucket_midpoint(index));
                    }
                }
                Duration::from_nanos(bucket_midpoint(BUCKETS - 1))
            }
        }
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos <= 1 {
        return 0;
    }
    let index = ((nanos as f64).ln() / GROWTH.ln()).floor() as usize;
    index.min(BUCKETS - 1)
}

fn bucket_midpoint(index: usize) -> u64 {
    // Geometric middle of [GROWTH^i, GROWTH^(i+1)).
    GROWTH.powf(index as f64 + 0.5).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn p95_is_nearest_rank() {
        for (n, expected) in [
            (1_u64, 1_u64),
            (19, 19),
            (20, 19),
            (21, 20),
            (40, 38),
            (100, 95),
        ] {
            let mut d = Durations::default();
            for v in 1..=n {
                d.record(ms(v));
            }
            assert_eq!(d.percentile(0.95), ms(expected), "n = {n}");
        }
    }

    #[test]
    fn empty_percentile_is_zero() {
        assert_eq!(Durations::default().percentile(0.95), Duration::ZERO);
    }

    #[test]
    fn many_samples_stay_bounded_and_within_one_percent() {
        let mut d = Durations::default();
        let n = 200_000_u64;
        for v in 1..=n {
            d.record(Duration::from_micros(v));
        }
        assert!(d.exact.capacity() == 0 && d.histogram.as_ref().unwrap().len() == BUCKETS);
        let p95 = d.percentile(0.95).as_nanos() as f64;
        let exact = (190_000_u64 * 1_000) as f64;
        assert!(((p95 - exact) / exact).abs() < 0.01, "p95 {p95} vs {exact}");
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut d = Durations::default();
        for _ in 0..=EXACT_SAMPLES {
            d.record(Duration::MAX);
            d.record(Duration::ZERO);
        }
        assert!(d.percentile(0.95) > Duration::ZERO);
    }

    #[test]
    fn snapshot_counts_and_average() {
        let c = MetricsCollector::new();
        c.task_spawned();
        c.task_spawned();
        c.task_spawned();
        c.task_ended(true, ms(10));
        c.task_ended(true, ms(30));
        c.task_ended(false, ms(1000));
        c.resource_registered();
        c.resource_disposed(false);
        let m = c.snapshot("s", None);
        assert_eq!(
            (m.tasks_spawned, m.tasks_completed, m.tasks_failed),
            (3, 2, 1)
        );
        assert_eq!(m.total_task_duration, ms(40));
        assert_eq!(m.avg_task_duration, ms(20));
        assert_eq!(m.p95_task_duration, ms(30));
        assert_eq!(
            (
                m.resources_registered,
                m.resources_disposed,
                m.disposal_errors
            ),
            (1, 1, 1)
        );
    }
}
