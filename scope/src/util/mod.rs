//! Plumbing written once: a lock without poisoning, the std/loom switch, user text made safe
//! for log lines, and the exporters' endpoint URLs,
//! and timers that report a runtime without a time driver.

#[cfg(any(feature = "pushgateway", feature = "otlp"))]
pub(crate) mod endpoint;
pub(crate) mod log;
pub(crate) mod sync;
pub(crate) mod timer;
