//! The seam: the one way features reach a scope's life and its tasks' lives.
//!
//! The core calls an [`Observer`] at five points — a task spawned, a task's polls, a task
//! ended (with its outcome), the scope cancelled, the scope closed — plus the three resource
//! events (a disposer registered, ran, or withdrawn) and the waits it makes for a concurrency
//! permit. Hooks, metrics, the profiler, deadlock detection, spans, the scope's circuit
//! breaker and the testing recorder are all observers; the core names none of them.
//!
//! A scope holds its observers as one optional value ([`Features`]): a scope with none pays one
//! branch per task event. Per-task state that an observer needs across polls (an open span, a
//! breaker admission) lives in a [`TaskWatch`] it hands out at spawn; a task with none keeps a
//! single null pointer.
//!
//! Features also keep plain values in the scope (a default retry policy, the breaker that the
//! task builder's attempt loop asks per attempt); [`Features::get`] finds one by type.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::context::TaskIdent;
use crate::core::error::Error;
use crate::core::scope::{LimitSnapshot, Shared};

/// What an observer needs the core to measure for it. Each costs something on every task of
/// the scope, so a scope pays only for what its observers ask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wants {
    /// Task durations (two clock reads per task) and the scope's lifetime.
    pub(crate) durations: bool,
    /// When each task was spawned (one more clock read per task).
    pub(crate) spawn_time: bool,
    /// The concurrency limit as each task found it, and the count of tasks waiting for a
    /// permit.
    pub(crate) limit_details: bool,
    /// A watch over each task ([`Observer::watch_task`]) or over the scope body
    /// ([`Observer::watch_body`]); without it those are not asked.
    pub(crate) watches: bool,
}

impl Wants {
    fn union(self, other: Wants) -> Wants {
        Wants {
            durations: self.durations || other.durations,
            spawn_time: self.spawn_time || other.spawn_time,
            limit_details: self.limit_details || other.limit_details,
            watches: self.watches || other.watches,
        }
    }
}

/// What a task body built outside the core (the task builder's attempt loop) tells observers:
/// its options at spawn, and what its attempts did by its end. Observers that know the concrete
/// type read more through [`TaskDetails::as_any`].
pub(crate) trait TaskDetails: Any + Send + Sync {
    /// The task was admitted into its scope as task `index`.
    fn admitted(&self, index: u64);
    /// The per-attempt timeout, if any.
    fn timeout(&self) -> Option<Duration>;
    /// The most retries the task may make, if it has a retry policy.
    fn max_retries(&self) -> Option<u32>;
    /// When the body really began (its first attempt, after waiting for a permit or a breaker),
    /// if it has.
    fn started(&self) -> Option<Instant>;
    /// The concrete value, for observers that know it.
    fn as_any(&self) -> &dyn Any;
}

/// A task being spawned, as observers see it.
pub(crate) struct SpawnedTask<'a> {
    pub(crate) scope: &'a Arc<Shared>,
    /// 1-based, in spawn order.
    pub(crate) index: u64,
    pub(crate) name: Option<&'a Cow<'static, str>>,
    /// The body runs its own attempts: it takes concurrency permits and asks the scope's
    /// breaker itself, once per attempt.
    pub(crate) runs_attempts: bool,
    pub(crate) details: Option<&'a Arc<dyn TaskDetails>>,
    /// The scope's limit before this task took a permit (only when an observer wants it).
    pub(crate) limit_before: Option<LimitSnapshot>,
}

impl SpawnedTask<'_> {
    /// The task's name: its own, or `task-<index>`.
    pub(crate) fn display_name(&self) -> Cow<'_, str> {
        display_name(self.name.map(|name| &**name), self.index)
    }
}

/// A task that has ended, as observers see it.
pub(crate) struct EndedTask<'a> {
    pub(crate) index: u64,
    pub(crate) name: Option<&'a str>,
    /// `None` on success.
    pub(crate) error: Option<&'a Error>,
    /// From the body's start to its end (zero unless an observer wants durations).
    pub(crate) duration: Duration,
    /// When the body started, if it did and durations are measured.
    pub(crate) started: Option<Instant>,
    /// When the task was spawned, if an observer wants spawn times.
    pub(crate) spawned: Option<Instant>,
    pub(crate) details: Option<&'a Arc<dyn TaskDetails>>,
}

impl EndedTask<'_> {
    /// The task's name: its own, or `task-<index>`.
    pub(crate) fn display_name(&self) -> Cow<'_, str> {
        display_name(self.name, self.index)
    }
}

