//! Scope and task spans: names, parentage, the original library's attributes, error status,
//! levels, and both ways into OpenTelemetry (a `tracing-opentelemetry` layer, or a tracer used
//! directly).
//!
//! Each test installs its subscriber for its own thread only, and runs on a current-thread
//! runtime, so every task it spawns reports to that subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use go_go_scope::{Scope, ScopeTracer, record_task_attr};
use opentelemetry::trace::{SpanId, Status, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Level;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

/// Finished OpenTelemetry spans of one test.
struct Traces {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: Option<DefaultGuard>,
}

impl Traces {
    /// A tracing-opentelemetry layer filtered at `level`, as this thread's subscriber.
    fn layer_at(level: Level) -> Traces {
        let (exporter, provider) = in_memory();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tests"))
            .with_filter(LevelFilter::from_level(level));
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        Traces {
            exporter,
            provider,
            _guard: Some(guard),
        }
    }

    /// No subscriber at all: only spans made directly with a tracer are recorded.
    fn without_subscriber() -> Traces {
        let (exporter, provider) = in_memory();
        let guard = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        Traces {
            exporter,
            provider,
            _guard: Some(guard),
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("spans")
    }
}

fn in_memory() -> (InMemorySpanExporter, SdkTracerProvider) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (exporter, provider)
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(v)) => v,
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

fn boolean(span: &SpanData, key: &str) -> bool {
    match attr(span, key) {
        Some(Value::Bool(v)) => v,
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

fn string(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(Value::String(v)) => v.to_string(),
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "spans named {name}: {:?}", names(spans));
    found[0]
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

fn is_error(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
}

#[tokio::test]
async fn scope_span_is_the_parent_of_its_task_spans_and_carries_the_original_attributes() {
    let traces = Traces::layer_at(Level::INFO);
    let scope = Scope::builder()
        .name("fetch-user-data")
        .timeout(Duration::from_secs(30))
        .concurrency(2)
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    let user = scope.spawn(async { "ada" });
    let posts = scope.spawn(async { 3 });
    assert_eq!(user.await.1, Some("ada"));
    assert_eq!(posts.await.1, Some(3));
    scope.close().await.unwrap();

    let spans = traces.spans();
    let root = one(&spans, "fetch-user-data");
    assert_eq!(int(root, "scope.timeout"), 30_000);
    assert!(!boolean(root, "scope.has_parent_signal"));
    assert!(!boolean(root, "scope.has_parent_scope"));
    assert_eq!(int(root, "scope.concurrency"), 2);
    assert!(matches!(attr(root, "scope.duration_ms"), Some(Value::F64(ms)) if ms >= 0.0));
    assert_eq!(int(root, "scope.errors"), 0);
    assert!(!is_error(root));

    let tasks = named(&spans, "scope.task");
    assert_eq!(tasks.len(), 2);
    let mut indexes: Vec<i64> = tasks.iter().map(|t| int(t, "task.index")).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [1, 2]);
    for task in tasks {
        assert_eq!(task.parent_span_id, root.span_context.span_id());
        assert_eq!(task.span_context.trace_id(), root.span_context.trace_id());
        assert!(!boolean(task, "task.has_retry"));
        assert!(!boolean(task, "task.has_timeout"));
        assert!(!boolean(task, "task.has_circuit_breaker"));
        assert_eq!(int(task, "task.scope_concurrency"), 2);
        assert_eq!(int(task, "task.retry_attempts"), 0);
        assert!(int(task, "task.duration_ms") >= 0);
        assert!(int(task, "goscope.task.wait_ms") >= 0);
        assert!(attr(task, "task.error_reason").is_none());
        assert!(!is_error(task));
    }
}

#[tokio::test]
async fn a_failed_task_has_status_error_an_exception_event_and_counts_in_scope_errors() {
    let traces = Traces::layer_at(Level::INFO);
    let scope = Scope::builder()
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    let ok = scope.spawn(async { 1 });
    let bad = scope.try_spawn(async { Err::<(), _>(std::io::Error::other("card declined")) });
    let boom = scope.spawn(async { panic!("kaboom") });
    assert!(ok.await.0.is_none());
    assert!(bad.await.0.is_some());
    assert!(boom.await.0.is_some());
    scope.close().await.unwrap();

    let spans = traces.spans();
    let root = one(&spans, "scope");
    assert_eq!(int(root, "scope.errors"), 2);
    assert!(
        !is_error(root),
        "failed tasks do not fail their scope's span"
    );
    let tasks = named(&spans, "scope.task");
    let by_index = |i: i64| *tasks.iter().find(|t| int(t, "task.index") == i).unwrap();

    let declined = by_index(2);
    assert_eq!(
        declined.status,
        Status::Error {
            description: "card declined".into()
        }
    );
    assert_eq!(string(declined, "task.error_reason"), "exception");
    assert_eq!(string(declined, "error.type"), "go_go_scope::Error::Failed");
    let event = declined
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("an exception event");
    let message = event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .map(|kv| kv.value.to_string());
    assert_eq!(message.as_deref(), Some("card declined"));

    let panicked = by_index(3);
    assert!(is_error(panicked));
    assert_eq!(string(panicked, "task.error_reason"), "panic");
    assert_eq!(
        string(panicked, "error.type"),
        "go_go_scope::Error::Panicked"
    );
    assert!(attr(by_index(1), "error.type").is_none());
    assert!(!is_error(by_index(1)));
}

#[tokio::test(start_paused = true)]
async fn task_duration_counts_the_body_and_wait_counts_the_permit_wait() {
    let traces = Traces::layer_at(Level::INFO);
    let scope = Scope::builder()
        .concurrency(1)
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    // `async` blocks: a `sleep` made at spawn would count its deadline from the spawn.
    let first = scope.spawn(async { tokio::time::sleep(Duration::from_millis(100)).await });
    let second = scope.spawn(async { tokio::time::sleep(Duration::from_millis(50)).await });
    first.await;
    second.await;
    scope.close().await.unwrap();

    let spans = traces.spans();
    let tasks = named(&spans, "scope.task");
    let by_index = |i: i64| *tasks.iter().find(|t| int(t, "task.index") == i).unwrap();
    assert_eq!(int(by_index(1), "task.duration_ms"), 100);
    assert_eq!(int(by_index(1), "goscope.task.wait_ms"), 0);
    assert_eq!(int(by_index(2), "task.duration_ms"), 50);
    assert_eq!(int(by_index(2), "goscope.task.wait_ms"), 100);
}

#[tokio::test(start_paused = true)]
async fn a_built_task_reports_its_name_retries_timeout_breaker_and_attributes() {
    let traces = Traces::layer_at(Level::INFO);
    let breaker = go_go_scope::CircuitBreaker::new(5, Duration::from_secs(30)).unwrap();
    let scope = Scope::builder()
        .name("process-order")
        .concurrency(1)
        .circuit_breaker(breaker)
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    let blocker = scope.spawn(async { tokio::time::sleep(Duration::from_millis(40)).await });
    let payment = scope
        .task(|attempt| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if attempt == 1 {
                Err("gateway hiccup")
            } else {
                Ok("paid")
            }
        })
        .name("process-payment")
        .timeout(Duration::from_secs(2))
        .retry(go_go_scope::Retry::fixed(2, Duration::from_millis(5)))
        .attr("payment.id", 42_i64)
        .spawn();
    blocker.await;
    assert_eq!(payment.result().await.unwrap(), "paid");
    scope.close().await.unwrap();

    let spans = traces.spans();
    let root = one(&spans, "process-order");
    let task = one(&spans, "process-payment");
    assert_eq!(task.parent_span_id, root.span_context.span_id());
    assert!(boolean(task, "task.has_retry"));
    assert!(boolean(task, "task.has_timeout"));
    assert!(boolean(task, "task.has_circuit_breaker"));
    assert_eq!(int(task, "task.retry_attempts"), 1);
    assert_eq!(int(task, "payment.id"), 42);
    // It waited for the blocker's permit, then ran two 10 ms attempts with a 5 ms delay.
    assert_eq!(int(task, "goscope.task.wait_ms"), 40);
    assert_eq!(int(task, "task.duration_ms"), 25);
    assert!(!is_error(task));
}

/// Runs tasks under a concurrency limit, a circuit breaker and retry policies, in child scopes of
/// a root scope traced with `tracer`, for the detail attributes of their spans.
async fn detail_scenario(tracer: ScopeTracer) {
    use go_go_scope::{CircuitBreaker, Error, Retry};
    use tokio::time::sleep;
    let root = Scope::builder()
        .name("details")
        .tracer(tracer)
        .build()
        .unwrap();

    let limited = root.child().name("limited").concurrency(1).build().unwrap();
    let blocker = limited
        .task_once(async {
            sleep(Duration::from_millis(20)).await;
            Ok::<_, Error>(())
        })
        .name("blocker")
        .spawn();
    let flaky = limited
        .task(|attempt| async move {
            if attempt == 1 {
                Err("hiccup")
            } else {
                Ok(attempt)
            }
        })
        .name("flaky")
        .retry(Retry::fixed(2, Duration::from_millis(1)))
        .spawn();
    // Lets `flaky` start waiting for the permit.
    sleep(Duration::from_millis(1)).await;
    let third = limited
        .task_once(async { Ok::<_, Error>(3) })
        .name("third")
        .spawn();
    assert!(blocker.await.0.is_none());
    assert_eq!(flaky.await.1, Some(2));
    assert_eq!(third.await.1, Some(3));
    limited.close().await.unwrap();

    let retrying = root.child().name("retrying").build().unwrap();
    let picky = retrying
        .task(|_| async { Err::<(), _>("fatal") })
        .name("picky")
        .retry(Retry::new(3).retry_if(|_| false))
        .spawn();
    let hopeless = retrying
        .task(|_| async { Err::<(), _>("down") })
        .name("hopeless")
        .retry(1)
        .spawn();
    let plain = retrying
        .task_once(async { Ok::<_, Error>(()) })
        .name("plain")
        .spawn();
    assert!(picky.await.0.is_some());
    assert!(hopeless.await.0.is_some());
    assert!(plain.await.0.is_none());
    retrying.close().await.unwrap();

    let breaker = CircuitBreaker::new(2, Duration::from_secs(30)).unwrap();
    let guarded = root
        .child()
        .name("guarded")
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    for name in ["fail-a", "fail-b"] {
        let failing = guarded
            .task_once(async { Err::<(), _>("refused by upstream") })
            .name(name)
            .spawn();
        assert!(failing.await.0.is_some());
    }
    let refused = guarded
        .task_once(async { Ok::<_, Error>(()) })
        .name("refused")
        .spawn();
    assert!(matches!(refused.await.0, Some(Error::CircuitOpen)));
    guarded.close().await.unwrap();
    root.close().await.unwrap();
}

fn assert_details(spans: &[SpanData]) {
    let blocker = one(spans, "blocker");
    assert_eq!(int(blocker, "task.concurrency.available_before"), 1);
    assert_eq!(int(blocker, "task.concurrency.waiting_before"), 0);
    let flaky = one(spans, "flaky");
    assert_eq!(int(flaky, "task.concurrency.available_before"), 0);
    assert_eq!(int(flaky, "task.concurrency.waiting_before"), 0);
    assert_eq!(int(flaky, "task.retry.max_retries"), 2);
    assert!(boolean(flaky, "task.retry.has_delay"));
    assert!(!boolean(flaky, "task.retry.has_condition"));
    assert_eq!(int(flaky, "task.retry.succeeded_after"), 2);
    assert_eq!(attr(flaky, "task.retry.max_retries_exceeded"), None);
    let third = one(spans, "third");
    assert_eq!(int(third, "task.concurrency.available_before"), 0);
    assert_eq!(int(third, "task.concurrency.waiting_before"), 1);

    let picky = one(spans, "picky");
    assert!(boolean(picky, "task.retry.has_condition"));
    assert!(boolean(picky, "task.retry.condition_rejected"));
    assert_eq!(attr(picky, "task.retry.max_retries_exceeded"), None);
    let hopeless = one(spans, "hopeless");
    assert!(!boolean(hopeless, "task.retry.has_delay"));
    assert!(boolean(hopeless, "task.retry.max_retries_exceeded"));
    assert_eq!(int(hopeless, "task.retry.attempts_made"), 2);
    assert_eq!(attr(hopeless, "task.retry.succeeded_after"), None);
    let plain = one(spans, "plain");
    for key in [
        "task.retry.max_retries",
        "task.concurrency.available_before",
        "task.circuit_breaker.state",
    ] {
        assert_eq!(attr(plain, key), None, "{key} on a task without it");
    }

    let fail_a = one(spans, "fail-a");
    assert_eq!(string(fail_a, "task.circuit_breaker.state"), "closed");
    assert_eq!(int(fail_a, "task.circuit_breaker.failure_count"), 0);
    assert_eq!(attr(fail_a, "task.circuit_breaker.rejected"), None);
    let fail_b = one(spans, "fail-b");
    assert_eq!(int(fail_b, "task.circuit_breaker.failure_count"), 1);
    let refused = one(spans, "refused");
    assert_eq!(string(refused, "task.circuit_breaker.state"), "open");
    assert_eq!(int(refused, "task.circuit_breaker.failure_count"), 2);
    assert!(boolean(refused, "task.circuit_breaker.rejected"));
    assert_eq!(string(refused, "task.error_reason"), "circuit_breaker_open");
}

// OTEL-05/06/07: breaker, limit and retry details, through a tracing-opentelemetry layer.
#[tokio::test(start_paused = true)]
async fn task_spans_carry_breaker_limit_and_retry_details_through_a_layer() {
    let traces = Traces::layer_at(Level::INFO);
    detail_scenario(ScopeTracer::global()).await;
    assert_details(&traces.spans());
}

// The same attributes when the spans are made directly with a tracer.
#[tokio::test(start_paused = true)]
async fn task_spans_carry_breaker_limit_and_retry_details_made_directly() {
    let traces = Traces::without_subscriber();
    detail_scenario(ScopeTracer::from(traces.provider.tracer("direct"))).await;
    assert_details(&traces.spans());
}

// A waiting task that is cancelled, or that gets its permit, stops counting as waiting.
#[tokio::test(start_paused = true)]
async fn waiting_counts_only_tasks_still_waiting() {
    use go_go_scope::Error;
    let traces = Traces::layer_at(Level::INFO);
    let scope = Scope::builder()
        .name("queue")
        .concurrency(1)
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    let named = |name: &'static str| {
        scope
            .task_once(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, Error>(())
            })
            .name(name)
            .spawn()
    };
    let holder = named("holder");
    let given_up = named("given-up");
    let patient = named("patient");
    given_up.cancel();
    assert!(given_up.await.0.unwrap().is_cancelled());
    let after_cancel = named("after-cancel");
    assert!(holder.await.0.is_none());
    assert!(patient.await.0.is_none());
    assert!(after_cancel.await.0.is_none());
    let last = named("last");
    assert!(last.await.0.is_none());
    scope.close().await.unwrap();

    let spans = traces.spans();
    let waiting = |name| int(one(&spans, name), "task.concurrency.waiting_before");
    assert_eq!(waiting("holder"), 0);
    assert_eq!(waiting("given-up"), 0);
    assert_eq!(waiting("patient"), 1);
    assert_eq!(
        waiting("after-cancel"),
        1,
        "the cancelled task no longer waits"
    );
    assert_eq!(waiting("last"), 0, "every earlier task got its permit");
    assert_eq!(
        int(one(&spans, "last"), "task.concurrency.available_before"),
        1
    );
}

