//! ShardWriter: this core's pooled, pipelined connections to other nodes' cores, and
//! the remote half of a shard write.
//!
//! A pool per (peer node, peer core) of at most `pool-max-connections` connections, each
//! carrying up to `max-inflight-requests-per-connection` requests at once, answered by
//! request id (`pipeline`). A request goes on an idle connection if there is one; else a
//! new connection is dialled while the pool has room; else it is pipelined onto the
//! least-loaded connection with a free slot. When every connection is full, the caller
//! waits at most `pool-wait-timeout-ms` for a slot, then fails with "timed out waiting
//! for free connection" (`PoolTimeout`). A connection that failed in any way fails all
//! its requests at once and leaves the pool; the next request dials a fresh one. A
//! peer's core count comes from its handshake, so a batch goes straight to the peer's
//! owning core (`cluster port base + shard_id % peer cores`) and crosses no other core
//! there.
//!
//! **Invariant:** requests of one shard to one peer core that are in flight at the same
//! time share a connection (the shard's *lane*), so the peer, which applies one
//! connection's writes of a shard in arrival order (`service`), applies them in the
//! order they were sent. Without it, two writes of a shard pipelined on two
//! connections could be applied newest first (hinted-handoff replay and live writes
//! both rely on this). A shard whose lane is full waits for a slot on it.
//!
//! Waiting callers are a FIFO of oneshots per pool, woken one per freed slot (all of
//! them when a connection opens or closes). They are bounded by the callers themselves
//! (HTTP admission per core, one NodeProcessor per queue) and each by
//! `pool-wait-timeout-ms`; nothing queues requests on a caller's behalf.
//!
//! **Invariant:** one `ShardWriter` per core, used only on that core (`Rc` inside).

use crate::config::{ClusterConfig, Peer};
use crate::net::conn::{decode_reply, ConnError, FramedConn};
use crate::net::pipeline::{ConnEvents, PipelinedConn};
use crate::net::wire::{
    self, DecodeMessage, EncodeMessage, WriteShardRef, WriteShardResponse, WriteShardStatus,
};
use crate::placement::{self, NodeId};
use crate::tsdb::shard::ShardMeta;
use bytes::Bytes;
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Why a remote shard write failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ShardWriterError {
    #[error("node {node} is not in the cluster configuration")]
    UnknownNode { node: NodeId },
    #[error("timed out waiting for free connection to node {node} core {core}")]
    PoolTimeout { node: NodeId, core: usize },
    #[error("no answer within {after:?} (node {node})")]
    Timeout { node: NodeId, after: Duration },
    /// A request and a ping both went unanswered for `after` on a silent connection.
    #[error("node {node} answers neither requests nor pings within {after:?}: treated as hung")]
    Hung { node: NodeId, after: Duration },
    #[error("{source}")]
    Conn { node: NodeId, source: ConnError },
    /// Several dials in a row failed; no new attempt before the back-off ends (a Ping,
    /// which hinted handoff uses to notice a node's return, always dials).
    #[error(
        "node {node} core {core} is unreachable ({last}); next connection attempt in {retry_in:?}"
    )]
    Backoff {
        node: NodeId,
        core: usize,
        retry_in: Duration,
        last: String,
    },
}

impl ShardWriterError {
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ShardWriterError::Timeout { .. }
                | ShardWriterError::Hung { .. }
                | ShardWriterError::PoolTimeout { .. }
                | ShardWriterError::Conn {
                    source: ConnError::Timeout { .. },
                    ..
                }
        )
    }
}

/// A shard batch for a remote owner: the lines are slices of the request body.
#[derive(Debug, Clone)]
pub struct RemoteBatch {
    pub shard: ShardMeta,
    /// The owner's partition of these lines, by its core count when they were split:
    /// the batch goes to its core `partition % cores` (the owner re-routes what its own
    /// partitioning puts elsewhere).
    pub partition: u32,
    pub precision: u8,
    pub default_time_ns: i64,
    pub lines: Vec<Bytes>,
}

use crate::metrics::Latency;
pub use crate::metrics::ShardWriterStats;

/// Connections to one core of one peer.
struct Pool {
    node: NodeId,
    core: usize,
    address: SocketAddr,
    conns: RefCell<Vec<Rc<PipelinedConn>>>,
    /// Dials under way; they count against `pool-max-connections`.
    dialing: Cell<usize>,
    /// Callers waiting for a slot, by ticket (arrival order), oldest first.
    waiters: RefCell<VecDeque<(u64, oneshot::Sender<()>)>>,
    next_ticket: Cell<u64>,
    stats: Rc<Cell<ShardWriterStats>>,
    /// Reconnect back-off: after `DIAL_FAILURES_BEFORE_BACKOFF` failed dials in a row,
    /// no new dial before `retry_at`; the wait doubles from `DIAL_BACKOFF_MIN` to
    /// `DIAL_BACKOFF_MAX`, and a successful dial resets it all.
    failed_dials: Cell<u32>,
    retry_at: Cell<Option<Instant>>,
    backoff: Cell<Duration>,
    last_dial_error: RefCell<String>,
    /// Set when a request found the peer hung (no answer, no pong within
    /// `dial-timeout-ms`); cleared by the next answer. Queries try such a peer last.
    hung_since: Cell<Option<Instant>>,
    /// Per shard with requests in flight: the connection they share and how many.
    /// Bounded by the requests in flight (an entry leaves with its last request).
    lanes: RefCell<HashMap<u64, (Rc<PipelinedConn>, usize)>>,
    /// Picks that found their shard's lane full since the last freed slot.
    lane_waiters: Cell<usize>,
    /// Callers woken that have not picked again yet. A newcomer queues behind them as
    /// behind waiters: after a wake-all the waiter list is empty until they run, and a
    /// newcomer taking the slot first would send out of arrival order.
    woken: Cell<usize>,
}

