//! Instructions per operation, counted by Callgrind through gungraun, beside the same work done
//! with raw Tokio in the same binary.
//!
//! Each operation has up to three forms: `tracker` (tokio-util's `TaskTracker` +
//! `CancellationToken`, the documented pattern for tracked tasks with shutdown), `joinset`
//! (a `JoinSet`) and `scope` (go-go-scope). Every benchmark has its own current-thread runtime,
//! built in gungraun's `setup` together with whatever the operation reuses (tracker, set,
//! scope) and warmed up with one unmeasured batch. The measured function runs one batch of
//! [`BATCH`] operations (channels: [`MESSAGES`] messages) inside one task spawned on that
//! runtime, as application code runs; releasing the state (closing the scope) happens in
//! `teardown`, also unmeasured. On a current-thread runtime every instruction runs on the
//! measured thread, so the counts do not depend on the machine's load. The fixed cost of one
//! `block_on` and one spawn per batch is spread over the batch (a few instructions per
//! operation).
//!
//! Run: `cargo bench -p go-go-scope --bench instructions` (needs valgrind and
//! `gungraun-runner` of the same version as the `gungraun` dev-dependency);
//! `scripts/instructions.py` runs it and prints instructions per operation as a table.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use go_go_scope::prelude::*;
use gungraun::{library_benchmark, library_benchmark_group, main};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Operations per measured batch; `scripts/instructions.py` divides by it.
const BATCH: usize = 1_000;
/// Messages per measured batch in the channel benchmarks; `scripts/instructions.py` divides by it.
const MESSAGES: u64 = 10_000;
/// Tasks per measured batch in the concurrency-limit benchmarks; `scripts/instructions.py`
/// divides by it.
const LIMITED: usize = 10_000;
/// The concurrency limit of those benchmarks.
const LIMIT: usize = 100;
/// Channel capacity in the channel benchmarks.
const CAPACITY: usize = 100;
/// The timeout of the timeout benchmarks: long enough never to fire.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One operation, repeated `n` times per call of `run`, with the state it reuses across calls.
trait Op: Send + Sized + 'static {
    /// How many operations one measured batch runs.
    const BATCH: usize = BATCH;
    /// Builds the reused state (inside the runtime, not measured).
    fn new() -> Self;
    /// Runs `n` operations (a message counts as one operation in the channel benchmarks).
    fn run(&mut self, n: usize) -> impl Future<Output = ()> + Send;
    /// Releases the state (not measured).
    fn finish(self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A current-thread runtime and the state of one operation.
struct Fixture<O> {
    rt: Runtime,
    op: O,
}

/// Runs one batch inside a task spawned on the runtime, as application code runs: awaiting
/// from `block_on` itself would add a wake-up of the runtime's driver to every await.
fn batch<O: Op>(rt: &Runtime, mut op: O) -> O {
    rt.block_on(async move {
        tokio::spawn(async move {
            op.run(O::BATCH).await;
            op
        })
        .await
        .expect("the batch does not panic")
    })
}

/// gungraun setup: builds the runtime and the state, and runs one unmeasured warm-up batch so
/// that allocator and scheduler buffers are already at their working sizes.
fn prepare<O: Op>() -> Fixture<O> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let op = rt.block_on(async { O::new() });
    let op = batch(&rt, op);
    Fixture { rt, op }
}

/// The measured part: one batch.
fn measure<O: Op>(fixture: Fixture<O>) -> Fixture<O> {
    let Fixture { rt, op } = fixture;
    let op = batch(&rt, op);
    Fixture { rt, op }
}

/// gungraun teardown: releases the state outside the measured part.
fn finish<O: Op>(fixture: Fixture<O>) {
    let Fixture { rt, op } = fixture;
    rt.block_on(op.finish());
}

/// Declares one measured function per operation form.
macro_rules! instructions {
    ($($name:ident: $op:ty;)*) => {$(
        #[library_benchmark]
        #[bench::batch(args = (), setup = prepare::<$op>, teardown = finish::<$op>)]
        fn $name(fixture: Fixture<$op>) -> Fixture<$op> {
            measure(fixture)
        }
    )*};
}

