//! The recipes of the testing guide (`docs/testing.md`), as real tests. The guide shows the
//! regions marked below; `scripts/check-docs.py` checks that it shows them unchanged.

// region: imports
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use go_go_scope::testing::{Spy, TestScope, advance, assert_closed, close_and_assert, flush_tasks};
use go_go_scope::{Error, Retry, Scope, TimeoutOrigin, go, scoped, unclosed_drops};
use tokio::time::{Instant, sleep};
// endregion: imports

// region: span-imports
use go_go_scope::ScopeTracer;
use opentelemetry::Value;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
// endregion: span-imports

// region: retry-schedule
#[tokio::test(start_paused = true)]
async fn retries_back_off_exactly_as_configured() {
    let scope = Scope::new().unwrap();
    let started = Instant::now();
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let (err, _) = scope
        .task(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("still down") }
        })
        .retry(Retry::exponential(3, Duration::from_millis(100)))
        .spawn()
        .await;
    assert_eq!(err.unwrap().to_string(), "still down");
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    // 100 + 200 + 400 ms of delays, measured on the paused clock: exact, and instant to run.
    assert_eq!(started.elapsed(), Duration::from_millis(700));
    close_and_assert(&scope).await;
}
// endregion: retry-schedule

// region: deadline
#[tokio::test(start_paused = true)]
async fn a_slow_dependency_hits_the_deadline() {
    let options = Scope::builder()
        .name("report")
        .timeout(Duration::from_secs(2));
    let outcome = Scope::run(options, |s| async move {
        s.spawn(sleep(Duration::from_secs(3600))).result().await
    })
    .await;
    // The deadline reaches the body either directly (`run` returns it) or through the task it
    // was awaiting (the body returns it): flatten the two layers and check one error.
    match outcome.flatten() {
        Err(Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Scope(name),
        }) => {
            assert_eq!(after, Duration::from_secs(2));
            assert_eq!(name, "report");
        }
        other => panic!("expected the scope's timeout, got {other:?}"),
    }
}
// endregion: deadline

// region: advance
#[tokio::test(start_paused = true)]
async fn stepping_the_clock_through_a_poller() {
    let scope = Scope::new().unwrap();
    let polls = Arc::new(AtomicU32::new(0));
    let counter = polls.clone();
    let poller = scope
        .poll(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Error>(()) }
            },
            |()| async {},
            Duration::from_secs(10),
        )
        .unwrap();
    flush_tasks().await; // lets the first poll (immediate) run
    assert_eq!(polls.load(Ordering::SeqCst), 1);
    advance(Duration::from_millis(9_999)).await;
    assert_eq!(polls.load(Ordering::SeqCst), 1, "not yet");
    advance(Duration::from_millis(1)).await;
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    drop(poller);
    close_and_assert(&scope).await;
}
// endregion: advance

// region: test-scope
/// The code under test: fetches a price with a timeout and retries.
async fn price_of(scope: &Scope, sku: &'static str) -> Result<u32, Error> {
    scope
        .task(move |attempt| async move {
            if attempt == 1 {
                Err(format!("{sku}: cache miss"))
            } else {
                Ok(1999)
            }
        })
        .name(format!("price-{sku}"))
        .timeout(Duration::from_millis(250))
        .retry(2)
        .spawn()
        .result()
        .await
}

#[tokio::test]
async fn the_price_task_is_configured_as_intended() {
    let scope = TestScope::new();
    assert_eq!(price_of(&scope, "book").await.unwrap(), 1999);

    let calls = scope.task_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "price-book");
    assert_eq!(calls[0].timeout, Some(Duration::from_millis(250)));
    assert_eq!(calls[0].max_retries, Some(2));
    assert!(calls[0].succeeded());
    close_and_assert(&scope).await;
}

#[tokio::test]
async fn a_cancelled_request_does_not_fetch_prices() {
    let scope = TestScope::cancelled("client went away");
    let err = price_of(&scope, "book").await.unwrap_err();
    assert_eq!(err.to_string(), "cancelled: client went away");
    close_and_assert(&scope).await;
}
// endregion: test-scope

