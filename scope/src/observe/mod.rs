//! Observability: hooks, the profiler, deadlock detection, metrics and spans, each watching tasks through the
//! core's observer seam.

pub(crate) mod deadlock;
pub(crate) mod hooks;
pub mod introspect;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otel;
pub(crate) mod profiler;
pub mod trace;
