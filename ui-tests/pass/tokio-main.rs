//! `#[scoped]` goes above `#[tokio::main]`: it must see the fn while it is still `async`.
use go_go_scope::prelude::*;

#[scoped(name = "main", timeout = "10s")]
#[tokio::main]
async fn main() -> Result<(), Error> {
    assert_eq!(Scope::current().name(), "main");
    let answer = go!(async { 42 }).result().await?;
    assert_eq!(answer, 42);
    Ok(())
}
