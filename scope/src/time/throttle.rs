//! [`Throttled`]: run a function at most once per interval, and answer every call.
//!
//! A call outside any window runs at once (with `leading`, the default) and gets its own
//! result; the run opens a window of `interval`. Calls inside the window do not run the
//! function: with `trailing`, the last of them runs when the window ends (opening the next
//! window) and all of them get that run's result; without it, each gets the result of the most
//! recent run (waiting for it if it is still running). The first call is never throttled.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::error::Error;
use crate::core::scope::Scope;
use crate::time::helper_work::{Background, deadline_after};
use crate::time::shared_answer::{Answer, FinishOnDrop, RunFn, Waiting, run_and_answer, run_fn};
use crate::util::sync::lock;

/// Options of [`Scope::throttle`]: the window length, and which edges run.
///
/// Defaults: `interval` 300 ms, leading edge only. A `Duration` converts into options with
/// that interval.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::ThrottleOptions;
/// let opts = ThrottleOptions::new(Duration::from_millis(50)).trailing(true);
/// assert!(opts.is_leading() && opts.is_trailing());
/// assert_eq!(opts.interval(), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleOptions {
    interval: Duration,
    leading: bool,
    trailing: bool,
}

impl ThrottleOptions {
    /// At most one run per `interval`; leading edge only.
    pub fn new(interval: Duration) -> ThrottleOptions {
        ThrottleOptions {
            interval,
            leading: true,
            trailing: false,
        }
    }

    /// Run a call made outside any window at once.
    pub fn leading(mut self, enabled: bool) -> Self {
        self.leading = enabled;
        self
    }

    /// Run the last call made inside a window when the window ends.
    pub fn trailing(mut self, enabled: bool) -> Self {
        self.trailing = enabled;
        self
    }

    /// The window length.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether calls outside a window run at once.
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// Whether a window's last call runs when it ends.
    pub fn is_trailing(&self) -> bool {
        self.trailing
    }
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        ThrottleOptions::new(Duration::from_millis(300))
    }
}

impl From<Duration> for ThrottleOptions {
    fn from(interval: Duration) -> Self {
        ThrottleOptions::new(interval)
    }
}

struct Window<A, R> {
    /// Calls before this instant are inside the window.
    ends_at: Option<Instant>,
    /// The most recent run.
    last: Option<Arc<Answer<R>>>,
    /// The argument for the run at the window's end and the answer its callers wait on.
    trailing: Option<(A, Arc<Answer<R>>)>,
}

struct Inner<A, R> {
    f: RunFn<A, R>,
    options: ThrottleOptions,
    background: Arc<Background>,
    window: Mutex<Window<A, R>>,
}

/// A throttled async function; see [`Scope::throttle`]. Clones share the same window.
pub struct Throttled<A, R> {
    inner: Arc<Inner<A, R>>,
}

