//! [`Poller`]: run an async function at an interval and hand each value to a callback.
//!
//! The delay is fixed, not the rate: the next poll starts `interval` after the previous poll
//! (and its callback) finished, so a slow poll never overlaps the next. A failing or panicking
//! poll is recorded in [`PollStatus::last_error`] and polling goes on; the callback only ever
//! sees values. Polling stops when [`Poller::stop`] is called, when the last handle is dropped,
//! or when the owning scope is cancelled or closed (the scope's close waits until the poll in
//! progress has ended).

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::error::{BoxError, Error};
use crate::core::scope::Scope;
use crate::time::helper_work::{Background, deadline_after};
use crate::util::sync::lock;

/// Options of [`Scope::poll`]: the interval, whether the first poll runs at once, and whether
/// polling starts when the poller is created.
///
/// Defaults: `interval` 5 s, `immediate` and `auto_start` on. A `Duration` converts into
/// options with that interval.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::PollOptions;
/// let opts = PollOptions::every(Duration::from_secs(1)).immediate(false).auto_start(false);
/// assert_eq!(opts.interval(), Duration::from_secs(1));
/// assert!(!opts.is_immediate() && !opts.is_auto_start());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOptions {
    interval: Duration,
    immediate: bool,
    auto_start: bool,
}

impl PollOptions {
    /// Poll every `interval` (which must be greater than zero).
    pub fn every(interval: Duration) -> PollOptions {
        PollOptions {
            interval,
            immediate: true,
            auto_start: true,
        }
    }

    /// Whether the first poll after a start runs at once (`true`) or after one interval.
    pub fn immediate(mut self, enabled: bool) -> Self {
        self.immediate = enabled;
        self
    }

    /// Whether polling starts when the poller is created, or waits for [`Poller::start`].
    pub fn auto_start(mut self, enabled: bool) -> Self {
        self.auto_start = enabled;
        self
    }

    /// The delay between the end of one poll and the start of the next.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the first poll after a start runs at once.
    pub fn is_immediate(&self) -> bool {
        self.immediate
    }

    /// Whether polling starts at creation.
    pub fn is_auto_start(&self) -> bool {
        self.auto_start
    }
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions::every(Duration::from_secs(5))
    }
}

impl From<Duration> for PollOptions {
    fn from(interval: Duration) -> Self {
        PollOptions::every(interval)
    }
}

/// A snapshot of a [`Poller`]'s state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PollStatus {
    /// Whether polling is on.
    pub running: bool,
    /// Polls started since creation (a poll counts as soon as it starts).
    pub poll_count: u64,
    /// The error of the most recent poll that failed or panicked, if any did.
    pub last_error: Option<Arc<Error>>,
    /// When the most recent poll started.
    pub last_poll: Option<Instant>,
    /// How long until the next poll starts; `None` while stopped or while a poll is running
    /// (the next one is scheduled when it ends).
    pub time_until_next: Option<Duration>,
}

#[derive(Default)]
struct Status {
    /// The token of the running poll loop; `None` while stopped.
    running: Option<CancellationToken>,
    poll_count: u64,
    last_error: Option<Arc<Error>>,
    last_poll: Option<Instant>,
    next_poll: Option<Instant>,
}

type PollLoop = Pin<Box<dyn Future<Output = ()> + Send>>;

struct State {
    background: Arc<Background>,
    options: PollOptions,
    status: Mutex<Status>,
    /// Builds the polling loop; it owns the user's closures.
    make_loop: Box<dyn Fn(Arc<State>) -> PollLoop + Send + Sync>,
}

impl State {
    fn start(self: &Arc<Self>) {
        let mut status = lock(&self.status);
        let running = status.running.as_ref().is_some_and(|t| !t.is_cancelled());
        if running || self.background.is_stopped() {
            return;
        }
        let token = self.background.token().child_token();
        status.running = Some(token.clone());
        drop(status);
        self.background
            .spawn_until(token, (self.make_loop)(Arc::clone(self)));
    }

    fn stop(&self) {
        let mut status = lock(&self.status);
        if let Some(token) = status.running.take() {
            token.cancel();
        }
        status.next_poll = None;
    }

    fn status(&self) -> PollStatus {
        let status = lock(&self.status);
        let running = status.running.as_ref().is_some_and(|t| !t.is_cancelled());
        PollStatus {
            running,
            poll_count: status.poll_count,
            last_error: status.last_error.clone(),
            last_poll: status.last_poll,
            time_until_next: status
                .next_poll
                .filter(|_| running)
                .map(|at| at.saturating_duration_since(Instant::now())),
        }
    }

    fn scheduled(&self, at: Instant) {
        lock(&self.status).next_poll = Some(at);
    }

    fn poll_started(&self) {
        let mut status = lock(&self.status);
        status.poll_count += 1;
        status.last_poll = Some(Instant::now());
        status.next_poll = None;
    }

    fn failed(&self, error: Error) {
        lock(&self.status).last_error = Some(Arc::new(error));
    }
}

/// Stops polling when the last [`Poller`] handle is dropped.
struct StopOnDrop(Arc<State>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The controller of a polling loop; see [`Scope::poll`]. Clones control the same loop, and
/// dropping the last one stops it.
#[derive(Clone)]
pub struct Poller {
    control: Arc<StopOnDrop>,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller")
            .field("options", &self.control.0.options)
            .field("status", &self.status())
            .finish()
    }
}

impl Poller {
    /// Starts polling if it is stopped; does nothing while running, or once the scope ended.
    pub fn start(&self) {
        self.control.0.start();
    }

    /// Stops polling (a poll in progress is dropped at its next await point); does nothing
    /// while stopped. [`start`](Poller::start) resumes, keeping the count.
    pub fn stop(&self) {
        self.control.0.stop();
    }

