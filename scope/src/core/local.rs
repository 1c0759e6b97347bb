//! Local scopes: tasks that run inside the scope's own future instead of on Tokio's workers.
//!
//! [`Scope::local`] builds an ordinary scope (its `Shared`: token, deadline, limit, features)
//! and keeps it as a local variable of its own `async fn`, so the body it calls may borrow it:
//! an `async fn`'s future may point into itself, which is what lets tasks borrow without any
//! `unsafe`. The future then polls the body and a `FuturesUnordered` of the scope's tasks
//! together. Each task is the same `TaskFuture` a spawned task runs in (admission, observers,
//! permit, panic containment, record), built by `task::prepare`; only where it is polled
//! differs.
//!
//! Cancellation is watched once for the whole scope: when the scope is cancelled, every task
//! left is polled one last time (it ends itself with the scope's reason, as a spawned task
//! does) and dropped.

use std::borrow::Cow;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use pin_project_lite::pin_project;

use crate::core::context::{self, Ambient};
use crate::core::error::{BoxError, Error, Outcome, into_outcome, into_result};
use crate::core::observer::Features;
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
}

impl LocalKind for AnyTasks {
    type Entry<'env> = Pin<Box<dyn Future<Output = ()> + 'env>>;
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
    fn hold(entry: Entry<B, T>) -> Self::Entry<'env>;
}

impl<'env, B, T> Holds<'env, B, T> for SendTasks
where
    B: Future<Output = Result<T, Error>> + Send + 'env,
    T: Send + 'env,
{
    fn hold(entry: Entry<B, T>) -> Self::Entry<'env> {
        Box::pin(entry)
    }
}

impl<'env, B, T> Holds<'env, B, T> for AnyTasks
where
    B: Future<Output = Result<T, Error>> + 'env,
    T: 'env,
{
    fn hold(entry: Entry<B, T>) -> Self::Entry<'env> {
        Box::pin(entry)
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
    tasks: Mutex<FuturesUnordered<K::Entry<'env>>>,
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
        Scope::local_until(builder, body, BodyEnd::OnCancel).await
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
        Scope::local_unsend_until(builder, body, BodyEnd::OnCancel).await
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
    /// scope's future next polls its tasks, which is as soon as the body awaits.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> LocalTask<'_, F::Output>
    where
        F: Future + Send + 'env,
        F::Output: Send + 'env,
    {
        self.start(Plain::new(future), TaskSpec::plain(), |entry| {
            Box::pin(entry)
        })
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
        self.start(Fallible::new(future), TaskSpec::plain(), |entry| {
            Box::pin(entry)
        })
    }
}

impl<'env> LocalScope<'env, AnyTasks> {
    /// Starts `future` as a task of this scope. It may borrow anything that outlives the scope
    /// and need not be `Send`. Otherwise as [`LocalScope::spawn`] of a `Send` local scope.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> LocalTask<'_, F::Output>
    where
        F: Future + 'env,
        F::Output: 'env,
    {
        self.start(Plain::new(future), TaskSpec::plain(), |entry| {
            Box::pin(entry)
        })
    }

    /// Starts a future that returns `Result<T, E>`; its `Err(e)` becomes the task's error.
    #[track_caller]
    pub fn try_spawn<F, T, E>(&self, future: F) -> LocalTask<'_, T>
    where
        F: Future<Output = Result<T, E>> + 'env,
        T: 'env,
        E: Into<BoxError> + 'static,
    {
        self.start(Fallible::new(future), TaskSpec::plain(), |entry| {
            Box::pin(entry)
        })
    }
}

impl<'env, K: LocalKind> LocalScope<'env, K> {
    /// The scope behind this local scope, for features that read it (the live tree).
    pub(crate) fn inner(&self) -> &Scope {
        &self.scope
    }

    fn new(builder: ScopeBuilder) -> Result<Self, Error> {
        Ok(LocalScope {
            scope: builder.build()?,
            tasks: Mutex::new(FuturesUnordered::new()),
        })
    }

