//! [`TaskBuilder`]: a task with options — a name, a per-attempt timeout, retries, a cleanup —
//! and the attempt loop that runs it.
//!
//! Order of a task's stages, each attempt: stop if the scope was cancelled → wait for a
//! concurrency permit (released again during retry delays, so other tasks run meanwhile) → ask
//! the circuit breaker → make the attempt and run it under its timeout (a panic in either is a
//! failed attempt) → report the outcome to the breaker → on failure, retry per the policy,
//! after its delay or, with none, after giving the runtime back once the task's cooperative
//! budget is spent.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::core::error::{BoxError, Error, TimeoutOrigin};
use crate::core::local::{AnyTasks, LocalKind, LocalScope, LocalTask, SendTasks};
use crate::core::observer::TaskDetails;
use crate::core::resources::DisposeResult;
use crate::core::scope::{Queued, Scope, Shared};
use crate::core::task::{Refused, Task, TaskSpec, spawn_body};
use crate::observe::deadlock::begin_wait;
use crate::observe::profiler::Profiler;
use crate::observe::trace::{AttrValue, Attrs};
use crate::resilience::circuit_breaker::CircuitBreaker;
use crate::resilience::retry::Retry;
use crate::util::sync::lock;

mod sealed {
    pub trait Sealed {}
}

/// Where a task's attempts come from: a factory called once per attempt, or a single future.
///
/// Implemented by [`Factory`] and [`SingleAttempt`]; not implementable outside this crate. A
/// spawned task's attempts must be `Send + 'static`; a local scope's may borrow (and, in a
/// [`Scope::local_unsend`] scope, need not be `Send`).
pub trait Attempts: sealed::Sealed {
    /// The task's value.
    type Output;
    /// The attempt's own error type.
    type Error: Into<BoxError> + 'static;
    /// One attempt.
    type Future: Future<Output = Result<Self::Output, Self::Error>>;

    /// Produces attempt number `attempt` (1-based), or `None` if no more can be made.
    fn next_attempt(&mut self, attempt: u32) -> Option<Self::Future>;

    /// Whether a failed attempt can be made again. A scope's default retry applies only to
    /// tasks whose attempts can be repeated.
    fn repeatable(&self) -> bool {
        true
    }
}

/// Attempts made by calling a closure, once per attempt; see [`Scope::task`].
pub struct Factory<F>(F);

/// A single attempt from a future that already exists; see [`Scope::task_once`].
pub struct SingleAttempt<Fut>(Option<Fut>);

impl<F> std::fmt::Debug for Factory<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factory").finish_non_exhaustive()
    }
}

impl<Fut> std::fmt::Debug for SingleAttempt<Fut> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleAttempt")
            .field("taken", &self.0.is_none())
            .finish()
    }
}

impl<F> sealed::Sealed for Factory<F> {}
impl<Fut> sealed::Sealed for SingleAttempt<Fut> {}

impl<F, Fut, T, E> Attempts for Factory<F>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
{
    type Output = T;
    type Error = E;
    type Future = Fut;

    fn next_attempt(&mut self, attempt: u32) -> Option<Fut> {
        Some((self.0)(attempt))
    }
}

impl<Fut, T, E> Attempts for SingleAttempt<Fut>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
{
    type Output = T;
    type Error = E;
    type Future = Fut;

    fn next_attempt(&mut self, _attempt: u32) -> Option<Fut> {
        self.0.take()
    }

    fn repeatable(&self) -> bool {
        false
    }
}

type Cleanup = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> + Send>;

/// Configures one task before spawning it; see [`Scope::task`] and [`Scope::task_once`], and
/// [`LocalScope::task`] for a local scope's tasks (whose builder's `G` is [`LocalTarget`]).
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::{Retry, Scope};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let scope = Scope::new().unwrap();
/// let task = scope
///     .task(|attempt| async move {
///         if attempt < 3 { Err(format!("attempt {attempt} failed")) } else { Ok("third time lucky") }
///     })
///     .name("flaky-call")
///     .timeout(Duration::from_secs(2))
///     .retry(Retry::exponential(5, Duration::from_millis(100)))
///     .spawn();
/// assert_eq!(task.name(), "flaky-call");
/// assert_eq!(task.result().await.unwrap(), "third time lucky");
/// scope.close().await.unwrap();
/// # }
/// ```
#[must_use = "a task builder does nothing until .spawn()"]
pub struct TaskBuilder<S, G = Spawned> {
    shared: Arc<Shared>,
    target: G,
    attempts: S,
    name: Option<Cow<'static, str>>,
    timeout: Option<Duration>,
    retry: Option<Retry>,
    cleanup: Option<Cleanup>,
    attrs: Attrs,
}

