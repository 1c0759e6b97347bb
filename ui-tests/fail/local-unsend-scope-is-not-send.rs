//! A local scope of tasks that need not be `Send` is not a `Send` future: it cannot be handed to
//! `tokio::spawn` (an axum handler, a multi-threaded runtime) — use `Scope::local` there.
use go_go_scope::Scope;

async fn handler() -> usize {
    let data = vec![1, 2, 3];
    Scope::local_unsend(Scope::builder(), |s| {
        Box::pin(async { s.spawn(async { data.len() }).await.1.unwrap_or(0) })
    })
    .await
    .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let _ = tokio::spawn(handler()).await;
}
