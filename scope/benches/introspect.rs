//! What a look at the live tree costs: a snapshot of one scope with 10 000 live
//! tasks, each waiting on a channel, then its text and JSON renderings.
//!
//! Run: `cargo bench -p go-go-scope --features introspect-json --bench introspect`.

use criterion::{Criterion, criterion_group, criterion_main};
use go_go_scope::Scope;

/// Live tasks in the measured scope.
const TASKS: usize = 10_000;

fn snapshot_of_ten_thousand_tasks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (scope, inbox) = rt.block_on(async {
        let scope = Scope::builder().name("bench").build().expect("scope");
        let inbox = scope.channel::<u64>(1);
        for _ in 0..TASKS {
            let rx = inbox.clone();
            drop(scope.spawn(async move { rx.recv().await }));
        }
        // Every task reaches its wait before anything is measured.
        while scope
            .tree()
            .tasks()
            .filter(|(_, t)| t.state.waiting_on().is_some())
            .count()
            < TASKS
        {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        (scope, inbox)
    });
    let mut g = c.benchmark_group("introspect_10k_tasks");
    g.bench_function("snapshot", |b| {
        b.iter(|| std::hint::black_box(scope.tree()))
    });
    let tree = scope.tree();
    assert_eq!(tree.scopes[0].tasks.len(), TASKS);
    g.bench_function("render_text", |b| {
        b.iter(|| std::hint::black_box(tree.to_string()))
    });
    g.bench_function("render_json", |b| {
        b.iter(|| std::hint::black_box(tree.to_json()))
    });
    g.finish();
    inbox.close();
    rt.block_on(async { scope.close().await.expect("close") });
}

criterion_group!(benches, snapshot_of_ten_thousand_tasks);
criterion_main!(benches);
