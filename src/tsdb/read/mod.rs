//! The read side a shard serves, on its owning core: scans of one measurement's series
//! (with the tag condition, per-series limits and partial aggregates pushed down),
//! the schema of a database, and deletes; and how a running scan stops (deadline,
//! point budget, cancel). Requests and answers are plain serde values, so they cross
//! the mesh and the cluster's MapShard the same way.

pub mod cancel;
pub mod delete;
pub mod scan;
