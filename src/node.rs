//! The composition root: one core of a running node, its services built with their
//! dependencies and wired together, its start-up and shutdown, and its side of the
//! mesh (serving what other cores ask of it).
//!
//! Per core, in dependency order (Seastar's `sharded<Service>`: every core has its
//! own of each, and they reach other cores only through the mesh):
//!
//! ```text
//! Store (tsdb) + Mesh<MeshRequest> (net)
//!   -> LocalCores (this file: implements cluster::LocalNode and http::HttpNode)
//!   -> ShardWriter -> HintedHandoff (NodeProcessors)
//!   -> PointsWriter, ClusterShardMapper, MetaSyncService, MapServer
//!   -> StatementExecutor -> ClusterService, HttpService
//! ```
//!
//! Start-up of a core ([`run_core`]): bind the listeners (core 0's HTTP listener
//! first; its address, port 0 resolved, is what the others report) -> open and
//! recover the shards it owns and its hinted-handoff queues -> wait for every core to
//! have recovered -> connect the mesh -> build the services -> serve until shutdown ->
//! drain -> close the WALs.

use crate::base::shutdown::Shutdown;
use crate::cluster::admin::{QueryRegistry, RunningQuery};
use crate::cluster::cq::ContinuousQueryService;
use crate::cluster::executor::StatementExecutor;
use crate::cluster::local::LocalNode;
use crate::cluster::map_server::MapServer;
use crate::cluster::meta_sync::MetaSyncService;
use crate::cluster::monitor::MonitorService;
use crate::cluster::points_writer::PointsWriter;
use crate::cluster::service::{ClusterService, ClusterServiceParts};
use crate::cluster::shard_mapper::ClusterShardMapper;
use crate::cluster::shard_writer::{PeerCores, RemoteBatch, ShardWriter};
use crate::config::Config;
use crate::hh::node_processor::{HintedHandoff, RemoteOutcome};
use crate::http::{HttpNode, HttpService, HttpServiceParts, ShardStatsByCore};
use crate::meta::MetaStore;
use crate::metrics::{CoreSnapshot, CoreStats, CoreTimers, Gauges, Timer};
use crate::net::handoff::{HandoffStream, MovedStream};
use crate::net::mesh::{CoreChannels, Mesh, MeshError};

