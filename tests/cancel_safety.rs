//! What the `# Cancel safety` sections of the API docs promise: each test drops a future
//! mid-way (after one poll, as a `select!` whose other branch won would) and checks that
//! nothing was lost and nothing stays taken.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use go_go_scope::{
    Broadcast, Channel, CircuitBreaker, CircuitState, Error, ParallelOpts, Pool, PoolOptions,
    Scope, Select, ThrottleOptions, tracked_wait,
};
use go_go_scope_tests::DropFlag;
use tokio::sync::oneshot;
use tokio::time::sleep;

/// Polls `future` once, with the test task's waker.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// Sends on its channel when dropped: awaiting the receiver proves the holder is gone.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(signal) = self.0.take() {
            let _ = signal.send(());
        }
    }
}

/// Waits until the holder of the matching [`DropSignal`] is dropped. The clock is paused in
/// these tests, so if nothing else can happen the hour passes at once and the wait fails
/// instead of hanging.
async fn dropped(signal: oneshot::Receiver<()>) -> bool {
    tokio::time::timeout(Duration::from_secs(3600), signal)
        .await
        .is_ok()
}

// ---------------------------------------------------------------- Channel as a Stream

// A `next()` on a channel handle dropped after a send woke it, before it ran again, takes
// nothing: the handle's next `next()` gets the value.
#[tokio::test]
async fn a_dropped_channel_stream_next_takes_nothing() {
    for capacity in [0, 1] {
        let ch = Channel::new(capacity);
        let mut values = ch.clone();
        {
            let mut next = values.next();
            assert!(poll_once(&mut next).await.is_pending());
            // With capacity 0 this goes through only because the handle's receive waits.
            ch.try_send(3).unwrap();
        }
        assert_eq!(values.next().await, Some(3), "capacity {capacity}");
        ch.close();
        assert_eq!(values.next().await, None);
    }
}

// ---------------------------------------------------------------- Subscriber::recv

// A receive dropped after it was woken by a send, before it ran again, takes nothing: the
// next receive gets the value.
#[tokio::test]
async fn a_dropped_broadcast_receive_takes_nothing() {
    let news = Broadcast::new(4).unwrap();
    let mut sub = news.subscribe().unwrap();
    {
        let mut recv = Box::pin(sub.recv());
        assert!(poll_once(&mut recv).await.is_pending());
        news.send(5).unwrap();
    }
    news.send(6).unwrap();
    assert_eq!(sub.recv().await, Some(Ok(5)));
    assert_eq!(sub.recv().await, Some(Ok(6)));
}

// ---------------------------------------------------------------- Select

// A select dropped after a value arrived on one of its channels, before it ran again, takes
// nothing from any channel: buffered or rendezvous.
#[tokio::test]
async fn a_dropped_select_takes_nothing() {
    for capacity in [0, 1] {
        let texts = Channel::<&str>::new(capacity);
        let numbers = Channel::<u32>::new(capacity);
        {
            let mut select = Box::pin(
                Select::new()
                    .recv(&texts, |_| 0)
                    .recv(&numbers, |n| n)
                    .into_future(),
            );
            assert!(poll_once(&mut select).await.is_pending());
            // With capacity 0 this goes through only because the select's receive waits.
            numbers.try_send(7).unwrap();
        }
        assert_eq!(numbers.recv().await, Some(7), "capacity {capacity}");
        assert!(texts.try_recv().is_err());
    }
}

// ---------------------------------------------------------------- Pool

// An acquire dropped while waiting leaves no permit taken and no place in the queue: the
// caller behind it is served next, and the counts are right.
#[tokio::test]
async fn a_dropped_waiting_acquire_gives_up_its_place() {
    let pool = Pool::new(PoolOptions::new(|| async { Ok::<_, Error>("conn") }).max(1))
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let mut first = Box::pin(pool.acquire());
    let mut second = Box::pin(pool.acquire());
    assert!(poll_once(&mut first).await.is_pending());
    assert!(poll_once(&mut second).await.is_pending());
    assert_eq!(pool.stats().waiting, 2);
    drop(first);
    assert_eq!(pool.stats().waiting, 1);
    drop(held);
    let served = second.await.unwrap();
    assert_eq!(*served, "conn");
    drop(served);
    let stats = pool.stats();
    assert_eq!((stats.total, stats.available, stats.waiting), (1, 1, 0));
    pool.close().await;
}

