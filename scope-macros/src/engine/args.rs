//! Parsing the arguments of `#[scoped(..)]` and the options of `go!(..)` into typed values, each
//! kept with the span of the token it came from.
//!
//! This stage checks shape (known key, given once, value of the right kind, duration literals
//! well formed); rules about values (zero, conflicts, names of the fn's arguments) are checked
//! by `validate`. Every problem is recorded and parsing goes on with the next argument, so one
//! compile reports them all.

use std::collections::HashMap;
use std::time::Duration;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitStr, Token};

use super::diag::{Errors, list, suggest, with_help};
use super::duration::{self, VALID_FORMS};

/// Every argument `#[scoped(..)]` accepts, in the order the docs present them.
pub(crate) const SCOPED_KEYS: &[&str] = &[
    "timeout",
    "name",
    "tracer",
    "concurrency",
    "metrics",
    "circuit_breaker",
    "retry",
    "parent",
    "parent_from",
    "attrs",
    "skip",
    "skip_all",
    "wait",
    "local",
    "crate",
];

/// Every option `go!(..)` accepts before its future.
pub(crate) const GO_KEYS: &[&str] = &["name", "timeout", "retry", "attrs", "scope", "crate"];

/// The settings of `circuit_breaker(..)`.
pub(crate) const BREAKER_KEYS: &[&str] = &["failure_threshold", "reset_timeout"];

/// The settings of `retry(..)`.
pub(crate) const RETRY_KEYS: &[&str] = &["max", "delay", "backoff", "jitter", "max_delay"];

/// A duration: a literal parsed now, or an expression of type `Duration` evaluated at run time.
#[derive(Clone)]
pub(crate) enum DurationArg {
    /// `"30s"`.
    Literal {
        /// The parsed value.
        value: Duration,
        /// The string literal.
        span: Span,
    },
    /// Any other expression.
    Expr(Box<Expr>),
}

/// A count: an integer literal checked now, or an expression evaluated at run time.
#[derive(Clone)]
pub(crate) enum CountArg {
    /// `4`.
    Literal {
        /// The value.
        value: u64,
        /// The literal.
        span: Span,
    },
    /// Any other expression.
    Expr(Box<Expr>),
}

/// `backoff = ".."` in `retry(..)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Backoff {
    /// The same delay before every retry.
    Fixed,
    /// The delay doubles before each retry.
    Exponential,
}

/// `retry(max = .., delay = .., backoff = .., jitter, max_delay = ..)`.
#[derive(Clone)]
pub(crate) struct RetryPolicy {
    /// `max = N`.
    pub max: Option<u32>,
    /// `delay = ".."`.
    pub delay: Option<DurationArg>,
    /// `backoff = ".."`, with the span of its value.
    pub backoff: Option<(Backoff, Span)>,
    /// `jitter`.
    pub jitter: Option<Span>,
    /// `max_delay = ".."`, with the span of its key.
    pub max_delay: Option<(DurationArg, Span)>,
    /// The `retry` key.
    pub span: Span,
}

/// What `retry` was given.
#[derive(Clone)]
pub(crate) enum RetryArg {
    /// `retry = 3`.
    Count(u32),
    /// `retry = EXPR` (anything `Into<Retry>`).
    Expr(Box<Expr>),
    /// `retry(..)`.
    Policy(RetryPolicy),
    /// `go!(retry, ..)`: re-runnable, under the scope's default policy.
    ScopeDefault,
}

/// What `circuit_breaker` was given.
#[derive(Clone)]
pub(crate) enum BreakerArg {
    /// `circuit_breaker(failure_threshold = .., reset_timeout = ..)`; unset values keep the
    /// runtime's defaults.
    Config {
        /// `failure_threshold = N` and the literal's span.
        failure_threshold: Option<(u32, Span)>,
        /// `reset_timeout = ".."`.
        reset_timeout: Option<DurationArg>,
    },
    /// `circuit_breaker = EXPR`: a breaker the caller owns.
    Expr(Box<Expr>),
}

/// What `tracer` was given.
#[derive(Clone)]
pub(crate) enum TracerArg {
    /// `tracer`: the global tracer provider.
    Global,
    /// `tracer = EXPR`.
    Expr(Box<Expr>),
}

/// One `"key" = value` of `attrs(..)`.
#[derive(Clone)]
pub(crate) struct AttrArg {
    /// The key.
    pub key: LitStr,
    /// The value.
    pub value: Expr,
}