// ---------------------------------------------------------------------------------------------
// Scope create + close.

struct CreateCloseTracker;
impl Op for CreateCloseTracker {
    fn new() -> Self {
        CreateCloseTracker
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let tracker = TaskTracker::new();
            let token = CancellationToken::new();
            tracker.close();
            token.cancel();
            tracker.wait().await;
            black_box((&tracker, &token));
        }
    }
}

struct CreateCloseJoinSet;
impl Op for CreateCloseJoinSet {
    fn new() -> Self {
        CreateCloseJoinSet
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let token = CancellationToken::new();
            let mut set: JoinSet<()> = JoinSet::new();
            token.cancel();
            set.shutdown().await;
            black_box((&set, &token));
        }
    }
}

struct CreateCloseScope;
impl Op for CreateCloseScope {
    fn new() -> Self {
        CreateCloseScope
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let scope = Scope::new().expect("scope");
            scope.close().await.expect("close");
            black_box(&scope);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Spawn + await one task. The tracker, the set and the scope are reused for the whole batch
// (one scope per 1 000 tasks).

struct SpawnTracker(TaskTracker, CancellationToken);
impl Op for SpawnTracker {
    fn new() -> Self {
        SpawnTracker(TaskTracker::new(), CancellationToken::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let v = self.0.spawn(async { 42_u64 }).await.expect("no panic");
            black_box(v);
        }
    }
    async fn finish(self) {
        self.0.close();
        self.1.cancel();
        self.0.wait().await;
    }
}

struct SpawnJoinSet(JoinSet<u64>);
impl Op for SpawnJoinSet {
    fn new() -> Self {
        SpawnJoinSet(JoinSet::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            self.0.spawn(async { 42_u64 });
            let v = self
                .0
                .join_next()
                .await
                .expect("one task")
                .expect("no panic");
            black_box(v);
        }
    }
}

struct SpawnScope(Scope);
impl Op for SpawnScope {
    fn new() -> Self {
        SpawnScope(Scope::new().expect("scope"))
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let (_, v) = self.0.spawn(async { 42_u64 }).await;
            black_box(v);
        }
    }
    async fn finish(self) {
        self.0.close().await.expect("close");
    }
}

// ---------------------------------------------------------------------------------------------
// `go!` in a `#[scoped]` fn: the batch is one call of the fn, so one scope create + close is
// spread over its 1 000 tasks (about one instruction per task).

#[scoped]
async fn go_batch(n: usize) -> Result<(), Error> {
    for _ in 0..n {
        let (_, v) = go!(async { 42_u64 }).await;
        black_box(v);
    }
    Ok(())
}

struct GoScoped;
impl Op for GoScoped {
    fn new() -> Self {
        GoScoped
    }
    async fn run(&mut self, n: usize) {
        go_batch(n).await.expect("scoped fn");
    }
}

// ---------------------------------------------------------------------------------------------
// A task under a 5 s timeout that never fires.

struct TimeoutTracker(TaskTracker);
impl Op for TimeoutTracker {
    fn new() -> Self {
        TimeoutTracker(TaskTracker::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let task = self
                .0
                .spawn(tokio::time::timeout(TIMEOUT, async { 42_u64 }));
            black_box(task.await.expect("no panic").ok());
        }
    }
}

struct TimeoutJoinSet(JoinSet<Result<u64, tokio::time::error::Elapsed>>);
impl Op for TimeoutJoinSet {
    fn new() -> Self {
        TimeoutJoinSet(JoinSet::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            self.0
                .spawn(tokio::time::timeout(TIMEOUT, async { 42_u64 }));
            let v = self
                .0
                .join_next()
                .await
                .expect("one task")
                .expect("no panic");
            black_box(v.ok());
        }
    }
}

struct TimeoutScope(Scope);
impl Op for TimeoutScope {
    fn new() -> Self {
        TimeoutScope(Scope::new().expect("scope"))
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let task = self
                .0
                .task_once(async { Ok::<_, Error>(42_u64) })
                .timeout(TIMEOUT)
                .spawn();
            black_box(task.await.1);
        }
    }
    async fn finish(self) {
        self.0.close().await.expect("close");
    }
}

