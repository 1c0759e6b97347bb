//! [`Channel`]: a Go-style channel that closes with its scope and never loses a value.
//!
//! # Guarantees
//! - Every value given to [`Channel::send`] is either received exactly once or handed back to
//!   its sender in [`SendError`]. A send that returns `Ok(())` will be received (values sent
//!   before a close can still be received after it).
//! - Capacity 0 is a rendezvous: a send completes only when a receiver has taken the value, and
//!   a sender that arrives first waits for a receiver (and the other way round). One corner:
//!   if the receiver a value was handed to is dropped (a lost `select`, a timeout) before it
//!   ran again, the value stays in the channel for the next receiver rather than being lost.
//! - Senders that are waiting when the channel closes get their value back.
//! - Both ends are one cloneable handle (multi-producer, multi-consumer), like the original's
//!   channel and like Go's.
//!
//! # The primitive underneath, and why
//! The queue is [`flume`]'s bounded channel. Measured on a 2-core machine with 2 tokio
//! workers, 100 000 `u64` through capacity 100 with one producer and one consumer, each inside
//! a task (medians of 9 interleaved rounds, ns per message):
//!
//! | queue | ns/msg |
//! |---|---|
//! | `flume` | 44–49 |
//! | this channel (flume + close protocol) | 61 |
//! | `tokio::sync::mpsc` | 76–82 |
//! | `tokio::sync::mpsc`, receiver behind an async mutex (to make it multi-consumer) | 110–113 |
//! | `async-channel` | 105–119 |
//!
//! `flume` is the fastest, is multi-consumer, and has a real rendezvous for capacity 0; tokio's
//! mpsc has neither multiple consumers nor capacity 0, and `async-channel` has no capacity 0.
//! What flume lacks is an explicit close that hands waiting senders their values back, so this
//! module adds one (see below); the benchmark `communication` keeps the comparison with raw
//! tokio mpsc in the same binary.
//!
//! # The close protocol
//! The channel keeps the one flume sender that is not in use by a waiting send; `close` takes
//! it away and fires a token. A send first tries to enqueue without waiting, under the same
//! lock (so nothing enqueues after a close). A send that has to wait enqueues an [`Offer`]
//! instead of the bare value: a cell its sender can take the value back from. Whoever decides
//! the offer's fate does it under the offer's lock:
//! - a receiver takes a pending offer while the channel is open;
//! - the sender marks it accepted once flume has queued it (the value then belongs to the
//!   channel, and stays receivable after a close), or takes it back when the channel closed
//!   first or when its send future is dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tokio_util::sync::CancellationToken;

use crate::core::scope::Scope;
use crate::observe::deadlock::begin_wait;
use crate::util::sync::lock;

/// What travels through the flume queue.
enum Message<T> {
    /// Enqueued without waiting: the channel owns it.
    Value(T),
    /// Enqueued by a sender that had to wait: see the module docs.
    Offer(Arc<Offer<T>>),
}

impl<T> Message<T> {
    /// The value of a message that flume handed back unsent.
    fn reclaim(self) -> Option<T> {
        match self {
            Message::Value(value) => Some(value),
            Message::Offer(offer) => offer.take_back(),
        }
    }
}

/// The cell a waiting sender enqueues; its state changes only under its lock.
struct Offer<T>(Mutex<OfferState<T>>);

enum OfferState<T> {
    /// Queued or about to be; its sender has not returned yet.
    Pending(T),
    /// Its sender returned `Ok`: the value belongs to the channel.
    Accepted(T),
    /// Taken by a receiver, or taken back by its sender.
    Done,
}

impl<T> Offer<T> {
    fn new(value: T) -> Offer<T> {
        Offer(Mutex::new(OfferState::Pending(value)))
    }

    /// A receiver's side: the value, unless it is not (or no longer) the channel's to give.
    fn receive(&self, channel_closed: bool) -> Option<T> {
        let mut state = lock(&self.0);
        match std::mem::replace(&mut *state, OfferState::Done) {
            OfferState::Accepted(value) => Some(value),
            OfferState::Pending(value) if !channel_closed => Some(value),
            // Closed before its sender returned: the sender takes it back.
            pending @ OfferState::Pending(_) => {
                *state = pending;
                None
            }
            OfferState::Done => None,
        }
    }

