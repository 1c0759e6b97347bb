//! A scope's state and its close protocol, shared by its handles and its tasks.
//!
//! Ownership, in one place:
//! - a scope's state lives in one `Shared` behind an `Arc`; user handles ([`Scope`]) and the
//!   scope's running tasks both point at it;
//! - user handles are counted separately: when the last one goes away while the scope is open,
//!   the scope cancels its tasks and closes itself on the runtime (running tasks do not count as
//!   handles, so a forgotten scope cannot keep its own tasks alive);
//! - the scope's `CancellationToken` is a child of its parent's, so one `cancel()` wakes a whole
//!   subtree; the reason is written into every scope of the subtree before the token fires;
//! - a child scope is registered with its parent until it has closed, so closing the parent
//!   closes (cancels, awaits, disposes) the child first;
//! - whatever watches the scope (hooks, metrics, spans, ...) is one optional value, its
//!   `Features`, reached through the seam in `crate::core::observer`.
//!
//! # The close protocol
//! 1. `begin_close` (in `Lifecycle`) picks one closer; later callers wait for it to finish.
//! 2. A scope with nothing to cancel, wait for or dispose closes on the spot. Otherwise the
//!    subtree is cancelled first, then the rest runs on a task of its own, so the close ends
//!    even if its caller stops waiting: children close, the scope waits for its tasks and its
//!    background work, disposers run last-registered-first.
//! 3. `end_close` always runs, also when user code panicked along the way: services are
//!    dropped, the features are told, the scope leaves its parent and is marked closed.
//!
//! [`Scope`]: crate::Scope

use std::borrow::Cow;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::core::context::{self};
use crate::core::error::{Error, TimeoutOrigin};
use crate::core::lifecycle::{Admission, Lifecycle};
use crate::core::observer::{ClosedScope, Features, TaskWatch, Wants};
use crate::core::registry::{self, Registry};
use crate::core::resources::Resources;
use crate::util::sync::lock;

pub(super) static NEXT_SCOPE_ID: AtomicU64 = AtomicU64::new(1);
static UNCLOSED_DROPS: AtomicU64 = AtomicU64::new(0);

/// How many scopes in this process were dropped without being closed (each was cancelled and
/// closed in the background, and logged at `warn`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let before = go_go_scope::unclosed_drops();
/// drop(go_go_scope::Scope::new().unwrap());
/// assert_eq!(go_go_scope::unclosed_drops(), before + 1);
/// # }
/// ```
pub fn unclosed_drops() -> u64 {
    UNCLOSED_DROPS.load(Ordering::Relaxed)
}

/// Why a scope was cancelled. Written once, before the token fires.
#[derive(Clone, Debug)]
pub(crate) enum Cause {
    Cancelled(Cow<'static, str>),
    Timeout {
        after: Duration,
        scope: Cow<'static, str>,
    },
}

impl Cause {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Cause::Cancelled(reason) => Error::Cancelled {
                reason: reason.clone(),
            },
            Cause::Timeout { after, scope } => Error::Timeout {
                after: *after,
                scope_or_task: TimeoutOrigin::Scope(scope.clone()),
            },
        }
    }
}

/// Whether a cancellation reports itself through `on_cancel` even when nothing was running.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Report {
    Always,
    IfBusy,
}

pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) name: Cow<'static, str>,
    /// Created on first use: most short scopes never need one (see `Shared::token`).
    pub(super) token: OnceLock<CancellationToken>,
    pub(super) cause: OnceLock<Cause>,
    pub(super) life: Lifecycle,
    pub(super) idle: Notify,
    pub(super) closed: Notify,
    pub(super) parent: Option<Arc<Shared>>,
    pub(super) children: Mutex<Children>,
    pub(super) next_index: AtomicU64,
    /// Tasks waiting for a concurrency permit (see [`Queued`]).
    pub(super) waiting: AtomicUsize,
    pub(crate) resources: Resources,
    pub(crate) limit: Option<Arc<Semaphore>>,
    pub(super) concurrency: Option<usize>,
    pub(super) timeout: Option<Duration>,
    pub(super) wait_on_exit: bool,
    /// Everything that watches this scope, through the seam (see `crate::core::observer`).
    pub(super) features: Option<Box<Features>>,
    /// What the features need measured; all false without features.
    pub(super) wants: Wants,
    pub(super) created: Option<Instant>,
    /// When the scope was built (its age in the live tree).
    pub(crate) built: Instant,
    /// Whether the scope records its tasks for the live tree (not when built with
    /// `introspect(false)`).
    pub(crate) keeps_tasks: bool,
    /// The live tasks and their waits, for the live tree; created when the first is recorded.
    pub(super) registry: OnceLock<Mutex<Registry>>,
    /// The scope's key in the list of root scopes, if it has no parent.
    pub(super) root: Option<usize>,
    pub(super) lifetime: OnceLock<Duration>,
    /// The timeout timer and the features' background work; all end when the token fires.
    pub(super) background: Mutex<Vec<JoinHandle<()>>>,
    /// Whether anything was put in `background` (a quiet close skips the lock).
    pub(super) has_background: bool,
    pub(crate) runtime: Handle,
}

