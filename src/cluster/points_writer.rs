//! PointsWriter: parses a write request, maps its points to shard groups and shards
//! (through `placement`), and writes each shard batch to its owner.
//!
//! Today every owner is this node: a batch goes to the owning core, directly when that
//! is this core, else over the mesh. The consistency level is validated and carried;
//! with one owner every level is met by that owner's acknowledgement.
//!
//! **Invariant:** a write is acknowledged only after every batch is on disk on its
//! owning core (WAL fdatasync), so an acknowledged point survives a crash.

use crate::cluster::local::LocalNode;
use crate::cluster::shard_writer::RemoteBatch;
use crate::hh::node_processor::{HintedHandoff, RemoteOutcome};
use crate::lineproto::{self, LineError, ParsedBody, Precision, SeriesHashes};
use crate::meta::{MetaData, MetaStore};
use crate::metrics::CoreStats;
use crate::placement::{self, GroupPlacement, Membership, NodeId};
use crate::tsdb::shard::{ApplyOutcome, Partition, ShardMeta};
use crate::tsdb::store::ShardBatch;
use bytes::Bytes;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// Write consistency levels, as InfluxDB names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Any,
    One,
    Quorum,
    All,
}

impl Consistency {
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Any => "any",
            Consistency::One => "one",
            Consistency::Quorum => "quorum",
            Consistency::All => "all",
        }
    }

    /// Acknowledgements needed from `owners` owners (InfluxDB's rule: quorum = n/2+1).
    pub fn required_acks(self, owners: usize) -> usize {
        match self {
            Consistency::Any | Consistency::One => 1,
            Consistency::Quorum => owners / 2 + 1,
            Consistency::All => owners,
        }
        .min(owners)
        .max(1)
    }

    /// An empty value means the default, `one`; anything unknown is an error.
    pub fn parse(s: &str) -> Option<Consistency> {
        Some(match s {
            "" | "one" => Consistency::One,
            "any" => Consistency::Any,
            "quorum" => Consistency::Quorum,
            "all" => Consistency::All,
            _ => return None,
        })
    }
}

/// Errors that fail a whole write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("database not found: \"{0}\"")]
    DatabaseNotFound(String),
    #[error("retention policy not found: {0}")]
    RetentionPolicyNotFound(String),
    #[error("write failed: {0}")]
    Storage(String),
    /// The consistency level was not met and some owner timed out.
    #[error("timeout: consistency {level} needs {required} of {owners} owners, {achieved} acknowledged ({detail})")]
    Timeout {
        level: &'static str,
        required: usize,
        owners: usize,
        achieved: usize,
        detail: String,
    },
    /// The consistency level was not met.
    #[error("partial write: consistency {level} needs {required} of {owners} owners, {achieved} acknowledged ({detail})")]
    PartialWrite {
        level: &'static str,
        required: usize,
        owners: usize,
        achieved: usize,
        detail: String,
    },
}

/// What a write did. Parse errors and rejected points make it a partial write.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub points_parsed: usize,
    pub points_written: usize,
    pub parse_errors: Vec<LineError>,
    pub beyond_retention: usize,
    /// Reasons of points the shards rejected (field type conflicts).
    pub rejected: Vec<String>,
}

impl WriteOutcome {
    pub fn points_dropped(&self) -> usize {
        self.beyond_retention + self.rejected.len()
    }
}

/// The points of one request that belong to one shard.
#[derive(Debug)]
pub struct ShardPoints {
    pub shard: ShardMeta,
    pub owners: Vec<NodeId>,
    pub points: Vec<u32>,
    /// The partition key of each point ([`placement::partition_key`]), in step with
    /// `points`: each owner splits the batch by its own partition count.
    pub keys: Vec<u32>,
}

/// Points of one request grouped by shard, and those left out.
#[derive(Debug, Default)]
pub struct GroupedPoints {
    /// Per shard: its identity, its owners, and the indices of its points.
    pub batches: Vec<ShardPoints>,
    pub beyond_retention: usize,
    /// Points InfluxDB refuses outright (a `time` tag or field key), with the reason.
    pub invalid: Vec<String>,
}

/// `key == b"time"` as one integer compare (it runs for every tag and field).
#[inline]
fn is_time(key: &[u8]) -> bool {
    key.len() == 4
        && u32::from_ne_bytes([key[0], key[1], key[2], key[3]]) == u32::from_ne_bytes(*b"time")
}

