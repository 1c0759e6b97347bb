//! The recording side of scope metrics: atomics for counters, a bounded sample store for
//! durations.
//!
//! The counters live behind an `Arc` so that the process-wide registry (feature `metrics`) can
//! read a scope's numbers while the scope is alive; when the scope's state is dropped its final
//! numbers are folded into the registry's per-name totals, so exported counters never go back.

use crate::core::error::{Error, OutcomeKind};
use crate::core::observer::{ClosedScope, EndedTask, Observer, SpawnedTask, Wants};
use crate::core::scope::{Scope, ScopeBuilder, Shared};
use crate::resilience::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::resilience::task_builder::task_run;
use crate::util::sync::lock;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

use super::{DurationHistogram, OutcomeCounts, ScopeMetrics};

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

/// Ended tasks by outcome, indexed like [`OutcomeKind::ALL`].
pub(crate) const OUTCOMES: usize = OutcomeKind::ALL.len();

/// The position of `kind` in [`OutcomeKind::ALL`].
pub(crate) fn outcome_index(kind: OutcomeKind) -> usize {
    match kind {
        OutcomeKind::Ok => 0,
        OutcomeKind::Error => 1,
        OutcomeKind::Timeout => 2,
        OutcomeKind::Cancelled => 3,
        OutcomeKind::Panicked => 4,
        OutcomeKind::Rejected => 5,
    }
}

/// One scope's counters; shared with the process-wide registry when feature `metrics` is on.
pub(crate) struct Counters {
    /// The name the registry files the scope under (its own name, escaped, or the overflow
    /// name once the registry holds as many names as it may).
    #[cfg(feature = "metrics")]
    pub(crate) key: String,
    spawned: AtomicU64,
    ended: [AtomicU64; OUTCOMES],
    retries: AtomicU64,
    breaker_rejections: AtomicU64,
    resources_registered: AtomicU64,
    resources_disposed: AtomicU64,
    disposal_errors: AtomicU64,
    durations: Mutex<Durations>,
    /// The scope's circuit breaker, read for the breaker-state gauge.
    breaker: Option<Arc<CircuitBreaker>>,
    /// The sliding window of run times shared by every scope of the same registry name.
    #[cfg(feature = "metrics")]
    pub(crate) window: Arc<Mutex<super::window::Window>>,
    #[cfg(feature = "metrics")]
    pub(crate) created: Instant,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) lifetime: OnceLock<Duration>,
}

impl Counters {
    fn new(
        breaker: Option<Arc<CircuitBreaker>>,
        #[cfg(feature = "metrics")] key: String,
        #[cfg(feature = "metrics")] window: Arc<Mutex<super::window::Window>>,
    ) -> Counters {
        Counters {
            #[cfg(feature = "metrics")]
            key,
            spawned: AtomicU64::new(0),
            ended: Default::default(),
            retries: AtomicU64::new(0),
            breaker_rejections: AtomicU64::new(0),
            resources_registered: AtomicU64::new(0),
            resources_disposed: AtomicU64::new(0),
            disposal_errors: AtomicU64::new(0),
            durations: Mutex::new(Durations::default()),
            breaker,
            #[cfg(feature = "metrics")]
            window,
            #[cfg(feature = "metrics")]
            created: Instant::now(),
            lifetime: OnceLock::new(),
        }
    }

    /// Adds this scope's numbers to `totals` (used by the registry to aggregate by name).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn add_to(&self, totals: &mut Totals) {
        totals.spawned += self.spawned.load(Relaxed);
        for (total, n) in totals.ended.iter_mut().zip(&self.ended) {
            *total += n.load(Relaxed);
        }
        totals.retries += self.retries.load(Relaxed);
        totals.breaker_rejections += self.breaker_rejections.load(Relaxed);
        totals.resources_registered += self.resources_registered.load(Relaxed);
        totals.resources_disposed += self.resources_disposed.load(Relaxed);
        totals.disposal_errors += self.disposal_errors.load(Relaxed);
        let durations = lock(&self.durations);
        for (total, buckets) in totals.run.iter_mut().zip(&durations.run) {
            total.merge(buckets);
        }
        totals.permit_wait.merge(&durations.permit_wait);
    }

    /// The state of the scope's breaker, if it has one.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn breaker_state(&self) -> Option<CircuitState> {
        self.breaker.as_ref().map(|b| b.state())
    }

    /// The scope's breaker, if it has one.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.breaker.as_ref()
    }
}

