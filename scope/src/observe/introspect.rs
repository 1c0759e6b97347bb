//! The live tree: every scope and task of the process, and what each task is waiting on.
//!
//! Always on: every scope keeps a small record of each live task — its name, when and where it
//! was spawned, and the waits it is in (a concurrency permit, a channel, a pool, a retry delay,
//! a [`tracked_wait`](crate::tracked_wait)) — and [`snapshot`] or [`Scope::tree`] reads those
//! records, with what the scopes themselves know (children, limits, breakers, deadlines), into
//! a [`Tree`], which renders as an indented text tree (its `Display`) or, with the feature
//! `introspect-json`, as JSON. A task is recorded the first time it is suspended (its first
//! poll ends pending, or it queues for a concurrency permit), so one that finishes within its
//! first poll costs nothing, and one that waits pays one record (about 200 instructions, see
//! the guide's "What is it waiting on" section); a scope built with
//! [`ScopeBuilder::introspect`]`(false)` keeps none, and its tasks are only counted.
//!
//! ```
//! use go_go_scope::{Scope, introspect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let scope = Scope::builder().name("api").build().unwrap();
//! let inbox = scope.channel::<u32>(1);
//! let rx = inbox.clone();
//! let _listener = scope.task(move |_| {
//!     let rx = rx.clone();
//!     async move { Ok::<_, &str>(rx.recv().await) }
//! }).name("listener").spawn();
//! tokio::task::yield_now().await; // let the listener reach its wait
//!
//! let tree = scope.tree();
//! let listener = tree.find_task("listener").unwrap();
//! assert_eq!(listener.state.waiting_on(), Some("channel receive"));
//! assert!(tree.to_string().contains("listener (#1) waiting on channel receive"));
//! assert!(introspect::snapshot().scopes.iter().any(|s| s.name == "api"));
//! scope.close().await.unwrap();
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::error::Error;
use crate::core::observer::{BackgroundWork, Observer};
use crate::core::registry::{self, Registry};
use crate::core::scope::{Scope, ScopeBuilder, Shared};
use crate::resilience::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::resilience::task_builder::task_run;
use crate::util::sync::lock;

/// The process-wide long-wait threshold in nanoseconds; 0 for none.
static LONG_WAIT_NANOS: AtomicU64 = AtomicU64::new(0);

/// Reports, once through `tracing` at `warn`, every wait that lasts longer than `threshold`,
/// with the path of the task in the tree; `None` stops it. Applies to scopes built from now on
/// (each checks its tasks every `min(threshold / 2, 5 s)`).
///
/// # Errors
/// [`Error::InvalidOption`] for a zero threshold.
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::introspect;
///
/// assert!(introspect::report_long_waits(Some(Duration::ZERO)).is_err());
/// introspect::report_long_waits(Some(Duration::from_secs(30))).unwrap();
/// introspect::report_long_waits(None).unwrap();
/// ```
pub fn report_long_waits(threshold: Option<Duration>) -> Result<(), Error> {
    let nanos = match threshold {
        None => 0,
        Some(threshold) => nanos_of(threshold)?,
    };
    LONG_WAIT_NANOS.store(nanos, Ordering::Relaxed);
    Ok(())
}

fn nanos_of(threshold: Duration) -> Result<u64, Error> {
    if threshold.is_zero() {
        return Err(Error::invalid(
            "report_long_waits",
            "the threshold must be greater than zero",
        ));
    }
    Ok(u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX))
}

fn global_long_wait() -> Option<Duration> {
    match LONG_WAIT_NANOS.load(Ordering::Relaxed) {
        0 => None,
        nanos => Some(Duration::from_nanos(nanos)),
    }
}

/// The options a builder gives introspection.
#[derive(Default)]
pub(crate) struct IntrospectOptions {
    /// Keep the scope's task records (`None`: as the parent does; a root keeps them).
    pub(crate) keep: Option<bool>,
    pub(crate) long_wait: Option<Duration>,
}

