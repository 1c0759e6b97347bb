//! The recording side of scope metrics: atomics for counters, a bounded sample store for
//! durations.
//!
//! The counters live behind an `Arc` so that the process-wide registry (feature `metrics`) can
//! read a scope's numbers while the scope is alive; when the scope's state is dropped its final
//! numbers are folded into the registry's per-name totals, so exported counters never go back.

use crate::core::error::Error;
use crate::core::observer::{ClosedScope, EndedTask, Observer, SpawnedTask, Wants};
use crate::core::scope::{Scope, ScopeBuilder, Shared};
use crate::util::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[cfg(feature = "metrics")]
use tokio::time::Instant;

use super::{DurationHistogram, ScopeMetrics};

/// Samples kept exactly before switching to the bounded histogram.
const EXACT_SAMPLES: usize = 10_000;
/// Bucket growth factor: a bucket's midpoint is within `sqrt(GROWTH) - 1` < 1 % of any value in it.
const GROWTH: f64 = 1.02;
/// Enough buckets to cover every `u64` nanosecond value.
const BUCKETS: usize = 2_240;

/// Upper bounds (inclusive, in nanoseconds) of the exported duration histogram's buckets:
/// 0.5 ms to 60 s, roughly ×2.5 apart, so both sub-millisecond tasks and slow calls land in a
/// bucket of their own.
pub(crate) const HISTOGRAM_BOUNDS_NANOS: [u64; 16] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// One scope's counters; shared with the process-wide registry when feature `metrics` is on.
pub(crate) struct Counters {
    #[cfg(feature = "metrics")]
    pub(crate) name: String,
    spawned: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    resources_registered: AtomicU64,
    resources_disposed: AtomicU64,
    disposal_errors: AtomicU64,
    durations: Mutex<Durations>,
    #[cfg(feature = "metrics")]
    pub(crate) created: Instant,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) lifetime: OnceLock<Duration>,
}

impl Counters {
    fn new(#[cfg_attr(not(feature = "metrics"), allow(unused))] name: &str) -> Counters {
        Counters {
            #[cfg(feature = "metrics")]
            name: name.to_owned(),
            spawned: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            resources_registered: AtomicU64::new(0),
            resources_disposed: AtomicU64::new(0),
            disposal_errors: AtomicU64::new(0),
            durations: Mutex::new(Durations::default()),
            #[cfg(feature = "metrics")]
            created: Instant::now(),
            lifetime: OnceLock::new(),
        }
    }

    /// Adds this scope's numbers to `totals` (used by the registry to aggregate by name).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn add_to(&self, totals: &mut Totals) {
        totals.spawned += self.spawned.load(Relaxed);
        totals.completed += self.completed.load(Relaxed);
        totals.failed += self.failed.load(Relaxed);
        totals.resources_registered += self.resources_registered.load(Relaxed);
        totals.resources_disposed += self.resources_disposed.load(Relaxed);
        totals.disposal_errors += self.disposal_errors.load(Relaxed);
        totals.durations.merge(&lock(&self.durations));
    }
}

/// Sums of several scopes' counters: what the registry reports for one scope name.
#[derive(Default)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Totals {
    pub(crate) spawned: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) resources_registered: u64,
    pub(crate) resources_disposed: u64,
    pub(crate) disposal_errors: u64,
    pub(crate) durations: Durations,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
impl Totals {
    /// Adds `other`'s numbers to these.
    pub(crate) fn merge(&mut self, other: &Totals) {
        self.spawned += other.spawned;
        self.completed += other.completed;
        self.failed += other.failed;
        self.resources_registered += other.resources_registered;
        self.resources_disposed += other.resources_disposed;
        self.disposal_errors += other.disposal_errors;
        self.durations.merge(&other.durations);
    }

