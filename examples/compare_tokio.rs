//! The program of `docs/vs-tokio.md`, written by hand with Tokio and tokio-util: the baseline
//! `compare_scope` is measured against. Both print the same story.
//!
//! One request loads a user and their orders concurrently, under a 2 s deadline. Each call is
//! retried with exponential backoff, each attempt bounded by 200 ms. The orders service sits
//! behind a circuit breaker shared by every request. The first failure ends the request and
//! cancels the other call; nothing outlives the request.
//!
//! Run: `cargo run -p go-go-scope-examples --example compare_tokio`

use std::sync::Arc;

use go_go_scope_examples::shop::{Api, Page};
use tokio::time::Instant;

// region: program
// region: imports
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use go_go_scope_examples::shop::{ApiError, Order, User};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
// endregion: imports

// region: errors
#[derive(Debug)]
enum RequestError {
    Api(ApiError),
    Timeout,
    Cancelled,
    CircuitOpen,
    Panicked(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Api(e) => write!(f, "{e}"),
            RequestError::Timeout => f.write_str("timed out"),
            RequestError::Cancelled => f.write_str("cancelled"),
            RequestError::CircuitOpen => f.write_str("circuit breaker is open"),
            RequestError::Panicked(why) => write!(f, "task panicked: {why}"),
        }
    }
}

// endregion: errors

// region: breaker
/// Opens after `threshold` failures in a row; after `reset`, lets one trial call through.
struct Breaker {
    threshold: u32,
    reset: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    opened_at: Option<Instant>,
    trial_running: bool,
}

/// Frees the trial slot if the trial call is cancelled before it reports.
struct TrialGuard<'a>(&'a Breaker, bool);

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.state.lock().unwrap().trial_running = false;
        }
    }
}

impl Breaker {
    async fn call<T>(
        &self,
        work: impl Future<Output = Result<T, RequestError>>,
    ) -> Result<T, RequestError> {
        let trial = {
            let mut s = self.state.lock().unwrap();
            match s.opened_at {
                None => false,
                Some(at) if at.elapsed() < self.reset || s.trial_running => {
                    return Err(RequestError::CircuitOpen);
                }
                Some(_) => {
                    s.trial_running = true;
                    true
                }
            }
        };
        let mut guard = TrialGuard(self, trial);
        let result = work.await;
        guard.1 = false;
        let mut s = self.state.lock().unwrap();
        s.trial_running = false;
        if result.is_ok() {
            *s = BreakerState::default();
        } else {
            s.failures += 1;
            if trial || s.failures >= self.threshold {
                s.opened_at = Some(Instant::now());
            }
        }
        result
    }
}

// endregion: breaker

// region: retry
/// One attempt: at most 200 ms.
async fn bounded<T>(attempt: impl Future<Output = Result<T, ApiError>>) -> Result<T, RequestError> {
    match timeout(Duration::from_millis(200), attempt).await {
        Ok(result) => result.map_err(RequestError::Api),
        Err(_elapsed) => Err(RequestError::Timeout),
    }
}

