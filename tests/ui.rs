//! The compile-time contract of the macros: what must compile (`ui-tests/pass`) and the exact
//! diagnostics for what must not (`ui-tests/fail`, one diagnostic per file).
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p go-go-scope-tests --test ui`,
//! then read each changed `.stderr` as a user would.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("../ui-tests/pass/*.rs");
    cases.compile_fail("../ui-tests/fail/*.rs");
}
