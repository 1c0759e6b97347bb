//! Plumbing written once: a lock without poisoning, and the std/loom switch.

pub(crate) mod sync;
