use go_go_scope::prelude::*;

#[scoped(timeout = "5s")]
#[tokio::main]
async fn main() {
    let _ = go!(async { 1 });
}
