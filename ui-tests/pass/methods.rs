//! `#[scoped]` on methods taking `&self`, `&mut self` and `self`.
use go_go_scope::prelude::*;

struct Client {
    base: String,
}

impl Client {
    #[scoped(timeout = "5s", name = "client.get")]
    async fn get(&self, path: &str) -> Result<String, Error> {
        let url = format!("{}{path}", self.base);
        go!(async move { url }).result().await
    }

    #[scoped]
    async fn rename(&mut self, base: String) {
        self.base = base;
    }

    #[scoped(metrics)]
    async fn into_base(self) -> (Option<Error>, Option<String>) {
        go!(async move { self.base }).await
    }
}

#[tokio::main]
async fn main() {
    let mut client = Client { base: "http://a".into() };
    assert_eq!(client.get("/x").await.unwrap(), "http://a/x");
    client.rename("http://b".into()).await;
    assert_eq!(client.into_base().await.1.as_deref(), Some("http://b"));
}
