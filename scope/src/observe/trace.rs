//! Spans for scopes and tasks, emitted through [`tracing`], so any subscriber sees them; with the
//! cargo feature `otel` they also reach OpenTelemetry (see the `otel` module).
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
//! | scope | `scope.timeout` (ms, when set), `scope.has_parent_signal`, `scope.has_parent_scope`, `scope.concurrency` (when set on this scope), `scope.duration_ms` and `scope.errors` (failed tasks) at close |
//! | task | `task.index`, `task.has_retry`, `task.has_timeout`, `task.has_circuit_breaker`, `task.scope_concurrency` (0: no limit), `task.wait_ms` (waiting for a concurrency permit), `task.duration_ms` (body start to end), `task.retry_attempts`, `task.error_reason` on failure |
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
//! cancellation, `panic`, or `exception`) and an event named `exception` with
//! `exception.message` and `exception.type`. A scope span is an error when the scope timed out,
//! was cancelled (by [`Scope::cancel`](crate::Scope::cancel), its parent, or being dropped
//! unclosed) or a disposer failed; a normal close that cancels leftover tasks is not.
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
//! // Any `tracing` subscriber sees the spans; with feature `otel`, `go_go_scope::otel` sends
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
    /// use opentelemetry::trace::TracerProvider as _;
    /// use go_go_scope::ScopeTracer;
    ///
    /// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    /// let tracer = ScopeTracer::new(provider.tracer("my-app"));
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

#[cfg(feature = "otel")]
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

/// A scope's span state, kept in the scope.
pub(crate) struct ScopeTrace {
    /// The tracer asked for, on this scope or inherited; `Some` makes the spans `INFO`.
    tracer: Option<ScopeTracer>,
    /// `None` when nothing records this scope's spans.
    live: Option<Box<LiveScope>>,
}

struct LiveScope {
    /// Taken (and so ended) when the scope closes.
    open: Mutex<Option<OpenScope>>,
    created: Instant,
    /// Failed tasks, counted by their spans as they end.
    errors: Arc<AtomicU64>,
    /// The limit tasks report as `task.scope_concurrency` (0: none).
    task_concurrency: u64,
    mode: Mode,
}

impl Drop for LiveScope {
    fn drop(&mut self) {
        // A scope that never closed (its runtime went away): end its span where it belongs.
        let open = self
            .open
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(open) = open {
            end_span(open.span, |_| {});
        }
    }
}

struct OpenScope {
    span: Span,
    #[cfg(feature = "otel")]
    direct: Option<otel_direct::DirectSpan>,
}

/// What a new scope tells its span.
pub(crate) struct ScopeSpanInfo<'a> {
    pub(crate) name: &'a str,
    pub(crate) custom_name: bool,
    pub(crate) timeout: Option<Duration>,
    /// The `concurrency` given to this scope's builder.
    pub(crate) concurrency_option: Option<usize>,
    /// The limit in force (own or inherited).
    pub(crate) concurrency: Option<usize>,
    /// The parent scope's span state, when it keeps one.
    pub(crate) parent: Option<&'a ScopeTrace>,
    /// The scope has a parent scope.
    pub(crate) has_parent: bool,
    /// True when the parent was given with `.parent(..)`/`child()` rather than found ambient.
    pub(crate) explicit_parent: bool,
}

macro_rules! scope_span {
    ($level:expr, $parent:expr, $has_parent:expr) => {
        tracing::span!(
            target: TARGET,
            parent: $parent,
            $level,
            "scope",
            otel.name = field::Empty,
            scope.timeout = field::Empty,
            scope.has_parent_signal = $has_parent,
            scope.has_parent_scope = $has_parent,
            scope.concurrency = field::Empty,
            scope.duration_ms = field::Empty,
            scope.errors = field::Empty,
            attrs = field::Empty,
            otel.status_code = field::Empty,
            otel.status_description = field::Empty,
        )
    };
}

