//! Local scopes: tasks that borrow from the caller, polled by the scope's own future.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use go_go_scope::{Error, Hooks, ParallelOpts, Scope, TimeoutOrigin};
use go_go_scope_tests::{DropFlag, Gauge};
use tokio::time::sleep;

async fn lookup(table: &[&'static str], id: usize) -> Option<&'static str> {
    tokio::task::yield_now().await;
    table.get(id).copied()
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn tasks_borrow_from_the_caller() {
    let table = vec!["zero", "one", "two"];
    let found = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let a = s.spawn(lookup(&table, 1));
            let b = s.spawn(lookup(&table, 2));
            let c = s.spawn(lookup(&table, 7));
            (a.await, b.await, c.await)
        })
    })
    .await
    .unwrap();
    assert_eq!(found.0.1, Some(Some("one")));
    assert_eq!(found.1.1, Some(Some("two")));
    assert_eq!(found.2.1, Some(None));
    // Still ours: nothing was moved or cloned into the tasks.
    assert_eq!(table.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_of_send_tasks_is_a_send_future() {
    let handle = tokio::spawn(async {
        let words = [String::from("alpha"), String::from("beta")];
        let lengths = assert_send(Scope::local(Scope::builder(), |s| {
            Box::pin(async {
                let tasks: Vec<_> = words
                    .iter()
                    .map(|w| {
                        s.spawn(async move {
                            sleep(Duration::from_millis(1)).await;
                            w.len()
                        })
                    })
                    .collect();
                let mut lengths = Vec::new();
                for task in tasks {
                    lengths.push(task.result().await.unwrap());
                }
                lengths
            })
        }))
        .await;
        lengths.unwrap()
    });
    assert_eq!(handle.await.unwrap(), [5, 4]);
}

#[tokio::test]
async fn tasks_that_are_not_send_run_in_an_unsend_scope() {
    let log = RefCell::new(Vec::new());
    let counter = Rc::new(RefCell::new(0));
    Scope::local_unsend(Scope::builder(), |s| {
        Box::pin(async {
            let tasks: Vec<_> = (0..3)
                .map(|i| {
                    let counter = Rc::clone(&counter);
                    let log = &log;
                    s.spawn(async move {
                        let held = counter.borrow_mut();
                        drop(held);
                        tokio::task::yield_now().await;
                        *counter.borrow_mut() += 1;
                        log.borrow_mut().push(i);
                    })
                })
                .collect();
            for task in tasks {
                assert!(task.await.0.is_none());
            }
        })
    })
    .await
    .unwrap();
    assert_eq!(*counter.borrow(), 3);
    let mut log = log.into_inner();
    log.sort_unstable();
    assert_eq!(log, [0, 1, 2]);
}

#[tokio::test]
async fn with_wait_the_tasks_finish_after_the_body() {
    let cache = Mutex::new(Vec::new());
    let input = [3, 1, 2];
    Scope::local(Scope::builder().wait(true), |s| {
        Box::pin(async {
            for n in input {
                let cache = &cache;
                s.spawn(async move {
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                    cache.lock().unwrap().push(n * 10);
                });
            }
        })
    })
    .await
    .unwrap();
    let mut seen = cache.into_inner().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, [10, 20, 30]);
}

#[tokio::test]
async fn a_panic_is_that_task_s_error() {
    let (err, value) = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let bad = s.spawn(async {
                tokio::task::yield_now().await;
                panic!("boom")
            });
            let good = s.spawn(async { 7 });
            let (bad, good) = (bad.await, good.await);
            assert_eq!(good.1, Some(7));
            bad
        })
    })
    .await
    .unwrap();
    assert!(value.is_none());
    let err = err.unwrap();
    assert!(err.is_panic(), "{err}");
    assert!(err.to_string().contains("boom"));
}

