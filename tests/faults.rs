//! The fault suite: user code that panics, fails or never ends, injected into every callback the
//! crate calls, and the regressions found by adversarial testing. Each test is bounded: a hang
//! becomes a failure that says what was being waited for.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use go_go_scope::metrics::{MetricsReporter, ReporterOptions};
use go_go_scope::testing::{advance, flush_tasks};
use go_go_scope::{Broadcast, CircuitBreaker, CircuitState, Error, Pool, PoolOptions, Scope};

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
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
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
