use go_go_scope::prelude::*;

#[scoped(retry(delay = "100ms"))]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
