//! [`Pool`]: a bounded set of reusable resources (connections, clients, buffers), lent out
//! one borrower at a time.
//!
//! - At most `max` resources exist at once; `min` of them are created up front and are lent
//!   like any other.
//! - [`Pool::acquire`] lends an idle resource (the most recently returned first), creates one
//!   if there is room, or waits (first come, first served) up to `acquire_timeout`.
//! - The [`PoolGuard`] gives the resource back when dropped. A resource whose borrower
//!   panicked, or that was [`discard`](PoolGuard::discard)ed, is destroyed instead.
//! - `destroy` runs exactly once for every resource that was created: when the pool closes
//!   for idle ones, when they come back for the ones lent out at that moment. A `destroy` that
//!   fails or panics is logged at `warn` and does not stop the others.
//! - Closing (explicitly, or when the owning scope closes) wakes every waiting `acquire` with
//!   [`Error::PoolClosed`].

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::core::error::{BoxError, Error, TimeoutOrigin};
use crate::core::resources::DisposeResult;
use crate::core::scope::Scope;
use crate::observe::deadlock::begin_wait;
use crate::util::sync::lock;

type Create<T> =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<T, Error>> + Send>> + Send + Sync>;
type Destroy<T> =
    Arc<dyn Fn(T) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> + Send + Sync>;

/// How a [`Pool`] makes and disposes of its resources, and its limits.
///
/// Defaults: `min` 0, `max` 10, `acquire_timeout` 30 s, and no `destroy` (a resource is just
/// dropped).
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::PoolOptions;
///
/// struct Conn(u32);
/// let options = PoolOptions::new(|| async { Ok::<_, std::io::Error>(Conn(1)) })
///     .destroy(|conn: Conn| async move { drop(conn) })
///     .min(2)
///     .max(8)
///     .acquire_timeout(Duration::from_secs(1));
/// assert_eq!((options.min_size(), options.max_size()), (2, 8));
/// ```
pub struct PoolOptions<T> {
    create: Create<T>,
    destroy: Option<Destroy<T>>,
    min: usize,
    max: usize,
    acquire_timeout: Duration,
}

impl<T> fmt::Debug for PoolOptions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolOptions")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("has_destroy", &self.destroy.is_some())
            .finish()
    }
}

impl<T: Send + 'static> PoolOptions<T> {
    /// Resources are made by `create`; its error fails the `acquire` that needed the resource
    /// (a panic in `create` fails it with [`Error::Panicked`]).
    pub fn new<F, Fut, E>(create: F) -> PoolOptions<T>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        PoolOptions {
            create: Arc::new(move || {
                let created = create();
                Box::pin(async move { created.await.map_err(Error::from_task_error) })
            }),
            destroy: None,
            min: 0,
            max: 10,
            acquire_timeout: Duration::from_secs(30),
        }
    }

    /// Disposes of a resource the pool no longer keeps. Its failure is logged at `warn`; the
    /// resource is gone either way.
    pub fn destroy<D, DFut>(mut self, destroy: D) -> Self
    where
        D: Fn(T) -> DFut + Send + Sync + 'static,
        DFut: Future + Send + 'static,
        DFut::Output: DisposeResult,
    {
        self.destroy = Some(Arc::new(move |resource| {
            let destroyed = destroy(resource);
            Box::pin(async move { destroyed.await.into_dispose_result() })
        }));
        self
    }

    /// Resources created up front (and lendable at once). At most `max`.
    pub fn min(mut self, min: usize) -> Self {
        self.min = min;
        self
    }

    /// The most resources that exist at once (lent, idle or being created). At least 1.
    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// How long an `acquire` may take, waiting and creating included.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The configured `min`.
    pub fn min_size(&self) -> usize {
        self.min
    }

    /// The configured `max`.
    pub fn max_size(&self) -> usize {
        self.max
    }
}

/// Counts of a [`Pool`]'s resources at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Resources that exist: available + in use + being created.
    pub total: usize,
    /// Idle resources ready to lend.
    pub available: usize,
    /// Resources lent out (guards alive).
    pub in_use: usize,
    /// `acquire` calls waiting for room.
    pub waiting: usize,
    /// Resources being created right now.
    pub creating: usize,
}

