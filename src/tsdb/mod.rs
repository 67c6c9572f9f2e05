//! Storage of one node: per-shard WAL, cache and index, grouped per owning core
//! (DESIGN section 6).
//!
//! Order of data: `store` (the shards a core owns) -> `shard` (cache + index + WAL of one
//! shard) -> `wal` (segment files, group commit, recovery); `read` serves scans, schema
//! requests and deletes of a core's shards.

pub mod chunked;
pub mod read;
pub mod shard;
pub mod store;
pub mod tidy;
pub mod wal;
