//! The DSL beside the hand-written runtime calls it expands to, and beside raw Tokio, in one
//! binary: `#[scoped]` should cost what `Scope::run` costs, and `go!` what `Scope::spawn` costs.
//!
//! Measured loops run inside a spawned task on a 2-worker multi-thread runtime, as in `core.rs`.
//! Run: `cargo bench -p go-go-scope --bench dsl -- --warm-up-time 1 --measurement-time 3`.

mod support;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use go_go_scope::{Error, Scope, go, scoped};
use support::{on_worker, runtime};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[scoped]
async fn dsl_empty() -> Result<(), Error> {
    Ok(())
}

#[scoped]
async fn dsl_one_task() -> Result<u64, Error> {
    go!(async { 42_u64 }).result().await
}

#[scoped(timeout = "30s", concurrency = 4)]
async fn dsl_one_task_with_options() -> Result<u64, Error> {
    go!(async { 42_u64 }).result().await
}

/// A scope that is opened and closed with nothing in it.
fn empty_scope(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("dsl_empty_scope");
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
    g.bench_function("hand_written", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let out = Scope::run(Scope::builder().name("dsl_empty"), |_| async {
                    Ok::<_, Error>(())
                })
                .await;
                std::hint::black_box(out.and_then(|inner| inner).is_ok());
            })
        })
    });
    g.bench_function("scoped_macro", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                std::hint::black_box(dsl_empty().await.is_ok());
            })
        })
    });
    g.finish();
}

/// A scoped fn that spawns one task and awaits it.
fn one_task(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("dsl_scope_with_one_task");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let token = CancellationToken::new();
                let mut set = JoinSet::new();
                set.spawn(async { 42_u64 });
                let v = set.join_next().await.expect("one task").expect("no panic");
                token.cancel();
                set.shutdown().await;
                std::hint::black_box(v);
            })
        })
    });
    g.bench_function("hand_written", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let out = Scope::run(Scope::builder().name("dsl_one_task"), |s| async move {
                    s.spawn(async { 42_u64 }).result().await
                })
                .await;
                std::hint::black_box(out.and_then(|inner| inner).ok());
            })
        })
    });
    g.bench_function("scoped_macro", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                std::hint::black_box(dsl_one_task().await.ok());
            })
        })
    });
    g.bench_function("hand_written_with_options", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let options = Scope::builder()
                    .name("dsl_one_task_with_options")
                    .timeout(Duration::from_secs(30))
                    .concurrency(4);
                let out = Scope::run(options, |s| async move {
                    s.spawn(async { 42_u64 }).result().await
                })
                .await;
                std::hint::black_box(out.and_then(|inner| inner).ok());
            })
        })
    });
    g.bench_function("scoped_macro_with_options", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                std::hint::black_box(dsl_one_task_with_options().await.ok());
            })
        })
    });
    g.finish();
}

/// Spawn + await in a loop inside one open scope: `go!` against `Scope::spawn`.
fn spawn_await(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("dsl_spawn_await");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async move {
                tokio::spawn(async move {
                    let mut set = JoinSet::new();
                    let start = Instant::now();
                    for _ in 0..iters {
                        set.spawn(async { 42_u64 });
                        let v = set.join_next().await.expect("one task").expect("no panic");
                        std::hint::black_box(v);
                    }
                    start.elapsed()
                })
                .await
                .expect("benchmark loop")
            })
        })
    });
    g.bench_function("hand_written", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async move {
                tokio::spawn(async move {
                    Scope::run(Scope::builder(), |s| async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let (_, v) = s.spawn(async { 42_u64 }).await;
                            std::hint::black_box(v);
                        }
                        start.elapsed()
                    })
                    .await
                    .expect("scope")
                })
                .await
                .expect("benchmark loop")
            })
        })
    });
    g.bench_function("go_macro", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async move {
                tokio::spawn(async move {
                    Scope::run(Scope::builder(), |_| async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let (_, v) = go!(async { 42_u64 }).await;
                            std::hint::black_box(v);
                        }
                        start.elapsed()
                    })
                    .await
                    .expect("scope")
                })
                .await
                .expect("benchmark loop")
            })
        })
    });
    g.finish();
}

criterion_group!(dsl, empty_scope, one_task, spawn_await);
criterion_main!(dsl);
