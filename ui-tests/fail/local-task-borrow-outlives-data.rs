//! A local task's borrow cannot outlive the data it borrows: the scope's future holds it.
use go_go_scope::Scope;

async fn count() -> usize {
    let scope = {
        let data = vec![1, 2, 3];
        Scope::local(Scope::builder(), |s| {
            Box::pin(async { s.spawn(async { data.len() }).await.1.unwrap_or(0) })
        })
    };
    scope.await.unwrap_or(0)
}

fn main() {
    let _ = count();
}
