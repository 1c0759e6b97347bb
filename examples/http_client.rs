//! HTTP calls with per-attempt timeouts, retries, a deadline, hedging and a bounded fan-out,
//! made with `reqwest` against a small axum server the example starts on 127.0.0.1.
//!
//! The server is a task of the same scope as the client code, and each connection a task of
//! that scope: when `main`'s scope ends, the server and every connection it is still serving are
//! cancelled and awaited. Each request runs in a scope of its own
//! ([`ScopeLayer`](go_go_scope::tower::ScopeLayer)), and the server reports when a client hangs
//! up, which makes the client-side cancellations visible: a timed out or losing request really
//! drops its connection, and the server's handler with it.
//!
//! Run: `cargo run -p go-go-scope-examples --example http_client`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get as route;
use go_go_scope::tower::ScopeLayer;
use go_go_scope::{Error, ParallelOpts, Retry, Scope, TimeoutOrigin};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};

// ---------------------------------------------------------------------------------------------
// The client: reqwest, one shared connection pool.

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(reqwest::Client::new);

/// What can go wrong with one request.
#[derive(Debug)]
enum HttpError {
    Request(reqwest::Error),
    Status(u16),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Request(e) => write!(f, "request failed: {e}"),
            HttpError::Status(code) => write!(f, "HTTP status {code}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Request(e) => Some(e),
            HttpError::Status(_) => None,
        }
    }
}

impl HttpError {
    /// Worth retrying: the server or the network had a bad moment. A 4xx will not get better.
    fn is_transient(&self) -> bool {
        match self {
            HttpError::Request(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            HttpError::Status(code) => *code >= 500,
        }
    }
}

/// `GET path`, returning the body of a 2xx response.
async fn get(addr: SocketAddr, path: &str) -> Result<String, HttpError> {
    let response = CLIENT
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .map_err(HttpError::Request)?;
    let status = response.status();
    if !status.is_success() {
        return Err(HttpError::Status(status.as_u16()));
    }
    response.text().await.map_err(HttpError::Request)
}

/// The retry policy for idempotent GETs: back off exponentially, retry only transient errors
/// and our own per-attempt timeouts.
fn transient_retries(retries: u32) -> Retry {
    Retry::exponential(retries, Duration::from_millis(20))
        .jitter(true)
        .retry_if(|error| {
            error.is_timeout()
                || error
                    .downcast_ref::<HttpError>()
                    .is_some_and(HttpError::is_transient)
        })
        .on_retry(|error, retry| println!("    client: retry #{retry} after: {error}"))
}

/// The error a failed request ended with, in one line.
fn describe(error: &Error) -> String {
    match error {
        Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Task(task),
        } => format!("attempt of `{task}` timed out after {after:?}"),
        Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Scope(scope),
        } => format!("deadline of scope `{scope}` ({after:?}) passed"),
        other => match other.downcast_ref::<HttpError>() {
            Some(http) => format!("{http} (an HttpError, kept with its type)"),
            None => other.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// A small axum server: a few routes with delays and failures.

/// Says so when dropped before `answered`: the client hung up and the server dropped the
/// request's handler (and, with it, the request's scope).
struct HangUpReport {
    path: String,
    since: Instant,
    answered: bool,
}

impl Drop for HangUpReport {
    fn drop(&mut self) {
        if !self.answered {
            let waited = self.since.elapsed().as_millis();
            println!(
                "    server: client hung up on {} after {waited} ms",
                self.path
            );
        }
    }
}

/// Waits `delay_ms`, then answers; a hang-up meanwhile drops this future and is reported.
async fn answer(
    path: String,
    delay_ms: u64,
    status: StatusCode,
    body: &str,
) -> (StatusCode, String) {
    let mut report = HangUpReport {
        path,
        since: Instant::now(),
        answered: false,
    };
    sleep(Duration::from_millis(delay_ms)).await;
    report.answered = true;
    println!("    server: GET {} -> {}", report.path, status.as_u16());
    (status, body.to_owned())
}

fn server() -> Router {
    let flaky_hits = Arc::new(AtomicU32::new(0));
    Router::new()
        .route(
            "/users/{id}",
            route(|Path(id): Path<u32>| async move {
                let (delay, name) = match id {
                    1 => (10, "Ada"),
                    2 => (30, "Grace"),
                    3 => (20, "Edsger"),
                    _ => return (StatusCode::NOT_FOUND, String::new()),
                };
                let body = format!(r#"{{"id":{id},"name":"{name}"}}"#);
                answer(format!("/users/{id}"), delay, StatusCode::OK, &body).await
            }),
        )
        .route(
            "/slow",
            route(|| answer("/slow".into(), 5_000, StatusCode::OK, "finally")),
        )
        .route(
            "/mirror/{region}",
            route(|Path(region): Path<String>| async move {
                let delay = if region == "eu" { 300 } else { 40 };
                let body = format!("answer from {region}");
                answer(format!("/mirror/{region}"), delay, StatusCode::OK, &body).await
            }),
        )
        .route(
            "/flaky",
            route(|State(hits): State<Arc<AtomicU32>>| async move {
                if hits.fetch_add(1, Ordering::SeqCst) < 2 {
                    answer("/flaky".into(), 5, StatusCode::SERVICE_UNAVAILABLE, "").await
                } else {
                    answer("/flaky".into(), 5, StatusCode::OK, "worked this time").await
                }
            }),
        )
        .with_state(flaky_hits)
        // Each request in a scope of its own, a child of the connection's.
        .layer(ScopeLayer::new())
}

/// Accepts connections until cancelled; each connection is a task of the ambient scope, so it
/// ends, at the latest, with it.
async fn serve(listener: TcpListener) {
    let app = server();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        drop(Scope::current().spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }));
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::from_task_error)?;
    let addr = listener.local_addr().map_err(Error::from_task_error)?;
    println!("server listening on http://{addr}");

