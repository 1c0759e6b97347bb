//! The fault suite: user code that panics, fails or never ends, injected into every callback the
//! crate calls, and the regressions found by adversarial testing. Each test is bounded: a hang
//! becomes a failure that says what was being waited for.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use go_go_scope::metrics::{MetricsReporter, ReporterOptions};
use go_go_scope::testing::{advance, flush_tasks};
use go_go_scope::{
    Broadcast, CircuitBreaker, CircuitState, Error, Pool, PoolOptions, Scope, Select,
};

/// How long any one wait in this suite may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it has not finished within [`HANG`].
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(HANG, future).await {
        Ok(output) => output,
        Err(_) => panic!("hang: still waiting for {what} after {HANG:?}"),
    }
}

/// Runs `body` on a current-thread runtime of its own thread and fails with `what` if it has
/// not finished within [`HANG`] of wall-clock time. Unlike [`within`], this also catches code
/// that never yields, which would starve an in-runtime timeout.
fn on_one_thread<F, Fut>(what: &str, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    on_own_runtime(what, tokio::runtime::Builder::new_current_thread(), body);
}

/// Runs `body` on a runtime of its own, built by `builder` on a thread of its own, failing with
/// `what` if it has not finished within [`HANG`] of wall-clock time. A runtime whose worker is
/// stuck is left behind (it cannot shut down) instead of hanging the test.
fn on_own_runtime<F, Fut>(what: &str, mut builder: tokio::runtime::Builder, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let runtime = builder.enable_all().build().expect("a runtime");
        runtime.block_on(body());
        let _ = done.send(());
    });
    match finished.recv_timeout(HANG) {
        Ok(()) => worker.join().expect("the runtime thread"),
        // The body panicked: report its own panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(payload) = worker.join() {
                std::panic::resume_unwind(payload);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("hang: still waiting for {what} after {HANG:?} (the runtime thread is stuck)")
        }
    }
}

fn counter() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

// ---------------------------------------------------------------------------------------------
// Regressions
// ---------------------------------------------------------------------------------------------

/// A task that retries for ever with no delay must still meet the scope's deadline.
#[test]
fn retry_forever_without_delay_meets_the_scope_deadline() {
    on_one_thread(
        "a task retrying for ever to hit its scope's deadline",
        || async {
            let s = Scope::builder()
                .timeout(Duration::from_millis(20))
                .build()
                .unwrap();
            let task = s
                .task(|_| async { Err::<(), _>("always fails") })
                .retry(u32::MAX)
                .spawn();
            let (err, _) = task.await;
            assert!(matches!(err, Some(Error::Timeout { .. })), "{err:?}");
            let _ = s.close().await;
            assert_eq!(s.active_tasks(), 0);
        },
    );
}

/// The same task lets other tasks run, and `cancel` and `close` end it.
#[test]
fn retry_forever_without_delay_yields_and_can_be_closed() {
    on_one_thread(
        "close() of a scope with a task retrying for ever",
        || async {
            let s = Scope::new().unwrap();
            let attempts = counter();
            let a = attempts.clone();
            let _task = s
                .task(move |_| {
                    a.fetch_add(1, Ordering::Relaxed);
                    async { Err::<(), _>("always fails") }
                })
                .retry(u32::MAX)
                .spawn();
            let ticks = counter();
            let t = ticks.clone();
            let _ticker = s.spawn(async move {
                loop {
                    t.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            });
            // Both tasks get turns while this one waits for the retrying task to make progress.
            while attempts.load(Ordering::Relaxed) < 1000 || ticks.load(Ordering::Relaxed) < 3 {
                tokio::task::yield_now().await;
            }
            s.cancel("enough");
            s.close().await.unwrap();
            assert_eq!(s.active_tasks(), 0);
            let after_close = attempts.load(Ordering::Relaxed);
            tokio::task::yield_now().await;
            assert_eq!(attempts.load(Ordering::Relaxed), after_close);
        },
    );
}

/// On a multi-thread runtime the deadline fires on another worker; the retrying task must see
/// it before its next attempt.
#[test]
fn retry_forever_without_delay_sees_a_deadline_fired_elsewhere() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2);
    on_own_runtime(
        "a task retrying for ever to hit its scope's deadline",
        builder,
        || async {
            let s = Scope::builder()
                .timeout(Duration::from_millis(20))
                .build()
                .unwrap();
            let task = s
                .task(|_| async { Err::<(), _>("always fails") })
                .retry(u32::MAX)
                .spawn();
            let err = task.result().await.unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
            let _ = s.close().await;
            assert_eq!(s.active_tasks(), 0);
        },
    );
}

