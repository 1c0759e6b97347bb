//! [`Task`]: the handle of a spawned task, and the one future every task runs inside.
//!
//! Every task of every scope is driven by the same wrapper, `TaskFuture`, which owns the four
//! things a task needs from its scope: a concurrency permit (waited for before the body starts),
//! cancellation (the scope's reason, observed at every poll), panic containment, and the
//! completion record (metrics, `after_task`, the scope's count of live tasks). What the body is
//! (a plain future, a fallible one, or a retrying factory) is the only thing that varies.

use std::borrow::Cow;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Instant;

use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tokio_util::sync::{PollSemaphore, WaitForCancellationFutureOwned};

use crate::core::context::{self, Ambient, TaskIdent};
use crate::core::error::{BoxError, Error, Outcome, into_outcome, into_result};
use crate::core::scope::{LimitSnapshot, Queued, Shared};
use crate::observe::deadlock::WaitGuard;
use crate::observe::hooks::SpawnInfo;
use crate::observe::profiler::TaskProfile;
use crate::observe::trace::{Attrs, TaskSpanInfo, TaskTrace};
use crate::resilience::circuit_breaker::{Admission, CircuitBreaker};
use crate::resilience::task_builder::TaskRun;

/// The handle of a task spawned into a [`Scope`](crate::Scope).
///
/// Awaiting it gives the Go-style tuple `(Option<Error>, Option<T>)`; [`result`](Task::result)
/// gives a `Result` instead. The task started when it was spawned: awaiting only collects its
/// outcome. Dropping the handle does not cancel the task — the scope owns it and ends it when
/// the scope ends; [`cancel`](Task::cancel) ends just this one. So fire-and-forget is fine:
/// spawn and drop the handle, the scope still awaits the task before it closes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// let task = scope.spawn(async { 2 + 2 });
/// assert_eq!(task.id(), 1);
/// assert_eq!(task.name(), "task-1");
/// let (err, four) = task.await;
/// assert!(err.is_none());
/// assert_eq!(four, Some(4));
/// scope.close().await.unwrap();
/// # }
/// ```
pub struct Task<T> {
    state: State<T>,
    index: u64,
    name: Option<Cow<'static, str>>,
}

enum State<T> {
    Running(JoinHandle<Result<T, Error>>),
    /// Never ran (closed scope, cancelled scope, failing `before_task`).
    Rejected(Option<Error>),
    Taken,
}

impl<T> std::fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.index)
            .field("name", &self.name())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> Task<T> {
    pub(crate) fn rejected(error: Error, index: u64, name: Option<Cow<'static, str>>) -> Task<T> {
        Task {
            state: State::Rejected(Some(error)),
            index,
            name,
        }
    }

    /// The task's 1-based number in its scope, in spawn order (hooks receive the same number).
    /// A task rejected at spawn (closed scope) has number 0.
    pub fn id(&self) -> u64 {
        self.index
    }

    /// The task's name: the one it was given, or `task-<id>`.
    pub fn name(&self) -> Cow<'_, str> {
        match &self.name {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("task-{}", self.index)),
        }
    }

    /// True once the task has ended (or was never run).
    pub fn is_finished(&self) -> bool {
        match &self.state {
            State::Running(handle) => handle.is_finished(),
            State::Rejected(_) | State::Taken => true,
        }
    }

    /// Cancels this task only; it resolves to [`Error::Cancelled`] with the reason
    /// `"task cancelled"`. The rest of the scope is unaffected.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let stuck = scope.spawn(std::future::pending::<()>());
    /// let fine = scope.spawn(async { "ok" });
    /// stuck.cancel();
    /// assert!(stuck.await.0.unwrap().is_cancelled());
    /// assert_eq!(fine.await.1, Some("ok"));
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn cancel(&self) {
        if let State::Running(handle) = &self.state {
            handle.abort();
        }
    }

    /// Waits for the task and returns its outcome as a `Result`, for use with `?`.
    pub async fn result(self) -> Result<T, Error> {
        into_result(self.await)
    }
}

impl<T> Future for Task<T> {
    type Output = Outcome<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let result = match &mut self.state {
            State::Running(handle) => match ready!(Pin::new(handle).poll(cx)) {
                Ok(result) => result,
                Err(join_error) if join_error.is_panic() => {
                    Err(Error::from_panic(join_error.into_panic()))
                }
                Err(_) => Err(Error::cancelled("task cancelled")),
            },
            State::Rejected(error) => Err(error
                .take()
                .unwrap_or_else(|| Error::cancelled("task outcome already taken"))),
            State::Taken => Err(Error::cancelled("task outcome already taken")),
        };
        self.state = State::Taken;
        Poll::Ready(into_outcome(result))
    }
}

