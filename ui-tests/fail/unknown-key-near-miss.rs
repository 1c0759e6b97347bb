use go_go_scope::prelude::*;

#[scoped(timout = "30s")]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
