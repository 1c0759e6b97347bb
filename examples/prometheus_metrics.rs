//! A service that handles orders in scopes and serves their metrics for Prometheus at
//! `http://127.0.0.1:9095/metrics` (Prometheus text format 0.0.4).
//!
//! Every order is a scope named `process-order` with metrics on: validate, charge (every fourth
//! card is declined) and notify tasks, plus a database connection provided to the scope and
//! closed with it. Each order also asks three suppliers for a quote and takes the first answer
//! (scope `quote`: the two losers are cancelled, which is not an error), and books shipping
//! with a 50 ms timeout that every fourth order misses (scope `shipping`: the timeout is a
//! failure, and its run time is in the histogram), through a carrier circuit breaker that the
//! shipping scopes share (`goscope_breaker_state{scope="shipping"}`). The HTTP server is itself a scope
//! (`http-server`), one task per connection, each serving an axum router. The process-wide registry sums every scope by name,
//! so the counters keep growing across orders: `goscope_tasks_spawned_total{scope="process-order"}`
//! and friends.
//!
//! `--sessions N` then builds N scopes named per session (`session-1`, `session-2`, ...): the
//! mistake the registry's cap on scope names guards against. Past 1 000 names they are counted
//! under `scope="__other__"`.
//!
//! Introspection is on for the whole process, so `/debug/scopes` answers "what is this service
//! waiting on?": the live tree of every scope and task and what each task waits on, as text, or
//! as JSON with `?format=json`. The same tree feeds the `goscope_tasks_by_state` gauge.
//!
//! ```text
//! cargo run -p go-go-scope-examples --example prometheus_metrics               # an order every 200 ms
//! cargo run -p go-go-scope-examples --example prometheus_metrics -- --orders 8 # 8 orders, then serve
//! curl -s http://127.0.0.1:9095/metrics              # Prometheus text 0.0.4
//! curl -s http://127.0.0.1:9095/metrics/openmetrics  # the same in OpenMetrics
//! curl -s http://127.0.0.1:9095/debug/scopes
//! curl -s 'http://127.0.0.1:9095/debug/scopes?format=json'
//! ```
//!
//! With `docker compose -f monitoring/docker-compose.yml up -d`, Prometheus scrapes it and the
//! Grafana dashboard shows it (http://localhost:3000).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use go_go_scope::{CircuitBreaker, Error, Scope, introspect, tracked_wait};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::sleep;

struct Options {
    addr: SocketAddr,
    /// Stop taking orders after this many (then keep serving); `None`: forever.
    orders: Option<u64>,
    /// Scopes named per session to build once the orders are done.
    sessions: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 9095)),
        orders: None,
        sessions: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--addr" => options.addr = value.parse().map_err(|e| format!("--addr {value}: {e}"))?,
            "--orders" => {
                options.orders = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--orders {value}: {e}"))?,
                )
            }
            "--sessions" => {
                options.sessions = value
                    .parse()
                    .map_err(|e| format!("--sessions {value}: {e}"))?
            }
            other => {
                return Err(format!(
                    "unknown option {other} (use --addr, --orders, --sessions)"
                ));
            }
        }
    }
    Ok(options)
}

/// A stand-in for a pooled database connection.
struct Db {
    order_id: u64,
}

async fn handle_order(order_id: u64) -> Result<(), Error> {
    let scope = Scope::builder()
        .name("process-order")
        .metrics(true)
        .concurrency(2)
        .timeout(Duration::from_secs(5));
    Scope::run(scope, |s| async move {
        let db = s
            .provide_with(
                || async move {
                    sleep(Duration::from_millis(2)).await;
                    Ok::<_, std::io::Error>(Db { order_id })
                },
                |db| async move { drop(db) },
            )
            .await?;
        s.spawn(async move { sleep(Duration::from_millis(5 + order_id % 10)).await })
            .result()
            .await?;
        let charge = s.try_spawn(async move {
            sleep(Duration::from_millis(20)).await;
            if db.order_id.is_multiple_of(4) {
                Err(std::io::Error::other("card declined"))
            } else {
                Ok(())
            }
        });
        if let Err(declined) = charge.result().await {
            println!("order {order_id}: {declined}");
            return Ok(());
        }
        s.spawn(async { sleep(Duration::from_millis(3)).await })
            .result()
            .await?;
        Ok::<_, Error>(())
    })
    .await?
}