/// The receiving end of another core's channel to this one.
type MeshReceiver = crate::net::mesh::Receiver<MeshRequest>;
use crate::base::LocalFuture;
use crate::placement::NodeId;
use crate::query::{QueryAnswer, QueryError, QueryOptions};
use crate::tsdb::engine::wal::WalConfig;
use crate::tsdb::engine::Durable;
use crate::tsdb::index::NodeFieldTypes;
use crate::tsdb::layout::PartitionCounts;
use crate::tsdb::read::cancel::ScanStop;
use crate::tsdb::read::delete::{self, DeleteError, DeleteRequest};
use crate::tsdb::read::scan::{self, ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use crate::tsdb::shard::{ApplyOutcome, ShardError, ShardStats, StoredPoint};
use crate::tsdb::store::{self, ReadRequest, ShardBatch, ShardDirectory, Store};
use futures_channel::oneshot;
use glommio::net::TcpListener;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `runtime` hands each core's executor.
pub struct CoreArgs {
    pub core: usize,
    pub cores: usize,
    pub config: Arc<Config>,
    pub meta: Arc<MetaStore>,
    pub shutdown: Arc<Shutdown>,
    pub channels: CoreChannels<MeshRequest>,
    pub http_bind: SocketAddr,
    pub bound_tx: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
    pub recovered: Arc<std::sync::Barrier>,
    /// Open client connections per core (core 0 reads them to pick where to hand one).
    pub connection_counts: Arc<Vec<AtomicUsize>>,
    /// Which core holds which shards (every core publishes its own).
    pub directory: Arc<store::ShardDirectory>,
    /// Head bytes per core against `cache-max-bytes`.
    pub cache: Arc<crate::tsdb::cache::CacheGauge>,
    /// The partition count of every shard on this node.
    pub partitions: Arc<PartitionCounts>,
    /// Field types per shard, shared by its partitions.
    pub field_types: Arc<NodeFieldTypes>,
    /// Every peer's core count, learnt by any core's handshake.
    pub peer_cores: Arc<PeerCores>,
    /// The HTTPS certificate, when `https-enabled` (shared, reloaded on SIGHUP).
    pub tls: Option<Arc<crate::http::tls::TlsCertificates>>,
    /// Mutual TLS on the cluster ports, when `[cluster] tls-enabled`.
    pub cluster_tls: Option<Arc<crate::net::tls::ClusterTls>>,
}

/// Work one core asks of another.
pub enum MeshRequest {
    Write {
        batch: ShardBatch,
        reply: oneshot::Sender<Result<ApplyOutcome, ShardError>>,
    },
    ShardStats {
        reply: oneshot::Sender<Vec<ShardStats>>,
    },
    /// A whole `/query` request, run by the core that holds all of its database's
    /// shards on this node (so its scans need no further hop).
    Query {
        text: String,
        options: QueryOptions,
        reply: oneshot::Sender<QueryAnswer>,
    },
    /// This core's counters and histograms (`metrics`).
    Metrics {
        reply: oneshot::Sender<Vec<CoreSnapshot>>,
    },
    Read {
        request: ReadRequest,
        reply: oneshot::Sender<Vec<(u64, StoredPoint)>>,
    },
    /// A query's scan of one measurement on this core's shards.
    Scan {
        request: ScanRequest,
        reply: oneshot::Sender<Result<Vec<ShardScan>, ScanStop>>,
    },
    /// The schema of this core's shards of a database.
    Schema {
        request: SchemaRequest,
        reply: oneshot::Sender<Vec<ShardSchema>>,
    },
    /// DROP MEASUREMENT / DROP SERIES / DELETE on this core's shards.
    Delete {
        request: DeleteRequest,
        reply: oneshot::Sender<Result<u64, DeleteError>>,
    },
    DropShards {
        database: String,
        retention_policy: Option<String>,
        reply: oneshot::Sender<usize>,
    },
    /// DROP SHARD: this core's partitions of one shard.
    DropShard {
        id: u64,
        reply: oneshot::Sender<usize>,
    },
    /// SHOW QUERIES: the statements this core runs.
    Queries {
        reply: oneshot::Sender<Vec<RunningQuery>>,
    },
    /// KILL QUERY of a statement this core runs.
    KillQuery {
        qid: u64,
        reply: oneshot::Sender<bool>,
    },
    /// A write for a remote owner, on the shard's home core (hinted handoff lives there).
    RemoteWrite {
        node: NodeId,
        batch: RemoteBatch,
        reply: oneshot::Sender<RemoteOutcome>,
    },
    /// A client connection accepted on core 0, to be served by the receiving core.
    Connection(HandoffStream),
    /// A client connection another core moved here: its queries read this core's data.
    MovedConnection(MovedStream),
}

/// This core's shards and its links to the other cores: the handle the services reach
/// the node's shards through ([`LocalNode`], [`HttpNode`]).
pub struct LocalCores {
    core: usize,
    cores: usize,
    store: Rc<RefCell<Store>>,
    mesh: Mesh<MeshRequest>,
    /// Which core holds which shards: scans and schema requests go only there.
    directory: Arc<ShardDirectory>,
    partitions: Arc<PartitionCounts>,
    meta: Arc<MetaStore>,
    stats: Rc<CoreStats>,
    timers: Rc<CoreTimers>,
    connection_counts: Arc<Vec<AtomicUsize>>,
    /// Head bytes per core, and the node's flush and cache-full counters.
    cache: Arc<crate::tsdb::cache::CacheGauge>,
    /// This core's cluster services whose counters the metrics include.
    shard_writer: Option<Rc<ShardWriter>>,
    hinted_handoff: Option<Rc<HintedHandoff>>,
    /// The statements this core coordinates (SHOW QUERIES, KILL QUERY).
    queries: Rc<QueryRegistry>,
}

impl LocalCores {
    /// Writes a batch to a shard this core owns and waits until it is durable.
    pub async fn write_here(&self, batch: ShardBatch) -> Result<ApplyOutcome, ShardError> {
        let start = Instant::now();
        let (outcome, durable) = self.append(&batch).await?;
        store::wait_durable(batch.shard.id, durable).await?;
        self.timers.record(Timer::WalWrite, start);
        Ok(outcome)
    }

    /// See [`LocalNode::append_here`].
    async fn append(
        &self,
        batch: &ShardBatch,
    ) -> Result<(ApplyOutcome, Option<Durable>), ShardError> {
        let room = self
            .store
            .borrow()
            .room_in((batch.shard.id, batch.partition.index));
        if let Some(room) = room {
            room.await;
        }
        self.store.borrow_mut().write(batch)
    }

    /// Writes a batch to its owning core, here or over the mesh.
    async fn write_to_core(
        &self,
        core: usize,
        batch: ShardBatch,
    ) -> Result<Result<ApplyOutcome, ShardError>, MeshError> {
        if core == self.core {
            return Ok(self.write_here(batch).await);
        }
        self.mesh
            .call(core, |reply| MeshRequest::Write { batch, reply })
            .await
    }

    /// Shard statistics of every core.
    async fn all_shard_stats(&self) -> Result<ShardStatsByCore, MeshError> {
        let mut out = Vec::with_capacity(self.cores);
        for core in 0..self.cores {
            let stats = if core == self.core {
                self.store.borrow().shard_stats()
            } else {
                self.mesh
                    .call(core, |reply| MeshRequest::ShardStats { reply })
                    .await?
            };
            out.push((core, stats));
        }
        Ok(out)
    }

    /// This core's counters and histograms, and copies of those its services keep.
    pub fn metrics_here(&self) -> CoreSnapshot {
        CoreSnapshot::capture(
            self.core,
            &self.stats,
            &self.timers,
            self.shard_writer
                .as_ref()
                .map(|w| (w.stats(), w.in_flight() as u64, w.rtt())),
            self.hinted_handoff.as_ref().map(|h| {
                let (enqueue, replay) = h.latencies();
                (h.stats(), enqueue, replay)
            }),
        )
    }

    /// Every core's counters and histograms merged, and the node's gauges.
    async fn node_metrics(&self) -> Result<(CoreSnapshot, Gauges), MeshError> {
        let snapshot = self.metrics_node().await?;
        let mut gauges = Gauges {
            uptime_seconds: crate::metrics::started().0.elapsed().as_secs_f64(),
            cores: self.cores,
            connections: self
                .connection_counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed) as u64)
                .sum(),
            databases: self.meta.snapshot().databases.len() as u64,
            ..Default::default()
        };
        let mut shard_ids = std::collections::HashSet::new();
        for (_, shards) in self.all_shard_stats().await? {
            for s in shards {
                gauges.series += s.series as u64;
                gauges.cached_values += s.values.saturating_sub(s.file_values);
                gauges.cache_bytes += s.cache_heap_bytes as u64;
                gauges.files += s.files;
                gauges.file_bytes += s.file_bytes;
                gauges.file_values += s.file_values;
                gauges.bad_files += s.bad_files;
                gauges.wal_bytes += s.wal_disk_bytes;
                shard_ids.insert(s.id);
            }
        }
        gauges.shards = shard_ids.len() as u64;
        let cache = &self.cache;
        gauges.flushes = cache.flushes.load(Ordering::Relaxed);
        gauges.flush_bytes = cache.flushed_bytes.load(Ordering::Relaxed);
        gauges.flush_failures = cache.flush_failures.load(Ordering::Relaxed);
        gauges.cache_rejections = cache.rejections.load(Ordering::Relaxed);
        gauges.compactions = cache.compactions.load(Ordering::Relaxed);
        gauges.compaction_bytes = cache.compaction_bytes.load(Ordering::Relaxed);
        gauges.compaction_failures = cache.compaction_failures.load(Ordering::Relaxed);
        let blocks = &cache.block_cache;
        gauges.block_cache_hits = blocks.hits.load(Ordering::Relaxed);
        gauges.block_cache_misses = blocks.misses.load(Ordering::Relaxed);
        gauges.block_cache_evictions = blocks.evictions.load(Ordering::Relaxed);
        gauges.block_cache_bytes = blocks.bytes.load(Ordering::Relaxed);
        Ok((snapshot, gauges))
    }

    /// Counters and histograms of every core, merged.
    async fn metrics_node(&self) -> Result<CoreSnapshot, MeshError> {
        let all = self
            .on_every_core(
                || vec![self.metrics_here()],
                |reply| MeshRequest::Metrics { reply },
            )
            .await?;
        let mut merged = CoreSnapshot::default();
        for one in all {
            merged.merge(one);
        }
        Ok(merged)
    }

    /// Runs `local` on this core and sends `remote(reply)` to every other core, in core
    /// order; the answers of every core, concatenated.
    async fn on_every_core<T>(
        &self,
        local: impl Fn() -> Vec<T>,
        remote: impl Fn(oneshot::Sender<Vec<T>>) -> MeshRequest,
    ) -> Result<Vec<T>, MeshError> {
        let all: Vec<usize> = (0..self.cores).collect();
        self.on_cores(&all, local, remote).await
    }

    /// [`Self::on_every_core`] for the listed cores only.
    async fn on_cores<T>(
        &self,
        cores: &[usize],
        local: impl FnOnce() -> Vec<T>,
        remote: impl Fn(oneshot::Sender<Vec<T>>) -> MeshRequest,
    ) -> Result<Vec<T>, MeshError> {
        let answers = self.ask_cores(cores, async { local() }, remote).await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// Sends `remote(reply)` to each listed core other than this one, then runs `local`
    /// here if this core is listed, then waits for the others: the cores work at the
    /// same time. The answers in the order of `cores`.
    async fn ask_cores<R>(
        &self,
        cores: &[usize],
        local: impl std::future::Future<Output = R>,
        remote: impl Fn(oneshot::Sender<R>) -> MeshRequest,
    ) -> Result<Vec<R>, MeshError> {
        let mut waiting = Vec::with_capacity(cores.len());
        for &core in cores {
            if core == self.core {
                waiting.push((core, None));
            } else {
                let (tx, rx) = oneshot::channel();
                self.mesh.send(core, remote(tx)).await?;
                waiting.push((core, Some(rx)));
            }
        }
        let mut here = None;
        if waiting.iter().any(|(_, rx)| rx.is_none()) {
            here = Some(local.await);
        }
        let mut out = Vec::with_capacity(waiting.len());
        for (core, rx) in waiting {
            match rx {
                None => out.extend(here.take()),
                Some(rx) => out.push(rx.await.map_err(|_| MeshError::NoReply { core })?),
            }
        }
        Ok(out)
    }

    /// Stored points from every core.
    async fn read_all(&self, request: &ReadRequest) -> Result<Vec<(u64, StoredPoint)>, MeshError> {
        self.on_every_core(
            || read_here(&self.store, request),
            |reply| MeshRequest::Read {
                request: request.clone(),
                reply,
            },
        )
        .await
    }

    /// A query scan over every core of this node; the cores scan at once.
    async fn scan_node(&self, request: &ScanRequest) -> Result<Vec<ShardScan>, QueryError> {
        let cores = self.directory.cores_holding(
            &request.database,
            Some(&request.retention_policy),
            (request.start_ns, request.end_ns),
            request.shard_ids.as_deref(),
        );
        let answers = self
            .ask_cores(&cores, self.scan_here(request), |reply| MeshRequest::Scan {
                request: request.clone(),
                reply,
            })
            .await
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        let mut out = Vec::new();
        for answer in answers {
            out.extend(answer?);
        }
        Ok(scan::merge_partitions(out))
    }

    /// This core's part of a scan. A scan that stops early (deadline, point limit)
    /// raises the request's cancel flag, so the cores still scanning for it stop too.
    async fn scan_here(&self, request: &ScanRequest) -> Result<Vec<ShardScan>, ScanStop> {
        let answer = scan::scan_local(&self.store, request).await;
        if answer.is_err() {
            CoreStats::add(&self.stats.scans_stopped, 1);
            request.deadline.cancel();
        }
        answer
    }

    /// The schema of a database's shards over every core of this node.
    async fn schema_node(&self, request: &SchemaRequest) -> Result<Vec<ShardSchema>, MeshError> {
        let cores = self.directory.cores_holding(
            &request.database,
            request.retention_policy.as_deref(),
            (request.start_ns, request.end_ns),
            request.shard_ids.as_deref(),
        );
        let schemas = self
            .on_cores(
                &cores,
                || scan::schema_local(&self.store.borrow(), request),
                |reply| MeshRequest::Schema {
                    request: request.clone(),
                    reply,
                },
            )
            .await?;
        Ok(scan::merge_partition_schemas(schemas))
    }

    /// A delete on every core of this node; the values removed.
    async fn delete_node(&self, request: &DeleteRequest) -> Result<u64, DeleteError> {
        let mut removed = 0;
        for core in 0..self.cores {
            if core == self.core {
                removed += delete::delete_local(&self.store, request).await?;
            } else {
                let request = request.clone();
                removed += self
                    .mesh
                    .call(core, |reply| MeshRequest::Delete { request, reply })
                    .await
                    .map_err(|e| DeleteError::Unreachable(e.to_string()))??;
            }
        }
        Ok(removed)
    }

    /// Drops the shards of a database (or one of its policies) on every core.
    async fn drop_shards_everywhere(
        &self,
        database: &str,
        retention_policy: Option<&str>,
    ) -> Result<usize, MeshError> {
        let mut dropped = 0;
        for core in 0..self.cores {
            if core == self.core {
                dropped += drop_here(&self.store, database, retention_policy).await;
            } else {
                let database = database.to_string();
                let retention_policy = retention_policy.map(str::to_string);
                dropped += self
                    .mesh
                    .call(core, |reply| MeshRequest::DropShards {
                        database,
                        retention_policy,
                        reply,
                    })
                    .await?;
            }
        }
        Ok(dropped)
    }
}