impl ScopeBuilder {
    /// Whether the scope keeps a record of each live task for [`Scope::tree`] and
    /// [`snapshot`]: its name, age, spawn location and what it waits on. On by default; a
    /// scope inherits its parent's choice unless its builder says otherwise.
    ///
    /// `introspect(false)` is the opt-out for the few scopes where a suspended task must not pay
    /// its record (about 200 instructions, see the guide): the scope still appears in the tree,
    /// with its count of live tasks, but lists none of them. Long waits are reported only for
    /// recorded tasks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::builder().build().unwrap();
    /// let _task = scope.spawn(std::future::pending::<()>());
    /// let bare = go_go_scope::Scope::builder().introspect(false).build().unwrap();
    /// let _task = bare.spawn(std::future::pending::<()>());
    /// tokio::task::yield_now().await; // let both tasks start (and wait)
    ///
    /// assert_eq!(scope.tree().scopes[0].tasks.len(), 1);
    /// let tree = bare.tree();
    /// assert!(!tree.scopes[0].tracked);
    /// assert_eq!((tree.scopes[0].tasks.len(), tree.scopes[0].live_tasks), (0, 1));
    /// bare.close().await.unwrap();
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn introspect(mut self, enabled: bool) -> Self {
        self.features().introspect.keep = Some(enabled);
        self
    }

    /// Reports, once through `tracing` at `warn` with the task's path in the tree, every wait
    /// of the scope's tasks (and its children's) that lasts longer than `threshold`.
    /// `threshold` must be greater than zero.
    pub fn report_long_waits(mut self, threshold: Duration) -> Self {
        self.features().introspect.long_wait = Some(threshold);
        self
    }
}

/// The scope's long-wait watch, when it should have one: asked by its builder, inherited from
/// its parent, or set for the process ([`report_long_waits`]). Most scopes have none, and find
/// out with a few loads.
#[inline]
pub(crate) fn long_wait_watch(
    options: &IntrospectOptions,
    parent: Option<&Arc<Shared>>,
) -> Result<Option<LongWaitWatch>, Error> {
    if options.long_wait.is_none()
        && LONG_WAIT_NANOS.load(Ordering::Relaxed) == 0
        && parent.is_none_or(|p| p.features().is_none())
    {
        return Ok(None);
    }
    build_long_wait_watch(options, parent)
}

#[cold]
fn build_long_wait_watch(
    options: &IntrospectOptions,
    parent: Option<&Arc<Shared>>,
) -> Result<Option<LongWaitWatch>, Error> {
    if let Some(threshold) = options.long_wait {
        nanos_of(threshold)?;
    }
    let threshold = options
        .long_wait
        .or_else(|| {
            parent
                .and_then(|p| p.feature::<LongWaitWatch>())
                .map(|w| w.threshold)
        })
        .or_else(global_long_wait);
    Ok(threshold.map(|threshold| LongWaitWatch {
        threshold,
        scope: OnceLock::new(),
    }))
}

/// Reports the long waits of a scope's tasks: an observer at the core's seam, with only
/// background work.
pub(crate) struct LongWaitWatch {
    threshold: Duration,
    scope: OnceLock<Weak<Shared>>,
}

impl Observer for LongWaitWatch {
    fn scope_built(&self, scope: &Arc<Shared>) {
        let _ = self.scope.set(Arc::downgrade(scope));
    }

    fn background(self: Arc<Self>) -> Option<BackgroundWork> {
        Some(Box::new(move |cancelled| Box::pin(self.watch(cancelled))))
    }
}

impl LongWaitWatch {
    /// Checks the scope's waits until it is cancelled, reporting each long one once.
    async fn watch(self: Arc<Self>, cancelled: CancellationToken) {
        let threshold = self.threshold;
        let period = (threshold / 2).clamp(Duration::from_millis(1), Duration::from_secs(5));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                () = cancelled.cancelled() => return,
                _ = ticks.tick() => {
                    let Some(scope) = self.scope.get().and_then(Weak::upgrade) else { return };
                    for long in long_waits(&scope, threshold, Instant::now()) {
                        tracing::warn!(
                            task = long.path.as_str(),
                            waiting_on = long.on,
                            waited = ?long.waited,
                            "a task has waited longer than the threshold"
                        );
                    }
                }
            }
        }
    }
}

