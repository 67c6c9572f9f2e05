//! One core of a running node: its context, its start-up and shutdown, and its side of
//! the mesh (serving requests from other cores).
//!
//! Start-up of a core: bind the HTTP listener (core 0 first; its address, port 0
//! resolved, is what the others bind) -> open and recover the shards it owns -> wait for
//! every core to have recovered -> connect the mesh -> accept.

use crate::cluster::shard_writer::ShardWriter;
use crate::cluster::ClusterState;
use crate::config::Config;
use crate::meta::MetaStore;
use crate::net::mesh::{CoreChannels, Mesh, MeshError};
use crate::placement::{Membership, NodeId};
use crate::query::QueryError;
use crate::runtime::Shutdown;
use crate::tsdb::read::scan::{self, ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use crate::tsdb::shard::{ApplyOutcome, Durable, ShardError, ShardStats, StoredPoint};
use crate::tsdb::store::ReadRequest;
use crate::tsdb::store::{self, ShardBatch, Store};
use crate::tsdb::wal::{WalConfig, WalError};
use futures_channel::oneshot;
use glommio::net::TcpListener;
use std::cell::{Cell, RefCell};
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
        options: crate::query::QueryOptions,
        reply: oneshot::Sender<crate::query::QueryAnswer>,
    },
    /// This core's counters and histograms (`metrics`).
    Metrics {
        reply: oneshot::Sender<Vec<crate::metrics::CoreSnapshot>>,
    },
    Read {
        request: ReadRequest,
        reply: oneshot::Sender<Vec<(u64, StoredPoint)>>,
    },
    /// A query's scan of one measurement on this core's shards.
    Scan {
        request: crate::tsdb::read::scan::ScanRequest,
        reply: oneshot::Sender<
            Result<Vec<crate::tsdb::read::scan::ShardScan>, crate::tsdb::read::cancel::ScanStop>,
        >,
    },
    /// The schema of this core's shards of a database.
    Schema {
        request: crate::tsdb::read::scan::SchemaRequest,
        reply: oneshot::Sender<Vec<crate::tsdb::read::scan::ShardSchema>>,
    },
    /// DROP MEASUREMENT / DROP SERIES / DELETE on this core's shards.
    Delete {
        request: crate::tsdb::read::delete::DeleteRequest,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    DropShards {
        database: String,
        retention_policy: Option<String>,
        reply: oneshot::Sender<usize>,
    },
    /// A write for a remote owner, on the shard's home core (hinted handoff lives there).
    RemoteWrite {
        node: crate::placement::NodeId,
        batch: crate::cluster::shard_writer::RemoteBatch,
        reply: oneshot::Sender<crate::hh::processor::RemoteOutcome>,
    },
    /// A client connection accepted on core 0, to be served by the receiving core.
    Connection(crate::net::handoff::HandoffStream),
    /// A client connection another core moved here: its queries read this core's data.
    MovedConnection(crate::net::handoff::MovedStream),
}

pub use crate::metrics::CoreStats;
use crate::metrics::{CoreSnapshot, CoreTimers, Timer};

/// Everything a core owns, shared by its tasks (`Rc`: never leaves the core).
pub struct CoreContext {
    pub core: usize,
    pub cores: usize,
    pub config: Arc<Config>,
    pub meta: Arc<MetaStore>,
    pub shutdown: Arc<Shutdown>,
    pub store: RefCell<Store>,
    pub mesh: Mesh<MeshRequest>,
    pub stats: CoreStats,
    /// This core's latency histograms.
    pub timers: CoreTimers,
    pub in_flight_writes: Cell<usize>,
    pub in_flight_requests: Cell<usize>,
    pub connection_counts: Arc<Vec<AtomicUsize>>,
    /// This core's client connections (phases, timeouts, room at the limit).
    pub http_connections: Rc<crate::http::conn::Connections>,
    /// Bytes of request bodies being received on this core (bounded by
    /// `max-pending-body-bytes-per-core`).
    pub pending_body_bytes: Rc<Cell<u64>>,
    /// Which core holds which shards: scans and schema requests go only there.
    pub directory: Arc<store::ShardDirectory>,
    pub shutting_down: Cell<bool>,
    pub http_addr: SocketAddr,
    /// This node's id (`[cluster] node-id`).
    pub node_id: NodeId,
    /// The nodes placement works over (this node alone without peers).
    pub membership: Membership,
    /// The remote half, when peers are configured.
    pub cluster: Option<ClusterState>,
    /// This core's hinted-handoff queues (with a cluster).
    pub hinted_handoff: Option<crate::hh::processor::HintedHandoff>,
}