struct Slots<T> {
    idle: Vec<T>,
    total: usize,
    creating: usize,
    closed: bool,
}

struct Inner<T> {
    create: Create<T>,
    destroy: Option<Destroy<T>>,
    max: usize,
    acquire_timeout: Duration,
    /// One permit per resource that may be lent or created.
    room: Arc<Semaphore>,
    slots: Mutex<Slots<T>>,
    waiting: AtomicUsize,
    runtime: Handle,
    /// The scope's cleanup of this helper, withdrawn when the helper is dropped.
    owner: std::sync::OnceLock<crate::core::scope::DisposerHandle>,
}

impl<T: Send + 'static> Inner<T> {
    /// Runs `create`; a panic, while its future is made or while it runs, is an
    /// [`Error::Panicked`] like any failed creation.
    async fn create_one(&self) -> Result<T, Error> {
        match catch_unwind(AssertUnwindSafe(|| (self.create)())) {
            Ok(creating) => AssertUnwindSafe(creating)
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| Err(Error::from_panic(payload))),
            Err(payload) => Err(Error::from_panic(payload)),
        }
    }

    /// Runs `destroy` once for `resource`; its failure or panic is logged and goes no
    /// further, so the resources destroyed after it are not skipped.
    async fn destroy_now(&self, resource: T) {
        let Some(destroy) = &self.destroy else {
            return;
        };
        let destroyed = match catch_unwind(AssertUnwindSafe(|| destroy(resource))) {
            Ok(destroying) => AssertUnwindSafe(destroying)
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| Err(Error::from_panic(payload))),
            Err(payload) => Err(Error::from_panic(payload)),
        };
        if let Err(error) = destroyed {
            tracing::warn!(
                error = crate::util::log::LoggedError::of(&error).field(),
                "a pool resource's destroy failed"
            );
        }
    }

    /// Destroys a resource from synchronous code (a guard's drop).
    fn destroy_later(self: &Arc<Self>, resource: T) {
        if self.destroy.is_none() {
            return;
        }
        let pool = Arc::clone(self);
        // On a runtime that is shutting down the task cannot run; the resource is then
        // dropped with it, which is all that is left to do.
        drop(
            self.runtime
                .spawn(async move { pool.destroy_now(resource).await }),
        );
    }

    /// A resource came back from a borrower.
    fn give_back(self: &Arc<Self>, resource: T, reusable: bool) {
        let mut slots = lock(&self.slots);
        if reusable && !slots.closed {
            slots.idle.push(resource);
            return;
        }
        slots.total -= 1;
        drop(slots);
        self.destroy_later(resource);
    }

    /// Closes the pool and destroys its idle resources, one after the other. If this future is
    /// dropped half-way, the resources not yet destroyed are destroyed in the background, so
    /// every resource still gets its one `destroy`.
    async fn close(self: &Arc<Self>) {
        let idle = self.close_now();
        let mut pending = DestroyRest {
            pool: self,
            rest: idle.into_iter(),
        };
        for resource in pending.rest.by_ref() {
            self.destroy_now(resource).await;
        }
    }

    /// Marks the pool closed and takes its idle resources (none when it already was closed).
    fn close_now(&self) -> Vec<T> {
        let idle = {
            let mut slots = lock(&self.slots);
            if slots.closed {
                return Vec::new();
            }
            slots.closed = true;
            slots.total -= slots.idle.len();
            std::mem::take(&mut slots.idle)
        };
        self.room.close();
        idle
    }

    async fn wait_for_room(&self) -> Result<OwnedSemaphorePermit, Error> {
        let _counted = Counted::enter(&self.waiting);
        let _waiting = begin_wait("pool acquire");
        Arc::clone(&self.room)
            .acquire_owned()
            .await
            .map_err(|_| Error::PoolClosed)
    }

    /// With room in hand: an idle resource, or the reservation of a slot to create one.
    fn take_idle_or_reserve(self: &Arc<Self>) -> Result<Result<T, Creating<T>>, Error> {
        let mut slots = lock(&self.slots);
        if slots.closed {
            return Err(Error::PoolClosed);
        }
        if let Some(idle) = slots.idle.pop() {
            return Ok(Ok(idle));
        }
        slots.total += 1;
        slots.creating += 1;
        Ok(Err(Creating(Some(Arc::clone(self)))))
    }

    /// Creates a resource in a slot reserved by `take_idle_or_reserve`.
    async fn create_reserved(self: &Arc<Self>, mut creating: Creating<T>) -> Result<T, Error> {
        let created = self.create_one().await;
        creating.finish(created.is_ok());
        let resource = created?;
        if lock(&self.slots).closed {
            self.give_back(resource, false);
            return Err(Error::PoolClosed);
        }
        Ok(resource)
    }

    /// Takes an idle resource, or creates one; `permit` is the room for it.
    async fn lend(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Result<PoolGuard<T>, Error> {
        let resource = match self.take_idle_or_reserve()? {
            Ok(idle) => idle,
            Err(creating) => self.create_reserved(creating).await?,
        };
        Ok(self.guard(resource, permit))
    }

    /// Bounds an acquire by `acquire_timeout`.
    async fn within_timeout(
        &self,
        acquire: impl Future<Output = Result<PoolGuard<T>, Error>>,
    ) -> Result<PoolGuard<T>, Error> {
        let deadline = crate::util::timer::timer(self.acquire_timeout, "acquire_timeout")?;
        tokio::select! {
            biased;
            result = acquire => result,
            () = deadline => Err(Error::Timeout {
                after: self.acquire_timeout,
                scope_or_task: TimeoutOrigin::Operation("pool acquire"),
            }),
        }
    }

    fn guard(self: &Arc<Self>, resource: T, permit: OwnedSemaphorePermit) -> PoolGuard<T> {
        PoolGuard {
            resource: Some(resource),
            pool: Arc::clone(self),
            _permit: permit,
        }
    }
}

