//! The query side of the cluster (ShardMapper): where a query's scans run.
//!
//! A scan or schema request covers every shard of the database in the time range.
//! This node's shards answer first, each on its owning core over the mesh. In a
//! cluster, every peer is then asked in turn through a MapShard request for the shards
//! *it* holds that no one has answered for yet (the request carries the ids already
//! covered), so each shard is read from exactly one owner. A peer pages a large scan
//! answer (`MAP_PAGE_BYTES` of series per MapShardResponse; the coordinator asks for
//! the next page), which bounds every frame and lets the coordinator pull at its pace.
//!
//! A peer that does not answer is skipped; afterwards the coordinator checks, through
//! placement, every shard of every group it saw: a shard whose owners all failed ends
//! the query with an error naming the shard, never a silently partial answer.

use crate::cluster::wire::{opaque_message, FrameKind};
use crate::node::CoreContext;
use crate::placement::{self, NodeId};
use crate::query::scan::{ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use crate::query::QueryError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Bytes of series (as JSON) one MapShardResponse page carries, at most (one series
/// larger than this still goes alone).
pub const MAP_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// A MapShard request: JSON of [`MapRequest`].
#[derive(Clone, Debug)]
pub struct MapShard {
    pub json: Bytes,
}

/// A MapShard answer: JSON of [`MapResponse`].
#[derive(Clone, Debug)]
pub struct MapShardResponse {
    pub json: Bytes,
}

opaque_message!(MapShard, FrameKind::MapShard, json);
opaque_message!(MapShardResponse, FrameKind::MapShardResponse, json);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MapRequest {
    /// Scan the shards not in `exclude`; answer series from `offset` on (a page).
    Scan {
        scan: ScanRequest,
        exclude: Vec<u64>,
        offset: usize,
    },
    Schema {
        schema: SchemaRequest,
        exclude: Vec<u64>,
    },
    Delete {
        delete: crate::query::delete::DeleteRequest,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MapResponse {
    Scan {
        shards: Vec<ShardScan>,
        /// Where the next page starts; `None` on the last page.
        next_offset: Option<usize>,
    },
    Schema {
        shards: Vec<ShardSchema>,
    },
    Deleted {
        values: u64,
    },
    Error {
        message: String,
    },
}

/// Answers a peer's MapShard on this node (every core, over the mesh).
pub async fn serve_map(ctx: &Rc<CoreContext>, request: &MapShard) -> MapShardResponse {
    let response = match serde_json::from_slice::<MapRequest>(&request.json) {
        Err(e) => MapResponse::Error {
            message: format!("bad MapShard request: {e}"),
        },
        Ok(MapRequest::Scan {
            scan,
            exclude,
            offset,
        }) => match ctx.scan_node(&scan).await {
            Err(e) => MapResponse::Error {
                message: e.to_string(),
            },
            Ok(mut shards) => {
                shards.retain(|s| !exclude.contains(&s.shard_id));
                shards.sort_by_key(|s| s.shard_id);
                page(shards, offset)
            }
        },
        Ok(MapRequest::Delete { delete }) => match ctx.delete_node(&delete).await {
            Ok(values) => MapResponse::Deleted { values },
            Err(message) => MapResponse::Error { message },
        },
        Ok(MapRequest::Schema { schema, exclude }) => match ctx.schema_node(&schema).await {
            Err(e) => MapResponse::Error {
                message: e.to_string(),
            },
            Ok(mut shards) => {
                shards.retain(|s| !exclude.contains(&s.shard_id));
                MapResponse::Schema { shards }
            }
        },
    };
    MapShardResponse {
        json: Bytes::from(serde_json::to_vec(&response).expect("map responses serialise")),
    }
}

/// The page of series starting at `offset` (series counted across shards in order).
fn page(shards: Vec<ShardScan>, offset: usize) -> MapResponse {
    let mut out: Vec<ShardScan> = Vec::new();
    let (mut index, mut bytes) = (0usize, 0usize);
    for shard in shards {
        let mut taken = Vec::new();
        for series in shard.series {
            if index < offset {
                index += 1;
                continue;
            }
            let size = serde_json::to_vec(&series).map(|v| v.len()).unwrap_or(0);
            if bytes > 0 && bytes + size > MAP_PAGE_BYTES {
                if !taken.is_empty() {
                    out.push(ShardScan {
                        shard_id: shard.shard_id,
                        start_ns: shard.start_ns,
                        series: taken,
                    });
                }
                return MapResponse::Scan {
                    shards: out,
                    next_offset: Some(index),
                };
            }
            bytes += size;
            index += 1;
            taken.push(series);
        }
        out.push(ShardScan {
            shard_id: shard.shard_id,
            start_ns: shard.start_ns,
            series: taken,
        });
    }
    MapResponse::Scan {
        shards: out,
        next_offset: None,
    }
}

/// One MapShard round trip to `node`.
async fn ask(
    ctx: &Rc<CoreContext>,
    node: NodeId,
    request: &MapRequest,
) -> Result<MapResponse, String> {
    let cluster = ctx.cluster.as_ref().expect("only called in a cluster");
    let message = MapShard {
        json: Bytes::from(serde_json::to_vec(request).expect("map requests serialise")),
    };
    let reply: MapShardResponse = cluster
        .shard_writer
        .request(node, 0, &message)
        .await
        .map_err(|e| e.to_string())?;
    match serde_json::from_slice::<MapResponse>(&reply.json) {
        Ok(MapResponse::Error { message }) => Err(message),
        Ok(other) => Ok(other),
        Err(e) => Err(format!("bad MapShard answer: {e}")),
    }
}

/// The other nodes, in the order this request asks them: rotated by one for every
/// request this core makes, so the replicas of a shard take turns answering (the first
/// peer that holds a shard maps it; the others are asked only for what is left).
fn peers(ctx: &CoreContext) -> Vec<NodeId> {
    thread_local! {
        static NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    let mut nodes: Vec<NodeId> = ctx
        .membership
        .nodes()
        .iter()
        .copied()
        .filter(|n| *n != ctx.node_id)
        .collect();
    if !nodes.is_empty() {
        let turn = NEXT.with(|c| {
            let v = c.get();
            c.set(v.wrapping_add(1));
            v
        });
        let len = nodes.len();
        nodes.rotate_left(turn % len);
    }
    nodes
}

/// Scans every shard the request covers: local ones here, the rest on one owner each.
pub async fn scan_cluster(
    ctx: &Rc<CoreContext>,
    r: &ScanRequest,
) -> Result<Vec<ShardScan>, QueryError> {
    let mut shards = ctx.scan_node(r).await?;
    if ctx.cluster.is_none() {
        return Ok(shards);
    }
    let mut seen: BTreeSet<u64> = shards.iter().map(|s| s.shard_id).collect();
    let mut failed = Vec::new();
    for node in peers(ctx) {
        let mut offset = 0;
        let mut from_peer: BTreeMap<u64, ShardScan> = BTreeMap::new();
        let result = loop {
            let request = MapRequest::Scan {
                scan: r.clone(),
                exclude: seen.iter().copied().collect(),
                offset,
            };
            match ask(ctx, node, &request).await {
                Ok(MapResponse::Scan {
                    shards: page,
                    next_offset,
                }) => {
                    for s in page {
                        match from_peer.get_mut(&s.shard_id) {
                            Some(existing) => existing.series.extend(s.series),
                            None => {
                                from_peer.insert(s.shard_id, s);
                            }
                        }
                    }
                    match next_offset {
                        Some(next) if next > offset => offset = next,
                        _ => break Ok(()),
                    }
                }
                Ok(_) => break Err("unexpected MapShard answer".to_string()),
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => {
                seen.extend(from_peer.keys().copied());
                shards.extend(from_peer.into_values());
            }
            Err(e) => {
                tracing::warn!(node, error = %e, "MapShard scan failed; trying the other owners");
                failed.push((node, e));
            }
        }
    }
    let groups: BTreeSet<i64> = shards.iter().map(|s| s.start_ns).collect();
    check_coverage(
        ctx,
        &r.database,
        &r.retention_policy,
        &groups,
        &seen,
        &failed,
    )?;
    Ok(shards)
}

/// The schema of every shard the request covers.
pub async fn schema_cluster(
    ctx: &Rc<CoreContext>,
    r: &SchemaRequest,
) -> Result<Vec<ShardSchema>, QueryError> {
    let mut shards = ctx.schema_node(r).await?;
    if ctx.cluster.is_none() {
        return Ok(shards);
    }
    let mut seen: BTreeSet<u64> = shards.iter().map(|s| s.shard_id).collect();
    let mut failed = Vec::new();
    for node in peers(ctx) {
        let request = MapRequest::Schema {
            schema: r.clone(),
            exclude: seen.iter().copied().collect(),
        };
        match ask(ctx, node, &request).await {
            Ok(MapResponse::Schema { shards: theirs }) => {
                seen.extend(theirs.iter().map(|s| s.shard_id));
                shards.extend(theirs);
            }
            Ok(_) => failed.push((node, "unexpected MapShard answer".to_string())),
            Err(e) => {
                tracing::warn!(node, error = %e, "MapShard schema failed; trying the other owners");
                failed.push((node, e));
            }
        }
    }
    let mut policies: BTreeSet<String> =
        shards.iter().map(|s| s.retention_policy.clone()).collect();
    if !failed.is_empty() {
        // A failed node may hold the only copies of a policy nobody else reported.
        if let Some(db) = ctx.meta.snapshot().database(&r.database) {
            policies.extend(db.retention_policies.keys().cloned());
        }
    }
    for rp in &policies {
        if r.retention_policy.as_ref().is_some_and(|want| want != rp) {
            continue;
        }
        let groups: BTreeSet<i64> = shards
            .iter()
            .filter(|s| &s.retention_policy == rp)
            .map(|s| s.start_ns)
            .collect();
        check_coverage(ctx, &r.database, rp, &groups, &seen, &failed)?;
    }
    Ok(shards)
}

/// Runs a delete on every node (every owner of every shard); a node that does not
/// answer fails the statement by name (its copy keeps the data).
pub async fn delete_cluster(
    ctx: &Rc<CoreContext>,
    r: &crate::query::delete::DeleteRequest,
) -> Result<u64, QueryError> {
    let mut removed = ctx.delete_node(r).await.map_err(QueryError::Statement)?;
    if ctx.cluster.is_none() {
        return Ok(removed);
    }
    let mut failed = Vec::new();
    for node in peers(ctx) {
        let request = MapRequest::Delete { delete: r.clone() };
        match ask(ctx, node, &request).await {
            Ok(MapResponse::Deleted { values }) => removed += values,
            Ok(_) => failed.push(format!("node {node}: unexpected answer")),
            Err(e) => failed.push(format!("node {node}: {e}")),
        }
    }
    if failed.is_empty() {
        Ok(removed)
    } else {
        Err(QueryError::msg(format!(
            "delete incomplete, run it again when these nodes are back: {}",
            failed.join("; ")
        )))
    }
}

/// Fails when a shard of a group we saw was not read and all its owners failed.
fn check_coverage(
    ctx: &CoreContext,
    database: &str,
    rp: &str,
    groups: &BTreeSet<i64>,
    seen: &BTreeSet<u64>,
    failed: &[(NodeId, String)],
) -> Result<(), QueryError> {
    if failed.is_empty() {
        return Ok(());
    }
    let snap = ctx.meta.snapshot();
    let Some(policy) = snap
        .database(database)
        .and_then(|d| d.retention_policies.get(rp))
    else {
        return Ok(());
    };
    for &start in groups {
        let group = placement::place_group(
            database,
            rp,
            start,
            policy.shard_group_duration_ns,
            policy.replication,
            &ctx.membership,
        );
        for shard in group.shards {
            if seen.contains(&shard.id) {
                continue;
            }
            if shard
                .owners
                .iter()
                .all(|o| failed.iter().any(|(n, _)| n == o))
            {
                let detail = failed
                    .iter()
                    .map(|(n, e)| format!("node {n}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(QueryError::ShardUnavailable {
                    shard: shard.id,
                    detail,
                });
            }
        }
    }
    // A group can only be known from a node that holds one of its shards. With as many
    // nodes failed as there are copies, a group whose every owner failed was never
    // reported: the answer could silently miss it, so the query fails instead.
    if failed.len() >= policy.replication as usize {
        let detail = failed
            .iter()
            .map(|(n, e)| format!("node {n}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(QueryError::msg(format!(
            "{} of the nodes holding {database}.{rp} did not answer and the policy keeps {} \
             cop{} of each shard, so the answer could be incomplete: {detail}",
            failed.len(),
            policy.replication,
            if policy.replication == 1 { "y" } else { "ies" }
        )));
    }
    Ok(())
}
