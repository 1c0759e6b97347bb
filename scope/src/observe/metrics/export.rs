//! One metrics snapshot as Prometheus text or JSON. (OpenTelemetry gets the scope instruments
//! through a meter, `ScopeBuilder::otel_meter`, and the SDK's exporters.)
//!
//! The Prometheus text is written by `prometheus-client` (text format 0.0.4, or OpenMetrics
//! when the collector is registered in an application's registry); this module only decides
//! which families exist, their names, help texts and values. Every family has a name of its
//! own once the encoder's suffixes are added, so both formats parse:
//!
//! | name (prefix `goscope`) | type | labels |
//! |---|---|---|
//! | `goscope_tasks_spawned_total` | counter | |
//! | `goscope_tasks_completed_total` | counter | |
//! | `goscope_tasks_failed_total` | counter | (failures only, not cancellations) |
//! | `goscope_tasks_cancelled_total` | counter | |
//! | `goscope_tasks_ended_total` | counter | `outcome` |
//! | `goscope_task_duration_seconds_total` | counter | |
//! | `goscope_task_duration_avg_seconds` | gauge | |
//! | `goscope_task_duration_p95_seconds` | gauge | |
//! | `goscope_task_run_seconds` | histogram | `outcome` |
//! | `goscope_permit_wait_seconds` | histogram | |
//! | `goscope_task_retries_total` | counter | |
//! | `goscope_breaker_state` | gauge | (only with a breaker) |
//! | `goscope_breaker_rejections_total` | counter | |
//! | `goscope_scopes_open` | gauge | (registry only) |
//! | `goscope_tasks_running` | gauge | |
//! | `goscope_resources_registered_total` | counter | |
//! | `goscope_resources_disposed_total` | counter | |
//! | `goscope_resource_disposal_errors_total` | counter | |
//! | `goscope_scope_duration_seconds` | gauge | (only once known) |
//!
//! The registry adds the label `scope` to every series.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::registry::breaker_level;
use super::{DurationHistogram, ScopeMetrics};
use crate::core::error::OutcomeKind;

/// The formats [`export_metrics`] writes. Parse one from a string with [`str::parse`].
///
/// *Feature `metrics`.*
///
/// ```
/// use go_go_scope::metrics::ExportFormat;
///
/// assert_eq!("prometheus".parse::<ExportFormat>().unwrap(), ExportFormat::Prometheus);
/// assert_eq!("JSON".parse::<ExportFormat>().unwrap(), ExportFormat::Json);
/// let err = "xml".parse::<ExportFormat>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown metrics format `xml`: use prometheus or json");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ExportFormat {
    /// Prometheus text exposition format 0.0.4 (durations in seconds).
    #[default]
    Prometheus,
    /// A pretty-printed JSON object (durations in milliseconds, keys ending in `_ms`).
    Json,
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Prometheus => "prometheus",
            ExportFormat::Json => "json",
        })
    }
}

/// The error of parsing an [`ExportFormat`] from a string that names none.
///
/// *Feature `metrics`.*
///
/// ```
/// let err = "yaml".parse::<go_go_scope::metrics::ExportFormat>().unwrap_err();
/// assert_eq!(err.input(), "yaml");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metrics format `{input}`: use prometheus or json")]
pub struct ParseFormatError {
    input: String,
}

impl ParseFormatError {
    /// The string that named no format.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl FromStr for ExportFormat {
    type Err = ParseFormatError;

    fn from_str(s: &str) -> Result<ExportFormat, ParseFormatError> {
        match s.to_ascii_lowercase().as_str() {
            "prometheus" => Ok(ExportFormat::Prometheus),
            "json" => Ok(ExportFormat::Json),
            _ => Err(ParseFormatError {
                input: s.to_owned(),
            }),
        }
    }
}

/// How [`export_metrics_with`] writes a snapshot: format, name prefix, timestamps.
///
/// Defaults: Prometheus, prefix `goscope`, no timestamps (a Pushgateway rejects samples that
/// carry them, and Prometheus stamps scraped samples itself).
///
/// *Feature `metrics`.*
///
/// ```
/// use go_go_scope::metrics::{ExportFormat, ExportOptions};
///
/// let options = ExportOptions::new(ExportFormat::Json).prefix("myapp").include_timestamps(true);
/// assert_eq!(options.format, ExportFormat::Json);
/// assert_eq!(options.prefix, "myapp");
/// assert!(options.include_timestamps);
/// assert_eq!(ExportOptions::default().prefix, "goscope");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportOptions {
    /// The output format.
    pub format: ExportFormat,
    /// Prepended to every metric name (`goscope` by default). In Prometheus names, characters
    /// other than ASCII letters, digits, `_` and `:` become `_`.
    pub prefix: Cow<'static, str>,
    /// Write the export time on every sample (Prometheus: epoch milliseconds after the value;
    /// JSON: a `timestamp_ms` key).
    pub include_timestamps: bool,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions::new(ExportFormat::Prometheus)
    }
}