impl<A, R> Clone for Throttled<A, R> {
    fn clone(&self) -> Self {
        Throttled {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A, R> fmt::Debug for Throttled<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttled")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl<A, R> Throttled<A, R>
where
    A: Send + 'static,
    R: Clone + Send + 'static,
{
    /// Calls the throttled function with `arg`. The call is registered now; the returned
    /// future resolves with the result of the run that answers it (see the module rules), or
    /// with the scope's cancellation error if the scope ends first (at once if it already has).
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let double = s.throttle(|n: u32| async move { n * 2 }, Duration::from_millis(50)).unwrap();
    /// assert_eq!(double.call(1).await.unwrap(), 2); // runs
    /// assert_eq!(double.call(2).await.unwrap(), 2); // inside the window: the last result
    /// tokio::time::sleep(Duration::from_millis(60)).await;
    /// assert_eq!(double.call(3).await.unwrap(), 6); // a new window
    /// s.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: the call is registered by `call` itself, before the future is first
    /// polled, so dropping the future only discards this caller's answer. A leading call's
    /// run still happens, and a call inside a window is still the trailing run's argument if
    /// it was the window's last one.
    ///
    /// # Errors
    /// The future resolves to the scope's cancellation error ([`Error::Cancelled`] or
    /// [`Error::Timeout`]) when the scope ends before the run that answers this call
    /// (at once if it had ended already), and to [`Error::Panicked`] when that run panicked.
    pub fn call(&self, arg: A) -> impl Future<Output = Result<R, Error>> + Send + use<A, R> {
        let inner = &self.inner;
        let mut window = lock(&inner.window);
        let answer = if inner.background.is_stopped() {
            Err(inner.background.stop_error())
        } else {
            Ok(self.place(&mut window, arg))
        };
        drop(window);
        async move {
            match answer {
                Ok(answer) => answer.await,
                Err(error) => Err(error),
            }
        }
    }

    fn place(&self, window: &mut Window<A, R>, arg: A) -> Waiting<R> {
        let inner = &self.inner;
        let now = Instant::now();
        let inside = window.ends_at.is_some_and(|end| now < end);
        match (inside, &window.last) {
            (true, Some(last)) if !inner.options.trailing => last.wait(),
            (true, _) => self.join_trailing(window, arg),
            (false, _) if inner.options.leading => {
                let answer = Answer::new();
                let waiting = answer.wait();
                run_and_answer(&inner.background, &inner.f, arg, Arc::clone(&answer));
                window.last = Some(answer);
                window.ends_at = Some(deadline_after(inner.options.interval));
                waiting
            }
            (false, _) => {
                window.ends_at = Some(deadline_after(inner.options.interval));
                self.join_trailing(window, arg)
            }
        }
    }

    /// Registers `arg` as the window's trailing call, starting the timer for the window's end
    /// if this is its first trailing call.
    fn join_trailing(&self, window: &mut Window<A, R>, arg: A) -> Waiting<R> {
        if let Some((pending, answer)) = &mut window.trailing {
            *pending = arg;
            return answer.wait();
        }
        let answer = Answer::new();
        let waiting = answer.wait();
        window.trailing = Some((arg, answer));
        let ends_at = window.ends_at.unwrap_or_else(Instant::now);
        let inner = Arc::clone(&self.inner);
        let background = Arc::clone(&inner.background);
        // Built outside the future so that it answers even if the future never runs.
        let answer_on_stop = AnswerPendingOnDrop(Arc::clone(&inner));
        background.spawn(async move {
            let _answer_on_stop = answer_on_stop;
            tokio::time::sleep_until(ends_at).await;
            let mut window = lock(&inner.window);
            if let Some((arg, answer)) = window.trailing.take() {
                window.last = Some(Arc::clone(&answer));
                window.ends_at = Some(deadline_after(inner.options.interval));
                drop(window);
                run_and_answer(&inner.background, &inner.f, arg, answer);
            }
        });
        waiting
    }
}

/// Answers the callers of a trailing run that will not happen because the helper stopped.
struct AnswerPendingOnDrop<A, R: Clone + Send + 'static>(Arc<Inner<A, R>>);

impl<A, R: Clone + Send + 'static> Drop for AnswerPendingOnDrop<A, R> {
    fn drop(&mut self) {
        let inner = &self.0;
        if !inner.background.is_stopped() {
            return;
        }
        let pending = lock(&inner.window).trailing.take();
        if let Some((_, answer)) = pending {
            let background = Arc::clone(&inner.background);
            drop(FinishOnDrop::new(answer, move || background.stop_error()));
        }
    }
}

impl Scope {
    /// Throttles the async function `f` to at most one run per interval; every call gets an
    /// answer. See [`ThrottleOptions`] for the leading and trailing edges; the result type must
    /// be `Clone` because calls inside a window share a run's result.
    ///
    /// Fails with [`Error::InvalidOption`] when neither edge is enabled (nothing would ever
    /// run), and with the scope's error when it is closed or cancelled. When the scope ends,
    /// calls still waiting resolve to its cancellation error, and so do later calls.
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::ThrottleOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let save = s
    ///     .throttle(|n: u32| async move { n * 2 }, ThrottleOptions::new(Duration::from_millis(50)).trailing(true))
    ///     .unwrap();
    /// let first = save.call(1);
    /// let second = save.call(2);
    /// let third = save.call(3);
    /// assert_eq!(first.await.unwrap(), 2); // leading: its own run
    /// assert_eq!(second.await.unwrap(), 6); // inside the window: the trailing run, with 3
    /// assert_eq!(third.await.unwrap(), 6);
    /// s.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when neither edge is enabled; [`Error::Closed`] when the
    /// scope is closed (or closing); the scope's cancellation error ([`Error::Cancelled`] or
    /// [`Error::Timeout`]) when it is cancelled.
    pub fn throttle<A, R, F, Fut>(
        &self,
        f: F,
        options: impl Into<ThrottleOptions>,
    ) -> Result<Throttled<A, R>, Error>
    where
        A: Send + 'static,
        R: Clone + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let options = options.into();
        if !options.leading && !options.trailing {
            return Err(Error::invalid(
                "throttle",
                "enable the leading or the trailing edge (or both): with neither, nothing runs",
            ));
        }
        let background = Background::for_scope(self, "throttle")?;
        Ok(Throttled {
            inner: Arc::new(Inner {
                f: run_fn(f),
                options,
                background,
                window: Mutex::new(Window {
                    ends_at: None,
                    last: None,
                    trailing: None,
                }),
            }),
        })
    }
}
