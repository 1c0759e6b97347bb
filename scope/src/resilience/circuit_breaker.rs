//! A circuit breaker: stop calling something that keeps failing, then try it again carefully.
//!
//! Closed: calls run; `failure_threshold` consecutive failures open the breaker. Open: calls
//! fail at once with [`Error::CircuitOpen`] without running, until `reset_timeout` has passed.
//! Half-open: exactly one trial call runs (the others are refused); its success closes the
//! breaker, its failure opens it again. A trial call that is cancelled decides nothing: the next
//! call becomes the trial. Only the trial decides: a call admitted while the breaker was still
//! closed that ends once it is open or half-open changes nothing.

use futures::FutureExt as _;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

// The breaker's synchronization comes from here, so loom can check it (`--cfg loom`).
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::error::{BoxError, Error};
use crate::core::observer::{Observer, SpawnedTask, TaskEnd, TaskWatch, Wants};
use crate::core::scope::ScopeBuilder;
#[cfg(not(loom))]
use crate::util::sync::lock;
#[cfg(loom)]
use crate::util::sync::lock_loom as lock;

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls run normally.
    Closed,
    /// Calls are refused until the reset timeout has passed.
    Open,
    /// One trial call may run to decide between closed and open.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half-open`: the state's name in logs, spans and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type OnStateChange = dyn Fn(CircuitState, CircuitState) + Send + Sync;

/// A circuit breaker, shared by cloning (all clones see the same state).
///
/// Use it standalone with [`call`](CircuitBreaker::call), or give it to a scope with
/// [`ScopeBuilder::circuit_breaker`](crate::ScopeBuilder::circuit_breaker) so that every task
/// of the scope (and of its child scopes) goes through it.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::{CircuitBreaker, CircuitState, Error};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let breaker = CircuitBreaker::builder()
///     .failure_threshold(2)
///     .reset_timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// for _ in 0..2 {
///     let _ = breaker.call(async { Err::<(), _>("backend down") }).await;
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// // Refused without running:
/// assert!(matches!(breaker.call(async { Ok::<_, Error>(1) }).await, Err(Error::CircuitOpen)));
/// tokio::time::sleep(Duration::from_secs(10)).await;
/// assert_eq!(breaker.state(), CircuitState::HalfOpen);
/// assert_eq!(breaker.call(async { Ok::<_, Error>(2) }).await.unwrap(), 2); // the trial closes it
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    failure_threshold: u32,
    reset_timeout: Duration,
    on_state_change: Option<Arc<OnStateChange>>,
    state: Mutex<State>,
    rejections: AtomicU64,
}

struct State {
    mode: Mode,
    consecutive_failures: u32,
}

#[derive(Clone, Copy)]
enum Mode {
    Closed,
    Open { since: Instant },
    HalfOpen { trial_running: bool },
}

