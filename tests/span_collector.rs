//! The in-memory span collector (feature `testing`): users assert on the spans their code
//! produced.
//!
//! In a test binary of its own: `tracing` decides per call site, once, whether any subscriber
//! wants it, and a call site first reached on another test's thread (without a subscriber) while
//! this one installs its collector can be cached as unwanted.

use go_go_scope::{Error, Scope};

// The in-memory span collector: users assert on the spans their code produced.
#[go_go_scope::scoped(attrs("tenant" = "acme"))]
async fn checkout(order_id: u64, note: &str) -> Result<u64, Error> {
    let charge = go_go_scope::go!(name = "charge", async move {
        Err::<u64, _>(std::io::Error::other(format!(
            "card declined for {order_id}"
        )))
    });
    let (err, _) = charge.await;
    assert!(err.is_some());
    let _ = note;
    Ok(order_id)
}

#[tokio::test]
async fn the_span_collector_sees_names_parents_fields_and_attributes() {
    let spans = go_go_scope::testing::SpanCollector::new();
    let _guard = spans.install();
    let outer = Scope::builder().name("outer").build().unwrap();
    let inner = outer.child().name("inner").build().unwrap();
    inner.spawn(async {}).await;
    outer.close().await.unwrap();
    assert_eq!(checkout(7, "gift \"wrap\"").await.unwrap(), 7);

    let outer_span = spans.find("outer").unwrap();
    let inner_span = spans.find("inner").unwrap();
    assert_eq!(inner_span.parent_id, Some(outer_span.id));
    assert_eq!(outer_span.kind, "scope");
    let inner_tasks = spans.children_of(&inner_span);
    assert_eq!(inner_tasks.len(), 1, "{:#?}", spans.spans());
    assert_eq!(inner_tasks[0].kind, "scope.task");
    assert_eq!(inner_tasks[0].field("task.index"), Some("1"));

    let checkout_span = spans.find("checkout").unwrap();
    assert_eq!(checkout_span.field("tenant"), Some("acme"));
    assert_eq!(checkout_span.field("arg.order_id"), Some("7"));
    assert_eq!(checkout_span.field("arg.note"), Some("gift \"wrap\""));
    let charge = spans.find("charge").unwrap();
    assert_eq!(charge.parent_id, Some(checkout_span.id));
    assert!(charge.is_error());
    assert_eq!(
        charge.field("otel.status_description"),
        Some("card declined for 7")
    );
    assert!(!checkout_span.is_error());
    spans.clear();
    assert!(spans.spans().is_empty());
}

/// Records each span's name and its parent's name, for spans of any target.
#[derive(Clone, Default)]
struct Parents(std::sync::Arc<std::sync::Mutex<Vec<NameAndParent>>>);

type NameAndParent = (String, Option<String>);

impl<S> tracing_subscriber::Layer<S> for Parents
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent().map(|p| p.name().to_owned()));
        let name = attrs.metadata().name().to_owned();
        self.0.lock().unwrap().push((name, parent));
    }
}

#[tokio::test]
async fn a_request_scope_of_the_tower_layer_is_a_child_of_the_request_span() {
    use tower::ServiceExt;
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    let parents = Parents::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(parents.clone()));
    let app = axum::Router::new()
        .route(
            "/traced",
            axum::routing::get(|| async {
                let task = go_go_scope::go!(name = "lookup", async { "found" });
                task.await.1.unwrap()
            }),
        )
        .layer(go_go_scope::tower::ScopeLayer::with(|_| {
            Scope::builder().name("GET /traced")
        }));
    let request = http::Request::get("/traced")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app
        .oneshot(request)
        .instrument(tracing::info_span!("http.request"))
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);

    // Span names as `tracing` knows them: a scope's span is `scope` (its display name is
    // recorded later, in `otel.name`), a task's is `scope.task`.
    let seen = parents.0.lock().unwrap().clone();
    let scopes: Vec<_> = seen.iter().filter(|(name, _)| name == "scope").collect();
    assert_eq!(scopes.len(), 1, "{seen:?}");
    assert_eq!(scopes[0].1.as_deref(), Some("http.request"), "{seen:?}");
}
