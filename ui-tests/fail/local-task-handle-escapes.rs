//! A local task's handle cannot leave the body of its scope.
use go_go_scope::Scope;

async fn escape() {
    let handle = Scope::local(Scope::builder(), |s| Box::pin(async { s.spawn(async { 1 }) }))
        .await
        .unwrap();
    let _ = handle.await;
}

fn main() {
    let _ = escape();
}