impl LocalNode for LocalCores {
    fn core(&self) -> usize {
        self.core
    }

    fn cores(&self) -> usize {
        self.cores
    }

    fn partitions_of(&self, id: u64) -> u32 {
        self.partitions.of(id)
    }

    fn max_partitions(&self) -> u32 {
        self.partitions.max()
    }

    fn append_here<'a>(
        &'a self,
        batch: &'a ShardBatch,
    ) -> LocalFuture<'a, Result<(ApplyOutcome, Option<Durable>), ShardError>> {
        Box::pin(self.append(batch))
    }

    fn write_on(
        &self,
        core: usize,
        batch: ShardBatch,
    ) -> LocalFuture<'_, Result<Result<ApplyOutcome, ShardError>, MeshError>> {
        Box::pin(self.write_to_core(core, batch))
    }

    fn remote_write_on(
        &self,
        core: usize,
        node: NodeId,
        batch: RemoteBatch,
    ) -> LocalFuture<'_, Result<RemoteOutcome, MeshError>> {
        Box::pin(self.mesh.call(core, move |reply| MeshRequest::RemoteWrite {
            node,
            batch,
            reply,
        }))
    }

    fn scan<'a>(
        &'a self,
        request: &'a ScanRequest,
    ) -> LocalFuture<'a, Result<Vec<ShardScan>, QueryError>> {
        Box::pin(self.scan_node(request))
    }

    fn schema<'a>(
        &'a self,
        request: &'a SchemaRequest,
    ) -> LocalFuture<'a, Result<Vec<ShardSchema>, MeshError>> {
        Box::pin(self.schema_node(request))
    }

    fn delete<'a>(
        &'a self,
        request: &'a DeleteRequest,
    ) -> LocalFuture<'a, Result<u64, DeleteError>> {
        Box::pin(self.delete_node(request))
    }

    fn drop_shards<'a>(
        &'a self,
        database: &'a str,
        retention_policy: Option<&'a str>,
    ) -> LocalFuture<'a, Result<usize, MeshError>> {
        Box::pin(self.drop_shards_everywhere(database, retention_policy))
    }

    fn sole_core(&self, database: &str) -> Option<usize> {
        match self
            .directory
            .cores_holding(database, None, (i64::MIN, i64::MAX), None)
            .as_slice()
        {
            [core] => Some(*core),
            _ => None,
        }
    }

    fn query_on(
        &self,
        core: usize,
        text: String,
        options: QueryOptions,
    ) -> LocalFuture<'_, Result<QueryAnswer, MeshError>> {
        Box::pin(self.mesh.call(core, move |reply| MeshRequest::Query {
            text,
            options,
            reply,
        }))
    }

    fn metrics(&self) -> LocalFuture<'_, Result<(CoreSnapshot, Gauges), MeshError>> {
        Box::pin(self.node_metrics())
    }

    fn running_queries(&self) -> LocalFuture<'_, Result<Vec<RunningQuery>, MeshError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for core in 0..self.cores {
                if core == self.core {
                    all.extend(self.queries.list());
                } else {
                    all.extend(
                        self.mesh
                            .call(core, |reply| MeshRequest::Queries { reply })
                            .await?,
                    );
                }
            }
            Ok(all)
        })
    }

    fn kill_query(&self, qid: u64) -> LocalFuture<'_, Result<bool, MeshError>> {
        Box::pin(async move {
            let (_, core) = crate::cluster::admin::query_home(qid);
            if core == self.core {
                Ok(self.queries.kill(qid))
            } else if core < self.cores {
                self.mesh
                    .call(core, |reply| MeshRequest::KillQuery { qid, reply })
                    .await
            } else {
                Ok(false)
            }
        })
    }

    fn drop_shard(&self, id: u64) -> LocalFuture<'_, Result<usize, MeshError>> {
        Box::pin(async move {
            let mut dropped = 0;
            for core in 0..self.cores {
                if core == self.core {
                    dropped += drop_shard_here(&self.store, id).await;
                } else {
                    dropped += self
                        .mesh
                        .call(core, |reply| MeshRequest::DropShard { id, reply })
                        .await?;
                }
            }
            Ok(dropped)
        })
    }
}

