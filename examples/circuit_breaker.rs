//! A circuit breaker in front of a payment backend that goes down and comes back.
//!
//! Every request is its own scope; the breaker is shared application state that outlives them,
//! so failures in one request count for the next. Watch the breaker open after three failures
//! in a row, refuse calls without touching the backend, let exactly one trial call through
//! after its reset timeout, and close again once the backend answers.
//!
//! Run: `cargo run -p go-go-scope-examples --example circuit_breaker`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use go_go_scope::{CircuitBreaker, CircuitState, Error, Retry, Scope};
use tokio::time::{Instant, sleep};

/// The payment backend's own error type; the breaker counts it as a failure.
#[derive(Debug)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment backend unavailable")
    }
}

impl std::error::Error for Unavailable {}

/// A fake remote service: it can be switched off, and counts the calls that reached it.
#[derive(Default)]
struct Backend {
    down: AtomicBool,
    calls: AtomicU32,
}

impl Backend {
    async fn charge(&self, order: u32) -> Result<String, Unavailable> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_millis(5)).await;
        if self.down.load(Ordering::SeqCst) {
            Err(Unavailable)
        } else {
            Ok(format!("receipt-{order}"))
        }
    }
}

/// Handles one order in a scope of its own, through the shared breaker.
async fn checkout(backend: Arc<Backend>, breaker: &CircuitBreaker, order: u32) -> String {
    let request = Scope::builder()
        .name("checkout")
        .timeout(Duration::from_secs(1))
        .circuit_breaker(breaker.clone());
    let outcome = Scope::run(request, |s| async move {
        // With a breaker on the scope, every task of the scope asks it first.
        s.try_spawn(async move { backend.charge(order).await })
            .await
    })
    .await;
    match outcome {
        Ok((None, Some(receipt))) => format!("paid: {receipt}"),
        // Refused without calling the backend: answer at once with a fallback.
        Ok((Some(Error::CircuitOpen), _)) => "refused by the breaker, queued for later".into(),
        Ok((Some(err), _)) => format!("failed: {err}"),
        Ok((None, None)) => unreachable!("a task gives an error or a value"),
        Err(scope_err) => format!("request scope failed: {scope_err}"),
    }
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let at = move || format!("[{:>4} ms]", started.elapsed().as_millis());

    let breaker = CircuitBreaker::builder()
        .failure_threshold(3)
        .reset_timeout(Duration::from_millis(200))
        .on_state_change(move |from, to| println!("{}   breaker: {from} -> {to}", at()))
        .build()
        .expect("a threshold of 3 is valid");
    let backend = Arc::new(Backend::default());

    println!("{} the backend is up", at());
    for order in 1..=2 {
        println!(
            "{} order {order}: {}",
            at(),
            checkout(backend.clone(), &breaker, order).await
        );
    }

    println!("{} the backend goes down", at());
    backend.down.store(true, Ordering::SeqCst);
    for order in 3..=7 {
        let calls_before = backend.calls.load(Ordering::SeqCst);
        let answer = checkout(backend.clone(), &breaker, order).await;
        let reached = backend.calls.load(Ordering::SeqCst) - calls_before;
        println!(
            "{} order {order}: {answer} (backend calls: {reached})",
            at()
        );
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    println!(
        "{} {} failures in a row, {} calls refused so far",
        at(),
        breaker.failure_count(),
        breaker.rejections()
    );

    println!(
        "{} waiting out the reset timeout; the backend is still down",
        at()
    );
    sleep(breaker.reset_timeout()).await;
    let trial = checkout(backend.clone(), &breaker, 8).await;
    println!("{} order 8 was the trial: {trial}", at());

    println!("{} the backend recovers", at());
    backend.down.store(false, Ordering::SeqCst);
    sleep(breaker.reset_timeout()).await;
    // Two orders arrive together while the breaker is half-open: one is the trial, the other
    // is refused until the trial has decided.
    let (a, b) = tokio::join!(
        checkout(backend.clone(), &breaker, 9),
        checkout(backend.clone(), &breaker, 10)
    );
    println!("{} order 9: {a}", at());
    println!("{} order 10: {b}", at());
    let after = checkout(backend.clone(), &breaker, 11).await;
    println!("{} order 11: {after}", at());
    assert_eq!(breaker.state(), CircuitState::Closed);

    // A breaker also works on its own, without a scope, and a retry never retries its refusal.
    println!(
        "{} the backend goes down again; a retrying task meets the breaker",
        at()
    );
    backend.down.store(true, Ordering::SeqCst);
    let attempts = Arc::new(AtomicU32::new(0));
    let outcome = Scope::run(
        Scope::builder()
            .name("retrying")
            .circuit_breaker(breaker.clone()),
        |s| {
            let (backend, attempts) = (backend.clone(), attempts.clone());
            async move {
                s.task(move |_attempt| {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    let backend = backend.clone();
                    async move { backend.charge(12).await }
                })
                .name("charge-12")
                .retry(Retry::new(10))
                .spawn()
                .await
            }
        },
    )
    .await
    .expect("the scope opens");
    let error = outcome.0.expect("the backend is down");
    assert!(matches!(error, Error::CircuitOpen));
    println!(
        "{} order 12: gave up after {} attempts: the third failure opened the breaker, \
         and its refusal is not retried",
        at(),
        attempts.load(Ordering::SeqCst)
    );
    let direct = breaker.call(backend.charge(13)).await;
    println!(
        "{} order 13 through breaker.call(), no scope: refused = {}",
        at(),
        matches!(direct, Err(Error::CircuitOpen))
    );
}
