//! Support for the code the macros generate. Not a public API: anything here may change in any
//! release. Generated code reaches the runtime only through this module.

pub use crate::error::Error;
pub use crate::scope::{Scope, ScopeBuilder};
pub use crate::task::Task;
pub use crate::trace::{AttrValue, ScopeTracer};
pub use std::time::Duration;
