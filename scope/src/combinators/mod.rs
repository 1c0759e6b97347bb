//! Combinators over several tasks: race and parallel.

pub(crate) mod parallel;
pub(crate) mod race;
