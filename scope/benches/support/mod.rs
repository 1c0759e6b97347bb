//! Shared harness for the benchmark binaries: a 2-worker runtime and measured loops that run
//! inside a spawned task (driving them from `block_on` on the main thread would measure
//! cross-thread wake-ups instead of the operation).

#![allow(dead_code)] // each benchmark binary uses a different subset

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

/// A multi-thread runtime with 2 workers, like the machines the numbers are reported for.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for benchmarks")
}

/// Runs `body` `iters` times inside a task on a worker and returns the time taken.
pub(crate) fn on_worker<F, Fut>(rt: &Runtime, iters: u64, body: F) -> Duration
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                body().await;
            }
            start.elapsed()
        })
        .await
        .expect("benchmark loop")
    })
}

/// Runs `fut` (which times its own loop) inside a task on a worker.
pub(crate) fn timed_on_worker<Fut>(rt: &Runtime, fut: Fut) -> Duration
where
    Fut: Future<Output = Duration> + Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("benchmark loop") })
}