macro_rules! task_span {
    ($level:expr, $parent:expr, $index:expr, $info:expr, $concurrency:expr) => {
        tracing::span!(
            target: TARGET,
            parent: $parent,
            $level,
            "scope.task",
            otel.name = field::Empty,
            task.index = saturating_i64($index),
            task.has_retry = $info.has_retry,
            task.has_timeout = $info.timeout.is_some(),
            task.has_circuit_breaker = $info.has_circuit_breaker,
            task.scope_concurrency = saturating_i64($concurrency),
            task.timeout_ms = field::Empty,
            task.wait_ms = field::Empty,
            task.duration_ms = field::Empty,
            task.retry_attempts = field::Empty,
            task.error_reason = field::Empty,
            task.circuit_breaker.state = field::Empty,
            task.circuit_breaker.failure_count = field::Empty,
            task.circuit_breaker.rejected = field::Empty,
            task.concurrency.available_before = field::Empty,
            task.concurrency.waiting_before = field::Empty,
            task.retry.max_retries = field::Empty,
            task.retry.has_delay = field::Empty,
            task.retry.has_condition = field::Empty,
            task.retry.succeeded_after = field::Empty,
            task.retry.condition_rejected = field::Empty,
            task.retry.max_retries_exceeded = field::Empty,
            task.retry.attempts_made = field::Empty,
            attrs = field::Empty,
            otel.status_code = field::Empty,
            otel.status_description = field::Empty,
        )
    };
}

macro_rules! exception_event {
    ($traced:expr, $span:expr, $error:expr) => {{
        let message = $error.to_string();
        let kind = error_type($error);
        if $traced {
            tracing::event!(target: TARGET, parent: $span, Level::INFO,
                exception.message = %message, exception.type = kind, "exception");
        } else {
            tracing::event!(target: TARGET, parent: $span, Level::DEBUG,
                exception.message = %message, exception.type = kind, "exception");
        }
    }};
}

impl ScopeTrace {
    /// True when this scope's span is recorded, so its tasks' spans may be.
    pub(crate) fn records(&self) -> bool {
        self.live.is_some()
    }

    /// True when the scope must keep this state: its span is recorded, or it has a tracer its
    /// children inherit.
    pub(crate) fn is_kept(&self) -> bool {
        self.live.is_some() || self.tracer.is_some()
    }

    pub(crate) fn start(options: TraceOptions, info: ScopeSpanInfo<'_>) -> ScopeTrace {
        let tracer = options
            .tracer
            .or_else(|| info.parent.and_then(|p| p.tracer.clone()));
        let traced = tracer.is_some();
        let has_parent = info.has_parent;
        // An explicit parent's span, with the subscriber that recorded it.
        let parent = info
            .parent
            .filter(|_| info.explicit_parent)
            .and_then(ScopeTrace::span_handle);
        let new_span = || {
            let parent_id = || match &parent {
                Some((id, _)) => Some(id.clone()),
                None => Span::current().id(),
            };
            if traced {
                scope_span!(Level::INFO, parent_id(), has_parent)
            } else {
                scope_span!(Level::DEBUG, parent_id(), has_parent)
            }
        };
        let span = match &parent {
            Some((_, dispatch)) => tracing::dispatcher::with_default(dispatch, new_span),
            None => new_span(),
        };
        if !span.is_disabled() {
            // Before `choose`: an OpenTelemetry layer fixes the name once the span has started.
            if info.custom_name {
                span.record("otel.name", info.name);
            }
            if let Some(timeout) = info.timeout {
                span.record("scope.timeout", millis_i64(timeout));
            }
            if let Some(limit) = info.concurrency_option {
                span.record("scope.concurrency", saturating_i64(limit as u64));
            }
        }
        #[cfg(feature = "otel")]
        let (mode, direct) = otel_direct::choose(&span, tracer.as_ref(), &info, &options.attrs);
        #[cfg(not(feature = "otel"))]
        let mode = Mode::Tracing;
        #[cfg(feature = "otel")]
        let recorded = !span.is_disabled() || direct.is_some();
        #[cfg(not(feature = "otel"))]
        let recorded = !span.is_disabled();
        if !recorded {
            return ScopeTrace { tracer, live: None };
        }
        apply_attrs(&span, mode, &options.attrs);
        ScopeTrace {
            tracer,
            live: Some(Box::new(LiveScope {
                open: Mutex::new(Some(OpenScope {
                    span,
                    #[cfg(feature = "otel")]
                    direct,
                })),
                created: Instant::now(),
                errors: Arc::new(AtomicU64::new(0)),
                task_concurrency: info.concurrency.map_or(0, |n| n as u64),
                mode,
            })),
        }
    }

