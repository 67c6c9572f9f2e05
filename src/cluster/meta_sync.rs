//! Replicated meta: DDL made on any node reaches every node.
//!
//! State-based: a MetaSync carries the sender's whole meta (JSON; it is small), the
//! receiver merges it (per database, the higher lamport version wins — see
//! `meta::MetaData::merge`) and answers with its own, which the sender merges too. A
//! round runs at start-up, after every local DDL, and every `meta-sync-interval-ms`, so a
//! node that was down converges when it comes back. A merge that dropped a database or
//! a policy drops its shards on every core of this node.

use crate::base::shutdown::Shutdown;
use crate::cluster::local::LocalNode;
use crate::cluster::shard_writer::ShardWriter;
use crate::meta::{MetaData, MetaStore};
use crate::net::wire::{opaque_message, FrameKind};
use bytes::Bytes;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A node's meta, sent to a peer.
#[derive(Clone, Debug)]
pub struct MetaSync {
    pub meta_json: Bytes,
}

/// The peer's meta, in answer.
#[derive(Clone, Debug)]
pub struct MetaSyncResponse {
    pub meta_json: Bytes,
}

opaque_message!(MetaSync, FrameKind::MetaSync, meta_json);
opaque_message!(MetaSyncResponse, FrameKind::MetaSyncResponse, meta_json);

pub fn encode_meta(meta: &MetaData) -> Bytes {
    Bytes::from(serde_json::to_vec(meta).expect("meta serialises"))
}

pub fn decode_meta(json: &[u8]) -> Result<MetaData, String> {
    serde_json::from_slice(json).map_err(|e| format!("bad meta in MetaSync: {e}"))
}

/// This core's side of meta sync (in a cluster): rounds with every peer, and the merge
/// of what a peer sends.
pub struct MetaSyncService {
    meta: Arc<MetaStore>,
    shard_writer: Rc<ShardWriter>,
    /// Drops the shards of what a merge dropped, on every core.
    local: Rc<dyn LocalNode>,
    /// `[cluster] meta-sync-interval-ms`.
    interval: Duration,
    shutdown: Arc<Shutdown>,
}

impl MetaSyncService {
    pub fn new(
        meta: Arc<MetaStore>,
        shard_writer: Rc<ShardWriter>,
        local: Rc<dyn LocalNode>,
        interval: Duration,
        shutdown: Arc<Shutdown>,
    ) -> MetaSyncService {
        MetaSyncService {
            meta,
            shard_writer,
            local,
            interval,
            shutdown,
        }
    }

    /// Merges a peer's meta here and drops the storage of whatever it dropped.
    pub async fn apply_remote(&self, remote: &MetaData) -> Result<(), String> {
        let outcome = self.meta.merge(remote).map_err(|e| e.to_string())?;
        for (database, rp) in outcome.dropped {
            tracing::info!(
                database,
                rp = rp.as_deref().unwrap_or("*"),
                "dropped by a peer's DDL"
            );
            self.local
                .drop_shards(&database, rp.as_deref())
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Answers a peer's MetaSync: merges its meta, answers with ours.
    pub async fn serve(&self, peer: &str, sync: MetaSync) -> MetaSyncResponse {
        match decode_meta(&sync.meta_json) {
            Ok(remote) => {
                if let Err(e) = self.apply_remote(&remote).await {
                    tracing::warn!(peer, error = %e, "meta sync merge failed");
                }
            }
            Err(e) => tracing::warn!(peer, error = %e, "meta sync"),
        }
        MetaSyncResponse {
            meta_json: encode_meta(&self.meta.snapshot()),
        }
    }

    /// One round with every peer: send ours, merge theirs. Returns the peers reached.
    pub async fn round(self: &Rc<Self>) -> usize {
        let message = MetaSync {
            meta_json: encode_meta(&self.meta.snapshot()),
        };
        let mut tasks = Vec::new();
        for peer in self.shard_writer.peer_ids() {
            let (sync, message) = (self.clone(), message.clone());
            tasks.push(glommio::spawn_local(async move {
                // Live: a write waiting on this round (its database unknown here) waits
                // on a hung peer for the dial timeout, not the write timeout.
                let answer: Result<MetaSyncResponse, _> =
                    sync.shard_writer.request_live(peer, 0, &message).await;
                match answer {
                    Ok(reply) => match decode_meta(&reply.meta_json) {
                        Ok(meta) => sync.apply_remote(&meta).await.is_ok(),
                        Err(e) => {
                            tracing::warn!(peer, error = %e, "meta sync");
                            false
                        }
                    },
                    Err(e) => {
                        tracing::debug!(peer, error = %e, "meta sync: peer not reached");
                        false
                    }
                }
            }));
        }
        let mut reached = 0;
        for t in tasks {
            reached += t.await as usize;
        }
        reached
    }

    /// Starts a round in the background (after a local DDL: the periodic rounds catch
    /// up with the peers it does not reach).
    pub fn push(self: &Rc<Self>) {
        let sync = self.clone();
        glommio::spawn_local(async move {
            sync.round().await;
        })
        .detach();
    }

    /// Core 0's periodic sync (first round at once), until shutdown.
    pub async fn run(self: Rc<Self>) {
        loop {
            self.round().await;
            if self.shutdown.sleep(self.interval).await {
                return;
            }
        }
    }
}
