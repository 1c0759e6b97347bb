//! Structured concurrency for async Rust, on Tokio.
//!
//! A [`Scope`] owns the tasks spawned into it. When the scope ends, whatever is still running is
//! cancelled and awaited, and the resources the scope was given are disposed last-first — so no
//! task outlives the code that started it, and nothing is left to clean up by hand.
//!
//! ```
//! use std::time::Duration;
//! use go_go_scope::{Error, Scope};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let total = Scope::run(Scope::builder().timeout(Duration::from_secs(5)), |s| async move {
//!     let user = s.spawn(async { "ada" });
//!     let orders = s.try_spawn(async { Ok::<_, std::io::Error>(vec![1, 2, 3]) });
//!     let (err, user) = user.await;             // Go-style: (Option<Error>, Option<T>)
//!     assert!(err.is_none());
//!     let orders = orders.result().await?;      // or a Result, for `?`
//!     Ok::<_, Error>(format!("{} has {} orders", user.unwrap(), orders.len()))
//! })
//! .await??;
//! assert_eq!(total, "ada has 3 orders");
//! # Ok(())
//! # }
//! ```
//!
//! # A tour
//!
//! ## Scopes and tasks
//! [`Scope::run`] runs a body in a new scope and closes the scope when the body ends, on every
//! path; [`Scope::builder`] sets its name, deadline ([`ScopeBuilder::timeout`]), concurrency
//! limit and the rest; [`Scope::new`] + [`Scope::close`] do the same by hand. Inside, tasks
//! start with [`Scope::spawn`] (any future), [`Scope::try_spawn`] (a future returning
//! `Result`, whose error becomes the task's) or [`Scope::task`] (a factory, for a name, a
//! per-attempt timeout and retries). Tasks are eager, like Go's `go`: they run from the moment
//! they are spawned. The scope owns them, not the [`Task`] handle: dropping the handle does not
//! cancel the task, the scope still ends it.
//!
//! ## The outcome pair
//! Awaiting a [`Task`] gives an [`Outcome`], `(Option<Error>, Option<T>)` with exactly one side
//! set, for handling a failure on the spot; [`Task::result`] gives a `Result` for `?`. Every
//! failure is an [`Error`] variant — cancelled, timed out (saying whose deadline), panicked,
//! refused by a breaker — and a task's own error is kept with its type in [`Error::Failed`]
//! ([`Error::downcast_ref`] gets it back).
//!
//! ## The macros
//! With the feature `macros` (on by default), `#[scoped]` gives an `async fn` a scope of its own,
//! `go!` spawns into the current scope, and `try_go!` / `try_go_raw!` turn one fallible
//! expression into a pair:
//!
//! ```
//! use go_go_scope::{Error, go, scoped, try_go};
//!
//! async fn price(item: &str) -> Result<u32, std::io::Error> {
//!     Ok(if item == "book" { 1999 } else { 500 })
//! }
//!
//! #[scoped(timeout = "2s", concurrency = 4)]
//! async fn total(items: &[&'static str], coupon: &str) -> Result<u32, Error> {
//!     let prices: Vec<_> = items.iter().map(|&item| go!(retry = 2, price(item))).collect();
//!     let (_, discount) = try_go!(coupon.parse::<u32>()); // a bad coupon is ignored
//!     let mut sum = 0;
//!     for p in prices {
//!         sum += p.result().await?;
//!     }
//!     Ok(sum.saturating_sub(discount.unwrap_or(0)))
//! } // whatever is still running here is cancelled and awaited
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert_eq!(total(&["book", "pen"], "499").await.unwrap(), 2000);
//! assert_eq!(total(&["pen"], "none").await.unwrap(), 500);
//! # }
//! ```
//!
//! ## Cancellation
//! Scopes form a tree: a scope built inside another's code (or with [`Scope::child`]) is its
//! child, and cancelling a scope cancels its whole subtree. A scope is cancelled by its
//! deadline, by [`Scope::cancel`], by its parent, or by closing with tasks still running. A
//! cancelled task's future is dropped at its next `.await` and the task resolves to the
//! cancellation's error. Code can find its scope with [`Scope::current`], wait for cancellation
//! with [`cancelled`], or hand a [`CancellationToken`] ([`Scope::token`]) to APIs that take one.
//!
//! ## Resilience
//! Retry policies ([`Retry`]: fixed, exponential, custom, jitter, `retry_if`), per-attempt
//! timeouts nested in the scope's deadline ([`TaskBuilder::timeout`]), a [`CircuitBreaker`]
//! shared by a scope and its children or by several scopes, a concurrency limit
//! ([`ScopeBuilder::concurrency`]), [`Scope::race`] (first success wins, losers cancelled),
//! [`Scope::parallel`] and [`Scope::parallel_aggregate`], a profiler ([`Scope::profile_report`])
//! and deadlock detection ([`ScopeBuilder::deadlock_detection`], [`tracked_wait`]).
//!
//! ## Communication
//! [`Channel`] ([`Scope::channel`]: bounded, multi-producer multi-consumer, capacity 0 is a
//! rendezvous, a closed channel hands values back), [`Broadcast`], [`Select`] over several
//! channels, [`ScopedStream`] ([`Scope::stream`]) that ends when the scope is cancelled, timing
//! helpers that end with their scope ([`Scope::poll`], [`Scope::debounce`],
//! [`Scope::throttle`]) and the resource [`Pool`] ([`Scope::pool`]).
//!
//! ## Observability
//! Every scope and task is a `tracing` span ([`trace`]: names, parentage, the attributes, error
//! status), so any subscriber sees them; with the feature `otlp`, `otel::OtelPipeline` exports
//! them over OTLP in one call, or (feature `otel`) [`ScopeBuilder::tracer`] sends them to a
//! tracer of your own.
//! [`Hooks`] see every task start and end, cancellations and disposals. [`ScopeMetrics`]
//! ([`ScopeBuilder::metrics`]) counts and times tasks; with the feature `metrics`, the
//! [`metrics`] module exports them as Prometheus text or JSON, aggregates every scope
//! by name in a process-wide registry for a `/metrics` endpoint, and (feature `pushgateway`)
//! pushes to a Pushgateway. The same instruments can go into the application's own pipeline
//! instead: its `metrics` recorder ([`ScopeBuilder::metrics_facade`], feature `metrics-facade`)
//! or its OpenTelemetry meter ([`ScopeBuilder::otel_meter`], feature `otel`).
//! Log events go through `tracing` too (target `go_go_scope`). The [`introspect`] module shows
//! the live tree of scopes and tasks and what each task waits on ([`Scope::tree`],
//! [`introspect::snapshot`]), as text or JSON.
//!
//! ## Testing
//! The module `testing` (feature `testing`) has a recording `TestScope`, `assert_closed`,
//! helpers for Tokio's paused clock and a `Spy`.
//!
//! # What happens when a scope ends
//! 1. The scope is cancelled: every task still running is dropped at its next await point and
//!    resolves to the cancellation's error.
//! 2. Child scopes are closed, then the scope waits until each of its own tasks has ended.
//! 3. Disposers run, last registered first, each awaited; a failure is reported and the rest
//!    still run.
//!
//! Dropping the last handle of a scope that was never closed cancels its tasks at once and
//! closes the scope in the background (logged at `warn`, counted by [`unclosed_drops`]).
//!
//! # Cargo features
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `macros` | yes | `#[scoped]`, `go!`, `try_go!`, `try_go_raw!` |
//! | `testing` | no | the `testing` module; turns on Tokio's `test-util` |
//! | `otel` | no | the OpenTelemetry API: `ScopeTracer::new` for a tracer of your own, `ScopeBuilder::otel_meter` for a meter of your own, W3C trace context in and out of scopes (`trace::inject_current`, `ScopeBuilder::remote_parent`); re-exports `opentelemetry` |
//! | `otlp` | no | `otel`, plus the module `otel`: an OTLP/HTTP span exporter and `tracing` layer in one call (the SDK and an HTTP client); re-exports `opentelemetry_sdk` |
//! | `metrics` | no | [`metrics`] export (Prometheus, JSON), the process-wide registry, `MetricsReporter`; re-exports `prometheus_client`; no HTTP client |
//! | `pushgateway` | no | `metrics`, plus the `metrics::Pushgateway` client (basic auth, headers), `push_to_gateway` and `push_text_to_gateway` (an HTTP client) |
//! | `metrics-facade` | no | `ScopeBuilder::metrics_facade`: scope metrics through the `metrics` crate, into the application's recorder |
//! | `tls` | no | `https://` for the `otlp` exporter and the `pushgateway` client (rustls, no OpenSSL) |
//! | `introspect-json` | no | `introspect::Tree::to_json`: the live tree as JSON (serde) |
//! | `full` | no | all of them |
//!
//! # The guide
//! The repository's [guide](https://github.com/go-go-scope/go-go-scope-rs/blob/main/docs/README.md)
//! teaches all of this with runnable programs: concepts, resilience, concurrency patterns,
//! observability, testing, and a comparison with hand-written Tokio.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The layers, inside out: `core` knows no feature by name; every other folder builds on it.
mod core;
mod features;
mod util;

