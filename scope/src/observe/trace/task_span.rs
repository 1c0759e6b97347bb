//! A task's span: a watch over the task's polls, from its spawn to its end.

use super::scope_span::LiveScope;
use super::*;

macro_rules! task_span {
    ($level:expr, $parent:expr, $index:expr, $info:expr, $concurrency:expr) => {
        tracing::span!(
            target: TARGET,
            parent: $parent,
            $level,
            "scope.task",
            otel.name = field::Empty,
            task.index = saturating_i64($index),
            task.has_retry = $info.has_retry,
            task.has_timeout = $info.timeout.is_some(),
            task.has_circuit_breaker = $info.has_circuit_breaker,
            task.scope_concurrency = saturating_i64($concurrency),
            task.timeout_ms = field::Empty,
            goscope.task.wait_ms = field::Empty,
            task.duration_ms = field::Empty,
            task.retry_attempts = field::Empty,
            task.error_reason = field::Empty,
            error.type = field::Empty,
            task.circuit_breaker.state = field::Empty,
            task.circuit_breaker.failure_count = field::Empty,
            task.circuit_breaker.rejected = field::Empty,
            task.concurrency.available_before = field::Empty,
            task.concurrency.waiting_before = field::Empty,
            task.retry.max_retries = field::Empty,
            task.retry.has_delay = field::Empty,
            task.retry.has_condition = field::Empty,
            task.retry.succeeded_after = field::Empty,
            task.retry.condition_rejected = field::Empty,
            task.retry.max_retries_exceeded = field::Empty,
            task.retry.attempts_made = field::Empty,
            attrs = field::Empty,
            otel.status_code = field::Empty,
            otel.status_description = field::Empty,
        )
    };
}

/// What a task tells its span besides its index and name; the task builder fills it.
#[derive(Default)]
pub(crate) struct TaskSpanInfo {
    /// The task's own attributes.
    pub(crate) attrs: Attrs,
    /// The task retries on failure.
    pub(crate) has_retry: bool,
    /// The per-attempt timeout, if any.
    pub(crate) timeout: Option<Duration>,
    /// A circuit breaker guards the task.
    pub(crate) has_circuit_breaker: bool,
    /// The breaker's state and failure count when the task was spawned (read only when the
    /// span is recorded).
    pub(crate) breaker_before: Option<(CircuitState, u32)>,
    /// The scope's limit before the task took its permit (read only when recorded).
    pub(crate) limit_before: Option<LimitSnapshot>,
    /// The attempt loop's record (retries made, when the first attempt began), if the task
    /// has one; read when the task ends.
    pub(crate) run: Option<Arc<TaskRun>>,
}

/// A task's span state, kept in the task's completion record. `None` (one word) when nothing
/// records it.
pub(super) struct TaskTrace(Option<Box<TaskSpan>>);

struct TaskSpan {
    span: Span,
    /// The subscriber that recorded `span`.
    dispatch: Option<Dispatch>,
    traced: bool,
    /// A circuit breaker guards the task.
    guarded: bool,
    mode: Mode,
    spawned: Instant,
    started: Option<Instant>,
    run: Option<Arc<TaskRun>>,
    /// The scope span's count of failed tasks.
    scope_errors: Arc<AtomicU64>,
    #[cfg(feature = "otel")]
    direct: Option<opentelemetry::Context>,
}

impl TaskWatch for TaskSpan {
    fn poll(&mut self, poll: &mut dyn FnMut()) {
        self.poll_in_span(poll);
    }

    fn end(self: Box<Self>, end: &TaskEnd<'_>) {
        (*self).finish(end.error);
    }
}

impl TaskTrace {
    /// The span as the task's watch, when it is recorded.
    pub(super) fn into_watch(self) -> Option<Box<dyn TaskWatch>> {
        self.0.map(|span| span as Box<dyn TaskWatch>)
    }

