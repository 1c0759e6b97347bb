//! The one list of span attribute keys. `tracing` needs a span's fields written out where the
//! span is declared (`scope_span!`, `task_span!`); the unit test below checks those
//! declarations against these lists, and the integration tests check that the guide documents
//! every key, so the code, the tests and the docs cannot drift apart.

/// Every attribute a scope span can carry, besides the attributes you add yourself.
///
/// The original library's keys (`scope.*`, `task.*`) keep their names; `error.type` is
/// OpenTelemetry's own; the keys this crate adds are under [`ATTRIBUTE_NAMESPACE`].
///
/// ```
/// assert!(go_go_scope::trace::SCOPE_SPAN_ATTRIBUTES.contains(&"scope.duration_ms"));
/// ```
pub const SCOPE_SPAN_ATTRIBUTES: &[&str] = &[
    "scope.timeout",
    "scope.has_parent_signal",
    "scope.has_parent_scope",
    "scope.concurrency",
    "scope.duration_ms",
    "scope.errors",
    "error.type",
];

/// The prefix of the span attribute keys this crate adds to the original library's set
/// (`goscope.task.wait_ms`).
///
/// ```
/// use go_go_scope::trace::{ATTRIBUTE_NAMESPACE, SCOPE_SPAN_ATTRIBUTES, TASK_SPAN_ATTRIBUTES};
///
/// let ours = TASK_SPAN_ATTRIBUTES.iter().filter(|k| k.starts_with(ATTRIBUTE_NAMESPACE));
/// assert_eq!(ours.count(), 1);
/// assert!(!SCOPE_SPAN_ATTRIBUTES.iter().any(|k| k.starts_with(ATTRIBUTE_NAMESPACE)));
/// ```
pub const ATTRIBUTE_NAMESPACE: &str = "goscope.";

/// Every attribute a task span can carry, besides the attributes you add yourself. The
/// `task.circuit_breaker.*`, `task.concurrency.*` and `task.retry.*` ones appear only on tasks
/// that have a breaker, a concurrency limit or a retry policy.
///
/// ```
/// assert!(go_go_scope::trace::TASK_SPAN_ATTRIBUTES.contains(&"task.error_reason"));
/// ```
pub const TASK_SPAN_ATTRIBUTES: &[&str] = &[
    "task.index",
    "task.has_retry",
    "task.has_timeout",
    "task.has_circuit_breaker",
    "task.scope_concurrency",
    "task.timeout_ms",
    "goscope.task.wait_ms",
    "task.duration_ms",
    "task.retry_attempts",
    "task.error_reason",
    "error.type",
    "task.circuit_breaker.state",
    "task.circuit_breaker.failure_count",
    "task.circuit_breaker.rejected",
    "task.concurrency.available_before",
    "task.concurrency.waiting_before",
    "task.retry.max_retries",
    "task.retry.has_delay",
    "task.retry.has_condition",
    "task.retry.succeeded_after",
    "task.retry.condition_rejected",
    "task.retry.max_retries_exceeded",
    "task.retry.attempts_made",
];

/// Fields every span of this crate declares besides its attributes: the OpenTelemetry name and
/// status, and the text field that carries your own attributes for plain `tracing`
/// subscribers.
#[cfg(test)]
const COMMON_FIELDS: &[&str] = &[
    "otel.name",
    "attrs",
    "otel.status_code",
    "otel.status_description",
];

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// A subscriber that records every span, so the declared fields can be read.
    struct Everything;

    impl Subscriber for Everything {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn declared(span: &tracing::Span) -> Vec<String> {
        let metadata = span.metadata().expect("the span is enabled");
        metadata
            .fields()
            .iter()
            .map(|f| f.name().to_owned())
            .filter(|name| !COMMON_FIELDS.contains(&name.as_str()))
            .collect()
    }

    #[test]
    fn span_declarations_match_the_schema() {
        use super::super::task_span::TaskSpanInfo;
        use super::super::*;
        tracing::subscriber::with_default(Everything, || {
            let scope = scope_span!(Level::INFO, None::<Id>, false, false);
            assert_eq!(declared(&scope), SCOPE_SPAN_ATTRIBUTES);
            let info = TaskSpanInfo::default();
            let task = task_span!(Level::INFO, None::<Id>, 1_u64, info, 0_u64);
            assert_eq!(declared(&task), TASK_SPAN_ATTRIBUTES);
        });
    }
}
