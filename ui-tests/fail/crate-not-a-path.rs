use go_go_scope::prelude::*;

#[scoped(crate = "not a path")]
async fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
