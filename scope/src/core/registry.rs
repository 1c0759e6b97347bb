//! The live registry the tree is read from: each scope's live tasks and the waits they are in,
//! and the process's root scopes.
//!
//! It is always kept (a scope built with `introspect(false)` keeps no task records), so it is
//! built to cost a task that never waits nothing but a branch: a task is recorded the first
//! time it is suspended — its first poll ends pending, or it queues for a concurrency permit
//! at spawn — which is when a tree could first find it doing anything but running. A task
//! that finishes within its first poll is never recorded. A record is one slot of the scope's
//! [`Slab`], taken under one uncontended lock and freed the same way when the task's future is
//! dropped; nothing is hashed, nothing is allocated once the slab has grown to the scope's
//! working size. The spawn site travels in the task's record (`#[track_caller]`, a
//! `&'static` pointer) until then.
//!
//! Waits are kept in a second slab of the same scope, by task number, so a wait can begin
//! before its task is recorded (in its first poll) and a record never changes once taken.
//! Everything else the tree shows (children, limits, the breaker, deadlines) is read from the
//! scope itself when the tree is taken.

use std::borrow::Cow;
use std::panic::Location;
use std::sync::{Arc, Mutex, Weak};
use tokio::time::Instant;

use crate::core::observer::TaskDetails;
use crate::core::shared::Shared;
use crate::util::sync::lock;

/// A vector whose freed slots are reused, through a list threaded through the free slots.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// The first free slot; `slots.len()` when there is none.
    free: usize,
}

enum Slot<T> {
    Taken(T),
    /// Free; holds the next free slot.
    Free(usize),
}

impl<T> Slab<T> {
    pub(crate) const fn new() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: 0,
        }
    }

    /// Stores `value` and returns its key.
    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.free;
        match self.slots.get_mut(key) {
            None => {
                self.slots.push(Slot::Taken(value));
                self.free = key + 1;
            }
            Some(slot) => {
                if let Slot::Free(next) = *slot {
                    self.free = next;
                }
                *slot = Slot::Taken(value);
            }
        }
        key
    }

    /// Takes the value out of `key`, if it holds one.
    #[inline]
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let slot = self.slots.get_mut(key)?;
        if let Slot::Free(_) = slot {
            return None;
        }
        let Slot::Taken(value) = std::mem::replace(slot, Slot::Free(self.free)) else {
            return None;
        };
        self.free = key;
        Some(value)
    }

    #[cfg(test)]
    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.slots.get(key)? {
            Slot::Taken(value) => Some(value),
            Slot::Free(_) => None,
        }
    }

    /// The stored values with their keys, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(key, slot)| match slot {
                Slot::Taken(value) => Some((key, value)),
                Slot::Free(_) => None,
            })
    }

    /// Mutable [`Slab::iter`].
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(key, slot)| match slot {
                Slot::Taken(value) => Some((key, value)),
                Slot::Free(_) => None,
            })
    }

    /// One past the highest key in use so far.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }
}

/// One scope's live tasks and the waits they are in.
pub(crate) struct Registry {
    pub(crate) tasks: Slab<LiveTask>,
    pub(crate) waits: Slab<Wait>,
    /// Numbers the waits, so that the innermost of a task's nested waits is the highest.
    next_wait: u64,
}

impl Registry {
    pub(crate) const fn new() -> Registry {
        Registry {
            tasks: Slab::new(),
            waits: Slab::new(),
            next_wait: 0,
        }
    }
}

/// What the tree shows of a live task, recorded the first time it is suspended.
pub(crate) struct LiveTask {
    pub(crate) index: u64,
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) location: &'static Location<'static>,
    /// When it was recorded: its spawn, or the end of its first poll.
    pub(crate) since: Instant,
    pub(crate) details: Option<Arc<dyn TaskDetails>>,
}

/// A wait in progress.
pub(crate) struct Wait {
    /// The waiting task's number; 0 for the scope body or a helper's work.
    pub(crate) index: u64,
    /// The name of a helper's work (tasks are named by their record).
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) on: &'static str,
    pub(crate) since: Instant,
    pub(crate) seq: u64,
    /// Already reported as a long wait.
    pub(crate) reported: bool,
}