    /// The totals as a [`ScopeMetrics`] named `name`.
    pub(crate) fn to_metrics(&self, name: &str, scope_duration: Option<Duration>) -> ScopeMetrics {
        self.durations.to_metrics(ScopeMetrics {
            scope_name: name.to_owned(),
            tasks_spawned: self.spawned,
            tasks_completed: self.completed,
            tasks_failed: self.failed,
            resources_registered: self.resources_registered,
            resources_disposed: self.resources_disposed,
            disposal_errors: self.disposal_errors,
            scope_duration,
            ..ScopeMetrics::default()
        })
    }
}

/// A scope's metrics recorder: what `Shared` holds when the scope was built with metrics on.
pub(crate) struct MetricsCollector {
    counters: Arc<Counters>,
    /// The scope's place in the process-wide registry.
    #[cfg(feature = "metrics")]
    registration: u64,
}

impl MetricsCollector {
    pub(crate) fn new(scope_name: &str) -> MetricsCollector {
        let counters = Arc::new(Counters::new(scope_name));
        MetricsCollector {
            #[cfg(feature = "metrics")]
            registration: super::registry::global().register(&counters),
            counters,
        }
    }

    pub(crate) fn task_spawned(&self) {
        self.counters.spawned.fetch_add(1, Relaxed);
    }

    pub(crate) fn task_ended(&self, ok: bool, duration: Duration) {
        if ok {
            lock(&self.counters.durations).record(duration);
            self.counters.completed.fetch_add(1, Relaxed);
        } else {
            self.counters.failed.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn resource_registered(&self) {
        self.counters.resources_registered.fetch_add(1, Relaxed);
    }

    pub(crate) fn resource_disposed(&self, ok: bool) {
        self.counters.resources_disposed.fetch_add(1, Relaxed);
        if !ok {
            self.counters.disposal_errors.fetch_add(1, Relaxed);
        }
    }

    /// The scope has closed after living `lifetime` (reported as the scope-duration gauge).
    pub(crate) fn scope_closed(&self, lifetime: Duration) {
        let _ = self.counters.lifetime.set(lifetime);
    }

    pub(crate) fn snapshot(
        &self,
        scope_name: &str,
        scope_duration: Option<Duration>,
    ) -> ScopeMetrics {
        let c = &self.counters;
        let durations = lock(&c.durations);
        durations.to_metrics(ScopeMetrics {
            scope_name: scope_name.to_owned(),
            tasks_spawned: c.spawned.load(Relaxed),
            tasks_completed: c.completed.load(Relaxed),
            tasks_failed: c.failed.load(Relaxed),
            resources_registered: c.resources_registered.load(Relaxed),
            resources_disposed: c.resources_disposed.load(Relaxed),
            disposal_errors: c.disposal_errors.load(Relaxed),
            scope_duration,
            ..ScopeMetrics::default()
        })
    }
}

impl Shared {
    /// A snapshot of the scope's metrics, if it collects them.
    pub(crate) fn metrics_snapshot(&self) -> Option<ScopeMetrics> {
        let collector = self.feature::<MetricsCollector>()?;
        Some(collector.snapshot(&self.name, self.lifetime()))
    }
}

impl Scope {
    /// A snapshot of the scope's metrics, or `None` unless it was built with
    /// [`metrics(true)`](ScopeBuilder::metrics).
    pub fn metrics(&self) -> Option<ScopeMetrics> {
        self.shared().metrics_snapshot()
    }
}

impl<K: crate::LocalKind> crate::LocalScope<'_, K> {
    /// A snapshot of this local scope's metrics so far, or `None` unless it was built with
    /// [`metrics(true)`](ScopeBuilder::metrics).
    pub fn metrics(&self) -> Option<ScopeMetrics> {
        self.shared().metrics_snapshot()
    }
}

impl ScopeBuilder {
    /// Collects [`ScopeMetrics`] for this scope. Off by default; when off, tasks do no metrics
    /// work at all.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.features().metrics = enabled;
        self
    }
}

impl Observer for MetricsCollector {
    fn wants(&self) -> Wants {
        Wants {
            durations: true,
            ..Wants::default()
        }
    }

