//! The fn `#[scoped]` is applied to, read only as far as the macro needs: attributes,
//! visibility and signature are parsed; the body stays an unparsed brace group, so it is
//! re-emitted token for token (and costs the compiler no second parse).

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, FnArg, Pat, ReturnType, Signature, Type, Visibility};

use super::diag::with_help;

/// An `async fn` (free, method, or trait default) with its body kept as tokens.
pub(crate) struct ScopedFn {
    /// Outer attributes (`#[tokio::main]`, docs, ...), kept in place.
    pub attrs: Vec<Attribute>,
    /// `pub`, `pub(crate)`, ...
    pub vis: Visibility,
    /// Everything from `const`/`async` to the where clause.
    pub sig: Signature,
    /// `{ ... }`.
    pub body: Group,
}

impl ScopedFn {
    /// The return type, when the fn declares one.
    pub(crate) fn return_type(&self) -> Option<&Type> {
        match &self.sig.output {
            ReturnType::Type(_, ty) => Some(ty),
            ReturnType::Default => None,
        }
    }

    /// The names of the arguments, `self` included; arguments bound by a pattern other than a
    /// plain name have none.
    pub(crate) fn argument_names(&self) -> Vec<String> {
        self.sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                FnArg::Receiver(_) => Some("self".to_owned()),
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(ident) => Some(ident.ident.to_string()),
                    _ => None,
                },
            })
            .collect()
    }
}

impl ScopedFn {
    /// The plainly named arguments (not `self`, not patterns), with their own spans so
    /// generated code that reads them resolves to the fn's parameters.
    pub(crate) fn named_arguments(&self) -> Vec<syn::Ident> {
        self.sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(ident) => Some(ident.ident.clone()),
                    _ => None,
                },
                FnArg::Receiver(_) => None,
            })
            .collect()
    }
}

/// True when `tokens` contain `impl` (an `impl Trait` type cannot be named in a `let`).
pub(crate) fn mentions_impl_trait(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl_trait(group.stream()),
        _ => false,
    })
}

/// Reads the item; `Err` when it is not a fn with a body (the checks on the signature, such as
/// `async`, are `validate`'s).
pub(crate) fn parse(tokens: TokenStream) -> syn::Result<ScopedFn> {
    let parser = |input: ParseStream| {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let item_start = input.span();
        let sig: Signature = input.parse().map_err(|_| not_a_fn(item_start))?;
        let body = match input.parse::<TokenTree>() {
            Ok(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => group,
            _ => {
                return Err(syn::Error::new(
                    sig.ident.span(),
                    with_help(
                        "#[scoped] needs a fn with a body",
                        "put #[scoped] on the fn's definition, not on a declaration without a body",
                    ),
                ));
            }
        };
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the fn's body"));
        }
        Ok(ScopedFn {
            attrs,
            vis,
            sig,
            body,
        })
    };
    parser.parse2(tokens)
}

fn not_a_fn(span: Span) -> syn::Error {
    syn::Error::new(
        span,
        with_help(
            "#[scoped] can only be applied to an `async fn`",
            "put it on an async fn, method or `async fn main`; to scope a block of code inside \
             another item, use `Scope::run`",
        ),
    )
}
