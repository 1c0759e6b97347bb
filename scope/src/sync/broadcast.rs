//! [`Broadcast`]: one sender side, many subscribers, each seeing every value sent after it
//! subscribed.
//!
//! Built on `tokio::sync::broadcast`: one ring buffer shared by all subscribers, so memory is
//! bounded by the capacity however slow a subscriber is. A subscriber that falls more than
//! `capacity` values behind does not hold the others back; its next receive reports
//! [`Lagged`] with the number of values it missed, then continues with the oldest value still
//! buffered. Sending never waits.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::broadcast as tokio_broadcast;
use tokio_util::sync::ReusableBoxFuture;

use crate::core::error::Error;
use crate::core::scope::Scope;
use crate::observe::deadlock::begin_wait;
use crate::sync::channel::SendError;
use crate::util::sync::lock;

/// How many values a [`Scope::broadcast`] keeps for its slowest subscriber.
pub const DEFAULT_BROADCAST_CAPACITY: usize = 1024;

/// A broadcast channel: every [`Subscriber`] receives every value sent after it subscribed.
///
/// Clones are handles to the same channel. [`send`](Broadcast::send) never waits and returns
/// how many subscribers the value was queued for. After [`close`](Broadcast::close) (or when
/// the owning scope closes), subscribers receive what was already sent, then `None`.
///
/// ```
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let s = Scope::new().unwrap();
/// let news = s.broadcast::<u32>();
/// let mut early = news.subscribe().unwrap();
/// assert_eq!(news.send(1).unwrap(), 1);
/// let mut late = news.subscribe().unwrap();
/// assert_eq!(news.send(2).unwrap(), 2);
/// news.close();
/// assert_eq!(early.recv().await, Some(Ok(1)));
/// assert_eq!(early.recv().await, Some(Ok(2)));
/// assert_eq!(early.recv().await, None);
/// assert_eq!(late.recv().await, Some(Ok(2))); // subscribed after 1 was sent
/// assert_eq!(late.recv().await, None);
/// s.close().await.unwrap();
/// # }
/// ```
pub struct Broadcast<T> {
    state: Arc<State<T>>,
}

struct State<T> {
    /// `None` once closed.
    sender: Mutex<Option<tokio_broadcast::Sender<T>>>,
    capacity: usize,
    /// The scope's cleanup of this helper, withdrawn when the helper is dropped.
    owner: std::sync::OnceLock<crate::core::scope::DisposerHandle>,
}

impl<T> State<T> {
    fn close(&self) -> bool {
        lock(&self.sender).take().is_some()
    }
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Broadcast {
            state: Arc::clone(&self.state),
        }
    }
}

impl<T> fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broadcast")
            .field("capacity", &self.state.capacity)
            .field("subscribers", &self.subscriber_count())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> Broadcast<T> {
    /// The largest capacity accepted: 2^20 values. Room for every value is allocated when the
    /// broadcast is made, so a larger capacity would reserve memory nobody uses (and a huge one
    /// would abort the process on allocation).
    pub const MAX_CAPACITY: usize = 1 << 20;
}

