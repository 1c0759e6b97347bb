//! OpenTelemetry spans made directly with a scope's tracer, when no `tracing-opentelemetry`
//! layer carries the `tracing` spans there.

use std::sync::Arc;

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Span as _, SpanBuilder, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, Value};
use tracing::Span;

use super::{
    AttrValue, Attrs, Mode, ScopeSpanInfo, ScopeTracer, TaskSpanInfo, TracerKind, error_type,
    millis_u64,
};
use crate::core::error::Error;

pub(super) fn value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Int(i) => Value::I64(*i),
        AttrValue::Float(x) => Value::F64(*x),
        AttrValue::Str(s) => Value::String(s.clone().into()),
    }
}

fn key_values(attrs: &Attrs) -> impl Iterator<Item = KeyValue> + '_ {
    attrs
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), value(v)))
}

#[derive(Clone)]
pub(super) struct DirectSpan {
    tracer: Arc<BoxedTracer>,
    pub(super) cx: Context,
}

/// Layer mode when a `tracing-opentelemetry` layer gave the span an OpenTelemetry context;
/// direct mode when it did not and the scope has a tracer.
pub(super) fn choose(
    span: &Span,
    tracer: Option<&ScopeTracer>,
    info: &ScopeSpanInfo<'_>,
    attrs: &Attrs,
    remote: Option<&Context>,
) -> (Mode, Option<DirectSpan>) {
    if !span.is_disabled() {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if span.context().span().span_context().is_valid() {
            return (Mode::Layer, None);
        }
    }
    let Some(tracer) = tracer else {
        return (Mode::Tracing, None);
    };
    let tracer = match &tracer.kind {
        TracerKind::Global => Arc::new(opentelemetry::global::tracer_with_scope(
            super::instrumentation_scope(),
        )),
        TracerKind::Explicit(tracer) => Arc::clone(tracer),
    };
    let parent_cx = remote
        .cloned()
        .or_else(|| {
            info.parent
                .filter(|_| info.explicit_parent)
                .and_then(|p| p.live.as_ref())
                .and_then(|live| {
                    let open = super::lock(&live.open);
                    open.as_ref()?.direct.as_ref().map(|d| d.cx.clone())
                })
        })
        .unwrap_or_else(Context::current);
    let mut attributes = vec![
        KeyValue::new("scope.has_parent_signal", info.has_parent_signal()),
        KeyValue::new("scope.has_parent_scope", info.has_parent),
    ];
    if let Some(timeout) = info.timeout {
        attributes.push(KeyValue::new("scope.timeout", millis_u64(timeout) as i64));
    }
    if let Some(limit) = info.concurrency_option {
        attributes.push(KeyValue::new("scope.concurrency", limit as i64));
    }
    attributes.extend(key_values(attrs));
    let builder = SpanBuilder::from_name(info.name.to_owned()).with_attributes(attributes);
    let otel_span = tracer.build_with_context(builder, &parent_cx);
    if !otel_span.span_context().is_valid() {
        // A no-op tracer (no provider installed): nothing would be recorded.
        return (Mode::Tracing, None);
    }
    let cx = parent_cx.with_span(otel_span);
    (Mode::Direct, Some(DirectSpan { tracer, cx }))
}

fn fail(cx: &Context, error: &Error) {
    let message = error.to_string();
    let span = cx.span();
    let mut attributes = vec![
        KeyValue::new("exception.message", message.clone()),
        KeyValue::new("exception.type", error_type(error)),
    ];
    if let Some(causes) = crate::util::log::causes(error) {
        attributes.push(KeyValue::new("exception.stacktrace", causes));
    }
    span.add_event("exception", attributes);
    span.set_attribute(KeyValue::new("error.type", error_type(error)));
    span.set_status(Status::error(message));
}

impl DirectSpan {
    pub(super) fn start_task(
        &self,
        index: u64,
        name: Option<&str>,
        info: &TaskSpanInfo,
        details: &super::Details,
        concurrency: u64,
    ) -> Context {
        let mut attributes = vec![
            KeyValue::new("task.index", index as i64),
            KeyValue::new("task.has_retry", info.has_retry),
            KeyValue::new("task.has_timeout", info.timeout.is_some()),
            KeyValue::new("task.has_circuit_breaker", info.has_circuit_breaker),
            KeyValue::new("task.scope_concurrency", concurrency as i64),
        ];
        if let Some(timeout) = info.timeout {
            attributes.push(KeyValue::new("task.timeout_ms", millis_u64(timeout) as i64));
        }
        attributes.extend(details.iter().map(|(key, v)| KeyValue::new(*key, value(v))));
        attributes.extend(key_values(&info.attrs));
        let name = name.unwrap_or("scope.task").to_owned();
        let builder = SpanBuilder::from_name(name).with_attributes(attributes);
        let span = self.tracer.build_with_context(builder, &self.cx);
        self.cx.with_span(span)
    }

    pub(super) fn end_scope(&self, duration_ms: f64, errors: u64, failure: Option<&Error>) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("scope.duration_ms", duration_ms));
        span.set_attribute(KeyValue::new("scope.errors", errors as i64));
        if let Some(error) = failure {
            fail(&self.cx, error);
        }
        span.end();
    }
}

pub(super) fn end_task(
    cx: &Context,
    duration_ms: u64,
    attempts: u32,
    details: &super::Details,
    error: Option<&Error>,
) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("task.duration_ms", duration_ms as i64));
    span.set_attribute(KeyValue::new("task.retry_attempts", i64::from(attempts)));
    for (key, v) in details {
        span.set_attribute(KeyValue::new(*key, value(v)));
    }
    if let Some(error) = error {
        span.set_attribute(KeyValue::new(
            "task.error_reason",
            super::error_reason(error),
        ));
        fail(cx, error);
    }
    span.end();
}