impl Mode {
    fn public(self, reset_timeout: Duration) -> CircuitState {
        match self {
            Mode::Closed => CircuitState::Closed,
            Mode::Open { since } if since.elapsed() >= reset_timeout => CircuitState::HalfOpen,
            Mode::Open { .. } => CircuitState::Open,
            Mode::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .field("failure_threshold", &self.inner.failure_threshold)
            .field("reset_timeout", &self.inner.reset_timeout)
            .field("consecutive_failures", &self.failure_count())
            .field("rejections", &self.rejections())
            .finish()
    }
}

/// Configures a [`CircuitBreaker`]; see [`CircuitBreaker::builder`].
#[must_use = "a builder does nothing until .build()"]
pub struct CircuitBreakerBuilder {
    failure_threshold: u32,
    reset_timeout: Duration,
    on_state_change: Option<Arc<OnStateChange>>,
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("failure_threshold", &self.failure_threshold)
            .field("reset_timeout", &self.reset_timeout)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerBuilder {
    /// Consecutive failures that open the breaker (default 5; must be at least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// How long the breaker stays open before letting one trial call through (default 30 s).
    pub fn reset_timeout(mut self, after: Duration) -> Self {
        self.reset_timeout = after;
        self
    }

    /// Called on every state change with `(from, to)`; changes are also logged at `info`.
    pub fn on_state_change(
        mut self,
        callback: impl Fn(CircuitState, CircuitState) + Send + Sync + 'static,
    ) -> Self {
        self.on_state_change = Some(Arc::new(callback));
        self
    }

    /// Builds the breaker; a zero threshold is an [`Error::InvalidOption`].
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `failure_threshold` is 0.
    pub fn build(self) -> Result<CircuitBreaker, Error> {
        if self.failure_threshold == 0 {
            return Err(Error::invalid(
                "failure_threshold",
                "must be at least 1 (the number of consecutive failures that open the breaker)",
            ));
        }
        Ok(CircuitBreaker {
            inner: Arc::new(Inner {
                failure_threshold: self.failure_threshold,
                reset_timeout: self.reset_timeout,
                on_state_change: self.on_state_change,
                state: Mutex::new(State {
                    mode: Mode::Closed,
                    consecutive_failures: 0,
                }),
                rejections: AtomicU64::new(0),
            }),
        })
    }
}

/// Permission to run one call; reports its outcome back to the breaker exactly once.
pub(crate) struct Admission {
    breaker: CircuitBreaker,
    trial: bool,
    settled: bool,
}

impl Admission {
    pub(crate) fn settle(mut self, success: bool) {
        self.settled = true;
        self.breaker.record(self.trial, success);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.settled && self.trial {
            // The trial call was cancelled: it decided nothing; let the next call be the trial.
            let mut state = self.breaker.lock();
            if let Mode::HalfOpen { trial_running } = &mut state.mode {
                *trial_running = false;
            }
        }
    }
}

/// A scope's breaker guards every single-attempt task of the scope: it is asked before the
/// task's body first runs and told the body's outcome (a panic is a failure). Tasks that run
/// their own attempts (the task builder's) ask it once per attempt themselves.
impl Observer for CircuitBreaker {
    fn wants(&self) -> Wants {
        Wants {
            watches: true,
            ..Wants::default()
        }
    }

    fn watch_task(&self, task: &SpawnedTask<'_>) -> Option<Box<dyn TaskWatch>> {
        (!task.runs_attempts).then(|| {
            Box::new(Guard {
                breaker: self.clone(),
                admission: None,
            }) as Box<dyn TaskWatch>
        })
    }
}

/// A single-attempt task's admission by its scope's breaker.
struct Guard {
    breaker: CircuitBreaker,
    admission: Option<Admission>,
}

impl TaskWatch for Guard {
    fn start(&mut self) -> Result<(), Error> {
        self.admission = Some(self.breaker.admit()?);
        Ok(())
    }

