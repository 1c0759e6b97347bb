//! Poll, debounce and throttle (POLL, DEB, THR cases), on tokio's paused clock.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use go_go_scope::{
    DebounceOptions, Debounced, Error, PollOptions, Poller, Scope, ThrottleOptions, Throttled,
};
use tokio::time::sleep;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A poller counting its calls (values 1, 2, ...) into `seen`.
fn counting_poller(
    s: &Scope,
    options: impl Into<PollOptions>,
) -> (Poller, Arc<Mutex<Vec<u32>>>, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, sink) = (calls.clone(), seen.clone());
    let poller = s
        .poll(
            move || {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                async move { Ok::<_, Error>(n) }
            },
            move |n| {
                sink.lock().unwrap().push(n);
                async {}
            },
            options,
        )
        .unwrap();
    (poller, seen, calls)
}

// ---------------------------------------------------------------- poll

// POLL-01, POLL-05, POLL-08
#[tokio::test(start_paused = true)]
async fn polls_at_the_interval_starting_at_once() {
    let s = Scope::new().unwrap();
    let (poller, seen, _) = counting_poller(&s, ms(50));
    tokio::task::yield_now().await;
    let status = poller.status();
    assert!(status.running);
    assert_eq!(status.poll_count, 1);
    assert_eq!(status.time_until_next, Some(ms(50)));
    sleep(ms(170)).await; // polls at 0, 50, 100, 150
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4]);
    poller.stop();
    sleep(ms(200)).await;
    assert_eq!(poller.status().poll_count, 4);
    s.close().await.unwrap();
}

// POLL-02
#[tokio::test(start_paused = true)]
async fn without_immediate_the_first_poll_waits_one_interval() {
    let s = Scope::new().unwrap();
    let (poller, seen, _) = counting_poller(&s, PollOptions::every(ms(100)).immediate(false));
    sleep(ms(50)).await;
    assert_eq!(poller.status().poll_count, 0);
    assert!(seen.lock().unwrap().is_empty());
    sleep(ms(60)).await;
    assert_eq!(poller.status().poll_count, 1);
    s.close().await.unwrap();
}

// POLL-03, POLL-13: errors are recorded, never passed to on_value, and polling goes on.
#[tokio::test(start_paused = true)]
async fn failing_polls_are_recorded_and_polling_continues() {
    let s = Scope::new().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let values = Arc::new(Mutex::new(Vec::new()));
    let (c, sink) = (calls.clone(), values.clone());
    let poller = s
        .poll(
            move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err(std::io::Error::other("fail"))
                    } else {
                        Ok("success")
                    }
                }
            },
            move |v| {
                sink.lock().unwrap().push(v);
                async {}
            },
            ms(50),
        )
        .unwrap();
    sleep(ms(120)).await;
    poller.stop();
    let status = poller.status();
    assert_eq!(status.poll_count, 3);
    assert_eq!(status.last_error.unwrap().to_string(), "fail");
    assert_eq!(*values.lock().unwrap(), ["success", "success"]);
    s.close().await.unwrap();
}

// POLL-04
#[tokio::test(start_paused = true)]
async fn poll_on_a_cancelled_scope_fails_at_once() {
    let s = Scope::new().unwrap();
    s.cancel("stopped");
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let err = s
        .poll(
            || async { Ok::<_, Error>(1) },
            move |_| {
                c.fetch_add(1, Ordering::SeqCst);
                async {}
            },
            ms(10),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "cancelled: stopped");
    sleep(ms(50)).await;
    assert_eq!(called.load(Ordering::SeqCst), 0);
    s.close().await.unwrap();
    let closed = s.poll(|| async { Ok::<_, Error>(1) }, |_| async {}, ms(10));
    assert!(matches!(closed, Err(Error::Closed)));
}

