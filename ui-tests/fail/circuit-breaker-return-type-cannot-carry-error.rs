use go_go_scope::prelude::*;

#[scoped(circuit_breaker(failure_threshold = 3))]
async fn count() -> Option<u32> {
    Some(1)
}

fn main() {
    let _ = count();
}