impl HttpNode for LocalCores {
    fn hand_over(
        &self,
        core: usize,
        stream: HandoffStream,
    ) -> LocalFuture<'_, Result<(), MeshError>> {
        Box::pin(self.mesh.send(core, MeshRequest::Connection(stream)))
    }

    fn move_over(
        &self,
        core: usize,
        stream: MovedStream,
    ) -> LocalFuture<'_, Result<(), MeshError>> {
        Box::pin(self.mesh.send(core, MeshRequest::MovedConnection(stream)))
    }

    fn shard_stats(&self) -> LocalFuture<'_, Result<ShardStatsByCore, MeshError>> {
        Box::pin(self.all_shard_stats())
    }

    fn read<'a>(
        &'a self,
        request: &'a ReadRequest,
    ) -> LocalFuture<'a, Result<Vec<(u64, StoredPoint)>, MeshError>> {
        Box::pin(self.read_all(request))
    }
}

fn read_here(store: &RefCell<Store>, r: &ReadRequest) -> Vec<(u64, StoredPoint)> {
    store.borrow_mut().read(
        &r.database,
        r.retention_policy.as_deref(),
        r.measurement.as_deref(),
        r.series_key.as_deref(),
        r.start_ns,
        r.end_ns,
    )
}

async fn drop_here(store: &RefCell<Store>, database: &str, rp: Option<&str>) -> usize {
    let (removed, data_dir, field_types) = {
        let mut s = store.borrow_mut();
        (
            s.remove_shards(database, rp),
            s.data_dir().to_path_buf(),
            s.field_types().clone(),
        )
    };
    store::delete_shards(&data_dir, removed, &field_types).await
}

