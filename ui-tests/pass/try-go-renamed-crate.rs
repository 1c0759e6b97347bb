//! `try_go!(crate = "..", expr)` and `try_go_raw!(crate = "..", expr)` point the generated code
//! at another path to the runtime, like `crate = ".."` on `#[scoped]` and `go!`.
mod runtime {
    pub use go_go_scope::*;
}

use go_go_scope::{try_go, try_go_raw};

#[tokio::main]
async fn main() {
    let (err, port) = try_go!(crate = "crate::runtime", "8080".parse::<u16>());
    assert!(err.is_none());
    assert_eq!(port, Some(8080));
    let (err, _) = try_go_raw!(crate = "crate::runtime", async { "x".parse::<u8>() }.await);
    assert!(err.is_some());
}
