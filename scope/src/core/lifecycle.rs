//! The lock-free part of a scope's life: open → closing → closed, the count of live tasks, the
//! count of user handles, and who must be woken when a count drops.
//!
//! It is kept apart from the rest of the scope so that loom can check it: built with
//! `--cfg loom`, this module uses loom's atomics and the models at the bottom explore every
//! interleaving of admission, exit and close (`RUSTFLAGS="--cfg loom" cargo test -p go-go-scope
//! --lib --release lifecycle`).
//!
//! Every decision here is a store-then-load on two different counters, racing the mirror-image
//! store-then-load of another thread (Dekker's pattern). All of them are `SeqCst`, which
//! guarantees that at least one side sees the other's store; see [`sc_fence`] for how loom
//! is made to check exactly that.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Orders a `SeqCst` write before a `SeqCst` read of another location.
///
/// In the C++/Rust memory model `SeqCst` accesses alone already forbid both sides of a
/// store-buffering race from missing each other, so in normal builds this only stops the
/// compiler from moving things. Loom does not model `SeqCst` accesses as sequentially
/// consistent (only fences), so under `--cfg loom` it is a real fence: the models then check
/// the protocol at full strength.
#[inline(always)]
pub(crate) fn sc_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}

const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;

pub(crate) struct Lifecycle {
    state: AtomicU8,
    /// User handles (`Scope` values) alive.
    handles: AtomicUsize,
    /// Tasks admitted and not yet ended (their future dropped).
    live: AtomicUsize,
    /// Callers waiting for `live` to reach zero; tasks only wake anyone when there are some.
    idle_watchers: AtomicUsize,
    /// Callers waiting for a close in progress to finish.
    close_watchers: AtomicUsize,
}

/// The answer to a task asking to join the scope.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    /// The scope is closing or closed; if `wake_idle`, the caller must wake idle watchers (its
    /// brief count may have been the one they were waiting on).
    Refused {
        wake_idle: bool,
    },
}

impl Lifecycle {
    /// An open scope with its first handle.
    pub(crate) fn new() -> Lifecycle {
        Lifecycle {
            state: AtomicU8::new(OPEN),
            handles: AtomicUsize::new(1),
            live: AtomicUsize::new(0),
            idle_watchers: AtomicUsize::new(0),
            close_watchers: AtomicUsize::new(0),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::SeqCst) == OPEN
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CLOSED
    }

    /// Counts a task in if the scope is open. The order — count first, check second, both
    /// `SeqCst` — is what guarantees that a close which saw no live task can never be
    /// followed by an admitted one.
    pub(crate) fn admit(&self) -> Admission {
        self.live.fetch_add(1, Ordering::SeqCst);
        sc_fence();
        if self.state.load(Ordering::SeqCst) == OPEN {
            Admission::Admitted
        } else {
            Admission::Refused {
                wake_idle: self.exit(),
            }
        }
    }