    /// Admits a task through the same path as a spawned one and queues it for the scope's
    /// future. `#[track_caller]`, so that the live tree shows where the task was spawned.
    #[track_caller]
    pub(crate) fn start<B, T>(
        &self,
        body: B,
        spec: TaskSpec,
        boxed: impl FnOnce(Entry<B, T>) -> K::Entry<'env>,
    ) -> LocalTask<'_, T>
    where
        B: Future<Output = Result<T, Error>>,
    {
        let (future, index, name) = match prepare(self.scope.shared(), body, spec, true) {
            Ok(Prepared {
                future,
                index,
                name,
            }) => (future, index, name),
            Err((error, index, name)) => return LocalTask::rejected(error, index, name),
        };
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                outcome: None,
                handle: None,
                task: None,
            }),
            cancel: AtomicBool::new(false),
        });
        let entry = boxed(Entry {
            task: Some(future),
            slot: Arc::clone(&slot),
        });
        // Polled by the scope's future right after this poll of the body.
        lock(&self.tasks).push(entry);
        LocalTask {
            slot: Ok(slot),
            index,
            name,
            _scope: PhantomData,
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
        // The body and the tasks are polled with the scope's own waker: a wake-up that happens
        // while they are being polled (a task ending wakes the body awaiting it) only marks
        // another round of this poll, instead of rescheduling the whole future on the runtime.
        let wake = Arc::new(DriverWake {
            woken: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            outer: Mutex::new(None),
        });
        let waker = Waker::from(Arc::clone(&wake));
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
                    while let Poll::Ready(Some(())) = tasks.poll_next_unpin(cx) {}
                    let cancelled_now = shared.is_cancelled();
                    if cancelled_now {
                        end_all(&mut tasks, cx);
                        if output.is_some() || end == BodyEnd::OnCancel {
                            wake.end();
                            return Poll::Ready(match output.take() {
                                Some(value) => Ok(value),
                                None => Err(shared.cancel_error()),
                            });
                        }
                        // The body runs to its end; what it spawns from now on is refused.
                    }
                    let drained = tasks.is_empty();
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
        if !lock(&self.tasks).is_empty() {
            // The body is done and the rest is not awaited: it is cancelled, as a closing scope
            // cancels its spawned tasks.
            shared.cancel_tree(
                &Cause::Cancelled(Cow::Borrowed("scope closed")),
                Report::IfBusy,
            );
            poll_fn(|cx| {
                end_all(&mut lock(&self.tasks), cx);
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
        let shared = Arc::clone(self.scope.shared());
        let closed = if shared.wait_on_exit && outcome.is_ok() {
            shared.join().await
        } else {
            shared.close().await
        };
        // Disposal failures were reported by `close`; the body's outcome is the answer.
        drop(closed);
        guard.disarm();
        outcome
    }
}

/// The most rounds (body, then tasks) one poll of a local scope makes before it lets the runtime
/// run other work.
const MAX_ROUNDS: u32 = 64;

/// The waker a local scope polls its body and tasks with (see `LocalScope::drive`).
struct DriverWake {
    /// Something was woken since the current round began.
    woken: AtomicBool,
    /// The scope's future is being polled: a wake-up only marks another round.
    polling: AtomicBool,
    /// The waker of the task that polls the scope's future.
    outer: Mutex<Option<Waker>>,
}

impl DriverWake {
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
}

impl std::task::Wake for DriverWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            let outer = lock(&self.outer).clone();
            if let Some(outer) = outer {
                outer.wake();
            }
        }
    }
}

/// Ends every task left in a cancelled scope: one last poll, in which each ends itself with the
/// scope's reason (reported like a spawned task's), then drops them.
fn end_all<E: Future<Output = ()> + Unpin>(tasks: &mut FuturesUnordered<E>, cx: &mut Context<'_>) {
    for task in tasks.iter_mut() {
        let _ = Pin::new(task).poll(cx);
    }
    tasks.clear();
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
    /// The task's waker, for [`LocalTask::cancel`].
    task: Option<Waker>,
}

impl<T> Slot<T> {
    fn fill(&self, outcome: Result<T, Error>) {
        let waker = {
            let mut state = lock(&self.state);
            state.outcome = Some(outcome);
            state.task = None;
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
        task: Option<TaskFuture<B>>,
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
        match task.poll(cx) {
            Poll::Ready(outcome) => {
                this.task.set(None);
                this.slot.fill(outcome);
                Poll::Ready(())
            }
            Poll::Pending => {
                let mut state = lock(&this.slot.state);
                if !state.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    state.task = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The handle of a task of a [`LocalScope`]; it cannot outlive the scope's body.
///
/// Awaiting it gives the Go-style tuple `(Option<Error>, Option<T>)`;
/// [`result`](LocalTask::result) gives a `Result`. Dropping the handle does not cancel the task:
/// the scope owns it. Like [`Task`](crate::Task) it is `Unpin`, and polling it by reference
/// keeps its outcome until it completes.
///
/// # Cancel safety
/// Awaiting `&mut task` is cancel safe: the outcome is taken only by the poll that returns it.
/// Awaiting the handle itself (or [`result`](LocalTask::result)) moves it; dropping that
/// future loses the outcome, though the task runs on, owned by its scope.
pub struct LocalTask<'scope, T> {
    /// The task's slot, or the error it was refused with (`None` once taken).
    slot: Result<Arc<Slot<T>>, Option<Error>>,
    index: u64,
    name: Option<Cow<'static, str>>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> std::fmt::Debug for LocalTask<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTask")
            .field("id", &self.index)
            .field("name", &self.name())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> LocalTask<'_, T> {
    /// A task that never ran: it resolves to `error`.
    pub(crate) fn rejected(error: Error, index: u64, name: Option<Cow<'static, str>>) -> Self {
        LocalTask {
            slot: Err(Some(error)),
            index,
            name,
            _scope: PhantomData,
        }
    }

    /// The task's 1-based number in its scope, in spawn order; 0 for a task refused at spawn.
    pub fn id(&self) -> u64 {
        self.index
    }

    /// The task's name: `task-<id>`.
    pub fn name(&self) -> Cow<'_, str> {
        match &self.name {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("task-{}", self.index)),
        }
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
        if let Ok(slot) = &self.slot {
            slot.cancel.store(true, Ordering::Release);
            let waker = lock(&slot.state).task.take();
            if let Some(waker) = waker {
                waker.wake();
            }
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

impl<T> Future for LocalTask<'_, T> {
    type Output = Outcome<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let result = match &mut self.slot {
            Ok(slot) => {
                let mut state = lock(&slot.state);
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
