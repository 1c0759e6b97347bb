//! The resource pool (POOL cases).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use go_go_scope::{Error, Pool, PoolOptions, PoolStats, Scope, TimeoutOrigin};
use tokio::time::{Instant, sleep};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Resources are numbered 1, 2, ... in creation order; destroyed numbers are logged.
struct Numbered {
    destroyed: Arc<Mutex<Vec<u32>>>,
}

fn numbered() -> (PoolOptions<u32>, Numbered) {
    let next = Arc::new(AtomicU32::new(1));
    let destroyed = Arc::new(Mutex::new(Vec::new()));
    let log = destroyed.clone();
    let options = PoolOptions::new(move || {
        let id = next.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Error>(id) }
    })
    .destroy(move |id| {
        log.lock().unwrap().push(id);
        async {}
    });
    (options, Numbered { destroyed })
}

impl Numbered {
    fn destroyed(&self) -> Vec<u32> {
        let mut ids = self.destroyed.lock().unwrap().clone();
        ids.sort();
        ids
    }
}

fn stats(total: usize, available: usize, in_use: usize, waiting: usize) -> PoolStats {
    let mut s = PoolStats::default();
    s.total = total;
    s.available = available;
    s.in_use = in_use;
    s.waiting = waiting;
    s
}

// POOL-01
#[tokio::test(start_paused = true)]
async fn a_full_pool_times_out_the_next_acquire() {
    let s = Scope::new().unwrap();
    let (options, _) = numbered();
    let pool = s
        .pool(options.max(2).acquire_timeout(ms(30)))
        .await
        .unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    assert_eq!((*a, *b), (1, 2));
    let start = Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(start.elapsed(), ms(30));
    assert!(matches!(
        err,
        Error::Timeout { after, scope_or_task: TimeoutOrigin::Operation("pool acquire") } if after == ms(30)
    ));
    assert_eq!(pool.stats(), stats(2, 0, 2, 0));
    drop((a, b));
    s.close().await.unwrap();
}

// POOL-02: a returned resource goes straight to the waiter.
#[tokio::test(start_paused = true)]
async fn a_released_resource_goes_to_the_waiter() {
    let s = Scope::new().unwrap();
    let (options, _) = numbered();
    let pool = s.pool(options.max(2)).await.unwrap();
    let _a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        s.spawn(async move { *pool.acquire().await.unwrap() })
    };
    sleep(ms(10)).await;
    assert_eq!(pool.stats().waiting, 1);
    drop(b);
    assert_eq!(waiter.await.1, Some(2));
    assert_eq!(pool.stats().waiting, 0);
    s.close().await.unwrap();
}

// POOL-03
#[tokio::test]
async fn the_most_recently_returned_resource_is_lent_first() {
    let (options, _) = numbered();
    let pool = Pool::new(options).await.unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    drop(a);
    drop(b);
    assert_eq!(*pool.acquire().await.unwrap(), 2);
    pool.close().await;
}

// POOL-04
#[tokio::test]
async fn execute_returns_the_result_and_gives_the_resource_back() {
    let (options, numbered) = numbered();
    let pool = Pool::new(options).await.unwrap();
    assert_eq!(
        pool.execute(async |r: &mut u32| *r * 100).await.unwrap(),
        100
    );
    let failed = pool
        .execute(async |_: &mut u32| Err::<u32, _>("exec fail"))
        .await
        .unwrap();
    assert_eq!(failed, Err("exec fail"));
    assert_eq!(pool.stats(), stats(1, 1, 0, 0));
    pool.close().await;
    assert_eq!(numbered.destroyed(), [1]);
}

// A panicking borrower's resource is destroyed, not lent again.
#[tokio::test]
async fn a_resource_whose_borrower_panicked_is_destroyed() {
    let s = Scope::new().unwrap();
    let (options, numbered) = numbered();
    let pool = s.pool(options).await.unwrap();
    let p = pool.clone();
    let task = s.spawn(async move { p.execute(async |_: &mut u32| panic!("borrower boom")).await });
    assert!(task.await.0.unwrap().is_panic());
    tokio::task::yield_now().await;
    assert_eq!(numbered.destroyed(), [1]);
    assert_eq!(pool.stats().total, 0);
    assert_eq!(*pool.acquire().await.unwrap(), 2);
    s.close().await.unwrap();
}

