//! Spans for scopes and tasks, emitted through [`tracing`], so any subscriber sees them; with the
//! cargo feature `otel` they also reach OpenTelemetry: through your own tracer
//! ([`ScopeBuilder::tracer`](crate::ScopeBuilder::tracer)), or with feature `otlp` through the
//! pipeline of the `otel` module.
//!
//! # What is emitted
//! - One span per scope, named `scope`, from [`build`](crate::ScopeBuilder::build) to the end of
//!   [`close`](crate::Scope::close). Its parent is the parent scope's span when the parent was
//!   given explicitly, otherwise the span current where the scope was built (the task or the
//!   `Scope::run` body it was built in, or your own request span).
//! - One span per task, named `scope.task`, child of its scope's span (also when the task is
//!   spawned from another thread), from spawn to the task's end.
//!
//! `tracing` span names are static, so a scope's or task's own name is the field `otel.name`,
//! which OpenTelemetry layers use as the span name.
//!
//! | span | fields (OpenTelemetry attributes) |
//! |---|---|
//! | scope | `scope.timeout` (ms, when set), `scope.has_parent_signal` (a cancellation from outside reaches the scope: it has a parent scope or a `cancel_on` token), `scope.has_parent_scope`, `scope.concurrency` (when set on this scope), `scope.duration_ms` and `scope.errors` (failed tasks) at close, `error.type` on failure |
//! | task | `task.index`, `task.has_retry`, `task.has_timeout`, `task.has_circuit_breaker`, `task.scope_concurrency` (0: no limit), `task.timeout_ms` (the per-attempt timeout, when set), `goscope.task.wait_ms` (waiting for a concurrency permit), `task.duration_ms` (body start to end), `task.retry_attempts`, `task.error_reason` and `error.type` on failure |
//!
//! The original library's keys keep their names (`scope.*`, `task.*`); `error.type` is
//! OpenTelemetry's; keys this crate adds are under [`ATTRIBUTE_NAMESPACE`] (`goscope.`). The
//! spans' instrumentation scope is `go-go-scope` with the crate's version.
//!
//! Tasks with a circuit breaker, a concurrency limit or a retry policy also get, only for the
//! parts they have: `task.circuit_breaker.state` and `task.circuit_breaker.failure_count` (as
//! found at spawn), `task.circuit_breaker.rejected` (refused by the breaker);
//! `task.concurrency.available_before` and `task.concurrency.waiting_before` (free permits and
//! waiting tasks before the task took its permit); `task.retry.max_retries`,
//! `task.retry.has_delay`, `task.retry.has_condition`, and at the end
//! `task.retry.succeeded_after` (attempts made, when a retry succeeded),
//! `task.retry.condition_rejected` (its `retry_if` declined the error) or
//! `task.retry.max_retries_exceeded` with `task.retry.attempts_made`.
//!
//! Attributes of your own are added with [`ScopeBuilder::attr`](crate::ScopeBuilder::attr) and,
//! from inside a task, [`record_task_attr`]. In OpenTelemetry they are attributes under their own
//! keys; a plain `tracing` subscriber sees them in one `attrs` field, since `tracing` fields are
//! fixed when a span is declared.
//!
//! A failed task's span gets `otel.status_code = "ERROR"`, `otel.status_description` (the
//! error's message), `task.error_reason` (`timeout`, `circuit_breaker_open`, `aborted` for a
//! cancellation, `panic`, or `exception`), `error.type` (the [`Error`] variant, as in
//! `go_go_scope::Error::Timeout`) and an event named `exception` with `exception.message`,
//! `exception.type` and, when the error has causes, `exception.stacktrace` (its source chain,
//! one cause per line, as `tracing-opentelemetry` records an error's chain). A scope span is an error when the scope timed out, was cancelled (by
//! [`Scope::cancel`](crate::Scope::cancel), its parent, or being dropped unclosed) or a disposer
//! failed; a normal close that cancels leftover tasks is not, and neither are those tasks'
//! spans (a task cut off by a timeout is an error).
//!
//! # Levels
//! Spans and their `exception` events are `DEBUG`, or `INFO` for scopes given a tracer with
//! [`ScopeBuilder::tracer`](crate::ScopeBuilder::tracer) (`#[scoped(tracer)]`), inherited by
//! their child scopes. So a `fmt` subscriber at `INFO` shows nothing of go-go-scope until you
//! ask for tracing, and an OpenTelemetry pipeline filtered at `INFO` exports exactly the scopes
//! you asked it to. The target is `go_go_scope`. Without a subscriber, a disabled span costs one
//! cached check per scope and per task.
//!
//! ```
//! use go_go_scope::{Scope, ScopeTracer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Any `tracing` subscriber sees the spans; with feature `otlp`, `go_go_scope::otel` sends
//! // them to an OTLP endpoint.
//! Scope::run(
//!     Scope::builder()
//!         .name("checkout")                 // the span's `otel.name`
//!         .tracer(ScopeTracer::global())    // INFO spans for this scope and its children
//!         .attr("cart.items", 3),
//!     |s| async move {
//!         s.spawn(async {
//!             go_go_scope::record_task_attr("payment.provider", "acme");
//!         })
//!         .await;
//!     },
//! )
//! .await
//! .unwrap();
//! # }
//! ```

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{Dispatch, Level, Span, field};

