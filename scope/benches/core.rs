//! The core operations beside the same work done with raw Tokio, in one binary.
//!
//! Every group has a `raw_tokio` and a `go_go_scope` function. Measured loops run inside a
//! spawned task on a 2-worker multi-thread runtime (driving them from `block_on` on the main
//! thread would measure cross-thread wake-ups instead of the operation).
//!
//! `scripts/bench-ratios.py` runs this binary several rounds and reports the ratios.

mod support;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use go_go_scope::Scope;
use support::{on_worker, runtime, timed_on_worker};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn scope_create_close(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("scope_create_close");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let token = CancellationToken::new();
                let mut set: JoinSet<()> = JoinSet::new();
                token.cancel();
                set.shutdown().await;
            })
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let scope = Scope::builder().detached().build().expect("scope");
                scope.close().await.expect("close");
            })
        })
    });
    g.finish();
}

fn spawn_await_one(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("spawn_await_one");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let mut set = JoinSet::new();
                let start = Instant::now();
                for _ in 0..iters {
                    set.spawn(async { 42_u64 });
                    let v = set.join_next().await.expect("one task").expect("no panic");
                    std::hint::black_box(v);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let scope = Scope::builder().detached().build().expect("scope");
                let start = Instant::now();
                for _ in 0..iters {
                    let (_, v) = scope.spawn(async { 42_u64 }).await;
                    std::hint::black_box(v);
                }
                let elapsed = start.elapsed();
                scope.close().await.expect("close");
                elapsed
            })
        })
    });
    g.finish();
}

fn three_in_parallel(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("three_in_parallel");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let token = CancellationToken::new();
                let mut set = JoinSet::new();
                for i in 1..=3_u64 {
                    let token = token.clone();
                    set.spawn(async move {
                        tokio::select! {
                            biased;
                            () = token.cancelled() => None,
                            v = async move { i } => Some(v),
                        }
                    });
                }
                let mut sum = 0;
                while let Some(v) = set.join_next().await {
                    sum += v.expect("no panic").unwrap_or(0);
                }
                std::hint::black_box(sum);
            })
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let scope = Scope::builder().detached().build().expect("scope");
                let tasks = [1_u64, 2, 3].map(|i| scope.spawn(async move { i }));
                let mut sum = 0;
                for t in tasks {
                    sum += t.await.1.unwrap_or(0);
                }
                scope.close().await.expect("close");
                std::hint::black_box(sum);
            })
        })
    });
    g.finish();
}

fn ten_thousand_tasks(c: &mut Criterion) {
    const N: u64 = 10_000;
    let rt = runtime();
    let mut g = c.benchmark_group("ten_thousand_tasks");
    g.sample_size(20);
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let token = CancellationToken::new();
                let mut set = JoinSet::new();
                for i in 0..N {
                    let token = token.clone();
                    set.spawn(async move {
                        tokio::select! {
                            biased;
                            () = token.cancelled() => None,
                            v = async move { i } => Some(v),
                        }
                    });
                }
                let mut sum = 0;
                while let Some(v) = set.join_next().await {
                    sum += v.expect("no panic").unwrap_or(0);
                }
                std::hint::black_box(sum);
            })
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let scope = Scope::builder().detached().build().expect("scope");
                let tasks: Vec<_> = (0..N).map(|i| scope.spawn(async move { i })).collect();
                let mut sum = 0;
                for t in tasks {
                    sum += t.await.1.unwrap_or(0);
                }
                scope.close().await.expect("close");
                std::hint::black_box(sum);
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    scope_create_close,
    spawn_await_one,
    three_in_parallel,
    ten_thousand_tasks
);
criterion_main!(benches);
