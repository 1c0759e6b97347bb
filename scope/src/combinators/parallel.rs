//! [`Scope::parallel`] and [`Scope::parallel_aggregate`]: run many futures as tasks of the
//! scope, at most N at once, and collect every outcome in input order.
//!
//! Like [`race`](crate::Scope::race), the futures become ordinary tasks of the calling scope:
//! its concurrency limit, breaker, hooks, metrics and span parentage apply. `parallel` adds its
//! own limit on top (a worker pool over the input), and `fail_fast` stops at the first error in
//! time: the still-running tasks are cancelled and have ended when it returns.

use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::combinators::race::Indexed;
use crate::core::error::{BoxError, Error, Outcome};
use crate::core::scope::Scope;

/// Options of [`Scope::parallel`].
///
/// ```
/// use go_go_scope::ParallelOpts;
/// let opts = ParallelOpts { concurrency: Some(4), fail_fast: true };
/// assert_eq!(ParallelOpts::default(), ParallelOpts { concurrency: None, fail_fast: false });
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParallelOpts {
    /// At most this many of the futures run at once (`None`: all of them). `Some(0)` is
    /// invalid: every entry then fails with [`Error::InvalidOption`] and nothing runs.
    pub concurrency: Option<usize>,
    /// Stop at the first error (in time): cancel the running tasks, start no more. Entries that
    /// were cancelled or never started get an [`Error::Cancelled`] saying so.
    pub fail_fast: bool,
}

/// What [`Scope::parallel_aggregate`] returns: successes and failures, each with its input
/// position.
#[derive(Debug)]
#[non_exhaustive]
pub struct Aggregate<T> {
    /// `(index, value)` of every future that succeeded, in input order.
    pub completed: Vec<(usize, T)>,
    /// `(index, error)` of every future that failed, in input order.
    pub errors: Vec<(usize, Error)>,
    /// True when nothing failed (also for an empty input).
    pub all_completed: bool,
}

impl Scope {
    /// Runs `futures` as tasks of this scope, at most `opts.concurrency` at once, and returns
    /// one outcome per future, in input order.
    ///
    /// A failure does not affect the others unless `opts.fail_fast` is set. On a cancelled
    /// scope every entry is the cancellation's error and nothing runs.
    ///
    /// ```
    /// use go_go_scope::{ParallelOpts, Scope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = Scope::new().unwrap();
    /// let jobs = (0..4).map(|i| async move {
    ///     if i == 1 { Err(format!("job {i} failed")) } else { Ok(i * 10) }
    /// });
    /// let results = scope.parallel(jobs, ParallelOpts { concurrency: Some(2), ..Default::default() }).await;
    /// assert_eq!(results[0].1, Some(0));
    /// assert_eq!(results[1].0.as_ref().unwrap().to_string(), "job 1 failed");
    /// assert_eq!(results[3].1, Some(30));
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future loses the outcomes gathered so far. It leaves no
    /// work behind, though: the tasks still running are cancelled at once (they end at their
    /// next await point, and the scope's close still waits for them), and the futures not
    /// started yet are dropped without being run.
    pub async fn parallel<I, F, T, E>(&self, futures: I, opts: ParallelOpts) -> Vec<Outcome<T>>
    where
        I: IntoIterator<Item = F>,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let futures: Vec<F> = futures.into_iter().collect();
        let count = futures.len();
        let every = |error: &dyn Fn() -> Error| (0..count).map(|_| (Some(error()), None)).collect();
        if opts.concurrency == Some(0) {
            return every(&|| {
                Error::invalid("concurrency", "must be at least 1; use None for no limit")
            });
        }
        if self.is_cancelled() {
            return every(&|| self.cancel_error());
        }
        let limit = opts.concurrency.unwrap_or(count).max(1);
        let mut results: Vec<Option<Outcome<T>>> = (0..count).map(|_| None).collect();
        let mut waiting = futures.into_iter().enumerate();
        let mut running = FuturesUnordered::new();
        let mut stopped = false;
        loop {
            while !stopped && running.len() < limit {
                let Some((index, future)) = waiting.next() else {
                    break;
                };
                running.push(Indexed {
                    index,
                    task: self.try_spawn(future),
                });
            }
            let Some((index, outcome)) = running.next().await else {
                break;
            };
            if opts.fail_fast && outcome.0.is_some() && !stopped {
                stopped = true;
                for task in running.iter() {
                    task.task.cancel();
                }
            }
            results[index] = Some(outcome);
        }
        results
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    (
                        Some(Error::cancelled(
                            "not started: an earlier task failed and fail_fast is set",
                        )),
                        None,
                    )
                })
            })
            .collect()
    }

    /// Runs every future like [`parallel`](Scope::parallel) (no limit of its own, no
    /// fail-fast; the scope's concurrency limit still applies) and sorts the outcomes into
    /// successes and failures.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::new().unwrap();
    /// let agg = scope
    ///     .parallel_aggregate([1, 2, 3].map(|i| async move {
    ///         if i == 2 { Err("x") } else { Ok(i) }
    ///     }))
    ///     .await;
    /// assert_eq!(agg.completed, [(0, 1), (2, 3)]);
    /// assert_eq!(agg.errors[0].0, 1);
    /// assert!(!agg.all_completed);
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// As [`parallel`](Scope::parallel): dropping the future loses the outcomes, and the
    /// tasks still running are cancelled.
    pub async fn parallel_aggregate<I, F, T, E>(&self, futures: I) -> Aggregate<T>
    where
        I: IntoIterator<Item = F>,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let mut aggregate = Aggregate {
            completed: Vec::new(),
            errors: Vec::new(),
            all_completed: true,
        };
        for (index, outcome) in self
            .parallel(futures, ParallelOpts::default())
            .await
            .into_iter()
            .enumerate()
        {
            match outcome {
                (None, Some(value)) => aggregate.completed.push((index, value)),
                (error, _) => {
                    aggregate.all_completed = false;
                    aggregate.errors.push((
                        index,
                        error.unwrap_or_else(|| Error::cancelled("task produced nothing")),
                    ));
                }
            }
        }
        aggregate
    }
}