// ---------------------------------------------------------------------------------------------
// A task whose first attempt fails and whose second succeeds, retried at once.

/// The hand-written retry, as in the `resilience` benchmarks: an attempt that fails once, tried
/// again in a loop.
async fn retry_loop() -> Result<u32, &'static str> {
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        let result: Result<u32, &str> = if black_box(attempt) == 1 {
            Err("transient")
        } else {
            Ok(attempt)
        };
        match result {
            Ok(v) => break Ok(v),
            Err(e) if attempt > 1 => break Err(e),
            Err(_) => continue,
        }
    }
}

struct RetryTracker(TaskTracker);
impl Op for RetryTracker {
    fn new() -> Self {
        RetryTracker(TaskTracker::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let v = self.0.spawn(retry_loop()).await.expect("no panic");
            black_box(v.ok());
        }
    }
}

struct RetryJoinSet(JoinSet<Result<u32, &'static str>>);
impl Op for RetryJoinSet {
    fn new() -> Self {
        RetryJoinSet(JoinSet::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            self.0.spawn(retry_loop());
            let v = self
                .0
                .join_next()
                .await
                .expect("one task")
                .expect("no panic");
            black_box(v.ok());
        }
    }
}

struct RetryScope(Scope);
impl Op for RetryScope {
    fn new() -> Self {
        RetryScope(Scope::new().expect("scope"))
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let task = self
                .0
                .task(|attempt| async move {
                    if black_box(attempt) == 1 {
                        Err("transient")
                    } else {
                        Ok(attempt)
                    }
                })
                .retry(1)
                .spawn();
            black_box(task.await.1);
        }
    }
    async fn finish(self) {
        self.0.close().await.expect("close");
    }
}

// ---------------------------------------------------------------------------------------------
// Spawn + await in a scope that counts and times its tasks. The raw forms do the least a
// hand-written version does: two clock reads around the body and one atomic add.

static TASK_NANOS: AtomicU64 = AtomicU64::new(0);

async fn timed_body() -> u64 {
    let start = Instant::now();
    let v = black_box(42_u64);
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    TASK_NANOS.fetch_add(nanos, Ordering::Relaxed);
    v
}

struct MetricsTracker(TaskTracker);
impl Op for MetricsTracker {
    fn new() -> Self {
        MetricsTracker(TaskTracker::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let v = self.0.spawn(timed_body()).await.expect("no panic");
            black_box(v);
        }
    }
}

struct MetricsJoinSet(JoinSet<u64>);
impl Op for MetricsJoinSet {
    fn new() -> Self {
        MetricsJoinSet(JoinSet::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            self.0.spawn(timed_body());
            let v = self
                .0
                .join_next()
                .await
                .expect("one task")
                .expect("no panic");
            black_box(v);
        }
    }
}

struct MetricsScope(Scope);
impl Op for MetricsScope {
    fn new() -> Self {
        MetricsScope(Scope::builder().metrics(true).build().expect("scope"))
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let (_, v) = self.0.spawn(async { 42_u64 }).await;
            black_box(v);
        }
    }
    async fn finish(self) {
        self.0.close().await.expect("close");
    }
}

// ---------------------------------------------------------------------------------------------
// Spawn + await one task in a scope built with `introspect(false)`: the same build without the
// live registry (no task record taken at spawn, none freed at the end). Against
// `spawn_await_scope`, the registry's cost per task.

struct UnrecordedScope(Scope);
impl Op for UnrecordedScope {
    fn new() -> Self {
        UnrecordedScope(Scope::builder().introspect(false).build().expect("scope"))
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let (_, v) = self.0.spawn(async { 42_u64 }).await;
            black_box(v);
        }
    }
    async fn finish(self) {
        self.0.close().await.expect("close");
    }
}

// Spawn + await one task that is suspended once (it yields) before it finishes: a task the
// live registry records (at its first suspension) and forgets (when it ends); with
// `introspect(false)`, the same without the registry.