#[tokio::test]
async fn try_spawn_flattens_the_error() {
    let text = String::from("12x");
    let (ok, bad) = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let ok = s.try_spawn(async { text[..2].parse::<u32>() });
            let bad = s.try_spawn(async { text.parse::<u32>() });
            (ok.result().await, bad.await)
        })
    })
    .await
    .unwrap();
    assert_eq!(ok.unwrap(), 12);
    let err = bad.0.unwrap();
    assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
}

#[tokio::test(start_paused = true)]
async fn the_deadline_drops_the_body_and_the_tasks() {
    let (flag, dropped) = DropFlag::new();
    let result = Scope::local(
        Scope::builder()
            .name("handler")
            .timeout(Duration::from_millis(50)),
        |s| {
            Box::pin(async {
                let slow = s.spawn(async move {
                    let _flag = flag;
                    sleep(Duration::from_secs(3600)).await;
                });
                slow.await
            })
        },
    )
    .await;
    match result {
        Err(Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Scope(name),
        }) => {
            assert_eq!(after, Duration::from_millis(50));
            assert_eq!(name, "handler");
        }
        other => panic!("expected the scope's timeout, got {other:?}"),
    }
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn cancelling_the_scope_ends_it_with_the_reason() {
    let (flag, dropped) = DropFlag::new();
    let result = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let stuck = s.spawn(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
            s.cancel("client went away");
            stuck.await
        })
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.to_string(), "cancelled: client went away");
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn leftover_tasks_are_cancelled_and_dropped_before_the_scope_returns() {
    let (flag, dropped) = DropFlag::new();
    let ended = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ended);
    let hooks = Hooks::new().after_task(move |name, _, err| {
        seen.lock()
            .unwrap()
            .push((name.to_string(), err.map(ToString::to_string)));
    });
    let value = Scope::local(Scope::builder().hooks(hooks), |s| {
        Box::pin(async {
            s.spawn(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
            "done"
        })
    })
    .await
    .unwrap();
    assert_eq!(value, "done");
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(
        *ended.lock().unwrap(),
        [(
            "task-1".to_string(),
            Some("cancelled: scope closed".to_string())
        )]
    );
}

#[tokio::test]
async fn one_task_can_be_cancelled() {
    let outcome = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let stuck = s.spawn(std::future::pending::<()>());
            let fine = s.spawn(async { "ok" });
            tokio::task::yield_now().await;
            stuck.cancel();
            (stuck.await, fine.await)
        })
    })
    .await
    .unwrap();
    assert!(outcome.0.0.unwrap().is_cancelled());
    assert_eq!(outcome.1.1, Some("ok"));
}

#[tokio::test]
async fn the_concurrency_limit_applies() {
    let gauge = Gauge::default();
    let done = AtomicUsize::new(0);
    Scope::local(Scope::builder().concurrency(3), |s| {
        Box::pin(async {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    s.spawn(async {
                        let _running = gauge.enter();
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for task in tasks {
                assert!(task.await.0.is_none());
            }
        })
    })
    .await
    .unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 20);
    assert_eq!(gauge.max(), 3);
}

#[tokio::test]
async fn a_task_waiting_for_a_permit_can_be_cancelled() {
    let outcome = Scope::local(Scope::builder().concurrency(1), |s| {
        Box::pin(async {
            let holder = s.spawn(std::future::pending::<()>());
            let waiting = s.spawn(async { "never runs" });
            let after = s.spawn(async { "runs once the holder is gone" });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished());
            waiting.cancel();
            let waited = waiting.await;
            holder.cancel();
            (waited, holder.await, after.await)
        })
    })
    .await
    .unwrap();
    assert!(outcome.0.0.unwrap().is_cancelled());
    assert!(outcome.1.0.unwrap().is_cancelled());
    assert_eq!(outcome.2.1, Some("runs once the holder is gone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_woken_from_other_threads_run_in_any_order() {
    let senders = Mutex::new(Vec::new());
    let total = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let tasks: Vec<_> = (0..50_u64)
                .map(|i| {
                    let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
                    senders.lock().unwrap().push(tx);
                    s.spawn(async move { rx.await.unwrap() + i })
                })
                .collect();
            tokio::task::yield_now().await;
            // Woken in reverse order, from a thread of the runtime's pool, while the places of
            // the first tasks to end are reused by new ones.
            let senders: Vec<_> = senders.lock().unwrap().drain(..).collect();
            let waker = tokio::spawn(async move {
                for (i, tx) in senders.into_iter().enumerate().rev() {
                    tx.send(i as u64).unwrap();
                    tokio::task::yield_now().await;
                }
            });
            let mut total = 0;
            for task in tasks {
                total += task.await.1.unwrap();
                total += s.spawn(async { 1 }).await.1.unwrap();
            }
            waker.await.unwrap();
            total
        })
    })
    .await
    .unwrap();
    assert_eq!(total, 2 * (0..50).sum::<u64>() + 50);
}