use crate::core::error::Error;
use crate::core::observer::{
    ClosedScope, Observer, SpawnedTask, TaskDetails, TaskEnd, TaskWatch, Wants,
};
use crate::core::scope::LimitSnapshot;
use crate::core::scope::ScopeBuilder;
use crate::resilience::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::resilience::task_builder::{RetryEnd, TaskRun, task_run};
use crate::util::sync::lock;

/// The `tracing` target of every span and event of this module.
const TARGET: &str = "go_go_scope";

/// The value of a span attribute: a bool, an integer, a float or a string.
///
/// Integers that do not fit an `i64` (a huge `u64`) are kept as their decimal string.
///
/// ```
/// use go_go_scope::AttrValue;
///
/// assert_eq!(AttrValue::from(7_u32), AttrValue::Int(7));
/// assert_eq!(AttrValue::from(u64::MAX), AttrValue::Str("18446744073709551615".into()));
/// assert_eq!(AttrValue::from("db").to_string(), "db");
/// assert_eq!(AttrValue::from(true).to_string(), "true");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AttrValue {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(Cow<'static, str>),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Float(x) => write!(f, "{x}"),
            AttrValue::Str(s) => f.write_str(s),
        }
    }
}

macro_rules! small_ints {
    ($($t:ty),*) => {$(
        impl From<$t> for AttrValue {
            fn from(v: $t) -> AttrValue {
                AttrValue::Int(i64::from(v))
            }
        }
    )*};
}
small_ints!(i8, i16, i32, i64, u8, u16, u32);

macro_rules! wide_ints {
    ($($t:ty),*) => {$(
        impl From<$t> for AttrValue {
            fn from(v: $t) -> AttrValue {
                match i64::try_from(v) {
                    Ok(i) => AttrValue::Int(i),
                    Err(_) => AttrValue::Str(Cow::Owned(v.to_string())),
                }
            }
        }
    )*};
}
wide_ints!(u64, usize, isize, i128, u128);

impl From<f64> for AttrValue {
    fn from(v: f64) -> AttrValue {
        AttrValue::Float(v)
    }
}

impl From<f32> for AttrValue {
    fn from(v: f32) -> AttrValue {
        AttrValue::Float(f64::from(v))
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> AttrValue {
        AttrValue::Bool(v)
    }
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> AttrValue {
        AttrValue::Str(Cow::Owned(v.to_owned()))
    }
}

impl From<&String> for AttrValue {
    fn from(v: &String) -> AttrValue {
        AttrValue::Str(Cow::Owned(v.clone()))
    }
}

impl From<String> for AttrValue {
    fn from(v: String) -> AttrValue {
        AttrValue::Str(Cow::Owned(v))
    }
}

impl From<Cow<'static, str>> for AttrValue {
    fn from(v: Cow<'static, str>) -> AttrValue {
        AttrValue::Str(v)
    }
}

impl From<char> for AttrValue {
    fn from(v: char) -> AttrValue {
        AttrValue::Str(Cow::Owned(v.to_string()))
    }
}

