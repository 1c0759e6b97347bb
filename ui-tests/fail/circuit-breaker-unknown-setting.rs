use go_go_scope::prelude::*;

#[scoped(circuit_breaker(failure_treshold = 3))]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
