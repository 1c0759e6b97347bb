//! Retry policies: how many times a failed task is tried again, and how long to wait between.
//!
//! `retry(n)` means `n` retries, so at most `n + 1` attempts. Delays are computed from the
//! 1-based retry number (`1` before the second attempt). [`Error::CircuitOpen`] is never
//! retried: the breaker's answer would be the same.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

type DelayFn = dyn Fn(u32, &Error) -> Duration + Send + Sync;
type RetryIf = dyn Fn(&Error) -> bool + Send + Sync;
type OnRetry = dyn Fn(&Error, u32) + Send + Sync;

/// A retry policy: the number of retries and the delay before each.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::Retry;
///
/// let none = Retry::new(3);                                     // 3 retries, no delay
/// let fixed = Retry::fixed(3, Duration::from_millis(100));       // 100 ms before each retry
/// let backoff = Retry::exponential(5, Duration::from_millis(50)) // 50, 100, 200, 400, 800 ms
///     .max_delay(Duration::from_millis(500))                     // ... capped at 500 ms
///     .jitter(true);                                             // full jitter: random in [0, d]
/// let custom = Retry::with_delay(4, |retry, _err| Duration::from_millis(10 * u64::from(retry)));
/// assert_eq!(backoff.max_retries(), 5);
/// assert_eq!(Retry::from(2).max_retries(), 2);
/// # let _ = (none, fixed, custom);
/// ```
#[derive(Clone)]
pub struct Retry {
    max_retries: u32,
    delay: Delay,
    jitter: bool,
    pub(crate) retry_if: Option<Arc<RetryIf>>,
    pub(crate) on_retry: Option<Arc<OnRetry>>,
}

#[derive(Clone)]
enum Delay {
    None,
    Fixed(Duration),
    Exponential {
        base: Duration,
        factor: f64,
        max: Duration,
    },
    Custom(Arc<DelayFn>),
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let delay = match &self.delay {
            Delay::None => "none".to_owned(),
            Delay::Fixed(d) => format!("fixed {d:?}"),
            Delay::Exponential { base, factor, max } => {
                format!("exponential from {base:?} x{factor} up to {max:?}")
            }
            Delay::Custom(_) => "custom".to_owned(),
        };
        f.debug_struct("Retry")
            .field("max_retries", &self.max_retries)
            .field("delay", &delay)
            .field("jitter", &self.jitter)
            .field("retry_if", &self.retry_if.is_some())
            .field("on_retry", &self.on_retry.is_some())
            .finish()
    }
}

impl Default for Retry {
    /// Three retries without delay.
    fn default() -> Retry {
        Retry::new(3)
    }
}

impl From<u32> for Retry {
    /// `n` retries without delay; `0` means no retry.
    fn from(max_retries: u32) -> Retry {
        Retry::new(max_retries)
    }
}

impl crate::core::scope::ScopeBuilder {
    /// The retry policy of tasks built with [`Scope::task`](crate::Scope::task) that set none
    /// themselves.
    pub fn retry(mut self, retry: impl Into<Retry>) -> Self {
        self.features().retry = Some(retry.into());
        self
    }
}

impl Retry {
    /// `max_retries` retries, each as soon as the previous attempt failed. `0` means the task
    /// runs once.
    pub fn new(max_retries: u32) -> Retry {
        Retry {
            max_retries,
            delay: Delay::None,
            jitter: false,
            retry_if: None,
            on_retry: None,
        }
    }

    /// `max_retries` retries, waiting `delay` before each.
    pub fn fixed(max_retries: u32, delay: Duration) -> Retry {
        Retry {
            delay: Delay::Fixed(delay),
            ..Retry::new(max_retries)
        }
    }