/// The waits of `scope` longer than `threshold` at `now` that were not reported yet, marked
/// reported.
fn long_waits(scope: &Shared, threshold: Duration, now: Instant) -> Vec<LongWait> {
    let Some(live) = scope.records() else {
        return Vec::new();
    };
    let scope_path = scope_path(scope);
    let mut found = Vec::new();
    let mut live = lock(live);
    let Registry { tasks, waits, .. } = &mut *live;
    let mut names: Option<HashMap<u64, Option<&str>>> = None;
    for (_, wait) in waits.iter_mut() {
        let waited = now.saturating_duration_since(wait.since);
        if wait.reported || waited <= threshold {
            continue;
        }
        wait.reported = true;
        let name = if wait.index == 0 {
            waiter_name(0, wait.name.as_deref())
        } else {
            let names = names.get_or_insert_with(|| {
                tasks
                    .iter()
                    .map(|(_, task)| (task.index, task.name.as_deref()))
                    .collect()
            });
            task_name(wait.index, names.get(&wait.index).copied().flatten())
        };
        found.push(LongWait {
            path: format!("{scope_path}/{name}"),
            on: wait.on,
            waited,
        });
    }
    found
}

struct LongWait {
    path: String,
    on: &'static str,
    waited: Duration,
}

fn task_name(index: u64, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_owned(),
        None => format!("task-{index}"),
    }
}

/// The name of a waiter without a task record: the scope body, or a helper's work.
fn waiter_name(index: u64, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_owned(),
        None if index == 0 => "(scope body)".to_owned(),
        None => format!("task-{index}"),
    }
}

/// The scope's recorded tasks (and its waiting body, as task 0), by id.
fn tasks_of(scope: &Shared, now: Instant) -> Vec<TaskNode> {
    let Some(live) = scope.records() else {
        return Vec::new();
    };
    let live = lock(live);
    // The innermost wait of each waiter, by task number (and name, for helpers' work).
    let mut innermost: HashMap<(u64, Option<&str>), &registry::Wait> =
        HashMap::with_capacity(live.waits.capacity());
    for (_, wait) in live.waits.iter() {
        innermost
            .entry((wait.index, wait.name.as_deref()))
            .and_modify(|seen| {
                if seen.seq < wait.seq {
                    *seen = wait;
                }
            })
            .or_insert(wait);
    }
    let state = |wait: Option<&registry::Wait>| match wait {
        None => TaskState::Running,
        Some(wait) => TaskState::Waiting {
            on: wait.on,
            waited: now.saturating_duration_since(wait.since),
        },
    };
    let mut nodes: Vec<TaskNode> = Vec::with_capacity(live.tasks.capacity());
    for (_, task) in live.tasks.iter() {
        let state = state(innermost.remove(&(task.index, None)));
        // A wait begun in the first poll is older than the record taken at its end.
        let age = now.saturating_duration_since(task.since);
        nodes.push(TaskNode {
            id: task.index,
            name: task_name(task.index, task.name.as_deref()),
            age: state.waited().map_or(age, |waited| age.max(waited)),
            state,
            attempt: task_run(task.details.as_ref()).map(|run| run.retries() + 1),
            spawned_at: Some(SpawnSite::from(task.location)),
        });
    }
    // Waiters without a record: the scope body, helpers' work, and tasks still in the first
    // poll in which they began to wait.
    for ((index, name), wait) in innermost {
        nodes.push(TaskNode {
            id: index,
            name: waiter_name(index, name),
            age: now.saturating_duration_since(if index == 0 { scope.built } else { wait.since }),
            state: state(Some(wait)),
            attempt: None,
            spawned_at: None,
        });
    }
    drop(live);
    nodes.sort_by(|a, b| (a.id, &a.name).cmp(&(b.id, &b.name)));
    nodes
}

/// The names of the scope and its ancestors, root first, joined by `/`.
fn scope_path(scope: &Shared) -> String {
    let mut names = Vec::new();
    let mut next = Some(scope);
    while let Some(current) = next {
        names.push(&*current.name);
        next = current.parent();
    }
    names.reverse();
    names.join("/")
}

/// A snapshot of live scopes and their tasks, parents before children (depth-first, in build
/// order). Render it with `Display` (an indented text tree) or, with the feature
/// `introspect-json`, [`Tree::to_json`].
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "introspect-json", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Tree {
    /// Every scope of the snapshot; each names its parent and children by id.
    pub scopes: Vec<ScopeNode>,
}

