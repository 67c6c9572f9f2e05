//! The cluster's ShardMapper (the coordinator's side of the query path): where a
//! query's scans, schema requests and deletes run. It implements
//! [`crate::query::ShardMapper`] for the query engine.
//!
//! A scan or schema request covers every shard of the database in the time range.
//! This node's shards answer first, each on its owning core over the mesh. In a
//! cluster, a scan over a bounded time range then asks, all at once, one owner of each
//! shard placement says the range holds (see [`scan_cluster`]); otherwise every peer is
//! asked in turn through a MapShard request for the shards *it* holds that no one has
//! answered for yet (the request carries the ids already covered). Either way each
//! shard is read from exactly one owner. A peer answers in pages
//! ([`crate::cluster::map_server`]), which this side pulls one by one.
//!
//! Remote work ends with the query: each request carries the milliseconds the statement
//! may still run, and a coordinator that stops waiting — timeout, an error,
//! `max-select-point`, the client gone — sends `Cancel` with the query id (through this
//! core's [`Canceller`]), which stops the peer's running scans and drops what it holds.
//!
//! A peer that does not answer is skipped; afterwards the coordinator checks, through
//! placement, every shard of every group it saw: a shard whose owners all failed ends
//! the query with an error naming the shard, never a silently partial answer.

use crate::base::LocalFuture;
use crate::cluster::local::LocalNode;
use crate::cluster::map_wire::{MapRequest, MapResponse, MapShard, MapShardResponse};
use crate::cluster::shard_writer::ShardWriter;
use crate::meta::MetaStore;
use crate::placement::{self, Membership, NodeId};
use crate::query::QueryError;
use crate::tsdb::read::cancel::ScanStop;
use crate::tsdb::read::delete::DeleteRequest;
use crate::tsdb::read::scan::{ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::{MAX_PLANNED_GROUPS, MAX_QUEUED_CANCELS};

/// How long a cancel may take to reach a peer before the sender moves on.
const CANCEL_TIMEOUT: Duration = Duration::from_millis(crate::limits::CANCEL_TIMEOUT_MS);

/// This core's ShardMapper: this node's cores first, then one owner of every shard
/// only other nodes hold.
pub struct ClusterShardMapper {
    local: Rc<dyn LocalNode>,
    /// With peers: the connections MapShard requests go over.
    shard_writer: Option<Rc<ShardWriter>>,
    meta: Arc<MetaStore>,
    membership: Membership,
    node_id: NodeId,
    canceller: Canceller,
    /// Advanced for every request: whose turn it is among replicas.
    turn: Cell<usize>,
    /// The counter of [`ClusterShardMapper::next_query_id`].
    query_counter: Cell<u64>,
}

impl ClusterShardMapper {
    pub fn new(
        local: Rc<dyn LocalNode>,
        shard_writer: Option<Rc<ShardWriter>>,
        meta: Arc<MetaStore>,
        membership: Membership,
        node_id: NodeId,
    ) -> ClusterShardMapper {
        ClusterShardMapper {
            canceller: Canceller::new(shard_writer.clone()),
            local,
            shard_writer,
            meta,
            membership,
            node_id,
            turn: Cell::new(0),
            // From the clock, so a restarted node does not reuse its previous run's ids.
            query_counter: Cell::new(crate::base::time::now_ns() as u64),
        }
    }

    /// A fresh query id for a statement coordinated here: node, core and a counter, so
    /// ids never collide across the cluster.
    pub fn next_query_id(&self) -> u64 {
        let n = self.query_counter.get();
        self.query_counter.set(n.wrapping_add(1));
        ((self.node_id & 0xffff) << 48)
            | ((self.local.core() as u64 & 0xff) << 40)
            | (n & ((1 << 40) - 1))
    }

    /// A counter this core advances for every request: whose turn it is among replicas.
    fn next_turn(&self) -> usize {
        let v = self.turn.get();
        self.turn.set(v.wrapping_add(1));
        v
    }
}

impl crate::query::ShardMapper for ClusterShardMapper {
    fn scan<'a>(
        &'a self,
        request: &'a ScanRequest,
    ) -> LocalFuture<'a, Result<Vec<ShardScan>, QueryError>> {
        Box::pin(scan_cluster(self, request))
    }

    fn schema<'a>(
        &'a self,
        request: &'a SchemaRequest,
    ) -> LocalFuture<'a, Result<Vec<ShardSchema>, QueryError>> {
        Box::pin(schema_cluster(self, request))
    }

    fn delete<'a>(
        &'a self,
        request: &'a DeleteRequest,
    ) -> LocalFuture<'a, Result<u64, QueryError>> {
        Box::pin(delete_cluster(self, request))
    }
}