/// Attributes of a span, in the order given; a later key does not replace an earlier one.
pub(crate) type Attrs = Vec<(Cow<'static, str>, AttrValue)>;

/// Which OpenTelemetry tracer a scope's spans go to; see
/// [`ScopeBuilder::tracer`](crate::ScopeBuilder::tracer).
///
/// Giving a scope a tracer makes its spans (and its child scopes' spans) `INFO` instead of
/// `DEBUG`. With the feature `otel`, when no `tracing-opentelemetry` layer is installed the
/// spans are sent straight to this tracer (the global provider's by default); when one is
/// installed, they go through it, nested with your own `tracing` spans.
///
/// ```
/// use go_go_scope::{Scope, ScopeTracer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = Scope::builder().name("checkout").tracer(ScopeTracer::global()).build().unwrap();
/// scope.spawn(async {}).await;
/// scope.close().await.unwrap();
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ScopeTracer {
    kind: TracerKind,
}

#[derive(Clone, Default)]
enum TracerKind {
    /// `opentelemetry::global::tracer("go-go-scope")`, resolved when a scope is built.
    #[default]
    Global,
    #[cfg(feature = "otel")]
    Explicit(Arc<opentelemetry::global::BoxedTracer>),
}

impl fmt::Debug for ScopeTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            TracerKind::Global => "ScopeTracer::Global",
            #[cfg(feature = "otel")]
            TracerKind::Explicit(_) => "ScopeTracer::Explicit",
        })
    }
}

impl ScopeTracer {
    /// The global OpenTelemetry tracer provider's tracer (what `#[scoped(tracer)]` uses).
    ///
    /// ```
    /// let scope = go_go_scope::Scope::builder()
    ///     .tracer(go_go_scope::ScopeTracer::global());
    /// # drop(scope);
    /// ```
    pub fn global() -> ScopeTracer {
        ScopeTracer::default()
    }

    /// A specific OpenTelemetry tracer, for example `provider.tracer("my-app")`.
    ///
    /// *Feature `otel`.*
    ///
    /// ```
    /// use go_go_scope::ScopeTracer;
    /// use go_go_scope::opentelemetry::global;
    ///
    /// // Any tracer: the global provider's, or your SDK provider's `provider.tracer("my-app")`.
    /// let tracer = ScopeTracer::new(global::tracer("my-app"));
    /// # drop(tracer);
    /// ```
    #[cfg(feature = "otel")]
    pub fn new<T>(tracer: T) -> ScopeTracer
    where
        T: opentelemetry::trace::Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        ScopeTracer {
            kind: TracerKind::Explicit(Arc::new(opentelemetry::global::BoxedTracer::new(
                Box::new(tracer),
            ))),
        }
    }
}

#[cfg(feature = "otel")]
impl From<opentelemetry::global::BoxedTracer> for ScopeTracer {
    fn from(tracer: opentelemetry::global::BoxedTracer) -> ScopeTracer {
        ScopeTracer {
            kind: TracerKind::Explicit(Arc::new(tracer)),
        }
    }
}

/// *Feature `otlp`* (which brings the OpenTelemetry SDK).
#[cfg(feature = "otlp")]
impl From<opentelemetry_sdk::trace::SdkTracer> for ScopeTracer {
    fn from(tracer: opentelemetry_sdk::trace::SdkTracer) -> ScopeTracer {
        ScopeTracer::new(tracer)
    }
}

/// What the builder collects for the scope's span.
#[derive(Clone, Default)]
pub(crate) struct TraceOptions {
    tracer: Option<ScopeTracer>,
    attrs: Attrs,
    /// The remote parent given with `remote_parent`.
    #[cfg(feature = "otel")]
    remote: Option<opentelemetry::Context>,
}

