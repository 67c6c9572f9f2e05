//! Messages between the cores of one node, and the per-core handle that sends them.
//!
//! Requests carry their own reply channel (`futures` oneshot: glommio wakes a task on
//! another core through it). A write carries a [`ShardBatch`]: an `Arc` of the parsed
//! request body and point indices, never copied points.
//!
//! Bounds: each ordered pair of cores has a channel of `mesh-channel-capacity`
//! messages; a sender that finds it full waits (backpressure onto the HTTP request,
//! whose own count is bounded per core).

use crate::tsdb::shard::{ApplyOutcome, ShardError, ShardStats, StoredPoint};
use crate::tsdb::store::ShardBatch;
use futures_channel::oneshot;
use glommio::channels::shared_channel::ConnectedSender;

/// A read of stored points (the inspect API).
#[derive(Clone, Debug)]
pub struct ReadRequest {
    pub database: String,
    pub retention_policy: Option<String>,
    pub measurement: Option<Vec<u8>>,
    pub series_key: Option<Vec<u8>>,
    pub start_ns: i64,
    pub end_ns: i64,
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
        request: crate::query::scan::ScanRequest,
        reply: oneshot::Sender<
            Result<Vec<crate::query::scan::ShardScan>, crate::query::cancel::ScanStop>,
        >,
    },
    /// The schema of this core's shards of a database.
    Schema {
        request: crate::query::scan::SchemaRequest,
        reply: oneshot::Sender<Vec<crate::query::scan::ShardSchema>>,
    },
    /// DROP MEASUREMENT / DROP SERIES / DELETE on this core's shards.
    Delete {
        request: crate::query::delete::DeleteRequest,
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
    Connection(crate::http::HandoffStream),
    /// A client connection another core moved here: its queries read this core's data.
    MovedConnection(crate::http::MovedStream),
}

/// Errors of a mesh round trip.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    #[error("core {core} is not reachable (shutting down?)")]
    Unreachable { core: usize },
    #[error("core {core} dropped the request without an answer")]
    NoReply { core: usize },
}

/// This core's senders to every other core.
pub struct Mesh {
    core: usize,
    senders: Vec<Option<ConnectedSender<MeshRequest>>>,
}

impl Mesh {
    pub fn new(core: usize, senders: Vec<Option<ConnectedSender<MeshRequest>>>) -> Mesh {
        Mesh { core, senders }
    }

    pub fn core(&self) -> usize {
        self.core
    }

    pub fn cores(&self) -> usize {
        self.senders.len()
    }

    /// Sends a request to another core. Sending to ourselves is a bug.
    pub async fn send(&self, to: usize, request: MeshRequest) -> Result<(), MeshError> {
        debug_assert_ne!(to, self.core, "never send a mesh message to yourself");
        let sender = self
            .senders
            .get(to)
            .and_then(|s| s.as_ref())
            .ok_or(MeshError::Unreachable { core: to })?;
        sender
            .send(request)
            .await
            .map_err(|_| MeshError::Unreachable { core: to })
    }

    /// Sends a request built around a fresh reply channel and waits for the answer.
    pub async fn call<T>(
        &self,
        to: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> MeshRequest,
    ) -> Result<T, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.send(to, make(tx)).await?;
        rx.await.map_err(|_| MeshError::NoReply { core: to })
    }
}