/// Counts a caller in `counter` while it waits.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(counter: &'a AtomicUsize) -> Counted<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps the counts right when a creation fails or its `acquire` is dropped mid-way.
struct Creating<T>(Option<Arc<Inner<T>>>);

impl<T> Creating<T> {
    fn finish(&mut self, created: bool) {
        if let Some(pool) = self.0.take() {
            let mut slots = lock(&pool.slots);
            slots.creating -= 1;
            if !created {
                slots.total -= 1;
            }
        }
    }
}

impl<T> Drop for Creating<T> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// A pool of reusable resources; see the module docs for the rules. Clones are handles to the
/// same pool.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use go_go_scope::{PoolOptions, Scope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let s = Scope::new().unwrap();
/// let next_id = Arc::new(AtomicU32::new(1));
/// let ids = next_id.clone();
/// let pool = s
///     .pool(PoolOptions::new(move || {
///         let id = ids.fetch_add(1, Ordering::SeqCst);
///         async move { Ok::<_, std::io::Error>(id) }
///     }).max(2))
///     .await
///     .unwrap();
/// let a = pool.acquire().await.unwrap();
/// assert_eq!(*a, 1);
/// drop(a); // back to the pool
/// let doubled = pool.execute(async |id: &mut u32| *id * 2).await.unwrap();
/// assert_eq!(doubled, 2); // the same resource, reused
/// assert_eq!(pool.stats().total, 1);
/// s.close().await.unwrap();
/// assert!(pool.acquire().await.is_err()); // closed with its scope
/// # }
/// ```
pub struct Pool<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("max", &self.inner.max)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T: Send + 'static> Pool<T> {
    /// A pool not tied to a scope, with its `min` resources created; close it with
    /// [`close`](Pool::close). Fails on invalid options (`max` 0, `min` above `max`), outside a
    /// Tokio runtime, or with the error of a failing `create` (the resources already made are
    /// destroyed).
    ///
    /// ```
    /// use go_go_scope::{Error, Pool, PoolOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let options = || PoolOptions::new(|| async { Ok::<_, Error>(()) });
    /// assert!(matches!(Pool::new(options().max(0)).await, Err(Error::InvalidOption { .. })));
    /// assert!(matches!(Pool::new(options().min(3).max(2)).await, Err(Error::InvalidOption { .. })));
    /// let pool = Pool::new(options().min(2)).await.unwrap();
    /// assert_eq!(pool.stats().available, 2);
    /// pool.close().await;
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future while it creates the `min` resources gives up the pool: the
    /// creation in progress is dropped, and the resources created so far are destroyed in the
    /// background (each with its one `destroy`). Nothing is lent from a pool that was never
    /// returned.
    ///
    /// # Errors
    /// - [`Error::InvalidOption`] when `max` is 0 or above
    ///   [`Semaphore::MAX_PERMITS`], or `min` is above `max`;
    /// - [`Error::NoRuntime`] outside a Tokio runtime;
    /// - the error of the first `create` that fails while making the `min` resources, as
    ///   [`Error::Failed`] (or itself, when `create` returns [`Error`]), or [`Error::Panicked`]
    ///   when it panicked. The resources made before it are destroyed first.
    pub async fn new(options: PoolOptions<T>) -> Result<Pool<T>, Error> {
        if options.max == 0 {
            return Err(Error::invalid(
                "max",
                "a pool needs room for at least 1 resource",
            ));
        }
        if options.max > Semaphore::MAX_PERMITS {
            return Err(Error::invalid(
                "max",
                format!(
                    "must be between 1 and {} (got {})",
                    Semaphore::MAX_PERMITS,
                    options.max
                ),
            ));
        }
        if options.min > options.max {
            return Err(Error::invalid("min", "must not be above max"));
        }
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let pool = Pool {
            inner: Arc::new(Inner {
                create: options.create,
                destroy: options.destroy,
                max: options.max,
                acquire_timeout: options.acquire_timeout,
                room: Arc::new(Semaphore::new(options.max)),
                slots: Mutex::new(Slots {
                    idle: Vec::new(),
                    total: 0,
                    creating: 0,
                    closed: false,
                }),
                waiting: AtomicUsize::new(0),
                runtime,
                owner: std::sync::OnceLock::new(),
            }),
        };
        let mut filling = CloseUnlessFilled(Some(Arc::clone(&pool.inner)));
        for _ in 0..options.min {
            match pool.inner.create_one().await {
                Ok(resource) => {
                    let mut slots = lock(&pool.inner.slots);
                    slots.idle.push(resource);
                    slots.total += 1;
                }
                Err(error) => {
                    filling.0 = None;
                    pool.close().await;
                    return Err(error);
                }
            }
        }
        filling.0 = None;
        Ok(pool)
    }

    /// Borrows a resource: an idle one, a new one if there is room, or the next one given back
    /// (callers are served in arrival order).
    ///
    /// Fails with [`Error::PoolClosed`] when the pool is closed (also while waiting), with
    /// [`Error::Timeout`] after `acquire_timeout`, or with `create`'s error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::{Error, Pool, PoolOptions};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let pool = Pool::new(
    ///     PoolOptions::new(|| async { Ok::<_, Error>("conn") })
    ///         .max(1)
    ///         .acquire_timeout(Duration::from_millis(30)),
    /// )
    /// .await
    /// .unwrap();
    /// let held = pool.acquire().await.unwrap();
    /// let err = pool.acquire().await.unwrap_err();
    /// assert_eq!(err.to_string(), "pool acquire timed out after 30ms");
    /// drop(held);
    /// assert!(pool.acquire().await.is_ok());
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future takes nothing from the pool and leaves no slot taken.
    /// A caller dropped while waiting gives up its place in the queue (callers behind it move
    /// up); one dropped while its resource is being created drops that creation, and the
    /// room it had reserved is free again. A resource is only ever lent by the poll that
    /// completes the future with its guard.
    ///
    /// # Errors
    /// - [`Error::PoolClosed`] when the pool is closed, at the call or while waiting;
    /// - [`Error::Timeout`] (origin `"pool acquire"`) when no resource could be lent within
    ///   `acquire_timeout`, waiting and creating included;
    /// - `create`'s error when a new resource was needed and its creation failed, as
    ///   [`Error::Failed`] (or itself, when `create` returns [`Error`]), or [`Error::Panicked`]
    ///   when it panicked. The failed slot is free again;
    /// - [`Error::InvalidOption`] (`acquire_timeout`) when it has to wait or to create a
    ///   resource on a Tokio runtime built without timers (`enable_time`): the
    ///   `acquire_timeout` is a Tokio timer. Lending an idle resource sets no timer.
    ///
    /// # Panics
    /// When it has to wait or to create a resource outside a Tokio runtime.
    pub async fn acquire(&self) -> Result<PoolGuard<T>, Error> {
        let inner = &self.inner;
        let permit = match Arc::clone(&inner.room).try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(Error::PoolClosed),
            Err(TryAcquireError::NoPermits) => {
                return inner
                    .within_timeout(async {
                        let permit = inner.wait_for_room().await?;
                        inner.lend(permit).await
                    })
                    .await;
            }
        };
        // Room right now: an idle resource is lent without setting any timer.
        match inner.take_idle_or_reserve()? {
            Ok(idle) => Ok(inner.guard(idle, permit)),
            Err(creating) => {
                inner
                    .within_timeout(async {
                        let created = inner.create_reserved(creating).await?;
                        Ok(inner.guard(created, permit))
                    })
                    .await
            }
        }
    }

    /// Borrows a resource, runs `f` with it, and gives it back; returns what `f` returned.
    /// Fails like [`acquire`](Pool::acquire) before `f` runs. If `f` panics, the resource is
    /// destroyed rather than lent again.
    ///
    /// ```
    /// use go_go_scope::{Error, Pool, PoolOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::new(PoolOptions::new(|| async { Ok::<_, Error>(Vec::<u8>::new()) })).await.unwrap();
    /// let len = pool.execute(async |buf: &mut Vec<u8>| {
    ///     buf.extend_from_slice(b"abc");
    ///     buf.len()
    /// }).await.unwrap();
    /// assert_eq!(len, 3);
    /// assert_eq!(pool.stats().available, 1);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future while it waits for a resource is as harmless as dropping
    /// [`acquire`](Pool::acquire). Dropping it while `f` runs drops `f`'s future and gives the
    /// resource back to the pool as `f` left it, to be lent again; if a half-finished `f`
    /// can leave the resource unusable (a connection in the middle of a request), use
    /// [`acquire`](Pool::acquire) and [`PoolGuard::discard`] instead.
    ///
    /// # Errors
    /// As [`acquire`](Pool::acquire); `f` has not run then. What `f` returns is passed through
    /// as the `Ok` value, errors included.
    ///
    /// # Panics
    /// When `f` panics: the panic goes on to the caller, and the resource is destroyed rather
    /// than lent again. Also as [`acquire`](Pool::acquire) does, outside a Tokio runtime.
    pub async fn execute<R>(&self, f: impl AsyncFnOnce(&mut T) -> R) -> Result<R, Error> {
        let mut guard = self.acquire().await?;
        Ok(f(&mut guard).await)
    }

    /// Current counts: total, available, in use, waiting, being created.
    pub fn stats(&self) -> PoolStats {
        let slots = lock(&self.inner.slots);
        PoolStats {
            total: slots.total,
            available: slots.idle.len(),
            in_use: slots
                .total
                .saturating_sub(slots.idle.len() + slots.creating),
            waiting: self.inner.waiting.load(Ordering::Relaxed),
            creating: slots.creating,
        }
    }

    /// Closes the pool: waiting and later `acquire`s fail with [`Error::PoolClosed`], idle
    /// resources are destroyed now, lent ones when they come back. Idempotent.
    ///
    /// ```
    /// use go_go_scope::{Error, Pool, PoolOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::new(PoolOptions::new(|| async { Ok::<_, Error>(()) }).min(1)).await.unwrap();
    /// pool.close().await;
    /// assert!(pool.is_closed());
    /// assert_eq!(pool.stats().total, 0);
    /// assert!(matches!(pool.acquire().await, Err(Error::PoolClosed)));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// The pool is closed by the first poll; the idle resources are then destroyed one after
    /// another by this future. If it is dropped before it completes, the `destroy` in progress
    /// is dropped where it stands and the resources not destroyed yet are destroyed in the
    /// background, so each still gets its one `destroy`; a later `close` returns at once.
    pub async fn close(&self) {
        self.inner.close().await;
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.slots).closed
    }
}

