//! The testing utilities (feature `testing`), used the way a user would, following the TEST
//! cases in their Rust form.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use go_go_scope::testing::{Spy, TestScope, advance, assert_closed, close_and_assert, flush_tasks};
use go_go_scope::{Error, Scope};
use tokio::time::{Instant, sleep};

// TEST-01, TEST-02, TEST-03, TEST-07, TEST-08, TEST-27
#[tokio::test]
async fn a_test_scope_records_its_tasks() {
    let s = TestScope::new();
    assert_eq!(s.name(), "test-scope");
    assert!(s.task_calls().is_empty());
    let (err, v) = s.spawn(async { "test" }).await;
    assert!(err.is_none() && v == Some("test"));
    let (err, v) = s.try_spawn(async { Err::<(), _>("test error") }).await;
    assert_eq!(err.unwrap().to_string(), "test error");
    assert!(v.is_none());
    let calls = s.task_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].succeeded());
    assert_eq!(calls[1].outcome, Some(Err("test error".to_string())));
    s.clear_task_calls();
    assert!(s.task_calls().is_empty());
    close_and_assert(&s).await;
}

// TEST-27 (options recorded)
#[tokio::test(start_paused = true)]
async fn a_test_scope_records_task_options() {
    let s = TestScope::new();
    s.task(|_| async { Ok::<_, Error>(()) })
        .name("with-options")
        .timeout(Duration::from_secs(2))
        .retry(3)
        .spawn()
        .await;
    let call = &s.task_calls()[0];
    assert_eq!(call.name, "with-options");
    assert_eq!(call.timeout, Some(Duration::from_secs(2)));
    assert_eq!(call.max_retries, Some(3));
    close_and_assert(&s).await;
}

// TEST-04, TEST-05
#[tokio::test]
async fn a_test_scope_can_be_cancelled_or_start_cancelled() {
    let s = TestScope::new();
    s.cancel("test reason");
    assert!(s.is_cancelled());
    assert_eq!(
        s.cancellation_error().unwrap().to_string(),
        "cancelled: test reason"
    );
    s.close().await.unwrap();

    let s = TestScope::cancelled("initial abort");
    assert_eq!(
        s.cancellation_error().unwrap().to_string(),
        "cancelled: initial abort"
    );
    assert!(s.spawn(async {}).await.0.unwrap().is_cancelled());
    s.close().await.unwrap();
}