// POLL-06, POLL-07 (decision A-24: auto_start is its own option), POLL-10
#[tokio::test(start_paused = true)]
async fn start_and_stop_control_polling() {
    let s = Scope::new().unwrap();
    let (poller, _, _) = counting_poller(
        &s,
        PollOptions::every(ms(100))
            .immediate(false)
            .auto_start(false),
    );
    let status = poller.status();
    assert!(!status.running);
    assert_eq!(status.poll_count, 0);
    poller.stop(); // stopping a stopped poller does nothing
    poller.start();
    poller.start(); // starting a running poller does nothing
    assert!(poller.status().running);
    sleep(ms(150)).await;
    assert_eq!(poller.status().poll_count, 1);
    poller.stop();
    let status = poller.status();
    assert!(!status.running);
    assert_eq!(status.time_until_next, None);
    poller.start(); // resumes, keeping the count
    tokio::task::yield_now().await;
    sleep(ms(101)).await;
    assert_eq!(poller.status().poll_count, 2);
    s.close().await.unwrap();
}

#[test]
fn poll_defaults() {
    let defaults = PollOptions::default();
    assert_eq!(defaults.interval(), Duration::from_secs(5));
    assert!(defaults.is_immediate() && defaults.is_auto_start());
}

// POLL-09: a fixed delay after each poll, not a fixed rate.
#[tokio::test(start_paused = true)]
async fn the_next_poll_waits_for_the_previous_one() {
    let s = Scope::new().unwrap();
    let poller = s
        .poll(
            || async {
                sleep(ms(30)).await;
                Ok::<_, Error>(())
            },
            |()| async {},
            ms(10),
        )
        .unwrap();
    sleep(ms(50)).await; // polls start at 0 and 40
    assert_eq!(poller.status().poll_count, 2);
    s.close().await.unwrap();
}

// POLL-11
#[tokio::test(start_paused = true)]
async fn closing_the_scope_stops_polling_for_good() {
    let s = Scope::new().unwrap();
    let (poller, _, calls) = counting_poller(&s, ms(10));
    sleep(ms(25)).await;
    s.close().await.unwrap();
    assert!(!poller.status().running);
    let after_close = calls.load(Ordering::SeqCst);
    poller.start();
    sleep(ms(100)).await;
    assert!(!poller.status().running);
    assert_eq!(calls.load(Ordering::SeqCst), after_close);
}

// POLL-12: a panicking callback does not stop polling.
#[tokio::test(start_paused = true)]
async fn a_panicking_callback_does_not_stop_polling() {
    let s = Scope::new().unwrap();
    let poller = s
        .poll(
            || async { Ok::<_, Error>(1) },
            |_| async { panic!("callback boom") },
            ms(10),
        )
        .unwrap();
    sleep(ms(35)).await; // 0, 10, 20, 30
    let status = poller.status();
    assert_eq!(status.poll_count, 4);
    assert!(status.last_error.unwrap().is_panic());
    s.close().await.unwrap();
}

// dropping the last handle stops polling.
#[tokio::test(start_paused = true)]
async fn dropping_the_poller_stops_it() {
    let s = Scope::new().unwrap();
    let (poller, _, calls) = counting_poller(&s, ms(10));
    let clone = poller.clone();
    drop(poller);
    sleep(ms(25)).await;
    assert!(clone.status().running, "a clone keeps it running");
    drop(clone);
    let before = calls.load(Ordering::SeqCst);
    sleep(ms(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), before);
    s.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_zero_interval_is_rejected() {
    let s = Scope::builder().metrics(true).build().unwrap();
    let err = s
        .poll(
            || async { Ok::<_, Error>(()) },
            |()| async {},
            Duration::ZERO,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidOption {
            option: "interval",
            ..
        }
    ));
    // Refused before anything was registered with the scope.
    assert_eq!(s.metrics().unwrap().resources_registered, 0);
    s.close().await.unwrap();
}

