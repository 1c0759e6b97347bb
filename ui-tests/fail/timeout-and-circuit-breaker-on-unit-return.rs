use go_go_scope::prelude::*;

// Both options need a return type that can carry the error: one error, at `()`.
#[scoped(timeout = "1s", circuit_breaker(failure_threshold = 2))]
async fn ping() -> () {}

fn main() {
    let _ = ping();
}