/// InfluxDB refuses `time` as a tag or field key: it is the name of the time column.
fn invalid_key_reason(body: &ParsedBody, point: &lineproto::PointRef) -> Option<String> {
    let measurement = || {
        String::from_utf8_lossy(&lineproto::unescape(body.bytes(&point.measurement))).into_owned()
    };
    if body
        .point_tags(point)
        .iter()
        .any(|t| is_time(body.bytes(&t.key)))
    {
        return Some(format!(
            "invalid tag key: input tag \"time\" on measurement \"{}\" is invalid",
            measurement()
        ));
    }
    if body
        .point_fields(point)
        .iter()
        .any(|f| is_time(body.bytes(&f.key)))
    {
        return Some(format!(
            "invalid field name: input field \"time\" on measurement \"{}\" is invalid",
            measurement()
        ));
    }
    None
}

/// Groups parsed points into per-shard batches (points beyond retention, or with an
/// invalid key, are counted and left out). Pure: the placement of every point comes
/// from `placement`. `partition_keys`: fill each batch's `keys` (else all 0, for a
/// node where every shard is one partition and no peer takes writes: the series hash
/// is then computed only to choose among several shards).
pub fn group_by_shard(
    meta: &MetaData,
    database: &str,
    retention_policy: Option<&str>,
    body: &ParsedBody,
    membership: &Membership,
    now_ns: i64,
    partition_keys: bool,
) -> Result<GroupedPoints, WriteError> {
    let db = meta
        .database(database)
        .ok_or_else(|| WriteError::DatabaseNotFound(database.to_string()))?;
    let rp = db.retention_policy(retention_policy).ok_or_else(|| {
        WriteError::RetentionPolicyNotFound(
            retention_policy
                .unwrap_or(&db.default_retention_policy)
                .to_string(),
        )
    })?;
    let oldest = rp.oldest_kept_ns(now_ns);
    let sgd = rp.shard_group_duration_ns;
    let mut groups: HashMap<i64, usize> = HashMap::new();
    let mut out: Vec<ShardPoints> = Vec::new();
    let mut beyond = 0;
    let mut invalid = Vec::new();
    // Consecutive points usually share a group (and often a series): remember the last
    // group, and the last series' batch.
    let mut last_group: Option<(i64, usize)> = None; // (start, index into group list)
    let mut last_series: Option<(i64, usize, usize, u32)> = None; // (start, point, batch, key)
    let mut group_list: Vec<(GroupPlacement, Vec<Option<usize>>)> = Vec::new();
    let mut series_hashes = SeriesHashes::default();
    for (i, point) in body.points.iter().enumerate() {
        if oldest.is_some_and(|o| point.timestamp < o) {
            beyond += 1;
            continue;
        }
        if let Some(reason) = invalid_key_reason(body, point) {
            invalid.push(reason);
            continue;
        }
        let start = placement::shard_group_start(point.timestamp, sgd);
        if let Some((s, p, b, key)) = last_series {
            let prev = &body.points[p];
            if s == start
                && prev.key_hash == point.key_hash
                && body.series_key(prev) == body.series_key(point)
            {
                out[b].points.push(i as u32);
                out[b].keys.push(key);
                continue;
            }
        }
        let g = match last_group {
            Some((s, g)) if s == start => g,
            _ => {
                let g = *groups.entry(start).or_insert_with(|| {
                    let placed = placement::place_group(
                        &db.name,
                        &rp.name,
                        start,
                        sgd,
                        rp.replication,
                        membership,
                    );
                    let shards = placed.shards.len();
                    group_list.push((placed, vec![None; shards]));
                    group_list.len() - 1
                });
                last_group = Some((start, g));
                g
            }
        };
        let (group, batch_of_shard) = &mut group_list[g];
        let hash = if partition_keys || group.shards.len() > 1 {
            series_hashes.of(body, i)
        } else {
            0
        };
        let index = placement::shard_index(hash, group.shards.len()) as usize;
        let b = *batch_of_shard[index].get_or_insert_with(|| {
            let shard = &group.shards[index];
            out.push(ShardPoints {
                shard: ShardMeta {
                    id: shard.id,
                    database: db.name.clone(),
                    retention_policy: rp.name.clone(),
                    start_ns: group.start_ns,
                    end_ns: group.end_ns,
                },
                owners: shard.owners.clone(),
                points: Vec::new(),
                keys: Vec::new(),
            });
            out.len() - 1
        });
        let key = if partition_keys {
            placement::partition_key(hash)
        } else {
            0
        };
        out[b].points.push(i as u32);
        out[b].keys.push(key);
        last_series = Some((start, i, b, key));
    }
    Ok(GroupedPoints {
        batches: out,
        beyond_retention: beyond,
        invalid,
    })
}

