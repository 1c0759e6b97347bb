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

pub(crate) mod args;
pub(crate) mod diag;
pub(crate) mod duration;
pub(crate) mod expand;
pub(crate) mod item;
pub(crate) mod validate;

use proc_macro2::{Span, TokenStream};

use self::diag::{Errors, with_help};

/// `#[scoped(attr)] item`.
pub(crate) fn scoped(attr: TokenStream, item: TokenStream) -> TokenStream {
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
pub(crate) fn go(input: TokenStream) -> TokenStream {
    match parse_go_args(input) {
        Ok(args) => expand::go(&args),
        Err(error) => errors_as_expression(error),
    }
}

/// Every error as one expression: `{ compile_error!(..); ..; compile_error!(..) }`. Side by side,
/// several `compile_error!` calls are no expression and the compiler would add parse errors of
/// its own; the last one as the block's value also keeps the code around it quiet.
fn errors_as_expression(error: syn::Error) -> TokenStream {
    let errors: Vec<TokenStream> = error.into_iter().map(|e| e.to_compile_error()).collect();
    let (last, first) = match errors.split_last() {
        Some((last, first)) => (last.clone(), first),
        None => (TokenStream::new(), &[][..]),
    };
    quote::quote!({ #(#first;)* #last })
}

/// `try_go!(input)` or, with `raw`, `try_go_raw!(input)`.
pub(crate) fn try_go(input: TokenStream, raw: bool) -> TokenStream {
    let name = if raw { "try_go_raw" } else { "try_go" };
    let args = match args::try_go_args(input, name) {
        Ok(args) => args,
        Err(error) => return error.to_compile_error(),
    };
    if args.expr.is_empty() {
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
    if let Some(error) = escaping_control_flow(&args.expr, name) {
        return error.to_compile_error();
    }
    if let Some(comma) = args::second_expression(args.expr.clone()) {
        return syn::Error::new(
            comma,
            with_help(
                format!("`{name}!` takes one expression, and a second one follows this comma"),
                format!(
                    "use one `{name}!` per expression: `let (err, a) = {name}!(first());` then \
                     `let (err, b) = {name}!(second());`"
                ),
            ),
        )
        .to_compile_error();
    }
    expand::try_go(args.krate.as_ref(), args.expr, raw)
}

/// A `?` or `return` among the expression's own tokens: `try_go!` runs the expression in a
/// closure (to catch panics), so either would leave that closure, not the caller's fn. Tokens
/// inside groups are not searched: a `return` there is usually a nested closure's own.
fn escaping_control_flow(expr: &TokenStream, name: &str) -> Option<syn::Error> {
    let last = expr.clone().into_iter().count().saturating_sub(1);
    for (index, token) in expr.clone().into_iter().enumerate() {
        match &token {
            proc_macro2::TokenTree::Punct(question) if question.as_char() == '?' => {
                let fix = if index == last {
                    format!(
                        "drop the `?`: `{name}!` catches the error itself and gives it back in \
                         the tuple, `let (err, value) = {name}!(text.parse::<u32>());`"
                    )
                } else {
                    format!(
                        "give `{name}!` the fallible step alone, `let (err, value) = \
                         {name}!(text.parse::<u32>());`, and continue with `value` after it"
                    )
                };
                return Some(syn::Error::new(
                    question.span(),
                    with_help(
                        format!(
                            "this `?` would return from the closure `{name}!` runs the \
                             expression in, not from your fn"
                        ),
                        fix,
                    ),
                ));
            }
            proc_macro2::TokenTree::Ident(ident) if ident == "return" => {
                return Some(syn::Error::new(
                    ident.span(),
                    with_help(
                        format!(
                            "this `return` would return from the closure `{name}!` runs the \
                             expression in, not from your fn"
                        ),
                        format!(
                            "return after `{name}!` instead: `let (err, value) = \
                             {name}!(parse(text)); if let Some(err) = err {{ return Err(err); }}`"
                        ),
                    ),
                ));
            }
            _ => {}
        }
    }
    None
}

/// Parses and validates the arguments of `#[scoped(..)]` (the part inside the parentheses).
pub(crate) fn parse_scoped_args(tokens: TokenStream) -> Result<args::ScopedArgs, syn::Error> {
    let mut errors = Errors::default();
    let args = args::scoped_args(tokens, &mut errors);
    validate::scoped_args(&args, &mut errors);
    errors.finish(args)
}

/// Parses and validates the input of `go!(..)`.
pub(crate) fn parse_go_args(tokens: TokenStream) -> Result<args::GoArgs, syn::Error> {
    let mut errors = Errors::default();
    let args = args::go_args(tokens, &mut errors);
    validate::go_args(&args, &mut errors);
    errors.finish(args)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quote::quote;

    use super::args::{CountArg, DurationArg, RetryArg};
    use super::*;

    fn messages(error: syn::Error) -> Vec<String> {
        error.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn scoped_arguments_become_typed_values() {
        let args = parse_scoped_args(quote!(
            timeout = "1m30s",
            concurrency = 4,
            metrics,
            retry = 3,
            skip(a, b),
            wait
        ))
        .unwrap_or_else(|e| panic!("{:?}", messages(e)));
        assert!(matches!(
            args.timeout,
            Some((DurationArg::Literal { value, .. }, _)) if value == Duration::from_secs(90)
        ));
        assert!(matches!(
            args.concurrency,
            Some(CountArg::Literal { value: 4, .. })
        ));
        assert!(args.metrics.is_some() && args.wait.is_some());
        assert!(matches!(args.retry, Some(RetryArg::Count(3))));
        assert_eq!(args.skip.len(), 2);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = messages(
            parse_scoped_args(quote!(
                timout = "1s",
                concurrency = 0,
                timeout = "5",
                metrics = true,
                metrics
            ))
            .err()
            .unwrap_or_else(|| panic!("should fail")),
        );
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].contains("did you mean `timeout`"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("duplicate argument `metrics`"))
        );
        assert!(errors.iter().any(|e| e.contains("`5` has no unit")));
        assert!(errors.iter().any(|e| e.contains("`concurrency = 0`")));
    }

    #[test]
    fn go_options_come_first_and_the_future_last() {
        let args = parse_go_args(quote!(
            name = "a",
            timeout = "2s",
            retry,
            fetch::<A, B>(x, y)
        ))
        .unwrap_or_else(|e| panic!("{:?}", messages(e)));
        assert!(args.name.is_some());
        assert!(matches!(args.retry, Some((RetryArg::ScopeDefault, _))));
        assert_eq!(
            args.future.to_string(),
            quote!(fetch::<A, B>(x, y)).to_string()
        );

        // A call on its own is the future, even when named like an option.
        let args = parse_go_args(quote!(attrs(1))).unwrap_or_else(|e| panic!("{:?}", messages(e)));
        assert_eq!(args.future.to_string(), quote!(attrs(1)).to_string());
        let args = parse_go_args(quote!(a == b,)).unwrap_or_else(|e| panic!("{:?}", messages(e)));
        assert_eq!(args.future.to_string(), quote!(a == b).to_string());
    }

    #[test]
    fn go_without_a_future_is_an_error() {
        for input in [quote!(), quote!(name = "x"), quote!(name = "x",)] {
            let errors = messages(
                parse_go_args(input)
                    .err()
                    .unwrap_or_else(|| panic!("fails")),
            );
            assert!(errors[0].contains("needs a future"), "{errors:?}");
        }
    }

    fn go_errors(input: TokenStream) -> Vec<String> {
        messages(
            parse_go_args(input)
                .err()
                .unwrap_or_else(|| panic!("should fail")),
        )
    }

    #[test]
    fn go_reports_each_problem_once() {
        let errors = go_errors(quote!(nmae = "x", timout = "1s", fetch(1)));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors.iter().all(|e| e.contains("unknown option")));

        let errors = go_errors(quote!(fetch(1), name = "x"));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("options come first, the future last"));

        let errors = go_errors(quote!(name = "x" fetch(1)));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("expected `,` after the `name` option"));

        let errors = go_errors(quote!(fetch(1), fetch(2)));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("spawns one future"));

        // Several errors still make one expression.
        let out = go(quote!(nmae = "x", timout = "1s", fetch(1))).to_string();
        assert!(out.starts_with('{') && out.ends_with('}'), "{out}");
    }

    #[test]
    fn go_reads_variables_and_calls_as_the_future() {
        for input in [quote!(future,), quote!(fetch(1)), quote!(task)] {
            let args = parse_go_args(input.clone()).unwrap_or_else(|e| panic!("{:?}", messages(e)));
            assert!(!args.future.is_empty(), "{input}");
        }
        let errors = go_errors(quote!(retyr, fetch()));
        assert!(errors[0].contains("did you mean `retry`"), "{errors:#?}");
    }

    #[test]
    fn values_inside_invisible_groups_are_literals() {
        use proc_macro2::{Delimiter, Group, Literal, TokenTree};
        let invisible = |tree: TokenTree| {
            TokenTree::Group(Group::new(Delimiter::None, TokenStream::from(tree)))
        };
        let duration = invisible(Literal::string("1s").into());
        let zero = invisible(Literal::u32_unsuffixed(0).into());
        let args = parse_scoped_args(quote!(timeout = #duration))
            .unwrap_or_else(|e| panic!("{:?}", messages(e)));
        assert!(matches!(
            args.timeout,
            Some((DurationArg::Literal { .. }, _))
        ));
        let errors = messages(
            parse_scoped_args(quote!(concurrency = #zero))
                .err()
                .unwrap_or_else(|| panic!("should fail")),
        );
        assert!(errors[0].contains("`concurrency = 0`"), "{errors:#?}");
    }

    #[test]
    fn negative_counts_and_durations_are_rejected() {
        let errors = messages(
            parse_scoped_args(quote!(concurrency = -1, retry = -2, timeout = -3))
                .err()
                .unwrap_or_else(|| panic!("should fail")),
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("`concurrency` can't be negative"));
        assert!(errors[1].contains("`retry` can't be negative"));
        assert!(errors[2].contains("durations can't be negative"));
    }

    #[test]
    fn duration_help_keeps_the_written_unit() {
        let errors = messages(
            parse_scoped_args(quote!(timeout = 500ms))
                .err()
                .unwrap_or_else(|| panic!("should fail")),
        );
        assert!(errors[0].contains(r#"`timeout = "500ms"`"#), "{errors:#?}");
        let errors = messages(
            parse_scoped_args(quote!("30s"))
                .err()
                .unwrap_or_else(|| panic!("should fail")),
        );
        assert!(
            errors[0].contains(r#"did you mean `timeout = "30s"`"#),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_missing_return_type_is_unit() {
        let out = scoped(
            quote!(timeout = "1s"),
            quote!(
                async fn job() {}
            ),
        )
        .to_string();
        assert!(out.contains("and `()` cannot"), "{out}");
        let out = scoped(
            quote!(),
            quote!(
                async fn job() {
                    5
                }
            ),
        )
        .to_string();
        assert!(out.contains("__scoped_fake_return : () = loop"), "{out}");
    }

    #[test]
    fn try_go_rejects_a_trailing_question_mark() {
        let out = try_go(quote!(text.parse::<u32>()?), false).to_string();
        assert!(out.contains("drop the `?`"), "{out}");
        let out = try_go(quote!(fetch().await?), true).to_string();
        assert!(out.contains("drop the `?`"), "{out}");
        let inner = try_go(quote!(Some(a? + 1)), false).to_string();
        assert!(!inner.contains("drop the `?`"), "{inner}");
    }

    #[test]
    fn try_go_takes_one_expression() {
        let out = try_go(quote!(a.parse::<u8>(), b.parse::<u8>()), false).to_string();
        assert!(out.contains("takes one expression"), "{out}");
        let out = try_go(quote!(a.parse::<u8>(),), false).to_string();
        assert!(!out.contains("takes one expression"), "{out}");
    }

    #[test]
    fn the_await_detector_ignores_nested_async_blocks() {
        assert!(expand::awaits(quote!(fetch().await)));
        assert!(expand::awaits(quote!((fetch().await).parse())));
        assert!(!expand::awaits(quote!(block_on(async { fetch().await }))));
        assert!(!expand::awaits(quote!(block_on(async move { x.await }))));
        assert!(!expand::awaits(quote!(text.parse::<u32>())));
    }

    #[test]
    fn errors_keep_the_users_fn_and_add_compile_errors() {
        let item = quote!(
            fn load() -> u32 {
                1
            }
        );
        let out = scoped(quote!(timout = "1s"), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()));
        assert!(out.contains("compile_error"));
        // Two problems, one with the arguments and one with the fn: both reported.
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
    }

    /// Token soup must give errors, never a panic.
    #[test]
    fn odd_inputs_never_panic() {
        let inputs = [
            quote!(=),
            quote!(,,,),
            quote!(timeout =),
            quote!(timeout = "1s" "2s"),
            quote!(retry()),
            quote!(retry(max = 99999999999999)),
            quote!(circuit_breaker),
            quote!(attrs("a" = , "b")),
            quote!(skip(1, 2)),
            quote!(crate = 5),
            quote!(123 = 4),
            quote!(concurrency = 99999999999999999999999),
            quote!(timeout = "99999999999999999999999h"),
            quote!(fetch(1), name =),
            quote!(name = "x" fetch(1) retry),
            quote!(timeout = -),
            quote!(concurrency = --1),
            quote!(retry = -"x"),
            quote!("1e"),
            quote!(a, b, c,),
            quote!(x?),
            quote!(?),
        ];
        for input in inputs {
            let _ = parse_scoped_args(input.clone());
            let _ = parse_go_args(input.clone());
            let _ = scoped(
                input.clone(),
                quote!(
                    async fn f() {}
                ),
            );
            let _ = scoped(quote!(), input.clone());
            let _ = try_go(input, true);
        }
    }

    #[test]
    fn try_go_takes_a_leading_crate_path() {
        let out = try_go(quote!(crate = "my_scope", text.parse::<u32>()), false).to_string();
        assert!(out.contains("my_scope :: __private :: ValueProbe"), "{out}");
        assert!(!out.contains(":: go_go_scope"), "{out}");
        let raw = try_go(quote!(crate = "::deps::scope", fetch().await), true).to_string();
        assert!(
            raw.contains(":: deps :: scope :: __private :: catch_async"),
            "{raw}"
        );
        // Without the option, the default path; `crate::` paths are expressions, not options.
        let plain = try_go(quote!(crate::parse(text)), false).to_string();
        assert!(plain.contains(":: go_go_scope :: __private"), "{plain}");
        assert!(plain.contains("crate :: parse (text)"), "{plain}");
    }

    #[test]
    fn try_go_crate_option_errors_are_pointed() {
        let cases = [
            (
                quote!(crate = 5, x),
                "`crate` takes the path of go-go-scope as a string",
            ),
            (
                quote!(crate = "my_scope" x),
                "expected `,` after the `crate` option of `try_go!`",
            ),
            (quote!(crate = "not a path", x), "is not a path"),
            (quote!(crate = "my_scope",), "`try_go!` needs an expression"),
        ];
        for (input, expected) in cases {
            let out = try_go(input.clone(), false).to_string();
            assert!(out.contains("compile_error"), "{input}: {out}");
            assert!(out.contains(expected), "{input}: {out}");
        }
    }

    /// What the macros produce for representative inputs, formatted with rustfmt, checked
    /// against `snapshots/expansion.rs` so reviewers can read it. Set `UPDATE_SNAPSHOTS=1`
    /// to rewrite the file after an intended change.
    #[test]
    fn expansion_snapshot() {
        let scoped_fn = scoped(
            quote!(
                timeout = "30s",
                concurrency = 4,
                metrics,
                circuit_breaker(failure_threshold = 5, reset_timeout = "30s"),
                attrs("order.id" = id)
            ),
            quote!(
                /// Loads an order.
                pub async fn process_order(id: u64) -> Result<Receipt, AppError> {
                    let user = go!(fetch_user(id));
                    let (err, user) = user.await;
                    Ok(Receipt::new(err, user))
                }
            ),
        );
        let local_fn = scoped(
            quote!(local, timeout = "5s"),
            quote!(
                async fn prices(db: &Db, ids: &[u64]) -> Result<u64, AppError> {
                    let tasks: Vec<_> = ids.iter().map(|id| go!(db.price(*id))).collect();
                    let audit = go!(name = "audit", db.audit(ids));
                    sum(tasks, audit).await
                }
            ),
        );
        let plain_go = go(quote!(fetch_user(id)));
        let go_with_options = go(quote!(
            name = "fetch-posts",
            timeout = "2s",
            retry = 3,
            fetch_posts(id)
        ));
        let go_once_with_options = go(quote!(
            name = "audit",
            scope = request_scope,
            write_audit(id)
        ));
        let try_go_sync = try_go(quote!(serde_json::from_str::<Order>(&body)), false);
        let try_go_raw_async = try_go(quote!(db.query(q).await), true);
        let source = format!(
            "// Generated by the `expansion_snapshot` test of go-go-scope-macros; do not edit.\n\
             // #[scoped(timeout = \"30s\", concurrency = 4, metrics, circuit_breaker(..), attrs(..))]\n\
             {scoped_fn}\n\
             // #[scoped(local, timeout = \"5s\")]\n\
             {local_fn}\n\
             fn plain_go() {{ let task = {plain_go}; }}\n\
             fn go_with_options() {{ let task = {go_with_options}; }}\n\
             fn go_once_with_options() {{ let task = {go_once_with_options}; }}\n\
             fn try_go_sync() {{ let (err, order) = {try_go_sync}; }}\n\
             async fn try_go_raw_async() {{ let (err, row) = {try_go_raw_async}; }}\n"
        );
        let formatted = rustfmt(&source);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/expansion.rs");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, &formatted).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        }
        let expected =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        assert_eq!(
            formatted, expected,
            "the expansion changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and review the diff"
        );
    }

    fn rustfmt(source: &str) -> String {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("rustfmt")
            .args(["--edition", "2024", "--emit", "stdout"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("the snapshot needs rustfmt on PATH: {e}"));
        child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(source.as_bytes()))
            .transpose()
            .unwrap_or_else(|e| panic!("feeding rustfmt: {e}"));
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("running rustfmt: {e}"));
        assert!(output.status.success(), "rustfmt failed on:\n{source}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