    /// The sender's side once flume queued the offer: accept it, or take it back if the
    /// channel closed first. `Ok` also when a receiver already took it.
    fn settle(&self, channel_closed: bool) -> Result<(), T> {
        let mut state = lock(&self.0);
        match std::mem::replace(&mut *state, OfferState::Done) {
            OfferState::Pending(value) if channel_closed => Err(value),
            OfferState::Pending(value) => {
                *state = OfferState::Accepted(value);
                Ok(())
            }
            accepted @ OfferState::Accepted(_) => {
                *state = accepted;
                Ok(())
            }
            OfferState::Done => Ok(()),
        }
    }

    /// The sender's side when it gives up (close, or its future dropped): the value back,
    /// unless a receiver already has it.
    fn take_back(&self) -> Option<T> {
        let mut state = lock(&self.0);
        match std::mem::replace(&mut *state, OfferState::Done) {
            OfferState::Pending(value) => Some(value),
            other => {
                *state = other;
                None
            }
        }
    }
}

/// Drops a pending offer's value if the send future is dropped before it settled, so the value
/// is not received after its sender gave up.
struct TakeBackOnDrop<T>(Option<Arc<Offer<T>>>);

impl<T> Drop for TakeBackOnDrop<T> {
    fn drop(&mut self) {
        if let Some(offer) = self.0.take() {
            drop(offer.take_back());
        }
    }
}

struct State<T> {
    /// The channel's own sender; `None` once closed.
    sender: Mutex<Option<flume::Sender<Message<T>>>>,
    receiver: flume::Receiver<Message<T>>,
    closed: CancellationToken,
    capacity: usize,
    /// The scope's cleanup of this helper, withdrawn when the helper is dropped.
    owner: std::sync::OnceLock<crate::core::scope::DisposerHandle>,
}

impl<T> State<T> {
    fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    fn open(&self, message: Message<T>) -> Option<T> {
        match message {
            Message::Value(value) => Some(value),
            Message::Offer(offer) => offer.receive(self.is_closed()),
        }
    }

    fn try_recv(&self) -> Result<T, TryRecvError> {
        loop {
            match self.receiver.try_recv() {
                Ok(message) => {
                    if let Some(value) = self.open(message) {
                        return Ok(value);
                    }
                }
                Err(flume::TryRecvError::Disconnected) => return Err(TryRecvError::Closed),
                Err(flume::TryRecvError::Empty) if self.is_closed() => {
                    return Err(TryRecvError::Closed);
                }
                Err(flume::TryRecvError::Empty) => return Err(TryRecvError::Empty),
            }
        }
    }

    /// Receives, waiting if needed; `wait_label` names the wait for deadlock detection.
    async fn recv(&self, wait_label: Option<&'static str>) -> Option<T> {
        match self.try_recv() {
            Ok(value) => return Some(value),
            Err(TryRecvError::Closed) => return None,
            Err(TryRecvError::Empty) => {}
        }
        let _waiting = wait_label.and_then(begin_wait);
        loop {
            tokio::select! {
                biased;
                message = self.receiver.recv_async() => match message {
                    Ok(message) => {
                        if let Some(value) = self.open(message) {
                            return Some(value);
                        }
                    }
                    Err(flume::RecvError::Disconnected) => return None,
                },
                () = self.closed.cancelled() => return self.try_recv().ok(),
            }
        }
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let sender = lock(&self.sender);
        let Some(sender) = sender.as_ref() else {
            return Err(TrySendError::Closed(value));
        };
        let (full, message) = match sender.try_send(Message::Value(value)) {
            Ok(()) => return Ok(()),
            Err(flume::TrySendError::Full(message)) => (true, message),
            Err(flume::TrySendError::Disconnected(message)) => (false, message),
        };
        match (message.reclaim(), full) {
            (Some(value), true) => Err(TrySendError::Full(value)),
            (Some(value), false) => Err(TrySendError::Closed(value)),
            // Only a bare value was handed over above, so there is always one to reclaim.
            (None, _) => Ok(()),
        }
    }

