//! [`MetricsReporter`]: exports one scope's metrics now and then every interval.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::FutureExt;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::export::{ExportFormat, ExportOptions, export_metrics_with};
use crate::core::error::{BoxError, Error};
use crate::core::scope::{Scope, Shared};
use crate::util::sync::lock;

type ExportFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type OnExport = dyn Fn(String) -> ExportFuture + Send + Sync;

/// What an `on_export` callback may return: `()`, or `Result<(), E>` whose error is logged.
///
/// *Feature `metrics`.*
pub trait ReportResult {
    /// Converts the callback's output into a result.
    fn into_report_result(self) -> Result<(), BoxError>;
}

impl ReportResult for () {
    fn into_report_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> ReportResult for Result<(), E> {
    fn into_report_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// How a [`MetricsReporter`] exports: the callback, the format, the interval.
///
/// Defaults: Prometheus format, prefix `goscope`, every 60 s, no timestamps, started at once.
///
/// *Feature `metrics`.*
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::metrics::{ExportFormat, ReporterOptions};
///
/// let options = ReporterOptions::new(|text: String| async move { println!("{text}") })
///     .format(ExportFormat::Json)
///     .interval(Duration::from_secs(10))
///     .prefix("myapp")
///     .include_timestamps(true);
/// assert_eq!(options.interval_duration(), Duration::from_secs(10));
/// ```
#[must_use = "options do nothing until given to MetricsReporter::new"]
pub struct ReporterOptions {
    on_export: Arc<OnExport>,
    export: ExportOptions,
    interval: Duration,
    auto_start: bool,
}

impl fmt::Debug for ReporterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReporterOptions")
            .field("export", &self.export)
            .field("interval", &self.interval)
            .field("auto_start", &self.auto_start)
            .finish_non_exhaustive()
    }
}

impl ReporterOptions {
    /// Options that hand every export to `on_export`: an async callback receiving the
    /// formatted text. It may return `()` or a `Result`; an error is logged at `warn` and
    /// reporting goes on.
    pub fn new<F, Fut>(on_export: F) -> ReporterOptions
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: ReportResult,
    {
        let on_export = move |text: String| -> ExportFuture {
            let fut = on_export(text);
            Box::pin(async move { fut.await.into_report_result() })
        };
        ReporterOptions {
            on_export: Arc::new(on_export),
            export: ExportOptions::default(),
            interval: Duration::from_secs(60),
            auto_start: true,
        }
    }

    /// The export format (default Prometheus).
    pub fn format(mut self, format: ExportFormat) -> ReporterOptions {
        self.export.format = format;
        self
    }

    /// The metric name prefix (default `goscope`).
    pub fn prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> ReporterOptions {
        self.export.prefix = prefix.into();
        self
    }

    /// Writes the export time on every sample (default off).
    pub fn include_timestamps(mut self, on: bool) -> ReporterOptions {
        self.export.include_timestamps = on;
        self
    }

    /// Time between exports (default 60 s). A zero interval is raised to 1 ms.
    pub fn interval(mut self, every: Duration) -> ReporterOptions {
        self.interval = every.max(Duration::from_millis(1));
        self
    }

    /// Whether [`MetricsReporter::new`] starts reporting at once (default true).
    pub fn auto_start(mut self, on: bool) -> ReporterOptions {
        self.auto_start = on;
        self
    }

    /// The configured interval.
    pub fn interval_duration(&self) -> Duration {
        self.interval
    }
}

/// Exports a scope's metrics through a callback: once when started, then every interval, until
/// stopped, dropped, or the scope is cancelled or closed. An export still running then is
/// dropped; one that fails or panics is logged at `warn` and reporting goes on.
///
/// The exports run on a background Tokio task that is not one of the scope's tasks (it is not
/// counted in the metrics it reports). A scope built without metrics is never exported.
///
/// *Feature `metrics`.*
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use go_go_scope::Scope;
/// use go_go_scope::metrics::{MetricsReporter, ReporterOptions};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let scope = Scope::builder().metrics(true).build().unwrap();
/// let exports = Arc::new(Mutex::new(Vec::new()));
/// let sink = exports.clone();
/// let reporter = MetricsReporter::new(
///     &scope,
///     ReporterOptions::new(move |text: String| {
///         let sink = sink.clone();
///         async move { sink.lock().unwrap().push(text) }
///     })
///     .interval(Duration::from_secs(1)),
/// );
/// scope.spawn(async {}).await;
/// tokio::time::sleep(Duration::from_millis(2500)).await;  // exports at 0 s, 1 s and 2 s
/// reporter.stop();
/// assert_eq!(exports.lock().unwrap().len(), 3);
/// assert!(exports.lock().unwrap()[2].contains("goscope_tasks_spawned_total 1"));
/// scope.close().await.unwrap();
/// # }
/// ```
#[must_use = "dropping the reporter stops it"]
pub struct MetricsReporter {
    inner: Arc<Inner>,
}

struct Inner {
    scope: Weak<Shared>,
    options: ReporterOptions,
    /// Cancels the running loop, if one runs.
    running: Mutex<Option<CancellationToken>>,
}

