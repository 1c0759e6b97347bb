//! [`Debounced`]: collapse a burst of calls into one run, and answer every call of the burst.
//!
//! A burst is a run of calls each less than `wait` after the previous one. With `trailing`
//! (the default), the function runs once, `wait` after the last call of the burst, with that
//! call's argument, and every call of the burst gets that run's result. With `leading`, the
//! first call of a burst runs at once; later calls of the same burst get the result of the
//! trailing run if there is one, else of the leading run. A single call with both options runs
//! the function once. Calls waiting when the scope ends get the scope's cancellation error.

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

/// Options of [`Scope::debounce`]: the quiet time that ends a burst, and which edges run.
///
/// Defaults: `wait` 300 ms, trailing edge only. A `Duration` converts into options with that
/// wait.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::DebounceOptions;
/// let opts = DebounceOptions::new(Duration::from_millis(50)).leading(true).trailing(false);
/// assert_eq!(opts.wait(), Duration::from_millis(50));
/// let from_duration: DebounceOptions = Duration::from_secs(1).into();
/// assert!(from_duration.is_trailing() && !from_duration.is_leading());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebounceOptions {
    wait: Duration,
    leading: bool,
    trailing: bool,
}

impl DebounceOptions {
    /// Bursts end after `wait` without a call; trailing edge only.
    pub fn new(wait: Duration) -> DebounceOptions {
        DebounceOptions {
            wait,
            leading: false,
            trailing: true,
        }
    }

    /// Run on the first call of a burst.
    pub fn leading(mut self, enabled: bool) -> Self {
        self.leading = enabled;
        self
    }

    /// Run when a burst ends, with its last call's argument.
    pub fn trailing(mut self, enabled: bool) -> Self {
        self.trailing = enabled;
        self
    }

    /// The quiet time that ends a burst.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Whether the first call of a burst runs.
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// Whether a burst's end runs.
    pub fn is_trailing(&self) -> bool {
        self.trailing
    }
}

impl Default for DebounceOptions {
    fn default() -> Self {
        DebounceOptions::new(Duration::from_millis(300))
    }
}

impl From<Duration> for DebounceOptions {
    fn from(wait: Duration) -> Self {
        DebounceOptions::new(wait)
    }
}

struct Burst<A, R> {
    /// When the burst ends unless another call comes.
    ends_at: Instant,
    /// The leading run, if this burst had one.
    leading: Option<Arc<Answer<R>>>,
    /// The argument for the trailing run and the answer its callers wait on.
    trailing: Option<(A, Arc<Answer<R>>)>,
}

struct Inner<A, R> {
    f: RunFn<A, R>,
    options: DebounceOptions,
    background: Arc<Background>,
    burst: Mutex<Option<Burst<A, R>>>,
}

/// A debounced async function; see [`Scope::debounce`]. Clones share the same bursts.
pub struct Debounced<A, R> {
    inner: Arc<Inner<A, R>>,
}

