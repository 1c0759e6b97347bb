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
//! # The pieces
//! - [`Scope`] and [`ScopeBuilder`]: create, [`spawn`](Scope::spawn), [`cancel`](Scope::cancel),
//!   [`close`](Scope::close), or [`Scope::run`] a body that is always closed.
//! - [`Task`]: awaiting it gives `(Option<Error>, Option<T>)`; [`Task::result`] a `Result`.
//! - [`Error`]: one error type with data variants ([`Error::Cancelled`], [`Error::Timeout`],
//!   [`Error::Panicked`], [`Error::Failed`] holding the task's own error, ...).
//! - Cancellation is a tree: a child scope's token is a child of its parent's, and closing a
//!   parent closes its children first. [`Scope::current`] is the ambient scope.
//! - Services: [`Scope::provide`], [`Scope::provide_with`], [`Scope::service`]; cleanups with
//!   [`Scope::defer`].
//! - [`Hooks`] and [`ScopeMetrics`] to observe what happens.
//! - Communication: [`Channel`] ([`Scope::channel`], capacity 0 is a rendezvous, a closed
//!   channel hands values back), [`Broadcast`], [`Select`] over several channels, and
//!   [`ScopedStream`] ([`Scope::stream`]) that ends when the scope is cancelled.
//! - Timing helpers that end with their scope: [`Scope::poll`], [`Scope::debounce`],
//!   [`Scope::throttle`], and the resource [`Pool`] ([`Scope::pool`]).
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

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod answer;
mod background;
mod broadcast;
mod channel;
mod circuit_breaker;
mod context;
mod deadlock;
mod debounce;
mod error;
mod hooks;
mod lifecycle;
pub mod metrics;
mod parallel;
mod poll;
mod pool;
mod profiler;
mod race;
mod resources;
mod retry;
mod scope;
mod select;
mod stream;
mod task;
mod task_builder;
mod throttle;

#[doc(hidden)]
pub mod __private;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use broadcast::{Broadcast, DEFAULT_BROADCAST_CAPACITY, Lagged, Subscriber};
pub use channel::{Channel, SendError, TryRecvError, TrySendError};
pub use circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder, CircuitState};
pub use deadlock::{WaitingTask, tracked_wait};
pub use debounce::{DebounceOptions, Debounced};
pub use error::{BoxError, Error, Outcome, TimeoutOrigin, into_outcome, into_result};
pub use hooks::Hooks;
pub use metrics::ScopeMetrics;
pub use parallel::{Aggregate, ParallelOpts, parallel, parallel_aggregate};
pub use poll::{PollOptions, PollStatus, Poller, poll};
pub use pool::{Pool, PoolGuard, PoolOptions, PoolStats};
pub use profiler::{KEPT_PROFILES, ProfileReport, ProfileStatistics, TaskProfile};
pub use race::race;
pub use resources::DisposeResult;
pub use retry::Retry;
pub use scope::{Scope, ScopeBuilder, cancelled, unclosed_drops};
pub use select::{Select, SelectFuture};
pub use stream::ScopedStream;
pub use task::Task;
pub use task_builder::{Attempts, Factory, Once, TaskBuilder};
pub use throttle::{ThrottleOptions, Throttled};

/// Re-exported so users can name the token type [`Scope::token`] returns.
pub use tokio_util::sync::CancellationToken;

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
