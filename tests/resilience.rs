//! Resilience and combinators: retry, task timeout, circuit breaker, concurrency limit, race,
//! parallel, aggregate, profiler.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use go_go_scope::{
    CircuitBreaker, CircuitState, Error, Hooks, ParallelOpts, Retry, Scope, TimeoutOrigin,
};
use go_go_scope_tests::{DropFlag, Gauge};
use tokio::time::{Instant, sleep};

fn counter() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

// RETRY-01, RETRY-02
#[tokio::test]
async fn retry_until_success_counts_attempts() {
    let s = Scope::new().unwrap();
    let attempts = counter();
    let a = attempts.clone();
    let task = s
        .task(move |n| {
            a.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err(format!("attempt {n}"))
                } else {
                    Ok("success")
                }
            }
        })
        .retry(3)
        .spawn();
    assert_eq!(task.result().await.unwrap(), "success");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    s.close().await.unwrap();
}

// RETRY-03, RETRY-10: n retries = n + 1 attempts; the last error is returned; 0 = one attempt.
#[tokio::test]
async fn exhausted_retries_return_the_last_error() {
    let s = Scope::new().unwrap();
    for (retries, expected_attempts) in [(2_u32, 3_u32), (0, 1)] {
        let attempts = counter();
        let a = attempts.clone();
        let (err, value) = s
            .task(move |n| {
                a.fetch_add(1, Ordering::SeqCst);
                async move { Err::<(), _>(format!("attempt {n}")) }
            })
            .retry(retries)
            .spawn()
            .await;
        assert!(value.is_none());
        assert_eq!(
            err.unwrap().to_string(),
            format!("attempt {expected_attempts}")
        );
        assert_eq!(attempts.load(Ordering::SeqCst), expected_attempts);
    }
    s.close().await.unwrap();
}

// RETRY-04, RETRY-12: retry_if stops at the first error it rejects, without on_retry.
#[tokio::test]
async fn retry_if_stops_on_fatal_errors() {
    #[derive(Debug)]
    struct Fatal;
    impl std::fmt::Display for Fatal {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fatal")
        }
    }
    impl std::error::Error for Fatal {}

    let s = Scope::new().unwrap();
    let attempts = counter();
    let retried = counter();
    let (a, r) = (attempts.clone(), retried.clone());
    let (err, _) = s
        .task(move |n| {
            a.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 1 {
                    Err::<(), Box<dyn std::error::Error + Send + Sync>>("retry me".into())
                } else {
                    Err(Fatal.into())
                }
            }
        })
        .retry(3)
        .retry_if(|e| e.downcast_ref::<Fatal>().is_none())
        .on_retry(move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .spawn()
        .await;
    assert_eq!(err.unwrap().to_string(), "fatal");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(retried.load(Ordering::SeqCst), 1);
    s.close().await.unwrap();
}

// RETRY-05, RETRY-07: on_retry and the delay function see 1-based retry numbers and the error.
#[tokio::test(start_paused = true)]
async fn on_retry_and_delay_see_one_based_retry_numbers() {
    let s = Scope::new().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (on, delays) = (seen.clone(), seen.clone());
    let task = s
        .task(|n| async move { if n < 4 { Err(format!("e{n}")) } else { Ok(n) } })
        .retry(
            Retry::with_delay(4, move |retry, err| {
                delays
                    .lock()
                    .unwrap()
                    .push(format!("delay {retry} after {err}"));
                Duration::from_millis(10 * u64::from(retry))
            })
            .on_retry(move |err, retry| {
                on.lock()
                    .unwrap()
                    .push(format!("retry {retry} after {err}"))
            }),
        )
        .spawn();
    let started = Instant::now();
    assert_eq!(task.result().await.unwrap(), 4);
    assert_eq!(started.elapsed(), Duration::from_millis(60)); // 10 + 20 + 30
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "retry 1 after e1",
            "delay 1 after e1",
            "retry 2 after e2",
            "delay 2 after e2",
            "retry 3 after e3",
            "delay 3 after e3"
        ]
    );
    s.close().await.unwrap();
}

