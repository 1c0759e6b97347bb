//! Stress and fault tests: many tasks over many nested scopes with a seeded random mix of
//! outcomes and cancellations, dropped scopes and dropped scope futures, and memory over a
//! million tasks in one long-lived scope.
//!
//! Heavy: ignored by default; `.ci/run` runs them in release mode. Sizes come from
//! `GO_GO_SCOPE_STRESS_TASKS` (default 1 000 000) and the seed from `GO_GO_SCOPE_STRESS_SEED`
//! (default: random, printed on failure).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use go_go_scope::{Error, Scope};
use go_go_scope_tests::DropFlag;

fn tasks_to_run() -> u64 {
    std::env::var("GO_GO_SCOPE_STRESS_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn seed() -> u64 {
    std::env::var("GO_GO_SCOPE_STRESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// Prints the seed if the test panics, so the failure can be replayed.
struct SeedReport(u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("stress test failed with GO_GO_SCOPE_STRESS_SEED={}", self.0);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[derive(Default)]
struct Tally {
    spawned: AtomicU64,
    observed: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    disposers_registered: AtomicU64,
    disposers_run: AtomicU64,
    bodies_alive: AtomicU64,
}

/// Keeps `bodies_alive` honest: +1 while a task body exists.
struct Alive(Arc<Tally>);

impl Alive {
    fn new(tally: &Arc<Tally>) -> Alive {
        tally.bodies_alive.fetch_add(1, Ordering::SeqCst);
        Alive(tally.clone())
    }
}

/// `Alive` for a task that borrows its tally instead of sharing it.
struct AliveRef<'a>(&'a Tally);

impl Alive {
    fn borrowed(tally: &Tally) -> AliveRef<'_> {
        tally.bodies_alive.fetch_add(1, Ordering::SeqCst);
        AliveRef(tally)
    }
}

impl Drop for AliveRef<'_> {
    fn drop(&mut self) {
        self.0.bodies_alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.bodies_alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One batch: a random tree of scopes under `root`, random tasks in each, random endings.
async fn batch(root: &Scope, rng: &mut fastrand::Rng, tally: &Arc<Tally>, budget: u64) -> u64 {
    let mut spawned = 0;
    let depth = rng.usize(1..=3);
    let mut chain = Vec::new();
    let mut parent = root.clone();
    for level in 0..depth {
        let mut builder = parent.child().name("stress").metrics(rng.bool());
        if rng.u8(..10) == 0 {
            builder = builder.timeout(Duration::from_micros(rng.u64(50..2_000)));
        }
        if rng.u8(..8) == 0 {
            builder = builder.concurrency(rng.usize(1..8));
        }
        let scope = builder.build().expect("child scope");
        for _ in 0..rng.usize(0..3) {
            let t = tally.clone();
            tally.disposers_registered.fetch_add(1, Ordering::SeqCst);
            scope.defer(move || async move {
                t.disposers_run.fetch_add(1, Ordering::SeqCst);
            });
        }
        let _ = level;
        chain.push(scope.clone());
        parent = scope;
    }
    let mut handles = Vec::new();
    let per_batch = rng.u64(1..200).min(budget.max(1));
    for _ in 0..per_batch {
        let scope = &chain[rng.usize(..chain.len())];
        let alive = Alive::new(tally);
        let task = match rng.u8(..10) {
            0..=3 => scope.spawn(async move {
                let _alive = alive;
                tokio::task::yield_now().await;
                1_u64
            }),
            4 => scope.try_spawn(async move {
                let _alive = alive;
                Err::<u64, _>("planned failure")
            }),
            5 => scope.spawn(async move {
                let _alive = alive;
                planned_panic()
            }),
            6 => scope
                .task_once(async move {
                    let _alive = alive;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Error>(1)
                })
                .timeout(Duration::from_micros(100))
                .spawn(),
            _ => scope.spawn(async move {
                let _alive = alive;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                1
            }),
        };
        handles.push(task);
        spawned += 1;
    }
    tally.spawned.fetch_add(spawned, Ordering::SeqCst);
    // Let some work finish (and some timeouts fire) before the endings.
    if rng.u8(..10) == 0 {
        tokio::time::sleep(Duration::from_micros(rng.u64(100..1_500))).await;
    } else {
        for _ in 0..rng.usize(0..4) {
            tokio::task::yield_now().await;
        }
    }
    // Random endings: cancel a scope, cancel the top, drop without close, or just close.
    match rng.u8(..5) {
        0 => chain[rng.usize(..chain.len())].cancel("stress: explicit cancel"),
        1 => chain[0].cancel("stress: parent cancel"),
        _ => {}
    }
    let drop_unclosed = rng.u8(..6) == 0;
    let top = chain[0].clone();
    let mut metrics = Vec::new();
    if drop_unclosed {
        drop(chain);
        drop(parent);
        drop(top);
    } else {
        top.close().await.expect("no disposer fails here");
        for scope in &chain {
            assert!(scope.is_closed());
            if let Some(m) = scope.metrics() {
                metrics.push(m);
            }
        }
    }
    for task in handles {
        let (err, value) = task.await;
        tally.observed.fetch_add(1, Ordering::SeqCst);
        match (err, value) {
            (None, Some(_)) => tally.ok.fetch_add(1, Ordering::SeqCst),
            (Some(Error::Panicked { .. }), None) => tally.panicked.fetch_add(1, Ordering::SeqCst),
            (Some(Error::Timeout { .. }), None) => tally.timed_out.fetch_add(1, Ordering::SeqCst),
            (Some(Error::Cancelled { .. }), None) => tally.cancelled.fetch_add(1, Ordering::SeqCst),
            (Some(Error::Closed), None) => tally.cancelled.fetch_add(1, Ordering::SeqCst),
            (Some(_), None) => tally.failed.fetch_add(1, Ordering::SeqCst),
            (err, value) => panic!("a tuple with both or neither side: {err:?} / {value:?}"),
        };
    }
    for m in metrics {
        assert_eq!(
            m.tasks_spawned,
            m.tasks_completed + m.tasks_failed + m.tasks_cancelled,
            "metrics disagree: {m:?}"
        );
    }
    spawned
}

fn planned_panic() -> u64 {
    panic!("planned panic")
}

/// Planned panics are caught by the scope; keep the default hook from printing each one.
fn quiet_planned_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let planned = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| *m == "planned panic");
        if !planned {
            default(info);
        }
    }));
}