/// The idle resources a close has not destroyed yet; dropped half-way, it hands them to the
/// background.
struct DestroyRest<'a, T: Send + 'static> {
    pool: &'a Arc<Inner<T>>,
    rest: std::vec::IntoIter<T>,
}

impl<T: Send + 'static> Drop for DestroyRest<'_, T> {
    fn drop(&mut self) {
        for resource in self.rest.by_ref() {
            self.pool.destroy_later(resource);
        }
    }
}

/// Closes a pool that `Pool::new` was still filling when its future was dropped, so the
/// resources it had created are destroyed.
struct CloseUnlessFilled<T: Send + 'static>(Option<Arc<Inner<T>>>);

impl<T: Send + 'static> Drop for CloseUnlessFilled<T> {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            for resource in pool.close_now() {
                pool.destroy_later(resource);
            }
        }
    }
}

/// A borrowed resource; gives it back to its [`Pool`] when dropped.
///
/// Dereferences to the resource. If the borrower panics while holding it, the resource is
/// destroyed instead of being lent again (its state is unknown).
pub struct PoolGuard<T: Send + 'static> {
    resource: Option<T>,
    pool: Arc<Inner<T>>,
    /// Released after the resource is back, so the next waiter finds it.
    _permit: OwnedSemaphorePermit,
}

