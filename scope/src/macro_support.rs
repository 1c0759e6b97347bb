//! Support for the code the macros generate. Not a public API: anything here may change in any
//! release. Generated code reaches the runtime only through this module.
//!
//! Three mechanisms live here, each chosen at the macro's expansion site by method resolution
//! ("autoref specialization"), because a proc macro sees tokens, not types:
//! - `go!`: a future whose output is `Result<T, E>` (with `E: Into<BoxError>`) is spawned so its
//!   error lands in the task's tuple; any other future's output is the task's value.
//! - `#[scoped]`: a return type that can carry [`Error`] (`Result<T, E: From<Error>>` or the
//!   tuple) lets the scope's cancellation end the body early with that error; any other return
//!   type runs the body to completion while the scope's tasks are cancelled.
//! - `try_go_raw!`: a caught panic becomes the caller's error type when it converts from
//!   [`Error`] or from `String`, and keeps unwinding otherwise.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::core::context;
use crate::core::error::{BoxError, panic_message};
use crate::core::scope::BodyEnd;
use crate::core::task::{TaskSpec, spawn_body};
use crate::resilience::task_builder::{SingleAttempt, TaskBuilder, local_task_once};

pub use crate::core::error::Error;
pub use crate::core::local::{
    AnyTasks, Holds, LocalBody, LocalKind, LocalScope, LocalTask, SendTasks, UnsendBody,
};
pub use crate::core::scope::{Scope, ScopeBuilder};
pub use crate::core::task::Task;
pub use crate::core::task::{Fallible, Plain};
pub use crate::observe::trace::{AttrValue, ScopeTracer};
pub use crate::resilience::circuit_breaker::CircuitBreaker;
pub use crate::resilience::retry::Retry;
pub use crate::resilience::task_builder::{LocalTarget, StartsBuilt};
pub use std::sync::OnceLock;
pub use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// go!: which scope, and how the future's output becomes the task's tuple.

/// The ambient scope for a `go!` with options.
///
/// # Panics
/// Outside any scope, naming the two ways out.
#[track_caller]
pub fn ambient_scope() -> Scope {
    match Scope::try_current() {
        Some(scope) => scope,
        None => no_scope(),
    }
}

#[track_caller]
#[cold]
fn no_scope() -> ! {
    panic!(
        "go!() found no scope to spawn into: call it inside a #[scoped] fn, a Scope::run body or \
         a task of a scope, or name the scope explicitly with go!(scope = s, ..)"
    )
}

/// Chosen for futures whose output is `Result<T, E>` with `E: Into<BoxError>`.
#[derive(Clone, Copy, Debug)]
pub struct FallibleTag;

/// Chosen for every other future.
#[derive(Clone, Copy, Debug)]
pub struct PlainTag;

/// The preferred `go!` kind: found on the future itself, so it wins when its bounds hold.
pub trait FallibleKind {
    /// The tag that spawns this future as a fallible task.
    fn __go_kind(&self) -> FallibleTag {
        FallibleTag
    }
}

impl<F, T, E> FallibleKind for F
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
}

/// The fallback `go!` kind: found only through one more reference.
pub trait PlainKind {
    /// The tag that spawns this future as a plain task.
    fn __go_kind(&self) -> PlainTag {
        PlainTag
    }
}

impl<F> PlainKind for &F {}