/// Where a [`TaskBuilder`] puts its task: a Tokio task of a [`Scope`].
#[derive(Debug)]
pub struct Spawned(());

/// Where a [`TaskBuilder`] puts its task: a task of a [`LocalScope`], which may borrow.
pub struct LocalTarget<'a, 'env, K: LocalKind>(&'a LocalScope<'env, K>);

impl<K: LocalKind> fmt::Debug for LocalTarget<'_, '_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LocalTarget").field(self.0).finish()
    }
}

impl<S, G> fmt::Debug for TaskBuilder<S, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("cleanup", &self.cleanup.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, G> TaskBuilder<S, G> {
    /// The task's name, used by hooks, spans, metrics and errors (default `task-<n>`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Bounds each attempt: when `after` elapses the attempt's future is dropped and the attempt
    /// fails with [`Error::Timeout`] (which is retried like any error). The scope's own timeout
    /// still bounds the whole task; whichever is earlier fires. Must be greater than zero.
    ///
    /// On a Tokio runtime built without timers (`enable_time`) the attempt ends as
    /// [`Error::Panicked`] with Tokio's own message, which names the fix.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Adds an attribute to the task's span (see [`crate::observe::trace`]).
    pub fn attr(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<AttrValue>) -> Self {
        self.attrs.push((key.into(), value.into()));
        self
    }

    /// Adds several attributes to the task's span.
    pub fn attrs<K, V>(mut self, attrs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<Cow<'static, str>>,
        V: Into<AttrValue>,
    {
        self.attrs
            .extend(attrs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Registers `cleanup` to run when the scope closes (with the scope's other disposers,
    /// last-registered-first), not when the task ends.
    pub fn on_cleanup<F, Fut>(mut self, cleanup: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: DisposeResult,
    {
        self.cleanup = Some(Box::new(move || {
            Box::pin(async move { cleanup().await.into_dispose_result() })
        }));
        self
    }
}

impl<F, G> TaskBuilder<Factory<F>, G> {
    /// Retries failed attempts: a number of retries (`3`), or a [`Retry`] policy. Without this
    /// call the scope's default retry applies, if it has one.
    ///
    /// `retry(u32::MAX)` retries for as long as the scope lives: even attempts that fail at once
    /// with no delay between them let the other tasks run, and stop at the scope's deadline,
    /// [`Scope::cancel`] or [`Scope::close`].
    ///
    /// A delay between attempts is a Tokio timer: on a runtime built without timers
    /// (`enable_time`) the task ends with [`Error::InvalidOption`] (`retry`) when the first
    /// delay would begin.
    pub fn retry(mut self, retry: impl Into<Retry>) -> Self {
        self.retry = Some(retry.into());
        self
    }

    /// Retries only the errors for which `predicate` is true (applies to the task's retry
    /// policy, or to the scope's default one).
    pub fn retry_if(mut self, predicate: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.retry = Some(self.policy().retry_if(predicate));
        self
    }

    /// Called before each retry with the error and the 1-based retry number.
    pub fn on_retry(mut self, callback: impl Fn(&Error, u32) + Send + Sync + 'static) -> Self {
        self.retry = Some(self.policy().on_retry(callback));
        self
    }

    fn policy(&mut self) -> Retry {
        self.retry
            .take()
            .or_else(|| self.shared.feature::<Retry>().map(|r| (*r).clone()))
            .unwrap_or_else(|| Retry::new(0))
    }
}

impl<S, G> TaskBuilder<S, G> {
    /// The builder's target, and its options apart from it.
    fn detach(self) -> (G, TaskBuilder<S, ()>) {
        let TaskBuilder {
            shared,
            target,
            attempts,
            name,
            timeout,
            retry,
            cleanup,
            attrs,
        } = self;
        let options = TaskBuilder {
            shared,
            target: (),
            attempts,
            name,
            timeout,
            retry,
            cleanup,
            attrs,
        };
        (target, options)
    }
}

impl<S: Attempts> TaskBuilder<S, ()> {
    /// Everything but the spawning itself, shared by every kind of scope: the options'
    /// check, the cleanup, the retry policy, the first permit, and the attempt loop. (Without
    /// the target, so that the loop's future borrows nothing of it.)
    fn plan(self) -> Result<(impl Future<Output = Result<S::Output, Error>>, TaskSpec), Refused> {
        if self.timeout == Some(Duration::ZERO) {
            return Err((
                Error::invalid(
                    "timeout",
                    "must be greater than zero; leave it unset for none",
                ),
                0,
                self.name,
            ));
        }
        if let Some(cleanup) = self.cleanup {
            Scope::from_shared(Arc::clone(&self.shared)).defer(cleanup);
        }
        // A single future cannot be re-run: retrying it under the scope's default policy would
        // replace its real error with a complaint about the missing factory.
        let retry = self.retry.or_else(|| {
            self.attempts
                .repeatable()
                .then(|| self.shared.feature::<Retry>().map(|r| (*r).clone()))
                .flatten()
        });
        let run = Arc::new(TaskRun {
            timeout: self.timeout,
            retry,
            name: self.name.clone(),
            stages: self
                .shared
                .feature::<Profiler>()
                .is_some()
                .then(Mutex::default),
            attrs: self.attrs,
            ..TaskRun::default()
        });
        // The first permit is taken now if one is free, like a plain spawn does, so tasks get
        // permits in spawn order.
        let limit_before = self.shared.limit_snapshot();
        let start = match &self.shared.limit {
            None => Start::Free,
            Some(semaphore) => match Arc::clone(semaphore).try_acquire_owned() {
                Ok(permit) => Start::Permit(permit),
                // Waiting from now on, for whoever counts the scope's waiting tasks.
                Err(_) => Start::Waiting(Queued::new(&self.shared)),
            },
        };
        let breaker = self.shared.feature::<CircuitBreaker>();
        let body = run_attempts(
            Arc::clone(&self.shared),
            self.attempts,
            Arc::clone(&run),
            breaker,
            start,
        );
        let spec = TaskSpec {
            name: self.name,
            runs_attempts: true,
            details: Some(run),
            limit_before,
        };
        Ok((body, spec))
    }
}

impl<S> TaskBuilder<S, Spawned>
where
    S: Attempts + Send + 'static,
    S::Future: Send + 'static,
    S::Output: Send + 'static,
{
    /// Spawns the task; it starts at once. Invalid options (a zero timeout) make the task fail
    /// with [`Error::InvalidOption`] without running.
    #[track_caller]
    pub fn spawn(self) -> Task<S::Output> {
        let shared = Arc::clone(&self.shared);
        match self.detach().1.plan() {
            Ok((body, spec)) => spawn_body(&shared, body, spec),
            Err((error, index, name)) => Task::rejected(error, index, name),
        }
    }
}

impl<'a, 'env, S, K> TaskBuilder<S, LocalTarget<'a, 'env, K>>
where
    S: Attempts,
    K: StartsBuilt<'env, S>,
{
    /// Starts the task in its local scope; it first runs when the scope's future next polls
    /// its tasks. Invalid options (a zero timeout) make the task fail with
    /// [`Error::InvalidOption`] without running.
    #[track_caller]
    pub fn spawn(self) -> LocalTask<'a, S::Output, K> {
        let (LocalTarget(scope), options) = self.detach();
        K::start_built(scope, options)
    }
}

/// The built tasks a local scope of kind `K` takes: `Send` ones for [`SendTasks`], any for
/// [`AnyTasks`]. Not a public API.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this task cannot run in a local scope whose tasks must be `Send`",
    label = "the task's factory, its futures or its value are not `Send`",
    note = "build the scope with `Scope::local_unsend` (or `#[scoped(local(unsend))]`) to run tasks that are not `Send`"
)]
pub trait StartsBuilt<'env, S: Attempts>: LocalKind + Sized {
    /// Starts the built task in `scope`.
    #[track_caller]
    fn start_built<'a>(
        scope: &'a LocalScope<'env, Self>,
        options: TaskBuilder<S, ()>,
    ) -> LocalTask<'a, S::Output, Self>;
}

impl<'env, S> StartsBuilt<'env, S> for SendTasks
where
    S: Attempts + Send + 'env,
    S::Future: Send,
    S::Output: Send + 'env,
{
    #[track_caller]
    fn start_built<'a>(
        scope: &'a LocalScope<'env, Self>,
        options: TaskBuilder<S, ()>,
    ) -> LocalTask<'a, S::Output, Self> {
        match options.plan() {
            Ok((body, spec)) => scope.start(body, spec),
            Err((error, index, name)) => LocalTask::rejected(error, index, name),
        }
    }
}

