//! The live tree: every scope and task of the process, and what each task is waiting on.
//!
//! Introspection is opt-in, per scope ([`ScopeBuilder::introspect`]) or for the whole process
//! ([`enable`]); a scope built with it passes it on to its children. A scope without it pays
//! nothing. An introspected scope keeps a small record of each live task — its name, when and
//! where it was spawned, and the waits it is in (a concurrency permit, a channel, a pool, a
//! retry delay, a [`tracked_wait`](crate::tracked_wait)) — and [`snapshot`] or
//! [`Scope::tree`] reads those records into a [`Tree`], which renders as an indented text tree
//! (its `Display`) or, with the feature `introspect-json`, as JSON.
//!
//! ```
//! use go_go_scope::{Scope, introspect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let scope = Scope::builder().name("api").introspect(true).build().unwrap();
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

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::context::TaskIdent;
use crate::core::error::Error;
use crate::core::observer::{BackgroundWork, EndedTask, Observer, SpawnedTask, TaskDetails};
use crate::core::scope::{Scope, ScopeBuilder, Shared};
use crate::resilience::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::resilience::task_builder::task_run;
use crate::util::sync::lock;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The process-wide long-wait threshold in nanoseconds; 0 for none.
static LONG_WAIT_NANOS: AtomicU64 = AtomicU64::new(0);
/// Introspected scopes whose parent is not introspected (or that have none): where
/// [`snapshot`] starts.
static ROOTS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Turns introspection on for every scope built from now on (scopes built before keep what
/// they had). Costs each of those scopes a lock and a map insert per task; see the guide's
/// "What is it waiting on" section for the numbers.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Turns the process-wide switch off again: scopes built from now on are introspected only if
/// their builder or their parent asks for it.
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Whether [`enable`] is in force.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Reports, once through `tracing` at `warn`, every wait of an introspected task that lasts
/// longer than `threshold`, with the path of the task in the tree; `None` stops it. Applies to
/// scopes built from now on (each checks its tasks every `min(threshold / 2, 5 s)`).
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
    pub(crate) enabled: bool,
    pub(crate) long_wait: Option<Duration>,
}

impl ScopeBuilder {
    /// Keeps a live record of this scope's tasks (and of its children's) for [`Scope::tree`]
    /// and [`snapshot`]: each task's name, age, spawn location and what it waits on. Off by
    /// default, unless [`enable`] was called or the parent scope is introspected.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::builder().introspect(true).build().unwrap();
    /// let _task = scope.spawn(std::future::pending::<()>());
    /// assert_eq!(scope.tree().scopes[0].tasks.len(), 1);
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn introspect(mut self, enabled: bool) -> Self {
        self.features().introspect.enabled = enabled;
        self
    }

    /// Introspects the scope (see [`introspect`](ScopeBuilder::introspect)) and reports, once
    /// through `tracing` at `warn` with the task's path in the tree, every wait of its tasks
    /// that lasts longer than `threshold`. `threshold` must be greater than zero.
    pub fn report_long_waits(mut self, threshold: Duration) -> Self {
        let options = &mut self.features().introspect;
        options.enabled = true;
        options.long_wait = Some(threshold);
        self
    }
}

/// Builds the scope's introspector when it should have one: asked by its builder, by the
/// process-wide switch, or inherited from an introspected parent. Most scopes have none, and
/// find out with a few loads.
#[inline]
pub(crate) fn introspector(
    options: &IntrospectOptions,
    parent: Option<&Arc<Shared>>,
) -> Result<Option<Introspector>, Error> {
    if !options.enabled && !is_enabled() && parent.is_none_or(|p| p.features().is_none()) {
        return Ok(None);
    }
    build_introspector(options, parent)
}

