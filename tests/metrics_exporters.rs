//! Scope metrics through an application's own pipeline: the `metrics` crate's recorder
//! (`ScopeBuilder::metrics_facade`) and an OpenTelemetry meter (`ScopeBuilder::otel_meter`).
//!
//! Both get the same events; each test reads the numbers back from the real destination
//! (`metrics-exporter-prometheus`'s rendering, the OpenTelemetry SDK's exported data).

use std::time::Duration;

use go_go_scope::{CircuitBreaker, Scope, ScopeBuilder, ScopeMeter};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};

/// Tasks that end in every way a task can end on its own, in a scope with a concurrency limit:
/// two values (one after two retries), an error, a panic, a cancellation; and a failing
/// disposer. Closes the scope.
async fn run_every_outcome(scope: Scope) {
    let _ = scope.spawn(async { 1 }).await;
    let _ = scope.try_spawn(async { Err::<(), _>("boom") }).await;
    let _ = scope.spawn(async { panic!("on purpose") }).await;
    let pending = scope.spawn(std::future::pending::<()>());
    tokio::task::yield_now().await;
    pending.cancel();
    let _ = pending.await;
    let retried = scope
        .task(|attempt| async move {
            if attempt < 3 {
                Err(format!("attempt {attempt}"))
            } else {
                Ok(attempt)
            }
        })
        .retry(5)
        .spawn();
    assert_eq!(retried.result().await.unwrap(), 3);
    scope.defer(|| async { Err::<(), _>("disposer failed") });
    assert!(
        scope.close().await.is_err(),
        "the disposer's failure is reported"
    );
}

fn every_outcome(name: &'static str) -> ScopeBuilder {
    Scope::builder().name(name).concurrency(2)
}

/// A scope whose breaker opens on the first failure and so refuses the next task.
async fn run_breaker(scope: Scope) {
    let _ = scope.try_spawn(async { Err::<(), _>("down") }).await;
    let refused = scope.spawn(async { 1 }).result().await;
    assert!(
        matches!(refused, Err(go_go_scope::Error::CircuitOpen)),
        "{refused:?}"
    );
    scope.close().await.unwrap();
}

fn breaker(name: &'static str) -> ScopeBuilder {
    let breaker = CircuitBreaker::new(1, Duration::from_secs(3600)).unwrap();
    Scope::builder().name(name).circuit_breaker(breaker)
}

// --- the `metrics` facade ---------------------------------------------------------------------

/// The value of the sample `name{labels}` in Prometheus text.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no sample {prefix}in\n{text}"))
        .parse()
        .unwrap()
}

fn build_under(recorder: &PrometheusRecorder, builder: ScopeBuilder) -> Scope {
    metrics::with_local_recorder(recorder, || builder.metrics_facade(true).build().unwrap())
}

