//! Helpers for testing code that uses scopes (feature `testing`).
//!
//! - [`TestScope`]: a real scope that records every task spawned into it (name, options,
//!   outcome) for assertions.
//! - [`assert_closed`] / [`close_and_assert`]: the structured-concurrency promise as an
//!   assertion — closed, cancelled, no task alive, no child scope left, every disposer run.
//! - [`assert_no_tasks_left`] / [`assert_no_wait_longer_than`]: assertions that print the
//!   scope's live tree (every task and what it waits on) when they fail.
//! - [`flush_tasks`] and [`advance`]: drive the controlled clock. Tokio's paused clock is the
//!   controlled timer: write tests as `#[tokio::test(start_paused = true)]`; time then stands
//!   still, `tokio::time::advance` moves it, and a runtime with nothing to do jumps straight to
//!   the next timer, so timeouts and retry delays cost no real time and are exact.
//! - [`Spy`]: a recording stand-in for a callback.
//!
//! ```
//! use std::time::Duration;
//! use go_go_scope::testing::{TestScope, close_and_assert};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let scope = TestScope::new();
//! scope.task(|_| async { Ok::<_, &str>(1) }).name("fetch").retry(3).spawn().await;
//! let calls = scope.task_calls();
//! assert_eq!(calls[0].name, "fetch");
//! assert_eq!(calls[0].max_retries, Some(3));
//! assert!(calls[0].succeeded());
//! close_and_assert(&scope).await;
//! # }
//! ```

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Error;
use crate::core::observer::{EndedTask, Observer, SpawnedTask, Wants};
use crate::core::scope::{Scope, ScopeBuilder};
use crate::util::sync::lock;

/// One task a [`TestScope`] saw.
///
/// *Feature `testing`.*
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskCall {
    /// The task's 1-based number in the scope.
    pub index: u64,
    /// Its name (`task-<n>` when it has none).
    pub name: String,
    /// Its per-attempt timeout, if it had one.
    pub timeout: Option<Duration>,
    /// Its retry count, if it had a retry policy.
    pub max_retries: Option<u32>,
    /// `None` while it runs; then `Ok(())` or the error's message.
    pub outcome: Option<Result<(), String>>,
    /// How long its body ran, once it ended.
    pub duration: Option<Duration>,
}

impl TaskCall {
    /// True when the task ended with a value.
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(Ok(())))
    }
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<TaskCall>>,
}

impl Observer for Recorder {
    fn wants(&self) -> Wants {
        Wants {
            durations: true,
            ..Wants::default()
        }
    }

    fn task_spawned(&self, task: &SpawnedTask<'_>) -> Result<(), Error> {
        lock(&self.calls).push(TaskCall {
            index: task.index,
            name: task.display_name().into_owned(),
            timeout: task.details.and_then(|d| d.timeout()),
            max_retries: task.details.and_then(|d| d.max_retries()),
            outcome: None,
            duration: None,
        });
        Ok(())
    }

    fn task_ended(&self, task: &EndedTask<'_>) {
        let mut calls = lock(&self.calls);
        if let Some(call) = calls.iter_mut().rev().find(|c| c.index == task.index) {
            call.outcome = Some(match task.error {
                None => Ok(()),
                Some(e) => Err(e.to_string()),
            });
            call.duration = Some(task.duration);
        }
    }
}

/// A real [`Scope`] (it derefs to one) that records every task spawned into it.
///
/// *Feature `testing`.*
///
/// ```
/// use go_go_scope::testing::TestScope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = TestScope::cancelled("initial abort");
/// let (err, _) = scope.spawn(async { 1 }).await;
/// assert_eq!(err.unwrap().to_string(), "cancelled: initial abort");
/// scope.close().await.unwrap();
/// # }
/// ```
pub struct TestScope {
    scope: Scope,
    recorder: Arc<Recorder>,
}

impl fmt::Debug for TestScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestScope")
            .field("scope", &self.scope)
            .field("task_calls", &lock(&self.recorder.calls).len())
            .finish()
    }
}

impl Default for TestScope {
    fn default() -> TestScope {
        TestScope::new()
    }
}

impl TestScope {
    /// A detached scope named `test-scope` that records its tasks.
    ///
    /// # Panics
    /// Outside a Tokio runtime (tests run inside one).
    pub fn new() -> TestScope {
        match TestScope::from_builder(Scope::builder().name("test-scope").detached()) {
            Ok(scope) => scope,
            Err(error) => panic!("TestScope::new: {error}"),
        }
    }