/// A factory that panics before its future exists is a failed attempt: retried per policy.
#[tokio::test]
async fn a_panicking_retry_factory_is_a_retried_attempt() {
    let s = Scope::new().unwrap();
    let calls = counter();
    let c = calls.clone();
    let task = s
        .task(move |attempt| {
            c.fetch_add(1, Ordering::SeqCst);
            assert!(attempt > 2, "factory panics on attempt {attempt}");
            async { Ok::<_, Error>("made it") }
        })
        .retry(3)
        .spawn();
    assert_eq!(
        within("the retried task", task.result()).await.unwrap(),
        "made it"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    within("close", s.close()).await.unwrap();
}

/// ... and counted by the breaker.
#[tokio::test]
async fn a_panicking_retry_factory_counts_as_a_breaker_failure() {
    let breaker = CircuitBreaker::new(2, Duration::from_secs(60)).unwrap();
    let s = Scope::builder()
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    let task = s
        .task(|_| -> std::future::Ready<Result<(), Error>> { panic!("no connection") })
        .retry(1)
        .spawn();
    let err = within("the failing task", task.result()).await.unwrap_err();
    assert!(matches!(err, Error::Panicked { .. }), "{err:?}");
    assert_eq!(breaker.failure_count(), 2);
    assert_eq!(breaker.state(), CircuitState::Open);
    within("close", s.close()).await.unwrap();
}

/// Options that the runtime underneath cannot honour are refused with the accepted range,
/// not a panic or an abort.
#[tokio::test]
async fn out_of_range_options_are_invalid_not_panics() {
    for limit in [usize::MAX, tokio::sync::Semaphore::MAX_PERMITS + 1] {
        match Scope::builder().concurrency(limit).build() {
            Err(Error::InvalidOption { option, message }) => {
                assert_eq!(option, "concurrency");
                assert!(
                    message.contains(&tokio::sync::Semaphore::MAX_PERMITS.to_string()),
                    "{message}"
                );
            }
            other => panic!("concurrency({limit}) gave {other:?}"),
        }
    }
    assert!(
        Scope::builder()
            .concurrency(tokio::sync::Semaphore::MAX_PERMITS)
            .build()
            .is_ok()
    );
    let s = Scope::new().unwrap();
    for capacity in [usize::MAX / 2, 1 << 40, Broadcast::<u8>::MAX_CAPACITY + 1] {
        match s.broadcast_with_capacity::<u8>(capacity) {
            Err(Error::InvalidOption { option, message }) => {
                assert_eq!(option, "capacity");
                assert!(
                    message.contains(&Broadcast::<u8>::MAX_CAPACITY.to_string()),
                    "{message}"
                );
            }
            Err(other) => panic!("broadcast_with_capacity({capacity}) gave {other:?}"),
            Ok(_) => panic!("broadcast_with_capacity({capacity}) was accepted"),
        }
    }
    assert!(
        s.broadcast_with_capacity::<u8>(Broadcast::<u8>::MAX_CAPACITY)
            .is_ok()
    );
    within("close", s.close()).await.unwrap();
}

/// A pool whose numbered resources log their destruction; `destroy` panics for the ids in
/// `panics_for` (once while making its future, once inside it).
fn numbered_pool(
    panics_for: &'static [u32],
    create_panics_at: Option<u32>,
) -> (PoolOptions<u32>, Arc<Mutex<Vec<u32>>>) {
    let destroyed = Arc::new(Mutex::new(Vec::new()));
    let log = destroyed.clone();
    let next = counter();
    let options = PoolOptions::new(move || {
        let id = next.fetch_add(1, Ordering::SeqCst);
        assert_ne!(
            Some(id),
            create_panics_at,
            "create panics for resource {id}"
        );
        async move { Ok::<_, Error>(id) }
    })
    .destroy(move |id: u32| {
        log.lock().unwrap().push(id);
        assert!(
            !panics_for.contains(&id) || id % 2 == 1,
            "destroy panics for {id}"
        );
        async move {
            assert!(
                !panics_for.contains(&id),
                "destroy's future panics for {id}"
            );
        }
    });
    (options, destroyed)
}

fn sorted(ids: &Mutex<Vec<u32>>) -> Vec<u32> {
    let mut ids = ids.lock().unwrap().clone();
    ids.sort_unstable();
    ids
}

/// A `destroy` that panics while the pool closes does not skip the idle resources after it.
#[tokio::test]
async fn a_panicking_destroy_skips_no_other_resource() {
    let (options, destroyed) = numbered_pool(&[0, 1], None);
    let s = Scope::new().unwrap();
    let pool = within("the pool's min resources", s.pool(options.min(4).max(4)))
        .await
        .unwrap();
    within("close", s.close()).await.unwrap();
    assert!(pool.is_closed());
    assert_eq!(
        sorted(&destroyed),
        [0, 1, 2, 3],
        "each destroyed exactly once"
    );
}

/// `Pool::new` whose `create` panics part-way through `min` destroys what it made.
#[tokio::test]
async fn a_panicking_create_in_pool_new_destroys_the_resources_made() {
    let (options, destroyed) = numbered_pool(&[], Some(2));
    let err = within("Pool::new", Pool::new(options.min(4).max(4)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Panicked { .. }), "{err:?}");
    assert_eq!(sorted(&destroyed), [0, 1]);
}

/// A reporter whose first export never ends, once that export has started, and a receiver that
/// resolves once that export's future has been dropped.
async fn stuck_reporter(scope: &Scope) -> (MetricsReporter, tokio::sync::oneshot::Receiver<()>) {
    let (dropped, when_dropped) = tokio::sync::oneshot::channel::<()>();
    let (started, when_started) = tokio::sync::oneshot::channel::<()>();
    let signals = Arc::new(Mutex::new(Some((dropped, started))));
    let reporter = MetricsReporter::new(
        scope,
        ReporterOptions::new(move |_text: String| {
            let signals = signals.lock().unwrap().take();
            async move {
                if let Some((_held_until_dropped, started)) = signals {
                    let _ = started.send(());
                    std::future::pending::<()>().await;
                }
            }
        }),
    );
    within("the first export to start", when_started)
        .await
        .unwrap();
    (reporter, when_dropped)
}

/// A stuck export is dropped when the reporter stops.
#[tokio::test]
async fn a_stuck_export_ends_when_the_reporter_stops() {
    let s = Scope::builder().metrics(true).build().unwrap();
    let (reporter, dropped) = stuck_reporter(&s).await;
    reporter.stop();
    within("the stuck export to be dropped after stop()", dropped)
        .await
        .unwrap_err();
    within("close", s.close()).await.unwrap();
}

/// ... and when its scope closes, even while the reporter handle lives on.
#[tokio::test]
async fn a_stuck_export_ends_when_the_scope_closes() {
    let s = Scope::builder().metrics(true).build().unwrap();
    let (_reporter, dropped) = stuck_reporter(&s).await;
    within("close", s.close()).await.unwrap();
    within("the stuck export to be dropped after close()", dropped)
        .await
        .unwrap_err();
}

/// `flush_tasks` lets every ready task run, however many there are, on the current-thread
/// runtime: here 1 000 spawned tasks and a chain of 300 tasks each waking the next.
#[tokio::test(start_paused = true)]
async fn flush_tasks_runs_every_ready_task() {
    let s = Scope::new().unwrap();
    let ran = counter();
    for _ in 0..1000 {
        let ran = ran.clone();
        s.spawn(async move {
            ran.fetch_add(1, Ordering::Relaxed);
        });
    }
    let start = tokio::time::Instant::now();
    within("flush_tasks", flush_tasks()).await;
    assert_eq!(ran.load(Ordering::Relaxed), 1000);

    let (first, mut next) = tokio::sync::oneshot::channel::<()>();
    let reached = counter();
    for _ in 0..300 {
        let (wake, woken) = tokio::sync::oneshot::channel::<()>();
        let reached = reached.clone();
        s.spawn(async move {
            if next.await.is_ok() {
                reached.fetch_add(1, Ordering::Relaxed);
                let _ = wake.send(());
            }
        });
        next = woken;
    }
    first.send(()).unwrap();
    within("flush_tasks", flush_tasks()).await;
    assert_eq!(reached.load(Ordering::Relaxed), 300);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "flushing does not move the clock"
    );

    // Waiting for a timer is not progress: the sleeper stays asleep until the clock moves.
    let woke = counter();
    let w = woke.clone();
    s.spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        w.fetch_add(1, Ordering::Relaxed);
    });
    within("flush_tasks", flush_tasks()).await;
    assert_eq!(woke.load(Ordering::Relaxed), 0);
    advance(Duration::from_secs(60)).await; // not under `within`: its own timer would fire first
    assert_eq!(woke.load(Ordering::Relaxed), 1);
    within("close", s.close()).await.unwrap();
    drop(next);
}

