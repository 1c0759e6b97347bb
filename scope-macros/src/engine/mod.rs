//! Everything the macros do, as plain functions over `proc_macro2` tokens.
//!
//! Nothing here touches `proc_macro`, so these functions run outside the compiler: in unit
//! tests, and in a fuzz target that includes this directory with
//! `#[path = ".../scope-macros/src/engine/mod.rs"] mod engine;` (modules here refer to each
//! other with `super::`, never `crate::`, for that reason).
//!
//! Each macro is parse → validate → expand. Parsing and validation record every problem they
//! find; expansion runs only when there is none. On errors, `#[scoped]` emits the user's fn
//! unchanged beside the errors, so the rest of the crate still type-checks against it.

pub mod args;
pub mod diag;
pub mod duration;
pub mod expand;
pub mod item;
pub mod validate;

use proc_macro2::{Span, TokenStream};

use self::diag::{Errors, with_help};

/// `#[scoped(attr)] item`.
pub fn scoped(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = match parse_scoped_args(attr) {
        Ok(args) => Some(args),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let parsed = match item::parse(item.clone()) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    if let Some(parsed) = &parsed {
        // Without valid arguments, still report what is wrong with the fn itself.
        let fallback = args::ScopedArgs::default();
        validate::scoped_fn(args.as_ref().unwrap_or(&fallback), parsed, &mut errors);
    }
    match (args, parsed) {
        (Some(args), Some(parsed)) if errors.is_empty() => expand::scoped(&args, parsed),
        _ => {
            let mut out = item;
            out.extend(errors.to_compile_errors());
            out
        }
    }
}

/// `go!(input)`.
pub fn go(input: TokenStream) -> TokenStream {
    match parse_go_args(input) {
        Ok(args) => expand::go(&args),
        Err(error) => error.to_compile_error(),
    }
}

/// `try_go!(input)` or, with `raw`, `try_go_raw!(input)`.
pub fn try_go(input: TokenStream, raw: bool) -> TokenStream {
    if input.is_empty() {
        let name = if raw { "try_go_raw" } else { "try_go" };
        return syn::Error::new(
            Span::call_site(),
            with_help(
                format!("`{name}!` needs an expression"),
                format!(
                    "write `{name}!(text.parse::<u32>())`, or `{name}!(fetch().await)` for a future"
                ),
            ),
        )
        .to_compile_error();
    }
    expand::try_go(input, raw)
}

/// Parses and validates the arguments of `#[scoped(..)]` (the part inside the parentheses).
pub fn parse_scoped_args(tokens: TokenStream) -> Result<args::ScopedArgs, syn::Error> {
    let mut errors = Errors::default();
    let args = args::scoped_args(tokens, &mut errors);
    validate::scoped_args(&args, &mut errors);
    errors.finish(args)
}

/// Parses and validates the input of `go!(..)`.
pub fn parse_go_args(tokens: TokenStream) -> Result<args::GoArgs, syn::Error> {
    let mut errors = Errors::default();
    let args = args::go_args(tokens, &mut errors);
    validate::go_args(&args, &mut errors);
    errors.finish(args)
}
