use go_go_scope::prelude::*;
use std::rc::Rc;

#[scoped]
async fn load() -> Result<usize, Error> {
    go!(async {
        let shared = Rc::new(5);
        tokio::task::yield_now().await;
        *shared
    })
    .result()
    .await
}

fn main() {
    let _ = load();
}