#[cold]
fn build_introspector(
    options: &IntrospectOptions,
    parent: Option<&Arc<Shared>>,
) -> Result<Option<Introspector>, Error> {
    if let Some(threshold) = options.long_wait {
        nanos_of(threshold)?;
    }
    let parent = parent.and_then(|p| p.feature::<Introspector>());
    if !(options.enabled || is_enabled() || parent.is_some()) {
        return Ok(None);
    }
    let long_wait = options
        .long_wait
        .or_else(|| parent.and_then(|p| p.long_wait))
        .or_else(global_long_wait);
    Ok(Some(Introspector {
        scope: OnceLock::new(),
        built: Instant::now(),
        tasks: Mutex::new(HashMap::default()),
        next_wait: AtomicU64::new(0),
        long_wait,
    }))
}

/// The live record of one introspected scope: an observer at the core's seam.
pub(crate) struct Introspector {
    scope: OnceLock<Weak<Shared>>,
    built: Instant,
    /// Live tasks by number; 0 is the scope body, present while it waits.
    tasks: Mutex<HashMap<u64, LiveTask, BuildHasherDefault<IndexHasher>>>,
    next_wait: AtomicU64,
    long_wait: Option<Duration>,
}

/// Hashes a task number with one multiplication: the numbers are distinct and come from the
/// scope itself, so the default hasher's protection against chosen keys buys nothing here and
/// costs a large part of a task's registration.
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

struct LiveTask {
    name: Option<Cow<'static, str>>,
    spawned: Instant,
    location: Option<&'static Location<'static>>,
    details: Option<Arc<dyn TaskDetails>>,
    /// Innermost last.
    waits: Vec<Wait>,
}

struct Wait {
    id: u64,
    on: &'static str,
    since: Instant,
    reported: bool,
}

impl Observer for Introspector {
    fn scope_built(&self, scope: &Arc<Shared>) {
        let _ = self.scope.set(Arc::downgrade(scope));
        let parent_tracked = scope
            .parent()
            .is_some_and(|p| p.feature::<Introspector>().is_some());
        if !parent_tracked {
            let mut roots = lock(&ROOTS);
            roots.retain(|root| root.strong_count() > 0);
            roots.push(Arc::downgrade(scope));
        }
    }

    fn task_spawned(&self, task: &SpawnedTask<'_>) -> Result<(), Error> {
        let live = LiveTask {
            name: task.name.cloned(),
            spawned: Instant::now(),
            location: Some(task.location),
            details: task.details.cloned(),
            waits: Vec::new(),
        };
        lock(&self.tasks).insert(task.index, live);
        Ok(())
    }

    fn task_ended(&self, task: &EndedTask<'_>) {
        lock(&self.tasks).remove(&task.index);
    }

    fn background(self: Arc<Self>) -> Option<BackgroundWork> {
        let threshold = self.long_wait?;
        Some(Box::new(move |cancelled| {
            Box::pin(self.watch_long_waits(threshold, cancelled))
        }))
    }

    fn wait_began(
        self: Arc<Self>,
        _scope: &Shared,
        task: Option<&TaskIdent>,
        what: &'static str,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        let index = task.map_or(0, |task| task.index);
        let id = self.next_wait.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        {
            let mut tasks = lock(&self.tasks);
            let live = match tasks.get_mut(&index) {
                Some(live) => live,
                // A task that has already ended has nothing to show.
                None if index != 0 => return None,
                None => tasks.entry(0).or_insert_with(|| LiveTask {
                    name: Some(Cow::Borrowed("(scope body)")),
                    spawned: self.built,
                    location: None,
                    details: None,
                    waits: Vec::new(),
                }),
            };
            live.waits.push(Wait {
                id,
                on: what,
                since: now,
                reported: false,
            });
        }
        Some(Box::new(WaitEnd {
            introspector: self,
            index,
            id,
        }))
    }

    fn scope_closed(&self, _scope: &crate::core::observer::ClosedScope<'_>) {
        lock(&ROOTS).retain(|root| {
            root.strong_count() > 0 && !self.scope.get().is_some_and(|own| Weak::ptr_eq(own, root))
        });
    }
}

/// Ends a registered wait when dropped.
struct WaitEnd {
    introspector: Arc<Introspector>,
    index: u64,
    id: u64,
}

