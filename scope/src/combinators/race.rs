//! [`Scope::race`]: run several futures as tasks of the scope; the first success wins.
//!
//! The racers are ordinary tasks of the calling scope, so its concurrency limit, circuit
//! breaker, hooks, metrics and span parentage apply to them. As soon as one succeeds, the others
//! are cancelled, and `race` returns only once they have ended — no loser outlives the race.

use std::future::Future;

use crate::core::error::{BoxError, Error, Outcome};
use crate::core::scope::Scope;
use crate::core::task::Task;

impl Scope {
    /// Runs `futures` concurrently as tasks of this scope and returns the first success.
    ///
    /// Losers are cancelled and have ended when `race` returns. If every racer fails, the error
    /// is [`Error::AllFailed`] with each racer's error in input order. An empty race is an
    /// [`Error::InvalidOption`]; on a cancelled scope the result is the cancellation's error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::{Error, Scope};
    /// use tokio::time::sleep;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let scope = Scope::new().unwrap();
    /// let mirrors = [30_u64, 10, 20].map(|ms| async move {
    ///     sleep(Duration::from_millis(ms)).await;
    ///     Ok::<_, Error>(format!("mirror answering in {ms} ms"))
    /// });
    /// let (err, fastest) = scope.race(mirrors).await;
    /// assert!(err.is_none());
    /// assert_eq!(fastest.unwrap(), "mirror answering in 10 ms");
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future loses the outcome, even a winner's value when it
    /// is dropped while the losers are still ending. Every racer still running is cancelled at
    /// once (it ends at its next await point; the scope's close still waits for it), so no
    /// racer runs on unobserved.
    pub async fn race<I, F, T, E>(&self, futures: I) -> Outcome<T>
    where
        I: IntoIterator<Item = F>,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        if self.is_cancelled() {
            return (self.cancellation_error(), None);
        }
        // Each racer is wrapped at once, so that dropping the race cancels it (see `Indexed`).
        let mut racers: Vec<Racer<T>> = futures
            .into_iter()
            .enumerate()
            .map(|(index, future)| {
                Racer::Running(Indexed {
                    index,
                    task: self.try_spawn(future),
                })
            })
            .collect();
        if racers.is_empty() {
            return (
                Some(Error::invalid("race", "needs at least one future to race")),
                None,
            );
        }
        // Races are small: polling every racer on each wake beats a `FuturesUnordered`, which
        // allocates per future.
        let winner = std::future::poll_fn(|cx| {
            let mut running = 0;
            for racer in racers.iter_mut() {
                let Racer::Running(indexed) = racer else {
                    continue;
                };
                match std::pin::Pin::new(&mut indexed.task).poll(cx) {
                    std::task::Poll::Pending => running += 1,
                    std::task::Poll::Ready((None, Some(value))) => {
                        *racer = Racer::Ended(None);
                        return std::task::Poll::Ready(Some(value));
                    }
                    std::task::Poll::Ready((error, _)) => {
                        *racer = Racer::Ended(Some(
                            error.unwrap_or_else(|| Error::cancelled("racer produced nothing")),
                        ));
                    }
                }
            }
            if running == 0 {
                std::task::Poll::Ready(None)
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        // Losers: cancel, then wait until each has ended.
        for racer in &racers {
            if let Racer::Running(indexed) = racer {
                indexed.task.cancel();
            }
        }
        for racer in racers.iter_mut() {
            if let Racer::Running(indexed) = racer {
                let _ = (&mut indexed.task).await;
            }
        }
        match winner {
            Some(value) => (None, Some(value)),
            None if self.is_cancelled() => (self.cancellation_error(), None),
            None => (
                Some(Error::AllFailed {
                    errors: racers
                        .into_iter()
                        .map(|racer| match racer {
                            Racer::Ended(Some(error)) => error,
                            _ => Error::cancelled("racer produced nothing"),
                        })
                        .collect(),
                }),
                None,
            ),
        }
    }
}

enum Racer<T> {
    Running(Indexed<T>),
    Ended(Option<Error>),
}

/// A racer with its position, so results can be reported in input order.
pub(crate) struct Indexed<T> {
    pub(crate) index: usize,
    pub(crate) task: Task<T>,
}

impl<T> Future for Indexed<T> {
    type Output = (usize, Outcome<T>);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let index = self.index;
        std::pin::Pin::new(&mut self.task)
            .poll(cx)
            .map(|outcome| (index, outcome))
    }
}

impl<T> Drop for Indexed<T> {
    fn drop(&mut self) {
        // Dropped before it ended: the race (or parallel) was abandoned; do not leave it running.
        if !self.task.is_finished() {
            self.task.cancel();
        }
    }
}

/// [`Scope::race`] in a scope of its own (a child of the ambient scope, if there is one).
///
/// ```
/// use futures::FutureExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (err, value) = go_go_scope::race([
///     async { Err::<u8, _>("primary is down") }.boxed(),
///     async { Ok(7) }.boxed(),
/// ])
/// .await;
/// assert!(err.is_none());
/// assert_eq!(value, Some(7));
/// # }
/// ```
///
/// # Cancel safety
/// Not cancel safe: dropping the future loses the outcome. Its scope is cancelled, which
/// cancels every racer still running, and closes in the background, as when a [`Scope::run`]
/// future is dropped.
pub async fn race<I, F, T, E>(futures: I) -> Outcome<T>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + 'static,
{
    match Scope::run(Scope::builder().name("race"), |s| async move {
        s.race(futures).await
    })
    .await
    {
        Ok(outcome) => outcome,
        Err(error) => (Some(error), None),
    }
}
