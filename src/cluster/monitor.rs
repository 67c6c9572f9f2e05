//! Self-monitoring (InfluxDB's `monitor` service with `store-enabled`): core 0 of every
//! node writes the node's statistics — the groups of SHOW STATS, every core merged —
//! into `[monitor] store-database` (`_internal`), policy `monitor` (7 days, made with
//! the database when missing), every `store-interval-ms`, through the PointsWriter like
//! any write. Each group is a measurement, tagged with the machine's `hostname` and
//! this node's `nodeID` (several nodes on one machine must not share series), its
//! values the fields; all points of a round share the round's time.

use crate::base::shutdown::Shutdown;
use crate::cluster::local::LocalNode;
use crate::cluster::points_writer::{Consistency, PointsWriter};
use crate::config::MonitorConfig;
use crate::lineproto::{self, OwnedPoint, OwnedValue, Precision};
use crate::meta::{MetaStore, RetentionPolicySpec};
use crate::placement::NodeId;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The policy InfluxDB stores its statistics in.
pub const MONITOR_RP: &str = "monitor";
const MONITOR_RP_DURATION_NS: i64 = 7 * 24 * 3_600_000_000_000;

/// Core 0's statistics writer.
pub struct MonitorService {
    local: Rc<dyn LocalNode>,
    points_writer: Rc<PointsWriter>,
    meta: Arc<MetaStore>,
    config: MonitorConfig,
    /// The `hostname` tag of SHOW STATS (the HTTP address), kept as the groups' own tag.
    bind: String,
    hostname: String,
    node_id: NodeId,
    shutdown: Arc<Shutdown>,
}

impl MonitorService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        local: Rc<dyn LocalNode>,
        points_writer: Rc<PointsWriter>,
        meta: Arc<MetaStore>,
        config: MonitorConfig,
        bind: String,
        hostname: String,
        node_id: NodeId,
        shutdown: Arc<Shutdown>,
    ) -> MonitorService {
        MonitorService {
            local,
            points_writer,
            meta,
            config,
            bind,
            hostname,
            node_id,
            shutdown,
        }
    }

    /// Stores the statistics every `store-interval-ms` until shutdown.
    pub async fn run(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config.store_interval_ms);
        loop {
            if self.shutdown.sleep(interval).await {
                return;
            }
            if let Err(e) = self.store(crate::base::time::now_ns()).await {
                tracing::warn!(error = %e, "monitor: statistics not stored");
            }
        }
    }

    /// One round: the database and policy made if missing, then every group written.
    pub async fn store(&self, now: i64) -> Result<usize, String> {
        let db = self.config.store_database.as_str();
        let exists = self
            .meta
            .snapshot()
            .database(db)
            .is_some_and(|d| d.retention_policies.contains_key(MONITOR_RP));
        if !exists {
            let spec = RetentionPolicySpec {
                name: Some(MONITOR_RP.into()),
                duration_ns: Some(MONITOR_RP_DURATION_NS),
                replication: Some(1),
                shard_group_duration_ns: None,
            };
            let (meta, name) = (self.meta.clone(), db.to_string());
            glommio::executor()
                .spawn_blocking(move || match meta.snapshot().database(&name) {
                    None => meta.create_database(&name, Some(&spec)),
                    Some(_) => meta.create_retention_policy(&name, &spec, false),
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        let (snapshot, gauges) = self.local.metrics().await.map_err(|e| e.to_string())?;
        let groups = crate::metrics::stats_groups(&snapshot, &gauges, &self.bind);
        let mut body = Vec::new();
        let mut points = 0;
        for g in &groups {
            let mut tags: Vec<(Vec<u8>, Vec<u8>)> = g
                .tags
                .iter()
                .filter(|(k, _)| *k != "hostname")
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            tags.push((b"hostname".to_vec(), self.hostname.as_bytes().to_vec()));
            tags.push((b"nodeID".to_vec(), self.node_id.to_string().into_bytes()));
            tags.retain(|(_, v)| !v.is_empty());
            tags.sort();
            let fields: Vec<(Vec<u8>, OwnedValue)> = g
                .values
                .iter()
                .filter_map(|(k, v)| Some((k.as_bytes().to_vec(), field(v)?)))
                .collect();
            if fields.is_empty() {
                continue;
            }
            let point = OwnedPoint {
                measurement: g.name.as_bytes().to_vec(),
                tags,
                fields,
                timestamp: Some(now),
            };
            lineproto::encode(&point, &mut body);
            body.push(b'\n');
            points += 1;
        }
        if points == 0 {
            return Ok(0);
        }
        self.points_writer
            .write(
                db,
                Some(MONITOR_RP),
                Precision::Nanosecond,
                Consistency::One,
                bytes::Bytes::from(body),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(points)
    }
}

/// A statistic as a field: integers stay integers (InfluxDB writes its counters as
/// integer fields).
fn field(v: &serde_json::Value) -> Option<OwnedValue> {
    Some(match v {
        serde_json::Value::Bool(b) => OwnedValue::Boolean(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => OwnedValue::Integer(i),
            (None, Some(u), _) => OwnedValue::Integer(i64::try_from(u).unwrap_or(i64::MAX)),
            (None, None, Some(f)) if f.is_finite() => OwnedValue::Float(f),
            _ => return None,
        },
        serde_json::Value::String(s) => OwnedValue::String(s.as_bytes().to_vec()),
        _ => return None,
    })
}
