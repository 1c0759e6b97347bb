//! Local scopes: tasks that run inside the scope's own future instead of on Tokio's workers.
//!
//! [`Scope::local`] builds an ordinary scope (its `Shared`: token, deadline, limit, features)
//! and keeps it as a local variable of its own `async fn`, so the body it calls may borrow it:
//! an `async fn`'s future may point into itself, which is what lets tasks borrow without any
//! `unsafe`. The future then polls the body and the scope's set of tasks together (a slab of
//! boxed futures and a queue of the ones woken). Each task is the same `TaskFuture` a spawned
//! task runs in (admission, observers, permit, panic containment, record), built by
//! `task::prepare`; only where it is polled differs. A task costs two allocations: its boxed
//! future and its handle's slot.
//!
//! Cancellation is watched once for the whole scope: when the scope is cancelled, every task
//! left is polled one last time (it ends itself with the scope's reason, as a spawned task
//! does) and dropped.
//!
//! A handle reaches its scope through [`Runner`]: awaiting a task that has not ended runs the
//! scope's pass over its new and woken tasks inside the body's poll, so a task that is ready at
//! once costs the body no second poll. A thread keeps the queue, spare waker and task buffer of
//! the last local scope that ended on it, for the next one, when nothing else holds them.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_util::sync::PollSemaphore;

use crate::core::context::{self, Ambient};
use crate::core::error::{BoxError, Error, Outcome, into_outcome, into_result};
use crate::core::observer::{Features, display_name};
use crate::core::scope::{Scope, ScopeBuilder};
use crate::core::shared::{BodyEnd, Cause, CloseOnDrop, Report, Watched};
use crate::core::task::{Fallible, Plain, Prepared, TaskFuture, TaskSpec, prepare};
use crate::util::sync::lock;

mod sealed {
    pub trait Sealed {}
}

/// Which tasks a [`LocalScope`] takes: [`SendTasks`] or [`AnyTasks`].
///
/// The choice decides whether the scope's future is `Send`: a future that holds tasks which are
/// not `Send` cannot be. This trait is sealed.
pub trait LocalKind: sealed::Sealed + 'static {
    #[doc(hidden)]
    type Entry<'env>: Future<Output = ()> + Unpin + 'env
    where
        Self: 'env;

    /// How a task's handle reaches its scope: `Sync` when the scope's tasks are `Send`, so that
    /// a handle is `Send` exactly when the scope's body may be.
    #[doc(hidden)]
    type Reach<'s>: Copy + Unpin;

    /// The scope as its handles reach it.
    #[doc(hidden)]
    fn reach<'s, 'env: 's>(scope: &'s LocalScope<'env, Self>) -> Self::Reach<'s>
    where
        Self: Sized;

    /// What a handle can ask of its scope.
    #[doc(hidden)]
    fn runner(reach: Self::Reach<'_>) -> &dyn Runner;
}

/// What a task's handle asks of its local scope. Not a public API.
#[doc(hidden)]
pub trait Runner {
    /// Asks the scope's future to poll the task numbered `id` at place `at`.
    fn push(&self, at: usize, id: u64);
    /// Polls the tasks spawned or woken since the scope's future last did, here and now: the
    /// body awaits a task that has not ended, and those tasks would be polled right after
    /// this poll of the body anyway. `cx` is the body's context.
    fn run(&self, cx: &mut Context<'_>);
}

/// Tasks of a [`LocalScope`] built by [`Scope::local`]: they must be `Send`, and so is the
/// scope's future (what a multi-threaded runtime, `tokio::spawn` and web frameworks need).
#[derive(Debug)]
pub enum SendTasks {}

/// Tasks of a [`LocalScope`] built by [`Scope::local_unsend`]: any future (holding an `Rc`, a
/// `RefCell` borrow across an await, ...); the scope's future is then not `Send`, which is fine
/// on a `current_thread` runtime, in a `LocalSet`, or wherever the caller does not need `Send`.
#[derive(Debug)]
pub enum AnyTasks {}

impl sealed::Sealed for SendTasks {}
impl sealed::Sealed for AnyTasks {}

impl LocalKind for SendTasks {
    type Entry<'env> = Pin<Box<dyn Future<Output = ()> + Send + 'env>>;
    type Reach<'s> = &'s (dyn Runner + Sync + 's);

    fn reach<'s, 'env: 's>(scope: &'s LocalScope<'env, Self>) -> Self::Reach<'s> {
        scope
    }

    fn runner(reach: Self::Reach<'_>) -> &dyn Runner {
        reach
    }
}

impl LocalKind for AnyTasks {
    type Entry<'env> = Pin<Box<dyn Future<Output = ()> + 'env>>;
    type Reach<'s> = &'s (dyn Runner + 's);

    fn reach<'s, 'env: 's>(scope: &'s LocalScope<'env, Self>) -> Self::Reach<'s> {
        scope
    }

    fn runner(reach: Self::Reach<'_>) -> &dyn Runner {
        reach
    }
}

/// The tasks a [`LocalKind`] accepts, for the generic spawn paths (`go!`, the task builder):
/// `Send` ones for [`SendTasks`], any for [`AnyTasks`]. Not a public API.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this task cannot run in a local scope whose tasks must be `Send`",
    label = "this future (or its value) is not `Send`",
    note = "a `#[scoped(local)]` fn or `Scope::local` is a `Send` future, so its tasks must be \
            `Send`; use `#[scoped(local(unsend))]` or `Scope::local_unsend` for tasks that are not"
)]
pub trait Holds<'env, B, T>: LocalKind {
    /// The task as the scope's future keeps it.
    fn hold(entry: Pin<Box<Entry<B, T>>>) -> Self::Entry<'env>;
}

