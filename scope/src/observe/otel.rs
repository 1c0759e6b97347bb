//! The OpenTelemetry pipeline in one call: an OTLP/HTTP (protobuf) exporter, a batch span
//! processor, a tracer provider, and a `tracing` layer that turns scope and task spans (and your
//! own `tracing` spans) into OpenTelemetry spans.
//!
//! *Feature `otlp`.*
//!
//! ```no_run
//! use go_go_scope::{Scope, ScopeTracer};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Exports to http://localhost:4318/v1/traces (Jaeger, an OpenTelemetry collector, ...).
//! let otel = go_go_scope::otel::OtelPipeline::new("order-service").install()?;
//! Scope::run(Scope::builder().name("process-order").tracer(ScopeTracer::global()), |s| async move {
//!     s.spawn(async { /* validate */ }).await;
//! })
//! .await?;
//! otel.shutdown()?; // exports what is still buffered
//! # Ok(())
//! # }
//! ```
//!
//! The exporter uses a blocking HTTP client on the batch processor's own thread, so the pipeline
//! works under any runtime flavour (and outside one) and never blocks a Tokio worker while
//! exporting. [`Otel::shutdown`] and [`Otel::force_flush`] wait for the export to finish: call
//! them at the end of `main`, or inside `tokio::task::spawn_blocking` from busy async code.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Level;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Where spans go when neither [`OtelPipeline::endpoint`] nor the standard `OTEL_EXPORTER_OTLP_*`
/// environment variables say otherwise: an OTLP/HTTP receiver on this machine.
///
/// *Feature `otlp`.*
///
/// ```
/// assert_eq!(go_go_scope::otel::DEFAULT_ENDPOINT, "http://localhost:4318/v1/traces");
/// ```
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// Why the pipeline could not be set up or flushed.
///
/// *Feature `otlp`.*
///
/// ```
/// use go_go_scope::otel::{OtelError, OtelPipeline};
///
/// let err = OtelPipeline::new("svc").endpoint("not a url").build().unwrap_err();
/// assert!(err.to_string().contains("not a url"), "{err}");
/// // A URL needs a host.
/// for endpoint in ["http://", "http:///127.0.0.1:4318/v1/traces"] {
///     let err = OtelPipeline::new("svc").endpoint(endpoint).build().unwrap_err();
///     assert!(matches!(err, OtelError::InvalidEndpoint { .. }), "{err}");
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The endpoint is not an `http://` or `https://` URL with a host, or is `https://`
    /// without the cargo feature `tls`.
    #[error("invalid OTLP endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint that was configured.
        endpoint: String,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A header given to [`OtelPipeline::header`] has an invalid name or value.
    #[error("invalid OTLP header `{name}`: {reason}")]
    InvalidHeader {
        /// The header's name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A certificate given to [`OtelPipeline::root_certificate_pem`] could not be read.
    #[error("cannot set up TLS for the OTLP exporter: {0}")]
    Tls(String),
    /// The exporter could not be built (no HTTP client).
    #[error("cannot build the OTLP exporter for `{endpoint}`: {message}")]
    Exporter {
        /// The endpoint that was configured.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A global `tracing` subscriber was already installed; use [`Otel::layer`] to add the
    /// OpenTelemetry layer to your own subscriber instead.
    #[error(
        "a global tracing subscriber is already set: add `otel.layer()` to it instead of install()"
    )]
    SubscriberAlreadySet,
    /// Flushing or shutting the provider down failed (for example the receiver was unreachable
    /// or answered with an error).
    #[error("OpenTelemetry export failed: {0}")]
    Export(String),
}

/// Configures the OpenTelemetry pipeline; see the [module](self) documentation.
///
/// *Feature `otlp`.*
///
/// ```
/// use tracing::Level;
/// let pipeline = go_go_scope::otel::OtelPipeline::new("checkout")
///     .endpoint("http://127.0.0.1:4318/v1/traces")
///     .level(Level::DEBUG)
///     .export_timeout(std::time::Duration::from_secs(5));
/// assert_eq!(pipeline.resolved_endpoint(), "http://127.0.0.1:4318/v1/traces");
/// ```
#[derive(Clone)]
#[must_use = "a pipeline does nothing until build() or install()"]
pub struct OtelPipeline {
    service_name: Cow<'static, str>,
    endpoint: Option<String>,
    level: Level,
    export_timeout: Duration,
    headers: Vec<(String, String)>,
    #[cfg(feature = "tls")]
    roots: Vec<Vec<u8>>,
}

impl fmt::Debug for OtelPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values often hold credentials: only their names are shown.
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("OtelPipeline")
            .field("service_name", &self.service_name)
            .field("endpoint", &self.endpoint)
            .field("level", &self.level)
            .field("export_timeout", &self.export_timeout)
            .field("headers", &headers)
            .finish_non_exhaustive()
    }
}