async fn drop_shard_here(store: &RefCell<Store>, id: u64) -> usize {
    let (removed, data_dir, field_types) = {
        let mut s = store.borrow_mut();
        (
            s.remove_shard(id),
            s.data_dir().to_path_buf(),
            s.field_types().clone(),
        )
    };
    store::delete_shards(&data_dir, removed, &field_types).await
}

/// Serves one request from another core.
async fn serve_mesh_request(core: Rc<Core>, request: MeshRequest) {
    let local = &core.local;
    match request {
        MeshRequest::Write { batch, reply } => {
            CoreStats::add(&local.stats.mesh_writes_served, 1);
            let _ = reply.send(local.write_here(batch).await);
        }
        MeshRequest::Metrics { reply } => {
            let _ = reply.send(vec![local.metrics_here()]);
        }
        MeshRequest::Query {
            text,
            options,
            reply,
        } => {
            let _ = reply.send(core.executor.execute_here(&text, &options).await);
        }
        MeshRequest::ShardStats { reply } => {
            let _ = reply.send(local.store.borrow().shard_stats());
        }
        MeshRequest::Read { request, reply } => {
            let _ = reply.send(read_here(&local.store, &request));
        }
        MeshRequest::Scan { request, reply } => {
            let _ = reply.send(local.scan_here(&request).await);
        }
        MeshRequest::Delete { request, reply } => {
            let _ = reply.send(delete::delete_local(&local.store, &request).await);
        }
        MeshRequest::Schema { request, reply } => {
            let _ = reply.send(scan::schema_local(&local.store.borrow(), &request));
        }
        MeshRequest::RemoteWrite { node, batch, reply } => {
            let outcome = match &core.hinted_handoff {
                Some(hh) => hh.remote_write(node, batch).await,
                None => {
                    RemoteOutcome::Failed("not in this node's cluster configuration".into(), false)
                }
            };
            let _ = reply.send(outcome);
        }
        MeshRequest::Connection(stream) => {
            crate::http::serve_connection(core.http.clone(), stream.into_stream());
        }
        MeshRequest::MovedConnection(stream) => {
            crate::http::serve_moved_connection(core.http.clone(), stream.into_stream());
        }
        MeshRequest::DropShards {
            database,
            retention_policy,
            reply,
        } => {
            let dropped = drop_here(&local.store, &database, retention_policy.as_deref()).await;
            let _ = reply.send(dropped);
        }
        MeshRequest::DropShard { id, reply } => {
            let _ = reply.send(drop_shard_here(&local.store, id).await);
        }
        MeshRequest::Queries { reply } => {
            let _ = reply.send(local.queries.list());
        }
        MeshRequest::KillQuery { qid, reply } => {
            let _ = reply.send(local.queries.kill(qid));
        }
    }
}