// TEST-06
#[tokio::test]
async fn a_test_scope_can_start_with_services() {
    struct Db(&'static str);
    let s = TestScope::new().with_service(Db("fake"));
    assert_eq!(s.use_::<Db>().unwrap().0, "fake");
    close_and_assert(&s).await;
}

// TEST-28
#[tokio::test(start_paused = true)]
async fn a_task_waiting_for_cancellation_fails_when_the_test_cancels() {
    let s = TestScope::new();
    let task = s.spawn(std::future::pending::<()>());
    sleep(Duration::from_millis(100)).await;
    s.cancel("user cancelled");
    assert_eq!(
        task.await.0.unwrap().to_string(),
        "cancelled: user cancelled"
    );
    close_and_assert(&s).await;
}

// TEST-09, TEST-10, TEST-12: the paused clock is the controlled timer.
#[tokio::test(start_paused = true)]
async fn the_paused_clock_is_the_controlled_timer() {
    let start = Instant::now();
    let fired = Arc::new(AtomicBool::new(false));
    let s = Scope::new().unwrap();
    let f = fired.clone();
    s.spawn(async move {
        sleep(Duration::from_millis(100)).await;
        f.store(true, Ordering::SeqCst);
    });
    advance(Duration::from_millis(50)).await;
    assert!(!fired.load(Ordering::SeqCst));
    advance(Duration::from_millis(50)).await;
    assert!(fired.load(Ordering::SeqCst));
    advance(Duration::from_millis(400)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    advance(Duration::from_millis(500)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(1000));
    close_and_assert(&s).await;
}

// TEST-11: a cancelled timer never fires.
#[tokio::test(start_paused = true)]
async fn a_cancelled_timer_task_never_fires() {
    let fired = Arc::new(AtomicBool::new(false));
    let s = Scope::new().unwrap();
    let f = fired.clone();
    let timer = s.spawn(async move {
        sleep(Duration::from_millis(100)).await;
        f.store(true, Ordering::SeqCst);
    });
    timer.cancel();
    advance(Duration::from_millis(100)).await;
    assert!(!fired.load(Ordering::SeqCst));
    close_and_assert(&s).await;
}

// TEST-13, TEST-14, TEST-29: timers fire in due order, ties in scheduling order.
#[tokio::test(start_paused = true)]
async fn timers_fire_in_due_order() {
    let order: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let s = Scope::new().unwrap();
    for (ms, label) in [(300, "c"), (100, "a"), (200, "b"), (100, "a2")] {
        let o = order.clone();
        s.spawn(async move {
            sleep(Duration::from_millis(ms)).await;
            o.lock().unwrap().push(label);
        });
    }
    advance(Duration::from_millis(300)).await;
    assert_eq!(*order.lock().unwrap(), ["a", "a2", "b", "c"]);
    close_and_assert(&s).await;
}

// TEST-16
#[tokio::test]
async fn flush_lets_ready_tasks_run() {
    let s = Scope::new().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    s.spawn(async move {
        tokio::task::yield_now().await;
        f.store(true, Ordering::SeqCst);
    });
    flush_tasks().await;
    assert!(flag.load(Ordering::SeqCst));
    close_and_assert(&s).await;
}

// TEST-17..TEST-23, TEST-31, TEST-32
#[test]
fn spies_record_and_answer_calls() {
    let spy: Spy<(i32, &str), &str> = Spy::new();
    assert!(!spy.was_called());
    spy.call((1, "a"));
    spy.call((2, "b"));
    let calls = spy.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].args, (1, "a"));
    assert_eq!(calls[1].args, (2, "b"));
    assert!(spy.was_called_with(&(1, "a")));
    assert!(!spy.was_called_with(&(2, "other")));
    spy.mock_return_value("mocked");
    assert_eq!(spy.call((3, "c")), "mocked");
    spy.mock_implementation(|(n, _)| if *n > 0 { "positive" } else { "other" });
    assert_eq!(
        spy.call((5, "d")),
        "positive",
        "the implementation wins over the value"
    );
    assert_eq!(spy.calls().last().unwrap().result, "positive");
    spy.mock_reset();
    assert_eq!(spy.call_count(), 0);
    assert!(!spy.was_called());
    assert_eq!(
        spy.call((1, "e")),
        "",
        "after a reset it answers the default"
    );

    let double: Spy<i32, i32> = Spy::new();
    double.mock_implementation(|x| x * 2);
    assert_eq!(double.call(5), 10);
    assert_eq!(double.call(3), 6);
}

// TEST-24, TEST-25
#[tokio::test]
async fn close_and_assert_closes_and_checks() {
    let s = Scope::new().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    s.defer(move || async move { r.store(true, Ordering::SeqCst) });
    let _pending = s.spawn(std::future::pending::<()>());
    close_and_assert(&s).await;
    assert!(ran.load(Ordering::SeqCst));
    assert!(s.is_closed() && s.is_cancelled());
}

// TEST-26: the failing paths.
#[tokio::test]
#[should_panic(expected = "is not closed")]
async fn assert_closed_fails_on_an_open_scope() {
    let s = Scope::new().unwrap();
    assert_closed(&s);
}

#[tokio::test]
#[should_panic(expected = "closing scope `failing` failed")]
async fn close_and_assert_fails_on_a_failing_disposer() {
    let s = Scope::builder().name("failing").build().unwrap();
    s.defer(|| async { Err::<(), _>("flush failed") });
    close_and_assert(&s).await;
}