impl FallibleTag {
    /// Spawns into the ambient scope.
    #[track_caller]
    pub fn spawn_ambient<F, T, E>(self, future: F) -> Task<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        // Not through a closure: `spawn_body` reads the caller's location for the live tree.
        // The scope is copied out of the ambient slot: spawning may run user code (a
        // `before_task` hook), which may look for its scope too.
        match context::ambient_scope() {
            Some(shared) => spawn_body(&shared, Fallible::new(future), TaskSpec::plain()),
            None => no_scope(),
        }
    }

    /// Spawns into `scope`.
    #[track_caller]
    pub fn spawn_into<F, T, E>(self, scope: &Scope, future: F) -> Task<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        scope.try_spawn(future)
    }

    /// Spawns `future` into `scope` as a one-shot task with the options `configure` sets.
    #[track_caller]
    pub fn spawn_once<F, T, E>(
        self,
        scope: &Scope,
        future: F,
        configure: impl FnOnce(TaskBuilder<SingleAttempt<F>>) -> TaskBuilder<SingleAttempt<F>>,
    ) -> Task<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        configure(scope.task_once(future)).spawn()
    }

    /// Starts `future` in the local scope `scope` (`go!` in a `#[scoped(local)]` fn).
    #[track_caller]
    pub fn spawn_local<'s, 'env, K, F, T, E>(
        self,
        scope: &'s LocalScope<'env, K>,
        future: F,
    ) -> LocalTask<'s, T, K>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<BoxError> + 'static,
        K: Holds<'env, Fallible<F>, T>,
    {
        scope.start(Fallible::new(future), TaskSpec::plain())
    }

    /// Starts `future` in the local scope `scope` as a one-shot task with the options
    /// `configure` sets.
    #[track_caller]
    pub fn spawn_once_local<'s, 'env, K, F, T, E>(
        self,
        scope: &'s LocalScope<'env, K>,
        future: F,
        configure: impl FnOnce(
            TaskBuilder<SingleAttempt<F>, LocalTarget<'s, 'env, K>>,
        ) -> TaskBuilder<SingleAttempt<F>, LocalTarget<'s, 'env, K>>,
    ) -> LocalTask<'s, T, K>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<BoxError> + 'static,
        K: StartsBuilt<'env, SingleAttempt<F>>,
    {
        configure(local_task_once(scope, future)).spawn()
    }

    /// The future as one attempt of a task builder.
    pub fn wrap<F, T, E>(self, future: F) -> F
    where
        F: Future<Output = Result<T, E>>,
    {
        future
    }
}

impl PlainTag {
    /// Spawns into the ambient scope.
    #[track_caller]
    pub fn spawn_ambient<F>(self, future: F) -> Task<F::Value>
    where
        F: GoFuture + Send + 'static,
        F::Value: Send + 'static,
    {
        // Not through a closure: `spawn_body` reads the caller's location for the live tree.
        // The scope is copied out of the ambient slot: spawning may run user code (a
        // `before_task` hook), which may look for its scope too.
        match context::ambient_scope() {
            Some(shared) => spawn_body(&shared, Plain::new(future), TaskSpec::plain()),
            None => no_scope(),
        }
    }

    /// Spawns into `scope`.
    #[track_caller]
    pub fn spawn_into<F>(self, scope: &Scope, future: F) -> Task<F::Value>
    where
        F: GoFuture + Send + 'static,
        F::Value: Send + 'static,
    {
        scope.spawn(future)
    }

    /// Spawns `future` into `scope` as a one-shot task with the options `configure` sets. The
    /// builder stays inside, so a value that is not a future fails on `GoFuture` alone.
    #[track_caller]
    pub fn spawn_once<F>(
        self,
        scope: &Scope,
        future: F,
        configure: impl FnOnce(
            TaskBuilder<SingleAttempt<Infallibly<F>>>,
        ) -> TaskBuilder<SingleAttempt<Infallibly<F>>>,
    ) -> Task<F::Value>
    where
        F: GoFuture + Send + 'static,
        F::Value: Send + 'static,
    {
        configure(scope.task_once(Infallibly { future })).spawn()
    }

    /// Starts `future` in the local scope `scope` (`go!` in a `#[scoped(local)]` fn).
    #[track_caller]
    pub fn spawn_local<'s, 'env, K, F>(
        self,
        scope: &'s LocalScope<'env, K>,
        future: F,
    ) -> LocalTask<'s, F::Value, K>
    where
        F: GoFuture,
        K: Holds<'env, Plain<F>, F::Value>,
    {
        scope.start(Plain::new(future), TaskSpec::plain())
    }

    /// Starts `future` in the local scope `scope` as a one-shot task with the options
    /// `configure` sets.
    #[track_caller]
    pub fn spawn_once_local<'s, 'env, K, F>(
        self,
        scope: &'s LocalScope<'env, K>,
        future: F,
        configure: impl FnOnce(
            TaskBuilder<SingleAttempt<Infallibly<F>>, LocalTarget<'s, 'env, K>>,
        )
            -> TaskBuilder<SingleAttempt<Infallibly<F>>, LocalTarget<'s, 'env, K>>,
    ) -> LocalTask<'s, F::Value, K>
    where
        F: GoFuture,
        K: StartsBuilt<'env, SingleAttempt<Infallibly<F>>>,
    {
        configure(local_task_once(scope, Infallibly { future })).spawn()
    }