// An acquire dropped while its resource was being created frees the room it had reserved:
// with room for one resource, the next acquire creates one instead of timing out.
#[tokio::test(start_paused = true)]
async fn a_dropped_creating_acquire_frees_its_room() {
    let pool = Pool::new(
        PoolOptions::new(|| async {
            sleep(Duration::from_secs(10)).await;
            Ok::<_, Error>(1_u8)
        })
        .max(1)
        .acquire_timeout(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    {
        let mut acquire = Box::pin(pool.acquire());
        assert!(poll_once(&mut acquire).await.is_pending());
        assert_eq!(pool.stats().creating, 1);
    }
    assert_eq!((pool.stats().total, pool.stats().creating), (0, 0));
    assert_eq!(*pool.acquire().await.unwrap(), 1);
    pool.close().await;
}

// A pool whose `new` is dropped while it creates its `min` resources destroys those it made.
#[tokio::test(start_paused = true)]
async fn a_dropped_pool_new_destroys_what_it_created() {
    let destroyed = Arc::new(Mutex::new(Vec::new()));
    let made = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (seen, count) = (Arc::clone(&destroyed), Arc::clone(&made));
    let options = PoolOptions::new(move || {
        let id = count.fetch_add(1, Ordering::SeqCst);
        async move {
            // The first is made at once; the second never finishes.
            if id > 0 {
                sleep(Duration::from_secs(3600)).await;
            }
            Ok::<_, Error>(id)
        }
    })
    .destroy(move |id| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(id);
            Ok::<_, Error>(())
        }
    })
    .min(3);
    {
        let mut new = Box::pin(Pool::new(options));
        assert!(poll_once(&mut new).await.is_pending());
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }
    sleep(Duration::from_millis(1)).await; // the background destroy runs
    assert_eq!(*destroyed.lock().unwrap(), [0]);
}

// A close dropped half-way still destroys every idle resource, each once.
#[tokio::test(start_paused = true)]
async fn a_dropped_pool_close_still_destroys_every_resource_once() {
    let destroyed = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&destroyed);
    let made = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let count = Arc::clone(&made);
    let pool = Pool::new(
        PoolOptions::new(move || {
            let id = count.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, Error>(id) }
        })
        .destroy(move |id| {
            let seen = Arc::clone(&seen);
            async move {
                sleep(Duration::from_millis(10)).await;
                seen.lock().unwrap().push(id);
                Ok::<_, Error>(())
            }
        })
        .min(3),
    )
    .await
    .unwrap();
    {
        let mut close = Box::pin(pool.close());
        assert!(poll_once(&mut close).await.is_pending()); // destroying the first
    }
    assert!(pool.is_closed());
    sleep(Duration::from_millis(50)).await;
    let mut destroyed = destroyed.lock().unwrap().clone();
    destroyed.sort_unstable();
    // The first destroy was dropped where it stood (it had started); the others ran in the
    // background, each once.
    assert_eq!(destroyed, [1, 2]);
    pool.close().await; // a second close returns at once
}

// ---------------------------------------------------------------- CircuitBreaker::call

// A dropped call is counted neither as a success nor as a failure; a dropped trial frees the
// trial slot for the next call.
#[tokio::test(start_paused = true)]
async fn a_dropped_breaker_call_decides_nothing() {
    let breaker = CircuitBreaker::new(2, Duration::from_secs(5)).unwrap();
    let _ = breaker.call(async { Err::<(), _>("down") }).await;
    {
        let mut call = Box::pin(breaker.call(std::future::pending::<Result<(), Error>>()));
        assert!(poll_once(&mut call).await.is_pending());
    }
    assert_eq!(breaker.failure_count(), 1);
    assert_eq!(breaker.state(), CircuitState::Closed);

    let _ = breaker.call(async { Err::<(), _>("down") }).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    sleep(Duration::from_secs(5)).await;
    {
        let mut trial = Box::pin(breaker.call(std::future::pending::<Result<(), Error>>()));
        assert!(poll_once(&mut trial).await.is_pending());
        // The trial holds the slot while it runs...
        let refused = breaker.call(async { Ok::<_, Error>(()) }).await;
        assert!(matches!(refused, Err(Error::CircuitOpen)));
    }
    // ...and dropping it gives the slot to the next call, whose success closes the breaker.
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.call(async { Ok::<_, Error>(3) }).await.unwrap(), 3);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

// ---------------------------------------------------------------- Debounced / Throttled

// A dropped debounced call still counts: being the burst's last call, its argument is the
// one the trailing run uses, and the caller that kept waiting gets that run's result.
#[tokio::test(start_paused = true)]
async fn a_dropped_debounced_call_still_counts() {
    let s = Scope::new().unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let log = runs.clone();
    let save = s
        .debounce(
            move |text: &'static str| {
                log.lock().unwrap().push(text);
                async move { text.len() }
            },
            Duration::from_millis(50),
        )
        .unwrap();
    let kept = save.call("draft");
    drop(save.call("final draft"));
    assert_eq!(kept.await.unwrap(), "final draft".len());
    assert_eq!(*runs.lock().unwrap(), ["final draft"]);
    s.close().await.unwrap();
}

