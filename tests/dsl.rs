//! The DSL at run time: what `#[scoped]`, `go!`, `try_go!` and `try_go_raw!` expand to, doing
//! what their docs promise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use go_go_scope::prelude::*;
use go_go_scope::{CircuitBreaker, TimeoutOrigin};
use go_go_scope_tests::{DropFlag, Gauge};
use tokio::time::sleep;

/// An application error that can hold the scope's own errors.
#[derive(Debug)]
enum AppError {
    Scope(Error),
    NotFound(u64),
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        AppError::Scope(error)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Scope(error) => write!(f, "scope: {error}"),
            AppError::NotFound(id) => write!(f, "{id} not found"),
        }
    }
}

impl std::error::Error for AppError {}

async fn fetch_user(id: u64) -> Result<String, AppError> {
    sleep(Duration::from_millis(5)).await;
    if id == 0 {
        return Err(AppError::NotFound(id));
    }
    Ok(format!("user-{id}"))
}

#[scoped(timeout = "5s", concurrency = 4, metrics)]
async fn load_two(a: u64, b: u64) -> Result<(String, String), AppError> {
    let first = go!(fetch_user(a));
    let second = go!(fetch_user(b));
    let (err, first) = first.await;
    if let Some(err) = err {
        return Err(err.into());
    }
    let second = second.result().await?;
    assert_eq!(Scope::current().name(), "load_two");
    assert!(Scope::current().metrics().is_some());
    assert_eq!(Scope::current().concurrency(), Some(4));
    Ok((first.unwrap_or_default(), second))
}

#[tokio::test]
async fn scoped_fn_spawns_with_go_and_returns_its_value() {
    let (a, b) = load_two(1, 2).await.unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("user-1", "user-2"));
}

#[tokio::test]
async fn a_failing_task_error_keeps_its_type_through_the_tuple() {
    match load_two(0, 2).await {
        Err(AppError::Scope(error)) => {
            assert!(matches!(
                error.downcast_ref::<AppError>(),
                Some(AppError::NotFound(0))
            ));
        }
        other => panic!("expected the task's error, got {other:?}"),
    }
}

#[tokio::test]
async fn go_flattens_result_outputs_and_wraps_plain_ones() {
    let scope = Scope::new().unwrap();
    let plain: Task<u8> = go!(scope = scope, async { 7_u8 });
    let ok: Task<u8> = go!(scope = &scope, async { Ok::<_, std::io::Error>(8_u8) });
    let failed: Task<u8> = go!(scope = scope, async {
        Err::<u8, _>(std::io::Error::other("disk"))
    });
    assert_eq!(plain.await.1, Some(7));
    assert_eq!(ok.await.1, Some(8));
    let (err, value) = failed.await;
    assert!(value.is_none());
    assert_eq!(
        err.unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap()
            .to_string(),
        "disk"
    );
    // A `Result` whose error cannot be boxed is a plain value, kept whole.
    let kept: Task<Result<u8, ()>> = go!(scope = scope, async { Err::<u8, ()>(()) });
    assert_eq!(kept.await.1, Some(Err(())));
    scope.close().await.unwrap();
}

#[scoped]
async fn early_return_with_pending_task(
    started: Arc<AtomicU32>,
    guard: DropFlag,
) -> Result<(), AppError> {
    go!(async move {
        let _guard = guard;
        started.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    });
    tokio::task::yield_now().await;
    fetch_user(0).await?;
    unreachable!("fetch_user(0) fails");
}

#[tokio::test]
async fn the_scope_closes_on_question_mark_and_cancels_what_runs() {
    let started = Arc::new(AtomicU32::new(0));
    let (guard, dropped) = DropFlag::new();
    let result = early_return_with_pending_task(started.clone(), guard).await;
    assert!(matches!(result, Err(AppError::NotFound(0))));
    // The fn returned only after its task was cancelled and its body dropped.
    assert!(dropped.load(Ordering::SeqCst));
}

