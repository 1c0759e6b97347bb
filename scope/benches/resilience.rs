//! Resilience operations beside the same work hand-written with raw Tokio, in one binary.
//!
//! Groups: a task that fails once and is retried (raw: a loop), a task under a 5 s timeout (raw:
//! `tokio::time::timeout`), a race of two (raw: `select!` over two spawned tasks + abort),
//! the first and third also beside a `raw_tokio_joinset` form whose tasks are tracked like a
//! scope's,
//! 10 000 tasks under a limit of 100 (raw: Semaphore + JoinSet), and a task spawned into a scope
//! whose circuit breaker is closed (raw: the same spawn without a breaker).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use go_go_scope::{CircuitBreaker, Error, Retry, Scope};
use support::{on_worker, runtime, timed_on_worker};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The hand-written retry: an attempt that fails once, tried again in a loop.
async fn retry_loop() -> Result<u32, &'static str> {
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        let result: Result<u32, &str> = if attempt == 1 {
            Err("transient")
        } else {
            Ok(attempt)
        };
        match result {
            Ok(v) => break Ok(v),
            Err(e) if attempt > 1 => break Err(e),
            Err(_) => continue,
        }
    }
}

fn retry_once(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("retry_once");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let task = tokio::spawn(retry_loop());
                    std::hint::black_box(task.await.expect("no panic").ok());
                }
                start.elapsed()
            })
        })
    });
    // The same loop as a tracked task: spawned into a JoinSet, which is what hand-written
    // structured code uses (and what a scope does: it owns its tasks).
    g.bench_function("raw_tokio_joinset", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let mut set = JoinSet::new();
                let start = Instant::now();
                for _ in 0..iters {
                    set.spawn(retry_loop());
                    let v = set.join_next().await.expect("task").expect("no panic");
                    std::hint::black_box(v.ok());
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
                    let task = scope
                        .task(|attempt| async move {
                            if attempt == 1 {
                                Err("transient")
                            } else {
                                Ok(attempt)
                            }
                        })
                        .retry(Retry::new(1))
                        .spawn();
                    std::hint::black_box(task.await.1);
                }
                let elapsed = start.elapsed();
                scope.close().await.expect("close");
                elapsed
            })
        })
    });
    g.finish();
}

fn task_with_timeout(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("task_with_5s_timeout");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let mut set = JoinSet::new();
                let start = Instant::now();
                for _ in 0..iters {
                    set.spawn(tokio::time::timeout(Duration::from_secs(5), async {
                        42_u64
                    }));
                    let v = set.join_next().await.expect("task").expect("no panic");
                    std::hint::black_box(v.ok());
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
                    let task = scope
                        .task_once(async { Ok::<_, Error>(42_u64) })
                        .timeout(Duration::from_secs(5))
                        .spawn();
                    std::hint::black_box(task.await.1);
                }
                let elapsed = start.elapsed();
                scope.close().await.expect("close");
                elapsed
            })
        })
    });
    g.finish();
}

fn race_of_two(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("race_of_two");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let mut a = tokio::spawn(async { Ok::<u64, &str>(1) });
                let mut b = tokio::spawn(async { Ok::<u64, &str>(2) });
                let winner = tokio::select! {
                    r = &mut a => { b.abort(); let _ = b.await; r }
                    r = &mut b => { a.abort(); let _ = a.await; r }
                };
                std::hint::black_box(winner.ok());
            })
        })
    });
    // Racers tracked in a JoinSet: the first result wins, the rest are aborted and awaited.
    g.bench_function("raw_tokio_joinset", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let mut set = JoinSet::new();
                set.spawn(async { Ok::<u64, &str>(1) });
                set.spawn(async { Ok::<u64, &str>(2) });
                let winner = set.join_next().await.expect("a racer").expect("no panic");
                set.abort_all();
                while set.join_next().await.is_some() {}
                std::hint::black_box(winner.ok());
            })
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let scope = Scope::builder().detached().build().expect("scope");
                let start = Instant::now();
                for _ in 0..iters {
                    let racers = [1_u64, 2].map(|v| async move { Ok::<u64, &str>(v) });
                    std::hint::black_box(scope.race(racers).await.1);
                }
                let elapsed = start.elapsed();
                scope.close().await.expect("close");
                elapsed
            })
        })
    });
    g.finish();
}

fn ten_thousand_under_limit(c: &mut Criterion) {
    const N: u64 = 10_000;
    const LIMIT: usize = 100;
    let rt = runtime();
    let mut g = c.benchmark_group("ten_thousand_under_limit_100");
    g.sample_size(20);
    // The raw baseline acquires each permit before spawning, the cheaper of the two raw forms
    // (acquiring inside each task costs about 40 % more).
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let semaphore = Arc::new(Semaphore::new(LIMIT));
                let mut set = JoinSet::new();
                for i in 0..N {
                    let permit = semaphore.clone().acquire_owned().await.expect("open");
                    set.spawn(async move {
                        let _permit = permit;
                        i
                    });
                }
                let mut sum = 0;
                while let Some(v) = set.join_next().await {
                    sum += v.expect("no panic");
                }
                std::hint::black_box(sum);
            })
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let scope = Scope::builder()
                    .detached()
                    .concurrency(LIMIT)
                    .build()
                    .expect("scope");
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

fn breaker_closed_path(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("task_through_closed_breaker");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let mut set = JoinSet::new();
                let start = Instant::now();
                for i in 0..iters {
                    set.spawn(async move { Ok::<u64, &str>(i) });
                    let v = set.join_next().await.expect("task").expect("no panic");
                    std::hint::black_box(v.ok());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            timed_on_worker(&rt, async move {
                let breaker = CircuitBreaker::new(5, Duration::from_secs(30)).expect("breaker");
                let scope = Scope::builder()
                    .detached()
                    .circuit_breaker(breaker)
                    .build()
                    .expect("scope");
                let start = Instant::now();
                for i in 0..iters {
                    let task = scope.try_spawn(async move { Ok::<u64, &str>(i) });
                    std::hint::black_box(task.await.1);
                }
                let elapsed = start.elapsed();
                scope.close().await.expect("close");
                elapsed
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    retry_once,
    task_with_timeout,
    race_of_two,
    ten_thousand_under_limit,
    breaker_closed_path
);
criterion_main!(benches);
