//! Work that a helper (poller, debouncer, throttler) runs on behalf of a scope, outside the
//! scope's own task set.
//!
//! Such work is not a task of the scope: a poller runs until stopped, so counting it as a task
//! would make [`Scope::join`] wait forever. It still ends with the scope: it stops when the
//! scope is cancelled (its token is a child of the scope's), and the scope's close waits for it
//! (a disposer awaits every piece), so nothing outlives the scope. User callbacks run with the
//! scope as their ambient scope, so [`Scope::current`] and `go!` work inside them.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::Either;
use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::context::{self, Ambient, TaskIdent};
use crate::core::error::Error;
use crate::core::scope::{Scope, Shared};

/// `now + after`, or a point some 30 years away when that does not fit in an `Instant` (a
/// user may well pass `Duration::MAX` to mean "never").
pub(crate) fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 60 * 60))
}

pub(crate) struct Background {
    token: CancellationToken,
    tracker: TaskTracker,
    runtime: Handle,
    scope: Option<Weak<Shared>>,
    /// Names the helper in deadlock reports and errors.
    name: &'static str,
    /// The scope's cleanup of this helper, withdrawn when the helper is dropped.
    owner: std::sync::OnceLock<crate::core::scope::DisposerHandle>,
}

impl Background {
    /// Background work owned by `scope`; fails if the scope is closed or cancelled already.
    pub(crate) fn for_scope(scope: &Scope, name: &'static str) -> Result<Arc<Background>, Error> {
        if scope.is_closed() {
            return Err(Error::Closed);
        }
        if let Some(error) = scope.cancellation_error() {
            return Err(error);
        }
        let shared = scope.shared();
        // Its work runs on timers: a runtime without them is this call's error.
        {
            let _runtime = shared.runtime.enter();
            crate::util::timer::check(name)?;
        }
        let background = Arc::new(Background {
            token: shared.token().child_token(),
            tracker: TaskTracker::new(),
            runtime: shared.runtime.clone(),
            scope: Some(Arc::downgrade(shared)),
            name,
            owner: std::sync::OnceLock::new(),
        });
        let owned = Arc::downgrade(&background);
        let owner = scope.defer_owned(move || async move {
            if let Some(background) = owned.upgrade() {
                background.shutdown().await;
            }
        });
        if let Some(owner) = owner {
            let _ = background.owner.set(owner);
        }
        Ok(background)
    }

    /// Background work owned by nobody: each piece stops with its own token (see
    /// [`spawn_until`](Background::spawn_until)) or at [`shutdown`](Background::shutdown).
    pub(crate) fn standalone(name: &'static str) -> Result<Arc<Background>, Error> {
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        crate::util::timer::check(name)?;
        Ok(Arc::new(Background {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtime,
            scope: None,
            name,
            owner: std::sync::OnceLock::new(),
        }))
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why the work stopped: the scope's cancellation, or the helper's own stop.
    pub(crate) fn stop_error(&self) -> Error {
        let scope = self.scope.as_ref().and_then(Weak::upgrade);
        match scope {
            Some(scope) if scope.is_cancelled() => scope.cancel_error(),
            _ => Error::Cancelled {
                reason: Cow::Owned(format!("the {} was stopped", self.name)),
            },
        }
    }

    /// Runs `work` until it finishes or `until` (a token under this helper's) is cancelled.
    pub(crate) fn spawn_until<F>(&self, until: CancellationToken, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guarded = async move {
            tokio::select! {
                biased;
                () = until.cancelled() => {}
                () = work => {}
            }
        };
        let scope = self.scope.as_ref().and_then(Weak::upgrade);
        let future = match scope {
            Some(scope) => Either::Left(context::in_ambient(
                Ambient {
                    scope,
                    task: Some(TaskIdent {
                        index: 0,
                        name: Some(Cow::Borrowed(self.name)),
                    }),
                },
                guarded,
            )),
            None => Either::Right(guarded),
        };
        // The handle is not needed: the tracker is what `shutdown` waits on.
        drop(self.tracker.spawn_on(future, &self.runtime));
    }

    /// Runs `work` until it finishes or this helper stops.
    pub(crate) fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_until(self.token.clone(), work);
    }

    /// Stops every piece of work and waits until all of it has ended.
    pub(crate) async fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
