//! What a scope owns besides tasks: typed services, and the LIFO stack of disposers that runs
//! when the scope closes.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;

use crate::core::error::{BoxError, Error};
use crate::core::observer::Features;
use crate::util::sync::lock;

type DisposeFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;
type Disposer = Box<dyn FnOnce() -> DisposeFuture + Send>;
type ServiceMap = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// What a disposer may return: `()` for cleanups that cannot fail, or `Result<(), E>`.
///
/// A failed disposer is reported (the `on_dispose` hook, a `warn` event, the scope's metrics,
/// and the result of [`Scope::close`](crate::Scope::close)); the remaining disposers still run.
pub trait DisposeResult {
    /// Converts the disposer's output into the crate's result.
    fn into_dispose_result(self) -> Result<(), Error>;
}

impl DisposeResult for () {
    fn into_dispose_result(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<E: Into<BoxError>> DisposeResult for Result<(), E> {
    fn into_dispose_result(self) -> Result<(), Error> {
        self.map_err(Error::from_task_error)
    }
}

#[derive(Default)]
pub(crate) struct Resources {
    services: Mutex<Option<ServiceMap>>,
    has_services: AtomicBool,
    disposers: Mutex<Disposers>,
}

#[derive(Default)]
struct Disposers {
    /// By registration number: the last registered runs first.
    stack: BTreeMap<u64, Disposer>,
    next: u64,
    /// Set when disposal has finished; later registrations are handed back to run at once.
    sealed: bool,
}

/// A cleanup registered after its scope finished disposing; the caller runs it right away.
pub(crate) struct LateDisposer(Disposer);

impl LateDisposer {
    pub(crate) async fn run(self) -> Result<(), Error> {
        (self.0)().await
    }
}

impl Resources {
    pub(crate) fn insert_service<T: Send + Sync + 'static>(&self, value: Arc<T>) {
        lock(&self.services)
            .get_or_insert_with(HashMap::new)
            .insert(TypeId::of::<T>(), value);
        self.has_services.store(true, Ordering::Relaxed);
    }

    pub(crate) fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let services = lock(&self.services);
        let any = services.as_ref()?.get(&TypeId::of::<T>())?.clone();
        any.downcast::<T>().ok()
    }

    /// Removes the service if it is still the very value given (a later `provide` may have
    /// replaced it).
    pub(crate) fn remove_service_if<T: Send + Sync + 'static>(&self, value: &Arc<T>) {
        let mut services = lock(&self.services);
        if let Some(map) = services.as_mut() {
            let same = map
                .get(&TypeId::of::<T>())
                .and_then(|any| any.clone().downcast::<T>().ok())
                .is_some_and(|current| Arc::ptr_eq(&current, value));
            if same {
                map.remove(&TypeId::of::<T>());
            }
        }
    }

    pub(crate) fn clear_services(&self) {
        if self.has_services.load(Ordering::Relaxed) {
            lock(&self.services).take();
        }
    }

    /// Registers a disposer and returns its number (for [`withdraw`](Self::withdraw)), or
    /// hands it back if disposal already finished.
    pub(crate) fn push_disposer<F, Fut>(&self, f: F) -> Result<u64, LateDisposer>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let disposer: Disposer = Box::new(move || Box::pin(f()));
        let mut disposers = lock(&self.disposers);
        if disposers.sealed {
            return Err(LateDisposer(disposer));
        }
        disposers.next += 1;
        let id = disposers.next;
        disposers.stack.insert(id, disposer);
        Ok(id)
    }

    /// Removes disposer `id` if it has not run yet; true when it did.
    pub(crate) fn withdraw(&self, id: u64) -> bool {
        lock(&self.disposers).stack.remove(&id).is_some()
    }

    #[cfg(feature = "testing")]
    pub(crate) fn pending_disposers(&self) -> usize {
        lock(&self.disposers).stack.len()
    }

    /// Ends registration if nothing is registered; true when it did (nothing to dispose).
    pub(crate) fn seal_if_empty(&self) -> bool {
        let mut disposers = lock(&self.disposers);
        if disposers.stack.is_empty() {
            disposers.sealed = true;
        }
        disposers.sealed
    }

    /// Runs every disposer, last registered first, each awaited before the next. A disposer
    /// registered while disposal runs is run too.
    pub(crate) async fn dispose_all(
        &self,
        scope_name: &str,
        features: Option<&Features>,
    ) -> Result<(), Error> {
        let mut errors = Vec::new();
        let mut index = 0;
        loop {
            let next = {
                let mut disposers = lock(&self.disposers);
                let next = disposers.stack.pop_last().map(|(_, disposer)| disposer);
                disposers.sealed = next.is_none();
                next
            };
            let Some(disposer) = next else { break };
            index += 1;
            let result = match AssertUnwindSafe(async move { disposer().await })
                .catch_unwind()
                .await
            {
                Ok(result) => result,
                Err(payload) => Err(Error::from_panic(payload)),
            };
            if let Some(features) = features {
                features.resource_disposed(index, result.as_ref().err());
            }
            if let Err(error) = result {
                tracing::warn!(
                    scope = ?scope_name,
                    index,
                    error = crate::util::log::LoggedError::of(&error).field(),
                    "a disposer failed; the remaining disposers still run");
                errors.push(error);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Disposal { errors })
        }
    }
}
