//! The macro engine, included from the macro crate's sources (it only uses `proc_macro2`,
//! `syn` and `quote`, so it runs outside the compiler).

#[allow(dead_code, unused_imports)]
#[path = "../../scope-macros/src/engine/mod.rs"]
pub mod engine;

/// Lexes fuzzer bytes into tokens, if they are valid UTF-8 that lexes.
#[allow(dead_code)] // not every target lexes
pub fn tokens(data: &[u8]) -> Option<proc_macro2::TokenStream> {
    let text = std::str::from_utf8(data).ok()?;
    text.parse().ok()
}
