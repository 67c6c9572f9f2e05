//! The cluster layer, named as InfluxDB named it.
//!
//! - `mesh`: messages between the cores of one node.
//! - `points_writer`: PointsWriter — maps points to shard groups, shards and owners,
//!   writes each shard batch to every owner at once and waits for the consistency level.
//! - `shard_writer`: ShardWriter — this core's pooled connections to other nodes' cores.
//! - `service`: the cluster service — each core's listener for other nodes.
//! - `conn`: a framed node-to-node connection and the handshake.
//! - `meta_sync`: replicated databases and retention policies (MetaSync).
//! - `wire`: the node-to-node frame format, handshake and message codecs (pure bytes).
//!
//! Hinted handoff (issue 4) is not here yet: a failed remote owner counts as a failed
//! ack.

pub mod conn;
pub mod mesh;
pub mod meta_sync;
pub mod points_writer;
pub mod service;
pub mod shard_writer;
pub mod wire;

use crate::config::Config;
use crate::placement::{Membership, NodeId};

/// What a core knows about the cluster it is part of.
pub struct ClusterState {
    pub node_id: NodeId,
    pub secret: Vec<u8>,
    pub shard_writer: shard_writer::ShardWriter,
}

/// The membership placement works over: this node and its configured peers.
pub fn membership(config: &Config) -> Membership {
    let mut nodes = vec![config.cluster.node_id];
    if let Ok(peers) = config.cluster.parsed_peers() {
        nodes.extend(peers.iter().map(|p| p.node_id));
    }
    Membership::new(nodes)
}