impl<'env, S> StartsBuilt<'env, S> for AnyTasks
where
    S: Attempts + 'env,
    S::Output: 'env,
{
    #[track_caller]
    fn start_built<'a>(
        scope: &'a LocalScope<'env, Self>,
        options: TaskBuilder<S, ()>,
    ) -> LocalTask<'a, S::Output, Self> {
        match options.plan() {
            Ok((body, spec)) => scope.start(body, spec),
            Err((error, index, name)) => LocalTask::rejected(error, index, name),
        }
    }
}

impl<'env> LocalScope<'env, SendTasks> {
    /// Starts building a task whose attempts come from `factory`, as [`Scope::task`]; the
    /// factory and its futures may borrow anything that outlives the scope, and must be
    /// `Send`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::{Retry, Scope};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let replies = vec![Err("busy"), Err("busy"), Ok("done")];
    /// let replies = &replies; // the factory copies the reference into each attempt
    /// let reply = Scope::local(Scope::builder(), |s| Box::pin(async {
    ///     s.task(move |attempt| async move { replies[attempt as usize - 1] })
    ///         .name("flaky")
    ///         .timeout(Duration::from_secs(1))
    ///         .retry(Retry::fixed(3, Duration::from_millis(10)))
    ///         .spawn()
    ///         .result()
    ///         .await
    /// }))
    /// .await
    /// .unwrap();
    /// assert_eq!(reply.unwrap(), "done");
    /// # }
    /// ```
    pub fn task<F, Fut, T, E>(
        &self,
        factory: F,
    ) -> TaskBuilder<Factory<F>, LocalTarget<'_, 'env, SendTasks>>
    where
        F: FnMut(u32) -> Fut + Send + 'env,
        Fut: Future<Output = Result<T, E>> + Send + 'env,
        T: Send + 'env,
        E: Into<BoxError> + 'static,
    {
        builder_for(self.shared(), LocalTarget(self), Factory(factory))
    }