// RETRY-06: fixed delays between attempts.
#[tokio::test(start_paused = true)]
async fn fixed_delays_add_up() {
    let s = Scope::new().unwrap();
    let started = Instant::now();
    let task = s
        .task(|n| async move { if n < 3 { Err("no") } else { Ok(()) } })
        .retry(Retry::fixed(3, Duration::from_millis(50)))
        .spawn();
    task.result().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    s.close().await.unwrap();
}

// RETRY-08: cancellation cuts a retry delay short and is the task's error.
#[tokio::test(start_paused = true)]
async fn cancellation_cuts_a_retry_delay_short() {
    let s = Scope::new().unwrap();
    let task = s
        .task(|_| async { Err::<(), _>("always") })
        .retry(Retry::fixed(5, Duration::from_secs(1)))
        .spawn();
    sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    s.cancel("cancelled");
    let (err, _) = task.await;
    assert!(matches!(err, Some(Error::Cancelled { ref reason }) if reason == "cancelled"));
    assert_eq!(started.elapsed(), Duration::ZERO);
    s.close().await.unwrap();
}

// RETRY-09: the scope's timeout bounds all attempts together.
#[tokio::test(start_paused = true)]
async fn the_scope_timeout_bounds_every_retry() {
    let s = Scope::builder()
        .name("budget")
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let (err, _) = s
        .task(|_| async { Err::<(), _>("always") })
        .retry(Retry::fixed(10, Duration::from_millis(100)))
        .spawn()
        .await;
    assert_eq!(
        err.unwrap().to_string(),
        "scope `budget` timed out after 200ms"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    s.close().await.unwrap();
}

// RETRY-11: a panicking on_retry does not stop retrying.
#[tokio::test]
async fn a_panicking_on_retry_is_ignored() {
    let s = Scope::new().unwrap();
    let task = s
        .task(|n| async move { if n < 2 { Err("once") } else { Ok(n) } })
        .retry(1)
        .on_retry(|_, _| panic!("callback bug"))
        .spawn();
    assert_eq!(task.result().await.unwrap(), 2);
    s.close().await.unwrap();
}

// A panicking delay function fails the task, it does not crash anything.
#[tokio::test]
async fn a_panicking_delay_function_fails_the_task() {
    let s = Scope::new().unwrap();
    let (err, _) = s
        .task(|_| async { Err::<(), _>("x") })
        .retry(Retry::with_delay(2, |_, _| panic!("delay bug")))
        .spawn()
        .await;
    assert!(err.unwrap().to_string().contains("delay bug"));
    assert_eq!(s.spawn(async { 1 }).await.1, Some(1));
    s.close().await.unwrap();
}

// A panicking attempt is a failed attempt and can be retried.
#[tokio::test]
async fn a_panicking_attempt_is_retried() {
    let s = Scope::new().unwrap();
    let task = s
        .task(|n| async move {
            if n == 1 {
                panic!("first attempt panics")
            }
            Ok::<_, Error>(n)
        })
        .retry(1)
        .spawn();
    assert_eq!(task.result().await.unwrap(), 2);
    s.close().await.unwrap();
}

// RETRY-14: with a concurrency limit each attempt takes its own permit, so others run between.
#[tokio::test(start_paused = true)]
async fn retries_release_the_permit_between_attempts() {
    let s = Scope::builder().concurrency(1).build().unwrap();
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let o = order.clone();
    let a = s
        .task(move |n| {
            let o = o.clone();
            async move {
                o.lock().unwrap().push(format!("A{n}"));
                if n < 3 { Err("again") } else { Ok(()) }
            }
        })
        .retry(Retry::fixed(2, Duration::from_millis(5)))
        .spawn();
    let o = order.clone();
    let b = s.spawn(async move { o.lock().unwrap().push("B".into()) });
    a.result().await.unwrap();
    b.await;
    assert_eq!(*order.lock().unwrap(), ["A1", "B", "A2", "A3"]);
    s.close().await.unwrap();
}

// Scope-level default retry applies to built tasks that set none.
#[tokio::test]
async fn the_scope_default_retry_applies_to_built_tasks() {
    let s = Scope::builder().retry(2).build().unwrap();
    let attempts = counter();
    let a = attempts.clone();
    let (err, _) = s
        .task(move |_| {
            a.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("nope") }
        })
        .spawn()
        .await;
    assert!(err.is_some());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    s.close().await.unwrap();
}