pub use crate::limits::DIAL_FAILURES_BEFORE_BACKOFF;
/// First and largest wait between dials once backing off.
pub const DIAL_BACKOFF_MIN: Duration = Duration::from_millis(crate::limits::DIAL_BACKOFF_MIN_MS);
pub const DIAL_BACKOFF_MAX: Duration = Duration::from_millis(crate::limits::DIAL_BACKOFF_MAX_MS);

/// How long a peer found hung stays suspect (see the limit).
pub const SUSPECT_FOR: Duration = Duration::from_millis(crate::limits::SUSPECT_FOR_MS);

/// Where a request goes.
enum Pick {
    Send(Rc<PipelinedConn>),
    Dial,
    Wait,
}

impl Pool {
    fn count(&self, f: impl FnOnce(&mut ShardWriterStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    fn pick(&self, max_connections: usize, shard: Option<u64>) -> Pick {
        if let Some(lane) = shard.and_then(|id| self.lane(id)) {
            if lane.has_room() {
                return Pick::Send(lane);
            }
            // Woken by any freed slot (see `slot_freed`), not only by its turn.
            self.lane_waiters.set(self.lane_waiters.get() + 1);
            return Pick::Wait;
        }
        let mut conns = self.conns.borrow_mut();
        conns.retain(|c| !c.is_failed());
        if let Some(idle) = conns.iter().find(|c| c.in_flight() == 0) {
            return Pick::Send(idle.clone());
        }
        if conns.len() + self.dialing.get() < max_connections {
            return Pick::Dial;
        }
        match conns
            .iter()
            .filter(|c| c.has_room())
            .min_by_key(|c| c.in_flight())
        {
            Some(c) => Pick::Send(c.clone()),
            None => Pick::Wait,
        }
    }

    /// The live connection `shard`'s requests in flight are on, if any.
    fn lane(&self, shard: u64) -> Option<Rc<PipelinedConn>> {
        let lanes = self.lanes.borrow();
        let (conn, _) = lanes.get(&shard)?;
        (!conn.is_failed()).then(|| conn.clone())
    }

    /// Puts one request of `shard` in flight on `conn` (its lane from now on, if it had
    /// none or its old one failed). Call it with no await since the pick.
    fn enter_lane(&self, shard: u64, conn: &Rc<PipelinedConn>) {
        let mut lanes = self.lanes.borrow_mut();
        let entry = lanes.entry(shard).or_insert_with(|| (conn.clone(), 0));
        if !Rc::ptr_eq(&entry.0, conn) {
            debug_assert!(entry.0.is_failed(), "a shard's live lane is always picked");
            *entry = (conn.clone(), 0);
        }
        entry.1 += 1;
    }

    fn leave_lane(&self, shard: u64, conn: &Rc<PipelinedConn>) {
        let mut lanes = self.lanes.borrow_mut();
        if let Some(entry) = lanes.get_mut(&shard).filter(|e| Rc::ptr_eq(&e.0, conn)) {
            entry.1 -= 1;
            if entry.1 == 0 {
                lanes.remove(&shard);
            }
        }
    }

    /// A caller's place in the queue of waiters, taken when it first waits.
    fn ticket(&self) -> u64 {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        ticket
    }

    /// Queues a caller by its ticket: a woken caller that found no slot after all (a
    /// caller already running took it) keeps its place.
    fn wait_for_slot(&self, ticket: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.borrow_mut();
        let at = waiters.partition_point(|(t, _)| *t < ticket);
        waiters.insert(at, (ticket, tx));
        rx
    }

    fn has_waiters(&self) -> bool {
        self.waiters
            .borrow()
            .iter()
            .any(|(_, tx)| !tx.is_canceled())
    }

    /// Wakes the oldest caller still waiting.
    fn wake_one(&self) {
        let mut waiters = self.waiters.borrow_mut();
        while let Some((_, tx)) = waiters.pop_front() {
            if tx.send(()).is_ok() {
                self.woken.set(self.woken.get() + 1);
                return;
            }
        }
    }

    fn wake_all(&self) {
        for (_, tx) in self.waiters.borrow_mut().drain(..) {
            if tx.send(()).is_ok() {
                self.woken.set(self.woken.get() + 1);
            }
        }
    }

    /// A woken caller picked again (or gave up): newcomers no longer queue behind it.
    fn woken_done(&self) {
        self.woken.set(self.woken.get().saturating_sub(1));
    }
}

impl ConnEvents for Pool {
    fn slot_freed(&self) {
        // A caller waiting for its shard's lane cannot take a slot freed on another
        // connection, so with such callers waiting every waiter looks again.
        if self.lane_waiters.get() > 0 {
            self.lane_waiters.set(0);
            self.wake_all();
        } else {
            self.wake_one();
        }
    }

    fn closed(&self, error: &ConnError, failed_requests: usize) {
        self.count(|s| s.connections_failed += 1);
        let (node, core) = (self.node, self.core);
        if failed_requests > 0 {
            tracing::warn!(node, core, failed_requests, %error, "cluster connection closed");
        } else {
            tracing::info!(node, core, %error, "idle cluster connection closed");
        }
        self.wake_all();
    }

    fn late_reply(&self) {
        self.count(|s| s.late_replies += 1);
    }
}

/// Every peer's core count as its last handshake said, shared by the node's cores (any
/// core's dial updates it), so the core that splits a write knows every owner's
/// partitions. 0 until known. Fixed set of peers; relaxed atomics (a stale count only
/// costs the peer a re-route).
#[derive(Debug, Default)]
pub struct PeerCores(HashMap<NodeId, std::sync::atomic::AtomicU16>);

impl PeerCores {
    pub fn new(peers: impl IntoIterator<Item = NodeId>) -> PeerCores {
        PeerCores(peers.into_iter().map(|n| (n, Default::default())).collect())
    }

    pub fn get(&self, node: NodeId) -> Option<u16> {
        let n = self
            .0
            .get(&node)?
            .load(std::sync::atomic::Ordering::Relaxed);
        (n > 0).then_some(n)
    }

    fn set(&self, node: NodeId, cores: u16) {
        if let Some(slot) = self.0.get(&node) {
            slot.store(cores.max(1), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// This core's connections to every peer.
pub struct ShardWriter {
    node_id: NodeId,
    cores: u16,
    secret: Rc<Vec<u8>>,
    config: ClusterConfig,
    peers: HashMap<NodeId, SocketAddr>,
    peer_cores: std::sync::Arc<PeerCores>,
    pools: RefCell<HashMap<(NodeId, usize), Rc<Pool>>>,
    next_request_id: Cell<u64>,
    stats: Rc<Cell<ShardWriterStats>>,
    /// Round trip of answered remote requests, µs (1 µs .. 60 s, 3 significant digits).
    rtt: RefCell<Latency>,
    /// With `[cluster] tls-enabled`: connections are mutual TLS.
    tls: Option<std::sync::Arc<crate::net::tls::ClusterTls>>,
}

async fn with_timeout<T>(after: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(after).await;
        None
    })
    .await
}

/// Marks a request abandoned on its connection if the caller stops waiting for any
/// reason (its timeout, or its future being dropped).
struct AbandonOnDrop<'a> {
    conn: &'a PipelinedConn,
    request_id: u64,
    armed: bool,
}

/// A dial under way, counted against `pool-max-connections` while it lasts.
struct Dialing<'a>(&'a Pool);

impl<'a> Dialing<'a> {
    fn enter(pool: &'a Pool) -> Dialing<'a> {
        pool.dialing.set(pool.dialing.get() + 1);
        Dialing(pool)
    }
}

impl Drop for Dialing<'_> {
    fn drop(&mut self) {
        self.0.dialing.set(self.0.dialing.get() - 1);
        // A dial given up mid-way frees its place: waiters may dial in turn.
        self.0.wake_all();
    }
}

/// A caller's wait for a slot. A wake delivered but never taken (the caller's future
/// dropped first) still counts as done, so newcomers do not queue behind a ghost.
struct SlotWait<'a> {
    pool: &'a Pool,
    rx: oneshot::Receiver<()>,
}

impl Drop for SlotWait<'_> {
    fn drop(&mut self) {
        if let Ok(Some(())) = self.rx.try_recv() {
            self.pool.woken_done();
        }
    }
}