/// One scope in a [`Tree`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "introspect-json", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ScopeNode {
    /// The scope's process-wide id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The names of its ancestors and its own, root first, joined by `/`.
    pub path: String,
    /// 0 for the scopes the snapshot started from, 1 for their children, ...
    pub depth: usize,
    /// The parent's id, if the scope has a parent.
    pub parent: Option<u64>,
    /// The ids of its child scopes still open, in build order.
    pub children: Vec<u64>,
    /// Whether its tasks are recorded (false when it was built with
    /// [`ScopeBuilder::introspect`]`(false)`); without it only
    /// [`live_tasks`](ScopeNode::live_tasks) is known.
    pub tracked: bool,
    /// How long ago it was built.
    #[cfg_attr(
        feature = "introspect-json",
        serde(rename = "age_ms", serialize_with = "ms")
    )]
    pub age: Duration,
    /// What is left of its deadline, if it has one.
    #[cfg_attr(
        feature = "introspect-json",
        serde(rename = "deadline_left_ms", serialize_with = "millis")
    )]
    pub deadline_left: Option<Duration>,
    /// Whether it has been cancelled (or is closing).
    pub cancelled: bool,
    /// Its concurrency limit, if it has one.
    pub limit: Option<LimitNode>,
    /// The state of its circuit breaker, if it has one: `closed`, `open` or `half-open`.
    pub breaker: Option<&'static str>,
    /// How many of its tasks are alive, listed or not.
    pub live_tasks: usize,
    /// Its live tasks that have been suspended at least once (and its body, as task 0, while
    /// the body waits), by id; empty when not tracked. A task is listed from the end of its
    /// first poll (or from its spawn, if it queues for a concurrency permit): one still queued
    /// for its first poll, or inside it, is only counted in
    /// [`live_tasks`](ScopeNode::live_tasks).
    pub tasks: Vec<TaskNode>,
}

/// A scope's concurrency limit in a [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "introspect-json", derive(serde::Serialize))]
#[non_exhaustive]
pub struct LimitNode {
    /// At most this many tasks run at once.
    pub max: usize,
    /// Permits held now.
    pub in_use: usize,
    /// Tasks waiting for a permit (counted among the tracked tasks).
    pub waiting: usize,
}

/// One live task in a [`Tree`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "introspect-json", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TaskNode {
    /// Its number in the scope (0 for the scope body).
    pub id: u64,
    /// Its name (`task-<id>` when it has none).
    pub name: String,
    /// How long ago it was recorded, which is when it was first suspended: its spawn, plus
    /// the time it spent queued and in its first poll (a task waiting for a concurrency permit
    /// is recorded at its spawn). For the scope body, the scope's age.
    #[cfg_attr(
        feature = "introspect-json",
        serde(rename = "age_ms", serialize_with = "ms")
    )]
    pub age: Duration,
    /// Running, or what it waits on and for how long.
    #[cfg_attr(feature = "introspect-json", serde(flatten))]
    pub state: TaskState,
    /// The attempt it is on, for a task built with [`Scope::task`] (1 until it retries).
    pub attempt: Option<u32>,
    /// Where it was spawned (none for the scope body).
    pub spawned_at: Option<SpawnSite>,
}

/// What a task is doing, in a [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "introspect-json",
    derive(serde::Serialize),
    serde(tag = "state", rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum TaskState {
    /// Not in any registered wait: being polled, or pending on something the crate cannot
    /// see (wrap such waits in [`tracked_wait`](crate::tracked_wait) to name them).
    Running,
    /// In a registered wait.
    Waiting {
        /// What it waits on: `"concurrency permit"`, `"channel receive"`, `"channel send"`,
        /// `"broadcast receive"`, `"select"`, `"pool acquire"`, `"retry delay"`, or the
        /// name given to [`tracked_wait`](crate::tracked_wait).
        on: &'static str,
        /// For how long so far.
        #[cfg_attr(
            feature = "introspect-json",
            serde(rename = "waited_ms", serialize_with = "ms")
        )]
        waited: Duration,
    },
}

impl TaskState {
    /// What the task waits on, if it waits.
    pub fn waiting_on(&self) -> Option<&'static str> {
        match self {
            TaskState::Running => None,
            TaskState::Waiting { on, .. } => Some(on),
        }
    }

    /// How long the task has waited, if it waits.
    pub fn waited(&self) -> Option<Duration> {
        match self {
            TaskState::Running => None,
            TaskState::Waiting { waited, .. } => Some(*waited),
        }
    }

    /// The state in one word, as the `state` label of `goscope_tasks_by_state`: `running`,
    /// `permit`, `channel` (channels, broadcasts, `Select`), `pool`, `retry_delay`, or
    /// `tracked_wait` (a wait named by user code).
    pub fn kind(&self) -> &'static str {
        match self.waiting_on() {
            None => "running",
            Some("concurrency permit") => "permit",
            Some("channel receive" | "channel send" | "broadcast receive" | "select") => "channel",
            Some("pool acquire") => "pool",
            Some("retry delay") => "retry_delay",
            Some(_) => "tracked_wait",
        }
    }
}

