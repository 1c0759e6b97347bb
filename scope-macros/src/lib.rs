//! Procedural macros for [go-go-scope]: [`#[scoped]`](macro@scoped), [`go!`], [`try_go!`] and
//! [`try_go_raw!`].
//!
//! Use them through the runtime crate, which re-exports them (feature `macros`, on by default):
//! `use go_go_scope::prelude::*;`. The generated code refers to the runtime only through the
//! hidden path `::go_go_scope::__private`, so depending on `go-go-scope` alone is enough; for a
//! renamed dependency give `crate = "name"` to `#[scoped]`, `go!`, `try_go!` and `try_go_raw!`
//! (or add `extern crate name as go_go_scope;` to the crate root).
//!
//! ```
//! use go_go_scope::prelude::*;
//!
//! #[derive(Debug)]
//! enum AppError { Scope(Error), Parse(String) }
//! impl From<Error> for AppError {
//!     fn from(e: Error) -> Self { AppError::Scope(e) }
//! }
//!
//! async fn fetch_price(item: u32) -> Result<u32, std::io::Error> { Ok(item * 100) }
//!
//! #[scoped(timeout = "5s", concurrency = 4)]
//! async fn total(items: Vec<u32>, discount: &str) -> Result<u32, AppError> {
//!     let tasks: Vec<Task<u32>> = items.into_iter().map(|i| go!(fetch_price(i))).collect();
//!     let (err, discount) = try_go!(discount.parse::<u32>());
//!     if let Some(message) = err {
//!         return Err(AppError::Parse(message));
//!     }
//!     let mut sum = 0;
//!     for task in tasks {
//!         sum += task.result().await?;       // a failed task: its error, through `?`
//!     }
//!     Ok(sum - discount.unwrap_or(0))
//! }   // the scope ends here: anything still running is cancelled and awaited
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert_eq!(total(vec![1, 2], "50").await.unwrap(), 250);
//! assert!(matches!(total(vec![1], "x").await, Err(AppError::Parse(_))));
//! # }
//! ```
//!
//! The full reference — every argument with an example and the diagnostics it can produce — is
//! `docs/dsl.md` in the repository.
//!
//! # How the macros work
//! Each macro parses its input into typed options (every value kept with its span), validates
//! them, and only then generates code; every problem found is reported at once, spanned on the
//! offending token, with a `help:` line. On errors `#[scoped]` emits the fn unchanged beside the
//! errors, so the rest of the crate still type-checks and errors do not cascade. The fn body is
//! kept token for token, and a never-executed return edge typed with the fn's return type makes
//! type errors point at the user's code.
//!
//! A proc macro sees tokens, not types. Where the generated code must behave differently by
//! type (a future returning `Result` or not, a return type that can carry the scope's error or
//! not), it lets method resolution choose at compile time ("autoref specialization"); the limits
//! are written on each macro below.
//!
//! # Fuzzing the parsers
//! All the logic lives in `src/engine/`, which uses only `proc_macro2`, `syn` and `quote` and
//! refers to its own modules with `super::`. A fuzz target includes it with
//! `#[path = "<path to>/scope-macros/src/engine/mod.rs"] mod engine;` and calls the pure
//! functions `engine::duration::parse(&str)`, `engine::parse_scoped_args(TokenStream)`,
//! `engine::parse_go_args(TokenStream)`, or the whole macros `engine::scoped(attr, item)`,
//! `engine::go(input)` and `engine::try_go(input, raw)`. None of them panics on any input.
//!
//! [go-go-scope]: https://docs.rs/go-go-scope

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod engine;

use proc_macro::TokenStream;