impl<T: Send + 'static> PoolGuard<T> {
    /// Destroys the resource instead of giving it back (for a connection found broken, say).
    ///
    /// ```
    /// use go_go_scope::{Error, Pool, PoolOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::new(PoolOptions::new(|| async { Ok::<_, Error>(1) })).await.unwrap();
    /// pool.acquire().await.unwrap().discard();
    /// assert_eq!(pool.stats().total, 0);
    /// # }
    /// ```
    pub fn discard(mut self) {
        if let Some(resource) = self.resource.take() {
            self.pool.give_back(resource, false);
        }
    }
}

impl<T: Send + 'static> Deref for PoolGuard<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.resource {
            Some(resource) => resource,
            // `resource` is only taken by `discard` (which consumes the guard) and `drop`.
            None => unreachable!("a pool guard always holds its resource until it is dropped"),
        }
    }
}

impl<T: Send + 'static> DerefMut for PoolGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.resource {
            Some(resource) => resource,
            None => unreachable!("a pool guard always holds its resource until it is dropped"),
        }
    }
}

impl<T: Send + 'static> Drop for PoolGuard<T> {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            self.pool.give_back(resource, !std::thread::panicking());
        }
    }
}

impl<T: fmt::Debug + Send + 'static> fmt::Debug for PoolGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolGuard").field(&self.resource).finish()
    }
}

