use go_go_scope::prelude::*;

// Without `->` the fn returns `()`, which has no room for the timeout error.
#[scoped(timeout = "50ms")]
async fn job() {
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

fn main() {
    let _ = job();
}