    /// The future as one attempt of a task builder: an attempt that can only fail by panicking.
    pub fn wrap<F: GoFuture>(self, future: F) -> F::Attempt {
        future.into_attempt()
    }
}

pin_project! {
    /// A future whose output is wrapped in `Ok`, for APIs that take fallible attempts.
    #[derive(Debug)]
    pub struct Infallibly<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Infallibly<F> {
    type Output = Result<F::Output, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map(Ok)
    }
}

/// What `go!` spawns: a future. The plain spawn path bounds on it instead of `Future`, so a value
/// that is not a future (a call's result, an `.await`ed value, a fn named but not called) gets
/// one message that says what to write.
#[diagnostic::on_unimplemented(
    message = "`go!` needs a future, and `{Self}` is not one",
    label = "not a future",
    note = "call the async fn and give `go!` its future: `go!(fetch(id))`, not `go!(fetch)`",
    note = "don't `.await` inside `go!`: the task awaits the future, and you await the task"
)]
pub trait GoFuture: Future<Output = <Self as GoFuture>::Value> {
    /// The future's output, named through this trait so that a value that is not a future
    /// fails on this trait alone.
    type Value;
    /// What one attempt of a task builder runs: the future, its output wrapped in `Ok`.
    type Attempt: Future;
    /// The future as one attempt.
    fn into_attempt(self) -> Self::Attempt;
}

#[diagnostic::do_not_recommend]
impl<F: Future> GoFuture for F {
    type Value = F::Output;
    type Attempt = Infallibly<F>;
    fn into_attempt(self) -> Infallibly<F> {
        Infallibly { future: self }
    }
}

// ---------------------------------------------------------------------------------------------
// Values given as expressions: one message per option, at the expression.

/// `name = EXPR` of `#[scoped]` and `go!`.
#[diagnostic::on_unimplemented(
    message = "a name is a string, and `{Self}` is not one",
    label = "expected a `&'static str`, a `String` or a `Cow<'static, str>`",
    note = "write `name = \"checkout\"`, or `name = format!(\"order-{{id}}\")` for a computed one"
)]
pub trait NameValue {
    /// The name.
    fn into_name(self) -> std::borrow::Cow<'static, str>;
}

#[diagnostic::do_not_recommend]
impl<T: Into<std::borrow::Cow<'static, str>>> NameValue for T {
    fn into_name(self) -> std::borrow::Cow<'static, str> {
        self.into()
    }
}

/// `timeout = EXPR` of `#[scoped]` and `go!`, and the durations of `retry(..)` and
/// `circuit_breaker(..)`.
#[diagnostic::on_unimplemented(
    message = "a duration is a string literal such as \"30s\" or a `Duration`, and `{Self}` is \
               neither",
    label = "expected a `std::time::Duration`",
    note = "write `timeout = \"30s\"`, or `Duration::from_secs(n)` for a number of seconds"
)]
pub trait DurationValue {
    /// The duration.
    fn into_duration(self) -> Duration;
}

#[diagnostic::do_not_recommend]
impl DurationValue for Duration {
    fn into_duration(self) -> Duration {
        self
    }
}

/// `retry = EXPR` of `#[scoped]` and `go!`.
#[diagnostic::on_unimplemented(
    message = "`retry` takes a retry policy or a count, and `{Self}` is neither",
    label = "expected a `go_go_scope::Retry` or a `u32`",
    note = "write `retry = 3`, `retry(max = 3, delay = \"100ms\")`, or build a policy with \
            `Retry::exponential(3, Duration::from_millis(100))`"
)]
pub trait RetryValue {
    /// The policy.
    fn into_retry(self) -> Retry;
}

#[diagnostic::do_not_recommend]
impl<T: Into<Retry>> RetryValue for T {
    fn into_retry(self) -> Retry {
        self.into()
    }
}

/// `tracer = EXPR` of `#[scoped]`.
#[diagnostic::on_unimplemented(
    message = "`tracer` takes a tracer, and `{Self}` is not one",
    label = "expected a `ScopeTracer` or a type that converts into one",
    note = "write bare `tracer` for the global tracer provider, or give an OpenTelemetry tracer \
            (feature `otel`)"
)]
pub trait TracerValue {
    /// The tracer.
    fn into_tracer(self) -> ScopeTracer;
}