    fn task_spawned(&self, _task: &SpawnedTask<'_>) -> Result<(), Error> {
        MetricsCollector::task_spawned(self);
        Ok(())
    }

    fn task_ended(&self, task: &EndedTask<'_>) {
        MetricsCollector::task_ended(self, task.error.is_none(), task.duration);
    }

    fn resource_registered(&self) {
        MetricsCollector::resource_registered(self);
    }

    fn resource_disposed(&self, _position: usize, error: Option<&Error>) {
        MetricsCollector::resource_disposed(self, error.is_none());
    }

    fn scope_closed(&self, scope: &ClosedScope<'_>) {
        if let Some(lifetime) = scope.lifetime {
            MetricsCollector::scope_closed(self, lifetime);
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for MetricsCollector {
    fn drop(&mut self) {
        super::registry::global().retire(self.registration, &self.counters);
    }
}

/// Durations of completed tasks: exact while few, a log-bucket histogram once many, plus the
/// fixed buckets of the exported histogram.
#[derive(Default)]
pub(crate) struct Durations {
    count: u64,
    total: Duration,
    exact: Vec<u64>,
    histogram: Option<Box<[u64]>>,
    /// Samples per exported bucket (not cumulative); the last slot counts values above the
    /// largest bound.
    exported: [u64; HISTOGRAM_BOUNDS_NANOS.len() + 1],
}

impl Durations {
    fn record(&mut self, d: Duration) {
        self.count += 1;
        self.total = self.total.saturating_add(d);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.exported[HISTOGRAM_BOUNDS_NANOS.partition_point(|&bound| bound < nanos)] += 1;
        self.push_sample(nanos);
    }

    fn push_sample(&mut self, nanos: u64) {
        match &mut self.histogram {
            Some(buckets) => buckets[bucket_of(nanos)] += 1,
            None if self.exact.len() < EXACT_SAMPLES => self.exact.push(nanos),
            None => {
                self.switch_to_histogram();
                self.push_sample(nanos);
            }
        }
    }

    fn switch_to_histogram(&mut self) {
        let mut buckets = vec![0_u64; BUCKETS].into_boxed_slice();
        for &v in &self.exact {
            buckets[bucket_of(v)] += 1;
        }
        self.exact = Vec::new();
        self.histogram = Some(buckets);
    }

    /// Adds every sample of `other` to `self`.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn merge(&mut self, other: &Durations) {
        self.count += other.count;
        self.total = self.total.saturating_add(other.total);
        for (mine, theirs) in self.exported.iter_mut().zip(other.exported.iter()) {
            *mine += theirs;
        }
        match &other.histogram {
            None if self.histogram.is_none()
                && self.exact.len() + other.exact.len() <= EXACT_SAMPLES =>
            {
                self.exact.extend_from_slice(&other.exact);
            }
            _ => {
                if self.histogram.is_none() {
                    self.switch_to_histogram();
                }
                if let Some(mine) = &mut self.histogram {
                    for &v in &other.exact {
                        mine[bucket_of(v)] += 1;
                    }
                    if let Some(theirs) = &other.histogram {
                        for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                            *m += t;
                        }
                    }
                }
            }
        }
    }

    /// Fills the duration fields of `m` from these samples.
    fn to_metrics(&self, mut m: ScopeMetrics) -> ScopeMetrics {
        m.total_task_duration = self.total;
        m.avg_task_duration = if self.count == 0 {
            Duration::ZERO
        } else {
            let nanos = self.total.as_nanos() / u128::from(self.count);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        };
        m.p95_task_duration = self.percentile(0.95);
        let mut cumulative = 0;
        m.task_duration_histogram = DurationHistogram {
            buckets: HISTOGRAM_BOUNDS_NANOS
                .iter()
                .zip(self.exported.iter())
                .map(|(&bound, &n)| {
                    cumulative += n;
                    (Duration::from_nanos(bound), cumulative)
                })
                .collect(),
            count: self.count,
            sum: self.total,
        };
        m
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
        let c = MetricsCollector::new("s");
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
