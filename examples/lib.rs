//! The runnable examples live beside this file (`cargo run -p go-go-scope-examples --example
//! NAME`). This library holds nothing of its own: it exists so that every Rust code block of the
//! guide in `docs/` and of the README is compiled and run as a doctest by `cargo test`, against
//! the same crate versions as the examples.

#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../README.md")]
    mod readme {}
    #[doc = include_str!("../docs/quick-start.md")]
    mod quick_start {}
    #[doc = include_str!("../docs/concepts.md")]
    mod concepts {}
    #[doc = include_str!("../docs/resilience.md")]
    mod resilience {}
    #[doc = include_str!("../docs/concurrency.md")]
    mod concurrency {}
    #[doc = include_str!("../docs/observability.md")]
    mod observability {}
    #[doc = include_str!("../docs/testing.md")]
    mod testing {}
    #[doc = include_str!("../docs/services.md")]
    mod services {}
}

pub mod shop;
