//! Small helpers every layer shares: time and hashing. Pure functions, no state, no
//! imports from the rest of the crate.

pub mod hash;
pub mod time;