    /// Starts building a task from a future that already exists, as [`Scope::task_once`]; it
    /// may borrow anything that outlives the scope, and must be `Send`.
    pub fn task_once<Fut, T, E>(
        &self,
        future: Fut,
    ) -> TaskBuilder<SingleAttempt<Fut>, LocalTarget<'_, 'env, SendTasks>>
    where
        Fut: Future<Output = Result<T, E>> + Send + 'env,
        T: Send + 'env,
        E: Into<BoxError> + 'static,
    {
        builder_for(
            self.shared(),
            LocalTarget(self),
            SingleAttempt(Some(future)),
        )
    }
}

impl<'env> LocalScope<'env, AnyTasks> {
    /// Starts building a task whose attempts come from `factory`, as [`Scope::task`]; the
    /// factory and its futures may borrow anything that outlives the scope, and need not be
    /// `Send`.
    pub fn task<F, Fut, T, E>(
        &self,
        factory: F,
    ) -> TaskBuilder<Factory<F>, LocalTarget<'_, 'env, AnyTasks>>
    where
        F: FnMut(u32) -> Fut + 'env,
        Fut: Future<Output = Result<T, E>> + 'env,
        T: 'env,
        E: Into<BoxError> + 'static,
    {
        builder_for(self.shared(), LocalTarget(self), Factory(factory))
    }

    /// Starts building a task from a future that already exists, as [`Scope::task_once`].
    pub fn task_once<Fut, T, E>(
        &self,
        future: Fut,
    ) -> TaskBuilder<SingleAttempt<Fut>, LocalTarget<'_, 'env, AnyTasks>>
    where
        Fut: Future<Output = Result<T, E>> + 'env,
        T: 'env,
        E: Into<BoxError> + 'static,
    {
        builder_for(
            self.shared(),
            LocalTarget(self),
            SingleAttempt(Some(future)),
        )
    }
}

