//! Storage of one node: shards grouped per owning core (DESIGN section 6).
//!
//! Order of data: `store` (the shards a core owns) -> `shard` (identity, index and
//! engine of one shard) -> `index` (series, measurements, field types, tags) and
//! `engine` (the [`engine::Engine`] trait; its implementation, `engine::storage`, is a
//! WAL in front of in-memory columns flushed into compressed data files:
//! `engine::wal`, `engine::head`, `engine::file`, `engine::codec`,
//! `engine::manifest`); `read` serves scans, schema requests and deletes of a core's
//! shards; `tidy` and `flush` are each core's background upkeep;
//! `retention` drops the partitions of expired shard groups; `layout` is the data
//! directory's shape.

pub mod cache;
pub mod engine;
pub mod flush;
pub mod index;
pub mod layout;
pub mod read;
pub mod retention;
pub mod shard;
pub mod store;
pub mod tidy;