    async fn send(&self, value: T) -> Result<(), SendError<T>> {
        let value = match self.try_send(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(value)) => return Err(SendError(value)),
            Err(TrySendError::Full(value)) => value,
        };
        let Some(sender) = lock(&self.sender).clone() else {
            return Err(SendError(value));
        };
        let _waiting = begin_wait("channel send");
        let offer = Arc::new(Offer::new(value));
        let mut guard = TakeBackOnDrop(Some(Arc::clone(&offer)));
        let queued = tokio::select! {
            biased;
            sent = sender.send_async(Message::Offer(Arc::clone(&offer))) => sent.is_ok(),
            () = self.closed.cancelled() => false,
        };
        // Let the channel disconnect once the last waiting sender is gone.
        drop(sender);
        guard.0 = None;
        let settled = if queued {
            offer.settle(self.is_closed())
        } else {
            offer.take_back().map_or(Ok(()), Err)
        };
        settled.map_err(SendError)
    }

    fn close(&self) -> bool {
        let sender = lock(&self.sender).take();
        self.closed.cancel();
        sender.is_some()
    }
}

type PendingRecv<T> = Pin<Box<dyn Future<Output = Option<T>> + Send>>;

/// A Go-style channel: a bounded queue that any number of tasks send to and receive from.
///
/// Create one with [`Scope::channel`] (closed automatically when the scope closes) or
/// [`Channel::new`]. Clones are handles to the same channel. Capacity 0 makes a rendezvous
/// channel. The channel is also a [`Stream`] of its values, which ends once the channel is
/// closed and drained.
///
/// ```
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let s = Scope::new().unwrap();
/// let ch = s.channel::<u32>(2);
/// let producer = ch.clone();
/// s.spawn(async move {
///     for i in 1..=3 {
///         producer.send(i).await.unwrap(); // waits while the buffer is full
///     }
///     producer.close();
/// });
/// let mut got = Vec::new();
/// while let Some(v) = ch.recv().await {
///     got.push(v);
/// }
/// assert_eq!(got, [1, 2, 3]);
/// // A closed channel hands the value back.
/// assert_eq!(ch.send(4).await.unwrap_err().into_inner(), 4);
/// s.close().await.unwrap();
/// # }
/// ```
///
/// # Cancel safety
/// [`recv`](Channel::recv) is cancel safe and [`send`](Channel::send) never delivers a value
/// whose future was dropped; see their docs. Used as a [`Stream`], a receive that has to
/// wait is kept in this handle rather than in the `next()` future, so dropping that future
/// takes nothing either, and the handle's next poll picks the receive up again.
pub struct Channel<T> {
    state: Arc<State<T>>,
    /// The receive in progress for the `Stream` impl; a `Mutex` only so the handle stays
    /// `Sync` (it is reached through `&mut self`, so never contended).
    pending: Mutex<Option<PendingRecv<T>>>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Channel<T> {
        Channel {
            state: Arc::clone(&self.state),
            pending: Mutex::new(None),
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("capacity", &self.state.capacity)
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> Channel<T> {
    /// A channel that is not tied to a scope: it closes when [`close`](Channel::close) is called
    /// or every handle is dropped. `capacity` 0 makes a rendezvous channel.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ch = go_go_scope::Channel::new(0); // rendezvous
    /// let rx = ch.clone();
    /// let receiver = tokio::spawn(async move { rx.recv().await });
    /// ch.send("hi").await.unwrap(); // returns once the receiver has it
    /// assert_eq!(receiver.await.unwrap(), Some("hi"));
    /// # }
    /// ```
    pub fn new(capacity: usize) -> Channel<T> {
        let (sender, receiver) = flume::bounded(capacity);
        Channel {
            state: Arc::new(State {
                sender: Mutex::new(Some(sender)),
                receiver,
                closed: CancellationToken::new(),
                capacity,
                owner: std::sync::OnceLock::new(),
            }),
            pending: Mutex::new(None),
        }
    }

    /// Sends `value`, waiting while the buffer is full (or, for capacity 0, until a receiver
    /// takes it).
    ///
    /// Fails only when the channel is closed, handing `value` back in the error; a send that
    /// was waiting when the channel closed fails the same way. If the returned future is
    /// dropped before it completes, the value was either already received or is dropped with
    /// the future; it is never received later.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ch = go_go_scope::Channel::new(1);
    /// ch.send(String::from("kept")).await.unwrap();
    /// ch.close();
    /// let back = ch.send(String::from("returned")).await.unwrap_err();
    /// assert_eq!(back.into_inner(), "returned");
    /// assert_eq!(ch.recv().await.as_deref(), Some("kept")); // buffered values survive close
    /// assert_eq!(ch.recv().await, None);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// If the future is dropped before it completes (another `select!` branch won), the value
    /// was either already taken by a receiver or is dropped with the future: it is never
    /// received later.
    ///
    /// # Errors
    /// [`SendError`] holding `value` when the channel is closed, at the call or while the send
    /// waited.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.state.send(value).await
    }

    /// Sends `value` if that needs no waiting: there is buffer space, or (capacity 0) a
    /// receiver is waiting.
    ///
    /// ```
    /// use go_go_scope::{Channel, TrySendError};
    /// let ch = Channel::new(1);
    /// assert!(ch.try_send(1).is_ok());
    /// assert!(matches!(ch.try_send(2), Err(TrySendError::Full(2))));
    /// ch.close();
    /// assert!(matches!(ch.try_send(3), Err(TrySendError::Closed(3))));
    /// ```
    ///
    /// # Errors
    /// The value comes back in [`TrySendError::Full`] when the buffer is full (capacity 0: no
    /// receiver is waiting), in [`TrySendError::Closed`] when the channel is closed.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.state.try_send(value)
    }

    /// Receives the next value, waiting until one is sent; `None` once the channel is closed
    /// and every value sent before the close has been received.
    ///
    /// Dropping the returned future before it completes takes nothing from the channel.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ch = go_go_scope::Channel::new(4);
    /// ch.send(Some(1)).await.unwrap();
    /// ch.send(None).await.unwrap(); // a `None` value is a value, not the end
    /// ch.close();
    /// assert_eq!(ch.recv().await, Some(Some(1)));
    /// assert_eq!(ch.recv().await, Some(None));
    /// assert_eq!(ch.recv().await, None);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: a value is taken from the channel only when the future completes with it,
    /// so dropping the future (in a `select!` whose other branch won) loses nothing.
    pub async fn recv(&self) -> Option<T> {
        self.state.recv(Some("channel receive")).await
    }

    /// Receives a value if one is ready now.
    ///
    /// ```
    /// use go_go_scope::{Channel, TryRecvError};
    /// let ch = Channel::new(1);
    /// assert_eq!(ch.try_recv(), Err(TryRecvError::Empty));
    /// ch.try_send(7).unwrap();
    /// assert_eq!(ch.try_recv(), Ok(7));
    /// ch.close();
    /// assert_eq!(ch.try_recv(), Err(TryRecvError::Closed));
    /// ```
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when nothing is ready now; [`TryRecvError::Closed`] when the
    /// channel is closed and every value sent before the close has been received.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.state.try_recv()
    }