#[go_go_scope::scoped(tracer, attrs("tenant" = "acme", "shard" = 3_i64), skip(secret))]
async fn traced_handler(
    user_id: u64,
    name: &str,
    secret: String,
    blob: Vec<u8>,
) -> Result<usize, go_go_scope::Error> {
    let lookup = go_go_scope::go!(attrs("lookup.kind" = "by-id"), async move { user_id * 2 });
    let doubled = lookup.result().await?;
    Ok(name.len() + secret.len() + blob.len() + doubled as usize)
}

#[tokio::test]
async fn scoped_fns_record_their_arguments_and_attributes_on_their_span() {
    let traces = Traces::layer_at(Level::INFO);
    let out = traced_handler(21, "ada", "hunter2".into(), vec![1, 2])
        .await
        .unwrap();
    assert_eq!(out, 3 + 7 + 2 + 42);

    let spans = traces.spans();
    let root = one(&spans, "traced_handler");
    assert_eq!(int(root, "arg.user_id"), 21);
    assert_eq!(string(root, "arg.name"), "ada");
    assert!(
        attr(root, "arg.secret").is_none(),
        "skip(secret) is not recorded"
    );
    assert!(
        attr(root, "arg.blob").is_none(),
        "a Vec<u8> has no attribute form"
    );
    assert_eq!(string(root, "tenant"), "acme");
    assert_eq!(int(root, "shard"), 3);
    let task = one(&spans, "scope.task");
    assert_eq!(task.parent_span_id, root.span_context.span_id());
    assert_eq!(string(task, "lookup.kind"), "by-id");
}

