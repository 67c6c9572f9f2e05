//! # ShardCore
//!
//! A clustered time-series database node that speaks the InfluxDB 1.x HTTP API, built
//! thread-per-core on glommio. `docs/ARCHITECTURE.md` is the map; this is the index.
//!
//! # Layout
//!
//! The layers of DESIGN section 11, top to bottom. A module imports only its own
//! layer and the layers above it, and no two modules import each other (directly or
//! round a loop); `tests/layers.rs` reads this table and fails the build on either.
//!
//! | layer | modules |
//! |---|---|
//! | 1 vocabulary | `base`, `limits`, `config`, `lineproto`, `placement`, `meta`, `metrics`, `influxql` |
//! | 2 storage | `tsdb` |
//! | 3 query engine | `query` |
//! | 4 transport | `net` |
//! | 5 cluster services | `cluster`, `hh` |
//! | 6 front end | `http`, `inspect` |
//! | 7 composition root | `node`, `runtime` |
//!
//! In the order a write flows through them:
//!
//! - [`runtime`]: one pinned executor per core, the mesh's channels, signals, start-up
//!   and shutdown.
//! - [`node`]: the composition root: each core's services built with their
//!   dependencies, the mesh's message enum, start-up phases, shutdown.
//! - [`http`]: the InfluxDB-compatible HTTP API (`/write`, `/query`, `/ping`, ...).
//! - [`lineproto`]: the zero-copy line-protocol parser.
//! - [`cluster`]: PointsWriter (points -> shards -> owners), ShardWriter, the cluster
//!   service, meta sync, the ShardMapper and the map server, the statement executor.
//! - [`hh`]: hinted handoff: durable per-(destination node, core) queues of missed
//!   writes, and the NodeProcessor that replays them.
//! - [`net`]: the transport: frames, connections, pipelining, the core-to-core mesh.
//! - [`placement`]: the single function that decides shard groups, shards and owners.
//! - [`meta`]: databases and retention policies, persisted and shared as snapshots.
//! - [`tsdb`]: per-shard WAL, cache and index, owned by one core, and the read side a
//!   shard serves (scan, schema, delete).
//! - [`influxql`]: the language: syntax tree, parser, regexes, values, evaluation.
//! - [`query`]: the query engine; it reaches shards through a `ShardMapper`.
//! - [`metrics`]: per-core counters and latency histograms, merged on demand.
//! - [`inspect`]: offline reading of a data directory.
//! - [`base`]: time, hash and shutdown helpers every layer shares.
//! - [`config`]: the TOML configuration and its documented defaults.
//! - [`limits`]: built-in bounds (recursion depth, stack size).

pub mod base;
pub mod cluster;
pub mod config;
pub mod hh;
pub mod http;
pub mod influxql;
pub mod inspect;
pub mod limits;
pub mod lineproto;
pub mod meta;
pub mod metrics;
pub mod net;
pub mod node;
pub mod placement;
pub mod query;
pub mod runtime;
pub mod tsdb;
