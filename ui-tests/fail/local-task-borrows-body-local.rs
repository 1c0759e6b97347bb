//! A task may borrow what outlives the scope, not what lives only inside its body.
use go_go_scope::Scope;

async fn count() -> usize {
    Scope::local(Scope::builder(), |s| {
        Box::pin(async {
            let data = vec![1, 2, 3];
            s.spawn(async { data.len() }).await.1.unwrap_or(0)
        })
    })
    .await
    .unwrap_or(0)
}

fn main() {
    let _ = count();
}
