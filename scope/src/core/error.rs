//! The one error type of the crate.
//!
//! Every fallible operation reports a [`Error`]: a task that was cancelled or timed out, a task
//! that panicked, a task whose own error is kept inside [`Error::Failed`], an option that makes no
//! sense. The variants are data, so callers `match` on them instead of parsing messages.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// A boxed error that can cross threads: what [`Error::Failed`] carries.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The Go-style result of a task: `(error, value)`, exactly one of them `Some`.
///
/// This is what awaiting a [`Task`](crate::Task) gives. Convert it to a `Result` with
/// [`into_result`] when `?` reads better.
pub type Outcome<T> = (Option<Error>, Option<T>);

/// How a task ended, in one word: the `outcome` label of the metrics and the word the spans
/// and the live tree use.
///
/// | kind | when |
/// |---|---|
/// | `Ok` | the task returned a value |
/// | `Error` | the task's own error, or any error not listed below |
/// | `Timeout` | a deadline passed ([`Error::Timeout`]) |
/// | `Cancelled` | the task or its scope was cancelled ([`Error::Cancelled`]): not a failure |
/// | `Panicked` | the task panicked ([`Error::Panicked`]) |
/// | `Rejected` | refused without running: an open breaker ([`Error::CircuitOpen`]) or a closed scope ([`Error::Closed`]) |
///
/// ```
/// use go_go_scope::{Error, OutcomeKind};
///
/// assert_eq!(OutcomeKind::of(None), OutcomeKind::Ok);
/// assert_eq!(OutcomeKind::of(Some(&Error::CircuitOpen)).as_str(), "rejected");
/// assert!(!OutcomeKind::Cancelled.is_failure());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// The task returned a value.
    Ok,
    /// The task failed with its own error (or an error no other kind describes).
    Error,
    /// A deadline passed.
    Timeout,
    /// The task or its scope was cancelled.
    Cancelled,
    /// The task panicked.
    Panicked,
    /// The task was refused without running.
    Rejected,
}

impl OutcomeKind {
    /// Every kind, in declaration order.
    pub const ALL: [OutcomeKind; 6] = [
        OutcomeKind::Ok,
        OutcomeKind::Error,
        OutcomeKind::Timeout,
        OutcomeKind::Cancelled,
        OutcomeKind::Panicked,
        OutcomeKind::Rejected,
    ];

    /// The kind of an ending whose error is `error` (`None` for success).
    pub fn of(error: Option<&Error>) -> OutcomeKind {
        match error {
            None => OutcomeKind::Ok,
            Some(Error::Timeout { .. }) => OutcomeKind::Timeout,
            Some(Error::Cancelled { .. }) => OutcomeKind::Cancelled,
            Some(Error::Panicked { .. }) => OutcomeKind::Panicked,
            Some(Error::CircuitOpen | Error::Closed) => OutcomeKind::Rejected,
            Some(_) => OutcomeKind::Error,
        }
    }