impl Scope {
    /// A [`Pool`] closed when this scope closes: its waiters then fail with
    /// [`Error::PoolClosed`] and its resources are destroyed (lent ones when they come back).
    /// Creates the `min` resources before returning. Fails like [`Pool::new`], and with
    /// [`Error::Closed`] on a closed scope.
    ///
    /// ```
    /// use go_go_scope::{Error, PoolOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let s = go_go_scope::Scope::new().unwrap();
    /// let pool = s.pool(PoolOptions::new(|| async { Ok::<_, Error>(0_u64) }).min(2).max(4)).await.unwrap();
    /// let stats = pool.stats();
    /// assert_eq!((stats.total, stats.available, stats.in_use), (2, 2, 0));
    /// s.close().await.unwrap();
    /// assert!(matches!(pool.acquire().await, Err(Error::PoolClosed)));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// As [`Pool::new`]: dropping the future while it creates the `min` resources destroys
    /// those created so far in the background, and the scope is left without the pool.
    ///
    /// # Errors
    /// [`Error::Closed`] when the scope is closed (or closing); otherwise as [`Pool::new`].
    pub async fn pool<T: Send + 'static>(&self, options: PoolOptions<T>) -> Result<Pool<T>, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let pool = Pool::new(options).await?;
        let owned = Arc::downgrade(&pool.inner);
        let owner = self.defer_owned(move || async move {
            if let Some(inner) = owned.upgrade() {
                inner.close().await;
            }
        });
        if let Some(owner) = owner {
            let _ = pool.inner.owner.set(owner);
        }
        Ok(pool)
    }
}
