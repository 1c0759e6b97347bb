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
mod reporter;

pub(crate) use collector::MetricsCollector;
#[cfg(feature = "metrics")]
pub use export::{
    ExportFormat, ExportOptions, ParseFormatError, export_metrics, export_metrics_with,
};
#[cfg(feature = "pushgateway")]
pub use push::{PushError, Pushgateway, PushgatewayBuilder, push_text_to_gateway, push_to_gateway};
#[cfg(feature = "metrics")]
pub use registry::{CONTENT_TYPE, MetricsRegistry, ScopesCollector, encode, registry};
#[cfg(feature = "metrics")]
pub use reporter::{MetricsReporter, ReportResult, ReporterOptions};

use std::time::Duration;

/// A snapshot of one scope's counters, taken by [`Scope::metrics`](crate::Scope::metrics).
///
/// Durations count from when a task's body started (after any wait for a concurrency permit)
/// to when it ended. `avg` and `p95` cover the tasks that completed successfully, as does
/// `total_task_duration`.
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
    /// Tasks that ended with a value.
    pub tasks_completed: u64,
    /// Tasks that ended with an error: failed, panicked, timed out or cancelled.
    pub tasks_failed: u64,
    /// Sum of the durations of completed tasks.
    pub total_task_duration: Duration,
    /// `total_task_duration / tasks_completed`, zero when nothing completed.
    pub avg_task_duration: Duration,
    /// Nearest-rank 95th percentile of completed tasks' durations (exact up to 10 000 samples,
    /// then within 1 % relative error), zero when nothing completed.
    pub p95_task_duration: Duration,
    /// Resources registered for disposal (services with a disposer, `defer`, task cleanups).
    pub resources_registered: u64,
    /// Registered resources whose disposer has run (successfully or not).
    pub resources_disposed: u64,
    /// Disposers that returned an error or panicked.
    pub disposal_errors: u64,
    /// How long the scope lived, from build to the end of close; `None` while it is open.
    pub scope_duration: Option<Duration>,
    /// The durations of completed tasks in fixed buckets (0.5 ms to 60 s), exported as the
    /// Prometheus histogram `goscope_task_duration_seconds`.
    pub task_duration_histogram: DurationHistogram,
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
