//! Local scopes beside raw Tokio (`TaskTracker` spawn + await) and moro-local, in one binary.
//!
//! Every group has `raw_tokio`, `local` (a [`Scope::local`] scope) and `moro_local`. The Tokio
//! and local loops run inside a spawned task on the 2-worker multi-thread runtime, as the other
//! benchmarks do; moro-local's scope is not `Send`, so its loop runs in `block_on` on the main
//! thread of the same runtime (a local scope wakes nothing across threads, so where it is
//! polled does not change its cost).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use go_go_scope::Scope;
use support::{runtime, timed_on_worker};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs `fut` (which times its own loop) on the calling thread, inside the runtime.
fn timed_here<Fut: std::future::Future<Output = Duration>>(rt: &Runtime, fut: Fut) -> Duration {
    rt.block_on(fut)
}

fn local_scope() -> go_go_scope::ScopeBuilder {
    Scope::builder().detached()
}

fn spawn_await_one(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("local_spawn_await_one");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let tracker = TaskTracker::new();
                let start = Instant::now();
                for _ in 0..iters {
                    let v = tracker.spawn(async { 42_u64 }).await.expect("no panic");
                    std::hint::black_box(v);
                }
                let elapsed = start.elapsed();
                tracker.close();
                tracker.wait().await;
                elapsed
            })
        })
    });
    g.bench_function("local", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                Scope::local(local_scope(), |s| {
                    Box::pin(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let (_, v) = s.spawn(async { 42_u64 }).await;
                            std::hint::black_box(v);
                        }
                        start.elapsed()
                    })
                })
                .await
                .expect("local scope")
            })
        })
    });
    g.bench_function("moro_local", |b| {
        b.iter_custom(|iters| {
            timed_here(&rt, async move {
                moro_local::async_scope!(|scope| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let v = scope.spawn(async { 42_u64 }).await;
                        std::hint::black_box(v);
                    }
                    start.elapsed()
                })
                .await
            })
        })
    });
    g.finish();
}

fn three_in_parallel(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("local_three_in_parallel");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let token = CancellationToken::new();
                    let tracker = TaskTracker::new();
                    let handles = [1_u64, 2, 3].map(|i| {
                        let token = token.clone();
                        tracker.spawn(async move {
                            tokio::select! {
                                biased;
                                () = token.cancelled() => None,
                                v = async move { i } => Some(v),
                            }
                        })
                    });
                    let mut sum = 0;
                    for handle in handles {
                        sum += handle.await.expect("no panic").unwrap_or(0);
                    }
                    tracker.close();
                    tracker.wait().await;
                    std::hint::black_box(sum);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("local", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let sum = Scope::local(local_scope(), |s| {
                        Box::pin(async move {
                            let tasks = [1_u64, 2, 3].map(|i| s.spawn(async move { i }));
                            let mut sum = 0;
                            for task in tasks {
                                sum += task.await.1.unwrap_or(0);
                            }
                            sum
                        })
                    })
                    .await
                    .expect("local scope");
                    std::hint::black_box(sum);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("moro_local", |b| {
        b.iter_custom(|iters| {
            timed_here(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let sum = moro_local::async_scope!(|scope| {
                        let tasks = [1_u64, 2, 3].map(|i| scope.spawn(async move { i }));
                        let mut sum = 0;
                        for task in tasks {
                            sum += task.await;
                        }
                        sum
                    })
                    .await;
                    std::hint::black_box(sum);
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn ten_thousand_limit_100(c: &mut Criterion) {
    const N: u64 = 10_000;
    const LIMIT: usize = 100;
    let rt = runtime();
    let mut g = c.benchmark_group("local_ten_thousand_limit_100");
    g.sample_size(20);
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let tracker = TaskTracker::new();
                    let limit = Arc::new(Semaphore::new(LIMIT));
                    let handles: Vec<_> = (0..N)
                        .map(|i| {
                            let limit = Arc::clone(&limit);
                            tracker.spawn(async move {
                                let _permit = limit.acquire_owned().await.expect("open");
                                i
                            })
                        })
                        .collect();
                    let mut sum = 0;
                    for handle in handles {
                        sum += handle.await.expect("no panic");
                    }
                    tracker.close();
                    tracker.wait().await;
                    std::hint::black_box(sum);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("local", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let sum = Scope::local(local_scope().concurrency(LIMIT), |s| {
                        Box::pin(async move {
                            let tasks: Vec<_> = (0..N).map(|i| s.spawn(async move { i })).collect();
                            let mut sum = 0;
                            for task in tasks {
                                sum += task.await.1.unwrap_or(0);
                            }
                            sum
                        })
                    })
                    .await
                    .expect("local scope");
                    std::hint::black_box(sum);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("moro_local", |b| {
        b.iter_custom(|iters| {
            timed_here(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let limit = Semaphore::new(LIMIT);
                    let limit = &limit;
                    let sum = moro_local::async_scope!(|scope| {
                        let tasks: Vec<_> = (0..N)
                            .map(|i| {
                                scope.spawn(async move {
                                    let _permit = limit.acquire().await.expect("open");
                                    i
                                })
                            })
                            .collect();
                        let mut sum = 0;
                        for task in tasks {
                            sum += task.await;
                        }
                        sum
                    })
                    .await;
                    std::hint::black_box(sum);
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    spawn_await_one,
    three_in_parallel,
    ten_thousand_limit_100
);
criterion_main!(benches);