#[tokio::test]
async fn child_scope_spans_nest_under_their_parent_also_across_tokio_spawn() {
    let traces = Traces::layer_at(Level::INFO);
    let parent = Scope::builder()
        .name("parent-operation")
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    // Built on another Tokio task, with the parent given explicitly.
    let handle = parent.clone();
    tokio::spawn(async move {
        let child = handle.child().name("child-operation").build().unwrap();
        child.spawn(async {}).await;
        child.close().await.unwrap();
        // A task spawned from outside the scope's code still nests under the scope.
        handle.spawn(async {}).await;
    })
    .await
    .unwrap();
    // Built inside the parent's task: the ambient scope is the parent, the span is the task's.
    let nested = parent.spawn(async {
        let inner = Scope::builder().name("inside-task").build().unwrap();
        inner.close().await.unwrap();
    });
    nested.await;
    parent.close().await.unwrap();

    let spans = traces.spans();
    let root = one(&spans, "parent-operation");
    let child = one(&spans, "child-operation");
    assert_eq!(child.parent_span_id, root.span_context.span_id());
    assert!(boolean(child, "scope.has_parent_scope"));
    assert!(boolean(child, "scope.has_parent_signal"));
    let child_task = spans
        .iter()
        .find(|s| s.name == "scope.task" && s.parent_span_id == child.span_context.span_id())
        .expect("the child's task");
    assert_eq!(
        child_task.span_context.trace_id(),
        root.span_context.trace_id()
    );

    let inside = one(&spans, "inside-task");
    let owner = spans
        .iter()
        .find(|s| s.span_context.span_id() == inside.parent_span_id)
        .expect("the task span it was built in");
    assert_eq!(owner.name, "scope.task");
    assert_eq!(owner.parent_span_id, root.span_context.span_id());
    let root_tasks = spans
        .iter()
        .filter(|s| s.name == "scope.task" && s.parent_span_id == root.span_context.span_id())
        .count();
    assert_eq!(root_tasks, 2);
}