// ---------------------------------------------------------------------------------------------
// Fault injection: every user callback the crate calls, made to panic, fail or never end.
// Each test checks the structured-concurrency promise afterwards: the scope closes, every
// other disposer ran exactly once, no task is left, and the fault was reported.
// ---------------------------------------------------------------------------------------------

/// What a callback does instead of its job.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Panic,
    Fail,
    Hang,
}

impl Fault {
    /// The callback's body: panics, returns an error, or never ends.
    async fn strike(self, what: &'static str) -> Result<(), Error> {
        match self {
            Fault::Panic => panic!("injected panic in {what}"),
            Fault::Fail => Err(Error::Failed(format!("injected error in {what}").into())),
            Fault::Hang => std::future::pending().await,
        }
    }
}

/// A scope under test, with witness disposers registered around the faulty code.
struct UnderTest {
    scope: Scope,
    witnesses: Vec<Arc<AtomicU32>>,
}

impl UnderTest {
    fn new(builder: go_go_scope::ScopeBuilder) -> UnderTest {
        let mut under = UnderTest {
            scope: builder.build().expect("a valid scope"),
            witnesses: Vec::new(),
        };
        under.witness();
        under
    }

    fn plain() -> UnderTest {
        UnderTest::new(Scope::builder())
    }

    /// Registers one more disposer that only counts its runs.
    fn witness(&mut self) {
        let runs = counter();
        let r = runs.clone();
        self.scope.defer(move || async move {
            r.fetch_add(1, Ordering::SeqCst);
        });
        self.witnesses.push(runs);
    }

