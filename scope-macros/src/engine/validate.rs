//! The rules about values: what parses but cannot work (a zero deadline, `concurrency = 0`,
//! `skip` of an argument the fn does not have, a non-async fn, ...).

use std::collections::HashMap;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, Lit};

use super::args::{
    AttrArg, Backoff, BreakerArg, CountArg, DurationArg, GoArgs, RetryArg, RetryPolicy, ScopedArgs,
};
use super::diag::{Errors, list, suggest, with_help};
use super::item::{ScopedFn, mentions_impl_trait};

/// Checks the arguments of `#[scoped(..)]` on their own.
pub(crate) fn scoped_args(args: &ScopedArgs, errors: &mut Errors) {
    if let Some((duration, _)) = &args.timeout {
        nonzero_duration(
            duration,
            "timeout",
            "a zero `timeout` would cancel the scope before its body starts",
            "remove `timeout` for no deadline, or give a positive one such as \"30s\"",
            errors,
        );
    }
    if let Some(name) = &args.name {
        nonempty_name(name, "#[scoped(name = ..)]", errors);
    }
    if let Some(CountArg::Literal { value, span }) = &args.concurrency {
        if *value == 0 {
            errors.at(
                *span,
                with_help(
                    "`concurrency = 0` would let no task of the scope ever run",
                    "give at least 1, or remove `concurrency` for no limit",
                ),
            );
        } else if usize::try_from(*value).is_err() {
            errors.at(
                *span,
                with_help(
                    "`concurrency` is too large for this target's `usize`",
                    "give a smaller limit, or remove `concurrency` for no limit",
                ),
            );
        }
    }
    if let Some((
        BreakerArg::Config {
            failure_threshold,
            reset_timeout,
        },
        _,
    )) = &args.circuit_breaker
    {
        if let Some((0, span)) = failure_threshold {
            errors.at(
                *span,
                with_help(
                    "`failure_threshold = 0` would open the breaker before any call",
                    "give the number of consecutive failures that open it, at least 1",
                ),
            );
        }
        if let Some(reset) = reset_timeout {
            nonzero_duration(
                reset,
                "reset_timeout",
                "a zero `reset_timeout` would let calls through again as soon as the breaker opens",
                "give how long the breaker stays open, such as \"30s\"",
                errors,
            );
        }
    }
    if let Some(RetryArg::Policy(policy)) = &args.retry {
        retry_policy(policy, errors);
    }
    if let (Some(skip_all), false) = (args.skip_all, args.skip.is_empty()) {
        errors.at(
            skip_all,
            with_help(
                "`skip_all` and `skip(..)` together say the same thing twice",
                "keep `skip_all` to record no argument, or `skip(..)` to leave out some",
            ),
        );
    }
    attrs(&args.attrs, errors);
}

/// Checks what depends on the fn: its signature, and the arguments that name its parts.
pub(crate) fn scoped_fn(args: &ScopedArgs, item: &ScopedFn, errors: &mut Errors) {
    if let Some(constness) = &item.sig.constness {
        errors.at(
            constness.span(),
            with_help(
                "#[scoped] cannot be applied to a `const fn`",
                "a scope runs tasks on the Tokio runtime, which needs an `async fn`; remove `const`",
            ),
        );
    } else if item.sig.asyncness.is_none() {
        let returns = item
            .return_type()
            .map(|ty| quote::ToTokens::to_token_stream(ty).to_string())
            .unwrap_or_default();
        let (message, help) = if returns.contains("'async_trait") {
            (
                "#[scoped] sees this method after `#[async_trait]` rewrote it into a fn that \
                 returns a boxed future",
                "`#[async_trait]` on the impl runs first, so #[scoped] cannot wrap the method; \
                 put #[scoped] on an inherent `async fn` and call it from the trait method: \
                 `async fn load(&self) -> R { self.load_scoped().await }`",
            )
        } else if returns.contains("Future") {
            (
                "#[scoped] needs an `async fn`, and this fn returns a future instead",
                "make it an `async fn` that returns the future's output: \
                 `async fn f() -> T` instead of `fn f() -> impl Future<Output = T>`",
            )
        } else {
            (
                "#[scoped] needs an `async fn`",
                "write `async fn`; next to #[tokio::main] or #[tokio::test], put #[scoped] \
                 above that attribute so it sees the fn while it is still async",
            )
        };
        errors.at(item.sig.fn_token.span(), with_help(message, help));
    }
    if let Some(again) = item.attrs.iter().find(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "scoped")
    }) {
        let path = again.path();
        let span = path
            .segments
            .last()
            .map_or_else(|| path.span(), |s| s.ident.span());
        errors.at(
            span,
            with_help(
                format!("#[scoped] is applied to `{}` twice", item.sig.ident),
                "one fn runs in one scope: merge the arguments into a single #[scoped(..)]",
            ),
        );
    }
    unit_return_with_carried_error(args, item, errors);
    let names = item.argument_names();
    for skipped in &args.skip {
        let skipped_name = skipped.to_string();
        if names.contains(&skipped_name) {
            continue;
        }
        let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
        let help = match suggest(&skipped_name, &candidates) {
            Some(close) => format!("did you mean `{close}`?"),
            None if candidates.is_empty() => "this fn has no named arguments".to_owned(),
            None => format!("its arguments are: {}", list(&candidates)),
        };
        errors.at(
            skipped.span(),
            with_help(
                format!(
                    "`skip({skipped_name})` names no argument of `{}`",
                    item.sig.ident
                ),
                help,
            ),
        );
    }
    let unnameable = item
        .return_type()
        .is_some_and(|ty| mentions_impl_trait(quote::ToTokens::to_token_stream(ty)));
    if unnameable {
        for (key, span) in [
            ("timeout", args.timeout.as_ref().map(|(_, span)| *span)),
            (
                "circuit_breaker",
                args.circuit_breaker.as_ref().map(|(_, span)| *span),
            ),
        ] {
            if let Some(span) = span {
                errors.at(
                    span,
                    with_help(
                        format!(
                            "`{key}` needs a return type that can carry `go_go_scope::Error`, \
                             and an `impl Trait` return type cannot be checked"
                        ),
                        "return `Result<T, E>` with `E: From<go_go_scope::Error>`, or the tuple \
                         `(Option<go_go_scope::Error>, Option<T>)`",
                    ),
                );
            }
        }
    }
}

