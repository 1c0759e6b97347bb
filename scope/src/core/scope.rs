//! [`Scope`]: the owner of a group of tasks, their cancellation, and their resources.
//!
//! Ownership, in one place:
//! - a scope's state lives in one `Shared` behind an `Arc`; user handles ([`Scope`]) and the
//!   scope's running tasks both point at it;
//! - user handles are counted separately: when the last one goes away while the scope is open,
//!   the scope cancels its tasks and closes itself on the runtime (running tasks do not count as
//!   handles, so a forgotten scope cannot keep its own tasks alive);
//! - the scope's `CancellationToken` is a child of its parent's, so one `cancel()` wakes a whole
//!   subtree; the reason is written into every scope of the subtree before the token fires;
//! - a child scope is registered with its parent until it has closed, so closing the parent
//!   closes (cancels, awaits, disposes) the child first.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::core::context::{self, Ambient};
use crate::core::error::{BoxError, Error, TimeoutOrigin};
use crate::core::lifecycle::{Admission, Lifecycle};
use crate::core::resources::{DisposeResult, Resources};
use crate::core::task::{Fallible, Plain, Task, spawn_single};
use crate::observe::deadlock::{Detector, WaitingTask};
use crate::observe::hooks::Hooks;
use crate::observe::metrics::{MetricsCollector, ScopeMetrics};
use crate::observe::profiler::{ProfileReport, Profiler};
use crate::resilience::circuit_breaker::CircuitBreaker;
use crate::resilience::retry::Retry;
use crate::util::sync::lock;

static NEXT_SCOPE_ID: AtomicU64 = AtomicU64::new(1);
static UNCLOSED_DROPS: AtomicU64 = AtomicU64::new(0);

/// How many scopes in this process were dropped without being closed (each was cancelled and
/// closed in the background, and logged at `warn`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let before = go_go_scope::unclosed_drops();
/// drop(go_go_scope::Scope::new().unwrap());
/// assert_eq!(go_go_scope::unclosed_drops(), before + 1);
/// # }
/// ```
pub fn unclosed_drops() -> u64 {
    UNCLOSED_DROPS.load(Ordering::Relaxed)
}

/// Why a scope was cancelled. Written once, before the token fires.
#[derive(Clone, Debug)]
pub(crate) enum Cause {
    Cancelled(Cow<'static, str>),
    Timeout {
        after: Duration,
        scope: Cow<'static, str>,
    },
}

impl Cause {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Cause::Cancelled(reason) => Error::Cancelled {
                reason: reason.clone(),
            },
            Cause::Timeout { after, scope } => Error::Timeout {
                after: *after,
                scope_or_task: TimeoutOrigin::Scope(scope.clone()),
            },
        }
    }
}

/// Whether a cancellation reports itself through `on_cancel` even when nothing was running.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    Always,
    IfBusy,
}

pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) name: Cow<'static, str>,
    /// Created on first use: most short scopes never need one (see `Shared::token`).
    token: OnceLock<CancellationToken>,
    cause: OnceLock<Cause>,
    life: Lifecycle,
    idle: Notify,
    closed: Notify,
    parent: Option<Arc<Shared>>,
    children: Mutex<Children>,
    next_index: AtomicU64,
    /// Tasks waiting for a concurrency permit (see [`Queued`]).
    waiting: AtomicUsize,
    pub(crate) resources: Resources,
    pub(crate) hooks: Option<Hooks>,
    pub(crate) metrics: Option<MetricsCollector>,
    pub(crate) limit: Option<Arc<Semaphore>>,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) default_retry: Option<Retry>,
    concurrency: Option<usize>,
    timeout: Option<Duration>,
    wait_on_exit: bool,
    /// Whether tasks measure their durations (someone reads them).
    pub(crate) timed: bool,
    pub(crate) detector: Option<Arc<Detector>>,
    pub(crate) profiler: Option<Profiler>,
    /// The scope's span (see `crate::observe::trace`).
    pub(crate) trace: crate::observe::trace::ScopeTrace,
    created: Option<Instant>,
    lifetime: OnceLock<Duration>,
    /// The timeout timer and the deadlock watchdog; both end when the token fires.
    background: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) runtime: Handle,
}

#[derive(Default)]
struct Children {
    by_id: std::collections::HashMap<u64, Arc<Shared>>,
}

/// The state of a scope's concurrency limit as a task found it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LimitSnapshot {
    pub(crate) available: usize,
    pub(crate) waiting: usize,
}