/// [`Scope::parallel`] in a scope of its own (a child of the ambient scope, if there is one).
///
/// ```
/// use go_go_scope::ParallelOpts;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let out = go_go_scope::parallel(
///     (1..=3).map(|i| async move { Ok::<_, go_go_scope::Error>(i * i) }),
///     ParallelOpts::default(),
/// )
/// .await;
/// assert_eq!(out.into_iter().map(|(_, v)| v.unwrap()).collect::<Vec<_>>(), [1, 4, 9]);
/// # }
/// ```
///
/// # Cancel safety
/// Not cancel safe: dropping the future loses the outcomes. Its scope is cancelled, which
/// cancels every task still running, and closes in the background, as when a
/// [`Scope::run`] future is dropped.
pub async fn parallel<I, F, T, E>(futures: I, opts: ParallelOpts) -> Vec<Outcome<T>>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + 'static,
{
    let futures: Vec<F> = futures.into_iter().collect();
    let count = futures.len();
    match Scope::run(Scope::builder().name("parallel"), |s| async move {
        s.parallel(futures, opts).await
    })
    .await
    {
        Ok(outcomes) => outcomes,
        Err(error) => {
            let message = error.to_string();
            (0..count)
                .map(|_| (Some(Error::cancelled(message.clone())), None))
                .collect()
        }
    }
}

/// [`Scope::parallel_aggregate`] in a scope of its own.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let agg = go_go_scope::parallel_aggregate([async { Ok::<_, go_go_scope::Error>(1) }]).await;
/// assert!(agg.all_completed);
/// # }
/// ```
///
/// # Cancel safety
/// As [`parallel`](crate::parallel()): dropping the future loses the outcomes, and its scope
/// is cancelled and closes in the background.
pub async fn parallel_aggregate<I, F, T, E>(futures: I) -> Aggregate<T>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + 'static,
{
    let futures: Vec<F> = futures.into_iter().collect();
    let count = futures.len();
    match Scope::run(Scope::builder().name("parallel"), |s| async move {
        s.parallel_aggregate(futures).await
    })
    .await
    {
        Ok(aggregate) => aggregate,
        Err(error) => {
            let message = error.to_string();
            Aggregate {
                completed: Vec::new(),
                errors: (0..count)
                    .map(|i| (i, Error::cancelled(message.clone())))
                    .collect(),
                all_completed: count == 0,
            }
        }
    }
}