/// The arguments of `#[scoped(..)]`.
#[derive(Clone, Default)]
pub(crate) struct ScopedArgs {
    /// `timeout`, with the key's span.
    pub timeout: Option<(DurationArg, Span)>,
    /// `name`.
    pub name: Option<Expr>,
    /// `tracer`, with the key's span.
    pub tracer: Option<(TracerArg, Span)>,
    /// `concurrency`.
    pub concurrency: Option<CountArg>,
    /// `metrics`.
    pub metrics: Option<Span>,
    /// `circuit_breaker`, with the key's span.
    pub circuit_breaker: Option<(BreakerArg, Span)>,
    /// `retry`.
    pub retry: Option<RetryArg>,
    /// `parent`.
    pub parent: Option<Expr>,
    /// `parent_from`: a carrier of a remote trace context, with the key's span.
    pub parent_from: Option<(Expr, Span)>,
    /// `attrs(..)`.
    pub attrs: Vec<AttrArg>,
    /// `skip(..)`.
    pub skip: Vec<Ident>,
    /// `skip_all`.
    pub skip_all: Option<Span>,
    /// `wait`.
    pub wait: Option<Span>,
    /// `local` / `local(unsend)`, with the key's span.
    pub local: Option<(LocalArg, Span)>,
    /// `crate = ".."`.
    pub krate: Option<syn::Path>,
}

/// Which local scope `local` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalArg {
    /// `local`: tasks must be `Send`, and so is the fn's future.
    Send,
    /// `local(unsend)`: any task; the fn's future is not `Send`.
    Unsend,
}

/// The options and the future of `go!(..)`.
#[derive(Clone, Default)]
pub(crate) struct GoArgs {
    /// `name`.
    pub name: Option<Expr>,
    /// `timeout`, with the key's span.
    pub timeout: Option<(DurationArg, Span)>,
    /// `retry`, with the key's span.
    pub retry: Option<(RetryArg, Span)>,
    /// `attrs(..)`.
    pub attrs: Vec<AttrArg>,
    /// `scope = EXPR`.
    pub scope: Option<Expr>,
    /// `__local = IDENT`: the local scope of the `#[scoped(local)]` fn this `go!` is written in,
    /// added by that attribute.
    pub local: Option<Ident>,
    /// `crate = ".."`.
    pub krate: Option<syn::Path>,
    /// The future expression, token for token.
    pub future: TokenStream,
}

/// The name of an argument and where it was written.
struct Key {
    name: String,
    ident: Ident,
}

impl Key {
    fn span(&self) -> Span {
        self.ident.span()
    }
}

/// Where an argument list lives, for messages.
#[derive(Clone, Copy)]
struct Context {
    /// `#[scoped(..)]`, `go!(..)`, `circuit_breaker(..)`, ...
    owner: &'static str,
    /// The keys valid there.
    keys: &'static [&'static str],
    /// "argument" or "option" or "setting".
    noun: &'static str,
}

const SCOPED: Context = Context {
    owner: "#[scoped(..)]",
    keys: SCOPED_KEYS,
    noun: "argument",
};

const GO: Context = Context {
    owner: "go!(..)",
    keys: GO_KEYS,
    noun: "option",
};

const BREAKER: Context = Context {
    owner: "circuit_breaker(..)",
    keys: BREAKER_KEYS,
    noun: "setting",
};

const RETRY: Context = Context {
    owner: "retry(..)",
    keys: RETRY_KEYS,
    noun: "setting",
};

fn unknown_key(context: Context, key: &Key) -> syn::Error {
    let valid = list(context.keys);
    let help = match suggest(&key.name, context.keys) {
        Some(close) => format!("did you mean `{close}`? The {}s are: {valid}", context.noun),
        None => format!("the {}s are: {valid}", context.noun),
    };
    syn::Error::new(
        key.span(),
        with_help(
            format!(
                "unknown {} `{}` in `{}`",
                context.noun, key.name, context.owner
            ),
            help,
        ),
    )
}

/// Remembers which keys were given, to reject a second one.
struct Seen {
    context: Context,
    keys: HashMap<String, Span>,
}

impl Seen {
    fn new(context: Context) -> Seen {
        Seen {
            context,
            keys: HashMap::new(),
        }
    }

    /// `Err` if `key` was given before.
    fn first(&mut self, key: &Key) -> syn::Result<()> {
        if self.keys.insert(key.name.clone(), key.span()).is_some() {
            return Err(syn::Error::new(
                key.span(),
                with_help(
                    format!(
                        "duplicate {} `{}` in `{}`",
                        self.context.noun, key.name, self.context.owner
                    ),
                    format!("give `{}` once; remove this one", key.name),
                ),
            ));
        }
        Ok(())
    }
}

/// Skips to the next top-level comma (or the end), after an argument that could not be read.
fn skip_to_comma(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if let TokenTree::Punct(punct) = &tree
                && punct.as_char() == ','
            {
                return Ok(((), rest));
            }
            rest = next;
        }
        Ok(((), rest))
    });
}