// TTIMEOUT-01: the attempt's future is dropped when its timeout fires.
#[tokio::test(start_paused = true)]
async fn a_task_timeout_drops_the_attempt() {
    let s = Scope::new().unwrap();
    let (guard, dropped) = DropFlag::new();
    let started = Instant::now();
    let (err, _) = s
        .task_once(async move {
            let _g = guard;
            sleep(Duration::from_millis(60)).await;
            Ok::<_, Error>(())
        })
        .name("slow")
        .timeout(Duration::from_millis(20))
        .spawn()
        .await;
    match err {
        Some(Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Task(name),
        }) => {
            assert_eq!(after, Duration::from_millis(20));
            assert_eq!(name, "slow");
        }
        other => panic!("expected a task timeout, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_millis(20));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the body must not keep running"
    );
    s.close().await.unwrap();
}

// TTIMEOUT-02: the timeout bounds each attempt; timeouts are retried.
#[tokio::test(start_paused = true)]
async fn a_task_timeout_bounds_each_attempt() {
    let s = Scope::new().unwrap();
    let attempts = counter();
    let a = attempts.clone();
    let task = s
        .task(move |n| {
            a.fetch_add(1, Ordering::SeqCst);
            async move {
                sleep(Duration::from_millis(if n < 3 { 100 } else { 10 })).await;
                Ok::<_, Error>(n)
            }
        })
        .timeout(Duration::from_millis(50))
        .retry(5)
        .spawn();
    assert_eq!(task.result().await.unwrap(), 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    s.close().await.unwrap();
}

// TTIMEOUT-03: nested deadlines, the stricter wins and the error says which.
#[tokio::test(start_paused = true)]
async fn the_stricter_of_task_and_scope_timeouts_wins() {
    let s = Scope::builder()
        .name("outer")
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (err, _) = s
        .task_once(async {
            sleep(Duration::from_secs(5)).await;
            Ok::<_, Error>(())
        })
        .timeout(Duration::from_millis(30))
        .spawn()
        .await;
    assert!(matches!(
        err,
        Some(Error::Timeout {
            scope_or_task: TimeoutOrigin::Task(_),
            ..
        })
    ));
    assert!(
        !s.is_cancelled(),
        "a task timeout does not cancel the scope"
    );
    let (err, _) = s
        .task_once(async {
            sleep(Duration::from_secs(5)).await;
            Ok::<_, Error>(())
        })
        .timeout(Duration::from_secs(3))
        .spawn()
        .await;
    assert!(matches!(
        err,
        Some(Error::Timeout { scope_or_task: TimeoutOrigin::Scope(ref n), .. }) if n == "outer"
    ));
    s.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_unnamed_task_s_timeout_names_it_by_its_number() {
    let s = Scope::new().unwrap();
    s.spawn(async {}).await;
    let (err, _) = s
        .task_once(async {
            sleep(Duration::from_secs(5)).await;
            Ok::<_, Error>(())
        })
        .timeout(Duration::from_millis(5))
        .spawn()
        .await;
    assert_eq!(
        err.unwrap().to_string(),
        "task `task-2` timed out after 5ms"
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_zero_task_timeout_is_rejected_without_running() {
    let s = Scope::new().unwrap();
    let ran = counter();
    let r = ran.clone();
    let (err, _) = s
        .task(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Error>(()) }
        })
        .timeout(Duration::ZERO)
        .spawn()
        .await;
    assert!(matches!(
        err,
        Some(Error::InvalidOption {
            option: "timeout",
            ..
        })
    ));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    s.close().await.unwrap();
}

// TASK-11: on_cleanup runs at scope close, not at task end.
#[tokio::test]
async fn on_cleanup_runs_when_the_scope_closes() {
    let s = Scope::new().unwrap();
    let cleaned = counter();
    let c = cleaned.clone();
    s.task_once(async { Ok::<_, Error>(()) })
        .on_cleanup(move || async move {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .spawn()
        .await;
    assert_eq!(cleaned.load(Ordering::SeqCst), 0);
    s.close().await.unwrap();
    assert_eq!(cleaned.load(Ordering::SeqCst), 1);
}

// CB-01, CB-02: the breaker opens after the threshold and refuses without running.
#[tokio::test]
async fn a_scope_breaker_opens_after_consecutive_failures() {
    let breaker = CircuitBreaker::new(3, Duration::from_secs(30)).unwrap();
    let s = Scope::builder()
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    assert_eq!(s.spawn(async { "success" }).await.1, Some("success"));
    for _ in 0..3 {
        let (err, _) = s.try_spawn(async { Err::<(), _>("fail") }).await;
        assert_eq!(err.unwrap().to_string(), "fail");
    }
    let ran = counter();
    let r = ran.clone();
    let (err, _) = s
        .spawn(async move {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .await;
    assert!(matches!(err, Some(Error::CircuitOpen)));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.rejections(), 1);
    s.close().await.unwrap();
}

// A call that panics through `CircuitBreaker::call` is a failure, as a scope's task panic is;
// the panic still reaches the caller.
#[tokio::test]
async fn a_panicking_call_counts_as_a_failure_and_still_panics() {
    use futures::FutureExt as _;
    let breaker = CircuitBreaker::builder()
        .failure_threshold(2)
        .build()
        .unwrap();
    for round in 1..=2 {
        let call = breaker.call(async {
            if round > 0 {
                panic!("backend exploded");
            }
            Ok::<(), std::io::Error>(())
        });
        let caught = std::panic::AssertUnwindSafe(call).catch_unwind().await;
        assert!(caught.is_err(), "the panic reaches the caller");
        assert_eq!(breaker.failure_count(), round);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

// CB-03, CB-08: after the reset timeout, half-open; a success closes it.
#[tokio::test(start_paused = true)]
async fn a_breaker_recovers_after_its_reset_timeout() {
    let changes: Arc<Mutex<Vec<(CircuitState, CircuitState)>>> = Arc::default();
    let c = changes.clone();
    let breaker = CircuitBreaker::builder()
        .failure_threshold(2)
        .reset_timeout(Duration::from_millis(50))
        .on_state_change(move |from, to| c.lock().unwrap().push((from, to)))
        .build()
        .unwrap();
    let s = Scope::builder()
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    for _ in 0..2 {
        s.try_spawn(async { Err::<(), _>("fail") }).await;
    }
    assert!(matches!(
        s.spawn(async {}).await.0,
        Some(Error::CircuitOpen)
    ));
    sleep(Duration::from_millis(60)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(s.spawn(async { "success" }).await.1, Some("success"));
    assert_eq!(breaker.state(), CircuitState::Closed);
    use CircuitState::*;
    assert_eq!(
        *changes.lock().unwrap(),
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
    s.close().await.unwrap();
}

// CB-04: a success resets the consecutive-failure count.
#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let breaker = CircuitBreaker::new(5, Duration::from_secs(1)).unwrap();
    for _ in 0..2 {
        let _ = breaker.call(async { Err::<(), _>("f") }).await;
    }
    assert_eq!(breaker.failure_count(), 2);
    breaker.call(async { Ok::<_, Error>(()) }).await.unwrap();
    assert_eq!(breaker.failure_count(), 0);
    assert_eq!(
        breaker
            .call(async { Ok::<_, Error>("still closed") })
            .await
            .unwrap(),
        "still closed"
    );
}

// CB-05: a fallback around the breaker; the wrapped call really ran only twice.
#[tokio::test]
async fn refused_calls_do_not_run_the_wrapped_function() {
    let breaker = CircuitBreaker::new(2, Duration::from_secs(30)).unwrap();
    let calls = counter();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let c = calls.clone();
        let answer = breaker
            .call(async move {
                c.fetch_add(1, Ordering::SeqCst);
                Err::<&str, _>("down")
            })
            .await
            .unwrap_or("fallback");
        answers.push(answer);
    }
    assert_eq!(answers, ["fallback"; 3]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        breaker.failure_count(),
        2,
        "CB-07: a refusal is not a failure"
    );
}

// A-10 / CB-09: half-open admits exactly one trial among concurrent calls.
#[tokio::test(start_paused = true)]
async fn half_open_lets_exactly_one_concurrent_trial_through() {
    let breaker = CircuitBreaker::new(1, Duration::from_millis(10)).unwrap();
    let s = Scope::builder()
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    s.try_spawn(async { Err::<(), _>("fail") }).await;
    sleep(Duration::from_millis(10)).await;
    let ran = counter();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let r = ran.clone();
            s.spawn(async move {
                r.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(5)).await;
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        if matches!(t.await.0, Some(Error::CircuitOpen)) {
            refused += 1;
        }
    }
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(refused, 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
    s.close().await.unwrap();
}

// RETRY-15: every attempt counts against the breaker, and CircuitOpen is never retried.
#[tokio::test]
async fn circuit_open_is_not_retried() {
    let breaker = CircuitBreaker::new(2, Duration::from_secs(30)).unwrap();
    let s = Scope::builder().circuit_breaker(breaker).build().unwrap();
    let calls = counter();
    let c = calls.clone();
    let (err, _) = s
        .task(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("always") }
        })
        .retry(4)
        .spawn()
        .await;
    assert!(matches!(err, Some(Error::CircuitOpen)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    s.close().await.unwrap();
}

// An attempt that itself fails with CircuitOpen (a guarded call inside it was refused) is not
// retried either, whether the error comes as our `Error` or boxed; other error types are
// retried with the policy's plain schedule, and the last one is the task's error.
#[tokio::test]
async fn an_attempt_s_own_circuit_open_is_not_retried() {
    let s = Scope::new().unwrap();
    let calls = counter();
    let c = calls.clone();
    let (err, _) = s
        .task(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Error::CircuitOpen) }
        })
        .retry(3)
        .spawn()
        .await;
    assert!(matches!(err, Some(Error::CircuitOpen)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let calls = counter();
    let c = calls.clone();
    let (err, _) = s
        .task(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), go_go_scope::BoxError>(Box::new(Error::CircuitOpen)) }
        })
        .retry(3)
        .spawn()
        .await;
    assert!(matches!(err, Some(Error::CircuitOpen)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    #[derive(Debug)]
    struct Refused(u32);
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "backend said no ({})", self.0)
        }
    }
    impl std::error::Error for Refused {}
    let calls = counter();
    let c = calls.clone();
    let (err, _) = s
        .task(move |attempt| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Err::<(), _>(Refused(attempt)) }
        })
        .retry(Retry::fixed(2, Duration::from_millis(1)))
        .spawn()
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let err = err.unwrap();
    assert_eq!(err.downcast_ref::<Refused>().map(|r| r.0), Some(3));
    s.close().await.unwrap();
}

// The breaker is shared with child scopes.
#[tokio::test]
async fn child_scopes_share_the_parent_breaker() {
    let breaker = CircuitBreaker::new(1, Duration::from_secs(30)).unwrap();
    let parent = Scope::builder()
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    let child = parent.child().build().unwrap();
    child
        .try_spawn(async { Err::<(), _>("fail in child") })
        .await;
    assert!(matches!(
        parent.spawn(async {}).await.0,
        Some(Error::CircuitOpen)
    ));
    parent.close().await.unwrap();
}

// CONC-01 with built tasks, and race/parallel inside a limited scope.
#[tokio::test(start_paused = true)]
async fn the_scope_limit_applies_to_built_tasks_and_parallel() {
    let s = Scope::builder().concurrency(2).build().unwrap();
    let gauge = Gauge::default();
    let jobs = (0..6).map(|i| {
        let g = gauge.clone();
        async move {
            let _in = g.enter();
            sleep(Duration::from_millis(20)).await;
            Ok::<_, Error>(i)
        }
    });
    let out = s.parallel(jobs, ParallelOpts::default()).await;
    assert_eq!(
        out.iter().map(|o| o.1.unwrap()).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(gauge.max(), 2);
    s.close().await.unwrap();
}

// RACE-01..RACE-05: first success wins; losers are cancelled and have ended.
#[tokio::test(start_paused = true)]
async fn race_returns_the_first_success_after_losers_ended() {
    let s = Scope::builder().metrics(true).build().unwrap();
    let (guard, loser_dropped) = DropFlag::new();
    let started = Instant::now();
    let (err, winner) = s
        .race(vec![
            Box::pin(async move {
                let _g = guard;
                sleep(Duration::from_millis(50)).await;
                Ok::<_, Error>("slow")
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
            Box::pin(async {
                sleep(Duration::from_millis(5)).await;
                Err(Error::cancelled("fast fail"))
            }),
            Box::pin(async {
                sleep(Duration::from_millis(10)).await;
                Ok("fast")
            }),
        ])
        .await;
    assert!(err.is_none());
    assert_eq!(winner, Some("fast"));
    assert_eq!(started.elapsed(), Duration::from_millis(10));
    assert!(loser_dropped.load(Ordering::SeqCst));
    // MET-12: racers are tasks of the scope.
    assert_eq!(s.metrics().unwrap().tasks_spawned, 3);
    let (err, _) = s
        .race(Vec::<std::future::Ready<Result<u8, Error>>>::new())
        .await;
    assert!(matches!(
        err,
        Some(Error::InvalidOption { option: "race", .. })
    ));
    s.close().await.unwrap();
}

#[tokio::test]
async fn race_fails_only_when_every_racer_failed() {
    let s = Scope::new().unwrap();
    let (err, _) = s
        .race(["a", "b"].map(|e| async move { Err::<(), _>(e) }))
        .await;
    match err {
        Some(Error::AllFailed { errors }) => {
            assert_eq!(
                errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                ["a", "b"]
            );
        }
        other => panic!("expected AllFailed, got {other:?}"),
    }
    s.close().await.unwrap();
}

// RACE-02, RACE-06
#[tokio::test(start_paused = true)]
async fn race_on_a_cancelled_scope_reports_the_cancellation() {
    let s = Scope::new().unwrap();
    s.cancel("stop");
    let (err, _) = s.race([async { Ok::<_, Error>(1) }]).await;
    assert_eq!(err.unwrap().to_string(), "cancelled: stop");
    s.close().await.unwrap();

    let s = Scope::new().unwrap();
    let canceller = s.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(10)).await;
        canceller.cancel("owner gone");
    });
    let (err, _) = s
        .race([async {
            sleep(Duration::from_secs(1)).await;
            Ok::<_, Error>(1)
        }])
        .await;
    assert_eq!(err.unwrap().to_string(), "cancelled: owner gone");
    s.close().await.unwrap();
}

// RACE-08: standalone.
#[tokio::test]
async fn standalone_race_works_without_a_scope() {
    let (err, v) = go_go_scope::race([async { Ok::<_, Error>(5) }]).await;
    assert!(err.is_none());
    assert_eq!(v, Some(5));
}

// PAR-01, PAR-02, PAR-03
#[tokio::test]
async fn parallel_keeps_input_order_and_isolates_failures() {
    let s = Scope::new().unwrap();
    let none: Vec<std::future::Ready<Result<u8, Error>>> = Vec::new();
    assert!(s.parallel(none, ParallelOpts::default()).await.is_empty());
    let out = s
        .parallel(
            (0..3).map(|i| async move { if i == 1 { Err("e1") } else { Ok(i) } }),
            ParallelOpts::default(),
        )
        .await;
    assert_eq!(out[0].1, Some(0));
    assert_eq!(out[1].0.as_ref().unwrap().to_string(), "e1");
    assert_eq!(out[2].1, Some(2));
    s.cancel("stop");
    let ran = counter();
    let r = ran.clone();
    let out = s
        .parallel(
            [async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(())
            }],
            ParallelOpts::default(),
        )
        .await;
    assert_eq!(out[0].0.as_ref().unwrap().to_string(), "cancelled: stop");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    s.close().await.unwrap();
}