    /// A recording scope from your own builder (its hooks are kept; recording is added).
    ///
    /// # Errors
    /// As [`ScopeBuilder::build`]: invalid options, no Tokio runtime, a closed parent.
    pub fn from_builder(builder: ScopeBuilder) -> Result<TestScope, Error> {
        let recorder = Arc::new(Recorder::default());
        let mut builder = builder;
        builder.features().observers.push(recorder.clone());
        let scope = builder.build()?;
        Ok(TestScope { scope, recorder })
    }

    /// A recording scope that starts cancelled with `reason`.
    pub fn cancelled(reason: &'static str) -> TestScope {
        let scope = TestScope::new();
        scope.cancel(reason);
        scope
    }

    /// Provides `value` as a service and returns the scope, for one-line setups.
    pub fn with_service<T: Send + Sync + 'static>(self, value: T) -> TestScope {
        self.scope.provide(value);
        self
    }

    /// Every task spawned so far, in spawn order.
    pub fn task_calls(&self) -> Vec<TaskCall> {
        lock(&self.recorder.calls).clone()
    }

    /// Forgets the recorded tasks.
    pub fn clear_task_calls(&self) {
        lock(&self.recorder.calls).clear();
    }

    /// The underlying scope, e.g. to pass as a parent.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Deref for TestScope {
    type Target = Scope;

    fn deref(&self) -> &Scope {
        &self.scope
    }
}

/// Asserts that `scope` kept the structured-concurrency promise: it is closed, cancelled, has
/// no live task and no child scope left, and every disposer ran.
///
/// *Feature `testing`.*
///
/// # Panics
/// With a message naming the broken promise.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// scope.close().await.unwrap();
/// go_go_scope::testing::assert_closed(&scope);
/// # }
/// ```
#[track_caller]
pub fn assert_closed(scope: &Scope) {
    assert!(scope.is_closed(), "scope `{}` is not closed", scope.name());
    assert!(
        scope.is_cancelled(),
        "scope `{}` is closed but its token was not cancelled",
        scope.name()
    );
    assert_eq!(
        scope.active_tasks(),
        0,
        "scope `{}` still has live tasks",
        scope.name()
    );
    assert_eq!(
        scope.child_scopes(),
        0,
        "scope `{}` still has child scopes registered",
        scope.name()
    );
    assert_eq!(
        scope.pending_disposers(),
        0,
        "scope `{}` has disposers that never ran",
        scope.name()
    );
    let token = scope.token();
    assert!(
        token.is_cancelled(),
        "scope `{}`'s cancellation token was not cancelled",
        scope.name()
    );
}

/// Closes `scope` (a failing disposer fails the test) and asserts [`assert_closed`].
///
/// *Feature `testing`.*
///
/// # Cancel safety
/// As [`Scope::close`]: the close, once started, goes on in the background; the assertions
/// of a dropped call are not made.
///
/// # Panics
/// When a disposer fails, or when [`assert_closed`] finds something left: that is the test
/// failing.
pub async fn close_and_assert(scope: &Scope) {
    if let Err(error) = scope.close().await {
        panic!("closing scope `{}` failed: {error}", scope.name());
    }
    assert_closed(scope);
}

/// Asserts that no task of `scope` or of its child scopes is alive; on failure the message
/// holds the scope's live tree ([`Scope::tree`]), naming every task left and what it waits on
/// (a scope built with [`ScopeBuilder::introspect`]`(false)` shows only its count).
///
/// *Feature `testing`.*
///
/// # Panics
/// When a task is still alive, with the tree.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// scope.spawn(async {}).await;
/// go_go_scope::testing::assert_no_tasks_left(&scope);
///
/// let _stuck = scope.spawn(std::future::pending::<()>());
/// go_go_scope::testing::flush_tasks().await;
/// let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| go_go_scope::testing::assert_no_tasks_left(&scope)));
/// let message = *failure.unwrap_err().downcast::<String>().unwrap();
/// assert!(message.contains("task-2 (#2) running"));
/// scope.close().await.unwrap();
/// # }
/// ```
#[track_caller]
pub fn assert_no_tasks_left(scope: &Scope) {
    let tree = scope.tree();
    let left: usize = tree.scopes.iter().map(|s| s.live_tasks).sum();
    assert!(
        left == 0,
        "scope `{}` still has {left} live task(s):\n{tree}",
        scope.name()
    );
}

