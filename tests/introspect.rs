//! The live tree: `Scope::tree()`, `introspect::snapshot()`, their renderings, the
//! `goscope_tasks_by_state` gauge and the testing assertions that print the tree.

use std::time::Duration;

use go_go_scope::introspect::{self, TaskState};
use go_go_scope::testing::{assert_no_tasks_left, assert_no_wait_longer_than, flush_tasks};
use go_go_scope::{CircuitBreaker, Retry, Scope, go};

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast::<&str>()
            .map(|s| (*s).to_owned())
            .unwrap_or_default(),
    }
}

/// Two tasks, each waiting to receive on the channel the other one should send on.
#[tokio::test(start_paused = true)]
async fn a_deadlock_on_two_channels_shows_what_each_task_waits_on() {
    let scope = Scope::builder().name("pair").build().unwrap();
    let to_a = scope.channel::<u32>(1);
    let to_b = scope.channel::<u32>(1);
    let (a_in, b_out) = (to_a.clone(), to_b.clone());
    let ping = scope
        .task(move |_| {
            let (a_in, b_out) = (a_in.clone(), b_out.clone());
            async move {
                let got = a_in.recv().await.unwrap_or_default();
                b_out.send(got + 1).await.map_err(|_| "closed")
            }
        })
        .name("ping");
    let line_a = line!() + 1;
    let _a = ping.spawn();
    let (b_in, a_out) = (to_b.clone(), to_a.clone());
    let line_b = line!() + 1;
    let _b = scope.spawn(async move {
        let got = b_in.recv().await.unwrap_or_default();
        let _ = a_out.send(got + 1).await;
    });
    flush_tasks().await;
    tokio::time::advance(Duration::from_secs(3)).await;

    let tree = scope.tree();
    assert_eq!(tree.scopes.len(), 1);
    let pair = &tree.scopes[0];
    assert!(pair.tracked);
    assert_eq!(pair.live_tasks, 2);
    let ping = tree.find_task("ping").unwrap();
    assert_eq!(ping.id, 1);
    assert_eq!(ping.state.waiting_on(), Some("channel receive"));
    assert_eq!(ping.state.waited(), Some(Duration::from_secs(3)));
    assert_eq!(ping.state.kind(), "channel");
    assert_eq!(ping.attempt, Some(1));
    let site = ping.spawned_at.unwrap();
    assert!(site.file.ends_with("introspect.rs"), "{site}");
    assert_eq!(site.line, line_a);
    let other = tree.find_task("task-2").unwrap();
    assert_eq!(other.state.waiting_on(), Some("channel receive"));
    assert_eq!(other.attempt, None);
    assert_eq!(other.spawned_at.unwrap().line, line_b);

    let text = tree.to_string();
    assert!(
        text.starts_with("scope pair (#"),
        "the scope heads the tree:\n{text}"
    );
    assert!(
        text.contains("  - ping (#1) waiting on channel receive for 3.00s [age 3.00s, attempt 1"),
        "{text}"
    );
    assert!(
        text.contains("  - task-2 (#2) waiting on channel receive for 3.00s"),
        "{text}"
    );

    // The testing assertion prints this tree when it fails.
    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_no_wait_longer_than(&scope, Duration::from_secs(1));
    }))
    .unwrap_err();
    let message = panic_message(failure);
    assert!(
        message.contains("has waited on channel receive for 3s"),
        "{message}"
    );
    assert!(
        message.contains("ping (#1) waiting on channel receive"),
        "{message}"
    );
    assert!(
        message.contains("task-2 (#2) waiting on channel receive"),
        "{message}"
    );
    assert_no_wait_longer_than(&scope, Duration::from_secs(3));
    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_no_tasks_left(&scope)
    }))
    .unwrap_err();
    assert!(panic_message(failure).contains("still has 2 live task(s)"));

    scope.close().await.unwrap();
    assert_no_tasks_left(&scope);
}