#[tokio::test]
async fn tasks_under_a_limit_run_in_spawn_order() {
    let order = Mutex::new(Vec::new());
    Scope::local(Scope::builder().concurrency(2), |s| {
        Box::pin(async {
            let tasks: Vec<_> = (0..10)
                .map(|i| {
                    let order = &order;
                    s.spawn(async move {
                        order.lock().unwrap().push(i);
                        sleep(Duration::from_millis(1)).await;
                    })
                })
                .collect();
            for task in tasks {
                assert!(task.await.0.is_none());
            }
        })
    })
    .await
    .unwrap();
    assert_eq!(order.into_inner().unwrap(), (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn hooks_and_metrics_see_local_tasks() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (before, after) = (Arc::clone(&calls), Arc::clone(&calls));
    let hooks = Hooks::new()
        .before_task(move |name, index| before.lock().unwrap().push(format!("+{name}#{index}")))
        .after_task(move |name, _, err| {
            after
                .lock()
                .unwrap()
                .push(format!("-{name}:{}", err.is_none()));
        });
    let metrics = Scope::local(
        Scope::builder().hooks(hooks).metrics(true).profiler(true),
        |s| {
            Box::pin(async {
                let ok = s.spawn(async { 1 });
                let bad = s.try_spawn(async { Err::<(), _>("nope") });
                ok.await;
                bad.await;
                let report = s.profile_report().unwrap();
                assert_eq!(report.statistics.total_tasks, 2);
                s.metrics().unwrap()
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(metrics.tasks_spawned, 2);
    assert_eq!(metrics.tasks_completed, 1);
    assert_eq!(metrics.tasks_failed, 1);
    assert_eq!(
        *calls.lock().unwrap(),
        ["+task-1#1", "+task-2#2", "-task-1:true", "-task-2:false"]
    );
}

#[tokio::test]
async fn race_and_parallel_work_in_the_body() {
    let base = 10;
    let (fastest, all) = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let borrowed = s.spawn(async { base * 2 });
            let fastest = go_go_scope::race(vec![
                Box::pin(async {
                    sleep(Duration::from_secs(5)).await;
                    Ok::<_, Error>(1)
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
                Box::pin(async { Ok(2) }),
            ])
            .await;
            let all = go_go_scope::parallel(
                (1..=3).map(|n| async move { Ok::<_, Error>(n * n) }),
                ParallelOpts::default(),
            )
            .await;
            assert_eq!(borrowed.await.1, Some(20));
            (fastest, all)
        })
    })
    .await
    .unwrap();
    assert_eq!(fastest.1, Some(2));
    let squares: Vec<_> = all.into_iter().map(|o| o.1.unwrap()).collect();
    assert_eq!(squares, [1, 4, 9]);
}

#[tokio::test]
async fn disposers_run_when_the_scope_closes() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let first = Arc::clone(&order);
    let second = Arc::clone(&order);
    Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            s.defer(move || async move { first.lock().unwrap().push("first") });
            s.defer(move || async move { second.lock().unwrap().push("second") });
            s.spawn(async {}).await;
        })
    })
    .await
    .unwrap();
    assert_eq!(*order.lock().unwrap(), ["second", "first"]);
}

