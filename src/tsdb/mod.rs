//! Storage of one node: shards grouped per owning core (DESIGN section 6).
//!
//! Order of data: `store` (the shards a core owns) -> `shard` (identity, index and
//! engine of one shard) -> `index` (series, measurements, field types, tags) and
//! `engine` (the [`engine::Engine`] trait; today's implementation is a WAL in front of
//! in-memory columns: `engine::wal`, `engine::head`); `read` serves scans, schema
//! requests and deletes of a core's shards; `tidy` is each core's background upkeep;
//! `retention` drops the partitions of expired shard groups; `layout` is the data
//! directory's shape.

pub mod engine;
pub mod index;
pub mod layout;
pub mod read;
pub mod retention;
pub mod shard;
pub mod store;
pub mod tidy;
