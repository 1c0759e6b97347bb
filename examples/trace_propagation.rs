//! One trace across two processes: a client whose `#[scoped(tracer)]` fn calls a server whose
//! handler is `#[scoped(tracer)]` too. The client's task writes its span into the request's
//! `traceparent` header (`go_go_scope::trace::inject_current`); the server's scope takes its
//! parent from it (`#[scoped(parent_from = headers)]`). Both export to the same OTLP endpoint,
//! where the server's scope span is a child of the client's task span.
//!
//! ```text
//! docker compose -f monitoring/docker-compose.yml up -d jaeger
//! cargo run -p go-go-scope-examples --example trace_propagation -- server --addr 127.0.0.1:8087 &
//! cargo run -p go-go-scope-examples --example trace_propagation -- client --addr 127.0.0.1:8087
//! kill -INT %1   # the server drains, then exports its spans
//! ```
//!
//! Spans go to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (default `http://localhost:4318/v1/traces`).

use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use go_go_scope::otel::OtelPipeline;
use go_go_scope::{Error, go, scoped};

/// The server's handler: its scope continues the caller's trace, and checks stock and price
/// concurrently, each in a task span of its own.
#[scoped(tracer, name = "reserve-stock", parent_from = headers, skip(headers))]
async fn reserve(headers: HeaderMap) -> String {
    let stock = go!(name = "check-stock", async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        3_u32
    });
    let price = go!(name = "look-up-price", async {
        tokio::time::sleep(Duration::from_millis(3)).await;
        4999_u32
    });
    let (stock, price) = (stock.await.1.unwrap_or(0), price.await.1.unwrap_or(0));
    format!("reserved 1 of {stock} at {price} cents")
}

/// The client's side: a task calls the server with the task's span in `traceparent`.
#[scoped(tracer, name = "place-order")]
async fn place_order(addr: String) -> Result<String, Error> {
    let call = go!(name = "call-inventory", async move {
        let mut headers = reqwest::header::HeaderMap::new();
        go_go_scope::trace::inject_current(&mut headers);
        let response = reqwest::Client::new()
            .get(format!("http://{addr}/reserve"))
            .headers(headers)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response.text().await.map_err(|e| e.to_string())
    });
    // A task whose body returns `Err` fails with that error (`Error::Failed`).
    call.result().await
}

async fn serve(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new().route("/reserve", get(|headers: HeaderMap| reserve(headers)));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("serving on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_default();
    let mut addr = "127.0.0.1:8087".to_owned();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value,
            _ => return Err(format!("unknown option {arg} (use --addr HOST:PORT)").into()),
        }
    }
    let service = match role.as_str() {
        "server" => "inventory-server",
        "client" => "checkout-client",
        _ => return Err("usage: trace_propagation server|client [--addr HOST:PORT]".into()),
    };
    let otel = OtelPipeline::new(service).install()?;
    let runtime = tokio::runtime::Runtime::new()?;
    if role == "server" {
        runtime.block_on(serve(&addr))?;
    } else {
        let reply = runtime.block_on(place_order(addr))?;
        println!("{reply}");
    }
    drop(runtime);
    // Outside the runtime: shutdown waits for the exporter's HTTP round trip.
    otel.shutdown()?;
    println!("{service}: spans exported");
    Ok(())
}