/// A task's name: its own, or `task-<index>`.
pub(crate) fn display_name(name: Option<&str>, index: u64) -> Cow<'_, str> {
    match name {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("task-{index}")),
    }
}

/// A scope that has finished closing.
pub(crate) struct ClosedScope<'a> {
    /// From build to the end of close (only when an observer wants durations).
    pub(crate) lifetime: Option<Duration>,
    /// Why the scope was cancelled, if it was.
    pub(crate) cancelled_by: Option<&'a Error>,
    /// The close's own failure (disposers), if any.
    pub(crate) error: Option<&'a Error>,
}

/// Work a feature runs beside the scope (a watchdog) until the token it is given fires; the
/// scope's close waits for it.
pub(crate) type BackgroundWork =
    Box<dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Watches one task (or one `Scope::run` body) across its polls.
pub(crate) trait TaskWatch: Send {
    /// Called before the body is first polled; an error ends the task with it, unrun.
    fn start(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Runs one poll of the body; must call `poll` exactly once.
    fn poll(&mut self, poll: &mut dyn FnMut()) {
        poll();
    }

    /// The task has ended.
    fn end(self: Box<Self>, end: &TaskEnd<'_>);
}

/// How a watched task ended.
#[derive(Clone, Copy)]
pub(crate) struct TaskEnd<'a> {
    /// `None` on success.
    pub(crate) error: Option<&'a Error>,
    /// The body itself produced the outcome (returned or panicked), rather than being stopped
    /// from outside (cancelled, timed out with its scope, refused before it ran, dropped).
    pub(crate) finished: bool,
}

/// Something that watches a scope and its tasks. Every method has a default that does nothing.
pub(crate) trait Observer: Any + Send + Sync {
    /// What the core must measure for this observer.
    fn wants(&self) -> Wants {
        Wants::default()
    }

    /// A task was admitted into the scope and is about to be spawned; an error refuses it
    /// (it resolves to that error without running).
    fn task_spawned(&self, _task: &SpawnedTask<'_>) -> Result<(), Error> {
        Ok(())
    }

    /// Per-task state to keep across the task's polls, if this observer needs any (asked only
    /// when [`Observer::wants`] says it `watches`).
    fn watch_task(&self, _task: &SpawnedTask<'_>) -> Option<Box<dyn TaskWatch>> {
        None
    }

    /// A task has ended (after its watches were told).
    fn task_ended(&self, _task: &EndedTask<'_>) {}

    /// Watches the body of `Scope::run` (or a `#[scoped]` fn), if this observer needs to.
    fn watch_body(&self) -> Option<Box<dyn TaskWatch>> {
        None
    }

    /// Work to run beside the scope from its start until it is cancelled.
    fn background(self: Arc<Self>) -> Option<BackgroundWork> {
        None
    }

    /// The scope's state exists: called once, when the scope is built.
    fn scope_built(&self, _scope: &Arc<Shared>) {}

    /// A task of the scope (or the scope body, `task = None`) starts waiting for `what`; the
    /// returned value is dropped when the wait ends.
    fn wait_began(
        self: Arc<Self>,
        _scope: &Shared,
        _task: Option<&TaskIdent>,
        _what: &'static str,
    ) -> Option<Box<dyn Any + Send>> {
        None
    }

    /// The scope was cancelled (once), with the error its tasks get.
    fn scope_cancelled(&self, _reason: &Error) {}

    /// A disposer was registered.
    fn resource_registered(&self) {}

    /// A disposer ran; `position` is 1 for the first one run (the last registered).
    fn resource_disposed(&self, _position: usize, _error: Option<&Error>) {}

    /// A disposer was withdrawn before the scope closed: the resource it cleans up was dropped
    /// by its owner, so it will never run.
    fn resource_withdrawn(&self) {}

    /// The scope has finished closing.
    fn scope_closed(&self, _scope: &ClosedScope<'_>) {}
}

/// A scope's features: its observers and the plain values features keep in it.
#[derive(Default)]
pub(crate) struct Features {
    observers: Vec<Arc<dyn Observer>>,
    values: Vec<Arc<dyn Any + Send + Sync>>,
    wants: Wants,
}

impl Features {
    /// Adds an observer.
    pub(crate) fn observe(&mut self, observer: Arc<dyn Observer>) {
        self.wants = self.wants.union(observer.wants());
        self.observers.push(observer);
    }

    /// Keeps `value` in the scope, for [`Features::get`].
    pub(crate) fn keep<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        self.values.push(value);
    }

    /// The scope's value or observer of type `T`, if it has one.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        if let Some(value) = self.values.iter().find(|v| (***v).is::<T>()) {
            return Arc::clone(value).downcast::<T>().ok();
        }
        let observer = self.observers.iter().find(|o| {
            let any: &dyn Any = &***o;
            any.is::<T>()
        })?;
        let observer: Arc<dyn Observer> = Arc::clone(observer);
        let any: Arc<dyn Any + Send + Sync> = observer;
        any.downcast::<T>().ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.observers.is_empty() && self.values.is_empty()
    }

