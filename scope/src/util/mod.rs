//! Plumbing written once: a lock without poisoning, the std/loom switch, user text made safe
//! for log lines, and the exporters' endpoint URLs.

#[cfg(any(feature = "pushgateway", feature = "otlp"))]
pub(crate) mod endpoint;
pub(crate) mod log;
pub(crate) mod sync;