#[diagnostic::do_not_recommend]
impl<T: Into<ScopeTracer>> TracerValue for T {
    fn into_tracer(self) -> ScopeTracer {
        self.into()
    }
}

/// A value of `attrs("key" = EXPR, ..)`.
#[diagnostic::on_unimplemented(
    message = "a span attribute is an integer, a float, a bool or a string, and `{Self}` is none \
               of them",
    label = "this value cannot be recorded on a span",
    note = "record a field instead (`\"user.id\" = user.id`), or its text: \
            `\"user\" = format!(\"{{user:?}}\")`"
)]
pub trait AttrValueOf {
    /// The attribute value.
    fn into_attr(self) -> AttrValue;
}

#[diagnostic::do_not_recommend]
impl<T: Into<AttrValue>> AttrValueOf for T {
    fn into_attr(self) -> AttrValue {
        self.into()
    }
}

// ---------------------------------------------------------------------------------------------
// #[scoped]: which fn arguments become `arg.NAME` span attributes.

/// True when a scope's span could be recorded (so reading the arguments is worth it): by a
/// `tracing` subscriber, or, for a fn given a tracer (`traced`), by that tracer directly.
pub fn argument_attrs_wanted(traced: bool) -> bool {
    // Scope spans are INFO (traced) or DEBUG; with nothing enabled at INFO neither is recorded
    // through `tracing`. Without any subscriber a traced scope's spans go to its tracer.
    (traced && cfg!(feature = "otel")) || tracing::level_enabled!(tracing::Level::INFO)
}

/// Adds `key = value` to the scope's span when the argument could be recorded.
pub fn record_argument(
    builder: ScopeBuilder,
    key: &'static str,
    value: Option<AttrValue>,
) -> ScopeBuilder {
    match value {
        Some(value) => builder.attr(key, value),
        None => builder,
    }
}

/// A borrowed fn argument, probed for an attribute form. The newtype keeps the two kinds
/// below one reference apart even when the argument is itself a reference.
#[derive(Debug)]
pub struct ArgProbe<'a, T: ?Sized>(pub &'a T);

/// The preferred kind: an argument whose type converts into an attribute value.
pub trait RecordedArg {
    /// The argument as an attribute value.
    fn __arg_attr(&self) -> Option<AttrValue>;
}

impl<T: Clone + Into<AttrValue>> RecordedArg for ArgProbe<'_, T> {
    fn __arg_attr(&self) -> Option<AttrValue> {
        Some(self.0.clone().into())
    }
}

/// The fallback: any other argument is not recorded.
pub trait UnrecordedArg {
    /// Nothing to record.
    fn __arg_attr(&self) -> Option<AttrValue> {
        None
    }
}

impl<T: ?Sized> UnrecordedArg for &ArgProbe<'_, T> {}

/// What `scope = ..` (in `go!`) and `parent = ..` (in `#[scoped]`) accept.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a scope",
    label = "expected a `go_go_scope::Scope` or a reference to one",
    note = "`go!(scope = ..)` and `#[scoped(parent = ..)]` take a `Scope` value or `&Scope`"
)]
pub trait AsScope {
    /// The scope.
    fn as_scope(&self) -> &Scope;
}

#[diagnostic::do_not_recommend]
impl AsScope for Scope {
    fn as_scope(&self) -> &Scope {
        self
    }
}

#[diagnostic::do_not_recommend]
impl<S: AsScope + ?Sized> AsScope for &S {
    fn as_scope(&self) -> &Scope {
        (**self).as_scope()
    }
}

/// The scope behind `scope`.
pub fn scope_ref<S: AsScope + ?Sized>(scope: &S) -> &Scope {
    scope.as_scope()
}

// ---------------------------------------------------------------------------------------------
// #[scoped]: options and the two ways of running the body.

/// The breaker of one `#[scoped(circuit_breaker(..))]` fn, created on its first call and shared
/// by every later call (a breaker that forgot its failures between calls would never open).
pub fn persistent_breaker(
    cell: &'static OnceLock<CircuitBreaker>,
    failure_threshold: u32,
    reset_timeout: Duration,
) -> CircuitBreaker {
    cell.get_or_init(|| {
        CircuitBreaker::builder()
            .failure_threshold(failure_threshold.max(1))
            .reset_timeout(reset_timeout)
            .build()
            .expect("a failure threshold of at least 1 is always valid")
    })
    .clone()
}

