//! A `#[scoped(local)]` fn is a `Send` future, so what its `go!` spawns must be `Send`.
use std::rc::Rc;

use go_go_scope::prelude::*;

#[scoped(local)]
async fn count(base: &usize) -> usize {
    let task = go!(async {
        let held = Rc::new(*base);
        tokio::task::yield_now().await;
        *held
    });
    task.await.1.unwrap_or(0)
}

fn main() {
    let _ = count(&3);
}