impl Scope {
    /// Starts building a task whose attempts come from `factory`, called with the 1-based
    /// attempt number; each call's future is one attempt, so a retried task really starts
    /// over.
    ///
    /// The future must return `Result<T, E>`; the task's value is `T` and `Err(e)` fails the
    /// attempt. See [`TaskBuilder`] for the options.
    pub fn task<F, Fut, T, E>(&self, factory: F) -> TaskBuilder<Factory<F>>
    where
        F: FnMut(u32) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        builder_for(self.shared(), Spawned(()), Factory(factory))
    }

    /// Starts building a task from a future that already exists. It can have a name, a timeout
    /// and a cleanup, but no retry (a future cannot be re-run; use [`Scope::task`] with a
    /// factory for that).
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::{Error, Scope};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let scope = Scope::new().unwrap();
    /// let slow = scope
    ///     .task_once(async {
    ///         tokio::time::sleep(Duration::from_secs(60)).await;
    ///         Ok::<_, Error>(())
    ///     })
    ///     .name("slow")
    ///     .timeout(Duration::from_millis(20))
    ///     .spawn();
    /// let (err, _) = slow.await;
    /// assert_eq!(err.unwrap().to_string(), "task `slow` timed out after 20ms");
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn task_once<Fut, T, E>(&self, future: Fut) -> TaskBuilder<SingleAttempt<Fut>>
    where
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        builder_for(self.shared(), Spawned(()), SingleAttempt(Some(future)))
    }
}

/// A builder for a one-shot task of a local scope of any kind (for `go!`, which cannot name the
/// kind; the kind's [`StartsBuilt`] bound is checked at `spawn`).
pub(crate) fn local_task_once<'a, 'env, K: LocalKind, Fut>(
    scope: &'a LocalScope<'env, K>,
    future: Fut,
) -> TaskBuilder<SingleAttempt<Fut>, LocalTarget<'a, 'env, K>> {
    builder_for(
        scope.shared(),
        LocalTarget(scope),
        SingleAttempt(Some(future)),
    )
}

fn builder_for<S, G>(shared: &Arc<Shared>, target: G, attempts: S) -> TaskBuilder<S, G> {
    TaskBuilder {
        shared: Arc::clone(shared),
        target,
        attempts,
        name: None,
        timeout: None,
        retry: None,
        cleanup: None,
        attrs: Attrs::default(),
    }
}

/// One task's run: its options, and what its attempts did (for its completion record:
/// durations, spans, profiler). Shared by the attempt loop and the task's record in one
/// allocation, which keeps the loop's state machine small.
#[derive(Default)]
pub(crate) struct TaskRun {
    timeout: Option<Duration>,
    retry: Option<Retry>,
    name: Option<Cow<'static, str>>,
    /// The task's number in its scope, known once it is spawned (for its default name); 0
    /// until then.
    index: AtomicU64,
    /// When the first attempt began (after its permit and breaker check).
    started: OnceLock<Instant>,
    retries: AtomicU32,
    /// Why retrying stopped on a failure, as a [`RetryEnd`] (0 while it has not).
    retry_end: AtomicU8,
    permit_wait_nanos: AtomicU64,
    /// Per-stage timings, kept only when the scope profiles.
    stages: Option<Mutex<Stages>>,
    /// The task's own span attributes.
    attrs: Attrs,
}

/// The task builder's run record behind a task's details, if that is what they are.
pub(crate) fn task_run(details: Option<&Arc<dyn TaskDetails>>) -> Option<Arc<TaskRun>> {
    let details: Arc<dyn TaskDetails> = Arc::clone(details?);
    let details: Arc<dyn std::any::Any + Send + Sync> = details;
    details.downcast::<TaskRun>().ok()
}