/// Where a task was spawned: the caller of `spawn`, `go!`, `TaskBuilder::spawn`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "introspect-json", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SpawnSite {
    /// The source file, as the compiler names it.
    pub file: &'static str,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl From<&'static Location<'static>> for SpawnSite {
    fn from(location: &'static Location<'static>) -> SpawnSite {
        SpawnSite {
            file: location.file(),
            line: location.line(),
            column: location.column(),
        }
    }
}

impl fmt::Display for SpawnSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[cfg(feature = "introspect-json")]
fn ms<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

#[cfg(feature = "introspect-json")]
fn millis<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => ms(duration, serializer),
        None => serializer.serialize_none(),
    }
}

/// Every open scope of the process, from the roots down, with their live tasks.
pub fn snapshot() -> Tree {
    let roots: Vec<Arc<Shared>> = registry::roots()
        .into_iter()
        .filter(|scope| !scope.is_closed())
        .collect();
    walk(roots)
}

impl Scope {
    /// This scope and its subtree as a [`Tree`]: the scopes, and every live task with what it
    /// waits on (except in scopes built with [`ScopeBuilder::introspect`]`(false)`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::builder().name("jobs").build().unwrap();
    /// let task = scope.spawn(std::future::pending::<()>());
    /// // Not started yet: counted, not listed.
    /// assert_eq!(scope.tree().scopes[0].unlisted_tasks(), 1);
    /// tokio::task::yield_now().await;
    /// let tree = scope.tree();
    /// assert_eq!(tree.scopes[0].name, "jobs");
    /// assert_eq!(tree.scopes[0].tasks[0].name, "task-1");
    /// task.cancel();
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn tree(&self) -> Tree {
        walk(vec![Arc::clone(self.shared())])
    }
}

impl<K: crate::core::local::LocalKind> crate::core::local::LocalScope<'_, K> {
    /// This local scope and its subtree as a [`Tree`], as [`Scope::tree`] gives it.
    ///
    /// ```
    /// use go_go_scope::Scope;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let builder = Scope::builder().name("local");
    /// let listed = Scope::local(builder, |s| Box::pin(async {
    ///     let task = s.spawn(tokio::task::yield_now());
    ///     tokio::task::yield_now().await; // the scope polls its task meanwhile
    ///     let listed = s.tree().scopes[0].tasks.len();
    ///     task.await;
    ///     listed
    /// }))
    /// .await
    /// .unwrap();
    /// assert_eq!(listed, 1);
    /// # }
    /// ```
    pub fn tree(&self) -> Tree {
        self.inner().tree()
    }
}

/// Reads the subtrees under `roots`, depth-first with an explicit stack (any depth works).
fn walk(roots: Vec<Arc<Shared>>) -> Tree {
    let now = Instant::now();
    let mut scopes = Vec::new();
    let mut pending: Vec<(Arc<Shared>, usize, Option<String>)> =
        roots.into_iter().rev().map(|r| (r, 0, None)).collect();
    while let Some((scope, depth, parent_path)) = pending.pop() {
        let children = scope.children();
        let path = match &parent_path {
            Some(parent) => format!("{parent}/{}", scope.name),
            None => scope_path(&scope),
        };
        let node = scope_node(&scope, now, depth, path.clone(), &children);
        for child in children.into_iter().rev() {
            pending.push((child, depth + 1, Some(path.clone())));
        }
        scopes.push(node);
    }
    Tree { scopes }
}

