//! Code generation. Runs only on arguments that passed `validate`.
//!
//! Conventions: the runtime is reached only through `<crate>::__private`; the macros' own
//! locals are `__scoped_`-prefixed and created with mixed-site hygiene, so user code can neither
//! see nor shadow them; user tokens keep their spans, so type errors point at user code.

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Type};

use super::args::{
    Backoff, BreakerArg, CountArg, DurationArg, GoArgs, LocalArg, RetryArg, RetryPolicy,
    ScopedArgs, TracerArg,
};
use super::item::{ScopedFn, mentions_impl_trait};

/// The path generated code uses for the runtime crate.
pub(crate) fn runtime_path(krate: Option<&syn::Path>) -> TokenStream {
    match krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::go_go_scope),
    }
}

fn local(name: &str) -> Ident {
    format_ident!("__scoped_{}", name, span = Span::mixed_site())
}

/// A `Duration` value: literals become a constant computed at compile time.
fn duration(krate: &TokenStream, arg: &DurationArg) -> TokenStream {
    match arg {
        DurationArg::Literal { value, span } => {
            let secs = Literal::u64_suffixed(value.as_secs());
            let nanos = Literal::u32_suffixed(value.subsec_nanos());
            quote_spanned! {*span=>
                {
                    const __SCOPED_DURATION: #krate::__private::Duration =
                        #krate::__private::Duration::new(#secs, #nanos);
                    __SCOPED_DURATION
                }
            }
        }
        DurationArg::Expr(expr) => typed_value(
            &quote!(#krate::__private),
            "DurationValue::into_duration",
            expr,
        ),
    }
}

/// An option's expression passed through `helper` (a `__private` trait whose own message
/// explains a wrong type), spanned at the expression; a string literal goes through as it is.
fn typed_value(private: &TokenStream, helper: &str, expr: &syn::Expr) -> TokenStream {
    if let Some(syn::Lit::Str(_)) = super::args::literal(expr) {
        return expr.to_token_stream();
    }
    let (trait_name, method) = helper.split_once("::").unwrap_or((helper, helper));
    let span = expr.span();
    let private = respanned(private.clone(), span);
    let trait_name = Ident::new(trait_name, span);
    let method = Ident::new(method, span);
    quote_spanned!(span=> #private::#trait_name::#method(#expr))
}

/// `tokens` placed at `span`, so a call built from them is reported at the user's expression.
fn respanned(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respanned(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// A value for `.retry(..)`; `None` for `go!(retry, ..)` (the scope's default applies).
fn retry(krate: &TokenStream, arg: &RetryArg) -> Option<TokenStream> {
    let retry = quote!(#krate::__private::Retry);
    Some(match arg {
        RetryArg::Count(count) => {
            let count = Literal::u32_suffixed(*count);
            quote!(#retry::new(#count))
        }
        RetryArg::Expr(expr) => {
            typed_value(&quote!(#krate::__private), "RetryValue::into_retry", expr)
        }
        RetryArg::Policy(policy) => retry_policy(krate, policy),
        RetryArg::ScopeDefault => return None,
    })
}

fn retry_policy(krate: &TokenStream, policy: &RetryPolicy) -> TokenStream {
    let retry = quote!(#krate::__private::Retry);
    let max = Literal::u32_suffixed(policy.max.unwrap_or(0));
    let mut tokens = match (&policy.delay, policy.backoff) {
        (None, _) => quote_spanned!(policy.span=> #retry::new(#max)),
        (Some(delay), Some((Backoff::Exponential, _))) => {
            let delay = duration(krate, delay);
            quote_spanned!(policy.span=> #retry::exponential(#max, #delay))
        }
        (Some(delay), _) => {
            let delay = duration(krate, delay);
            quote_spanned!(policy.span=> #retry::fixed(#max, #delay))
        }
    };
    if let Some((max_delay, _)) = &policy.max_delay {
        let max_delay = duration(krate, max_delay);
        tokens.extend(quote!(.max_delay(#max_delay)));
    }
    if policy.jitter.is_some() {
        tokens.extend(quote!(.jitter(true)));
    }
    tokens
}

/// Records the fn's plainly named arguments as `arg.NAME` attributes of the scope's span,
/// minus `skip(..)` (none with `skip_all`). Which arguments can be recorded (integers, floats,
/// bools, strings) is decided per type at the expansion site; the values are read only when a
/// subscriber or the fn's tracer could record the span.
fn record_arguments(
    private: &TokenStream,
    options: &Ident,
    args: &ScopedArgs,
    item: &ScopedFn,
) -> TokenStream {
    if args.skip_all.is_some() {
        return TokenStream::new();
    }
    let recorded: Vec<Ident> = item
        .named_arguments()
        .into_iter()
        .filter(|name| !args.skip.iter().any(|skipped| skipped == name))
        .collect();
    if recorded.is_empty() {
        return TokenStream::new();
    }
    // With a tracer the spans may go straight to it, with no `tracing` subscriber at all.
    let traced = args.tracer.is_some();
    let keys = recorded.iter().map(|name| {
        let name = syn::ext::IdentExt::unraw(name).to_string();
        Literal::string(&format!("arg.{name}"))
    });
    quote! {
        let #options = if #private::argument_attrs_wanted(#traced) {
            use #private::{RecordedArg as _, UnrecordedArg as _};
            #(let #options = #private::record_argument(
                #options,
                #keys,
                (&#private::ArgProbe(&#recorded)).__arg_attr(),
            );)*
            #options
        } else {
            #options
        };
    }
}

/// Splits the body's inner attributes (`#![allow(..)]`) from its statements: they must stay at
/// the top of the fn body, where they are allowed.
fn split_inner_attributes(body: &Group) -> (TokenStream, TokenStream) {
    let trees: Vec<TokenTree> = body.stream().into_iter().collect();
    let mut index = 0;
    while let (
        Some(TokenTree::Punct(pound)),
        Some(TokenTree::Punct(bang)),
        Some(TokenTree::Group(group)),
    ) = (trees.get(index), trees.get(index + 1), trees.get(index + 2))
    {
        if pound.as_char() != '#'
            || bang.as_char() != '!'
            || group.delimiter() != Delimiter::Bracket
        {
            break;
        }
        index += 3;
    }
    let inner = trees[..index].iter().cloned().collect();
    let mut statements = Group::new(Delimiter::Brace, trees[index..].iter().cloned().collect());
    statements.set_span(body.span());
    (inner, statements.into_token_stream())
}

fn is_unit(ty: Option<&Type>) -> bool {
    match ty {
        None => true,
        Some(Type::Tuple(tuple)) => tuple.elems.is_empty(),
        Some(_) => false,
    }
}

/// `#[scoped(..)]` on a validated fn.
pub(crate) fn scoped(args: &ScopedArgs, item: ScopedFn) -> TokenStream {
    let krate = runtime_path(args.krate.as_ref());
    let private = quote!(#krate::__private);
    let options = local("options");
    let kind = local("kind");
    let fake_return = local("fake_return");

    let name = match &args.name {
        Some(name) => typed_value(&private, "NameValue::into_name", name),
        None => {
            let ident = syn::ext::IdentExt::unraw(&item.sig.ident).to_string();
            Literal::string(&ident).into_token_stream()
        }
    };
    // The options are applied after the arguments are recorded: an option may take an argument
    // by value (`name = name`, `tracer = tracer`).
    let mut builder = quote!(.name(#name));
    if let Some((timeout, _)) = &args.timeout {
        let timeout = duration(&krate, timeout);
        builder.extend(quote!(.timeout(#timeout)));
    }
    match &args.concurrency {
        Some(CountArg::Literal { value, span }) => {
            let limit = Literal::u64_unsuffixed(*value);
            builder.extend(quote_spanned!(*span=> .concurrency(#limit)));
        }
        Some(CountArg::Expr(expr)) => builder.extend(quote!(.concurrency(#expr))),
        None => {}
    }
    if args.metrics.is_some() {
        builder.extend(quote!(.metrics(true)));
    }
    match &args.tracer {
        Some((TracerArg::Global, span)) => {
            builder.extend(quote_spanned!(*span=> .tracer(#private::ScopeTracer::global())));
        }
        Some((TracerArg::Expr(tracer), _)) => {
            let tracer = typed_value(&private, "TracerValue::into_tracer", tracer);
            builder.extend(quote!(.tracer(#tracer)));
        }
        None => {}
    }
    if let Some((carrier, span)) = &args.parent_from {
        // The remote parent is read from the carrier before the body runs.
        builder.extend(quote_spanned!(*span=> .remote_parent(&(#carrier))));
    }
    for attr in &args.attrs {
        let key = &attr.key;
        let value = typed_value(&private, "AttrValueOf::into_attr", &attr.value);
        builder.extend(quote!(.attr(#key, #value)));
    }
    match &args.circuit_breaker {
        Some((BreakerArg::Expr(expr), _)) => builder.extend(quote!(.circuit_breaker(#expr))),
        Some((
            BreakerArg::Config {
                failure_threshold,
                reset_timeout,
            },
            span,
        )) => {
            let threshold = Literal::u32_suffixed(failure_threshold.map_or(5, |(n, _)| n));
            let reset = match reset_timeout {
                Some(reset) => duration(&krate, reset),
                None => quote!(#private::Duration::from_secs(30)),
            };
            // One breaker per fn, created on its first call: a breaker made per call would
            // forget every failure and never open.
            builder.extend(quote_spanned! {*span=>
                .circuit_breaker({
                    static __SCOPED_BREAKER: #private::OnceLock<#private::CircuitBreaker> =
                        #private::OnceLock::new();
                    #private::persistent_breaker(&__SCOPED_BREAKER, #threshold, #reset)
                })
            });
        }
        None => {}
    }
    if let Some(policy) = args.retry.as_ref().and_then(|arg| retry(&krate, arg)) {
        builder.extend(quote!(.retry(#policy)));
    }
    let parent = args.parent.as_ref().map(|parent| {
        let at_parent = respanned(private.clone(), parent.span());
        let parent = quote_spanned!(parent.span()=> #at_parent::AsScope::as_scope(&(#parent)));
        quote!(let #options = #private::with_parent(#options, #parent);)
    });
    let wait = args.wait.is_some();

    let return_type = item.return_type();
    let nameable = !return_type.is_some_and(|ty| mentions_impl_trait(ty.to_token_stream()));

    // Compile-time checks that never run: the return type edge (the async block's type is the
    // fn's, so `?` and type errors resolve against the user's types), the return-type
    // requirements of `timeout`/`circuit_breaker`, and the values not yet recorded.
    let mut checks = TokenStream::new();
    if let Some(ty) = return_type.filter(|_| nameable) {
        if args.timeout.is_some() {
            checks.extend(quote_spanned!(ty.span()=> <#ty as #private::TimeoutCarrier>::check();));
        }
        if args.circuit_breaker.is_some() {
            checks.extend(quote_spanned!(ty.span()=> <#ty as #private::BreakerCarrier>::check();));
        }
        checks.extend(quote_spanned! {ty.span()=>
            let #fake_return: #ty = loop {};
            return #fake_return;
        });
    } else if return_type.is_none() {
        // No `->`: the fn returns `()`, and a tail value of another type is reported at that
        // value, with the signature as the place the type comes from.
        let signature = item.sig.paren_token.span.close();
        let fake_return = format_ident!(
            "__scoped_fake_return",
            span = Span::mixed_site().located_at(signature)
        );
        checks.extend(quote_spanned! {signature=>
            let #fake_return: () = loop {};
            return #fake_return;
        });
    }
    let never_runs = if checks.is_empty() {
        TokenStream::new()
    } else {
        quote! {
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                #checks
            }
        }
    };

    let select_kind = match return_type {
        Some(ty) if nameable && !is_unit(Some(ty)) => quote! {
            let #kind = {
                use #private::{CarryingKind as _, CompletingKind as _};
                (&#private::Returns::<#ty>::new()).__scoped_kind()
            };
        },
        _ => quote!(let #kind = #private::Completing;),
    };

    let (inner_attributes, statements) = split_inner_attributes(&item.body);
    let body_span = item.body.span();
    let run = match &args.local {
        None => {
            let body = quote_spanned! {body_span=>
                async move {
                    #never_runs
                    #statements
                }
            };
            quote!(#kind.run(#options, #wait, #body).await)
        }
        Some((local_kind, span)) => {
            // The body borrows the fn's arguments where they are (no `move`), so its tasks may
            // borrow them too; `go!` written in it spawns into the local scope.
            let scope = local("local");
            let statements = route_go_to(statements, &scope);
            let run = match local_kind {
                LocalArg::Send => quote_spanned!(*span=> run_local),
                LocalArg::Unsend => quote_spanned!(*span=> run_local_unsend),
            };
            let body = quote_spanned! {body_span=>
                |#scope| ::std::boxed::Box::pin(async {
                    #never_runs
                    #statements
                })
            };
            quote!(#kind.#run(#options, #wait, #body).await)
        }
    };
    let record_args = record_arguments(&private, &options, args, &item);
    let ScopedFn {
        attrs, vis, sig, ..
    } = item;
    let fn_body = quote! {
        #inner_attributes
        let #options = #private::Scope::builder();
        #record_args
        let #options = #options #builder;
        #parent
        #select_kind
        #run
    };
    let mut wrapped = Group::new(Delimiter::Brace, fn_body);
    wrapped.set_span(body_span);
    quote! {
        #(#attrs)*
        #vis #sig #wrapped
    }
}

/// `tokens` with every `go!(..)` in them (outside nested fn items and other `go!`s) given
/// `__local = scope` as its first option, so that it spawns into the local scope `scope`.
fn route_go_to(tokens: TokenStream, scope: &Ident) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(trees.len());
    let mut in_fn_item = false;
    for (index, tree) in trees.iter().enumerate() {
        let routed = match tree {
            TokenTree::Group(group) if in_fn_item && group.delimiter() == Delimiter::Brace => {
                // A nested fn's body cannot see the local scope.
                in_fn_item = false;
                None
            }
            TokenTree::Group(group) => {
                let is_go = index >= 2
                    && matches!(&trees[index - 1], TokenTree::Punct(bang) if bang.as_char() == '!')
                    && matches!(&trees[index - 2], TokenTree::Ident(name) if name == "go");
                let stream = if is_go {
                    let mut routed = quote!(__local = #scope,);
                    routed.extend(group.stream());
                    routed
                } else {
                    route_go_to(group.stream(), scope)
                };
                let mut routed = Group::new(group.delimiter(), stream);
                routed.set_span(group.span());
                Some(TokenTree::Group(routed))
            }
            // `fn name`: an item (`fn(..)` is a pointer type).
            TokenTree::Ident(ident) if ident == "fn" => {
                in_fn_item = matches!(trees.get(index + 1), Some(TokenTree::Ident(_)));
                None
            }
            _ => None,
        };
        out.push(routed.unwrap_or_else(|| tree.clone()));
    }
    out.into_iter().collect()
}

/// `go!(..)` with validated options.
pub(crate) fn go(args: &GoArgs) -> TokenStream {
    let krate = runtime_path(args.krate.as_ref());
    let private = quote!(#krate::__private);
    let future = &args.future;
    let future_span = future
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |tree| tree.span());
    let scope = local("scope");
    // Placed at the future, so a bound the spawn puts on it is reported there.
    let spawned = format_ident!(
        "__scoped_future",
        span = Span::mixed_site().located_at(future_span)
    );
    let kinds = quote!(use #private::{FallibleKind as _, PlainKind as _};);

    let has_options = args.name.is_some()
        || args.timeout.is_some()
        || args.retry.is_some()
        || !args.attrs.is_empty();
    // A `go!` in a `#[scoped(local)]` fn spawns into its local scope, unless told otherwise.
    // Reached through `&*`, so that the body's async block captures the scope it points to and
    // not the closure parameter that holds the reference.
    let local_scope = args
        .local
        .as_ref()
        .filter(|_| args.scope.is_none())
        .map(|scope| quote!(&*#scope));
    if !has_options {
        // The common path: no task builder, no handle to the scope.
        let spawn = match &args.scope {
            None if local_scope.is_some() => quote_spanned! {future_span=>
                (&#spawned).__go_kind().spawn_local(#local_scope, #spawned)
            },
            None => quote_spanned!(future_span=> (&#spawned).__go_kind().spawn_ambient(#spawned)),
            Some(target) => {
                let at_target = respanned(private.clone(), target.span());
                let target =
                    quote_spanned!(target.span()=> #at_target::AsScope::as_scope(&(#target)));
                quote_spanned! {future_span=>
                    (&#spawned).__go_kind().spawn_into(#target, #spawned)
                }
            }
        };
        return quote! {
            {
                #kinds
                let #spawned = #future;
                #spawn
            }
        };
    }

    let mut settings = TokenStream::new();
    if let Some(name) = &args.name {
        let name = typed_value(&private, "NameValue::into_name", name);
        settings.extend(quote!(.name(#name)));
    }
    if let Some((timeout, _)) = &args.timeout {
        let timeout = duration(&krate, timeout);
        settings.extend(quote!(.timeout(#timeout)));
    }
    for attr in &args.attrs {
        let key = &attr.key;
        let value = typed_value(&private, "AttrValueOf::into_attr", &attr.value);
        settings.extend(quote!(.attr(#key, #value)));
    }
    let scope_binding = match &args.scope {
        None if local_scope.is_some() => quote!(let #scope = #local_scope;),
        None => quote!(let #scope = #private::ambient_scope(); let #scope = &#scope;),
        Some(target) => {
            let at_target = respanned(private.clone(), target.span());
            quote_spanned!(target.span()=> let #scope = #at_target::AsScope::as_scope(&(#target));)
        }
    };
    let spawn = match &args.retry {
        None => {
            // The options are set inside the spawn helper, so a value that is not a future
            // fails on one bound and the builder's methods never see it.
            let builder = local("builder");
            let spawn_once = if local_scope.is_some() {
                Ident::new("spawn_once_local", future_span)
            } else {
                Ident::new("spawn_once", future_span)
            };
            quote_spanned! {future_span=>
                let #spawned = #future;
                (&#spawned).__go_kind().#spawn_once(#scope, #spawned, |#builder| #builder #settings)
            }
        }
        Some((policy, retry_span)) => {
            let policy = retry(&krate, policy).map(|policy| quote!(.retry(#policy)));
            // Each attempt evaluates the expression again, so a retried task really starts
            // over; an expression that can run only once is rejected by `task`'s `FnMut` bound.
            // The closure is the `retry` key's doing, so errors about it point at that key, and
            // the value that cannot be moved twice is pointed at in the expression.
            let factory = format_ident!(
                "__scoped_factory",
                span = Span::mixed_site().located_at(*retry_span)
            );
            let attempt = quote_spanned! {future_span=>
                {
                    let #spawned = #future;
                    (&#spawned).__go_kind().wrap(#spawned)
                }
            };
            // A local scope's factory borrows what it uses, as its tasks may; a spawned one
            // must own it.
            let capture = if local_scope.is_some() {
                TokenStream::new()
            } else {
                quote_spanned!(*retry_span=> move)
            };
            quote_spanned! {*retry_span=>
                let #factory = #capture |_: u32| #attempt;
                #scope.task(#factory) #policy #settings .spawn()
            }
        }
    };
    quote! {
        {
            #kinds
            #scope_binding
            #spawn
        }
    }
}

/// True when `tokens` await something outside any nested `async` block.
pub(crate) fn awaits(tokens: TokenStream) -> bool {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut after_async = false;
    for (index, tree) in trees.iter().enumerate() {
        let found = match tree {
            TokenTree::Ident(ident) if ident == "await" => {
                index > 0
                    && matches!(&trees[index - 1], TokenTree::Punct(dot) if dot.as_char() == '.')
            }
            // The body of `async { .. }` / `async move { .. }` awaits on its own.
            TokenTree::Group(group) => {
                !(after_async && group.delimiter() == Delimiter::Brace) && awaits(group.stream())
            }
            _ => false,
        };
        if found {
            return true;
        }
        after_async = match tree {
            TokenTree::Ident(ident) if ident == "async" => true,
            TokenTree::Ident(ident) if ident == "move" => after_async,
            _ => false,
        };
    }
    false
}

/// `try_go!(..)` (`raw == false`) or `try_go_raw!(..)`.
pub(crate) fn try_go(krate: Option<&syn::Path>, expr: TokenStream, raw: bool) -> TokenStream {
    let krate = runtime_path(krate);
    let private = quote!(#krate::__private);
    let caught = local("caught");
    let catch = if awaits(expr.clone()) {
        quote!(#private::catch_async(async { #expr }).await)
    } else {
        quote!(#private::catch(|| #expr))
    };
    if !raw {
        return quote! {
            match #catch {
                #caught => {
                    use #private::{SettledKind as _, UnawaitedKind as _};
                    (&#private::ValueProbe::of(&#caught)).__value_kind().message(#caught)
                }
            }
        };
    }
    quote! {
        match #catch {
            #caught => {
                use #private::{SettledKind as _, UnawaitedKind as _};
                use #private::{RawAsErrorKind as _, RawAsMessageKind as _, RawResumesKind as _};
                let #caught = (&#private::ValueProbe::of(&#caught)).__value_kind().settle(#caught);
                (&&&#private::RawTarget::of(&#caught)).__raw_kind().split(#caught)
            }
        }
    }
}
