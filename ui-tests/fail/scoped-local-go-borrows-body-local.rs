//! Tasks of a `#[scoped(local)]` fn may borrow its arguments, which outlive the scope, but not a
//! variable declared in its body, which lives inside the scope.
use go_go_scope::prelude::*;

#[scoped(local)]
async fn total(ids: &[u32]) -> u32 {
    let doubled: Vec<u32> = ids.iter().map(|id| id * 2).collect();
    go!(async { doubled.iter().sum::<u32>() }).await.1.unwrap_or(0)
}

fn main() {
    let _ = total(&[1, 2]);
}