    /// The scope span's id and the subscriber that recorded it, while the span is open.
    fn span_handle(&self) -> Option<(tracing::Id, Dispatch)> {
        let live = self.live.as_ref()?;
        let open = lock(&live.open);
        dispatch_of(&open.as_ref()?.span)
    }

    fn traced(&self) -> bool {
        self.tracer.is_some()
    }

    /// Ends the scope's span: records its duration and failed-task count, and marks it as an
    /// error when `cancelled_by` (the scope's cancellation, if any) or `close_error` says so.
    pub(crate) fn close(&self, cancelled_by: Option<&Error>, close_error: Option<&Error>) {
        let Some(live) = &self.live else { return };
        let Some(open) = lock(&live.open).take() else {
            return;
        };
        let duration_ms = live.created.elapsed().as_nanos() as f64 / 1e6;
        let errors = live.errors.load(Ordering::Relaxed);
        let failure = close_error.or(cancelled_by.filter(|e| !is_normal_close(e)));
        let traced = self.traced();
        #[cfg(feature = "otel")]
        if let Some(direct) = &open.direct {
            direct.end_scope(duration_ms, errors, failure);
        }
        end_span(open.span, |span| {
            span.record("scope.duration_ms", duration_ms);
            span.record("scope.errors", saturating_i64(errors));
            if let Some(error) = failure {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", error.to_string().as_str());
                exception_event!(traced, span, error);
            }
        });
    }

    /// The scope body's entry into the scope's span, while the span is open.
    fn body_entry(&self) -> Option<Entry> {
        let live = self.live.as_ref()?;
        let open = lock(&live.open);
        let open = open.as_ref()?;
        Some(Entry {
            span: open.span.clone(),
            dispatch: open.span.with_subscriber(|(_, dispatch)| dispatch.clone()),
            #[cfg(feature = "otel")]
            cx: open.direct.as_ref().map(|d| d.cx.clone()),
        })
    }
}

/// Spans plug into the core's seam: the scope's span ends when the scope closes, each task's
/// span is a watch over the task's polls, and the scope body runs inside the scope's span.
impl Observer for ScopeTrace {
    fn wants(&self) -> Wants {
        Wants {
            durations: self.records(),
            spawn_time: false,
            limit_details: self.records(),
            watches: self.records(),
        }
    }

    fn watch_task(&self, task: &SpawnedTask<'_>) -> Option<Box<dyn TaskWatch>> {
        let live = self.live.as_ref()?;
        let run = task_run(task.details);
        let breaker = task.scope.feature::<CircuitBreaker>();
        let info = TaskSpanInfo {
            attrs: run
                .as_ref()
                .map(|run| run.attrs().clone())
                .unwrap_or_default(),
            has_retry: task
                .details
                .and_then(|d| d.max_retries())
                .is_some_and(|n| n > 0),
            timeout: task.details.and_then(|d| d.timeout()),
            has_circuit_breaker: breaker.is_some(),
            breaker_before: breaker.as_deref().map(CircuitBreaker::snapshot),
            limit_before: task.limit_before,
            run,
        };
        let span = TaskTrace::start_recorded(self, live, task.index, task.name, info).0?;
        Some(span)
    }

    fn watch_body(&self) -> Option<Box<dyn TaskWatch>> {
        self.body_entry()
            .map(|entry| Box::new(entry) as Box<dyn TaskWatch>)
    }

    fn scope_closed(&self, scope: &ClosedScope<'_>) {
        self.close(scope.cancelled_by, scope.error);
    }
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

/// The scope body's place in the scope's span.
struct Entry {
    span: Span,
    /// The subscriber that recorded `span`.
    dispatch: Option<Dispatch>,
    #[cfg(feature = "otel")]
    cx: Option<opentelemetry::Context>,
}

impl TaskWatch for Entry {
    fn poll(&mut self, poll_body: &mut dyn FnMut()) {
        let entry = self;
        let mut poll = || {
            let _entered = entry.span.enter();
            #[cfg(feature = "otel")]
            let _attached = entry.cx.clone().map(opentelemetry::Context::attach);
            poll_body();
        };
        match &entry.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, poll),
            None => poll(),
        }
    }

    fn end(self: Box<Self>, _end: &TaskEnd<'_>) {}
}

