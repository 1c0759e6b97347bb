//! The ambient scope: which scope (and which task of it) the running code belongs to.
//!
//! Set by `Scope::run` for its body and by every task for its own body, so code deep inside a
//! task can find its scope without being handed it. It works like a Tokio task-local, without
//! the wrapper future: the value lives in the task's own state and is moved into a thread-local
//! slot for the duration of each poll ([`enter`]), then moved back — also when the poll panics.
//! Polls nest (a `Scope::run` body inside a task), and each one restores what it found.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use crate::core::scope::Shared;

/// What the running code belongs to.
pub(crate) struct Ambient {
    pub(crate) scope: Arc<Shared>,
    /// The task being run, or `None` in a `Scope::run` body.
    pub(crate) task: Option<TaskIdent>,
}

/// Enough to name a task in reports (deadlock detection, logs).
#[derive(Clone)]
pub(crate) struct TaskIdent {
    pub(crate) index: u64,
    pub(crate) name: Option<Cow<'static, str>>,
}

impl TaskIdent {
    pub(crate) fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.to_string(),
            None => format!("task-{}", self.index),
        }
    }
}

thread_local! {
    /// The ambient context of the poll running on this thread, if any.
    static CURRENT: RefCell<Option<Ambient>> = const { RefCell::new(None) };
}

tokio::task_local! {
    /// The scope whose close (and disposers) the running task carries out.
    static CLOSING: Arc<Shared>;
}

/// Runs `future` as the close of `scope`.
pub(crate) fn closing<F: std::future::Future>(
    scope: Arc<Shared>,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<Shared>, F> {
    CLOSING.scope(scope, future)
}

/// True when the running task carries out the close of `scope` or of one of its descendants
/// (whose close `scope`'s close awaits).
pub(crate) fn is_closing(scope: &Shared) -> bool {
    CLOSING
        .try_with(|closing| {
            let mut next = Some(&**closing);
            while let Some(current) = next {
                if std::ptr::eq(current, scope) {
                    return true;
                }
                next = current.parent();
            }
            false
        })
        .unwrap_or(false)
}

/// Runs `f` with the ambient context, if there is one. `f` must not run user code or poll
/// futures (it holds the slot borrowed): copy out what it needs instead.
pub(crate) fn with_ambient<R>(f: impl FnOnce(&Ambient) -> R) -> Option<R> {
    CURRENT
        .try_with(|current| current.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// The ambient scope, if any.
pub(crate) fn ambient_scope() -> Option<Arc<Shared>> {
    with_ambient(|ambient| Arc::clone(&ambient.scope))
}

/// Runs `poll` with the context in `slot` as the ambient one: the value moves into this
/// thread's slot for the call and back afterwards (also on a panic), and whatever was ambient
/// before is restored.
#[inline]
pub(crate) fn enter<R>(slot: &mut Option<Ambient>, poll: impl FnOnce() -> R) -> R {
    struct Restore<'a>(&'a mut Option<Ambient>);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            swap(self.0);
        }
    }
    fn swap(slot: &mut Option<Ambient>) {
        CURRENT.with(|current| std::mem::swap(&mut *current.borrow_mut(), slot));
    }
    swap(slot);
    let _restore = Restore(slot);
    poll()
}

pin_project_lite::pin_project! {
    /// A future polled with an ambient context (a `Scope::run` body, a helper's work).
    pub(crate) struct InAmbient<F> {
        #[pin]
        future: F,
        ambient: Option<Ambient>,
    }
}

/// Polls `future` with `ambient` as its context.
pub(crate) fn in_ambient<F: std::future::Future>(ambient: Ambient, future: F) -> InAmbient<F> {
    InAmbient {
        future,
        ambient: Some(ambient),
    }
}

impl<F: std::future::Future> std::future::Future for InAmbient<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        enter(this.ambient, || future.poll(cx))
    }
}