/// Makes `parent` the builder's parent.
pub fn with_parent<S: AsScope + ?Sized>(builder: ScopeBuilder, parent: &S) -> ScopeBuilder {
    builder.parent(parent.as_scope())
}

/// Return types through which the scope's own error (timeout, cancellation, open breaker, a scope
/// that could not be opened) reaches the caller.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a `go_go_scope::Error`",
    label = "a #[scoped] fn reports its scope's timeout or cancellation through its return type",
    note = "return `Result<T, E>` with `E: From<go_go_scope::Error>`, or the tuple \
            `(Option<go_go_scope::Error>, Option<T>)`"
)]
pub trait CarriesError: Sized {
    /// The value returned when the scope ends the body early (or cannot be opened).
    fn from_scope_error(error: Error) -> Self;
}

impl<T, E: From<Error>> CarriesError for Result<T, E> {
    fn from_scope_error(error: Error) -> Self {
        Err(E::from(error))
    }
}

impl<T> CarriesError for (Option<Error>, Option<T>) {
    fn from_scope_error(error: Error) -> Self {
        (Some(error), None)
    }
}

/// Required by `#[scoped(timeout = ..)]`.
#[diagnostic::on_unimplemented(
    message = "`#[scoped(timeout = ..)]` needs a return type that can carry `go_go_scope::Error`, \
               and `{Self}` cannot",
    label = "when the deadline passes, the timeout error has nowhere to go in this return type",
    note = "return `Result<T, E>` with `E: From<go_go_scope::Error>`, or the tuple \
            `(Option<go_go_scope::Error>, Option<T>)`"
)]
pub trait TimeoutCarrier {
    /// Compile-time check, called as `<R as TimeoutCarrier>::check()`.
    fn check() {}
}
#[diagnostic::do_not_recommend]
impl<T, E: From<Error>> TimeoutCarrier for Result<T, E> {}
#[diagnostic::do_not_recommend]
impl<T> TimeoutCarrier for (Option<Error>, Option<T>) {}

/// Required by `#[scoped(circuit_breaker ..)]`.
#[diagnostic::on_unimplemented(
    message = "`#[scoped(circuit_breaker ..)]` needs a return type that can carry \
               `go_go_scope::Error`, and `{Self}` cannot",
    label = "an open breaker's error has nowhere to go in this return type",
    note = "return `Result<T, E>` with `E: From<go_go_scope::Error>`, or the tuple \
            `(Option<go_go_scope::Error>, Option<T>)`"
)]
pub trait BreakerCarrier {
    /// Compile-time check, called as `<R as BreakerCarrier>::check()`.
    fn check() {}
}
#[diagnostic::do_not_recommend]
impl<T, E: From<Error>> BreakerCarrier for Result<T, E> {}
#[diagnostic::do_not_recommend]
impl<T> BreakerCarrier for (Option<Error>, Option<T>) {}

// `Result<T, E>` only carries the error when `E: From<go_go_scope::Error>`; hiding the impls
// above from the explanation keeps the message about the option, not about `From`.

/// Names a return type for kind selection.
#[derive(Debug)]
pub struct Returns<R>(PhantomData<fn() -> R>);

impl<R> Returns<R> {
    /// The marker.
    pub const fn new() -> Returns<R> {
        Returns(PhantomData)
    }
}

impl<R> Default for Returns<R> {
    fn default() -> Returns<R> {
        Returns::new()
    }
}

/// Chosen when the return type carries [`Error`]: the body is raced against the scope.
#[derive(Clone, Copy, Debug)]
pub struct Carrying;

/// Chosen for other return types: the body runs to completion.
#[derive(Clone, Copy, Debug)]
pub struct Completing;

/// The preferred `#[scoped]` kind.
pub trait CarryingKind {
    /// The tag.
    fn __scoped_kind(&self) -> Carrying {
        Carrying
    }
}

impl<R: CarriesError> CarryingKind for Returns<R> {}

/// The fallback `#[scoped]` kind.
pub trait CompletingKind {
    /// The tag.
    fn __scoped_kind(&self) -> Completing {
        Completing
    }
}

