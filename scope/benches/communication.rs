//! Channels and pools beside the same work done with raw Tokio, in one binary.
//!
//! - `channel_100k`: 100 000 `u64` through a channel of capacity 100, one producer task and one
//!   consumer, against `tokio::sync::mpsc`.
//! - `pool_round_trip`: acquire and release one resource, against a `Semaphore` guarding a
//!   `Vec` of resources.
//!
//! Measured loops run inside a spawned task on a 2-worker multi-thread runtime, as in the
//! `core` benchmarks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use go_go_scope::{Channel, Error, Pool, PoolOptions};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

const MESSAGES: u64 = 100_000;
const CAPACITY: usize = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for benchmarks")
}

/// Runs `fut` (which times its own loop) inside a task on a worker.
fn timed_on_worker<Fut>(rt: &Runtime, fut: Fut) -> Duration
where
    Fut: Future<Output = Duration> + Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("benchmark loop") })
}

async fn raw_mpsc() -> Duration {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            tx.send(i).await.expect("receiver alive");
        }
    });
    let mut sum = 0;
    while let Some(v) = rx.recv().await {
        sum += v;
    }
    producer.await.expect("producer");
    std::hint::black_box(sum);
    start.elapsed()
}

async fn scope_channel() -> Duration {
    let ch = Channel::<u64>::new(CAPACITY);
    let start = Instant::now();
    let tx = ch.clone();
    let producer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            tx.send(i).await.expect("channel open");
        }
        tx.close();
    });
    let mut sum = 0;
    while let Some(v) = ch.recv().await {
        sum += v;
    }
    producer.await.expect("producer");
    std::hint::black_box(sum);
    start.elapsed()
}

fn channel_100k(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("channel_100k");
    g.sample_size(20);
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| timed_on_worker(&rt, raw_mpsc()))
                .sum::<Duration>()
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| timed_on_worker(&rt, scope_channel()))
                .sum::<Duration>()
        })
    });
    g.finish();
}

/// The hand-written baseline: resources in a `Vec`, a semaphore counting the free ones.
struct RawPool {
    free: Semaphore,
    resources: Mutex<Vec<u64>>,
}

fn pool_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("pool_round_trip");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            let raw = Arc::new(RawPool {
                free: Semaphore::new(4),
                resources: Mutex::new(vec![1, 2, 3, 4]),
            });
            timed_on_worker(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let permit = raw.free.acquire().await.expect("open");
                    let resource = raw.resources.lock().expect("lock").pop();
                    std::hint::black_box(&resource);
                    if let Some(resource) = resource {
                        raw.resources.lock().expect("lock").push(resource);
                    }
                    drop(permit);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let pool = Pool::new(
                    PoolOptions::new(|| async { Ok::<_, Error>(7_u64) })
                        .min(4)
                        .max(4),
                )
                .await
                .expect("pool");
                let start = Instant::now();
                for _ in 0..iters {
                    let guard = pool.acquire().await.expect("acquire");
                    std::hint::black_box(*guard);
                }
                let elapsed = start.elapsed();
                pool.close().await;
                elapsed
            })
        })
    });
    g.finish();
}

criterion_group!(benches, channel_100k, pool_round_trip);
criterion_main!(benches);
