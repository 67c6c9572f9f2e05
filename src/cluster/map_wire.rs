//! The MapShard protocol between a coordinator's ShardMapper
//! ([`crate::cluster::shard_mapper`]) and a peer's map server
//! ([`crate::cluster::map_server`]): one frame kind each way, whose payload is the JSON
//! of [`MapRequest`] or [`MapResponse`].

use crate::net::wire::{opaque_message, FrameKind};
use crate::tsdb::read::cancel::ScanStop;
use crate::tsdb::read::scan::{ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

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
#[allow(clippy::large_enum_variant)] // built once per round trip, then serialised
pub enum MapRequest {
    /// Scan the shards not in `exclude`; answer series from `offset` on (a page). With
    /// `cursor`, the next page of that held scan (scanning again if it is gone).
    Scan {
        scan: ScanRequest,
        exclude: Vec<u64>,
        offset: usize,
        #[serde(default)]
        cursor: Option<u64>,
    },
    Schema {
        schema: SchemaRequest,
        exclude: Vec<u64>,
    },
    Delete {
        delete: crate::tsdb::read::delete::DeleteRequest,
    },
    /// Stop the scans of this query running here and drop its held scans.
    Cancel { query_id: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MapResponse {
    Scan {
        shards: Vec<ShardScan>,
        /// Where the next page starts; `None` on the last page.
        next_offset: Option<usize>,
        /// The held scan the next page comes from.
        #[serde(default)]
        cursor: Option<u64>,
    },
    Schema {
        shards: Vec<ShardSchema>,
    },
    Deleted {
        values: u64,
    },
    Cancelled {
        scans: usize,
        held: usize,
    },
    /// The scan stopped early: the query is over (deadline) or asks too much.
    Stopped {
        stop: ScanStop,
    },
    Error {
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::read::cancel::Deadline;

    #[test]
    fn scan_requests_keep_their_limits_across_the_wire_but_not_the_local_deadline() {
        let request = MapRequest::Scan {
            scan: ScanRequest {
                database: "db".into(),
                retention_policy: "autogen".into(),
                measurement: "m".into(),
                fields: None,
                start_ns: 0,
                end_ns: 10,
                shard_ids: None,
                tag_condition: None,
                per_series_limit: None,
                partial: None,
                max_points: 5,
                query_id: 42,
                budget_ms: Some(250),
                deadline: Deadline::after(None),
            },
            exclude: vec![1],
            offset: 3,
            cursor: Some(9),
        };
        let json = serde_json::to_vec(&request).unwrap();
        let MapRequest::Scan { scan, cursor, .. } = serde_json::from_slice(&json).unwrap() else {
            panic!()
        };
        assert_eq!(
            (scan.max_points, scan.query_id, scan.budget_ms),
            (5, 42, Some(250))
        );
        assert_eq!(cursor, Some(9));
        assert!(!scan.deadline.is_over());
        scan.deadline.cancel();
        assert!(
            !scan.deadline.is_over(),
            "a decoded request has no deadline of its own"
        );
        // An older peer's request (no cursor, no limits) still decodes.
        let old = br#"{"Scan":{"scan":{"database":"db","retention_policy":"autogen","measurement":"m","fields":null,"start_ns":0,"end_ns":1,"shard_ids":null},"exclude":[],"offset":0}}"#;
        assert!(serde_json::from_slice::<MapRequest>(old).is_ok());
    }
}
