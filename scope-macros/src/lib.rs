//! Procedural macros for go-go-scope.

mod engine;

use proc_macro::TokenStream;

/// Runs an async fn's body in its own scope.
#[proc_macro_attribute]
pub fn scoped(attr: TokenStream, item: TokenStream) -> TokenStream {
    engine::scoped(attr.into(), item.into()).into()
}

/// Spawns a future into the current scope.
#[proc_macro]
pub fn go(input: TokenStream) -> TokenStream {
    engine::go(input.into()).into()
}

/// Turns a fallible expression into `(Option<String>, Option<T>)`.
#[proc_macro]
pub fn try_go(input: TokenStream) -> TokenStream {
    engine::try_go(input.into(), false).into()
}

/// Turns a fallible expression into `(Option<E>, Option<T>)`.
#[proc_macro]
pub fn try_go_raw(input: TokenStream) -> TokenStream {
    engine::try_go(input.into(), true).into()
}