impl ExportOptions {
    /// Options for `format`, with the default prefix and no timestamps.
    pub fn new(format: ExportFormat) -> ExportOptions {
        ExportOptions {
            format,
            prefix: Cow::Borrowed("goscope"),
            include_timestamps: false,
        }
    }

    /// Sets the metric name prefix.
    pub fn prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> ExportOptions {
        self.prefix = prefix.into();
        self
    }

    /// Writes the export time on every sample when `on`.
    pub fn include_timestamps(mut self, on: bool) -> ExportOptions {
        self.include_timestamps = on;
        self
    }
}

/// Writes one metrics snapshot in `format`, every name prefixed with `prefix`, without
/// timestamps.
///
/// *Feature `metrics`.*
///
/// ```
/// use go_go_scope::Scope;
/// use go_go_scope::metrics::{ExportFormat, export_metrics};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = Scope::builder().metrics(true).build().unwrap();
/// scope.spawn(async {}).await;
/// scope.spawn(async {}).await;
/// let text = export_metrics(&scope.metrics().unwrap(), ExportFormat::Prometheus, "myapp");
/// assert!(text.contains("# TYPE myapp_tasks_spawned_total counter\n"));
/// assert!(text.contains("\nmyapp_tasks_spawned_total 2\n"));
/// assert!(text.contains("# TYPE myapp_task_run_seconds histogram\n"));
///
/// let json: serde_json::Value =
///     serde_json::from_str(&export_metrics(&scope.metrics().unwrap(), ExportFormat::Json, "myapp"))
///         .unwrap();
/// assert_eq!(json["myapp"]["tasks_completed"], 2);
/// scope.close().await.unwrap();
/// # }
/// ```
pub fn export_metrics(metrics: &ScopeMetrics, format: ExportFormat, prefix: &str) -> String {
    export_metrics_with(
        metrics,
        &ExportOptions::new(format).prefix(prefix.to_owned()),
    )
}

/// Writes one metrics snapshot as `options` say; see [`ExportOptions`].
///
/// *Feature `metrics`.*
///
/// ```
/// use go_go_scope::Scope;
/// use go_go_scope::metrics::{ExportFormat, ExportOptions, export_metrics_with};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = Scope::builder().metrics(true).build().unwrap();
/// scope.spawn(async {}).await;
/// let m = scope.metrics().unwrap();
/// let plain = export_metrics_with(&m, &ExportOptions::default());
/// assert!(plain.lines().any(|l| l == "goscope_tasks_spawned_total 1"));
/// let stamped = export_metrics_with(&m, &ExportOptions::default().include_timestamps(true));
/// let line = stamped.lines().find(|l| l.starts_with("goscope_tasks_spawned_total")).unwrap();
/// let parts: Vec<&str> = line.split(' ').collect();
/// assert_eq!(parts[1], "1");
/// assert!(parts[2].len() >= 13); // epoch milliseconds
/// scope.close().await.unwrap();
/// # }
/// ```
pub fn export_metrics_with(metrics: &ScopeMetrics, options: &ExportOptions) -> String {
    let timestamp = options.include_timestamps.then(now_since_epoch);
    match options.format {
        ExportFormat::Prometheus => {
            let text = encode_prometheus(
                &options.prefix,
                SnapshotCollector {
                    metrics: metrics.clone(),
                },
            );
            match timestamp {
                Some(at) => stamp_samples(&text, at),
                None => text,
            }
        }
        ExportFormat::Json => to_json(metrics, &options.prefix, timestamp),
    }
}

fn now_since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// A prefix usable in Prometheus names: invalid characters become `_`; empty means none.
pub(crate) fn prometheus_prefix(prefix: &str) -> Option<String> {
    if prefix.is_empty() {
        return None;
    }
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.starts_with(|c: char| c.is_ascii_digit()) {
        clean.insert(0, '_');
    }
    Some(clean)
}