// PAR-04: fail_fast returns at the first error in time, after the others ended.
#[tokio::test(start_paused = true)]
async fn fail_fast_stops_at_the_first_error_in_time() {
    let s = Scope::new().unwrap();
    let (guard, slow_dropped) = DropFlag::new();
    let guard = Arc::new(Mutex::new(Some(guard)));
    let started = Instant::now();
    let out = s
        .parallel(
            (0..3).map(|i| {
                let guard = guard.clone();
                async move {
                    match i {
                        0 => {
                            let _g = guard.lock().unwrap().take();
                            sleep(Duration::from_millis(80)).await;
                            Ok(i)
                        }
                        1 => {
                            sleep(Duration::from_millis(5)).await;
                            Err("fast fail")
                        }
                        _ => Ok(i),
                    }
                }
            }),
            ParallelOpts {
                fail_fast: true,
                ..ParallelOpts::default()
            },
        )
        .await;
    assert_eq!(started.elapsed(), Duration::from_millis(5));
    assert!(slow_dropped.load(Ordering::SeqCst));
    assert!(out[0].0.as_ref().unwrap().is_cancelled());
    assert_eq!(out[1].0.as_ref().unwrap().to_string(), "fast fail");
    assert_eq!(out[2].1, Some(2));
    s.close().await.unwrap();
}

