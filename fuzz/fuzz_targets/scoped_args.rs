//! `#[scoped(..)]` arguments of any shape, on a valid fn: the engine returns tokens or
//! errors, never panics.
#![no_main]

mod engine;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(attr) = engine::tokens(data) else { return };
    let _ = engine::engine::parse_scoped_args(attr.clone());
    let item: proc_macro2::TokenStream =
        "async fn handler(id: u64) -> Result<u64, go_go_scope::Error> { Ok(id) }"
            .parse()
            .expect("a fixed, valid fn");
    let _ = engine::engine::scoped(attr, item);
});