#[tokio::test]
async fn scope_run_body_events_and_user_spans_nest_inside_the_scope_span() {
    let traces = Traces::layer_at(Level::INFO);
    Scope::run(
        Scope::builder()
            .name("request")
            .tracer(ScopeTracer::global()),
        |s| async move {
            let _user = tracing::info_span!("load-config").entered();
            drop(_user);
            s.spawn(async {
                tracing::info_span!("query-db").in_scope(|| {});
            })
            .await;
        },
    )
    .await
    .unwrap();

    let spans = traces.spans();
    let root = one(&spans, "request");
    assert_eq!(
        one(&spans, "load-config").parent_span_id,
        root.span_context.span_id()
    );
    let task = one(&spans, "scope.task");
    assert_eq!(
        one(&spans, "query-db").parent_span_id,
        task.span_context.span_id()
    );
}

#[go_go_scope::scoped(tracer, name = "report")]
async fn report_without_result() -> usize {
    let _user = tracing::info_span!("render").entered();
    3
}

#[go_go_scope::scoped(tracer, name = "report-result")]
async fn report_with_result() -> Result<usize, go_go_scope::Error> {
    let _user = tracing::info_span!("render-result").entered();
    Ok(3)
}

// A `#[scoped]` fn whose return type cannot carry an error runs to completion, but through the
// same run path as every other scope body: inside the scope's span.
#[tokio::test]
async fn a_scoped_fn_body_runs_inside_its_span_whatever_its_return_type() {
    let traces = Traces::layer_at(Level::INFO);
    assert_eq!(report_without_result().await, 3);
    assert_eq!(report_with_result().await.unwrap(), 3);
    let spans = traces.spans();
    assert_eq!(
        one(&spans, "render").parent_span_id,
        one(&spans, "report").span_context.span_id()
    );
    assert_eq!(
        one(&spans, "render-result").parent_span_id,
        one(&spans, "report-result").span_context.span_id()
    );
}