impl ScopeBuilder {
    /// Gives the scope a tracer: its span and its tasks' spans become `INFO` (child scopes
    /// inherit this), and with feature `otel` they reach OpenTelemetry even without a
    /// `tracing-opentelemetry` layer; see [`ScopeTracer`] and the module [`trace`](crate::observe::trace).
    ///
    /// Accepts [`ScopeTracer::global()`], and with feature `otel` any OpenTelemetry tracer:
    /// `opentelemetry::global::tracer("my-app")` or an SDK provider's `tracer("my-app")`.
    ///
    /// ```
    /// use go_go_scope::{Scope, ScopeTracer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = Scope::builder().name("api").tracer(ScopeTracer::global()).build().unwrap();
    /// let child = scope.child().name("db").build().unwrap(); // traced too
    /// child.close().await.unwrap();
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn tracer(mut self, tracer: impl Into<ScopeTracer>) -> Self {
        self.features().trace.tracer = Some(tracer.into());
        self
    }

    /// Adds an attribute to the scope's span (repeat for several); integers, floats, bools and
    /// strings are accepted. This is what `#[scoped(attrs(..))]` and recorded fn arguments
    /// (`arg.NAME`) use.
    ///
    /// ```
    /// use go_go_scope::{Scope, ScopeTracer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = Scope::builder()
    ///     .name("process-order")
    ///     .tracer(ScopeTracer::global())
    ///     .attr("order.id", 4711_u64)
    ///     .attr("order.priority", "express")
    ///     .build()
    ///     .unwrap();
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn attr(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<AttrValue>) -> Self {
        self.features().trace.attrs.push((key.into(), value.into()));
        self
    }
}

/// Records an attribute on the span of the task whose code calls it; returns false (and does
/// nothing) outside a task or when the task has no span (no subscriber, or filtered out).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// let task = scope.spawn(async {
///     // Without a subscriber the task has no span, so nothing is recorded.
///     go_go_scope::record_task_attr("cache.hit", true)
/// });
/// assert_eq!(task.await.1, Some(false));
/// scope.close().await.unwrap();
/// # }
/// ```
pub fn record_task_attr(key: impl Into<Cow<'static, str>>, value: impl Into<AttrValue>) -> bool {
    PENDING_ATTRS.with(|pending| match pending.borrow_mut().as_mut() {
        Some(attrs) => {
            attrs.push((key.into(), value.into()));
            true
        }
        None => false,
    })
}

thread_local! {
    /// Attributes recorded by the task being polled on this thread (`Some` only while a task
    /// with a span is polled); applied to its span when the poll returns.
    static PENDING_ATTRS: RefCell<Option<Attrs>> = const { RefCell::new(None) };
}

/// How a scope's spans reach OpenTelemetry, if they do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only `tracing`: user attributes go in the `attrs` field.
    Tracing,
    /// A `tracing-opentelemetry` layer turns the spans into OpenTelemetry spans.
    #[cfg(feature = "otel")]
    Layer,
    /// No layer, but a tracer: OpenTelemetry spans are made directly beside the `tracing` ones.
    #[cfg(feature = "otel")]
    Direct,
}

macro_rules! exception_event {
    ($traced:expr, $span:expr, $error:expr) => {{
        let message = $error.to_string();
        let kind = error_type($error);
        let causes = crate::util::log::causes($error);
        let causes = causes.as_deref();
        if $traced {
            tracing::event!(target: TARGET, parent: $span, Level::INFO,
                exception.message = message.as_str(), exception.type = kind,
                exception.stacktrace = causes, "exception");
        } else {
            tracing::event!(target: TARGET, parent: $span, Level::DEBUG,
                exception.message = message.as_str(), exception.type = kind,
                exception.stacktrace = causes, "exception");
        }
    }};
}

/// A span's id and the subscriber that recorded it. Child spans are created in that same
/// subscriber, whatever subscriber is current where the child is made (a task spawned from a
/// thread with another default subscriber), since span ids mean nothing to another subscriber.
fn dispatch_of(span: &Span) -> Option<(tracing::Id, Dispatch)> {
    span.with_subscriber(|(id, dispatch)| (id.clone(), dispatch.clone()))
}

/// Runs `last_words` on `span`, then drops it, all with the subscriber that recorded the span
/// as the current one: events go to it, and when a span closes the registry releases its parent
/// through the current subscriber (on a worker thread with another default subscriber, the
/// parent would otherwise never close). `last_words` runs inside the span: entering it once
/// more moves its end to now (tracing-opentelemetry ends a span at its last exit).
fn end_span(span: Span, last_words: impl FnOnce(&Span)) {
    let dispatch = span.with_subscriber(|(_, dispatch)| dispatch.clone());
    let end = move || {
        span.in_scope(|| last_words(&span));
        drop(span);
    };
    match dispatch {
        Some(dispatch) => tracing::dispatcher::with_default(&dispatch, end),
        None => end(),
    }
}

