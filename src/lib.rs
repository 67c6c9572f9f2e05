//! # ShardCore
//!
//! A clustered time-series database node that speaks the InfluxDB 1.x HTTP API, built
//! thread-per-core on glommio. `docs/ARCHITECTURE.md` is the map; this is the index.
//!
//! # Layout
//!
//! In the order a write flows through them:
//!
//! - [`base`]: time and hash helpers every layer shares.
//! - [`config`]: the TOML configuration and its documented defaults.
//! - [`runtime`]: one pinned executor per core, the core-to-core mesh, signals,
//!   start-up and shutdown.
//! - [`node`]: one core's context: its store, its mesh handle, its counters.
//! - [`http`]: the InfluxDB-compatible HTTP API (`/write`, `/query`, `/ping`, ...).
//! - [`lineproto`]: the zero-copy line-protocol parser.
//! - [`cluster`]: PointsWriter (points -> shards -> owners), ShardWriter, the cluster
//!   service, meta sync, the ShardMapper.
//! - [`net`]: the transport: frames, connections, pipelining, the core-to-core mesh.
//! - [`hh`]: hinted handoff: durable per-(destination node, core) queues of missed writes.
//! - [`placement`]: the single function that decides shard groups, shards and owners.
//! - [`meta`]: databases and retention policies, persisted and shared as snapshots.
//! - [`tsdb`]: per-shard WAL, cache and index, owned by one core.
//! - [`influxql`]: the language: syntax tree, parser, regexes, values, evaluation.
//! - [`query`]: InfluxQL execution: the query engine.
//! - [`metrics`]: per-core counters and latency histograms, merged on demand.
//! - [`inspect`]: offline reading of a data directory.
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