    fn end(self: Box<Self>, end: &TaskEnd<'_>) {
        // A task stopped from outside decided nothing: its admission is dropped unsettled.
        if let Some(admission) = self.admission
            && end.finished
        {
            admission.settle(end.error.is_none());
        }
    }
}

impl ScopeBuilder {
    /// Sends every task of this scope (and of its child scopes, unless they set their own)
    /// through `breaker`; see [`CircuitBreaker`].
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.features().breaker = Some(breaker);
        self
    }
}

impl CircuitBreaker {
    /// Starts configuring a breaker: threshold 5, reset timeout 30 s.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            failure_threshold: 5,
            reset_timeout: Duration::from_secs(30),
            on_state_change: None,
        }
    }

    /// A breaker with the given threshold and reset timeout (threshold must be at least 1).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `failure_threshold` is 0.
    pub fn new(failure_threshold: u32, reset_timeout: Duration) -> Result<CircuitBreaker, Error> {
        CircuitBreaker::builder()
            .failure_threshold(failure_threshold)
            .reset_timeout(reset_timeout)
            .build()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// The current state; an open breaker whose reset timeout has passed reads as half-open.
    pub fn state(&self) -> CircuitState {
        self.lock().mode.public(self.inner.reset_timeout)
    }

    /// Consecutive failures counted so far (reset by a success).
    pub fn failure_count(&self) -> u32 {
        self.lock().consecutive_failures
    }

    /// The state and the failure count, read together.
    pub(crate) fn snapshot(&self) -> (CircuitState, u32) {
        let state = self.lock();
        (
            state.mode.public(self.inner.reset_timeout),
            state.consecutive_failures,
        )
    }

    /// Calls refused because the breaker was open (or a trial was already running).
    pub fn rejections(&self) -> u64 {
        self.inner.rejections.load(Ordering::Relaxed)
    }

    /// The configured threshold.
    pub fn failure_threshold(&self) -> u32 {
        self.inner.failure_threshold
    }

    /// The configured reset timeout.
    pub fn reset_timeout(&self) -> Duration {
        self.inner.reset_timeout
    }

    /// Closes the breaker and forgets the failures.
    pub fn reset(&self) {
        let change = {
            let mut state = self.lock();
            let from = state.mode.public(self.inner.reset_timeout);
            state.mode = Mode::Closed;
            state.consecutive_failures = 0;
            from
        };
        self.changed(change, CircuitState::Closed);
    }

    /// Runs `call` if the breaker lets it through and records its outcome; otherwise returns
    /// [`Error::CircuitOpen`] without polling `call`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::{CircuitBreaker, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = CircuitBreaker::new(3, Duration::from_secs(30)).unwrap();
    /// assert_eq!(breaker.call(async { Ok::<_, Error>(7) }).await.unwrap(), 7);
    /// let err = breaker.call(async { Err::<u8, _>(std::io::Error::other("refused")) }).await;
    /// assert!(err.unwrap_err().downcast_ref::<std::io::Error>().is_some());
    /// assert_eq!(breaker.failure_count(), 1);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future drops `call` where it stands (its result is lost), and the breaker
    /// counts the call as neither a success nor a failure. A half-open breaker's trial call
    /// that is dropped frees the trial slot: the next call becomes the trial.
    ///
    /// # Errors
    /// [`Error::CircuitOpen`] when the breaker is open, or half-open with its trial call
    /// already running (`call` is then not polled); otherwise `call`'s own error, as
    /// [`Error::Failed`] (or itself, when `call` returns [`Error`]).
    ///
    /// # Panics
    /// Only when `call` panics: the panic goes on to the caller, after the breaker has counted
    /// the call as a failure (as a scope's breaker counts a task's caught panic).
    pub async fn call<F, T, E>(&self, call: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<BoxError>,
    {
        let admission = self.admit()?;
        let result = match AssertUnwindSafe(call).catch_unwind().await {
            Ok(result) => result.map_err(Error::from_task_error),
            Err(payload) => {
                admission.settle(false);
                std::panic::resume_unwind(payload);
            }
        };
        admission.settle(result.is_ok());
        result
    }

    /// Asks to run one call.
    pub(crate) fn admit(&self) -> Result<Admission, Error> {
        let mut state = self.lock();
        let trial = match state.mode {
            Mode::Closed => false,
            Mode::Open { since } if since.elapsed() >= self.inner.reset_timeout => {
                state.mode = Mode::HalfOpen {
                    trial_running: true,
                };
                drop(state);
                self.changed(CircuitState::Open, CircuitState::HalfOpen);
                return Ok(Admission {
                    breaker: self.clone(),
                    trial: true,
                    settled: false,
                });
            }
            Mode::HalfOpen {
                trial_running: false,
            } => {
                state.mode = Mode::HalfOpen {
                    trial_running: true,
                };
                true
            }
            Mode::Open { .. }
            | Mode::HalfOpen {
                trial_running: true,
            } => {
                drop(state);
                self.inner.rejections.fetch_add(1, Ordering::Relaxed);
                return Err(Error::CircuitOpen);
            }
        };
        Ok(Admission {
            breaker: self.clone(),
            trial,
            settled: false,
        })
    }

    fn record(&self, trial: bool, success: bool) {
        let change = {
            let mut state = self.lock();
            let from = state.mode.public(self.inner.reset_timeout);
            match (trial, success) {
                // The trial alone decides a half-open breaker.
                (true, true) => {
                    state.consecutive_failures = 0;
                    state.mode = Mode::Closed;
                }
                (true, false) => {
                    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                    state.mode = Mode::Open {
                        since: Instant::now(),
                    };
                }
                // A call admitted while the breaker was closed that ends after it opened is
                // old news: it changes nothing, so it cannot close the breaker (or reopen it)
                // while a trial runs.
                (false, _) if !matches!(state.mode, Mode::Closed) => {}
                (false, true) => state.consecutive_failures = 0,
                (false, false) => {
                    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                    if state.consecutive_failures >= self.inner.failure_threshold {
                        state.mode = Mode::Open {
                            since: Instant::now(),
                        };
                    }
                }
            }
            (from, state.mode.public(self.inner.reset_timeout))
        };
        if change.0 != change.1 {
            self.changed(change.0, change.1);
        }
    }

    fn changed(&self, from: CircuitState, to: CircuitState) {
        if from == to {
            return;
        }
        tracing::info!(
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker changed state"
        );
        if let Some(callback) = &self.inner.on_state_change
            && catch_unwind(AssertUnwindSafe(|| callback(from, to))).is_err()
        {
            tracing::warn!("an on_state_change callback panicked; the panic was contained");
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;

    /// Concurrent calls on a half-open breaker: exactly one is the trial, whatever the
    /// interleaving; the trial's outcome decides the state.
    #[test]
    fn half_open_admits_exactly_one_of_two_concurrent_calls() {
        loom::model(|| {
            let breaker = CircuitBreaker::new(1, Duration::ZERO).unwrap();
            breaker.admit().unwrap().settle(false);
            let other = {
                let breaker = breaker.clone();
                loom::thread::spawn(move || breaker.admit().map(|a| a.settle(true)).is_ok())
            };
            let mine = breaker.admit().map(|a| a.settle(true)).is_ok();
            let theirs = other.join().unwrap();
            // One trial at a time: if both ran, the second was admitted after the first closed
            // the breaker, which is fine; at least one ran and none ran while a trial was open.
            assert!(mine || theirs);
            assert_eq!(breaker.rejections(), u64::from(!(mine && theirs)));
            assert_eq!(breaker.state(), CircuitState::Closed);
        });
    }

    /// A call admitted while closed and ending during the trial never decides: whatever the
    /// interleaving, a failed trial leaves the breaker open.
    #[test]
    fn a_late_call_never_overrides_the_trial() {
        loom::model(|| {
            let breaker = CircuitBreaker::new(1, Duration::ZERO).unwrap();
            let late = breaker.admit().unwrap();
            breaker.admit().unwrap().settle(false);
            let trial = breaker.admit().unwrap();
            let other = loom::thread::spawn(move || late.settle(true));
            trial.settle(false);
            other.join().unwrap();
            assert_ne!(breaker.state(), CircuitState::Closed);
        });
    }

    /// A trial dropped without an outcome frees the trial slot for the next call.
    #[test]
    fn a_cancelled_trial_frees_the_slot_under_contention() {
        loom::model(|| {
            let breaker = CircuitBreaker::new(1, Duration::ZERO).unwrap();
            breaker.admit().unwrap().settle(false);
            let other = {
                let breaker = breaker.clone();
                loom::thread::spawn(move || drop(breaker.admit()))
            };
            let _ = breaker.admit().map(drop);
            other.join().unwrap();
            assert!(
                breaker.admit().is_ok(),
                "the slot must be free once both trials gave up"
            );
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(threshold, Duration::from_millis(50)).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_exactly_one_trial() {
        let b = breaker(1);
        b.admit().unwrap().settle(false);
        assert_eq!(b.state(), CircuitState::Open);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let trial = b.admit().unwrap();
        assert!(matches!(b.admit(), Err(Error::CircuitOpen)));
        assert!(matches!(b.admit(), Err(Error::CircuitOpen)));
        assert_eq!(b.rejections(), 2);
        trial.settle(true);
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(b.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_reopens_and_a_cancelled_trial_frees_the_slot() {
        let b = breaker(3);
        for _ in 0..3 {
            b.admit().unwrap().settle(false);
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(b.admit().unwrap()); // cancelled trial
        assert_eq!(b.state(), CircuitState::HalfOpen);
        b.admit().unwrap().settle(false);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.failure_count(), 4); // CB-10: the count keeps growing
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_admitted_while_closed_does_not_decide_the_trial() {
        let b = breaker(2);
        let old_success = b.admit().unwrap();
        let old_failure = b.admit().unwrap();
        b.admit().unwrap().settle(false);
        b.admit().unwrap().settle(false);
        assert_eq!(b.state(), CircuitState::Open);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let trial = b.admit().unwrap();
        old_success.settle(true);
        assert_eq!(
            b.state(),
            CircuitState::HalfOpen,
            "only the trial may close it"
        );
        assert!(
            matches!(b.admit(), Err(Error::CircuitOpen)),
            "the trial still runs"
        );
        old_failure.settle(false);
        assert_eq!(
            b.state(),
            CircuitState::HalfOpen,
            "only the trial may reopen it"
        );
        trial.settle(true);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.failure_count(), 0);
    }

    #[test]
    fn zero_threshold_is_rejected() {
        assert!(matches!(
            CircuitBreaker::builder().failure_threshold(0).build(),
            Err(Error::InvalidOption {
                option: "failure_threshold",
                ..
            })
        ));
    }
}
