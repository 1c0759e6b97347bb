//! `Scope::local` is a `Send` future, so its tasks must be `Send`; `local_unsend` takes others.
use std::rc::Rc;

use go_go_scope::Scope;

async fn count(base: &usize) -> usize {
    Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            s.spawn(async {
                let held = Rc::new(*base);
                tokio::task::yield_now().await;
                *held
            })
            .await
            .1
            .unwrap_or(0)
        })
    })
    .await
    .unwrap_or(0)
}

fn main() {
    let _ = count(&3);
}