impl<T: Clone + Send + 'static> Broadcast<T> {
    /// A broadcast channel not tied to a scope, keeping up to `capacity` values for its
    /// slowest subscriber. `capacity` must be between 1 and [`Broadcast::MAX_CAPACITY`].
    ///
    /// ```
    /// use go_go_scope::{Broadcast, Error};
    /// assert!(Broadcast::<u8>::new(16).is_ok());
    /// assert!(matches!(Broadcast::<u8>::new(0), Err(Error::InvalidOption { .. })));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `capacity` is 0 or above [`Broadcast::MAX_CAPACITY`].
    pub fn new(capacity: usize) -> Result<Broadcast<T>, Error> {
        if !(1..=Self::MAX_CAPACITY).contains(&capacity) {
            return Err(Error::invalid(
                "capacity",
                format!(
                    "a broadcast keeps between 1 and {} values (got {capacity})",
                    Self::MAX_CAPACITY
                ),
            ));
        }
        Ok(Broadcast::with_valid_capacity(capacity))
    }

    /// `capacity` is between 1 and [`Broadcast::MAX_CAPACITY`], well inside what tokio accepts.
    fn with_valid_capacity(capacity: usize) -> Broadcast<T> {
        let (sender, _) = tokio_broadcast::channel(capacity);
        Broadcast {
            state: Arc::new(State {
                sender: Mutex::new(Some(sender)),
                capacity,
                owner: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sends `value` to every current subscriber without waiting, returning how many it was
    /// queued for (0 when there are none). Fails only when closed, handing the value back.
    ///
    /// ```
    /// let b = go_go_scope::Broadcast::new(8).unwrap();
    /// assert_eq!(b.send("nobody listens").unwrap(), 0);
    /// let _sub = b.subscribe().unwrap();
    /// assert_eq!(b.send("one listens").unwrap(), 1);
    /// b.close();
    /// assert_eq!(b.send("closed").unwrap_err().into_inner(), "closed");
    /// ```
    ///
    /// # Errors
    /// [`SendError`] holding `value` when the broadcast is closed. Having no subscribers is
    /// not an error: the value is dropped and the count is 0.
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let sender = lock(&self.state.sender);
        match sender.as_ref() {
            None => Err(SendError(value)),
            Some(sender) => Ok(sender.send(value).unwrap_or(0)),
        }
    }

    /// A new subscriber that receives every value sent from now on; fails with
    /// [`Error::ChannelClosed`] once the broadcast is closed.
    ///
    /// ```
    /// use go_go_scope::{Broadcast, Error};
    /// let b = Broadcast::<u8>::new(4).unwrap();
    /// let sub = b.subscribe();
    /// assert!(sub.is_ok());
    /// b.close();
    /// assert!(matches!(b.subscribe(), Err(Error::ChannelClosed)));
    /// ```
    ///
    /// # Errors
    /// [`Error::ChannelClosed`] once the broadcast is closed (explicitly or by its scope).
    pub fn subscribe(&self) -> Result<Subscriber<T>, Error> {
        let sender = lock(&self.state.sender);
        let receiver = sender.as_ref().ok_or(Error::ChannelClosed)?.subscribe();
        Ok(Subscriber::new(receiver))
    }
}

impl<T> Broadcast<T> {
    /// Closes the broadcast: no more sends or subscriptions; subscribers receive what was
    /// already sent, then `None`. Returns `true` if this call closed it.
    pub fn close(&self) -> bool {
        self.state.close()
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.state.sender).is_none()
    }

    /// How many subscribers exist now (a dropped subscriber stops counting at once).
    ///
    /// ```
    /// let b = go_go_scope::Broadcast::<u8>::new(8).unwrap();
    /// let sub = b.subscribe().unwrap();
    /// assert_eq!(b.subscriber_count(), 1);
    /// drop(sub);
    /// assert_eq!(b.subscriber_count(), 0);
    /// ```
    pub fn subscriber_count(&self) -> usize {
        lock(&self.state.sender)
            .as_ref()
            .map_or(0, tokio_broadcast::Sender::receiver_count)
    }

    /// How many values are kept for the slowest subscriber.
    pub fn capacity(&self) -> usize {
        self.state.capacity
    }
}

/// A subscriber fell behind and missed this many values (they were overwritten before it
/// received them); it continues with the oldest value still kept.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use go_go_scope::{Broadcast, Lagged};
/// let b = Broadcast::new(2).unwrap();
/// let mut sub = b.subscribe().unwrap();
/// for i in 0..5 {
///     b.send(i).unwrap();
/// }
/// assert_eq!(sub.recv().await, Some(Err(Lagged(3))));
/// assert_eq!(sub.recv().await, Some(Ok(3)));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the subscriber fell behind and missed {0} value(s)")]
pub struct Lagged(pub u64);

type Next<T> = (Option<Result<T, Lagged>>, tokio_broadcast::Receiver<T>);

async fn next<T: Clone>(mut receiver: tokio_broadcast::Receiver<T>) -> Next<T> {
    use tokio_broadcast::error::{RecvError, TryRecvError};
    let item = match receiver.try_recv() {
        Ok(value) => Some(Ok(value)),
        Err(TryRecvError::Lagged(missed)) => Some(Err(Lagged(missed))),
        Err(TryRecvError::Closed) => None,
        Err(TryRecvError::Empty) => {
            let _waiting = begin_wait("broadcast receive");
            match receiver.recv().await {
                Ok(value) => Some(Ok(value)),
                Err(RecvError::Lagged(missed)) => Some(Err(Lagged(missed))),
                Err(RecvError::Closed) => None,
            }
        }
    };
    (item, receiver)
}

/// One subscription to a [`Broadcast`]; also a [`Stream`] of the same items as
/// [`recv`](Subscriber::recv). Dropping it unsubscribes.
///
/// # Cancel safety
/// The wait for the next value lives in the subscriber itself, so dropping a
/// [`recv`](Subscriber::recv) future or a `next()` future of the stream before it completes
/// takes nothing: the next call gets the value.
pub struct Subscriber<T> {
    next: ReusableBoxFuture<'static, Next<T>>,
    done: bool,
}

impl<T> fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("done", &self.done)
            .finish()
    }
}

