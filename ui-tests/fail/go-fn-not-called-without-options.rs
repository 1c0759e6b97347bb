use go_go_scope::prelude::*;

async fn fetch() -> u32 {
    1
}

#[scoped]
async fn load() -> Result<u32, Error> {
    go!(fetch).result().await
}

fn main() {
    let _ = load();
}
