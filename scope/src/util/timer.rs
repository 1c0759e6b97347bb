//! Timers that report a runtime without a time driver as an error.
//!
//! Tokio panics when a timer is made on a runtime built without `enable_time()`. Where that
//! panic would happen in a background task, the task dies and whatever it was timing never
//! comes (a scope's deadline, a poller's ticks); so timers are made, or checked for, in the
//! caller, where the problem becomes an [`Error`].

use std::panic::catch_unwind;
use std::time::Duration;

use tokio::time::Sleep;

use crate::core::error::Error;

/// A timer that fires after `after`, on the current runtime.
///
/// # Errors
/// [`Error::InvalidOption`] naming `option` when the runtime has no time driver.
pub(crate) fn timer(after: Duration, option: &'static str) -> Result<Sleep, Error> {
    catch_unwind(|| tokio::time::sleep(after)).map_err(|_| no_time_driver(option))
}

/// Checks that the current runtime can make timers, for work that makes them later.
///
/// # Errors
/// As [`timer`].
pub(crate) fn check(option: &'static str) -> Result<(), Error> {
    timer(Duration::ZERO, option).map(drop)
}

fn no_time_driver(option: &'static str) -> Error {
    Error::invalid(
        option,
        "the Tokio runtime has no timer: build it with `enable_time()` or `enable_all()` \
         (`#[tokio::main]` and `#[tokio::test]` do)",
    )
}
