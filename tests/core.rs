//! The core runtime: scope lifecycle, cancellation tree, tasks, services, hooks, metrics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use go_go_scope::{Error, Hooks, Scope, TimeoutOrigin};
use go_go_scope_tests::{DropFlag, Gauge};
use tokio::time::sleep;

type Log = Arc<Mutex<Vec<String>>>;

/// Tests that read the process-wide unclosed-drop counter run one at a time.
static UNCLOSED_COUNTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

// SCOPE-01
#[tokio::test]
async fn two_tasks_awaited_together() {
    let s = Scope::new().unwrap();
    let a = s.spawn(async { "a" });
    let b = s.spawn(async { "b" });
    let (ra, rb) = tokio::join!(a, b);
    assert_eq!(ra.1, Some("a"));
    assert_eq!(rb.1, Some("b"));
    assert!(ra.0.is_none() && rb.0.is_none());
    s.close().await.unwrap();
}

// SCOPE-02, CANCEL-01: close cancels running tasks and returns only after their bodies are gone.
#[tokio::test(start_paused = true)]
async fn close_drops_an_hour_long_task_before_returning() {
    let s = Scope::new().unwrap();
    let (guard, dropped) = DropFlag::new();
    let task = s.spawn(async move {
        let _guard = guard;
        sleep(Duration::from_secs(3600)).await;
    });
    sleep(Duration::from_millis(10)).await;
    assert!(!dropped.load(Ordering::SeqCst));
    s.close().await.unwrap();
    assert!(
        dropped.load(Ordering::SeqCst),
        "the body must be dropped before close returns"
    );
    assert!(s.is_closed());
    let (err, value) = task.await;
    assert!(value.is_none());
    assert!(matches!(err, Some(Error::Cancelled { ref reason }) if reason == "scope closed"));
}

// SCOPE-03, SCOPE-04
#[tokio::test(start_paused = true)]
async fn scope_timeout_cancels_tasks_with_a_timeout_error() {
    let s = Scope::builder()
        .name("api")
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let task = s.spawn(sleep(Duration::from_secs(10)));
    let (err, _) = task.await;
    match err {
        Some(Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Scope(name),
        }) => {
            assert_eq!(after, Duration::from_millis(50));
            assert_eq!(name, "api");
        }
        other => panic!("expected a scope timeout, got {other:?}"),
    }
    assert!(s.is_cancelled());
    assert!(s.cancellation_error().unwrap().is_timeout());
    s.close().await.unwrap();
}

