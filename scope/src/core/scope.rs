//! [`Scope`]: the handle users hold — the owner of a group of tasks, their cancellation and
//! their resources. Its state and close protocol are in `shared`, its builder in `builder`.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::core::context::{self, Ambient};
use crate::core::error::{BoxError, Error};
use crate::core::observer::Features;
use crate::core::resources::DisposeResult;
use crate::core::task::{Fallible, Plain, Task, TaskSpec, spawn_body};
use crate::util::sync::lock;

pub use super::builder::ScopeBuilder;
pub use super::shared::unclosed_drops;
pub(crate) use super::shared::{BodyEnd, LimitSnapshot, Queued, Shared, WaitGuard};

/// Counts blocking code as one of its scope's live tasks until dropped.
struct BlockingGuard(Arc<Shared>);

impl Drop for BlockingGuard {
    fn drop(&mut self) {
        self.0.task_exited();
    }
}
use super::shared::{Cause, CloseOnDrop, Report, Watched};

/// A handle to a scope: a group of tasks that is cancelled as one and ends as one.
///
/// Every task spawned into a scope is owned by it: [`close`](Scope::close) cancels what is
/// still running, waits until all of it (and every child scope) has ended, then runs the
/// registered disposers last-first. Handles are cheap to clone; all clones refer to the same
/// scope.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = Scope::builder().name("api").timeout(Duration::from_secs(5)).build().unwrap();
/// let answer = scope.spawn(async { 42 });
/// let forever = scope.spawn(std::future::pending::<()>());
/// let (err, value) = answer.await;
/// assert!(err.is_none() && value == Some(42));
/// scope.close().await.unwrap();                 // cancels `forever` and waits for it
/// assert!(forever.await.0.unwrap().is_cancelled());
/// # }
/// ```
pub struct Scope {
    shared: Arc<Shared>,
}

impl Clone for Scope {
    fn clone(&self) -> Scope {
        self.shared.life.handle_cloned();
        Scope {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.shared.life.handle_dropped() {
            self.shared.dropped_unclosed();
        }
    }
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .field("cancelled", &self.shared.is_cancelled())
            .field("closed", &!self.shared.is_open())
            .field("live_tasks", &self.shared.live_tasks())
            .finish()
    }
}

