use go_go_scope::prelude::*;

#[scoped(concurrency = 0)]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