#[derive(Default)]
pub(super) struct Children {
    /// By id, so in the order they were built (and an empty map costs nothing to make).
    pub(super) by_id: std::collections::BTreeMap<u64, Arc<Shared>>,
}

/// The state of a scope's concurrency limit as a task found it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LimitSnapshot {
    pub(crate) available: usize,
    pub(crate) waiting: usize,
}

/// A wait in progress, recorded in the live registry and with the features that track waits;
/// dropping it ends the wait.
pub(crate) struct WaitGuard {
    recorded: Option<(Arc<Shared>, usize)>,
    _observed: Option<Box<dyn std::any::Any + Send>>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if let Some((scope, key)) = self.recorded.take()
            && let Some(live) = scope.records()
        {
            lock(live).waits.remove(key);
        }
    }
}

/// Counts a task as waiting for a concurrency permit while it exists. Only scopes whose task
/// spans are recorded count (the spans are what report it), so others pay nothing.
pub(crate) struct Queued(Option<Arc<Shared>>);

impl Queued {
    pub(crate) fn new(shared: &Arc<Shared>) -> Queued {
        if !shared.wants.limit_details {
            return Queued(None);
        }
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        Queued(Some(Arc::clone(shared)))
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(shared) = &self.0 {
            shared.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// The scope's features, if it has any.
    #[inline]
    pub(crate) fn features(&self) -> Option<&Features> {
        self.features.as_deref()
    }

    /// The scope's feature value or observer of type `T`, if it has one.
    pub(crate) fn feature<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.features()?.get::<T>()
    }

    /// Whether tasks measure their durations (a feature reads them).
    #[inline]
    pub(crate) fn timed(&self) -> bool {
        self.wants.durations
    }

    /// Whether tasks note when they were spawned (a feature reads it).
    #[inline]
    pub(crate) fn notes_spawn_time(&self) -> bool {
        self.wants.spawn_time
    }

    /// Registers a wait of the running task (or the scope body) in the live registry and with
    /// the features that track waits; the wait ends when the returned value is dropped.
    pub(crate) fn begin_wait(
        self: &Arc<Self>,
        task: Option<&context::TaskIdent>,
        what: &'static str,
    ) -> Option<WaitGuard> {
        let recorded = self.registry().map(|live| {
            let key = match task {
                // A task is named by its record; the number finds it.
                Some(task) if task.index != 0 => registry::add_wait(live, task.index, None, what),
                // A helper's work, named here.
                Some(task) => registry::add_wait(live, 0, task.name.clone(), what),
                None => registry::add_wait(live, 0, None, what),
            };
            (Arc::clone(self), key)
        });
        let observed = self
            .features()
            .and_then(|features| features.wait_began(self, task, what));
        if recorded.is_none() && observed.is_none() {
            return None;
        }
        Some(WaitGuard {
            recorded,
            _observed: observed,
        })
    }

    /// The scope's live registry, created on first use; `None` when it keeps no records.
    #[inline]
    pub(crate) fn registry(&self) -> Option<&Mutex<Registry>> {
        if !self.keeps_tasks {
            return None;
        }
        Some(self.registry.get_or_init(|| Mutex::new(Registry::new())))
    }

    /// The scope's live registry, if anything was ever recorded in it.
    #[inline]
    pub(crate) fn records(&self) -> Option<&Mutex<Registry>> {
        self.registry.get()
    }

    /// The parent scope's state, if any.
    pub(crate) fn parent(&self) -> Option<&Shared> {
        self.parent.as_deref()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.life.is_open()
    }

    /// True once cancelled, or once closing started (a close cancels whatever is left).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cause.get().is_some() || !self.is_open()
    }

    /// The error a task of this scope resolves to once the scope is cancelled.
    pub(crate) fn cancel_error(&self) -> Error {
        match self.cause.get() {
            Some(cause) => cause.to_error(),
            None => Error::cancelled("scope closed"),
        }
    }