    #[inline(never)]
    pub(super) fn start_recorded(
        scope: &ScopeTrace,
        live: &LiveScope,
        index: u64,
        name: Option<&str>,
        info: TaskSpanInfo,
    ) -> TaskTrace {
        let traced = scope.traced();
        // The scope's span cannot end while this runs: the task is already counted as live,
        // and a closing scope ends its span only once no task is.
        let parent;
        #[cfg(feature = "otel")]
        let direct_parent;
        {
            let open = lock(&live.open);
            let Some(open) = open.as_ref() else {
                return TaskTrace(None);
            };
            parent = dispatch_of(&open.span);
            #[cfg(feature = "otel")]
            {
                direct_parent = open.direct.clone();
            }
        }
        let new_span = || {
            let parent_id = || match &parent {
                Some((id, _)) => Some(id.clone()),
                None => Span::current().id(),
            };
            if traced {
                task_span!(Level::INFO, parent_id(), index, info, live.task_concurrency)
            } else {
                task_span!(
                    Level::DEBUG,
                    parent_id(),
                    index,
                    info,
                    live.task_concurrency
                )
            }
        };
        let span = match &parent {
            Some((_, dispatch)) => tracing::dispatcher::with_default(dispatch, new_span),
            None => new_span(),
        };
        let details = start_details(&info);
        #[cfg(feature = "otel")]
        let direct = direct_parent
            .map(|d| d.start_task(index, name, &info, &details, live.task_concurrency));

        #[cfg(feature = "otel")]
        if span.is_disabled() && direct.is_none() {
            return TaskTrace(None);
        }
        #[cfg(not(feature = "otel"))]
        if span.is_disabled() {
            return TaskTrace(None);
        }
        if !span.is_disabled() {
            if let Some(name) = name {
                span.record("otel.name", name);
            }
            if let Some(timeout) = info.timeout {
                span.record("task.timeout_ms", millis_i64(timeout));
            }
            record_details(&span, &details);
            apply_attrs(&span, live.mode, &info.attrs);
        }
        TaskTrace(Some(Box::new(TaskSpan {
            dispatch: span.with_subscriber(|(_, dispatch)| dispatch.clone()),
            span,
            traced,
            guarded: info.has_circuit_breaker,
            mode: live.mode,
            spawned: Instant::now(),
            started: None,
            run: info.run,
            scope_errors: Arc::clone(&live.errors),
            #[cfg(feature = "otel")]
            direct,
        })))
    }
}

impl TaskSpan {
    fn poll_in_span(&mut self, poll_body: &mut dyn FnMut()) {
        let task = self;
        if task.started.is_none() {
            let now = Instant::now();
            task.started = Some(now);
            // A task with an attempt loop waits for its permit inside the loop: its wait is
            // recorded when it ends, from the loop's record.
            if task.run.is_none() {
                task.record_wait(now);
            }
        }
        let outer = PENDING_ATTRS.with(|p| p.replace(Some(Vec::new())));
        let mut poll = || {
            let _entered = task.span.enter();
            #[cfg(feature = "otel")]
            let _attached = task.direct.clone().map(opentelemetry::Context::attach);
            poll_body()
        };
        // The task's own spans and events go where its span goes, on whatever worker it runs.
        match &task.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, poll),
            None => poll(),
        }
        let recorded = PENDING_ATTRS.with(|p| p.replace(outer));
        if let Some(attrs) = recorded.filter(|a| !a.is_empty()) {
            task.apply_recorded(&attrs);
        }
    }

    #[inline(never)]
    fn finish(self, error: Option<&Error>) {
        let task = self;
        let now = Instant::now();
        // A task with an attempt loop starts when its first attempt began (after its permit
        // and breaker check, which happen inside the loop).
        let run_started = task.run.as_ref().and_then(|run| run.started());
        match (run_started, &task.run) {
            (Some(started), _) => task.record_wait(started),
            (None, Some(_)) => task.record_wait(now),
            (None, None) if task.started.is_none() => task.record_wait(now),
            (None, None) => {}
        }
        let started = run_started.or(task.started);
        let duration_ms = started.map_or(0, |s| round_millis(now - s));
        let attempts = task.run.as_ref().map_or(0, |run| run.retries());
        // Leftover tasks cancelled by a normal close did not fail.
        let error = error.filter(|e| !is_normal_close(e));
        if error.is_some() {
            task.scope_errors.fetch_add(1, Ordering::Relaxed);
        }
        let details = end_details(task.run.as_deref(), task.guarded, error);
        #[cfg(feature = "otel")]
        if let Some(cx) = &task.direct {
            otel_direct::end_task(cx, duration_ms, attempts, &details, error);
        }
        let traced = task.traced;
        end_span(task.span, |span| {
            span.record("task.duration_ms", saturating_i64(duration_ms));
            span.record("task.retry_attempts", i64::from(attempts));
            record_details(span, &details);
            if let Some(error) = error {
                span.record("task.error_reason", error_reason(error));
                span.record("error.type", error_type(error));
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", error.to_string().as_str());
                exception_event!(traced, span, error);
            }
        });
    }
    fn record_wait(&self, now: Instant) {
        let wait_ms = round_millis(now - self.spawned);
        self.span
            .record("goscope.task.wait_ms", saturating_i64(wait_ms));
        #[cfg(feature = "otel")]
        if let Some(cx) = &self.direct {
            use opentelemetry::trace::TraceContextExt;
            cx.span().set_attribute(opentelemetry::KeyValue::new(
                "goscope.task.wait_ms",
                wait_ms as i64,
            ));
        }
    }

    fn apply_recorded(&self, attrs: &Attrs) {
        apply_attrs(&self.span, self.mode, attrs);
        #[cfg(feature = "otel")]
        if let Some(cx) = &self.direct {
            use opentelemetry::trace::TraceContextExt;
            for (key, value) in attrs {
                cx.span().set_attribute(opentelemetry::KeyValue::new(
                    key.clone(),
                    otel_direct::value(value),
                ));
            }
        }
    }
}