impl fmt::Debug for MetricsReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsReporter")
            .field("running", &self.is_running())
            .field("options", &self.inner.options)
            .finish()
    }
}

impl MetricsReporter {
    /// A reporter for `scope`; it starts at once unless
    /// [`auto_start(false)`](ReporterOptions::auto_start) was set.
    pub fn new(scope: &Scope, options: ReporterOptions) -> MetricsReporter {
        let shared = scope.shared();
        if shared.feature::<super::MetricsCollector>().is_none() {
            tracing::debug!(
                scope = ?shared.name,
                "MetricsReporter on a scope built without metrics(true): nothing will be exported"
            );
        }
        let auto_start = options.auto_start;
        let reporter = MetricsReporter {
            inner: Arc::new(Inner {
                scope: Arc::downgrade(shared),
                options,
                running: Mutex::new(None),
            }),
        };
        if auto_start {
            reporter.start();
        }
        reporter
    }

    /// Starts reporting: one export now, then one every interval. Does nothing if already
    /// running, or if the scope is gone or cancelled.
    pub fn start(&self) {
        let mut running = self.inner.lock();
        if running.as_ref().is_some_and(|t| !t.is_cancelled()) {
            return;
        }
        let Some(shared) = self.inner.scope.upgrade() else {
            return;
        };
        if shared.is_cancelled() {
            return;
        }
        let stop = CancellationToken::new();
        *running = Some(stop.clone());
        let scope_ended = shared.token().clone();
        let inner = Arc::clone(&self.inner);
        drop(shared.runtime.spawn(async move {
            let mut ticks = tokio::time::interval(inner.options.interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = scope_ended.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                // An export that never ends must not outlive the reporter or its scope: it is
                // raced against both and dropped when either stops.
                let exported = tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = scope_ended.cancelled() => break,
                    exported = inner.export_caught() => exported,
                };
                if let Err(error) = exported {
                    tracing::warn!(
                        error = crate::util::log::LoggedError::of(&*error).field(),
                        "metrics reporter: on_export failed; reporting goes on"
                    );
                }
            }
        }));
    }

    /// Stops reporting; no export starts after this returns. [`start`](Self::start) resumes.
    ///
    /// ```
    /// use go_go_scope::metrics::{MetricsReporter, ReporterOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::builder().metrics(true).build().unwrap();
    /// let reporter = MetricsReporter::new(&scope, ReporterOptions::new(|_text: String| async {}));
    /// assert!(reporter.is_running());
    /// reporter.stop();
    /// assert!(!reporter.is_running());
    /// reporter.start();
    /// assert!(reporter.is_running());
    /// scope.close().await.unwrap();
    /// assert!(!reporter.is_running()); // stopped with its scope
    /// # }
    /// ```
    pub fn stop(&self) {
        if let Some(stop) = self.inner.lock().take() {
            stop.cancel();
        }
    }

    /// True while the reporting loop runs.
    pub fn is_running(&self) -> bool {
        self.inner
            .lock()
            .as_ref()
            .is_some_and(|t| !t.is_cancelled())
            && self
                .inner
                .scope
                .upgrade()
                .is_some_and(|s| !s.is_cancelled())
    }

    /// Exports once now and returns the callback's error, if any. Works after the scope has
    /// closed too (as long as a handle to it exists), e.g. for a final report.
    ///
    /// ```
    /// use go_go_scope::Scope;
    /// use go_go_scope::metrics::{MetricsReporter, ReporterOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = Scope::builder().metrics(true).build().unwrap();
    /// let reporter = MetricsReporter::new(
    ///     &scope,
    ///     ReporterOptions::new(|_text: String| async { Err::<(), _>("endpoint down") })
    ///         .auto_start(false),
    /// );
    /// let err = reporter.report().await.unwrap_err();
    /// assert_eq!(err.to_string(), "endpoint down");
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future drops the callback's future where it stands: that one export may be
    /// half-done (whatever the callback had sent is sent). The periodic loop is not affected,
    /// and the next report exports a fresh snapshot.
    ///
    /// # Errors
    /// The callback's error, as [`Error::Failed`]; [`Error::Panicked`] when the callback
    /// panicked (the panic is caught).
    pub async fn report(&self) -> Result<(), Error> {
        self.inner
            .export_caught()
            .await
            .map_err(Error::from_task_error)
    }
}

impl Drop for MetricsReporter {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<CancellationToken>> {
        lock(&self.running)
    }

    async fn export(&self) -> Result<(), BoxError> {
        let Some(metrics) = self.scope.upgrade().and_then(|s| s.metrics_snapshot()) else {
            return Ok(());
        };
        let text = export_metrics_with(&metrics, &self.options.export);
        (self.options.on_export)(text).await
    }

    /// [`export`](Self::export), with a panic in the callback turned into its error.
    async fn export_caught(&self) -> Result<(), BoxError> {
        AssertUnwindSafe(self.export())
            .catch_unwind()
            .await
            .unwrap_or_else(|payload| Err(Box::new(Error::from_panic(payload))))
    }
}