fn scope_node(
    scope: &Shared,
    now: Instant,
    depth: usize,
    path: String,
    children: &[Arc<Shared>],
) -> ScopeNode {
    let tasks = tasks_of(scope, now);
    let age = now.saturating_duration_since(scope.built);
    let deadline_left = scope.timeout().map(|timeout| timeout.saturating_sub(age));
    let limit = match (&scope.limit, scope.concurrency()) {
        (Some(semaphore), Some(max)) => Some(LimitNode {
            max,
            in_use: max.saturating_sub(semaphore.available_permits()),
            waiting: tasks
                .iter()
                .filter(|t| t.state.waiting_on() == Some("concurrency permit"))
                .count(),
        }),
        _ => None,
    };
    let breaker = scope.feature::<CircuitBreaker>().map(|b| match b.state() {
        CircuitState::Closed => "closed",
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half-open",
    });
    ScopeNode {
        id: scope.id,
        name: scope.name.to_string(),
        path,
        depth,
        parent: scope.parent().map(|p| p.id),
        children: children.iter().map(|c| c.id).collect(),
        tracked: scope.keeps_tasks,
        age,
        deadline_left,
        cancelled: scope.is_cancelled(),
        limit,
        breaker,
        live_tasks: scope.live_tasks(),
        tasks,
    }
}

impl ScopeNode {
    /// How many of its live tasks are not in [`tasks`](ScopeNode::tasks): all of them when it
    /// is not tracked, else those not suspended yet (queued for or in their first poll).
    pub fn unlisted_tasks(&self) -> usize {
        let listed = self.tasks.iter().filter(|task| task.id != 0).count();
        self.live_tasks.saturating_sub(listed)
    }
}

impl Tree {
    /// Every task of the tree with the scope it belongs to.
    pub fn tasks(&self) -> impl Iterator<Item = (&ScopeNode, &TaskNode)> {
        self.scopes
            .iter()
            .flat_map(|scope| scope.tasks.iter().map(move |task| (scope, task)))
    }

    /// The first task named `name`, if any.
    pub fn find_task(&self, name: &str) -> Option<&TaskNode> {
        self.tasks()
            .map(|(_, task)| task)
            .find(|task| task.name == name)
    }

    /// The scope with this id, if it is in the tree.
    pub fn scope(&self, id: u64) -> Option<&ScopeNode> {
        self.scopes.iter().find(|scope| scope.id == id)
    }

    /// The longest wait of any task in the tree, if any task waits.
    pub fn longest_wait(&self) -> Option<(&ScopeNode, &TaskNode)> {
        self.tasks()
            .filter(|(_, task)| task.state.waited().is_some())
            .max_by_key(|(_, task)| task.state.waited())
    }

    /// The tree as JSON: `{"scopes": [...]}`, durations in milliseconds (`age_ms`,
    /// `waited_ms`, ...), each task's `state` in snake case (`running`, `waiting`).
    ///
    /// *Feature `introspect-json`.*
    #[cfg(feature = "introspect-json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "introspect-json")))]
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serializing it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `1.25s`, `12.0ms`, `850µs`.
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d >= Duration::from_secs(1) {
            write!(f, "{:.2}s", d.as_secs_f64())
        } else if d >= Duration::from_millis(1) {
            write!(f, "{:.1}ms", d.as_secs_f64() * 1e3)
        } else {
            write!(f, "{}µs", d.as_micros())
        }
    }
}

impl fmt::Display for ScopeNode {
    /// One line: `scope api (#3) age 1.20s, deadline in 28.80s, limit 2/4 (1 waiting)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope {} (#{})", self.name, self.id)?;
        let mut facts: Vec<String> = Vec::new();
        facts.push(format!("age {}", Human(self.age)));
        if let Some(left) = self.deadline_left {
            facts.push(format!("deadline in {}", Human(left)));
        }
        if let Some(limit) = self.limit {
            facts.push(format!(
                "limit {}/{} ({} waiting)",
                limit.in_use, limit.max, limit.waiting
            ));
        }
        if let Some(breaker) = self.breaker {
            facts.push(format!("breaker {breaker}"));
        }
        if self.cancelled {
            facts.push("cancelled".to_owned());
        }
        facts.push(format!("{} live tasks", self.live_tasks));
        write!(f, " {}", facts.join(", "))
    }
}