// The poll function runs with its scope as the ambient scope.
#[tokio::test(start_paused = true)]
async fn the_poll_function_sees_its_scope() {
    let s = Scope::builder().name("poller-owner").build().unwrap();
    let names = Arc::new(Mutex::new(Vec::new()));
    let sink = names.clone();
    let _poller = s
        .poll(
            || async { Ok::<_, Error>(Scope::current().name().to_owned()) },
            move |name| {
                sink.lock().unwrap().push(name);
                async {}
            },
            ms(10),
        )
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(*names.lock().unwrap(), ["poller-owner"]);
    s.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_standalone_poller_runs_until_dropped() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let poller = go_go_scope::poll(
        move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Error>(()) }
        },
        |()| async {},
        ms(10),
    )
    .unwrap();
    sleep(ms(25)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    drop(poller);
    sleep(ms(50)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------- debounce

fn doubling_debounce(
    s: &Scope,
    options: impl Into<DebounceOptions>,
) -> (Debounced<i32, i32>, Arc<Mutex<Vec<i32>>>) {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let log = runs.clone();
    let d = s
        .debounce(
            move |v: i32| {
                log.lock().unwrap().push(v);
                async move { v * 2 }
            },
            options,
        )
        .unwrap();
    (d, runs)
}

// DEB-01, DEB-05 (decision A-12): one trailing run per burst; every call of the burst gets it.
#[tokio::test(start_paused = true)]
async fn a_burst_runs_once_and_every_call_gets_the_result() {
    let s = Scope::new().unwrap();
    let (d, runs) = doubling_debounce(&s, ms(50));
    let calls = [d.call(1), d.call(2), d.call(3)];
    sleep(ms(100)).await;
    for call in calls {
        assert_eq!(call.await.unwrap(), 6);
    }
    assert_eq!(d.call(4).await.unwrap(), 8);
    assert_eq!(*runs.lock().unwrap(), [3, 4]);
    s.close().await.unwrap();
}

// DEB-02
#[tokio::test(start_paused = true)]
async fn leading_only_runs_the_first_call_at_once() {
    let s = Scope::new().unwrap();
    let (d, runs) = doubling_debounce(
        &s,
        DebounceOptions::new(ms(50)).leading(true).trailing(false),
    );
    let start = tokio::time::Instant::now();
    assert_eq!(d.call(5).await.unwrap(), 10);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(*runs.lock().unwrap(), [5]);
    s.close().await.unwrap();
}

// DEB-03, A-12: a pending call is answered with the cancellation when the scope ends.
#[tokio::test(start_paused = true)]
async fn a_pending_call_gets_the_cancellation_when_the_scope_closes() {
    let s = Scope::new().unwrap();
    let (d, runs) = doubling_debounce(&s, ms(100));
    let pending = d.call(1);
    s.close().await.unwrap();
    sleep(ms(150)).await;
    assert!(pending.await.unwrap_err().is_cancelled());
    assert!(runs.lock().unwrap().is_empty());
}

// DEB-04: calls after the scope ended (closed, or only cancelled) fail at once.
#[tokio::test(start_paused = true)]
async fn calls_after_the_scope_ended_fail_at_once() {
    let s = Scope::new().unwrap();
    let (d, _) = doubling_debounce(&s, ms(100));
    s.cancel("done here");
    let err = d.call(1).await.unwrap_err();
    assert_eq!(err.to_string(), "cancelled: done here");
    s.close().await.unwrap();
    assert!(d.call(2).await.unwrap_err().is_cancelled());
    let closed = s.debounce(|v: i32| async move { v }, ms(10));
    assert!(matches!(closed, Err(Error::Closed)));
}

// DEB-06 (decision A-12): leading + trailing with a single call runs once.
#[tokio::test(start_paused = true)]
async fn leading_and_trailing_run_a_single_call_once() {
    let s = Scope::new().unwrap();
    let (d, runs) = doubling_debounce(&s, DebounceOptions::new(ms(50)).leading(true));
    assert_eq!(d.call(7).await.unwrap(), 14);
    sleep(ms(100)).await;
    assert_eq!(*runs.lock().unwrap(), [7]);
    // Two calls in one burst: the leading run and a trailing one with the last argument.
    let first = d.call(1);
    let second = d.call(2);
    assert_eq!(first.await.unwrap(), 2);
    assert_eq!(second.await.unwrap(), 4);
    assert_eq!(*runs.lock().unwrap(), [7, 1, 2]);
    s.close().await.unwrap();
}

// DEB-07 (decision A-12): the window is measured from the last call, and calls inside it get
// the burst's run.
#[tokio::test(start_paused = true)]
async fn the_leading_window_runs_from_the_last_call() {
    let s = Scope::new().unwrap();
    let (d, runs) = doubling_debounce(
        &s,
        DebounceOptions::new(ms(40)).leading(true).trailing(false),
    );
    assert_eq!(d.call(1).await.unwrap(), 2);
    sleep(ms(30)).await;
    assert_eq!(d.call(2).await.unwrap(), 2); // same burst: the leading run's result
    sleep(ms(30)).await; // 60 ms: 30 after the last call, still the same burst
    assert_eq!(d.call(3).await.unwrap(), 2);
    sleep(ms(50)).await; // quiet for 50 ms: the burst ended
    assert_eq!(d.call(4).await.unwrap(), 8);
    assert_eq!(*runs.lock().unwrap(), [1, 4]);
    s.close().await.unwrap();
}

// DEB-08: the function's own error comes back as its value; a panic as Error::Panicked.
#[tokio::test(start_paused = true)]
async fn debounced_errors_and_panics_reach_every_caller() {
    let s = Scope::new().unwrap();
    let d = s
        .debounce(
            |v: i32| async move {
                if v < 0 {
                    Err(String::from("neg"))
                } else {
                    Ok(v)
                }
            },
            ms(10),
        )
        .unwrap();
    assert_eq!(d.call(-1).await.unwrap(), Err(String::from("neg")));
    let p = s
        .debounce(|_: ()| async { panic!("debounce boom") }, ms(10))
        .map(|d: Debounced<(), ()>| d)
        .unwrap();
    let (a, b) = (p.call(()), p.call(()));
    assert!(a.await.unwrap_err().is_panic());
    assert!(b.await.unwrap_err().is_panic());
    s.close().await.unwrap();
}

// DEB-09
#[test]
fn debounce_defaults_and_bad_options() {
    let defaults = DebounceOptions::default();
    assert_eq!(defaults.wait(), ms(300));
    assert!(!defaults.is_leading() && defaults.is_trailing());
}

#[tokio::test]
async fn debounce_with_no_edge_is_rejected() {
    let s = Scope::new().unwrap();
    let err = s
        .debounce(
            |v: i32| async move { v },
            DebounceOptions::new(ms(10)).trailing(false),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidOption {
            option: "debounce",
            ..
        }
    ));
    s.close().await.unwrap();
}

// DEB-10: the scope's close waits for the debouncer's timer and runs to end.
#[tokio::test(start_paused = true)]
async fn a_debounced_run_in_progress_ends_with_the_scope() {
    let s = Scope::new().unwrap();
    let (flag, dropped) = go_go_scope_tests::DropFlag::new();
    let flag = Arc::new(Mutex::new(Some(flag)));
    let d = s
        .debounce(
            move |_: ()| {
                let guard = flag.lock().unwrap().take();
                async move {
                    let _guard = guard;
                    sleep(Duration::from_secs(3600)).await;
                }
            },
            DebounceOptions::new(ms(10)).leading(true),
        )
        .unwrap();
    let call = d.call(());
    tokio::task::yield_now().await;
    s.close().await.unwrap();
    assert!(
        dropped.load(Ordering::SeqCst),
        "close returned after the run ended"
    );
    assert!(call.await.unwrap_err().is_cancelled());
}

// ---------------------------------------------------------------- throttle

fn doubling_throttle(
    s: &Scope,
    options: impl Into<ThrottleOptions>,
) -> (Throttled<i32, i32>, Arc<Mutex<Vec<i32>>>) {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let log = runs.clone();
    let t = s
        .throttle(
            move |v: i32| {
                log.lock().unwrap().push(v);
                async move { v * 2 }
            },
            options,
        )
        .unwrap();
    (t, runs)
}

// THR-01, THR-03, THR-04 (decision A-11), THR-08
#[tokio::test(start_paused = true)]
async fn calls_inside_the_interval_get_the_last_result() {
    let s = Scope::new().unwrap();
    let (t, runs) = doubling_throttle(&s, ms(50));
    assert_eq!(t.call(1).await.unwrap(), 2); // the first call is never throttled
    assert_eq!(t.call(2).await.unwrap(), 2);
    assert_eq!(t.call(3).await.unwrap(), 2);
    assert_eq!(runs.lock().unwrap().len(), 1);
    sleep(ms(60)).await;
    assert_eq!(t.call(4).await.unwrap(), 8);
    assert_eq!(*runs.lock().unwrap(), [1, 4]);
    s.close().await.unwrap();
}

// THR-02, A-34: with neither edge nothing could run; that is refused instead of passing
// silently.
#[tokio::test]
async fn throttle_with_no_edge_is_rejected() {
    let s = Scope::new().unwrap();
    let err = s
        .throttle(
            |v: i32| async move { v },
            ThrottleOptions::new(ms(100)).leading(false),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidOption {
            option: "throttle",
            ..
        }
    ));
    s.close().await.unwrap();
}

