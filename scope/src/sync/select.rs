//! [`Select`]: wait on several channels at once and take exactly one value.
//!
//! A builder rather than a macro: each branch is a channel and a closure that turns its value
//! into the common result type, so channels of different element types mix freely, the number
//! of branches can be decided at run time, and the result is an ordinary `Result` to use with
//! `?`. The closures run after the choice is made, so a branch that panics cannot lose a value
//! from another channel.
//!
//! Guarantees:
//! - exactly one value is taken, from the winning branch; every other channel is left as it
//!   was (a receive that did not win takes nothing);
//! - among branches that are ready at the same time the choice is random, so no channel starves;
//! - a closed channel is skipped; the select fails with [`Error::ChannelClosed`] only when every
//!   branch's channel is closed and drained;
//! - the optional timeout's timer lives in the select's future and is dropped with it.

use std::cell::Cell;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use crate::core::error::{Error, TimeoutOrigin};
use crate::observe::deadlock::{WaitGuard, begin_wait};
use crate::sync::channel::Channel;

type BranchFuture<'a, R> = Pin<Box<dyn Future<Output = Option<R>> + Send + 'a>>;

/// Waits until one of several channels has a value, and takes exactly that one.
///
/// Add branches with [`recv`](Select::recv), optionally a [`timeout`](Select::timeout), then
/// `.await` it: the result is the winning branch's closure applied to its value, or an
/// [`Error`]: [`Error::ChannelClosed`] when every channel is closed,
/// [`Error::Timeout`] when the timeout passed first, [`Error::InvalidOption`] without branches.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::{Error, Scope, Select};
///
/// enum Event { Text(String), Number(i32) }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let s = Scope::new().unwrap();
/// let texts = s.channel::<String>(10);
/// let numbers = s.channel::<i32>(10);
/// numbers.send(42).await.unwrap();
///
/// let event = Select::new()
///     .recv(&texts, Event::Text)
///     .recv(&numbers, Event::Number)
///     .timeout(Duration::from_secs(1))
///     .await
///     .unwrap();
/// assert!(matches!(event, Event::Number(42)));
///
/// // Nothing arrives: the timeout answers, and nothing was taken from either channel.
/// let late = Select::new().recv(&texts, Event::Text).recv(&numbers, Event::Number)
///     .timeout(Duration::from_millis(30)).await;
/// assert!(matches!(late, Err(Error::Timeout { .. })));
/// s.close().await.unwrap();
/// # }
/// ```
///
/// # Cancel safety
/// Cancel safe: a value is taken from a channel only in the poll that completes the select
/// with it, so dropping the select's future before that (another `select!` branch won, an
/// outer timeout fired) takes nothing from any channel. Its timer goes with it.
///
/// # Errors
/// Awaiting it fails with [`Error::ChannelClosed`] when every branch's channel is closed and
/// drained, with [`Error::Timeout`] (origin `"select"`) when the timeout passed first, with
/// [`Error::InvalidOption`] when it has no branches, or has a timeout on a Tokio runtime built
/// without timers (`enable_time`), and with [`Error::NoRuntime`] when it has a timeout and is
/// polled outside a Tokio runtime.
#[must_use = "a select does nothing until it is awaited"]
pub struct Select<'a, R> {
    branches: Vec<BranchFuture<'a, R>>,
    timeout: Option<Duration>,
}

impl<R> fmt::Debug for Select<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("branches", &self.branches.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<R> Default for Select<'_, R> {
    fn default() -> Self {
        Select {
            branches: Vec::new(),
            timeout: None,
        }
    }
}

impl<'a, R: 'a> Select<'a, R> {
    /// A select with no branches yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a branch: a value from `channel`, turned into the result by `handler`.
    ///
    /// The same channel may appear in several branches; each value still goes to one.
    ///
    /// ```
    /// use go_go_scope::{Channel, Select};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let queues: Vec<Channel<u32>> = (0..3).map(|_| Channel::new(1)).collect();
    /// queues[2].send(7).await.unwrap();
    /// let mut select = Select::new();
    /// for (i, q) in queues.iter().enumerate() {
    ///     select = select.recv(q, move |v| (i, v));
    /// }
    /// assert_eq!(select.await.unwrap(), (2, 7));
    /// # }
    /// ```
    pub fn recv<T, F>(mut self, channel: &'a Channel<T>, handler: F) -> Self
    where
        T: Send + 'a,
        F: FnOnce(T) -> R + Send + 'a,
    {
        self.branches.push(Box::pin(async move {
            channel.recv_untracked().await.map(handler)
        }));
        self
    }

    /// Gives up with [`Error::Timeout`] after `after` if no branch had a value by then. A zero
    /// timeout makes the select a non-blocking check of the channels.
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::{Channel, Error, Select};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ch = Channel::<u8>::new(1);
    /// let r = Select::new().recv(&ch, |v| v).timeout(Duration::ZERO).await;
    /// assert!(matches!(r, Err(Error::Timeout { .. })));
    /// # }
    /// ```
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }
}

impl<'a, R: 'a> IntoFuture for Select<'a, R> {
    type Output = Result<R, Error>;
    type IntoFuture = SelectFuture<'a, R>;

    fn into_future(self) -> SelectFuture<'a, R> {
        SelectFuture {
            branches: self.branches.into_iter().map(Some).collect(),
            timeout: self.timeout,
            sleep: None,
            waiting: None,
        }
    }
}

/// The future of an awaited [`Select`].
///
/// # Cancel safety
/// Cancel safe, as [`Select`] says: dropping it takes nothing from any channel.
#[must_use = "futures do nothing unless awaited"]
pub struct SelectFuture<'a, R> {
    /// `None` once that branch's channel turned out closed.
    branches: Vec<Option<BranchFuture<'a, R>>>,
    timeout: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: Option<WaitGuard>,
}

impl<R> fmt::Debug for SelectFuture<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectFuture")
            .field("open_branches", &self.branches.iter().flatten().count())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<R> Future for SelectFuture<'_, R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, Error>> {
        let this = self.get_mut();
        let count = this.branches.len();
        if count == 0 {
            return Poll::Ready(Err(Error::invalid(
                "select",
                "no branches: add at least one with .recv(&channel, handler)",
            )));
        }
        let start = (next_random() % count as u64) as usize;
        let mut open = 0;
        for offset in 0..count {
            let slot = &mut this.branches[(start + offset) % count];
            let Some(branch) = slot.as_mut() else {
                continue;
            };
            match branch.as_mut().poll(cx) {
                Poll::Ready(Some(value)) => return Poll::Ready(Ok(value)),
                Poll::Ready(None) => *slot = None,
                Poll::Pending => open += 1,
            }
        }
        if open == 0 {
            return Poll::Ready(Err(Error::ChannelClosed));
        }
        if let Some(after) = this.timeout {
            if this.sleep.is_none() {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Poll::Ready(Err(Error::NoRuntime));
                }
                match crate::util::timer::timer(after, "timeout") {
                    Ok(sleep) => this.sleep = Some(Box::pin(sleep)),
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            if let Some(sleep) = this.sleep.as_mut()
                && sleep.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Err(Error::Timeout {
                    after,
                    scope_or_task: TimeoutOrigin::Operation("select"),
                }));
            }
        }
        if this.waiting.is_none() {
            this.waiting = begin_wait("select");
        }
        Poll::Pending
    }
}

/// A cheap per-thread xorshift sequence, seeded from the standard library's random hasher keys.
fn next_random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0x5e1ec7_u64) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}