// POOL-05
#[tokio::test]
async fn stats_add_up() {
    let (options, _) = numbered();
    let pool = Pool::new(options.min(1).max(5)).await.unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    drop(a);
    let st = pool.stats();
    assert_eq!(st, stats(2, 1, 1, 0));
    assert_eq!(st.in_use, st.total - st.available - st.creating);
    drop(b);
    pool.close().await;
}

// POOL-06, POOL-11, A-22: closing the scope wakes waiters with PoolClosed and destroys lent
// resources when they come back, each exactly once.
#[tokio::test(start_paused = true)]
async fn closing_the_scope_closes_the_pool() {
    let outer = Scope::new().unwrap();
    let s = Scope::new().unwrap();
    let (options, numbered) = numbered();
    let pool = s.pool(options.max(2)).await.unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        outer.spawn(async move { pool.acquire().await.map(|g| *g) })
    };
    sleep(ms(10)).await;
    s.close().await.unwrap();
    assert!(matches!(waiter.await.1.unwrap(), Err(Error::PoolClosed)));
    assert!(
        numbered.destroyed().is_empty(),
        "lent resources are not destroyed under their borrower"
    );
    drop(a);
    tokio::task::yield_now().await;
    assert_eq!(numbered.destroyed(), [1]);
    drop(b);
    tokio::task::yield_now().await;
    assert_eq!(numbered.destroyed(), [1, 2]);
    assert!(matches!(pool.acquire().await, Err(Error::PoolClosed)));
    assert!(pool.is_closed());
    assert_eq!(pool.stats().total, 0);
    outer.close().await.unwrap();
}

// POOL-06: idle resources are destroyed by the scope's close itself.
#[tokio::test]
async fn idle_resources_are_destroyed_at_close() {
    let s = Scope::new().unwrap();
    let (options, numbered) = numbered();
    let pool = s.pool(options.min(2)).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(numbered.destroyed(), [1, 2]);
    assert!(matches!(pool.acquire().await, Err(Error::PoolClosed)));
}

// POOL-07
#[tokio::test(start_paused = true)]
async fn closing_a_standalone_pool_wakes_its_waiters() {
    let (options, _) = numbered();
    let pool = Pool::new(options.max(1)).await.unwrap();
    let held = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(|g| *g) })
    };
    sleep(ms(10)).await;
    pool.close().await;
    assert!(matches!(waiter.await.unwrap(), Err(Error::PoolClosed)));
    assert!(matches!(pool.acquire().await, Err(Error::PoolClosed)));
    pool.close().await; // idempotent
    drop(held);
}

// POOL-08: a failing destroy does not stop the others.
#[tokio::test]
async fn a_failing_destroy_is_contained() {
    let destroyed = Arc::new(AtomicU32::new(0));
    let d = destroyed.clone();
    let next = Arc::new(AtomicU32::new(0));
    let pool = Pool::new(
        PoolOptions::new(move || {
            let id = next.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, Error>(id) }
        })
        .destroy(move |id: u32| {
            d.fetch_add(1, Ordering::SeqCst);
            async move {
                if id == 0 {
                    Err("destroy failed")
                } else {
                    Ok(())
                }
            }
        })
        .min(3),
    )
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(destroyed.load(Ordering::SeqCst), 3);
}

// POOL-09
#[tokio::test]
async fn a_failing_create_fails_the_acquire_and_is_not_counted() {
    let pool = Pool::new(PoolOptions::new(|| async {
        Err::<u8, _>(std::io::Error::other("create fail"))
    }))
    .await
    .unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.to_string(), "create fail");
    assert!(err.downcast_ref::<std::io::Error>().is_some());
    assert_eq!(pool.stats(), stats(0, 0, 0, 0));
    // A failing create during the up-front `min` fails the pool itself.
    let failing_min = Pool::new(PoolOptions::new(|| async { Err::<u8, _>("no") }).min(1)).await;
    assert!(failing_min.is_err());
}

