//! Deadlock detection: report tasks that have waited too long on a concurrency permit, a
//! channel or a pool.
//!
//! Every wait point of the crate registers the waiting task with its scope's detector (when the
//! scope has one) for as long as it waits. A watchdog task checks the registrations every
//! `min(threshold / 2, 5 s)` and, at every check where some task has waited longer than the
//! threshold, calls the scope's callback with all such tasks (longest wait first). A wait is
//! first reported between 1× and 1.5× the threshold after it began, then at every check until
//! it ends.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::context::{TaskIdent, with_ambient};
use crate::core::observer::{BackgroundWork, Observer};
use crate::core::scope::{ScopeBuilder, Shared};
use crate::util::sync::lock;

/// One task that has been waiting longer than the deadlock threshold.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let reports = Arc::new(Mutex::new(Vec::new()));
/// let sink = reports.clone();
/// let scope = Scope::builder()
///     .concurrency(1)
///     .deadlock_detection(Duration::from_secs(1), move |waiting| {
///         for w in waiting {
///             sink.lock().unwrap().push(format!("{} waits on {}", w.task, w.resource));
///         }
///     })
///     .build()
///     .unwrap();
/// let _holder = scope.spawn(std::future::pending::<()>()); // keeps the only permit
/// let _waiter = scope.spawn(async {});
/// tokio::time::sleep(Duration::from_secs(2)).await;
/// assert_eq!(reports.lock().unwrap()[0], "task-2 waits on concurrency permit");
/// scope.close().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitingTask {
    /// The waiting task's name (`task-<n>` when it has none).
    pub task: String,
    /// What it waits on: `"concurrency permit"`, `"channel send"`, `"pool acquire"`, ...
    pub resource: &'static str,
    /// How long it has waited so far.
    pub waited: Duration,
}

pub(crate) type DeadlockCallback = dyn Fn(&[WaitingTask]) + Send + Sync;

pub(crate) struct Detector {
    threshold: Duration,
    on_deadlock: Arc<DeadlockCallback>,
    waits: Mutex<HashMap<u64, Wait>>,
    next_id: AtomicU64,
}

struct Wait {
    task: String,
    resource: &'static str,
    since: Instant,
}

impl Detector {
    pub(crate) fn new(threshold: Duration, on_deadlock: Arc<DeadlockCallback>) -> Detector {
        Detector {
            threshold,
            on_deadlock,
            waits: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    pub(crate) fn register(self: &Arc<Self>, task: String, resource: &'static str) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.waits).insert(
            id,
            Wait {
                task,
                resource,
                since: Instant::now(),
            },
        );
        Registration {
            detector: Arc::clone(self),
            id,
        }
    }

    /// The watchdog: scans until the scope is cancelled.
    pub(crate) async fn watch(self: Arc<Self>, cancelled: CancellationToken) {
        let period = (self.threshold / 2).clamp(Duration::from_millis(1), Duration::from_secs(5));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                () = cancelled.cancelled() => return,
                _ = ticks.tick() => self.scan(),
            }
        }
    }

    fn scan(&self) {
        let now = Instant::now();
        let mut overdue: Vec<WaitingTask> = Vec::new();
        for wait in lock(&self.waits).values() {
            let waited = now.saturating_duration_since(wait.since);
            if waited > self.threshold {
                overdue.push(WaitingTask {
                    task: wait.task.clone(),
                    resource: wait.resource,
                    waited,
                });
            }
        }
        if !overdue.is_empty() {
            overdue.sort_by_key(|w| std::cmp::Reverse(w.waited));
            tracing::warn!(
                waiting = overdue.len(),
                longest = ?overdue[0].waited,
                task = ?overdue[0].task,
                resource = overdue[0].resource,
                "possible deadlock: tasks have waited longer than the threshold"
            );
            let callback = &self.on_deadlock;
            if catch_unwind(AssertUnwindSafe(|| callback(&overdue))).is_err() {
                tracing::warn!("the on_deadlock callback panicked; the panic was contained");
            }
        }
    }
}

/// Deregisters a wait when dropped (the wait ended, or the waiting future was dropped).
pub(crate) struct Registration {
    detector: Arc<Detector>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.detector.waits).remove(&self.id);
    }
}

/// A wait registered through the seam; dropping it ends the wait.
pub(crate) type WaitGuard = crate::core::scope::WaitGuard;

impl Observer for Detector {
    fn background(self: Arc<Self>) -> Option<BackgroundWork> {
        Some(Box::new(move |cancelled| Box::pin(self.watch(cancelled))))
    }

    fn wait_began(
        self: Arc<Self>,
        scope: &Shared,
        task: Option<&TaskIdent>,
        what: &'static str,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        let task = match task {
            Some(task) => task.display_name(),
            None => format!("{} (scope body)", scope.name),
        };
        Some(Box::new(self.register(task, what)))
    }
}

impl ScopeBuilder {
    /// Reports tasks that wait longer than `threshold` on a concurrency permit, a channel or a
    /// pool: a watchdog checks every `min(threshold / 2, 5 s)` and, while any task has waited
    /// longer than `threshold`, calls `on_deadlock` with all of them (see [`WaitingTask`]).
    /// `threshold` must be greater than zero.
    pub fn deadlock_detection(
        mut self,
        threshold: Duration,
        on_deadlock: impl Fn(&[WaitingTask]) + Send + Sync + 'static,
    ) -> Self {
        self.features().deadlock = Some((threshold, Arc::new(on_deadlock)));
        self
    }
}

/// Registers the running task as waiting on `resource`: in its scope's live tree and with the
/// features that track waits (the deadlock detector); the wait ends when the returned value is
/// dropped.
pub(crate) fn begin_wait(resource: &'static str) -> Option<WaitGuard> {
    with_ambient(|ambient| ambient.scope.begin_wait(ambient.task.as_ref(), resource)).flatten()
}

/// Awaits `future` as a wait on `resource` that the ambient scope's live tree and deadlock
/// detector can see.
///
/// The crate's own wait points (concurrency permits, channels, pools) already do this; wrap
/// your own waits (a lock, an external queue) to have them named in the tree and reported too.
/// Outside a scope this is just `future.await`.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use go_go_scope::{Scope, tracked_wait};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let scope = Scope::builder()
///     .deadlock_detection(Duration::from_millis(100), move |w| {
///         sink.lock().unwrap().extend(w.iter().map(|w| w.resource))
///     })
///     .build()
///     .unwrap();
/// let lock = Arc::new(tokio::sync::Mutex::new(()));
/// let held = lock.clone().lock_owned().await;
/// let task = scope.spawn(async move { tracked_wait("db lock", lock.lock()).await; });
/// tokio::time::sleep(Duration::from_millis(200)).await;
/// assert_eq!(*seen.lock().unwrap(), ["db lock"]);
/// drop(held);
/// task.await;
/// scope.close().await.unwrap();
/// # }
/// ```
///
/// # Cancel safety
/// As cancel safe as `future`: dropping this future drops `future` and ends the wait's
/// registration, so a dropped wait is no longer reported.
pub async fn tracked_wait<F: Future>(resource: &'static str, future: F) -> F::Output {
    let _guard = begin_wait(resource);
    future.await
}
