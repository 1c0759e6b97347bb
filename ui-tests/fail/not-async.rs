use go_go_scope::prelude::*;

#[scoped(timeout = "1s")]
fn load() -> Result<u32, Error> {
    Ok(1)
}

fn main() {
    let _ = load();
}