pin_project! {
    /// A body whose output is the task's value.
    pub(crate) struct Plain<F> {
        #[pin]
        future: F,
    }
}

impl<F> Plain<F> {
    pub(crate) fn new(future: F) -> Plain<F> {
        Plain { future }
    }
}

impl<F: Future> Future for Plain<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map(Ok)
    }
}

pin_project! {
    /// A body whose `Err` is the task's error.
    pub(crate) struct Fallible<F> {
        #[pin]
        future: F,
    }
}

impl<F> Fallible<F> {
    pub(crate) fn new(future: F) -> Fallible<F> {
        Fallible { future }
    }
}

impl<F, T, E> Future for Fallible<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .future
            .poll(cx)
            .map(|r| r.map_err(Error::from_task_error))
    }
}

pin_project! {
    /// A single-attempt body under the scope's circuit breaker: asks the breaker before the
    /// body's first poll, and reports its outcome (a panic counts as a failure).
    pub(crate) struct Guarded<B> {
        #[pin]
        body: B,
        breaker: CircuitBreaker,
        admission: Option<Admission>,
        asked: bool,
    }
}

impl<B, T> Future for Guarded<B>
where
    B: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if !*this.asked {
            *this.asked = true;
            match this.breaker.admit() {
                Ok(admission) => *this.admission = Some(admission),
                Err(refused) => return Poll::Ready(Err(refused)),
            }
        }
        let body = this.body;
        match catch_unwind(AssertUnwindSafe(|| body.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => {
                if let Some(admission) = this.admission.take() {
                    admission.settle(result.is_ok());
                }
                Poll::Ready(result)
            }
            Err(payload) => {
                if let Some(admission) = this.admission.take() {
                    admission.settle(false);
                }
                std::panic::resume_unwind(payload)
            }
        }
    }
}

/// Spawns a single-attempt body (a plain or fallible future): straight into the scope, or
/// through the scope's circuit breaker when it has one.
pub(crate) fn spawn_single<B, T>(shared: &Arc<Shared>, body: B) -> Task<T>
where
    B: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    match &shared.breaker {
        None => spawn_body(shared, body, TaskSpec::plain()),
        Some(breaker) => spawn_body(
            shared,
            Guarded {
                body,
                breaker: breaker.clone(),
                admission: None,
                asked: false,
            },
            TaskSpec::plain(),
        ),
    }
}

/// The task's concurrency permit, if its scope has a limit.
enum Permit {
    Unlimited,
    /// Waiting (boxed: most tasks never wait, and every task's future is as large as its
    /// largest state).
    Waiting(Box<PermitWait>),
    Held(#[allow(dead_code)] OwnedSemaphorePermit),
}

struct PermitWait {
    semaphore: PollSemaphore,
    /// Keeps the wait registered with the deadlock detector (if the scope has one) until the
    /// permit arrives or the task is dropped.
    _deadlock: Option<WaitGuard>,
    /// Counts the task among the scope's waiting ones meanwhile.
    _queued: Queued,
}

pin_project! {
    /// The future every task runs: permit, cancellation, panic containment, completion record.
    ///
    /// Field order is drop order: the body is dropped first, the permit released next, and the
    /// record (which counts the task as ended) goes last, so a closing scope never sees a task
    /// as ended while its body still exists.
    struct TaskFuture<B> {
        #[pin]
        body: B,
        #[pin]
        cancel: Option<WaitForCancellationFutureOwned>,
        permit: Permit,
        record: Record,
    }
}

impl<B, T> Future for TaskFuture<B>
where
    B: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.record.shared.is_cancelled() {
            let error = this.record.shared.cancel_error();
            return this.record.end(Err(error));
        }
        if let Permit::Waiting(wait) = this.permit {
            match wait.semaphore.poll_acquire(cx) {
                Poll::Ready(Some(permit)) => *this.permit = Permit::Held(permit),
                Poll::Ready(None) => return this.record.end(Err(Error::Closed)),
                Poll::Pending => return this.record.watch_cancel(this.cancel, cx),
            }
        }
        if this.record.started.is_none() && this.record.shared.timed {
            this.record.started = Some(Instant::now());
        }
        let (body, trace) = (this.body, &mut this.record.trace);
        match catch_unwind(AssertUnwindSafe(|| trace.in_span(|| body.poll(cx)))) {
            Ok(Poll::Ready(result)) => this.record.end(result),
            Err(payload) => this.record.end(Err(Error::from_panic(payload))),
            Ok(Poll::Pending) => this.record.watch_cancel(this.cancel, cx),
        }
    }
}

