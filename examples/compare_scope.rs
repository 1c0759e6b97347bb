//! The program of `docs/vs-tokio.md`, written with go-go-scope. `compare_tokio` is the same
//! program written by hand with Tokio and tokio-util; both print the same story.
//!
//! One request loads a user and their orders concurrently, under a 2 s deadline. Each call is
//! retried with exponential backoff, each attempt bounded by 200 ms. The orders service sits
//! behind a circuit breaker shared by every request. The first failure ends the request and
//! cancels the other call; nothing outlives the request.
//!
//! Run: `cargo run -p go-go-scope-examples --example compare_scope`

use std::sync::Arc;

use go_go_scope_examples::shop::{Api, Page};
use tokio::time::Instant;

// region: program
use go_go_scope::{Error, go, scoped};
use go_go_scope_examples::shop::Order;

#[scoped(name = "load-page", timeout = "2s", metrics)]
async fn load_page(api: Arc<Api>, id: u64) -> Result<Page, Error> {
    let users = api.clone();
    let user = go!(
        timeout = "200ms",
        retry(max = 3, delay = "5ms", backoff = "exponential"),
        users.clone().fetch_user(id)
    );
    let orders = go!(orders_of(api, id));
    // The first error returns at once; the scope's end then cancels the other call.
    let (user, orders) = tokio::try_join!(user.result(), orders.result())?;
    Ok(Page { user, orders })
}

/// The breaker belongs to this fn: consecutive failures across requests open it.
#[scoped(circuit_breaker(failure_threshold = 3, reset_timeout = "30s"))]
async fn orders_of(api: Arc<Api>, id: u64) -> Result<Vec<Order>, Error> {
    go!(
        timeout = "200ms",
        retry(max = 3, delay = "5ms", backoff = "exponential"),
        api.clone().fetch_orders(id)
    )
    .result()
    .await
}
// endregion: program

#[tokio::main]
async fn main() {
    let api = Arc::new(Api::default());
    let request = |n: u32| {
        let api = api.clone();
        async move {
            let began = Instant::now();
            let outcome = load_page(api.clone(), 7).await.map_err(|e| match e {
                Error::CircuitOpen => "circuit breaker is open".to_string(),
                other => other.to_string(),
            });
            let (started, ended) = api.user_calls();
            println!(
                "request {n}: {} after {} ms (user lookups started {started}, finished {ended})",
                outcome.map_or_else(|e| format!("error: {e}"), |page| page.to_string()),
                began.elapsed().as_millis(),
            );
        }
    };

    api.fail_user_lookups(1);
    request(1).await; // the user lookup fails once and is retried
    api.set_orders_down(true);
    request(2).await; // orders fail three times: the breaker opens, the user lookup is cancelled
    request(3).await; // the breaker refuses at once: the user lookup is cancelled right away
    // Every "load-page" scope, summed by name; `go_go_scope::metrics::encode()` serves /metrics.
    let m = go_go_scope::metrics::registry()
        .snapshot_of("load-page")
        .expect("metrics are on");
    println!(
        "metrics: tasks spawned {}, completed {}, failed {}",
        m.tasks_spawned, m.tasks_completed, m.tasks_failed
    );
}