/// Reads `key, key = value, key(..), ...`, calling `entry` for each key. `entry` consumes the
/// rest of its argument; its errors are recorded and reading goes on with the next argument.
fn parse_list(
    input: ParseStream,
    context: Context,
    errors: &mut Errors,
    mut entry: impl FnMut(Key, ParseStream, &mut Errors) -> syn::Result<()>,
) {
    while !input.is_empty() {
        match input.call(Ident::parse_any) {
            Ok(ident) => {
                let key = Key {
                    name: ident.unraw().to_string(),
                    ident,
                };
                if let Err(error) = entry(key, input, errors) {
                    errors.push(error);
                    skip_to_comma(input);
                }
            }
            Err(_) => {
                let fork = input.fork();
                let bare_duration = fork
                    .parse::<LitStr>()
                    .ok()
                    .filter(|text| duration::parse(&text.value()).is_ok())
                    .filter(|_| context.keys.contains(&"timeout"));
                let help = match bare_duration {
                    Some(text) => format!("did you mean `timeout = {:?}`?", text.value()),
                    None => format!("the {}s are: {}", context.noun, list(context.keys)),
                };
                errors.at(
                    input.span(),
                    with_help(
                        format!(
                            "expected the name of an {} of `{}`",
                            context.noun, context.owner
                        ),
                        help,
                    ),
                );
                skip_to_comma(input);
            }
        }
        if input.is_empty() {
            break;
        }
        if input.parse::<Token![,]>().is_err() {
            errors.at(
                input.span(),
                format!(
                    "expected `,` between the {}s of `{}`",
                    context.noun, context.owner
                ),
            );
            skip_to_comma(input);
            let _ = input.parse::<Token![,]>();
        }
    }
}

/// `= ` after a key that needs a value.
fn expect_eq(input: ParseStream, key: &Key, example: &str) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        return Ok(());
    }
    Err(syn::Error::new(
        key.span(),
        with_help(
            format!("`{}` needs a value", key.name),
            format!("write `{example}`"),
        ),
    ))
}

/// `local` or `local(unsend)`.
fn local_value(input: ParseStream, key: &Key) -> syn::Result<LocalArg> {
    let help = "write `local` (tasks may borrow and must be `Send`) or `local(unsend)` (tasks \
                need not be `Send`; nor is the fn's future)";
    if input.peek(Token![=]) {
        return Err(syn::Error::new(
            input.span(),
            with_help(format!("`{}` takes no value", key.name), help),
        ));
    }
    if !input.peek(syn::token::Paren) {
        return Ok(LocalArg::Send);
    }
    let content;
    syn::parenthesized!(content in input);
    let kind = content.call(Ident::parse_any)?;
    if kind != "unsend" || !content.is_empty() {
        return Err(syn::Error::new(
            kind.span(),
            with_help(format!("unknown kind of local scope `{kind}`"), help),
        ));
    }
    Ok(LocalArg::Unsend)
}

/// A key that takes no value.
fn flag(input: ParseStream, key: &Key) -> syn::Result<Span> {
    if input.peek(Token![=]) || input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            input.span(),
            with_help(
                format!("`{}` takes no value", key.name),
                format!("write just `{}`", key.name),
            ),
        ));
    }
    Ok(key.span())
}

/// `expr` without the invisible groups `macro_rules!` wraps around `$x:expr` and `$x:literal`
/// fragments, so a value passed through a user's macro is read as if written in place.
pub(crate) fn unwrap_invisible(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) if group.attrs.is_empty() => unwrap_invisible(&group.expr),
        _ => expr,
    }
}

/// The literal `expr` is, seen through invisible groups.
pub(crate) fn literal(expr: &Expr) -> Option<&Lit> {
    match unwrap_invisible(expr) {
        Expr::Lit(lit) if lit.attrs.is_empty() => Some(&lit.lit),
        _ => None,
    }
}

/// `-N` or `-N.M` written as a literal: never a valid count or duration.
fn negative_literal(expr: &Expr) -> Option<&Lit> {
    match unwrap_invisible(expr) {
        Expr::Unary(unary) if matches!(unary.op, syn::UnOp::Neg(_)) => {
            literal(&unary.expr).filter(|lit| matches!(lit, Lit::Int(_) | Lit::Float(_)))
        }
        _ => None,
    }
}

fn negative_count(expr: &Expr, key: &Key, example: &str) -> syn::Error {
    syn::Error::new(
        expr.span(),
        with_help(
            format!("`{}` can't be negative", key.name),
            format!("write `{example}`"),
        ),
    )
}

