use go_go_scope::prelude::*;

// `String` has no `From<go_go_scope::Error>`, so the timeout error cannot be returned.
#[scoped(timeout = "1s")]
async fn read_config() -> Result<u32, String> {
    Ok(1)
}

fn main() {
    let _ = read_config();
}
