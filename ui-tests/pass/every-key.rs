//! Every argument of `#[scoped]` and every option of `go!`, in one place.
use std::time::Duration;

use go_go_scope::prelude::*;
use go_go_scope::Retry;

#[derive(Debug)]
enum AppError {
    Scope(Error),
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        AppError::Scope(error)
    }
}

#[scoped(
    timeout = "1m30s",
    name = "process_order",
    tracer,
    concurrency = 4,
    metrics,
    circuit_breaker(failure_threshold = 5, reset_timeout = "30s"),
    retry(max = 3, delay = "100ms", backoff = "exponential", jitter, max_delay = "2s"),
    parent = parent,
    attrs("order.id" = order_id, "region" = "eu"),
    skip(parent),
    wait,
)]
async fn process_order(parent: &Scope, order_id: u64) -> Result<u64, AppError> {
    let task = go!(
        name = "fetch",
        timeout = "2s",
        retry = 3,
        attrs("user.id" = order_id),
        async move { Ok::<_, std::io::Error>(order_id * 2) }
    );
    let doubled = task.result().await?;
    let again = go!(retry = Retry::fixed(2, Duration::from_millis(1)), async move {
        Ok::<_, Error>(doubled)
    });
    let scope = Scope::current();
    let explicit = go!(scope = scope, async { 1_u64 });
    Ok(again.result().await? + explicit.result().await?)
}

#[scoped(tracer = go_go_scope::ScopeTracer::global(), skip_all, retry = 2, timeout = std::time::Duration::from_secs(1))]
async fn expressions(n: u64) -> (Option<Error>, Option<u64>) {
    (None, Some(n))
}

#[tokio::main]
async fn main() {
    let parent = Scope::new().unwrap();
    match process_order(&parent, 21).await {
        Ok(value) => assert_eq!(value, 43),
        Err(AppError::Scope(error)) => panic!("{error}"),
    }
    assert_eq!(expressions(5).await.1, Some(5));
    parent.close().await.unwrap();
}
