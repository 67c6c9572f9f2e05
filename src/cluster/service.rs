//! The cluster service: each core listens on `cluster port base + core` for other nodes,
//! checks their proof of the shared secret, and serves Ping and WriteShard.
//!
//! A connection that sends a malformed frame, a bad crc, an unknown version or a wrong
//! proof gets an `Error` frame (best effort) and is closed; it is counted and logged,
//! and nothing else is affected: every connection is its own task.

use crate::cluster::conn::{ConnError, FramedConn};
use crate::cluster::meta_sync::{self, MetaSync, MetaSyncResponse};
use crate::cluster::query::MapShard;
use crate::cluster::wire::{
    self, FrameKind, Pong, WireError, WriteShard, WriteShardResponse, WriteShardStatus,
};
use crate::lineproto;
use crate::node::{CoreContext, CoreStats};
use crate::placement;
use crate::tsdb::shard::ShardMeta;
use crate::tsdb::store::ShardBatch;
use glommio::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How long a new connection may take to prove the shared secret.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts node connections on this core until shutdown.
pub async fn accept_loop(ctx: Rc<CoreContext>, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            ctx.shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(serve_connection(ctx.clone(), stream)).detach();
            }
            Some(Err(e)) => {
                tracing::warn!(core = ctx.core, error = %e, "cluster accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(ctx: Rc<CoreContext>, stream: TcpStream) {
    let Some(cluster) = ctx.cluster.as_ref() else {
        return;
    };
    let mut conn = FramedConn::new(stream, wire::HANDSHAKE_MAX_PAYLOAD_BYTES);
    let handshake = futures_lite::future::or(
        async {
            Some(
                conn.handshake_server(
                    cluster.node_id,
                    ctx.cores as u16,
                    &cluster.secret,
                    ctx.meta.snapshot().version,
                )
                .await,
            )
        },
        async {
            glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
            None
        },
    )
    .await;
    let peer_node = match handshake {
        Some(Ok(node)) => node,
        Some(Err(e)) => {
            reject(&ctx, conn.peer(), &e);
            return;
        }
        None => {
            CoreStats::add(&ctx.stats.cluster_rejected_connections, 1);
            tracing::warn!(peer = conn.peer(), "cluster handshake timed out; closing");
            return;
        }
    };
    conn.set_max_payload_bytes(ctx.config.cluster.max_frame_bytes.min(u32::MAX as u64) as u32);
    tracing::debug!(
        peer = conn.peer(),
        node = peer_node,
        core = ctx.core,
        "cluster connection"
    );
    loop {
        let frame = match conn.read_frame().await {
            Ok(f) => f,
            Err(ConnError::Closed { .. }) => return,
            Err(e) => {
                if let ConnError::Wire { source, .. } = &e {
                    conn.send_error(source).await;
                }
                reject(&ctx, conn.peer(), &e);
                return;
            }
        };
        let sent = match frame.kind {
            FrameKind::Ping => {
                let pong = Pong {
                    node_id: cluster.node_id,
                    cores: ctx.cores as u16,
                    meta_version: ctx.meta.snapshot().version,
                };
                conn.send(frame.request_id, &pong).await
            }
            FrameKind::WriteShard => match frame.decode_message::<WriteShard>() {
                Ok(write) => {
                    let status = apply_remote_write(&ctx, write).await;
                    conn.send(frame.request_id, &WriteShardResponse { status })
                        .await
                }
                Err(e) => {
                    conn.send_error(&e).await;
                    reject(&ctx, conn.peer(), &e);
                    return;
                }
            },
            FrameKind::MetaSync => match frame.decode_message::<MetaSync>() {
                Ok(sync) => {
                    match meta_sync::decode_meta(&sync.meta_json) {
                        Ok(remote) => {
                            if let Err(e) = meta_sync::apply_remote_meta(&ctx, &remote).await {
                                tracing::warn!(peer = conn.peer(), error = %e, "meta sync merge failed");
                            }
                        }
                        Err(e) => tracing::warn!(peer = conn.peer(), error = %e, "meta sync"),
                    }
                    let reply = MetaSyncResponse {
                        meta_json: meta_sync::encode_meta(&ctx.meta.snapshot()),
                    };
                    conn.send(frame.request_id, &reply).await
                }
                Err(e) => {
                    conn.send_error(&e).await;
                    reject(&ctx, conn.peer(), &e);
                    return;
                }
            },
            FrameKind::MapShard => match frame.decode_message::<MapShard>() {
                Ok(request) => {
                    let reply = crate::cluster::query::serve_map(&ctx, &request).await;
                    conn.send(frame.request_id, &reply).await
                }
                Err(e) => {
                    conn.send_error(&e).await;
                    reject(&ctx, conn.peer(), &e);
                    return;
                }
            },
            other => {
                let e = WireError::UnexpectedFrame {
                    expected: FrameKind::WriteShard,
                    actual: other,
                };
                conn.send_error(&e).await;
                reject(&ctx, conn.peer(), &e);
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

fn reject(ctx: &CoreContext, peer: &str, error: &dyn std::fmt::Display) {
    CoreStats::add(&ctx.stats.cluster_rejected_connections, 1);
    tracing::warn!(peer, core = ctx.core, %error, "closing cluster connection");
}

/// Writes a batch received from another node to the local shard (on its owning core).
async fn apply_remote_write(ctx: &Rc<CoreContext>, write: WriteShard) -> WriteShardStatus {
    CoreStats::add(&ctx.stats.remote_writes_served, 1);
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
    let batch = ShardBatch {
        shard: ShardMeta {
            id: write.shard_id,
            database: write.database,
            retention_policy: write.retention_policy,
            start_ns: write.group_start_ns,
            end_ns: write.group_end_ns,
        },
        points: (0..parsed.points.len() as u32).collect(),
        body: Arc::new(parsed),
        precision,
        default_time_ns: write.default_time_ns,
    };
    let core = placement::owning_core(batch.shard.id, ctx.cores);
    match ctx.write_to_core(core, batch).await {
        Ok(Ok(outcome)) if outcome.written == 0 && !outcome.rejected.is_empty() => {
            WriteShardStatus::Permanent {
                message: outcome.rejected[0].clone(),
            }
        }
        Ok(Ok(outcome)) => WriteShardStatus::Ok {
            points_written: outcome.written as u32,
        },
        Ok(Err(e)) => WriteShardStatus::Retryable {
            message: e.to_string(),
        },
        Err(e) => WriteShardStatus::Retryable {
            message: e.to_string(),
        },
    }
}