struct YieldScope(Scope);
impl Op for YieldScope {
    fn new() -> Self {
        YieldScope(Scope::new().expect("scope"))
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let (_, v) = self
                .0
                .spawn(async {
                    tokio::task::yield_now().await;
                    42_u64
                })
                .await;
            black_box(v);
        }
    }
    async fn finish(self) {
        self.0.close().await.expect("close");
    }
}

struct YieldUnrecorded(Scope);
impl Op for YieldUnrecorded {
    fn new() -> Self {
        YieldUnrecorded(Scope::builder().introspect(false).build().expect("scope"))
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let (_, v) = self
                .0
                .spawn(async {
                    tokio::task::yield_now().await;
                    42_u64
                })
                .await;
            black_box(v);
        }
    }
    async fn finish(self) {
        self.0.close().await.expect("close");
    }
}

// ---------------------------------------------------------------------------------------------
// Three trivial tasks run together, all results collected (one operation = all three).

struct ParallelTracker(TaskTracker);
impl Op for ParallelTracker {
    fn new() -> Self {
        ParallelTracker(TaskTracker::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let tasks = [1_u64, 2, 3].map(|i| self.0.spawn(async move { i }));
            let mut sum = 0;
            for task in tasks {
                sum += task.await.expect("no panic");
            }
            black_box(sum);
        }
    }
}

struct ParallelJoinSet(JoinSet<u64>);
impl Op for ParallelJoinSet {
    fn new() -> Self {
        ParallelJoinSet(JoinSet::new())
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            for i in 1..=3_u64 {
                self.0.spawn(async move { i });
            }
            let mut sum = 0;
            while let Some(v) = self.0.join_next().await {
                sum += v.expect("no panic");
            }
            black_box(sum);
        }
    }
}

struct ParallelScope(Scope);
impl Op for ParallelScope {
    fn new() -> Self {
        ParallelScope(Scope::new().expect("scope"))
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let jobs = [1_u64, 2, 3].map(|i| async move { Ok::<_, Error>(i) });
            let outcomes = self.0.parallel(jobs, ParallelOpts::default()).await;
            let sum: u64 = outcomes.into_iter().filter_map(|(_, v)| v).sum();
            black_box(sum);
        }
    }
    async fn finish(self) {
        self.0.close().await.expect("close");
    }
}

// ---------------------------------------------------------------------------------------------
// A channel of capacity 100: one producer task sends `MESSAGES` values, the batch's own future
// receives them (one operation = one message; the channel and the producer are per batch).

struct ChannelTokio;
impl Op for ChannelTokio {
    const BATCH: usize = MESSAGES as usize;
    fn new() -> Self {
        ChannelTokio
    }
    async fn run(&mut self, n: usize) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
        let producer = tokio::spawn(async move {
            for i in 0..n as u64 {
                tx.send(i).await.expect("receiver alive");
            }
        });
        let mut sum = 0;
        while let Some(v) = rx.recv().await {
            sum += v;
        }
        producer.await.expect("producer");
        black_box(sum);
    }
}

struct ChannelScope;
impl Op for ChannelScope {
    const BATCH: usize = MESSAGES as usize;
    fn new() -> Self {
        ChannelScope
    }
    async fn run(&mut self, n: usize) {
        let ch = Channel::<u64>::new(CAPACITY);
        let tx = ch.clone();
        let producer = tokio::spawn(async move {
            for i in 0..n as u64 {
                tx.send(i).await.expect("channel open");
            }
            tx.close();
        });
        let mut sum = 0;
        while let Some(v) = ch.recv().await {
            sum += v;
        }
        producer.await.expect("producer");
        black_box(sum);
    }
}

// ---------------------------------------------------------------------------------------------
// Local scopes (`Scope::local`): tasks polled by the scope's own future. The batch runs in one
// local scope, as the tracker and the spawned scope are reused for a batch; the last form
// builds and closes a local scope for every three tasks.

fn local_builder() -> ScopeBuilder {
    Scope::builder().detached()
}

struct SpawnLocal;
impl Op for SpawnLocal {
    fn new() -> Self {
        SpawnLocal
    }
    async fn run(&mut self, n: usize) {
        Scope::local(local_builder(), |s| {
            Box::pin(async move {
                for _ in 0..n {
                    let (_, v) = s.spawn(async { 42_u64 }).await;
                    black_box(v);
                }
            })
        })
        .await
        .expect("local scope");
    }
}

