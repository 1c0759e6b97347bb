//! A mutex lock without poisoning.
//!
//! Every critical section in this crate is a single insert, remove, take or read: a panic
//! elsewhere cannot leave a half-written value behind, so a poisoned lock is used as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning (see the module docs).
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`lock`] for loom's mutex, which the circuit breaker uses when built with `--cfg loom`.
#[cfg(loom)]
pub(crate) fn lock_loom<T: ?Sized>(mutex: &loom::sync::Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
