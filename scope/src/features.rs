//! Which features a new scope gets: the one place that knows them all.
//!
//! The builder methods of each feature (in its own module) fill [`FeatureOptions`]; when the
//! scope is built, [`assemble`] turns the options, and what the parent passes down, into the
//! scope's [`Features`]: observers plugged into the core's seam and values kept for the
//! features' own code. The core calls nothing else of any feature.

use std::sync::Arc;
use std::time::Duration;

use crate::core::error::Error;
use crate::core::observer::Features;
use crate::core::scope::{ScopeBuilder, Shared};
use crate::observe::deadlock::{DeadlockCallback, Detector};
use crate::observe::hooks::Hooks;
use crate::observe::introspect::{IntrospectOptions, long_wait_watch};
use crate::observe::metrics::MetricsCollector;
use crate::observe::profiler::Profiler;
use crate::observe::trace::{ScopeSpanInfo, ScopeTrace, TraceOptions};
use crate::resilience::circuit_breaker::CircuitBreaker;
use crate::resilience::retry::Retry;

/// The feature options of a [`ScopeBuilder`], boxed in it: most scopes set none.
#[derive(Default)]
pub(crate) struct FeatureOptions {
    pub(crate) hooks: Option<Hooks>,
    pub(crate) metrics: bool,
    pub(crate) profiler: bool,
    pub(crate) deadlock: Option<(Duration, Arc<DeadlockCallback>)>,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) retry: Option<Retry>,
    pub(crate) trace: TraceOptions,
    /// Record through the `metrics` crate's installed recorder.
    #[cfg(feature = "metrics-facade")]
    pub(crate) metrics_facade: bool,
    /// Record through an OpenTelemetry meter.
    #[cfg(feature = "otel")]
    pub(crate) otel_meter: Option<crate::observe::metrics::otel_meter::ScopeMeter>,
    pub(crate) introspect: IntrospectOptions,
    /// The crate's own observers (the testing scope's recorder).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) observers: Vec<Arc<dyn crate::core::observer::Observer>>,
}

/// What the core tells the features about a scope it is building.
pub(crate) struct ScopeInit<'a> {
    pub(crate) name: &'a str,
    pub(crate) custom_name: bool,
    pub(crate) timeout: Option<Duration>,
    /// The `concurrency` given to this scope's builder.
    pub(crate) concurrency_option: Option<usize>,
    /// The limit in force (own or inherited).
    pub(crate) concurrency: Option<usize>,
    pub(crate) parent: Option<&'a Arc<Shared>>,
    /// True when the parent was given with `.parent(..)`/`child()` rather than found ambient.
    pub(crate) explicit_parent: bool,
    /// The scope is cancelled by an outside token (`cancel_on`).
    pub(crate) linked: bool,
}

