//! [`ScopedStream`]: any stream, ended the moment its scope (or token) is cancelled.
//!
//! Cancellation is watched while the source is being pulled, not only between items: a
//! source stuck in a slow `next()` ends as soon as the cancellation comes. The source is
//! dropped right then, so its cleanup (its `Drop`) runs at once rather than whenever the
//! wrapper itself is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FusedStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::core::error::Error;
use crate::core::scope::{Scope, Shared};

/// A stream that yields its source's items until the source ends or the scope (or token)
/// it is bound to is cancelled, whichever comes first.
///
/// After it ended, [`cancellation_error`](ScopedStream::cancellation_error) tells whether a
/// cancellation ended it, and why.
///
/// ```
/// use std::time::Duration;
/// use futures::StreamExt;
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let s = Scope::builder().timeout(Duration::from_millis(50)).build().unwrap();
/// let ticks = futures::stream::unfold(0, |n| async move {
///     tokio::time::sleep(Duration::from_millis(20)).await;
///     Some((n, n + 1))
/// });
/// let mut ticks = s.stream(ticks);
/// let mut seen = Vec::new();
/// while let Some(n) = ticks.next().await {
///     seen.push(n);
/// }
/// assert_eq!(seen, [0, 1]); // the third tick would come at 60 ms; the scope ended at 50
/// assert!(ticks.cancellation_error().unwrap().is_timeout());
/// s.close().await.unwrap();
/// # }
/// ```
///
/// # Cancel safety
/// The wrapper holds no item of its own: dropping a `next()` future of it (in a `select!`
/// whose other branch won) is exactly as safe as dropping one of the source, and the
/// cancellation it watches is not consumed by a dropped poll.
#[must_use = "streams do nothing unless polled"]
pub struct ScopedStream<S> {
    /// Boxed so the wrapper is `Unpin` whatever the source is, and can drop the source
    /// early.
    source: Option<Pin<Box<S>>>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    scope: Option<Weak<Shared>>,
    was_cancelled: bool,
}

impl<S> std::fmt::Debug for ScopedStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedStream")
            .field("ended", &self.source.is_none())
            .field("was_cancelled", &self.was_cancelled)
            .finish()
    }
}

impl<S: Stream> ScopedStream<S> {
    /// Binds `source` to `token`: the stream ends when the token is cancelled.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use go_go_scope::{CancellationToken, ScopedStream};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let token = CancellationToken::new();
    /// let mut numbers = ScopedStream::new(futures::stream::iter(1..=3), token.clone());
    /// assert_eq!(numbers.next().await, Some(1));
    /// token.cancel();
    /// assert_eq!(numbers.next().await, None);
    /// assert!(numbers.cancellation_error().unwrap().is_cancelled());
    /// # }
    /// ```
    pub fn new(source: S, token: CancellationToken) -> ScopedStream<S> {
        ScopedStream {
            source: Some(Box::pin(source)),
            cancelled: Box::pin(token.cancelled_owned()),
            scope: None,
            was_cancelled: false,
        }
    }

    /// The cancellation that ended this stream, if one did: the scope's own error
    /// ([`Error::Cancelled`] with its reason, or [`Error::Timeout`]).
    pub fn cancellation_error(&self) -> Option<Error> {
        if !self.was_cancelled {
            return None;
        }
        let scope = self.scope.as_ref().and_then(Weak::upgrade);
        Some(match scope {
            Some(scope) => scope.cancel_error(),
            None => Error::Cancelled {
                reason: "the stream's token was cancelled".into(),
            },
        })
    }
}

impl<S: Stream> Stream for ScopedStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        let Some(source) = this.source.as_mut() else {
            return Poll::Ready(None);
        };
        if this.cancelled.as_mut().poll(cx).is_ready() {
            this.was_cancelled = true;
            this.source = None;
            return Poll::Ready(None);
        }
        let item = std::task::ready!(source.as_mut().poll_next(cx));
        if item.is_none() {
            this.source = None;
        }
        Poll::Ready(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.source {
            // Cancellation can end it any time, so no lower bound.
            Some(source) => (0, source.size_hint().1),
            None => (0, Some(0)),
        }
    }
}

impl<S: Stream> FusedStream for ScopedStream<S> {
    fn is_terminated(&self) -> bool {
        self.source.is_none()
    }
}

impl Scope {
    /// Wraps `source` so it ends as soon as this scope is cancelled (explicitly, by its
    /// timeout, by its parent, or by closing), even in the middle of waiting for an item.
    ///
    /// ```
    /// use futures::StreamExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let letters: Vec<_> = s.stream(futures::stream::iter(["a", "b", "c"])).collect().await;
    /// assert_eq!(letters, ["a", "b", "c"]);
    ///
    /// let mut stuck = s.stream(futures::stream::pending::<u8>());
    /// s.cancel("enough");
    /// assert_eq!(stuck.next().await, None);
    /// assert_eq!(stuck.cancellation_error().unwrap().to_string(), "cancelled: enough");
    /// s.close().await.unwrap();
    /// # }
    /// ```
    pub fn stream<S: Stream>(&self, source: S) -> ScopedStream<S> {
        let shared: &Arc<Shared> = self.shared();
        let mut stream = ScopedStream::new(source, shared.token().clone());
        stream.scope = Some(Arc::downgrade(shared));
        stream
    }
}