/// Runs an `async fn`'s body in a scope of its own: every task spawned in it (with [`go!`])
/// belongs to that scope, and when the fn returns — by its last expression, `return`, `?`, or
/// its scope's deadline — whatever is still running is cancelled and awaited, and the scope's
/// resources are disposed last-first.
///
/// ```
/// use go_go_scope::prelude::*;
///
/// #[scoped(timeout = "30ms")]
/// async fn slow() -> Result<u32, Error> {
///     tokio::time::sleep(std::time::Duration::from_secs(60)).await;
///     Ok(1)
/// }
///
/// #[scoped(name = "checkout", concurrency = 2, metrics)]
/// async fn checkout(ids: Vec<u32>) -> Result<u32, Error> {
///     assert_eq!(Scope::current().name(), "checkout");
///     let tasks: Vec<_> = ids.into_iter().map(|id| go!(async move { id * 2 })).collect();
///     let mut sum = 0;
///     for task in tasks {
///         sum += task.result().await?;
///     }
///     Ok(sum)
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// assert_eq!(checkout(vec![1, 2, 3]).await.unwrap(), 12);
/// assert!(matches!(slow().await, Err(Error::Timeout { .. })));
/// # }
/// ```
///
/// # Arguments
/// All optional, comma-separated, each at most once:
///
/// | argument | effect |
/// |---|---|
/// | `timeout = "30s"` | scope deadline (`ms`, `s`, `m`, `h`, `us`, `ns`, combined as `"1m30s"`, `_` in numbers, fractions `"1.5s"`), checked and converted to a constant at compile time; or `timeout = EXPR` for a `Duration` value |
/// | `name = "..."` | the scope's name (default: the fn's name); any `Into<Cow<'static, str>>` expression |
/// | `tracer` / `tracer = EXPR` | traced spans for the scope and its tasks (bare: the global tracer provider) |
/// | `concurrency = N` | at most `N` tasks of the scope run at once; `N ≥ 1` is checked for literals |
/// | `metrics` | collect `ScopeMetrics` for the scope |
/// | `circuit_breaker(failure_threshold = 5, reset_timeout = "30s")` | one breaker per fn, shared by all its calls (created on the first call, kept in a `static`); `circuit_breaker = EXPR` uses a breaker you built |
/// | `retry = N`, `retry = EXPR`, `retry(max = N, delay = "100ms", backoff = "exponential", jitter, max_delay = "5s")` | the scope's default retry policy: applies to tasks that can be re-run (`go!(retry, ..)`, `Scope::task`) and set none |
/// | `parent = EXPR` | an explicit parent (`Scope` or `&Scope`); the default parent is the scope the fn is called from, so scoped fns nest |
/// | `parent_from = EXPR` | the span's parent from a remote caller's W3C `traceparent`: an `http::HeaderMap`, a map of strings, any `trace::TraceCarrier` (feature `otel`) |
/// | `attrs("k" = EXPR, ..)` | extra span attributes |
/// | `skip(arg, ..)` / `skip_all` | arguments not recorded as span attributes; each name must be an argument of the fn |
/// | `wait` | when the body ends, wait for outstanding tasks instead of cancelling them |
/// | `local` / `local(unsend)` | a local scope: its tasks run inside the fn's own future and may borrow the fn's arguments (see below) |
/// | `crate = "path"` | the path of the runtime crate, for a renamed dependency |
///
/// `tracer`, `attrs(..)` and the recorded arguments (`arg.NAME`, minus `skip(..)`, none with
/// `skip_all`) end up on the scope's span; the arguments are read only when a subscriber could
/// record it.
///
/// A value passed through a `macro_rules!` fragment (`timeout = $t`, `concurrency = $n`) is
/// checked as if it were written in place.
///
/// # Return types
/// - `Result<T, E>` with `E: From<go_go_scope::Error>`, or the tuple
///   `(Option<go_go_scope::Error>, Option<T>)`: the scope's deadline or cancellation (by its
///   parent, or `Scope::current().cancel(..)`) ends the body at its next await point and
///   becomes the return value (`Err(E::from(error))`, or `(Some(error), None)`).
/// - Any other type (`()`, `u32`, an `impl Trait`, a `Result` whose error does not convert):
///   the body always runs to completion; if the scope is cancelled meanwhile, its tasks end
///   (`go!` tasks resolve to the cancellation error) while the body goes on. `timeout` and
///   `circuit_breaker` need a type of the first kind and are a compile error otherwise (a fn
///   without `->` returns `()`, so it is of the second kind). If the
///   scope cannot even be opened (no Tokio runtime, or a parent that already closed) such a fn
///   panics, having no other way to report it.
///
/// # Local scopes: `local`
/// With `local`, the scope is a `LocalScope` (see `Scope::local`): its tasks are not Tokio
/// tasks but run inside the fn's own future, concurrently with the body and each other, never
/// in parallel. What that buys is borrowing: a `go!` written in the body spawns into the local
/// scope, and its future may borrow the fn's arguments, no `Arc`, no clone, no `'static`.
/// Every other option works as it does for a spawned scope.
///
/// ```
/// use go_go_scope::prelude::*;
///
/// async fn price(catalog: &[(u32, u64)], id: u32) -> Result<u64, String> {
///     tokio::task::yield_now().await;
///     catalog.iter().find(|(item, _)| *item == id).map(|(_, c)| *c).ok_or(format!("no item {id}"))
/// }
///
/// #[scoped(local, timeout = "5s", concurrency = 8)]
/// async fn total(catalog: &[(u32, u64)], ids: &[u32]) -> Result<u64, Error> {
///     let tasks: Vec<_> = ids.iter().map(|id| go!(price(catalog, *id))).collect();
///     let mut sum = 0;
///     for task in tasks {
///         sum += task.result().await?;
///     }
///     Ok(sum)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let catalog = vec![(1, 250), (2, 100)];
/// assert_eq!(total(&catalog, &[1, 2]).await.unwrap(), 350);
/// # }
/// ```
///
/// - Tasks may borrow what outlives the scope: the fn's arguments (owned ones too: they stay in
///   the fn's frame) and whatever those point to. A variable declared in the body lives inside
///   the scope, so a task cannot borrow it (move it in with `async move`, or make it an
///   argument).
/// - With `local` the tasks must be `Send` and the fn's future is `Send`, as axum and tonic
///   handlers need. `local(unsend)` takes tasks that are not `Send` (an `Rc`, a `RefCell`
///   borrow held across an await); the fn's future is then not `Send` either.
/// - A `go!` inside another `go!`'s future runs in a task, which cannot borrow the scope: it
///   spawns a Tokio task into the same scope, so its future must be `Send + 'static`.
///   `go!(scope = s, ..)` still spawns into `s`.
///
/// # With `#[tokio::main]` and `#[tokio::test]`
/// Put `#[scoped]` **above** them: attributes expand from the top, and `#[tokio::main]` turns
/// the fn into a non-async one that `#[scoped]` would reject.
///
/// ```
/// # use go_go_scope::prelude::*;
/// #[scoped(name = "main")]
/// #[tokio::main]
/// async fn main() {
///     assert_eq!(Scope::current().name(), "main");
/// }
/// ```
///
/// # Expansion
/// Roughly, for `#[scoped(timeout = "30s")] async fn f(x: u64) -> Result<T, E> { body }`:
///
/// ```text
/// async fn f(x: u64) -> Result<T, E> {
///     let options = __private::Scope::builder().name("f").timeout(/* const 30 s */);
///     let kind = (&__private::Returns::<Result<T, E>>::new()).__scoped_kind(); // Carrying
///     kind.run(options, /* wait */ false, async move {
///         if false { /* type checks; let r: Result<T, E> = loop {}; return r; */ }
///         { body }
///     }).await
/// }
/// ```
/// `Carrying::run` is `Scope::run` with the error converted into the return type;
/// `Completing::run` runs the body to completion in the scope, then closes it.
#[proc_macro_attribute]
pub fn scoped(attr: TokenStream, item: TokenStream) -> TokenStream {
    engine::scoped(attr.into(), item.into()).into()
}