#[tokio::test]
async fn attributes_from_the_builder_and_from_inside_a_task_reach_opentelemetry() {
    let traces = Traces::layer_at(Level::INFO);
    let scope = Scope::builder()
        .name("api-request")
        .tracer(ScopeTracer::global())
        .attr("http.method", "GET")
        .attr("user.id", 7_u64)
        .attr("cache.enabled", true)
        .build()
        .unwrap();
    let task = scope.spawn(async {
        assert!(record_task_attr("http.route", "/api/user"));
        tokio::task::yield_now().await;
        record_task_attr("rows", 12)
    });
    assert_eq!(task.await.1, Some(true));
    scope.close().await.unwrap();
    assert!(
        !record_task_attr("outside", 1),
        "nothing to record on outside a task"
    );

    let spans = traces.spans();
    let root = one(&spans, "api-request");
    assert_eq!(string(root, "http.method"), "GET");
    assert_eq!(int(root, "user.id"), 7);
    assert!(boolean(root, "cache.enabled"));
    let task = one(&spans, "scope.task");
    assert_eq!(string(task, "http.route"), "/api/user");
    assert_eq!(int(task, "rows"), 12);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_or_cancelled_scope_is_an_error_and_a_normal_close_is_not() {
    let traces = Traces::layer_at(Level::INFO);
    let slow = Scope::builder()
        .name("slow")
        .timeout(Duration::from_millis(10))
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    let stuck = slow.spawn(std::future::pending::<()>());
    assert!(stuck.await.0.unwrap().is_timeout());
    slow.close().await.unwrap();

    let cancelled = Scope::builder()
        .name("cancelled")
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    cancelled.cancel("shutting down");
    cancelled.close().await.unwrap();

    let normal = Scope::builder()
        .name("normal")
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    let leftover = normal.spawn(std::future::pending::<()>());
    normal.close().await.unwrap();
    assert!(leftover.await.0.unwrap().is_cancelled());

    let failing = Scope::builder()
        .name("failing-cleanup")
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    failing.defer(|| async { Err::<(), _>("flush failed") });
    assert!(failing.close().await.is_err());

    let spans = traces.spans();
    let slow = one(&spans, "slow");
    assert!(is_error(slow));
    assert!(slow.events.iter().any(|e| e.name == "exception"));
    let slow_task = spans
        .iter()
        .find(|s| s.parent_span_id == slow.span_context.span_id())
        .unwrap();
    assert_eq!(string(slow_task, "task.error_reason"), "timeout");
    assert!(
        is_error(slow_task),
        "a task cut off by its scope's timeout failed"
    );
    assert_eq!(string(slow, "error.type"), "go_go_scope::Error::Timeout");
    assert_eq!(
        one(&spans, "cancelled").status,
        Status::Error {
            description: "cancelled: shutting down".into()
        }
    );
    let normal = one(&spans, "normal");
    assert!(!is_error(normal));
    assert_eq!(int(normal, "scope.errors"), 0);
    let leftover = spans
        .iter()
        .find(|s| s.parent_span_id == normal.span_context.span_id())
        .unwrap();
    assert!(
        !is_error(leftover),
        "a task cancelled by its scope's normal close did not fail"
    );
    assert!(attr(leftover, "task.error_reason").is_none());
    assert!(attr(leftover, "error.type").is_none());
    let failing = one(&spans, "failing-cleanup");
    assert!(is_error(failing));
    assert!(
        matches!(&failing.status, Status::Error { description } if description.contains("flush failed"))
    );
}

#[tokio::test]
async fn scopes_without_a_tracer_are_debug_and_the_tracer_is_inherited() {
    let info = Traces::layer_at(Level::INFO);
    let plain = Scope::builder().name("plain").build().unwrap();
    plain.spawn(async {}).await;
    plain.close().await.unwrap();
    let traced = Scope::builder()
        .name("traced")
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    let child = traced.child().name("traced-child").build().unwrap();
    child.close().await.unwrap();
    traced.close().await.unwrap();
    let spans = info.spans();
    assert!(named(&spans, "plain").is_empty());
    assert!(named(&spans, "scope.task").is_empty());
    assert_eq!(named(&spans, "traced").len(), 1);
    assert_eq!(named(&spans, "traced-child").len(), 1);
    drop(info);

    let debug = Traces::layer_at(Level::DEBUG);
    let plain = Scope::builder().name("plain").build().unwrap();
    plain.spawn(async {}).await;
    plain.close().await.unwrap();
    let spans = debug.spans();
    assert_eq!(named(&spans, "plain").len(), 1);
    assert_eq!(named(&spans, "scope.task").len(), 1);
}

/// A `MakeWriter` that keeps what a `fmt` layer prints.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_fmt_subscriber_at_info_is_quiet_until_tracing_is_asked_for() {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_max_level(Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let plain = Scope::builder().name("plain").build().unwrap();
    plain.spawn(async {}).await;
    plain.try_spawn(async { Err::<(), _>("nope") }).await;
    plain.close().await.unwrap();
    assert_eq!(out.text(), "", "an untraced scope prints nothing at INFO");

    let traced = Scope::builder()
        .name("traced")
        .tracer(ScopeTracer::global())
        .attr("tenant", "acme")
        .build()
        .unwrap();
    traced
        .spawn(async { tracing::info!("inside the task") })
        .await;
    traced.try_spawn(async { Err::<(), _>("nope") }).await;
    traced.close().await.unwrap();
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // The user's event carries the scope and task spans as context, user attributes included.
    assert!(lines[0].contains("scope{"), "{text}");
    assert!(lines[0].contains("otel.name=\"traced\""), "{text}");
    assert!(lines[0].contains("attrs=\"tenant=acme\""), "{text}");
    assert!(lines[0].contains("scope.task{"), "{text}");
    assert!(lines[0].contains("inside the task"), "{text}");
    // The failed task's exception event.
    assert!(lines[1].contains("exception"), "{text}");
    assert!(lines[1].contains("exception.message=\"nope\""), "{text}");
}

