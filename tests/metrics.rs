//! Metrics export (Prometheus text, JSON, OpenTelemetry), the process-wide registry, the
//! periodic reporter and Pushgateway pushes.
//!
//! The registry is process-wide, so every test here uses scope names of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use go_go_scope::metrics::{
    self, ExportFormat, ExportOptions, MetricsReporter, PushError, ReporterOptions, export_metrics,
    export_metrics_with, push_text_to_gateway, push_to_gateway,
};
use go_go_scope::{Scope, ScopeMetrics};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn scope_with_one_success_and_one_failure(name: &str) -> (Scope, ScopeMetrics) {
    let scope = Scope::builder()
        .name(name.to_owned())
        .metrics(true)
        .build()
        .unwrap();
    scope.spawn(async { 1 }).await;
    scope.try_spawn(async { Err::<(), _>("boom") }).await;
    let m = scope.metrics().unwrap();
    (scope, m)
}

fn sample_line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

#[tokio::test]
async fn prometheus_export_has_every_original_metric_with_help_and_type() {
    let (scope, m) = scope_with_one_success_and_one_failure("exp-all").await;
    let text = export_metrics(&m, ExportFormat::Prometheus, "goscope");
    for (name, kind) in [
        ("goscope_tasks_spawned_total", "counter"),
        ("goscope_tasks_completed_total", "counter"),
        ("goscope_tasks_failed_total", "counter"),
        ("goscope_task_duration_seconds_total", "counter"),
        ("goscope_task_duration_avg_seconds", "gauge"),
        ("goscope_task_duration_p95_seconds", "gauge"),
        ("goscope_resources_registered_total", "counter"),
        ("goscope_resources_disposed_total", "counter"),
        ("goscope_tasks_cancelled_total", "counter"),
        ("goscope_tasks_ended_total", "counter"),
        ("goscope_task_run_seconds", "histogram"),
        ("goscope_permit_wait_seconds", "histogram"),
        ("goscope_tasks_running", "gauge"),
        ("goscope_resource_disposal_errors_total", "counter"),
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {name} {kind}\n"))
                || text.starts_with(&format!("# HELP {name} ")),
            "{name}\n{text}"
        );
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
    }
    assert_eq!(
        sample_line(&text, "goscope_tasks_spawned_total"),
        "goscope_tasks_spawned_total 2"
    );
    assert_eq!(
        sample_line(&text, "goscope_tasks_completed_total"),
        "goscope_tasks_completed_total 1"
    );
    assert_eq!(
        sample_line(&text, "goscope_tasks_failed_total"),
        "goscope_tasks_failed_total 1"
    );
    // Both tasks are in the run-time histogram, each under its outcome.
    assert!(text.contains("goscope_task_run_seconds_count{outcome=\"ok\"} 1\n"));
    assert!(text.contains("goscope_task_run_seconds_count{outcome=\"error\"} 1\n"));
    assert!(text.contains("goscope_task_run_seconds_bucket{outcome=\"ok\",le=\"+Inf\"} 1\n"));
    assert!(text.contains("goscope_tasks_ended_total{outcome=\"error\"} 1\n"));
    assert!(
        !text.contains("scope_duration"),
        "absent while the scope is open"
    );
    scope.close().await.unwrap();
    let closed = export_metrics(
        &scope.metrics().unwrap(),
        ExportFormat::Prometheus,
        "goscope",
    );
    assert!(closed.contains("# TYPE goscope_scope_duration_seconds gauge\n"));
}

#[tokio::test]
async fn a_custom_prefix_applies_to_every_name_and_format() {
    let (scope, m) = scope_with_one_success_and_one_failure("exp-prefix").await;
    let text = export_metrics(&m, ExportFormat::Prometheus, "myapp_scope");
    assert!(text.contains("myapp_scope_tasks_spawned_total 2\n"));
    assert!(text.contains("myapp_scope_tasks_completed_total 1\n"));
    assert!(text.lines().all(|l| l.starts_with("# HELP myapp_scope_")
        || l.starts_with("# TYPE myapp_scope_")
        || l.starts_with("myapp_scope_")));
    let json: Value =
        serde_json::from_str(&export_metrics(&m, ExportFormat::Json, "myapp")).unwrap();
    assert_eq!(json["myapp"]["tasks_spawned"], 2);
    scope.close().await.unwrap();
}