/// Asks three suppliers for a quote and keeps the first answer; the slower two are cancelled.
async fn fetch_quote(order_id: u64) -> Result<u64, Error> {
    let scope = Scope::builder().name("quote").metrics(true);
    Scope::run(scope, |s| async move {
        let suppliers = [(30, 110), (5, 100), (60, 90)].map(|(delay_ms, price)| async move {
            sleep(Duration::from_millis(delay_ms)).await;
            Ok::<u64, Error>(price + order_id % 3)
        });
        let (error, price) = s.race(suppliers).await;
        match (error, price) {
            (_, Some(price)) => Ok(price),
            (Some(error), None) => Err(error),
            (None, None) => Err(Error::Closed),
        }
    })
    .await?
}

/// Books shipping with a 50 ms budget; every fourth carrier takes 80 ms and times out. Every
/// booking goes through the carrier's circuit breaker, shared by the shipping scopes.
async fn book_shipping(order_id: u64, carrier: &CircuitBreaker) -> Result<(), Error> {
    let scope = Scope::builder()
        .name("shipping")
        .metrics(true)
        .circuit_breaker(carrier.clone());
    Scope::run(scope, |s| async move {
        let carrier_ms = if order_id.is_multiple_of(4) { 80 } else { 10 };
        let (error, _) = s
            .task(move |_| async move {
                sleep(Duration::from_millis(carrier_ms)).await;
                Ok::<_, Error>(())
            })
            .timeout(Duration::from_millis(50))
            .spawn()
            .await;
        if let Some(error) = error {
            println!("order {order_id}: shipping {error}");
        }
        Ok::<_, Error>(())
    })
    .await?
}

/// Builds `n` scopes named per session: a mistake the registry's cap contains.
async fn run_sessions(n: u64) -> Result<(), Error> {
    for session in 1..=n {
        let scope = Scope::builder()
            .name(format!("session-{session}"))
            .metrics(true)
            .build()?;
        scope.spawn(async {}).await;
        scope.close().await?;
    }
    Ok(())
}

/// The registry in OpenMetrics, through an application's own `prometheus-client` registry.
fn openmetrics() -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry
        .sub_registry_with_prefix("goscope")
        .register_collector(Box::new(go_go_scope::metrics::registry().collector()));
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => text,
        Err(_) => String::new(),
    }
}

/// The endpoints: `/metrics` (Prometheus text 0.0.4), `/metrics/openmetrics` and the live tree
/// at `/debug/scopes`.
fn routes() -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, go_go_scope::metrics::CONTENT_TYPE)],
                    go_go_scope::metrics::encode(),
                )
            }),
        )
        .route(
            "/metrics/openmetrics",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    openmetrics(),
                )
            }),
        )
        .route("/debug/scopes", get(debug_scopes))
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /metrics or /debug/scopes\n") })
}

/// The admin endpoint: every live scope and task, as text or (`?format=json`) JSON.
async fn debug_scopes(uri: Uri) -> impl IntoResponse {
    let tree = introspect::snapshot();
    let json = uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "format=json"));
    let (content_type, body) = if json {
        ("application/json", tree.to_json())
    } else {
        ("text/plain; charset=utf-8", tree.to_string())
    };
    ([(header::CONTENT_TYPE, content_type)], body)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    let listener = TcpListener::bind(options.addr).await?;
    println!("metrics at http://{}/metrics", listener.local_addr()?);

    let server = Scope::builder().name("http-server").metrics(true).build()?;
    let connections = server.clone();
    let app = routes();
    let accept = server.spawn(async move {
        loop {
            // Named, so /debug/scopes shows what the accept loop waits on.
            let Ok((stream, _)) = tracked_wait("tcp accept", listener.accept()).await else {
                continue;
            };
            // Each connection is a task of the server's scope, served by the axum router.
            let service = TowerToHyperService::new(app.clone());
            drop(connections.spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }));
        }
    });

    let carrier = CircuitBreaker::builder().failure_threshold(5).build()?;
    let mut order_id = 0;
    while options.orders.is_none_or(|n| order_id < n) {
        order_id += 1;
        if let Err(error) = handle_order(order_id).await {
            eprintln!("order {order_id} failed: {error}");
        }
        match fetch_quote(order_id).await {
            Ok(price) => println!("order {order_id}: quoted {price}"),
            Err(error) => eprintln!("order {order_id}: no quote: {error}"),
        }
        if let Err(error) = book_shipping(order_id, &carrier).await {
            eprintln!("order {order_id}: shipping failed: {error}");
        }
        if options.orders.is_none() {
            sleep(Duration::from_millis(200)).await;
        }
    }
    run_sessions(options.sessions).await?;
    println!(
        "{order_id} orders handled, {} sessions; serving metrics until Ctrl-C",
        options.sessions
    );

    tokio::signal::ctrl_c().await?;
    accept.cancel();
    server.close().await?;
    Ok(())
}