/// Asserts that no task of `scope` or of its child scopes has been waiting (on a permit, a
/// channel, a pool, a retry delay or a [`tracked_wait`](crate::tracked_wait)) for longer
/// than `limit`; on failure the message holds the scope's live tree. Scopes built with
/// [`ScopeBuilder::introspect`]`(false)` record no waits.
///
/// *Feature `testing`.*
///
/// # Panics
/// When a wait is longer than `limit`, with the tree.
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// let ch = scope.channel::<u8>(1);
/// let rx = ch.clone();
/// let _waiting = scope.spawn(async move { rx.recv().await });
/// go_go_scope::testing::flush_tasks().await;
/// go_go_scope::testing::assert_no_wait_longer_than(&scope, Duration::from_secs(1));
/// tokio::time::advance(Duration::from_secs(2)).await;
/// let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
///     go_go_scope::testing::assert_no_wait_longer_than(&scope, Duration::from_secs(1))
/// }));
/// let message = *failure.unwrap_err().downcast::<String>().unwrap();
/// assert!(message.contains("waiting on channel receive for 2.00s"));
/// scope.close().await.unwrap();
/// # }
/// ```
#[track_caller]
pub fn assert_no_wait_longer_than(scope: &Scope, limit: Duration) {
    let tree = scope.tree();
    if let Some((owner, task)) = tree.longest_wait()
        && let Some(waited) = task.state.waited().filter(|waited| *waited > limit)
    {
        panic!(
            "task `{}` of scope `{}` has waited on {} for {waited:?} (limit {limit:?}):\n{tree}",
            task.name,
            owner.path,
            task.state.waiting_on().unwrap_or("?"),
        );
    }
}

/// Lets every task that can make progress run until none can, before returning.
///
/// On a current-thread runtime (the one `#[tokio::test]` uses) this waits until the runtime
/// runs out of work and goes idle, twice, so that timers already due when it first went idle
/// have woken their tasks and those have run too. Time does not move meanwhile, also under the
/// paused clock. A task that never stops being ready keeps the runtime busy: then this returns
/// after about five seconds, with a warning. On a multi-thread runtime it yields to the
/// scheduler until a round of yields found nothing new in the runtime's shared queue, at most
/// 64 times.
///
/// *Feature `testing`.*
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// let flag = Arc::new(AtomicBool::new(false));
/// let f = flag.clone();
/// scope.spawn(async move { f.store(true, Ordering::SeqCst) });
/// go_go_scope::testing::flush_tasks().await;
/// assert!(flag.load(Ordering::SeqCst));
/// scope.close().await.unwrap();
/// # }
/// ```
///
/// # Cancel safety
/// Dropping the future only stops the waiting: it owns nothing, and the tasks it let run keep
/// what they did.
pub async fn flush_tasks() {
    let handle = tokio::runtime::Handle::current();
    #[cfg(target_has_atomic = "64")]
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        for _ in 0..2 {
            if !until_idle(&handle).await {
                tracing::warn!("flush_tasks: tasks kept the runtime busy; returning anyway");
                return;
            }
        }
        return;
    }
    let metrics = handle.metrics();
    let mut quiet_rounds = 0;
    for _ in 0..64 {
        let before = metrics.global_queue_depth();
        tokio::task::yield_now().await;
        if before == 0 && metrics.global_queue_depth() == 0 {
            quiet_rounds += 1;
            if quiet_rounds == 2 {
                break;
            }
        } else {
            quiet_rounds = 0;
        }
    }
}

/// Waits until the current-thread runtime of `handle` parks, which it does only when no task
/// is ready to run; false if it stayed busy for about five seconds.
///
/// The watch runs on the blocking pool: while a blocking task runs, the paused clock does not
/// jump to the next timer when the runtime parks, and the task's end wakes the runtime again.
#[cfg(target_has_atomic = "64")]
async fn until_idle(handle: &tokio::runtime::Handle) -> bool {
    const CHECK_EVERY: Duration = Duration::from_micros(50);
    const GIVE_UP_AFTER: Duration = Duration::from_secs(5);
    let metrics = handle.metrics();
    let parked_before = metrics.worker_park_count(0);
    let watch = handle.spawn_blocking(move || {
        // Real time: the runtime's clock may be paused.
        let give_up = std::time::Instant::now() + GIVE_UP_AFTER;
        while metrics.worker_park_count(0) == parked_before {
            if std::time::Instant::now() >= give_up {
                return false;
            }
            std::thread::sleep(CHECK_EVERY);
        }
        true
    });
    // A runtime shutting down cannot run the watch; there is nothing left to flush then.
    watch.await.unwrap_or(true)
}

