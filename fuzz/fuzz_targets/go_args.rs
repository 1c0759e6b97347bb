//! `go!(..)`, `try_go!(..)` and `try_go_raw!(..)` input of any shape: never panics.
#![no_main]

mod engine;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = engine::tokens(data) else { return };
    let _ = engine::engine::parse_go_args(input.clone());
    let _ = engine::engine::go(input.clone());
    let _ = engine::engine::try_go(input.clone(), false);
    let _ = engine::engine::try_go(input, true);
});