#[tokio::test]
async fn without_a_layer_an_explicit_tracer_gets_the_spans_directly() {
    let traces = Traces::without_subscriber();
    let tracer = ScopeTracer::from(traces.provider.tracer("direct"));
    let scope = Scope::builder()
        .name("direct-scope")
        .tracer(tracer)
        .attr("region", "eu")
        .build()
        .unwrap();
    let child = scope.child().name("direct-child").build().unwrap();
    child.spawn(async {}).await;
    child.close().await.unwrap();
    let ok = scope.spawn(async { record_task_attr("step", "charge") });
    let bad = scope.try_spawn(async { Err::<(), _>("declined") });
    assert_eq!(ok.await.1, Some(true));
    assert!(bad.await.0.is_some());
    scope.close().await.unwrap();

    let spans = traces.spans();
    let root = one(&spans, "direct-scope");
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    assert_eq!(string(root, "region"), "eu");
    assert_eq!(int(root, "scope.errors"), 1);
    let child = one(&spans, "direct-child");
    assert_eq!(child.parent_span_id, root.span_context.span_id());
    let tasks = named(&spans, "scope.task");
    assert_eq!(tasks.len(), 3);
    let root_tasks: Vec<&&SpanData> = tasks
        .iter()
        .filter(|t| t.parent_span_id == root.span_context.span_id())
        .collect();
    assert_eq!(root_tasks.len(), 2);
    let ok = root_tasks
        .iter()
        .find(|t| int(t, "task.index") == 1)
        .unwrap();
    assert_eq!(string(ok, "step"), "charge");
    assert!(int(ok, "goscope.task.wait_ms") >= 0);
    let bad = root_tasks
        .iter()
        .find(|t| int(t, "task.index") == 2)
        .unwrap();
    assert_eq!(
        bad.status,
        Status::Error {
            description: "declined".into()
        }
    );
    assert!(bad.events.iter().any(|e| e.name == "exception"));
    assert_eq!(string(bad, "error.type"), "go_go_scope::Error::Failed");
}

#[go_go_scope::scoped(tracer = direct_tracer())]
async fn traced_without_subscriber(order_id: u64, region: &str) -> usize {
    region.len() + order_id as usize
}

thread_local! {
    static DIRECT_TRACER: std::cell::RefCell<Option<opentelemetry_sdk::trace::SdkTracer>> =
        const { std::cell::RefCell::new(None) };
}

fn direct_tracer() -> opentelemetry_sdk::trace::SdkTracer {
    DIRECT_TRACER.with(|t| t.borrow().clone().expect("a tracer for this test"))
}

#[tokio::test]
async fn arguments_reach_a_tracer_given_to_scoped_without_any_subscriber() {
    let traces = Traces::without_subscriber();
    DIRECT_TRACER.with(|t| *t.borrow_mut() = Some(traces.provider.tracer("direct")));
    assert_eq!(traced_without_subscriber(7, "eu").await, 9);
    let spans = traces.spans();
    let root = one(&spans, "traced_without_subscriber");
    assert_eq!(int(root, "arg.order_id"), 7);
    assert_eq!(string(root, "arg.region"), "eu");
}

#[tokio::test]
async fn has_parent_signal_says_an_outside_cancellation_reaches_the_scope() {
    let traces = Traces::layer_at(Level::INFO);
    let token = go_go_scope::CancellationToken::new();
    let linked = Scope::builder()
        .name("linked")
        .tracer(ScopeTracer::global())
        .cancel_on(token)
        .build()
        .unwrap();
    linked.close().await.unwrap();
    let spans = traces.spans();
    let linked = one(&spans, "linked");
    assert!(boolean(linked, "scope.has_parent_signal"));
    assert!(!boolean(linked, "scope.has_parent_scope"));
}

#[tokio::test]
async fn with_a_layer_the_layer_carries_the_spans_once() {
    let traces = Traces::layer_at(Level::INFO);
    // An explicit tracer of another provider: the layer wins, nothing is exported twice.
    let (other_exporter, other_provider) = in_memory();
    let scope = Scope::builder()
        .name("once")
        .tracer(other_provider.tracer("other"))
        .build()
        .unwrap();
    scope.spawn(async {}).await;
    scope.close().await.unwrap();
    assert_eq!(named(&traces.spans(), "once").len(), 1);
    other_provider.force_flush().unwrap();
    assert!(other_exporter.get_finished_spans().unwrap().is_empty());
}

#[tokio::test]
async fn without_any_subscriber_or_tracer_nothing_is_recorded() {
    let traces = Traces::without_subscriber();
    let scope = Scope::builder().name("silent").build().unwrap();
    assert!(
        !scope
            .spawn(async { record_task_attr("k", 1) })
            .await
            .1
            .unwrap()
    );
    scope.close().await.unwrap();
    assert!(traces.spans().is_empty());
}

/// What the fake endpoint received: request line, content type, body.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP endpoint on a plain thread: answers every request with 200 and keeps
/// what it received.
fn fake_otlp_endpoint() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut content_type) = (0, String::new());
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "content-type" => content_type = value.trim().to_owned(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    seen.lock().unwrap().push((
                        request_line.trim_end().to_owned(),
                        content_type,
                        body,
                    ));
                    writer
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (url, requests)
}