/// Moves the paused clock forward by `by` and lets the tasks that became ready run.
/// Requires the paused clock (`#[tokio::test(start_paused = true)]`).
///
/// *Feature `testing`.*
///
/// ```
/// use std::time::Duration;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// let fired = Arc::new(AtomicBool::new(false));
/// let f = fired.clone();
/// scope.spawn(async move {
///     tokio::time::sleep(Duration::from_millis(100)).await;
///     f.store(true, Ordering::SeqCst);
/// });
/// go_go_scope::testing::advance(Duration::from_millis(99)).await;
/// assert!(!fired.load(Ordering::SeqCst));
/// go_go_scope::testing::advance(Duration::from_millis(1)).await;
/// assert!(fired.load(Ordering::SeqCst));
/// scope.close().await.unwrap();
/// # }
/// ```
///
/// # Cancel safety
/// Dropping it mid-way leaves the clock advanced by however far it had gone (possibly not
/// at all) and owns nothing else; advance again to go on.
///
/// # Panics
/// As [`tokio::time::advance`]: when the clock is not paused (pausing it needs a
/// `current_thread` runtime).
pub async fn advance(by: Duration) {
    flush_tasks().await;
    tokio::time::advance(by).await;
    flush_tasks().await;
}

/// One recorded call of a [`Spy`].
///
/// *Feature `testing`.*
#[derive(Debug, Clone, PartialEq)]
pub struct SpyCall<A, R> {
    /// The arguments it was called with.
    pub args: A,
    /// What it returned.
    pub result: R,
}

type SpyImplementation<A, R> = Arc<dyn Fn(&A) -> R + Send + Sync>;

struct SpyState<A, R> {
    calls: Vec<SpyCall<A, R>>,
    return_value: Option<R>,
    implementation: Option<SpyImplementation<A, R>>,
}

/// A recording stand-in for a callback: call it, then assert on how it was called.
///
/// *Feature `testing`.*
///
/// It answers with its implementation if one is set, else its return value, else
/// `R::default()`. Clones share the same record.
///
/// ```
/// use go_go_scope::testing::Spy;
///
/// let spy: Spy<(u32, &str), u32> = Spy::new();
/// spy.mock_implementation(|(n, _)| n * 2);
/// assert_eq!(spy.call((5, "a")), 10);
/// assert!(spy.was_called_with(&(5, "a")));
/// assert_eq!(spy.call_count(), 1);
/// spy.mock_reset();
/// assert!(!spy.was_called());
/// ```
pub struct Spy<A, R> {
    state: Arc<Mutex<SpyState<A, R>>>,
}

impl<A, R> Clone for Spy<A, R> {
    fn clone(&self) -> Self {
        Spy {
            state: Arc::clone(&self.state),
        }
    }
}

impl<A, R> fmt::Debug for Spy<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spy")
            .field("calls", &lock(&self.state).calls.len())
            .finish_non_exhaustive()
    }
}

impl<A: Clone, R: Clone + Default> Default for Spy<A, R> {
    fn default() -> Self {
        Spy::new()
    }
}

impl<A: Clone, R: Clone + Default> Spy<A, R> {
    /// A spy with no calls, no return value and no implementation.
    pub fn new() -> Spy<A, R> {
        Spy {
            state: Arc::new(Mutex::new(SpyState {
                calls: Vec::new(),
                return_value: None,
                implementation: None,
            })),
        }
    }