impl<A, R> Clone for Debounced<A, R> {
    fn clone(&self) -> Self {
        Debounced {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A, R> fmt::Debug for Debounced<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Debounced")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl<A, R> Debounced<A, R>
where
    A: Send + 'static,
    R: Clone + Send + 'static,
{
    /// Calls the debounced function with `arg`. The call is registered now; the returned
    /// future resolves with the result of the run this call's burst causes, or with the
    /// scope's cancellation error if the scope ends first (at once if it already has).
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let save = s.debounce(|text: String| async move { text.len() }, Duration::from_millis(50)).unwrap();
    /// let first = save.call("h".into());
    /// let second = save.call("hello".into());
    /// // One run, with the last argument; both calls get its result.
    /// assert_eq!(first.await.unwrap(), 5);
    /// assert_eq!(second.await.unwrap(), 5);
    /// s.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: the call is registered by `call` itself, before the future is first
    /// polled, so dropping the future only discards this caller's answer. The call still
    /// counts: it extends its burst, its argument is still the one a trailing run uses if it
    /// was the burst's last call, and the run happens for the other callers.
    ///
    /// # Errors
    /// The future resolves to the scope's cancellation error ([`Error::Cancelled`] or
    /// [`Error::Timeout`]) when the scope ends before the run that answers this call
    /// (at once if it had ended already), and to [`Error::Panicked`] when that run panicked.
    pub fn call(&self, arg: A) -> impl Future<Output = Result<R, Error>> + Send + use<A, R> {
        let inner = &self.inner;
        let mut burst = lock(&inner.burst);
        let answer = if inner.background.is_stopped() {
            Err(inner.background.stop_error())
        } else {
            Ok(self.join_burst(&mut burst, arg))
        };
        drop(burst);
        async move {
            match answer {
                Ok(answer) => answer.await,
                Err(error) => Err(error),
            }
        }
    }

    fn join_burst(&self, burst: &mut Option<Burst<A, R>>, arg: A) -> Waiting<R> {
        let inner = &self.inner;
        let ends_at = deadline_after(inner.options.wait);
        match burst {
            Some(burst) => {
                burst.ends_at = ends_at;
                match (&mut burst.trailing, &burst.leading) {
                    (Some((pending, answer)), _) => {
                        *pending = arg;
                        answer.wait()
                    }
                    (None, Some(leading)) if !inner.options.trailing => leading.wait(),
                    (None, _) => {
                        let answer = Answer::new();
                        let waiting = answer.wait();
                        burst.trailing = Some((arg, answer));
                        waiting
                    }
                }
            }
            None => {
                let answer = Answer::new();
                let waiting = answer.wait();
                let (leading, trailing) = if inner.options.leading {
                    run_and_answer(&inner.background, &inner.f, arg, Arc::clone(&answer));
                    (Some(answer), None)
                } else {
                    (None, Some((arg, answer)))
                };
                *burst = Some(Burst {
                    ends_at,
                    leading,
                    trailing,
                });
                self.watch_burst_end();
                waiting
            }
        }
    }

    /// Waits for the current burst to go quiet, then starts its trailing run. If the helper
    /// stops first, the callers waiting for that trailing run get the stop error.
    fn watch_burst_end(&self) {
        let inner = Arc::clone(&self.inner);
        let background = Arc::clone(&inner.background);
        // Built outside the future so that it answers even if the future never runs.
        let answer_on_stop = AnswerPendingOnDrop(Arc::clone(&inner));
        background.spawn(async move {
            let _answer_on_stop = answer_on_stop;
            loop {
                let ends_at = match lock(&inner.burst).as_ref() {
                    Some(burst) => burst.ends_at,
                    None => return,
                };
                tokio::time::sleep_until(ends_at).await;
                let mut burst = lock(&inner.burst);
                if burst.as_ref().is_some_and(|b| b.ends_at <= Instant::now()) {
                    let ended = burst.take();
                    drop(burst);
                    if let Some((arg, answer)) = ended.and_then(|b| b.trailing) {
                        run_and_answer(&inner.background, &inner.f, arg, answer);
                    }
                    return;
                }
            }
        });
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
        let ended = lock(&inner.burst).take();
        if let Some((_, answer)) = ended.and_then(|b| b.trailing) {
            let background = Arc::clone(&inner.background);
            drop(FinishOnDrop::new(answer, move || background.stop_error()));
        }
    }
}

impl Scope {
    /// Debounces the async function `f`: a burst of calls (each less than `wait` after the
    /// previous) makes one run, and every call gets an answer. See [`DebounceOptions`] for the
    /// leading and trailing edges; the result type must be `Clone` because every call of a
    /// burst receives it.
    ///
    /// Fails with [`Error::InvalidOption`] when neither edge is enabled (nothing would ever
    /// run), and with the scope's error when it is closed or cancelled. When the scope ends,
    /// calls still waiting resolve to its cancellation error, and so do later calls.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::time::Duration;
    /// use go_go_scope::DebounceOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// let counter = runs.clone();
    /// let search = s
    ///     .debounce(
    ///         move |q: &'static str| {
    ///             counter.fetch_add(1, Ordering::SeqCst);
    ///             async move { format!("results for {q}") }
    ///         },
    ///         DebounceOptions::new(Duration::from_millis(100)).leading(true),
    ///     )
    ///     .unwrap();
    /// let typed = ["r", "ru", "rus", "rust"].map(|q| search.call(q));
    /// let answers = futures::future::join_all(typed).await;
    /// assert_eq!(answers[0].as_deref().unwrap(), "results for r"); // the leading run
    /// assert_eq!(answers[3].as_deref().unwrap(), "results for rust"); // the trailing run
    /// assert_eq!(runs.load(Ordering::SeqCst), 2);
    /// s.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when neither edge is enabled; [`Error::Closed`] when the
    /// scope is closed (or closing); the scope's cancellation error ([`Error::Cancelled`] or
    /// [`Error::Timeout`]) when it is cancelled.
    pub fn debounce<A, R, F, Fut>(
        &self,
        f: F,
        options: impl Into<DebounceOptions>,
    ) -> Result<Debounced<A, R>, Error>
    where
        A: Send + 'static,
        R: Clone + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let options = options.into();
        if !options.leading && !options.trailing {
            return Err(Error::invalid(
                "debounce",
                "enable the leading or the trailing edge (or both): with neither, nothing runs",
            ));
        }
        let background = Background::for_scope(self, "debounce")?;
        Ok(Debounced {
            inner: Arc::new(Inner {
                f: run_fn(f),
                options,
                background,
                burst: Mutex::new(None),
            }),
        })
    }
}
