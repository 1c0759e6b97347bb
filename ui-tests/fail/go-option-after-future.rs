use go_go_scope::prelude::*;

async fn fetch(id: u32) -> u32 {
    id
}

#[scoped]
async fn load() -> Result<u32, Error> {
    go!(fetch(1), name = "fetch").result().await
}

fn main() {
    let _ = load();
}