/// `key = "30s"` or `key = EXPR` (a `Duration`).
fn duration_value(input: ParseStream, key: &Key) -> syn::Result<DurationArg> {
    expect_eq(input, key, &format!("{} = \"30s\"", key.name))?;
    let expr: Expr = input.parse()?;
    match literal(&expr) {
        Some(Lit::Str(text)) => match duration::parse(&text.value()) {
            Ok(value) => Ok(DurationArg::Literal {
                value,
                span: text.span(),
            }),
            Err(error) => {
                let lowercase = text.value().to_lowercase();
                let help = if lowercase != text.value() && duration::parse(&lowercase).is_ok() {
                    format!("write `{} = {lowercase:?}`", key.name)
                } else if error == duration::DurationError::Negative {
                    format!(
                        "give a positive duration such as `{} = \"30s\"`, or remove `{}`",
                        key.name, key.name
                    )
                } else {
                    format!("durations are strings such as {VALID_FORMS}")
                };
                Err(syn::Error::new(
                    text.span(),
                    with_help(
                        format!("invalid duration for `{}`: {error}", key.name),
                        help,
                    ),
                ))
            }
        },
        Some(Lit::Int(number)) => Err(syn::Error::new(
            number.span(),
            with_help(
                format!("`{}` takes a duration string, not a number", key.name),
                number_as_duration(&key.name, number.base10_digits(), number.suffix()),
            ),
        )),
        Some(Lit::Float(number)) => Err(syn::Error::new(
            number.span(),
            with_help(
                format!("`{}` takes a duration string, not a number", key.name),
                number_as_duration(&key.name, number.base10_digits(), number.suffix()),
            ),
        )),
        Some(other) => Err(syn::Error::new(
            other.span(),
            with_help(
                format!("`{}` takes a duration string", key.name),
                format!("durations are strings such as {VALID_FORMS}"),
            ),
        )),
        None if negative_literal(&expr).is_some() => Err(syn::Error::new(
            expr.span(),
            with_help(
                "durations can't be negative",
                format!("give a positive one: `{} = \"30s\"`", key.name),
            ),
        )),
        None => Ok(DurationArg::Expr(Box::new(expr))),
    }
}

/// The fix for a duration written as a bare number: the literal's own unit when it has one
/// (`500ms` → `"500ms"`), else the two likely ones.
fn number_as_duration(key: &str, digits: &str, suffix: &str) -> String {
    if duration::is_unit(suffix) {
        format!("write it as a string: `{key} = \"{digits}{suffix}\"`")
    } else {
        format!("give the unit: `{key} = \"{digits}s\"` or `\"{digits}ms\"`")
    }
}

/// An integer literal of type `N` (no expression allowed).
fn integer_literal<N>(input: ParseStream, key: &Key, example: &str) -> syn::Result<(N, Span)>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    expect_eq(input, key, example)?;
    let expr: Expr = input.parse()?;
    match literal(&expr) {
        Some(Lit::Int(number)) => match number.base10_parse::<N>() {
            Ok(value) => Ok((value, number.span())),
            Err(_) => Err(syn::Error::new(
                number.span(),
                with_help(
                    format!(
                        "`{}` is out of range for `{}`",
                        number.base10_digits(),
                        key.name
                    ),
                    format!("write `{example}`"),
                ),
            )),
        },
        _ if negative_literal(&expr).is_some() => Err(negative_count(&expr, key, example)),
        _ => Err(not_an_integer(&expr, key, example)),
    }
}

fn not_an_integer(expr: &Expr, key: &Key, example: &str) -> syn::Error {
    let what = match literal(expr) {
        Some(Lit::Str(_)) => "a string",
        Some(Lit::Float(_)) => "a float",
        Some(Lit::Bool(_)) => "a bool",
        Some(_) => "this literal",
        None => "an expression here",
    };
    syn::Error::new(
        expr.span(),
        with_help(
            format!("`{}` takes an integer, not {what}", key.name),
            format!("write `{example}`"),
        ),
    )
}

/// `concurrency = 4` or `concurrency = EXPR`.
fn count_value(input: ParseStream, key: &Key, example: &str) -> syn::Result<CountArg> {
    expect_eq(input, key, example)?;
    let expr: Expr = input.parse()?;
    match literal(&expr) {
        Some(Lit::Int(number)) => match number.base10_parse::<u64>() {
            Ok(value) => Ok(CountArg::Literal {
                value,
                span: number.span(),
            }),
            Err(_) => Err(syn::Error::new(
                number.span(),
                with_help(
                    format!(
                        "`{}` is out of range for `{}`",
                        number.base10_digits(),
                        key.name
                    ),
                    format!("give a smaller limit, such as `{example}`, or none for no limit"),
                ),
            )),
        },
        Some(_) => Err(not_an_integer(&expr, key, example)),
        None if negative_literal(&expr).is_some() => Err(negative_count(&expr, key, example)),
        None => Ok(CountArg::Expr(Box::new(expr))),
    }
}