/// The OpenTelemetry instrumentation scope of this crate's spans: its name and version.
#[cfg(feature = "otel")]
pub(crate) fn instrumentation_scope() -> opentelemetry::InstrumentationScope {
    opentelemetry::InstrumentationScope::builder("go-go-scope")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

#[cfg(all(test, feature = "otel"))]
#[test]
fn the_instrumentation_scope_carries_the_crate_version() {
    let scope = instrumentation_scope();
    assert_eq!(scope.name(), "go-go-scope");
    assert_eq!(scope.version(), Some(env!("CARGO_PKG_VERSION")));
}

/// True for the cancellation every busy close applies to leftover tasks: not a failure.
fn is_normal_close(error: &Error) -> bool {
    matches!(error, Error::Cancelled { reason } if reason == "scope closed")
}

/// True when a string attribute value must be quoted to parse back from `key=value` text.
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value.starts_with('"')
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '=' || c.is_control())
}

fn apply_attrs(span: &Span, mode: Mode, attrs: &Attrs) {
    if attrs.is_empty() || span.is_disabled() {
        return;
    }
    match mode {
        #[cfg(feature = "otel")]
        Mode::Layer => {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            for (key, value) in attrs {
                span.set_attribute(key.clone(), otel_direct::value(value));
            }
        }
        _ => {
            // One field for any number of attributes: `key=value` pairs separated by spaces,
            // strings quoted and escaped (`{:?}`) when they would otherwise be ambiguous, so the
            // text reads well in logs and parses back exactly (the testing span collector does).
            let text = attrs
                .iter()
                .map(|(k, v)| match v {
                    AttrValue::Str(s) if needs_quotes(s) => format!("{k}={s:?}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" ");
            span.record("attrs", text.as_str());
        }
    }
}

/// `task.error_reason` for a failure. Extend here when new failure kinds appear.
pub(crate) fn error_reason(error: &Error) -> &'static str {
    match error {
        Error::Timeout { .. } => "timeout",
        Error::CircuitOpen => "circuit_breaker_open",
        Error::Cancelled { .. } => "aborted",
        Error::Panicked { .. } => "panic",
        _ => "exception",
    }
}

/// `exception.type` for a failure: the variant of [`Error`].
fn error_type(error: &Error) -> &'static str {
    match error {
        Error::Timeout { .. } => "go_go_scope::Error::Timeout",
        Error::CircuitOpen => "go_go_scope::Error::CircuitOpen",
        Error::Cancelled { .. } => "go_go_scope::Error::Cancelled",
        Error::Panicked { .. } => "go_go_scope::Error::Panicked",
        Error::Failed(_) => "go_go_scope::Error::Failed",
        Error::Disposal { .. } => "go_go_scope::Error::Disposal",
        _ => "go_go_scope::Error",
    }
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Integers are recorded as `i64`: `tracing-opentelemetry` turns a `u64` field into a string.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn millis_i64(d: Duration) -> i64 {
    saturating_i64(millis_u64(d))
}

fn round_millis(d: Duration) -> u64 {
    u64::try_from((d.as_nanos() + 500_000) / 1_000_000).unwrap_or(u64::MAX)
}

// Declared after the macros and helpers above, which they use; the span macros they define
// are used by the schema's test, declared after them.
#[macro_use]
mod scope_span;
#[macro_use]
mod task_span;
mod schema;

pub use schema::{ATTRIBUTE_NAMESPACE, SCOPE_SPAN_ATTRIBUTES, TASK_SPAN_ATTRIBUTES};
#[cfg(feature = "otel")]
mod otel_direct;
#[cfg(feature = "otel")]
mod propagation;
#[cfg(feature = "otel")]
pub use propagation::{TraceCarrier, TraceCarrierMut, inject_current};

pub(crate) use scope_span::{ScopeSpanInfo, ScopeTrace};
#[cfg(feature = "otel")]
use task_span::{Details, TaskSpanInfo};