/// `timeout` and `circuit_breaker` on a fn that returns `()` (written or not): the scope's error
/// would have nowhere to go, and the deadline could not end the body.
fn unit_return_with_carried_error(args: &ScopedArgs, item: &ScopedFn, errors: &mut Errors) {
    let span = match item.return_type() {
        None => item.sig.paren_token.span.close(),
        Some(syn::Type::Tuple(unit)) if unit.elems.is_empty() => unit.span(),
        Some(_) => return,
    };
    let keys: Vec<&str> = [
        args.timeout.as_ref().map(|_| "timeout"),
        args.circuit_breaker.as_ref().map(|_| "circuit_breaker"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let what = match keys.as_slice() {
        [] => return,
        ["timeout"] => "`#[scoped(timeout = ..)]` needs".to_owned(),
        [key] => format!("`#[scoped({key} ..)]` needs"),
        _ => "`#[scoped(timeout = ..)]` and `circuit_breaker` need".to_owned(),
    };
    let fix = if item.return_type().is_none() {
        "add a return type: `-> Result<(), go_go_scope::Error>`"
    } else {
        "return `Result<(), go_go_scope::Error>` instead of `()`"
    };
    errors.at(
        span,
        with_help(
            format!("{what} a return type that can carry `go_go_scope::Error`, and `()` cannot"),
            format!(
                "{fix} (or `Result<T, E>` with `E: From<go_go_scope::Error>`), so the scope's \
                 error can end the body and reach the caller"
            ),
        ),
    );
}

/// Checks the options of `go!(..)`.
pub(crate) fn go_args(args: &GoArgs, errors: &mut Errors) {
    if let Some((duration, _)) = &args.timeout {
        nonzero_duration(
            duration,
            "timeout",
            "a zero `timeout` would fail every attempt before it starts",
            "remove `timeout`, or give a positive one such as \"2s\"",
            errors,
        );
    }
    if let Some(name) = &args.name {
        nonempty_name(name, "go!(name = ..)", errors);
    }
    if let Some((RetryArg::Policy(policy), _)) = &args.retry {
        retry_policy(policy, errors);
    }
    attrs(&args.attrs, errors);
}

fn nonzero_duration(duration: &DurationArg, key: &str, why: &str, help: &str, errors: &mut Errors) {
    if let DurationArg::Literal { value, span } = duration
        && value.is_zero()
    {
        errors.at(*span, with_help(format!("`{key}` is zero: {why}"), help));
    }
}

fn nonempty_name(name: &Expr, key: &str, errors: &mut Errors) {
    if let Some(Lit::Str(text)) = super::args::literal(name)
        && text.value().trim().is_empty()
    {
        errors.at(
            text.span(),
            with_help(
                format!("`{key}` is empty"),
                "give a name that says what this is, or remove `name` for the default",
            ),
        );
    }
}

fn retry_policy(policy: &RetryPolicy, errors: &mut Errors) {
    if policy.delay.is_none() {
        let orphan: Option<(Span, &str)> = policy
            .backoff
            .map(|(_, span)| (span, "backoff"))
            .or(policy.jitter.map(|span| (span, "jitter")));
        if let Some((span, key)) = orphan {
            errors.at(
                span,
                with_help(
                    format!(
                        "`{key}` shapes the delay between retries, but `retry(..)` has no `delay`"
                    ),
                    "add `delay = \"100ms\"` (the first delay), or remove it",
                ),
            );
        }
    }
    if let Some((_, span)) = &policy.max_delay
        && !matches!(policy.backoff, Some((Backoff::Exponential, _)))
    {
        errors.at(
            *span,
            with_help(
                "`max_delay` caps a growing delay, but this policy's delay does not grow",
                "add `backoff = \"exponential\"`, or remove `max_delay`",
            ),
        );
    }
}

fn attrs(attrs: &[AttrArg], errors: &mut Errors) {
    let mut seen: HashMap<String, Span> = HashMap::new();
    for attr in attrs {
        let key = attr.key.value();
        if key.trim().is_empty() {
            errors.at(
                attr.key.span(),
                with_help(
                    "a span attribute key is empty",
                    "give it a name such as \"user.id\"",
                ),
            );
        } else if seen.insert(key.clone(), attr.key.span()).is_some() {
            errors.at(
                attr.key.span(),
                with_help(
                    format!("the span attribute {key:?} is given twice in `attrs(..)`"),
                    "give each key once",
                ),
            );
        }
    }
}
