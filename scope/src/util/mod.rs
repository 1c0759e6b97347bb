//! Plumbing written once: a lock without poisoning, the std/loom switch, and user text made
//! safe for log lines.

pub(crate) mod log;
pub(crate) mod sync;