/// What a task tells its span besides its index and name; the task builder fills it.
#[derive(Default)]
pub(crate) struct TaskSpanInfo {
    /// The task's own attributes.
    pub(crate) attrs: Attrs,
    /// The task retries on failure.
    pub(crate) has_retry: bool,
    /// The per-attempt timeout, if any.
    pub(crate) timeout: Option<Duration>,
    /// A circuit breaker guards the task.
    pub(crate) has_circuit_breaker: bool,
    /// The breaker's state and failure count when the task was spawned (read only when the
    /// span is recorded).
    pub(crate) breaker_before: Option<(CircuitState, u32)>,
    /// The scope's limit before the task took its permit (read only when recorded).
    pub(crate) limit_before: Option<LimitSnapshot>,
    /// The attempt loop's record (retries made, when the first attempt began), if the task
    /// has one; read when the task ends.
    pub(crate) run: Option<Arc<TaskRun>>,
}

/// A task's span state, kept in the task's completion record. `None` (one word) when nothing
/// records it.
pub(crate) struct TaskTrace(Option<Box<TaskSpan>>);

struct TaskSpan {
    span: Span,
    /// The subscriber that recorded `span`.
    dispatch: Option<Dispatch>,
    traced: bool,
    /// A circuit breaker guards the task.
    guarded: bool,
    mode: Mode,
    spawned: Instant,
    started: Option<Instant>,
    run: Option<Arc<TaskRun>>,
    /// The scope span's count of failed tasks.
    scope_errors: Arc<AtomicU64>,
    #[cfg(feature = "otel")]
    direct: Option<opentelemetry::Context>,
}

impl TaskWatch for TaskSpan {
    fn poll(&mut self, poll: &mut dyn FnMut()) {
        self.poll_in_span(poll);
    }

    fn end(self: Box<Self>, end: &TaskEnd<'_>) {
        (*self).finish(end.error);
    }
}

impl TaskTrace {
    #[inline(never)]
    fn start_recorded(
        scope: &ScopeTrace,
        live: &LiveScope,
        index: u64,
        name: Option<&str>,
        info: TaskSpanInfo,
    ) -> TaskTrace {
        let traced = scope.traced();
        // The scope's span cannot end while this runs: the task is already counted as live,
        // and a closing scope ends its span only once no task is.
        let parent;
        #[cfg(feature = "otel")]
        let direct_parent;
        {
            let open = lock(&live.open);
            let Some(open) = open.as_ref() else {
                return TaskTrace(None);
            };
            parent = dispatch_of(&open.span);
            #[cfg(feature = "otel")]
            {
                direct_parent = open.direct.clone();
            }
        }
        let new_span = || {
            let parent_id = || match &parent {
                Some((id, _)) => Some(id.clone()),
                None => Span::current().id(),
            };
            if traced {
                task_span!(Level::INFO, parent_id(), index, info, live.task_concurrency)
            } else {
                task_span!(
                    Level::DEBUG,
                    parent_id(),
                    index,
                    info,
                    live.task_concurrency
                )
            }
        };
        let span = match &parent {
            Some((_, dispatch)) => tracing::dispatcher::with_default(dispatch, new_span),
            None => new_span(),
        };
        let details = start_details(&info);
        #[cfg(feature = "otel")]
        let direct = direct_parent
            .map(|d| d.start_task(index, name, &info, &details, live.task_concurrency));

        #[cfg(feature = "otel")]
        if span.is_disabled() && direct.is_none() {
            return TaskTrace(None);
        }
        #[cfg(not(feature = "otel"))]
        if span.is_disabled() {
            return TaskTrace(None);
        }
        if !span.is_disabled() {
            if let Some(name) = name {
                span.record("otel.name", name);
            }
            if let Some(timeout) = info.timeout {
                span.record("task.timeout_ms", millis_i64(timeout));
            }
            record_details(&span, &details);
            apply_attrs(&span, live.mode, &info.attrs);
        }
        TaskTrace(Some(Box::new(TaskSpan {
            dispatch: span.with_subscriber(|(_, dispatch)| dispatch.clone()),
            span,
            traced,
            guarded: info.has_circuit_breaker,
            mode: live.mode,
            spawned: Instant::now(),
            started: None,
            run: info.run,
            scope_errors: Arc::clone(&live.errors),
            #[cfg(feature = "otel")]
            direct,
        })))
    }
}