    pub(crate) async fn recv_untracked(&self) -> Option<T> {
        self.state.recv(None).await
    }

    /// Closes the channel: later sends (and sends waiting now) fail with their value handed
    /// back; receivers get the values already sent, then `None`. Returns `true` if this call
    /// closed it, `false` if it was already closed.
    ///
    /// ```
    /// let ch = go_go_scope::Channel::<u8>::new(1);
    /// assert!(ch.close());
    /// assert!(!ch.close());
    /// assert!(ch.is_closed());
    /// ```
    pub fn close(&self) -> bool {
        self.state.close()
    }

    /// True once the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// How many values are buffered (always 0 for a rendezvous channel).
    ///
    /// ```
    /// let ch = go_go_scope::Channel::new(5);
    /// assert_eq!((ch.len(), ch.capacity()), (0, 5));
    /// ch.try_send(1).unwrap();
    /// ch.try_send(2).unwrap();
    /// assert_eq!(ch.len(), 2);
    /// ch.try_recv().unwrap();
    /// assert_eq!(ch.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.state.receiver.len()
    }

    /// True when no value is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity the channel was created with (0: rendezvous).
    pub fn capacity(&self) -> usize {
        self.state.capacity
    }
}

impl<T: Send + 'static> Stream for Channel<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        let pending = this
            .pending
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pending.is_none() {
            match this.state.try_recv() {
                Ok(value) => return Poll::Ready(Some(value)),
                Err(TryRecvError::Closed) => return Poll::Ready(None),
                Err(TryRecvError::Empty) => {
                    let state = Arc::clone(&this.state);
                    *pending = Some(Box::pin(async move {
                        state.recv(Some("channel receive")).await
                    }));
                }
            }
        }
        let Some(future) = pending.as_mut() else {
            return Poll::Ready(None);
        };
        let item = std::task::ready!(future.as_mut().poll(cx));
        *pending = None;
        Poll::Ready(item)
    }
}

