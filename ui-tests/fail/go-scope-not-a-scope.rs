use go_go_scope::prelude::*;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let scope_name = "requests";
    let _ = go!(scope = scope_name, async { 1 });
}