    pub(crate) fn wants(&self) -> Wants {
        self.wants
    }

    /// Asks every observer about a new task; the first refusal wins.
    pub(crate) fn task_spawned(&self, task: &SpawnedTask<'_>) -> Result<(), Error> {
        self.observers
            .iter()
            .try_for_each(|observer| observer.task_spawned(task))
    }

    /// The watches of a new task, combined into one.
    pub(crate) fn watch_task(&self, task: &SpawnedTask<'_>) -> Option<Box<dyn TaskWatch>> {
        if !self.wants.watches {
            return None;
        }
        combine(self.observers.iter().filter_map(|o| o.watch_task(task)))
    }

    pub(crate) fn watch_body(&self) -> Option<Box<dyn TaskWatch>> {
        if !self.wants.watches {
            return None;
        }
        combine(self.observers.iter().filter_map(|o| o.watch_body()))
    }

    pub(crate) fn task_ended(&self, task: &EndedTask<'_>) {
        for observer in &self.observers {
            observer.task_ended(task);
        }
    }

    pub(crate) fn scope_built(&self, scope: &Arc<Shared>) {
        for observer in &self.observers {
            observer.scope_built(scope);
        }
    }

    pub(crate) fn wait_began(
        &self,
        scope: &Shared,
        task: Option<&TaskIdent>,
        what: &'static str,
    ) -> Option<Box<dyn Any + Send>> {
        let mut guards: Vec<Box<dyn Any + Send>> = self
            .observers
            .iter()
            .filter_map(|o| Arc::clone(o).wait_began(scope, task, what))
            .collect();
        match guards.len() {
            0 => None,
            1 => guards.pop(),
            _ => Some(Box::new(guards)),
        }
    }

    pub(crate) fn background(&self) -> Vec<BackgroundWork> {
        self.observers
            .iter()
            .filter_map(|o| Arc::clone(o).background())
            .collect()
    }

    pub(crate) fn scope_cancelled(&self, reason: &Error) {
        for observer in &self.observers {
            observer.scope_cancelled(reason);
        }
    }

    pub(crate) fn resource_registered(&self) {
        for observer in &self.observers {
            observer.resource_registered();
        }
    }

    pub(crate) fn resource_disposed(&self, position: usize, error: Option<&Error>) {
        for observer in &self.observers {
            observer.resource_disposed(position, error);
        }
    }

    pub(crate) fn resource_withdrawn(&self) {
        for observer in &self.observers {
            observer.resource_withdrawn();
        }
    }

    pub(crate) fn scope_closed(&self, scope: &ClosedScope<'_>) {
        for observer in &self.observers {
            observer.scope_closed(scope);
        }
    }
}

/// One watch, or several run in order (the first one's `start` first, its `poll` outermost).
fn combine(watches: impl Iterator<Item = Box<dyn TaskWatch>>) -> Option<Box<dyn TaskWatch>> {
    let mut watches: Vec<Box<dyn TaskWatch>> = watches.collect();
    match watches.len() {
        0 => None,
        1 => watches.pop(),
        _ => Some(Box::new(Watches(watches))),
    }
}

struct Watches(Vec<Box<dyn TaskWatch>>);

impl TaskWatch for Watches {
    fn start(&mut self) -> Result<(), Error> {
        self.0.iter_mut().try_for_each(|watch| watch.start())
    }

    fn poll(&mut self, poll: &mut dyn FnMut()) {
        fn nest(watches: &mut [Box<dyn TaskWatch>], poll: &mut dyn FnMut()) {
            match watches.split_first_mut() {
                None => poll(),
                Some((first, rest)) => first.poll(&mut || nest(rest, poll)),
            }
        }
        nest(&mut self.0, poll);
    }

    fn end(self: Box<Self>, end: &TaskEnd<'_>) {
        for watch in self.0 {
            watch.end(end);
        }
    }
}
