//! A ten-second tour: one web request handled by a `#[scoped]` fn.
//!
//! The handler fetches a user and their orders concurrently under a deadline. The orders service
//! fails once and is retried, the recommendation service fails and is skipped, a coupon code is
//! parsed with `try_go!`, and an audit write is still running when the handler returns — so it
//! is cancelled, because nothing may outlive the scope that started it. The same request then
//! runs with a deadline that is too short.
//!
//! Everything the scopes report is printed locally: each span as it closes (by the small
//! `tracing` layer at the bottom of this file) and, at the end, the Prometheus metrics the
//! process-wide registry would serve at `/metrics`. Nothing external is needed.
//!
//! Run it with `cargo run -p go-go-scope-examples --example tour`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use go_go_scope::prelude::*;
use tokio::time::sleep;

#[derive(Debug)]
struct User {
    name: &'static str,
}

#[derive(Debug)]
struct Order {
    total_cents: u64,
}

/// The handler's error: anything a scope reports, or a service's own failure.
#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error(transparent)]
    Scope(#[from] Error),
}

async fn fetch_user(id: u64) -> Result<User, std::io::Error> {
    sleep(Duration::from_millis(40)).await;
    Ok(User {
        name: if id == 7 { "Ada" } else { "Grace" },
    })
}

static ORDER_CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails every other call: the first attempt of each request fails, the retry succeeds.
async fn fetch_orders(_user_id: u64) -> Result<Vec<Order>, std::io::Error> {
    sleep(Duration::from_millis(30)).await;
    if ORDER_CALLS.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
        return Err(std::io::Error::other("orders service: connection reset"));
    }
    Ok(vec![
        Order { total_cents: 1999 },
        Order { total_cents: 4500 },
    ])
}

async fn fetch_recommendations(_user_id: u64) -> Result<Vec<String>, std::io::Error> {
    sleep(Duration::from_millis(10)).await;
    Err(std::io::Error::other("recommendation service unavailable"))
}

async fn write_audit_log(user_id: u64) {
    sleep(Duration::from_secs(3600)).await;
    println!("audit written for {user_id} (never printed: the scope ends first)");
}

/// One request. The scope of this fn owns every task spawned with `go!`.
#[scoped(timeout = "2s", tracer, metrics, concurrency = 4, skip(coupon))]
async fn handle_request(user_id: u64, coupon: &'static str) -> Result<String, AppError> {
    let user = go!(name = "fetch-user", fetch_user(user_id));
    let orders = go!(name = "fetch-orders", retry = 2, fetch_orders(user_id));
    let recommendations = go!(name = "recommendations", fetch_recommendations(user_id));
    go!(name = "audit-log", write_audit_log(user_id)); // still running when we return

    // Go-style tuples: the error and the value, exactly one of them set.
    let (err, recs) = recommendations.await;
    if let Some(e) = err {
        println!("    recommendations skipped: {e}");
    }
    // Or a Result, for `?`: a failure here ends the request (and cancels the other tasks).
    let user = user.result().await?;
    let orders = orders.result().await?;
    // try_go! turns one fallible expression into a tuple without leaving the happy path.
    let (coupon_err, percent) = try_go!(coupon.trim_start_matches("SAVE").parse::<u64>());
    if let Some(e) = coupon_err {
        println!("    coupon {coupon:?} ignored: {e}");
    }
    let total: u64 = orders.iter().map(|o| o.total_cents).sum();
    let due = total - total * percent.unwrap_or(0) / 100;
    Ok(format!(
        "{} has {} orders, ${}.{:02} due, {} recommendations",
        user.name,
        orders.len(),
        due / 100,
        due % 100,
        recs.map_or(0, |r| r.len())
    ))
}

/// The same handler, called inside a scope whose deadline is shorter than the work.
#[scoped(name = "impatient-caller", timeout = "50ms", tracer)]
async fn impatient_caller() -> Result<String, AppError> {
    handle_request(8, "SAVEten").await
}

#[tokio::main]
async fn main() {
    spans::print_closed_spans();

    println!("1. a request, handled by a #[scoped] fn:");
    match handle_request(7, "SAVE10").await {
        Ok(page) => println!("  => {page}\n"),
        Err(e) => println!("  => failed: {e}\n"),
    }

    println!("2. the same request under a 50 ms deadline (the parent's deadline reaches it):");
    match impatient_caller().await {
        Ok(page) => println!("  => {page}\n"),
        Err(e) => println!("  => failed: {e}\n"),
    }

    println!("3. what the process-wide registry serves at /metrics:");
    for line in go_go_scope::metrics::encode().lines() {
        let ours = line.contains("scope=\"handle_request\"");
        let wanted = [
            "tasks_spawned",
            "tasks_completed",
            "tasks_failed",
            "avg_seconds",
        ];
        if ours && wanted.iter().any(|w| line.contains(w)) {
            println!("  {line}");
        }
    }
}

/// Prints each go-go-scope span when it closes: a small `tracing` layer, standing in for the
/// OpenTelemetry exporter a service would install (see the `jaeger_tracing` example).
mod spans {
    use std::fmt::Write as _;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Level, Subscriber};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::{Layer, filter};

    pub(crate) fn print_closed_spans() {
        let layer =
            SpanPrinter.with_filter(filter::Targets::new().with_target("go_go_scope", Level::INFO));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("the tour's only subscriber");
    }

    /// The fields worth printing, collected as the span records them.
    #[derive(Default)]
    struct Fields {
        name: Option<String>,
        shown: Vec<(&'static str, String)>,
    }

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.record(field, format!("{value:?}").trim_matches('"').to_owned());
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.record(field, value.to_owned());
        }
    }

    impl Fields {
        fn record(&mut self, field: &Field, value: String) {
            const SHOWN: [&str; 6] = [
                "task.duration_ms",
                "scope.duration_ms",
                "task.retry_attempts",
                "task.error_reason",
                "scope.errors",
                "otel.status_description",
            ];
            if field.name() == "otel.name" {
                self.name = Some(value);
            } else if let Some(key) = SHOWN.iter().find(|k| **k == field.name()) {
                self.shown.retain(|(k, _)| k != key);
                self.shown.push((key, value));
            }
        }
    }

    struct SpanPrinter;

    impl<S> Layer<S> for SpanPrinter
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(fields);
            }
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id)
                && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
            {
                values.record(fields);
            }
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(&id) else { return };
            let depth = span.scope().skip(1).count();
            let extensions = span.extensions();
            let Some(fields) = extensions.get::<Fields>() else {
                return;
            };
            let kind = span.name();
            let mut line = format!(
                "  {:indent$}span {} ({kind})",
                "",
                fields.name.as_deref().unwrap_or(kind),
                indent = depth * 2
            );
            for (key, value) in &fields.shown {
                let _ = write!(line, " {key}={value}");
            }
            println!("{line}");
        }
    }
}
