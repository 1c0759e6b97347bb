//! `#[scoped(local)]`, `go!` into a local scope, and the task builder of local scopes.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use go_go_scope::prelude::*;
use go_go_scope::{Error, Retry, TimeoutOrigin};
use go_go_scope_tests::Gauge;
use tokio::time::sleep;

#[derive(Debug)]
struct AppError(String);

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        AppError(error.to_string())
    }
}

async fn price(catalog: &[(u32, u64)], id: u32) -> Result<u64, String> {
    tokio::task::yield_now().await;
    catalog
        .iter()
        .find(|(item, _)| *item == id)
        .map(|(_, cents)| *cents)
        .ok_or_else(|| format!("no item {id}"))
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

/// Tasks borrow the fn's arguments and its locals; nothing is cloned or moved into them.
#[scoped(local, timeout = "5s")]
async fn total(catalog: &[(u32, u64)], ids: &[u32]) -> Result<u64, AppError> {
    let tasks: Vec<_> = ids.iter().map(|id| go!(price(catalog, *id))).collect();
    let mut sum = 0;
    for task in tasks {
        sum += task.result().await.map_err(AppError::from)?;
    }
    Ok(sum)
}

#[tokio::test]
async fn go_in_a_local_fn_borrows_the_arguments() {
    let catalog = vec![(1, 250), (2, 100), (3, 5)];
    assert_eq!(total(&catalog, &[1, 3]).await.unwrap(), 255);
    let missing = total(&catalog, &[1, 9]).await.unwrap_err();
    assert!(missing.0.contains("no item 9"), "{}", missing.0);
    // Still the caller's.
    assert_eq!(catalog.len(), 3);
}

/// An owned argument stays where it lies, in the fn's frame, and its tasks borrow it.
#[scoped(local)]
async fn lengths(words: Vec<String>) -> usize {
    let a = go!(async { words.iter().map(String::len).sum::<usize>() });
    let b = go!(async { words.len() });
    let (_, total) = a.await;
    let (_, count) = b.await;
    total.unwrap() + count.unwrap()
}

#[tokio::test]
async fn owned_arguments_are_borrowed_in_place() {
    assert_eq!(lengths(vec!["ab".into(), "cde".into()]).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_fn_of_send_tasks_is_a_send_future() {
    let catalog = vec![(1, 10), (2, 20)];
    let handle = tokio::spawn(async move { assert_send(total(&catalog, &[1, 2])).await.unwrap() });
    assert_eq!(handle.await.unwrap(), 30);
}

#[scoped(local(unsend))]
async fn unsend_tasks(log: &RefCell<Vec<u32>>, shared: Rc<u32>) -> u32 {
    let a = go!(async { log.borrow_mut().push(*shared) });
    let b = go!(async { log.borrow_mut().push(*shared + 1) });
    a.await;
    b.await;
    log.borrow().iter().sum()
}

#[tokio::test(flavor = "current_thread")]
async fn local_unsend_takes_tasks_that_are_not_send() {
    let log = RefCell::new(Vec::new());
    assert_eq!(unsend_tasks(&log, Rc::new(4)).await, 9);
    assert_eq!(log.into_inner(), [4, 5]);
}

#[scoped(local, timeout = "20ms")]
async fn too_slow(started: &AtomicUsize) -> Result<(), AppError> {
    let _a = go!(async {
        started.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_secs(3600)).await
    });
    sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_a_local_fn_with_its_error() {
    let started = AtomicUsize::new(0);
    let error = too_slow(&started).await.unwrap_err();
    assert!(error.0.contains("timed out"), "{}", error.0);
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

/// A return type that cannot carry the error: the body runs to its end while the scope's tasks
/// are ended by the cancellation.
#[scoped(local)]
async fn completes_anyway(seen: &AtomicUsize) -> usize {
    let task = go!(sleep(Duration::from_secs(3600)));
    Scope::current().cancel("enough");
    let (err, _) = task.await;
    assert!(matches!(err, Some(Error::Cancelled { .. })), "{err:?}");
    // Spawning into the cancelled scope is refused, not lost.
    let (late, _) = go!(async { 1 }).await;
    assert!(late.is_some());
    sleep(Duration::from_millis(5)).await;
    seen.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn a_completing_local_fn_runs_its_body_to_the_end() {
    let seen = AtomicUsize::new(0);
    assert_eq!(completes_anyway(&seen).await, 0);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[scoped(local, concurrency = 2)]
async fn limited(gauge: &Gauge, done: &AtomicUsize) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            go!(async {
                let _running = gauge.enter();
                sleep(Duration::from_millis(2)).await;
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_applies_to_local_go() {
    let gauge = Gauge::default();
    let done = AtomicUsize::new(0);
    limited(&gauge, &done).await;
    assert_eq!(done.load(Ordering::SeqCst), 8);
    assert_eq!(gauge.max(), 2);
}

#[scoped(local)]
async fn with_options(
    calls: &AtomicU32,
    replies: &[Result<u32, &'static str>],
) -> Result<u32, AppError> {
    let named = go!(name = "quick", timeout = "1s", async {
        calls.load(Ordering::SeqCst)
    });
    assert_eq!(named.name(), "quick");
    let slow = go!(
        name = "slow",
        timeout = "10ms",
        sleep(Duration::from_secs(60))
    );
    let (err, _) = slow.await;
    match err {
        Some(Error::Timeout {
            scope_or_task: TimeoutOrigin::Task(name),
            ..
        }) => assert_eq!(name, "slow"),
        other => panic!("expected the task's timeout, got {other:?}"),
    }
    // Each attempt evaluates the expression again, borrowing `replies` and `calls`.
    let flaky = go!(retry(max = 3, delay = "1ms"), async move {
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        replies[n]
    });
    flaky.result().await.map_err(AppError::from)
}

#[tokio::test(start_paused = true)]
async fn go_options_work_in_a_local_fn() {
    let calls = AtomicU32::new(0);
    let replies = [Err("busy"), Err("busy"), Ok(42)];
    assert_eq!(with_options(&calls, &replies).await.unwrap(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[scoped(local)]
async fn panics_inside() -> (Option<Error>, Option<u32>) {
    let task = go!(async {
        if std::hint::black_box(true) {
            panic!("boom");
        }
        1_u32
    });
    task.await
}

#[tokio::test]
async fn a_panicking_local_task_is_its_own_error() {
    let (err, value) = panics_inside().await;
    assert!(matches!(err, Some(Error::Panicked { .. })), "{err:?}");
    assert_eq!(value, None);
}

#[tokio::test(start_paused = true)]
async fn the_task_builder_of_a_local_scope_retries_with_a_borrowing_factory() {
    let replies = [Err("busy"), Err("busy"), Ok("done")];
    let attempts = AtomicU32::new(0);
    // Retry callbacks outlive any one call: they own what they use.
    let retried = Arc::new(AtomicU32::new(0));
    let reply = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let (replies, attempts) = (&replies, &attempts);
            s.task(move |attempt| async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                replies[attempt as usize - 1]
            })
            .name("flaky")
            .retry(Retry::fixed(3, Duration::from_millis(10)).on_retry({
                let retried = Arc::clone(&retried);
                move |_, _| {
                    retried.fetch_add(1, Ordering::SeqCst);
                }
            }))
            .spawn()
            .result()
            .await
        })
    })
    .await
    .unwrap();
    assert_eq!(reply.unwrap(), "done");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(retried.load(Ordering::SeqCst), 2);
}

/// A `go!` inside a task's future runs in a task, which cannot borrow the scope: it spawns a
/// Tokio task into the same scope, owned and `'static`.
#[scoped(local)]
async fn nested(base: &u64) -> Result<u64, AppError> {
    let outer = go!(async move {
        let inner = go!(async { Scope::current().name().len() as u64 });
        inner.result().await
    });
    // The inner task's error would be the outer's: its `Result` is flattened into the tuple.
    let from_inner = outer.result().await.map_err(AppError::from)?;
    Ok(from_inner + *base)
}

#[tokio::test]
async fn go_inside_a_local_task_spawns_into_the_same_scope() {
    assert_eq!(nested(&1).await.unwrap(), "nested".len() as u64 + 1);
}

#[scoped(local, tracer = tracer, metrics)]
async fn traced(tracer: go_go_scope::ScopeTracer, ids: &[u32]) -> Result<usize, AppError> {
    let a = go!(name = "first", async { ids[0] });
    let b = go!(async { ids.len() });
    let first = a.result().await.map_err(AppError::from)?;
    let len = b.result().await.map_err(AppError::from)?;
    Ok(first as usize + len)
}

#[tokio::test(flavor = "current_thread")]
async fn a_local_fn_traces_its_scope_and_tasks() {
    use opentelemetry::trace::{SpanId, TracerProvider as _};
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = go_go_scope::ScopeTracer::from(provider.tracer("local"));
    assert_eq!(traced(tracer, &[5, 6, 7]).await.unwrap(), 8);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let scope = spans
        .iter()
        .find(|span| span.name == "traced")
        .expect("the scope's span");
    assert_eq!(scope.parent_span_id, SpanId::INVALID);
    let tasks: Vec<_> = spans
        .iter()
        .filter(|span| span.parent_span_id == scope.span_context.span_id())
        .map(|span| span.name.to_string())
        .collect();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(tasks.iter().any(|name| name == "first"), "{tasks:?}");
}

/// What an axum application shares between requests.
struct Catalog {
    names: Vec<&'static str>,
}

impl Catalog {
    async fn name(&self, id: usize) -> Result<&'static str, String> {
        tokio::task::yield_now().await;
        self.names.get(id).copied().ok_or(format!("no item {id}"))
    }
}

/// An axum handler whose tasks borrow the shared state and the request's path: axum needs the
/// handler's future to be `Send`, and a `#[scoped(local)]` fn of `Send` tasks is.
#[scoped(local, timeout = "1s")]
async fn names_handler(
    axum::extract::State(catalog): axum::extract::State<Arc<Catalog>>,
    axum::extract::Path((a, b)): axum::extract::Path<(usize, usize)>,
) -> Result<String, HttpError> {
    let first = go!(catalog.name(a));
    let second = go!(catalog.name(b));
    Ok(format!(
        "{} {}",
        first.result().await?,
        second.result().await?
    ))
}

/// The handler's error: a failed task is a 404, the scope's own error a 503.
struct HttpError(http::StatusCode, String);

impl From<Error> for HttpError {
    fn from(error: Error) -> Self {
        let status = match error {
            Error::Failed { .. } => http::StatusCode::NOT_FOUND,
            _ => http::StatusCode::SERVICE_UNAVAILABLE,
        };
        HttpError(status, error.to_string())
    }
}

impl axum::response::IntoResponse for HttpError {
    fn into_response(self) -> axum::response::Response {
        (self.0, self.1).into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_fn_is_an_axum_handler() {
    use tower::ServiceExt as _;
    let catalog = Arc::new(Catalog {
        names: vec!["teapot", "kettle", "cup"],
    });
    let app = axum::Router::new()
        .route("/names/{a}/{b}", axum::routing::get(names_handler))
        .with_state(catalog);
    let request = |uri: &str| {
        http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let response = app.clone().oneshot(request("/names/0/2")).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 10)
        .await
        .unwrap();
    assert_eq!(&body[..], b"teapot cup");
    let missing = app.oneshot(request("/names/0/9")).await.unwrap();
    assert_eq!(missing.status(), http::StatusCode::NOT_FOUND);
}
