//! The item under `#[scoped(..)]` of any shape, with every key set: never panics.
#![no_main]

mod engine;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(item) = engine::tokens(data) else { return };
    let attr: proc_macro2::TokenStream = r#"timeout = "1m30s", name = "n", concurrency = 4,
        metrics, wait, retry(max = 3, delay = "100ms", backoff = "exponential", jitter),
        circuit_breaker(failure_threshold = 5, reset_timeout = "30s"), skip_all"#
        .parse()
        .expect("fixed, valid arguments");
    let _ = engine::engine::scoped(attr, item);
});
