//! The cluster layer, named as InfluxDB named it.
//!
//! - `mesh`: messages between the cores of one node.
//! - `points_writer`: maps points to shard groups, shards and owners, and writes each
//!   shard batch to its owners (today: the owning core of this node).
//!
//! The remote half (ShardWriter, the cluster service, hinted handoff) arrives with the
//! cluster write path; placement already computes owners over many nodes.

pub mod mesh;
pub mod points_writer;
