use go_go_scope::prelude::*;

async fn fetch(id: u32) -> u32 {
    id
}

#[scoped]
async fn load() -> Result<u32, Error> {
    let task = go!(nmae = "fetch", timeout = "0s", fetch(1));
    task.result().await
}

fn main() {
    let _ = load();
}