    /// The lower-case word: `ok`, `error`, `timeout`, `cancelled`, `panicked` or `rejected`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Error => "error",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Cancelled => "cancelled",
            OutcomeKind::Panicked => "panicked",
            OutcomeKind::Rejected => "rejected",
        }
    }

    /// Whether this ending counts as a failure: everything but `Ok` and `Cancelled`.
    pub const fn is_failure(self) -> bool {
        !matches!(self, OutcomeKind::Ok | OutcomeKind::Cancelled)
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong in a scope or one of its tasks.
///
/// `Error` is `Send + Sync + 'static` and implements [`std::error::Error`], so it travels through
/// `?` into `anyhow`, `Box<dyn Error>` or an application error type with a `From<Error>` impl.
///
/// ```
/// use go_go_scope::Error;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = go_go_scope::Scope::new().unwrap();
/// let task = scope.try_spawn(async { Err::<u32, _>(std::io::Error::other("disk on fire")) });
/// let (err, value) = task.await;
/// assert!(value.is_none());
/// let err = err.unwrap();
/// // The task's own error is kept, with its type.
/// assert_eq!(err.downcast_ref::<std::io::Error>().unwrap().to_string(), "disk on fire");
/// assert!(matches!(err, Error::Failed(_)));
/// scope.close().await.unwrap();
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scope (or the single task) was cancelled before the work finished.
    #[error("cancelled: {reason}")]
    Cancelled {
        /// Why: the reason given to [`Scope::cancel`](crate::Scope::cancel), or what the library
        /// did (`"scope closed"`, `"task cancelled"`, ...).
        reason: Cow<'static, str>,
    },
    /// A deadline passed: the scope's `timeout`, or a task's per-attempt `timeout`.
    #[error("{scope_or_task} timed out after {after:?}")]
    Timeout {
        /// The configured duration that elapsed.
        after: Duration,
        /// Whose deadline it was.
        scope_or_task: TimeoutOrigin,
    },
    /// The task panicked; the panic was caught and did not reach the scope.
    #[error("task panicked: {message}")]
    Panicked {
        /// The panic payload when it was a string, otherwise a placeholder.
        message: String,
    },
    /// A circuit breaker is open and refused the call without running it.
    #[error(
        "circuit breaker is open: the call was refused without running; \
         calls are let through again after the breaker's reset timeout"
    )]
    CircuitOpen,
    /// The scope was already closed (or closing) when work was submitted to it.
    #[error(
        "scope is closed: spawn work before calling close(), or use a scope that is still open"
    )]
    Closed,
    /// The task's own error, kept with its type (see [`Error::downcast_ref`]).
    ///
    /// `Display` shows the inner error's message; `source()` returns the inner error itself.
    #[error("{0}")]
    Failed(#[source] BoxError),
    /// An option had a value that cannot work; the message says which values do.
    #[error("invalid option `{option}`: {message}")]
    InvalidOption {
        /// The option's name, as it appears in the builder.
        option: &'static str,
        /// What is wrong and what to use instead.
        message: Cow<'static, str>,
    },
    /// A service was looked up that no scope in the chain provides.
    #[error(
        "no service of type `{type_name}` in this scope or its parents: \
         call `provide` on this scope or an ancestor first"
    )]
    ServiceNotFound {
        /// The Rust type that was asked for.
        type_name: &'static str,
    },
    /// One or more disposers failed while the scope closed; every disposer still ran.
    #[error("{}", DisposalList(errors))]
    Disposal {
        /// The failures in the order they happened (last registered first).
        errors: Vec<Error>,
    },
    /// Every future of a [`race`](crate::Scope::race) failed; their errors in input order.
    #[error("{}", AllFailedList(errors))]
    AllFailed {
        /// Each racer's error, in the order the racers were given.
        errors: Vec<Error>,
    },
    /// A channel or broadcast is closed: nothing more can go through it. Sends on a closed
    /// channel hand their value back in their own error type; this variant is what a
    /// [`Select`](crate::Select) whose every channel is closed, or a subscription to a closed
    /// [`Broadcast`](crate::Broadcast), reports.
    #[error("channel is closed: every value sent before the close can still be received")]
    ChannelClosed,
    /// A resource pool is closed (explicitly, or because its scope closed): it lends nothing
    /// more, and callers that were waiting to acquire are woken with this error.
    #[error("resource pool is closed: acquire from a pool whose scope is still open")]
    PoolClosed,
    /// A scope was built outside a Tokio runtime.
    #[error("no Tokio runtime: build scopes inside a runtime (e.g. under #[tokio::main])")]
    NoRuntime,
    /// The call would wait for itself: a disposer awaited the close of the scope that is
    /// running it (or of an ancestor closing it), as a task joining itself would.
    #[error(
        "deadlock avoided: {0}; a disposer runs as part of its scope's close, so it cannot \
         wait for that close to end"
    )]
    WouldDeadlock(&'static str),
}

struct AllFailedList<'a>(&'a [Error]);

impl fmt::Display for AllFailedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {} racers failed", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, "{}{e}", if i == 0 { ": " } else { "; " })?;
        }
        Ok(())
    }
}

struct DisposalList<'a>(&'a [Error]);

impl fmt::Display for DisposalList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} disposer(s) failed while closing the scope",
            self.0.len()
        )?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, "{}{e}", if i == 0 { ": " } else { "; " })?;
        }
        Ok(())
    }
}

/// Whose deadline fired, carried by [`Error::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutOrigin {
    /// The `timeout` of the named scope.
    Scope(Cow<'static, str>),
    /// The per-attempt `timeout` of the named task.
    Task(Cow<'static, str>),
    /// The time limit of a single waiting operation: `"select"`, `"pool acquire"`.
    Operation(&'static str),
}

impl fmt::Display for TimeoutOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutOrigin::Scope(name) => write!(f, "scope `{name}`"),
            TimeoutOrigin::Task(name) => write!(f, "task `{name}`"),
            TimeoutOrigin::Operation(what) => f.write_str(what),
        }
    }
}

