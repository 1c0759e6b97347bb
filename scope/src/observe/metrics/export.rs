//! One metrics snapshot as Prometheus text or JSON. (OpenTelemetry gets the scope instruments
//! through a meter, `ScopeBuilder::otel_meter`, and the SDK's exporters.)
//!
//! The Prometheus text is written by `prometheus-client` (text format 0.0.4); this module only
//! decides which families exist, their names, help texts and values. Names and help texts follow
//! the original library's table; a real histogram and two gauges/counters are added:
//!
//! | name (prefix `goscope`) | type | unit |
//! |---|---|---|
//! | `goscope_tasks_spawned_total` | counter | tasks |
//! | `goscope_tasks_completed_total` | counter | tasks |
//! | `goscope_tasks_failed_total` | counter | tasks |
//! | `goscope_task_duration_seconds_total` | counter | seconds |
//! | `goscope_task_duration_avg_seconds` | gauge | seconds |
//! | `goscope_task_duration_p95_seconds` | gauge | seconds |
//! | `goscope_resources_registered_total` | counter | resources |
//! | `goscope_resources_disposed_total` | counter | resources |
//! | `goscope_scope_duration_seconds` | gauge | seconds (only once known) |
//! | `goscope_task_duration_seconds` | histogram | seconds |
//! | `goscope_tasks_active` | gauge | tasks |
//! | `goscope_disposal_errors_total` | counter | disposers |

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::ScopeMetrics;

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
/// assert!(text.contains("# TYPE myapp_task_duration_seconds histogram\n"));
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
}