struct ParallelLocal;
impl Op for ParallelLocal {
    fn new() -> Self {
        ParallelLocal
    }
    async fn run(&mut self, n: usize) {
        Scope::local(local_builder(), |s| {
            Box::pin(async move {
                for _ in 0..n {
                    let tasks = [1_u64, 2, 3].map(|i| s.spawn(async move { i }));
                    let mut sum = 0;
                    for task in tasks {
                        sum += task.await.1.unwrap_or(0);
                    }
                    black_box(sum);
                }
            })
        })
        .await
        .expect("local scope");
    }
}

struct ParallelLocalEach;
impl Op for ParallelLocalEach {
    fn new() -> Self {
        ParallelLocalEach
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let sum = Scope::local(local_builder(), |s| {
                Box::pin(async move {
                    let tasks = [1_u64, 2, 3].map(|i| s.spawn(async move { i }));
                    let mut sum = 0;
                    for task in tasks {
                        sum += task.await.1.unwrap_or(0);
                    }
                    sum
                })
            })
            .await
            .expect("local scope");
            black_box(sum);
        }
    }
}

// moro-local beside the local scopes. Its scope's future is not `Send`, so its batch runs in a
// task spawned on a `LocalSet` of the same current-thread runtime: the same place in the
// runtime as the other forms' batches.

/// An operation whose futures are not `Send`; as [`Op`] otherwise.
trait UnsendOp: Sized + 'static {
    const BATCH: usize = BATCH;
    fn new() -> Self;
    fn run(&mut self, n: usize) -> impl Future<Output = ()>;
}

fn batch_unsend<O: UnsendOp>(rt: &Runtime, op: O) -> O {
    let set = tokio::task::LocalSet::new();
    set.block_on(rt, async move {
        tokio::task::spawn_local(async move {
            let mut op = op;
            op.run(O::BATCH).await;
            op
        })
        .await
        .expect("the batch does not panic")
    })
}

fn prepare_unsend<O: UnsendOp>() -> Fixture<O> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let op = batch_unsend(&rt, O::new());
    Fixture { rt, op }
}

fn measure_unsend<O: UnsendOp>(fixture: Fixture<O>) -> Fixture<O> {
    let Fixture { rt, op } = fixture;
    let op = batch_unsend(&rt, op);
    Fixture { rt, op }
}

fn finish_unsend<O: UnsendOp>(fixture: Fixture<O>) {
    drop(fixture);
}

struct SpawnMoro;
impl UnsendOp for SpawnMoro {
    fn new() -> Self {
        SpawnMoro
    }
    async fn run(&mut self, n: usize) {
        moro_local::async_scope!(|scope| {
            for _ in 0..n {
                let v = scope.spawn(async { 42_u64 }).await;
                black_box(v);
            }
        })
        .await;
    }
}

struct ParallelMoro;
impl UnsendOp for ParallelMoro {
    fn new() -> Self {
        ParallelMoro
    }
    async fn run(&mut self, n: usize) {
        moro_local::async_scope!(|scope| {
            for _ in 0..n {
                let tasks = [1_u64, 2, 3].map(|i| scope.spawn(async move { i }));
                let mut sum = 0;
                for task in tasks {
                    sum += task.await;
                }
                black_box(sum);
            }
        })
        .await;
    }
}

struct ParallelMoroEach;
impl UnsendOp for ParallelMoroEach {
    fn new() -> Self {
        ParallelMoroEach
    }
    async fn run(&mut self, n: usize) {
        for _ in 0..n {
            let sum = moro_local::async_scope!(|scope| {
                let tasks = [1_u64, 2, 3].map(|i| scope.spawn(async move { i }));
                let mut sum = 0;
                for task in tasks {
                    sum += task.await;
                }
                sum
            })
            .await;
            black_box(sum);
        }
    }
}

