use go_go_scope::prelude::*;

// Each negative count is its own error.
#[scoped(concurrency = -1, retry = -2)]
async fn crawl() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = crawl();
}