/// Attributes of a task span beyond the fixed ones, each a declared field of the span.
pub(super) type Details = Vec<(&'static str, AttrValue)>;

/// What a task found when it was spawned: its breaker's state, its scope's limit, its retry
/// policy; only for the parts the task has.
fn start_details(info: &TaskSpanInfo) -> Details {
    let mut details = Details::new();
    if let Some((state, failures)) = info.breaker_before {
        details.push((
            "task.circuit_breaker.state",
            AttrValue::Str(Cow::Borrowed(state.as_str())),
        ));
        details.push(("task.circuit_breaker.failure_count", failures.into()));
    }
    if let Some(limit) = info.limit_before {
        details.push(("task.concurrency.available_before", limit.available.into()));
        details.push(("task.concurrency.waiting_before", limit.waiting.into()));
    }
    if let Some(retry) = info.run.as_ref().and_then(|run| run.retry_policy()) {
        details.push(("task.retry.max_retries", retry.max_retries().into()));
        details.push(("task.retry.has_delay", retry.has_delay().into()));
        details.push(("task.retry.has_condition", retry.has_condition().into()));
    }
    details
}

/// How a task's breaker and retries ended.
fn end_details(run: Option<&TaskRun>, guarded: bool, error: Option<&Error>) -> Details {
    let mut details = Details::new();
    if guarded && matches!(error, Some(Error::CircuitOpen)) {
        details.push(("task.circuit_breaker.rejected", true.into()));
    }
    let Some(run) = run.filter(|run| run.retry_policy().is_some()) else {
        return details;
    };
    let attempts = run.retries() + 1;
    match (error, run.retry_end()) {
        (None, _) if attempts > 1 => {
            details.push(("task.retry.succeeded_after", attempts.into()));
        }
        (Some(_), Some(RetryEnd::Rejected)) => {
            details.push(("task.retry.condition_rejected", true.into()));
        }
        (Some(_), Some(RetryEnd::Exhausted)) => {
            details.push(("task.retry.max_retries_exceeded", true.into()));
            details.push(("task.retry.attempts_made", attempts.into()));
        }
        _ => {}
    }
    details
}

/// Records `details` into the span's declared fields.
fn record_details(span: &Span, details: &Details) {
    for (key, value) in details {
        match value {
            AttrValue::Bool(b) => span.record(*key, *b),
            AttrValue::Int(i) => span.record(*key, *i),
            AttrValue::Float(x) => span.record(*key, *x),
            AttrValue::Str(text) => span.record(*key, text.as_ref()),
        };
    }
}
