//! The core: a scope's state and close protocol, `Scope` and its builder, `Task` and the future every task runs in, the
//! ambient context, resources. It names no feature: features reach the task lifecycle through the observer seam.

pub(crate) mod builder;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod lifecycle;
pub(crate) mod local;
pub(crate) mod observer;
pub(crate) mod registry;
pub(crate) mod resources;
pub(crate) mod scope;
pub(crate) mod shared;
pub(crate) mod task;