impl TaskDetails for TaskRun {
    fn admitted(&self, index: u64) {
        self.index.store(index, Ordering::Relaxed);
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn max_retries(&self) -> Option<u32> {
        self.retry.as_ref().map(Retry::max_retries)
    }

    fn started(&self) -> Option<Instant> {
        self.started.get().copied()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Why a failing task stopped retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RetryEnd {
    /// Every retry the policy allows was made.
    Exhausted = 1,
    /// The policy's `retry_if` predicate declined the error.
    Rejected = 2,
}

/// The stage timings the profiler reports.
#[derive(Default)]
pub(crate) struct Stages {
    pub(crate) circuit_breaker: Duration,
    pub(crate) attempts: Vec<Duration>,
    pub(crate) retry_delays: Vec<Duration>,
}

impl TaskRun {
    fn stage(&self, f: impl FnOnce(&mut Stages)) {
        if let Some(stages) = &self.stages {
            f(&mut lock(stages));
        }
    }

    pub(crate) fn take_stages(&self) -> Stages {
        match &self.stages {
            Some(stages) => std::mem::take(&mut *lock(stages)),
            None => Stages::default(),
        }
    }

    /// The task's own span attributes.
    pub(crate) fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    pub(crate) fn retries(&self) -> u32 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn retry_policy(&self) -> Option<&Retry> {
        self.retry.as_ref()
    }

    fn retry_ended(&self, end: RetryEnd) {
        self.retry_end.store(end as u8, Ordering::Relaxed);
    }

    /// Why retrying stopped, if the task failed after its policy gave up.
    pub(crate) fn retry_end(&self) -> Option<RetryEnd> {
        match self.retry_end.load(Ordering::Relaxed) {
            1 => Some(RetryEnd::Exhausted),
            2 => Some(RetryEnd::Rejected),
            _ => None,
        }
    }

    pub(crate) fn permit_wait(&self) -> Duration {
        Duration::from_nanos(self.permit_wait_nanos.load(Ordering::Relaxed))
    }
}

impl TaskRun {
    fn timeout_error(&self, after: Duration) -> Error {
        let name = match (&self.name, self.index.load(Ordering::Relaxed)) {
            (Some(name), _) => name.clone(),
            (None, 0) => Cow::Borrowed("task"),
            (None, index) => Cow::Owned(format!("task-{index}")),
        };
        Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Task(name),
        }
    }
}

/// What a built task got when it was spawned.
enum Start {
    /// Its first concurrency permit.
    Permit(OwnedSemaphorePermit),
    /// None was free: its place among the scope's waiting tasks.
    Waiting(Queued),
    /// The scope has no limit (or the first attempt has begun).
    Free,
}

/// Waits for a concurrency permit if the scope has a limit, visible to deadlock detection and
/// counted among the waiting tasks (`queued`, when the task has been counted already).
async fn acquire_permit(
    shared: &Arc<Shared>,
    stats: &TaskRun,
    queued: Option<Queued>,
) -> Result<Option<OwnedSemaphorePermit>, Error> {
    let Some(semaphore) = &shared.limit else {
        return Ok(None);
    };
    if let Ok(permit) = Arc::clone(semaphore).try_acquire_owned() {
        return Ok(Some(permit));
    }
    let _waiting = begin_wait("concurrency permit");
    let _queued = queued.unwrap_or_else(|| Queued::new(shared));
    let since = Instant::now();
    let permit = Arc::clone(semaphore)
        .acquire_owned()
        .await
        .map_err(|_| Error::Closed)?;
    let waited = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
    stats.permit_wait_nanos.fetch_add(waited, Ordering::Relaxed);
    Ok(Some(permit))
}

/// A failed attempt: the attempt's own error, kept as it is until something needs it as an
/// [`Error`], or an error of ours (timeout, panic).
enum Failure<E> {
    Task(E),
    Ours(Error),
}

impl<E: Into<BoxError> + 'static> Failure<E> {
    fn into_error(self) -> Error {
        match self {
            Failure::Task(error) => Error::from_task_error(error),
            Failure::Ours(error) => error,
        }
    }

    /// True when the error cannot turn out to be one of ours once converted, so that the
    /// retry decision (which never retries [`Error::CircuitOpen`]) can be made without
    /// converting it. Only an `Error`, or a box that may hold one, can.
    fn is_plain(&self) -> bool {
        use std::any::TypeId;
        matches!(self, Failure::Task(_))
            && TypeId::of::<E>() != TypeId::of::<Error>()
            && TypeId::of::<E>() != TypeId::of::<BoxError>()
    }
}

fn debug_enabled() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// The attempt loop of a built task.
async fn run_attempts<S: Attempts>(
    shared: Arc<Shared>,
    mut attempts: S,
    plan: Arc<TaskRun>,
    breaker: Option<Arc<CircuitBreaker>>,
    mut start: Start,
) -> Result<S::Output, Error> {
    let mut retries = 0_u32;
    loop {
        // Checked before every attempt: an attempt that is always ready never gives the task's
        // wrapper a poll in which to notice the scope's cancellation.
        if shared.is_cancelled() {
            return Err(shared.cancel_error());
        }
        // Rare, large waits (permit under contention, timeouts, retry delays) are boxed so the
        // task's state machine stays small on the common path.
        let permit = match std::mem::replace(&mut start, Start::Free) {
            Start::Permit(permit) => Some(permit),
            Start::Waiting(queued) => {
                Box::pin(acquire_permit(&shared, &plan, Some(queued))).await?
            }
            Start::Free if shared.limit.is_some() => {
                Box::pin(acquire_permit(&shared, &plan, None)).await?
            }
            Start::Free => None,
        };
        let admission = match &breaker {
            Some(breaker) => {
                let asked = shared.timed().then(Instant::now);
                let admission = breaker.admit();
                if let Some(asked) = asked {
                    plan.stage(|s| s.circuit_breaker += asked.elapsed());
                }
                Some(admission?)
            }
            None => None,
        };
        // Clocks are read only when something reports durations.
        let attempt_started = shared.timed().then(Instant::now);
        if let Some(started) = attempt_started {
            let _ = plan.started.set(started);
        }
        // A panicking attempt is a failed attempt, whether it panics while its future is made
        // or while it runs: the breaker counts it and it may be retried.
        let attempt = match catch_unwind(AssertUnwindSafe(|| attempts.next_attempt(retries + 1))) {
            Ok(Some(attempt)) => Ok(AssertUnwindSafe(attempt).catch_unwind()),
            Ok(None) => {
                // Nothing ran, so the breaker learns nothing (an unsettled admission).
                return Err(Error::invalid(
                    "retry",
                    "this task's future cannot be re-created; build it with Scope::task and a factory",
                ));
            }
            Err(payload) => Err(Error::from_panic(payload)),
        };
        let settle = |outcome: std::thread::Result<Result<S::Output, S::Error>>| match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failure::Task(error)),
            Err(payload) => Err(Failure::Ours(Error::from_panic(payload))),
        };
        // A block of its own: the attempt's error (which need not be `Send`) is gone before the
        // retry delay is awaited.
        let delay = {
            let result = match (attempt, plan.timeout) {
                (Err(panicked), _) => Err(Failure::Ours(panicked)),
                (Ok(attempt), Some(after)) => {
                    match Box::pin(tokio::time::timeout(after, attempt)).await {
                        Ok(outcome) => settle(outcome),
                        Err(_elapsed) => Err(Failure::Ours(plan.timeout_error(after))),
                    }
                }
                (Ok(attempt), None) => settle(attempt.await),
            };
            if let Some(started) = attempt_started {
                plan.stage(|s| s.attempts.push(started.elapsed()));
            }
            if let Some(admission) = admission {
                admission.settle(result.is_ok());
            }
            drop(permit);
            let failure = match result {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let retry = match &plan.retry {
                Some(retry) if retries < retry.max_retries() => retry,
                Some(_) => {
                    plan.retry_ended(RetryEnd::Exhausted);
                    return Err(failure.into_error());
                }
                None => return Err(failure.into_error()),
            };
            // The attempt's own error becomes an `Error` (a boxing) only when something looks at
            // it: a predicate, a callback, a custom delay, a DEBUG log, or the task's outcome.
            if failure.is_plain() && !retry.inspects_errors() && !debug_enabled() {
                drop(failure);
                retries += 1;
                retry.delay_without_error(retries)
            } else {
                let error = failure.into_error();
                if !retry.should_retry(retries, &error) {
                    if !matches!(error, Error::CircuitOpen) {
                        plan.retry_ended(RetryEnd::Rejected);
                    }
                    return Err(error);
                }
                retries += 1;
                tracing::debug!(task = ?plan.name, retry = retries,
                    error = crate::util::log::LoggedError::of(&error).field(),
                    "retrying task");
                retry.notify_retry(&error, retries);
                retry.delay_before(retries, &error)?
            }
        };
        plan.retries.store(retries, Ordering::Relaxed);
        if delay.is_zero() {
            // Attempts that never wait would otherwise keep the worker for ever: this gives the
            // runtime back once the task's cooperative budget is spent (cheap until then).
            tokio::task::consume_budget().await;
        } else {
            // Made here, so that a runtime without a time driver is the task's `InvalidOption`;
            // the wait is registered inside the boxed future, which keeps the loop's state small.
            let sleep = crate::util::timer::timer(delay, "retry")?;
            Box::pin(async move {
                let _waiting = begin_wait("retry delay");
                sleep.await;
            })
            .await;
            plan.stage(|s| s.retry_delays.push(delay));
        }
    }
}
