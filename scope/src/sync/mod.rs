//! Communication between tasks: channels, broadcast, select, streams and the resource pool.

pub(crate) mod broadcast;
pub(crate) mod channel;
pub(crate) mod pool;
pub(crate) mod select;
pub(crate) mod stream;