    /// The scope's token, created on first use as a child of the parent's.
    ///
    /// Creating it races with `cancel_tree` setting the cause; each side writes its own cell,
    /// issues a `SeqCst` fence, then reads the other's, so at least one of them sees both and
    /// cancels the token.
    pub(crate) fn token(&self) -> &CancellationToken {
        if let Some(token) = self.token.get() {
            return token;
        }
        // Ancestors without a token get theirs first, root-most first: a loop, not a
        // recursion, so a deep chain of scopes cannot overflow the stack.
        let mut missing = Vec::new();
        let mut ancestor = self.parent.as_deref();
        while let Some(scope) = ancestor.filter(|s| s.token.get().is_none()) {
            missing.push(scope);
            ancestor = scope.parent.as_deref();
        }
        for scope in missing.into_iter().rev() {
            scope.init_token();
        }
        self.init_token()
    }

    /// Creates the token once the parent has one (see [`Shared::token`]).
    fn init_token(&self) -> &CancellationToken {
        let token = self.token.get_or_init(|| match &self.parent {
            Some(parent) => parent.token().child_token(),
            None => CancellationToken::new(),
        });
        fence(Ordering::SeqCst);
        if self.is_cancelled() {
            token.cancel();
        }
        token
    }

    /// Wakes everything waiting on the token, if anything ever asked for one.
    fn fire_token(&self) {
        fence(Ordering::SeqCst);
        if let Some(token) = self.token.get() {
            token.cancel();
        }
    }