#[test]
fn the_pipeline_installs_globally_and_shutdown_flushes_to_the_endpoint() {
    use go_go_scope::otel::{OtelError, OtelPipeline};
    let (url, requests) = fake_otlp_endpoint();
    let otel = OtelPipeline::new("pipeline-test")
        .endpoint(format!("{url}/v1/traces"))
        .install()
        .unwrap();
    // A multi-thread runtime: the global subscriber sees the tasks on every worker.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        Scope::run(
            Scope::builder()
                .name("installed-scope")
                .tracer(ScopeTracer::global()),
            |s| async move { s.spawn(async { tokio::task::yield_now().await }).await },
        )
        .await
        .unwrap();
    });
    drop(runtime);
    assert!(requests.lock().unwrap().is_empty(), "batched until flushed");
    otel.shutdown().unwrap();

    let requests = requests.lock().unwrap();
    let (line, content_type, body) = requests.first().expect("one export");
    assert_eq!(line, "POST /v1/traces HTTP/1.1");
    assert_eq!(content_type, "application/x-protobuf");
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"pipeline-test"), "service.name");
    assert!(contains(b"installed-scope"));
    assert!(contains(b"scope.task"));
    assert!(contains(b"task.duration_ms"));
    // The instrumentation scope: the crate's name and version.
    assert!(contains(b"go-go-scope"));
    assert!(contains(env!("CARGO_PKG_VERSION").as_bytes()));

    let again = OtelPipeline::new("second")
        .endpoint(format!("{url}/v1/traces"))
        .install();
    assert!(matches!(again, Err(OtelError::SubscriberAlreadySet)));
}

#[test]
fn tasks_spawned_from_worker_threads_report_to_the_scope_s_subscriber() {
    // The subscriber is this thread's default only; the runtime's workers have another one.
    let traces = Traces::layer_at(Level::INFO);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scope = runtime.block_on(async {
        Scope::builder()
            .name("cross-thread")
            .tracer(ScopeTracer::global())
            .build()
            .unwrap()
    });
    let handle = scope.clone();
    let outer = scope.spawn(async move {
        // On a worker: spawn a sibling and a child scope from here.
        let sibling = Scope::current().spawn(async { 2 });
        let child = handle.child().name("cross-thread-child").build().unwrap();
        child.spawn(async {}).await;
        child.close().await.unwrap();
        sibling.await.1
    });
    assert_eq!(runtime.block_on(outer).1, Some(Some(2)));
    runtime.block_on(scope.close()).unwrap();
    drop(runtime);

    let spans = traces.spans();
    for s in &spans {
        eprintln!(
            "DBG {} {:?} parent {:?}",
            s.name,
            s.span_context.span_id(),
            s.parent_span_id
        );
    }
    let root = one(&spans, "cross-thread");
    let under_root = spans
        .iter()
        .filter(|s| s.name == "scope.task" && s.parent_span_id == root.span_context.span_id())
        .count();
    assert_eq!(under_root, 2, "{:?}", names(&spans));
    let child = one(&spans, "cross-thread-child");
    assert_eq!(child.parent_span_id, root.span_context.span_id());
    assert!(
        spans
            .iter()
            .any(|s| s.name == "scope.task" && s.parent_span_id == child.span_context.span_id())
    );
}

// The guide's span tables and the `trace` module docs name every attribute of the schema.
#[test]
fn the_docs_name_every_span_attribute() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for page in ["docs/observability.md", "scope/src/observe/trace/mod.rs"] {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        let keys = go_go_scope::trace::SCOPE_SPAN_ATTRIBUTES
            .iter()
            .chain(go_go_scope::trace::TASK_SPAN_ATTRIBUTES);
        for key in keys {
            // `key`, or `key = value` in a code span.
            assert!(
                text.contains(&format!("`{key}`")) || text.contains(&format!("`{key} ")),
                "{page} does not document the span attribute `{key}`"
            );
        }
    }
}