/// One request of a shard in flight on its lane, from its send until its answer, its
/// timeout or its caller giving up.
struct LaneGuard {
    pool: Rc<Pool>,
    shard: u64,
    conn: Rc<PipelinedConn>,
}

impl LaneGuard {
    fn enter(pool: &Rc<Pool>, shard: u64, conn: &Rc<PipelinedConn>) -> LaneGuard {
        pool.enter_lane(shard, conn);
        LaneGuard {
            pool: pool.clone(),
            shard,
            conn: conn.clone(),
        }
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        self.pool.leave_lane(self.shard, &self.conn);
    }
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.abandon(self.request_id);
        }
    }
}

impl ShardWriter {
    pub fn new(
        node_id: NodeId,
        cores: usize,
        secret: Vec<u8>,
        config: ClusterConfig,
        peers: &[Peer],
    ) -> ShardWriter {
        ShardWriter {
            node_id,
            cores: cores as u16,
            secret: Rc::new(secret),
            config,
            peers: peers.iter().map(|p| (p.node_id, p.address)).collect(),
            peer_cores: std::sync::Arc::new(PeerCores::new(peers.iter().map(|p| p.node_id))),
            pools: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(1),
            stats: Rc::new(Cell::new(ShardWriterStats::default())),
            rtt: RefCell::new(Latency::default()),
            tls: None,
        }
    }

    /// Dials peers over mutual TLS.
    pub fn with_tls(
        mut self,
        tls: Option<std::sync::Arc<crate::net::tls::ClusterTls>>,
    ) -> ShardWriter {
        self.tls = tls;
        self
    }

    /// Shares `peer_cores` with the node's other cores' writers (instead of this
    /// writer's own).
    pub fn with_peer_cores(mut self, peer_cores: std::sync::Arc<PeerCores>) -> ShardWriter {
        self.peer_cores = peer_cores;
        self
    }

    /// `node`'s core count, once a handshake with it said it.
    pub fn peer_cores(&self, node: NodeId) -> Option<u16> {
        self.peer_cores.get(node)
    }

    pub fn stats(&self) -> ShardWriterStats {
        self.stats.get()
    }

