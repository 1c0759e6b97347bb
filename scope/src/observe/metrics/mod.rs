//! Scope metrics: counters and task durations, collected only for scopes built with
//! [`metrics(true)`](crate::ScopeBuilder::metrics).
//!
//! [`Scope::metrics`](crate::Scope::metrics) returns a [`ScopeMetrics`] snapshot: plain data,
//! cheap to clone, with durations as [`Duration`].
//!
//! With the cargo feature `metrics`, this module also exports them:
//! - `export_metrics` / `export_metrics_with`: one snapshot as Prometheus text or JSON;
//! - `registry()`: the process-wide registry that aggregates every metrics-enabled scope by
//!   name, for an application's `/metrics` endpoint (`encode()`) or a `prometheus-client`
//!   registry of its own (`MetricsRegistry::collector`);
//! - `push_to_gateway`: pushes the registry to a Prometheus Pushgateway;
//! - `MetricsReporter`: exports one scope's metrics periodically.
//!
//! The same instruments can go to the application's own metrics pipeline instead of (or beside)
//! the registry: its `metrics` crate recorder
//! ([`ScopeBuilder::metrics_facade`](crate::ScopeBuilder::metrics_facade), feature
//! `metrics-facade`) or its OpenTelemetry meter
//! ([`ScopeBuilder::otel_meter`](crate::ScopeBuilder::otel_meter), feature `otel`).

mod collector;
#[cfg(feature = "metrics")]
mod export;
#[cfg(feature = "metrics-facade")]
pub(crate) mod facade;
#[cfg(any(feature = "metrics-facade", feature = "otel"))]
pub(crate) mod instruments;
#[cfg(feature = "otel")]
pub(crate) mod otel_meter;
#[cfg(feature = "pushgateway")]
mod push;
#[cfg(feature = "metrics")]
mod registry;
#[cfg(feature = "metrics")]
pub(crate) use registry::escape_name;
#[cfg(feature = "metrics")]
mod reporter;
#[cfg(feature = "metrics")]
mod window;

pub(crate) use collector::MetricsCollector;
#[cfg(feature = "metrics")]
pub use export::{
    ExportFormat, ExportOptions, ParseFormatError, export_metrics, export_metrics_with,
};
#[cfg(feature = "pushgateway")]
pub use push::{PushError, Pushgateway, PushgatewayBuilder, push_text_to_gateway, push_to_gateway};
#[cfg(feature = "metrics")]
pub use registry::{
    CONTENT_TYPE, DEFAULT_MAX_SCOPE_NAMES, DEFAULT_WINDOW, MetricsRegistry, OVERFLOW_SCOPE,
    ScopesCollector, encode, registry,
};
#[cfg(feature = "metrics")]
pub use reporter::{MetricsReporter, ReportResult, ReporterOptions};

use crate::core::error::OutcomeKind;
use crate::resilience::circuit_breaker::CircuitState;
use std::time::Duration;

/// A snapshot of one scope's counters, taken by [`Scope::metrics`](crate::Scope::metrics).
///
/// Every task that ends is counted once, by its [`OutcomeKind`]: `tasks_completed` (ok),
/// `tasks_failed` (error, timeout, panicked, rejected) and `tasks_cancelled` partition the ended
/// tasks. A cancelled task (a race's loser, a hedged request's spare) is not a failure.
///
/// Run times count from when a task's body started (after any wait for a concurrency permit)
/// to when it ended, for every task whose body started, whatever its outcome: a slow timeout
/// shows in `total_task_duration`, `avg`, `p95` and the histograms. A task refused or cancelled
/// before its body started has no run time. In a per-scope snapshot, `avg` and `p95` cover the
/// scope's whole life; in the process-wide registry they cover a sliding window (see
/// [`MetricsRegistry::set_window`]).
///
/// ```
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = Scope::builder().metrics(true).build().unwrap();
/// scope.spawn(async { 1 }).await;
/// scope.try_spawn(async { Err::<(), _>("nope") }).await;
/// let m = scope.metrics().unwrap();
/// assert_eq!((m.tasks_spawned, m.tasks_completed, m.tasks_failed), (2, 1, 1));
/// let loser = scope.spawn(std::future::pending::<()>());
/// loser.cancel();
/// let _ = loser.await;
/// let m = scope.metrics().unwrap();
/// assert_eq!((m.tasks_failed, m.tasks_cancelled), (1, 1)); // cancelled is not failed
/// assert_eq!(m.tasks_by_outcome.get(go_go_scope::OutcomeKind::Error), 1);
/// assert!(m.scope_duration.is_none()); // set once the scope has closed
/// scope.close().await.unwrap();
/// assert!(scope.metrics().unwrap().scope_duration.is_some());
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ScopeMetrics {
    /// The scope's name (the label under which the process-wide registry reports it).
    pub scope_name: String,
    /// Tasks spawned into the scope, counted at spawn time.
    pub tasks_spawned: u64,
    /// Tasks that ended with a value (outcome `ok`).
    pub tasks_completed: u64,
    /// Tasks that failed: outcomes `error`, `timeout`, `panicked` and `rejected`. Cancelled
    /// tasks are not counted here.
    pub tasks_failed: u64,
    /// Tasks that were cancelled (outcome `cancelled`): by their handle, their scope, a race
    /// they lost.
    pub tasks_cancelled: u64,
    /// Tasks spawned that have not ended yet.
    pub tasks_running: u64,
    /// Ended tasks by outcome.
    pub tasks_by_outcome: OutcomeCounts,
    /// Retry attempts beyond each task's first (tasks built with a retry policy).
    pub task_retries: u64,
    /// Tasks refused by the scope's circuit breaker while it was open.
    pub breaker_rejections: u64,
    /// The state of the scope's circuit breaker, if it has one (in the registry: the most
    /// open state among the live scopes of the name, or else the state of the breaker of the
    /// last scope of the name that went away).
    pub breaker_state: Option<CircuitState>,
    /// Sum of the run times of every ended task whose body started.
    pub total_task_duration: Duration,
    /// Average run time: over the scope's life in a per-scope snapshot, over the sliding
    /// window in the registry. Zero when no task ran.
    pub avg_task_duration: Duration,
    /// Nearest-rank 95th percentile of run times (exact up to 10 000 samples, then within 1 %
    /// relative error): over the scope's life in a per-scope snapshot, over the sliding window
    /// in the registry. Zero when no task ran.
    pub p95_task_duration: Duration,
    /// Resources registered for disposal (services with a disposer, `defer`, task cleanups).
    pub resources_registered: u64,
    /// Registered resources whose disposer has run (successfully or not).
    pub resources_disposed: u64,
    /// Disposers that returned an error or panicked.
    pub disposal_errors: u64,
    /// How long the scope lived, from build to the end of close; `None` while it is open.
    pub scope_duration: Option<Duration>,
    /// The run times of every ended task whose body started, in fixed buckets (0.5 ms to
    /// 60 s): the sum over outcomes of `run_histograms`.
    pub task_duration_histogram: DurationHistogram,
    /// Run times by outcome, for the outcomes that have any; exported as the Prometheus
    /// histogram `goscope_task_run_seconds{outcome}`.
    pub run_histograms: Vec<(OutcomeKind, DurationHistogram)>,
    /// How long tasks waited for a concurrency permit that was not free at once; exported as
    /// `goscope_permit_wait_seconds`.
    pub permit_wait_histogram: DurationHistogram,
}