/// Spawns a future as a task of the current scope, now, and returns its `Task`.
///
/// The current scope is the innermost [`#[scoped]`](macro@scoped) fn or `Scope::run` body on
/// this task; inside a task it is the task's own scope, so `go!` there spawns a sibling. With
/// `scope = EXPR` it spawns into that scope instead. Outside any scope, `go!` panics with a
/// message naming both ways out.
///
/// Awaiting the task gives `(Option<go_go_scope::Error>, Option<T>)`:
/// - a future whose output is `Result<T, E>` with `E: Into<Box<dyn Error + Send + Sync>>`
///   gives `Task<T>`; its `Err(e)` becomes the tuple's error (`Error::Failed`, with `e` kept
///   for `downcast_ref`, or `e` itself when it is a `go_go_scope::Error`);
/// - any other future gives `Task<Output>` with `(None, Some(output))` on success.
///
/// ```
/// use go_go_scope::prelude::*;
///
/// #[scoped]
/// async fn demo() -> Result<(), Error> {
///     let plain: Task<u32> = go!(async { 7 });
///     let fallible: Task<u32> = go!(async { "x".parse::<u32>() });
///     assert_eq!(plain.await.1, Some(7));
///     let (err, value) = fallible.await;
///     assert!(value.is_none());
///     assert!(err.unwrap().downcast_ref::<std::num::ParseIntError>().is_some());
///
///     // Options come first, the future last.
///     let slow = go!(name = "slow", timeout = "10ms", tokio::time::sleep(std::time::Duration::from_secs(5)));
///     assert_eq!(slow.await.0.unwrap().to_string(), "task `slow` timed out after 10ms");
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// demo().await.unwrap();
/// let scope = Scope::new().unwrap();             // outside any scope: name one
/// assert_eq!(go!(scope = scope, async { 1 }).await.1, Some(1));
/// scope.close().await.unwrap();
/// # }
/// ```
///
/// # Options
/// `name = EXPR` (the task's name), `timeout = "2s"` (bounds each attempt; a literal is
/// checked at compile time, or a `Duration` expression), `retry = N` / `retry = EXPR` /
/// `retry(max = N, delay = .., backoff = .., jitter, max_delay = ..)` (as on `#[scoped]`), bare
/// `retry` (re-runnable, under the scope's default retry policy), `attrs("k" = EXPR, ..)`
/// (attributes of the task's span),
/// `scope = EXPR` (a `Scope` or `&Scope`), `crate = "path"`.
///
/// # In a `#[scoped(local)]` fn
/// There `go!` spawns into the fn's local scope and returns a `LocalTask`, which awaits to the
/// same tuple; its future may borrow the fn's arguments and need not be `'static`. With
/// `retry`, the factory closure borrows what it uses instead of taking it (write
/// `async move { .. }` for the attempt, so each attempt copies the references it needs).
///
/// # Retries re-evaluate the expression
/// With `retry`, the expression becomes the body of a `move` closure called once per attempt,
/// so every attempt starts over with a fresh future. Variables it uses are moved into that
/// closure (clone them first if you still need them), and it must be callable more than once:
/// an expression that moves a captured value out (`upload(bytes)` with `bytes: Vec<u8>`) is a
/// compile error pointing at that value; write `upload(bytes.clone())`. Without `retry` the
/// expression is evaluated once, where `go!` stands, and borrows nothing past that point.
///
/// # Limits of the flattening
/// The choice between the two kinds is made from the future's type where `go!` is written. A
/// `Result` whose error type is not boxable (`Result<T, ()>`) is a plain value:
/// `Task<Result<T, ()>>`. In generic code the choice follows the bounds in scope: a future of a
/// type parameter `F` is flattened only if the bounds say `F: Future<Output = Result<T, E>>`
/// with `E: Into<Box<dyn Error + Send + Sync>>`.
#[proc_macro]
pub fn go(input: TokenStream) -> TokenStream {
    engine::go(input.into()).into()
}