impl<'env, B, T> Holds<'env, B, T> for SendTasks
where
    B: Future<Output = Result<T, Error>> + Send + 'env,
    T: Send + 'env,
{
    fn hold(entry: Pin<Box<Entry<B, T>>>) -> Self::Entry<'env> {
        entry
    }
}

impl<'env, B, T> Holds<'env, B, T> for AnyTasks
where
    B: Future<Output = Result<T, Error>> + 'env,
    T: 'env,
{
    fn hold(entry: Pin<Box<Entry<B, T>>>) -> Self::Entry<'env> {
        entry
    }
}

/// The body of a [`Scope::local`] scope: `|s| Box::pin(async { .. })`.
///
/// The body borrows the scope (`s`) and whatever the caller's tasks borrow; a boxed future is
/// how a closure's future may borrow its argument and still be checked for `Send` where it is
/// written.
pub type LocalBody<'s, R> = Pin<Box<dyn Future<Output = R> + Send + 's>>;

/// The body of a [`Scope::local_unsend`] scope: `|s| Box::pin(async { .. })`, not `Send`.
pub type UnsendBody<'s, R> = Pin<Box<dyn Future<Output = R> + 's>>;

/// A scope whose tasks run inside the scope's own future, concurrently but not in parallel,
/// and may borrow anything that outlives the scope.
///
/// Built by [`Scope::local`] (tasks must be `Send`; the scope's future is `Send`) or
/// [`Scope::local_unsend`] (any task; the future is not `Send`). Its tasks are not Tokio tasks:
/// the future returned by `Scope::local` polls them, on the thread that polls it. Everything
/// else is a scope like any other — the builder's deadline, cancellation, concurrency limit,
/// hooks, metrics, spans and profiler apply to its tasks as they do to spawned ones.
///
/// ```
/// use go_go_scope::Scope;
///
/// async fn fetch(db: &Vec<String>, id: usize) -> Option<String> {
///     tokio::task::yield_now().await;
///     db.get(id).cloned()
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let db = vec!["ada".to_string(), "grace".to_string()];
/// let names = Scope::local(Scope::builder(), |s| Box::pin(async {
///     let a = s.spawn(fetch(&db, 0)); // borrows `db`: no Arc, no clone
///     let b = s.spawn(fetch(&db, 1));
///     (a.await.1.flatten(), b.await.1.flatten())
/// }))
/// .await
/// .unwrap();
/// assert_eq!(names, (Some("ada".into()), Some("grace".into())));
/// # }
/// ```
pub struct LocalScope<'env, K: LocalKind = SendTasks> {
    scope: Scope,
    /// The scope's tasks. Only the scope's future polls them, and never while the body runs,
    /// which is the only code that can reach this scope (tasks live for `'env`, longer than any
    /// borrow of the scope): the lock is never contended.
    tasks: Mutex<TaskSet<K::Entry<'env>>>,
    /// Where the wakers of the scope's future and of its tasks leave their news.
    queue: Arc<Queue>,
}