/// Retries with exponential backoff from 5 ms; a breaker's refusal is final.
async fn with_retry<T, Fut>(
    retries: u32,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, RequestError>
where
    Fut: Future<Output = Result<T, RequestError>>,
{
    let mut delay = Duration::from_millis(5);
    for _ in 0..retries {
        match attempt().await {
            Err(RequestError::CircuitOpen) => return Err(RequestError::CircuitOpen),
            Err(_) => {
                sleep(delay).await;
                delay *= 2;
            }
            ok => return ok,
        }
    }
    attempt().await
}

// endregion: retry

// region: metrics
/// Task counters and durations, registered in the application's `prometheus-client` registry.
struct Metrics {
    spawned: Counter,
    completed: Counter,
    failed: Counter,
    duration: Histogram,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Arc<Metrics> {
        let metrics = Metrics {
            spawned: Counter::default(),
            completed: Counter::default(),
            failed: Counter::default(),
            duration: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
        };
        let (spawned, completed) = (metrics.spawned.clone(), metrics.completed.clone());
        registry.register("load_page_tasks_spawned", "Tasks spawned", spawned);
        registry.register(
            "load_page_tasks_completed",
            "Tasks that succeeded",
            completed,
        );
        registry.register(
            "load_page_tasks_failed",
            "Tasks that failed",
            metrics.failed.clone(),
        );
        let duration = metrics.duration.clone();
        registry.register(
            "load_page_task_duration_seconds",
            "Task durations",
            duration,
        );
        Arc::new(metrics)
    }
}
// endregion: metrics

// region: handler
/// Runs `work` until it ends or `token` is cancelled, and counts it.
async fn tracked<T>(
    token: CancellationToken,
    metrics: Arc<Metrics>,
    work: impl Future<Output = Result<T, RequestError>>,
) -> Result<T, RequestError> {
    metrics.spawned.inc();
    let started = Instant::now();
    let result = tokio::select! {
        () = token.cancelled() => Err(RequestError::Cancelled),
        result = work => result,
    };
    if result.is_ok() {
        metrics.completed.inc();
        metrics.duration.observe(started.elapsed().as_secs_f64());
    } else {
        metrics.failed.inc();
    }
    result
}

enum Part {
    User(User),
    Orders(Vec<Order>),
}

async fn load_page(
    api: Arc<Api>,
    breaker: Arc<Breaker>,
    metrics: Arc<Metrics>,
    id: u64,
) -> Result<Page, RequestError> {
    let token = CancellationToken::new();
    let mut tasks = JoinSet::new(); // aborts whatever is left if this future is dropped
    let users = api.clone();
    tasks.spawn(tracked(token.clone(), metrics.clone(), async move {
        let user = with_retry(3, || {
            let users = users.clone();
            async move { bounded(users.fetch_user(id)).await }
        });
        user.await.map(Part::User)
    }));
    tasks.spawn(tracked(token.clone(), metrics, async move {
        let orders = with_retry(3, || {
            let (api, breaker) = (api.clone(), breaker.clone());
            async move { breaker.call(bounded(api.fetch_orders(id))).await }
        });
        orders.await.map(Part::Orders)
    }));
    let collect = async {
        let (mut user, mut orders) = (None, None);
        while let Some(joined) = tasks.join_next().await {
            match joined.map_err(|e| RequestError::Panicked(e.to_string()))?? {
                Part::User(u) => user = Some(u),
                Part::Orders(o) => orders = Some(o),
            }
        }
        Ok::<_, RequestError>((user, orders))
    };
    let result = timeout(Duration::from_secs(2), collect).await;
    // Stop whatever is still running, and wait until it has stopped.
    token.cancel();
    while tasks.join_next().await.is_some() {}
    match result {
        Ok(Ok((Some(user), Some(orders)))) => Ok(Page { user, orders }),
        Ok(Ok(_)) => Err(RequestError::Cancelled),
        Ok(Err(e)) => Err(e),
        Err(_elapsed) => Err(RequestError::Timeout),
    }
}
// endregion: handler
// endregion: program

#[tokio::main]
async fn main() {
    let api = Arc::new(Api::default());
    let mut registry = Registry::default(); // served at /metrics by the application
    let metrics = Metrics::register(&mut registry);
    let breaker = Arc::new(Breaker {
        threshold: 3,
        reset: Duration::from_secs(30),
        state: Mutex::default(),
    });
    let request = |n: u32| {
        let (api, breaker, metrics) = (api.clone(), breaker.clone(), metrics.clone());
        async move {
            let began = Instant::now();
            let outcome = load_page(api.clone(), breaker, metrics, 7).await;
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
    println!(
        "metrics: tasks spawned {}, completed {}, failed {}",
        metrics.spawned.get(),
        metrics.completed.get(),
        metrics.failed.get()
    );
}
