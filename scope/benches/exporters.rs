//! What the application-pipeline exporters cost a task: spawn + await in a scope that records
//! through the `metrics` facade (into `metrics-exporter-prometheus`'s recorder, installed
//! globally) or through an OpenTelemetry meter (an SDK provider with an in-memory exporter that
//! is never read during the measurement), beside a plain scope, `metrics(true)` and raw Tokio in
//! the same binary; and what building and closing such a scope costs.

mod support;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use go_go_scope::opentelemetry::metrics::MeterProvider as _;
use go_go_scope::{Scope, ScopeBuilder, ScopeMeter};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use support::{on_worker, runtime, timed_on_worker};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

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

fn scope_spawn_await(rt: &Runtime, iters: u64, builder: impl Fn() -> ScopeBuilder) -> Duration {
    let scope = builder().detached();
    timed_on_worker(rt, async move {
        let scope = scope.build().expect("scope");
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

fn exporters(c: &mut Criterion) {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this process");
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(InMemoryMetricExporter::default())
        .build();
    let meter = ScopeMeter::new(&provider.meter("bench"));
    let rt = runtime();

    let mut g = c.benchmark_group("spawn_await_exported");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| raw_spawn_await(&rt, iters))
    });
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| scope_spawn_await(&rt, iters, Scope::builder))
    });
    g.bench_function("go_go_scope_metrics", |b| {
        b.iter_custom(|iters| {
            scope_spawn_await(&rt, iters, || {
                Scope::builder().name("bench-metrics").metrics(true)
            })
        })
    });
    g.bench_function("go_go_scope_metrics_facade", |b| {
        b.iter_custom(|iters| {
            scope_spawn_await(&rt, iters, || {
                Scope::builder().name("bench-facade").metrics_facade(true)
            })
        })
    });
    g.bench_function("go_go_scope_otel_meter", |b| {
        b.iter_custom(|iters| {
            let meter = meter.clone();
            scope_spawn_await(&rt, iters, move || {
                Scope::builder()
                    .name("bench-meter")
                    .otel_meter(meter.clone())
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("scope_create_close_exported");
    g.bench_function("go_go_scope", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let scope = Scope::builder().detached().build().expect("scope");
                scope.close().await.expect("close");
            })
        })
    });
    g.bench_function("go_go_scope_metrics_facade", |b| {
        b.iter_custom(|iters| {
            on_worker(&rt, iters, || async {
                let scope = Scope::builder()
                    .name("bench-facade")
                    .metrics_facade(true)
                    .detached()
                    .build()
                    .expect("scope");
                scope.close().await.expect("close");
            })
        })
    });
    g.bench_function("go_go_scope_otel_meter", |b| {
        b.iter_custom(|iters| {
            let meter = meter.clone();
            on_worker(&rt, iters, move || {
                let meter = meter.clone();
                async move {
                    let scope = Scope::builder()
                        .name("bench-meter")
                        .otel_meter(meter)
                        .detached()
                        .build()
                        .expect("scope");
                    scope.close().await.expect("close");
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, exporters);
criterion_main!(benches);