    /// Requests in flight on this core's connections, abandoned ones included.
    pub fn in_flight(&self) -> usize {
        self.pools
            .borrow()
            .values()
            .flat_map(|p| {
                p.conns
                    .borrow()
                    .iter()
                    .map(|c| c.in_flight())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// The round trips of this core's answered remote requests.
    pub fn rtt(&self) -> Latency {
        self.rtt.borrow().clone()
    }

    fn count(&self, f: impl FnOnce(&mut ShardWriterStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    fn pool(&self, node: NodeId, core: usize) -> Result<Rc<Pool>, ShardWriterError> {
        let base = *self
            .peers
            .get(&node)
            .ok_or(ShardWriterError::UnknownNode { node })?;
        let pool = self
            .pools
            .borrow_mut()
            .entry((node, core))
            .or_insert_with(|| {
                let mut address = base;
                address.set_port(base.port() + core as u16);
                Rc::new(Pool {
                    node,
                    core,
                    address,
                    conns: RefCell::new(Vec::new()),
                    dialing: Cell::new(0),
                    waiters: RefCell::new(VecDeque::new()),
                    next_ticket: Cell::new(0),
                    stats: self.stats.clone(),
                    failed_dials: Cell::new(0),
                    retry_at: Cell::new(None),
                    backoff: Cell::new(Duration::ZERO),
                    last_dial_error: RefCell::new(String::new()),
                    hung_since: Cell::new(None),
                    lanes: RefCell::new(HashMap::new()),
                    lane_waiters: Cell::new(0),
                    woken: Cell::new(0),
                })
            })
            .clone();
        Ok(pool)
    }

    async fn dial(&self, pool: &Rc<Pool>) -> Result<Rc<PipelinedConn>, ShardWriterError> {
        self.count(|s| s.dials += 1);
        let node = pool.node;
        let dial_timeout = Duration::from_millis(self.config.dial_timeout_ms);
        let conn_err = |source| ShardWriterError::Conn { node, source };
        let stream = glommio::net::TcpStream::connect_timeout(pool.address, dial_timeout)
            .await
            .map_err(|e| {
                conn_err(ConnError::Io {
                    peer: pool.address.to_string(),
                    message: e.to_string(),
                })
            })?;
        let timeout = ShardWriterError::Timeout {
            node,
            after: dial_timeout,
        };
        let stream: crate::net::conn::NetStream = match &self.tls {
            None => stream.into(),
            Some(tls) => {
                let name = tls.name_of(pool.address);
                let connected = with_timeout(dial_timeout, tls.connector.connect(name, stream))
                    .await
                    .ok_or(timeout.clone())?
                    .map_err(|e| {
                        conn_err(ConnError::Io {
                            peer: pool.address.to_string(),
                            message: format!("TLS handshake: {e}"),
                        })
                    })?;
                crate::net::conn::NetStream::TlsClient(Box::new(connected))
            }
        };
        let mut conn = FramedConn::new(stream, wire::HANDSHAKE_MAX_PAYLOAD_BYTES);
        let info = with_timeout(
            dial_timeout,
            conn.handshake_client(self.node_id, self.cores, &self.secret),
        )
        .await
        .ok_or(timeout)?
        .map_err(conn_err)?;
        conn.set_max_payload_bytes(self.config.max_frame_bytes.min(u32::MAX as u64) as u32);
        self.peer_cores.set(node, info.cores);
        let (reader, sink, flusher) = conn.into_split();
        let events: Weak<Pool> = Rc::downgrade(pool);
        Ok(PipelinedConn::start(
            reader,
            sink,
            flusher,
            self.config.max_inflight_requests_per_connection,
            events,
        ))
    }

    /// A connection of `pool` with a free slot: idle, newly dialled, or pipelined onto;
    /// waits at most `pool-wait-timeout-ms` when all are full.
    async fn connection(
        &self,
        pool: &Rc<Pool>,
        bypass_backoff: bool,
        shard: Option<u64>,
    ) -> Result<Rc<PipelinedConn>, ShardWriterError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.pool_wait_timeout_ms);
        let mut ticket = None;
        loop {
            // First come, first served: a new caller queues behind the waiting ones.
            let pick = if ticket.is_none() && (pool.has_waiters() || pool.woken.get() > 0) {
                Pick::Wait
            } else {
                pool.pick(self.config.pool_max_connections, shard)
            };
            match pick {
                Pick::Send(conn) => return Ok(conn),
                Pick::Dial => {
                    if let Some(at) = pool.retry_at.get() {
                        let now = Instant::now();
                        if at > now && !bypass_backoff {
                            return Err(ShardWriterError::Backoff {
                                node: pool.node,
                                core: pool.core,
                                retry_in: at - now,
                                last: pool.last_dial_error.borrow().clone(),
                            });
                        }
                    }
                    // Counted until the dial ends, also when the caller gives up
                    // mid-dial (its future dropped): a leaked count would fill the pool.
                    let dialing = Dialing::enter(pool);
                    let dialed = self.dial(pool).await;
                    drop(dialing);
                    match &dialed {
                        Ok(conn) => {
                            pool.conns.borrow_mut().push(conn.clone());
                            pool.failed_dials.set(0);
                            pool.retry_at.set(None);
                            pool.backoff.set(Duration::ZERO);
                        }
                        Err(e) => {
                            let failed = pool.failed_dials.get() + 1;
                            pool.failed_dials.set(failed);
                            *pool.last_dial_error.borrow_mut() = e.to_string();
                            if failed >= DIAL_FAILURES_BEFORE_BACKOFF {
                                let next = (pool.backoff.get() * 2)
                                    .clamp(DIAL_BACKOFF_MIN, DIAL_BACKOFF_MAX);
                                pool.backoff.set(next);
                                pool.retry_at.set(Some(Instant::now() + next));
                            }
                        }
                    }
                    // Waiters may now pipeline onto the new connection, or dial in turn.
                    pool.wake_all();
                    let dialed = dialed?;
                    // While we dialled, another request of this shard may have opened
                    // a lane elsewhere: pick again (the new connection is idle).
                    if shard.is_some_and(|id| pool.lane(id).is_some()) {
                        continue;
                    }
                    return Ok(dialed);
                }
                Pick::Wait => {
                    let ticket = *ticket.get_or_insert_with(|| {
                        self.count(|s| s.pool_waits += 1);
                        pool.ticket()
                    });
                    let mut slot = SlotWait {
                        pool,
                        rx: pool.wait_for_slot(ticket),
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    let woken = !left.is_zero() && with_timeout(left, &mut slot.rx).await.is_some();
                    if woken {
                        pool.woken_done();
                    }
                    drop(slot);
                    if !woken {
                        // A slot freed just as we gave up goes to the next waiter.
                        pool.waiters
                            .borrow_mut()
                            .retain(|(_, tx)| !tx.is_canceled());
                        pool.wake_one();
                        return Err(ShardWriterError::PoolTimeout {
                            node: pool.node,
                            core: pool.core,
                        });
                    }
                }
            }
        }
    }

    /// The core of `node` that holds `partition`, and a connection to it if finding out
    /// took one: with the peer's core count unknown, a connection to its core 0 is
    /// taken (its handshake says the count), and used if core 0 is the one, so the
    /// caller keeps its place in that pool's queue.
    async fn partition_core_of(
        &self,
        node: NodeId,
        shard_id: u64,
        partition: u32,
    ) -> Result<(usize, Option<Rc<PipelinedConn>>), ShardWriterError> {
        if let Some(cores) = self.peer_cores.get(node) {
            return Ok((placement::partition_core(partition, cores as usize), None));
        }
        let conn = self
            .connection(&self.pool(node, 0)?, false, Some(shard_id))
            .await?;
        let cores = self.peer_cores.get(node).unwrap_or(1);
        let core = placement::partition_core(partition, cores as usize);
        Ok((core, (core == 0).then_some(conn)))
    }

    /// Writes a batch to the core of `node` that holds its partition and returns its
    /// answer.
    pub async fn write(
        &self,
        node: NodeId,
        batch: &RemoteBatch,
    ) -> Result<WriteShardStatus, ShardWriterError> {
        let (core, conn) = self
            .partition_core_of(node, batch.shard.id, batch.partition)
            .await?;
        let message = WriteShardRef {
            shard_id: batch.shard.id,
            database: &batch.shard.database,
            retention_policy: &batch.shard.retention_policy,
            group_start_ns: batch.shard.start_ns,
            group_end_ns: batch.shard.end_ns,
            precision: batch.precision,
            default_time_ns: batch.default_time_ns,
            lines: &batch.lines,
        };
        let bytes = message.lines_len() as u64;
        self.count(|s| {
            s.requests += 1;
            s.bytes += bytes;
        });
        let response: WriteShardResponse = self
            .request_on(node, core, conn, Some(batch.shard.id), &message, false)
            .await?;
        Ok(response.status)
    }

    /// Sends one request to `node`'s core `core` on a pooled connection and waits for its
    /// answer, bounded by `write-timeout-ms`.
    pub async fn request<M: EncodeMessage, R: DecodeMessage>(
        &self,
        node: NodeId,
        core: usize,
        message: &M,
    ) -> Result<R, ShardWriterError> {
        self.request_on(node, core, None, None, message, false)
            .await
    }

    /// [`Self::request`] for a request whose answer may take long (a query's scan on a
    /// peer), and which must not wait on a hung peer: it dials even while the peer's
    /// pool backs off (a query tries every owner before it fails), and whenever its
    /// connection has been silent for half of `dial-timeout-ms` it pings the peer; a
    /// peer that answers neither the request nor the ping within the other half is
    /// hung, its connection is failed, and the request fails at once. So a hung peer
    /// costs the caller about `dial-timeout-ms`, not `write-timeout-ms`.
    pub async fn request_live<M: EncodeMessage, R: DecodeMessage>(
        &self,
        node: NodeId,
        core: usize,
        message: &M,
    ) -> Result<R, ShardWriterError> {
        self.request_on(node, core, None, None, message, true).await
    }

    /// Whether `node` looked unreachable lately from this core: dials to it are
    /// backing off, or a request found it hung and nothing answered since.
    pub fn is_suspect(&self, node: NodeId) -> bool {
        let pools = self.pools.borrow();
        pools.iter().any(|((n, _), pool)| {
            *n == node
                && (pool
                    .hung_since
                    .get()
                    .is_some_and(|t| t.elapsed() < SUSPECT_FOR)
                    || pool.retry_at.get().is_some_and(|at| at > Instant::now()))
        })
    }

    /// `request` on `conn` if given (a connection of that pool just handed out, with a
    /// free slot), else on one the pool hands out; a write of `shard` on its lane;
    /// `live`: see [`Self::request_live`].
    async fn request_on<M: EncodeMessage, R: DecodeMessage>(
        &self,
        node: NodeId,
        core: usize,
        conn: Option<Rc<PipelinedConn>>,
        shard: Option<u64>,
        message: &M,
        live: bool,
    ) -> Result<R, ShardWriterError> {
        let pool = self.pool(node, core)?;
        let conn = match conn {
            Some(conn) => conn,
            // Pings dial even during a back-off: they are how a node's return is noticed.
            None => {
                let ping = M::KIND == wire::FrameKind::Ping;
                self.connection(&pool, ping || live, shard).await?
            }
        };
        let _lane = shard.map(|id| LaneGuard::enter(&pool, id, &conn));
        let request_id = self.next_request_id.get();
        self.next_request_id.set(request_id + 1);
        let timeout = Duration::from_millis(self.config.write_timeout_ms);
        let started = Instant::now();
        let answer = match conn.send(request_id, message) {
            Ok(answer) => answer,
            Err(source) => {
                self.count(|s| s.failures += 1);
                return Err(ShardWriterError::Conn { node, source });
            }
        };
        let in_flight = conn.in_flight() as u64;
        if in_flight > self.stats.get().peak_in_flight {
            self.count(|s| s.peak_in_flight = in_flight);
        }
        let mut abandon = AbandonOnDrop {
            conn: &conn,
            request_id,
            armed: true,
        };
        let answer = if live {
            match self
                .await_live(&pool, &conn, started, timeout, answer)
                .await
            {
                Ok(answer) => answer,
                Err(after) => {
                    self.count(|s| s.failures += 1);
                    return Err(ShardWriterError::Hung { node, after });
                }
            }
        } else {
            with_timeout(timeout, answer).await
        };
        abandon.armed = answer.is_none();
        drop(abandon);
        if answer.is_some() {
            pool.hung_since.set(None);
        }
        let frame = match answer {
            Some(Ok(Ok(frame))) => frame,
            Some(Ok(Err(source))) => {
                self.count(|s| s.failures += 1);
                return Err(ShardWriterError::Conn { node, source });
            }
            Some(Err(oneshot::Canceled)) => {
                // Only a dropped connection drops a sender without answering.
                self.count(|s| s.failures += 1);
                let source = ConnError::Closed {
                    peer: conn.peer().to_string(),
                };
                return Err(ShardWriterError::Conn { node, source });
            }
            None => {
                self.count(|s| s.failures += 1);
                if conn.silent_since(started) {
                    conn.fail(ConnError::Timeout {
                        peer: conn.peer().to_string(),
                        after: timeout,
                    });
                }
                return Err(ShardWriterError::Timeout {
                    node,
                    after: timeout,
                });
            }
        };
        match decode_reply::<R>(conn.peer(), &frame) {
            Ok(response) => {
                self.rtt.borrow_mut().record(started.elapsed());
                Ok(response)
            }
            Err(source) => {
                self.count(|s| s.failures += 1);
                if !matches!(source, ConnError::Refused { .. }) {
                    // An answer of the wrong type or shape: the stream cannot be trusted.
                    conn.fail(source.clone());
                }
                Err(ShardWriterError::Conn { node, source })
            }
        }
    }

    /// Waits for `answer` at most `timeout` from `started`, checking that the peer is
    /// alive whenever `conn` has been silent for half of `dial-timeout-ms`: a ping must
    /// come back within the other half, else the peer is hung, `conn` fails (and every
    /// request on it) and this returns the time it waited. `Ok(None)`: `timeout` ran
    /// out with the peer alive.
    #[allow(clippy::type_complexity)]
    async fn await_live(
        &self,
        pool: &Rc<Pool>,
        conn: &Rc<PipelinedConn>,
        started: Instant,
        timeout: Duration,
        mut answer: oneshot::Receiver<crate::net::pipeline::Reply>,
    ) -> Result<Option<Result<crate::net::pipeline::Reply, oneshot::Canceled>>, Duration> {
        // Half the dial timeout to notice the silence, half for the pong: a hung peer
        // costs about one dial timeout, as a dial to it would.
        let probe =
            Duration::from_millis(self.config.dial_timeout_ms / 2).max(Duration::from_millis(1));
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            let quiet_from = Instant::now();
            if let Some(reply) = with_timeout(probe.min(left), &mut answer).await {
                return Ok(Some(reply));
            }
            if !conn.silent_since(quiet_from) {
                continue; // the peer sent something meanwhile: it is alive
            }
            enum Check<T> {
                Answer(T),
                Pong(bool),
            }
            let ping = Box::pin(self.ping_beside(pool, conn));
            let checked = with_timeout(
                probe,
                futures_lite::future::or(async { Check::Answer((&mut answer).await) }, async {
                    Check::Pong(ping.await)
                }),
            )
            .await;
            match checked {
                Some(Check::Answer(reply)) => return Ok(Some(reply)),
                Some(Check::Pong(true)) => continue,
                _ => {
                    tracing::warn!(
                        node = pool.node,
                        core = pool.core,
                        after_ms = probe.as_millis() as u64,
                        "peer answers neither a request nor a ping: treating it as hung"
                    );
                    pool.hung_since.set(Some(Instant::now()));
                    conn.fail(ConnError::Timeout {
                        peer: conn.peer().to_string(),
                        after: probe,
                    });
                    return Err(started.elapsed());
                }
            }
        }
    }

    /// Pings the peer of `conn`: on `conn` itself when it has a free slot (the peer
    /// serves a connection's requests side by side, so a busy peer still answers),
    /// else through the pool. Whether a pong came back.
    async fn ping_beside(&self, pool: &Rc<Pool>, conn: &Rc<PipelinedConn>) -> bool {
        if !conn.has_room() {
            let pong = self.request_on::<_, wire::Pong>(
                pool.node,
                pool.core,
                None,
                None,
                &wire::Ping,
                false,
            );
            return Box::pin(pong).await.is_ok();
        }
        let request_id = self.next_request_id.get();
        self.next_request_id.set(request_id + 1);
        let Ok(answer) = conn.send(request_id, &wire::Ping) else {
            return false;
        };
        let mut abandon = AbandonOnDrop {
            conn,
            request_id,
            armed: true,
        };
        let pong = match answer.await {
            Ok(Ok(frame)) => decode_reply::<wire::Pong>(conn.peer(), &frame).is_ok(),
            _ => false,
        };
        abandon.armed = false;
        pong
    }

    /// The peers this writer can reach.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::wire::{Ping, Pong};
    use bytes::BytesMut;
    use glommio::net::TcpListener;

    const SECRET: &[u8] = b"test-secret";

    fn executor() -> glommio::LocalExecutor {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .make()
            .unwrap()
    }

    /// How a fake peer treats each connection after the handshake.
    #[derive(Clone, Copy, Debug)]
    enum Fake {
        /// Answers every Ping after this many ms, concurrently.
        Answers { delay_ms: u64 },
        /// Reads this many Pings, then answers one with an id nobody asked for.
        UnknownIdAfter(usize),
        /// Reads this many Pings, then sends a frame whose crc does not match.
        BadCrcAfter(usize),
        /// Reads this many Pings, answers the last at once and the first 500 ms later.
        SlowFirstOf(usize),
        /// Reads everything, answers nothing.
        Silent,
    }

    fn pong() -> Pong {
        Pong {
            node_id: 9,
            cores: 1,
            meta_version: 0,
        }
    }

    async fn fake_peer(fake: Fake) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        glommio::spawn_local(async move {
            while let Ok(stream) = listener.accept().await {
                glommio::spawn_local(fake_connection(stream, fake)).detach();
            }
        })
        .detach();
        address
    }

    async fn fake_connection(stream: glommio::net::TcpStream, fake: Fake) {
        let mut conn = FramedConn::new(stream, wire::HANDSHAKE_MAX_PAYLOAD_BYTES);
        conn.handshake_server(9, 1, SECRET, 0, |_| true)
            .await
            .unwrap();
        let mut read = Vec::new();
        let wanted = match fake {
            Fake::Answers { delay_ms } => {
                let (mut reader, sink, flusher) = conn.into_split();
                glommio::spawn_local(flusher).detach();
                while let Ok(frame) = reader.read_frame().await {
                    let sink = sink.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
                        let _ = sink.send(frame.request_id, &pong());
                    })
                    .detach();
                }
                return;
            }
            Fake::UnknownIdAfter(n) | Fake::BadCrcAfter(n) | Fake::SlowFirstOf(n) => n,
            Fake::Silent => usize::MAX,
        };
        while read.len() < wanted {
            match conn.read_frame().await {
                Ok(frame) => read.push(frame.request_id),
                Err(_) => return,
            }
        }
        match fake {
            Fake::UnknownIdAfter(_) => {
                let _ = conn.send(1 << 40, &pong()).await;
            }
            Fake::BadCrcAfter(_) => {
                let mut frame = BytesMut::new();
                wire::encode_message(read[0], &pong(), &mut frame).unwrap();
                let last = frame.len() - 1;
                frame[last] ^= 0xff;
                let _ = conn.send_raw(&frame).await;
            }
            Fake::SlowFirstOf(_) => {
                let _ = conn.send(read[read.len() - 1], &pong()).await;
                glommio::timer::sleep(Duration::from_millis(500)).await;
                let _ = conn.send(read[0], &pong()).await;
            }
            _ => {}
        }
        // Keep the connection open until the client closes it.
        while conn.read_frame().await.is_ok() {}
    }