impl fmt::Display for TaskNode {
    /// One line: `fetch (#2) waiting on channel receive for 3.00s [age 3.10s, attempt 2,
    /// spawned at src/main.rs:12:5]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (#{}) ", self.name, self.id)?;
        match self.state {
            TaskState::Running => write!(f, "running")?,
            TaskState::Waiting { on, waited } => {
                write!(f, "waiting on {on} for {}", Human(waited))?;
            }
        }
        write!(f, " [age {}", Human(self.age))?;
        if let Some(attempt) = self.attempt {
            write!(f, ", attempt {attempt}")?;
        }
        if let Some(site) = self.spawned_at {
            write!(f, ", spawned at {site}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Display for Tree {
    /// An indented text tree: each scope, its tasks under it, its children below them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scopes.is_empty() {
            return writeln!(f, "(no scope is open)");
        }
        for scope in &self.scopes {
            let indent = "    ".repeat(scope.depth);
            writeln!(f, "{indent}{scope}")?;
            for task in &scope.tasks {
                writeln!(f, "{indent}  - {task}")?;
            }
            let unlisted = scope.unlisted_tasks();
            if !scope.tracked && unlisted > 0 {
                writeln!(
                    f,
                    "{indent}  ({unlisted} tasks not listed: the scope keeps no task records)"
                )?;
            } else if unlisted > 0 {
                writeln!(
                    f,
                    "{indent}  ({unlisted} tasks not listed: not suspended yet, queued for or in \
                     their first poll)"
                )?;
            }
        }
        Ok(())
    }
}