impl<K: LocalKind> std::fmt::Debug for LocalScope<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalScope")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Scope {
    /// Runs `body` in a new local scope, whose tasks may borrow from the caller, and always
    /// closes the scope afterwards.
    ///
    /// The tasks run inside the returned future, concurrently with the body and each other but
    /// never in parallel; they must be `Send` (use [`Scope::local_unsend`] otherwise), and the
    /// returned future is then `Send` too. As with [`Scope::run`]: when the body ends,
    /// outstanding tasks are cancelled (or awaited, with [`ScopeBuilder::wait`]); when the
    /// scope is cancelled or its deadline passes, the body and the tasks are dropped and the
    /// result is the cancellation's error; disposers run before this returns.
    ///
    /// Use a local scope for I/O concurrency over borrowed data (a request handler fetching
    /// three things with the same client); use a spawned scope ([`Scope::run`]) for CPU
    /// parallelism, or for work that must outlive the caller's stack frame.
    ///
    /// # Forgetting the future
    /// The tasks are only ever polled by this future. `std::mem::forget` of it (after pinning it
    /// in a `Box`) cannot make a task touch freed data: the forgotten future is never polled
    /// again, so neither are its tasks, and the data they borrowed was borrowed by that future.
    /// What it does do is leak them: the scope never closes, and a parent scope's close waits
    /// for it for ever.
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::{Error, Scope};
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let words = vec!["a", "bb", "ccc"];
    /// let total = Scope::local(Scope::builder(), |s| Box::pin(async {
    ///     let tasks: Vec<_> = words.iter().map(|w| s.spawn(async move { w.len() })).collect();
    ///     let mut total = 0;
    ///     for task in tasks {
    ///         total += task.result().await.unwrap();
    ///     }
    ///     total
    /// }))
    /// .await;
    /// assert_eq!(total.unwrap(), 6);
    ///
    /// let quick = Scope::builder().timeout(Duration::from_millis(10));
    /// let slow = Scope::local(quick, |s| Box::pin(async {
    ///     s.spawn(tokio::time::sleep(Duration::from_secs(3600))).await
    /// }))
    /// .await;
    /// assert!(matches!(slow, Err(Error::Timeout { .. })));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// The scope lives inside this future: dropping it mid-way drops the body and every task
    /// of the scope where they stand (their borrows end with them), cancels the scope, and
    /// closes it in the background, so its disposers still run. Nothing keeps running after the
    /// drop, which is what makes the borrows sound.
    ///
    /// # Errors
    /// Invalid builder options, no Tokio runtime, a closed parent; or the scope's cancellation
    /// error when it was cancelled before the body finished.
    pub async fn local<'env, F, R>(builder: ScopeBuilder, body: F) -> Result<R, Error>
    where
        F: for<'s> FnOnce(&'s LocalScope<'env, SendTasks>) -> LocalBody<'s, R>,
    {
        // The same as `local_until`, written out: awaiting that fn from here would move its (large)
        // future once more on every call.
        let scope = LocalScope::new(builder)?;
        let guard = CloseOnDrop(Some(Arc::clone(scope.scope.shared())));
        let outcome = scope.drive(body(&scope), BodyEnd::OnCancel).await;
        scope.finish(outcome, guard).await
    }

    /// [`Scope::local`], with a choice of what ends the body: the scope's cancellation, or only
    /// its own completion (for `#[scoped(local)]` fns whose return type cannot carry an error).
    pub(crate) async fn local_until<'env, F, R>(
        builder: ScopeBuilder,
        body: F,
        end: BodyEnd,
    ) -> Result<R, Error>
    where
        F: for<'s> FnOnce(&'s LocalScope<'env, SendTasks>) -> LocalBody<'s, R>,
    {
        let scope = LocalScope::new(builder)?;
        let guard = CloseOnDrop(Some(Arc::clone(scope.scope.shared())));
        let outcome = scope.drive(body(&scope), end).await;
        scope.finish(outcome, guard).await
    }

    /// [`Scope::local`] for tasks that need not be `Send`; the returned future is then not
    /// `Send` either: run it on a `current_thread` runtime, in a `LocalSet`, or await it where
    /// the caller does not need `Send`.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use go_go_scope::Scope;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let log = RefCell::new(Vec::new());
    /// let shared = Rc::new(5);
    /// Scope::local_unsend(Scope::builder(), |s| Box::pin(async {
    ///     let a = s.spawn(async { log.borrow_mut().push(*shared) });
    ///     let b = s.spawn(async { log.borrow_mut().push(*shared + 1) });
    ///     a.await;
    ///     b.await;
    /// }))
    /// .await
    /// .unwrap();
    /// assert_eq!(log.into_inner(), [5, 6]);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// As [`Scope::local`].
    ///
    /// # Errors
    /// As [`Scope::local`].
    pub async fn local_unsend<'env, F, R>(builder: ScopeBuilder, body: F) -> Result<R, Error>
    where
        F: for<'s> FnOnce(&'s LocalScope<'env, AnyTasks>) -> UnsendBody<'s, R>,
    {
        // The same as `local_unsend_until`, written out: awaiting that fn from here would move its (large)
        // future once more on every call.
        let scope = LocalScope::new(builder)?;
        let guard = CloseOnDrop(Some(Arc::clone(scope.scope.shared())));
        let outcome = scope.drive(body(&scope), BodyEnd::OnCancel).await;
        scope.finish(outcome, guard).await
    }

    /// [`Scope::local_unsend`] with a choice of what ends the body, as [`Scope::local_until`].
    pub(crate) async fn local_unsend_until<'env, F, R>(
        builder: ScopeBuilder,
        body: F,
        end: BodyEnd,
    ) -> Result<R, Error>
    where
        F: for<'s> FnOnce(&'s LocalScope<'env, AnyTasks>) -> UnsendBody<'s, R>,
    {
        let scope = LocalScope::new(builder)?;
        let guard = CloseOnDrop(Some(Arc::clone(scope.scope.shared())));
        let outcome = scope.drive(body(&scope), end).await;
        scope.finish(outcome, guard).await
    }
}

impl<'env> LocalScope<'env, SendTasks> {
    /// Starts `future` as a task of this scope. It may borrow anything that outlives the scope;
    /// it must be `Send` (see [`Scope::local_unsend`]).
    ///
    /// The returned [`LocalTask`] resolves to `(None, Some(value))`, or to `(Some(error), None)`
    /// if the task was cancelled, timed out with the scope or panicked. On a closed or cancelled
    /// scope the task is not run and resolves to that error. The task first runs when the
    /// scope's future next polls its tasks, which is as soon as the body awaits, or when the body
    /// awaits this very handle, whichever comes first.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> LocalTask<'_, F::Output>
    where
        F: Future + Send + 'env,
        F::Output: Send + 'env,
    {
        self.start(Plain::new(future), TaskSpec::plain())
    }

    /// Starts a future that returns `Result<T, E>`; its `Err(e)` becomes the task's error, as
    /// with [`Scope::try_spawn`].
    #[track_caller]
    pub fn try_spawn<F, T, E>(&self, future: F) -> LocalTask<'_, T>
    where
        F: Future<Output = Result<T, E>> + Send + 'env,
        T: Send + 'env,
        E: Into<BoxError> + 'static,
    {
        self.start(Fallible::new(future), TaskSpec::plain())
    }
}

impl<'env> LocalScope<'env, AnyTasks> {
    /// Starts `future` as a task of this scope. It may borrow anything that outlives the scope
    /// and need not be `Send`. Otherwise as [`LocalScope::spawn`] of a `Send` local scope.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> LocalTask<'_, F::Output, AnyTasks>
    where
        F: Future + 'env,
        F::Output: 'env,
    {
        self.start(Plain::new(future), TaskSpec::plain())
    }

