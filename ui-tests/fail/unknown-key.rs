use go_go_scope::prelude::*;

#[scoped(deadline = "1s")]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
