//! The cluster services, named as InfluxDB named them. Each is a per-core struct built
//! with its dependencies (by `node`, the composition root); they reach this node's
//! cores only through [`local::LocalNode`].
//!
//! - `points_writer`: PointsWriter — maps points to shard groups, shards and owners,
//!   writes each shard batch to every owner at once and waits for the consistency level.
//! - `shard_writer`: ShardWriter — this core's pooled connections to other nodes' cores.
//! - `shard_mapper`: the coordinator's ShardMapper (implements `query::ShardMapper`).
//! - `map_server`: the peer's side of MapShard (paged scans, held scans, cancels).
//! - `map_wire`: the MapShard protocol between the two.
//! - `service`: the cluster service — each core's listener for other nodes.
//! - `meta_sync`: replicated databases and retention policies (MetaSync).
//! - `executor`: the statement executor (a `/query` request's statements, in order).
//! - `local`: the [`local::LocalNode`] trait, this node's cores as the services see them.
//!
//! Hinted handoff, which queues what a remote owner could not take, is `crate::hh`; the
//! transport (frames, connections, pipelining, the core-to-core mesh) is `crate::net`.

pub mod admin;
pub mod cq;
pub mod executor;
pub mod local;
pub mod map_server;
pub mod map_wire;
pub mod meta_sync;
pub mod monitor;
pub mod points_writer;
pub mod service;
pub mod shard_mapper;
pub mod shard_writer;

use crate::config::Config;
use crate::placement::{Membership, NodeId};

/// The membership placement works over: this node and its configured peers.
pub fn membership(config: &Config) -> Membership {
    let mut nodes = vec![config.cluster.node_id];
    if let Ok(peers) = config.cluster.parsed_peers() {
        nodes.extend(peers.iter().map(|p| p.node_id));
    }
    Membership::new(nodes)
}

/// One shard of the cluster's placement, as `shardcore cluster show` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRow {
    pub id: u64,
    pub database: String,
    pub retention_policy: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub index: u32,
    pub owners: Vec<NodeId>,
}

/// Every shard of every group this node holds data for, with owners computed from the
/// configured membership and the policy's replication factor.
pub fn describe(config: &Config) -> Result<Vec<ShardRow>, String> {
    let meta = crate::meta::MetaStore::open(&config.data_dir, config.cluster.node_id)
        .map_err(|e| e.to_string())?
        .snapshot();
    let membership = membership(config);
    let mut groups = std::collections::BTreeSet::new();
    for found in crate::tsdb::layout::partitions_on_disk(&config.data_dir).unwrap_or_default() {
        let Ok(bytes) = std::fs::read(found.dir.join("shard.json")) else {
            continue;
        };
        if let Ok(m) = serde_json::from_slice::<crate::tsdb::shard::ShardMeta>(&bytes) {
            groups.insert((m.database, m.retention_policy, m.start_ns));
        }
    }
    let mut rows = Vec::new();
    for (db, rp, start) in groups {
        let Some(policy) = meta
            .database(&db)
            .and_then(|d| d.retention_policies.get(&rp))
        else {
            continue;
        };
        let group = crate::placement::place_group(
            &db,
            &rp,
            start,
            policy.shard_group_duration_ns,
            policy.replication,
            &membership,
        );
        for shard in group.shards {
            rows.push(ShardRow {
                id: shard.id,
                database: db.clone(),
                retention_policy: rp.clone(),
                start_ns: group.start_ns,
                end_ns: group.end_ns,
                index: shard.index,
                owners: shard.owners,
            });
        }
    }
    Ok(rows)
}