impl TaskSpan {
    fn poll_in_span(&mut self, poll_body: &mut dyn FnMut()) {
        let task = self;
        if task.started.is_none() {
            let now = Instant::now();
            task.started = Some(now);
            // A task with an attempt loop waits for its permit inside the loop: its wait is
            // recorded when it ends, from the loop's record.
            if task.run.is_none() {
                task.record_wait(now);
            }
        }
        let outer = PENDING_ATTRS.with(|p| p.replace(Some(Vec::new())));
        let mut poll = || {
            let _entered = task.span.enter();
            #[cfg(feature = "otel")]
            let _attached = task.direct.clone().map(opentelemetry::Context::attach);
            poll_body()
        };
        // The task's own spans and events go where its span goes, on whatever worker it runs.
        match &task.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, poll),
            None => poll(),
        }
        let recorded = PENDING_ATTRS.with(|p| p.replace(outer));
        if let Some(attrs) = recorded.filter(|a| !a.is_empty()) {
            task.apply_recorded(&attrs);
        }
    }

    #[inline(never)]
    fn finish(self, error: Option<&Error>) {
        let task = self;
        let now = Instant::now();
        // A task with an attempt loop starts when its first attempt began (after its permit
        // and breaker check, which happen inside the loop).
        let run_started = task.run.as_ref().and_then(|run| run.started());
        match (run_started, &task.run) {
            (Some(started), _) => task.record_wait(started),
            (None, Some(_)) => task.record_wait(now),
            (None, None) if task.started.is_none() => task.record_wait(now),
            (None, None) => {}
        }
        let started = run_started.or(task.started);
        let duration_ms = started.map_or(0, |s| round_millis(now - s));
        let attempts = task.run.as_ref().map_or(0, |run| run.retries());
        if error.is_some() {
            task.scope_errors.fetch_add(1, Ordering::Relaxed);
        }
        let details = end_details(task.run.as_deref(), task.guarded, error);
        #[cfg(feature = "otel")]
        if let Some(cx) = &task.direct {
            otel_direct::end_task(cx, duration_ms, attempts, &details, error);
        }
        let traced = task.traced;
        end_span(task.span, |span| {
            span.record("task.duration_ms", saturating_i64(duration_ms));
            span.record("task.retry_attempts", i64::from(attempts));
            record_details(span, &details);
            if let Some(error) = error {
                span.record("task.error_reason", error_reason(error));
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", error.to_string().as_str());
                exception_event!(traced, span, error);
            }
        });
    }
    fn record_wait(&self, now: Instant) {
        let wait_ms = round_millis(now - self.spawned);
        self.span.record("task.wait_ms", saturating_i64(wait_ms));
        #[cfg(feature = "otel")]
        if let Some(cx) = &self.direct {
            use opentelemetry::trace::TraceContextExt;
            cx.span()
                .set_attribute(opentelemetry::KeyValue::new("task.wait_ms", wait_ms as i64));
        }
    }

    fn apply_recorded(&self, attrs: &Attrs) {
        apply_attrs(&self.span, self.mode, attrs);
        #[cfg(feature = "otel")]
        if let Some(cx) = &self.direct {
            use opentelemetry::trace::TraceContextExt;
            for (key, value) in attrs {
                cx.span().set_attribute(opentelemetry::KeyValue::new(
                    key.clone(),
                    otel_direct::value(value),
                ));
            }
        }
    }
}