impl Error {
    /// Wraps a task's own error, unwrapping it if it already is an [`Error`].
    ///
    /// ```
    /// use go_go_scope::Error;
    /// let e = Error::from_task_error(std::io::Error::other("boom"));
    /// assert!(matches!(e, Error::Failed(_)));
    /// let e = Error::from_task_error(Error::Closed);
    /// assert!(matches!(e, Error::Closed));
    /// ```
    pub fn from_task_error<E>(error: E) -> Error
    where
        E: Into<BoxError>,
    {
        let boxed: BoxError = error.into();
        match boxed.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::Failed(other),
        }
    }

    /// The task's own error as `E`, if this is [`Error::Failed`] holding an `E`.
    ///
    /// ```
    /// # use go_go_scope::Error;
    /// let e = Error::from_task_error(std::fmt::Error);
    /// assert!(e.downcast_ref::<std::fmt::Error>().is_some());
    /// assert!(e.downcast_ref::<std::io::Error>().is_none());
    /// ```
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        match self {
            Error::Failed(inner) => inner.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// Takes the task's own error back as `E`, or returns `self` unchanged.
    ///
    /// ```
    /// # use go_go_scope::Error;
    /// let e = Error::from_task_error(std::io::Error::other("boom"));
    /// let io: std::io::Error = e.downcast().unwrap();
    /// assert_eq!(io.to_string(), "boom");
    /// ```
    ///
    /// # Errors
    /// `self`, unchanged, when it is not [`Error::Failed`] or holds an error of another type
    /// than `E`.
    pub fn downcast<E: StdError + 'static>(self) -> Result<E, Error> {
        match self {
            Error::Failed(inner) => match inner.downcast::<E>() {
                Ok(e) => Ok(*e),
                Err(inner) => Err(Error::Failed(inner)),
            },
            other => Err(other),
        }
    }

    /// True for [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled { .. })
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True for [`Error::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked { .. })
    }

    /// An [`Error::Cancelled`] with `reason`, for code that stops work on its own.
    ///
    /// ```
    /// let e = go_go_scope::Error::cancelled("user pressed stop");
    /// assert_eq!(e.to_string(), "cancelled: user pressed stop");
    /// ```
    pub fn cancelled(reason: impl Into<Cow<'static, str>>) -> Error {
        Error::Cancelled {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(option: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
        Error::InvalidOption {
            option,
            message: message.into(),
        }
    }

    /// Builds [`Error::Panicked`] from a caught panic payload.
    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Error {
        Error::Panicked {
            message: panic_message(payload),
        }
    }
}

/// The text of a caught panic: its payload when that is a string.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "panic payload was not a string".to_owned(),
        },
    }
}

/// Turns a Go-style [`Outcome`] into a `Result`.
///
/// An outcome with neither side set (which no task of this crate produces) becomes
/// [`Error::Cancelled`].
///
/// ```
/// use go_go_scope::{into_result, Error};
/// assert_eq!(into_result((None, Some(3))).unwrap(), 3);
/// assert!(into_result::<u8>((Some(Error::Closed), None)).is_err());
/// ```
///
/// # Errors
/// The outcome's error when it has one (whether or not a value is set too), else an
/// [`Error::Cancelled`] for an outcome with neither side set.
pub fn into_result<T>(outcome: Outcome<T>) -> Result<T, Error> {
    match outcome {
        (None, Some(value)) => Ok(value),
        (Some(error), _) => Err(error),
        (None, None) => Err(Error::cancelled("the task produced no value")),
    }
}

/// Turns a `Result` into a Go-style [`Outcome`].
///
/// ```
/// use go_go_scope::{into_outcome, Error};
/// let (err, v) = into_outcome(Ok::<_, Error>(1));
/// assert!(err.is_none() && v == Some(1));
/// ```
pub fn into_outcome<T>(result: Result<T, Error>) -> Outcome<T> {
    match result {
        Ok(value) => (None, Some(value)),
        Err(error) => (Some(error), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct NetworkError {
        status: u16,
    }
    impl fmt::Display for NetworkError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Connection failed")
        }
    }
    impl StdError for NetworkError {}

    #[test]
    fn failed_keeps_the_custom_error_and_its_fields() {
        let e = Error::from_task_error(NetworkError { status: 503 });
        assert_eq!(e.to_string(), "Connection failed");
        assert_eq!(e.downcast_ref::<NetworkError>().unwrap().status, 503);
        let source = e.source().unwrap();
        assert_eq!(source.to_string(), "Connection failed");
        assert_eq!(
            e.downcast::<NetworkError>().unwrap(),
            NetworkError { status: 503 }
        );
    }

    #[test]
    fn string_errors_are_accepted() {
        let e = Error::from_task_error("plain string");
        assert_eq!(e.to_string(), "plain string");
    }

    #[test]
    fn panic_payloads_become_messages() {
        let e = Error::from_panic(Box::new("static str"));
        assert_eq!(e.to_string(), "task panicked: static str");
        let e = Error::from_panic(Box::new(String::from("owned")));
        assert!(matches!(e, Error::Panicked { ref message } if message == "owned"));
        let e = Error::from_panic(Box::new(7_u8));
        assert!(e.is_panic());
    }

    #[test]
    fn display_texts_say_what_happened() {
        let t = Error::Timeout {
            after: Duration::from_millis(30),
            scope_or_task: TimeoutOrigin::Scope("api".into()),
        };
        assert_eq!(t.to_string(), "scope `api` timed out after 30ms");
        let d = Error::Disposal {
            errors: vec![
                Error::from_task_error("bad b"),
                Error::from_task_error("bad a"),
            ],
        };
        assert_eq!(
            d.to_string(),
            "2 disposer(s) failed while closing the scope: bad b; bad a"
        );
        assert!(Error::Closed.to_string().contains("close()"));
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static + StdError>() {}
        assert_bounds::<Error>();
    }
}