/// The error of [`Channel::send`]: the channel is closed, and here is the value back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ch = go_go_scope::Channel::new(1);
/// ch.close();
/// let err = ch.send(vec![1, 2]).await.unwrap_err();
/// assert_eq!(err.to_string(), "channel is closed; the value was handed back");
/// assert_eq!(err.into_inner(), [1, 2]);
/// # }
/// ```
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel is closed; the value was handed back")
    }
}

impl<T> std::error::Error for SendError<T> {}

impl<T> From<SendError<T>> for crate::Error {
    /// Drops the handed-back value; keep the [`SendError`] when you still need it.
    fn from(_: SendError<T>) -> crate::Error {
        crate::Error::ChannelClosed
    }
}

/// The error of [`Channel::try_send`]: the value comes back either way.
///
/// ```
/// use go_go_scope::TrySendError;
/// let full = TrySendError::Full(1);
/// assert_eq!(full.to_string(), "channel is full");
/// assert_eq!(full.into_inner(), 1);
/// ```
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The buffer is full (or, for capacity 0, no receiver is waiting).
    Full(T),
    /// The channel is closed.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) | TrySendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("channel is full"),
            TrySendError::Closed(_) => f.write_str("channel is closed"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// The error of [`Channel::try_recv`].
///
/// ```
/// assert_eq!(go_go_scope::TryRecvError::Empty.to_string(), "channel is empty");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is buffered right now.
    #[error("channel is empty")]
    Empty,
    /// The channel is closed and drained.
    #[error("channel is closed and drained")]
    Closed,
}

impl Scope {
    /// A [`Channel`] with room for `capacity` values (0: rendezvous), closed when this scope
    /// closes: receivers then get the values already sent, then `None`, and waiting senders
    /// get their values back. On a scope that is already closed, the channel starts closed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let ch = s.channel(10);
    /// ch.send("hello").await.unwrap();
    /// ch.send("world").await.unwrap();
    /// s.close().await.unwrap();
    /// assert!(ch.is_closed());
    /// assert_eq!(ch.recv().await, Some("hello"));
    /// assert_eq!(ch.recv().await, Some("world"));
    /// assert_eq!(ch.recv().await, None);
    /// # }
    /// ```
    pub fn channel<T: Send + 'static>(&self, capacity: usize) -> Channel<T> {
        let channel = Channel::new(capacity);
        if self.is_closed() {
            channel.close();
        } else {
            let state = Arc::downgrade(&channel.state);
            let owner = self.defer_owned(move || async move {
                if let Some(state) = state.upgrade() {
                    state.close();
                }
            });
            if let Some(owner) = owner {
                let _ = channel.state.owner.set(owner);
            }
        }
        channel
    }
}