/// `retry = 3`, `retry = EXPR`, `retry(..)`; in `go!` also bare `retry`.
fn retry_value(
    input: ParseStream,
    key: &Key,
    errors: &mut Errors,
    bare_allowed: bool,
) -> syn::Result<RetryArg> {
    if input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in input);
        return Ok(RetryArg::Policy(retry_policy(&content, key.span(), errors)));
    }
    if bare_allowed && !input.peek(Token![=]) {
        return Ok(RetryArg::ScopeDefault);
    }
    expect_eq(
        input,
        key,
        "retry = 3` or `retry(max = 3, delay = \"100ms\", backoff = \"exponential\")",
    )?;
    let expr: Expr = input.parse()?;
    match literal(&expr) {
        Some(Lit::Int(number)) => match number.base10_parse::<u32>() {
            Ok(value) => Ok(RetryArg::Count(value)),
            Err(_) => Err(syn::Error::new(
                number.span(),
                with_help(
                    format!(
                        "`{}` retries is out of range (at most {})",
                        number.base10_digits(),
                        u32::MAX
                    ),
                    "a handful of retries with a delay is usually enough: \
                     `retry(max = 5, delay = \"100ms\", backoff = \"exponential\")`",
                ),
            )),
        },
        Some(_) => Err(not_an_integer(&expr, key, "retry = 3")),
        None if negative_literal(&expr).is_some() => Err(negative_count(&expr, key, "retry = 3")),
        None => Ok(RetryArg::Expr(Box::new(expr))),
    }
}

fn retry_policy(input: ParseStream, span: Span, errors: &mut Errors) -> RetryPolicy {
    let mut policy = RetryPolicy {
        max: None,
        delay: None,
        backoff: None,
        jitter: None,
        max_delay: None,
        span,
    };
    let mut seen = Seen::new(RETRY);
    parse_list(input, RETRY, errors, |key, input, _errors| {
        match key.name.as_str() {
            "max" => {
                seen.first(&key)?;
                policy.max = Some(integer_literal::<u32>(input, &key, "max = 3")?.0);
            }
            "delay" => {
                seen.first(&key)?;
                policy.delay = Some(duration_value(input, &key)?);
            }
            "max_delay" => {
                seen.first(&key)?;
                policy.max_delay = Some((duration_value(input, &key)?, key.span()));
            }
            "jitter" => {
                seen.first(&key)?;
                policy.jitter = Some(flag(input, &key)?);
            }
            "backoff" => {
                seen.first(&key)?;
                expect_eq(input, &key, "backoff = \"exponential\"")?;
                let expr: Expr = input.parse()?;
                let kind = match literal(&expr) {
                    Some(Lit::Str(text)) if text.value() == "exponential" => Backoff::Exponential,
                    Some(Lit::Str(text)) if text.value() == "fixed" => Backoff::Fixed,
                    _ => {
                        return Err(syn::Error::new(
                            expr.span(),
                            with_help(
                                "`backoff` is \"fixed\" or \"exponential\"",
                                "write `backoff = \"exponential\"` to double the delay before each retry",
                            ),
                        ));
                    }
                };
                policy.backoff = Some((kind, expr.span()));
            }
            _ => return Err(unknown_key(RETRY, &key)),
        }
        Ok(())
    });
    if policy.max.is_none() {
        errors.at(
            span,
            with_help(
                "`retry(..)` needs `max`, the number of retries",
                "write `retry(max = 3, ..)`, or `retry = 3` for retries without delay",
            ),
        );
    }
    policy
}

fn breaker_value(input: ParseStream, key: &Key, errors: &mut Errors) -> syn::Result<BreakerArg> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        let expr: Expr = input.parse()?;
        return Ok(BreakerArg::Expr(Box::new(expr)));
    }
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            key.span(),
            with_help(
                "`circuit_breaker` needs its settings",
                "write `circuit_breaker(failure_threshold = 5, reset_timeout = \"30s\")`, or \
                 `circuit_breaker = EXPR` to share a breaker you built",
            ),
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let mut failure_threshold = None;
    let mut reset_timeout = None;
    let mut seen = Seen::new(BREAKER);
    parse_list(&content, BREAKER, errors, |key, input, _errors| {
        match key.name.as_str() {
            "failure_threshold" => {
                seen.first(&key)?;
                failure_threshold = Some(integer_literal::<u32>(
                    input,
                    &key,
                    "failure_threshold = 5",
                )?);
            }
            "reset_timeout" => {
                seen.first(&key)?;
                reset_timeout = Some(duration_value(input, &key)?);
            }
            _ => return Err(unknown_key(BREAKER, &key)),
        }
        Ok(())
    });
    Ok(BreakerArg::Config {
        failure_threshold,
        reset_timeout,
    })
}