#[tokio::test]
async fn timestamps_are_off_by_default_and_the_same_on_every_sample_when_on() {
    let (scope, m) = scope_with_one_success_and_one_failure("exp-ts").await;
    let plain = export_metrics_with(
        &m,
        &ExportOptions::new(ExportFormat::Prometheus).prefix("test"),
    );
    let line = sample_line(&plain, "test_tasks_spawned_total");
    assert_eq!(line, "test_tasks_spawned_total 2");

    let stamped = export_metrics_with(
        &m,
        &ExportOptions::new(ExportFormat::Prometheus)
            .prefix("test")
            .include_timestamps(true),
    );
    let stamps: Vec<&str> = stamped
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert!(stamps.len() > 10);
    assert!(
        stamps
            .iter()
            .all(|s| s.len() >= 13 && s.chars().all(|c| c.is_ascii_digit()))
    );
    assert!(
        stamps.windows(2).all(|w| w[0] == w[1]),
        "one export, one timestamp"
    );
    let json: Value = serde_json::from_str(&export_metrics_with(
        &m,
        &ExportOptions::new(ExportFormat::Json).include_timestamps(true),
    ))
    .unwrap();
    assert!(json["goscope"]["timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);
    scope.close().await.unwrap();
}

#[tokio::test]
async fn json_is_pretty_in_milliseconds() {
    let scope = Scope::builder()
        .name("exp-json")
        .metrics(true)
        .build()
        .unwrap();
    scope.spawn(async {}).await;
    scope.defer(|| async {});
    scope.close().await.unwrap();
    let m = scope.metrics().unwrap();

    let text = export_metrics(&m, ExportFormat::Json, "goscope");
    assert!(
        text.starts_with("{\n  \"goscope\": {\n    \"scope\": \"exp-json\",\n"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&text).unwrap();
    let j = &json["goscope"];
    assert_eq!(j["tasks_spawned"], 1);
    assert_eq!(j["tasks_completed"], 1);
    assert_eq!(j["resources_registered"], 1);
    assert_eq!(j["resources_disposed"], 1);
    assert!(j["scope_duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(j["avg_task_duration_ms"].is_number());
    assert!(
        j.get("avg_task_duration").is_none(),
        "durations say their unit"
    );
}

#[test]
fn formats_parse_from_strings_and_unknown_ones_are_rejected() {
    assert_eq!("json".parse::<ExportFormat>().unwrap(), ExportFormat::Json);
    assert_eq!(
        "Prometheus".parse::<ExportFormat>().unwrap(),
        ExportFormat::Prometheus
    );
    assert!(
        "otel".parse::<ExportFormat>().is_err(),
        "OpenTelemetry goes through a meter"
    );
    let err = "xml".parse::<ExportFormat>().unwrap_err();
    assert_eq!(err.input(), "xml");
    assert!(err.to_string().contains("xml"));
    assert_eq!(ExportFormat::Json.to_string(), "json");
}

#[tokio::test(start_paused = true)]
async fn task_durations_land_in_the_histogram_buckets() {
    let scope = Scope::builder().name("hist").metrics(true).build().unwrap();
    for ms in [1_u64, 7, 7, 300, 90_000] {
        scope
            .spawn(async move { tokio::time::sleep(Duration::from_millis(ms)).await })
            .await;
    }
    let h = scope.metrics().unwrap().task_duration_histogram;
    assert_eq!(h.count, 5);
    assert_eq!(h.sum, Duration::from_millis(1 + 7 + 7 + 300 + 90_000));
    let at = |ms: u64| {
        h.buckets
            .iter()
            .find(|(b, _)| *b == Duration::from_millis(ms))
            .unwrap()
            .1
    };
    assert_eq!(at(1), 1);
    assert_eq!(at(5), 1);
    assert_eq!(at(10), 3);
    assert_eq!(at(250), 3);
    assert_eq!(at(500), 4);
    assert_eq!(at(60_000), 4, "the slowest is above every bound");
    scope.close().await.unwrap();
}

#[tokio::test]
async fn the_registry_sums_every_scope_of_a_name_and_never_goes_back() {
    for _ in 0..3 {
        let (scope, _) = scope_with_one_success_and_one_failure("reg-orders").await;
        scope.close().await.unwrap();
    }
    let live = Scope::builder()
        .name("reg-orders")
        .metrics(true)
        .build()
        .unwrap();
    let running = live.spawn(std::future::pending::<()>());
    live.spawn(async {}).await;

    let m = metrics::registry().snapshot_of("reg-orders").unwrap();
    assert_eq!(
        (m.tasks_spawned, m.tasks_completed, m.tasks_failed),
        (8, 4, 3)
    );
    assert!(m.scope_duration.is_some(), "the open scope's age");
    let text = metrics::encode();
    assert!(
        text.contains("goscope_tasks_spawned_total{scope=\"reg-orders\"} 8\n"),
        "{text}"
    );
    assert!(
        text.contains("goscope_tasks_running{scope=\"reg-orders\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("goscope_scopes_open{scope=\"reg-orders\"} 1\n"));
    assert!(
        text.contains("goscope_task_run_seconds_count{scope=\"reg-orders\",outcome=\"ok\"} 4\n")
    );
    assert!(
        text.contains("goscope_task_run_seconds_count{scope=\"reg-orders\",outcome=\"error\"} 3\n")
    );
    assert_eq!(
        text.matches("# TYPE goscope_tasks_spawned_total counter")
            .count(),
        1
    );

    // The live scope ends and its state goes away: its numbers stay in the totals. The task
    // cancelled by hand is cancelled, not failed.
    running.cancel();
    live.close().await.unwrap();
    drop(live);
    let m = metrics::registry().snapshot_of("reg-orders").unwrap();
    assert_eq!(
        (
            m.tasks_spawned,
            m.tasks_completed,
            m.tasks_failed,
            m.tasks_cancelled
        ),
        (8, 4, 3, 1)
    );
    let text = metrics::encode();
    assert!(text.contains("goscope_tasks_running{scope=\"reg-orders\"} 0\n"));
    assert!(text.contains("goscope_scopes_open{scope=\"reg-orders\"} 0\n"));
    assert!(metrics::registry().snapshot_of("reg-never-built").is_none());
}

#[tokio::test]
async fn scopes_without_metrics_are_not_in_the_registry() {
    let scope = Scope::builder().name("reg-quiet").build().unwrap();
    scope.spawn(async {}).await;
    scope.close().await.unwrap();
    assert!(metrics::registry().snapshot_of("reg-quiet").is_none());
    assert!(!metrics::encode().contains("reg-quiet"));
}

#[tokio::test]
async fn the_registry_plugs_into_an_application_registry() {
    let scope = Scope::builder()
        .name("reg-app")
        .metrics(true)
        .build()
        .unwrap();
    scope.spawn(async {}).await;
    let mut app = prometheus_client::registry::Registry::default();
    let requests: prometheus_client::metrics::counter::Counter = Default::default();
    app.register("http_requests", "Requests served", requests.clone());
    requests.inc();
    app.sub_registry_with_prefix("goscope")
        .register_collector(Box::new(metrics::registry().collector()));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &app).unwrap();
    assert!(text.contains("http_requests_total 1\n"));
    assert!(
        text.contains("goscope_tasks_completed_total{scope=\"reg-app\"} 1\n"),
        "{text}"
    );
    let custom = metrics::registry().encode_with_prefix("svc");
    assert!(custom.contains("svc_tasks_completed_total{scope=\"reg-app\"} 1\n"));
    scope.close().await.unwrap();
}

/// Collects every export of a reporter.
fn collecting() -> (Arc<Mutex<Vec<String>>>, ReporterOptions) {
    let exports = Arc::new(Mutex::new(Vec::new()));
    let sink = exports.clone();
    let options = ReporterOptions::new(move |text: String| {
        let sink = sink.clone();
        async move { sink.lock().unwrap().push(text) }
    });
    (exports, options)
}

fn count(exports: &Arc<Mutex<Vec<String>>>) -> usize {
    exports.lock().unwrap().len()
}

#[tokio::test(start_paused = true)]
async fn the_reporter_exports_at_once_then_every_interval_and_stops_and_restarts() {
    let scope = Scope::builder()
        .name("rep-cycle")
        .metrics(true)
        .build()
        .unwrap();
    scope.spawn(async {}).await;
    let (exports, options) = collecting();
    let reporter = MetricsReporter::new(
        &scope,
        options
            .format(ExportFormat::Json)
            .interval(Duration::from_millis(50)),
    );
    assert!(reporter.is_running());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(count(&exports), 3, "at 0, 50 and 100 ms");
    let first: Value = serde_json::from_str(&exports.lock().unwrap()[0]).unwrap();
    assert_eq!(first["goscope"]["tasks_spawned"], 1);

    reporter.stop();
    assert!(!reporter.is_running());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count(&exports), 3, "nothing while stopped");
    reporter.start();
    reporter.start(); // already running: no second loop
    tokio::time::sleep(Duration::from_millis(70)).await;
    assert_eq!(count(&exports), 5, "at once on start, then 50 ms later");
    reporter.report().await.unwrap();
    assert_eq!(count(&exports), 6);
    drop(reporter);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&exports), 6, "dropping the reporter stops it");
    scope.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_reporter_stops_with_its_scope() {
    let scope = Scope::builder()
        .name("rep-scope")
        .metrics(true)
        .build()
        .unwrap();
    let (exports, options) = collecting();
    let reporter = MetricsReporter::new(&scope, options.interval(Duration::from_millis(10)));
    tokio::time::sleep(Duration::from_millis(25)).await;
    assert_eq!(count(&exports), 3);
    scope.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count(&exports), 3);
    assert!(!reporter.is_running());
    reporter.start();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count(&exports), 3, "a closed scope is not reported again");
    reporter.report().await.unwrap();
    let last = exports.lock().unwrap().last().cloned().unwrap();
    assert!(
        last.contains("goscope_scope_duration_seconds"),
        "a final report after close"
    );
}

#[tokio::test(start_paused = true)]
async fn an_export_error_is_logged_and_reporting_goes_on() {
    let scope = Scope::builder()
        .name("rep-errors")
        .metrics(true)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let reporter = MetricsReporter::new(
        &scope,
        ReporterOptions::new(move |_text: String| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(std::io::Error::other("endpoint down"))
                } else {
                    Ok(())
                }
            }
        })
        .interval(Duration::from_millis(10)),
    );
    tokio::time::sleep(Duration::from_millis(35)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(reporter.is_running());
    drop(reporter);
    scope.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_scope_without_metrics_is_never_exported() {
    let scope = Scope::builder().name("rep-none").build().unwrap();
    let (exports, options) = collecting();
    let reporter = MetricsReporter::new(&scope, options.interval(Duration::from_millis(10)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    reporter.report().await.unwrap();
    assert_eq!(count(&exports), 0);
    scope.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_reporter_honours_timestamps_and_prefix() {
    let scope = Scope::builder()
        .name("rep-ts")
        .metrics(true)
        .build()
        .unwrap();
    let (exports, options) = collecting();
    let reporter = MetricsReporter::new(
        &scope,
        options
            .prefix("svc")
            .include_timestamps(true)
            .auto_start(false),
    );
    assert!(!reporter.is_running());
    reporter.report().await.unwrap();
    let text = exports.lock().unwrap()[0].clone();
    let parts: Vec<&str> = sample_line(&text, "svc_tasks_spawned_total")
        .split(' ')
        .collect();
    assert_eq!(parts.len(), 3, "{text}");
    assert!(parts[2].len() >= 13);
    scope.close().await.unwrap();
}

/// A one-shot HTTP server: answers `status` and `body`, returns the request it got.
async fn fake_gateway(
    status: &'static str,
    body: &'static str,
) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0_u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).into_owned();
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if rest.len() >= length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    (url, handle)
}

#[tokio::test]
async fn pushing_puts_the_registry_text_under_the_grouping_path() {
    let scope = Scope::builder()
        .name("push-ok")
        .metrics(true)
        .build()
        .unwrap();
    scope.spawn(async {}).await;
    let (url, server) = fake_gateway("200 OK", "").await;
    push_to_gateway(&url, "nightly batch", "worker/1")
        .await
        .unwrap();
    let request = server.await.unwrap();
    assert!(
        request.starts_with(
            "PUT /metrics/job/nightly%20batch/instance@base64/d29ya2VyLzE= HTTP/1.1\r\n"
        ),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4")
    );
    assert!(request.contains("goscope_tasks_spawned_total{scope=\"push-ok\"} 1\n"));
    scope.close().await.unwrap();
}

#[tokio::test]
async fn a_rejected_or_unreachable_push_is_an_error_that_says_why() {
    let (url, server) =
        fake_gateway("400 Bad Request", "text format parsing error in line 3").await;
    let err = push_text_to_gateway(&url, "job", "", "not metrics".into())
        .await
        .unwrap_err();
    server.await.unwrap();
    match &err {
        PushError::Rejected { status, body, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(body, "text format parsing error in line 3");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("400"));

    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let err = push_to_gateway(&dead, "job", "ci").await.unwrap_err();
    assert!(matches!(err, PushError::Request { .. }), "{err:?}");
    for bad in ["localhost:9091", "http://", "http:///127.0.0.1:1"] {
        assert!(
            matches!(
                push_to_gateway(bad, "job", "").await,
                Err(PushError::InvalidUrl { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_race_counts_its_losers_as_cancelled_not_failed() {
    let scope = Scope::builder()
        .name("race-losers")
        .metrics(true)
        .build()
        .unwrap();
    // The first answers at once; the other two never do and are cancelled.
    let racers = [0_u64, 3_600, 3_600].map(|secs| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok::<u64, &str>(secs)
    });
    let (error, winner) = scope.race(racers).await;
    assert!(error.is_none());
    assert_eq!(winner, Some(0));
    scope.close().await.unwrap();
    let m = metrics::registry().snapshot_of("race-losers").unwrap();
    assert_eq!(m.tasks_failed, 0, "{m:?}");
    assert_eq!(
        m.tasks_cancelled + m.tasks_completed,
        m.tasks_spawned,
        "{m:?}"
    );
    assert!(m.tasks_cancelled >= 2, "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_task_is_a_failure_with_its_run_time_in_the_histogram() {
    let scope = Scope::builder()
        .name("slow-timeouts")
        .metrics(true)
        .build()
        .unwrap();
    let (error, _) = scope
        .task(|_| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, go_go_scope::Error>(())
        })
        .timeout(Duration::from_secs(2))
        .spawn()
        .await;
    assert!(matches!(error, Some(go_go_scope::Error::Timeout { .. })));
    let m = scope.metrics().unwrap();
    assert_eq!((m.tasks_failed, m.tasks_by_outcome.timeout), (1, 1));
    let (kind, h) = &m.run_histograms[0];
    assert_eq!(*kind, go_go_scope::OutcomeKind::Timeout);
    assert_eq!((h.count, h.sum), (1, Duration::from_secs(2)));
    assert_eq!(m.p95_task_duration, Duration::from_secs(2));
    let text = metrics::encode();
    assert!(text.contains(
        "goscope_task_run_seconds_bucket{scope=\"slow-timeouts\",outcome=\"timeout\",le=\"2.5\"} 1\n"
    ), "{text}");
    assert!(
        text.contains("goscope_task_duration_p95_seconds{scope=\"slow-timeouts\"} 2."),
        "{text}"
    );
    scope.close().await.unwrap();
}

#[tokio::test]
async fn the_openmetrics_exposition_has_one_type_line_per_family() {
    let scope = Scope::builder()
        .name("om-names")
        .metrics(true)
        .build()
        .unwrap();
    scope.spawn(async {}).await;
    let mut app = prometheus_client::registry::Registry::default();
    app.sub_registry_with_prefix("goscope")
        .register_collector(Box::new(metrics::registry().collector()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &app).unwrap();
    let mut families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let all = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(
        families.len(),
        all,
        "a family name is declared twice:\n{text}"
    );
    assert!(families.contains(&"goscope_task_duration_seconds"));
    assert!(families.contains(&"goscope_task_run_seconds"));
    // OpenMetrics requires every histogram series to end with its +Inf bucket.
    let infs = text
        .lines()
        .filter(|l| l.starts_with("goscope_task_run_seconds_bucket{") && l.contains("le=\"+Inf\""))
        .count();
    let series = text
        .lines()
        .filter(|l| l.starts_with("goscope_task_run_seconds_count{"))
        .count();
    assert!(series > 0 && infs == series, "{text}");
    scope.close().await.unwrap();
}

#[tokio::test]
async fn control_characters_in_scope_names_are_escaped() {
    let scope = Scope::builder()
        .name("ctl\r\t\0name")
        .metrics(true)
        .build()
        .unwrap();
    scope.spawn(async {}).await;
    let text = metrics::encode();
    assert!(!text.contains('\r') && !text.contains('\t') && !text.contains('\0'));
    assert!(
        text.contains(r#"goscope_tasks_spawned_total{scope="ctl\\r\\t\\u{0}name"} 1"#),
        "{text}"
    );
    let m = metrics::registry().snapshot_of("ctl\r\t\0name").unwrap();
    assert_eq!(m.tasks_spawned, 1);
    scope.close().await.unwrap();
}

#[tokio::test]
async fn dropped_helpers_release_their_registration() {
    let scope = Scope::builder()
        .name("helper-release")
        .metrics(true)
        .build()
        .unwrap();
    for _ in 0..100 {
        let channel = scope.channel::<u32>(1);
        drop(channel);
    }
    for _ in 0..10 {
        drop(scope.broadcast::<u32>());
        let pool = scope
            .pool(go_go_scope::PoolOptions::new(|| async {
                Ok::<_, go_go_scope::Error>(0_u8)
            }))
            .await
            .unwrap();
        drop(pool);
    }
    let kept = scope.channel::<u32>(1);
    let m = scope.metrics().unwrap();
    assert_eq!((m.resources_registered, m.resources_disposed), (121, 120));
    scope.close().await.unwrap();
    // The helper still held is closed with its scope.
    assert!(kept.is_closed());
    let m = scope.metrics().unwrap();
    assert_eq!((m.resources_registered, m.resources_disposed), (121, 121));
}
