//! [`Task`]: the handle of a spawned task, and the one future every task runs inside.
//!
//! Every task of every scope is driven by the same wrapper, `TaskFuture`, which owns the four
//! things a task needs from its scope: a concurrency permit (waited for before the body starts),
//! cancellation (the scope's reason, observed at every poll), panic containment, and the
//! completion record (metrics, `after_task`, the scope's count of live tasks). What the body is
//! (a plain future, a fallible one, or a retrying factory) is the only thing that varies.

use std::borrow::Cow;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
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
use crate::core::observer::{
    EndedTask, SpawnedTask, TaskDetails, TaskEnd, TaskWatch, display_name,
};
use crate::core::registry;
use crate::core::scope::{LimitSnapshot, Queued, Shared, WaitGuard};

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
///
/// # Cancel safety
/// Awaiting `&mut task` is cancel safe: `Task` is `Unpin`, and the outcome is taken only by
/// the poll that returns it, so a `select!` branch on `&mut task` that loses leaves the
/// outcome for a later await. Awaiting `task` itself moves the handle into the `select!`;
/// dropping it there loses the outcome, though the task runs on, owned by its scope.
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
        display_name(self.name.as_deref(), self.index)
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

    /// Tokio's name for [`cancel`](Task::cancel): ends this task only; it resolves to
    /// [`Error::Cancelled`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let stuck = scope.spawn(std::future::pending::<()>());
    /// stuck.abort();
    /// assert!(stuck.await.0.unwrap().is_cancelled());
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn abort(&self) {
        self.cancel();
    }

    /// The Tokio task that runs this task (what `tokio::task::id()` says inside it, and what
    /// tokio-console shows), or `None` for a task that never ran (a closed scope, a refused
    /// `before_task`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let task = scope.spawn(async { tokio::task::id() });
    /// let id = task.tokio_id().unwrap();
    /// assert_eq!(task.await.1, Some(id));
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn tokio_id(&self) -> Option<tokio::task::Id> {
        match &self.state {
            State::Running(handle) => Some(handle.id()),
            State::Rejected(_) | State::Taken => None,
        }
    }

    /// Waits for the task and returns its outcome as a `Result`, for use with `?`.
    ///
    /// # Cancel safety
    /// Not cancel safe: the handle is moved into the future, so dropping it loses the outcome
    /// (the task itself runs on; its scope still owns it). In a `select!` loop, poll
    /// `&mut task` instead: `Task` is `Unpin`, and a handle polled that way keeps its outcome
    /// until it completes.
    ///
    /// # Errors
    /// The task's failure: cancelled, timed out, panicked, refused by a breaker, or its own
    /// error in [`Error::Failed`].
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
    /// A body whose output is the task's value. Not a public API.
    ///
    /// # Cancel safety
    /// Dropping it drops the user's future where it stands.
    #[doc(hidden)]
    pub struct Plain<F> {
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
    /// A body whose `Err` is the task's error. Not a public API.
    ///
    /// # Cancel safety
    /// Dropping it drops the user's future where it stands.
    #[doc(hidden)]
    pub struct Fallible<F> {
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

/// The task's concurrency permit, if its scope has a limit.
enum Permit {
    Unlimited,
    /// Waiting (boxed: most tasks never wait, and every task's future is as large as its
    /// largest state).
    Waiting(Box<PermitWait>),
    Held(#[allow(dead_code)] OwnedSemaphorePermit),
    /// A local scope's task waiting for the scope's future, which queues its tasks for the
    /// limit itself and polls this one only once it holds a permit for it (and keeps that
    /// permit until the task is gone). The box exists only when a feature watches the wait.
    Driven(#[allow(dead_code)] Option<Box<DrivenWait>>),
}

/// What a [`Permit::Driven`] task keeps while it waits: as [`PermitWait`] without the
/// semaphore.
struct DrivenWait {
    _wait: WaitGuard,
    _queued: Queued,
}

struct PermitWait {
    semaphore: PollSemaphore,
    /// Keeps the wait registered (live tree, features that track waits) until the permit
    /// arrives or the task is dropped.
    _wait: Option<WaitGuard>,
    /// Counts the task among the scope's waiting ones meanwhile.
    _queued: Queued,
}

pin_project! {
    /// The future every task runs: permit, cancellation, panic containment, completion record.
    ///
    /// Field order is drop order: the body is dropped first, the permit released next, and the
    /// record (which counts the task as ended) goes last, so a closing scope never sees a task
    /// as ended while its body still exists.
    pub(crate) struct TaskFuture<B, W> {
        #[pin]
        body: B,
        #[pin]
        cancel: W,
        permit: Permit,
        record: Record,
    }
}

impl<B, T, W> Future for TaskFuture<B, W>
where
    B: Future<Output = Result<T, Error>>,
    W: CancelWatch,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let shared = this.record.shared();
        if shared.is_cancelled() {
            let error = shared.cancel_error();
            return this.record.end(Err(error), false);
        }
        match this.permit {
            Permit::Waiting(wait) => match wait.semaphore.poll_acquire(cx) {
                Poll::Ready(Some(permit)) => *this.permit = Permit::Held(permit),
                Poll::Ready(None) => return this.record.end(Err(Error::Closed), false),
                Poll::Pending => return this.record.watch_cancel(this.cancel, cx),
            },
            // Polled at last: the local scope's future holds the permit for this task.
            Permit::Driven(_) => *this.permit = Permit::Unlimited,
            Permit::Unlimited | Permit::Held(_) => {}
        }
        if !this.record.begun {
            this.record.begun = true;
            if this.record.shared().timed() {
                this.record.started = Some(Instant::now());
            }
            if let Some(watch) = &mut this.record.watch
                && let Err(refused) = watch.start()
            {
                return this.record.end(Err(refused), false);
            }
        }
        let record = &mut *this.record;
        let (body, watch, ambient) = (this.body, &mut record.watch, &mut record.ambient);
        let polled = catch_unwind(AssertUnwindSafe(|| {
            context::enter(ambient, || match watch {
                None => body.poll(cx),
                Some(watch) => {
                    let mut body = Some(body);
                    let mut polled = Poll::Pending;
                    watch.poll(&mut || {
                        if let Some(body) = body.take() {
                            polled = body.poll(cx);
                        }
                    });
                    polled
                }
            })
        }));
        match polled {
            Ok(Poll::Ready(result)) => this.record.end(result, true),
            Err(payload) => this.record.end(Err(Error::from_panic(payload)), true),
            Ok(Poll::Pending) => this.record.watch_cancel(this.cancel, cx),
        }
    }
}

/// What a task reports when it ends, and its place in the scope's live count.
struct Record {
    /// The task's scope and identity, as its code finds them while it runs (moved into the
    /// thread's ambient slot during each poll of the body, and back; `None` only then).
    ambient: Option<Ambient>,
    /// The body has been polled (or refused) once.
    begun: bool,
    started: Option<Instant>,
    /// Set only when a feature wants spawn times.
    spawned: Option<Instant>,
    details: Option<Arc<dyn TaskDetails>>,
    /// The features' per-task state (see `crate::core::observer`).
    watch: Option<Box<dyn TaskWatch>>,
    /// Where the task was spawned, for its record in the live tree.
    location: &'static Location<'static>,
    /// Its key in the scope's live registry once it is recorded there (see
    /// `crate::core::registry`), else `UNRECORDED` (not yet) or `NOT_RECORDED` (never).
    key: u32,
    ended: bool,
}

/// How a waiting task learns that its scope was cancelled.
pub(crate) trait CancelWatch: Default {
    /// The task is polled by a local scope's future, which watches the scope's cancellation
    /// for all its tasks at once (and queues them for the limit).
    const DRIVEN: bool;

    /// Called each time the task waits; true once the scope's cancellation has fired.
    fn fired(self: Pin<&mut Self>, shared: &Arc<Shared>, cx: &mut Context<'_>) -> bool;
}

/// A spawned task's own waiter on its scope's token, registered the first time it waits.
/// Later polls need no registration: the waker of a spawned task never changes, and `poll`
/// checks the scope's reason (written before the token fires) first thing.
pub(crate) type OwnWaiter = Option<WaitForCancellationFutureOwned>;

impl CancelWatch for OwnWaiter {
    const DRIVEN: bool = false;

    fn fired(mut self: Pin<&mut Self>, shared: &Arc<Shared>, cx: &mut Context<'_>) -> bool {
        if self.is_some() {
            return false;
        }
        self.set(Some(shared.token().clone().cancelled_owned()));
        self.as_pin_mut()
            .is_some_and(|waiter| waiter.poll(cx).is_ready())
    }
}

/// A local task: its scope's future watches for it, and the task's future carries no waiter.
impl CancelWatch for () {
    const DRIVEN: bool = true;

    fn fired(self: Pin<&mut Self>, _: &Arc<Shared>, _: &mut Context<'_>) -> bool {
        false
    }
}

impl<B, W> TaskFuture<B, W> {
    /// True when the task waits for the local scope's future to hand it a permit.
    pub(crate) fn awaits_permit(&self) -> bool {
        matches!(self.permit, Permit::Driven(_))
    }
}

impl Record {
    /// The task's scope.
    #[inline]
    fn shared(&self) -> &Arc<Shared> {
        match &self.ambient {
            Some(ambient) => &ambient.scope,
            None => unreachable!("a task's context is away only while its body is polled"),
        }
    }

    /// The task's number and name.
    fn ident(&self) -> (u64, Option<&str>) {
        match self.ambient.as_ref().and_then(|a| a.task.as_ref()) {
            Some(task) => (task.index, task.name.as_deref()),
            None => (0, None),
        }
    }

    /// Ends the task with `result`; `finished` when the body itself produced it.
    fn end<T>(&mut self, result: Result<T, Error>, finished: bool) -> Poll<Result<T, Error>> {
        self.report(result.as_ref().err(), finished);
        Poll::Ready(result)
    }

    /// The task waits: it ends now if its scope's cancellation has fired meanwhile. Also
    /// records the task in the live tree the first time it is suspended.
    fn watch_cancel<T, W: CancelWatch>(
        &mut self,
        cancel: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, Error>> {
        if self.key == registry::UNRECORDED {
            self.record();
        }
        if cancel.fired(self.shared(), cx) {
            let error = self.shared().cancel_error();
            return self.end(Err(error), false);
        }
        Poll::Pending
    }

    /// Records the task in its scope's live registry (none with `introspect(false)`).
    #[cold]
    fn record(&mut self) {
        if let Some(Ambient {
            scope,
            task: Some(task),
        }) = &self.ambient
        {
            self.key = registry::add_task(
                scope,
                task.index,
                task.name.as_ref(),
                self.location,
                self.details.as_ref(),
            );
        }
    }

    fn report(&mut self, error: Option<&Error>, finished: bool) {
        self.ended = true;
        if let Some(error) = error {
            let (index, _) = self.ident();
            tracing::trace!(scope = ?self.shared().name, task = index,
                error = crate::util::log::LoggedError::of(error).field(),
                "task failed");
        }
        if self.shared().features().is_none() {
            return;
        }
        if let Some(watch) = self.watch.take() {
            watch.end(&TaskEnd { error, finished });
        }
        let (index, name) = self.ident();
        let Some(features) = self.shared().features() else {
            return;
        };
        // A-02: from when the body started, after any wait for a permit or the breaker.
        let started = self
            .details
            .as_ref()
            .and_then(|details| details.started())
            .or(self.started);
        features.task_ended(&EndedTask {
            index,
            name,
            error,
            duration: started.map_or(Duration::ZERO, |s| s.elapsed()),
            started,
            spawned: self.spawned,
            details: self.details.as_ref(),
        });
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.ended {
            // Dropped before finishing: aborted by `Task::cancel`, or the runtime shut down.
            self.report(Some(&Error::cancelled("task cancelled")), false);
        }
        if self.key < registry::NOT_RECORDED {
            registry::remove_task(self.shared(), self.key);
        }
        self.shared().task_exited();
    }
}

/// How a task is to be run, besides its body.
pub(crate) struct TaskSpec {
    pub(crate) name: Option<Cow<'static, str>>,
    /// The body runs its own attempts: it takes its own concurrency permits (one per attempt)
    /// instead of the wrapper taking one for the task's whole life, and asks the breaker
    /// itself.
    pub(crate) runs_attempts: bool,
    /// What the body tells the features (its options, what its attempts did).
    pub(crate) details: Option<Arc<dyn TaskDetails>>,
    /// The scope's limit as found before the task took a permit, when the caller took one
    /// already (see [`Shared::limit_snapshot`]).
    pub(crate) limit_before: Option<LimitSnapshot>,
}

impl TaskSpec {
    pub(crate) fn plain() -> TaskSpec {
        TaskSpec {
            name: None,
            runs_attempts: false,
            details: None,
            limit_before: None,
        }
    }
}

/// A task admitted into its scope, its future built and not yet running.
pub(crate) struct Prepared<B, W> {
    pub(crate) future: TaskFuture<B, W>,
    pub(crate) index: u64,
    pub(crate) name: Option<Cow<'static, str>>,
}

/// A task its scope (or one of its observers) refused: its error, number and name.
pub(crate) type Refused = (Error, u64, Option<Cow<'static, str>>);

/// Admits a task into the scope behind `shared` and builds the future it runs in: the one
/// place every task, spawned or local, goes through (admission, observers, permit, record).
/// `W` says how the task watches its scope's cancellation: by itself ([`OwnWaiter`]) or, for a
/// local scope's tasks (`()`), through the scope's future, which also queues them for the limit.
/// `#[track_caller]` all the way from the public spawn methods, so that the live tree shows
/// where each task was spawned.
#[track_caller]
pub(crate) fn prepare<B, T, W>(
    shared: &Arc<Shared>,
    body: B,
    spec: TaskSpec,
) -> Result<Prepared<B, W>, Refused>
where
    B: Future<Output = Result<T, Error>>,
    W: CancelWatch,
{
    let driven = W::DRIVEN;
    let TaskSpec {
        name,
        runs_attempts,
        details,
        limit_before,
    } = spec;
    let index = match shared.admit() {
        Ok(index) => index,
        Err(error) => return Err((error, 0, name)),
    };
    if let Some(details) = &details {
        details.admitted(index);
    }
    let mut watch = None;
    if let Some(features) = shared.features() {
        let limit_before = match limit_before {
            Some(snapshot) => Some(snapshot),
            None if runs_attempts => None,
            None => shared.limit_snapshot(),
        };
        let task = SpawnedTask {
            scope: shared,
            index,
            name: name.as_ref(),
            runs_attempts,
            details: details.as_ref(),
            limit_before,
        };
        if let Err(error) = features.task_spawned(&task) {
            shared.task_exited();
            return Err((error, index, name));
        }
        watch = features.watch_task(&task);
    }
    // The caller of the public spawn method (every path to here is `#[track_caller]`): the
    // task's spawn site in the live tree.
    let location = Location::caller();
    let mut key = registry::UNRECORDED;
    let permit = match &shared.limit {
        _ if runs_attempts => Permit::Unlimited,
        None => Permit::Unlimited,
        Some(semaphore) => match Arc::clone(semaphore).try_acquire_owned() {
            Ok(permit) => Permit::Held(permit),
            // The local scope's future queues the task and takes a permit for it. The live
            // tree counts it among the scope's tasks not started yet, and lists it once it
            // runs: recording every queued task at spawn would cost a fan-out under a limit
            // more than the queue itself. Features that watch waits still see this one.
            Err(_) if driven => Permit::Driven(shared.features().and_then(|_| {
                let task = TaskIdent {
                    index,
                    name: name.clone(),
                };
                let wait = shared.begin_wait(Some(&task), "concurrency permit")?;
                Some(Box::new(DrivenWait {
                    _wait: wait,
                    _queued: Queued::new(shared),
                }))
            })),
            Err(_) => {
                // Suspended before it starts: in the live tree from now on.
                key = registry::add_task(shared, index, name.as_ref(), location, details.as_ref());
                Permit::Waiting(Box::new(PermitWait {
                    semaphore: PollSemaphore::new(Arc::clone(semaphore)),
                    _wait: shared.begin_wait(
                        Some(&TaskIdent {
                            index,
                            name: name.clone(),
                        }),
                        "concurrency permit",
                    ),
                    _queued: Queued::new(shared),
                }))
            }
        },
    };
    tracing::trace!(scope = ?shared.name, task = index, "task spawned");
    let future = TaskFuture {
        body,
        cancel: W::default(),
        permit,
        record: Record {
            ambient: Some(Ambient {
                scope: Arc::clone(shared),
                task: Some(TaskIdent {
                    index,
                    name: name.clone(),
                }),
            }),
            begun: false,
            started: None,
            spawned: shared.notes_spawn_time().then(Instant::now),
            details,
            watch,
            location,
            key,
            ended: false,
        },
    };
    Ok(Prepared {
        future,
        index,
        name,
    })
}

/// Spawns `body` into the scope behind `shared` as a Tokio task.
#[track_caller]
pub(crate) fn spawn_body<B, T>(shared: &Arc<Shared>, body: B, spec: TaskSpec) -> Task<T>
where
    B: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    match prepare::<B, T, OwnWaiter>(shared, body, spec) {
        Ok(Prepared {
            future,
            index,
            name,
        }) => {
            let handle = shared.runtime.spawn(future);
            Task {
                state: State::Running(handle),
                index,
                name,
            }
        }
        Err((error, index, name)) => Task::rejected(error, index, name),
    }
}