// A dropped throttled call that opened a window still runs: a call inside the window gets
// that run's result.
#[tokio::test(start_paused = true)]
async fn a_dropped_throttled_call_still_runs() {
    let s = Scope::new().unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let log = runs.clone();
    let double = s
        .throttle(
            move |n: u32| {
                log.lock().unwrap().push(n);
                async move { n * 2 }
            },
            ThrottleOptions::new(Duration::from_millis(50)),
        )
        .unwrap();
    drop(double.call(21));
    assert_eq!(double.call(1).await.unwrap(), 42);
    assert_eq!(*runs.lock().unwrap(), [21]);
    s.close().await.unwrap();
}

// ---------------------------------------------------------------- parallel, provide_with

// Dropping a parallel call cancels the task that was running and never starts the futures
// still waiting for a slot.
#[tokio::test(start_paused = true)]
async fn a_dropped_parallel_call_cancels_and_starts_nothing_more() {
    let s = Scope::new().unwrap();
    let (signal, gone) = oneshot::channel();
    let started_late = Arc::new(AtomicBool::new(false));
    let flag = started_late.clone();
    let first: Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> = Box::pin(async move {
        let _signal = DropSignal(Some(signal));
        std::future::pending::<()>().await;
        Ok(())
    });
    let second: Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> = Box::pin(async move {
        flag.store(true, Ordering::SeqCst);
        Ok(())
    });
    {
        let opts = ParallelOpts {
            concurrency: Some(1),
            ..Default::default()
        };
        let mut running = Box::pin(s.parallel([first, second], opts));
        assert!(poll_once(&mut running).await.is_pending());
        assert_eq!(s.active_tasks(), 1);
    }
    assert!(dropped(gone).await, "the running task was not cancelled");
    s.close().await.unwrap();
    assert!(!started_late.load(Ordering::SeqCst));
}

// Dropping `provide_with` while its factory runs provides nothing and registers no disposer.
#[tokio::test]
async fn a_dropped_provide_with_registers_nothing() {
    struct Db;
    let s = Scope::new().unwrap();
    let (factory_guard, factory_dropped) = DropFlag::new();
    let disposed = Arc::new(AtomicBool::new(false));
    let flag = disposed.clone();
    {
        let mut providing = Box::pin(s.provide_with(
            move || async move {
                let _guard = factory_guard;
                std::future::pending::<()>().await;
                Ok::<_, Error>(Db)
            },
            move |_db: Arc<Db>| async move { flag.store(true, Ordering::SeqCst) },
        ));
        assert!(poll_once(&mut providing).await.is_pending());
    }
    assert!(factory_dropped.load(Ordering::SeqCst));
    assert!(s.service::<Db>().is_none());
    s.close().await.unwrap();
    assert!(!disposed.load(Ordering::SeqCst));
}

// ---------------------------------------------------------------- tracked_wait

// A tracked wait that lost a select is no longer a wait: the deadlock detector does not report
// it, however long the task then runs; a later wait that lasts is reported.
#[tokio::test(start_paused = true)]
async fn a_dropped_tracked_wait_is_not_reported() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let s = Scope::builder()
        .deadlock_detection(Duration::from_millis(100), move |waiting| {
            sink.lock()
                .unwrap()
                .extend(waiting.iter().map(|w| w.resource));
        })
        .build()
        .unwrap();
    let task = s.spawn(async {
        tokio::select! {
            () = tracked_wait("db lock", std::future::pending::<()>()) => {}
            () = sleep(Duration::from_millis(10)) => {}
        }
        sleep(Duration::from_secs(1)).await;
        tracked_wait("cache", sleep(Duration::from_secs(1))).await;
    });
    task.await;
    // The wait that ran its course is reported, so the detector was watching all along.
    let reported = seen.lock().unwrap().clone();
    assert!(!reported.is_empty());
    assert!(
        reported.iter().all(|resource| *resource == "cache"),
        "{reported:?}"
    );
    s.close().await.unwrap();
}

// ---------------------------------------------------------------- Task

// Polling `&mut task` in a select that another branch wins leaves the outcome in the handle.
#[tokio::test(start_paused = true)]
async fn a_task_polled_by_reference_keeps_its_outcome() {
    let s = Scope::new().unwrap();
    let mut task = s.spawn(async {
        sleep(Duration::from_millis(20)).await;
        "done"
    });
    tokio::select! {
        biased;
        () = std::future::ready(()) => {}
        _ = &mut task => unreachable!("the first branch is always ready"),
    }
    assert_eq!(task.await.1, Some("done"));
    s.close().await.unwrap();
}
