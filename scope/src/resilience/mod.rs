//! Resilience: retry policies, the circuit breaker, and the task builder whose attempt loop wraps a task's body
//! in them.

pub(crate) mod circuit_breaker;
pub(crate) mod retry;
pub(crate) mod task_builder;