/// Attributes of a task span beyond the fixed ones, each a declared field of the span.
type Details = Vec<(&'static str, AttrValue)>;

/// What a task found when it was spawned: its breaker's state, its scope's limit, its retry
/// policy; only for the parts the task has.
fn start_details(info: &TaskSpanInfo) -> Details {
    let mut details = Details::new();
    if let Some((state, failures)) = info.breaker_before {
        details.push((
            "task.circuit_breaker.state",
            AttrValue::Str(Cow::Borrowed(state.as_str())),
        ));
        details.push(("task.circuit_breaker.failure_count", failures.into()));
    }
    if let Some(limit) = info.limit_before {
        details.push(("task.concurrency.available_before", limit.available.into()));
        details.push(("task.concurrency.waiting_before", limit.waiting.into()));
    }
    if let Some(retry) = info.run.as_ref().and_then(|run| run.retry_policy()) {
        details.push(("task.retry.max_retries", retry.max_retries().into()));
        details.push(("task.retry.has_delay", retry.has_delay().into()));
        details.push(("task.retry.has_condition", retry.has_condition().into()));
    }
    details
}

/// How a task's breaker and retries ended.
fn end_details(run: Option<&TaskRun>, guarded: bool, error: Option<&Error>) -> Details {
    let mut details = Details::new();
    if guarded && matches!(error, Some(Error::CircuitOpen)) {
        details.push(("task.circuit_breaker.rejected", true.into()));
    }
    let Some(run) = run.filter(|run| run.retry_policy().is_some()) else {
        return details;
    };
    let attempts = run.retries() + 1;
    match (error, run.retry_end()) {
        (None, _) if attempts > 1 => {
            details.push(("task.retry.succeeded_after", attempts.into()));
        }
        (Some(_), Some(RetryEnd::Rejected)) => {
            details.push(("task.retry.condition_rejected", true.into()));
        }
        (Some(_), Some(RetryEnd::Exhausted)) => {
            details.push(("task.retry.max_retries_exceeded", true.into()));
            details.push(("task.retry.attempts_made", attempts.into()));
        }
        _ => {}
    }
    details
}

/// Records `details` into the span's declared fields.
fn record_details(span: &Span, details: &Details) {
    for (key, value) in details {
        match value {
            AttrValue::Bool(b) => span.record(*key, *b),
            AttrValue::Int(i) => span.record(*key, *i),
            AttrValue::Float(x) => span.record(*key, *x),
            AttrValue::Str(text) => span.record(*key, text.as_ref()),
        };
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

/// OpenTelemetry spans made directly with a scope's tracer, when no `tracing-opentelemetry`
/// layer carries the `tracing` spans there.
#[cfg(feature = "otel")]
mod otel_direct {
    use std::sync::Arc;

    use opentelemetry::global::BoxedTracer;
    use opentelemetry::trace::{Span as _, SpanBuilder, Status, TraceContextExt, Tracer};
    use opentelemetry::{Context, KeyValue, Value};
    use tracing::Span;

    use super::{
        AttrValue, Attrs, Mode, ScopeSpanInfo, ScopeTracer, TaskSpanInfo, TracerKind, error_type,
        millis_u64,
    };
    use crate::core::error::Error;

    pub(super) fn value(v: &AttrValue) -> Value {
        match v {
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Int(i) => Value::I64(*i),
            AttrValue::Float(x) => Value::F64(*x),
            AttrValue::Str(s) => Value::String(s.clone().into()),
        }
    }

    fn key_values(attrs: &Attrs) -> impl Iterator<Item = KeyValue> + '_ {
        attrs
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), value(v)))
    }

    #[derive(Clone)]
    pub(super) struct DirectSpan {
        tracer: Arc<BoxedTracer>,
        pub(super) cx: Context,
    }

    /// Layer mode when a `tracing-opentelemetry` layer gave the span an OpenTelemetry context;
    /// direct mode when it did not and the scope has a tracer.
    pub(super) fn choose(
        span: &Span,
        tracer: Option<&ScopeTracer>,
        info: &ScopeSpanInfo<'_>,
        attrs: &Attrs,
    ) -> (Mode, Option<DirectSpan>) {
        if !span.is_disabled() {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            if span.context().span().span_context().is_valid() {
                return (Mode::Layer, None);
            }
        }
        let Some(tracer) = tracer else {
            return (Mode::Tracing, None);
        };
        let tracer = match &tracer.kind {
            TracerKind::Global => Arc::new(opentelemetry::global::tracer("go-go-scope")),
            TracerKind::Explicit(tracer) => Arc::clone(tracer),
        };
        let parent_cx = info
            .parent
            .filter(|_| info.explicit_parent)
            .and_then(|p| p.live.as_ref())
            .and_then(|live| {
                let open = super::lock(&live.open);
                open.as_ref()?.direct.as_ref().map(|d| d.cx.clone())
            })
            .unwrap_or_else(Context::current);
        let mut attributes = vec![
            KeyValue::new("scope.has_parent_signal", info.has_parent),
            KeyValue::new("scope.has_parent_scope", info.has_parent),
        ];
        if let Some(timeout) = info.timeout {
            attributes.push(KeyValue::new("scope.timeout", millis_u64(timeout) as i64));
        }
        if let Some(limit) = info.concurrency_option {
            attributes.push(KeyValue::new("scope.concurrency", limit as i64));
        }
        attributes.extend(key_values(attrs));
        let builder = SpanBuilder::from_name(info.name.to_owned()).with_attributes(attributes);
        let otel_span = tracer.build_with_context(builder, &parent_cx);
        if !otel_span.span_context().is_valid() {
            // A no-op tracer (no provider installed): nothing would be recorded.
            return (Mode::Tracing, None);
        }
        let cx = parent_cx.with_span(otel_span);
        (Mode::Direct, Some(DirectSpan { tracer, cx }))
    }

    fn fail(cx: &Context, error: &Error) {
        let message = error.to_string();
        let span = cx.span();
        span.add_event(
            "exception",
            vec![
                KeyValue::new("exception.message", message.clone()),
                KeyValue::new("exception.type", error_type(error)),
            ],
        );
        span.set_status(Status::error(message));
    }

    impl DirectSpan {
        pub(super) fn start_task(
            &self,
            index: u64,
            name: Option<&str>,
            info: &TaskSpanInfo,
            details: &super::Details,
            concurrency: u64,
        ) -> Context {
            let mut attributes = vec![
                KeyValue::new("task.index", index as i64),
                KeyValue::new("task.has_retry", info.has_retry),
                KeyValue::new("task.has_timeout", info.timeout.is_some()),
                KeyValue::new("task.has_circuit_breaker", info.has_circuit_breaker),
                KeyValue::new("task.scope_concurrency", concurrency as i64),
            ];
            if let Some(timeout) = info.timeout {
                attributes.push(KeyValue::new("task.timeout_ms", millis_u64(timeout) as i64));
            }
            attributes.extend(details.iter().map(|(key, v)| KeyValue::new(*key, value(v))));
            attributes.extend(key_values(&info.attrs));
            let name = name.unwrap_or("scope.task").to_owned();
            let builder = SpanBuilder::from_name(name).with_attributes(attributes);
            let span = self.tracer.build_with_context(builder, &self.cx);
            self.cx.with_span(span)
        }

        pub(super) fn end_scope(&self, duration_ms: f64, errors: u64, failure: Option<&Error>) {
            let span = self.cx.span();
            span.set_attribute(KeyValue::new("scope.duration_ms", duration_ms));
            span.set_attribute(KeyValue::new("scope.errors", errors as i64));
            if let Some(error) = failure {
                fail(&self.cx, error);
            }
            span.end();
        }
    }

    pub(super) fn end_task(
        cx: &Context,
        duration_ms: u64,
        attempts: u32,
        details: &super::Details,
        error: Option<&Error>,
    ) {
        let span = cx.span();
        span.set_attribute(KeyValue::new("task.duration_ms", duration_ms as i64));
        span.set_attribute(KeyValue::new("task.retry_attempts", i64::from(attempts)));
        for (key, v) in details {
            span.set_attribute(KeyValue::new(*key, value(v)));
        }
        if let Some(error) = error {
            span.set_attribute(KeyValue::new(
                "task.error_reason",
                super::error_reason(error),
            ));
            fail(cx, error);
        }
        span.end();
    }
}
