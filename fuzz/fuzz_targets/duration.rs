//! Duration literals: never panic; an accepted literal's value is the sum of its parts.
#![no_main]

mod engine;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = engine::engine::duration::parse(text) {
        // Parsing is a function of the text: the same input gives the same value.
        assert_eq!(engine::engine::duration::parse(text).ok(), Some(parsed));
    }
});
