use go_go_scope::prelude::*;

async fn fetch(id: u32) -> u32 {
    id
}

#[scoped]
async fn load() -> Result<u32, Error> {
    go!(name = "fetch" fetch(1)).result().await
}

fn main() {
    let _ = load();
}