impl<T: Clone + Send + 'static> Subscriber<T> {
    fn new(receiver: tokio_broadcast::Receiver<T>) -> Subscriber<T> {
        Subscriber {
            next: ReusableBoxFuture::new(next(receiver)),
            done: false,
        }
    }

    /// The next value sent, in order; `Some(Err(Lagged(n)))` if this subscriber fell more
    /// than the capacity behind and missed `n` values; `None` once the broadcast is closed and
    /// everything sent before the close was received.
    ///
    /// Dropping the returned future before it completes takes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let b = go_go_scope::Broadcast::new(4).unwrap();
    /// let mut sub = b.subscribe().unwrap();
    /// b.send(Some('x')).unwrap();
    /// b.send(None).unwrap(); // values that are `None` are delivered too
    /// b.close();
    /// assert_eq!(sub.recv().await, Some(Ok(Some('x'))));
    /// assert_eq!(sub.recv().await, Some(Ok(None)));
    /// assert_eq!(sub.recv().await, None);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: the wait for the next value belongs to the subscriber, not to the returned
    /// future, and a value is handed out only in the poll that completes the future. Dropping
    /// the future (in a `select!` whose other branch won) loses nothing: the next `recv` (or
    /// the stream's next item) gets the value.
    pub async fn recv(&mut self) -> Option<Result<T, Lagged>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Lagged>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let (item, receiver) = std::task::ready!(self.next.poll(cx));
        if item.is_none() {
            self.done = true;
        }
        self.next.set(next(receiver));
        Poll::Ready(item)
    }
}

impl<T: Clone + Send + 'static> Stream for Subscriber<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl Scope {
    /// A [`Broadcast`] keeping up to [`DEFAULT_BROADCAST_CAPACITY`] values for its slowest
    /// subscriber, closed when this scope closes (on a closed scope it starts closed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let b = s.broadcast::<String>();
    /// let mut sub = b.subscribe().unwrap();
    /// let listener = s.spawn(async move {
    ///     let mut seen = Vec::new();
    ///     while let Some(Ok(v)) = sub.recv().await {
    ///         seen.push(v);
    ///     }
    ///     seen
    /// });
    /// b.send("a".into()).unwrap();
    /// b.close();
    /// assert_eq!(listener.await.1.unwrap(), ["a"]);
    /// s.close().await.unwrap();
    /// # }
    /// ```
    pub fn broadcast<T: Clone + Send + 'static>(&self) -> Broadcast<T> {
        let broadcast = Broadcast::with_valid_capacity(DEFAULT_BROADCAST_CAPACITY);
        self.own_broadcast(&broadcast);
        broadcast
    }

    /// Like [`broadcast`](Scope::broadcast) with room for `capacity` values (at least 1).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// assert_eq!(s.broadcast_with_capacity::<u8>(4).unwrap().capacity(), 4);
    /// assert!(s.broadcast_with_capacity::<u8>(0).is_err());
    /// s.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `capacity` is 0 or above [`Broadcast::MAX_CAPACITY`]. A
    /// closed scope is not an error: the broadcast then starts closed.
    pub fn broadcast_with_capacity<T: Clone + Send + 'static>(
        &self,
        capacity: usize,
    ) -> Result<Broadcast<T>, Error> {
        let broadcast = Broadcast::new(capacity)?;
        self.own_broadcast(&broadcast);
        Ok(broadcast)
    }

    fn own_broadcast<T: Send + 'static>(&self, broadcast: &Broadcast<T>) {
        if self.is_closed() {
            broadcast.close();
            return;
        }
        let state = Arc::downgrade(&broadcast.state);
        let owner = self.defer_owned(move || async move {
            if let Some(state) = state.upgrade() {
                state.close();
            }
        });
        if let Some(owner) = owner {
            let _ = broadcast.state.owner.set(owner);
        }
    }
}
