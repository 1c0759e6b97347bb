use go_go_scope::prelude::*;

#[scoped]
async fn load() -> Result<u32, Error> {
    go!(name = "fetch").result().await
}

fn main() {
    let _ = load();
}
