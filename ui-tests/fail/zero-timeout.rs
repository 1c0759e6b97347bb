use go_go_scope::prelude::*;

#[scoped(timeout = "0ms")]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
