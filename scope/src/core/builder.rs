//! [`ScopeBuilder`]: a scope's options, and `build`, which makes its state.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::core::context::{self};
use crate::core::error::Error;
use crate::core::lifecycle::Lifecycle;
use crate::core::observer::Features;
use crate::core::registry;
use crate::core::resources::Resources;
use crate::features::{FeatureOptions, ScopeInit, assemble};
use crate::util::sync::lock;
use crate::util::timer::timer;

use super::scope::Scope;
use super::shared::{Cause, Children, NEXT_SCOPE_ID, Report, Shared};

/// Which parent a new scope gets.
#[derive(Default)]
enum ParentChoice {
    #[default]
    Ambient,
    Explicit(Scope),
    Detached,
}

/// Configures and builds a [`Scope`]; see [`Scope::builder`].
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::{Hooks, Scope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = Scope::builder()
///     .name("checkout")
///     .timeout(Duration::from_secs(30))
///     .concurrency(4)
///     .metrics(true)
///     .hooks(Hooks::new().on_cancel(|reason| eprintln!("cancelled: {reason}")))
///     .build()
///     .unwrap();
/// assert_eq!(scope.concurrency(), Some(4));
/// scope.close().await.unwrap();
///
/// let err = Scope::builder().concurrency(0).build().unwrap_err();
/// assert!(err.to_string().contains("concurrency"));
/// # }
/// ```
#[derive(Default)]
#[must_use = "a builder does nothing until .build() or Scope::run"]
pub struct ScopeBuilder {
    name: Option<Cow<'static, str>>,
    timeout: Option<Duration>,
    /// An outside token whose cancellation cancels the scope.
    linked: Option<CancellationToken>,
    concurrency: Option<usize>,
    parent: ParentChoice,
    wait: bool,
    /// The features' options (hooks, metrics, tracer, breaker, ...), set by each feature's own
    /// builder methods; boxed, since a builder is moved by every call and short-lived scopes
    /// (one per request) mostly set none.
    features: Option<Box<FeatureOptions>>,
}

impl std::fmt::Debug for ScopeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl ScopeBuilder {
    /// The slot for the features' options (see `crate::features`).
    pub(crate) fn feature_options(&mut self) -> &mut Option<Box<FeatureOptions>> {
        &mut self.features
    }

    /// The scope's name, used for its span, its metrics label and its errors. Default `"scope"`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Cancels the scope (with [`Error::Timeout`]) once `after` has elapsed since it was built.
    /// Must be greater than zero.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// At most `limit` tasks of this scope run at once; the others wait for a permit (their
    /// wait is not counted in their duration). Must be between 1 and
    /// [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS). Child scopes get their own
    /// limit of the same size unless they set one.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// Makes the scope a child of `parent`: cancelled with it, closed before it, and seeing its
    /// services. Without this call the parent is the ambient scope, if there is one.
    pub fn parent(mut self, parent: &Scope) -> Self {
        self.parent = ParentChoice::Explicit(parent.clone());
        self
    }

    /// Cancels the scope when `token` is cancelled: graceful shutdown wired from the
    /// application (one token cancelled by a signal handler ends every scope linked to it).
    /// The scope's tasks resolve to [`Error::Cancelled`] with the reason
    /// `"linked token cancelled"`. Cancelling the scope does not cancel `token`.
    ///
    /// ```
    /// use go_go_scope::{CancellationToken, Scope};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = CancellationToken::new();
    /// let scope = Scope::builder().cancel_on(shutdown.clone()).build().unwrap();
    /// let server = scope.spawn(std::future::pending::<()>());
    /// shutdown.cancel();
    /// let (err, _) = server.await;
    /// assert_eq!(err.unwrap().to_string(), "cancelled: linked token cancelled");
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.linked = Some(token);
        self
    }

    /// Makes the scope a root even when built inside another scope's code.
    pub fn detached(mut self) -> Self {
        self.parent = ParentChoice::Detached;
        self
    }

    /// For [`Scope::run`]: when the body ends, wait for outstanding tasks to finish instead of
    /// cancelling them.
    pub fn wait(mut self, enabled: bool) -> Self {
        self.wait = enabled;
        self
    }

    /// Builds the scope. Fails on invalid options, outside a Tokio runtime, or when the parent
    /// is already closed.
    ///
    /// # Errors
    /// - [`Error::InvalidOption`] for a `concurrency` of 0 or above
    ///   [`Semaphore::MAX_PERMITS`], a zero `timeout`, or a zero `deadlock_detection`
    ///   threshold;
    /// - [`Error::NoRuntime`] when called outside a Tokio runtime;
    /// - [`Error::Closed`] when the parent (explicit or ambient) is already closed or closing.
    pub fn build(self) -> Result<Scope, Error> {
        if let Some(limit) = self.concurrency
            && !(1..=Semaphore::MAX_PERMITS).contains(&limit)
        {
            return Err(Error::invalid(
                "concurrency",
                format!(
                    "must be between 1 and {} (got {limit}); leave it unset for no limit",
                    Semaphore::MAX_PERMITS
                ),
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::invalid(
                "timeout",
                "must be greater than zero; leave it unset for no deadline",
            ));
        }
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        // The deadline's timer is made here, in the caller, not in the task that waits on it: on
        // a runtime built without a time driver making it panics, which must be this call's
        // error rather than a timer task that dies and a deadline that never comes.
        let deadline = match self.timeout {
            Some(after) => Some((after, timer(after, "timeout")?)),
            None => None,
        };
        let explicit_parent = matches!(self.parent, ParentChoice::Explicit(_));
        let parent = match self.parent {
            ParentChoice::Ambient => context::ambient_scope(),
            ParentChoice::Explicit(scope) => Some(Arc::clone(scope.shared())),
            ParentChoice::Detached => None,
        };
        let concurrency = self
            .concurrency
            .or_else(|| parent.as_ref().and_then(|p| p.concurrency));
        // The live registry: on unless this builder (or, failing that, the parent) opted out.
        let keeps_tasks = crate::features::keeps_tasks(self.features.as_deref())
            .unwrap_or_else(|| parent.as_ref().is_none_or(|p| p.keeps_tasks));
        let custom_name = self.name.is_some();
        let name = self.name.unwrap_or(Cow::Borrowed("scope"));
        let features = assemble(
            self.features,
            &ScopeInit {
                name: &name,
                custom_name,
                timeout: self.timeout,
                concurrency_option: self.concurrency,
                concurrency,
                parent: parent.as_ref(),
                explicit_parent,
                linked: self.linked.is_some(),
            },
        )?;
        let wants = features.as_deref().map(Features::wants).unwrap_or_default();
        let background = features
            .as_deref()
            .map(Features::background)
            .unwrap_or_default();
        let built = Instant::now();
        let is_root = parent.is_none();
        let shared = Arc::new_cyclic(|this| Shared {
            id: NEXT_SCOPE_ID.fetch_add(1, Ordering::Relaxed),
            name,
            token: OnceLock::new(),
            cause: OnceLock::new(),
            life: Lifecycle::new(),
            idle: Notify::new(),
            closed: Notify::new(),
            parent,
            children: Mutex::new(Children::default()),
            next_index: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            resources: Resources::default(),
            limit: concurrency.map(|n| Arc::new(Semaphore::new(n))),
            concurrency,
            timeout: self.timeout,
            wait_on_exit: self.wait,
            features,
            wants,
            created: wants.durations.then_some(built),
            built,
            keeps_tasks,
            registry: OnceLock::new(),
            root: is_root.then(|| registry::add_root(Weak::clone(this))),
            lifetime: OnceLock::new(),
            background: Mutex::new(Vec::new()),
            has_background: self.timeout.is_some()
                || self.linked.is_some()
                || !background.is_empty(),
            runtime,
        });
        if let Some(parent) = &shared.parent {
            let mut children = lock(&parent.children);
            if !parent.is_open() {
                return Err(Error::Closed);
            }
            children.by_id.insert(shared.id, Arc::clone(&shared));
            drop(children);
            if let Some(cause) = parent.cause.get() {
                shared.cancel_tree(cause, Report::IfBusy);
            }
        }
        if let Some(linked) = self.linked {
            let linked_cause = Cause::Cancelled(Cow::Borrowed("linked token cancelled"));
            if linked.is_cancelled() {
                shared.cancel_tree(&linked_cause, Report::Always);
            } else {
                let weak = Arc::downgrade(&shared);
                let token = shared.token().clone();
                let link = shared.runtime.spawn(async move {
                    tokio::select! {
                        () = linked.cancelled() => {
                            if let Some(shared) = weak.upgrade() {
                                shared.cancel_tree(&linked_cause, Report::Always);
                            }
                        }
                        () = token.cancelled() => {}
                    }
                });
                lock(&shared.background).push(link);
            }
        }
        if let Some((after, sleep)) = deadline {
            let weak = Arc::downgrade(&shared);
            let token = shared.token().clone();
            let timer = shared.runtime.spawn(async move {
                tokio::select! {
                    () = sleep => {
                        if let Some(shared) = weak.upgrade() {
                            let scope = shared.name.clone();
                            shared.cancel_tree(&Cause::Timeout { after, scope }, Report::Always);
                        }
                    }
                    () = token.cancelled() => {}
                }
            });
            lock(&shared.background).push(timer);
        }
        if let Some(features) = shared.features() {
            features.scope_built(&shared);
        }
        for work in background {
            let handle = shared.runtime.spawn(work(shared.token().clone()));
            lock(&shared.background).push(handle);
        }
        Ok(Scope::from_new(shared))
    }
}