    /// Calls the spy: records the call and returns its answer.
    pub fn call(&self, args: A) -> R {
        let implementation = lock(&self.state).implementation.clone();
        let result = match implementation {
            Some(f) => f(&args),
            None => lock(&self.state).return_value.clone().unwrap_or_default(),
        };
        lock(&self.state).calls.push(SpyCall {
            args,
            result: result.clone(),
        });
        result
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<SpyCall<A, R>> {
        lock(&self.state).calls.clone()
    }

    /// How many times it was called.
    pub fn call_count(&self) -> usize {
        lock(&self.state).calls.len()
    }

    /// True once it was called.
    pub fn was_called(&self) -> bool {
        self.call_count() > 0
    }

    /// True if some call had exactly these arguments.
    pub fn was_called_with(&self, args: &A) -> bool
    where
        A: PartialEq,
    {
        lock(&self.state).calls.iter().any(|c| &c.args == args)
    }

    /// Answer every call with `value` (an implementation takes precedence).
    pub fn mock_return_value(&self, value: R) -> &Self {
        lock(&self.state).return_value = Some(value);
        self
    }

    /// Answer every call with `f(args)`.
    pub fn mock_implementation(&self, f: impl Fn(&A) -> R + Send + Sync + 'static) -> &Self {
        lock(&self.state).implementation = Some(Arc::new(f));
        self
    }

    /// Forgets the calls, the return value and the implementation.
    pub fn mock_reset(&self) -> &Self {
        let mut state = lock(&self.state);
        state.calls.clear();
        state.return_value = None;
        state.implementation = None;
        drop(state);
        self
    }
}

/// One finished go-go-scope span, as [`SpanCollector`] recorded it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CollectedSpan {
    /// The span's name: the scope's or task's name (`otel.name`), else `scope` / `scope.task`.
    pub name: String,
    /// `"scope"` or `"scope.task"`.
    pub kind: &'static str,
    /// The collector's number for this span, unique within the collector.
    pub id: u64,
    /// The collector's number of the parent span, when the parent is a go-go-scope span too.
    pub parent_id: Option<u64>,
    /// Every recorded field and attribute, as text (`task.retry_attempts` → `"1"`, the
    /// `attrs(..)` of a scope or task as their own keys).
    pub fields: std::collections::BTreeMap<String, String>,
}

impl CollectedSpan {
    /// A field or attribute's value as text.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// True when the span's status is Error (a failed task, a timed-out scope, ...).
    pub fn is_error(&self) -> bool {
        self.field("otel.status_code") == Some("ERROR")
    }
}

/// Collects the spans go-go-scope emits, in memory, for assertions in tests: scope and task
/// spans with their names, parentage, fields and attributes.
///
/// It is a `tracing` layer that keeps only go-go-scope's spans (target `go_go_scope`, every
/// level). [`install`](SpanCollector::install) makes it the current thread's subscriber, which
/// suits `#[tokio::test]`'s current-thread runtime.
///
/// One caveat comes from `tracing` itself: it decides once per call site whether any subscriber
/// wants it. When other tests of the same binary run go-go-scope code on their threads without
/// a subscriber while this one is being installed, a call site can be cached as unwanted and
/// its spans go missing. Keep span tests in a test binary of their own (a file under `tests/`),
/// or run the binary with `--test-threads=1`.
///
/// ```
/// use go_go_scope::testing::SpanCollector;
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let spans = SpanCollector::new();
/// let _guard = spans.install();
/// let scope = Scope::builder().name("checkout").attr("tenant", "acme").build().unwrap();
/// scope.task_once(async { Err::<(), _>("card declined") }).name("charge").spawn().await;
/// scope.close().await.unwrap();
///
/// let charge = spans.find("charge").unwrap();
/// let checkout = spans.find("checkout").unwrap();
/// assert_eq!(charge.parent_id, Some(checkout.id));
/// assert!(charge.is_error());
/// assert_eq!(charge.field("task.error_reason"), Some("exception"));
/// assert_eq!(checkout.field("tenant"), Some("acme"));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct SpanCollector {
    finished: Arc<Mutex<Vec<CollectedSpan>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for SpanCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanCollector")
            .field("finished", &lock(&self.finished).len())
            .finish()
    }
}

impl SpanCollector {
    /// An empty collector.
    pub fn new() -> SpanCollector {
        SpanCollector::default()
    }