impl OtelPipeline {
    /// A pipeline for the service `service_name` (the `service.name` resource attribute).
    pub fn new(service_name: impl Into<Cow<'static, str>>) -> OtelPipeline {
        OtelPipeline {
            service_name: service_name.into(),
            endpoint: None,
            level: Level::INFO,
            export_timeout: Duration::from_secs(10),
            headers: Vec::new(),
            #[cfg(feature = "tls")]
            roots: Vec::new(),
        }
    }

    /// Sends this header with every export (an API key, a tenant); repeat for several.
    /// Checked when the pipeline is built. Headers from `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or
    /// `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,key2=value2`) are sent too, and win for a name
    /// given both ways.
    ///
    /// ```
    /// use go_go_scope::otel::{OtelError, OtelPipeline};
    ///
    /// let built = OtelPipeline::new("svc")
    ///     .endpoint("http://127.0.0.1:9/v1/traces")
    ///     .header("api key", "x") // a space is not allowed in a header name
    ///     .build();
    /// assert!(matches!(built, Err(OtelError::InvalidHeader { .. })));
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> OtelPipeline {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Trusts the PEM certificate(s) in `pem` besides the system's roots, for an `https://`
    /// collector whose certificate your own authority signed. Without this option, the file
    /// named by `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or `OTEL_EXPORTER_OTLP_CERTIFICATE`
    /// is read when the pipeline is built, if one is set.
    ///
    /// *Feature `tls`.*
    #[cfg(feature = "tls")]
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> OtelPipeline {
        self.roots.push(pem.into());
        self
    }

    /// The full OTLP/HTTP traces URL, path included (`.../v1/traces`). Default: the
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variable, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
    /// `/v1/traces`, else [`DEFAULT_ENDPOINT`].
    pub fn endpoint(mut self, url: impl Into<String>) -> OtelPipeline {
        self.endpoint = Some(url.into());
        self
    }

    /// The most verbose level the OpenTelemetry layer exports (default `INFO`: scopes with a
    /// tracer, and your own spans at `INFO` and above). `DEBUG` also exports every other
    /// scope's spans.
    pub fn level(mut self, level: Level) -> OtelPipeline {
        self.level = level;
        self
    }

    /// How long one export request may take (default 10 s).
    pub fn export_timeout(mut self, timeout: Duration) -> OtelPipeline {
        self.export_timeout = timeout;
        self
    }

    /// The endpoint spans will be sent to, after applying the defaults.
    pub fn resolved_endpoint(&self) -> String {
        if let Some(url) = &self.endpoint {
            return url.clone();
        }
        if let Ok(url) = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            && !url.is_empty()
        {
            return url;
        }
        if let Ok(base) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            && !base.is_empty()
        {
            return format!("{}/v1/traces", base.trim_end_matches('/'));
        }
        DEFAULT_ENDPOINT.to_owned()
    }

    /// Builds the exporter and the tracer provider, and makes the provider the global one (so
    /// [`ScopeTracer::global`](crate::ScopeTracer::global) and
    /// `opentelemetry::global::tracer(..)` use it). Installs no `tracing` subscriber: add
    /// [`Otel::layer`] to yours.
    ///
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// let otel = go_go_scope::otel::OtelPipeline::new("svc")
    ///     .endpoint("http://127.0.0.1:9/v1/traces") // nothing listens there
    ///     .build()
    ///     .unwrap();
    /// let subscriber = tracing_subscriber::registry().with(otel.layer());
    /// tracing::subscriber::with_default(subscriber, || {
    ///     tracing::info_span!("work").in_scope(|| {});
    /// });
    /// assert!(otel.shutdown().is_err()); // the span could not be delivered
    /// ```
    ///
    /// # Errors
    /// [`OtelError::InvalidEndpoint`] for an endpoint that is not `http://` or `https://` with
    /// a host (or is `https://` without the feature `tls`); [`OtelError::InvalidHeader`] for a
    /// header HTTP cannot carry; [`OtelError::Tls`] for a certificate that cannot be read;
    /// [`OtelError::Exporter`] when the exporter's HTTP client cannot be built. Nothing global
    /// is changed then.
    pub fn build(self) -> Result<Otel, OtelError> {
        let otel = self.pipeline()?;
        opentelemetry::global::set_tracer_provider(otel.provider.clone());
        Ok(otel)
    }

    /// [`build`](Self::build)s the pipeline and installs a global `tracing` subscriber made of
    /// the OpenTelemetry layer alone. Fails, changing nothing global, if a global subscriber is
    /// already set.
    ///
    /// # Errors
    /// As [`build`](Self::build), and [`OtelError::SubscriberAlreadySet`] when a global
    /// subscriber was already installed.
    pub fn install(self) -> Result<Otel, OtelError> {
        let otel = self.pipeline()?;
        tracing_subscriber::registry()
            .with(otel.layer())
            .try_init()
            .map_err(|_| OtelError::SubscriberAlreadySet)?;
        opentelemetry::global::set_tracer_provider(otel.provider.clone());
        Ok(otel)
    }

    /// The exporter and the provider, nothing global.
    fn pipeline(self) -> Result<Otel, OtelError> {
        let endpoint = self.resolved_endpoint();
        let exporter_error = |message: String| OtelError::Exporter {
            endpoint: endpoint.clone(),
            message,
        };
        crate::util::endpoint::parse_http_url(&endpoint).map_err(|reason| {
            OtelError::InvalidEndpoint {
                endpoint: endpoint.clone(),
                reason,
            }
        })?;
        // Checked here: the exporter would drop an invalid header without a word.
        crate::util::endpoint::header_map(&self.headers)
            .map_err(|(name, reason)| OtelError::InvalidHeader { name, reason })?;
        #[cfg(feature = "tls")]
        let roots = {
            let mut pems = self.roots.clone();
            if pems.is_empty()
                && let Some(path) = [
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                ]
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            {
                let pem = std::fs::read(&path).map_err(|e| {
                    OtelError::Tls(format!("cannot read the certificate {path}: {e}"))
                })?;
                pems.push(pem);
            }
            let mut roots = Vec::new();
            for pem in &pems {
                let certificates = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| OtelError::Tls(e.to_string()))?;
                if certificates.is_empty() {
                    return Err(OtelError::Tls("no PEM certificate found".into()));
                }
                roots.extend(certificates);
            }
            roots
        };
        // A blocking client must not be created (or dropped) on a Tokio worker: build it on a
        // thread of its own.
        let timeout = self.export_timeout;
        let client = std::thread::spawn(move || {
            #[allow(unused_mut)]
            let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
            #[cfg(feature = "tls")]
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
            builder.build().map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| exporter_error("building the HTTP client panicked".into()))?
        .map_err(exporter_error)?;
        let exporter = SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(self.export_timeout)
            .with_headers(self.headers.iter().cloned().collect())
            .build()
            .map_err(|e| exporter_error(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(self.service_name.clone())
                    .build(),
            )
            .with_batch_exporter(exporter)
            .build();
        Ok(Otel {
            provider,
            service_name: self.service_name,
            level: self.level,
            shut_down: AtomicBool::new(false),
        })
    }
}

/// A running OpenTelemetry pipeline; [`shutdown`](Otel::shutdown) it before the process exits
/// so buffered spans are exported. Dropping it shuts it down too (ignoring errors).
///
/// *Feature `otlp`.*
///
/// ```
/// use go_go_scope::{Scope, ScopeTracer};
///
/// let otel = go_go_scope::otel::OtelPipeline::new("svc")
///     .endpoint("http://127.0.0.1:9/v1/traces") // nothing listens there
///     .build()
///     .unwrap();
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// runtime.block_on(async {
///     // No `tracing` layer here: the scope's tracer records the spans directly.
///     let scope = Scope::builder().tracer(otel.tracer("my-app")).build().unwrap();
///     scope.spawn(async {}).await;
///     scope.close().await.unwrap();
/// });
/// // Delivery fails (nothing listens), and shutdown says so instead of losing spans silently.
/// assert!(otel.shutdown().is_err());
/// ```
pub struct Otel {
    provider: SdkTracerProvider,
    service_name: Cow<'static, str>,
    level: Level,
    shut_down: AtomicBool,
}

impl fmt::Debug for Otel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otel")
            .field("service_name", &self.service_name)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl Otel {
    /// The `tracing` layer that turns spans into OpenTelemetry spans of this pipeline, filtered
    /// at the pipeline's [`level`](OtelPipeline::level). Add it to your subscriber.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(
                self.provider
                    .tracer_with_scope(crate::observe::trace::instrumentation_scope()),
            )
            .with_filter(LevelFilter::from_level(self.level))
    }

