//! `crate = ".."` points the generated code at another path to the runtime (a renamed
//! dependency, or a re-export).
mod runtime {
    pub use go_go_scope::*;
}

use go_go_scope::prelude::*;

#[scoped(crate = "crate::runtime", timeout = "1s", circuit_breaker(failure_threshold = 3))]
async fn load() -> Result<u32, Error> {
    go!(crate = "crate::runtime", name = "one", async { 1_u32 })
        .result()
        .await
}

#[tokio::main]
async fn main() {
    assert_eq!(load().await.unwrap(), 1);
}
