//! A request fans out to three backends with a deadline, a per-call timeout and a retry; the
//! slowest answer is cut off when the scope ends.
//!
//! `cargo run -p go-go-scope --example fan_out`

use std::time::Duration;

use go_go_scope::{Error, Retry, Scope};
use tokio::time::sleep;

/// A stand-in for a network call that takes `millis` and fails on its first try when `flaky`.
async fn call(
    backend: &'static str,
    millis: u64,
    attempt: u32,
    flaky: bool,
) -> Result<String, std::io::Error> {
    sleep(Duration::from_millis(millis)).await;
    if flaky && attempt == 1 {
        return Err(std::io::Error::other(format!(
            "{backend}: connection reset"
        )));
    }
    Ok(format!(
        "{backend} answered after {millis} ms (attempt {attempt})"
    ))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deadline = Scope::builder()
        .name("fan-out")
        .timeout(Duration::from_millis(500));
    Scope::run(deadline, |s| async move {
        let users = s.try_spawn(call("users", 20, 1, false));
        let prices = s
            .task(|attempt| call("prices", 30, attempt, true))
            .name("prices")
            .timeout(Duration::from_millis(100))
            .retry(Retry::fixed(2, Duration::from_millis(10)))
            .spawn();
        // Never awaited: the scope cancels it when the body ends.
        let _audit = s.try_spawn(call("audit", 60_000, 1, false));

        for task in [users, prices] {
            match task.await {
                (None, Some(answer)) => println!("{answer}"),
                (Some(error), _) => println!("failed: {error}"),
                (None, None) => unreachable!("a task gives exactly one side"),
            }
        }
        println!("done; the audit call is cancelled as the scope closes");
    })
    .await
}