// POOL-10, A-22: the `min` resources are created up front and lent.
#[tokio::test(start_paused = true)]
async fn min_resources_are_lent() {
    let (options, _) = numbered();
    let pool = Pool::new(options.min(2).max(3).acquire_timeout(ms(10)))
        .await
        .unwrap();
    assert_eq!(pool.stats(), stats(2, 2, 0, 0));
    let a = pool.acquire().await.unwrap();
    assert!(*a <= 2, "a pre-created resource is lent");
    assert_eq!(pool.stats(), stats(2, 1, 1, 0));
    let b = pool.acquire().await.unwrap();
    let c = pool.acquire().await.unwrap();
    assert_eq!(*c, 3);
    assert!(pool.acquire().await.is_err());
    drop((a, b, c));
    pool.close().await;
}

// POOL-13, A-22: max defaults to 10.
#[tokio::test(start_paused = true)]
async fn max_defaults_to_ten() {
    let (options, _) = numbered();
    let pool = Pool::new(options.acquire_timeout(ms(5))).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(pool.acquire().await.unwrap());
    }
    assert!(matches!(pool.acquire().await, Err(Error::Timeout { .. })));
    drop(held);
    pool.close().await;
}

// Bad input: typed errors, no panic.
#[tokio::test]
async fn bad_pool_options_are_rejected() {
    let make = || PoolOptions::new(|| async { Ok::<_, Error>(()) });
    let zero = Pool::new(make().max(0)).await.unwrap_err();
    assert!(matches!(zero, Error::InvalidOption { option: "max", .. }));
    let inverted = Pool::new(make().min(3).max(2)).await.unwrap_err();
    assert!(matches!(
        inverted,
        Error::InvalidOption { option: "min", .. }
    ));
    let s = Scope::new().unwrap();
    s.close().await.unwrap();
    assert!(matches!(s.pool(make()).await, Err(Error::Closed)));
}

// discard destroys instead of returning.
#[tokio::test]
async fn a_discarded_resource_is_destroyed() {
    let (options, numbered) = numbered();
    let pool = Pool::new(options).await.unwrap();
    pool.acquire().await.unwrap().discard();
    tokio::task::yield_now().await;
    assert_eq!(numbered.destroyed(), [1]);
    assert_eq!(*pool.acquire().await.unwrap(), 2);
    pool.close().await;
}

// An acquire dropped while the resource is being created leaves the counts right.
#[tokio::test(start_paused = true)]
async fn a_cancelled_creation_is_not_counted() {
    let pool = Pool::new(PoolOptions::new(|| async {
        sleep(Duration::from_secs(10)).await;
        Ok::<_, Error>(())
    }))
    .await
    .unwrap();
    let attempt = tokio::time::timeout(ms(10), pool.acquire()).await;
    assert!(attempt.is_err());
    assert_eq!(pool.stats(), stats(0, 0, 0, 0));
    pool.close().await;
}

// DL-03, A-18: a pool wait feeds the deadlock detector.
#[tokio::test(start_paused = true)]
async fn pool_waits_are_reported_to_the_deadlock_detector() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let s = Scope::builder()
        .deadlock_detection(ms(20), move |w| sink.lock().unwrap().push(w[0].resource))
        .build()
        .unwrap();
    let (options, _) = numbered();
    let pool = s.pool(options.max(1)).await.unwrap();
    let _held = pool.acquire().await.unwrap();
    let p = pool.clone();
    let _waiter = s.spawn(async move { p.acquire().await.map(|g| *g) });
    sleep(ms(50)).await;
    assert_eq!(seen.lock().unwrap().first(), Some(&"pool acquire"));
    drop(_held);
    s.close().await.unwrap();
}