/// Ended tasks counted by [`OutcomeKind`].
///
/// ```
/// use go_go_scope::OutcomeKind;
/// use go_go_scope::metrics::OutcomeCounts;
///
/// let counts = OutcomeCounts { ok: 3, timeout: 1, cancelled: 2, ..OutcomeCounts::default() };
/// assert_eq!(counts.get(OutcomeKind::Cancelled), 2);
/// assert_eq!(counts.failures(), 1); // cancellations are not failures
/// assert_eq!(counts.total(), 6);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Outcome `ok`.
    pub ok: u64,
    /// Outcome `error`.
    pub error: u64,
    /// Outcome `timeout`.
    pub timeout: u64,
    /// Outcome `cancelled`.
    pub cancelled: u64,
    /// Outcome `panicked`.
    pub panicked: u64,
    /// Outcome `rejected`.
    pub rejected: u64,
}

impl OutcomeCounts {
    /// The count of tasks that ended with `kind`.
    pub fn get(&self, kind: OutcomeKind) -> u64 {
        match kind {
            OutcomeKind::Ok => self.ok,
            OutcomeKind::Error => self.error,
            OutcomeKind::Timeout => self.timeout,
            OutcomeKind::Cancelled => self.cancelled,
            OutcomeKind::Panicked => self.panicked,
            OutcomeKind::Rejected => self.rejected,
        }
    }

    /// Tasks whose outcome [is a failure](OutcomeKind::is_failure).
    pub fn failures(&self) -> u64 {
        OutcomeKind::ALL
            .iter()
            .filter(|k| k.is_failure())
            .map(|&k| self.get(k))
            .sum()
    }

    /// Every ended task.
    pub fn total(&self) -> u64 {
        OutcomeKind::ALL.iter().map(|&k| self.get(k)).sum()
    }

    /// From counts in the order of [`OutcomeKind::ALL`].
    pub(crate) fn from_array(n: [u64; OutcomeKind::ALL.len()]) -> OutcomeCounts {
        OutcomeCounts {
            ok: n[0],
            error: n[1],
            timeout: n[2],
            cancelled: n[3],
            panicked: n[4],
            rejected: n[5],
        }
    }
}

/// Completed tasks' durations counted in fixed buckets, like a Prometheus histogram.
///
/// `buckets[i] = (bound, n)`: `n` tasks took at most `bound` (counts are cumulative). Tasks
/// slower than the largest bound are in `count` only.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let scope = Scope::builder().metrics(true).build().unwrap();
/// scope.spawn(tokio::time::sleep(Duration::from_millis(3))).await;
/// let h = scope.metrics().unwrap().task_duration_histogram;
/// assert_eq!(h.count, 1);
/// let (bound, n) = h.buckets.iter().find(|(_, n)| *n == 1).unwrap();
/// assert_eq!((*bound, *n), (Duration::from_millis(5), 1)); // the first bucket it fits in
/// scope.close().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DurationHistogram {
    /// `(upper bound, tasks that took at most that long)`, bounds ascending.
    pub buckets: Vec<(Duration, u64)>,
    /// Every sample, including those above the largest bound.
    pub count: u64,
    /// Sum of every sample.
    pub sum: Duration,
}