/// Encodes `collector` with `prometheus-client`'s text format 0.0.4 encoder.
pub(crate) fn encode_prometheus(prefix: &str, collector: impl Collector) -> String {
    let mut registry = match prometheus_prefix(prefix) {
        Some(prefix) => Registry::with_prefix(prefix),
        None => Registry::default(),
    };
    registry.register_collector(Box::new(collector));
    let mut text = String::new();
    // Writing into a `String` cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// Appends ` <epoch ms>` to every sample line of an exposition text.
fn stamp_samples(text: &str, at: Duration) -> String {
    let millis = at.as_millis();
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        out.push_str(line);
        if !line.is_empty() && !line.starts_with('#') {
            out.push(' ');
            out.push_str(&millis.to_string());
        }
        out.push('\n');
    }
    out
}

/// A single snapshot, without labels (the shape of the original's export).
#[derive(Debug)]
struct SnapshotCollector {
    metrics: ScopeMetrics,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        encode_families(&mut encoder, &[Series::unlabelled(&self.metrics)])
    }
}

/// One series of every family: a snapshot, with the `scope` label or without.
pub(crate) struct Series<'a> {
    pub(crate) scope_label: Option<&'a str>,
    pub(crate) metrics: &'a ScopeMetrics,
    /// Scopes of the name still open (the registry only).
    pub(crate) scopes_open: Option<u64>,
}

impl<'a> Series<'a> {
    fn unlabelled(metrics: &'a ScopeMetrics) -> Series<'a> {
        Series {
            scope_label: None,
            metrics,
            scopes_open: None,
        }
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

enum Sample {
    Count(u64),
    Seconds(f64),
    Gauge(f64),
    GaugeCount(u64),
    /// One counter sample per outcome.
    ByOutcome,
    /// One histogram per outcome that has samples.
    RunHistograms,
    Histogram(fn(&ScopeMetrics) -> &DurationHistogram),
}

/// Family name (without prefix and without the `_total` the encoder adds to counters), help,
/// type, and the value for one series (`None`: this series has no sample).
type Family = (
    &'static str,
    &'static str,
    MetricType,
    fn(&Series<'_>) -> Option<Sample>,
);

const FAMILIES: &[Family] = &[
    (
        "tasks_spawned",
        "Total tasks created",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.tasks_spawned)),
    ),
    (
        "tasks_completed",
        "Tasks that succeeded",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.tasks_completed)),
    ),
    (
        "tasks_failed",
        "Tasks that failed: error, timeout, panicked or rejected (cancelled tasks are not failures)",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.tasks_failed)),
    ),
    (
        "tasks_cancelled",
        "Tasks that were cancelled",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.tasks_cancelled)),
    ),
    (
        "tasks_ended",
        "Tasks that ended, by outcome",
        MetricType::Counter,
        |_| Some(Sample::ByOutcome),
    ),
    (
        "task_duration_seconds",
        "Total run time of every ended task",
        MetricType::Counter,
        |s| Some(Sample::Seconds(seconds(s.metrics.total_task_duration))),
    ),
    (
        "task_duration_avg_seconds",
        "Average task run time over the recent window",
        MetricType::Gauge,
        |s| Some(Sample::Gauge(seconds(s.metrics.avg_task_duration))),
    ),
    (
        "task_duration_p95_seconds",
        "P95 task run time over the recent window",
        MetricType::Gauge,
        |s| Some(Sample::Gauge(seconds(s.metrics.p95_task_duration))),
    ),
    (
        "task_run_seconds",
        "Run time of ended tasks, from the start of their body to their end, by outcome",
        MetricType::Histogram,
        |s| (!s.metrics.run_histograms.is_empty()).then_some(Sample::RunHistograms),
    ),
    (
        "permit_wait_seconds",
        "Time tasks waited for a concurrency permit that was not free at once",
        MetricType::Histogram,
        |_| Some(Sample::Histogram(|m| &m.permit_wait_histogram)),
    ),
    (
        "task_retries",
        "Retry attempts beyond each task's first",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.task_retries)),
    ),
    (
        "breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open",
        MetricType::Gauge,
        |s| {
            s.metrics
                .breaker_state
                .map(|state| Sample::GaugeCount(u64::from(breaker_level(state))))
        },
    ),
    (
        "breaker_rejections",
        "Tasks refused by an open circuit breaker",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.breaker_rejections)),
    ),
    (
        "scopes_open",
        "Scopes of this name built and not yet closed",
        MetricType::Gauge,
        |s| s.scopes_open.map(Sample::GaugeCount),
    ),
    (
        "tasks_running",
        "Tasks spawned and not yet ended",
        MetricType::Gauge,
        |s| Some(Sample::GaugeCount(s.metrics.tasks_running)),
    ),
    (
        "resources_registered",
        "Resources registered",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.resources_registered)),
    ),
    (
        "resources_disposed",
        "Resources cleaned up, or released by their owner before the scope closed",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.resources_disposed)),
    ),
    (
        "resource_disposal_errors",
        "Disposers that returned an error or panicked",
        MetricType::Counter,
        |s| Some(Sample::Count(s.metrics.disposal_errors)),
    ),
    (
        "scope_duration_seconds",
        "Total scope lifetime",
        MetricType::Gauge,
        |s| s.metrics.scope_duration.map(|d| Sample::Gauge(seconds(d))),
    ),
];