    /// `max_retries` retries, waiting `base`, then twice as long before each further retry
    /// (change the factor with [`factor`](Retry::factor), cap it with
    /// [`max_delay`](Retry::max_delay); the default cap is 30 s).
    pub fn exponential(max_retries: u32, base: Duration) -> Retry {
        Retry {
            delay: Delay::Exponential {
                base,
                factor: 2.0,
                max: Duration::from_secs(30),
            },
            ..Retry::new(max_retries)
        }
    }

    /// `max_retries` retries, waiting what `delay(retry, &error)` returns; `retry` is 1-based.
    /// A delay function that panics fails the task with [`Error::Panicked`].
    pub fn with_delay(
        max_retries: u32,
        delay: impl Fn(u32, &Error) -> Duration + Send + Sync + 'static,
    ) -> Retry {
        Retry {
            delay: Delay::Custom(Arc::new(delay)),
            ..Retry::new(max_retries)
        }
    }

    /// The growth factor of an exponential delay (default 2; values below 1 are taken as 1).
    /// No effect on other delays.
    pub fn factor(mut self, factor: f64) -> Retry {
        if let Delay::Exponential { factor: f, .. } = &mut self.delay {
            *f = if factor.is_finite() {
                factor.max(1.0)
            } else {
                1.0
            };
        }
        self
    }

    /// The longest delay an exponential policy waits. No effect on other delays.
    pub fn max_delay(mut self, cap: Duration) -> Retry {
        if let Delay::Exponential { max, .. } = &mut self.delay {
            *max = cap;
        }
        self
    }

    /// Full jitter: wait a uniformly random time between zero and the computed delay, so that
    /// many failing tasks do not retry in lockstep.
    pub fn jitter(mut self, enabled: bool) -> Retry {
        self.jitter = enabled;
        self
    }

