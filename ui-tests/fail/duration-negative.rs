use go_go_scope::prelude::*;

async fn fetch() -> u32 {
    1
}

// A negative duration, as a string and as a number: two errors.
#[scoped(timeout = "-1s")]
async fn quick() -> Result<u32, Error> {
    go!(timeout = -5, fetch()).result().await
}

fn main() {
    let _ = quick();
}