impl<R> CompletingKind for &Returns<R> {}

impl Carrying {
    /// Runs `body` in the scope `builder` describes; the scope's cancellation or deadline ends
    /// the body and becomes the return value.
    pub fn run<F>(
        self,
        builder: ScopeBuilder,
        wait: bool,
        body: F,
    ) -> IntoReturn<impl Future<Output = Result<F::Output, Error>>>
    where
        F: Future,
        F::Output: CarriesError,
    {
        // A plain mapping future rather than an `async fn`: one state machine less to move
        // around on every call.
        IntoReturn {
            run: Scope::run(builder.wait(wait), |_| body),
        }
    }

    /// Runs `body` in a local scope (`#[scoped(local)]`) as [`Carrying::run`] does.
    pub fn run_local<'env, F, R>(
        self,
        builder: ScopeBuilder,
        wait: bool,
        body: F,
    ) -> IntoReturn<impl Future<Output = Result<R, Error>>>
    where
        F: for<'s> FnOnce(&'s LocalScope<'env, SendTasks>) -> LocalBody<'s, R>,
        R: CarriesError,
    {
        IntoReturn {
            run: Scope::local_until(builder.wait(wait), body, BodyEnd::OnCancel),
        }
    }

    /// Runs `body` in a local scope whose tasks need not be `Send` (`#[scoped(local(unsend))]`).
    pub fn run_local_unsend<'env, F, R>(
        self,
        builder: ScopeBuilder,
        wait: bool,
        body: F,
    ) -> IntoReturn<impl Future<Output = Result<R, Error>>>
    where
        F: for<'s> FnOnce(&'s LocalScope<'env, AnyTasks>) -> UnsendBody<'s, R>,
        R: CarriesError,
    {
        IntoReturn {
            run: Scope::local_unsend_until(builder.wait(wait), body, BodyEnd::OnCancel),
        }
    }
}

pin_project! {
    /// `Scope::run`'s result, its error turned into the fn's return type.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct IntoReturn<F> {
        #[pin]
        run: F,
    }
}

impl<F, R> Future for IntoReturn<F>
where
    F: Future<Output = Result<R, Error>>,
    R: CarriesError,
{
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        self.project().run.poll(cx).map(|result| match result {
            Ok(value) => value,
            Err(error) => R::from_scope_error(error),
        })
    }
}

impl Completing {
    /// Runs `body` to completion in the scope `builder` describes, then closes the scope.
    ///
    /// # Panics
    /// When the scope cannot be opened (no Tokio runtime, or a parent that already closed):
    /// the return type has no way to say so.
    pub async fn run<F: Future>(self, builder: ScopeBuilder, wait: bool, body: F) -> F::Output {
        opened(Scope::run_body(builder.wait(wait), |_| body, BodyEnd::Completed).await)
    }

    /// Runs `body` to completion in a local scope (`#[scoped(local)]`), as [`Completing::run`].
    ///
    /// # Panics
    /// As [`Completing::run`].
    pub async fn run_local<'env, F, R>(self, builder: ScopeBuilder, wait: bool, body: F) -> R
    where
        F: for<'s> FnOnce(&'s LocalScope<'env, SendTasks>) -> LocalBody<'s, R>,
    {
        opened(Scope::local_until(builder.wait(wait), body, BodyEnd::Completed).await)
    }

    /// Runs `body` to completion in a local scope whose tasks need not be `Send`.
    ///
    /// # Panics
    /// As [`Completing::run`].
    pub async fn run_local_unsend<'env, F, R>(self, builder: ScopeBuilder, wait: bool, body: F) -> R
    where
        F: for<'s> FnOnce(&'s LocalScope<'env, AnyTasks>) -> UnsendBody<'s, R>,
    {
        opened(Scope::local_unsend_until(builder.wait(wait), body, BodyEnd::Completed).await)
    }
}