// THR-02 done right: trailing only, and the scope closes before the window ends.
#[tokio::test(start_paused = true)]
async fn a_trailing_call_pending_at_close_is_cancelled() {
    let s = Scope::new().unwrap();
    let (t, runs) = doubling_throttle(
        &s,
        ThrottleOptions::new(ms(100)).leading(false).trailing(true),
    );
    let pending = t.call(1);
    s.close().await.unwrap();
    sleep(ms(150)).await;
    assert!(runs.lock().unwrap().is_empty());
    // THR-06
    assert!(pending.await.unwrap_err().is_cancelled());
    assert!(t.call(2).await.unwrap_err().is_cancelled());
}

// THR-05 (decision A-11): the calls inside the window get the trailing run's result.
#[tokio::test(start_paused = true)]
async fn trailing_calls_get_the_trailing_result() {
    let s = Scope::new().unwrap();
    let (t, runs) = doubling_throttle(&s, ThrottleOptions::new(ms(50)).trailing(true));
    let (a, b, c) = (t.call(1), t.call(2), t.call(3));
    assert_eq!(a.await.unwrap(), 2);
    assert_eq!(b.await.unwrap(), 6);
    assert_eq!(c.await.unwrap(), 6);
    assert_eq!(*runs.lock().unwrap(), [1, 3]);
    s.close().await.unwrap();
}