    /// Starts a future that returns `Result<T, E>`; its `Err(e)` becomes the task's error.
    #[track_caller]
    pub fn try_spawn<F, T, E>(&self, future: F) -> LocalTask<'_, T, AnyTasks>
    where
        F: Future<Output = Result<T, E>> + 'env,
        T: 'env,
        E: Into<BoxError> + 'static,
    {
        self.start(Fallible::new(future), TaskSpec::plain())
    }
}

impl<'env, K: LocalKind> LocalScope<'env, K> {
    /// The scope behind this local scope, for features that read it (the live tree).
    pub(crate) fn inner(&self) -> &Scope {
        &self.scope
    }

    fn new(builder: ScopeBuilder) -> Result<Self, Error> {
        let scope = builder.build()?;
        // `try_with`: a scope may be built or dropped while the thread's locals are being
        // destroyed (a runtime kept in one), and then simply allocates or frees.
        let (queue, tasks) = match KEPT.try_with(std::cell::Cell::take).ok().flatten() {
            Some(Kept {
                queue,
                spare,
                pending,
            }) => (
                queue,
                TaskSet {
                    spare,
                    pending,
                    ..TaskSet::default()
                },
            ),
            None => (Arc::default(), TaskSet::default()),
        };
        Ok(LocalScope {
            scope,
            tasks: Mutex::new(tasks),
            queue,
        })
    }