/// The value of a body that ran to completion; a scope that could not even be opened has no
/// other way to be reported by a return type that cannot carry an error.
fn opened<R>(outcome: Result<R, Error>) -> R {
    match outcome {
        Ok(value) => value,
        Err(error) => panic!(
            "a #[scoped] fn could not open its scope: {error}; return a Result<T, E> with \
             E: From<go_go_scope::Error> to receive this as a value"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// try_go! / try_go_raw!

/// A caught panic's payload.
pub type Payload = Box<dyn Any + Send>;

/// Evaluates `f`, catching a panic.
pub fn catch<V>(f: impl FnOnce() -> V) -> Result<V, Payload> {
    catch_unwind(AssertUnwindSafe(f))
}

/// Awaits `future`, catching a panic in any of its polls.
pub fn catch_async<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind { future }
}

pin_project! {
    /// See [`catch_async`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct CatchUnwind<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Payload>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// What `try_go!` and `try_go_raw!` take apart.
#[diagnostic::on_unimplemented(
    message = "`try_go!` and `try_go_raw!` take a `Result` or an `Option`, not `{Self}`",
    label = "this expression is neither a `Result` nor an `Option`",
    note = "`try_go!(text.parse::<u32>())` takes a `Result`, `try_go!(args.next())` an `Option`"
)]
pub trait TryGoValue {
    /// The success value.
    type Value;
    /// The error kept by `try_go_raw!`.
    type Error;
    /// Splits into success and error.
    fn split(self) -> Result<Self::Value, Self::Error>;
}

#[diagnostic::do_not_recommend]
impl<T, E> TryGoValue for Result<T, E> {
    type Value = T;
    type Error = E;
    fn split(self) -> Result<T, E> {
        self
    }
}

/// The error of an `Option` that was `None`.
pub const NONE_MESSAGE: &str = "value was None";

#[diagnostic::do_not_recommend]
impl<T> TryGoValue for Option<T> {
    type Value = T;
    type Error = String;
    fn split(self) -> Result<T, String> {
        self.ok_or_else(|| NONE_MESSAGE.to_owned())
    }
}

/// The error of a `try_go!` expression, which becomes its message.
#[diagnostic::on_unimplemented(
    message = "`try_go!` keeps the error as its message, and `{Self}` has no `Display` to make one",
    label = "this expression's error type does not implement `std::fmt::Display`",
    note = "use `try_go_raw!` to keep the error itself: it gives `(Option<E>, Option<T>)`"
)]
pub trait ErrorMessage {
    /// The message.
    fn message(&self) -> String;
}

#[diagnostic::do_not_recommend]
impl<E: std::fmt::Display> ErrorMessage for E {
    fn message(&self) -> String {
        self.to_string()
    }
}

/// A `try_go!` value, probed for being a future that was not awaited.
#[derive(Debug)]
pub struct ValueProbe<V>(PhantomData<fn() -> V>);

impl<V> ValueProbe<V> {
    /// The probe for `caught`'s value.
    pub fn of(_caught: &Result<V, Payload>) -> ValueProbe<V> {
        ValueProbe(PhantomData)
    }
}

/// Chosen when the value is a future: it was not awaited.
#[derive(Clone, Copy, Debug)]
pub struct Unawaited;

/// Chosen for every other value.
#[derive(Clone, Copy, Debug)]
pub struct Settled;

/// The preferred `try_go!` kind: a future.
pub trait UnawaitedKind {
    /// The tag.
    fn __value_kind(&self) -> Unawaited {
        Unawaited
    }
}

impl<V: Future> UnawaitedKind for ValueProbe<V> {}

/// The fallback `try_go!` kind.
pub trait SettledKind {
    /// The tag.
    fn __value_kind(&self) -> Settled {
        Settled
    }
}

impl<V> SettledKind for &ValueProbe<V> {}

/// Never implemented: a future given to `try_go!` without `.await` is reported through it.
#[diagnostic::on_unimplemented(
    message = "`try_go!` and `try_go_raw!` were given a future, `{Self}`, that nothing awaits",
    label = "this future is never awaited",
    note = "end the expression with `.await`: `try_go!(fetch().await)`; the macro then awaits it \
            and catches a panic in any of its polls"
)]
pub trait AwaitedFirst {
    /// Never used.
    type Value;
}

impl Unawaited {
    /// Reports the missing `.await`.
    pub fn message<V: AwaitedFirst>(
        self,
        _caught: Result<V, Payload>,
    ) -> (Option<String>, Option<V::Value>) {
        unreachable!("`AwaitedFirst` has no implementation")
    }
}