impl<'a> Series<'a> {
    fn unlabelled(metrics: &'a ScopeMetrics) -> Series<'a> {
        Series {
            scope_label: None,
            metrics,
        }
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// Tasks spawned that have not ended yet.
fn active(m: &ScopeMetrics) -> u64 {
    m.tasks_spawned
        .saturating_sub(m.tasks_completed)
        .saturating_sub(m.tasks_failed)
}

enum Sample {
    Count(u64),
    Seconds(f64),
    Gauge(f64),
    GaugeCount(u64),
    Histogram,
}

/// Family name (without prefix and without the `_total` the encoder adds to counters), help,
/// type, and the value for one snapshot (`None`: this snapshot has no sample).
type Family = (
    &'static str,
    &'static str,
    MetricType,
    fn(&ScopeMetrics) -> Option<Sample>,
);

const FAMILIES: &[Family] = &[
    (
        "tasks_spawned",
        "Total tasks created",
        MetricType::Counter,
        |m| Some(Sample::Count(m.tasks_spawned)),
    ),
    (
        "tasks_completed",
        "Tasks that succeeded",
        MetricType::Counter,
        |m| Some(Sample::Count(m.tasks_completed)),
    ),
    (
        "tasks_failed",
        "Tasks that failed",
        MetricType::Counter,
        |m| Some(Sample::Count(m.tasks_failed)),
    ),
    (
        "task_duration_seconds",
        "Total execution time",
        MetricType::Counter,
        |m| Some(Sample::Seconds(seconds(m.total_task_duration))),
    ),
    (
        "task_duration_avg_seconds",
        "Average task duration",
        MetricType::Gauge,
        |m| Some(Sample::Gauge(seconds(m.avg_task_duration))),
    ),
    (
        "task_duration_p95_seconds",
        "P95 task duration",
        MetricType::Gauge,
        |m| Some(Sample::Gauge(seconds(m.p95_task_duration))),
    ),
    (
        "resources_registered",
        "Resources registered",
        MetricType::Counter,
        |m| Some(Sample::Count(m.resources_registered)),
    ),
    (
        "resources_disposed",
        "Resources cleaned up",
        MetricType::Counter,
        |m| Some(Sample::Count(m.resources_disposed)),
    ),
    (
        "scope_duration_seconds",
        "Total scope lifetime",
        MetricType::Gauge,
        |m| m.scope_duration.map(|d| Sample::Gauge(seconds(d))),
    ),
    (
        "task_duration_seconds",
        "Duration of completed tasks, from the start of their body to their end",
        MetricType::Histogram,
        |_| Some(Sample::Histogram),
    ),
    (
        "tasks_active",
        "Tasks spawned and not yet ended",
        MetricType::Gauge,
        |m| Some(Sample::GaugeCount(active(m))),
    ),
    (
        "disposal_errors",
        "Disposers that returned an error or panicked",
        MetricType::Counter,
        |m| Some(Sample::Count(m.disposal_errors)),
    ),
];

/// Encodes every family, one sample per series.
pub(crate) fn encode_families(
    encoder: &mut DescriptorEncoder<'_>,
    series: &[Series<'_>],
) -> Result<(), fmt::Error> {
    for (name, help, metric_type, value) in FAMILIES {
        let samples: Vec<(&Series<'_>, Sample)> = series
            .iter()
            .filter_map(|s| value(s.metrics).map(|v| (s, v)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let mut family = encoder.encode_descriptor(name, help, None, *metric_type)?;
        for (s, sample) in samples {
            match s.scope_label {
                Some(scope) => {
                    let labels = [("scope", scope)];
                    let mut labelled = family.encode_family(&labels)?;
                    encode_sample(&mut labelled, s.metrics, sample)?;
                }
                None => encode_sample(&mut family, s.metrics, sample)?,
            }
        }
    }
    Ok(())
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
        Sample::Histogram => {
            let h = &m.task_duration_histogram;
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
            encoder.encode_histogram::<NoLabelSet>(seconds(h.sum), h.count, &buckets, None)
        }
    }
}

fn json_snapshot(m: &ScopeMetrics, timestamp: Option<Duration>) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("scope".into(), json!(m.scope_name));
    object.insert("tasks_spawned".into(), json!(m.tasks_spawned));
    object.insert("tasks_completed".into(), json!(m.tasks_completed));
    object.insert("tasks_failed".into(), json!(m.tasks_failed));
    object.insert("tasks_active".into(), json!(active(m)));
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
    use crate::observe::metrics::DurationHistogram;

    fn sample() -> ScopeMetrics {
        ScopeMetrics {
            scope_name: "s".into(),
            tasks_spawned: 3,
            tasks_completed: 2,
            tasks_failed: 1,
            total_task_duration: Duration::from_micros(1_234_567),
            avg_task_duration: Duration::from_micros(617_283),
            p95_task_duration: Duration::from_secs(1),
            resources_registered: 1,
            resources_disposed: 1,
            disposal_errors: 0,
            scope_duration: Some(Duration::from_secs(2)),
            task_duration_histogram: DurationHistogram {
                buckets: vec![(Duration::from_millis(500), 1), (Duration::from_secs(1), 2)],
                count: 2,
                sum: Duration::from_micros(1_234_567),
            },
        }
    }

    #[test]
    fn prometheus_document_has_the_original_names_help_and_types_in_order() {
        let text = export_metrics(&sample(), ExportFormat::Prometheus, "goscope");
        let expected_heads = [
            "# HELP goscope_tasks_spawned_total Total tasks created",
            "# TYPE goscope_tasks_spawned_total counter",
            "goscope_tasks_spawned_total 3",
            "# HELP goscope_tasks_completed_total Tasks that succeeded",
            "# TYPE goscope_tasks_completed_total counter",
            "goscope_tasks_completed_total 2",
            "# HELP goscope_tasks_failed_total Tasks that failed",
            "# TYPE goscope_tasks_failed_total counter",
            "goscope_tasks_failed_total 1",
            "# HELP goscope_task_duration_seconds_total Total execution time",
            "# TYPE goscope_task_duration_seconds_total counter",
            "goscope_task_duration_seconds_total 1.234567",
            "# HELP goscope_task_duration_avg_seconds Average task duration",
            "# TYPE goscope_task_duration_avg_seconds gauge",
            "goscope_task_duration_avg_seconds 0.617283",
            "# HELP goscope_task_duration_p95_seconds P95 task duration",
            "# TYPE goscope_task_duration_p95_seconds gauge",
            "goscope_task_duration_p95_seconds 1.0",
            "# HELP goscope_resources_registered_total Resources registered",
            "# TYPE goscope_resources_registered_total counter",
            "goscope_resources_registered_total 1",
            "# HELP goscope_resources_disposed_total Resources cleaned up",
            "# TYPE goscope_resources_disposed_total counter",
            "goscope_resources_disposed_total 1",
            "# HELP goscope_scope_duration_seconds Total scope lifetime",
            "# TYPE goscope_scope_duration_seconds gauge",
            "goscope_scope_duration_seconds 2.0",
            "# HELP goscope_task_duration_seconds Duration of completed tasks, from the start of their body to their end",
            "# TYPE goscope_task_duration_seconds histogram",
            "goscope_task_duration_seconds_bucket{le=\"0.5\"} 1",
            "goscope_task_duration_seconds_bucket{le=\"1\"} 2",
            "goscope_task_duration_seconds_bucket{le=\"+Inf\"} 2",
            "goscope_task_duration_seconds_sum 1.234567",
            "goscope_task_duration_seconds_count 2",
        ];
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..expected_heads.len()],
            &expected_heads[..],
            "{text}"
        );
        assert!(
            text.ends_with("goscope_disposal_errors_total 0\n"),
            "{text}"
        );
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
        assert!(text.contains("\ntasks_spawned_total 3\n"));
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
        assert_eq!(m["tasks_spawned"], 3);
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