// region: assert-closed
#[tokio::test]
async fn nothing_outlives_the_handler() {
    let drops_before = unclosed_drops();
    let scope = Scope::builder().name("handler").build().unwrap();
    let child = scope.child().name("audit").build().unwrap();
    child.spawn(std::future::pending::<()>()); // would run forever
    scope.defer(|| async {});

    scope.close().await.unwrap();
    assert_closed(&scope); // closed, no live task, no child left, every disposer ran
    assert_closed(&child);
    assert_eq!(
        unclosed_drops(),
        drops_before,
        "every scope was closed, none dropped"
    );
}
// endregion: assert-closed

// region: spy
#[tokio::test(start_paused = true)]
async fn every_retry_is_reported() {
    let on_retry: Spy<(String, u32), ()> = Spy::new();
    let spy = on_retry.clone();
    let scope = Scope::new().unwrap();
    let policy = Retry::fixed(2, Duration::from_millis(5))
        .on_retry(move |e, n| spy.call((e.to_string(), n)));
    scope
        .task(|attempt| async move { if attempt < 3 { Err("busy") } else { Ok(()) } })
        .retry(policy)
        .spawn()
        .await;
    assert_eq!(on_retry.call_count(), 2);
    assert!(on_retry.was_called_with(&("busy".to_string(), 2)));
    close_and_assert(&scope).await;
}
// endregion: spy

// region: dsl
#[scoped(timeout = "1s")]
async fn slow_greeting() -> Result<String, Error> {
    go!(async {
        sleep(Duration::from_secs(5)).await;
        "hello".to_string()
    })
    .result()
    .await
}

#[scoped(name = "test")]
#[tokio::test(start_paused = true)]
async fn a_scoped_fn_times_out_on_the_paused_clock() -> Result<(), Error> {
    let err = slow_greeting().await.unwrap_err();
    assert!(err.is_timeout());
    // The test's own scope is the parent of `slow_greeting`'s: it is still open and usable.
    assert_eq!(Scope::current().name(), "test");
    Ok(())
}
// endregion: dsl

// region: spans
/// A tracer whose finished spans stay in memory for the test to read.
fn recording_tracer() -> (ScopeTracer, SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (
        ScopeTracer::new(provider.tracer("test")),
        provider,
        exporter,
    )
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    let kv = span.attributes.iter().find(|kv| kv.key.as_str() == key)?;
    Some(kv.value.clone())
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_lookup_is_an_error_span() {
    let (tracer, provider, exporter) = recording_tracer();
    let scope = Scope::builder()
        .name("lookup")
        .tracer(tracer)
        .build()
        .unwrap();
    let (err, _) = scope
        .task_once(async {
            sleep(Duration::from_secs(10)).await;
            Ok::<_, Error>(())
        })
        .name("slow-query")
        .timeout(Duration::from_millis(50))
        .spawn()
        .await;
    assert!(err.unwrap().is_timeout());
    close_and_assert(&scope).await;

    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let query = spans.iter().find(|s| s.name == "slow-query").unwrap();
    let lookup = spans.iter().find(|s| s.name == "lookup").unwrap();
    assert_eq!(query.parent_span_id, lookup.span_context.span_id());
    assert!(matches!(query.status, Status::Error { .. }));
    assert_eq!(
        attribute(query, "task.error_reason"),
        Some("timeout".into())
    );
    assert_eq!(attribute(query, "task.has_timeout"), Some(true.into()));
}
// endregion: spans

// region: no-tasks-left
#[tokio::test]
async fn a_leaked_task_is_named_with_what_it_waits_on() {
    let scope = Scope::builder().name("handler").build().unwrap();
    let replies = scope.channel::<u32>(1);
    let rx = replies.clone();
    let reply = scope
        .task_once(async move { Ok::<_, Error>(rx.recv().await) })
        .name("await-reply")
        .spawn();
    flush_tasks().await;

    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        go_go_scope::testing::assert_no_tasks_left(&scope)
    }));
    let message = *failure.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains("await-reply (#1) waiting on channel receive"),
        "{message}"
    );

    replies.send(7).await.unwrap();
    assert_eq!(reply.await.1, Some(Some(7)));
    go_go_scope::testing::assert_no_tasks_left(&scope);
    close_and_assert(&scope).await;
}
// endregion: no-tasks-left