#[tokio::test]
async fn a_parent_s_cancellation_reaches_local_tasks() {
    let outcome = Scope::run(Scope::builder(), |parent| async move {
        let data = [1, 2, 3];
        Scope::local(Scope::builder(), |s| {
            Box::pin(async {
                let stuck = s.spawn(async {
                    std::future::pending::<()>().await;
                    data.len()
                });
                tokio::task::yield_now().await;
                parent.cancel("shutting down");
                stuck.await
            })
        })
        .await
    })
    .await;
    // The local scope ends with its parent's reason (and so may the outer body).
    let inner = outcome.unwrap_or_else(Err);
    assert_eq!(inner.unwrap_err().to_string(), "cancelled: shutting down");
}

#[tokio::test]
async fn a_closed_parent_refuses_the_local_scope() {
    let parent = Scope::new().unwrap();
    parent.close().await.unwrap();
    let result = Scope::local(Scope::builder().parent(&parent), |_| Box::pin(async {})).await;
    assert!(matches!(result, Err(Error::Closed)));
}

#[tokio::test]
async fn a_local_scope_inside_a_local_task() {
    let rows = [vec![1, 2], vec![3, 4, 5]];
    let sums = Scope::local(Scope::builder().name("outer"), |s| {
        Box::pin(async {
            let tasks: Vec<_> = rows
                .iter()
                .map(|row| {
                    s.spawn(async move {
                        Scope::local(Scope::builder(), |inner| {
                            Box::pin(async {
                                let parts: Vec<_> =
                                    row.iter().map(|n| inner.spawn(async move { *n })).collect();
                                let mut sum = 0;
                                for part in parts {
                                    sum += part.result().await.unwrap();
                                }
                                sum
                            })
                        })
                        .await
                        .unwrap()
                    })
                })
                .collect();
            let mut sums = Vec::new();
            for task in tasks {
                sums.push(task.result().await.unwrap());
            }
            sums
        })
    })
    .await
    .unwrap();
    assert_eq!(sums, [3, 12]);
}

#[tokio::test]
async fn the_ambient_scope_in_a_local_task_is_the_local_scope() {
    let names = Scope::local(Scope::builder().name("local-one"), |s| {
        Box::pin(async {
            let in_task = s.spawn(async { Scope::current().name().to_string() });
            (
                Scope::current().name().to_string(),
                in_task.result().await.unwrap(),
            )
        })
    })
    .await
    .unwrap();
    assert_eq!(names, ("local-one".to_string(), "local-one".to_string()));
}

#[tokio::test]
async fn the_scope_s_circuit_breaker_counts_and_refuses_local_tasks() {
    let breaker = go_go_scope::CircuitBreaker::builder()
        .failure_threshold(2)
        .reset_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let backend = String::from("down");
    let outcomes = Scope::local(Scope::builder().circuit_breaker(breaker.clone()), |s| {
        Box::pin(async {
            let mut outcomes = Vec::new();
            for _ in 0..3 {
                let task = s.try_spawn(async { Err::<(), _>(format!("backend {backend}")) });
                outcomes.push(task.await.0.unwrap());
            }
            outcomes
        })
    })
    .await
    .unwrap();
    assert!(outcomes[0].to_string().contains("backend down"));
    assert!(outcomes[1].to_string().contains("backend down"));
    assert!(matches!(outcomes[2], Error::CircuitOpen), "{}", outcomes[2]);
    assert_eq!(breaker.state(), go_go_scope::CircuitState::Open);
}

