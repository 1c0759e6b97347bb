//! An axum service whose requests each run in a scope of their own
//! ([`ScopeLayer`](go_go_scope::tower::ScopeLayer), feature `tower`).
//!
//! - `GET /orders/{id}` — a `#[scoped]` handler that looks up the customer and the order's lines
//!   concurrently with `go!`, each lookup bounded by its own timeout;
//! - `GET /report` — slow work (a few seconds): hang up before it answers and its tasks are
//!   cancelled at once, which the metrics show as `tasks_cancelled_total{scope="GET /report"}`;
//! - `GET /metrics` — the process-wide registry of every scope, by route, for Prometheus;
//! - `GET /debug/scopes` — the live tree: every request in flight, its tasks and what each
//!   waits on (`?format=json` for JSON).
//!
//! Every request's scope is named `"<METHOD> <route>"` (axum's `MatchedPath`), has a 5 s
//! deadline (past it the answer is `504`) and is cancelled on Ctrl-C, when the server drains.
//!
//! ```text
//! cargo run -p go-go-scope-examples --example axum_service -- --addr 127.0.0.1:9096
//! curl -s http://127.0.0.1:9096/orders/7
//! curl -s -m 0.5 http://127.0.0.1:9096/report    # hang up after half a second
//! curl -s http://127.0.0.1:9096/metrics | grep 'GET /report'
//! curl -s -m 0.5 http://127.0.0.1:9096/report & curl -s http://127.0.0.1:9096/debug/scopes
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Path};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use go_go_scope::tower::ScopeLayer;
use go_go_scope::{CancellationToken, Error, Scope, go, introspect, scoped};
use tokio::net::TcpListener;
use tokio::time::sleep;

/// A stand-in for a database call.
async fn customer_of(order: u64) -> Result<String, std::io::Error> {
    sleep(Duration::from_millis(15)).await;
    Ok(format!("customer-{}", order % 100))
}

/// A stand-in for a slower database call; order 13's lines never arrive.
async fn lines_of(order: u64) -> Result<Vec<u32>, std::io::Error> {
    let delay = if order == 13 { 60_000 } else { 25 };
    sleep(Duration::from_millis(delay)).await;
    Ok(vec![1999, 500])
}

/// Both lookups run at once, as tasks of the handler's scope (`order`, a child of the
/// request's); the slower one has its own timeout.
#[scoped(metrics)]
async fn order(Path(id): Path<u64>) -> Result<String, (StatusCode, String)> {
    let customer = go!(customer_of(id));
    let lines = go!(name = "lines", timeout = "300ms", lines_of(id));
    let (customer, lines) = (customer.result().await, lines.result().await);
    match (customer, lines) {
        (Ok(customer), Ok(lines)) => Ok(format!(
            "order {id} for {customer}: {} lines, {} cents\n",
            lines.len(),
            lines.iter().sum::<u32>()
        )),
        (Err(error), _) | (_, Err(error)) => Err(failure(&error)),
    }
}

/// Slow work split in three parts, all running until the report is done — or until the client
/// goes away, which ends the request's scope and cancels them.
async fn report() -> String {
    let parts: Vec<_> = (1..=3)
        .map(|part| {
            go!(name = "report part", async move {
                sleep(Duration::from_millis(1_000 * part)).await;
                part
            })
        })
        .collect();
    let mut done = 0;
    for part in parts {
        done += part.result().await.map_or(0, |_| 1);
    }
    format!("report ready: {done} parts\n")
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, go_go_scope::metrics::CONTENT_TYPE)],
        go_go_scope::metrics::encode(),
    )
}

/// What every request in flight is doing, as an indented tree (or JSON with `?format=json`).
async fn debug_scopes(request: axum::extract::Request) -> impl IntoResponse {
    let tree = introspect::snapshot();
    let json = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "format=json"));
    if json {
        ([(header::CONTENT_TYPE, "application/json")], tree.to_json())
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            tree.to_string(),
        )
    }
}

fn failure(error: &Error) -> (StatusCode, String) {
    let status = if error.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, format!("{error}\n"))
}

/// The router: every route's requests in a scope named after the route.
fn app(shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/orders/{id}", get(order))
        .route("/report", get(report))
        .route_layer(ScopeLayer::with(move |request| {
            let route = request
                .extensions
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            Scope::builder()
                .name(format!("{} {route}", request.method))
                .timeout(Duration::from_secs(5))
                .metrics(true)
                .cancel_on(shutdown.clone())
        }))
        // Outside the scope layer: the admin endpoints are not themselves measured or listed.
        .route("/metrics", get(metrics))
        .route("/debug/scopes", get(debug_scopes))
}

fn parse_addr() -> Result<SocketAddr, String> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 9096));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => {
                addr = value.parse().map_err(|e| format!("--addr {value}: {e}"))?;
            }
            (other, _) => return Err(format!("unknown or incomplete option {other} (use --addr)")),
        }
    }
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(parse_addr()?).await?;
    println!("serving on http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    axum::serve(listener, app(shutdown))
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            println!("shutting down: requests in flight are cancelled");
            on_signal.cancel();
        })
        .await?;
    Ok(())
}