#[tokio::test]
async fn a_local_scope_s_tasks_get_spans_under_the_scope_s_span() {
    let traces = Traces::layer_at(Level::INFO);
    let greeting = String::from("hello");
    let (ok, bad) = Scope::local(
        Scope::builder()
            .name("local-handler")
            .tracer(ScopeTracer::global()),
        |s| {
            Box::pin(async {
                let ok = s.spawn(async { greeting.len() });
                let bad = s.try_spawn(async {
                    Err::<(), _>(std::io::Error::other(format!("{greeting} failed")))
                });
                (ok.await, bad.await)
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(ok.1, Some(5));
    assert!(bad.0.is_some());

    let spans = traces.spans();
    let root = one(&spans, "local-handler");
    assert_eq!(int(root, "scope.errors"), 1);
    let tasks = named(&spans, "scope.task");
    assert_eq!(tasks.len(), 2);
    for task in &tasks {
        assert_eq!(task.parent_span_id, root.span_context.span_id());
    }
    let failed: Vec<_> = tasks.iter().filter(|t| is_error(t)).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(int(failed[0], "task.index"), 2);
}

const REMOTE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_SPAN: &str = "00f067aa0ba902b7";

fn remote_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let parent = format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01");
    headers.insert("traceparent", parent.parse().unwrap());
    headers
}

fn assert_remote_child(span: &SpanData) {
    assert_eq!(span.span_context.trace_id().to_string(), REMOTE_TRACE);
    assert_eq!(span.parent_span_id.to_string(), REMOTE_SPAN);
}

#[tokio::test]
async fn a_remote_parent_continues_the_callers_trace_through_a_layer() {
    let traces = Traces::layer_at(Level::INFO);
    let scope = Scope::builder()
        .name("handle-remote")
        .tracer(ScopeTracer::global())
        .remote_parent(&remote_headers())
        .build()
        .unwrap();
    scope.spawn(async {}).await;
    scope.close().await.unwrap();
    let spans = traces.spans();
    let root = one(&spans, "handle-remote");
    assert_remote_child(root);
    let task = one(&spans, "scope.task");
    assert_eq!(task.parent_span_id, root.span_context.span_id());
    assert_eq!(task.span_context.trace_id(), root.span_context.trace_id());
}

#[tokio::test]
async fn a_remote_parent_continues_the_callers_trace_with_a_tracer_used_directly() {
    let traces = Traces::without_subscriber();
    let carrier: std::collections::HashMap<String, String> = [(
        "traceparent".to_owned(),
        format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"),
    )]
    .into();
    let scope = Scope::builder()
        .name("handle-direct")
        .tracer(ScopeTracer::from(traces.provider.tracer("direct")))
        .remote_parent(&carrier)
        .build()
        .unwrap();
    scope.close().await.unwrap();
    assert_remote_child(one(&traces.spans(), "handle-direct"));
}

#[go_go_scope::scoped(tracer, parent_from = headers, skip(headers))]
async fn remote_handler(headers: http::HeaderMap) -> usize {
    headers.len()
}

#[tokio::test]
async fn scoped_takes_its_parent_from_headers() {
    let traces = Traces::layer_at(Level::INFO);
    assert_eq!(remote_handler(remote_headers()).await, 1);
    assert_remote_child(one(&traces.spans(), "remote_handler"));
}

#[tokio::test]
async fn a_task_writes_its_own_span_into_outgoing_headers() {
    let traces = Traces::without_subscriber();
    let scope = Scope::builder()
        .name("client")
        .tracer(ScopeTracer::from(traces.provider.tracer("direct")))
        .build()
        .unwrap();
    let call = go_go_scope::go!(name = "call-server", scope = scope, async {
        let mut headers = http::HeaderMap::new();
        assert!(go_go_scope::trace::inject_current(&mut headers));
        headers
    });
    let headers = call.await.1.unwrap();
    scope.close().await.unwrap();
    let spans = traces.spans();
    let task = one(&spans, "call-server");
    let expected = format!(
        "00-{}-{}-01",
        task.span_context.trace_id(),
        task.span_context.span_id()
    );
    assert_eq!(headers["traceparent"], expected.as_str());
    // And the other side of the call continues it.
    let server = Scope::builder()
        .name("server")
        .tracer(ScopeTracer::from(traces.provider.tracer("direct")))
        .remote_parent(&headers)
        .build()
        .unwrap();
    server.close().await.unwrap();
    let spans = traces.spans();
    let server = one(&spans, "server");
    assert_eq!(server.parent_span_id, task.span_context.span_id());
    assert_eq!(server.span_context.trace_id(), task.span_context.trace_id());
}

#[tokio::test]
async fn scope_layer_takes_the_remote_parent_from_the_request_when_asked() {
    use go_go_scope::tower::ScopeLayer;
    use tower::{Layer as _, ServiceExt as _};
    let traces = Traces::layer_at(Level::INFO);
    let handler = tower::service_fn(|_request: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    for (name, follow) in [("GET followed", true), ("GET ignored", false)] {
        let layer =
            ScopeLayer::with(move |_| Scope::builder().name(name).tracer(ScopeTracer::global()))
                .remote_parent_from_headers(follow);
        let mut request = http::Request::new(String::new());
        *request.headers_mut() = remote_headers();
        layer.layer(handler).oneshot(request).await.unwrap();
    }
    let spans = traces.spans();
    assert_remote_child(one(&spans, "GET followed"));
    let ignored = one(&spans, "GET ignored");
    assert_ne!(ignored.span_context.trace_id().to_string(), REMOTE_TRACE);
}

/// An error with causes: `exception.stacktrace` lists them, one per line, through the layer and
/// through a tracer used directly.
#[derive(Debug)]
struct Declined(std::io::Error);

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment declined")
    }
}

impl std::error::Error for Declined {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

async fn declined_payment(tracer: ScopeTracer) {
    let scope = Scope::builder().tracer(tracer).build().unwrap();
    let task =
        scope.try_spawn(async { Err::<(), _>(Declined(std::io::Error::other("card expired"))) });
    assert!(task.await.0.is_some());
    scope.close().await.unwrap();
}

fn stacktrace(spans: &[SpanData]) -> Option<String> {
    let task = one(spans, "scope.task");
    let event = task.events.iter().find(|e| e.name == "exception")?;
    event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.stacktrace")
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn an_exception_event_carries_the_error_s_causes() {
    let traces = Traces::layer_at(Level::INFO);
    declined_payment(ScopeTracer::global()).await;
    assert_eq!(stacktrace(&traces.spans()).as_deref(), Some("card expired"));

    let direct = Traces::without_subscriber();
    declined_payment(ScopeTracer::from(direct.provider.tracer("direct"))).await;
    assert_eq!(stacktrace(&direct.spans()).as_deref(), Some("card expired"));
}

/// A plain failure has no causes, and its inner error is not repeated as one.
#[tokio::test]
async fn an_error_without_causes_has_no_stacktrace() {
    let traces = Traces::layer_at(Level::INFO);
    let scope = Scope::builder()
        .tracer(ScopeTracer::global())
        .build()
        .unwrap();
    let task = scope.try_spawn(async { Err::<(), _>(std::io::Error::other("card declined")) });
    assert!(task.await.0.is_some());
    scope.close().await.unwrap();
    assert_eq!(stacktrace(&traces.spans()), None);
}