impl Unawaited {
    /// `try_go_raw!`: reports the missing `.await`; the value's type becomes an error type, so
    /// nothing else is reported about it.
    pub fn settle<V: AwaitedFirst>(self, _caught: Result<V, Payload>) -> Result<V::Value, Payload> {
        unreachable!("`AwaitedFirst` has no implementation")
    }
}

impl Settled {
    /// `try_go_raw!`: the value as it is.
    pub fn settle<V>(self, caught: Result<V, Payload>) -> Result<V, Payload> {
        caught
    }
}

impl Settled {
    /// `try_go!`: the error as its message.
    pub fn message<V>(self, caught: Result<V, Payload>) -> (Option<String>, Option<V::Value>)
    where
        V: TryGoValue,
        V::Error: ErrorMessage,
    {
        try_go_message(caught)
    }
}

/// `try_go!`: the error as its message.
pub fn try_go_message<V>(caught: Result<V, Payload>) -> (Option<String>, Option<V::Value>)
where
    V: TryGoValue,
    V::Error: ErrorMessage,
{
    match caught {
        Ok(value) => match value.split() {
            Ok(value) => (None, Some(value)),
            Err(error) => (Some(error.message()), None),
        },
        Err(payload) => (Some(panic_message(payload)), None),
    }
}

/// Names the error type of a `try_go_raw!` for kind selection.
#[derive(Debug)]
pub struct RawTarget<E>(PhantomData<fn() -> E>);

impl<E> RawTarget<E> {
    /// The marker for `caught`'s error type.
    pub fn of<V: TryGoValue<Error = E>>(_caught: &Result<V, Payload>) -> RawTarget<E> {
        RawTarget(PhantomData)
    }
}

/// A panic becomes `E::from(Error::Panicked { .. })`.
#[derive(Clone, Copy, Debug)]
pub struct PanicAsError;

/// A panic becomes `E::from(message)`.
#[derive(Clone, Copy, Debug)]
pub struct PanicAsMessage;

/// The error type has no way to hold a panic: the panic keeps unwinding.
#[derive(Clone, Copy, Debug)]
pub struct PanicResumes;

/// First choice for `try_go_raw!`: the error type converts from [`Error`].
pub trait RawAsErrorKind {
    /// The tag.
    fn __raw_kind(&self) -> PanicAsError {
        PanicAsError
    }
}

impl<E: From<Error>> RawAsErrorKind for &&RawTarget<E> {}

/// Second choice: the error type converts from `String`.
pub trait RawAsMessageKind {
    /// The tag.
    fn __raw_kind(&self) -> PanicAsMessage {
        PanicAsMessage
    }
}

impl<E: From<String>> RawAsMessageKind for &RawTarget<E> {}

/// Last choice: nothing can hold the panic.
pub trait RawResumesKind {
    /// The tag.
    fn __raw_kind(&self) -> PanicResumes {
        PanicResumes
    }
}

impl<E> RawResumesKind for RawTarget<E> {}

type RawTuple<V> = (
    Option<<V as TryGoValue>::Error>,
    Option<<V as TryGoValue>::Value>,
);

fn split_raw<V: TryGoValue>(value: V) -> RawTuple<V> {
    match value.split() {
        Ok(value) => (None, Some(value)),
        Err(error) => (Some(error), None),
    }
}

impl PanicAsError {
    /// Splits `caught`, turning a panic into [`Error::Panicked`].
    pub fn split<V>(self, caught: Result<V, Payload>) -> RawTuple<V>
    where
        V: TryGoValue,
        V::Error: From<Error>,
    {
        match caught {
            Ok(value) => split_raw(value),
            Err(payload) => (Some(Error::from_panic(payload).into()), None),
        }
    }
}

impl PanicAsMessage {
    /// Splits `caught`, turning a panic into its message.
    pub fn split<V>(self, caught: Result<V, Payload>) -> RawTuple<V>
    where
        V: TryGoValue,
        V::Error: From<String>,
    {
        match caught {
            Ok(value) => split_raw(value),
            Err(payload) => (Some(panic_message(payload).into()), None),
        }
    }
}

impl PanicResumes {
    /// Splits `caught`; a panic continues to unwind.
    pub fn split<V: TryGoValue>(self, caught: Result<V, Payload>) -> RawTuple<V> {
        match caught {
            Ok(value) => split_raw(value),
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}