fn wal_config(config: &Config) -> WalConfig {
    WalConfig {
        fsync_delay: Duration::from_millis(config.storage.wal_fsync_delay_ms),
        segment_size_bytes: config.storage.wal_segment_size_bytes,
        max_pending_bytes: config.storage.wal_max_pending_bytes,
    }
}

/// A core's listeners: HTTP (core 0 only; it hands connections to the others) and,
/// with peers, the cluster listener (`bind` port + core).
struct Listeners {
    http: Option<TcpListener>,
    http_addr: SocketAddr,
    cluster: Option<TcpListener>,
}

/// Start-up phase 1: binds this core's listeners; core 0 reports its HTTP address
/// (or why it could not bind) to `runtime`.
fn bind_listeners(args: &CoreArgs) -> Result<Listeners, String> {
    let (core, config) = (args.core, &args.config);
    let http = if core == 0 {
        match bind_exclusive(args.http_bind) {
            Ok(l) => Some(l),
            Err(e) => {
                let message = format!("cannot listen on {}: {e}", args.http_bind);
                let _ = args.bound_tx.send(Err(message.clone()));
                return Err(message);
            }
        }
    } else {
        None
    };
    let cluster = match bind_cluster_listener(config, core) {
        Ok(l) => l,
        Err(message) => {
            if core == 0 {
                let _ = args.bound_tx.send(Err(message.clone()));
            }
            args.shutdown.request();
            return Err(message);
        }
    };
    let http_addr = match &http {
        Some(l) => l.local_addr().map_err(|e| e.to_string())?,
        None => args.http_bind,
    };
    if core == 0 {
        let _ = args.bound_tx.send(Ok(http_addr));
    }
    Ok(Listeners {
        http,
        http_addr,
        cluster,
    })
}

/// What start-up phase 2 recovers from disk on this core.
struct Recovered {
    store: Store,
    truncated_segments: u64,
    /// With peers.
    cluster: Option<RecoveredCluster>,
}

/// The cluster half of what a core recovers.
struct RecoveredCluster {
    shard_writer: Rc<ShardWriter>,
    hinted_handoff: Rc<HintedHandoff>,
    /// The destinations whose queues hinted handoff found (their processors start
    /// once the core serves).
    queues: Vec<NodeId>,
    secret: Vec<u8>,
}

/// Start-up phase 2: opens and recovers this core's shards and hinted-handoff queues.
fn recover(args: &CoreArgs) -> Result<Recovered, String> {
    let (core, config) = (args.core, &args.config);
    let started = Instant::now();
    let (mut store, recovery) = Store::open(
        core,
        args.cores,
        &config.data_dir,
        wal_config(config),
        args.field_types.clone(),
    )
    .map_err(|e| {
        tracing::error!(core, error = %e, "cannot open the shards of this core");
        format!("cannot open shards: {e}")
    })?;
    store.attach_directory(args.directory.clone());
    store.attach_cache_gauge(args.cache.clone());
    store.attach_block_cache(crate::tsdb::engine::blocks::BlockCache::new(
        config.storage.block_cache_bytes as usize,
        args.cache.block_cache.clone(),
    ));
    tracing::info!(
        core,
        shards = recovery.shards,
        wal_records = recovery.wal.records,
        wal_bytes = recovery.wal.bytes,
        truncated_segments = recovery.wal.truncated_segments,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered shards"
    );
    let cluster = shard_writer(config, args.cores, &args.peer_cores, &args.cluster_tls).map(
        |(writer, secret)| {
            let (hh, found) = HintedHandoff::open(
                config.data_dir.clone(),
                (core, args.cores),
                &config.hinted_handoff,
                crate::cluster::membership(config).nodes(),
                writer.clone(),
                args.shutdown.clone(),
            );
            RecoveredCluster {
                shard_writer: writer,
                hinted_handoff: Rc::new(hh),
                queues: found,
                secret,
            }
        },
    );
    Ok(Recovered {
        store,
        truncated_segments: recovery.wal.truncated_segments,
        cluster,
    })
}

/// This core's services, built with their dependencies by [`wire`].
struct Core {
    local: Rc<LocalCores>,
    executor: Rc<StatementExecutor>,
    http: Rc<HttpService>,
    /// With peers.
    hinted_handoff: Option<Rc<HintedHandoff>>,
    meta_sync: Option<Rc<MetaSyncService>>,
    cluster_service: Option<Rc<ClusterService>>,
    /// Core 0's, when `[continuous-queries] enabled`.
    continuous_queries: Option<Rc<ContinuousQueryService>>,
    /// Core 0's, when `[monitor] store-enabled`.
    monitor: Option<Rc<MonitorService>>,
}