impl Drop for WaitEnd {
    fn drop(&mut self) {
        let mut tasks = lock(&self.introspector.tasks);
        if let Some(live) = tasks.get_mut(&self.index) {
            live.waits.retain(|wait| wait.id != self.id);
            if self.index == 0 && live.waits.is_empty() {
                tasks.remove(&0);
            }
        }
    }
}

impl Introspector {
    /// Checks the scope's waits until it is cancelled, reporting each long one once.
    async fn watch_long_waits(self: Arc<Self>, threshold: Duration, cancelled: CancellationToken) {
        let period = (threshold / 2).clamp(Duration::from_millis(1), Duration::from_secs(5));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                () = cancelled.cancelled() => return,
                _ = ticks.tick() => {
                    for long in self.long_waits(threshold, Instant::now()) {
                        tracing::warn!(
                            task = ?long.path,
                            waiting_on = long.on,
                            waited = ?long.waited,
                            "a task has waited longer than the threshold"
                        );
                    }
                }
            }
        }
    }

    /// The waits longer than `threshold` at `now` that were not reported yet, marked reported.
    fn long_waits(&self, threshold: Duration, now: Instant) -> Vec<LongWait> {
        let scope_path = self
            .scope
            .get()
            .and_then(Weak::upgrade)
            .map(|scope| scope_path(&scope))
            .unwrap_or_default();
        let mut found = Vec::new();
        for (index, live) in lock(&self.tasks).iter_mut() {
            for wait in &mut live.waits {
                let waited = now.saturating_duration_since(wait.since);
                if !wait.reported && waited > threshold {
                    wait.reported = true;
                    found.push(LongWait {
                        path: format!("{scope_path}/{}", task_name(*index, live.name.as_deref())),
                        on: wait.on,
                        waited,
                    });
                }
            }
        }
        found
    }

    /// The scope's live tasks, oldest first.
    fn tasks(&self, now: Instant) -> Vec<TaskNode> {
        let tasks = lock(&self.tasks);
        let mut nodes: Vec<TaskNode> = tasks
            .iter()
            .map(|(&index, live)| TaskNode {
                id: index,
                name: task_name(index, live.name.as_deref()),
                age: now.saturating_duration_since(live.spawned),
                state: match live.waits.last() {
                    None => TaskState::Running,
                    Some(wait) => TaskState::Waiting {
                        on: wait.on,
                        waited: now.saturating_duration_since(wait.since),
                    },
                },
                attempt: task_run(live.details.as_ref()).map(|run| run.retries() + 1),
                spawned_at: live.location.map(SpawnSite::from),
            })
            .collect();
        drop(tasks);
        nodes.sort_unstable_by_key(|task| task.id);
        nodes
    }
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
    /// Whether its tasks are recorded (see [`ScopeBuilder::introspect`]); without it only
    /// [`live_tasks`](ScopeNode::live_tasks) is known.
    pub tracked: bool,
    /// How long ago it was built (known when tracked).
    #[cfg_attr(
        feature = "introspect-json",
        serde(rename = "age_ms", serialize_with = "millis")
    )]
    pub age: Option<Duration>,
    /// What is left of its deadline (known when tracked and the scope has a deadline).
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
    /// How many of its tasks are alive (tracked or not).
    pub live_tasks: usize,
    /// Its live tasks (and its body, as task 0, while the body waits), by id; empty when not
    /// tracked.
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
    /// How long ago it was spawned.
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

/// Every live scope that is introspected (see [`enable`] and [`ScopeBuilder::introspect`]),
/// from the roots down.
pub fn snapshot() -> Tree {
    let roots: Vec<Arc<Shared>> = {
        let mut roots = lock(&ROOTS);
        roots.retain(|root| root.strong_count() > 0);
        roots.iter().filter_map(Weak::upgrade).collect()
    };
    let mut roots: Vec<Arc<Shared>> = roots.into_iter().filter(|s| !s.is_closed()).collect();
    roots.sort_by_key(|root| root.id);
    walk(roots)
}