/// Turns one fallible expression into a Go-style tuple `(Option<String>, Option<T>)`, with the
/// error as its message. Works in sync and async code, inside or outside any scope.
///
/// - `Result<T, E>` (`E: Display`): `(None, Some(t))` or `(Some(e.to_string()), None)`;
/// - `Option<T>`: `None` becomes the error `"value was None"`;
/// - a panic while evaluating the expression is caught and its message becomes the error
///   (the panic hook still reports it, as for any caught panic);
/// - an expression that awaits (`try_go!(fetch().await)`) is awaited inside a panic-catching
///   wrapper, so a panic in any poll is caught too.
///
/// The expression is evaluated inside a closure (or an `async` block when it awaits): `?`,
/// `return` and `break` in it refer to that closure, not to the enclosing fn.
///
/// For a renamed dependency, name the runtime's path first:
/// `try_go!(crate = "my_scope", text.parse::<u32>())`.
///
/// ```
/// use go_go_scope::try_go;
///
/// async fn fetch() -> Result<u32, std::io::Error> {
///     Err(std::io::Error::other("offline"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (err, port) = try_go!("8080".parse::<u16>());
/// assert_eq!((err, port), (None, Some(8080)));
///
/// let (err, port) = try_go!("http".parse::<u16>());
/// assert_eq!(err.as_deref(), Some("invalid digit found in string"));
/// assert_eq!(port, None);
///
/// let (err, _) = try_go!(std::env::args().nth(1000));
/// assert_eq!(err.as_deref(), Some("value was None"));
///
/// let (err, value) = try_go!(fetch().await);
/// assert_eq!((err.as_deref(), value), (Some("offline"), None));
/// # }
/// ```
#[proc_macro]
pub fn try_go(input: TokenStream) -> TokenStream {
    engine::try_go(input.into(), false).into()
}

/// Like [`try_go!`], but keeps the error as its own type: `Result<T, E>` gives
/// `(Option<E>, Option<T>)`, so the error can be matched without a downcast and keeps its
/// `source()` chain.
///
/// `Option<T>` gives `(Option<String>, Option<T>)` with `"value was None"`, as `try_go!` does.
/// A caught panic becomes `E` when `E` can hold it: `E::from(go_go_scope::Error::Panicked { .. })`
/// when `E: From<go_go_scope::Error>` (go-go-scope's `Error`, `Box<dyn Error + Send + Sync>`,
/// `anyhow::Error`, an application error with that `From`), else `E::from(message)` when
/// `E: From<String>`; for any other `E` the panic keeps unwinding.
///
/// ```
/// use go_go_scope::try_go_raw;
///
/// #[derive(Debug, PartialEq)]
/// enum DbError { Busy { retry_after: u32 } }
///
/// fn query() -> Result<u32, DbError> { Err(DbError::Busy { retry_after: 5 }) }
///
/// let (err, row) = try_go_raw!(query());
/// assert_eq!(row, None);
/// match err {
///     Some(DbError::Busy { retry_after }) => assert_eq!(retry_after, 5),
///     None => unreachable!(),
/// }
/// ```
#[proc_macro]
pub fn try_go_raw(input: TokenStream) -> TokenStream {
    engine::try_go(input.into(), true).into()
}