impl ClusterShardMapper {
    /// One MapShard round trip to `node`.
    async fn ask(&self, node: NodeId, request: &MapRequest) -> Result<MapResponse, String> {
        match &self.shard_writer {
            Some(writer) => ask(writer, node, request).await,
            None => Err("not in a cluster".into()),
        }
    }
}

/// One MapShard round trip to `node`.
async fn ask(
    writer: &ShardWriter,
    node: NodeId,
    request: &MapRequest,
) -> Result<MapResponse, String> {
    let message = MapShard {
        json: Bytes::from(serde_json::to_vec(request).expect("map requests serialise")),
    };
    // Live: a hung peer fails this within about the dial timeout, not the
    // write timeout, and a peer whose dials back off is still tried.
    let reply: MapShardResponse = writer
        .request_live(node, 0, &message)
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
/// Peers that looked unreachable lately go last, so a shard they own is read from
/// another owner first; they are still asked (they may be back).
fn peers(ctx: &ClusterShardMapper) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = ctx
        .membership
        .nodes()
        .iter()
        .copied()
        .filter(|n| *n != ctx.node_id)
        .collect();
    if !nodes.is_empty() {
        let len = nodes.len();
        nodes.rotate_left(ctx.next_turn() % len);
    }
    healthy_first(ctx, &mut nodes);
    nodes
}

/// Moves the nodes this core saw unreachable lately to the end (stable otherwise).
fn healthy_first(ctx: &ClusterShardMapper, nodes: &mut [NodeId]) {
    nodes.sort_by_key(|n| is_suspect(ctx, *n));
}

/// Whether this core saw `node` unreachable lately (see `ShardWriter::is_suspect`).
fn is_suspect(ctx: &ClusterShardMapper, node: NodeId) -> bool {
    ctx.shard_writer
        .as_ref()
        .is_some_and(|w| w.is_suspect(node))
}