/// What a task keeps instead of its key in [`Registry::tasks`] until it is recorded.
pub(crate) const UNRECORDED: u32 = u32::MAX;
/// What a task keeps instead of a key when it will not be recorded (its scope keeps no
/// records, or too many); keys are below it.
pub(crate) const NOT_RECORDED: u32 = u32::MAX - 1;

/// Records a task of `scope`; returns its key, or [`NOT_RECORDED`] when the scope keeps no
/// records.
#[cold]
#[inline(never)]
pub(crate) fn add_task(
    scope: &Shared,
    index: u64,
    name: Option<&Cow<'static, str>>,
    location: &'static Location<'static>,
    details: Option<&Arc<dyn TaskDetails>>,
) -> u32 {
    let Some(registry) = scope.registry() else {
        return NOT_RECORDED;
    };
    let task = LiveTask {
        index,
        name: name.cloned(),
        location,
        since: Instant::now(),
        details: details.cloned(),
    };
    let mut records = lock(registry);
    let key = records.tasks.insert(task);
    match u32::try_from(key) {
        Ok(key) if key < NOT_RECORDED => key,
        // A scope holding four billion suspended tasks at once records no more of them.
        _ => {
            let gone = records.tasks.remove(key);
            drop(records);
            drop(gone);
            NOT_RECORDED
        }
    }
}

/// Forgets the task recorded under `key`.
#[cold]
#[inline(never)]
pub(crate) fn remove_task(scope: &Shared, key: u32) {
    if let Some(registry) = scope.records() {
        // Dropped after the lock is released: a name or the details may be freed.
        let gone = lock(registry).tasks.remove(key as usize);
        drop(gone);
    }
}

/// Records that task `index` (0: the scope body, or a helper's work named `name`) started
/// waiting on `on`; returns the wait's key.
pub(crate) fn add_wait(
    registry: &Mutex<Registry>,
    index: u64,
    name: Option<Cow<'static, str>>,
    on: &'static str,
) -> usize {
    let since = Instant::now();
    let mut registry = lock(registry);
    let seq = registry.next_wait;
    registry.next_wait += 1;
    registry.waits.insert(Wait {
        index,
        name,
        on,
        since,
        seq,
        reported: false,
    })
}

/// The root scopes: every scope built without a parent, until it closes.
static ROOTS: Mutex<Slab<Weak<Shared>>> = Mutex::new(Slab::new());

/// Lists a new root scope; returns its key in the list.
pub(crate) fn add_root(scope: Weak<Shared>) -> usize {
    lock(&ROOTS).insert(scope)
}

/// Takes a closed root scope off the list.
pub(crate) fn remove_root(key: usize) {
    let gone = lock(&ROOTS).remove(key);
    drop(gone);
}

/// The root scopes still alive, in build order. Entries of scopes dropped without closing
/// (their runtime shut down) are cleared on the way.
pub(crate) fn roots() -> Vec<Arc<Shared>> {
    let mut roots = lock(&ROOTS);
    let mut alive = Vec::new();
    let mut dead = Vec::new();
    for (key, weak) in roots.iter() {
        match weak.upgrade() {
            Some(scope) => alive.push(scope),
            None => dead.push(key),
        }
    }
    for key in dead {
        roots.remove(key);
    }
    drop(roots);
    alive.sort_by_key(|scope| scope.id);
    alive
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn freed_slots_are_reused_last_freed_first() {
        let mut slab = Slab::new();
        let keys: Vec<usize> = (0..4).map(|i| slab.insert(i)).collect();
        assert_eq!(keys, [0, 1, 2, 3]);
        assert_eq!(slab.remove(1), Some(1));
        assert_eq!(slab.remove(1), None);
        assert_eq!(slab.remove(3), Some(3));
        assert_eq!(slab.insert(30), 3);
        assert_eq!(slab.insert(10), 1);
        assert_eq!(slab.insert(4), 4);
        assert_eq!(slab.get(3), Some(&30));
        assert_eq!(slab.remove(9), None);
        let values: Vec<(usize, &i32)> = slab.iter().collect();
        assert_eq!(values, [(0, &0), (1, &10), (2, &2), (3, &30), (4, &4)]);
        assert_eq!(slab.capacity(), 5);
    }
}
