//! A scope's span: opened when the scope is built, ended when it closes; the scope body runs
//! inside it.

use super::task_span::{TaskSpanInfo, TaskTrace};
use super::*;

/// A scope's span state, kept in the scope.
pub(crate) struct ScopeTrace {
    /// The tracer asked for, on this scope or inherited; `Some` makes the spans `INFO`.
    pub(super) tracer: Option<ScopeTracer>,
    /// `None` when nothing records this scope's spans.
    pub(super) live: Option<Box<LiveScope>>,
}

pub(super) struct LiveScope {
    /// Taken (and so ended) when the scope closes.
    pub(super) open: Mutex<Option<OpenScope>>,
    pub(super) created: Instant,
    /// Failed tasks, counted by their spans as they end.
    pub(super) errors: Arc<AtomicU64>,
    /// The limit tasks report as `task.scope_concurrency` (0: none).
    pub(super) task_concurrency: u64,
    pub(super) mode: Mode,
}

impl Drop for LiveScope {
    fn drop(&mut self) {
        // A scope that never closed (its runtime went away): end its span where it belongs.
        let open = self
            .open
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(open) = open {
            end_span(open.span, |_| {});
        }
    }
}

pub(super) struct OpenScope {
    pub(super) span: Span,
    #[cfg(feature = "otel")]
    pub(super) direct: Option<otel_direct::DirectSpan>,
}

/// What a new scope tells its span.
pub(crate) struct ScopeSpanInfo<'a> {
    pub(crate) name: &'a str,
    pub(crate) custom_name: bool,
    pub(crate) timeout: Option<Duration>,
    /// The `concurrency` given to this scope's builder.
    pub(crate) concurrency_option: Option<usize>,
    /// The limit in force (own or inherited).
    pub(crate) concurrency: Option<usize>,
    /// The parent scope's span state, when it keeps one.
    pub(crate) parent: Option<&'a ScopeTrace>,
    /// The scope has a parent scope.
    pub(crate) has_parent: bool,
    /// True when the parent was given with `.parent(..)`/`child()` rather than found ambient.
    pub(crate) explicit_parent: bool,
    /// The scope is cancelled by an outside token (`cancel_on`).
    pub(crate) linked: bool,
}

impl ScopeSpanInfo<'_> {
    /// `scope.has_parent_signal`: a cancellation from outside the scope reaches it, from a
    /// parent scope or a token given to `cancel_on`.
    pub(super) fn has_parent_signal(&self) -> bool {
        self.has_parent || self.linked
    }
}

macro_rules! scope_span {
    ($level:expr, $parent:expr, $has_parent:expr, $has_signal:expr) => {
        tracing::span!(
            target: TARGET,
            parent: $parent,
            $level,
            "scope",
            otel.name = field::Empty,
            scope.timeout = field::Empty,
            scope.has_parent_signal = $has_signal,
            scope.has_parent_scope = $has_parent,
            scope.concurrency = field::Empty,
            scope.duration_ms = field::Empty,
            scope.errors = field::Empty,
            error.type = field::Empty,
            attrs = field::Empty,
            otel.status_code = field::Empty,
            otel.status_description = field::Empty,
        )
    };
}

impl ScopeTrace {
    /// True when this scope's span is recorded, so its tasks' spans may be.
    pub(crate) fn records(&self) -> bool {
        self.live.is_some()
    }

    /// True when the scope must keep this state: its span is recorded, or it has a tracer its
    /// children inherit.
    pub(crate) fn is_kept(&self) -> bool {
        self.live.is_some() || self.tracer.is_some()
    }

    pub(crate) fn start(options: TraceOptions, info: ScopeSpanInfo<'_>) -> ScopeTrace {
        let tracer = options
            .tracer
            .or_else(|| info.parent.and_then(|p| p.tracer.clone()));
        let traced = tracer.is_some();
        let has_parent = info.has_parent;
        let has_signal = info.has_parent_signal();
        // An explicit parent's span, with the subscriber that recorded it.
        let parent = info
            .parent
            .filter(|_| info.explicit_parent)
            .and_then(ScopeTrace::span_handle);
        let new_span = || {
            let parent_id = || match &parent {
                Some((id, _)) => Some(id.clone()),
                None => Span::current().id(),
            };
            if traced {
                scope_span!(Level::INFO, parent_id(), has_parent, has_signal)
            } else {
                scope_span!(Level::DEBUG, parent_id(), has_parent, has_signal)
            }
        };
        let span = match &parent {
            Some((_, dispatch)) => tracing::dispatcher::with_default(dispatch, new_span),
            None => new_span(),
        };
        #[cfg(feature = "otel")]
        if let Some(remote) = &options.remote
            && !span.is_disabled()
        {
            // Before `choose`, which starts the OpenTelemetry span. Without a layer this does
            // nothing; the direct span takes the remote parent in `choose`.
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let _ = span.set_parent(remote.clone());
        }
        if !span.is_disabled() {
            // Before `choose`: an OpenTelemetry layer fixes the name once the span has started.
            if info.custom_name {
                span.record("otel.name", info.name);
            }
            if let Some(timeout) = info.timeout {
                span.record("scope.timeout", millis_i64(timeout));
            }
            if let Some(limit) = info.concurrency_option {
                span.record("scope.concurrency", saturating_i64(limit as u64));
            }
        }
        #[cfg(feature = "otel")]
        let (mode, direct) = otel_direct::choose(
            &span,
            tracer.as_ref(),
            &info,
            &options.attrs,
            options.remote.as_ref(),
        );
        #[cfg(not(feature = "otel"))]
        let mode = Mode::Tracing;
        #[cfg(feature = "otel")]
        let recorded = !span.is_disabled() || direct.is_some();
        #[cfg(not(feature = "otel"))]
        let recorded = !span.is_disabled();
        if !recorded {
            return ScopeTrace { tracer, live: None };
        }
        apply_attrs(&span, mode, &options.attrs);
        ScopeTrace {
            tracer,
            live: Some(Box::new(LiveScope {
                open: Mutex::new(Some(OpenScope {
                    span,
                    #[cfg(feature = "otel")]
                    direct,
                })),
                created: Instant::now(),
                errors: Arc::new(AtomicU64::new(0)),
                task_concurrency: info.concurrency.map_or(0, |n| n as u64),
                mode,
            })),
        }
    }