/// `attrs("key" = value, ..)`.
fn attrs_value(input: ParseStream, key: &Key, errors: &mut Errors) -> syn::Result<Vec<AttrArg>> {
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            key.span(),
            with_help(
                "`attrs` takes its attributes in parentheses",
                "write `attrs(\"user.id\" = id, \"region\" = \"eu\")`",
            ),
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let mut attrs = Vec::new();
    while !content.is_empty() {
        match attr_entry(&content) {
            Ok(attr) => attrs.push(attr),
            Err(error) => {
                errors.push(error);
                skip_to_comma(&content);
            }
        }
        if content.is_empty() {
            break;
        }
        if content.parse::<Token![,]>().is_err() {
            errors.at(
                content.span(),
                "expected `,` between the entries of `attrs(..)`",
            );
            skip_to_comma(&content);
            let _ = content.parse::<Token![,]>();
        }
    }
    Ok(attrs)
}

fn attr_entry(input: ParseStream) -> syn::Result<AttrArg> {
    const HELP: &str = "write `attrs(\"user.id\" = id)`: a string key, `=`, then any expression";
    if !input.peek(LitStr) {
        return Err(syn::Error::new(
            input.span(),
            with_help(
                "span attribute keys in `attrs(..)` are string literals",
                HELP,
            ),
        ));
    }
    let key: LitStr = input.parse()?;
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(
            key.span(),
            with_help(
                format!("the attribute {:?} needs a value", key.value()),
                HELP,
            ),
        ));
    }
    input.parse::<Token![=]>()?;
    let value: Expr = input.parse()?;
    Ok(AttrArg { key, value })
}

/// `skip(a, b)`.
fn skip_value(input: ParseStream, key: &Key) -> syn::Result<Vec<Ident>> {
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            key.span(),
            with_help(
                "`skip` takes the names of arguments in parentheses",
                "write `skip(password, body)`, or `skip_all` to record no argument",
            ),
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let names = content.parse_terminated(Ident::parse_any, Token![,])?;
    Ok(names.into_iter().collect())
}

fn tracer_value(input: ParseStream) -> syn::Result<TracerArg> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        return Ok(TracerArg::Expr(Box::new(input.parse()?)));
    }
    Ok(TracerArg::Global)
}

/// `crate = "path"`.
fn crate_value(input: ParseStream, key: &Key) -> syn::Result<syn::Path> {
    expect_eq(input, key, "crate = \"my_scope\"")?;
    let path: LitStr = input.parse().map_err(|_| {
        syn::Error::new(
            input.span(),
            with_help(
                "`crate` takes the path of go-go-scope as a string",
                "write `crate = \"my_scope\"` when the dependency is renamed",
            ),
        )
    })?;
    path.parse::<syn::Path>().map_err(|_| {
        syn::Error::new(
            path.span(),
            with_help(
                format!("{:?} is not a path", path.value()),
                "write `crate = \"my_scope\"` or `crate = \"::deps::go_go_scope\"`",
            ),
        )
    })
}

fn expr_value(input: ParseStream, key: &Key, example: &str) -> syn::Result<Expr> {
    expect_eq(input, key, example)?;
    input.parse()
}

/// The input of `try_go!` / `try_go_raw!`: an optional leading `crate = "path",`, then the
/// expression.
pub(crate) struct TryGoArgs {
    /// The `crate = ".."` path, if given.
    pub krate: Option<syn::Path>,
    /// The expression to run.
    pub expr: TokenStream,
}

/// Splits a leading `crate = "path",` off a `try_go!` input. No expression starts with
/// `crate =`, so the option cannot be mistaken for one.
pub(crate) fn try_go_args(tokens: TokenStream, name: &str) -> syn::Result<TryGoArgs> {
    let parser = |input: ParseStream| {
        let mut krate = None;
        if input.peek(Token![crate]) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let ident = input.call(Ident::parse_any)?;
            let key = Key {
                name: "crate".to_owned(),
                ident,
            };
            krate = Some(crate_value(input, &key)?);
            if input.parse::<Token![,]>().is_err() {
                return Err(syn::Error::new(
                    input.span(),
                    with_help(
                        format!("expected `,` after the `crate` option of `{name}!`"),
                        format!("write `{name}!(crate = \"my_scope\", text.parse::<u32>())`"),
                    ),
                ));
            }
        }
        Ok(TryGoArgs {
            krate,
            expr: input.parse()?,
        })
    };
    parser.parse2(tokens)
}

