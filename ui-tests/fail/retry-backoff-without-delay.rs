use go_go_scope::prelude::*;

#[scoped(retry(max = 3, backoff = "exponential"))]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
