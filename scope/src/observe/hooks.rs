//! Lifecycle callbacks: observe tasks starting and ending, cancellation, and disposal.
//!
//! Hooks are plain synchronous closures, called on the thread where the event happens. Keep them
//! short; spawn work if a hook needs to do I/O. A hook that panics does not take the scope down:
//! the panic is caught and reported (a panicking `before_task` fails the task it was called for
//! with [`Error::Panicked`](crate::Error::Panicked); other hooks' panics are logged at `warn`).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::core::error::panic_message;
use crate::core::observer::{EndedTask, Observer, SpawnedTask, Wants};
use crate::core::scope::ScopeBuilder;

type BeforeTask = dyn Fn(&str, u64) + Send + Sync;
type AfterTask = dyn Fn(&str, Duration, Option<&Error>) + Send + Sync;
type OnCancel = dyn Fn(&Error) + Send + Sync;
type OnDispose = dyn Fn(usize, Option<&Error>) + Send + Sync;

/// The set of lifecycle callbacks a scope calls; pass it to
/// [`ScopeBuilder::hooks`](crate::ScopeBuilder::hooks).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use go_go_scope::{Hooks, Scope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let hooks = Hooks::new()
///     .before_task(move |name, index| log.lock().unwrap().push(format!("start {name} #{index}")));
/// let scope = Scope::builder().hooks(hooks).build().unwrap();
/// scope.spawn(async { 1 }).await;
/// scope.close().await.unwrap();
/// assert_eq!(seen.lock().unwrap().as_slice(), ["start task-1 #1"]);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Hooks {
    pub(crate) before_task: Option<Arc<BeforeTask>>,
    pub(crate) after_task: Option<Arc<AfterTask>>,
    pub(crate) on_cancel: Option<Arc<OnCancel>>,
    pub(crate) on_dispose: Option<Arc<OnDispose>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("before_task", &self.before_task.is_some())
            .field("after_task", &self.after_task.is_some())
            .field("on_cancel", &self.on_cancel.is_some())
            .field("on_dispose", &self.on_dispose.is_some())
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// No hooks; add them with the builder methods.
    pub fn new() -> Hooks {
        Hooks::default()
    }

    /// Called when a task is spawned, before it first runs, with its name and 1-based index in
    /// the scope.
    pub fn before_task(mut self, f: impl Fn(&str, u64) + Send + Sync + 'static) -> Hooks {
        self.before_task = Some(Arc::new(f));
        self
    }

    /// Called when a task has ended, before anyone awaiting it resumes, with its name, how long
    /// its body ran (from its start, not from the scope's), and its error if it failed.
    pub fn after_task(
        mut self,
        f: impl Fn(&str, Duration, Option<&Error>) + Send + Sync + 'static,
    ) -> Hooks {
        self.after_task = Some(Arc::new(f));
        self
    }

    /// Called once when the scope is cancelled (its timeout, its parent, an explicit
    /// [`Scope::cancel`](crate::Scope::cancel), or a close that found tasks still running),
    /// with the reason. Not called when a scope closes with nothing left to cancel.
    pub fn on_cancel(mut self, f: impl Fn(&Error) + Send + Sync + 'static) -> Hooks {
        self.on_cancel = Some(Arc::new(f));
        self
    }

    /// Called after each disposer ran at close, with its 1-based position in disposal order
    /// (the last registered is 1) and its error if it failed.
    pub fn on_dispose(
        mut self,
        f: impl Fn(usize, Option<&Error>) + Send + Sync + 'static,
    ) -> Hooks {
        self.on_dispose = Some(Arc::new(f));
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.before_task.is_none()
            && self.after_task.is_none()
            && self.on_cancel.is_none()
            && self.on_dispose.is_none()
    }

    /// Runs `before_task`; a panic comes back as the error that fails the task.
    pub(crate) fn call_before_task(&self, name: &str, index: u64) -> Result<(), Error> {
        match &self.before_task {
            Some(hook) => {
                catch_unwind(AssertUnwindSafe(|| hook(name, index))).map_err(|p| Error::Panicked {
                    message: format!("before_task hook panicked: {}", panic_message(p)),
                })
            }
            None => Ok(()),
        }
    }

    pub(crate) fn call_after_task(&self, name: &str, duration: Duration, error: Option<&Error>) {
        if let Some(hook) = &self.after_task {
            guarded("after_task", || hook(name, duration, error));
        }
    }

    pub(crate) fn call_on_cancel(&self, reason: &Error) {
        if let Some(hook) = &self.on_cancel {
            guarded("on_cancel", || hook(reason));
        }
    }

    pub(crate) fn call_on_dispose(&self, index: usize, error: Option<&Error>) {
        if let Some(hook) = &self.on_dispose {
            guarded("on_dispose", || hook(index, error));
        }
    }
}

impl Observer for Hooks {
    fn wants(&self) -> Wants {
        Wants {
            durations: self.after_task.is_some(),
            ..Wants::default()
        }
    }

    fn task_spawned(&self, task: &SpawnedTask<'_>) -> Result<(), Error> {
        if self.before_task.is_none() {
            return Ok(());
        }
        self.call_before_task(&task.display_name(), task.index)
    }

    fn task_ended(&self, task: &EndedTask<'_>) {
        if self.after_task.is_some() {
            self.call_after_task(&task.display_name(), task.duration, task.error);
        }
    }

    fn scope_cancelled(&self, reason: &Error) {
        self.call_on_cancel(reason);
    }

    fn resource_disposed(&self, position: usize, error: Option<&Error>) {
        self.call_on_dispose(position, error);
    }
}

impl ScopeBuilder {
    /// Lifecycle callbacks; see [`Hooks`].
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.features().hooks = Some(hooks);
        self
    }
}

fn guarded(hook: &'static str, f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        let error = Error::from_panic(payload);
        tracing::warn!(
            hook,
            error = crate::util::log::LoggedError::of(&error).field(),
            "a go-go-scope hook panicked; the panic was contained"
        );
    }
}
