use go_go_scope::prelude::*;

#[scoped(timeout = "30 seconds")]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