    /// Counts a task out; true when the count reached zero while someone waits for that.
    pub(crate) fn exit(&self) -> bool {
        if self.live.fetch_sub(1, Ordering::SeqCst) != 1 {
            return false;
        }
        sc_fence();
        self.idle_watchers.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Registers a waiter for `live == 0`; it must then re-check `live` before sleeping.
    pub(crate) fn watch_idle(&self) {
        self.idle_watchers.fetch_add(1, Ordering::SeqCst);
        sc_fence();
    }

    pub(crate) fn unwatch_idle(&self) {
        self.idle_watchers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Moves open → closing; true for the one caller that did it (the closer).
    pub(crate) fn begin_close(&self) -> bool {
        let won = self
            .state
            .compare_exchange(OPEN, CLOSING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        sc_fence();
        won
    }

    /// Moves to closed; true when someone waits for that.
    pub(crate) fn finish_close(&self) -> bool {
        self.state.store(CLOSED, Ordering::SeqCst);
        sc_fence();
        self.close_watchers.load(Ordering::SeqCst) > 0
    }

    /// Registers a waiter for the close to finish; it must re-check `is_closed` before sleeping.
    pub(crate) fn watch_close(&self) {
        self.close_watchers.fetch_add(1, Ordering::SeqCst);
        sc_fence();
    }

    pub(crate) fn unwatch_close(&self) {
        self.close_watchers.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn handle_cloned(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// True when this was the last handle.
    pub(crate) fn handle_dropped(&self) -> bool {
        self.handles.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;
    use loom::thread;

    /// A task racing a close: either the close sees the task (and the task's exit wakes it), or
    /// the task is refused and never runs. Never: the close sees nothing while the task runs.
    #[test]
    fn close_never_misses_a_task() {
        loom::model(|| {
            let life = Arc::new(Lifecycle::new());
            let running = Arc::new(AtomicBool::new(false));
            let woke_closer = Arc::new(AtomicBool::new(false));

            let task = {
                let (life, running, woke) = (life.clone(), running.clone(), woke_closer.clone());
                thread::spawn(move || match life.admit() {
                    Admission::Admitted => {
                        running.store(true, Ordering::SeqCst);
                        running.store(false, Ordering::SeqCst);
                        if life.exit() {
                            woke.store(true, Ordering::SeqCst);
                        }
                    }
                    Admission::Refused { wake_idle } => {
                        if wake_idle {
                            woke.store(true, Ordering::SeqCst);
                        }
                    }
                })
            };

            assert!(life.begin_close());
            life.watch_idle();
            let saw_busy = life.live() > 0;
            if !saw_busy {
                assert!(
                    !running.load(Ordering::SeqCst),
                    "a task runs after close saw none"
                );
            }
            task.join().unwrap();
            if saw_busy {
                assert!(
                    woke_closer.load(Ordering::SeqCst),
                    "the closer waits for a task whose exit did not wake it"
                );
            }
            life.unwatch_idle();
            assert_eq!(life.live(), 0);
        });
    }

    /// Two closers: exactly one does the work; the other, having registered, is woken when it
    /// finishes (or sees it finished).
    #[test]
    fn concurrent_closes_elect_one_closer_and_wake_the_other() {
        loom::model(|| {
            let life = Arc::new(Lifecycle::new());
            let other = {
                let life = life.clone();
                thread::spawn(move || {
                    if life.begin_close() {
                        let must_wake = life.finish_close();
                        (true, must_wake, true)
                    } else {
                        life.watch_close();
                        let already = life.is_closed();
                        (false, false, already)
                    }
                })
            };
            let mine = if life.begin_close() {
                (true, life.finish_close(), true)
            } else {
                life.watch_close();
                (false, false, life.is_closed())
            };
            let theirs = other.join().unwrap();
            assert!(mine.0 ^ theirs.0, "exactly one closer");
            let (closer, waiter) = if mine.0 {
                (mine, theirs)
            } else {
                (theirs, mine)
            };
            // The waiter either saw the close finished, or the closer saw the waiter and wakes it.
            assert!(
                waiter.2 || closer.1,
                "a waiter sleeps through the end of the close"
            );
        });
    }

    /// The lazily created cancellation token against a concurrent cancel: each side writes its
    /// own cell, fences, then reads the other's (the protocol of `Shared::token` and
    /// `Shared::fire_token`); at least one side must see both and cancel the token.
    #[test]
    fn lazy_token_creation_never_misses_a_cancel() {
        use loom::sync::atomic::fence;
        loom::model(|| {
            let token_created = Arc::new(AtomicBool::new(false));
            let cause_set = Arc::new(AtomicBool::new(false));
            let cancelled_by_creator = Arc::new(AtomicBool::new(false));

            let creator = {
                let (token, cause, by_creator) = (
                    token_created.clone(),
                    cause_set.clone(),
                    cancelled_by_creator.clone(),
                );
                thread::spawn(move || {
                    token.store(true, Ordering::Release);
                    sc_fence();
                    if cause.load(Ordering::Acquire) {
                        by_creator.store(true, Ordering::SeqCst);
                    }
                })
            };
            cause_set.store(true, Ordering::Release);
            sc_fence();
            let cancelled_by_canceller = token_created.load(Ordering::Acquire);
            creator.join().unwrap();
            assert!(cancelled_by_canceller || cancelled_by_creator.load(Ordering::SeqCst));
        });
    }
}
