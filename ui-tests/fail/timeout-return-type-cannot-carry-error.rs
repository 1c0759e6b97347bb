use go_go_scope::prelude::*;

#[scoped(timeout = "1s")]
async fn count() -> u32 {
    1
}

fn main() {
    let _ = count();
}
