//! W3C trace context across processes: a scope takes its parent from a caller's `traceparent`
//! and `tracestate` headers, and a task writes its own context into outgoing headers. Both go
//! through OpenTelemetry's `TraceContextPropagator`.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::core::scope::ScopeBuilder;

/// Where a remote trace context is read from: HTTP headers or a plain map of strings.
///
/// *Feature `otel`.*
///
/// Implemented for `http::HeaderMap`, `HashMap<String, String>` and `BTreeMap<String, String>`
/// (keys in lower case, as `traceparent`); implement it for your own carrier (gRPC metadata, a
/// message's attributes).
pub trait TraceCarrier {
    /// The value stored under `key` (`traceparent` or `tracestate`), if there is one.
    fn trace_value(&self, key: &str) -> Option<&str>;
}

/// Where a trace context is written to: HTTP headers or a plain map of strings.
///
/// *Feature `otel`.*
pub trait TraceCarrierMut {
    /// Stores `value` under `key` (`traceparent` or `tracestate`), replacing what was there.
    fn set_trace_value(&mut self, key: &str, value: String);
}

impl TraceCarrier for http::HeaderMap {
    fn trace_value(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.to_str().ok())
    }
}

impl TraceCarrierMut for http::HeaderMap {
    fn set_trace_value(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.insert(name, value);
        }
    }
}

impl<S: BuildHasher> TraceCarrier for HashMap<String, String, S> {
    fn trace_value(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> TraceCarrierMut for HashMap<String, String, S> {
    fn set_trace_value(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }
}

impl TraceCarrier for BTreeMap<String, String> {
    fn trace_value(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl TraceCarrierMut for BTreeMap<String, String> {
    fn set_trace_value(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }
}

impl<T: TraceCarrier + ?Sized> TraceCarrier for &T {
    fn trace_value(&self, key: &str) -> Option<&str> {
        (**self).trace_value(key)
    }
}

struct Reading<'a, C: ?Sized>(&'a C);

impl<C: TraceCarrier + ?Sized> Extractor for Reading<'_, C> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.trace_value(key)
    }
    fn keys(&self) -> Vec<&str> {
        // The trace-context propagator asks for its two keys by name.
        ["traceparent", "tracestate"]
            .into_iter()
            .filter(|key| self.0.trace_value(key).is_some())
            .collect()
    }
}

struct Writing<'a, C: ?Sized>(&'a mut C);

impl<C: TraceCarrierMut + ?Sized> Injector for Writing<'_, C> {
    fn set(&mut self, key: &str, value: String) {
        self.0.set_trace_value(key, value);
    }
}

/// The remote span context in `carrier`, as a parent context; `None` when it holds no valid
/// `traceparent`.
pub(crate) fn extract<C: TraceCarrier + ?Sized>(carrier: &C) -> Option<Context> {
    let cx = TraceContextPropagator::new().extract(&Reading(carrier));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The OpenTelemetry context of the code that runs now: the span of the task being polled (made
/// by a `tracing-opentelemetry` layer, or directly with the scope's tracer), else OpenTelemetry's
/// current context.
pub(crate) fn current_context() -> Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::Span::current();
    if !span.is_disabled() {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            return cx;
        }
    }
    Context::current()
}

/// Writes the trace context of the code that calls it — the running task's span — into
/// `carrier` as W3C `traceparent` (and `tracestate` when there is one), so the service it calls
/// continues the same trace. Returns false, writing nothing, when there is no span to continue
/// (no tracer, or the span is not recorded).
///
/// *Feature `otel`.*
///
/// ```
/// use go_go_scope::trace::inject_current;
///
/// // Outside any recorded span there is nothing to propagate.
/// let mut headers = http::HeaderMap::new();
/// assert!(!inject_current(&mut headers));
/// assert!(headers.is_empty());
/// ```
///
/// With a client such as `reqwest`, inside a task of a traced scope:
///
/// ```no_run
/// # async fn call(client: reqwest::Client) -> Result<(), reqwest::Error> {
/// let mut headers = http::HeaderMap::new();
/// go_go_scope::trace::inject_current(&mut headers);
/// client.get("http://127.0.0.1:8080/orders/7").headers(headers).send().await?;
/// # Ok(())
/// # }
/// ```
pub fn inject_current<C: TraceCarrierMut + ?Sized>(carrier: &mut C) -> bool {
    let cx = current_context();
    if !cx.span().span_context().is_valid() {
        return false;
    }
    TraceContextPropagator::new().inject_context(&cx, &mut Writing(carrier));
    true
}

impl ScopeBuilder {
    /// Makes the scope's span a child of the remote span in `carrier`'s W3C `traceparent`
    /// (and `tracestate`): the span of the caller that sent this request, in another process.
    /// A carrier without a valid `traceparent` changes nothing (the span's parent is found as
    /// usual). `#[scoped(tracer, parent_from = headers)]` does the same.
    ///
    /// *Feature `otel`.* Takes effect when the spans reach OpenTelemetry (a
    /// `tracing-opentelemetry` layer, or the scope's tracer).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use go_go_scope::{Scope, ScopeTracer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut carrier = HashMap::new();
    /// carrier.insert(
    ///     "traceparent".to_owned(),
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    /// );
    /// let scope = Scope::builder()
    ///     .name("handle-order")
    ///     .tracer(ScopeTracer::global())
    ///     .remote_parent(&carrier)
    ///     .build()
    ///     .unwrap();
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn remote_parent<C: TraceCarrier + ?Sized>(mut self, carrier: &C) -> Self {
        if let Some(cx) = extract(carrier) {
            self.features().trace.remote = Some(cx);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_is_read_from_headers_and_maps() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        let cx = extract(&headers).expect("a parent");
        let span = cx.span();
        let parent = span.span_context();
        assert!(parent.is_remote());
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");

        let map: BTreeMap<String, String> = [("traceparent".to_owned(), PARENT.to_owned())].into();
        assert!(extract(&map).is_some());
    }

    #[test]
    fn an_invalid_or_missing_traceparent_gives_no_parent() {
        let mut headers = http::HeaderMap::new();
        assert!(extract(&headers).is_none());
        headers.insert("traceparent", "00-not-a-trace-id-01".parse().unwrap());
        assert!(extract(&headers).is_none());
        let all_zero = "00-00000000000000000000000000000000-0000000000000000-01";
        headers.insert("traceparent", all_zero.parse().unwrap());
        assert!(extract(&headers).is_none());
    }

    #[test]
    fn a_context_written_out_reads_back() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        let cx = extract(&headers).unwrap();
        let _attached = cx.attach();
        let mut out: HashMap<String, String> = HashMap::new();
        assert!(inject_current(&mut out));
        assert_eq!(out.get("traceparent").map(String::as_str), Some(PARENT));
    }
}