#[tokio::test]
async fn spawned_tasks_and_child_scopes_of_a_local_scope_end_with_it() {
    let (flag, dropped) = DropFlag::new();
    let (child_flag, child_dropped) = DropFlag::new();
    let value = Scope::local(Scope::builder(), |s| {
        Box::pin(async move {
            s.provide(41_u32);
            // An ordinary task of the same scope, found through the ambient scope.
            Scope::current().spawn(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            });
            let child = s.child().name("child").build().unwrap();
            child.spawn(async move {
                let _flag = child_flag;
                std::future::pending::<()>().await;
            });
            let answer = s.spawn(async { *Scope::current().use_::<u32>().unwrap() + 1 });
            (answer.result().await.unwrap(), child)
        })
    })
    .await
    .unwrap();
    let (value, child) = value;
    assert_eq!(value, 42);
    // Closed by its parent's close, not by a dropped handle.
    assert!(child.is_closed());
    assert!(dropped.load(Ordering::SeqCst));
    assert!(child_dropped.load(Ordering::SeqCst));
}

/// A seeded random mix of tasks that end at once, yield, sleep or wait for another thread, with
/// some cancelled and some awaited early, under a limit or not: every task ends with its value
/// or as cancelled, the limit holds, and the places and wakers the scope reuses never mix two
/// tasks up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_mix_of_tasks_wakes_and_cancels_ends_cleanly() {
    for seed in 0..40_u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let limit = [None, Some(1), Some(4)][rng.usize(..3)];
        let builder = match limit {
            Some(limit) => Scope::builder().concurrency(limit),
            None => Scope::builder(),
        };
        let gauge = Gauge::default();
        let ended = Scope::local(builder, |s| {
            let gauge = &gauge;
            Box::pin(async move {
                let mut open = Vec::new();
                let mut cancelled = Vec::new();
                let mut ended = 0;
                for i in 0..150_u64 {
                    let kind = rng.u8(..4);
                    let pause = rng.u64(1..200);
                    let task = s.spawn(async move {
                        let _running = gauge.enter();
                        match kind {
                            0 => {}
                            1 => {
                                for _ in 0..pause % 5 {
                                    tokio::task::yield_now().await;
                                }
                            }
                            2 => sleep(Duration::from_micros(pause)).await,
                            _ => {
                                let (tx, rx) = tokio::sync::oneshot::channel();
                                tokio::spawn(async move {
                                    tokio::task::yield_now().await;
                                    let _ = tx.send(());
                                });
                                rx.await.unwrap();
                            }
                        }
                        i
                    });
                    open.push((i, task));
                    match rng.u8(..6) {
                        0 if !open.is_empty() => {
                            let (i, task) = open.swap_remove(rng.usize(..open.len()));
                            task.cancel();
                            cancelled.push((i, task));
                        }
                        1 if !open.is_empty() => {
                            let (i, task) = open.swap_remove(rng.usize(..open.len()));
                            assert_eq!(task.await.1, Some(i));
                            ended += 1;
                        }
                        2 => tokio::task::yield_now().await,
                        _ => {}
                    }
                }
                for (i, task) in open {
                    assert_eq!(task.await.1, Some(i), "seed {seed}");
                    ended += 1;
                }
                for (i, task) in cancelled {
                    match task.await {
                        (None, Some(value)) => assert_eq!(value, i),
                        (Some(error), None) => assert!(error.is_cancelled(), "seed {seed}"),
                        other => panic!("seed {seed}: {other:?}"),
                    }
                    ended += 1;
                }
                ended
            })
        })
        .await
        .unwrap();
        assert_eq!(ended, 150);
        if let Some(limit) = limit {
            assert!(
                gauge.max() <= limit,
                "seed {seed}: {} > {limit}",
                gauge.max()
            );
        }
    }
}