    /// The current state: running, polls started, last error, time until the next poll.
    pub fn status(&self) -> PollStatus {
        self.control.0.status()
    }
}

async fn poll_loop<T, F, Fut, E, V, VFut>(state: Arc<State>, callbacks: Arc<Mutex<(F, V)>>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    V: FnMut(T) -> VFut,
    VFut: Future<Output = ()>,
{
    let interval = state.options.interval;
    let mut wait_first = !state.options.immediate;
    loop {
        if wait_first {
            let at = deadline_after(interval);
            state.scheduled(at);
            tokio::time::sleep_until(at).await;
        }
        wait_first = true;
        state.poll_started();
        // The closures are called under the lock only to create their futures, which are
        // awaited after it is released.
        let poll = AssertUnwindSafe(async {
            let future = (lock(&callbacks).0)();
            future.await
        });
        let value = match poll.catch_unwind().await {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => {
                state.failed(Error::from_task_error(error));
                continue;
            }
            Err(panic) => {
                state.failed(Error::from_panic(panic));
                continue;
            }
        };
        let deliver = AssertUnwindSafe(async {
            let future = (lock(&callbacks).1)(value);
            future.await
        });
        if let Err(panic) = deliver.catch_unwind().await {
            state.failed(Error::from_panic(panic));
        }
    }
}

/// Checked before anything is registered with the scope, so a refused poller leaves nothing
/// behind.
fn validate(options: &PollOptions) -> Result<(), Error> {
    if options.interval.is_zero() {
        return Err(Error::invalid(
            "interval",
            "must be greater than zero: a zero interval would poll in a busy loop",
        ));
    }
    Ok(())
}

fn create_poller<T, F, Fut, E, V, VFut>(
    background: Arc<Background>,
    poll: F,
    on_value: V,
    options: PollOptions,
) -> Result<Poller, Error>
where
    T: Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    V: FnMut(T) -> VFut + Send + 'static,
    VFut: Future<Output = ()> + Send + 'static,
{
    let callbacks = Arc::new(Mutex::new((poll, on_value)));
    let state = Arc::new(State {
        background,
        options,
        status: Mutex::new(Status::default()),
        make_loop: Box::new(move |state| Box::pin(poll_loop(state, Arc::clone(&callbacks)))),
    });
    if options.auto_start {
        state.start();
    }
    Ok(Poller {
        control: Arc::new(StopOnDrop(state)),
    })
}

impl Scope {
    /// Calls `poll` every interval and hands each successful value to `on_value`; returns the
    /// [`Poller`] that controls it. Options: a [`PollOptions`], or just the interval as a
    /// `Duration`.
    ///
    /// `poll` returns a `Result`: its errors (and panics) are recorded in
    /// [`PollStatus::last_error`], and polling goes on. Polling stops when the scope is
    /// cancelled or closed, or when the last `Poller` handle is dropped. Fails with the scope's
    /// error if it is already closed or cancelled, and with [`Error::InvalidOption`] for a zero
    /// interval.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let mut counter = 0;
    /// let poller = s
    ///     .poll(
    ///         move || {
    ///             counter += 1;
    ///             let n = counter;
    ///             async move { Ok::<_, std::io::Error>(n) }
    ///         },
    ///         move |n| {
    ///             sink.lock().unwrap().push(n);
    ///             async {}
    ///         },
    ///         Duration::from_millis(50),
    ///     )
    ///     .unwrap();
    /// tokio::time::sleep(Duration::from_millis(120)).await; // polls at 0, 50 and 100 ms
    /// assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    /// assert_eq!(poller.status().poll_count, 3);
    /// s.close().await.unwrap(); // stops it
    /// assert!(!poller.status().running);
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`] when the scope is closed (or closing); the scope's cancellation error
    /// ([`Error::Cancelled`] or [`Error::Timeout`]) when it is cancelled; otherwise
    /// [`Error::InvalidOption`] for a zero interval.
    pub fn poll<T, F, Fut, E, V, VFut>(
        &self,
        poll: F,
        on_value: V,
        options: impl Into<PollOptions>,
    ) -> Result<Poller, Error>
    where
        T: Send + 'static,
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
        V: FnMut(T) -> VFut + Send + 'static,
        VFut: Future<Output = ()> + Send + 'static,
    {
        let options = options.into();
        validate(&options)?;
        let background = Background::for_scope(self, "poll")?;
        create_poller(background, poll, on_value, options)
    }
}

/// Like [`Scope::poll`] without a scope: polling stops only with [`Poller::stop`] or when the
/// last handle is dropped. Fails with [`Error::NoRuntime`] outside a Tokio runtime.
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let poller = go_go_scope::poll(
///     || async { Err::<(), _>("service down") },
///     |_| async {},
///     Duration::from_secs(1),
/// )
/// .unwrap();
/// tokio::time::sleep(Duration::from_millis(10)).await;
/// assert_eq!(poller.status().last_error.unwrap().to_string(), "service down");
/// drop(poller); // stops polling
/// # }
/// ```
///
/// # Errors
/// [`Error::NoRuntime`] outside a Tokio runtime; [`Error::InvalidOption`] for a zero
/// interval.
pub fn poll<T, F, Fut, E, V, VFut>(
    poll: F,
    on_value: V,
    options: impl Into<PollOptions>,
) -> Result<Poller, Error>
where
    T: Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    V: FnMut(T) -> VFut + Send + 'static,
    VFut: Future<Output = ()> + Send + 'static,
{
    let options = options.into();
    validate(&options)?;
    let background = Background::standalone("poll")?;
    create_poller(background, poll, on_value, options)
}