/// Encodes every family, one sample (or one per outcome) per series.
pub(crate) fn encode_families(
    encoder: &mut DescriptorEncoder<'_>,
    series: &[Series<'_>],
) -> Result<(), fmt::Error> {
    for (name, help, metric_type, value) in FAMILIES {
        let samples: Vec<(&Series<'_>, Sample)> = series
            .iter()
            .filter_map(|s| value(s).map(|v| (s, v)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let mut family = encoder.encode_descriptor(name, help, None, *metric_type)?;
        for (s, sample) in samples {
            match sample {
                Sample::ByOutcome => {
                    for kind in OutcomeKind::ALL {
                        let n = s.metrics.tasks_by_outcome.get(kind);
                        encode_labelled(&mut family, s, Some(kind), |e| {
                            e.encode_counter::<NoLabelSet, u64, u64>(&n, None)
                        })?;
                    }
                }
                Sample::RunHistograms => {
                    for (kind, h) in &s.metrics.run_histograms {
                        encode_labelled(&mut family, s, Some(*kind), |e| encode_histogram(e, h))?;
                    }
                }
                sample => encode_labelled(&mut family, s, None, |e| {
                    encode_sample(e, s.metrics, sample)
                })?,
            }
        }
    }
    Ok(())
}

/// Encodes one sample with the series' `scope` label and `outcome`, if any.
fn encode_labelled(
    family: &mut MetricEncoder<'_>,
    s: &Series<'_>,
    outcome: Option<OutcomeKind>,
    encode: impl FnOnce(&mut MetricEncoder<'_>) -> Result<(), fmt::Error>,
) -> Result<(), fmt::Error> {
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(2);
    if let Some(scope) = s.scope_label {
        labels.push(("scope", scope));
    }
    if let Some(kind) = outcome {
        labels.push(("outcome", kind.as_str()));
    }
    if labels.is_empty() {
        encode(family)
    } else {
        let mut labelled = family.encode_family(&labels)?;
        encode(&mut labelled)
    }
}

fn encode_histogram(
    encoder: &mut MetricEncoder<'_>,
    h: &DurationHistogram,
) -> Result<(), fmt::Error> {
    let mut previous = 0;
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(bound, cumulative)| {
            let in_bucket = cumulative.saturating_sub(previous);
            previous = cumulative;
            (seconds(bound), in_bucket)
        })
        .collect();
    // The overflow bucket: OpenMetrics requires it, and the 0.0.4 encoder adds none when given.
    let mut buckets = buckets;
    buckets.push((f64::INFINITY, h.count.saturating_sub(previous)));
    encoder.encode_histogram::<NoLabelSet>(seconds(h.sum), h.count, &buckets, None)
}

fn encode_sample(
    encoder: &mut MetricEncoder<'_>,
    m: &ScopeMetrics,
    sample: Sample,
) -> Result<(), fmt::Error> {
    match sample {
        Sample::Count(n) => encoder.encode_counter::<NoLabelSet, u64, u64>(&n, None),
        Sample::Seconds(v) => encoder.encode_counter::<NoLabelSet, f64, f64>(&v, None),
        Sample::Gauge(v) => encoder.encode_gauge(&v),
        Sample::GaugeCount(n) => encoder.encode_gauge(&n),
        Sample::Histogram(which) => encode_histogram(encoder, which(m)),
        // Encoded label by label in `encode_families`.
        Sample::ByOutcome | Sample::RunHistograms => Ok(()),
    }
}

fn json_snapshot(m: &ScopeMetrics, timestamp: Option<Duration>) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("scope".into(), json!(m.scope_name));
    object.insert("tasks_spawned".into(), json!(m.tasks_spawned));
    object.insert("tasks_completed".into(), json!(m.tasks_completed));
    object.insert("tasks_failed".into(), json!(m.tasks_failed));
    object.insert("tasks_cancelled".into(), json!(m.tasks_cancelled));
    object.insert("tasks_running".into(), json!(m.tasks_running));
    let by_outcome: serde_json::Map<String, Value> = OutcomeKind::ALL
        .iter()
        .map(|k| (k.as_str().to_owned(), json!(m.tasks_by_outcome.get(*k))))
        .collect();
    object.insert("tasks_ended".into(), Value::Object(by_outcome));
    object.insert("task_retries".into(), json!(m.task_retries));
    object.insert("breaker_rejections".into(), json!(m.breaker_rejections));
    object.insert(
        "total_task_duration_ms".into(),
        json!(millis(m.total_task_duration)),
    );
    object.insert(
        "avg_task_duration_ms".into(),
        json!(millis(m.avg_task_duration)),
    );
    object.insert(
        "p95_task_duration_ms".into(),
        json!(millis(m.p95_task_duration)),
    );
    object.insert("resources_registered".into(), json!(m.resources_registered));
    object.insert("resources_disposed".into(), json!(m.resources_disposed));
    object.insert("disposal_errors".into(), json!(m.disposal_errors));
    if let Some(d) = m.scope_duration {
        object.insert("scope_duration_ms".into(), json!(millis(d)));
    }
    let buckets: Vec<Value> = m
        .task_duration_histogram
        .buckets
        .iter()
        .map(|&(bound, n)| json!({ "le_ms": millis(bound), "count": n }))
        .collect();
    object.insert("task_duration_buckets".into(), Value::Array(buckets));
    if let Some(at) = timestamp {
        object.insert("timestamp_ms".into(), json!(at.as_millis() as u64));
    }
    Value::Object(object)
}

fn to_json(m: &ScopeMetrics, prefix: &str, timestamp: Option<Duration>) -> String {
    let mut root = serde_json::Map::new();
    root.insert(prefix.to_owned(), json_snapshot(m, timestamp));
    pretty(&Value::Object(root))
}

fn pretty(value: &Value) -> String {
    // Serializing a `Value` into a `String` cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::OutcomeCounts;

    fn sample() -> ScopeMetrics {
        ScopeMetrics {
            scope_name: "s".into(),
            tasks_spawned: 4,
            tasks_completed: 2,
            tasks_failed: 1,
            total_task_duration: Duration::from_micros(1_234_567),
            avg_task_duration: Duration::from_micros(617_283),
            p95_task_duration: Duration::from_secs(1),
            resources_registered: 1,
            resources_disposed: 1,
            disposal_errors: 0,
            scope_duration: Some(Duration::from_secs(2)),
            task_duration_histogram: histogram(),
            tasks_cancelled: 1,
            tasks_by_outcome: OutcomeCounts {
                ok: 2,
                timeout: 1,
                cancelled: 1,
                ..OutcomeCounts::default()
            },
            run_histograms: vec![(OutcomeKind::Ok, histogram())],
            ..ScopeMetrics::default()
        }
    }

    fn histogram() -> DurationHistogram {
        DurationHistogram {
            buckets: vec![(Duration::from_millis(500), 1), (Duration::from_secs(1), 2)],
            count: 2,
            sum: Duration::from_micros(1_234_567),
        }
    }

    #[test]
    fn prometheus_document_keeps_the_original_names_and_adds_outcomes() {
        let text = export_metrics(&sample(), ExportFormat::Prometheus, "goscope");
        let expected_heads = [
            "# HELP goscope_tasks_spawned_total Total tasks created",
            "# TYPE goscope_tasks_spawned_total counter",
            "goscope_tasks_spawned_total 4",
            "# HELP goscope_tasks_completed_total Tasks that succeeded",
            "# TYPE goscope_tasks_completed_total counter",
            "goscope_tasks_completed_total 2",
            "# HELP goscope_tasks_failed_total Tasks that failed: error, timeout, panicked or rejected (cancelled tasks are not failures)",
            "# TYPE goscope_tasks_failed_total counter",
            "goscope_tasks_failed_total 1",
            "# HELP goscope_tasks_cancelled_total Tasks that were cancelled",
            "# TYPE goscope_tasks_cancelled_total counter",
            "goscope_tasks_cancelled_total 1",
            "# HELP goscope_tasks_ended_total Tasks that ended, by outcome",
            "# TYPE goscope_tasks_ended_total counter",
            "goscope_tasks_ended_total{outcome=\"ok\"} 2",
            "goscope_tasks_ended_total{outcome=\"error\"} 0",
            "goscope_tasks_ended_total{outcome=\"timeout\"} 1",
            "goscope_tasks_ended_total{outcome=\"cancelled\"} 1",
            "goscope_tasks_ended_total{outcome=\"panicked\"} 0",
            "goscope_tasks_ended_total{outcome=\"rejected\"} 0",
            "# HELP goscope_task_duration_seconds_total Total run time of every ended task",
            "# TYPE goscope_task_duration_seconds_total counter",
            "goscope_task_duration_seconds_total 1.234567",
            "# HELP goscope_task_duration_avg_seconds Average task run time over the recent window",
            "# TYPE goscope_task_duration_avg_seconds gauge",
            "goscope_task_duration_avg_seconds 0.617283",
            "# HELP goscope_task_duration_p95_seconds P95 task run time over the recent window",
            "# TYPE goscope_task_duration_p95_seconds gauge",
            "goscope_task_duration_p95_seconds 1.0",
            "# HELP goscope_task_run_seconds Run time of ended tasks, from the start of their body to their end, by outcome",
            "# TYPE goscope_task_run_seconds histogram",
            "goscope_task_run_seconds_bucket{outcome=\"ok\",le=\"0.5\"} 1",
            "goscope_task_run_seconds_bucket{outcome=\"ok\",le=\"1\"} 2",
            "goscope_task_run_seconds_bucket{outcome=\"ok\",le=\"+Inf\"} 2",
            "goscope_task_run_seconds_sum{outcome=\"ok\"} 1.234567",
            "goscope_task_run_seconds_count{outcome=\"ok\"} 2",
        ];
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..expected_heads.len()],
            &expected_heads[..],
            "{text}"
        );
        for family in [
            "goscope_permit_wait_seconds histogram",
            "goscope_task_retries_total counter",
            "goscope_breaker_rejections_total counter",
            "goscope_tasks_running gauge",
            "goscope_resources_registered_total counter",
            "goscope_resources_disposed_total counter",
            "goscope_resource_disposal_errors_total counter",
            "goscope_scope_duration_seconds gauge",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family}\n")),
                "{family}: {text}"
            );
        }
        // No breaker, no breaker state; a single scope's export has no open-scope count.
        assert!(!text.contains("breaker_state") && !text.contains("scopes_open"));
    }

    #[test]
    fn scope_duration_family_is_absent_while_open() {
        let mut m = sample();
        m.scope_duration = None;
        let text = export_metrics(&m, ExportFormat::Prometheus, "goscope");
        assert!(!text.contains("scope_duration"));
    }

    #[test]
    fn prefixes_are_made_valid() {
        assert_eq!(prometheus_prefix("my-app.v2").as_deref(), Some("my_app_v2"));
        assert_eq!(prometheus_prefix("9lives").as_deref(), Some("_9lives"));
        assert_eq!(prometheus_prefix(""), None);
        let text = export_metrics(&sample(), ExportFormat::Prometheus, "");
        assert!(text.contains("\ntasks_spawned_total 4\n"));
    }

    #[test]
    fn timestamps_go_on_every_sample_and_only_there() {
        let text = stamp_samples(
            "# HELP a x\n# TYPE a gauge\na 1\nb{l=\"v\"} 2\n",
            Duration::from_millis(1_700_000_000_123),
        );
        assert_eq!(
            text,
            "# HELP a x\n# TYPE a gauge\na 1 1700000000123\nb{l=\"v\"} 2 1700000000123\n"
        );
    }

    #[test]
    fn json_uses_millisecond_names_under_the_prefix() {
        let v: Value = serde_json::from_str(&export_metrics(&sample(), ExportFormat::Json, "pfx"))
            .expect("valid json");
        let m = &v["pfx"];
        assert_eq!(m["tasks_spawned"], 4);
        assert_eq!(m["tasks_cancelled"], 1);
        assert_eq!(m["tasks_ended"]["timeout"], 1);
        assert_eq!(m["total_task_duration_ms"], 1234.567);
        assert_eq!(m["p95_task_duration_ms"], 1000.0);
        assert_eq!(m["scope_duration_ms"], 2000.0);
        assert!(m.get("timestamp_ms").is_none());
        let keys: Vec<&String> = m.as_object().expect("object").keys().collect();
        assert_eq!(
            keys[..4],
            ["scope", "tasks_spawned", "tasks_completed", "tasks_failed"]
        );
    }
}
