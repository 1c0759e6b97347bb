use go_go_scope::prelude::*;

#[scoped]
async fn load(id: u64) -> Result<u64, Error> {
    go!(name = id, async move { id }).result().await
}

fn main() {
    let _ = load(1);
}