    /// Admits a task through the same path as a spawned one and queues it for the scope's
    /// future. `boxed` only coerces the boxed task to the scope's kind of entry (`|entry| entry`
    /// where the body's `Send`-ness is known). `#[track_caller]`, so that the live tree shows
    /// where the task was spawned.
    #[track_caller]
    pub(crate) fn start<B, T>(&self, body: B, spec: TaskSpec) -> LocalTask<'_, T, K>
    where
        B: Future<Output = Result<T, Error>>,
        K: Holds<'env, B, T>,
    {
        let (future, index, name) = match prepare::<B, T, ()>(self.scope.shared(), body, spec) {
            Ok(Prepared {
                future,
                index,
                name,
            }) => (future, index, name),
            Err((error, index, name)) => return LocalTask::rejected(error, index, name),
        };
        let queued = future.awaits_permit();
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                outcome: None,
                handle: None,
            }),
            cancel: AtomicBool::new(false),
        });
        // Allocated first and written in place: the task's future is moved once, not twice.
        let entry = Box::write(
            Box::new_uninit(),
            Entry {
                task: Some(future),
                slot: Arc::clone(&slot),
            },
        );
        let entry = K::hold(Box::into_pin(entry));
        // Polled by the scope's future right after this poll of the body, or sooner when the
        // body awaits it (waiting for a permit: once the scope's future has one for it).
        let at = lock(&self.tasks).insert(entry, index, queued);
        LocalTask {
            slot: Ok(slot),
            index,
            name,
            node: Some((K::reach(self), at)),
            ran: false,
        }
    }

    /// The scope's state, for the features' own methods on local scopes.
    pub(crate) fn shared(&self) -> &Arc<crate::core::scope::Shared> {
        self.scope.shared()
    }

    /// Cancels the scope, its tasks and its child scopes with `reason`, as [`Scope::cancel`].
    pub fn cancel(&self, reason: impl Into<Cow<'static, str>>) {
        self.scope.cancel(reason);
    }

    /// True once the scope was cancelled (or its deadline passed).
    pub fn is_cancelled(&self) -> bool {
        self.scope.is_cancelled()
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        self.scope.name()
    }

    /// The scope's id, unique in the process.
    pub fn id(&self) -> u64 {
        self.scope.id()
    }

    /// The scope's concurrency limit, if it has one.
    pub fn concurrency(&self) -> Option<usize> {
        self.scope.concurrency()
    }

    /// The scope's deadline, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.scope.timeout()
    }

    /// Tasks of the scope that have not ended yet.
    pub fn active_tasks(&self) -> usize {
        self.scope.active_tasks()
    }

    /// The scope's cancellation token (cancelled with the scope).
    pub fn token(&self) -> crate::CancellationToken {
        self.scope.token()
    }

    /// A builder for a child scope of this one (cancelled with it, closed before it).
    pub fn child(&self) -> ScopeBuilder {
        self.scope.child()
    }

    /// Registers a disposer, run when the scope closes, as [`Scope::defer`].
    pub fn defer<F, Fut>(&self, cleanup: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: crate::DisposeResult,
    {
        self.scope.defer(cleanup);
    }

    /// Puts `value` in the scope for its code to find with [`LocalScope::service`].
    pub fn provide<T: Send + Sync + 'static>(&self, value: T) -> &Self {
        self.scope.provide(value);
        self
    }

    /// The service of type `T` of this scope or the nearest ancestor that has one.
    pub fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.scope.service::<T>()
    }

    /// Polls the body (as the scope's ambient code, inside its watch) and the tasks together,
    /// until the body is done (and, with `wait`, the tasks too) or, with [`BodyEnd::OnCancel`],
    /// the scope is cancelled. With [`BodyEnd::Completed`] a cancellation ends the tasks and
    /// the body runs on to its end.
    async fn drive<Fut: Future>(&self, body: Fut, end: BodyEnd) -> Result<Fut::Output, Error> {
        let shared = self.scope.shared();
        // The body's context is made ambient once per poll of the scope's future, not once per
        // poll of the body: each task's poll makes its own ambient and restores this one after.
        let mut ambient = Some(Ambient {
            scope: Arc::clone(shared),
            task: None,
        });
        let mut body = pin!(Watched::new(
            shared.features().and_then(Features::watch_body),
            body,
        ));
        let mut output = None;
        let mut cancelled = pin!(None);
        let wait = shared.wait_on_exit;
        // The body and the tasks are polled with the scope's own wakers: a wake-up that happens
        // while they are being polled (a task ending wakes the body awaiting it) only marks
        // another round of this poll, instead of rescheduling the whole future on the runtime.
        let wake = &*self.queue;
        let waker = Waker::from(Arc::clone(&self.queue));
        let outcome = poll_fn(|outer| {
            wake.begin(outer.waker());
            let cx = &mut Context::from_waker(&waker);
            let mut rounds = 0;
            context::enter(&mut ambient, || {
                loop {
                    rounds += 1;
                    wake.woken.store(false, Ordering::SeqCst);
                    if output.is_none()
                        && let Poll::Ready(value) = body.as_mut().poll(cx)
                    {
                        output = Some(value);
                    }
                    let mut tasks = lock(&self.tasks);
                    tasks.pass(&self.queue, shared.limit.as_ref(), cx);
                    let cancelled_now = shared.is_cancelled();
                    if cancelled_now {
                        tasks.end_all(cx);
                        if output.is_some() || end == BodyEnd::OnCancel {
                            wake.end();
                            return Poll::Ready(match output.take() {
                                Some(value) => Ok(value),
                                None => Err(shared.cancel_error()),
                            });
                        }
                        // The body runs to its end; what it spawns from now on is refused.
                    }
                    let drained = tasks.len == 0;
                    drop(tasks);
                    if output.is_some() && (!wait || drained) {
                        wake.end();
                        return Poll::Ready(Ok(output.take().expect("checked above")));
                    }
                    if !wake.woken.load(Ordering::SeqCst) {
                        // Once cancelled, only the body is left to wake this future.
                        if !cancelled_now {
                            if cancelled.is_none() {
                                cancelled.set(Some(shared.token().cancelled()));
                            }
                            if let Some(waiter) = cancelled.as_mut().as_pin_mut()
                                && waiter.poll(cx).is_ready()
                            {
                                continue;
                            }
                        }
                        if wake.end() {
                            // Nothing woke while polling: wait for a wake-up from outside.
                            return Poll::Pending;
                        }
                        wake.polling.store(true, Ordering::SeqCst);
                    }
                    if rounds >= MAX_ROUNDS {
                        // Something keeps waking itself: let the runtime run others first.
                        wake.end();
                        outer.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
            })
        })
        .await;
        if lock(&self.tasks).len != 0 {
            // The body is done and the rest is not awaited: it is cancelled, as a closing scope
            // cancels its spawned tasks.
            shared.cancel_tree(
                &Cause::Cancelled(Cow::Borrowed("scope closed")),
                Report::IfBusy,
            );
            poll_fn(|cx| {
                lock(&self.tasks).end_all(cx);
                Poll::Ready(())
            })
            .await;
        }
        outcome
    }

    /// Closes the scope once its tasks are gone.
    async fn finish<R>(self, outcome: Result<R, Error>, guard: CloseOnDrop) -> Result<R, Error> {
        // Anything spawned while the body was being dropped never ran: it goes before the close
        // waits for the scope's tasks.
        lock(&self.tasks).clear();
        self.scope.shared().end_body(outcome.is_ok(), guard).await;
        outcome
    }
}

impl<K: LocalKind> Runner for LocalScope<'_, K> {
    fn push(&self, at: usize, id: u64) {
        self.queue.push(at, id);
    }

    fn run(&self, cx: &mut Context<'_>) {
        // The set is locked only while the scope's future polls tasks, never while it polls
        // the body (the only code that holds handles): `try_lock` fails only if a handle were
        // polled from inside a task, and the tasks then wait for the scope's future as usual.
        if let Ok(mut tasks) = self.tasks.try_lock() {
            tasks.pass(&self.queue, self.scope.shared().limit.as_ref(), cx);
        }
    }
}

impl<K: LocalKind> Drop for LocalScope<'_, K> {
    fn drop(&mut self) {
        let tasks = self
            .tasks
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tasks.len != 0 {
            return;
        }
        // Kept for the thread's next local scope only when nothing else holds the queue or the
        // spare waker: no waker of this scope can reach the next one.
        let spare = tasks.spare.take();
        let holders = 1 + usize::from(spare.is_some());
        if Arc::strong_count(&self.queue) != holders
            || spare.as_ref().is_some_and(|s| !s.unshared())
        {
            return;
        }
        self.queue.reset();
        let mut pending = std::mem::take(&mut tasks.pending);
        pending.clear();
        let kept = Kept {
            queue: Arc::clone(&self.queue),
            spare,
            pending,
        };
        let _ = KEPT.try_with(|slot| slot.set(Some(kept)));
    }
}

/// What a local scope leaves to the next one built on the same thread: its queue, the spare
/// waker made for it, and its buffer of tasks to poll. A request handler builds a scope per
/// request; reusing them saves it three allocations.
struct Kept {
    queue: Arc<Queue>,
    spare: Option<TaskWaker>,
    pending: Vec<(usize, u64)>,
}

thread_local! {
    static KEPT: std::cell::Cell<Option<Kept>> = const { std::cell::Cell::new(None) };
}