    /// Closes the scope and checks the promises; returns what `close` returned.
    async fn close(mut self, fault: &str) -> Result<(), Error> {
        self.witness();
        let closed = within(&format!("close() after {fault}"), self.scope.close()).await;
        assert!(self.scope.is_closed(), "{fault}: the scope is closed");
        assert_eq!(self.scope.active_tasks(), 0, "{fault}: no task is left");
        for (i, runs) in self.witnesses.iter().enumerate() {
            assert_eq!(
                runs.load(Ordering::SeqCst),
                1,
                "{fault}: witness disposer {i} ran once"
            );
        }
        // Closing again changes nothing.
        within(
            &format!("a second close() after {fault}"),
            self.scope.close(),
        )
        .await
        .ok();
        for runs in &self.witnesses {
            assert_eq!(
                runs.load(Ordering::SeqCst),
                1,
                "{fault}: no disposer ran twice"
            );
        }
        closed
    }
}

fn is_panic(error: &Error, what: &str) -> bool {
    matches!(error, Error::Panicked { message } if message.contains(what))
}

fn is_injected_failure(error: &Error) -> bool {
    matches!(error, Error::Failed(_)) && error.to_string().contains("injected error")
}

#[tokio::test(start_paused = true)]
async fn faults_in_task_bodies() {
    for fault in [Fault::Panic, Fault::Fail, Fault::Hang] {
        let under = UnderTest::plain();
        let task = under.scope.try_spawn(fault.strike("a task body"));
        match fault {
            Fault::Hang => {
                under.scope.cancel("giving up on the hanging task");
                let err = within("the hanging task", task.result()).await.unwrap_err();
                assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
            }
            Fault::Panic => {
                let err = within("the task", task.result()).await.unwrap_err();
                assert!(is_panic(&err, "a task body"), "{err:?}");
            }
            Fault::Fail => {
                let err = within("the task", task.result()).await.unwrap_err();
                assert!(is_injected_failure(&err), "{err:?}");
            }
        }
        under
            .close(&format!("{fault:?} in a task body"))
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_task_is_ended_by_close_and_by_the_scope_deadline() {
    let under = UnderTest::plain();
    let task = under.scope.try_spawn(Fault::Hang.strike("a task body"));
    under.close("a hanging task").await.unwrap();
    let err = within("the closed task", task.result()).await.unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");

    let under = UnderTest::new(Scope::builder().timeout(Duration::from_secs(5)));
    let task = under.scope.try_spawn(Fault::Hang.strike("a task body"));
    let err = within("the task past its deadline", task.result())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    under.close("a task past its deadline").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn faults_in_retry_factories_and_attempts() {
    for fault in [Fault::Panic, Fault::Fail] {
        let under = UnderTest::plain();
        let calls = counter();
        let c = calls.clone();
        let task = under
            .scope
            .task(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
                fault.strike("a retried attempt")
            })
            .retry(2)
            .spawn();
        let err = within("the retried task", task.result()).await.unwrap_err();
        assert!(
            is_panic(&err, "a retried attempt") || is_injected_failure(&err),
            "{err:?}"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "{fault:?}: every attempt was made"
        );
        under
            .close(&format!("{fault:?} in an attempt"))
            .await
            .unwrap();
    }
    // An attempt that never ends: bounded by the task's timeout, then retried.
    let under = UnderTest::plain();
    let task = under
        .scope
        .task(|_| Fault::Hang.strike("a retried attempt"))
        .timeout(Duration::from_secs(1))
        .retry(2)
        .spawn();
    let err = within("the timed-out task", task.result())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    under.close("a hanging attempt").await.unwrap();
    // The factory itself panicking, on every attempt.
    let under = UnderTest::plain();
    let task = under
        .scope
        .task(|_| -> std::future::Ready<Result<(), Error>> {
            panic!("injected panic in a factory")
        })
        .retry(2)
        .spawn();
    let err = within("the task", task.result()).await.unwrap_err();
    assert!(is_panic(&err, "a factory"), "{err:?}");
    under.close("a panicking factory").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn faults_in_retry_callbacks() {
    // A retry_if predicate that panics: the error is not retried, and is reported as it was.
    let under = UnderTest::plain();
    let calls = counter();
    let c = calls.clone();
    let task = under
        .scope
        .task(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Fault::Fail.strike("an attempt")
        })
        .retry(3)
        .retry_if(|_| panic!("injected panic in retry_if"))
        .spawn();
    let err = within("the task", task.result()).await.unwrap_err();
    assert!(is_injected_failure(&err), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    under.close("a panicking retry_if").await.unwrap();

    // A custom delay function that panics fails the task with the panic.
    let under = UnderTest::plain();
    let task = under
        .scope
        .task(|_| Fault::Fail.strike("an attempt"))
        .retry(go_go_scope::Retry::with_delay(3, |_, _| {
            panic!("injected panic in a delay function")
        }))
        .spawn();
    let err = within("the task", task.result()).await.unwrap_err();
    assert!(is_panic(&err, "a delay function"), "{err:?}");
    under.close("a panicking delay function").await.unwrap();

    // An on_retry callback that panics is contained; retrying goes on.
    let under = UnderTest::plain();
    let task = under
        .scope
        .task(|attempt| async move {
            if attempt < 3 {
                Err(Error::Failed("not yet".into()))
            } else {
                Ok(attempt)
            }
        })
        .retry(3)
        .on_retry(|_, _| panic!("injected panic in on_retry"))
        .spawn();
    assert_eq!(within("the task", task.result()).await.unwrap(), 3);
    under.close("a panicking on_retry").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn faults_in_hooks() {
    let reported = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = reported.clone();
    let hooks = go_go_scope::Hooks::new()
        .after_task(|_, _, _| panic!("injected panic in after_task"))
        .on_cancel(|_| panic!("injected panic in on_cancel"))
        .on_dispose(move |index, error| {
            log.lock().unwrap().push(format!("{index}: {error:?}"));
            panic!("injected panic in on_dispose")
        });
    let under = UnderTest::new(Scope::builder().hooks(hooks));
    let done = under.scope.spawn(async { 7 });
    assert_eq!(
        within("a task with a panicking after_task", done).await.1,
        Some(7)
    );
    let _hanging = under.scope.try_spawn(Fault::Hang.strike("a task body"));
    // close() cancels the hanging task (on_cancel panics) and runs the disposers (on_dispose
    // panics after each).
    under.close("panicking hooks").await.unwrap();
    assert_eq!(
        reported.lock().unwrap().len(),
        2,
        "on_dispose saw every disposer"
    );

    // before_task panicking: the task fails with the panic and its body never runs.
    let under = UnderTest::new(Scope::builder().hooks(
        go_go_scope::Hooks::new().before_task(|_, _| panic!("injected panic in before_task")),
    ));
    let ran = counter();
    let r = ran.clone();
    let task = under.scope.spawn(async move {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let (err, _) = within("a task refused by before_task", task).await;
    assert!(is_panic(&err.unwrap(), "before_task"));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    under.close("a panicking before_task").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn faults_in_disposers() {
    for fault in [Fault::Panic, Fault::Fail] {
        let mut under = UnderTest::plain();
        under.scope.defer(move || fault.strike("a disposer"));
        under.witness();
        let err = under
            .close(&format!("{fault:?} in a disposer"))
            .await
            .unwrap_err();
        let Error::Disposal { errors } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(errors.len(), 1);
        assert!(
            is_panic(&errors[0], "a disposer") || is_injected_failure(&errors[0]),
            "{errors:?}"
        );
    }
}

/// A pool whose `create` (on the `bad`-th call) or `destroy` (for resource `bad`) strikes.
fn faulty_pool(
    fault: Fault,
    in_create: bool,
    bad: u32,
) -> (PoolOptions<u32>, Arc<Mutex<Vec<u32>>>) {
    let destroyed = Arc::new(Mutex::new(Vec::new()));
    let log = destroyed.clone();
    let next = counter();
    let options = PoolOptions::new(move || {
        let id = next.fetch_add(1, Ordering::SeqCst);
        async move {
            if in_create && id == bad {
                fault.strike("a pool's create").await?;
            }
            Ok::<_, Error>(id)
        }
    })
    .destroy(move |id: u32| {
        log.lock().unwrap().push(id);
        async move {
            if !in_create && id == bad {
                fault.strike("a pool's destroy").await?;
            }
            Ok::<_, Error>(())
        }
    })
    .max(3)
    .acquire_timeout(Duration::from_secs(1));
    (options, destroyed)
}

#[tokio::test(start_paused = true)]
async fn faults_in_pool_create() {
    for fault in [Fault::Panic, Fault::Fail, Fault::Hang] {
        let under = UnderTest::plain();
        let (options, destroyed) = faulty_pool(fault, true, 1);
        let pool = within("a pool", under.scope.pool(options)).await.unwrap();
        let first = within("the first resource", pool.acquire()).await.unwrap();
        let err = within("the faulty create", pool.acquire())
            .await
            .unwrap_err();
        match fault {
            Fault::Panic => assert!(is_panic(&err, "a pool's create"), "{err:?}"),
            Fault::Fail => assert!(is_injected_failure(&err), "{err:?}"),
            Fault::Hang => assert!(matches!(err, Error::Timeout { .. }), "{err:?}"),
        }
        assert_eq!(
            pool.stats().total,
            1,
            "{fault:?}: a failed create holds no room"
        );
        drop(first);
        under
            .close(&format!("{fault:?} in a pool's create"))
            .await
            .unwrap();
        assert_eq!(sorted(&destroyed), [0]);
    }
}

#[tokio::test(start_paused = true)]
async fn faults_in_pool_destroy() {
    for fault in [Fault::Panic, Fault::Fail] {
        let under = UnderTest::plain();
        let (options, destroyed) = faulty_pool(fault, false, 0);
        let pool = within("a pool", under.scope.pool(options.min(3)))
            .await
            .unwrap();
        // One comes back after use, one is discarded (destroyed at once), one stays idle.
        drop(within("a resource", pool.acquire()).await.unwrap());
        within("a resource", pool.acquire())
            .await
            .unwrap()
            .discard();
        under
            .close(&format!("{fault:?} in a pool's destroy"))
            .await
            .unwrap();
        assert_eq!(
            sorted(&destroyed),
            [0, 1, 2],
            "{fault:?}: each destroyed once"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn faults_in_debounced_and_throttled_functions() {
    for fault in [Fault::Panic, Fault::Fail, Fault::Hang] {
        let under = UnderTest::plain();
        let debounced = under
            .scope
            .debounce(
                move |()| async move {
                    fault
                        .strike("a debounced function")
                        .await
                        .map_err(|e| e.to_string())
                },
                Duration::from_millis(100),
            )
            .unwrap();
        let throttled = under
            .scope
            .throttle(
                move |()| async move {
                    fault
                        .strike("a throttled function")
                        .await
                        .map_err(|e| e.to_string())
                },
                Duration::from_millis(100),
            )
            .unwrap();
        let debounced_call = debounced.call(());
        let throttled_call = throttled.call(());
        match fault {
            Fault::Panic => {
                let err = within("the debounced call", debounced_call)
                    .await
                    .unwrap_err();
                assert!(is_panic(&err, "a debounced function"), "{err:?}");
                let err = within("the throttled call", throttled_call)
                    .await
                    .unwrap_err();
                assert!(is_panic(&err, "a throttled function"), "{err:?}");
            }
            Fault::Fail => {
                let answer = within("the debounced call", debounced_call).await.unwrap();
                assert!(answer.unwrap_err().contains("injected error"));
                let answer = within("the throttled call", throttled_call).await.unwrap();
                assert!(answer.unwrap_err().contains("injected error"));
            }
            Fault::Hang => {
                // Let both runs start, then close: the calls end with the scope.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let debounced_call = tokio::spawn(debounced_call);
                let throttled_call = tokio::spawn(throttled_call);
                under
                    .close("hanging debounced and throttled functions")
                    .await
                    .unwrap();
                let err = within("the debounced call", debounced_call)
                    .await
                    .unwrap()
                    .unwrap_err();
                assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
                let err = within("the throttled call", throttled_call)
                    .await
                    .unwrap()
                    .unwrap_err();
                assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
                continue;
            }
        }
        under
            .close(&format!("{fault:?} in debounced and throttled functions"))
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn faults_in_poll_callbacks() {
    for fault in [Fault::Panic, Fault::Fail, Fault::Hang] {
        for in_on_value in [false, true] {
            let under = UnderTest::plain();
            let poller = under
                .scope
                .poll(
                    move || async move {
                        if !in_on_value {
                            fault.strike("a poll function").await?;
                        }
                        Ok::<_, Error>(1)
                    },
                    move |_value: u32| async move {
                        if in_on_value {
                            let _ = fault.strike("an on_value callback").await;
                        }
                    },
                    Duration::from_secs(1),
                )
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let status = poller.status();
            match (fault, in_on_value) {
                (Fault::Hang, _) => assert!(status.last_error.is_none()),
                // An error from on_value has nowhere to go: on_value returns nothing.
                (Fault::Fail, true) => assert!(status.last_error.is_none()),
                _ => {
                    let error = status.last_error.expect("the fault is reported");
                    assert!(
                        is_panic(&error, "") || is_injected_failure(&error),
                        "{error:?}"
                    );
                    assert!(status.poll_count >= 3, "polling goes on after a fault");
                }
            }
            under
                .close(&format!("{fault:?} in a poller (on_value: {in_on_value})"))
                .await
                .unwrap();
            assert!(!poller.status().running);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn faults_in_metrics_exports() {
    for fault in [Fault::Panic, Fault::Fail] {
        let under = UnderTest::new(Scope::builder().metrics(true));
        let exports = counter();
        let e = exports.clone();
        let reporter = MetricsReporter::new(
            &under.scope,
            ReporterOptions::new(move |_text: String| {
                e.fetch_add(1, Ordering::SeqCst);
                fault.strike("an export")
            })
            .interval(Duration::from_secs(1)),
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            exports.load(Ordering::SeqCst),
            3,
            "{fault:?}: reporting goes on"
        );
        let err = within("a direct report", reporter.report())
            .await
            .unwrap_err();
        assert!(
            is_panic(&err, "an export") || is_injected_failure(&err),
            "{err:?}"
        );
        under
            .close(&format!("{fault:?} in on_export"))
            .await
            .unwrap();
        assert!(!reporter.is_running());
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_select_handler_fails_only_its_task() {
    let under = UnderTest::plain();
    let numbers = under.scope.channel::<u32>(1);
    numbers.send(1).await.unwrap();
    let selecting = numbers.clone();
    let task = under.scope.spawn(async move {
        Select::new()
            .recv(&selecting, |_: u32| -> u32 {
                panic!("injected panic in a select handler")
            })
            .await
    });
    let (err, _) = within("the selecting task", task).await;
    assert!(is_panic(&err.unwrap(), "a select handler"));
    under.close("a panicking select handler").await.unwrap();
}

/// A runtime built without a time driver cannot keep a deadline: the scope says so when it is
/// built, instead of a timer that never fires.
#[test]
fn a_deadline_on_a_runtime_without_timers_is_an_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let error = go_go_scope::Scope::builder()
            .timeout(std::time::Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, go_go_scope::Error::InvalidOption { option, .. } if *option == "timeout"),
            "{error:?}"
        );
        assert!(error.to_string().contains("enable_time()"), "{error}");
        // Without a deadline the same runtime is fine...
        let scope = go_go_scope::Scope::new().unwrap();
        assert_eq!(scope.spawn(async { 3 }).await.1, Some(3));
        // ...and whatever needs a timer says so to its caller.
        let no_timer = |error: &Error| error.to_string().contains("enable_time()");
        let pool = Pool::new(
            PoolOptions::new(|| async { Ok::<_, Error>(1_u32) })
                .max(1)
                .acquire_timeout(Duration::from_millis(10)),
        )
        .await
        .unwrap();
        let error = pool.acquire().await.map(drop).unwrap_err();
        assert!(no_timer(&error), "{error}");
        let channel = scope.channel::<u32>(1);
        let error = Select::new()
            .recv(&channel, |value: u32| value)
            .timeout(Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(no_timer(&error), "{error}");
        let error = scope
            .debounce(|()| async { Ok::<_, String>(()) }, Duration::from_millis(10))
            .map(drop)
            .unwrap_err();
        assert!(no_timer(&error), "{error}");
        // A task's own timeout is a Tokio timer made inside the task: the task ends as a panic
        // whose message (Tokio's) names the fix.
        let (error, _) = scope
            .task(|_| async { Ok::<_, Error>(1) })
            .timeout(Duration::from_millis(10))
            .spawn()
            .await;
        let error = error.expect("no timer");
        assert!(matches!(&error, Error::Panicked { .. }), "{error:?}");
        assert!(error.to_string().contains("enable_time"), "{error}");
        // A retry delay ends its task with the same error rather than as a panic.
        let (error, _) = scope
            .task(|_| async { Err::<u32, _>(Error::cancelled("once")) })
            .retry(go_go_scope::Retry::fixed(1, Duration::from_millis(10)))
            .spawn()
            .await;
        let error = error.expect("refused");
        assert!(
            matches!(&error, Error::InvalidOption { option, .. } if *option == "retry"),
            "{error:?}"
        );
        assert!(no_timer(&error), "{error}");
        scope.close().await.unwrap();
    });
}
