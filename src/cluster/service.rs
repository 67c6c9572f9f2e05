//! The cluster service: each core listens on `cluster port base + core` for other nodes,
//! checks their proof of the shared secret, and serves Ping, WriteShard and MetaSync.
//!
//! A connection's requests are served concurrently: the reader spawns a task per
//! request, up to `max-inflight-requests-per-connection` at once, and each task queues
//! its answer, tagged with the request id, on the connection's `FrameSink` as soon as it
//! is done (whole frames; one flusher writes them in order of completion). At the bound
//! the reader stops reading the socket until a request has finished and its answer has
//! been written, so TCP flow control pushes back on the sender; a peer that stops
//! reading answers stops being read from.
//!
//! **Invariant:** two WriteShard requests for the same shard on one connection are
//! applied (appended to the WAL and cache) in the order they arrived. Each request's
//! task waits for its predecessor of the same shard on this connection to have
//! *appended* (not to be durable) before it appends; appends are synchronous
//! (`LocalNode::append_here`), so the chain is the order. Spawn order alone would
//! not do: a task can wait for room in the WAL while a later one, finding room after a
//! flush took the buffer, appends first. Durability waits overlap, so one fsync still
//! covers many pipelined requests. A batch that lands on a core that does not own its
//! shard (the sender's idea of our core count is stale) goes over the mesh, and its
//! successor then waits for the whole write.
//!
//! A connection that sends a malformed frame, a bad crc, an unknown version or a wrong
//! proof gets an `Error` frame (best effort) and is closed; it is counted and logged,
//! and nothing else is affected: every connection is its own task. Requests already
//! being applied finish; their answers are dropped.

use crate::base::shutdown::Shutdown;
use crate::cluster::local::LocalNode;
use crate::cluster::map_server::MapServer;
use crate::cluster::map_wire::MapShard;
use crate::cluster::meta_sync::{MetaSync, MetaSyncService};
use crate::config::ClusterConfig;
use crate::lineproto;
use crate::meta::MetaStore;
use crate::metrics::{CoreStats, CoreTimers};
use crate::net::conn::{ConnError, FrameReader, FrameSink, FramedConn, NetStream};
use crate::net::tls::ClusterTls;
use crate::net::wire::{
    self, ErrorMessage, Frame, FrameKind, Pong, WireError, WriteShard, WriteShardResponse,
    WriteShardStatus,
};
use crate::placement::{self, Membership, NodeId};
use crate::tsdb::shard::{ApplyOutcome, Partition, ShardError, ShardMeta};
use crate::tsdb::store::ShardBatch;
use futures_channel::oneshot;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::{Semaphore, StaticPermit};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::MAX_PENDING_HANDSHAKES;

/// How long a new connection may take to prove the shared secret.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(crate::limits::HANDSHAKE_TIMEOUT_MS);

/// This core's connections in their handshake, oldest first, each with the sender
/// that closes it.
#[derive(Default)]
struct Handshakes {
    next_id: u64,
    pending: std::collections::VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Handshakes {
    /// Makes room (closing the oldest at the bound) and registers a new handshake.
    fn start(&mut self) -> (u64, oneshot::Receiver<()>, bool) {
        let mut evicted = false;
        while self.pending.len() >= MAX_PENDING_HANDSHAKES {
            if let Some((_, close)) = self.pending.pop_front() {
                evicted |= close.send(()).is_ok();
            }
        }
        let (tx, rx) = oneshot::channel();
        self.next_id += 1;
        self.pending.push_back((self.next_id, tx));
        (self.next_id, rx, evicted)
    }

    fn finish(&mut self, id: u64) {
        self.pending.retain(|(i, _)| *i != id);
    }
}

/// This core's cluster service: what it serves (writes, MapShard through its map
/// server, meta sync) and what it needs to check a peer's proof.
pub struct ClusterService {
    node_id: NodeId,
    core: usize,
    cores: usize,
    secret: Vec<u8>,
    meta: Arc<MetaStore>,
    membership: Membership,
    config: ClusterConfig,
    local: Rc<dyn LocalNode>,
    map_server: Rc<MapServer>,
    meta_sync: Rc<MetaSyncService>,
    stats: Rc<CoreStats>,
    timers: Rc<CoreTimers>,
    shutdown: Arc<Shutdown>,
    tls: Option<Arc<ClusterTls>>,
}

/// What [`ClusterService::new`] takes.
pub struct ClusterServiceParts {
    pub node_id: NodeId,
    pub secret: Vec<u8>,
    pub meta: Arc<MetaStore>,
    pub membership: Membership,
    pub config: ClusterConfig,
    pub local: Rc<dyn LocalNode>,
    pub map_server: Rc<MapServer>,
    pub meta_sync: Rc<MetaSyncService>,
    pub stats: Rc<CoreStats>,
    pub timers: Rc<CoreTimers>,
    pub shutdown: Arc<Shutdown>,
    /// With `[cluster] tls-enabled`: connections are mutual TLS.
    pub tls: Option<Arc<ClusterTls>>,
}

impl ClusterService {
    pub fn new(parts: ClusterServiceParts) -> ClusterService {
        ClusterService {
            core: parts.local.core(),
            cores: parts.local.cores(),
            node_id: parts.node_id,
            secret: parts.secret,
            meta: parts.meta,
            membership: parts.membership,
            config: parts.config,
            local: parts.local,
            map_server: parts.map_server,
            meta_sync: parts.meta_sync,
            stats: parts.stats,
            timers: parts.timers,
            shutdown: parts.shutdown,
            tls: parts.tls,
        }
    }