    /// The scope span's id and the subscriber that recorded it, while the span is open.
    pub(super) fn span_handle(&self) -> Option<(tracing::Id, Dispatch)> {
        let live = self.live.as_ref()?;
        let open = lock(&live.open);
        dispatch_of(&open.as_ref()?.span)
    }

    pub(super) fn traced(&self) -> bool {
        self.tracer.is_some()
    }

    /// Ends the scope's span: records its duration and failed-task count, and marks it as an
    /// error when `cancelled_by` (the scope's cancellation, if any) or `close_error` says so.
    pub(crate) fn close(&self, cancelled_by: Option<&Error>, close_error: Option<&Error>) {
        let Some(live) = &self.live else { return };
        let Some(open) = lock(&live.open).take() else {
            return;
        };
        let duration_ms = live.created.elapsed().as_nanos() as f64 / 1e6;
        let errors = live.errors.load(Ordering::Relaxed);
        let failure = close_error.or(cancelled_by.filter(|e| !is_normal_close(e)));
        let traced = self.traced();
        #[cfg(feature = "otel")]
        if let Some(direct) = &open.direct {
            direct.end_scope(duration_ms, errors, failure);
        }
        end_span(open.span, |span| {
            span.record("scope.duration_ms", duration_ms);
            span.record("scope.errors", saturating_i64(errors));
            if let Some(error) = failure {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", error.to_string().as_str());
                span.record("error.type", error_type(error));
                exception_event!(traced, span, error);
            }
        });
    }

    /// The scope body's entry into the scope's span, while the span is open.
    fn body_entry(&self) -> Option<Entry> {
        let live = self.live.as_ref()?;
        let open = lock(&live.open);
        let open = open.as_ref()?;
        Some(Entry {
            span: open.span.clone(),
            dispatch: open.span.with_subscriber(|(_, dispatch)| dispatch.clone()),
            #[cfg(feature = "otel")]
            cx: open.direct.as_ref().map(|d| d.cx.clone()),
        })
    }
}

/// Spans plug into the core's seam: the scope's span ends when the scope closes, each task's
/// span is a watch over the task's polls, and the scope body runs inside the scope's span.
impl Observer for ScopeTrace {
    fn wants(&self) -> Wants {
        Wants {
            durations: self.records(),
            spawn_time: false,
            limit_details: self.records(),
            watches: self.records(),
        }
    }

    fn watch_task(&self, task: &SpawnedTask<'_>) -> Option<Box<dyn TaskWatch>> {
        let live = self.live.as_ref()?;
        let run = task_run(task.details);
        let breaker = task.scope.feature::<CircuitBreaker>();
        let info = TaskSpanInfo {
            attrs: run
                .as_ref()
                .map(|run| run.attrs().clone())
                .unwrap_or_default(),
            has_retry: task
                .details
                .and_then(|d| d.max_retries())
                .is_some_and(|n| n > 0),
            timeout: task.details.and_then(|d| d.timeout()),
            has_circuit_breaker: breaker.is_some(),
            breaker_before: breaker.as_deref().map(CircuitBreaker::snapshot),
            limit_before: task.limit_before,
            run,
        };
        TaskTrace::start_recorded(self, live, task.index, task.name.map(|name| &**name), info)
            .into_watch()
    }

    fn watch_body(&self) -> Option<Box<dyn TaskWatch>> {
        self.body_entry()
            .map(|entry| Box::new(entry) as Box<dyn TaskWatch>)
    }

    fn scope_closed(&self, scope: &ClosedScope<'_>) {
        self.close(scope.cancelled_by, scope.error);
    }
}

/// The scope body's place in the scope's span.
struct Entry {
    span: Span,
    /// The subscriber that recorded `span`.
    dispatch: Option<Dispatch>,
    #[cfg(feature = "otel")]
    cx: Option<opentelemetry::Context>,
}

impl TaskWatch for Entry {
    fn poll(&mut self, poll_body: &mut dyn FnMut()) {
        let entry = self;
        let mut poll = || {
            let _entered = entry.span.enter();
            #[cfg(feature = "otel")]
            let _attached = entry.cx.clone().map(opentelemetry::Context::attach);
            poll_body();
        };
        match &entry.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, poll),
            None => poll(),
        }
    }

    fn end(self: Box<Self>, _end: &TaskEnd<'_>) {}
}