/// Sums of several scopes' counters: what the registry reports for one scope name.
#[derive(Default, Clone)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Totals {
    pub(crate) spawned: u64,
    pub(crate) ended: [u64; OUTCOMES],
    pub(crate) retries: u64,
    pub(crate) breaker_rejections: u64,
    pub(crate) resources_registered: u64,
    pub(crate) resources_disposed: u64,
    pub(crate) disposal_errors: u64,
    pub(crate) run: [Buckets; OUTCOMES],
    pub(crate) permit_wait: Buckets,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
impl Totals {
    /// Adds `other`'s numbers to these.
    pub(crate) fn merge(&mut self, other: &Totals) {
        self.spawned += other.spawned;
        for (mine, theirs) in self.ended.iter_mut().zip(&other.ended) {
            *mine += theirs;
        }
        self.retries += other.retries;
        self.breaker_rejections += other.breaker_rejections;
        self.resources_registered += other.resources_registered;
        self.resources_disposed += other.resources_disposed;
        self.disposal_errors += other.disposal_errors;
        for (mine, theirs) in self.run.iter_mut().zip(&other.run) {
            mine.merge(theirs);
        }
        self.permit_wait.merge(&other.permit_wait);
    }

    /// The totals as a [`ScopeMetrics`] named `name`; average and p95 are left for the caller
    /// (the registry's come from its sliding window, a scope's from its own samples).
    pub(crate) fn to_metrics(&self, name: &str, scope_duration: Option<Duration>) -> ScopeMetrics {
        let by_outcome = OutcomeCounts::from_array(self.ended);
        let mut all = Buckets::default();
        for buckets in &self.run {
            all.merge(buckets);
        }
        ScopeMetrics {
            scope_name: name.to_owned(),
            tasks_spawned: self.spawned,
            tasks_completed: by_outcome.ok,
            tasks_failed: by_outcome.failures(),
            tasks_cancelled: by_outcome.cancelled,
            tasks_running: self.spawned.saturating_sub(self.ended.iter().sum::<u64>()),
            tasks_by_outcome: by_outcome,
            task_retries: self.retries,
            breaker_rejections: self.breaker_rejections,
            total_task_duration: all.sum,
            resources_registered: self.resources_registered,
            resources_disposed: self.resources_disposed,
            disposal_errors: self.disposal_errors,
            scope_duration,
            task_duration_histogram: all.to_histogram(),
            run_histograms: OutcomeKind::ALL
                .iter()
                .zip(&self.run)
                .filter(|(_, b)| b.count > 0)
                .map(|(&kind, b)| (kind, b.to_histogram()))
                .collect(),
            permit_wait_histogram: self.permit_wait.to_histogram(),
            ..ScopeMetrics::default()
        }
    }
}

/// Samples counted in the exported histogram's fixed buckets.
#[derive(Default, Clone)]
pub(crate) struct Buckets {
    /// Samples per bucket (not cumulative); the last slot counts values above the largest
    /// bound.
    counts: [u64; HISTOGRAM_BOUNDS_NANOS.len() + 1],
    count: u64,
    sum: Duration,
}

impl Buckets {
    fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[HISTOGRAM_BOUNDS_NANOS.partition_point(|&bound| bound < nanos)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(d);
    }

