//! A ten-second tour: one request handled in a scope.
//!
//! Fetches a user and their orders concurrently under a deadline, while a recommendation call
//! fails and a slow audit call is still running when the handler returns — and is cancelled,
//! because nothing may outlive the scope that started it.
//!
//! Then the same kind of work with the DSL: a `#[scoped]` fn spawning with `go!`, a nested
//! scoped fn whose deadline passes, and `try_go!` turning fallible expressions into tuples.
//!
//! Run it with `cargo run -p go-go-scope-examples --example tour`.

use std::sync::Arc;
use std::time::Duration;

use go_go_scope::{Error, Hooks, Scope, go, scoped, try_go};
use tokio::time::sleep;

#[derive(Debug)]
struct User {
    id: u64,
    name: &'static str,
}

#[derive(Debug)]
struct Order {
    id: u64,
    total_cents: u64,
}

async fn fetch_user(id: u64) -> Result<User, std::io::Error> {
    sleep(Duration::from_millis(40)).await;
    Ok(User { id, name: "Ada" })
}

async fn fetch_orders(user_id: u64) -> Result<Vec<Order>, std::io::Error> {
    sleep(Duration::from_millis(60)).await;
    Ok(vec![
        Order {
            id: user_id * 100 + 1,
            total_cents: 1999,
        },
        Order {
            id: user_id * 100 + 2,
            total_cents: 4500,
        },
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

async fn handle_request(user_id: u64) -> Result<String, Error> {
    let hooks = Hooks::new()
        .before_task(|name, index| println!("  -> start  {name} (#{index})"))
        .after_task(|name, took, err| match err {
            None => println!("  <- done   {name} in {took:?}"),
            Some(e) => println!("  <- failed {name} in {took:?}: {e}"),
        })
        .on_cancel(|reason| println!("  !! cancelling what is left: {reason}"));
    let options = Scope::builder()
        .name("handle-request")
        .timeout(Duration::from_secs(2))
        .metrics(true)
        .hooks(hooks);

    let metrics_probe = Arc::new(std::sync::Mutex::new(None));
    let probe = metrics_probe.clone();
    let page = Scope::run(options, |s| async move {
        let user = s.try_spawn(fetch_user(user_id));
        let orders = s.try_spawn(fetch_orders(user_id));
        let recommendations = s.try_spawn(fetch_recommendations(user_id));
        let _audit = s.spawn(write_audit_log(user_id)); // still running when we return

        // Go-style tuples: the error and the value, exactly one of them set.
        let (err, recs) = recommendations.await;
        if let Some(e) = err {
            println!("  recommendations skipped: {e}");
        }
        let user = user.result().await?; // or a Result, for `?`
        let orders = orders.result().await?;
        *probe.lock().unwrap() = Some(s.clone());
        let total: u64 = orders.iter().map(|o| o.total_cents).sum();
        Ok::<_, Error>(format!(
            "{} (#{}) has {} orders worth ${}.{:02}; order ids {:?}; {} recommendations",
            user.name,
            user.id,
            orders.len(),
            total / 100,
            total % 100,
            orders.iter().map(|o| o.id).collect::<Vec<_>>(),
            recs.map_or(0, |r| r.len()),
        ))
    })
    .await??;

    // The scope has closed: the audit task was cancelled and awaited before `run` returned.
    if let Some(scope) = metrics_probe.lock().unwrap().take() {
        let m = scope.metrics().expect("metrics were enabled");
        println!(
            "  metrics: spawned {}, completed {}, failed {}, avg {:?}, p95 {:?}, scope lived {:?}",
            m.tasks_spawned,
            m.tasks_completed,
            m.tasks_failed,
            m.avg_task_duration,
            m.p95_task_duration,
            m.scope_duration.unwrap_or_default()
        );
    }
    Ok(page)
}

/// The DSL: this fn's body runs in its own scope named `checkout`, with a deadline and at most
/// two tasks running at once.
#[scoped(timeout = "1s", concurrency = 2, metrics)]
async fn checkout(user_id: u64, coupon: &str) -> Result<String, Error> {
    // Spawned now, into this fn's scope. `fetch_user` returns a Result, so its error would land
    // in the task's tuple; `write_audit_log` returns (), so its value is the task's value.
    let user = go!(fetch_user(user_id));
    let orders = go!(name = "orders", timeout = "500ms", fetch_orders(user_id));
    let _audit = go!(write_audit_log(user_id)); // cancelled when checkout returns

    // try_go!: a fallible expression as a Go-style tuple, its error as a message.
    let (err, discount) = try_go!(coupon.trim_start_matches("SAVE").parse::<u64>());
    if let Some(why) = err {
        println!("  coupon {coupon:?} ignored: {why}");
    }
    let discount = discount.unwrap_or(0).min(100);

    let (err, user) = user.await;
    if let Some(e) = err {
        return Err(e);
    }
    let orders = orders.result().await?;
    let total: u64 = orders.iter().map(|o| o.total_cents).sum::<u64>() * (100 - discount) / 100;
    // A nested scoped fn: its deadline passes, and only its own work is cancelled.
    match slow_recommendations(user_id).await {
        Ok(picks) => println!("  recommendations: {picks:?}"),
        Err(e) => println!("  recommendations skipped: {e}"),
    }
    let scope = Scope::current();
    println!(
        "  in scope `{}`: {} task(s) still running as the body ends",
        scope.name(),
        scope.active_tasks()
    );
    Ok(format!(
        "{} pays ${}.{:02}",
        user.map_or("nobody", |u| u.name),
        total / 100,
        total % 100
    ))
}

/// Its scope is a child of the caller's, with a deadline of its own.
#[scoped(timeout = "50ms")]
async fn slow_recommendations(user_id: u64) -> Result<Vec<String>, Error> {
    let ranked = go!(async move {
        sleep(Duration::from_secs(5)).await;
        vec![format!("bestseller for {user_id}")]
    });
    ranked.result().await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    println!("handling a request for user 7:");
    let page = handle_request(7).await?;
    println!("result: {page}");

    println!("\nthe same request with a deadline that is too short:");
    let slow = Scope::run(
        Scope::builder()
            .name("too-slow")
            .timeout(Duration::from_millis(20)),
        |_| handle_request(8),
    )
    .await;
    match slow.and_then(|inner| inner) {
        Err(e) => println!("result: {e}"),
        Ok(page) => println!("result: {page}"),
    }

    println!("\nthe DSL: a #[scoped] checkout with go! and try_go!:");
    println!("result: {}", checkout(7, "SAVE10").await?);
    println!("\nthe same with a coupon that does not parse:");
    println!("result: {}", checkout(7, "SAVEten").await?);
    Ok(())
}