/// Parses the arguments of `#[scoped(..)]`, recording every problem in `errors`.
pub(crate) fn scoped_args(tokens: TokenStream, errors: &mut Errors) -> ScopedArgs {
    let mut args = ScopedArgs::default();
    let parser = |input: ParseStream| {
        let mut seen = Seen::new(SCOPED);
        parse_list(input, SCOPED, errors, |key, input, errors| {
            if SCOPED_KEYS.contains(&key.name.as_str()) {
                seen.first(&key)?;
            }
            match key.name.as_str() {
                "timeout" => args.timeout = Some((duration_value(input, &key)?, key.span())),
                "name" => args.name = Some(expr_value(input, &key, "name = \"checkout\"")?),
                "tracer" => args.tracer = Some((tracer_value(input)?, key.span())),
                "concurrency" => {
                    args.concurrency = Some(count_value(input, &key, "concurrency = 4")?);
                }
                "metrics" => args.metrics = Some(flag(input, &key)?),
                "circuit_breaker" => {
                    args.circuit_breaker = Some((breaker_value(input, &key, errors)?, key.span()));
                }
                "retry" => args.retry = Some(retry_value(input, &key, errors, false)?),
                "parent" => args.parent = Some(expr_value(input, &key, "parent = scope")?),
                "parent_from" => {
                    let carrier = expr_value(input, &key, "parent_from = headers")?;
                    args.parent_from = Some((carrier, key.span()));
                }
                "attrs" => args.attrs = attrs_value(input, &key, errors)?,
                "skip" => args.skip = skip_value(input, &key)?,
                "skip_all" => args.skip_all = Some(flag(input, &key)?),
                "wait" => args.wait = Some(flag(input, &key)?),
                "local" => args.local = Some((local_value(input, &key)?, key.span())),
                "crate" => args.krate = Some(crate_value(input, &key)?),
                _ => return Err(unknown_key(SCOPED, &key)),
            }
            Ok(())
        });
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    args
}

/// True when the next entry of `go!(..)` is an option rather than the future.
fn next_is_option(input: ParseStream) -> bool {
    let fork = input.fork();
    let Ok(ident) = fork.call(Ident::parse_any) else {
        return false;
    };
    if fork.peek(Token![=]) && !fork.peek(Token![==]) && !fork.peek(Token![=>]) {
        return true;
    }
    // `attrs(..)`, `retry(..)` and bare `retry` are options only when something follows them;
    // a call like `fetch(1)` or a variable like `task` is the future, even with a comma after
    // it (that comma is reported by `future_and_tail`). A near miss of an option name
    // (`retyr, fetch()`) is read as that option, to be reported as a typo.
    let name = ident.unraw().to_string();
    let option_like =
        GO_KEYS.contains(&name.as_str()) || suggest(&name, &["retry", "attrs"]).is_some();
    if fork.peek(syn::token::Paren) {
        let _group = fork.parse::<TokenTree>();
    }
    option_like && fork.peek(Token![,]) && !is_trailing_comma(&fork)
}

fn is_trailing_comma(input: ParseStream) -> bool {
    let fork = input.fork();
    fork.parse::<Token![,]>().is_ok() && fork.is_empty()
}

/// The key, when `input` starts like a `go!` option (`name =`, `retry`, `attrs(`, ...).
fn starts_like_option(input: ParseStream) -> Option<Ident> {
    let fork = input.fork();
    let ident = fork.call(Ident::parse_any).ok()?;
    let name = ident.unraw().to_string();
    if !GO_KEYS.contains(&name.as_str()) {
        return None;
    }
    let shaped = (fork.peek(Token![=]) && !fork.peek(Token![==]))
        || fork.peek(syn::token::Paren)
        || fork.peek(Token![,])
        || fork.is_empty();
    shaped.then_some(ident)
}

/// Splits the rest of `go!`'s input into the future expression and what follows it, and
/// reports what follows: options written after the future, or a second expression.
fn future_and_tail(rest: TokenStream, errors: &mut Errors) -> TokenStream {
    let trees: Vec<TokenTree> = rest.clone().into_iter().collect();
    let split = |input: ParseStream| {
        input.parse::<Expr>()?;
        let tail_start = input.fork();
        let tail: TokenStream = input.parse()?;
        Ok((tail.into_iter().count(), tail_start_report(&tail_start)))
    };
    let Ok((tail_len, report)) = split.parse2(rest.clone()) else {
        // Not an expression syn can read: hand it to the compiler, whose error is precise.
        return rest;
    };
    if let Some((span, message)) = report {
        errors.at(span, message);
    }
    let mut future: Vec<TokenTree> = trees[..trees.len().saturating_sub(tail_len)].to_vec();
    if let Some(TokenTree::Punct(comma)) = future.last()
        && comma.as_char() == ','
    {
        future.pop();
    }
    future.into_iter().collect()
}

/// What is wrong with the tokens after the future, if anything.
fn tail_start_report(tail: ParseStream) -> Option<(Span, String)> {
    if tail.is_empty() {
        return None;
    }
    if let Some(ident) = starts_like_option(tail) {
        return Some((ident.span(), misplaced_option(&ident)));
    }
    if tail.peek(Token![,]) {
        let comma: Token![,] = tail.parse().ok()?;
        if tail.is_empty() {
            return None;
        }
        if let Some(ident) = starts_like_option(tail) {
            return Some((ident.span(), misplaced_option(&ident)));
        }
        return Some((
            comma.span,
            with_help(
                "`go!` spawns one future, and a second expression follows it",
                "spawn each with its own `go!`, or await both in one `async` block: \
                 `go!(async move { (a.await, b.await) })`",
            ),
        ));
    }
    Some((
        tail.span(),
        with_help(
            "unexpected tokens after the future of `go!`",
            "`go!` takes its options first, then one future: `go!(name = \"fetch\", fetch(id))`",
        ),
    ))
}

fn misplaced_option(ident: &Ident) -> String {
    let shape = match ident.unraw().to_string().as_str() {
        "attrs" => "attrs(..)".to_owned(),
        name => format!("{name} = .."),
    };
    with_help(
        format!("`{ident}` is written after the future: options come first, the future last"),
        format!("move it before the future: `go!({shape}, fetch(id))`"),
    )
}

/// Parses `go!(..)`'s options and future, recording every problem in `errors`.
pub(crate) fn go_args(tokens: TokenStream, errors: &mut Errors) -> GoArgs {
    let mut args = GoArgs::default();
    let mut last_option = None;
    let mut rest = TokenStream::new();
    let parser = |input: ParseStream| {
        let mut seen = Seen::new(GO);
        while next_is_option(input) {
            let ident = input.call(Ident::parse_any)?;
            let key = Key {
                name: ident.unraw().to_string(),
                ident,
            };
            last_option = Some(key.span());
            let outcome = (|| -> syn::Result<()> {
                if GO_KEYS.contains(&key.name.as_str()) {
                    seen.first(&key)?;
                }
                match key.name.as_str() {
                    "name" => args.name = Some(expr_value(input, &key, "name = \"fetch-user\"")?),
                    "timeout" => args.timeout = Some((duration_value(input, &key)?, key.span())),
                    "retry" => {
                        args.retry = Some((retry_value(input, &key, errors, true)?, key.span()));
                    }
                    "attrs" => args.attrs = attrs_value(input, &key, errors)?,
                    "scope" => args.scope = Some(expr_value(input, &key, "scope = s")?),
                    "crate" => args.krate = Some(crate_value(input, &key)?),
                    // Written by `#[scoped(local)]`, never by hand.
                    "__local" => {
                        input.parse::<Token![=]>()?;
                        args.local = Some(input.parse::<Ident>()?);
                    }
                    _ => return Err(unknown_key(GO, &key)),
                }
                Ok(())
            })();
            if let Err(error) = outcome {
                errors.push(error);
                skip_to_comma(input);
            }
            if input.parse::<Token![,]>().is_err() && !input.is_empty() {
                // Keep reading: what follows is most likely the future (or the next option),
                // and reporting only the missing comma is one error for one problem.
                errors.at(
                    input.span(),
                    with_help(
                        format!("expected `,` after the `{}` option of `go!`", key.name),
                        "separate the options and the future with commas: \
                         `go!(name = \"fetch\", fetch(id))`",
                    ),
                );
            }
        }
        rest = input.parse::<TokenStream>()?;
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    args.future = future_and_tail(rest, errors);
    if args.future.is_empty() {
        errors.at(
            last_option.unwrap_or_else(Span::call_site),
            with_help(
                "`go!` needs a future to spawn",
                "write `go!(fetch_user(id))`, or `go!(name = \"fetch\", fetch_user(id))` with \
                 options first and the future last",
            ),
        );
    }
    args
}

/// The comma after a first expression when another expression follows it (`a, b`); a trailing
/// comma, or tokens that are not an expression, give `None`.
pub(crate) fn second_expression(tokens: TokenStream) -> Option<Span> {
    let parser = |input: ParseStream| {
        input.parse::<Expr>()?;
        let comma = input.parse::<Token![,]>().ok();
        let more = !input.is_empty();
        let _rest: TokenStream = input.parse()?;
        Ok(comma.filter(|_| more).map(|comma| comma.span))
    };
    parser.parse2(tokens).ok().flatten()
}