    fn merge(&mut self, other: &Buckets) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
    }

    fn to_histogram(&self) -> DurationHistogram {
        let mut cumulative = 0;
        DurationHistogram {
            buckets: HISTOGRAM_BOUNDS_NANOS
                .iter()
                .zip(self.counts.iter())
                .map(|(&bound, &n)| {
                    cumulative += n;
                    (Duration::from_nanos(bound), cumulative)
                })
                .collect(),
            count: self.count,
            sum: self.sum,
        }
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
    pub(crate) fn new(scope_name: &str, breaker: Option<Arc<CircuitBreaker>>) -> MetricsCollector {
        #[cfg(feature = "metrics")]
        {
            let (registration, counters) = super::registry::global()
                .register(scope_name, |key, window| {
                    Arc::new(Counters::new(breaker, key, window))
                });
            MetricsCollector {
                counters,
                registration,
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = scope_name;
            MetricsCollector {
                counters: Arc::new(Counters::new(breaker)),
            }
        }
    }

    /// Counters filed under `key`, for the registry's own tests.
    #[cfg(all(test, feature = "metrics"))]
    pub(crate) fn counters_for_test(
        key: String,
        window: Arc<Mutex<super::window::Window>>,
    ) -> Counters {
        Counters::new(None, key, window)
    }

    pub(crate) fn task_spawned(&self) {
        self.counters.spawned.fetch_add(1, Relaxed);
    }

    /// A task ended with `outcome`; `run` is its run time if its body started, and `ended_at`
    /// when it ended (for the registry's sliding window).
    pub(crate) fn task_ended(
        &self,
        outcome: OutcomeKind,
        run: Option<Duration>,
        #[cfg_attr(not(feature = "metrics"), allow(unused))] ended_at: Option<Instant>,
    ) {
        if let Some(duration) = run {
            lock(&self.counters.durations).record(outcome, duration);
            #[cfg(feature = "metrics")]
            if let Some(at) = ended_at {
                lock(&self.counters.window).record(
                    at,
                    duration,
                    super::registry::global().window(),
                );
            }
        }
        self.counters.ended[outcome_index(outcome)].fetch_add(1, Relaxed);
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
        let mut totals = Totals::default();
        c.add_to(&mut totals);
        let mut m = totals.to_metrics(scope_name, scope_duration);
        let durations = lock(&c.durations);
        m.avg_task_duration = durations.average();
        m.p95_task_duration = durations.percentile(0.95);
        m.breaker_state = c.breaker_state();
        m
    }
}

/// Records how long a task waited for a concurrency permit when it is dropped.
struct PermitWait {
    counters: Arc<Counters>,
    since: Instant,
}

impl Drop for PermitWait {
    fn drop(&mut self) {
        let waited = self.since.elapsed();
        lock(&self.counters.durations).permit_wait.record(waited);
    }
}

/// What the core calls the wait for a concurrency permit.
const PERMIT_WAIT: &str = "concurrency permit";

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
        let outcome = OutcomeKind::of(task.error);
        if matches!(task.error, Some(Error::CircuitOpen)) {
            self.counters.breaker_rejections.fetch_add(1, Relaxed);
        }
        if task.details.is_some()
            && let Some(run) = task_run(task.details)
        {
            let retries = run.retries();
            if retries > 0 {
                self.counters.retries.fetch_add(u64::from(retries), Relaxed);
            }
        }
        let ended_at = task.started.map(|started| started + task.duration);
        MetricsCollector::task_ended(self, outcome, task.started.map(|_| task.duration), ended_at);
    }

    fn wait_began(
        self: Arc<Self>,
        _scope: &Shared,
        _task: Option<&crate::core::context::TaskIdent>,
        what: &'static str,
    ) -> Option<Box<dyn Any + Send>> {
        (what == PERMIT_WAIT).then(|| {
            Box::new(PermitWait {
                counters: Arc::clone(&self.counters),
                since: Instant::now(),
            }) as Box<dyn Any + Send>
        })
    }

    fn resource_registered(&self) {
        MetricsCollector::resource_registered(self);
    }

    fn resource_disposed(&self, _position: usize, error: Option<&Error>) {
        MetricsCollector::resource_disposed(self, error.is_none());
    }

    fn resource_withdrawn(&self) {
        // Counted as disposed: the registration is gone and nothing is left to clean up.
        MetricsCollector::resource_disposed(self, true);
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

/// Run times of one scope's ended tasks: exact while few, a log-bucket histogram once many
/// (for the scope's own average and p95), plus the fixed buckets of the exported histograms.
#[derive(Default)]
pub(crate) struct Durations {
    count: u64,
    total: Duration,
    exact: Vec<u64>,
    histogram: Option<Box<[u64]>>,
    /// Run times by outcome, in the exported buckets.
    run: [Buckets; OUTCOMES],
    /// Waits for a concurrency permit that was not free at once.
    permit_wait: Buckets,
}

impl Durations {
    fn record(&mut self, outcome: OutcomeKind, d: Duration) {
        self.run[outcome_index(outcome)].record(d);
        self.count += 1;
        self.total = self.total.saturating_add(d);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
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

    /// `total / count`, zero when nothing was recorded.
    fn average(&self) -> Duration {
        average(self.total, self.count)
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

/// `total / count`, zero when `count` is zero.
pub(crate) fn average(total: Duration, count: u64) -> Duration {
    if count == 0 {
        return Duration::ZERO;
    }
    let nanos = total.as_nanos() / u128::from(count);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

pub(crate) fn bucket_of(nanos: u64) -> usize {
    if nanos <= 1 {
        return 0;
    }
    let index = ((nanos as f64).ln() / GROWTH.ln()).floor() as usize;
    index.min(BUCKETS - 1)
}

pub(crate) fn bucket_midpoint(index: usize) -> u64 {
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
                d.record(OutcomeKind::Ok, ms(v));
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
            d.record(OutcomeKind::Ok, Duration::from_micros(v));
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
            d.record(OutcomeKind::Ok, Duration::MAX);
            d.record(OutcomeKind::Error, Duration::ZERO);
        }
        assert!(d.percentile(0.95) > Duration::ZERO);
    }

    #[test]
    fn snapshot_counts_every_outcome_and_every_run_time() {
        let c = MetricsCollector::new("collector-unit-test", None);
        for _ in 0..5 {
            c.task_spawned();
        }
        c.task_ended(OutcomeKind::Ok, Some(ms(10)), None);
        c.task_ended(OutcomeKind::Ok, Some(ms(30)), None);
        c.task_ended(OutcomeKind::Timeout, Some(ms(1000)), None);
        c.task_ended(OutcomeKind::Cancelled, Some(ms(20)), None);
        c.resource_registered();
        c.resource_disposed(false);
        let m = c.snapshot("s", None);
        assert_eq!(
            (
                m.tasks_spawned,
                m.tasks_completed,
                m.tasks_failed,
                m.tasks_cancelled,
                m.tasks_running
            ),
            (5, 2, 1, 1, 1)
        );
        assert_eq!(m.tasks_by_outcome.get(OutcomeKind::Timeout), 1);
        assert_eq!(m.tasks_by_outcome.get(OutcomeKind::Panicked), 0);
        // The slow timeout counts in the run time, the average and the p95.
        assert_eq!(m.total_task_duration, ms(1060));
        assert_eq!(m.avg_task_duration, ms(265));
        assert_eq!(m.p95_task_duration, ms(1000));
        assert_eq!(m.task_duration_histogram.count, 4);
        let outcomes: Vec<OutcomeKind> = m.run_histograms.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            outcomes,
            [
                OutcomeKind::Ok,
                OutcomeKind::Timeout,
                OutcomeKind::Cancelled
            ]
        );
        assert_eq!(
            (
                m.resources_registered,
                m.resources_disposed,
                m.disposal_errors
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn outcome_indexes_follow_all() {
        for (i, kind) in OutcomeKind::ALL.iter().enumerate() {
            assert_eq!(outcome_index(*kind), i);
        }
    }
}