/// Counts a task as waiting for a concurrency permit while it exists. Only scopes whose task
/// spans are recorded count (the spans are what report it), so others pay nothing.
pub(crate) struct Queued(Option<Arc<Shared>>);

impl Queued {
    pub(crate) fn new(shared: &Arc<Shared>) -> Queued {
        if !shared.trace.records() {
            return Queued(None);
        }
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        Queued(Some(Arc::clone(shared)))
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(shared) = &self.0 {
            shared.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Shared {
    pub(crate) fn is_open(&self) -> bool {
        self.life.is_open()
    }

    /// True once cancelled, or once closing started (a close cancels whatever is left).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cause.get().is_some() || !self.is_open()
    }

    /// The error a task of this scope resolves to once the scope is cancelled.
    pub(crate) fn cancel_error(&self) -> Error {
        match self.cause.get() {
            Some(cause) => cause.to_error(),
            None => Error::cancelled("scope closed"),
        }
    }

    /// The scope's token, created on first use as a child of the parent's.
    ///
    /// Creating it races with `cancel_tree` setting the cause; each side writes its own cell,
    /// issues a `SeqCst` fence, then reads the other's, so at least one of them sees both and
    /// cancels the token.
    pub(crate) fn token(&self) -> &CancellationToken {
        if let Some(token) = self.token.get() {
            return token;
        }
        let token = self.token.get_or_init(|| match &self.parent {
            Some(parent) => parent.token().child_token(),
            None => CancellationToken::new(),
        });
        fence(Ordering::SeqCst);
        if self.is_cancelled() {
            token.cancel();
        }
        token
    }

    /// Wakes everything waiting on the token, if anything ever asked for one.
    fn fire_token(&self) {
        fence(Ordering::SeqCst);
        if let Some(token) = self.token.get() {
            token.cancel();
        }
    }

    /// Admits one task, or says why not.
    pub(crate) fn admit(&self) -> Result<u64, Error> {
        if let Admission::Refused { wake_idle } = self.life.admit() {
            if wake_idle {
                self.idle.notify_waiters();
            }
            return Err(Error::Closed);
        }
        if let Some(cause) = self.cause.get() {
            self.task_exited();
            return Err(cause.to_error());
        }
        Ok(self.next_index.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// A task's future has been dropped.
    pub(crate) fn task_exited(&self) {
        if self.life.exit() {
            self.idle.notify_waiters();
        }
    }

    /// Free permits and tasks waiting for one, when the scope has a limit and its task spans
    /// are recorded (they report it); read before a new task takes its permit.
    pub(crate) fn limit_snapshot(&self) -> Option<LimitSnapshot> {
        let semaphore = self.limit.as_ref().filter(|_| self.trace.records())?;
        Some(LimitSnapshot {
            available: semaphore.available_permits(),
            waiting: self.waiting.load(Ordering::Relaxed),
        })
    }

    pub(crate) fn live_tasks(&self) -> usize {
        self.life.live()
    }

    async fn wait_idle(&self) {
        self.life.watch_idle();
        loop {
            // Created before the check, so a wake-up between the check and the await is kept.
            let notified = self.idle.notified();
            if self.life.live() == 0 {
                break;
            }
            notified.await;
        }
        self.life.unwatch_idle();
    }

    /// Cancels this scope and its subtree with `cause`, unless already cancelled. Reasons are
    /// written top-down before any token fires, so whoever wakes finds a reason.
    fn cancel_tree(self: &Arc<Self>, cause: &Cause, report: Report) -> bool {
        if self.cause.set(cause.clone()).is_err() {
            return false;
        }
        let children: Vec<Arc<Shared>> = lock(&self.children).by_id.values().cloned().collect();
        let busy = !children.is_empty() || self.live_tasks() > 0;
        for child in &children {
            child.cancel_tree(cause, report);
        }
        self.fire_token();
        if report == Report::Always || busy {
            tracing::debug!(scope = %self.name, reason = %cause.to_error(), "scope cancelled");
            if let Some(hooks) = &self.hooks {
                hooks.call_on_cancel(&cause.to_error());
            }
        }
        true
    }

    /// Cancels outstanding work, waits for it (children first), disposes resources LIFO.
    /// Idempotent: later callers wait for the first close to finish and get `Ok`.
    pub(crate) async fn close(self: &Arc<Self>) -> Result<(), Error> {
        if !self.life.begin_close() {
            self.wait_closed().await;
            return Ok(());
        }
        self.close_begun().await
    }

    /// [`Shared::close`] behind a named, boxed type: closing a scope closes its children, and
    /// the recursion needs a type the compiler can see is `Send`.
    fn close_boxed(
        self: Arc<Self>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> {
        Box::pin(async move { self.close().await })
    }

    /// Cancels with `cause` at once and closes in the background: for drops, which cannot
    /// await. Returns false when a close had already begun.
    fn close_in_background(self: &Arc<Self>, cause: Cause) -> bool {
        if !self.life.begin_close() {
            return false;
        }
        self.cancel_tree(&cause, Report::IfBusy);
        let shared = Arc::clone(self);
        // If the runtime is already shutting down the close cannot run; the disposers are then
        // dropped without being awaited.
        drop(self.runtime.spawn(async move {
            let _ = shared.close_begun().await;
        }));
        true
    }

    /// The rest of a close, once this caller won `begin_close`.
    async fn close_begun(self: &Arc<Self>) -> Result<(), Error> {
        let quiet = self.live_tasks() == 0
            && self.timeout.is_none()
            && self.detector.is_none()
            && lock(&self.children).by_id.is_empty()
            && self.resources.seal_if_empty();
        if quiet {
            // Nothing to cancel, wait for or dispose: wake whoever holds the token, if anyone.
            self.fire_token();
            self.end_close(Ok(()))
        } else {
            // Waiting for tasks and children and running disposers takes awaits, and whoever
            // awaits this close may stop waiting (its future dropped, or it is a task of this
            // very scope being cancelled). The close must finish anyway, or the scope would stay
            // "closing" forever: it runs on a task of its own, and the caller awaits its end.
            // The cancellation happens here, before anything else runs, so that it sees (and
            // reports) the tasks it cancels.
            self.cancel_tree(
                &Cause::Cancelled(Cow::Borrowed("scope closed")),
                Report::IfBusy,
            );
            self.fire_token();
            let shared = Arc::clone(self);
            let closing = self.runtime.spawn(async move {
                let result = shared.close_busy().await;
                shared.end_close(result)
            });
            match closing.await {
                Ok(result) => result,
                Err(error) if error.is_panic() => Err(Error::from_panic(error.into_panic())),
                Err(_) => Err(Error::cancelled(
                    "the runtime shut down while the scope was closing",
                )),
            }
        }
    }

    /// Ends the scope's span, marks it closed and wakes the waiters.
    fn end_close(&self, result: Result<(), Error>) -> Result<(), Error> {
        let cancelled_by = self.cause.get().map(Cause::to_error);
        self.trace
            .close(cancelled_by.as_ref(), result.as_ref().err());
        self.finish_close();
        result
    }

    async fn close_busy(self: &Arc<Self>) -> Result<(), Error> {
        let children: Vec<Arc<Shared>> = lock(&self.children)
            .by_id
            .drain()
            .map(|(_, child)| child)
            .collect();
        for child in children {
            // A child's disposal failures are reported by the child itself.
            let _ = child.close_boxed().await;
        }
        self.wait_idle().await;
        let background = std::mem::take(&mut *lock(&self.background));
        for handle in background {
            let _ = handle.await;
        }
        self.resources
            .dispose_all(&self.name, self.hooks.as_ref(), self.metrics.as_ref())
            .await
    }

    fn finish_close(&self) {
        self.resources.clear_services();
        if let Some(created) = self.created {
            let lifetime = created.elapsed();
            let _ = self.lifetime.set(lifetime);
            if let Some(metrics) = &self.metrics {
                metrics.scope_closed(lifetime);
            }
        }
        if let Some(parent) = &self.parent {
            lock(&parent.children).by_id.remove(&self.id);
        }
        if self.life.finish_close() {
            self.closed.notify_waiters();
        }
    }

    async fn wait_closed(&self) {
        self.life.watch_close();
        loop {
            let notified = self.closed.notified();
            if self.life.is_closed() {
                break;
            }
            notified.await;
        }
        self.life.unwatch_close();
    }

    /// Waits for every task to end on its own, then closes.
    async fn join(self: &Arc<Self>) -> Result<(), Error> {
        if self.is_open() {
            self.wait_idle().await;
        }
        self.close().await
    }

    /// The last handle went away while the scope was open.
    fn dropped_unclosed(self: &Arc<Self>) {
        if !self.is_open() {
            // Closed (the usual case) or closing: nothing to do.
            return;
        }
        let live_tasks = self.live_tasks();
        if self.close_in_background(Cause::Cancelled(Cow::Borrowed(
            "scope dropped without close",
        ))) {
            UNCLOSED_DROPS.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                scope = %self.name,
                live_tasks,
                "scope dropped without close(): its tasks are cancelled and it closes in the \
                 background; call close().await or use Scope::run / #[scoped] to end it \
                 deterministically"
            );
        }
    }

    pub(crate) fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let mut scope = Some(self);
        while let Some(s) = scope {
            if let Some(found) = s.resources.service::<T>() {
                return Some(found);
            }
            scope = s.parent.as_deref();
        }
        None
    }
}

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
    pub async fn run<F, Fut>(builder: ScopeBuilder, body: F) -> Result<Fut::Output, Error>
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
        let body = shared
            .trace
            .instrument(context::enter(ambient, body(scope.clone())));
        let outcome = tokio::select! {
            biased;
            value = body => Ok(value),
            () = shared.token().cancelled() => Err(shared.cancel_error()),
        };
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
    pub fn spawn<F>(&self, future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_single(&self.shared, Plain::new(future))
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
    pub fn try_spawn<F, T, E>(&self, future: F) -> Task<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        spawn_single(&self.shared, Fallible::new(future))
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
    /// Fails with [`Error::Closed`] on a closed scope, or with the factory's error.
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

    fn register_disposer<F, Fut>(&self, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        if let Some(metrics) = &self.shared.metrics {
            metrics.resource_registered();
        }
        if let Err(late) = self.shared.resources.push_disposer(f) {
            // The scope already disposed everything: run this one now rather than never.
            tracing::warn!(
                scope = %self.shared.name,
                "a disposer was registered after the scope closed; it runs immediately"
            );
            let hooks = self.shared.hooks.clone();
            drop(self.shared.runtime.spawn(async move {
                if let Err(error) = late.run().await {
                    tracing::warn!(%error, "a late disposer failed");
                    if let Some(hooks) = hooks {
                        hooks.call_on_dispose(1, Some(&error));
                    }
                }
            }));
        }
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
    pub fn use_<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, Error> {
        if !self.shared.is_open() {
            return Err(Error::Closed);
        }
        self.service::<T>().ok_or(Error::ServiceNotFound {
            type_name: std::any::type_name::<T>(),
        })
    }

    /// The profile of this scope's tasks, or `None` unless it was built with
    /// [`profiler(true)`](ScopeBuilder::profiler).
    pub fn profile_report(&self) -> Option<ProfileReport> {
        self.shared.profiler.as_ref().map(Profiler::report)
    }

    /// Forgets the profiles recorded so far (no effect without a profiler).
    pub fn clear_profile(&self) {
        if let Some(profiler) = &self.shared.profiler {
            profiler.clear();
        }
    }

    /// A snapshot of the scope's metrics, or `None` unless it was built with
    /// [`metrics(true)`](ScopeBuilder::metrics).
    pub fn metrics(&self) -> Option<ScopeMetrics> {
        self.shared.metrics_snapshot()
    }
}

impl Shared {
    pub(crate) fn metrics_snapshot(&self) -> Option<ScopeMetrics> {
        let collector = self.metrics.as_ref()?;
        Some(collector.snapshot(&self.name, self.lifetime.get().copied()))
    }
}

/// Cancels and closes the scope in the background if `Scope::run` is dropped mid-way.
pub(crate) struct CloseOnDrop(Option<Arc<Shared>>);

impl CloseOnDrop {
    pub(crate) fn new(shared: Arc<Shared>) -> CloseOnDrop {
        CloseOnDrop(Some(shared))
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.close_in_background(Cause::Cancelled(Cow::Borrowed(
                "the scope's future was dropped",
            )));
        }
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
pub async fn cancelled() {
    match context::with_ambient(|ambient| ambient.scope.token().clone()) {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Which parent a new scope gets.
#[derive(Default)]
enum ParentChoice {
    #[default]
    Ambient,
    Explicit(Scope),
    Detached,
}

/// Configures and builds a [`Scope`]; see [`Scope::builder`].
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::{Hooks, Scope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = Scope::builder()
///     .name("checkout")
///     .timeout(Duration::from_secs(30))
///     .concurrency(4)
///     .metrics(true)
///     .hooks(Hooks::new().on_cancel(|reason| eprintln!("cancelled: {reason}")))
///     .build()
///     .unwrap();
/// assert_eq!(scope.concurrency(), Some(4));
/// scope.close().await.unwrap();
///
/// let err = Scope::builder().concurrency(0).build().unwrap_err();
/// assert!(err.to_string().contains("concurrency"));
/// # }
/// ```
#[derive(Default)]
#[must_use = "a builder does nothing until .build() or Scope::run"]
pub struct ScopeBuilder {
    name: Option<Cow<'static, str>>,
    timeout: Option<Duration>,
    concurrency: Option<usize>,
    parent: ParentChoice,
    metrics: bool,
    wait: bool,
    profiler: bool,
    /// The less common options, boxed: a builder is moved by every call, and short-lived
    /// scopes (one per request) mostly set none of these.
    extras: Option<Box<Extras>>,
}

#[derive(Default)]
pub(crate) struct Extras {
    hooks: Option<Hooks>,
    deadlock: Option<(Duration, Arc<DeadlockCallback>)>,
    breaker: Option<CircuitBreaker>,
    retry: Option<Retry>,
    /// Tracer and span attributes (set in `crate::observe::trace`).
    pub(crate) trace: crate::observe::trace::TraceOptions,
}

type DeadlockCallback = dyn Fn(&[WaitingTask]) + Send + Sync;

impl std::fmt::Debug for ScopeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("metrics", &self.metrics)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl ScopeBuilder {
    pub(crate) fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// The scope's name, used for its span, its metrics label and its errors. Default `"scope"`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Cancels the scope (with [`Error::Timeout`]) once `after` has elapsed since it was built.
    /// Must be greater than zero.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// At most `limit` tasks of this scope run at once; the others wait for a permit (their
    /// wait is not counted in their duration). Must be between 1 and
    /// [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS). Child scopes get their own
    /// limit of the same size unless they set one.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// Makes the scope a child of `parent`: cancelled with it, closed before it, and seeing its
    /// services. Without this call the parent is the ambient scope, if there is one.
    pub fn parent(mut self, parent: &Scope) -> Self {
        self.parent = ParentChoice::Explicit(parent.clone());
        self
    }

    /// Makes the scope a root even when built inside another scope's code.
    pub fn detached(mut self) -> Self {
        self.parent = ParentChoice::Detached;
        self
    }

    /// Sends every task of this scope (and of its child scopes, unless they set their own)
    /// through `breaker`; see [`CircuitBreaker`].
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.extras().breaker = Some(breaker);
        self
    }

    /// The retry policy of tasks built with [`Scope::task`] that set none themselves.
    pub fn retry(mut self, retry: impl Into<Retry>) -> Self {
        self.extras().retry = Some(retry.into());
        self
    }

    /// Records where each task's time goes; read it with [`Scope::profile_report`].
    pub fn profiler(mut self, enabled: bool) -> Self {
        self.profiler = enabled;
        self
    }

    /// Lifecycle callbacks; see [`Hooks`].
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.extras().hooks = Some(hooks);
        self
    }

    /// Adds the crate's own task observer (used by the testing scope) beside the user's hooks.
    #[cfg(feature = "testing")]
    pub(crate) fn observe(
        mut self,
        observer: Arc<dyn crate::observe::hooks::TaskObserver>,
    ) -> Self {
        self.extras()
            .hooks
            .get_or_insert_with(Hooks::default)
            .observer = Some(observer);
        self
    }

    /// Collects [`ScopeMetrics`] for this scope. Off by default; when off, tasks do no metrics
    /// work at all.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// Reports tasks that wait longer than `threshold` on a concurrency permit, a channel or a
    /// pool: a watchdog checks every `min(threshold / 2, 5 s)` and, while any task has waited
    /// longer than `threshold`, calls `on_deadlock` with all of them (see [`WaitingTask`]).
    /// `threshold` must be greater than zero.
    pub fn deadlock_detection(
        mut self,
        threshold: Duration,
        on_deadlock: impl Fn(&[WaitingTask]) + Send + Sync + 'static,
    ) -> Self {
        self.extras().deadlock = Some((threshold, Arc::new(on_deadlock)));
        self
    }

    /// For [`Scope::run`]: when the body ends, wait for outstanding tasks to finish instead of
    /// cancelling them.
    pub fn wait(mut self, enabled: bool) -> Self {
        self.wait = enabled;
        self
    }

    /// Runs `body` in the scope this builder describes; see [`Scope::run`].
    pub async fn run<F, Fut>(self, body: F) -> Result<Fut::Output, Error>
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future,
    {
        Scope::run(self, body).await
    }

    /// Builds the scope. Fails on invalid options, outside a Tokio runtime, or when the parent
    /// is already closed.
    pub fn build(self) -> Result<Scope, Error> {
        let Extras {
            hooks,
            deadlock,
            breaker,
            retry,
            trace: trace_options,
        } = self.extras.map(|extras| *extras).unwrap_or_default();
        if let Some(limit) = self.concurrency
            && !(1..=Semaphore::MAX_PERMITS).contains(&limit)
        {
            return Err(Error::invalid(
                "concurrency",
                format!(
                    "must be between 1 and {} (got {limit}); leave it unset for no limit",
                    Semaphore::MAX_PERMITS
                ),
            ));
        }
        if deadlock.as_ref().is_some_and(|(t, _)| t.is_zero()) {
            return Err(Error::invalid(
                "deadlock_detection",
                "the threshold must be greater than zero",
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::invalid(
                "timeout",
                "must be greater than zero; leave it unset for no deadline",
            ));
        }
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let explicit_parent = matches!(self.parent, ParentChoice::Explicit(_));
        let parent = match self.parent {
            ParentChoice::Ambient => context::ambient_scope(),
            ParentChoice::Explicit(scope) => Some(Arc::clone(&scope.shared)),
            ParentChoice::Detached => None,
        };
        let concurrency = self
            .concurrency
            .or_else(|| parent.as_ref().and_then(|p| p.concurrency));
        let breaker = breaker.or_else(|| parent.as_ref().and_then(|p| p.breaker.clone()));
        let hooks = hooks.filter(|h| !h.is_empty());
        let custom_name = self.name.is_some();
        let name = self.name.unwrap_or(Cow::Borrowed("scope"));
        let metrics = self.metrics.then(|| MetricsCollector::new(&name));
        let trace = crate::observe::trace::ScopeTrace::start(
            trace_options,
            crate::observe::trace::ScopeSpanInfo {
                name: &name,
                custom_name,
                timeout: self.timeout,
                concurrency_option: self.concurrency,
                concurrency,
                parent: parent.as_ref().map(|p| &p.trace),
                explicit_parent,
            },
        );
        // Clocks are read in the task path only when something reports durations.
        let timed = metrics.is_some()
            || self.profiler
            || trace.records()
            || hooks.as_ref().is_some_and(|h| h.after_task.is_some());
        let shared = Arc::new(Shared {
            id: NEXT_SCOPE_ID.fetch_add(1, Ordering::Relaxed),
            name,
            token: OnceLock::new(),
            cause: OnceLock::new(),
            life: Lifecycle::new(),
            idle: Notify::new(),
            closed: Notify::new(),
            parent,
            children: Mutex::new(Children::default()),
            next_index: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            resources: Resources::default(),
            hooks,
            metrics,
            limit: concurrency.map(|n| Arc::new(Semaphore::new(n))),
            breaker,
            default_retry: retry,
            concurrency,
            timeout: self.timeout,
            wait_on_exit: self.wait,
            timed,
            detector: deadlock
                .map(|(threshold, callback)| Arc::new(Detector::new(threshold, callback))),
            profiler: self.profiler.then(Profiler::default),
            trace,
            created: timed.then(Instant::now),
            lifetime: OnceLock::new(),
            background: Mutex::new(Vec::new()),
            runtime,
        });
        if let Some(parent) = &shared.parent {
            let mut children = lock(&parent.children);
            if !parent.is_open() {
                return Err(Error::Closed);
            }
            children.by_id.insert(shared.id, Arc::clone(&shared));
            drop(children);
            if let Some(cause) = parent.cause.get() {
                shared.cancel_tree(cause, Report::IfBusy);
            }
        }
        if let Some(after) = shared.timeout {
            let weak = Arc::downgrade(&shared);
            let token = shared.token().clone();
            let timer = shared.runtime.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(after) => {
                        if let Some(shared) = weak.upgrade() {
                            let scope = shared.name.clone();
                            shared.cancel_tree(&Cause::Timeout { after, scope }, Report::Always);
                        }
                    }
                    () = token.cancelled() => {}
                }
            });
            lock(&shared.background).push(timer);
        }
        if let Some(detector) = &shared.detector {
            let watchdog = Arc::clone(detector).watch(shared.token().clone());
            let handle = shared.runtime.spawn(watchdog);
            lock(&shared.background).push(handle);
        }
        Ok(Scope { shared })
    }
}