/// The most rounds (body, then tasks) one poll of a local scope makes before it lets the runtime
/// run other work.
const MAX_ROUNDS: u32 = 64;

/// What the wakers of a local scope's future and of its tasks share with that future.
#[derive(Default)]
struct Queue {
    /// Tasks woken since the scope's future last polled its tasks: place in the set and number
    /// (a place is reused; the number tells a stale wake-up from one for the task there now).
    ready: Mutex<Vec<(usize, u64)>>,
    /// `ready` may hold something: the scope's future looks only then.
    has_ready: AtomicBool,
    /// Something was woken since the current round began.
    woken: AtomicBool,
    /// The scope's future is being polled: a wake-up only marks another round.
    polling: AtomicBool,
    /// The waker of the task that polls the scope's future.
    outer: Mutex<Option<Waker>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    /// Back to a new queue's state, keeping the buffer.
    fn reset(&self) {
        lock(&self.ready).clear();
        self.has_ready.store(false, Ordering::Relaxed);
        self.woken.store(false, Ordering::Relaxed);
        self.polling.store(false, Ordering::Relaxed);
        *lock(&self.outer) = None;
    }

    fn begin(&self, outer: &Waker) {
        let mut slot = lock(&self.outer);
        if !slot.as_ref().is_some_and(|w| w.will_wake(outer)) {
            *slot = Some(outer.clone());
        }
        drop(slot);
        self.polling.store(true, Ordering::SeqCst);
    }

    /// The poll is ending; false if something was woken meanwhile (poll again instead).
    fn end(&self) -> bool {
        self.polling.store(false, Ordering::SeqCst);
        !self.woken.load(Ordering::SeqCst)
    }

    /// Marks another round, and wakes the scope's future unless it is being polled.
    fn wake(&self) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            let outer = lock(&self.outer).clone();
            if let Some(outer) = outer {
                outer.wake();
            }
        }
    }

    /// Asks for the task numbered `id` at place `at` to be polled.
    fn push(&self, at: usize, id: u64) {
        lock(&self.ready).push((at, id));
        self.has_ready.store(true, Ordering::Release);
        self.wake();
    }
}

impl std::task::Wake for Queue {
    fn wake(self: Arc<Self>) {
        Queue::wake(&self);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        Queue::wake(self);
    }
}

/// The waker of one local task: its place and number in the set, and the scope's queue.
///
/// A task gets one only when it first returns `Pending` having kept its waker: every task is
/// first polled with the set's spare waker, which the task keeps if it cloned it. A task that
/// ends while nothing else holds its waker gives it back as the spare.
struct TaskWake {
    at: AtomicUsize,
    id: AtomicU64,
    /// In the queue already: a second wake-up before the poll adds nothing.
    queued: AtomicBool,
    queue: Arc<Queue>,
}

impl std::task::Wake for TaskWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let (at, id) = (
                self.at.load(Ordering::Acquire),
                self.id.load(Ordering::Acquire),
            );
            self.queue.push(at, id);
        }
    }
}

/// A [`TaskWake`] and the waker made of it (which holds the second count of the `Arc`).
struct TaskWaker {
    wake: Arc<TaskWake>,
    waker: Waker,
}

impl TaskWaker {
    fn new(queue: &Arc<Queue>) -> TaskWaker {
        let wake = Arc::new(TaskWake {
            at: AtomicUsize::new(0),
            id: AtomicU64::new(0),
            queued: AtomicBool::new(false),
            queue: Arc::clone(queue),
        });
        TaskWaker {
            waker: Waker::from(Arc::clone(&wake)),
            wake,
        }
    }

    /// True when nothing but this holds the waker.
    fn unshared(&self) -> bool {
        Arc::strong_count(&self.wake) == 2
    }

    fn assign(&self, at: usize, id: u64) {
        self.wake.at.store(at, Ordering::Release);
        self.wake.id.store(id, Ordering::Release);
        self.wake.queued.store(false, Ordering::Release);
    }
}

/// A task in a local scope's set. Field order is drop order: the task goes before its permit.
struct Node<E> {
    entry: E,
    id: u64,
    /// The task's own waker, once it kept one.
    waker: Option<TaskWaker>,
    /// The concurrency permit the scope's future took for a queued task.
    _permit: Option<OwnedSemaphorePermit>,
    /// Waiting for a permit: polled only once it has one (or is cancelled).
    queued: bool,
}

/// A place in a local scope's set: a task, or free (with the next free place, if any).
enum Place<E> {
    Task(Node<E>),
    Free(Option<usize>),
}

/// The tasks of a local scope: a slab of boxed futures, polled when spawned and when woken.
struct TaskSet<E> {
    places: Vec<Place<E>>,
    /// The first free place.
    free: Option<usize>,
    /// Tasks to poll at the next pass (spawned ones), and the buffer of each pass.
    pending: Vec<(usize, u64)>,
    /// Places of tasks waiting for a concurrency permit, in spawn order.
    queued: VecDeque<usize>,
    /// Tasks in the set.
    len: usize,
    /// The waker a task is polled with until it keeps one.
    spare: Option<TaskWaker>,
    /// Waits for the scope's limit on behalf of every queued task, once one could not take a
    /// permit at once.
    limit: Option<PollSemaphore>,
}

impl<E> Default for TaskSet<E> {
    fn default() -> Self {
        TaskSet {
            places: Vec::new(),
            free: None,
            pending: Vec::new(),
            queued: VecDeque::new(),
            len: 0,
            spare: None,
            limit: None,
        }
    }
}