impl Scope {
    /// The scope's state, for the crate's helpers that run work on the scope's behalf.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn cancel_error(&self) -> Error {
        self.shared.cancel_error()
    }

    /// The first handle of a scope just built (its lifecycle counts it already).
    pub(super) fn from_new(shared: Arc<Shared>) -> Scope {
        Scope { shared }
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Scope {
        shared.life.handle_cloned();
        Scope { shared }
    }

    /// Starts configuring a scope.
    pub fn builder() -> ScopeBuilder {
        ScopeBuilder::default()
    }

    /// A scope with default options (its parent is the ambient scope, if any).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// assert_eq!(scope.name(), "scope");
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`ScopeBuilder::build`]: [`Error::NoRuntime`] outside a Tokio runtime, and
    /// [`Error::Closed`] when the ambient scope (the parent) is already closing.
    pub fn new() -> Result<Scope, Error> {
        ScopeBuilder::default().build()
    }

    /// Runs `body` in a new scope and always closes the scope afterwards.
    ///
    /// The body is the ambient scope's code: [`Scope::current`] and `go!` inside it (and inside
    /// every task it spawns) refer to this scope. If the scope is cancelled or times out before
    /// the body finishes, the body is dropped and the result is the cancellation's error. When
    /// the body ends, outstanding tasks are cancelled (or awaited, with
    /// [`ScopeBuilder::wait`]) and disposers run before `run` returns.
    ///
    /// A disposer that fails does not change the result: the body's value is what was asked
    /// for; the failure is reported to the `on_dispose` hook, the metrics and a `warn` event.
    /// Call [`Scope::close`] yourself when you need that error as a value.
    ///
    /// If the future returned by `run` is dropped before it completes, the scope is cancelled
    /// at once and closes in the background.
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::{Error, Scope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let sum = Scope::run(Scope::builder(), |s| async move {
    ///     let a = s.spawn(async { 1 });
    ///     let b = s.spawn(async { 2 });
    ///     a.await.1.unwrap() + b.await.1.unwrap()
    /// })
    /// .await;
    /// assert_eq!(sum.unwrap(), 3);
    ///
    /// let slow = Scope::run(Scope::builder().timeout(Duration::from_millis(10)), |_| async {
    ///     tokio::time::sleep(Duration::from_secs(3600)).await;
    /// })
    /// .await;
    /// assert!(matches!(slow, Err(Error::Timeout { .. })));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future drops the body where it stands (its value is
    /// lost) and cancels the scope with its tasks; the close, disposers included, finishes in
    /// the background, so nothing the scope owns outlives it.
    ///
    /// # Errors
    /// Building the scope fails as [`ScopeBuilder::build`] does (the body then never runs).
    /// When the scope is cancelled or times out before the body ends, the result is the
    /// cancellation's error: [`Error::Cancelled`] with its reason, or [`Error::Timeout`].
    /// Errors of the close itself (failed disposers) are not returned.
    pub async fn run<F, Fut>(builder: ScopeBuilder, body: F) -> Result<Fut::Output, Error>
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future,
    {
        Scope::run_body(builder, body, BodyEnd::OnCancel).await
    }

    /// The one run path, shared by [`Scope::run`] and `#[scoped]` fns: builds the scope, runs
    /// `body` as its ambient code inside its span, then closes (or joins) the scope, also when
    /// this future is dropped half-way.
    pub(crate) async fn run_body<F, Fut>(
        builder: ScopeBuilder,
        body: F,
        end: BodyEnd,
    ) -> Result<Fut::Output, Error>
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future,
    {
        let scope = builder.build()?;
        let guard = CloseOnDrop(Some(Arc::clone(&scope.shared)));
        let shared = Arc::clone(&scope.shared);
        let ambient = Ambient {
            scope: Arc::clone(&shared),
            task: None,
        };
        let body = Watched::new(
            shared.features().and_then(Features::watch_body),
            context::in_ambient(ambient, body(scope.clone())),
        );
        let outcome = match end {
            BodyEnd::OnCancel => tokio::select! {
                biased;
                value = body => Ok(value),
                () = shared.token().cancelled() => Err(shared.cancel_error()),
            },
            BodyEnd::Completed => Ok(body.await),
        };
        shared.end_body(outcome.is_ok(), guard).await;
        outcome
    }

    /// The ambient scope: the innermost [`Scope::run`] body or `#[scoped]` fn this code runs in,
    /// or the scope of the task running it.
    ///
    /// # Panics
    /// When called outside any scope. Use [`Scope::try_current`] to check instead.
    ///
    /// ```
    /// use go_go_scope::Scope;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// Scope::run(Scope::builder().name("outer"), |_| async {
    ///     assert_eq!(Scope::current().name(), "outer");
    /// })
    /// .await
    /// .unwrap();
    /// assert!(Scope::try_current().is_none());
    /// # }
    /// ```
    #[track_caller]
    pub fn current() -> Scope {
        match Scope::try_current() {
            Some(scope) => scope,
            None => panic!(
                "Scope::current() called outside any scope: run this code inside a #[scoped] fn, \
                 a Scope::run body or a task spawned into a scope, or pass the scope explicitly \
                 (go!(scope = s, ...))"
            ),
        }
    }

    /// The ambient scope, or `None` outside any scope.
    pub fn try_current() -> Option<Scope> {
        context::ambient_scope().map(Scope::from_shared)
    }

    /// Spawns `future` as a task of this scope; it starts running at once.
    ///
    /// The returned [`Task`] resolves to `(None, Some(value))`, or to `(Some(error), None)` if
    /// the task was cancelled, timed out or panicked. On a closed scope the task is not run and
    /// resolves to [`Error::Closed`]; on a cancelled one, to the cancellation's error.
    ///
    /// For futures that return `Result<T, E>`, [`try_spawn`](Scope::try_spawn) flattens the
    /// error into the tuple.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let (err, v) = scope.spawn(async { "hi" }).await;
    /// assert_eq!((err.is_none(), v), (true, Some("hi")));
    /// let (err, _) = scope.spawn(async { panic!("oops") }).await;
    /// assert!(err.unwrap().is_panic());
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_body(&self.shared, Plain::new(future), TaskSpec::plain())
    }

    /// Spawns a future that returns `Result<T, E>`; its `Err(e)` becomes the task's error
    /// ([`Error::Failed`], or `e` itself when `E` is [`Error`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let task = scope.try_spawn(async { "42".parse::<u32>() });
    /// assert_eq!(task.result().await.unwrap(), 42);
    /// let (err, v) = scope.try_spawn(async { "x".parse::<u32>() }).await;
    /// assert!(v.is_none());
    /// assert!(err.unwrap().downcast_ref::<std::num::ParseIntError>().is_some());
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn try_spawn<F, T, E>(&self, future: F) -> Task<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        spawn_body(&self.shared, Fallible::new(future), TaskSpec::plain())
    }

    /// Runs blocking code on Tokio's blocking thread pool as a task of this scope.
    ///
    /// Blocking code cannot be interrupted: when the scope is cancelled, the returned [`Task`]
    /// resolves to the cancellation's error at once, but the closure runs on to its end, and
    /// the scope's [`close`](Scope::close) waits for it — so nothing outlives the scope. A
    /// panic in the closure is [`Error::Panicked`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let digest = scope.spawn_blocking(|| (1..=10_u64).product::<u64>());
    /// assert_eq!(digest.await.1, Some(3_628_800));
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// Like [`spawn`](Scope::spawn), it works from any thread, also one outside the runtime
    /// (a plain `std::thread` holding a clone of the scope): the closure goes to the blocking
    /// pool of the scope's own runtime.
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> Task<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        // The closure counts as one of the scope's live tasks until it returns, so a close
        // waits for it even after the task that awaits it was cancelled.
        let blocking = match self.shared.admit() {
            Ok(_) => BlockingGuard(Arc::clone(&self.shared)),
            Err(error) => return Task::rejected(error, 0, None),
        };
        let handle = self.shared.runtime.spawn_blocking(move || {
            let _counted = blocking;
            f()
        });
        self.try_spawn(async move {
            handle.await.map_err(|error| match error.try_into_panic() {
                Ok(payload) => Error::from_panic(payload),
                Err(_) => Error::cancelled("the runtime shut down"),
            })
        })
    }

    /// Cancels outstanding tasks, waits until every task and child scope has ended, then runs
    /// the disposers last-registered-first. Idempotent: a second call (or a concurrent one)
    /// waits for the first to finish and returns `Ok(())`.
    ///
    /// Every disposer runs even when some fail; the failures come back together as
    /// [`Error::Disposal`] (and are reported to the `on_dispose` hook).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// scope.defer(|| async { Err::<(), _>("flush failed") });
    /// scope.defer(|| async {});
    /// let err = scope.close().await.unwrap_err();
    /// assert_eq!(err.to_string(), "1 disposer(s) failed while closing the scope: flush failed");
    /// assert!(scope.close().await.is_ok()); // already closed
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: a close that has anything to wait for runs on a task of its own, so dropping
    /// this future only stops waiting; the close still finishes, and a later `close()` waits
    /// for it.
    ///
    /// # Errors
    /// [`Error::Disposal`] when disposers failed (all of them still ran);
    /// [`Error::WouldDeadlock`] when called from a disposer of this very close.
    pub async fn close(&self) -> Result<(), Error> {
        self.shared.close().await
    }

    /// Waits for every task to finish on its own (no cancellation), then closes like
    /// [`close`](Scope::close). Tasks may spawn more tasks while it waits.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let done = Arc::new(AtomicBool::new(false));
    /// let flag = done.clone();
    /// scope.spawn(async move {
    ///     tokio::task::yield_now().await;
    ///     flag.store(true, Ordering::SeqCst);
    /// });
    /// scope.join().await.unwrap();
    /// assert!(done.load(Ordering::SeqCst));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future while it waits for the tasks changes nothing; once the
    /// close has begun it finishes on its own, as for [`close`](Scope::close).
    ///
    /// # Errors
    /// As [`close`](Scope::close).
    pub async fn join(&self) -> Result<(), Error> {
        self.shared.join().await
    }

    /// Cancels the scope, its tasks and its child scopes with `reason`.
    ///
    /// Tasks end at their next await point and resolve to [`Error::Cancelled`] with this
    /// reason; the `on_cancel` hook fires once. Cancelling an already cancelled scope does
    /// nothing (the first reason stays). The scope still needs [`close`](Scope::close).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let task = scope.spawn(std::future::pending::<()>());
    /// scope.cancel("shutting down");
    /// let (err, _) = task.await;
    /// assert_eq!(err.unwrap().to_string(), "cancelled: shutting down");
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn cancel(&self, reason: impl Into<Cow<'static, str>>) {
        self.shared
            .cancel_tree(&Cause::Cancelled(reason.into()), Report::Always);
    }

    /// True once the scope has been cancelled (explicitly, by its timeout, by its parent, or by
    /// closing).
    pub fn is_cancelled(&self) -> bool {
        self.shared.is_cancelled()
    }

    /// True once [`close`](Scope::close) has started; a closed scope accepts no new tasks.
    pub fn is_closed(&self) -> bool {
        !self.shared.is_open()
    }

    /// The error that tasks of this scope get because it was cancelled, if it was.
    pub fn cancellation_error(&self) -> Option<Error> {
        self.shared
            .is_cancelled()
            .then(|| self.shared.cancel_error())
    }

    /// Waits until the scope is cancelled.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn cancelled(&self) {
        self.shared.token().cancelled().await
    }

    /// A token that is cancelled when this scope is, for APIs that take a
    /// [`CancellationToken`]. Cancelling the returned token yourself does not cancel the scope;
    /// use [`Scope::cancel`] for that.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let token = scope.token();
    /// scope.cancel("stop");
    /// assert!(token.is_cancelled());
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn token(&self) -> CancellationToken {
        self.shared.token().child_token()
    }

    /// The scope's name (default `"scope"`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A process-unique number for this scope.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The parent scope, if this scope has one.
    pub fn parent(&self) -> Option<Scope> {
        self.shared.parent.clone().map(Scope::from_shared)
    }

    /// The concurrency limit, if any (inherited from the parent unless set).
    pub fn concurrency(&self) -> Option<usize> {
        self.shared.concurrency
    }

    /// The scope's own timeout, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.shared.timeout
    }

    /// Tasks spawned into this scope that have not ended yet.
    pub fn active_tasks(&self) -> usize {
        self.shared.live_tasks()
    }

    /// Disposers registered and not yet run.
    #[cfg(feature = "testing")]
    pub(crate) fn pending_disposers(&self) -> usize {
        self.shared.resources.pending_disposers()
    }

    /// Child scopes registered with this scope that have not finished closing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let parent = go_go_scope::Scope::new().unwrap();
    /// let child = parent.child().build().unwrap();
    /// assert_eq!(parent.child_scopes(), 1);
    /// child.close().await.unwrap();
    /// assert_eq!(parent.child_scopes(), 0);
    /// # parent.close().await.unwrap();
    /// # }
    /// ```
    pub fn child_scopes(&self) -> usize {
        lock(&self.shared.children).by_id.len()
    }

    /// A builder for a child scope of this one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let parent = go_go_scope::Scope::new().unwrap();
    /// let child = parent.child().name("child").build().unwrap();
    /// let task = child.spawn(std::future::pending::<()>());
    /// parent.close().await.unwrap(); // closes the child first
    /// assert!(child.is_closed());
    /// assert!(task.await.0.unwrap().is_cancelled());
    /// # }
    /// ```
    pub fn child(&self) -> ScopeBuilder {
        ScopeBuilder::default().parent(self)
    }

    /// Makes `value` available to this scope, its tasks and its child scopes, looked up by type.
    ///
    /// Providing a second value of the same type replaces the first for later lookups.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// struct Config { retries: u32 }
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// scope.provide(Config { retries: 3 });
    /// let task = scope.spawn(async { go_go_scope::Scope::current().service::<Config>().unwrap().retries });
    /// assert_eq!(task.await.1, Some(3));
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn provide<T: Send + Sync + 'static>(&self, value: T) -> &Scope {
        self.shared.resources.insert_service(Arc::new(value));
        self
    }

    /// Creates a service with an async `factory` and registers `dispose` to run when the scope
    /// closes (after every task has ended, last-registered-first).
    ///
    /// Fails with [`Error::Closed`] on a closed scope, or with the factory's error; the
    /// factory does not run on a closed scope.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    ///
    /// struct Db { closed: Arc<AtomicBool> }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let closed = Arc::new(AtomicBool::new(false));
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let flag = closed.clone();
    /// let db = scope
    ///     .provide_with(
    ///         || async move { Ok::<_, std::io::Error>(Db { closed: flag }) },
    ///         |db| async move { db.closed.store(true, Ordering::SeqCst) },
    ///     )
    ///     .await
    ///     .unwrap();
    /// assert!(scope.use_::<Db>().is_ok());
    /// drop(db);
    /// scope.close().await.unwrap();
    /// assert!(closed.load(Ordering::SeqCst));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future while the factory runs drops the factory's future: no service is
    /// provided and no disposer is registered, so `dispose` never runs (whatever the factory
    /// had set up is dropped with its future). Once the factory has finished there is no
    /// further await: the service and its disposer are registered together.
    ///
    /// # Errors
    /// [`Error::Closed`] when the scope is closed (or closing) at the call; the factory's own
    /// error otherwise, as [`Error::Failed`] (or itself, when the factory returns [`Error`]).
    pub async fn provide_with<T, E, F, Fut, D, DFut>(
        &self,
        factory: F,
        dispose: D,
    ) -> Result<Arc<T>, Error>
    where
        T: Send + Sync + 'static,
        E: Into<BoxError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        D: FnOnce(Arc<T>) -> DFut + Send + 'static,
        DFut: Future + Send + 'static,
        DFut::Output: DisposeResult,
    {
        if !self.shared.is_open() {
            return Err(Error::Closed);
        }
        let value = Arc::new(factory().await.map_err(Error::from_task_error)?);
        self.shared.resources.insert_service(Arc::clone(&value));
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let service = Arc::clone(&value);
        self.register_disposer(move || async move {
            if let Some(shared) = weak.upgrade() {
                shared.resources.remove_service_if(&service);
            }
            dispose(service).await.into_dispose_result()
        });
        Ok(value)
    }

    /// Registers `cleanup` to run when the scope closes, after every task has ended, in
    /// last-registered-first order with the other disposers. Like Go's `defer`, for the scope.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// let order = Arc::new(Mutex::new(Vec::new()));
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// for name in ["first", "second", "third"] {
    ///     let order = order.clone();
    ///     scope.defer(move || async move { order.lock().unwrap().push(name) });
    /// }
    /// scope.close().await.unwrap();
    /// assert_eq!(*order.lock().unwrap(), ["third", "second", "first"]);
    /// # }
    /// ```
    pub fn defer<F, Fut>(&self, cleanup: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: DisposeResult,
    {
        self.register_disposer(move || async move { cleanup().await.into_dispose_result() });
    }

    /// Like [`defer`](Scope::defer), for a helper the scope owns (a channel, a pool, a
    /// poller): dropping the returned handle, when the helper itself is dropped, withdraws the
    /// cleanup if it has not run, so a long-lived scope does not keep one registration per
    /// helper it ever made. `None` when the scope had already disposed everything (the cleanup
    /// then runs at once).
    pub(crate) fn defer_owned<F, Fut>(&self, cleanup: F) -> Option<DisposerHandle>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let id = self.register_disposer(move || async move {
            cleanup().await;
            Ok(())
        })?;
        Some(DisposerHandle {
            scope: Arc::downgrade(&self.shared),
            id,
        })
    }

    fn register_disposer<F, Fut>(&self, f: F) -> Option<u64>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        if let Some(features) = self.shared.features() {
            features.resource_registered();
        }
        match self.shared.resources.push_disposer(f) {
            Ok(id) => Some(id),
            Err(late) => {
                self.run_late_disposer(late);
                None
            }
        }
    }

    fn run_late_disposer(&self, late: crate::core::resources::LateDisposer) {
        // The scope already disposed everything: run this one now rather than never.
        tracing::warn!(
            scope = ?self.shared.name,
            "a disposer was registered after the scope closed; it runs immediately"
        );
        let shared = Arc::clone(&self.shared);
        drop(self.shared.runtime.spawn(async move {
            let result = late.run().await;
            if let Err(error) = &result {
                tracing::warn!(
                    error = crate::util::log::LoggedError::of(error).field(),
                    "a late disposer failed"
                );
            }
            if let Some(features) = shared.features() {
                features.resource_disposed(1, result.as_ref().err());
            }
        }));
    }

    /// The service of type `T` from this scope or the nearest ancestor that provides one.
    pub fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.shared.service::<T>()
    }

    /// Like [`service`](Scope::service), but a missing service is an
    /// [`Error::ServiceNotFound`] naming the type, and a closed scope is [`Error::Closed`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let err = scope.use_::<String>().unwrap_err();
    /// assert!(err.to_string().contains("alloc::string::String"));
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`] once the scope is closed (or closing); [`Error::ServiceNotFound`]
    /// when neither this scope nor an ancestor provides a `T`.
    pub fn use_<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, Error> {
        if !self.shared.is_open() {
            return Err(Error::Closed);
        }
        self.service::<T>().ok_or(Error::ServiceNotFound {
            type_name: std::any::type_name::<T>(),
        })
    }
}

/// Waits until the ambient scope is cancelled. Outside any scope nothing can cancel it, so it
/// never completes there.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// let task = scope.spawn(async {
///     go_go_scope::cancelled().await;
///     "saw the cancellation"
/// });
/// scope.cancel("bye");
/// // The task body was dropped at its await point, so it resolves to the cancellation.
/// assert!(task.await.0.unwrap().is_cancelled());
/// scope.close().await.unwrap();
/// # }
/// ```
///
/// # Cancel safety
/// Cancel safe: it only waits.
pub async fn cancelled() {
    match context::with_ambient(|ambient| ambient.scope.token().clone()) {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// A helper's cleanup registered with [`Scope::defer_owned`]; dropping it withdraws the
/// cleanup if the scope has not run it yet (observers see a withdrawn resource).
pub(crate) struct DisposerHandle {
    scope: Weak<Shared>,
    id: u64,
}

impl Drop for DisposerHandle {
    fn drop(&mut self) {
        if let Some(shared) = self.scope.upgrade()
            && shared.resources.withdraw(self.id)
            && let Some(features) = shared.features()
        {
            features.resource_withdrawn();
        }
    }
}