    /// A tracer of this pipeline, for [`ScopeBuilder::tracer`](crate::ScopeBuilder::tracer)
    /// or direct OpenTelemetry use.
    pub fn tracer(&self, name: impl Into<Cow<'static, str>>) -> SdkTracer {
        self.provider.tracer(name.into())
    }

    /// The tracer provider.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports every finished span now and waits for the receiver's answer.
    ///
    /// # Errors
    /// [`OtelError::Export`] when the receiver could not be reached or refused the spans.
    pub fn force_flush(&self) -> Result<(), OtelError> {
        self.provider
            .force_flush()
            .map_err(|e| OtelError::Export(e.to_string()))
    }

    /// Exports what is buffered, then stops the pipeline. Spans ended afterwards are dropped.
    ///
    /// # Errors
    /// [`OtelError::Export`] when the last spans could not be delivered or the provider could
    /// not stop cleanly; the pipeline is stopped either way.
    pub fn shutdown(self) -> Result<(), OtelError> {
        self.shut_down.store(true, Ordering::SeqCst);
        let flushed = self.force_flush();
        let stopped = self
            .provider
            .shutdown()
            .map_err(|e| OtelError::Export(e.to_string()));
        flushed.and(stopped)
    }
}

impl Drop for Otel {
    fn drop(&mut self) {
        if !self.shut_down.swap(true, Ordering::SeqCst) {
            let _ = self.provider.shutdown();
        }
    }
}