#[test]
#[ignore = "heavy: run with --ignored (see .ci/run)"]
fn a_million_tasks_over_nested_scopes_end_cleanly() {
    quiet_planned_panics();
    let seed = seed();
    let _report = SeedReport(seed);
    let total = tasks_to_run();
    let rt = runtime();
    rt.block_on(async move {
        let metrics = tokio::runtime::Handle::current().metrics();
        let baseline = metrics.num_alive_tasks();
        let tally = Arc::new(Tally::default());
        let root = Scope::builder().name("stress-root").build().unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut done = 0;
        let started = std::time::Instant::now();
        while done < total {
            done += batch(&root, &mut rng, &tally, total - done).await;
        }
        // Scopes dropped without close finish closing in the background.
        for _ in 0..10_000 {
            if root.child_scopes() == 0 && tally.bodies_alive.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(root.child_scopes(), 0, "a scope is still registered with the root");
        root.close().await.unwrap();
        let t = &tally;
        let spawned = t.spawned.load(Ordering::SeqCst);
        assert_eq!(t.observed.load(Ordering::SeqCst), spawned, "every tuple observed once");
        let sum = t.ok.load(Ordering::SeqCst)
            + t.failed.load(Ordering::SeqCst)
            + t.panicked.load(Ordering::SeqCst)
            + t.timed_out.load(Ordering::SeqCst)
            + t.cancelled.load(Ordering::SeqCst);
        assert_eq!(sum, spawned);
        assert_eq!(t.bodies_alive.load(Ordering::SeqCst), 0, "a task body outlived its scope");
        assert_eq!(
            t.disposers_run.load(Ordering::SeqCst),
            t.disposers_registered.load(Ordering::SeqCst),
            "every disposer ran exactly once"
        );
        for _ in 0..10_000 {
            if metrics.num_alive_tasks() == baseline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(metrics.num_alive_tasks(), baseline, "tasks left alive on the runtime");
        eprintln!(
            "stress: seed {seed}, {spawned} tasks in {:?}: ok {}, failed {}, panicked {}, timed out {}, cancelled {}; {} disposers",
            started.elapsed(),
            t.ok.load(Ordering::SeqCst),
            t.failed.load(Ordering::SeqCst),
            t.panicked.load(Ordering::SeqCst),
            t.timed_out.load(Ordering::SeqCst),
            t.cancelled.load(Ordering::SeqCst),
            t.disposers_run.load(Ordering::SeqCst),
        );
    });
}

/// Dropping scope futures (`Scope::run`, as `#[scoped]` fns expand to) at random points.
#[test]
#[ignore = "heavy: run with --ignored (see .ci/run)"]
fn dropping_scope_futures_mid_flight_leaves_nothing_running() {
    let seed = seed();
    let _report = SeedReport(seed);
    let rounds = (tasks_to_run() / 100).clamp(100, 20_000);
    let rt = runtime();
    rt.block_on(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tally = Arc::new(Tally::default());
        for _ in 0..rounds {
            let t = tally.clone();
            let width = rng.usize(1..20);
            t.disposers_registered.fetch_add(1, Ordering::SeqCst);
            let run = Scope::run(Scope::builder().name("dropped"), move |s| async move {
                let d = t.clone();
                s.defer(move || async move {
                    d.disposers_run.fetch_add(1, Ordering::SeqCst);
                });
                for _ in 0..width {
                    let alive = Alive::new(&t);
                    s.spawn(async move {
                        let _alive = alive;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    });
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
            let cut = Duration::from_micros(rng.u64(0..300));
            assert!(tokio::time::timeout(cut, run).await.is_err());
        }
        for _ in 0..10_000 {
            if tally.bodies_alive.load(Ordering::SeqCst) == 0
                && tally.disposers_run.load(Ordering::SeqCst)
                    == tally.disposers_registered.load(Ordering::SeqCst)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(tally.bodies_alive.load(Ordering::SeqCst), 0);
        assert_eq!(
            tally.disposers_run.load(Ordering::SeqCst),
            tally.disposers_registered.load(Ordering::SeqCst)
        );
    });
}

/// A `#[scoped]` fn whose tasks never finish on their own; its future is dropped from outside.
#[go_go_scope::scoped(name = "dropped-fn")]
async fn scoped_fn_with_stuck_tasks(tally: Arc<Tally>, width: usize) -> Result<(), Error> {
    let scope = Scope::current();
    let d = tally.clone();
    tally.disposers_registered.fetch_add(1, Ordering::SeqCst);
    scope.defer(move || async move {
        d.disposers_run.fetch_add(1, Ordering::SeqCst);
    });
    for _ in 0..width {
        let alive = Alive::new(&tally);
        go_go_scope::go!(async move {
            let _alive = alive;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

/// Dropping the future of a `#[scoped]` fn at random points: its tasks stop, its disposers run.
#[test]
#[ignore = "heavy: run with --ignored (see .ci/run)"]
fn dropping_scoped_fn_futures_mid_flight_leaves_nothing_running() {
    let seed = seed();
    let _report = SeedReport(seed);
    let rounds = (tasks_to_run() / 100).clamp(100, 20_000);
    let rt = runtime();
    rt.block_on(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tally = Arc::new(Tally::default());
        for _ in 0..rounds {
            let call = scoped_fn_with_stuck_tasks(tally.clone(), rng.usize(1..20));
            let cut = Duration::from_micros(rng.u64(0..300));
            assert!(tokio::time::timeout(cut, call).await.is_err());
        }
        for _ in 0..10_000 {
            if tally.bodies_alive.load(Ordering::SeqCst) == 0
                && tally.disposers_run.load(Ordering::SeqCst)
                    == tally.disposers_registered.load(Ordering::SeqCst)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(tally.bodies_alive.load(Ordering::SeqCst), 0);
        assert_eq!(
            tally.disposers_run.load(Ordering::SeqCst),
            tally.disposers_registered.load(Ordering::SeqCst),
            "every disposer registered by a dropped call ran"
        );
    });
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A long-lived scope with metrics, hooks and the profiler runs a million short tasks: its
/// memory must not grow per task.
#[test]
#[ignore = "heavy: run with --ignored (see .ci/run)"]
fn a_long_lived_scope_keeps_bounded_memory() {
    let total = tasks_to_run();
    let rt = runtime();
    rt.block_on(async move {
        let scope = Scope::builder()
            .name("long-lived")
            .metrics(true)
            .profiler(true)
            .concurrency(64)
            .hooks(go_go_scope::Hooks::new().after_task(|_, _, _| {}))
            .build()
            .unwrap();
        // Warm up allocator pools and the metrics' exact-sample buffer first.
        for _ in 0..20_000 {
            scope.spawn(async {}).await;
        }
        let before = rss_kib("VmRSS:");
        let mut handles = Vec::with_capacity(1_000);
        for i in 0..total {
            handles.push(scope.spawn(async move { i }));
            if handles.len() == 1_000 {
                for h in handles.drain(..) {
                    h.await;
                }
            }
        }
        for h in handles {
            h.await;
        }
        let after = rss_kib("VmRSS:");
        let peak = rss_kib("VmHWM:");
        let m = scope.metrics().unwrap();
        assert_eq!(m.tasks_completed, total + 20_000);
        scope.close().await.unwrap();
        let growth = after.saturating_sub(before);
        eprintln!(
            "memory: {total} tasks, RSS {before} KiB -> {after} KiB (growth {growth} KiB), peak {peak} KiB"
        );
        // A leak of even 32 bytes per task would be 32 MB over a million tasks.
        assert!(
            growth < 16 * 1024,
            "memory grew by {growth} KiB over {total} tasks"
        );
    });
}

/// One local scope: tasks that borrow the caller's tally, with a random mix of endings (value,
/// error, panic, a retried task, a task stuck until the scope ends, a cancelled task), under a
/// random limit and deadline, sometimes cancelled from the body, sometimes dropped mid-way.
async fn local_round(
    rng: &mut fastrand::Rng,
    tally: &Tally,
    disposed: &Arc<AtomicU64>,
    width: u64,
) {
    let mut builder = Scope::builder().name("local-round");
    if rng.bool() {
        // Stuck tasks may hold every permit while the body waits for a task behind them: a
        // limited round always has a deadline.
        builder = builder
            .concurrency(rng.usize(1..8))
            .timeout(Duration::from_millis(rng.u64(1..10)));
    } else if rng.u8(..4) == 0 {
        builder = builder.timeout(Duration::from_millis(rng.u64(1..5)));
    }
    let cancel_from_body = rng.u8(..5) == 0;
    let plan: Vec<u8> = (0..width).map(|_| rng.u8(..7)).collect();
    let run = Scope::local(builder, |s| {
        Box::pin(async {
            tally.disposers_registered.fetch_add(1, Ordering::SeqCst);
            // A disposer owns what it uses, as it may run after the scope's future is gone.
            let disposed = Arc::clone(disposed);
            s.defer(move || async move {
                disposed.fetch_add(1, Ordering::SeqCst);
            });
            let mut tasks = Vec::new();
            for (i, kind) in plan.iter().enumerate() {
                tally.spawned.fetch_add(1, Ordering::SeqCst);
                let task = match kind {
                    0 => s.try_spawn(async move {
                        let _alive = Alive::borrowed(tally);
                        tokio::task::yield_now().await;
                        Ok::<_, Error>(i as u64)
                    }),
                    1 => s.try_spawn(async move {
                        let _alive = Alive::borrowed(tally);
                        Err::<u64, _>(Error::cancelled("planned failure"))
                    }),
                    2 => s.try_spawn(async move {
                        let _alive = Alive::borrowed(tally);
                        Ok::<_, Error>(planned_panic())
                    }),
                    3 => s
                        .task(move |attempt| async move {
                            let _alive = Alive::borrowed(tally);
                            if attempt < 2 {
                                Err("again")
                            } else {
                                Ok(attempt as u64)
                            }
                        })
                        .retry(2)
                        .spawn(),
                    4 | 5 => s.try_spawn(async move {
                        let _alive = Alive::borrowed(tally);
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok::<_, Error>(0)
                    }),
                    _ => {
                        let task = s.try_spawn(async move {
                            let _alive = Alive::borrowed(tally);
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            Ok::<_, Error>(0)
                        });
                        task.cancel();
                        task
                    }
                };
                tasks.push((*kind, task));
            }
            if cancel_from_body {
                s.cancel("planned cancel");
            }
            for (kind, task) in tasks {
                if matches!(kind, 4 | 5) && !s.is_cancelled() {
                    // Stuck tasks are left for the scope's end to cancel.
                    continue;
                }
                match task.await {
                    (None, Some(_)) => tally.ok.fetch_add(1, Ordering::SeqCst),
                    (Some(Error::Panicked { .. }), _) => {
                        tally.panicked.fetch_add(1, Ordering::SeqCst)
                    }
                    (Some(_), _) => tally.failed.fetch_add(1, Ordering::SeqCst),
                    (None, None) => unreachable!("a task gives a value or an error"),
                };
                tally.observed.fetch_add(1, Ordering::SeqCst);
            }
        })
    });
    if rng.u8(..6) == 0 {
        // Dropped mid-way: everything it holds is dropped with it.
        let _ = tokio::time::timeout(Duration::from_micros(rng.u64(1..500)), run).await;
    } else {
        let _ = run.await;
    }
    // Whatever happened, no task of the round is alive once its future is gone.
    assert_eq!(
        tally.bodies_alive.load(Ordering::SeqCst),
        0,
        "a local task outlived its scope"
    );
}

#[test]
#[ignore = "heavy: run with --ignored (see .ci/run)"]
fn local_scopes_under_stress_leave_no_task_behind() {
    let seed = seed();
    let _report = SeedReport(seed);
    quiet_planned_panics();
    let total = tasks_to_run() / 10;
    let tally = Tally::default();
    let disposed = Arc::new(AtomicU64::new(0));
    runtime().block_on(async {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut spawned = 0;
        while spawned < total {
            let width = rng.u64(1..64);
            local_round(&mut rng, &tally, &disposed, width).await;
            spawned += width;
        }
        // Scopes whose futures were dropped close in the background: give them a moment.
        let registered = tally.disposers_registered.load(Ordering::SeqCst);
        for _ in 0..200 {
            if disposed.load(Ordering::SeqCst) == registered {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            disposed.load(Ordering::SeqCst),
            registered,
            "a disposer was skipped"
        );
    });
    eprintln!(
        "local: {} tasks, {} observed ({} ok, {} failed, {} panicked)",
        tally.spawned.load(Ordering::SeqCst),
        tally.observed.load(Ordering::SeqCst),
        tally.ok.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
        tally.panicked.load(Ordering::SeqCst),
    );
    assert!(tally.spawned.load(Ordering::SeqCst) >= total);
    assert_eq!(tally.bodies_alive.load(Ordering::SeqCst), 0);
}

#[test]
fn the_drop_flag_helper_reports_drops() {
    let (flag, dropped) = DropFlag::new();
    drop(flag);
    assert!(dropped.load(Ordering::SeqCst));
}
