use go_go_scope::prelude::*;

#[scoped(circuit_breaker(failure_threshold = 0, reset_timeout = "30s"))]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