    /// Makes a subscriber with this collector the current thread's default until the guard is
    /// dropped.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        use tracing_subscriber::layer::SubscriberExt;
        let guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(self.layer()));
        // `tracing` caches, per call site, whether any subscriber wants it. With tests on
        // several threads, each with a subscriber of its own, a call site first reached on a
        // thread without one can be cached as unwanted while this subscriber is being set up;
        // asking for the caches to be rebuilt makes this subscriber count.
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    /// The collector as a layer, to add to a subscriber of your own.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        collector::CollectingLayer {
            collector: self.clone(),
        }
    }

    /// Every span finished so far, in the order they closed.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        lock(&self.finished).clone()
    }

    /// The first finished span with this name.
    pub fn find(&self, name: &str) -> Option<CollectedSpan> {
        lock(&self.finished)
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// The finished spans whose parent is `parent`.
    pub fn children_of(&self, parent: &CollectedSpan) -> Vec<CollectedSpan> {
        lock(&self.finished)
            .iter()
            .filter(|s| s.parent_id == Some(parent.id))
            .cloned()
            .collect()
    }

    /// Forgets the spans collected so far.
    pub fn clear(&self) {
        lock(&self.finished).clear();
    }
}

mod collector {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;

    use tracing::Subscriber;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    use super::{CollectedSpan, SpanCollector, lock};

    pub(super) struct CollectingLayer {
        pub(super) collector: SpanCollector,
    }

    /// What the layer keeps in a span's extensions until it closes.
    struct Open {
        id: u64,
        /// Found when the span opens: the parent may close first.
        parent_id: Option<u64>,
        fields: BTreeMap<String, String>,
    }

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.put(field, format!("{value:?}"));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.put(field, value.to_owned());
        }
    }

    impl Fields<'_> {
        fn put(&mut self, field: &Field, value: String) {
            if field.name() == "attrs" {
                for (key, value) in parse_attrs(&value) {
                    self.0.insert(key, value);
                }
            } else {
                self.0.insert(field.name().to_owned(), value);
            }
        }
    }

    /// Parses the `attrs` field: `key=value` pairs separated by spaces, strings quoted with
    /// Rust's escapes.
    pub(super) fn parse_attrs(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = text.trim_start();
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim().to_owned();
            rest = &rest[eq + 1..];
            let value;
            if let Some(quoted) = rest.strip_prefix('"') {
                let mut text = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => text.push('\n'),
                            Some((_, 't')) => text.push('\t'),
                            Some((_, 'r')) => text.push('\r'),
                            Some((_, '0')) => text.push('\0'),
                            Some((_, other)) => text.push(other),
                            None => {}
                        },
                        c => text.push(c),
                    }
                }
                value = text;
                rest = &quoted[end.min(quoted.len())..];
            } else {
                let end = rest.find(' ').unwrap_or(rest.len());
                value = rest[..end].to_owned();
                rest = &rest[end..];
            }
            out.push((key, value));
            rest = rest.trim_start();
        }
        out
    }

    impl<S> tracing_subscriber::Layer<S> for CollectingLayer
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if attrs.metadata().target() != "go_go_scope" {
                return;
            }
            let mut fields = BTreeMap::new();
            attrs.record(&mut Fields(&mut fields));
            if let Some(span) = ctx.span(id) {
                let parent_id = span
                    .scope()
                    .skip(1)
                    .find_map(|parent| parent.extensions().get::<Open>().map(|p| p.id));
                let open = Open {
                    id: self.collector.next_id.fetch_add(1, Ordering::Relaxed) + 1,
                    parent_id,
                    fields,
                };
                span.extensions_mut().insert(open);
            }
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id)
                && let Some(open) = span.extensions_mut().get_mut::<Open>()
            {
                values.record(&mut Fields(&mut open.fields));
            }
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(&id) else { return };
            let Some(open) = span.extensions_mut().remove::<Open>() else {
                return;
            };
            let kind = if span.name() == "scope" {
                "scope"
            } else {
                "scope.task"
            };
            let name = open
                .fields
                .get("otel.name")
                .cloned()
                .unwrap_or_else(|| span.name().to_owned());
            lock(&self.collector.finished).push(CollectedSpan {
                name,
                kind,
                id: open.id,
                parent_id: open.parent_id,
                fields: open.fields,
            });
        }
    }

    #[cfg(test)]
    mod tests {
        use super::parse_attrs;

        #[test]
        fn attrs_text_parses_back() {
            let parsed = parse_attrs(r#"tenant="acme corp" shard=3 ok=true note="say \"hi\"\n""#);
            assert_eq!(
                parsed,
                [
                    ("tenant".to_owned(), "acme corp".to_owned()),
                    ("shard".to_owned(), "3".to_owned()),
                    ("ok".to_owned(), "true".to_owned()),
                    ("note".to_owned(), "say \"hi\"\n".to_owned()),
                ]
            );
            assert!(parse_attrs("").is_empty());
        }
    }
}