/// Scans every shard the request covers: local ones here, the rest on one owner each.
/// Stops with the request's deadline, and once more than `max_points` values arrived.
///
/// With a bounded time range (at most [`MAX_PLANNED_GROUPS`] shard groups), placement
/// says which shards can exist and who owns them: each shard this node did not answer
/// for goes to one owner (rotating, so replicas share the work) and the owners are
/// asked all at once; the shards of an owner that fails go to the next owner. Without
/// such a bound the peers are asked one after another, each for what is still missing.
async fn scan_cluster(
    ctx: &ClusterShardMapper,
    r: &ScanRequest,
) -> Result<Vec<ShardScan>, QueryError> {
    let mut shards = ctx.local.scan(r).await?;
    if ctx.shard_writer.is_none() {
        return Ok(shards);
    }
    ctx.canceller.start();
    let points = Cell::new(shards.iter().map(scan_values).sum::<usize>());
    let mut seen: BTreeSet<u64> = shards.iter().map(|s| s.shard_id).collect();
    if let Some((mut pending, owners)) = plan(ctx, r, &seen) {
        let mut failed: Vec<(NodeId, String)> = Vec::new();
        while !pending.is_empty() {
            let asks: Vec<_> = pending
                .iter()
                .map(|(node, ids)| {
                    Box::pin(map_from(
                        ctx,
                        *node,
                        r,
                        Vec::new(),
                        Some(ids.clone()),
                        &points,
                    ))
                })
                .collect();
            let answers = join_all(asks).await;
            let mut retry: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
            for ((node, ids), answer) in std::mem::take(&mut pending).into_iter().zip(answers) {
                match answer {
                    Ok(found) => shards.extend(found.into_values()),
                    Err(MapFailure::Stopped(stop)) => return Err(stop.into()),
                    Err(MapFailure::Node(e)) => {
                        tracing::warn!(node, error = %e, "MapShard scan failed; trying the other owners");
                        failed.push((node, e));
                        for id in ids {
                            let (others, owned_here) = &owners[&id];
                            let next = others.iter().find(|o| !failed.iter().any(|(n, _)| n == *o));
                            match next {
                                Some(&next) => retry.entry(next).or_default().push(id),
                                // An owner that holds nothing of the shard says it has
                                // no data (as `check_coverage` takes it).
                                None if *owned_here => {}
                                None => {
                                    return Err(QueryError::ShardUnavailable {
                                        shard: id,
                                        detail: failure_detail(&failed),
                                    })
                                }
                            }
                        }
                    }
                }
            }
            pending = retry;
        }
        return Ok(shards);
    }
    let mut failed = Vec::new();
    let (healthy, suspect) = peers_by_health(ctx);
    for (i, node) in healthy.iter().chain(&suspect).copied().enumerate() {
        if i >= healthy.len() {
            // A peer seen unreachable lately is asked only if the answer needs it.
            let groups: BTreeSet<i64> = shards.iter().map(|s| s.start_ns).collect();
            let skipped = skipped_as_failed(&failed, &suspect[i - healthy.len()..]);
            let rp = &r.retention_policy;
            if check_coverage(ctx, &r.database, rp, &groups, &seen, &skipped).is_ok() {
                break;
            }
        }
        let exclude = seen.iter().copied().collect();
        match map_from(ctx, node, r, exclude, None, &points).await {
            Ok(found) => {
                seen.extend(found.keys().copied());
                shards.extend(found.into_values());
            }
            Err(MapFailure::Stopped(stop)) => return Err(stop.into()),
            Err(MapFailure::Node(e)) => {
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

/// [`peers`], split into those that answered lately and those seen unreachable.
fn peers_by_health(ctx: &ClusterShardMapper) -> (Vec<NodeId>, Vec<NodeId>) {
    peers(ctx).into_iter().partition(|n| !is_suspect(ctx, *n))
}

/// `failed` plus the `skipped` peers, counted as failed (for a coverage check that
/// decides whether they need to be asked at all).
fn skipped_as_failed(failed: &[(NodeId, String)], skipped: &[NodeId]) -> Vec<(NodeId, String)> {
    let mut out = failed.to_vec();
    out.extend(
        skipped
            .iter()
            .map(|n| (*n, "not asked: unreachable lately".to_string())),
    );
    out
}

/// Shards to ask for, by node, and for every planned shard its owners other than this
/// node in the order to try them and whether this node owns it too.
type Plan = (
    BTreeMap<NodeId, Vec<u64>>,
    HashMap<u64, (Vec<NodeId>, bool)>,
);

/// For a bounded time range: the shards of every group in it that this node did not
/// answer for (`seen`), each given to one of its other owners. A shard this node owns
/// but does not hold is asked for too (its writes may still be on their way here by
/// hinted handoff), but if its other owners fail it counts as empty, as in the
/// sequential path.
fn plan(ctx: &ClusterShardMapper, r: &ScanRequest, seen: &BTreeSet<u64>) -> Option<Plan> {
    let snap = ctx.meta.snapshot();
    let policy = snap
        .database(&r.database)?
        .retention_policies
        .get(&r.retention_policy)?;
    let every = policy.shard_group_duration_ns;
    if every <= 0 {
        return None;
    }
    // Placement's groups (Go's truncation, weekly groups from Mondays). In i128: an
    // unbounded range runs from near i64::MIN to near i64::MAX.
    let (first, last) = (
        placement::shard_group_start(r.start_ns, every),
        placement::shard_group_start(r.end_ns, every),
    );
    if (last as i128 - first as i128) / every as i128 >= MAX_PLANNED_GROUPS as i128 {
        return None;
    }
    let turn = ctx.next_turn();
    let (mut asks, mut owners) = (BTreeMap::new(), HashMap::new());
    let mut start = first;
    loop {
        let group = placement::place_group(
            &r.database,
            &r.retention_policy,
            start,
            every,
            policy.replication,
            &ctx.membership,
        );
        for (i, shard) in group.shards.iter().enumerate() {
            if seen.contains(&shard.id) {
                continue;
            }
            let mut others: Vec<NodeId> = shard
                .owners
                .iter()
                .copied()
                .filter(|o| *o != ctx.node_id)
                .collect();
            // Held by this node alone, and it has none: there is nothing to read.
            if others.is_empty() {
                continue;
            }
            let by = (turn + i) % others.len();
            others.rotate_left(by);
            healthy_first(ctx, &mut others);
            let owned_here = others.len() < shard.owners.len();
            // Owned here and held by nothing here: its other owners may hold writes
            // still on their way here, but one seen unreachable lately is not waited
            // for (had it failed, the shard would count as empty all the same).
            if owned_here && others.iter().all(|o| is_suspect(ctx, *o)) {
                continue;
            }
            asks.entry(others[0])
                .or_insert_with(Vec::new)
                .push(shard.id);
            owners.insert(shard.id, (others, owned_here));
        }
        if start >= last {
            break;
        }
        start += every;
    }
    Some((asks, owners))
}

/// Why a peer's part of a scan did not arrive.
enum MapFailure {
    /// The statement is over (deadline, `max-select-point`): no other owner will do.
    Stopped(ScanStop),
    /// This node failed; another owner may answer.
    Node(String),
}

/// Every page of `node`'s answer: for the shards in `shard_ids`, or (`None`) for all
/// of its shards in range not in `exclude`. `points` counts the values every peer's
/// pages brought so far, against `max-select-point`.
async fn map_from(
    ctx: &ClusterShardMapper,
    node: NodeId,
    r: &ScanRequest,
    exclude: Vec<u64>,
    shard_ids: Option<Vec<u64>>,
    points: &Cell<usize>,
) -> Result<BTreeMap<u64, ShardScan>, MapFailure> {
    let mut offset = 0;
    let mut cursor = None;
    let mut found: BTreeMap<u64, ShardScan> = BTreeMap::new();
    // Until the peer has sent its last page, leaving here (an error, a timeout, the
    // statement dropped) tells it to stop.
    let mut open = OpenMap::new(&ctx.canceller, node, r.query_id);
    loop {
        if r.deadline.is_over() {
            return Err(MapFailure::Stopped(ScanStop::Cancelled));
        }
        let mut scan = r.clone();
        scan.budget_ms = r.deadline.remaining_ms();
        if shard_ids.is_some() {
            scan.shard_ids = shard_ids.clone();
        }
        let request = MapRequest::Scan {
            scan,
            exclude: exclude.clone(),
            offset,
            cursor,
        };
        match ctx.ask(node, &request).await {
            Ok(MapResponse::Scan {
                shards: page,
                next_offset,
                cursor: next_cursor,
            }) => {
                let page: Vec<ShardScan> = page.into_iter().map(ShardScan::from).collect();
                points.set(points.get() + page.iter().map(scan_values).sum::<usize>());
                if r.max_points > 0 && points.get() > r.max_points {
                    return Err(MapFailure::Stopped(ScanStop::TooManyPoints {
                        points: points.get(),
                        limit: r.max_points,
                    }));
                }
                for s in page {
                    match found.get_mut(&s.shard_id) {
                        Some(existing) => existing.series.extend(s.series),
                        None => {
                            found.insert(s.shard_id, s);
                        }
                    }
                }
                match next_offset {
                    Some(next) if next > offset => {
                        offset = next;
                        cursor = next_cursor;
                    }
                    _ => {
                        open.done();
                        return Ok(found);
                    }
                }
            }
            Ok(MapResponse::Stopped { stop }) => {
                open.done();
                return Err(MapFailure::Stopped(stop));
            }
            Ok(_) => return Err(MapFailure::Node("unexpected MapShard answer".into())),
            Err(e) => return Err(MapFailure::Node(e)),
        }
    }
}

/// Runs the futures at once; their outputs in order. (Dropping it drops them all.)
pub(crate) async fn join_all<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match Pin::new(future).poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

fn failure_detail(failed: &[(NodeId, String)]) -> String {
    failed
        .iter()
        .map(|(n, e)| format!("node {n}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Values in a scan answer (what `max-select-point` counts).
fn scan_values(scan: &ShardScan) -> usize {
    scan.series
        .iter()
        .flat_map(|s| &s.columns)
        .map(|c| c.times.len())
        .sum()
}

/// A peer asked for a scan that has not sent its last page: dropped before
/// [`OpenMap::done`], it queues a `Cancel` for the peer. Dropping never awaits or
/// spawns (it may run while the executor winds down): it only queues, to this core's
/// [`Canceller`].
struct OpenMap<'a> {
    canceller: &'a Canceller,
    node: NodeId,
    query_id: u64,
    open: bool,
}

impl<'a> OpenMap<'a> {
    fn new(canceller: &'a Canceller, node: NodeId, query_id: u64) -> OpenMap<'a> {
        OpenMap {
            canceller,
            node,
            query_id,
            open: query_id != 0,
        }
    }

    fn done(&mut self) {
        self.open = false;
    }
}

impl Drop for OpenMap<'_> {
    fn drop(&mut self) {
        if self.open {
            self.canceller.queue(self.node, self.query_id);
        }
    }
}

/// This core's queue of cancels to send, and the task that sends them, one at a time,
/// each bounded by [`CANCEL_TIMEOUT`] (started with the first cancel).
struct Canceller {
    shard_writer: Option<Rc<ShardWriter>>,
    queue: RefCell<Option<futures_channel::mpsc::Sender<(NodeId, u64)>>>,
}

impl Canceller {
    fn new(shard_writer: Option<Rc<ShardWriter>>) -> Canceller {
        Canceller {
            shard_writer,
            queue: RefCell::new(None),
        }
    }

    /// Starts the sending task if it is not running (before any scan can queue a
    /// cancel: queueing, which runs in `Drop`, never spawns).
    fn start(&self) {
        let mut queue = self.queue.borrow_mut();
        if queue.is_some() {
            return;
        }
        let Some(writer) = self.shard_writer.clone() else {
            return;
        };
        let (tx, rx) = futures_channel::mpsc::channel::<(NodeId, u64)>(MAX_QUEUED_CANCELS);
        *queue = Some(tx);
        glommio::spawn_local(send_cancels(writer, rx)).detach();
    }

    /// Queues a cancel; at the limit it is dropped: the peer's deadline and the
    /// held-scan expiry still end its work.
    fn queue(&self, node: NodeId, query_id: u64) {
        if let Some(tx) = self.queue.borrow_mut().as_mut() {
            let _ = tx.try_send((node, query_id));
        }
    }
}

async fn send_cancels(
    writer: Rc<ShardWriter>,
    mut queued: futures_channel::mpsc::Receiver<(NodeId, u64)>,
) {
    use futures_lite::StreamExt;
    while let Some((node, query_id)) = queued.next().await {
        let cancel = MapRequest::Cancel { query_id };
        let sent =
            futures_lite::future::or(async { Some(ask(&writer, node, &cancel).await) }, async {
                glommio::timer::sleep(CANCEL_TIMEOUT).await;
                None
            })
            .await;
        match sent {
            Some(Ok(_)) => tracing::debug!(node, query_id, "remote scan cancelled"),
            Some(Err(e)) => tracing::debug!(node, query_id, error = %e, "cancel not delivered"),
            None => tracing::debug!(node, query_id, "cancel timed out"),
        }
    }
}

/// The schema of every shard the request covers.
async fn schema_cluster(
    ctx: &ClusterShardMapper,
    r: &SchemaRequest,
) -> Result<Vec<ShardSchema>, QueryError> {
    let mut shards = ctx
        .local
        .schema(r)
        .await
        .map_err(|e| QueryError::Unreachable(e.to_string()))?;
    if ctx.shard_writer.is_none() {
        return Ok(shards);
    }
    let mut seen: BTreeSet<u64> = shards.iter().map(|s| s.shard_id).collect();
    let mut failed = Vec::new();
    let (healthy, suspect) = peers_by_health(ctx);
    for (i, node) in healthy.iter().chain(&suspect).copied().enumerate() {
        if i >= healthy.len() {
            // A peer seen unreachable lately is asked only if the answer needs it.
            let skipped = skipped_as_failed(&failed, &suspect[i - healthy.len()..]);
            if schema_coverage(ctx, r, &shards, &seen, &skipped).is_ok() {
                break;
            }
        }
        let request = MapRequest::Schema {
            schema: r.clone(),
            exclude: seen.iter().copied().collect(),
        };
        match ctx.ask(node, &request).await {
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
    schema_coverage(ctx, r, &shards, &seen, &failed)?;
    Ok(shards)
}

/// [`check_coverage`] for every policy a schema request covers.
fn schema_coverage(
    ctx: &ClusterShardMapper,
    r: &SchemaRequest,
    shards: &[ShardSchema],
    seen: &BTreeSet<u64>,
    failed: &[(NodeId, String)],
) -> Result<(), QueryError> {
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
        check_coverage(ctx, &r.database, rp, &groups, seen, failed)?;
    }
    Ok(())
}

/// Runs a delete on every node (every owner of every shard); a node that does not
/// answer fails the statement by name (its copy keeps the data).
async fn delete_cluster(ctx: &ClusterShardMapper, r: &DeleteRequest) -> Result<u64, QueryError> {
    let mut removed = ctx
        .local
        .delete(r)
        .await
        .map_err(|e| QueryError::Statement(e.to_string()))?;
    if ctx.shard_writer.is_none() {
        return Ok(removed);
    }
    let mut failed = Vec::new();
    for node in peers(ctx) {
        let request = MapRequest::Delete { delete: r.clone() };
        match ctx.ask(node, &request).await {
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
    ctx: &ClusterShardMapper,
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
                return Err(QueryError::ShardUnavailable {
                    shard: shard.id,
                    detail: failure_detail(failed),
                });
            }
        }
    }
    // A group can only be known from a node that holds one of its shards. With as many
    // nodes failed as there are copies, a group whose every owner failed was never
    // reported: the answer could silently miss it, so the query fails instead.
    if failed.len() >= policy.replication as usize {
        let detail = failure_detail(failed);
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