mod combinators;
mod observe;
mod resilience;
mod sync;
mod time;

pub use observe::introspect;
pub use observe::metrics;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use observe::otel;

/// The OpenTelemetry API at the version this crate is built with, so that tracers and meters
/// you hand to a scope need no version matching in your own `Cargo.toml`.
///
/// *Feature `otel`.*
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use opentelemetry;

pub use observe::trace;
/// The OpenTelemetry SDK at the version this crate is built with: the types of
/// [`otel::Otel::tracer`] and [`otel::Otel::provider`].
///
/// *Feature `otlp`.*
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use opentelemetry_sdk;

/// The `prometheus-client` crate at the version this crate is built with, for
/// [`MetricsRegistry::collector`](metrics::MetricsRegistry::collector).
///
/// *Feature `metrics`.*
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use prometheus_client;

// Support for the code the macros generate (see the file's own docs); compiler messages quote
// its file name.
#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use combinators::parallel::{Aggregate, ParallelOpts, parallel, parallel_aggregate};
pub use combinators::race::race;
pub use core::error::{
    BoxError, Error, Outcome, OutcomeKind, TimeoutOrigin, into_outcome, into_result,
};
pub use core::local::{
    AnyTasks, LocalBody, LocalKind, LocalScope, LocalTask, SendTasks, UnsendBody,
};
pub use core::resources::DisposeResult;
pub use core::scope::{Scope, ScopeBuilder, cancelled, unclosed_drops};
pub use core::task::Task;
pub use metrics::ScopeMetrics;
pub use observe::deadlock::{WaitingTask, tracked_wait};
pub use observe::hooks::Hooks;
/// *Feature `otel`.*
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use observe::metrics::otel_meter::ScopeMeter;
pub use observe::profiler::{KEPT_PROFILES, ProfileReport, ProfileStatistics, TaskProfile};
pub use observe::trace::{AttrValue, ScopeTracer, record_task_attr};
pub use resilience::circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder, CircuitState};
pub use resilience::retry::Retry;
pub use resilience::task_builder::{
    Attempts, Factory, LocalTarget, SingleAttempt, Spawned, TaskBuilder,
};
pub use sync::broadcast::{Broadcast, DEFAULT_BROADCAST_CAPACITY, Lagged, Subscriber};
pub use sync::channel::{Channel, SendError, TryRecvError, TrySendError};
pub use sync::pool::{Pool, PoolGuard, PoolOptions, PoolStats};
pub use sync::select::{Select, SelectFuture};
pub use sync::stream::ScopedStream;
pub use time::debounce::{DebounceOptions, Debounced};
pub use time::poll::{PollOptions, PollStatus, Poller, poll};
pub use time::throttle::{ThrottleOptions, Throttled};