/// Start-up phases 3 and 4: connects the mesh (every core's channels exist once all
/// have recovered) and builds this core's services over its recovered store, each given
/// what it needs. Returns them, and the mesh's receivers from the other cores.
async fn wire(
    args: CoreArgs,
    recovered: Recovered,
    http_addr: SocketAddr,
) -> (Core, Vec<MeshReceiver>) {
    let (mesh, receivers) = crate::net::mesh::connect(args.core, args.channels).await;
    let config = &args.config;
    let stats = Rc::new(CoreStats::default());
    stats
        .wal_truncated_segments
        .set(recovered.truncated_segments);
    let timers = Rc::new(CoreTimers::default());
    let (shard_writer, hinted_handoff, secret) = match recovered.cluster {
        Some(c) => (Some(c.shard_writer), Some(c.hinted_handoff), Some(c.secret)),
        None => (None, None, None),
    };
    let local = Rc::new(LocalCores {
        core: args.core,
        cores: args.cores,
        store: Rc::new(RefCell::new(recovered.store)),
        mesh,
        directory: args.directory.clone(),
        partitions: args.partitions.clone(),
        meta: args.meta.clone(),
        stats: stats.clone(),
        timers: timers.clone(),
        connection_counts: args.connection_counts.clone(),
        cache: args.cache.clone(),
        shard_writer: shard_writer.clone(),
        hinted_handoff: hinted_handoff.clone(),
        queries: Rc::new(QueryRegistry::default()),
    });
    let membership = crate::cluster::membership(config);
    let node_id = config.cluster.node_id;
    let meta_sync = shard_writer.as_ref().map(|writer| {
        Rc::new(MetaSyncService::new(
            args.meta.clone(),
            writer.clone(),
            local.clone(),
            Duration::from_millis(config.cluster.meta_sync_interval_ms),
            args.shutdown.clone(),
        ))
    });
    let points_writer = Rc::new(PointsWriter::new(
        local.clone(),
        hinted_handoff.clone(),
        args.meta.clone(),
        membership.clone(),
        node_id,
        config.storage.max_points_per_shard_batch,
        stats.clone(),
    ));
    let mapper = ClusterShardMapper::new(
        local.clone(),
        shard_writer.clone(),
        args.meta.clone(),
        membership.clone(),
        node_id,
    );
    let executor = Rc::new(StatementExecutor::new(
        local.clone(),
        mapper,
        points_writer.clone(),
        local.queries.clone(),
        shard_writer.clone(),
        node_id,
        args.meta.clone(),
        meta_sync.clone(),
        membership.clone(),
        config.query.clone(),
        stats.clone(),
        timers.clone(),
        http_addr.to_string(),
        Rc::new((config.diagnostics(), std::time::SystemTime::now())),
    ));
    let cluster_service = meta_sync.clone().zip(secret).map(|(meta_sync, secret)| {
        Rc::new(ClusterService::new(ClusterServiceParts {
            node_id,
            secret,
            meta: args.meta.clone(),
            membership: membership.clone(),
            config: config.cluster.clone(),
            local: local.clone(),
            map_server: MapServer::new(
                local.clone(),
                stats.clone(),
                config.cluster.map_page_bytes as usize,
            ),
            meta_sync,
            stats: stats.clone(),
            timers: timers.clone(),
            shutdown: args.shutdown.clone(),
            tls: args.cluster_tls.clone(),
        }))
    });
    let http = Rc::new(HttpService::new(HttpServiceParts {
        config: config.http.clone(),
        node: local.clone(),
        points_writer: points_writer.clone(),
        executor: executor.clone(),
        meta: args.meta.clone(),
        meta_sync: meta_sync.clone(),
        stats,
        timers,
        shutdown: args.shutdown.clone(),
        connection_counts: args.connection_counts.clone(),
        cache: args.cache.clone(),
        http_addr,
        node_id,
        tls: args.tls.clone(),
    }));
    let continuous_queries = (args.core == 0 && config.continuous_queries.enabled).then(|| {
        Rc::new(ContinuousQueryService::new(
            executor.clone(),
            args.meta.clone(),
            meta_sync.clone(),
            shard_writer.clone(),
            membership.clone(),
            node_id,
            config.continuous_queries.clone(),
            local.stats.clone(),
            args.shutdown.clone(),
        ))
    });
    let monitor = (args.core == 0 && config.monitor.store_enabled).then(|| {
        Rc::new(MonitorService::new(
            local.clone(),
            points_writer.clone(),
            args.meta.clone(),
            config.monitor.clone(),
            http_addr.to_string(),
            crate::base::hostname(),
            node_id,
            args.shutdown.clone(),
        ))
    });
    let core = Core {
        local,
        executor,
        http,
        hinted_handoff,
        meta_sync,
        cluster_service,
        continuous_queries,
        monitor,
    };
    (core, receivers)
}

