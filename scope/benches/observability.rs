//! What observability costs a task: spawn + await with metrics, spans compiled in but unseen,
//! and spans recorded by an OpenTelemetry layer, beside raw Tokio in the same binary.
//!
//! As in `core.rs`, measured loops run inside a spawned task on a 2-worker multi-thread runtime.
//! The groups without a subscriber run first; the last group installs a global subscriber (an
//! OpenTelemetry layer at `INFO` over a provider without exporters) for the rest of the process.

mod support;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use go_go_scope::{Scope, ScopeBuilder, ScopeTracer};
use opentelemetry::trace::TracerProvider as _;
use support::{on_worker, runtime, timed_on_worker};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

fn raw_spawn_await(rt: &Runtime, iters: u64) -> Duration {
    timed_on_worker(rt, async move {
        let mut set = JoinSet::new();
        let start = Instant::now();
        for _ in 0..iters {
            set.spawn(async { 42_u64 });
            let v = set.join_next().await.expect("one task").expect("no panic");
            std::hint::black_box(v);
        }
        start.elapsed()
    })
}

fn scope_spawn_await(rt: &Runtime, iters: u64, builder: fn() -> ScopeBuilder) -> Duration {
    timed_on_worker(rt, async move {
        let scope = builder().detached().build().expect("scope");
        let start = Instant::now();
        for _ in 0..iters {
            let (_, v) = scope.spawn(async { 42_u64 }).await;
            std::hint::black_box(v);
        }
        let elapsed = start.elapsed();
        scope.close().await.expect("close");
        elapsed
    })
}

fn plain() -> ScopeBuilder {
    Scope::builder()
}

fn with_metrics() -> ScopeBuilder {
    Scope::builder().name("bench-metrics").metrics(true)
}

fn with_tracer() -> ScopeBuilder {
    Scope::builder()
        .name("bench-traced")
        .tracer(ScopeTracer::global())
}

/// No subscriber: spans are compiled in but nothing records them.
fn spawn_await_observed(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("spawn_await_observed");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| raw_spawn_await(&rt, iters))
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| scope_spawn_await(&rt, iters, plain))
    });
    g.bench_function("go_go_scope_metrics", |b| {
        b.iter_custom(|iters| scope_spawn_await(&rt, iters, with_metrics))
    });
    g.bench_function("go_go_scope_tracer_no_subscriber", |b| {
        b.iter_custom(|iters| scope_spawn_await(&rt, iters, with_tracer))
    });
    g.finish();
}

/// Creating and closing a scope, which with metrics registers it in the process-wide registry.
fn scope_create_close_observed(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("scope_create_close_observed");
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
    g.bench_function("go_go_scope_metrics", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let scope = with_metrics().detached().build().expect("scope");
                scope.close().await.expect("close");
            })
        })
    });
    g.finish();
}

/// A global subscriber with an OpenTelemetry layer at INFO: untraced scopes' DEBUG spans are
/// filtered out, traced scopes' spans become OpenTelemetry spans (sampled, never exported).
fn spawn_await_with_otel_layer(c: &mut Criterion) {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_filter(LevelFilter::INFO);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the only global subscriber of this process");
    let rt = runtime();
    let mut g = c.benchmark_group("spawn_await_with_otel_layer");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| raw_spawn_await(&rt, iters))
    });
    g.bench_function("go_go_scope_untraced", |b| {
        b.iter_custom(|iters| scope_spawn_await(&rt, iters, plain))
    });
    g.bench_function("go_go_scope_traced", |b| {
        b.iter_custom(|iters| scope_spawn_await(&rt, iters, with_tracer))
    });
    g.finish();
}

criterion_group!(
    benches,
    spawn_await_observed,
    scope_create_close_observed,
    spawn_await_with_otel_layer
);
criterion_main!(benches);
