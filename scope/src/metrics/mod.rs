//! Scope metrics: counters and task durations, collected only for scopes built with
//! [`metrics(true)`](crate::ScopeBuilder::metrics).
//!
//! [`Scope::metrics`](crate::Scope::metrics) returns a [`ScopeMetrics`] snapshot: plain data,
//! cheap to clone, with durations as [`Duration`].

mod collector;

pub(crate) use collector::MetricsCollector;

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
}