impl<E: Future<Output = ()> + Unpin> TaskSet<E> {
    /// Adds a task numbered `id`; `queued` when it waits for a permit. Returns its place.
    fn insert(&mut self, entry: E, id: u64, queued: bool) -> usize {
        let node = Place::Task(Node {
            entry,
            id,
            waker: None,
            _permit: None,
            queued,
        });
        let at = match self.free {
            Some(at) => {
                if let Place::Free(next) = std::mem::replace(&mut self.places[at], node) {
                    self.free = next;
                }
                at
            }
            None => {
                self.places.push(node);
                self.places.len() - 1
            }
        };
        self.len += 1;
        if queued {
            self.queued.push_back(at);
        } else {
            self.pending.push((at, id));
        }
        at
    }

    /// Polls every task spawned or woken since the last pass, and those that get a permit
    /// meanwhile.
    fn pass(&mut self, queue: &Arc<Queue>, limit: Option<&Arc<Semaphore>>, cx: &mut Context<'_>) {
        let mut batch = std::mem::take(&mut self.pending);
        if queue.has_ready.load(Ordering::Acquire) {
            // Cleared before the queue is read: a task woken after this is seen next time.
            queue.has_ready.store(false, Ordering::Release);
            batch.append(&mut lock(&queue.ready));
        }
        loop {
            if let Some(limit) = limit {
                self.grant(limit, cx, &mut batch);
            }
            if batch.is_empty() {
                break;
            }
            for (at, id) in batch.drain(..) {
                self.poll_at(at, id, queue);
            }
        }
        self.pending = batch;
    }

    /// Takes permits for queued tasks while there are any, in spawn order, and adds the tasks
    /// that got one to `batch`.
    fn grant(
        &mut self,
        limit: &Arc<Semaphore>,
        cx: &mut Context<'_>,
        batch: &mut Vec<(usize, u64)>,
    ) {
        while let Some(&at) = self.queued.front() {
            let permit = match Arc::clone(limit).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(TryAcquireError::NoPermits) => {
                    let waiter = self
                        .limit
                        .get_or_insert_with(|| PollSemaphore::new(Arc::clone(limit)));
                    match waiter.poll_acquire(cx) {
                        Poll::Ready(permit) => permit,
                        Poll::Pending => return,
                    }
                }
                // The limit is never closed; were it, the task would run without a permit.
                Err(TryAcquireError::Closed) => None,
            };
            self.queued.pop_front();
            if let Some(Place::Task(node)) = self.places.get_mut(at) {
                node._permit = permit;
                node.queued = false;
                batch.push((at, node.id));
            }
        }
    }

    /// Polls the task at `at` if it is the one numbered `id`.
    fn poll_at(&mut self, at: usize, id: u64, queue: &Arc<Queue>) {
        let Some(Place::Task(node)) = self.places.get_mut(at) else {
            return;
        };
        if node.id != id {
            return;
        }
        if node.queued {
            // Only a cancelled task is asked for before it has a permit: it ends at this poll
            // without running (its entry sees the cancellation first).
            node.queued = false;
            self.queued.retain(|&queued| queued != at);
        }
        let ready = match &node.waker {
            Some(own) => {
                own.wake.queued.store(false, Ordering::Release);
                Pin::new(&mut node.entry)
                    .poll(&mut Context::from_waker(&own.waker))
                    .is_ready()
            }
            None => {
                let spare = self.spare.get_or_insert_with(|| TaskWaker::new(queue));
                spare.assign(at, node.id);
                let ready = Pin::new(&mut node.entry)
                    .poll(&mut Context::from_waker(&spare.waker))
                    .is_ready();
                if !ready && !spare.unshared() {
                    node.waker = self.spare.take();
                }
                ready
            }
        };
        if ready {
            let place = std::mem::replace(&mut self.places[at], Place::Free(self.free));
            self.free = Some(at);
            self.len -= 1;
            if let Place::Task(Node {
                waker: Some(waker), ..
            }) = place
                && self.spare.is_none()
                && waker.unshared()
            {
                self.spare = Some(waker);
            }
        }
    }

    /// Ends every task left in a cancelled scope: one last poll, in which each ends itself
    /// with the scope's reason (reported like a spawned task's), then drops them.
    fn end_all(&mut self, cx: &mut Context<'_>) {
        for place in &mut self.places {
            if let Place::Task(node) = place {
                let _ = Pin::new(&mut node.entry).poll(cx);
            }
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.places.clear();
        self.free = None;
        self.pending.clear();
        self.queued.clear();
        self.len = 0;
    }
}

/// Where a local task leaves its outcome for its handle.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    /// Set by [`LocalTask::cancel`].
    cancel: AtomicBool,
}

struct SlotState<T> {
    outcome: Option<Result<T, Error>>,
    /// The handle's waker, while it waits.
    handle: Option<Waker>,
}