#[scoped(timeout = "30ms")]
async fn too_slow() -> Result<u32, AppError> {
    sleep(Duration::from_secs(3600)).await;
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_the_body_with_a_timeout_converted_into_the_fn_error() {
    match too_slow().await {
        Err(AppError::Scope(Error::Timeout {
            after,
            scope_or_task,
        })) => {
            assert_eq!(after, Duration::from_millis(30));
            assert_eq!(scope_or_task, TimeoutOrigin::Scope("too_slow".into()));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[scoped(timeout = "1m30s", name = "tuple-form")]
async fn tuple_form(fail: bool) -> (Option<Error>, Option<u32>) {
    assert_eq!(Scope::current().timeout(), Some(Duration::from_secs(90)));
    assert_eq!(Scope::current().name(), "tuple-form");
    if fail {
        Scope::current().cancel("asked to fail");
        std::future::pending::<()>().await;
    }
    (None, Some(5))
}

#[tokio::test]
async fn the_tuple_return_type_carries_the_scope_error() {
    assert_eq!(tuple_form(false).await.1, Some(5));
    let (err, value) = tuple_form(true).await;
    assert!(value.is_none());
    assert_eq!(err.unwrap().to_string(), "cancelled: asked to fail");
}

#[scoped(name = "inner")]
async fn inner(outer_id: u64, inner_dropped: DropFlag) -> Result<(), Error> {
    let me = Scope::current();
    assert_eq!(me.parent().map(|p| p.id()), Some(outer_id));
    let task = go!(async move {
        let _flag = inner_dropped;
        std::future::pending::<()>().await;
    });
    let (err, _) = task.await;
    Err(err.expect("the task can only end by cancellation"))
}

#[scoped(name = "outer")]
async fn outer(inner_dropped: DropFlag) -> Result<(), Error> {
    let me = Scope::current();
    let child = go!(inner(me.id(), inner_dropped));
    sleep(Duration::from_millis(20)).await;
    me.cancel("outer gives up");
    let (err, _) = child.await;
    Err(err.expect("the inner fn was cancelled"))
}

#[tokio::test]
async fn nested_scoped_fns_form_a_chain_and_cancel_downwards() {
    let (flag, dropped) = DropFlag::new();
    let result = outer(flag).await;
    assert_eq!(result.unwrap_err().to_string(), "cancelled: outer gives up");
    assert!(dropped.load(Ordering::SeqCst));
}

#[scoped]
async fn sibling_from_a_task() -> Result<(u64, u64, usize), Error> {
    let scope_id = Scope::current().id();
    let parent = go!(async move {
        // Inside a task, go! spawns into the task's scope: a sibling, not a child.
        let sibling = go!(async { Scope::current().id() });
        sibling.result().await
    });
    let sibling_scope = parent.result().await?;
    Ok((scope_id, sibling_scope, 0))
}

#[tokio::test]
async fn go_inside_a_task_spawns_a_sibling_into_the_same_scope() {
    let (scope_id, sibling_scope, _) = sibling_from_a_task().await.unwrap();
    assert_eq!(scope_id, sibling_scope);
}

#[tokio::test]
async fn go_outside_any_scope_panics_naming_both_ways_out() {
    let outcome = tokio::spawn(async {
        let _task = go!(async { 1 });
    })
    .await;
    let payload = outcome.unwrap_err().into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(message.contains("#[scoped]"), "{message}");
    assert!(message.contains("go!(scope = s, ..)"), "{message}");
}

#[scoped]
async fn named_task_with_timeout() -> (Option<Error>, Option<()>) {
    go!(
        name = "slow-call",
        timeout = "20ms",
        sleep(Duration::from_secs(60))
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn go_options_name_and_time_out_the_task() {
    let (err, _) = named_task_with_timeout().await;
    assert_eq!(
        err.unwrap().to_string(),
        "task `slow-call` timed out after 20ms"
    );
}

#[scoped]
async fn flaky_with_go_retry(attempts: Arc<AtomicU32>) -> Result<u32, Error> {
    let task = go!(retry = 3, {
        let attempts = attempts.clone();
        async move {
            let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 3 {
                Err(format!("attempt {n}"))
            } else {
                Ok(n)
            }
        }
    });
    task.result().await
}

#[tokio::test]
async fn go_retry_re_evaluates_the_expression_for_every_attempt() {
    let attempts = Arc::new(AtomicU32::new(0));
    assert_eq!(flaky_with_go_retry(attempts.clone()).await.unwrap(), 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[scoped(retry(
    max = 2,
    delay = "10ms",
    backoff = "exponential",
    jitter,
    max_delay = "1s"
))]
async fn scope_default_retry(attempts: Arc<AtomicU32>) -> Result<u32, Error> {
    let counted = attempts.clone();
    let opted_in = go!(retry, {
        let attempts = counted.clone();
        async move {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err::<u32, _>("always fails")
        }
    });
    // Without `retry`, the future is created once and cannot be re-run: no default retry.
    let once = go!(async { Err::<u32, _>("fails once") });
    assert_eq!(once.await.0.unwrap().to_string(), "fails once");
    opted_in.result().await
}

#[tokio::test(start_paused = true)]
async fn the_scope_retry_is_the_default_for_go_tasks_that_opt_in() {
    let attempts = Arc::new(AtomicU32::new(0));
    let err = scope_default_retry(attempts.clone()).await.unwrap_err();
    assert_eq!(err.to_string(), "always fails");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[scoped(circuit_breaker(failure_threshold = 2, reset_timeout = "1h"))]
async fn guarded(fail: bool) -> Result<u32, Error> {
    go!(async move { if fail { Err("backend down") } else { Ok(1) } })
        .result()
        .await
}

#[tokio::test]
async fn the_circuit_breaker_remembers_failures_across_calls() {
    assert_eq!(guarded(false).await.unwrap(), 1);
    assert_eq!(guarded(true).await.unwrap_err().to_string(), "backend down");
    assert_eq!(guarded(true).await.unwrap_err().to_string(), "backend down");
    // Two failures in a row opened the breaker shared by every call of `guarded`.
    assert!(matches!(guarded(false).await, Err(Error::CircuitOpen)));
}

#[scoped(circuit_breaker = shared_breaker())]
async fn guarded_by_a_shared_breaker() -> Result<(), Error> {
    go!(async { Err::<(), _>("down") }).result().await
}

fn shared_breaker() -> CircuitBreaker {
    static BREAKER: std::sync::OnceLock<CircuitBreaker> = std::sync::OnceLock::new();
    BREAKER
        .get_or_init(|| CircuitBreaker::new(1, Duration::from_secs(3600)).unwrap())
        .clone()
}

#[tokio::test]
async fn a_breaker_given_as_an_expression_is_used_as_is() {
    assert!(guarded_by_a_shared_breaker().await.is_err());
    assert!(matches!(
        guarded_by_a_shared_breaker().await,
        Err(Error::CircuitOpen)
    ));
    assert_eq!(shared_breaker().state(), go_go_scope::CircuitState::Open);
}

#[scoped(concurrency = 1)]
async fn one_at_a_time(gauge: Gauge) -> Result<(), Error> {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let gauge = gauge.clone();
            go!(async move {
                let _in = gauge.enter();
                sleep(Duration::from_millis(2)).await;
            })
        })
        .collect();
    for task in tasks {
        task.result().await?;
    }
    Ok(())
}

#[tokio::test]
async fn concurrency_limits_the_scope_tasks() {
    let gauge = Gauge::default();
    one_at_a_time(gauge.clone()).await.unwrap();
    assert_eq!(gauge.max(), 1);
}

#[scoped(wait)]
async fn waits_for_its_tasks(done: Arc<AtomicU32>) {
    go!(async move {
        sleep(Duration::from_millis(20)).await;
        done.fetch_add(1, Ordering::SeqCst);
    });
}

#[tokio::test]
async fn wait_lets_outstanding_tasks_finish() {
    let done = Arc::new(AtomicU32::new(0));
    waits_for_its_tasks(done.clone()).await;
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

/// A return type that cannot carry the scope's error: the body runs to completion.
#[scoped(parent = parent)]
async fn counts_to_completion(parent: &Scope) -> u32 {
    let task = go!(std::future::pending::<()>());
    // The parent cancels this scope meanwhile: the task ends...
    let (err, _) = task.await;
    assert_eq!(err.unwrap().to_string(), "cancelled: parent stops");
    // ...and the body goes on to produce its value.
    sleep(Duration::from_millis(1)).await;
    42
}

#[tokio::test]
async fn a_plain_return_type_runs_the_body_to_completion_when_the_parent_cancels() {
    let parent = Scope::new().unwrap();
    let canceller = parent.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(10)).await;
        canceller.cancel("parent stops");
    });
    assert_eq!(counts_to_completion(&parent).await, 42);
    parent.close().await.unwrap();
}

struct Service {
    prefix: &'static str,
    calls: AtomicU64,
}

impl Service {
    #[scoped(timeout = "1s")]
    async fn describe(&self, id: u64) -> Result<String, AppError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let user = go!(fetch_user(id)).result().await?;
        Ok(format!("{}{user}", self.prefix))
    }

    #[scoped]
    async fn generic_len<T: AsRef<str> + Send + 'static>(&self, items: Vec<T>) -> usize {
        let task = go!(async move { items.iter().map(|s| s.as_ref().len()).sum::<usize>() });
        task.await.1.unwrap_or(0)
    }
}

#[scoped(skip(label), attrs("kind" = "impl-trait"))]
async fn with_impl_trait(label: impl std::fmt::Display, n: u32) -> Result<String, Error> {
    Ok(format!("{label}:{n}"))
}

#[tokio::test]
async fn methods_generics_and_impl_trait_arguments() {
    let service = Service {
        prefix: "svc:",
        calls: AtomicU64::new(0),
    };
    assert_eq!(service.describe(3).await.unwrap(), "svc:user-3");
    assert_eq!(service.calls.load(Ordering::SeqCst), 1);
    assert_eq!(service.generic_len(vec!["ab", "cde"]).await, 5);
    assert_eq!(with_impl_trait("x", 2).await.unwrap(), "x:2");
}

#[tokio::test]
async fn scoped_fns_are_send_when_their_body_is() {
    fn assert_send<F: std::future::Future + Send>(future: F) -> F {
        future
    }
    let handle = tokio::spawn(assert_send(load_two(4, 5)));
    assert!(handle.await.unwrap().is_ok());
}

#[scoped(parent = parent, name = "explicit-child")]
async fn explicit_parent(parent: &Scope) -> Result<u64, Error> {
    Ok(Scope::current().parent().map_or(0, |p| p.id()))
}

#[tokio::test]
async fn parent_makes_the_scope_a_child_of_the_given_one() {
    let parent = Scope::builder().name("explicit").build().unwrap();
    assert_eq!(explicit_parent(&parent).await.unwrap(), parent.id());
    parent.close().await.unwrap();
}

// The attribute order under #[tokio::test]: #[scoped] first, so it sees the async fn.
#[scoped(name = "test-body")]
#[tokio::test]
async fn scoped_above_tokio_test_runs_the_test_in_a_scope() {
    assert_eq!(Scope::current().name(), "test-body");
    let task = go!(async { 1 + 1 });
    assert_eq!(task.await.1, Some(2));
}

// try_go! / try_go_raw!

#[derive(Debug, PartialEq)]
enum DbError {
    Missing,
    Busy { retry_after: u32 },
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "db error: {self:?}")
    }
}

async fn query(row: u32) -> Result<u32, DbError> {
    tokio::task::yield_now().await;
    match row {
        0 => Err(DbError::Missing),
        1 => Err(DbError::Busy { retry_after: 5 }),
        n => Ok(n * 10),
    }
}

/// Panics when told to, with `message`; a plain call so the compiler cannot see the panic coming.
fn checked<T>(value: T, panic_with: Option<&str>) -> T {
    if let Some(message) = panic_with {
        panic!("{message}");
    }
    value
}

#[test]
fn try_go_turns_results_and_options_into_tuples_in_sync_code() {
    let (err, value) = try_go!("42".parse::<u32>());
    assert_eq!((err, value), (None, Some(42)));
    let (err, value) = try_go!("x".parse::<u32>());
    assert_eq!(err.as_deref(), Some("invalid digit found in string"));
    assert_eq!(value, None);
    let (err, value) = try_go!([1, 2, 3].iter().find(|n| **n > 5));
    assert_eq!(err.as_deref(), Some("value was None"));
    assert_eq!(value, None);
}

#[test]
fn try_go_catches_a_panic_as_its_message() {
    let index = 7;
    let (err, value) = try_go!(Some([1, 2, 3][index]));
    assert_eq!(value, None);
    assert!(err.unwrap().contains("index out of bounds"));
    let (err, _) = try_go!(checked(Ok::<u8, String>(1), Some("boom")));
    assert_eq!(err.as_deref(), Some("boom"));
}

#[tokio::test]
async fn try_go_awaits_a_future_inside_the_panic_catcher() {
    let (err, value) = try_go!(query(0).await);
    assert_eq!(err.as_deref(), Some("db error: Missing"));
    assert_eq!(value, None);
    let (err, value) = try_go!(query(4).await);
    assert_eq!((err, value), (None, Some(40)));
    let (err, _) = try_go!(async { checked(Some(1), Some("async boom")) }.await);
    assert_eq!(err.as_deref(), Some("async boom"));
}

#[tokio::test]
async fn try_go_raw_keeps_the_error_type() {
    let (err, value) = try_go_raw!(query(1).await);
    assert_eq!(value, None);
    // The error is the DbError itself: match it, no downcast.
    match err {
        Some(DbError::Busy { retry_after }) => assert_eq!(retry_after, 5),
        other => panic!("expected Busy, got {other:?}"),
    }
    let (err, value) = try_go_raw!(query(3).await);
    assert_eq!((err, value), (None, Some(30)));
}

#[test]
fn try_go_raw_turns_panics_into_errors_that_can_hold_them() {
    // go_go_scope::Error (and anything From<Error>) gets Error::Panicked.
    let (err, _) = try_go_raw!(checked(Ok::<u8, Error>(1), Some("into error")));
    assert!(matches!(err, Some(Error::Panicked { ref message }) if message == "into error"));
    // String errors (and anything From<String>) get the message.
    let (err, _) = try_go_raw!(checked(Ok::<u8, String>(1), Some("into string")));
    assert_eq!(err.as_deref(), Some("into string"));
    // None is an error with the same message as in try_go!.
    let (err, value) = try_go_raw!(None::<u8>);
    assert_eq!((err.as_deref(), value), (Some("value was None"), None));
}

#[test]
fn try_go_raw_lets_a_panic_go_on_when_the_error_type_cannot_hold_it() {
    let unwound = std::panic::catch_unwind(|| {
        let _ = try_go_raw!(checked(Ok::<u8, DbError>(1), Some("keeps unwinding")));
    });
    assert!(unwound.is_err());
    assert_eq!(
        try_go_raw!(Err::<u8, _>(DbError::Missing)).0,
        Some(DbError::Missing)
    );
}

/// Options may take the fn's arguments by value: the arguments are recorded first.
#[go_go_scope::scoped(name = name, tracer = tracer)]
async fn named_by_argument(
    name: String,
    tracer: go_go_scope::ScopeTracer,
) -> Result<String, go_go_scope::Error> {
    Ok(go_go_scope::Scope::current().name().to_owned())
}

#[tokio::test]
async fn options_may_take_arguments_by_value() {
    let tracer = go_go_scope::ScopeTracer::global();
    assert_eq!(
        named_by_argument("by-value".into(), tracer).await.unwrap(),
        "by-value"
    );
}
