use go_go_scope::prelude::*;

#[scoped]
async fn load() -> Result<u32, Error> {
    go!(timeout = "0s", async { 1_u32 }).result().await
}

fn main() {
    let _ = load();
}
