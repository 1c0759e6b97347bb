//! A local scope cannot leave its body either (its tasks could then be spawned unpolled).
use go_go_scope::Scope;

async fn escape() {
    let scope = Scope::local(Scope::builder(), |s| Box::pin(async move { s }))
        .await
        .unwrap();
    let _ = scope.spawn(async { 1 });
}

fn main() {
    let _ = escape();
}