macro_rules! instructions_unsend {
    ($($name:ident: $op:ty;)*) => {$(
        #[library_benchmark]
        #[bench::batch(args = (), setup = prepare_unsend::<$op>, teardown = finish_unsend::<$op>)]
        fn $name(fixture: Fixture<$op>) -> Fixture<$op> {
            measure_unsend(fixture)
        }
    )*};
}

instructions_unsend! {
    spawn_await_moro: SpawnMoro;
    parallel3_moro: ParallelMoro;
    parallel3_moro_each: ParallelMoroEach;
}

/// 10 000 tasks under a limit of 100: raw Tokio with a semaphore each task waits on.
struct LimitedTracker(TaskTracker);
impl Op for LimitedTracker {
    const BATCH: usize = LIMITED;
    fn new() -> Self {
        LimitedTracker(TaskTracker::new())
    }
    async fn run(&mut self, n: usize) {
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(LIMIT));
        let tasks: Vec<_> = (0..n as u64)
            .map(|i| {
                let limit = std::sync::Arc::clone(&limit);
                self.0.spawn(async move {
                    let _permit = limit.acquire_owned().await.expect("open");
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for task in tasks {
            sum += task.await.expect("no panic");
        }
        black_box(sum);
    }
}

struct LimitedLocal;
impl Op for LimitedLocal {
    const BATCH: usize = LIMITED;
    fn new() -> Self {
        LimitedLocal
    }
    async fn run(&mut self, n: usize) {
        Scope::local(local_builder().concurrency(LIMIT), |s| {
            Box::pin(async move {
                let tasks: Vec<_> = (0..n as u64).map(|i| s.spawn(async move { i })).collect();
                let mut sum = 0;
                for task in tasks {
                    sum += task.await.1.unwrap_or(0);
                }
                black_box(sum);
            })
        })
        .await
        .expect("local scope");
    }
}

// ---------------------------------------------------------------------------------------------

instructions! {
    create_close_tracker: CreateCloseTracker;
    create_close_joinset: CreateCloseJoinSet;
    create_close_scope: CreateCloseScope;
    spawn_await_tracker: SpawnTracker;
    spawn_await_joinset: SpawnJoinSet;
    spawn_await_scope: SpawnScope;
    go_scoped_scope: GoScoped;
    timeout_tracker: TimeoutTracker;
    timeout_joinset: TimeoutJoinSet;
    timeout_scope: TimeoutScope;
    retry_once_tracker: RetryTracker;
    retry_once_joinset: RetryJoinSet;
    retry_once_scope: RetryScope;
    metrics_tracker: MetricsTracker;
    metrics_joinset: MetricsJoinSet;
    metrics_scope: MetricsScope;
    unrecorded_scope: UnrecordedScope;
    yield_scope: YieldScope;
    yield_unrecorded: YieldUnrecorded;
    parallel3_tracker: ParallelTracker;
    parallel3_joinset: ParallelJoinSet;
    parallel3_scope: ParallelScope;
    channel_tokio: ChannelTokio;
    channel_scope: ChannelScope;
    spawn_await_local: SpawnLocal;
    parallel3_local: ParallelLocal;
    parallel3_local_each: ParallelLocalEach;
    limited_tracker: LimitedTracker;
    limited_local: LimitedLocal;
}

library_benchmark_group!(
    name = per_operation,
    benchmarks = [
        create_close_tracker,
        create_close_joinset,
        create_close_scope,
        spawn_await_tracker,
        spawn_await_joinset,
        spawn_await_scope,
        go_scoped_scope,
        timeout_tracker,
        timeout_joinset,
        timeout_scope,
        retry_once_tracker,
        retry_once_joinset,
        retry_once_scope,
        metrics_tracker,
        metrics_joinset,
        metrics_scope,
        unrecorded_scope,
        yield_scope,
        yield_unrecorded,
        parallel3_tracker,
        parallel3_joinset,
        parallel3_scope,
        channel_tokio,
        channel_scope,
        spawn_await_local,
        parallel3_local,
        parallel3_local_each,
        spawn_await_moro,
        parallel3_moro,
        parallel3_moro_each,
        limited_tracker,
        limited_local
    ]
);

main!(library_benchmark_groups = per_operation);