    Scope::run(Scope::builder().name("http-example"), |s| async move {
        let _server = s.spawn(serve(listener));

        println!("\n1. one GET, each attempt bounded by 500 ms");
        let user = s
            .task(move |_| get(addr, "/users/1"))
            .name("get /users/1")
            .timeout(Duration::from_millis(500))
            .spawn();
        match user.await {
            (None, Some(body)) => println!("  got {body}"),
            (Some(err), _) => println!("  failed: {}", describe(&err)),
            (None, None) => unreachable!(),
        }

        println!("\n2. a slow endpoint meets the per-attempt timeout");
        let (err, _) = s
            .task(move |_| get(addr, "/slow"))
            .name("get /slow")
            .timeout(Duration::from_millis(100))
            .spawn()
            .await;
        println!("  failed: {}", describe(&err.expect("it times out")));

        println!("\n3. transient 503s are retried with backoff");
        let flaky = s
            .task(move |attempt| {
                println!("    client: attempt {attempt}");
                get(addr, "/flaky")
            })
            .name("get /flaky")
            .timeout(Duration::from_millis(500))
            .retry(transient_retries(4))
            .spawn();
        println!("  got {}", flaky.result().await?);

        println!("\n4. a 404 is not retried, and the error keeps its type");
        let (err, _) = s
            .task(move |attempt| {
                println!("    client: attempt {attempt}");
                get(addr, "/missing")
            })
            .name("get /missing")
            .retry(transient_retries(4))
            .spawn()
            .await;
        let err = err.expect("404");
        assert!(matches!(
            err.downcast_ref::<HttpError>(),
            Some(HttpError::Status(404))
        ));
        println!("  failed: {}", describe(&err));

        println!("\n5. a 250 ms deadline on the whole call bounds every attempt and retry");
        let started = Instant::now();
        let deadline = s.child().name("lookup").timeout(Duration::from_millis(250));
        let outcome = Scope::run(deadline, |lookup| async move {
            lookup
                .task(move |_| get(addr, "/slow"))
                .name("get /slow")
                .timeout(Duration::from_secs(1))
                .retry(transient_retries(10))
                .spawn()
                .await
        })
        .await;
        let err = match outcome {
            Ok((err, _)) => err.expect("the deadline passes"),
            Err(scope_err) => scope_err,
        };
        println!(
            "  failed after {} ms: {}",
            started.elapsed().as_millis(),
            describe(&err)
        );
        sleep(Duration::from_millis(20)).await; // lets the server report the hang-up first

        println!("\n6. a hedged request: ask two mirrors, keep the first answer");
        let started = Instant::now();
        let (err, fastest) = s
            .race([get(addr, "/mirror/eu"), get(addr, "/mirror/us")])
            .await;
        match (err, fastest) {
            (None, Some(body)) => println!(
                "  got `{body}` in {} ms; the loser was cancelled before race returned",
                started.elapsed().as_millis()
            ),
            (err, _) => println!("  every mirror failed: {err:?}"),
        }
        sleep(Duration::from_millis(20)).await; // lets the server report the hang-up first

        println!("\n7. fan out over four URLs, two at a time, keeping partial results");
        let paths = ["/users/1", "/users/2", "/missing", "/users/3"];
        let fetched = s
            .parallel(
                paths.map(|path| get(addr, path)),
                ParallelOpts {
                    concurrency: Some(2),
                    ..ParallelOpts::default()
                },
            )
            .await;
        for (path, (err, body)) in paths.iter().zip(fetched) {
            match (err, body) {
                (None, Some(body)) => println!("  {path}: {body}"),
                (Some(err), _) => println!("  {path}: {}", describe(&err)),
                (None, None) => unreachable!(),
            }
        }

        println!("\nmain's scope ends: the server task and its connections are cancelled");
        Ok::<_, Error>(())
    })
    .await??;
    println!("done: nothing is left running");
    Ok(())
}
