//! The ambient scope: which scope (and which task of it) the running code belongs to.
//!
//! A task-local set by `Scope::run` for its body and by every spawned task for its own future,
//! so code deep inside a task can find its scope without being handed it.

use std::borrow::Cow;
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

tokio::task_local! {
    static CURRENT: Ambient;
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

/// Runs `f` with the ambient context, if there is one.
pub(crate) fn with_ambient<R>(f: impl FnOnce(&Ambient) -> R) -> Option<R> {
    CURRENT.try_with(f).ok()
}

/// The ambient scope, if any.
pub(crate) fn ambient_scope() -> Option<Arc<Shared>> {
    with_ambient(|ambient| Arc::clone(&ambient.scope))
}

/// Runs `future` with `ambient` as its context.
pub(crate) fn enter<F: std::future::Future>(
    ambient: Ambient,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Ambient, F> {
    CURRENT.scope(ambient, future)
}