/// Re-exported so users can name the token type [`Scope::token`] returns.
pub use tokio_util::sync::CancellationToken;

/// *Feature `macros` (on by default).*
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use go_go_scope_macros::{go, scoped, try_go, try_go_raw};

/// The names most programs need: `use go_go_scope::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Channel, CircuitBreaker, Error, Hooks, Outcome, ParallelOpts, Retry, Scope, ScopeBuilder,
        Select, Task,
    };

    #[cfg(feature = "macros")]
    pub use crate::{go, scoped, try_go, try_go_raw};
}

/// The traits behind the macros' compile-time checks.
///
/// `#[scoped]`, `go!` and `try_go!` bound what you give them on these traits, so that a value of
/// the wrong kind gets one message that names the option and says what to write, instead of a
/// list of `From` or `Future` impls. They are implemented by this crate for every type that
/// works; you never need to implement or name them.
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub mod dsl {
    pub use crate::__private::{
        AsScope, AttrValueOf, AwaitedFirst, BreakerCarrier, CarriesError, DurationValue,
        ErrorMessage, GoFuture, NameValue, RetryValue, TimeoutCarrier, TracerValue, TryGoValue,
    };

    // The generated code calls methods of these; a bound of theirs that fails is quoted in
    // "required by a bound in ..." notes, which then name this module.
    #[doc(hidden)]
    pub use crate::__private::{
        FallibleTag, PanicAsError, PanicAsMessage, PanicResumes, PlainTag, RawTarget, Settled,
        Unawaited, ValueProbe,
    };
}