// SCOPE-05, SCOPE-06
#[tokio::test]
async fn spawn_on_closed_or_cancelled_scope_never_runs_the_body() {
    let s = Scope::new().unwrap();
    s.close().await.unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let (err, v) = s
        .spawn(async move {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .await;
    assert!(matches!(err, Some(Error::Closed)));
    assert!(v.is_none());

    let s = Scope::new().unwrap();
    s.cancel("pre");
    let r = ran.clone();
    let (err, _) = s
        .spawn(async move {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .await;
    assert!(matches!(err, Some(Error::Cancelled { ref reason }) if reason == "pre"));
    s.close().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

// SCOPE-07
#[tokio::test]
async fn close_is_idempotent_and_concurrent_closes_wait_for_the_first() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let s = Scope::builder()
        .hooks(Hooks::new().on_dispose(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
        }))
        .build()
        .unwrap();
    s.defer(|| async { sleep(Duration::from_millis(20)).await });
    let (a, b) = tokio::join!(s.close(), s.close());
    assert!(a.is_ok() && b.is_ok());
    s.close().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// SCOPE-08: a later close keeps the first reason.
#[tokio::test(start_paused = true)]
async fn close_after_timeout_keeps_the_timeout_reason() {
    let s = Scope::builder()
        .timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    sleep(Duration::from_millis(40)).await;
    s.close().await.unwrap();
    assert!(s.cancellation_error().unwrap().is_timeout());
}

// CANCEL-02, CANCEL-04: cancellation reaches a grandchild task with the real reason.
#[tokio::test]
async fn parent_cancel_reaches_a_grandchild_task() {
    let root = Scope::builder().name("root").build().unwrap();
    let child = root.child().name("child").build().unwrap();
    let grandchild = child.child().name("grandchild").build().unwrap();
    let (guard, dropped) = DropFlag::new();
    let task = grandchild.spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
    tokio::task::yield_now().await;
    root.cancel("parent said stop");
    let (err, _) = task.await;
    assert!(matches!(err, Some(Error::Cancelled { ref reason }) if reason == "parent said stop"));
    assert!(dropped.load(Ordering::SeqCst));
    assert!(child.is_cancelled() && grandchild.is_cancelled());
    root.close().await.unwrap();
    assert!(child.is_closed() && grandchild.is_closed());
}

// closing the parent closes (cancels, awaits, disposes) the child first.
#[tokio::test]
async fn parent_close_awaits_and_disposes_children_first() {
    let order = log();
    let parent = Scope::new().unwrap();
    let child = parent.child().build().unwrap();
    let o = order.clone();
    parent.defer(move || async move { o.lock().unwrap().push("parent disposer".into()) });
    let o = order.clone();
    child.defer(move || async move { o.lock().unwrap().push("child disposer".into()) });
    let o = order.clone();
    let task = child.spawn(async move {
        struct Note(Log);
        impl Drop for Note {
            fn drop(&mut self) {
                self.0.lock().unwrap().push("child task dropped".into());
            }
        }
        let _note = Note(o);
        std::future::pending::<()>().await
    });
    tokio::task::yield_now().await;
    parent.close().await.unwrap();
    assert_eq!(
        entries(&order),
        ["child task dropped", "child disposer", "parent disposer"]
    );
    assert!(task.is_finished());
    // The child cannot take new work any more.
    assert!(matches!(child.spawn(async {}).await.0, Some(Error::Closed)));
}

#[tokio::test]
async fn child_of_closed_parent_is_rejected() {
    let parent = Scope::new().unwrap();
    parent.close().await.unwrap();
    assert!(matches!(parent.child().build(), Err(Error::Closed)));
}

// CANCEL-03
#[tokio::test]
async fn child_of_cancelled_parent_starts_cancelled() {
    let parent = Scope::new().unwrap();
    parent.cancel("pre");
    let child = parent.child().build().unwrap();
    assert!(child.is_cancelled());
    assert_eq!(
        child.cancellation_error().unwrap().to_string(),
        "cancelled: pre"
    );
    parent.close().await.unwrap();
}

// on_cancel fires once with the real reason, and not on a clean close.
#[tokio::test(start_paused = true)]
async fn on_cancel_fires_once_with_the_real_reason() {
    fn recording(log: &Log) -> Hooks {
        let log = log.clone();
        Hooks::new().on_cancel(move |reason| log.lock().unwrap().push(reason.to_string()))
    }
    // Clean close: nothing to cancel, no call.
    let calls = log();
    let s = Scope::builder().hooks(recording(&calls)).build().unwrap();
    s.spawn(async {}).await;
    s.close().await.unwrap();
    assert!(entries(&calls).is_empty());

    // Close with a task still running.
    let calls = log();
    let s = Scope::builder().hooks(recording(&calls)).build().unwrap();
    let _t = s.spawn(std::future::pending::<()>());
    s.close().await.unwrap();
    assert_eq!(entries(&calls), ["cancelled: scope closed"]);

    // Timeout, then close: one call, with the timeout.
    let calls = log();
    let s = Scope::builder()
        .name("t")
        .timeout(Duration::from_millis(20))
        .hooks(recording(&calls))
        .build()
        .unwrap();
    sleep(Duration::from_millis(30)).await;
    s.close().await.unwrap();
    assert_eq!(entries(&calls), ["scope `t` timed out after 20ms"]);

    // Parent cancellation reaches the child's hook with the parent's reason.
    let calls = log();
    let parent = Scope::new().unwrap();
    let child = parent.child().hooks(recording(&calls)).build().unwrap();
    parent.cancel("upstream gone");
    parent.cancel("second reason is ignored");
    child.close().await.unwrap();
    parent.close().await.unwrap();
    assert_eq!(entries(&calls), ["cancelled: upstream gone"]);
}

// SVC-01, SVC-02, SVC-06, HOOK-06: LIFO disposal, a failing middle disposer reported, none skipped.
#[tokio::test]
async fn disposal_is_lifo_and_a_failing_disposer_skips_nothing() {
    let order = log();
    let disposals = log();
    let d = disposals.clone();
    let s = Scope::builder()
        .metrics(true)
        .hooks(Hooks::new().on_dispose(move |index, err| {
            d.lock().unwrap().push(format!(
                "{index}:{}",
                err.map_or("ok".to_string(), |e| e.to_string())
            ))
        }))
        .build()
        .unwrap();
    for name in ["first", "second", "third"] {
        let o = order.clone();
        s.defer(move || async move {
            o.lock().unwrap().push(name.to_string());
            if name == "second" {
                Err(format!("bad {name}"))
            } else {
                Ok(())
            }
        });
    }
    let err = s.close().await.unwrap_err();
    assert_eq!(entries(&order), ["third", "second", "first"]);
    assert_eq!(entries(&disposals), ["1:ok", "2:bad second", "3:ok"]);
    match err {
        Error::Disposal { errors } => {
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].to_string(), "bad second");
        }
        other => panic!("expected Disposal, got {other:?}"),
    }
    let m = s.metrics().unwrap();
    assert_eq!(
        (
            m.resources_registered,
            m.resources_disposed,
            m.disposal_errors
        ),
        (3, 3, 1)
    );
}

#[tokio::test]
async fn a_panicking_disposer_is_reported_and_the_rest_run() {
    let ran = Arc::new(AtomicUsize::new(0));
    let s = Scope::new().unwrap();
    let r = ran.clone();
    s.defer(move || async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    s.defer(|| async {
        panic!("disposer exploded");
        #[allow(unreachable_code)]
        ()
    });
    let err = s.close().await.unwrap_err();
    assert!(err.to_string().contains("disposer exploded"));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

// tasks have ended before any disposer runs, so no task sees a disposed service.
#[tokio::test]
async fn tasks_end_before_services_are_disposed() {
    let order = log();
    let s = Scope::new().unwrap();
    let o = order.clone();
    s.provide_with(
        || async { Ok::<_, std::io::Error>(String::from("db")) },
        move |_db| async move { o.lock().unwrap().push("db disposed".into()) },
    )
    .await
    .unwrap();
    let o = order.clone();
    let _t = s.spawn(async move {
        struct Note(Log);
        impl Drop for Note {
            fn drop(&mut self) {
                self.0.lock().unwrap().push("task ended".into());
            }
        }
        let _note = Note(o);
        std::future::pending::<()>().await
    });
    tokio::task::yield_now().await;
    s.close().await.unwrap();
    assert_eq!(entries(&order), ["task ended", "db disposed"]);
}

// SVC-03, A-23: services resolve through the parent chain at lookup time.
#[tokio::test]
async fn services_resolve_through_parents_at_lookup_time() {
    struct Db(&'static str);
    struct Cache(&'static str);
    struct Late(u8);
    let parent = Scope::new().unwrap();
    parent.provide(Db("postgres"));
    let child = parent.child().build().unwrap();
    child.provide(Cache("cached"));
    assert_eq!(child.use_::<Db>().unwrap().0, "postgres");
    assert_eq!(child.use_::<Cache>().unwrap().0, "cached");
    assert!(parent.service::<Cache>().is_none());
    // Provided to the parent after the child was created: still visible.
    parent.provide(Late(7));
    assert_eq!(child.service::<Late>().unwrap().0, 7);
    // From inside a task, through the ambient scope.
    let t = child.spawn(async { Scope::current().service::<Db>().map(|d| d.0) });
    assert_eq!(t.await.1.unwrap(), Some("postgres"));
    assert!(matches!(
        child.use_::<u64>(),
        Err(Error::ServiceNotFound { type_name: "u64" })
    ));
    parent.close().await.unwrap();
    assert!(matches!(child.use_::<Db>(), Err(Error::Closed)));
}

#[tokio::test]
async fn provide_with_reports_factory_errors_and_closed_scopes() {
    let s = Scope::new().unwrap();
    let err = s
        .provide_with(
            || async { Err::<u8, _>(std::io::Error::other("cannot connect")) },
            |_| async {},
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().to_string(),
        "cannot connect"
    );
    s.close().await.unwrap();
    let err = s
        .provide_with(|| async { Ok::<u8, std::io::Error>(1) }, |_| async {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed));
}

// TASK-02, TASK-03, TASK-06
#[tokio::test]
async fn task_errors_keep_their_type() {
    #[derive(Debug)]
    struct ValidationError {
        field: &'static str,
    }
    impl std::fmt::Display for ValidationError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Invalid email")
        }
    }
    impl std::error::Error for ValidationError {}

    let s = Scope::new().unwrap();
    let (err, v) = s
        .try_spawn(async { Err::<(), _>(ValidationError { field: "email" }) })
        .await;
    assert!(v.is_none());
    let err = err.unwrap();
    assert_eq!(err.to_string(), "Invalid email");
    assert_eq!(
        err.downcast_ref::<ValidationError>().unwrap().field,
        "email"
    );
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "Invalid email"
    );
    // A task returning our own Error is not wrapped twice.
    let (err, _) = s
        .try_spawn(async { Err::<(), _>(Error::CircuitOpen) })
        .await;
    assert!(matches!(err, Some(Error::CircuitOpen)));
    s.close().await.unwrap();
}

// TASK-04, TASK-08: tasks start when spawned, even if never awaited.
#[tokio::test(start_paused = true)]
async fn tasks_start_eagerly_and_report_finished() {
    let s = Scope::new().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    let task = s.spawn(async move {
        st.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_millis(10)).await;
        "done"
    });
    assert!(!task.is_finished());
    sleep(Duration::from_millis(1)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the task runs without being awaited"
    );
    sleep(Duration::from_millis(20)).await;
    assert!(task.is_finished());
    assert_eq!(task.await.1, Some("done"));
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_panic_fails_only_its_task() {
    let s = Scope::new().unwrap();
    let bad = s.spawn(async { panic!("kaboom") });
    let good = s.spawn(async { 5 });
    let (err, _) = bad.await;
    assert!(matches!(err, Some(Error::Panicked { ref message }) if message == "kaboom"));
    assert_eq!(good.await.1, Some(5));
    assert!(!s.is_cancelled());
    assert_eq!(s.spawn(async { 6 }).await.1, Some(6));
    s.close().await.unwrap();
}

#[tokio::test]
async fn cancelling_one_task_leaves_the_others() {
    let s = Scope::builder().metrics(true).build().unwrap();
    let (guard, dropped) = DropFlag::new();
    let stuck = s.spawn(async move {
        let _g = guard;
        std::future::pending::<()>().await
    });
    let fine = s.spawn(async { 1 });
    stuck.cancel();
    let (err, _) = stuck.await;
    assert!(matches!(err, Some(Error::Cancelled { ref reason }) if reason == "task cancelled"));
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(fine.await.1, Some(1));
    s.close().await.unwrap();
    let m = s.metrics().unwrap();
    // A cancelled task is counted as cancelled, not as failed.
    assert_eq!(
        (
            m.tasks_spawned,
            m.tasks_completed,
            m.tasks_failed,
            m.tasks_cancelled
        ),
        (2, 1, 0, 1)
    );
}

// TASK-10, HOOK-01, HOOK-04, MET-10: hook order; counters settled before the awaiter resumes.
#[tokio::test]
async fn hooks_see_tasks_in_order_before_awaiters_resume() {
    let calls = log();
    let (b, a) = (calls.clone(), calls.clone());
    let s = Scope::builder()
        .metrics(true)
        .hooks(
            Hooks::new()
                .before_task(move |name, index| {
                    b.lock().unwrap().push(format!("before {name} {index}"))
                })
                .after_task(move |name, _d, err| {
                    a.lock()
                        .unwrap()
                        .push(format!("after {name} {}", err.is_some()))
                }),
        )
        .build()
        .unwrap();
    s.spawn(async {}).await;
    assert_eq!(s.metrics().unwrap().tasks_completed, 1);
    s.try_spawn(async { Err::<(), _>("x") }).await;
    assert_eq!(s.metrics().unwrap().tasks_failed, 1);
    s.close().await.unwrap();
    assert_eq!(
        entries(&calls),
        [
            "before task-1 1",
            "after task-1 false",
            "before task-2 2",
            "after task-2 true"
        ]
    );
}

// HOOK-08: a panicking before_task fails the spawn, not the scope.
#[tokio::test]
async fn a_panicking_before_task_hook_fails_that_task() {
    let s = Scope::builder()
        .hooks(Hooks::new().before_task(|_, index| {
            if index == 1 {
                panic!("hook bug")
            }
        }))
        .build()
        .unwrap();
    let (err, _) = s.spawn(async { 1 }).await;
    assert!(
        err.unwrap()
            .to_string()
            .contains("before_task hook panicked: hook bug")
    );
    assert_eq!(s.spawn(async { 2 }).await.1, Some(2));
    s.close().await.unwrap();
}

#[tokio::test]
async fn panicking_after_task_and_on_cancel_hooks_are_contained() {
    let s = Scope::builder()
        .hooks(
            Hooks::new()
                .after_task(|_, _, _| panic!("after hook bug"))
                .on_cancel(|_| panic!("cancel hook bug")),
        )
        .build()
        .unwrap();
    assert_eq!(s.spawn(async { 1 }).await.1, Some(1));
    s.cancel("x");
    s.close().await.unwrap();
}

// MET-01..MET-04, MET-07: durations are measured from each task's own start.
#[tokio::test(start_paused = true)]
async fn metrics_count_tasks_and_time_them_from_their_start() {
    let none = Scope::new().unwrap();
    assert!(none.metrics().is_none());
    none.close().await.unwrap();

    let s = Scope::builder().name("m").metrics(true).build().unwrap();
    sleep(Duration::from_millis(100)).await; // the scope sits idle first
    s.spawn(sleep(Duration::from_millis(10))).await;
    s.try_spawn(async { Err::<(), _>("fail") }).await;
    s.spawn(async {}).await;
    let m = s.metrics().unwrap();
    assert_eq!(m.scope_name, "m");
    assert_eq!(
        (m.tasks_spawned, m.tasks_completed, m.tasks_failed),
        (3, 2, 1)
    );
    assert!(m.avg_task_duration > Duration::ZERO);
    assert!(m.avg_task_duration < Duration::from_millis(50), "{m:?}");
    assert_eq!(m.p95_task_duration, Duration::from_millis(10));
    assert!(m.scope_duration.is_none());
    s.close().await.unwrap();
    assert!(s.metrics().unwrap().scope_duration.unwrap() >= Duration::from_millis(110));
}

// CONC-01, CONC-02: the limit holds, and a waiting task never runs once the scope closes.
#[tokio::test(start_paused = true)]
async fn concurrency_limit_holds_and_waiters_are_cancelled_unrun() {
    let s = Scope::builder().concurrency(2).build().unwrap();
    let gauge = Gauge::default();
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let g = gauge.clone();
            s.spawn(async move {
                let _in = g.enter();
                sleep(Duration::from_millis(20)).await;
                i
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.1, Some(i));
    }
    assert_eq!(gauge.max(), 2);
    s.close().await.unwrap();

    let s = Scope::builder().concurrency(1).build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r1 = ran.clone();
    let first = s.spawn(async move {
        r1.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_millis(50)).await;
    });
    let r2 = ran.clone();
    let second = s.spawn(async move {
        r2.fetch_add(1, Ordering::SeqCst);
    });
    sleep(Duration::from_millis(10)).await;
    s.close().await.unwrap();
    assert!(first.await.0.unwrap().is_cancelled());
    assert!(second.await.0.unwrap().is_cancelled());
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the waiting task never ran");
}

// CANCEL-05, CANCEL-06
#[tokio::test]
async fn children_inherit_the_concurrency_value_unless_they_set_one() {
    let parent = Scope::builder().concurrency(5).build().unwrap();
    let child = parent.child().build().unwrap();
    let own = parent.child().concurrency(10).build().unwrap();
    assert_eq!(child.concurrency(), Some(5));
    assert_eq!(own.concurrency(), Some(10));
    assert_eq!(parent.concurrency(), Some(5));
    parent.close().await.unwrap();
}

#[tokio::test]
async fn invalid_options_are_typed_errors() {
    for (builder, option) in [
        (Scope::builder().concurrency(0), "concurrency"),
        (Scope::builder().timeout(Duration::ZERO), "timeout"),
    ] {
        match builder.build() {
            Err(Error::InvalidOption { option: o, message }) => {
                assert_eq!(o, option);
                assert!(message.contains("leave it unset"), "{message}");
            }
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    assert!(matches!(Scope::new(), Err(Error::NoRuntime)));
}

// Scope::run: always closed, on every exit path.
#[tokio::test]
async fn run_closes_on_early_return_and_on_error() {
    let captured = Arc::new(Mutex::new(None::<Scope>));
    let c = captured.clone();
    let result: Result<Result<u8, Error>, Error> = Scope::run(Scope::builder(), |s| async move {
        *c.lock().unwrap() = Some(s.clone());
        let _pending = s.spawn(std::future::pending::<()>());
        let parsed: u8 = "300".parse().map_err(Error::from_task_error)?; // early return via `?`
        Ok(parsed)
    })
    .await;
    assert!(result.unwrap().is_err());
    let scope = captured.lock().unwrap().take().unwrap();
    assert!(scope.is_closed());
    assert_eq!(scope.active_tasks(), 0);
}

#[tokio::test]
async fn run_sets_the_ambient_scope_and_tasks_can_spawn_siblings() {
    let result = Scope::run(Scope::builder().name("amb"), |s| async move {
        let outer = s.spawn(async {
            // Spawned from inside a task: a sibling in the same scope.
            let sibling = Scope::current().spawn(async { Scope::current().name().to_owned() });
            sibling.await.1.unwrap()
        });
        (outer.await.1.unwrap(), s.active_tasks())
    })
    .await
    .unwrap();
    assert_eq!(result.0, "amb");
}

#[tokio::test]
async fn nested_runs_nest_scopes_through_the_ambient_scope() {
    Scope::run(Scope::builder().name("outer"), |outer| async move {
        Scope::run(Scope::builder().name("inner"), |inner| async move {
            assert_eq!(inner.parent().unwrap().id(), outer.id());
        })
        .await
        .unwrap();
        let detached = Scope::builder().detached().build().unwrap();
        assert!(detached.parent().is_none());
        detached.close().await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn run_with_wait_lets_tasks_finish() {
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    Scope::run(Scope::builder().wait(true), |s| async move {
        for _ in 0..3 {
            let d = d.clone();
            drop(s.spawn(async move {
                tokio::task::yield_now().await;
                d.fetch_add(1, Ordering::SeqCst);
            }));
        }
    })
    .await
    .unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn run_body_is_cut_short_by_the_scope_timeout() {
    let (guard, dropped) = DropFlag::new();
    let result = Scope::run(
        Scope::builder()
            .name("slow")
            .timeout(Duration::from_secs(1)),
        |_| async move {
            let _g = guard;
            sleep(Duration::from_secs(3600)).await;
        },
    )
    .await;
    assert!(matches!(result, Err(Error::Timeout { .. })));
    assert!(dropped.load(Ordering::SeqCst));
}

// Dropping the future of Scope::run mid-flight: the scope is cancelled and its disposers still run.
#[tokio::test]
async fn dropping_a_run_future_cancels_and_closes_in_the_background() {
    let _counter = UNCLOSED_COUNTER.lock().await;
    let unclosed_before = go_go_scope::unclosed_drops();
    let (guard, task_dropped) = DropFlag::new();
    let disposed = Arc::new(tokio::sync::Notify::new());
    let d = disposed.clone();
    let run = Scope::run(Scope::builder(), |s| async move {
        s.defer(move || async move { d.notify_one() });
        drop(s.spawn(async move {
            let _g = guard;
            std::future::pending::<()>().await
        }));
        std::future::pending::<()>().await
    });
    let _ = tokio::time::timeout(Duration::from_millis(20), run).await;
    tokio::time::timeout(Duration::from_secs(5), disposed.notified())
        .await
        .expect("the disposer runs after the run future is dropped");
    assert!(task_dropped.load(Ordering::SeqCst));
    // The user did use Scope::run: this is not a forgotten scope.
    assert_eq!(go_go_scope::unclosed_drops(), unclosed_before);
}

// Dropping an unclosed scope: tasks are cancelled synchronously, disposers run on the runtime.
#[tokio::test]
async fn dropping_an_unclosed_scope_cancels_and_disposes() {
    let _counter = UNCLOSED_COUNTER.lock().await;
    let before = go_go_scope::unclosed_drops();
    let disposed = Arc::new(tokio::sync::Notify::new());
    let s = Scope::new().unwrap();
    let token = s.token();
    let d = disposed.clone();
    s.defer(move || async move { d.notify_one() });
    let task = s.spawn(std::future::pending::<()>());
    drop(s);
    assert!(token.is_cancelled(), "cancelled synchronously on drop");
    assert!(go_go_scope::unclosed_drops() > before);
    tokio::time::timeout(Duration::from_secs(5), disposed.notified())
        .await
        .expect("disposers run in the background");
    assert!(
        matches!(task.await.0, Some(Error::Cancelled { ref reason }) if reason == "scope dropped without close")
    );
}

#[tokio::test]
async fn a_running_task_does_not_keep_a_forgotten_scope_alive() {
    let _counter = UNCLOSED_COUNTER.lock().await;
    let (guard, dropped) = DropFlag::new();
    let s = Scope::new().unwrap();
    let task = s.spawn(async move {
        let _g = guard;
        // The task itself looks up its scope: that must not count as a handle forever.
        let _name = Scope::current().name().to_owned();
        std::future::pending::<()>().await
    });
    tokio::task::yield_now().await;
    drop(s);
    assert!(task.await.0.unwrap().is_cancelled());
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn cancelled_and_token_observe_the_scope_from_outside() {
    let s = Scope::new().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let scope = s.clone();
    // Code that is not a task of the scope (a plain tokio task) watches it.
    let observer = tokio::spawn(async move {
        scope.cancelled().await;
        tx.send(scope.cancellation_error().unwrap().to_string())
            .unwrap();
    });
    let token = s.token();
    tokio::task::yield_now().await;
    s.cancel("go");
    assert_eq!(rx.await.unwrap(), "cancelled: go");
    assert!(token.is_cancelled());
    observer.await.unwrap();
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_task_waiting_on_cancelled_is_dropped_at_that_await() {
    let s = Scope::new().unwrap();
    let (guard, dropped) = DropFlag::new();
    let task = s.spawn(async move {
        let _g = guard;
        go_go_scope::cancelled().await;
        "unreachable: the body is dropped when the scope is cancelled"
    });
    tokio::task::yield_now().await;
    s.cancel("stop");
    assert!(task.await.0.unwrap().is_cancelled());
    assert!(dropped.load(Ordering::SeqCst));
    s.close().await.unwrap();
}

#[test]
#[should_panic(expected = "#[scoped]")]
fn current_outside_a_scope_panics_with_guidance() {
    let _ = Scope::current();
}

// PERF-02 + the no-orphans promise: 10 000 tasks, closed, zero left alive on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_leave_nothing_alive() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let s = Scope::builder().metrics(true).build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..10_000_u32 {
        let r = ran.clone();
        if i % 2 == 0 {
            drop(s.spawn(async move {
                r.fetch_add(1, Ordering::Relaxed);
            }));
        } else {
            drop(s.spawn(async move {
                r.fetch_add(1, Ordering::Relaxed);
                std::future::pending::<()>().await
            }));
        }
    }
    s.close().await.unwrap();
    assert_eq!(s.active_tasks(), 0);
    let m = s.metrics().unwrap();
    assert_eq!(m.tasks_spawned, 10_000);
    assert_eq!(m.tasks_completed + m.tasks_cancelled, 10_000);
    assert_eq!(m.tasks_failed, 0);
    // Our promise (every body dropped before close returns) was checked above by the scope's
    // own count. Tokio releases a task's cell just after its future is dropped, possibly on the
    // other worker, so its count may lag by a moment on a loaded machine: wait for it (bounded).
    for _ in 0..5_000 {
        if metrics.num_alive_tasks() == baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(metrics.num_alive_tasks(), baseline);
}

// DL: waits on a concurrency permit are reported with the task's name and wait time.
#[tokio::test(start_paused = true)]
async fn deadlock_detection_reports_long_permit_waits() {
    type Report = Vec<(String, &'static str, Duration)>;
    let reports: Arc<Mutex<Vec<Report>>> = Arc::default();
    let sink = reports.clone();
    let s = Scope::builder()
        .concurrency(1)
        .deadlock_detection(Duration::from_millis(100), move |waiting| {
            sink.lock().unwrap().push(
                waiting
                    .iter()
                    .map(|w| (w.task.clone(), w.resource, w.waited))
                    .collect(),
            )
        })
        .build()
        .unwrap();
    let holder = s.spawn(sleep(Duration::from_millis(500)));
    let waiter = s.spawn(async {});
    sleep(Duration::from_millis(90)).await;
    assert!(
        reports.lock().unwrap().is_empty(),
        "not reported before the threshold"
    );
    sleep(Duration::from_millis(100)).await;
    {
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 1);
        let (task, resource, waited) = &reports[0][0];
        assert_eq!((task.as_str(), *resource), ("task-2", "concurrency permit"));
        assert!(*waited >= Duration::from_millis(100) && *waited <= Duration::from_millis(150));
    }
    // DL-01: reported at every check (every 50 ms) while the wait lasts, with the growing time.
    sleep(Duration::from_millis(100)).await;
    {
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 3);
        assert!(reports[2][0].2 > reports[1][0].2);
    }
    holder.await;
    waiter.await;
    s.close().await.unwrap();
    assert!(matches!(
        Scope::builder()
            .deadlock_detection(Duration::ZERO, |_| {})
            .build(),
        Err(Error::InvalidOption {
            option: "deadlock_detection",
            ..
        })
    ));
}

// A close whose caller stops waiting (its future dropped mid-disposal) still finishes: the
// parent's close, and any later close, complete.
#[tokio::test(start_paused = true)]
async fn a_close_interrupted_mid_disposal_still_finishes() {
    let parent = Scope::new().unwrap();
    let disposed = Arc::new(AtomicUsize::new(0));
    let d = disposed.clone();
    let inner = Scope::run(parent.child(), move |s| async move {
        s.defer(move || async move {
            sleep(Duration::from_millis(100)).await;
            d.fetch_add(1, Ordering::SeqCst);
        });
    });
    // Dropped while the inner scope's disposer runs.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), inner)
            .await
            .is_err()
    );
    tokio::time::timeout(Duration::from_secs(2), parent.close())
        .await
        .expect("the parent's close does not hang on an interrupted child close")
        .unwrap();
    assert_eq!(
        disposed.load(Ordering::SeqCst),
        1,
        "the disposer ran to its end"
    );

    // The same when the caller of close() itself stops waiting.
    let s = Scope::new().unwrap();
    s.defer(|| async { sleep(Duration::from_millis(100)).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(10), s.close())
            .await
            .is_err()
    );
    tokio::time::timeout(Duration::from_secs(2), s.close())
        .await
        .expect("a later close waits for the first one to finish, which it does")
        .unwrap();
    assert!(s.is_closed());
}

// A task that closes its own scope: the close cancels the task (dropping its close call) and
// still completes on its own.
#[tokio::test]
async fn a_task_closing_its_own_scope_does_not_deadlock() {
    let s = Scope::new().unwrap();
    let closed = Arc::new(tokio::sync::Notify::new());
    let c = closed.clone();
    s.defer(move || async move { c.notify_one() });
    let _task = s.spawn(async {
        let _ = Scope::current().close().await;
    });
    tokio::time::timeout(Duration::from_secs(5), closed.notified())
        .await
        .expect("the scope closed");
    s.close().await.unwrap();
}

/// Bounds a wait that must end: a hang becomes a failure that says what was waited for.
async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), future).await {
        Ok(value) => value,
        Err(_) => panic!("hung: {what} did not finish within 10 s"),
    }
}

// Cancelling, closing and asking for the token of a chain of 10 000 nested scopes walks the
// tree with loops: no depth overflows the stack.
#[tokio::test]
async fn a_chain_of_ten_thousand_nested_scopes_cancels_and_closes() {
    const DEPTH: usize = 10_000;
    let root = Scope::builder().name("root").detached().build().unwrap();
    let mut chain = vec![root.clone()];
    for _ in 1..DEPTH {
        let child = chain.last().unwrap().child().build().unwrap();
        chain.push(child);
    }
    let leaf = chain.last().unwrap().clone();
    let token = leaf.token();
    let task = leaf.spawn(std::future::pending::<()>());
    root.cancel("deep");
    assert!(token.is_cancelled());
    assert!(leaf.is_cancelled());
    let (err, _) = within("the leaf's task", task).await;
    assert_eq!(err.unwrap().to_string(), "cancelled: deep");
    within("closing the root", root.close()).await.unwrap();
    assert!(chain.iter().all(Scope::is_closed));
    assert_eq!(root.child_scopes(), 0);
}

// A disposer that awaits the close of its own scope would wait for itself: it gets an error
// at once, and the close still ends.
#[tokio::test]
async fn a_disposer_awaiting_its_own_scopes_close_gets_an_error_instead_of_a_hang() {
    let scope = Scope::new().unwrap();
    let own = scope.clone();
    scope.defer(move || async move { own.close().await });
    let err = within("the close", scope.close()).await.unwrap_err();
    match err {
        Error::Disposal { errors } => {
            assert!(
                matches!(errors.as_slice(), [Error::WouldDeadlock(_)]),
                "{errors:?}"
            );
        }
        other => panic!("expected a disposal error, got {other:?}"),
    }
    assert!(scope.is_closed());

    // A child's disposer awaiting its parent's close, while the parent closes it.
    let parent = Scope::new().unwrap();
    let child = parent.child().build().unwrap();
    let outer = parent.clone();
    child.defer(move || async move { outer.close().await });
    within("the parent's close", parent.close()).await.unwrap();
    assert!(child.is_closed());
}

// A service whose `Drop` panics is reported like a failed disposer; the scope still reaches
// its closed state, so later closes (its own and its parent's) return at once.
#[tokio::test]
async fn a_service_whose_drop_panics_does_not_wedge_the_scope() {
    struct Exploding;
    impl Drop for Exploding {
        fn drop(&mut self) {
            panic!("service drop failed");
        }
    }
    let parent = Scope::new().unwrap();
    let scope = parent.child().build().unwrap();
    scope.provide(Exploding);
    scope.spawn(async {}).await;
    let err = within("the first close", scope.close()).await.unwrap_err();
    assert!(err.to_string().contains("service drop failed"), "{err}");
    assert!(scope.is_closed());
    within("a second close", scope.close()).await.unwrap();
    within("the parent's close", parent.close()).await.unwrap();
}

/// Runs `depth` nested `Scope::run` bodies and returns the stack each level used while polled
/// (the distance between a local of the outermost and of the innermost body, per level).
fn nested_runs(depth: usize) -> usize {
    fn level(
        remaining: usize,
        addresses: Arc<Mutex<Vec<usize>>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let marker = 0_u8;
            addresses
                .lock()
                .unwrap()
                .push(std::hint::black_box(&marker) as *const u8 as usize);
            if remaining > 0 {
                Scope::run(Scope::builder(), |_| level(remaining - 1, addresses))
                    .await
                    .unwrap();
            }
        })
    }
    let addresses = Arc::new(Mutex::new(Vec::new()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(Scope::run(Scope::builder(), {
            let addresses = Arc::clone(&addresses);
            |_| level(depth - 1, addresses)
        }))
        .unwrap();
    let addresses = addresses.lock().unwrap();
    assert_eq!(addresses.len(), depth);
    addresses[0].abs_diff(addresses[depth - 1]) / (depth - 1)
}

// Nested `Scope::run` recursion: 1 000 levels on a thread with an 8 MiB stack, and the stack
// each level takes (printed; the reliability guide states the measured figure).
#[test]
fn nested_scope_runs_a_thousand_deep_and_report_their_stack_per_level() {
    let per_level = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(|| nested_runs(1_000))
        .unwrap()
        .join()
        .unwrap();
    eprintln!("nested Scope::run: {per_level} bytes of stack per level");
    assert!(per_level > 0);
}

// Blocking code cannot be interrupted: a cancelled scope's task resolves at once, but the
// close waits until the closure has returned, so nothing outlives the scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_is_waited_for_by_close_and_contains_panics() {
    let scope = Scope::new().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let finished = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&finished);
    let task = scope.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        flag.fetch_add(1, Ordering::SeqCst);
        "done"
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    scope.cancel("shutting down");
    let (err, _) = within("the blocking task's outcome", task).await;
    assert!(err.unwrap().is_cancelled());
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the closure is still running"
    );
    let closing = tokio::spawn({
        let scope = scope.clone();
        async move { scope.close().await }
    });
    tokio::task::yield_now().await;
    release_tx.send(()).unwrap();
    within("the close", closing).await.unwrap().unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "close returned before the closure ended"
    );

    let scope = Scope::new().unwrap();
    let (err, _) = within(
        "a panicking closure",
        scope.spawn_blocking(|| panic!("boom")),
    )
    .await;
    assert!(err.unwrap().is_panic());
    let (err, _) = scope.spawn_blocking(|| 1).await;
    assert!(err.is_none());
    scope.close().await.unwrap();
    let (err, _) = scope.spawn_blocking(|| 1).await;
    assert!(matches!(err, Some(Error::Closed)));
}