/// PointsWriter: this core's writer of request bodies. It maps points to shard groups,
/// shards and owners, writes each shard batch to every owner at once (this node's
/// through the local handle, the others' through hinted handoff, which holds the
/// ShardWriter) and waits for the consistency level.
pub struct PointsWriter {
    local: Rc<dyn LocalNode>,
    /// With peers: remote owners' writes (direct, or queued when they cannot take them).
    hinted_handoff: Option<Rc<HintedHandoff>>,
    meta: Arc<MetaStore>,
    membership: Membership,
    node_id: NodeId,
    /// `[storage] max-points-per-shard-batch`.
    max_batch_points: usize,
    /// Whether a write needs its points' partition keys: with peers, or with any shard
    /// of more than one partition here (fixed once the node runs).
    partition_keys: bool,
    stats: Rc<CoreStats>,
}

impl PointsWriter {
    pub fn new(
        local: Rc<dyn LocalNode>,
        hinted_handoff: Option<Rc<HintedHandoff>>,
        meta: Arc<MetaStore>,
        membership: Membership,
        node_id: NodeId,
        max_batch_points: usize,
        stats: Rc<CoreStats>,
    ) -> PointsWriter {
        let partition_keys = hinted_handoff.is_some() || local.max_partitions() > 1;
        PointsWriter {
            local,
            hinted_handoff,
            meta,
            membership,
            node_id,
            max_batch_points: max_batch_points.max(1),
            partition_keys,
            stats,
        }
    }

    /// Parses and writes one request body: every shard batch goes to all its owners
    /// at once, and the write succeeds when each batch met the consistency level.
    pub async fn write(
        self: &Rc<Self>,
        database: &str,
        retention_policy: Option<&str>,
        precision: Precision,
        consistency: Consistency,
        body: Bytes,
    ) -> Result<WriteOutcome, WriteError> {
        write(
            self,
            database,
            retention_policy,
            precision,
            consistency,
            body,
        )
        .await
    }
}

