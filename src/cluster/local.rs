//! This node's cores as the cluster services see them: the handle through which
//! PointsWriter, the cluster service, the map server, meta sync and the statement
//! executor reach the shards, here or on another core.
//!
//! The services are built with an `Rc<dyn LocalNode>`; the composition root (`node`)
//! implements it over its store and the mesh, whose message enum lives there too. So a
//! cluster service never names the mesh's messages, the HTTP front end or the node.

use crate::base::LocalFuture;
use crate::cluster::admin::RunningQuery;
use crate::cluster::shard_writer::RemoteBatch;
use crate::hh::node_processor::RemoteOutcome;
use crate::metrics::{CoreSnapshot, Gauges};
use crate::net::mesh::MeshError;
use crate::query::{QueryAnswer, QueryError, QueryOptions};
use crate::tsdb::engine::Durable;
use crate::tsdb::read::delete::{DeleteError, DeleteRequest};
use crate::tsdb::read::scan::{ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use crate::tsdb::shard::{ApplyOutcome, ShardError};
use crate::tsdb::store::ShardBatch;

/// What a core can ask of this node's cores.
pub trait LocalNode {
    /// This core's index (ours, never glommio's executor id).
    fn core(&self) -> usize;

    /// How many cores the node runs.
    fn cores(&self) -> usize;

    /// The partition count of shard `id` on this node (its core count when the shard
    /// was first created here); partition `p` is on core `p % cores`.
    fn partitions_of(&self, id: u64) -> u32;

    /// The largest partition count of any shard here (1: nothing is partitioned).
    fn max_partitions(&self) -> u32;

    /// Appends a batch to a partition this core holds, after waiting for room in its WAL,
    /// and applies it to the cache. The append is synchronous once it starts, so two
    /// appends started in some order land in that order; the durability wait is the
    /// caller's ([`crate::tsdb::store::wait_durable`]).
    fn append_here<'a>(
        &'a self,
        batch: &'a ShardBatch,
    ) -> LocalFuture<'a, Result<(ApplyOutcome, Option<Durable>), ShardError>>;

    /// Writes a batch on `core` (this one or another over the mesh) and waits until it
    /// is durable.
    fn write_on(
        &self,
        core: usize,
        batch: ShardBatch,
    ) -> LocalFuture<'_, Result<Result<ApplyOutcome, ShardError>, MeshError>>;

    /// A write for another node, run on `core` (another core: the series' home, where
    /// their hinted-handoff queue is).
    fn remote_write_on(
        &self,
        core: usize,
        node: crate::placement::NodeId,
        batch: RemoteBatch,
    ) -> LocalFuture<'_, Result<RemoteOutcome, MeshError>>;

    /// A query scan over every core of this node that holds a shard it covers; the
    /// cores scan at once.
    fn scan<'a>(
        &'a self,
        request: &'a ScanRequest,
    ) -> LocalFuture<'a, Result<Vec<ShardScan>, QueryError>>;

    /// The schema of a database's shards over every core that holds one.
    fn schema<'a>(
        &'a self,
        request: &'a SchemaRequest,
    ) -> LocalFuture<'a, Result<Vec<ShardSchema>, MeshError>>;

    /// A delete on every core; the values removed.
    fn delete<'a>(
        &'a self,
        request: &'a DeleteRequest,
    ) -> LocalFuture<'a, Result<u64, DeleteError>>;

    /// Drops the shards of a database (or one of its policies) on every core; how many.
    fn drop_shards<'a>(
        &'a self,
        database: &'a str,
        retention_policy: Option<&'a str>,
    ) -> LocalFuture<'a, Result<usize, MeshError>>;

    /// The core that holds every shard of `database` on this node, when one does.
    fn sole_core(&self, database: &str) -> Option<usize>;

    /// Runs a whole `/query` request on another core.
    fn query_on(
        &self,
        core: usize,
        text: String,
        options: QueryOptions,
    ) -> LocalFuture<'_, Result<QueryAnswer, MeshError>>;

    /// Every core's counters and histograms merged, and the node's gauges.
    fn metrics(&self) -> LocalFuture<'_, Result<(CoreSnapshot, Gauges), MeshError>>;

    /// The statements every core of this node is running.
    fn running_queries(&self) -> LocalFuture<'_, Result<Vec<RunningQuery>, MeshError>>;

    /// Kills statement `qid` on the core of this node running it: whether one was.
    fn kill_query(&self, qid: u64) -> LocalFuture<'_, Result<bool, MeshError>>;

    /// Drops this node's partitions of shard `id` on every core: how many.
    fn drop_shard(&self, id: u64) -> LocalFuture<'_, Result<usize, MeshError>>;
}
