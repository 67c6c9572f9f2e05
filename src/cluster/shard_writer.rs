//! ShardWriter: this core's pooled connections to other nodes' cores, and the remote
//! half of a shard write.
//!
//! A pool per (peer node, peer core): at most `pool-max-connections` connections, idle
//! ones reused; a writer that finds all busy waits at most `pool-wait-timeout-ms`, then
//! fails with "timed out waiting for free connection". A connection that failed in any
//! way is dropped, never reused; the next write dials a fresh one. A peer's core count
//! comes from its handshake, so a batch goes straight to the peer's owning core
//! (`cluster port base + shard_id % peer cores`) and crosses no other core there.
//!
//! **Invariant:** one `ShardWriter` per core, used only on that core (`Rc` inside).

use crate::cluster::conn::{ConnError, FramedConn};
use crate::cluster::wire::{
    self, DecodeMessage, EncodeMessage, WriteShardRef, WriteShardResponse, WriteShardStatus,
};
use crate::config::{ClusterConfig, Peer};
use crate::placement::{self, NodeId};
use crate::tsdb::shard::ShardMeta;
use bytes::Bytes;
use glommio::sync::Semaphore;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

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
    #[error("{source}")]
    Conn { node: NodeId, source: ConnError },
}

impl ShardWriterError {
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ShardWriterError::Timeout { .. }
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
    pub precision: u8,
    pub default_time_ns: i64,
    pub lines: Vec<Bytes>,
}

struct Pool {
    address: SocketAddr,
    idle: RefCell<Vec<FramedConn>>,
    permits: Rc<Semaphore>,
}

/// Counters of remote writes on this core.
#[derive(Default, Debug, Clone, Copy)]
pub struct ShardWriterStats {
    pub requests: u64,
    pub bytes: u64,
    pub failures: u64,
    pub pool_waits: u64,
    pub dials: u64,
}

/// This core's connections to every peer.
pub struct ShardWriter {
    node_id: NodeId,
    cores: u16,
    secret: Rc<Vec<u8>>,
    config: ClusterConfig,
    peers: HashMap<NodeId, SocketAddr>,
    peer_cores: RefCell<HashMap<NodeId, u16>>,
    pools: RefCell<HashMap<(NodeId, usize), Rc<Pool>>>,
    next_request_id: Cell<u64>,
    stats: Cell<ShardWriterStats>,
    /// Round trip of answered remote requests, µs (1 µs .. 60 s, 3 significant digits).
    rtt: RefCell<hdrhistogram::Histogram<u64>>,
}

async fn with_timeout<T>(after: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(after).await;
        None
    })
    .await
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
            peer_cores: RefCell::new(HashMap::new()),
            pools: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(1),
            stats: Cell::new(ShardWriterStats::default()),
            rtt: RefCell::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("valid histogram bounds"),
            ),
        }
    }

    pub fn stats(&self) -> ShardWriterStats {
        self.stats.get()
    }

    /// Remote request round trips on this core: count, p50, p99, max (µs).
    pub fn rtt_summary(&self) -> serde_json::Value {
        let h = self.rtt.borrow();
        serde_json::json!({
            "count": h.len(),
            "p50": h.value_at_quantile(0.5),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
        })
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
                    address,
                    idle: RefCell::new(Vec::new()),
                    permits: Rc::new(Semaphore::new(self.config.pool_max_connections as u64)),
                })
            })
            .clone();
        Ok(pool)
    }

    async fn dial(&self, node: NodeId, pool: &Pool) -> Result<FramedConn, ShardWriterError> {
        self.count(|s| s.dials += 1);
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
        let mut conn = FramedConn::new(stream, wire::HANDSHAKE_MAX_PAYLOAD_BYTES);
        let info = with_timeout(
            dial_timeout,
            conn.handshake_client(self.node_id, self.cores, &self.secret),
        )
        .await
        .ok_or(ShardWriterError::Timeout {
            node,
            after: dial_timeout,
        })?
        .map_err(conn_err)?;
        conn.set_max_payload_bytes(self.config.max_frame_bytes.min(u32::MAX as u64) as u32);
        self.peer_cores.borrow_mut().insert(node, info.cores.max(1));
        Ok(conn)
    }

    /// The number of cores of `node`, asking it (a handshake with its core 0) if unknown.
    async fn cores_of(&self, node: NodeId) -> Result<u16, ShardWriterError> {
        if let Some(&c) = self.peer_cores.borrow().get(&node) {
            return Ok(c);
        }
        let pool = self.pool(node, 0)?;
        let conn = self.dial(node, &pool).await?;
        pool.idle.borrow_mut().push(conn);
        Ok(self.peer_cores.borrow()[&node])
    }

    /// Writes a batch to `node`'s owning core and returns its answer.
    pub async fn write(
        &self,
        node: NodeId,
        batch: &RemoteBatch,
    ) -> Result<WriteShardStatus, ShardWriterError> {
        let cores = self.cores_of(node).await?;
        let core = placement::owning_core(batch.shard.id, cores as usize);
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
        let response: WriteShardResponse = self.request(node, core, &message).await?;
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
        let pool = self.pool(node, core)?;
        let wait = Duration::from_millis(self.config.pool_wait_timeout_ms);
        if pool.permits.available() == 0 {
            self.count(|s| s.pool_waits += 1);
        }
        let permit = with_timeout(wait, pool.permits.acquire_static_permit(1))
            .await
            .and_then(|p| p.ok())
            .ok_or(ShardWriterError::PoolTimeout { node, core })?;
        let existing = pool.idle.borrow_mut().pop();
        let mut conn = match existing {
            Some(c) => c,
            None => self.dial(node, &pool).await?,
        };
        let request_id = self.next_request_id.get();
        self.next_request_id.set(request_id + 1);
        let timeout = Duration::from_millis(self.config.write_timeout_ms);
        let started = std::time::Instant::now();
        let answer = with_timeout(timeout, async {
            conn.send(request_id, message).await?;
            loop {
                let (id, response) = conn.read_message::<R>().await?;
                // Answers come in order on a connection; an id from an earlier request
                // cannot be pending (a connection that timed out is dropped), but skip
                // one defensively rather than mistake it for ours.
                if id == request_id {
                    return Ok(response);
                }
            }
        })
        .await;
        drop(permit);
        match answer {
            Some(Ok(response)) => {
                pool.idle.borrow_mut().push(conn);
                let micros = started.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                let _ = self.rtt.borrow_mut().record(micros);
                Ok(response)
            }
            Some(Err(source)) => {
                self.count(|s| s.failures += 1);
                Err(ShardWriterError::Conn { node, source })
            }
            None => {
                self.count(|s| s.failures += 1);
                Err(ShardWriterError::Timeout {
                    node,
                    after: timeout,
                })
            }
        }
    }

    /// The peers this writer can reach.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