/// What a task reports when it ends, and its place in the scope's live count.
struct Record {
    shared: Arc<Shared>,
    index: u64,
    /// Kept only when a hook will need it.
    name: Option<Cow<'static, str>>,
    started: Option<Instant>,
    /// Set only when the scope profiles.
    spawned: Option<Instant>,
    run: Option<Arc<TaskRun>>,
    ended: bool,
    /// The task's span (see `crate::observe::trace`).
    trace: TaskTrace,
}

impl Record {
    fn end<T>(&mut self, result: Result<T, Error>) -> Poll<Result<T, Error>> {
        self.report(result.as_ref().err());
        Poll::Ready(result)
    }

    /// Registers for the scope's cancellation the first time the task waits. Later polls need
    /// no registration: the waker of a spawned task never changes, and `poll` checks the
    /// scope's reason (written before the token fires) first thing.
    fn watch_cancel<T>(
        &mut self,
        mut cancel: Pin<&mut Option<WaitForCancellationFutureOwned>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, Error>> {
        if cancel.is_none() {
            cancel.set(Some(self.shared.token().clone().cancelled_owned()));
            if let Some(waiter) = cancel.as_pin_mut()
                && waiter.poll(cx).is_ready()
            {
                let error = self.shared.cancel_error();
                return self.end(Err(error));
            }
        }
        Poll::Pending
    }

    fn report(&mut self, error: Option<&Error>) {
        self.ended = true;
        // A-02: from when the body started, after any wait for a permit or the breaker.
        let started = match &self.run {
            Some(run) => run.started(),
            None => self.started,
        };
        let duration = started.map_or(Duration::ZERO, |s| s.elapsed());
        if let Some(metrics) = &self.shared.metrics {
            metrics.task_ended(error.is_none(), duration);
        }
        if let Some(hooks) = &self.shared.hooks {
            let name = self
                .name
                .clone()
                .unwrap_or_else(|| Cow::Owned(format!("task-{}", self.index)));
            hooks.call_after_task(&name, duration, error);
            if let Some(observer) = &hooks.observer {
                observer.ended(self.index, duration, error);
            }
        }
        if let Some(profiler) = &self.shared.profiler {
            profiler.record(self.profile(error.is_none(), started, duration));
        }
        if let Some(error) = error {
            tracing::trace!(scope = %self.shared.name, task = self.index, %error, "task failed");
        }
        self.trace.finish(&self.shared.trace, error);
    }

    fn profile(&self, succeeded: bool, started: Option<Instant>, ran: Duration) -> TaskProfile {
        let total = self.spawned.map_or(Duration::ZERO, |s| s.elapsed());
        let name = self
            .name
            .as_deref()
            .map_or_else(|| format!("task-{}", self.index), str::to_owned);
        let mut profile = TaskProfile {
            name,
            index: self.index,
            succeeded,
            total,
            ..TaskProfile::default()
        };
        match &self.run {
            Some(stats) => {
                let stages = stats.take_stages();
                profile.circuit_breaker = stages.circuit_breaker;
                profile.permit_wait = stats.permit_wait();
                profile.attempts = stages.attempts;
                profile.retry_delays = stages.retry_delays;
                profile.retry_attempts = stats.retries();
            }
            None => {
                profile.permit_wait = match (self.spawned, started) {
                    (Some(spawned), Some(started)) => started.saturating_duration_since(spawned),
                    _ => Duration::ZERO,
                };
                if started.is_some() {
                    profile.attempts = vec![ran];
                }
            }
        }
        profile
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.ended {
            // Dropped before finishing: aborted by `Task::cancel`, or the runtime shut down.
            self.report(Some(&Error::cancelled("task cancelled")));
        }
        self.shared.task_exited();
    }
}

/// How a task is to be run, besides its body.
pub(crate) struct TaskSpec {
    pub(crate) name: Option<Cow<'static, str>>,
    /// The body takes its own concurrency permits (one per attempt) instead of the wrapper
    /// taking one for the task's whole life.
    pub(crate) permit_in_body: bool,
    /// Filled in by an attempt loop; read when the task ends.
    pub(crate) run: Option<Arc<TaskRun>>,
    /// The task's own span attributes.
    pub(crate) attrs: Attrs,
    /// The scope's limit as found before the task took a permit, when the caller took one
    /// already (see [`Shared::limit_snapshot`]).
    pub(crate) limit_before: Option<LimitSnapshot>,
}

impl TaskSpec {
    pub(crate) fn plain() -> TaskSpec {
        TaskSpec {
            name: None,
            permit_in_body: false,
            run: None,
            attrs: Attrs::default(),
            limit_before: None,
        }
    }
}

/// Spawns `body` into the scope behind `shared`: the single entry point for every task.
pub(crate) fn spawn_body<B, T>(shared: &Arc<Shared>, body: B, spec: TaskSpec) -> Task<T>
where
    B: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    let TaskSpec {
        name,
        permit_in_body,
        run,
        attrs,
        limit_before,
    } = spec;
    let index = match shared.admit() {
        Ok(index) => index,
        Err(error) => return Task::rejected(error, 0, name),
    };
    // The name is kept for the end of the task only when a hook or the profiler reports it.
    let reported_name = if shared.hooks.is_some() || shared.profiler.is_some() {
        Some(
            name.clone()
                .unwrap_or_else(|| Cow::Owned(format!("task-{index}"))),
        )
    } else {
        None
    };
    if let (Some(hooks), Some(task_name)) = (&shared.hooks, &reported_name) {
        if let Err(error) = hooks.call_before_task(task_name, index) {
            shared.task_exited();
            return Task::rejected(error, index, name);
        }
        if let Some(observer) = &hooks.observer {
            observer.spawned(&SpawnInfo {
                index,
                name: task_name,
                timeout: run.as_ref().and_then(|r| r.timeout()),
                max_retries: run.as_ref().and_then(|r| r.max_retries()),
            });
        }
    }
    if let Some(metrics) = &shared.metrics {
        metrics.task_spawned();
    }
    let limit_before = match limit_before {
        Some(snapshot) => Some(snapshot),
        None if permit_in_body => None,
        None => shared.limit_snapshot(),
    };
    let permit = match &shared.limit {
        _ if permit_in_body => Permit::Unlimited,
        None => Permit::Unlimited,
        Some(semaphore) => match Arc::clone(semaphore).try_acquire_owned() {
            Ok(permit) => Permit::Held(permit),
            Err(_) => Permit::Waiting(Box::new(PermitWait {
                semaphore: PollSemaphore::new(Arc::clone(semaphore)),
                _deadlock: shared.detector.as_ref().map(|detector| {
                    let task = name
                        .as_deref()
                        .map_or_else(|| format!("task-{index}"), str::to_owned);
                    detector.register(task, "concurrency permit")
                }),
                _queued: Queued::new(shared),
            })),
        },
    };
    tracing::trace!(scope = %shared.name, task = index, "task spawned");
    if let Some(run) = &run {
        run.set_index(index);
    }
    let span_info = TaskSpanInfo {
        attrs,
        has_retry: run
            .as_ref()
            .and_then(|r| r.max_retries())
            .is_some_and(|n| n > 0),
        timeout: run.as_ref().and_then(|r| r.timeout()),
        has_circuit_breaker: shared.breaker.is_some(),
        breaker_before: shared
            .breaker
            .as_ref()
            .filter(|_| shared.trace.records())
            .map(CircuitBreaker::snapshot),
        limit_before,
        run: run.clone(),
    };
    let trace = TaskTrace::start(&shared.trace, index, name.as_deref(), span_info);
    let future = TaskFuture {
        body,
        cancel: None,
        permit,
        record: Record {
            shared: Arc::clone(shared),
            index,
            name: reported_name,
            started: None,
            spawned: shared.profiler.as_ref().map(|_| Instant::now()),
            run,
            ended: false,
            trace,
        },
    };
    let ambient = Ambient {
        scope: Arc::clone(shared),
        task: Some(TaskIdent {
            index,
            name: name.clone(),
        }),
    };
    let handle = shared.runtime.spawn(context::enter(ambient, future));
    Task {
        state: State::Running(handle),
        index,
        name,
    }
}