/// Writes `tasks_by_state{scope,state}`: the live tasks of the scopes that record them, by
/// scope name and [`TaskState::kind`]. Scope names go through the registry's cap: a name the
/// registry holds keeps its label, further names are admitted while the registry's names and
/// the gauge's own stay within `max_names`, and the rest are counted under `__other__`. Nothing
/// while no scope records its tasks.
#[cfg(feature = "metrics")]
pub(crate) fn encode_tasks_by_state(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    held: &std::collections::BTreeSet<String>,
    max_names: usize,
) -> fmt::Result {
    use crate::observe::metrics::OVERFLOW_SCOPE;
    use crate::observe::metrics::escape_name;
    use prometheus_client::encoding::EncodeMetric;
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::gauge::ConstGauge;
    use std::collections::{BTreeMap, BTreeSet};

    const KINDS: [&str; 6] = [
        "running",
        "permit",
        "channel",
        "pool",
        "retry_delay",
        "tracked_wait",
    ];
    let tree = snapshot();
    if tree.scopes.iter().all(|scope| !scope.tracked) {
        return Ok(());
    }
    let mut admitted: BTreeSet<String> = BTreeSet::new();
    let mut counts: BTreeMap<(String, &str), i64> = BTreeMap::new();
    for scope in tree.scopes.iter().filter(|scope| scope.tracked) {
        let name = escape_name(&scope.name);
        let label = if held.contains(&*name) || admitted.contains(&*name) {
            name.into_owned()
        } else if held.len() + admitted.len() < max_names {
            admitted.insert(name.to_string());
            name.into_owned()
        } else {
            OVERFLOW_SCOPE.to_owned()
        };
        for kind in KINDS {
            counts.entry((label.clone(), kind)).or_default();
        }
        for task in scope.tasks.iter().filter(|task| task.id != 0) {
            *counts
                .entry((label.clone(), task.state.kind()))
                .or_default() += 1;
        }
        // Not suspended yet: running (or about to).
        *counts.entry((label.clone(), "running")).or_default() += scope.unlisted_tasks() as i64;
    }
    let mut family = encoder.encode_descriptor(
        "tasks_by_state",
        "Live tasks by scope name and by what they are doing",
        None,
        MetricType::Gauge,
    )?;
    for ((scope, state), count) in &counts {
        let labels = [("scope", scope.as_str()), ("state", state)];
        ConstGauge::new(*count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// One event's fields, as text.
    type EventFields = Vec<(String, String)>;

    /// The fields of each event at `warn`.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<EventFields>>>);

    struct Fields(EventFields);

    impl tracing::field::Visit for Fields {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }

        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    impl tracing::Subscriber for Captured {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            *metadata.level() == tracing::Level::WARN
        }

        fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }

        fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

        fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            lock(&self.0).push(fields.0);
        }

        fn enter(&self, _span: &tracing::span::Id) {}

        fn exit(&self, _span: &tracing::span::Id) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_is_reported_once_with_its_path() {
        let root = Scope::builder().name("svc").build().unwrap();
        let child = Scope::builder()
            .name("worker")
            .parent(&root)
            .build()
            .unwrap();
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let held = Arc::clone(&lock).lock_owned().await;
        let waiter = child.spawn(async move {
            let _guard = crate::tracked_wait("db lock", lock.lock()).await;
        });
        tokio::task::yield_now().await;
        let threshold = Duration::from_secs(1);
        assert!(long_waits(child.shared(), threshold, Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(2)).await;
        let found = long_waits(child.shared(), threshold, Instant::now());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "svc/worker/task-1");
        assert_eq!(found[0].on, "db lock");
        assert!(found[0].waited >= Duration::from_secs(2));
        assert!(long_waits(child.shared(), threshold, Instant::now()).is_empty());
        drop(held);
        waiter.await;
        child.close().await.unwrap();
        root.close().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_long_wait_event_carries_the_path_the_wait_and_its_length() {
        let captured = Captured::default();
        let _default = tracing::subscriber::set_default(captured.clone());
        let root = Scope::builder()
            .name("svc")
            .report_long_waits(Duration::from_secs(1))
            .build()
            .unwrap();
        let child = Scope::builder()
            .name("ledger")
            .parent(&root)
            .build()
            .unwrap();
        let db = Arc::new(tokio::sync::Mutex::new(()));
        let held = Arc::clone(&db).lock_owned().await;
        let waiter = child
            .task_once(async move {
                let _guard = crate::tracked_wait("disk flush", db.lock()).await;
                Ok::<_, &str>(())
            })
            .name("writer")
            .spawn();
        // Past the threshold, then long enough for the watch to look three more times.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        let events = lock(&captured.0).clone();
        let reports: Vec<&EventFields> = events
            .iter()
            .filter(|fields| fields.iter().any(|(k, _)| k == "waiting_on"))
            .collect();
        assert_eq!(reports.len(), 1, "reported once: {events:?}");
        let field = |name: &str| {
            reports[0]
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(field("task"), "svc/ledger/writer");
        assert_eq!(field("waiting_on"), "disk flush");
        assert_eq!(
            field("message"),
            "a task has waited longer than the threshold"
        );
        let waited = field("waited");
        assert!(waited.ends_with('s'), "a Duration's Debug: {waited}");
        drop(held);
        waiter.await;
        child.close().await.unwrap();
        root.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_zero_threshold_is_refused() {
        let error = Scope::builder()
            .report_long_waits(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("report_long_waits"));
    }

    #[tokio::test]
    async fn closed_scopes_leave_the_snapshot() {
        let scope = Scope::builder().name("snapshot-leaves").build().unwrap();
        let id = scope.tree().scopes[0].id;
        assert!(snapshot().scope(id).is_some());
        scope.close().await.unwrap();
        assert!(snapshot().scope(id).is_none());
    }

    #[tokio::test]
    async fn an_opted_out_scope_lists_no_task_and_its_children_follow_it() {
        let scope = Scope::builder().introspect(false).build().unwrap();
        let child = Scope::builder().parent(&scope).build().unwrap();
        let grandchild = Scope::builder()
            .parent(&child)
            .introspect(true)
            .build()
            .unwrap();
        let tasks: Vec<_> = [&scope, &child, &grandchild]
            .iter()
            .map(|s| s.spawn(std::future::pending::<()>()))
            .collect();
        tokio::task::yield_now().await;
        let tree = scope.tree();
        let listed: Vec<(bool, usize, usize)> = tree
            .scopes
            .iter()
            .map(|s| (s.tracked, s.tasks.len(), s.live_tasks))
            .collect();
        assert_eq!(listed, [(false, 0, 1), (false, 0, 1), (true, 1, 1)]);
        assert!(tree.to_string().contains("1 tasks not listed"));
        for task in &tasks {
            task.cancel();
        }
        scope.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_scope_body_shows_while_it_waits() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let scope = Scope::builder().name("body-waits").build().unwrap();
        let shared = Arc::clone(scope.shared());
        let body = tokio::spawn(crate::core::context::in_ambient(
            crate::core::context::Ambient {
                scope: Arc::clone(&shared),
                task: None,
            },
            crate::tracked_wait("signal", rx),
        ));
        tokio::task::yield_now().await;
        let tree = scope.tree();
        let node = &tree.scopes[0].tasks[0];
        assert_eq!((node.id, node.name.as_str()), (0, "(scope body)"));
        assert_eq!(node.state.waiting_on(), Some("signal"));
        tx.send(()).unwrap();
        body.await.unwrap().unwrap();
        assert!(scope.tree().scopes[0].tasks.is_empty());
        scope.close().await.unwrap();
    }
}