    /// Admits one task, or says why not.
    pub(crate) fn admit(&self) -> Result<u64, Error> {
        if let Admission::Refused { wake_idle } = self.life.admit() {
            if wake_idle {
                self.idle.notify_waiters();
            }
            return Err(Error::Closed);
        }
        if let Some(cause) = self.cause.get() {
            self.task_exited();
            return Err(cause.to_error());
        }
        Ok(self.next_index.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// A task's future has been dropped.
    pub(crate) fn task_exited(&self) {
        if self.life.exit() {
            self.idle.notify_waiters();
        }
    }

    /// Free permits and tasks waiting for one, when the scope has a limit and its task spans
    /// are recorded (they report it); read before a new task takes its permit.
    pub(crate) fn limit_snapshot(&self) -> Option<LimitSnapshot> {
        let semaphore = self.limit.as_ref().filter(|_| self.wants.limit_details)?;
        Some(LimitSnapshot {
            available: semaphore.available_permits(),
            waiting: self.waiting.load(Ordering::Relaxed),
        })
    }

    pub(crate) fn live_tasks(&self) -> usize {
        self.life.live()
    }

    /// The child scopes not yet closed, in the order they were built.
    pub(crate) fn children(&self) -> Vec<Arc<Shared>> {
        lock(&self.children).by_id.values().cloned().collect()
    }

    /// The scope's own deadline, measured from its build.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The concurrency limit in force, if any.
    pub(crate) fn concurrency(&self) -> Option<usize> {
        self.concurrency
    }

    /// True once the close has finished.
    pub(crate) fn is_closed(&self) -> bool {
        self.life.is_closed()
    }

    pub(super) async fn wait_idle(&self) {
        self.life.watch_idle();
        loop {
            // Created before the check, so a wake-up between the check and the await is kept.
            let notified = self.idle.notified();
            if self.life.live() == 0 {
                break;
            }
            notified.await;
        }
        self.life.unwatch_idle();
    }

    /// Cancels this scope and its subtree with `cause`, unless already cancelled. Reasons are
    /// written top-down before any token fires, so whoever wakes finds a reason.
    ///
    /// The subtree is walked with a loop, not a recursion, so any depth is fine: first every
    /// scope not yet cancelled gets the cause (parents before children), then tokens fire and
    /// cancellations are reported, children before parents.
    pub(super) fn cancel_tree(self: &Arc<Self>, cause: &Cause, report: Report) -> bool {
        if self.cause.set(cause.clone()).is_err() {
            return false;
        }
        // Each cancelled scope, with whether it was busy (tasks or children) when cancelled.
        let mut cancelled: Vec<(Arc<Shared>, bool)> = Vec::new();
        let mut pending = vec![Arc::clone(self)];
        while let Some(scope) = pending.pop() {
            let children: Vec<Arc<Shared>> =
                lock(&scope.children).by_id.values().cloned().collect();
            let busy = !children.is_empty() || scope.live_tasks() > 0;
            pending.extend(
                children
                    .into_iter()
                    .filter(|child| child.cause.set(cause.clone()).is_ok()),
            );
            cancelled.push((scope, busy));
        }
        let reason = cause.to_error();
        for (scope, busy) in cancelled.iter().rev() {
            scope.fire_token();
            if report == Report::Always || *busy {
                tracing::debug!(
                    scope = ?scope.name,
                    reason = crate::util::log::LoggedError::of(&reason).field(),
                    "scope cancelled");
                if let Some(features) = scope.features() {
                    features.scope_cancelled(&reason);
                }
            }
        }
        true
    }

    /// Cancels outstanding work, waits for it (children first), disposes resources LIFO.
    /// Idempotent: later callers wait for the first close to finish and get `Ok`.
    pub(crate) async fn close(self: &Arc<Self>) -> Result<(), Error> {
        if !self.life.begin_close() {
            if !self.life.is_closed() && context::is_closing(self) {
                return Err(Error::WouldDeadlock(
                    "a disposer awaited the close of the scope that runs it",
                ));
            }
            self.wait_closed().await;
            return Ok(());
        }
        self.close_begun().await
    }

    /// [`Shared::close`] behind a named, boxed type: closing a scope closes its children, and
    /// the recursion needs a type the compiler can see is `Send`.
    fn close_boxed(
        self: Arc<Self>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> {
        Box::pin(async move { self.close().await })
    }

    /// Cancels with `cause` at once and closes in the background: for drops, which cannot
    /// await. Returns false when a close had already begun.
    pub(super) fn close_in_background(self: &Arc<Self>, cause: Cause) -> bool {
        if !self.life.begin_close() {
            return false;
        }
        self.cancel_tree(&cause, Report::IfBusy);
        let shared = Arc::clone(self);
        // If the runtime is already shutting down the close cannot run; the disposers are then
        // dropped without being awaited.
        drop(self.runtime.spawn(async move {
            let _ = shared.close_begun().await;
        }));
        true
    }

    /// The rest of a close, once this caller won `begin_close`.
    async fn close_begun(self: &Arc<Self>) -> Result<(), Error> {
        let quiet = self.live_tasks() == 0
            && !self.has_background
            && lock(&self.children).by_id.is_empty()
            && self.resources.seal_if_empty();
        if quiet {
            // Nothing to cancel, wait for or dispose: wake whoever holds the token, if anyone.
            self.fire_token();
            self.end_close(Ok(()))
        } else {
            // Waiting for tasks and children and running disposers takes awaits, and whoever
            // awaits this close may stop waiting (its future dropped, or it is a task of this
            // very scope being cancelled). The close must finish anyway, or the scope would stay
            // "closing" forever: it runs on a task of its own, and the caller awaits its end.
            // The cancellation happens here, before anything else runs, so that it sees (and
            // reports) the tasks it cancels.
            self.cancel_tree(
                &Cause::Cancelled(Cow::Borrowed("scope closed")),
                Report::IfBusy,
            );
            self.fire_token();
            let shared = Arc::clone(self);
            let closing = self
                .runtime
                .spawn(context::closing(Arc::clone(self), async move {
                    let result = shared.close_busy().await;
                    shared.end_close(result)
                }));
            match closing.await {
                Ok(result) => result,
                Err(error) if error.is_panic() => Err(Error::from_panic(error.into_panic())),
                Err(_) => Err(Error::cancelled(
                    "the runtime shut down while the scope was closing",
                )),
            }
        }
    }

    /// Tells the features, marks the scope closed and wakes the waiters.
    fn end_close(&self, result: Result<(), Error>) -> Result<(), Error> {
        // A service's `Drop` is user code: a panic there is reported like a failed disposer,
        // and the close still reaches its end (later closes must not wait for ever).
        let result = match catch_unwind(AssertUnwindSafe(|| self.resources.clear_services())) {
            Ok(()) => result,
            Err(payload) => {
                let error = Error::from_panic(payload);
                tracing::warn!(
                    scope = ?self.name,
                    error = crate::util::log::LoggedError::of(&error).field(),
                    "dropping a service panicked");
                match result {
                    Ok(()) => Err(Error::Disposal {
                        errors: vec![error],
                    }),
                    Err(Error::Disposal { mut errors }) => {
                        errors.push(error);
                        Err(Error::Disposal { errors })
                    }
                    Err(other) => Err(other),
                }
            }
        };
        let lifetime = self.created.map(|created| created.elapsed());
        if let Some(lifetime) = lifetime {
            let _ = self.lifetime.set(lifetime);
        }
        if let Some(features) = self.features() {
            let cancelled_by = self.cause.get().map(Cause::to_error);
            features.scope_closed(&ClosedScope {
                lifetime,
                cancelled_by: cancelled_by.as_ref(),
                error: result.as_ref().err(),
            });
        }
        if let Some(parent) = &self.parent {
            lock(&parent.children).by_id.remove(&self.id);
        }
        if let Some(root) = self.root {
            registry::remove_root(root);
        }
        if self.life.finish_close() {
            self.closed.notify_waiters();
        }
        result
    }

    async fn close_busy(self: &Arc<Self>) -> Result<(), Error> {
        let children = std::mem::take(&mut lock(&self.children).by_id);
        for child in children.into_values() {
            // A child's disposal failures are reported by the child itself.
            let _ = child.close_boxed().await;
        }
        self.wait_idle().await;
        let background = std::mem::take(&mut *lock(&self.background));
        for handle in background {
            let _ = handle.await;
        }
        self.resources
            .dispose_all(&self.name, self.features())
            .await
    }

    async fn wait_closed(&self) {
        self.life.watch_close();
        loop {
            let notified = self.closed.notified();
            if self.life.is_closed() {
                break;
            }
            notified.await;
        }
        self.life.unwatch_close();
    }

    /// Ends the scope of a body that ended: waits for its tasks first when the scope waits on
    /// exit and the body succeeded, closes, then disarms `guard`. Disposal failures were
    /// reported by the close; the body's outcome is the caller's answer.
    pub(super) async fn end_body(self: &Arc<Self>, succeeded: bool, guard: CloseOnDrop) {
        let closed = if self.wait_on_exit && succeeded {
            self.join().await
        } else {
            self.close().await
        };
        drop(closed);
        guard.disarm();
    }

    /// Waits for every task to end on its own, then closes.
    pub(super) async fn join(self: &Arc<Self>) -> Result<(), Error> {
        if self.is_open() {
            self.wait_idle().await;
        }
        self.close().await
    }

    /// The last handle went away while the scope was open.
    pub(super) fn dropped_unclosed(self: &Arc<Self>) {
        if !self.is_open() {
            // Closed (the usual case) or closing: nothing to do.
            return;
        }
        let live_tasks = self.live_tasks();
        if self.close_in_background(Cause::Cancelled(Cow::Borrowed(
            "scope dropped without close",
        ))) {
            UNCLOSED_DROPS.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                scope = ?self.name,
                live_tasks,
                "scope dropped without close(): its tasks are cancelled and it closes in the \
                 background; call close().await or use Scope::run / #[scoped] to end it \
                 deterministically"
            );
        }
    }

    pub(crate) fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let mut scope = Some(self);
        while let Some(s) = scope {
            if let Some(found) = s.resources.service::<T>() {
                return Some(found);
            }
            scope = s.parent.as_deref();
        }
        None
    }
}

impl Shared {
    /// How long the scope lived, once it has closed (measured only when a feature wants
    /// durations).
    pub(crate) fn lifetime(&self) -> Option<Duration> {
        self.lifetime.get().copied()
    }
}

pin_project_lite::pin_project! {
    /// A future polled under a [`TaskWatch`] (the `Scope::run` body, inside the scope's span).
    pub(crate) struct Watched<F> {
        #[pin]
        inner: F,
        watch: Option<Box<dyn TaskWatch>>,
    }
}

impl<F> Watched<F> {
    pub(crate) fn new(watch: Option<Box<dyn TaskWatch>>, inner: F) -> Watched<F> {
        Watched { inner, watch }
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        match this.watch {
            None => this.inner.poll(cx),
            Some(watch) => {
                let mut inner = Some(this.inner);
                let mut polled = std::task::Poll::Pending;
                watch.poll(&mut || {
                    if let Some(inner) = inner.take() {
                        polled = inner.poll(cx);
                    }
                });
                polled
            }
        }
    }
}

/// When a scope body ends: at the scope's cancellation (its deadline, an explicit cancel, its
/// parent), with the cancellation's error; or only when it completes, for bodies whose return
/// type cannot carry an error (the scope's tasks are still cancelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    OnCancel,
    Completed,
}

/// Cancels and closes the scope in the background if `Scope::run` is dropped mid-way.
pub(super) struct CloseOnDrop(pub(super) Option<Arc<Shared>>);

impl CloseOnDrop {
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.close_in_background(Cause::Cancelled(Cow::Borrowed(
                "the scope's future was dropped",
            )));
        }
    }
}