impl Scope {
    /// This scope and its subtree as a [`Tree`]: the scopes, and — where introspection is on
    /// ([`ScopeBuilder::introspect`], [`enable`]) — every live task with what it waits on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::builder().name("jobs").build().unwrap();
    /// let tree = scope.tree();
    /// assert_eq!(tree.scopes[0].name, "jobs");
    /// assert!(!tree.scopes[0].tracked);
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn tree(&self) -> Tree {
        walk(vec![Arc::clone(self.shared())])
    }
}

impl<K: crate::core::local::LocalKind> crate::core::local::LocalScope<'_, K> {
    /// This local scope and its subtree as a [`Tree`], as [`Scope::tree`] gives it: its tasks
    /// are listed when it is introspected ([`ScopeBuilder::introspect`], [`enable`]).
    ///
    /// ```
    /// use go_go_scope::Scope;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let builder = Scope::builder().name("local").introspect(true);
    /// let listed = Scope::local(builder, |s| Box::pin(async {
    ///     let task = s.spawn(async {});
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
    let introspector = scope.feature::<Introspector>();
    let tasks = introspector
        .as_ref()
        .map(|i| i.tasks(now))
        .unwrap_or_default();
    let age = introspector
        .as_ref()
        .map(|i| now.saturating_duration_since(i.built));
    let deadline_left = match (age, scope.timeout()) {
        (Some(age), Some(timeout)) => Some(timeout.saturating_sub(age)),
        _ => None,
    };
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
        tracked: introspector.is_some(),
        age,
        deadline_left,
        cancelled: scope.is_cancelled(),
        limit,
        breaker,
        live_tasks: scope.live_tasks(),
        tasks,
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
        if let Some(age) = self.age {
            facts.push(format!("age {}", Human(age)));
        }
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
            return writeln!(f, "(no introspected scope is alive)");
        }
        for scope in &self.scopes {
            let indent = "    ".repeat(scope.depth);
            writeln!(f, "{indent}{scope}")?;
            for task in &scope.tasks {
                writeln!(f, "{indent}  - {task}")?;
            }
            if !scope.tracked && scope.live_tasks > 0 {
                writeln!(
                    f,
                    "{indent}  ({} tasks not listed: the scope is not introspected)",
                    scope.live_tasks
                )?;
            }
        }
        Ok(())
    }
}

/// Writes `tasks_by_state{scope,state}`: the live tasks of the introspected scopes by scope
/// name and [`TaskState::kind`]. Nothing while no scope is introspected.
#[cfg(feature = "metrics")]
pub(crate) fn encode_tasks_by_state(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
) -> fmt::Result {
    use prometheus_client::encoding::EncodeMetric;
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::gauge::ConstGauge;
    use std::collections::BTreeMap;

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
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for scope in tree.scopes.iter().filter(|scope| scope.tracked) {
        for kind in KINDS {
            counts.entry((&scope.name, kind)).or_default();
        }
        for task in &scope.tasks {
            *counts.entry((&scope.name, task.state.kind())).or_default() += 1;
        }
    }
    let mut family = encoder.encode_descriptor(
        "tasks_by_state",
        "Live tasks of introspected scopes by what they are doing",
        None,
        MetricType::Gauge,
    )?;
    for ((scope, state), count) in counts {
        let labels = [("scope", scope), ("state", state)];
        ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_is_reported_once_with_its_path() {
        let root = Scope::builder()
            .name("svc")
            .introspect(true)
            .build()
            .unwrap();
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
        let introspector = child.shared().feature::<Introspector>().unwrap();
        let threshold = Duration::from_secs(1);
        assert!(
            introspector
                .long_waits(threshold, Instant::now())
                .is_empty()
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let found = introspector.long_waits(threshold, Instant::now());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "svc/worker/task-1");
        assert_eq!(found[0].on, "db lock");
        assert!(found[0].waited >= Duration::from_secs(2));
        assert!(
            introspector
                .long_waits(threshold, Instant::now())
                .is_empty()
        );
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
        let scope = Scope::builder()
            .name("snapshot-leaves")
            .introspect(true)
            .build()
            .unwrap();
        let id = scope.tree().scopes[0].id;
        assert!(snapshot().scope(id).is_some());
        scope.close().await.unwrap();
        assert!(snapshot().scope(id).is_none());
    }
}