/// Checks the options, then builds the scope's features (`None` when it has none). Called once,
/// from `ScopeBuilder::build`, and inlined there.
#[inline]
pub(crate) fn assemble(
    options: Option<Box<FeatureOptions>>,
    init: &ScopeInit<'_>,
) -> Result<Option<Box<Features>>, Error> {
    if options.is_none() && init.parent.is_none_or(|p| p.features().is_none()) {
        return assemble_plain(init);
    }
    let FeatureOptions {
        hooks,
        metrics,
        profiler,
        deadlock,
        breaker,
        retry,
        trace,
        #[cfg(feature = "metrics-facade")]
        metrics_facade,
        #[cfg(feature = "otel")]
        otel_meter,
        introspect,
        observers,
    } = options.map(|options| *options).unwrap_or_default();
    if deadlock.as_ref().is_some_and(|(t, _)| t.is_zero()) {
        return Err(Error::invalid(
            "deadlock_detection",
            "the threshold must be greater than zero",
        ));
    }
    let long_waits = long_wait_watch(&introspect, init.parent)?;
    let parent = init.parent.and_then(|p| p.features());
    let mut features = Features::default();
    let trace = ScopeTrace::start(
        trace,
        span_info(init, parent.and_then(|p| p.get::<ScopeTrace>()).as_deref()),
    );
    if trace.is_kept() {
        features.observe(Arc::new(trace));
    }
    // A breaker is shared by the scope and its children unless a child sets its own.
    let breaker = breaker
        .map(Arc::new)
        .or_else(|| parent.and_then(|p| p.get::<CircuitBreaker>()));
    if let Some(breaker) = &breaker {
        features.observe(Arc::clone(breaker) as Arc<dyn crate::core::observer::Observer>);
    }
    if let Some(retry) = retry {
        features.keep(Arc::new(retry));
    }
    if let Some(hooks) = hooks.filter(|h| !h.is_empty()) {
        features.observe(Arc::new(hooks));
    }
    if metrics {
        features.observe(Arc::new(MetricsCollector::new(init.name, breaker)));
    }
    if profiler {
        features.observe(Arc::new(Profiler::default()));
    }
    if let Some((threshold, callback)) = deadlock {
        features.observe(Arc::new(Detector::new(threshold, callback)));
    }
    if let Some(long_waits) = long_waits {
        features.observe(Arc::new(long_waits));
    }
    for observer in observers {
        features.observe(observer);
    }
    // Last: they count a task as running once every observer before them has admitted it.
    #[cfg(feature = "metrics-facade")]
    if metrics_facade {
        use crate::observe::metrics::{facade::sink_for, instruments::Recorder};
        features.observe(Arc::new(Recorder::new(
            sink_for(init.name),
            init.concurrency.is_some(),
            features.get::<CircuitBreaker>(),
        )));
    }
    #[cfg(feature = "otel")]
    if let Some(meter) = otel_meter {
        use crate::observe::metrics::{instruments::Recorder, otel_meter::OtelSink};
        features.observe(Arc::new(Recorder::new(
            OtelSink::new(&meter, init.name),
            init.concurrency.is_some(),
            features.get::<CircuitBreaker>(),
        )));
    }
    Ok((!features.is_empty()).then(|| Box::new(features)))
}

/// [`assemble`] for a scope that sets no feature option and inherits none (most scopes): it
/// keeps at most its span, when a subscriber records it, and a long-wait watch when one is set
/// for the whole process. Skips making and dropping a default [`FeatureOptions`].
fn assemble_plain(init: &ScopeInit<'_>) -> Result<Option<Box<Features>>, Error> {
    let long_waits = long_wait_watch(&IntrospectOptions::default(), init.parent)?;
    let trace = ScopeTrace::start(TraceOptions::default(), span_info(init, None));
    if !trace.is_kept() && long_waits.is_none() {
        // The common case, decided before any `Features` is made and dropped (about 50
        // instructions of every scope's create + close).
        return Ok(None);
    }
    let mut features = Features::default();
    if trace.is_kept() {
        features.observe(Arc::new(trace));
    }
    if let Some(long_waits) = long_waits {
        features.observe(Arc::new(long_waits));
    }
    Ok(Some(Box::new(features)))
}

/// What the scope's span is made of.
fn span_info<'a>(init: &ScopeInit<'a>, parent: Option<&'a ScopeTrace>) -> ScopeSpanInfo<'a> {
    ScopeSpanInfo {
        name: init.name,
        custom_name: init.custom_name,
        timeout: init.timeout,
        concurrency_option: init.concurrency_option,
        concurrency: init.concurrency,
        parent,
        has_parent: init.parent.is_some(),
        explicit_parent: init.explicit_parent,
        linked: init.linked,
    }
}

/// Whether a builder's options say to keep (`Some(true)`) or not to keep (`Some(false)`) the
/// scope's live task records; `None` when they say nothing (the parent decides).
#[inline]
pub(crate) fn keeps_tasks(options: Option<&FeatureOptions>) -> Option<bool> {
    options?.introspect.keep
}

impl ScopeBuilder {
    /// The builder's feature options, created on first use.
    pub(crate) fn features(&mut self) -> &mut FeatureOptions {
        self.feature_options().get_or_insert_with(Box::default)
    }
}
