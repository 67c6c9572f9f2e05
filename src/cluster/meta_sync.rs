//! Replicated meta: DDL made on any node reaches every node.
//!
//! State-based: a MetaSync carries the sender's whole meta (JSON; it is small), the
//! receiver merges it (per database, the higher lamport version wins — see
//! `meta::MetaData::merge`) and answers with its own, which the sender merges too. A
//! round runs at start-up, after every local DDL, and every `meta-sync-interval-ms`, so a
//! node that was down converges when it comes back. A merge that dropped a database or
//! a policy drops its shards on every core of this node.

use crate::meta::MetaData;
use crate::net::wire::{opaque_message, FrameKind};
use crate::node::CoreContext;
use bytes::Bytes;
use std::rc::Rc;
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

/// Merges a peer's meta here and drops the storage of whatever it dropped.
pub async fn apply_remote_meta(ctx: &Rc<CoreContext>, remote: &MetaData) -> Result<(), String> {
    let outcome = ctx.meta.merge(remote).map_err(|e| e.to_string())?;
    for (database, rp) in outcome.dropped {
        tracing::info!(
            database,
            rp = rp.as_deref().unwrap_or("*"),
            "dropped by a peer's DDL"
        );
        ctx.drop_shards_everywhere(&database, rp.as_deref())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One round with every peer: send ours, merge theirs. Returns the peers reached.
pub async fn sync_round(ctx: &Rc<CoreContext>) -> usize {
    let Some(cluster) = ctx.cluster.as_ref() else {
        return 0;
    };
    let message = MetaSync {
        meta_json: encode_meta(&ctx.meta.snapshot()),
    };
    let mut tasks = Vec::new();
    for peer in cluster.shard_writer.peer_ids() {
        let (ctx, message) = (ctx.clone(), message.clone());
        tasks.push(glommio::spawn_local(async move {
            let cluster = ctx.cluster.as_ref().expect("cluster");
            // Live: a write waiting on this round (its database unknown here) waits on
            // a hung peer for the dial timeout, not the write timeout.
            let answer: Result<MetaSyncResponse, _> =
                cluster.shard_writer.request_live(peer, 0, &message).await;
            match answer {
                Ok(reply) => match decode_meta(&reply.meta_json) {
                    Ok(meta) => apply_remote_meta(&ctx, &meta).await.is_ok(),
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

/// Core 0's periodic sync (first round at once).
pub async fn sync_loop(ctx: Rc<CoreContext>) {
    let period = Duration::from_millis(ctx.config.cluster.meta_sync_interval_ms);
    loop {
        sync_round(&ctx).await;
        let stop = futures_lite::future::or(
            async {
                glommio::timer::sleep(period).await;
                false
            },
            async {
                ctx.shutdown.wait().await;
                true
            },
        )
        .await;
        if stop {
            return;
        }
    }
}