// Trailing only: a call outside any window waits for the window's end and gets its own run.
#[tokio::test(start_paused = true)]
async fn trailing_only_runs_at_the_end_of_the_window() {
    let s = Scope::new().unwrap();
    let (t, _) = doubling_throttle(
        &s,
        ThrottleOptions::new(ms(40)).leading(false).trailing(true),
    );
    let start = tokio::time::Instant::now();
    assert_eq!(t.call(5).await.unwrap(), 10);
    assert_eq!(start.elapsed(), ms(40));
    s.close().await.unwrap();
}

// THR-07
#[test]
fn throttle_defaults() {
    let defaults = ThrottleOptions::default();
    assert_eq!(defaults.interval(), ms(300));
    assert!(defaults.is_leading() && !defaults.is_trailing());
}

// THR-09
#[tokio::test(start_paused = true)]
async fn a_trailing_run_error_comes_back() {
    let s = Scope::new().unwrap();
    let t = s
        .throttle(
            |_: ()| async { Err::<(), _>(String::from("t err")) },
            ThrottleOptions::new(ms(20)).leading(false).trailing(true),
        )
        .unwrap();
    assert_eq!(t.call(()).await.unwrap(), Err(String::from("t err")));
    s.close().await.unwrap();
}

// Bad input: `Duration::MAX` (a natural way to say "never") must not overflow anywhere.
#[tokio::test(start_paused = true)]
async fn huge_durations_do_not_panic() {
    let s = Scope::new().unwrap();
    let (d, _) = doubling_debounce(&s, Duration::MAX);
    let (t, _) = doubling_throttle(&s, ThrottleOptions::new(Duration::MAX).trailing(true));
    let (poller, _, _) = counting_poller(&s, PollOptions::every(Duration::MAX).immediate(false));
    let pending = d.call(1);
    assert_eq!(t.call(1).await.unwrap(), 2);
    let trailing = t.call(2);
    sleep(ms(10)).await;
    assert!(poller.status().time_until_next.is_some());
    s.close().await.unwrap();
    assert!(pending.await.unwrap_err().is_cancelled());
    assert!(trailing.await.unwrap_err().is_cancelled());
}
