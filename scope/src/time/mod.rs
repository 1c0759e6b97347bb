//! Timing helpers that end with their scope: poll, debounce, throttle, and the work they share.

pub(crate) mod debounce;
pub(crate) mod helper_work;
pub(crate) mod poll;
pub(crate) mod shared_answer;
pub(crate) mod throttle;