#[tokio::test]
async fn awaiting_a_task_polls_every_task_spawned_so_far_first() {
    let started = Mutex::new(Vec::new());
    let order = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let note = |n: u32| {
                let started = &started;
                async move {
                    started.lock().unwrap().push(n);
                    n
                }
            };
            let a = s.spawn(note(1));
            let b = s.spawn(note(2));
            // Nothing has run yet: a task starts when the body waits, not inside `spawn`.
            assert!(started.lock().unwrap().is_empty());
            let (_, b) = b.await;
            // Awaiting `b` polled `a` too, in spawn order, before `b`'s outcome was read.
            let seen = started.lock().unwrap().clone();
            let (_, a) = a.await;
            (seen, a, b)
        })
    })
    .await
    .unwrap();
    assert_eq!(order, (vec![1, 2], Some(1), Some(2)));
}

#[tokio::test]
async fn handles_polled_through_other_wakers_still_get_their_permits() {
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    // The body polls the handles through a `FuturesUnordered`, whose wakers are not the
    // scope's: the tasks beyond the limit must still get their permits and end.
    let table = ["a", "b", "c", "d", "e"];
    let mut found = Scope::local(Scope::builder().concurrency(2), |s| {
        Box::pin(async {
            let handles: FuturesUnordered<_> = (0..table.len())
                .map(|id| s.spawn(lookup(&table, id)))
                .collect();
            handles.map(|(_, v)| v.flatten()).collect::<Vec<_>>().await
        })
    })
    .await
    .unwrap();
    found.sort();
    assert_eq!(
        found,
        [Some("a"), Some("b"), Some("c"), Some("d"), Some("e")]
    );
}

/// A future that hands its waker to `keep` and waits for ever.
struct KeepsWaker<'a>(&'a Mutex<Option<std::task::Waker>>);

impl std::future::Future for KeepsWaker<'_> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        *self.0.lock().unwrap() = Some(cx.waker().clone());
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn a_waker_kept_past_its_scope_does_not_reach_the_next_scope() {
    // Each thread keeps the last local scope's queue for the next one, but only when nothing
    // else holds a waker of it. Here a task's waker outlives its scope; waking it afterwards
    // must neither disturb a later scope on the same thread nor fail.
    let kept = Mutex::new(None);
    let (err, _) = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let task = s.spawn(KeepsWaker(&kept));
            tokio::task::yield_now().await;
            task.cancel();
            task.await
        })
    })
    .await
    .unwrap();
    assert_eq!(err.unwrap().to_string(), "cancelled: task cancelled");
    let stale = kept
        .lock()
        .unwrap()
        .take()
        .expect("the task kept its waker");
    for round in 0..3_usize {
        let table = ["x", "y"];
        let got = Scope::local(Scope::builder(), |s| {
            Box::pin(async {
                let a = s.spawn(lookup(&table, round % 2));
                stale.wake_by_ref();
                let b = s.spawn(lookup(&table, (round + 1) % 2));
                (a.await.1.flatten(), b.await.1.flatten())
            })
        })
        .await
        .unwrap();
        assert_eq!(
            got,
            (
                table.get(round % 2).copied(),
                table.get((round + 1) % 2).copied()
            )
        );
    }
    stale.wake();
}

#[tokio::test]
async fn scopes_built_one_after_another_on_a_thread_each_start_clean() {
    // Sequential scopes on one thread reuse the queue and the spare waker; tasks that are
    // suspended and woken (so they keep wakers of their own) must not leak state into the
    // next scope.
    let table = ["p", "q", "r"];
    for round in 0..200_usize {
        let limit = 1 + round % 3;
        let got = Scope::local(Scope::builder().concurrency(limit), |s| {
            Box::pin(async {
                let tasks: Vec<_> = (0..4).map(|id| s.spawn(lookup(&table, id))).collect();
                let mut got = Vec::new();
                for task in tasks {
                    got.push(task.await.1.flatten());
                }
                got
            })
        })
        .await
        .unwrap();
        assert_eq!(
            got,
            [Some("p"), Some("q"), Some("r"), None],
            "round {round}"
        );
    }
}