    /// Accepts node connections on this core's listener until shutdown.
    pub async fn run(self: Rc<Self>, listener: TcpListener) {
        accept_loop(self, listener).await
    }
}

/// Accepts node connections on this core until shutdown.
async fn accept_loop(svc: Rc<ClusterService>, listener: TcpListener) {
    let handshakes = Rc::new(std::cell::RefCell::new(Handshakes::default()));
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            svc.shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let (id, closed, evicted) = handshakes.borrow_mut().start();
                if evicted {
                    CoreStats::add(&svc.stats.cluster_rejected_connections, 1);
                    tracing::warn!(
                        core = svc.core,
                        "too many cluster connections in their handshake; closed the oldest"
                    );
                }
                let handshakes = handshakes.clone();
                glommio::spawn_local(serve_connection(
                    svc.clone(),
                    stream,
                    closed,
                    Box::new(move || handshakes.borrow_mut().finish(id)),
                ))
                .detach();
            }
            Some(Err(e)) => {
                tracing::warn!(core = svc.core, error = %e, "cluster accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(
    svc: Rc<ClusterService>,
    stream: TcpStream,
    mut closed: oneshot::Receiver<()>,
    handshake_done: Box<dyn FnOnce()>,
) {
    let peer_address = stream
        .peer_addr()
        .map_or_else(|_| "peer".to_string(), |a| a.to_string());
    // With tls-enabled, TLS first (the peer's certificate checked against the
    // cluster's CA), within the same handshake timeout.
    let stream: NetStream = match &svc.tls {
        None => stream.into(),
        Some(tls) => {
            let accepted = futures_lite::future::or(
                async { Some(tls.acceptor.accept(stream).await) },
                async {
                    glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
                    None
                },
            )
            .await;
            match accepted {
                Some(Ok(stream)) => NetStream::TlsServer(Box::new(stream)),
                Some(Err(e)) => {
                    handshake_done();
                    reject(&svc, &peer_address, &format!("TLS handshake: {e}"));
                    return;
                }
                None => {
                    handshake_done();
                    reject(&svc, &peer_address, &"TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let mut conn = FramedConn::new(stream, wire::HANDSHAKE_MAX_PAYLOAD_BYTES);
    let handshake = futures_lite::future::or(
        async {
            Some(
                conn.handshake_server(
                    svc.node_id,
                    svc.cores as u16,
                    &svc.secret,
                    svc.meta.snapshot().version,
                    |id| id != svc.node_id && svc.membership.nodes().contains(&id),
                )
                .await,
            )
        },
        futures_lite::future::or(
            async {
                glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
                None
            },
            async {
                // Closed to make room (a dropped sender is not a close).
                if (&mut closed).await.is_err() {
                    std::future::pending::<()>().await;
                }
                None
            },
        ),
    )
    .await;
    handshake_done();
    let peer_node = match handshake {
        Some(Ok(node)) => node,
        Some(Err(e)) => {
            reject(&svc, conn.peer(), &e);
            return;
        }
        None => {
            CoreStats::add(&svc.stats.cluster_rejected_connections, 1);
            tracing::warn!(peer = conn.peer(), "cluster handshake timed out; closing");
            return;
        }
    };
    conn.set_max_payload_bytes(svc.config.max_frame_bytes.min(u32::MAX as u64) as u32);
    tracing::debug!(
        peer = conn.peer(),
        node = peer_node,
        core = svc.core,
        "cluster connection"
    );
    let (reader, sink, flusher) = conn.into_split();
    glommio::spawn_local(async move {
        let _ = flusher.await;
    })
    .detach();
    serve_requests(&svc, reader, &sink).await;
    // Answers queued so far are still written; those of requests still running are not.
    sink.close();
}

/// The read loop of one authenticated connection: one task per request, at most
/// `max-inflight-requests-per-connection` at once. Returns when the peer closes or
/// breaks the stream.
async fn serve_requests(svc: &Rc<ClusterService>, mut reader: FrameReader, sink: &FrameSink) {
    let in_flight = Rc::new(Semaphore::new(
        svc.config.max_inflight_requests_per_connection as u64,
    ));
    let mut order = ShardOrder::default();
    loop {
        // Backpressure: no slot, no read.
        let Ok(permit) = in_flight.clone().acquire_static_permit(1).await else {
            return;
        };
        let frame = match reader.read_frame().await {
            Ok(f) => f,
            Err(ConnError::Closed { .. }) => return,
            Err(e) => {
                if let ConnError::Wire { source, .. } = &e {
                    send_error(sink, source);
                }
                reject(svc, reader.peer(), &e);
                return;
            }
        };
        if let Err(e) = dispatch(svc, sink, &mut order, frame, permit) {
            send_error(sink, &e);
            reject(svc, reader.peer(), &e);
            return;
        }
    }
}

/// Starts serving one request; an error means the frame cannot be trusted and the
/// connection must close.
fn dispatch(
    svc: &Rc<ClusterService>,
    sink: &FrameSink,
    order: &mut ShardOrder,
    frame: Frame,
    permit: StaticPermit,
) -> Result<(), WireError> {
    let request_id = frame.request_id;
    match frame.kind {
        FrameKind::Ping => {
            let pong = Pong {
                node_id: svc.node_id,
                cores: svc.cores as u16,
                meta_version: svc.meta.snapshot().version,
            };
            let _ = sink.send_releasing(request_id, &pong, Some(permit));
        }
        FrameKind::WriteShard => {
            let write = frame.decode_message::<WriteShard>()?;
            let turn = order.turn(write.shard_id);
            let (svc, sink) = (svc.clone(), sink.clone());
            glommio::spawn_local(async move {
                let status = apply_remote_write(&svc, write, turn).await;
                let answer = WriteShardResponse { status };
                let _ = sink.send_releasing(request_id, &answer, Some(permit));
            })
            .detach();
        }
        FrameKind::MapShard => {
            let request = frame.decode_message::<MapShard>()?;
            let (svc, sink) = (svc.clone(), sink.clone());
            glommio::spawn_local(async move {
                let reply = svc.map_server.serve(&request).await;
                let _ = sink.send_releasing(request_id, &reply, Some(permit));
            })
            .detach();
        }
        FrameKind::MetaSync => {
            let sync = frame.decode_message::<MetaSync>()?;
            let (svc, sink) = (svc.clone(), sink.clone());
            glommio::spawn_local(async move {
                let reply = svc.meta_sync.serve(&sink.peer(), sync).await;
                let _ = sink.send_releasing(request_id, &reply, Some(permit));
            })
            .detach();
        }
        FrameKind::Admin => {
            let admin = frame.decode_message::<crate::cluster::admin::Admin>()?;
            let (svc, sink) = (svc.clone(), sink.clone());
            glommio::spawn_local(async move {
                let reply = serve_admin(&svc, admin).await;
                let _ = sink.send_releasing(request_id, &reply, Some(permit));
            })
            .detach();
        }
        other => {
            return Err(WireError::UnexpectedFrame {
                expected: FrameKind::WriteShard,
                actual: other,
            })
        }
    }
    Ok(())
}

/// Answers an admin request over this node's cores.
async fn serve_admin(
    svc: &ClusterService,
    admin: crate::cluster::admin::Admin,
) -> crate::cluster::admin::AdminReply {
    use crate::cluster::admin::{AdminReply, AdminRequest, AdminResponse};
    let response = match admin.request() {
        Err(e) => AdminResponse::Error(e),
        Ok(AdminRequest::Queries) => match svc.local.running_queries().await {
            Ok(q) => AdminResponse::Queries(q),
            Err(e) => AdminResponse::Error(e.to_string()),
        },
        Ok(AdminRequest::Kill { qid }) => match svc.local.kill_query(qid).await {
            Ok(k) => AdminResponse::Killed(k),
            Err(e) => AdminResponse::Error(e.to_string()),
        },
        Ok(AdminRequest::DropShard { id }) => match svc.local.drop_shard(id).await {
            Ok(n) => AdminResponse::Dropped(n),
            Err(e) => AdminResponse::Error(e.to_string()),
        },
    };
    AdminReply::new(&response)
}

/// Tells the peer why we close, best effort (queued behind the answers already done).
fn send_error(sink: &FrameSink, error: &WireError) {
    let _ = sink.send(0, &ErrorMessage::from_wire_error(error));
}

/// Per connection, the WriteShard requests of each shard in arrival order: a chain of
/// oneshots, each request's task holding the receiver its predecessor completes (by
/// dropping the sender) once it has appended.
#[derive(Default)]
struct ShardOrder {
    /// Per shard, the receiver the next request of that shard will wait on.
    last: HashMap<u64, oneshot::Receiver<()>>,
    /// Entries at which resolved ones are swept out.
    sweep_at: usize,
}

/// One request's place in its shard's chain.
struct Turn {
    after: Option<oneshot::Receiver<()>>,
    /// Dropped once this request has appended (or failed before it): the next may go.
    done: oneshot::Sender<()>,
}

impl ShardOrder {
    fn turn(&mut self, shard_id: u64) -> Turn {
        // Keep the map near the requests in flight: an entry whose request already
        // appended is resolved and can go (at most max-inflight entries are not), and
        // sweeping only when the map doubled keeps the cost per request constant.
        if self.last.len() >= self.sweep_at.max(64) {
            self.last.retain(|_, rx| matches!(rx.try_recv(), Ok(None)));
            self.sweep_at = 2 * self.last.len();
        }
        let (done, rx) = oneshot::channel();
        let after = self.last.insert(shard_id, rx);
        Turn { after, done }
    }
}

fn reject(svc: &ClusterService, peer: &str, error: &dyn std::fmt::Display) {
    CoreStats::add(&svc.stats.cluster_rejected_connections, 1);
    tracing::warn!(peer, core = svc.core, %error, "closing cluster connection");
}

/// Writes a batch received from another node to the local shard (on its owning core),
/// after the same connection's earlier batches of that shard (`turn`).
async fn apply_remote_write(
    svc: &ClusterService,
    write: WriteShard,
    turn: Turn,
) -> WriteShardStatus {
    CoreStats::add(&svc.stats.remote_writes_served, 1);
    // First, so that even a request refused below releases its successor only after
    // its predecessor appended. Completed or cancelled both mean "appended, or never
    // will".
    if let Some(predecessor) = turn.after {
        let _ = predecessor.await;
    }
    if let Some(message) = injected_fault(&write.lines).await {
        return WriteShardStatus::Retryable { message };
    }
    let precision = match write.precision() {
        Ok(p) => p,
        Err(e) => {
            return WriteShardStatus::Permanent {
                message: e.to_string(),
            }
        }
    };
    let parsed = lineproto::parse(write.lines, precision, write.default_time_ns);
    if let Some(e) = parsed.errors.first() {
        return WriteShardStatus::Permanent {
            message: format!("malformed points in shard batch: {e}"),
        };
    }
    let shard = ShardMeta {
        id: write.shard_id,
        database: write.database,
        retention_policy: write.retention_policy,
        start_ns: write.group_start_ns,
        end_ns: write.group_end_ns,
    };
    let all: Vec<u32> = (0..parsed.points.len() as u32).collect();
    let count = svc.local.partitions_of(shard.id);
    // One partition: nothing to split, no series to hash.
    let parts = if count == 1 {
        vec![(0, all)]
    } else {
        let keys: Vec<u32> = parsed
            .series_hashes(&all)
            .into_iter()
            .map(placement::partition_key)
            .collect();
        placement::split_by_partition(&all, &keys, count)
    };
    let body = Arc::new(parsed);
    let batch = |index: u32, points: Vec<u32>| ShardBatch {
        shard: shard.clone(),
        partition: Partition { index, count },
        body: body.clone(),
        points,
        precision,
        default_time_ns: write.default_time_ns,
    };
    // The sender split by our core count, so normally every point is this core's; a
    // part another core holds (our partition count for the shard differs, or the
    // sender's idea of our core count is stale) goes there over the mesh.
    let (mut here, mut elsewhere) = (Vec::new(), Vec::new());
    for (index, points) in parts {
        let core = placement::partition_core(index, svc.cores);
        if core == svc.core {
            here.push(batch(index, points));
        } else {
            elsewhere.push((core, batch(index, points)));
        }
    }
    let rerouted: Vec<_> = elsewhere
        .into_iter()
        .map(|(core, batch)| {
            let local = svc.local.clone();
            glommio::spawn_local(async move { local.write_on(core, batch).await })
        })
        .collect();
    if !rerouted.is_empty() {
        CoreStats::add(&svc.stats.writes_rerouted, rerouted.len() as u64);
    }
    let wal_start = std::time::Instant::now();
    let mut appended = Vec::with_capacity(here.len());
    let mut failed = None;
    for batch in &here {
        match svc.local.append_here(batch).await {
            Ok(done) => appended.push(done),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if rerouted.is_empty() {
        // Over the mesh the append is not observable from here: with parts elsewhere
        // the successor waits for the whole write (`turn.done` dropped on return).
        drop(turn.done);
    }
    let mut total = ApplyOutcome::default();
    for (outcome, durable) in appended {
        if let Err(e) = crate::tsdb::store::wait_durable(shard.id, durable).await {
            failed = failed.or(Some(e));
        }
        total.written += outcome.written;
        total.rejected.extend(outcome.rejected);
    }
    if !here.is_empty() {
        svc.timers
            .record(crate::metrics::Timer::WalWrite, wal_start);
    }
    for write in rerouted {
        match write.await {
            Ok(Ok(outcome)) => {
                total.written += outcome.written;
                total.rejected.extend(outcome.rejected);
            }
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(e) => {
                return WriteShardStatus::Retryable {
                    message: e.to_string(),
                }
            }
        }
    }
    status_of(match failed {
        Some(e) => Err(e),
        None => Ok(total),
    })
}

/// Fault seam for tests of the write path (STYLE: seams for testing faults): with
/// `SHARDCORE_FAULT_REMOTE_WRITE=marker,delay_ms,count` in the environment, the first
/// `count` remote writes whose lines contain `marker` wait `delay_ms` (holding their
/// shard's turn, as a slow disk would) and are answered Retryable. Read once; unset,
/// it costs one load of a static per remote write.
async fn injected_fault(lines: &[u8]) -> Option<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static FAULT: OnceLock<Option<(Vec<u8>, Duration)>> = OnceLock::new();
    static LEFT: AtomicU64 = AtomicU64::new(0);
    let fault = FAULT.get_or_init(|| {
        let spec = std::env::var("SHARDCORE_FAULT_REMOTE_WRITE").ok()?;
        let mut parts = spec.splitn(3, ',');
        let marker = parts.next()?.as_bytes().to_vec();
        let delay = Duration::from_millis(parts.next()?.parse().ok()?);
        LEFT.store(parts.next()?.parse().ok()?, Ordering::Relaxed);
        tracing::warn!(
            spec,
            "remote-write fault injection is on (SHARDCORE_FAULT_REMOTE_WRITE)"
        );
        Some((marker, delay))
    });
    let (marker, delay) = fault.as_ref()?;
    memchr::memmem::find(lines, marker)?;
    LEFT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .ok()?;
    glommio::timer::sleep(*delay).await;
    Some("injected fault (SHARDCORE_FAULT_REMOTE_WRITE)".into())
}

fn status_of(written: Result<ApplyOutcome, ShardError>) -> WriteShardStatus {
    match written {
        Ok(outcome) if outcome.written == 0 && !outcome.rejected.is_empty() => {
            WriteShardStatus::Permanent {
                message: outcome.rejected[0].clone(),
            }
        }
        Ok(outcome) => WriteShardStatus::Ok {
            points_written: outcome.written as u32,
        },
        Err(e) => WriteShardStatus::Retryable {
            message: e.to_string(),
        },
    }
}