async fn write(
    pw: &Rc<PointsWriter>,
    database: &str,
    retention_policy: Option<&str>,
    precision: Precision,
    consistency: Consistency,
    body: Bytes,
) -> Result<WriteOutcome, WriteError> {
    let now = crate::base::time::now_ns();
    let meta = pw.meta.snapshot();
    if meta.database(database).is_none() {
        return Err(WriteError::DatabaseNotFound(database.to_string()));
    }
    let mut parsed = lineproto::parse(body, precision, now);
    let mut outcome = WriteOutcome {
        points_parsed: parsed.points.len(),
        parse_errors: std::mem::take(&mut parsed.errors),
        ..Default::default()
    };
    let grouped = group_by_shard(
        &meta,
        database,
        retention_policy,
        &parsed,
        &pw.membership,
        now,
        pw.partition_keys,
    )?;
    outcome.beyond_retention = grouped.beyond_retention;
    outcome.rejected = grouped.invalid;
    let body = Arc::new(parsed);
    let mut tasks = Vec::new();
    for shard in grouped.batches {
        let pw = pw.clone();
        let body = body.clone();
        tasks.push(glommio::spawn_local(async move {
            let unit = WriteUnit {
                shard,
                body,
                precision,
                default_time_ns: now,
            };
            write_to_owners(&pw, Rc::new(unit), consistency).await
        }));
    }
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(applied) => {
                outcome.points_written += applied.written;
                outcome.rejected.extend(applied.rejected);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    CoreStats::add(&pw.stats.points_written, outcome.points_written as u64);
    CoreStats::add(&pw.stats.points_dropped, outcome.points_dropped() as u64);
    CoreStats::add(&pw.stats.lines_unparsed, outcome.parse_errors.len() as u64);
    match failure {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// The result of one owner's write of a batch.
enum OwnerResult {
    Applied(ApplyOutcome),
    /// Queued in hinted handoff: an ack only for consistency `any`.
    Hinted {
        node: NodeId,
        message: String,
        timeout: bool,
    },
    Failed {
        node: NodeId,
        message: String,
        timeout: bool,
    },
}

/// One shard's points of a request: the unit the consistency level is judged on.
struct WriteUnit {
    shard: ShardPoints,
    body: Arc<ParsedBody>,
    precision: Precision,
    default_time_ns: i64,
}

/// Writes one shard's points to every owner concurrently and returns as soon as the
/// consistency level is met (the other owners' writes go on in the background);
/// otherwise when every owner has answered or timed out.
async fn write_to_owners(
    pw: &Rc<PointsWriter>,
    unit: Rc<WriteUnit>,
    consistency: Consistency,
) -> Result<ApplyOutcome, WriteError> {
    let owners = unit.shard.owners.clone();
    // `any`: every owner took it or its hinted handoff did.
    let required = match consistency {
        Consistency::Any => owners.len(),
        _ => consistency.required_acks(owners.len()),
    };
    // At most one message per owner: the channel's bound is the owner count.
    let (tx, mut rx) = futures_channel::mpsc::unbounded();
    for &owner in &owners {
        let (pw, tx, unit) = (pw.clone(), tx.clone(), unit.clone());
        glommio::spawn_local(async move {
            let result = if owner == pw.node_id {
                write_here(&pw, &unit).await
            } else {
                write_remote(&pw, owner, &unit).await
            };
            let _ = tx.unbounded_send(result);
        })
        .detach();
    }
    drop(tx);
    let (mut acks, mut failures) = (0usize, Vec::new());
    let mut applied: Option<ApplyOutcome> = None;
    while let Some(result) = futures_lite::StreamExt::next(&mut rx).await {
        match result {
            OwnerResult::Applied(outcome) => {
                acks += 1;
                // Prefer a local outcome: it names rejected points' reasons.
                if applied
                    .as_ref()
                    .is_none_or(|a| a.rejected.len() < outcome.rejected.len())
                {
                    applied = Some(outcome);
                }
            }
            OwnerResult::Hinted {
                node,
                message,
                timeout,
            } => {
                if consistency == Consistency::Any {
                    acks += 1;
                } else {
                    failures.push((
                        node,
                        format!("{message} (queued for hinted handoff)"),
                        timeout,
                    ));
                }
            }
            OwnerResult::Failed {
                node,
                message,
                timeout,
            } => failures.push((node, message, timeout)),
        }
        if acks >= required {
            return Ok(applied.unwrap_or_default());
        }
        // Once the level cannot be met any more, the remaining owners still answer
        // (each bounded by write-timeout), so the error reports what was achieved.
    }
    let detail = failures
        .iter()
        .map(|(n, m, _)| format!("node {n}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let (level, owners_n) = (consistency.name(), owners.len());
    if failures.iter().any(|f| f.2) {
        Err(WriteError::Timeout {
            level,
            required,
            owners: owners_n,
            achieved: acks,
            detail,
        })
    } else {
        Err(WriteError::PartialWrite {
            level,
            required,
            owners: owners_n,
            achieved: acks,
            detail,
        })
    }
}

/// This node's share of a shard write: the points split by partition (the shard's
/// partition count here), each part written on the core that holds its partition,
/// all at once. Applied when every part is.
async fn write_here(pw: &Rc<PointsWriter>, unit: &WriteUnit) -> OwnerResult {
    let (id, cores) = (unit.shard.shard.id, pw.local.cores());
    let count = pw.local.partitions_of(id);
    let mut batches = Vec::new();
    for (index, points) in
        placement::split_by_partition(&unit.shard.points, &unit.shard.keys, count)
    {
        let core = placement::partition_core(index, cores);
        for chunk in points.chunks(pw.max_batch_points) {
            let batch = ShardBatch {
                shard: unit.shard.shard.clone(),
                partition: Partition { index, count },
                body: unit.body.clone(),
                points: chunk.to_vec(),
                precision: unit.precision,
                default_time_ns: unit.default_time_ns,
            };
            batches.push((core, batch));
        }
    }
    let results = if batches.len() == 1 {
        let (core, batch) = batches.pop().expect("one batch");
        vec![pw.local.write_on(core, batch).await]
    } else {
        // Every part at once, each waiting for its own partition's WAL sync.
        let writes: Vec<_> = batches
            .into_iter()
            .map(|(core, batch)| {
                let pw = pw.clone();
                glommio::spawn_local(async move { pw.local.write_on(core, batch).await })
            })
            .collect();
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            results.push(write.await);
        }
        results
    };
    let mut applied = ApplyOutcome::default();
    let mut failed = None;
    for result in results {
        match result {
            Ok(Ok(outcome)) => {
                applied.written += outcome.written;
                applied.rejected.extend(outcome.rejected);
            }
            Ok(Err(e)) => failed = failed.or(Some(e.to_string())),
            Err(e) => failed = failed.or(Some(e.to_string())),
        }
    }
    match failed {
        Some(message) => OwnerResult::Failed {
            node: pw.node_id,
            message,
            timeout: false,
        },
        None => OwnerResult::Applied(applied),
    }
}

/// A remote owner's share of a shard write, split so that no point crosses a core
/// twice: by the owner's partition (`key % its core count`, known from its handshake;
/// this node's count until then), sent straight to the owner's core that holds it,
/// and by this node's *home core* of the series (`key % cores`), which sends it and
/// holds its hinted-handoff queue, so every write of a series to that owner leaves
/// from one core, in order, whatever the owner's core count. When both counts are
/// equal the two splits coincide.
async fn write_remote(pw: &Rc<PointsWriter>, owner: NodeId, unit: &WriteUnit) -> OwnerResult {
    let cores = pw.local.cores();
    let Some(hh) = &pw.hinted_handoff else {
        return OwnerResult::Failed {
            node: owner,
            message: "not in this node's cluster configuration".into(),
            timeout: false,
        };
    };
    let theirs = hh.peer_cores(owner).map_or(cores as u32, u32::from);
    let parts: Vec<((usize, u32), Vec<u32>)> = if theirs == cores as u32 {
        // The usual case: both splits are one (home core p sends partition p).
        placement::split_by_partition(&unit.shard.points, &unit.shard.keys, theirs)
            .into_iter()
            .map(|(p, points)| ((p as usize, p), points))
            .collect()
    } else {
        let mut parts: std::collections::BTreeMap<(usize, u32), Vec<u32>> = Default::default();
        for (&point, &key) in unit.shard.points.iter().zip(&unit.shard.keys) {
            let home = placement::partition_core(placement::partition_of(key, cores as u32), cores);
            let partition = placement::partition_of(key, theirs);
            parts.entry((home, partition)).or_default().push(point);
        }
        parts.into_iter().collect()
    };
    let mut sends: Vec<(usize, RemoteBatch)> = Vec::new();
    for ((home, partition), points) in parts {
        for chunk in points.chunks(pw.max_batch_points) {
            sends.push((home, remote_batch(unit, chunk, partition)));
        }
    }
    let outcomes = if sends.len() == 1 {
        let (home, batch) = sends.pop().expect("one part");
        vec![send_remote(pw, hh, owner, home, batch).await]
    } else {
        let tasks: Vec<_> = sends
            .into_iter()
            .map(|(home, batch)| {
                let (pw, hh) = (pw.clone(), hh.clone());
                glommio::spawn_local(async move { send_remote(&pw, &hh, owner, home, batch).await })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await);
        }
        outcomes
    };
    let (mut written, mut rejected) = (0, Vec::new());
    let (mut hinted, mut failed) = (None, None);
    for outcome in outcomes {
        match outcome {
            RemoteOutcome::Applied(n) => written += n,
            RemoteOutcome::Rejected(message) => rejected.push(message),
            RemoteOutcome::Hinted(message, timeout) => hinted = hinted.or(Some((message, timeout))),
            RemoteOutcome::Failed(message, timeout) => failed = failed.or(Some((message, timeout))),
        }
    }
    match (failed, hinted) {
        (Some((message, timeout)), _) => OwnerResult::Failed {
            node: owner,
            message,
            timeout,
        },
        (None, Some((message, timeout))) => OwnerResult::Hinted {
            node: owner,
            message,
            timeout,
        },
        (None, None) => OwnerResult::Applied(ApplyOutcome { written, rejected }),
    }
}

/// One part of a remote owner's share, from its home core (here, or over the mesh).
async fn send_remote(
    pw: &Rc<PointsWriter>,
    hh: &Rc<HintedHandoff>,
    owner: NodeId,
    home: usize,
    batch: RemoteBatch,
) -> RemoteOutcome {
    if home == pw.local.core() {
        return hh.remote_write(owner, batch).await;
    }
    match pw.local.remote_write_on(home, owner, batch).await {
        Ok(outcome) => outcome,
        Err(e) => RemoteOutcome::Failed(e.to_string(), false),
    }
}

/// The lines of `points` as slices of the request body, adjacent lines in one slice,
/// for the owner's partition `partition`.
fn remote_batch(unit: &WriteUnit, points: &[u32], partition: u32) -> RemoteBatch {
    let body = &unit.body;
    RemoteBatch {
        shard: unit.shard.shard.clone(),
        partition,
        precision: unit.precision.code(),
        default_time_ns: unit.default_time_ns,
        lines: body
            .line_runs(points.iter().copied())
            .into_iter()
            .map(|run| body.body.slice(run))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaStore;

    #[test]
    fn forwarded_lines_are_slices_of_the_request_body() {
        let text = "a v=1 1\nb v=2 2\nc v=3 3\nd v=4 4\n";
        let parsed = Arc::new(lineproto::parse(
            Bytes::from(text),
            Precision::Nanosecond,
            0,
        ));
        let body_range = parsed.body.as_ptr_range();
        let unit = WriteUnit {
            shard: ShardPoints {
                shard: ShardMeta {
                    id: 1,
                    database: "db".into(),
                    retention_policy: "autogen".into(),
                    start_ns: 0,
                    end_ns: 10,
                },
                owners: vec![2],
                points: vec![0, 1, 2, 3],
                keys: vec![0; 4],
            },
            body: parsed.clone(),
            precision: Precision::Nanosecond,
            default_time_ns: 0,
        };
        // Adjacent lines: one slice, pointing into the body (no copy at all).
        let remote = remote_batch(&unit, &[0, 1, 2, 3], 1);
        assert_eq!(remote.partition, 1);
        assert_eq!(remote.lines.len(), 1);
        assert_eq!(&remote.lines[0][..], &text.as_bytes()[..text.len() - 1]);
        assert!(body_range.contains(&remote.lines[0].as_ptr()));
        // A gap (a point of another shard) splits the run; still no copy.
        let remote = remote_batch(&unit, &[0, 2, 3], 0);
        assert_eq!(remote.lines.len(), 2);
        assert_eq!(&remote.lines[0][..], b"a v=1 1");
        assert_eq!(&remote.lines[1][..], b"c v=3 3\nd v=4 4");
        assert!(remote
            .lines
            .iter()
            .all(|l| body_range.contains(&l.as_ptr())));
    }

    #[test]
    fn groups_points_by_shard_and_drops_beyond_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path(), 1).unwrap();
        store
            .create_database(
                "db",
                Some(&crate::meta::RetentionPolicySpec {
                    name: Some("day".into()),
                    duration_ns: Some(24 * crate::meta::HOUR_NS),
                    replication: Some(1),
                    shard_group_duration_ns: None,
                }),
            )
            .unwrap();
        let meta = store.snapshot();
        let now = 100 * crate::meta::HOUR_NS + crate::meta::HOUR_NS / 2;
        let body = format!(
            "a v=1 {}\nb v=1 {}\na v=2 {}\nold v=1 {}",
            now,
            now - 1,
            now - 2 * crate::meta::HOUR_NS,
            now - 25 * crate::meta::HOUR_NS
        );
        let parsed = lineproto::parse(Bytes::from(body), Precision::Nanosecond, now);
        let grouped = group_by_shard(
            &meta,
            "db",
            None,
            &parsed,
            &Membership::single(1),
            now,
            true,
        )
        .unwrap();
        assert_eq!(grouped.beyond_retention, 1);
        let batches: Vec<_> = grouped
            .batches
            .into_iter()
            .map(|b| (b.shard, b.points))
            .collect();
        // Two one-hour groups: the last hour's (points 0, 1) and two hours ago (point 2).
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].1, vec![0, 1]);
        assert_eq!(batches[1].1, vec![2]);
        assert_eq!(
            batches[0].0.end_ns - batches[0].0.start_ns,
            crate::meta::HOUR_NS
        );
        assert!(matches!(
            group_by_shard(
                &meta,
                "nope",
                None,
                &parsed,
                &Membership::single(1),
                now,
                true
            ),
            Err(WriteError::DatabaseNotFound(_))
        ));
        assert!(matches!(
            group_by_shard(
                &meta,
                "db",
                Some("x"),
                &parsed,
                &Membership::single(1),
                now,
                true
            ),
            Err(WriteError::RetentionPolicyNotFound(_))
        ));
    }
}