#[tokio::test]
async fn the_facade_records_every_outcome_into_the_installed_recorder() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scope = build_under(&recorder, every_outcome("facade-outcomes"));
    let open = recorder.handle().render();
    assert_eq!(
        sample(&open, "goscope_scopes_open", r#"scope="facade-outcomes""#),
        1.0
    );
    run_every_outcome(scope).await;

    let text = recorder.handle().render();
    let scope = r#"scope="facade-outcomes""#;
    for (name, value) in [
        ("goscope_tasks_spawned_total", 5.0),
        ("goscope_tasks_completed_total", 2.0),
        ("goscope_tasks_failed_total", 2.0),
        ("goscope_tasks_cancelled_total", 1.0),
        ("goscope_task_retries_total", 2.0),
        ("goscope_resources_registered_total", 1.0),
        ("goscope_resources_disposed_total", 1.0),
        ("goscope_resource_disposal_errors_total", 1.0),
        ("goscope_scopes_open", 0.0),
        ("goscope_tasks_running", 0.0),
        ("goscope_permit_wait_seconds_count", 5.0),
    ] {
        assert_eq!(sample(&text, name, scope), value, "{name}");
    }
    for (outcome, n) in [
        ("ok", 2.0),
        ("error", 1.0),
        ("panicked", 1.0),
        ("cancelled", 1.0),
    ] {
        let labels = format!(r#"{scope},outcome="{outcome}""#);
        assert_eq!(
            sample(&text, "goscope_tasks_ended_total", &labels),
            n,
            "{outcome}"
        );
        assert_eq!(
            sample(&text, "goscope_task_run_seconds_count", &labels),
            n,
            "{outcome}"
        );
    }
    assert!(sample(&text, "goscope_scope_duration_seconds", scope) > 0.0);
    assert!(text.contains("# HELP goscope_tasks_ended_total "), "{text}");
}

#[tokio::test]
async fn the_facade_reports_the_breaker() {
    let recorder = PrometheusBuilder::new().build_recorder();
    run_breaker(build_under(&recorder, breaker("facade-breaker"))).await;
    let text = recorder.handle().render();
    let scope = r#"scope="facade-breaker""#;
    assert_eq!(sample(&text, "goscope_breaker_state", scope), 2.0, "open");
    assert_eq!(
        sample(&text, "goscope_breaker_rejections_total", scope),
        1.0
    );
    assert_eq!(sample(&text, "goscope_tasks_failed_total", scope), 2.0);
    let rejected = format!(r#"{scope},outcome="rejected""#);
    assert_eq!(sample(&text, "goscope_tasks_ended_total", &rejected), 1.0);
}

#[tokio::test]
async fn scopes_of_one_name_record_into_the_recorder_in_force_when_built() {
    let first = PrometheusBuilder::new().build_recorder();
    let second = PrometheusBuilder::new().build_recorder();
    for (recorder, tasks) in [(&first, 1), (&second, 2), (&first, 3)] {
        let scope = build_under(recorder, Scope::builder().name("facade-recorders"));
        for _ in 0..tasks {
            scope.spawn(async {}).await;
        }
        scope.close().await.unwrap();
    }
    let scope = r#"scope="facade-recorders""#;
    for (recorder, spawned) in [(&first, 4.0), (&second, 2.0)] {
        let text = recorder.handle().render();
        assert_eq!(sample(&text, "goscope_tasks_spawned_total", scope), spawned);
        assert!(
            text.contains("# HELP goscope_tasks_spawned_total "),
            "{text}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn permit_waits_and_run_times_are_measured_on_the_scope_clock() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scope = build_under(
        &recorder,
        Scope::builder().name("facade-permits").concurrency(1),
    );
    // The second task waits 100 ms for the first one's permit, then runs 50 ms.
    let first = scope.spawn(async { tokio::time::sleep(Duration::from_millis(100)).await });
    let second = scope.spawn(async { tokio::time::sleep(Duration::from_millis(50)).await });
    first.await;
    second.await;
    scope.close().await.unwrap();
    let text = recorder.handle().render();
    let scope = r#"scope="facade-permits""#;
    assert_eq!(
        sample(&text, "goscope_permit_wait_seconds_count", scope),
        2.0
    );
    // Sums of f64 seconds: compared in whole milliseconds (the paused clock makes them exact).
    let millis = |name: &str, labels: &str| (sample(&text, name, labels) * 1000.0).round();
    assert_eq!(millis("goscope_permit_wait_seconds_sum", scope), 100.0);
    let ok = format!(r#"{scope},outcome="ok""#);
    assert_eq!(millis("goscope_task_run_seconds_sum", &ok), 150.0);
    assert_eq!(millis("goscope_scope_duration_seconds", scope), 150.0);
}

#[tokio::test]
async fn a_scope_without_the_option_records_nothing() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scope = metrics::with_local_recorder(&recorder, || {
        Scope::builder().name("facade-off").build().unwrap()
    });
    scope.spawn(async {}).result().await.unwrap();
    scope.close().await.unwrap();
    assert!(!recorder.handle().render().contains("facade-off"));
}

// --- OpenTelemetry ----------------------------------------------------------------------------

struct Meter {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
    meter: ScopeMeter,
}

fn meter() -> Meter {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter.clone())
        .build();
    let meter = ScopeMeter::new(&provider.meter("metrics-exporters-test"));
    Meter {
        provider,
        exporter,
        meter,
    }
}

impl Meter {
    /// Exports now and returns the latest (cumulative) export.
    fn collect(&self) -> ResourceMetrics {
        self.provider.force_flush().unwrap();
        self.exporter.get_finished_metrics().unwrap().pop().unwrap()
    }
}

/// The value (sum, gauge value, or histogram count) of `name`'s data point whose attributes
/// are exactly `attributes`, as `f64`.
fn point(metrics: &ResourceMetrics, name: &str, attributes: &[(&str, &str)]) -> f64 {
    let metric = metrics
        .scope_metrics()
        .flat_map(|s| s.metrics())
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no metric {name}"));
    let matches = |attrs: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
        let mut attrs: Vec<(String, String)> = attrs
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        attrs.sort();
        let mut wanted: Vec<(String, String)> = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        wanted.sort();
        attrs == wanted
    };
    macro_rules! find {
        ($data:expr) => {
            match $data {
                MetricData::Sum(sum) => sum
                    .data_points()
                    .find(|p| matches(&mut p.attributes()))
                    .map(|p| p.value() as f64),
                MetricData::Gauge(gauge) => gauge
                    .data_points()
                    .find(|p| matches(&mut p.attributes()))
                    .map(|p| p.value() as f64),
                MetricData::Histogram(histogram) => histogram
                    .data_points()
                    .find(|p| matches(&mut p.attributes()))
                    .map(|p| p.count() as f64),
                MetricData::ExponentialHistogram(_) => None,
            }
        };
    }
    let found = match metric.data() {
        AggregatedMetrics::F64(data) => find!(data),
        AggregatedMetrics::U64(data) => find!(data),
        AggregatedMetrics::I64(data) => find!(data),
    };
    found.unwrap_or_else(|| panic!("no point of {name} with {attributes:?}"))
}

#[tokio::test]
async fn the_meter_records_every_outcome() {
    let meter = meter();
    let scope = every_outcome("otel-outcomes")
        .otel_meter(meter.meter.clone())
        .build()
        .unwrap();
    run_every_outcome(scope).await;

    let metrics = meter.collect();
    let scope = [("scope", "otel-outcomes")];
    for (name, value) in [
        ("goscope.tasks.spawned", 5.0),
        ("goscope.tasks.completed", 2.0),
        ("goscope.tasks.failed", 2.0),
        ("goscope.tasks.cancelled", 1.0),
        ("goscope.task.retries", 2.0),
        ("goscope.resources.registered", 1.0),
        ("goscope.resources.disposed", 1.0),
        ("goscope.resource.disposal_errors", 1.0),
        ("goscope.scopes.open", 0.0),
        ("goscope.tasks.running", 0.0),
        ("goscope.permit.wait", 5.0),
    ] {
        assert_eq!(point(&metrics, name, &scope), value, "{name}");
    }
    for (outcome, n) in [
        ("ok", 2.0),
        ("error", 1.0),
        ("panicked", 1.0),
        ("cancelled", 1.0),
    ] {
        let attributes = [("scope", "otel-outcomes"), ("outcome", outcome)];
        assert_eq!(point(&metrics, "goscope.tasks.ended", &attributes), n);
        assert_eq!(point(&metrics, "goscope.task.run", &attributes), n);
    }
    assert!(point(&metrics, "goscope.scope.duration", &scope) > 0.0);
    let run = metrics
        .scope_metrics()
        .flat_map(|s| s.metrics())
        .find(|m| m.name() == "goscope.task.run")
        .unwrap();
    assert_eq!(run.unit(), "s");
}

#[tokio::test]
async fn the_meter_reports_the_breaker() {
    let meter = meter();
    run_breaker(
        breaker("otel-breaker")
            .otel_meter(meter.meter.clone())
            .build()
            .unwrap(),
    )
    .await;
    let metrics = meter.collect();
    let scope = [("scope", "otel-breaker")];
    assert_eq!(point(&metrics, "goscope.breaker.state", &scope), 2.0);
    assert_eq!(point(&metrics, "goscope.breaker.rejections", &scope), 1.0);
    let rejected = [("scope", "otel-breaker"), ("outcome", "rejected")];
    assert_eq!(point(&metrics, "goscope.tasks.ended", &rejected), 1.0);
}