// PAR-05, PAR-06: a worker pool; with fail_fast, nothing more starts after an error.
#[tokio::test(start_paused = true)]
async fn parallel_concurrency_is_a_worker_pool() {
    let s = Scope::new().unwrap();
    let started = counter();
    let st = started.clone();
    let out = s
        .parallel(
            (0..3).map(move |i| {
                let st = st.clone();
                async move {
                    st.fetch_add(1, Ordering::SeqCst);
                    if i == 0 { Err("e0") } else { Ok(i) }
                }
            }),
            ParallelOpts {
                concurrency: Some(1),
                fail_fast: true,
            },
        )
        .await;
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(out[0].0.as_ref().unwrap().to_string(), "e0");
    assert!(
        out[1]
            .0
            .as_ref()
            .unwrap()
            .to_string()
            .contains("not started")
    );

    let gauge = Gauge::default();
    let out = s
        .parallel(
            (0..5).map(|i| {
                let g = gauge.clone();
                async move {
                    let _in = g.enter();
                    sleep(Duration::from_millis(10)).await;
                    Ok::<_, Error>(i)
                }
            }),
            ParallelOpts {
                concurrency: Some(2),
                fail_fast: false,
            },
        )
        .await;
    assert_eq!(gauge.max(), 2);
    assert_eq!(
        out.iter().map(|o| o.1.unwrap()).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let bad = s
        .parallel(
            [async { Ok::<_, Error>(1) }],
            ParallelOpts {
                concurrency: Some(0),
                fail_fast: false,
            },
        )
        .await;
    assert!(matches!(
        bad[0].0,
        Some(Error::InvalidOption {
            option: "concurrency",
            ..
        })
    ));
    s.close().await.unwrap();
}

// PAR-08: parallel tasks go through the scope's breaker, hooks and metrics.
#[tokio::test]
async fn parallel_tasks_are_scope_tasks() {
    let before = Arc::new(AtomicUsize::new(0));
    let b = before.clone();
    let breaker = CircuitBreaker::new(1, Duration::from_secs(60)).unwrap();
    let s = Scope::builder()
        .metrics(true)
        .circuit_breaker(breaker.clone())
        .hooks(Hooks::new().before_task(move |_, _| {
            b.fetch_add(1, Ordering::SeqCst);
        }))
        .build()
        .unwrap();
    s.parallel([async { Err::<(), _>("boom") }], ParallelOpts::default())
        .await;
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(before.load(Ordering::SeqCst), 1);
    assert_eq!(s.metrics().unwrap().tasks_failed, 1);
    s.close().await.unwrap();
}

// AGG-01, AGG-02
#[tokio::test]
async fn aggregate_sorts_successes_and_failures() {
    let s = Scope::new().unwrap();
    let agg = s
        .parallel_aggregate([1, 2, 3].map(|i| async move { if i == 2 { Err("x") } else { Ok(i) } }))
        .await;
    assert_eq!(agg.completed, [(0, 1), (2, 3)]);
    assert_eq!(agg.errors.len(), 1);
    assert_eq!(
        (agg.errors[0].0, agg.errors[0].1.to_string()),
        (1, "x".to_string())
    );
    assert!(!agg.all_completed);
    let none: Vec<std::future::Ready<Result<u8, Error>>> = Vec::new();
    let empty = s.parallel_aggregate(none).await;
    assert!(empty.completed.is_empty() && empty.errors.is_empty() && empty.all_completed);
    s.close().await.unwrap();
}

// Dropping a race or a parallel call mid-way cancels its tasks.
#[tokio::test(start_paused = true)]
async fn abandoning_a_combinator_cancels_its_tasks() {
    let s = Scope::new().unwrap();
    let (guard, dropped) = DropFlag::new();
    let guard = Arc::new(Mutex::new(Some(guard)));
    let racing = s.race([async move {
        let _g = guard.lock().unwrap().take();
        sleep(Duration::from_secs(60)).await;
        Ok::<_, Error>(())
    }]);
    let _ = tokio::time::timeout(Duration::from_millis(10), racing).await;
    tokio::task::yield_now().await;
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(s.active_tasks(), 0);
    s.close().await.unwrap();
}

// PROF-01: the profiler records whenever enabled, every stage filled.
#[tokio::test(start_paused = true)]
async fn the_profiler_fills_every_stage() {
    let breaker = CircuitBreaker::new(10, Duration::from_secs(1)).unwrap();
    let s = Scope::builder()
        .profiler(true)
        .concurrency(1)
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    let blocker = s.spawn(sleep(Duration::from_millis(30)));
    let task = s
        .task(|n| async move {
            sleep(Duration::from_millis(10)).await;
            if n == 1 { Err("again") } else { Ok(n) }
        })
        .name("profiled")
        .retry(Retry::fixed(1, Duration::from_millis(7)))
        .spawn();
    blocker.await;
    task.result().await.unwrap();
    let report = s.profile_report().unwrap();
    assert_eq!(report.statistics.total_tasks, 2);
    assert_eq!(report.statistics.successful_tasks, 2);
    assert_eq!(report.statistics.total_retry_attempts, 1);
    let profiled = report.tasks.iter().find(|t| t.name == "profiled").unwrap();
    assert_eq!(profiled.permit_wait, Duration::from_millis(30));
    assert_eq!(
        profiled.attempts,
        [Duration::from_millis(10), Duration::from_millis(10)]
    );
    assert_eq!(profiled.retry_delays, [Duration::from_millis(7)]);
    assert_eq!(profiled.total, Duration::from_millis(57));
    assert_eq!(profiled.retry_attempts, 1);
    assert!(Scope::new().unwrap().profile_report().is_none());
    s.close().await.unwrap();
}

// A task's duration (hooks, metrics) starts after its permit wait.
#[tokio::test(start_paused = true)]
async fn durations_exclude_the_permit_wait() {
    let durations: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let d = durations.clone();
    let s = Scope::builder()
        .concurrency(1)
        .hooks(Hooks::new().after_task(move |_, took, _| d.lock().unwrap().push(took)))
        .build()
        .unwrap();
    let a = s.spawn(sleep(Duration::from_millis(100)));
    let b = s
        .task_once(async {
            sleep(Duration::from_millis(10)).await;
            Ok::<_, Error>(())
        })
        .spawn();
    a.await;
    b.await;
    assert_eq!(
        *durations.lock().unwrap(),
        [Duration::from_millis(100), Duration::from_millis(10)]
    );
    s.close().await.unwrap();
}
