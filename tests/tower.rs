//! The tower layer: every request runs in a scope of its own, which ends with the response, or
//! is cancelled when the request is abandoned, timed out or shut down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, MatchedPath};
use axum::routing::get;
use go_go_scope::tower::ScopeLayer;
use go_go_scope::{CancellationToken, Scope, go, scoped};
use http::{Request, StatusCode};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// Fires when dropped: tells a test that a task's future is gone.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Scopes named `"<METHOD> <route>"`, as the module docs recommend.
fn by_route() -> ScopeLayer {
    ScopeLayer::with(|request| {
        let route = request
            .extensions
            .get::<MatchedPath>()
            .map_or("unmatched", |p| p.as_str());
        Scope::builder().name(format!("{} {route}", request.method))
    })
}

fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn body_text(response: http::Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Waits for a signal, with a bound that only a broken implementation reaches.
async fn signalled(rx: oneshot::Receiver<()>) {
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the task's future was never dropped")
        .expect("the signal's sender was lost");
}

#[tokio::test]
async fn a_handler_runs_in_its_request_scope_and_leftover_tasks_end_with_the_response() {
    let (tx, rx) = oneshot::channel();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(move || {
                let tx = Arc::clone(&tx);
                async move {
                    let guard = DropSignal(tx.lock().unwrap().take());
                    // Left running on purpose: the response does not wait for it.
                    go!(async move {
                        let _guard = guard;
                        std::future::pending::<()>().await
                    });
                    let quick = go!(async { 40 + 2 });
                    let name = Scope::current().name().to_owned();
                    format!("{name}: {}", quick.await.1.unwrap())
                }
            }),
        )
        .route_layer(by_route());

    let response = app.oneshot(get_request("/orders/7")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "GET /orders/{id}: 42");
    // The scope closed before the response came back: the pending task is already gone.
    rx.await
        .expect("the leftover task was not cancelled with its request");
}

#[scoped]
async fn nested() -> String {
    let me = Scope::current();
    format!("{} in {}", me.name(), me.parent().unwrap().name())
}

#[tokio::test]
async fn a_scoped_fn_called_by_a_handler_is_a_child_of_the_request_scope() {
    let app = Router::new()
        .route("/nested", get(nested))
        .route_layer(by_route());
    let response = app.oneshot(get_request("/nested")).await.unwrap();
    assert_eq!(body_text(response).await, "nested in GET /nested");
}

#[tokio::test]
async fn the_request_scope_is_an_extension_of_the_request() {
    let app = Router::new()
        .route(
            "/ext",
            get(|Extension(scope): Extension<Scope>| async move {
                let task = scope.spawn(async { "from the extension" });
                task.await.1.unwrap()
            }),
        )
        .layer(ScopeLayer::new());
    let response = app.oneshot(get_request("/ext")).await.unwrap();
    assert_eq!(body_text(response).await, "from the extension");
}

#[tokio::test]
async fn an_abandoned_request_cancels_its_tasks() {
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let signals = Arc::new(std::sync::Mutex::new(Some((started_tx, dropped_tx))));
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let signals = Arc::clone(&signals);
                async move {
                    let (started, dropped) = signals.lock().unwrap().take().unwrap();
                    let work = go!(async move {
                        let _guard = DropSignal(Some(dropped));
                        let _ = started.send(());
                        std::future::pending::<&'static str>().await
                    });
                    work.await.1.unwrap_or("cancelled")
                }
            }),
        )
        .route_layer(by_route());

    let request = tokio::spawn(app.oneshot(get_request("/slow")));
    started_rx.await.unwrap();
    // The client goes away: the server drops the request's future.
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    signalled(dropped_rx).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_past_its_deadline_answers_504() {
    let app = Router::new()
        .route(
            "/late",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        )
        .layer(ScopeLayer::with(|_| {
            Scope::builder()
                .name("late")
                .timeout(Duration::from_millis(100))
        }));
    let response = app.oneshot(get_request("/late")).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn shutting_down_answers_503_and_cancels_the_handlers_tasks() {
    let shutdown = CancellationToken::new();
    let ended = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let started = Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let counter = Arc::clone(&ended);
    let app = Router::new()
        .route(
            "/wait",
            get(move || {
                let started = started.lock().unwrap().take();
                let counter = Arc::clone(&counter);
                async move {
                    let task = go!(async move {
                        struct Count(Arc<AtomicUsize>);
                        impl Drop for Count {
                            fn drop(&mut self) {
                                self.0.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        let _count = Count(counter);
                        if let Some(started) = started {
                            let _ = started.send(());
                        }
                        std::future::pending::<()>().await
                    });
                    let _ = task.await;
                    "finished"
                }
            }),
        )
        .layer(ScopeLayer::with({
            let shutdown = shutdown.clone();
            move |_| Scope::builder().name("wait").cancel_on(shutdown.clone())
        }));
    let request = tokio::spawn(app.oneshot(get_request("/wait")));
    started_rx.await.unwrap();
    shutdown.cancel();
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The scope closed before answering: the task was dropped, not left behind.
    assert_eq!(ended.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_invalid_builder_answers_500_without_running_the_handler() {
    let ran = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&ran);
    let app = Router::new()
        .route(
            "/bad",
            get(move || {
                seen.fetch_add(1, Ordering::SeqCst);
                async { "ran" }
            }),
        )
        .layer(ScopeLayer::with(|_| {
            Scope::builder().timeout(Duration::ZERO)
        }));
    let response = app.oneshot(get_request("/bad")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}
