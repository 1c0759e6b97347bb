//! One run's result, handed to every caller waiting for it: how debounce and throttle give
//! every call an answer.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::FutureExt;
use tokio::sync::oneshot;

use crate::core::error::{Error, TimeoutOrigin};
use crate::time::helper_work::Background;
use crate::util::sync::lock;

/// A user function, stored type-erased: one argument in, a future of the result out.
pub(crate) type RunFn<A, R> =
    Arc<dyn Fn(A) -> Pin<Box<dyn Future<Output = R> + Send>> + Send + Sync>;

/// Erases `f` into a [`RunFn`].
pub(crate) fn run_fn<A, R, F, Fut>(f: F) -> RunFn<A, R>
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    Arc::new(move |arg| Box::pin(f(arg)))
}

/// Runs `f(arg)` as background work of `background` and finishes `answer` with its result: the
/// value, [`Error::Panicked`] if it panicked, or the stop error if it was cancelled first.
pub(crate) fn run_and_answer<A, R>(
    background: &Arc<Background>,
    f: &RunFn<A, R>,
    arg: A,
    answer: Arc<Answer<R>>,
) where
    A: Send + 'static,
    R: Clone + Send + 'static,
{
    let owner = Arc::clone(background);
    let guard = FinishOnDrop::new(answer, move || owner.stop_error());
    let f = Arc::clone(f);
    background.spawn(async move {
        let result = AssertUnwindSafe(async move { f(arg).await })
            .catch_unwind()
            .await
            .map_err(Error::from_panic);
        guard.finish(result);
    });
}

/// A copy of `error` for one more caller. The errors runs end with are the crate's own
/// (cancelled, panicked), which copy exactly; anything else keeps its message.
pub(crate) fn duplicate(error: &Error) -> Error {
    match error {
        Error::Cancelled { reason } => Error::Cancelled {
            reason: reason.clone(),
        },
        Error::Timeout {
            after,
            scope_or_task,
        } => Error::Timeout {
            after: *after,
            scope_or_task: match scope_or_task {
                TimeoutOrigin::Scope(name) => TimeoutOrigin::Scope(name.clone()),
                TimeoutOrigin::Task(name) => TimeoutOrigin::Task(name.clone()),
                TimeoutOrigin::Operation(what) => TimeoutOrigin::Operation(what),
            },
        },
        Error::Panicked { message } => Error::Panicked {
            message: message.clone(),
        },
        Error::Closed => Error::Closed,
        Error::ChannelClosed => Error::ChannelClosed,
        Error::PoolClosed => Error::PoolClosed,
        other => Error::from_task_error(other.to_string()),
    }
}

type Reply<R> = oneshot::Sender<Result<R, Error>>;

enum State<R> {
    Waiting(Vec<Reply<R>>),
    Done(Result<R, Error>),
}

/// The result of one run, shared by every call that waits for it.
pub(crate) struct Answer<R> {
    state: Mutex<State<R>>,
}

impl<R: Clone + Send + 'static> Answer<R> {
    pub(crate) fn new() -> Arc<Answer<R>> {
        Arc::new(Answer {
            state: Mutex::new(State::Waiting(Vec::new())),
        })
    }

    /// A future of the result for one more caller (at once if the run has finished).
    pub(crate) fn wait(&self) -> Waiting<R> {
        let mut state = lock(&self.state);
        match &mut *state {
            State::Done(Ok(value)) => Waiting::Ready(Some(Ok(value.clone()))),
            State::Done(Err(error)) => Waiting::Ready(Some(Err(duplicate(error)))),
            State::Waiting(replies) => {
                let (reply, receive) = oneshot::channel();
                replies.push(reply);
                Waiting::Pending(receive)
            }
        }
    }

    /// Records the result and answers every waiting caller; later calls are ignored.
    pub(crate) fn finish(&self, result: Result<R, Error>) {
        let replies = {
            let mut state = lock(&self.state);
            let State::Waiting(replies) = &mut *state else {
                return;
            };
            let replies = std::mem::take(replies);
            let copies: Vec<Result<R, Error>> = replies
                .iter()
                .map(|_| match &result {
                    Ok(value) => Ok(value.clone()),
                    Err(error) => Err(duplicate(error)),
                })
                .collect();
            *state = State::Done(result);
            replies.into_iter().zip(copies).collect::<Vec<_>>()
        };
        for (reply, copy) in replies {
            // A caller that stopped waiting needs no answer.
            let _ = reply.send(copy);
        }
    }
}

/// One caller's wait for an [`Answer`].
pub(crate) enum Waiting<R> {
    Ready(Option<Result<R, Error>>),
    Pending(oneshot::Receiver<Result<R, Error>>),
}

// No field is structurally pinned: the ready result is only moved out, never polled.
impl<R> Unpin for Waiting<R> {}

impl<R> Future for Waiting<R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, Error>> {
        match self.get_mut() {
            Waiting::Ready(result) => {
                Poll::Ready(result.take().unwrap_or_else(|| {
                    Err(Error::cancelled("the call's answer was already taken"))
                }))
            }
            Waiting::Pending(receive) => Poll::Ready(
                std::task::ready!(Pin::new(receive).poll(cx)).unwrap_or_else(|_| {
                    Err(Error::cancelled(
                        "the runtime shut down before the call was answered",
                    ))
                }),
            ),
        }
    }
}

/// Finishes an [`Answer`] with an error if dropped before it was finished: the run it stands
/// for was cancelled (or never started), and its callers still get an answer.
pub(crate) struct FinishOnDrop<R: Clone + Send + 'static> {
    answer: Option<Arc<Answer<R>>>,
    error: Box<dyn Fn() -> Error + Send>,
}

impl<R: Clone + Send + 'static> FinishOnDrop<R> {
    pub(crate) fn new(
        answer: Arc<Answer<R>>,
        error: impl Fn() -> Error + Send + 'static,
    ) -> FinishOnDrop<R> {
        FinishOnDrop {
            answer: Some(answer),
            error: Box::new(error),
        }
    }

    pub(crate) fn finish(mut self, result: Result<R, Error>) {
        if let Some(answer) = self.answer.take() {
            answer.finish(result);
        }
    }
}

impl<R: Clone + Send + 'static> Drop for FinishOnDrop<R> {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            answer.finish(Err((self.error)()));
        }
    }
}