// Blocking work can be started from a thread outside the runtime: it runs on the scope's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn spawn_blocking_works_from_a_thread_outside_the_runtime() {
    let scope = Scope::new().unwrap();
    let outside = scope.clone();
    let task = std::thread::spawn(move || outside.spawn_blocking(|| 6 * 7))
        .join()
        .expect("spawn_blocking from a plain thread does not panic");
    assert_eq!(task.await.1, Some(42));
    scope.close().await.unwrap();
}

// A scope linked to an outside token is cancelled with it (also when the token was cancelled
// before the scope was built); cancelling the scope leaves the token alone.
#[tokio::test]
async fn a_scope_linked_to_a_token_is_cancelled_with_it() {
    let shutdown = go_go_scope::CancellationToken::new();
    let scope = Scope::builder()
        .cancel_on(shutdown.clone())
        .build()
        .unwrap();
    let child = scope.child().build().unwrap();
    let task = child.spawn(std::future::pending::<()>());
    shutdown.cancel();
    let (err, _) = within("the linked cancellation", task).await;
    assert_eq!(
        err.unwrap().to_string(),
        "cancelled: linked token cancelled"
    );
    scope.close().await.unwrap();

    let late = Scope::builder()
        .cancel_on(shutdown.clone())
        .build()
        .unwrap();
    assert!(late.is_cancelled());
    late.close().await.unwrap();

    let token = go_go_scope::CancellationToken::new();
    let scope = Scope::builder().cancel_on(token.clone()).build().unwrap();
    scope.cancel("done");
    scope.close().await.unwrap();
    assert!(!token.is_cancelled());
}

// A task handle can be polled by reference in a `select!` loop without losing its outcome.
#[tokio::test]
async fn a_task_handle_polled_by_reference_keeps_its_outcome() {
    fn assert_unpin<T: Unpin>() {}
    assert_unpin::<go_go_scope::Task<u32>>();
    let scope = Scope::new().unwrap();
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let mut task = scope.spawn(async move {
        let _ = wait.await;
        7_u32
    });
    tokio::select! {
        biased;
        _ = &mut task => panic!("the task cannot have finished yet"),
        () = tokio::task::yield_now() => {}
    }
    release.send(()).unwrap();
    assert_eq!((&mut task).await.1, Some(7));
    scope.close().await.unwrap();
}