    fn writer(
        peers: &[(NodeId, SocketAddr)],
        tune: impl FnOnce(&mut ClusterConfig),
    ) -> Rc<ShardWriter> {
        let mut config = ClusterConfig {
            pool_max_connections: 1,
            write_timeout_ms: 5_000,
            dial_timeout_ms: 2_000,
            ..ClusterConfig::default()
        };
        tune(&mut config);
        let peers: Vec<Peer> = peers
            .iter()
            .map(|&(node_id, address)| Peer { node_id, address })
            .collect();
        Rc::new(ShardWriter::new(1, 1, SECRET.to_vec(), config, &peers))
    }

    /// Pings `node` `n` times at once; the results in spawn order.
    async fn pings(
        writer: &Rc<ShardWriter>,
        node: NodeId,
        n: usize,
    ) -> Vec<glommio::task::JoinHandle<Result<Pong, ShardWriterError>>> {
        (0..n)
            .map(|_| {
                let writer = writer.clone();
                glommio::spawn_local(async move { writer.request::<_, Pong>(node, 0, &Ping).await })
                    .detach()
            })
            .collect()
    }

    async fn results(
        handles: Vec<glommio::task::JoinHandle<Result<Pong, ShardWriterError>>>,
    ) -> Vec<Result<Pong, ShardWriterError>> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("task ran"));
        }
        out
    }

    #[test]
    fn repeated_failed_dials_back_off_except_for_pings() {
        executor().run(async {
            // A port nobody listens on.
            let closed = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            };
            let writer = writer(&[(4, closed)], |_| {});
            let sync = crate::cluster::meta_sync::MetaSync {
                meta_json: bytes::Bytes::from_static(b"{}"),
            };
            type Answer = crate::cluster::meta_sync::MetaSyncResponse;
            for n in 1..=DIAL_FAILURES_BEFORE_BACKOFF as u64 {
                let r = writer.request::<_, Answer>(4, 0, &sync).await;
                assert!(matches!(r, Err(ShardWriterError::Conn { .. })), "{r:?}");
                assert_eq!(writer.stats().dials, n);
            }
            // Now backing off: no dial, a typed error naming the wait and the cause.
            let dials = writer.stats().dials;
            match writer.request::<_, Answer>(4, 0, &sync).await {
                Err(e @ ShardWriterError::Backoff { node: 4, .. }) => {
                    assert!(e.to_string().contains("next connection attempt in"), "{e}")
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(writer.stats().dials, dials);
            // A ping dials anyway (hinted handoff notices a returning node with it).
            let ping = writer.request::<_, Pong>(4, 0, &Ping).await;
            assert!(
                matches!(ping, Err(ShardWriterError::Conn { .. })),
                "{ping:?}"
            );
            assert_eq!(writer.stats().dials, dials + 1);
            // After the back-off, requests dial again.
            glommio::timer::sleep(DIAL_BACKOFF_MIN * 4 + Duration::from_millis(50)).await;
            let r = writer.request::<_, Answer>(4, 0, &sync).await;
            assert!(matches!(r, Err(ShardWriterError::Conn { .. })), "{r:?}");
            assert_eq!(writer.stats().dials, dials + 2);
        });
    }

    #[test]
    fn many_requests_share_one_connection() {
        executor().run(async {
            let peer = fake_peer(Fake::Answers { delay_ms: 100 }).await;
            let writer = writer(&[(2, peer)], |_| {});
            let started = Instant::now();
            let handles = pings(&writer, 2, 32).await;
            for r in results(handles).await {
                r.unwrap();
            }
            // One at a time this would take 32 x 100 ms; 16 in flight take ~2 x 100 ms.
            assert!(
                started.elapsed() < Duration::from_millis(1_500),
                "{:?}",
                started.elapsed()
            );
            let stats = writer.stats();
            assert_eq!(stats.dials, 1);
            assert_eq!(stats.peak_in_flight, 16);
            assert!(stats.pool_waits >= 16, "{stats:?}");
            assert_eq!(stats.failures, 0);
            assert_eq!(writer.in_flight(), 0);
        });
    }

    #[test]
    fn with_every_slot_taken_a_caller_waits_at_most_pool_wait_timeout() {
        executor().run(async {
            let hung = fake_peer(Fake::Silent).await;
            let writer = writer(&[(3, hung)], |c| {
                c.max_inflight_requests_per_connection = 2;
                c.pool_wait_timeout_ms = 200;
            });
            let in_flight = pings(&writer, 3, 2).await;
            glommio::timer::sleep(Duration::from_millis(50)).await;
            let waits_before = writer.stats().pool_waits;
            let started = Instant::now();
            let third = writer.request::<_, Pong>(3, 0, &Ping).await;
            let waited = started.elapsed();
            assert!(
                matches!(
                    third,
                    Err(ShardWriterError::PoolTimeout { node: 3, core: 0 })
                ),
                "{third:?}"
            );
            assert!(
                waited >= Duration::from_millis(190) && waited < Duration::from_millis(1_000),
                "{waited:?}"
            );
            assert!(third.unwrap_err().is_timeout());
            assert_eq!(writer.stats().pool_waits, waits_before + 1);
            // The two in flight are still there, untouched by the third's timeout.
            assert_eq!(writer.in_flight(), 2);
            drop(in_flight);
        });
    }

    #[test]
    fn callers_waiting_for_a_slot_send_in_arrival_order() {
        executor().run(async {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let record = seen.clone();
            glommio::spawn_local(async move {
                let stream = listener.accept().await.unwrap();
                let mut conn = FramedConn::new(stream, wire::HANDSHAKE_MAX_PAYLOAD_BYTES);
                conn.handshake_server(9, 1, SECRET, 0, |_| true)
                    .await
                    .unwrap();
                conn.set_max_payload_bytes(1 << 20);
                let (mut reader, sink, flusher) = conn.into_split();
                glommio::spawn_local(flusher).detach();
                while let Ok(frame) = reader.read_frame().await {
                    let write: wire::WriteShard = frame.decode_message().unwrap();
                    record.borrow_mut().push(write.shard_id);
                    let sink = sink.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(Duration::from_millis(20)).await;
                        let status = WriteShardStatus::Ok { points_written: 0 };
                        let _ = sink.send(frame.request_id, &WriteShardResponse { status });
                    })
                    .detach();
                }
            })
            .detach();
            let writer = writer(&[(2, address)], |c| {
                c.max_inflight_requests_per_connection = 2
            });
            // Callers arrive every 3 ms while each slot turns over every 20 ms: most wait,
            // and newcomers keep arriving as slots free up.
            let tasks: Vec<_> = (0..30u64)
                .map(|i| {
                    let writer = writer.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(Duration::from_millis(3 * i)).await;
                        let batch = RemoteBatch {
                            shard: ShardMeta {
                                id: i,
                                database: "db".into(),
                                retention_policy: "rp".into(),
                                start_ns: 0,
                                end_ns: 1,
                            },
                            partition: 0,
                            precision: 0,
                            default_time_ns: 0,
                            lines: vec![Bytes::from_static(b"m v=1 1\n")],
                        };
                        writer.write(2, &batch).await
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            assert!(writer.stats().pool_waits > 10, "{:?}", writer.stats());
            assert_eq!(*seen.borrow(), (0..30).collect::<Vec<u64>>());
        });
    }

    /// A misbehaving peer 3 fails every request in flight on its connection with the
    /// same typed error, and nothing of peer 2's; the next request to 3 dials again.
    fn broken_stream_fails_only_its_connection(fake: Fake, check: fn(&ConnError) -> bool) {
        executor().run(async move {
            let good = fake_peer(Fake::Answers { delay_ms: 200 }).await;
            let bad = fake_peer(fake).await;
            let writer = writer(&[(2, good), (3, bad)], |_| {});
            let to_bad = pings(&writer, 3, 4).await;
            let to_good = pings(&writer, 2, 4).await;
            for r in results(to_bad).await {
                match r {
                    Err(ShardWriterError::Conn { node: 3, source }) => {
                        assert!(check(&source), "{source}")
                    }
                    other => panic!("{other:?}"),
                }
            }
            for r in results(to_good).await {
                r.unwrap();
            }
            let stats = writer.stats();
            assert_eq!(stats.connections_failed, 1);
            assert_eq!(stats.failures, 4);
            assert_eq!(stats.dials, 2);
            // The broken connection left the pool: the next request dials a new one.
            let _ = pings(&writer, 3, 1).await;
            glommio::timer::sleep(Duration::from_millis(50)).await;
            assert_eq!(writer.stats().dials, 3);
        });
    }

    #[test]
    fn an_answer_nobody_asked_for_closes_only_that_connection() {
        broken_stream_fails_only_its_connection(
            Fake::UnknownIdAfter(4),
            |e| matches!(e, ConnError::UnknownRequest { request_id, .. } if *request_id == 1 << 40),
        );
    }

    #[test]
    fn a_corrupt_frame_closes_only_that_connection() {
        broken_stream_fails_only_its_connection(Fake::BadCrcAfter(4), |e| {
            matches!(
                e,
                ConnError::Wire {
                    source: wire::WireError::BadCrc { .. },
                    ..
                }
            )
        });
    }

    #[test]
    fn a_stalled_connection_fails_all_its_requests_as_timeouts() {
        executor().run(async {
            let good = fake_peer(Fake::Answers { delay_ms: 10 }).await;
            let hung = fake_peer(Fake::Silent).await;
            let writer = writer(&[(2, good), (3, hung)], |c| c.write_timeout_ms = 300);
            let started = Instant::now();
            let to_hung = pings(&writer, 3, 5).await;
            let to_good = pings(&writer, 2, 5).await;
            for r in results(to_good).await {
                r.unwrap();
            }
            let hung_results = results(to_hung).await;
            assert!(
                started.elapsed() < Duration::from_millis(1_000),
                "{:?}",
                started.elapsed()
            );
            for r in &hung_results {
                let e = r.as_ref().unwrap_err();
                assert!(e.is_timeout(), "{e}");
            }
            let stats = writer.stats();
            assert_eq!(stats.connections_failed, 1);
            assert_eq!(stats.failures, 5);
        });
    }

    #[test]
    fn a_slow_answer_fails_only_its_own_request() {
        executor().run(async {
            let slow = fake_peer(Fake::SlowFirstOf(2)).await;
            let writer = writer(&[(3, slow)], |c| c.write_timeout_ms = 300);
            let results = results(pings(&writer, 3, 2).await).await;
            assert!(
                matches!(results[0], Err(ShardWriterError::Timeout { node: 3, .. })),
                "{:?}",
                results[0]
            );
            results[1].as_ref().unwrap();
            // The connection answered meanwhile, so it stays; the late answer is dropped.
            glommio::timer::sleep(Duration::from_millis(400)).await;
            let stats = writer.stats();
            assert_eq!(stats.connections_failed, 0);
            assert_eq!(stats.late_replies, 1);
            assert_eq!(writer.in_flight(), 0);
            assert_eq!(stats.dials, 1);
        });
    }
}
