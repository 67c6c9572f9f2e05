//! The MapShard protocol between a coordinator's ShardMapper
//! ([`crate::cluster::shard_mapper`]) and a peer's map server
//! ([`crate::cluster::map_server`]): one frame kind each way, whose payload is the JSON
//! of [`MapRequest`] or [`MapResponse`].

use crate::net::wire::{opaque_message, FrameKind};
use crate::tsdb::engine::Value;
use crate::tsdb::read::cancel::ScanStop;
use crate::tsdb::read::scan::{ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use crate::tsdb::shard::{ColumnData, SeriesData};
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
        shards: Vec<WireShardScan>,
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

/// One shard's series that matched a scan, as a page carries them. Its own types,
/// apart from the storage's, so the engine's can change without changing the wire
/// (the JSON is the same as version 1's, which serialised the storage's types).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireShardScan {
    pub shard_id: u64,
    /// Start of the shard's group.
    pub start_ns: i64,
    pub series: Vec<WireSeries>,
}

/// One series of a scan answer: its canonical (escaped) key and its columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireSeries {
    pub key: String,
    pub columns: Vec<WireColumn>,
}

/// One field's values of a series, by time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireColumn {
    /// Field key, unescaped.
    pub field: String,
    pub times: Vec<i64>,
    pub values: Vec<WireValue>,
}

/// A value on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(Vec<u8>),
}

impl From<ShardScan> for WireShardScan {
    fn from(s: ShardScan) -> WireShardScan {
        WireShardScan {
            shard_id: s.shard_id,
            start_ns: s.start_ns,
            series: s.series.into_iter().map(WireSeries::from).collect(),
        }
    }
}

impl From<WireShardScan> for ShardScan {
    fn from(s: WireShardScan) -> ShardScan {
        ShardScan {
            shard_id: s.shard_id,
            start_ns: s.start_ns,
            series: s.series.into_iter().map(SeriesData::from).collect(),
        }
    }
}

impl From<SeriesData> for WireSeries {
    fn from(s: SeriesData) -> WireSeries {
        WireSeries {
            key: s.key,
            columns: s
                .columns
                .into_iter()
                .map(|c| WireColumn {
                    field: c.field,
                    times: c.times,
                    values: c.values.into_iter().map(WireValue::from).collect(),
                })
                .collect(),
        }
    }
}

impl From<WireSeries> for SeriesData {
    fn from(s: WireSeries) -> SeriesData {
        SeriesData {
            key: s.key,
            columns: s
                .columns
                .into_iter()
                .map(|c| ColumnData {
                    field: c.field,
                    times: c.times,
                    values: c.values.into_iter().map(Value::from).collect(),
                })
                .collect(),
        }
    }
}

impl From<Value> for WireValue {
    fn from(v: Value) -> WireValue {
        match v {
            Value::Float(x) => WireValue::Float(x),
            Value::Integer(x) => WireValue::Integer(x),
            Value::Unsigned(x) => WireValue::Unsigned(x),
            Value::Boolean(x) => WireValue::Boolean(x),
            Value::String(x) => WireValue::String(x),
        }
    }
}

impl From<WireValue> for Value {
    fn from(v: WireValue) -> Value {
        match v {
            WireValue::Float(x) => Value::Float(x),
            WireValue::Integer(x) => Value::Integer(x),
            WireValue::Unsigned(x) => Value::Unsigned(x),
            WireValue::Boolean(x) => Value::Boolean(x),
            WireValue::String(x) => Value::String(x),
        }
    }
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

    #[test]
    fn scan_pages_keep_version_1s_json_and_round_trip_to_the_storage_types() {
        let scan = ShardScan {
            shard_id: 7,
            start_ns: 10,
            series: vec![SeriesData {
                key: "cpu,host=a".into(),
                columns: vec![ColumnData {
                    field: "v".into(),
                    times: vec![1, 2],
                    values: vec![Value::Float(1.5), Value::String(b"x".to_vec())],
                }],
            }],
        };
        let wire = WireShardScan::from(scan.clone());
        let json = serde_json::to_string(&wire).unwrap();
        assert_eq!(
            json,
            r#"{"shard_id":7,"start_ns":10,"series":[{"key":"cpu,host=a","columns":[{"field":"v","times":[1,2],"values":[{"Float":1.5},{"String":[120]}]}]}]}"#
        );
        let back: WireShardScan = serde_json::from_str(&json).unwrap();
        assert_eq!(ShardScan::from(back), scan);
    }
}
