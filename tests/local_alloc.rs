//! What a local task allocates: its boxed future and its handle's slot, nothing else (its place
//! in the scope's task set is reused). Counted with a global allocator that counts the current thread's
//! allocations, so the figures are exact, not timed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use go_go_scope::Scope;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the only addition is a
// count in a thread-local `Cell`, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| {
            let (n, bytes) = c.get();
            c.set((n + 1, bytes + layout.size()));
        });
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> (usize, usize) {
    ALLOCATIONS.with(Cell::get)
}

#[tokio::test(flavor = "current_thread")]
async fn a_local_task_allocates_its_future_and_its_slot() {
    let data = [1_u64, 2, 3];
    let counts = Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            // The first spawn may grow the task set's own buffers; count a later one.
            s.spawn(async { 0 }).await;
            let before = allocations();
            let task = s.spawn(async { data.iter().sum::<u64>() });
            let after = allocations();
            assert_eq!(task.await.1, Some(6));
            (after.0 - before.0, after.1 - before.1)
        })
    })
    .await
    .unwrap();
    println!(
        "one local task: {} allocations, {} bytes",
        counts.0, counts.1
    );
    assert_eq!(counts.0, 2, "the boxed future, the handle's slot");
}