impl CoreContext {
    /// The core with the fewest open connections; ties go to the first from `start`.
    pub fn least_loaded_core(&self, start: usize) -> usize {
        (0..self.cores)
            .map(|k| (start + k) % self.cores)
            .min_by_key(|&c| self.connection_counts[c].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Writes a batch to a shard this core owns and waits until it is durable.
    pub async fn write_local(&self, batch: ShardBatch) -> Result<ApplyOutcome, ShardError> {
        let start = Instant::now();
        let (outcome, durable) = self.append_local(&batch).await?;
        wait_durable(batch.shard.id, durable).await?;
        self.timers.record(Timer::WalWrite, start);
        Ok(outcome)
    }

    /// The first half of `write_local`: waits for room in the shard's WAL, then appends
    /// the batch and applies it to the cache (synchronously, so two batches whose
    /// appends start in some order are in the WAL and cache in that order). Returns the
    /// outcome and the durability wait still to do (see [`wait_durable`]).
    pub async fn append_local(
        &self,
        batch: &ShardBatch,
    ) -> Result<(ApplyOutcome, Option<Durable>), ShardError> {
        let wal = self.store.borrow().shard_wal(batch.shard.id);
        if let Some(wal) = wal {
            wal.wait_for_room().await;
        }
        self.store.borrow_mut().write(batch)
    }

    /// Writes a batch to its owning core, here or over the mesh.
    pub async fn write_to_core(
        &self,
        core: usize,
        batch: ShardBatch,
    ) -> Result<Result<ApplyOutcome, ShardError>, MeshError> {
        if core == self.core {
            return Ok(self.write_local(batch).await);
        }
        self.mesh
            .call(core, |reply| MeshRequest::Write { batch, reply })
            .await
    }

    /// Shard statistics of every core.
    pub async fn all_shard_stats(&self) -> Result<Vec<(usize, Vec<ShardStats>)>, MeshError> {
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

    /// This core's counters and histograms, and copies of those its modules keep.
    pub fn metrics_local(&self) -> CoreSnapshot {
        let shard_writer = self.cluster.as_ref().map(|c| &c.shard_writer);
        let rtt = shard_writer.map(|w| w.rtt_histogram());
        CoreSnapshot::capture(
            self.core,
            &self.stats,
            &self.timers,
            shard_writer
                .zip(rtt.as_ref())
                .map(|(w, h)| (w.stats(), w.in_flight() as u64, &**h)),
            self.hinted_handoff.as_ref().map(|h| {
                let (enqueue, replay) = h.latency_histograms();
                (h.stats(), enqueue, replay)
            }),
        )
    }

    /// The core that holds every shard of `database` on this node, when one does.
    pub fn sole_core(&self, database: &str) -> Option<usize> {
        match self
            .directory
            .cores_holding(database, None, (i64::MIN, i64::MAX), None)
            .as_slice()
        {
            [core] => Some(*core),
            _ => None,
        }
    }

    /// Every core's counters and histograms merged, and the node's gauges.
    pub async fn node_metrics(&self) -> Result<(CoreSnapshot, crate::metrics::Gauges), MeshError> {
        let snapshot = self.metrics_node().await?;
        let mut gauges = crate::metrics::Gauges {
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
        for (_, shards) in self.all_shard_stats().await? {
            for s in shards {
                gauges.series += s.series as u64;
                gauges.cached_values += s.values;
                gauges.cache_bytes += s.cache_heap_bytes as u64;
                gauges.shards += 1;
            }
        }
        Ok((snapshot, gauges))
    }

    /// Counters and histograms of every core, merged.
    pub async fn metrics_node(&self) -> Result<CoreSnapshot, MeshError> {
        let all = self
            .on_every_core(
                || vec![self.metrics_local()],
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
        remote: impl Fn(futures_channel::oneshot::Sender<Vec<T>>) -> MeshRequest,
    ) -> Result<Vec<T>, MeshError> {
        let all: Vec<usize> = (0..self.cores).collect();
        self.on_cores(&all, local, remote).await
    }

    /// [`Self::on_every_core`] for the listed cores only.
    async fn on_cores<T>(
        &self,
        cores: &[usize],
        local: impl FnOnce() -> Vec<T>,
        remote: impl Fn(futures_channel::oneshot::Sender<Vec<T>>) -> MeshRequest,
    ) -> Result<Vec<T>, MeshError> {
        let answers = self.ask_cores(cores, local, remote).await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// Sends `remote(reply)` to each listed core other than this one, then runs `local`
    /// here if listed, then waits for the others: the cores work at the same time. The
    /// answers in the order of `cores`.
    async fn ask_cores<R>(
        &self,
        cores: &[usize],
        local: impl FnOnce() -> R,
        remote: impl Fn(futures_channel::oneshot::Sender<R>) -> MeshRequest,
    ) -> Result<Vec<R>, MeshError> {
        self.ask_cores_async(cores, async { local() }, remote).await
    }

    /// [`Self::ask_cores`] with this core's part a future (run after the requests to
    /// the other cores are sent, and only if this core is listed).
    async fn ask_cores_async<R>(
        &self,
        cores: &[usize],
        local: impl std::future::Future<Output = R>,
        remote: impl Fn(futures_channel::oneshot::Sender<R>) -> MeshRequest,
    ) -> Result<Vec<R>, MeshError> {
        let mut waiting = Vec::with_capacity(cores.len());
        for &core in cores {
            if core == self.core {
                waiting.push((core, None));
            } else {
                let (tx, rx) = futures_channel::oneshot::channel();
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
    pub async fn read_all(
        &self,
        request: &ReadRequest,
    ) -> Result<Vec<(u64, StoredPoint)>, MeshError> {
        self.on_every_core(
            || read_local(&self.store, request),
            |reply| MeshRequest::Read {
                request: request.clone(),
                reply,
            },
        )
        .await
    }

    /// A query scan over every core of this node; the cores scan at once.
    pub async fn scan_node(&self, request: &ScanRequest) -> Result<Vec<ShardScan>, QueryError> {
        let cores = self.directory.cores_holding(
            &request.database,
            Some(&request.retention_policy),
            (request.start_ns, request.end_ns),
            request.shard_ids.as_deref(),
        );
        let answers = self
            .ask_cores_async(&cores, self.scan_here(request), |reply| MeshRequest::Scan {
                request: request.clone(),
                reply,
            })
            .await
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        let mut out = Vec::new();
        for answer in answers {
            out.extend(answer?);
        }
        Ok(out)
    }

    /// This core's part of a scan. A scan that stops early (deadline, point limit)
    /// raises the request's cancel flag, so the cores still scanning for it stop too.
    async fn scan_here(
        &self,
        request: &ScanRequest,
    ) -> Result<Vec<ShardScan>, crate::tsdb::read::cancel::ScanStop> {
        let answer = scan::scan_local(&self.store, request).await;
        if answer.is_err() {
            CoreStats::add(&self.stats.scans_stopped, 1);
            request.deadline.cancel();
        }
        answer
    }

    /// The schema of a database's shards over every core of this node.
    pub async fn schema_node(
        &self,
        request: &SchemaRequest,
    ) -> Result<Vec<ShardSchema>, MeshError> {
        let cores = self.directory.cores_holding(
            &request.database,
            request.retention_policy.as_deref(),
            (request.start_ns, request.end_ns),
            request.shard_ids.as_deref(),
        );
        self.on_cores(
            &cores,
            || scan::schema_local(&self.store.borrow(), request),
            |reply| MeshRequest::Schema {
                request: request.clone(),
                reply,
            },
        )
        .await
    }

    /// A delete on every core of this node; the values removed.
    pub async fn delete_node(
        &self,
        request: &crate::tsdb::read::delete::DeleteRequest,
    ) -> Result<u64, String> {
        let mut removed = 0;
        for core in 0..self.cores {
            if core == self.core {
                removed += crate::tsdb::read::delete::delete_local(&self.store, request).await?;
            } else {
                let request = request.clone();
                removed += self
                    .mesh
                    .call(core, |reply| MeshRequest::Delete { request, reply })
                    .await
                    .map_err(|e| e.to_string())??;
            }
        }
        Ok(removed)
    }

    /// Drops the shards of a database (or one of its policies) on every core.
    pub async fn drop_shards_everywhere(
        &self,
        database: &str,
        retention_policy: Option<&str>,
    ) -> Result<usize, MeshError> {
        let mut dropped = 0;
        for core in 0..self.cores {
            if core == self.core {
                dropped += drop_local(&self.store, database, retention_policy).await;
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

fn read_local(store: &RefCell<Store>, r: &ReadRequest) -> Vec<(u64, StoredPoint)> {
    store.borrow_mut().read(
        &r.database,
        r.retention_policy.as_deref(),
        r.measurement.as_deref(),
        r.series_key.as_deref(),
        r.start_ns,
        r.end_ns,
    )
}

async fn drop_local(store: &RefCell<Store>, database: &str, rp: Option<&str>) -> usize {
    let (removed, data_dir) = {
        let mut s = store.borrow_mut();
        (s.remove_shards(database, rp), s.data_dir().to_path_buf())
    };
    store::delete_shards(&data_dir, removed).await
}

/// Serves one request from another core.
async fn serve_mesh_request(ctx: Rc<CoreContext>, request: MeshRequest) {
    match request {
        MeshRequest::Write { batch, reply } => {
            CoreStats::add(&ctx.stats.mesh_writes_served, 1);
            let _ = reply.send(ctx.write_local(batch).await);
        }
        MeshRequest::Metrics { reply } => {
            let _ = reply.send(vec![ctx.metrics_local()]);
        }
        MeshRequest::Query {
            text,
            options,
            reply,
        } => {
            let _ = reply.send(crate::cluster::executor::execute_here(&ctx, &text, &options).await);
        }
        MeshRequest::ShardStats { reply } => {
            let _ = reply.send(ctx.store.borrow().shard_stats());
        }
        MeshRequest::Read { request, reply } => {
            let _ = reply.send(read_local(&ctx.store, &request));
        }
        MeshRequest::Scan { request, reply } => {
            let _ = reply.send(ctx.scan_here(&request).await);
        }
        MeshRequest::Delete { request, reply } => {
            let _ = reply.send(crate::tsdb::read::delete::delete_local(&ctx.store, &request).await);
        }
        MeshRequest::Schema { request, reply } => {
            let _ = reply.send(scan::schema_local(&ctx.store.borrow(), &request));
        }
        MeshRequest::RemoteWrite { node, batch, reply } => {
            let _ = reply.send(crate::hh::processor::remote_write(&ctx, node, batch).await);
        }
        MeshRequest::Connection(stream) => {
            crate::http::serve_connection(ctx, stream.into_stream());
        }
        MeshRequest::MovedConnection(stream) => {
            crate::http::serve_moved_connection(ctx, stream.into_stream());
        }
        MeshRequest::DropShards {
            database,
            retention_policy,
            reply,
        } => {
            let _ =
                reply.send(drop_local(&ctx.store, &database, retention_policy.as_deref()).await);
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

/// The body of one core's executor.
pub async fn run_core(args: CoreArgs) -> Result<(), String> {
    let CoreArgs {
        core,
        cores,
        config,
        meta,
        shutdown,
        channels,
        http_bind,
        bound_tx,
        recovered,
        connection_counts,
        directory,
    } = args;
    // Only core 0 listens; it hands connections to the other cores.
    let listener = if core == 0 {
        match bind_exclusive(http_bind) {
            Ok(l) => Some(l),
            Err(e) => {
                let message = format!("cannot listen on {http_bind}: {e}");
                let _ = bound_tx.send(Err(message.clone()));
                return Err(message);
            }
        }
    } else {
        None
    };
    let cluster_listener = match bind_cluster_listener(&config, core) {
        Ok(l) => l,
        Err(message) => {
            if core == 0 {
                let _ = bound_tx.send(Err(message.clone()));
            }
            shutdown.request();
            return Err(message);
        }
    };
    let http_addr = match &listener {
        Some(l) => l.local_addr().map_err(|e| e.to_string())?,
        None => http_bind,
    };
    if core == 0 {
        let _ = bound_tx.send(Ok(http_addr));
    }
    drop(bound_tx);

    let started = Instant::now();
    let opened = Store::open(core, cores, &config.data_dir, wal_config(&config));
    let (mut store, recovery) = match opened {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(core, error = %e, "cannot open the shards of this core");
            shutdown.request();
            recovered.wait();
            return Err(format!("cannot open shards: {e}"));
        }
    };
    store.attach_directory(directory.clone());
    tracing::info!(
        core,
        shards = recovery.shards,
        wal_records = recovery.wal.records,
        wal_bytes = recovery.wal.bytes,
        truncated_segments = recovery.wal.truncated_segments,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered shards"
    );
    let membership = crate::cluster::membership(&config);
    let (hinted_handoff, hh_queues) = if config.cluster.peers.is_empty() {
        (None, Vec::new())
    } else {
        let (hh, found) = crate::hh::processor::HintedHandoff::open(
            config.data_dir.clone(),
            core,
            &config.hinted_handoff,
            membership.nodes(),
        );
        (Some(hh), found)
    };
    recovered.wait();
    if shutdown.is_requested() {
        return Err("start-up aborted: another core failed".into());
    }

    let mesh = crate::net::mesh::connect(core, channels).await;
    let ctx = Rc::new(CoreContext {
        core,
        cores,
        config: config.clone(),
        meta,
        shutdown: shutdown.clone(),
        store: RefCell::new(store),
        mesh: mesh.0,
        stats: CoreStats::default(),
        timers: CoreTimers::default(),
        in_flight_writes: Cell::new(0),
        in_flight_requests: Cell::new(0),
        http_connections: crate::http::conn::Connections::new(
            core,
            config.http.max_connections_per_core,
            connection_counts.clone(),
        ),
        pending_body_bytes: Rc::new(Cell::new(0)),
        connection_counts,
        directory,
        shutting_down: Cell::new(false),
        http_addr,
        node_id: config.cluster.node_id,
        membership: crate::cluster::membership(&config),
        cluster: cluster_state(&config, cores),
        hinted_handoff,
    });
    ctx.stats
        .wal_truncated_segments
        .set(recovery.wal.truncated_segments);
    for receiver in mesh.1 {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(request) = receiver.recv().await {
                glommio::spawn_local(serve_mesh_request(ctx.clone(), request)).detach();
            }
        })
        .detach();
    }
    if core == 0 {
        tracing::info!(addr = %http_addr, cores, data_dir = %config.data_dir.display(), "HTTP API listening on {http_addr}");
    }

    for node in hh_queues {
        glommio::spawn_local(crate::hh::processor::run_processor(ctx.clone(), node)).detach();
    }
    if core == 0 && ctx.cluster.is_some() {
        glommio::spawn_local(crate::cluster::meta_sync::sync_loop(ctx.clone())).detach();
    }
    glommio::spawn_local(tidy_loop(ctx.clone())).detach();
    if let Some(cluster_listener) = cluster_listener {
        glommio::spawn_local(crate::cluster::service::accept_loop(
            ctx.clone(),
            cluster_listener,
        ))
        .detach();
    }
    crate::http::accept_loop(ctx.clone(), listener).await;

    // Drain: no new requests; wait for those in flight, bounded by the shutdown timeout.
    ctx.shutting_down.set(true);
    let deadline = Instant::now() + Duration::from_millis(config.runtime.shutdown_timeout_ms);
    while ctx.in_flight_requests.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    shutdown.barrier(cores).await;
    let wals = ctx.store.borrow().wals();
    for wal in wals {
        wal.close().await;
    }
    tracing::debug!(core, "core stopped");
    Ok(())
}

/// How often a core looks for columns that writes left out of time order.
const TIDY_INTERVAL: Duration = Duration::from_millis(100);

/// How long the tidy task holds the core at a time.
const TIDY_SLICE: Duration = Duration::from_millis(1);

/// Sorts the columns of this core's shards that writes left out of time order (batches
/// of one series applied out of turn, as parallel writers cause), off the query path,
/// as InfluxDB sorts its cache when it snapshots; otherwise the first query to touch
/// such a series pays for the sort. It waits for a quiet spell (no value written to the
/// core's shards for a whole [`TIDY_INTERVAL`]), so a column is not sorted again and
/// again while a load is still adding to it, and works in slices of [`TIDY_SLICE`]
/// with a pause between them ([`crate::tsdb::read::cancel::SCAN_PAUSE`]), so a query or
/// write that arrives waits at most one slice.
async fn tidy_loop(ctx: Rc<CoreContext>) {
    use crate::tsdb::read::cancel::SCAN_PAUSE;
    let written = |ctx: &CoreContext| -> u64 {
        ctx.store
            .borrow()
            .shards()
            .map(|s| s.values_written())
            .sum()
    };
    let mut seen = written(&ctx);
    while !ctx.shutdown.is_requested() {
        glommio::timer::sleep(TIDY_INTERVAL).await;
        let now = written(&ctx);
        if now != seen {
            seen = now;
            continue;
        }
        let shards: Vec<u64> = ctx.store.borrow().shards().map(|s| s.meta.id).collect();
        'shards: for id in shards {
            loop {
                let slice_ends = Instant::now() + TIDY_SLICE;
                let more = match ctx.store.borrow_mut().shard_mut(id) {
                    Some(shard) => shard.tidy(|_| Instant::now() < slice_ends),
                    None => false,
                };
                if !more || ctx.shutdown.is_requested() {
                    break;
                }
                glommio::timer::sleep(SCAN_PAUSE).await;
                // Writes resumed: leave the rest for the next quiet spell.
                if written(&ctx) != seen {
                    break 'shards;
                }
            }
        }
    }
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

fn cluster_state(config: &Config, cores: usize) -> Option<ClusterState> {
    let peers = config.cluster.parsed_peers().ok()?;
    if peers.is_empty() {
        return None;
    }
    let secret = config.cluster.secret().ok()?;
    Some(ClusterState {
        node_id: config.cluster.node_id,
        shard_writer: ShardWriter::new(
            config.cluster.node_id,
            cores,
            secret.clone(),
            config.cluster.clone(),
            &peers,
        ),
        secret,
    })
}

/// The second half of `CoreContext::write_local`: waits until an appended batch of
/// shard `shard_id` is durable.
pub async fn wait_durable(shard_id: u64, durable: Option<Durable>) -> Result<(), ShardError> {
    if let Some(durable) = durable {
        durable.await.map_err(|_| {
            ShardError::Wal(WalError::Closed {
                dir: format!("shard {shard_id}"),
            })
        })??;
    }
    Ok(())
}
