use go_go_scope::prelude::*;

#[scoped(timeout = "1s")]
#[scoped(concurrency = 2)]
async fn crawl() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = crawl();
}