    /// Retries only errors for which `predicate` returns true; others end the task at once.
    pub fn retry_if(mut self, predicate: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Retry {
        self.retry_if = Some(Arc::new(predicate));
        self
    }

    /// Called before each retry's delay with the error that caused it and the 1-based retry
    /// number. A panic in it is contained and logged; retrying continues.
    pub fn on_retry(mut self, callback: impl Fn(&Error, u32) + Send + Sync + 'static) -> Retry {
        self.on_retry = Some(Arc::new(callback));
        self
    }

    /// The number of retries (attempts − 1).
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Whether `error`, after `retries_made` retries, should be retried.
    pub(crate) fn should_retry(&self, retries_made: u32, error: &Error) -> bool {
        if retries_made >= self.max_retries || matches!(error, Error::CircuitOpen) {
            return false;
        }
        match &self.retry_if {
            Some(predicate) => {
                catch_unwind(AssertUnwindSafe(|| predicate(error))).unwrap_or_else(|_| {
                    tracing::warn!("a retry_if predicate panicked; the error is not retried");
                    false
                })
            }
            None => true,
        }
    }

    pub(crate) fn notify_retry(&self, error: &Error, retry: u32) {
        if let Some(callback) = &self.on_retry
            && catch_unwind(AssertUnwindSafe(|| callback(error, retry))).is_err()
        {
            tracing::warn!(retry, "an on_retry callback panicked; retrying continues");
        }
    }

    /// True when the policy waits before retries (a fixed, exponential or custom delay).
    pub(crate) fn has_delay(&self) -> bool {
        !matches!(self.delay, Delay::None)
    }

    /// True when a `retry_if` predicate decides which errors are retried.
    pub(crate) fn has_condition(&self) -> bool {
        self.retry_if.is_some()
    }

    /// True when deciding or announcing a retry looks at the error: a predicate, a callback or
    /// a custom delay function.
    pub(crate) fn inspects_errors(&self) -> bool {
        self.retry_if.is_some() || self.on_retry.is_some() || matches!(self.delay, Delay::Custom(_))
    }

    /// The delay before retry number `retry` (1-based) of a policy that does not look at errors
    /// (see [`inspects_errors`](Retry::inspects_errors)).
    pub(crate) fn delay_without_error(&self, retry: u32) -> Duration {
        debug_assert!(!self.inspects_errors());
        self.jittered(self.computed_delay(retry).unwrap_or(Duration::ZERO))
    }

    /// The delay a policy's schedule gives before retry number `retry`, or `None` for a custom
    /// delay function.
    fn computed_delay(&self, retry: u32) -> Option<Duration> {
        Some(match &self.delay {
            Delay::None => Duration::ZERO,
            Delay::Fixed(delay) => *delay,
            Delay::Exponential { base, factor, max } => {
                let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
                let scaled = base.as_secs_f64() * factor.powi(exponent);
                if scaled.is_finite() && scaled < max.as_secs_f64() {
                    Duration::from_secs_f64(scaled)
                } else {
                    *max
                }
            }
            Delay::Custom(_) => return None,
        })
    }

    fn jittered(&self, computed: Duration) -> Duration {
        if self.jitter && !computed.is_zero() {
            computed.mul_f64(fastrand::f64())
        } else {
            computed
        }
    }

    /// The delay before retry number `retry` (1-based). A panicking delay function is the
    /// task's error.
    pub(crate) fn delay_before(&self, retry: u32, error: &Error) -> Result<Duration, Error> {
        let computed = match &self.delay {
            Delay::Custom(f) => {
                catch_unwind(AssertUnwindSafe(|| f(retry, error))).map_err(|p| Error::Panicked {
                    message: format!(
                        "the retry delay function panicked: {}",
                        crate::core::error::panic_message(p)
                    ),
                })?
            }
            _ => self.computed_delay(retry).unwrap_or(Duration::ZERO),
        };
        Ok(self.jittered(computed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err() -> Error {
        Error::from_task_error("x")
    }

    #[test]
    fn counts_retries_not_attempts() {
        let r = Retry::new(2);
        assert!(r.should_retry(0, &err()));
        assert!(r.should_retry(1, &err()));
        assert!(!r.should_retry(2, &err()));
        assert!(!Retry::new(0).should_retry(0, &err()));
    }

    #[test]
    fn circuit_open_is_never_retried() {
        assert!(!Retry::new(5).should_retry(0, &Error::CircuitOpen));
    }

    #[test]
    fn exponential_doubles_and_caps() {
        let r =
            Retry::exponential(10, Duration::from_millis(50)).max_delay(Duration::from_millis(300));
        let delays: Vec<_> = (1..=5)
            .map(|n| r.delay_before(n, &err()).unwrap().as_millis())
            .collect();
        assert_eq!(delays, [50, 100, 200, 300, 300]);
        let huge = Retry::exponential(200, Duration::from_secs(1));
        assert_eq!(
            huge.delay_before(150, &err()).unwrap(),
            Duration::from_secs(30)
        );
        let slow = Retry::exponential(3, Duration::from_millis(10)).factor(3.0);
        assert_eq!(
            slow.delay_before(3, &err()).unwrap(),
            Duration::from_millis(90)
        );
        let flat = Retry::exponential(3, Duration::from_millis(10)).factor(f64::NAN);
        assert_eq!(
            flat.delay_before(3, &err()).unwrap(),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn jitter_stays_within_the_computed_delay() {
        let r = Retry::fixed(3, Duration::from_millis(100)).jitter(true);
        for _ in 0..200 {
            assert!(r.delay_before(1, &err()).unwrap() <= Duration::from_millis(100));
        }
    }

    #[test]
    fn a_panicking_delay_function_is_an_error() {
        let r = Retry::with_delay(3, |_, _| panic!("bad delay"));
        let e = r.delay_before(1, &err()).unwrap_err();
        assert!(e.to_string().contains("bad delay"), "{e}");
    }

    #[test]
    fn panicking_callbacks_are_contained() {
        let r = Retry::new(3)
            .retry_if(|_| panic!("predicate"))
            .on_retry(|_, _| panic!("callback"));
        assert!(!r.should_retry(0, &err()));
        r.notify_retry(&err(), 1);
    }
}