/// The body of one core's executor: the start-up phases, serving, and shutdown.
pub async fn run_core(args: CoreArgs) -> Result<(), String> {
    // 1. Listeners.
    let listeners = bind_listeners(&args)?;
    // 2. Shards and hinted-handoff queues, then every core waits for the others.
    let recovered = recover(&args);
    if recovered.is_err() {
        args.shutdown.request();
    }
    args.recovered.wait();
    let mut recovered = recovered?;
    if args.shutdown.is_requested() {
        return Err("start-up aborted: another core failed".into());
    }
    let (core, cores) = (args.core, args.cores);
    let (config, shutdown) = (args.config.clone(), args.shutdown.clone());
    let cache = args.cache.clone();
    let hh_queues = recovered
        .cluster
        .as_mut()
        .map(|c| std::mem::take(&mut c.queues))
        .unwrap_or_default();
    // 3, 4. The mesh and the services.
    let (services, receivers) = wire(args, recovered, listeners.http_addr).await;
    let services = Rc::new(services);
    // 5. Serve.
    for receiver in receivers {
        let services = services.clone();
        glommio::spawn_local(async move {
            while let Some(request) = receiver.recv().await {
                glommio::spawn_local(serve_mesh_request(services.clone(), request)).detach();
            }
        })
        .detach();
    }
    if core == 0 {
        let (addr, dir) = (listeners.http_addr, config.data_dir.display());
        tracing::info!(%addr, cores, data_dir = %dir, "HTTP API listening on {addr}");
    }
    if let Some(hh) = &services.hinted_handoff {
        hh.start_processors(hh_queues);
    }
    if let (0, Some(sync)) = (core, &services.meta_sync) {
        glommio::spawn_local(sync.clone().run()).detach();
    }
    if let Some(cq) = &services.continuous_queries {
        glommio::spawn_local(cq.clone().run()).detach();
    }
    if let Some(monitor) = &services.monitor {
        glommio::spawn_local(monitor.clone().run()).detach();
    }
    glommio::spawn_local(crate::tsdb::tidy::run(
        services.local.store.clone(),
        shutdown.clone(),
    ))
    .detach();
    glommio::spawn_local(crate::tsdb::flush::run(
        services.local.store.clone(),
        crate::tsdb::flush::FlushConfig {
            snapshot_bytes: config.storage.cache_snapshot_bytes as usize,
            cold: Duration::from_millis(config.storage.cache_snapshot_write_cold_ms),
            wal_bytes: config.storage.cache_snapshot_wal_bytes,
            compaction_bytes_per_second: config.storage.compaction_throughput_bytes_per_second,
            full_compaction_cold: Duration::from_millis(config.storage.compact_full_write_cold_ms),
        },
        cache,
        services.local.timers.clone(),
        shutdown.clone(),
    ))
    .detach();
    if config.retention.enabled {
        glommio::spawn_local(crate::tsdb::retention::run(
            services.local.store.clone(),
            services.local.meta.clone(),
            Duration::from_millis(config.retention.check_interval_ms),
            services.local.stats.clone(),
            shutdown.clone(),
        ))
        .detach();
    }
    if let (Some(service), Some(listener)) = (&services.cluster_service, listeners.cluster) {
        glommio::spawn_local(service.clone().run(listener)).detach();
    }
    crate::http::accept_loop(services.http.clone(), listeners.http).await;
    // 6. Drain: no new requests; wait for those in flight, bounded by the shutdown
    // timeout; then meet the other cores and close the WALs.
    let timeout = Duration::from_millis(config.runtime.shutdown_timeout_ms);
    services.http.drain(timeout).await;
    shutdown.barrier(cores).await;
    let closing = services.local.store.borrow().close_all();
    closing.await;
    tracing::debug!(core, "core stopped");
    Ok(())
}

/// Binds a listener that no other socket shares. glommio's `TcpListener::bind` sets
/// SO_REUSEPORT, so a second process given the same port would bind without an error
/// and take half the connections; a std listener (SO_REUSEADDR only, so a restart
/// right after a crash still binds) makes that misconfiguration fail loudly.
///
/// A node restarted right after a crash can find its port still held for a moment (the
/// kernel tears down a dead process's io_uring, and the listeners it holds, after the
/// process is gone): "address in use" is retried for up to 5 s before it is an error.
fn bind_exclusive(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::unix::io::{FromRawFd, IntoRawFd};
    let deadline = Instant::now() + Duration::from_secs(5);
    let listener = loop {
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => break other?,
        }
    };
    // SAFETY: the fd is a bound, listening TCP socket whose ownership moves here.
    Ok(unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) })
}

/// Binds this core's cluster listener (`bind` port + core) when peers are configured.
fn bind_cluster_listener(config: &Config, core: usize) -> Result<Option<TcpListener>, String> {
    if config.cluster.peers.is_empty() {
        return Ok(None);
    }
    let mut addr = config.cluster.bind_addr();
    addr.set_port(addr.port() + core as u16);
    bind_exclusive(addr)
        .map(Some)
        .map_err(|e| format!("cannot listen for cluster peers on {addr}: {e}"))
}

/// The ShardWriter and shared secret of this core, when peers are configured.
fn shard_writer(
    config: &Config,
    cores: usize,
    peer_cores: &Arc<PeerCores>,
    tls: &Option<Arc<crate::net::tls::ClusterTls>>,
) -> Option<(Rc<ShardWriter>, Vec<u8>)> {
    let peers = config.cluster.parsed_peers().ok()?;
    if peers.is_empty() {
        return None;
    }
    let secret = config.cluster.secret().ok()?;
    let writer = ShardWriter::new(
        config.cluster.node_id,
        cores,
        secret.clone(),
        config.cluster.clone(),
        &peers,
    )
    .with_peer_cores(peer_cores.clone())
    .with_tls(tls.clone());
    Some((Rc::new(writer), secret))
}