#[tokio::test]
async fn the_json_rendering_carries_the_same_tree() {
    let scope = Scope::builder()
        .name("json-root")
        .concurrency(1)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let child = Scope::builder()
        .name("json-child")
        .parent(&scope)
        .build()
        .unwrap();
    let _holder = scope.spawn(std::future::pending::<()>());
    let _queued = scope.spawn(async {});
    let inbox = child.channel::<u8>(0);
    let _sender = child.spawn(async move { inbox.send(1).await.is_ok() });
    flush_tasks().await;

    let json: serde_json::Value = serde_json::from_str(&scope.tree().to_json()).unwrap();
    let scopes = json["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 2);
    let (root, kid) = (&scopes[0], &scopes[1]);
    assert_eq!(root["name"], "json-root");
    assert_eq!(root["depth"], 0);
    assert_eq!(root["children"][0], kid["id"]);
    assert_eq!(root["limit"]["max"], 1);
    assert_eq!(root["limit"]["in_use"], 1);
    assert_eq!(root["limit"]["waiting"], 1);
    assert!(root["deadline_left_ms"].as_f64().unwrap() <= 60_000.0);
    assert_eq!(root["tasks"][0]["state"], "running");
    assert_eq!(root["tasks"][1]["state"], "waiting");
    assert_eq!(root["tasks"][1]["on"], "concurrency permit");
    assert!(root["tasks"][1]["waited_ms"].is_number());
    assert!(
        root["tasks"][1]["spawned_at"]["file"]
            .as_str()
            .unwrap()
            .ends_with("introspect.rs")
    );
    assert_eq!(kid["name"], "json-child");
    assert_eq!(kid["path"], "json-root/json-child");
    assert_eq!(kid["parent"], root["id"]);
    assert_eq!(kid["depth"], 1);
    assert_eq!(kid["tracked"], true, "children inherit introspection");
    // The child has its own permit for the same limit: the sender waits on the rendezvous.
    assert_eq!(kid["tasks"][0]["on"], "channel send");

    let text = scope.tree().to_string();
    assert!(text.contains("limit 1/1 (1 waiting)"), "{text}");
    assert!(text.contains("\n    scope json-child (#"), "{text}");
    assert!(
        text.contains("\n      - task-1 (#1) waiting on channel send"),
        "{text}"
    );
    scope.close().await.unwrap();
}

#[tokio::test]
async fn a_scope_that_opted_out_shows_only_its_counts() {
    let scope = Scope::builder()
        .name("plain")
        .introspect(false)
        .build()
        .unwrap();
    let _task = scope.spawn(std::future::pending::<()>());
    let tree = scope.tree();
    assert!(!tree.scopes[0].tracked);
    assert_eq!(tree.scopes[0].live_tasks, 1);
    assert!(tree.scopes[0].tasks.is_empty());
    assert!(
        tree.to_string()
            .contains("(1 tasks not listed: the scope keeps no task records)")
    );
    scope.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_retrying_task_shows_its_attempt_and_its_delay() {
    let scope = Scope::builder()
        .name("retrying")
        .circuit_breaker(
            CircuitBreaker::builder()
                .failure_threshold(10)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let _flaky = scope
        .task(|_| async { Err::<(), _>("backend down") })
        .name("flaky")
        .retry(Retry::fixed(5, Duration::from_secs(10)))
        .spawn();
    flush_tasks().await;
    tokio::time::advance(Duration::from_secs(15)).await;
    flush_tasks().await;
    let tree = scope.tree();
    let flaky = tree.find_task("flaky").unwrap();
    assert_eq!(flaky.state.waiting_on(), Some("retry delay"));
    assert_eq!(flaky.state.kind(), "retry_delay");
    assert_eq!(
        flaky.attempt,
        Some(3),
        "two attempts failed, the third is next"
    );
    assert_eq!(tree.scopes[0].breaker, Some("closed"));
    assert!(tree.to_string().contains("breaker closed"));
    scope.close().await.unwrap();
}

#[tokio::test]
async fn go_and_tracked_wait_are_seen_and_the_scope_body_too() {
    let builder = Scope::builder().name("dsl");
    let (seen, body_seen) = Scope::run(builder, |scope| async move {
        let lock = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        let held = lock.clone().lock_owned().await;
        let line = line!() + 1;
        let task = go!(async move {
            let _guard = go_go_scope::tracked_wait("db lock", lock.lock()).await;
        });
        flush_tasks().await;
        let tree = scope.tree();
        let waiting = tree.find_task("task-1").unwrap().clone();
        assert_eq!(waiting.spawned_at.unwrap().line, line);
        // The body waits for the task: that wait is on a `tracked_wait` of its own.
        let body = go_go_scope::tracked_wait("the task", async {
            flush_tasks().await;
            scope.tree().find_task("(scope body)").cloned()
        })
        .await;
        drop(held);
        task.await;
        (waiting, body)
    })
    .await
    .unwrap();
    assert_eq!(seen.state.waiting_on(), Some("db lock"));
    assert_eq!(seen.state.kind(), "tracked_wait");
    let body = body_seen.unwrap();
    assert_eq!(body.id, 0);
    assert_eq!(body.state.waiting_on(), Some("the task"));
    assert_eq!(body.spawned_at, None);
}

#[tokio::test]
async fn every_scope_is_in_the_snapshot_and_the_gauge() {
    let scope = Scope::builder().name("gauge-scope").build().unwrap();
    let later = Scope::builder()
        .name("gauge-later")
        .introspect(false)
        .build()
        .unwrap();
    assert!(scope.tree().scopes[0].tracked);
    assert!(!later.tree().scopes[0].tracked);

    let ch = scope.channel::<u8>(1);
    let rx = ch.clone();
    let _receiver = scope.spawn(async move { rx.recv().await });
    let _running = scope.spawn(std::future::pending::<()>());
    flush_tasks().await;

    let snapshot = introspect::snapshot();
    let mine = snapshot
        .scopes
        .iter()
        .find(|s| s.name == "gauge-scope")
        .unwrap();
    assert_eq!(mine.tasks.len(), 2);
    let later_node = snapshot
        .scopes
        .iter()
        .find(|s| s.name == "gauge-later")
        .unwrap();
    assert!(later_node.tasks.is_empty());
    assert!(!text_has_gauge_of("gauge-later"));
    let states: Vec<TaskState> = mine.tasks.iter().map(|t| t.state).collect();
    assert_eq!(states[1], TaskState::Running);

    let text = go_go_scope::metrics::encode();
    assert!(
        text.contains("# TYPE goscope_tasks_by_state gauge"),
        "{text}"
    );
    assert!(
        text.contains("goscope_tasks_by_state{scope=\"gauge-scope\",state=\"channel\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("goscope_tasks_by_state{scope=\"gauge-scope\",state=\"running\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("goscope_tasks_by_state{scope=\"gauge-scope\",state=\"pool\"} 0"),
        "{text}"
    );
    scope.close().await.unwrap();
    later.close().await.unwrap();
    let text = go_go_scope::metrics::encode();
    assert!(!text.contains("scope=\"gauge-scope\",state"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_task_waiting_for_a_pooled_resource_is_shown_waiting_on_the_pool() {
    let scope = Scope::builder().name("pooled").build().unwrap();
    let pool = scope
        .pool(
            go_go_scope::PoolOptions::new(|| async { Ok::<_, std::io::Error>(1_u8) })
                .max(1)
                .acquire_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let borrower = pool.clone();
    let _waiting = scope
        .task_once(async move { borrower.acquire().await.map(|_| ()) })
        .name("borrower")
        .spawn();
    flush_tasks().await;
    let tree = scope.tree();
    let borrower = tree.find_task("borrower").unwrap();
    assert_eq!(borrower.state.waiting_on(), Some("pool acquire"));
    assert_eq!(borrower.state.kind(), "pool");
    drop(held);
    scope.close().await.unwrap();
}

#[tokio::test]
async fn a_local_scope_lists_its_tasks_and_where_they_were_spawned() {
    let builder = Scope::builder().name("local-tree");
    let signal = tokio::sync::Notify::new();
    let (waiting, line) = Scope::local(builder, |s| {
        Box::pin(async {
            let line = line!() + 1;
            let task = s.spawn(go_go_scope::tracked_wait("signal", signal.notified()));
            flush_tasks().await;
            let waiting = s.tree().find_task("task-1").cloned();
            signal.notify_one();
            task.await;
            (waiting, line)
        })
    })
    .await
    .unwrap();
    let waiting = waiting.unwrap();
    assert_eq!(waiting.state.waiting_on(), Some("signal"));
    let site = waiting.spawned_at.unwrap();
    assert!(site.file.ends_with("introspect.rs"), "{site}");
    assert_eq!(site.line, line);
}

/// Whether the export has a `goscope_tasks_by_state` series for `scope`.
fn text_has_gauge_of(scope: &str) -> bool {
    go_go_scope::metrics::encode().contains(&format!("goscope_tasks_by_state{{scope=\"{scope}\""))
}