impl<T> Slot<T> {
    fn fill(&self, outcome: Result<T, Error>) {
        let waker = {
            let mut state = lock(&self.state);
            state.outcome = Some(outcome);
            state.handle.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pin_project! {
    /// A local task as its scope's future holds it: the task's future and its handle's slot.
    /// Not a public API.
    ///
    /// # Cancel safety
    /// Dropping it drops the task where it stands; its handle then resolves to
    /// [`Error::Cancelled`].
    #[doc(hidden)]
    pub struct Entry<B, T> {
        #[pin]
        task: Option<TaskFuture<B, ()>>,
        slot: Arc<Slot<T>>,
    }
}

impl<B, T> Future for Entry<B, T>
where
    B: Future<Output = Result<T, Error>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(task) = this.task.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        if this.slot.cancel.load(Ordering::Acquire) {
            // Dropping the task reports it cancelled, as an aborted spawned task is.
            this.task.set(None);
            this.slot.fill(Err(Error::cancelled("task cancelled")));
            return Poll::Ready(());
        }
        let outcome = std::task::ready!(task.poll(cx));
        this.task.set(None);
        this.slot.fill(outcome);
        Poll::Ready(())
    }
}

/// The handle of a task of a [`LocalScope`]; it cannot outlive the scope's body.
///
/// Awaiting it gives the Go-style tuple `(Option<Error>, Option<T>)`;
/// [`result`](LocalTask::result) gives a `Result`. Dropping the handle does not cancel the task:
/// the scope owns it. Like [`Task`](crate::Task) it is `Unpin`, and polling it by reference
/// keeps its outcome until it completes.
///
/// `K` is the scope's kind: a handle of a [`Scope::local`] scope is `Send` when its value is
/// (it may be held across an await in a body that must be `Send`); one of a
/// [`Scope::local_unsend`] scope, `LocalTask<'_, T, AnyTasks>`, is not.
///
/// Awaiting a task that has not ended first lets the scope poll the tasks spawned (or woken)
/// since it last did, this one included: a task that is ready at once is done by the time the
/// await looks, without a second poll of the body.
///
/// # Cancel safety
/// Awaiting `&mut task` is cancel safe: the outcome is taken only by the poll that returns it.
/// Awaiting the handle itself (or [`result`](LocalTask::result)) moves it; dropping that
/// future loses the outcome, though the task runs on, owned by its scope.
pub struct LocalTask<'scope, T, K: LocalKind = SendTasks> {
    /// The task's slot, or the error it was refused with (`None` once taken).
    slot: Result<Arc<Slot<T>>, Option<Error>>,
    index: u64,
    name: Option<Cow<'static, str>>,
    /// The task's scope and its place in the scope's set (`None` for a refused task): where
    /// [`LocalTask::cancel`] asks for the task to be polled, and where the first await runs it.
    node: Option<(K::Reach<'scope>, usize)>,
    /// A poll has asked the scope to poll its tasks (see [`Runner::run`]).
    ran: bool,
}

impl<T, K: LocalKind> std::fmt::Debug for LocalTask<'_, T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTask")
            .field("id", &self.index)
            .field("name", &self.name())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T, K: LocalKind> LocalTask<'_, T, K> {
    /// A task that never ran: it resolves to `error`.
    pub(crate) fn rejected(error: Error, index: u64, name: Option<Cow<'static, str>>) -> Self {
        LocalTask {
            slot: Err(Some(error)),
            index,
            name,
            node: None,
            ran: true,
        }
    }

    /// The task's 1-based number in its scope, in spawn order; 0 for a task refused at spawn.
    pub fn id(&self) -> u64 {
        self.index
    }

    /// The task's name: `task-<id>`.
    pub fn name(&self) -> Cow<'_, str> {
        display_name(self.name.as_deref(), self.index)
    }

    /// True once the task has ended (or was never run).
    pub fn is_finished(&self) -> bool {
        match &self.slot {
            Ok(slot) => lock(&slot.state).outcome.is_some() || Arc::strong_count(slot) == 1,
            Err(_) => true,
        }
    }

    /// Cancels this task only: it is dropped at the scope's next poll and resolves to
    /// [`Error::Cancelled`] with the reason `"task cancelled"`.
    pub fn cancel(&self) {
        if let (Ok(slot), Some((scope, at))) = (&self.slot, self.node) {
            slot.cancel.store(true, Ordering::Release);
            K::runner(scope).push(at, self.index);
        }
    }

    /// Waits for the task and returns its outcome as a `Result`.
    ///
    /// # Cancel safety
    /// Dropping the future loses the outcome (the handle was moved into it); the task itself
    /// runs on, owned by its scope.
    ///
    /// # Errors
    /// The task's failure: cancelled, timed out with its scope, panicked, refused, or its own
    /// error in [`Error::Failed`].
    pub async fn result(self) -> Result<T, Error> {
        into_result(self.await)
    }
}

impl<T, K: LocalKind> Future for LocalTask<'_, T, K> {
    type Output = Outcome<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let this = &mut *self;
        let result = match &mut this.slot {
            Ok(slot) => {
                let mut state = lock(&slot.state);
                if state.outcome.is_none()
                    && !this.ran
                    && let Some((scope, _)) = this.node
                {
                    // Not ended yet at the first await: let the scope poll its new tasks now
                    // rather than after this poll of the body, which then needs no second one
                    // when they end at once.
                    this.ran = true;
                    drop(state);
                    K::runner(scope).run(cx);
                    state = lock(&slot.state);
                }
                match state.outcome.take() {
                    Some(result) => result,
                    // The scope's future dropped the task without an outcome.
                    None if Arc::strong_count(slot) == 1 => Err(Error::cancelled("task cancelled")),
                    None => {
                        if !state
                            .handle
                            .as_ref()
                            .is_some_and(|w| w.will_wake(cx.waker()))
                        {
                            state.handle = Some(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                }
            }
            Err(error) => Err(error
                .take()
                .unwrap_or_else(|| Error::cancelled("task outcome already taken"))),
        };
        self.slot = Err(None);
        Poll::Ready(into_outcome(result))
    }
}
