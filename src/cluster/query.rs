//! The query side of the cluster (ShardMapper): where a query's scans run.
//!
//! A scan or schema request covers every shard of the database in the time range.
//! This node's shards answer first, each on its owning core over the mesh. In a
//! cluster, a scan over a bounded time range then asks, all at once, one owner of each
//! shard placement says the range holds (see [`scan_cluster`]); otherwise every peer is
//! asked in turn through a MapShard request for the shards *it* holds that no one has
//! answered for yet (the request carries the ids already covered). Either way each
//! shard is read from exactly one owner.
//!
//! A peer answers a scan in pages of about `map-page-bytes` of series: it scans once,
//! sends the first page and holds the rest (a *held scan*, named by a cursor id in the
//! answer) until the coordinator asks for the next page, so every frame is bounded and
//! the coordinator pulls at its own pace. Held scans are limited per core
//! (`MAX_HELD_SCANS`, the least recently read is dropped at the limit) and expire
//! `HELD_SCAN_IDLE` after their last page or at the query's deadline. A page whose
//! held scan is gone is served by scanning again and skipping to its offset: slower,
//! never wrong.
//!
//! Remote work ends with the query: each request carries the milliseconds the statement
//! may still run (the peer's scan stops there by itself), and a coordinator that stops
//! waiting — timeout, an error, `max-select-point`, the client gone — sends `Cancel`
//! with the query id, which stops the peer's running scans and drops what it holds.
//!
//! A peer that does not answer is skipped; afterwards the coordinator checks, through
//! placement, every shard of every group it saw: a shard whose owners all failed ends
//! the query with an error naming the shard, never a silently partial answer.

use crate::net::wire::{opaque_message, FrameKind};
use crate::node::{CoreContext, CoreStats};
use crate::placement::{self, NodeId};
use crate::query::QueryError;
use crate::tsdb::read::cancel::{Deadline, ScanStop};
use crate::tsdb::read::scan::{ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use crate::tsdb::shard::SeriesData;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Held scans per core; at the limit the least recently read one is dropped (its
/// coordinator's next page is served by scanning again).
pub const MAX_HELD_SCANS: usize = 16;

/// A held scan not read for this long is dropped.
pub const HELD_SCAN_IDLE: Duration = Duration::from_secs(30);

/// Cancels waiting to be sent per core; at the limit a cancel is dropped (the peer's
/// own deadline and the held-scan expiry still end its work).
const MAX_QUEUED_CANCELS: usize = 256;

/// How long a cancel may take to reach a peer before the sender moves on.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);

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

/// A fresh query id for a statement coordinated here: node, core and a counter, so
/// ids never collide across the cluster (the counter starts from the clock, so a
/// restarted node does not reuse the ids of its previous run either).
pub fn next_query_id(ctx: &CoreContext) -> u64 {
    thread_local! {
        static NEXT: std::cell::Cell<u64> = std::cell::Cell::new(crate::base::time::now_ns() as u64);
    }
    let n = NEXT.with(|c| {
        let v = c.get();
        c.set(v.wrapping_add(1));
        v
    });
    ((ctx.node_id & 0xffff) << 48) | ((ctx.core as u64 & 0xff) << 40) | (n & ((1 << 40) - 1))
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
            cursor,
        }) => serve_scan(ctx, scan, exclude, offset, cursor).await,
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
        Ok(MapRequest::Cancel { query_id }) => {
            CoreStats::add(&ctx.stats.map_cancels_received, 1);
            let scans = RUNNING.with(|r| {
                r.borrow()
                    .get(&query_id)
                    .map_or(0, |ds| ds.iter().inspect(|(_, d)| d.cancel()).count())
            });
            let held = HELD.with(|h| h.borrow_mut().drop_query(query_id));
            tracing::debug!(query_id, scans, held, "MapShard cancel");
            MapResponse::Cancelled { scans, held }
        }
    };
    MapShardResponse {
        json: Bytes::from(serde_json::to_vec(&response).expect("map responses serialise")),
    }
}

async fn serve_scan(
    ctx: &Rc<CoreContext>,
    mut scan: ScanRequest,
    exclude: Vec<u64>,
    offset: usize,
    cursor: Option<u64>,
) -> MapResponse {
    if let Some(id) = cursor {
        if let Some(page) = HELD.with(|h| h.borrow_mut().next_page(id)) {
            CoreStats::add(&ctx.stats.map_pages_from_cursor, 1);
            return page;
        }
        CoreStats::add(&ctx.stats.map_rescans, 1);
    } else {
        CoreStats::add(&ctx.stats.map_requests_served, 1);
    }
    scan.deadline = Deadline::after(scan.budget_ms.map(Duration::from_millis));
    let _running = Running::enter(scan.query_id, &scan.deadline);
    let mut shards = match ctx.scan_node(&scan).await {
        Ok(shards) => shards,
        Err(QueryError::Stopped(stop)) => return MapResponse::Stopped { stop },
        Err(e) => {
            return MapResponse::Error {
                message: e.to_string(),
            }
        }
    };
    shards.retain(|s| !exclude.contains(&s.shard_id));
    shards.sort_by_key(|s| s.shard_id);
    let mut rest = Pages::new(shards, offset, ctx.config.cluster.map_page_bytes as usize);
    let page = rest.next();
    if rest.is_done() {
        return MapResponse::Scan {
            shards: page,
            next_offset: None,
            cursor: None,
        };
    }
    let next_offset = Some(rest.offset);
    let expires = match scan.deadline.remaining_ms() {
        Some(ms) => HELD_SCAN_IDLE.min(Duration::from_millis(ms)),
        None => HELD_SCAN_IDLE,
    };
    let id = hold(ctx, scan.query_id, rest, expires);
    MapResponse::Scan {
        shards: page,
        next_offset,
        cursor: Some(id),
    }
}

/// What is left of a scan answer, page by page.
struct Pages {
    shards: VecDeque<ShardScan>,
    /// About how many bytes of series (as JSON) a page carries.
    page_bytes: usize,
    /// Index of the next series to send, counted across shards in order.
    offset: usize,
}

impl Pages {
    /// The answer from series `skip` on.
    fn new(shards: Vec<ShardScan>, skip: usize, page_bytes: usize) -> Pages {
        let mut shards: VecDeque<ShardScan> = shards.into();
        let mut left = skip;
        for shard in shards.iter_mut() {
            let n = left.min(shard.series.len());
            shard.series.drain(..n);
            left -= n;
        }
        Pages {
            shards,
            page_bytes,
            offset: skip - left,
        }
    }

    fn is_done(&self) -> bool {
        self.shards.is_empty()
    }

    /// The next page: whole shards (empty ones too, so the coordinator learns they were
    /// read) and series up to about `page_bytes` (at least one series).
    fn next(&mut self) -> Vec<ShardScan> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(front) = self.shards.front_mut() {
            let mut n = 0;
            while n < front.series.len() {
                let size = json_size(&front.series[n]);
                if bytes > 0 && bytes + size > self.page_bytes {
                    break;
                }
                bytes += size;
                n += 1;
            }
            let taken: Vec<SeriesData> = front.series.drain(..n).collect();
            self.offset += n;
            if !front.series.is_empty() {
                if !taken.is_empty() {
                    out.push(ShardScan {
                        shard_id: front.shard_id,
                        start_ns: front.start_ns,
                        series: taken,
                    });
                }
                return out;
            }
            let shard = self.shards.pop_front().expect("front exists");
            out.push(ShardScan {
                shard_id: shard.shard_id,
                start_ns: shard.start_ns,
                series: taken,
            });
        }
        out
    }
}

/// Bytes of a series as JSON, without building the JSON.
fn json_size(series: &SeriesData) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, series);
    count.0
}

/// This core's held scans.
#[derive(Default)]
struct Held {
    next_id: u64,
    /// Reads so far: the recency stamp of a held scan.
    clock: u64,
    scans: HashMap<u64, HeldScan>,
}

struct HeldScan {
    query_id: u64,
    pages: Pages,
    expires: Instant,
    idle: Duration,
    read_at: u64,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
    /// Deadlines of the scans running for peers on this core, by query id.
    static RUNNING: RefCell<HashMap<u64, Vec<(u64, Deadline)>>> = RefCell::new(HashMap::new());
    static RUNNING_SEQ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Held {
    /// The next page of held scan `id`, or `None` when it is gone.
    fn next_page(&mut self, id: u64) -> Option<MapResponse> {
        self.clock += 1;
        let held = self.scans.get_mut(&id)?;
        let shards = held.pages.next();
        if held.pages.is_done() {
            self.scans.remove(&id);
            return Some(MapResponse::Scan {
                shards,
                next_offset: None,
                cursor: None,
            });
        }
        held.read_at = self.clock;
        held.expires = Instant::now() + held.idle;
        Some(MapResponse::Scan {
            shards,
            next_offset: Some(held.pages.offset),
            cursor: Some(id),
        })
    }

    /// Keeps `pages` for later reads; the id, and how many were dropped to make room.
    fn insert(&mut self, query_id: u64, pages: Pages, idle: Duration) -> (u64, usize) {
        let now = Instant::now();
        self.scans.retain(|_, h| h.expires > now);
        let mut evicted = 0;
        while self.scans.len() >= MAX_HELD_SCANS {
            let oldest = self
                .scans
                .iter()
                .min_by_key(|(_, h)| h.read_at)
                .map(|(id, _)| *id)
                .expect("not empty");
            self.scans.remove(&oldest);
            evicted += 1;
        }
        self.clock += 1;
        self.next_id += 1;
        let id = self.next_id;
        self.scans.insert(
            id,
            HeldScan {
                query_id,
                pages,
                expires: now + idle,
                idle,
                read_at: self.clock,
            },
        );
        (id, evicted)
    }

    fn drop_query(&mut self, query_id: u64) -> usize {
        let before = self.scans.len();
        self.scans.retain(|_, h| h.query_id != query_id);
        before - self.scans.len()
    }

    /// Drops `id` if it expired; when it is still there, the time it expires.
    fn expire(&mut self, id: u64) -> Option<Instant> {
        let expires = self.scans.get(&id)?.expires;
        if expires <= Instant::now() {
            self.scans.remove(&id);
            return None;
        }
        Some(expires)
    }
}

/// Holds `pages` on this core and starts the timer that drops them when idle.
fn hold(ctx: &Rc<CoreContext>, query_id: u64, pages: Pages, idle: Duration) -> u64 {
    let (id, evicted) = HELD.with(|h| h.borrow_mut().insert(query_id, pages, idle));
    if evicted > 0 {
        CoreStats::add(&ctx.stats.map_cursors_evicted, evicted as u64);
        tracing::debug!(evicted, "held MapShard scans dropped at the per-core limit");
    }
    glommio::spawn_local(async move {
        let mut wait = idle;
        loop {
            glommio::timer::sleep(wait).await;
            match HELD.with(|h| h.borrow_mut().expire(id)) {
                Some(at) => wait = at.saturating_duration_since(Instant::now()),
                None => break,
            }
        }
    })
    .detach();
    id
}

/// A scan running here for a peer, findable by its query id while it runs.
struct Running {
    query_id: u64,
    seq: u64,
}

impl Running {
    fn enter(query_id: u64, deadline: &Deadline) -> Option<Running> {
        if query_id == 0 {
            return None;
        }
        let seq = RUNNING_SEQ.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        RUNNING.with(|r| {
            r.borrow_mut()
                .entry(query_id)
                .or_default()
                .push((seq, deadline.clone()))
        });
        Some(Running { query_id, seq })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = RUNNING.try_with(|r| {
            let mut r = r.borrow_mut();
            if let Some(list) = r.get_mut(&self.query_id) {
                list.retain(|(seq, _)| *seq != self.seq);
                if list.is_empty() {
                    r.remove(&self.query_id);
                }
            }
        });
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
    // Live: a hung peer fails this within about the dial timeout, not the
    // write timeout, and a peer whose dials back off is still tried.
    let reply: MapShardResponse = cluster
        .shard_writer
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
fn peers(ctx: &CoreContext) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = ctx
        .membership
        .nodes()
        .iter()
        .copied()
        .filter(|n| *n != ctx.node_id)
        .collect();
    if !nodes.is_empty() {
        let len = nodes.len();
        nodes.rotate_left(next_turn() % len);
    }
    healthy_first(ctx, &mut nodes);
    nodes
}

/// Moves the nodes this core saw unreachable lately to the end (stable otherwise).
fn healthy_first(ctx: &CoreContext, nodes: &mut [NodeId]) {
    nodes.sort_by_key(|n| is_suspect(ctx, *n));
}

/// Whether this core saw `node` unreachable lately (see `ShardWriter::is_suspect`).
fn is_suspect(ctx: &CoreContext, node: NodeId) -> bool {
    ctx.cluster
        .as_ref()
        .is_some_and(|c| c.shard_writer.is_suspect(node))
}

/// A counter this core advances for every request: whose turn it is among replicas.
fn next_turn() -> usize {
    thread_local! {
        static NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    NEXT.with(|c| {
        let v = c.get();
        c.set(v.wrapping_add(1));
        v
    })
}

/// The cluster's ShardMapper: this node's cores first, then one owner of every shard
/// only other nodes hold.
pub struct ClusterMapper<'a> {
    pub ctx: &'a Rc<CoreContext>,
}

impl crate::query::ShardMapper for ClusterMapper<'_> {
    fn scan<'a>(
        &'a self,
        request: &'a ScanRequest,
    ) -> crate::query::LocalFuture<'a, Result<Vec<ShardScan>, QueryError>> {
        Box::pin(scan_cluster(self.ctx, request))
    }

    fn schema<'a>(
        &'a self,
        request: &'a SchemaRequest,
    ) -> crate::query::LocalFuture<'a, Result<Vec<ShardSchema>, QueryError>> {
        Box::pin(schema_cluster(self.ctx, request))
    }

    fn delete<'a>(
        &'a self,
        request: &'a crate::tsdb::read::delete::DeleteRequest,
    ) -> crate::query::LocalFuture<'a, Result<u64, QueryError>> {
        Box::pin(delete_cluster(self.ctx, request))
    }
}

/// Scans every shard the request covers: local ones here, the rest on one owner each.
/// Stops with the request's deadline, and once more than `max_points` values arrived.
///
/// With a bounded time range (at most [`MAX_PLANNED_GROUPS`] shard groups), placement
/// says which shards can exist and who owns them: each shard this node did not answer
/// for goes to one owner (rotating, so replicas share the work) and the owners are
/// asked all at once; the shards of an owner that fails go to the next owner. Without
/// such a bound the peers are asked one after another, each for what is still missing.
pub async fn scan_cluster(
    ctx: &Rc<CoreContext>,
    r: &ScanRequest,
) -> Result<Vec<ShardScan>, QueryError> {
    let mut shards = ctx.scan_node(r).await?;
    if ctx.cluster.is_none() {
        return Ok(shards);
    }
    start_canceller(ctx);
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
fn peers_by_health(ctx: &CoreContext) -> (Vec<NodeId>, Vec<NodeId>) {
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

/// Most shard groups [`scan_cluster`] plans owners for; a wider range asks in turn.
const MAX_PLANNED_GROUPS: i64 = 64;

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
fn plan(ctx: &CoreContext, r: &ScanRequest, seen: &BTreeSet<u64>) -> Option<Plan> {
    let snap = ctx.meta.snapshot();
    let policy = snap
        .database(&r.database)?
        .retention_policies
        .get(&r.retention_policy)?;
    let every = policy.shard_group_duration_ns;
    if every <= 0 {
        return None;
    }
    // In i128: an unbounded range runs from near i64::MIN to near i64::MAX.
    let group_of = |t: i64| i64::try_from((t as i128).div_euclid(every as i128) * every as i128);
    let (first, last) = (group_of(r.start_ns).ok()?, group_of(r.end_ns).ok()?);
    if (last as i128 - first as i128) / every as i128 >= MAX_PLANNED_GROUPS as i128 {
        return None;
    }
    let turn = next_turn();
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
    ctx: &Rc<CoreContext>,
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
    let mut open = OpenMap::new(node, r.query_id);
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
        match ask(ctx, node, &request).await {
            Ok(MapResponse::Scan {
                shards: page,
                next_offset,
                cursor: next_cursor,
            }) => {
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
async fn join_all<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
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
/// canceller task.
struct OpenMap {
    node: NodeId,
    query_id: u64,
    open: bool,
}

impl OpenMap {
    fn new(node: NodeId, query_id: u64) -> OpenMap {
        OpenMap {
            node,
            query_id,
            open: query_id != 0,
        }
    }

    fn done(&mut self) {
        self.open = false;
    }
}

impl Drop for OpenMap {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let _ = CANCELS.try_with(|c| {
            if let Some(tx) = c.borrow_mut().as_mut() {
                // At the limit the cancel is dropped: the peer's deadline and the
                // held-scan expiry still end its work.
                let _ = tx.try_send((self.node, self.query_id));
            }
        });
    }
}

thread_local! {
    /// This core's queue of cancels to send (started by the first cluster scan).
    static CANCELS: RefCell<Option<futures_channel::mpsc::Sender<(NodeId, u64)>>> =
        const { RefCell::new(None) };
}

/// Starts this core's canceller task if it is not running: it sends each queued
/// `Cancel`, one at a time, each bounded by [`CANCEL_TIMEOUT`].
fn start_canceller(ctx: &Rc<CoreContext>) {
    CANCELS.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_some() {
            return;
        }
        let (tx, mut rx) = futures_channel::mpsc::channel::<(NodeId, u64)>(MAX_QUEUED_CANCELS);
        *c = Some(tx);
        let weak: Weak<CoreContext> = Rc::downgrade(ctx);
        glommio::spawn_local(async move {
            use futures_lite::StreamExt;
            while let Some((node, query_id)) = rx.next().await {
                let Some(ctx) = weak.upgrade() else { break };
                let cancel = MapRequest::Cancel { query_id };
                let sent = futures_lite::future::or(
                    async { Some(ask(&ctx, node, &cancel).await) },
                    async {
                        glommio::timer::sleep(CANCEL_TIMEOUT).await;
                        None
                    },
                )
                .await;
                match sent {
                    Some(Ok(_)) => tracing::debug!(node, query_id, "remote scan cancelled"),
                    Some(Err(e)) => {
                        tracing::debug!(node, query_id, error = %e, "cancel not delivered")
                    }
                    None => tracing::debug!(node, query_id, "cancel timed out"),
                }
            }
        })
        .detach();
    });
}

/// The schema of every shard the request covers.
pub async fn schema_cluster(
    ctx: &Rc<CoreContext>,
    r: &SchemaRequest,
) -> Result<Vec<ShardSchema>, QueryError> {
    let mut shards = ctx
        .schema_node(r)
        .await
        .map_err(|e| QueryError::Unreachable(e.to_string()))?;
    if ctx.cluster.is_none() {
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
    schema_coverage(ctx, r, &shards, &seen, &failed)?;
    Ok(shards)
}

/// [`check_coverage`] for every policy a schema request covers.
fn schema_coverage(
    ctx: &CoreContext,
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
pub async fn delete_cluster(
    ctx: &Rc<CoreContext>,
    r: &crate::tsdb::read::delete::DeleteRequest,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::shard::{ColumnData, Value};

    fn series(key: &str, points: usize) -> SeriesData {
        SeriesData {
            key: key.to_string(),
            columns: vec![ColumnData {
                field: "v".into(),
                times: (0..points as i64).collect(),
                values: (0..points as i64).map(Value::Integer).collect(),
            }],
        }
    }

    fn answer() -> Vec<ShardScan> {
        vec![
            ShardScan {
                shard_id: 1,
                start_ns: 0,
                series: (0..5).map(|i| series(&format!("m,s=a{i}"), 10)).collect(),
            },
            ShardScan {
                shard_id: 2,
                start_ns: 0,
                series: Vec::new(),
            },
            ShardScan {
                shard_id: 3,
                start_ns: 10,
                series: (0..4).map(|i| series(&format!("m,s=b{i}"), 10)).collect(),
            },
        ]
    }

    /// (shard, key) of every series in pages, in order.
    fn flatten(pages: &[Vec<ShardScan>]) -> Vec<(u64, String)> {
        pages
            .iter()
            .flatten()
            .flat_map(|s| s.series.iter().map(move |x| (s.shard_id, x.key.clone())))
            .collect()
    }

    fn all_pages(mut pages: Pages) -> Vec<Vec<ShardScan>> {
        let mut out = Vec::new();
        while !pages.is_done() {
            out.push(pages.next());
        }
        out
    }

    #[test]
    fn pages_carry_every_series_once_in_order_and_every_shard_id() {
        let one = json_size(&series("m,s=a0", 10));
        let pages = all_pages(Pages::new(answer(), 0, 2 * one));
        assert_eq!(pages.len(), 5, "9 series, two a page");
        let whole = all_pages(Pages::new(answer(), 0, usize::MAX));
        assert_eq!(whole.len(), 1);
        assert_eq!(flatten(&pages), flatten(&whole));
        let ids: BTreeSet<u64> = pages.iter().flatten().map(|s| s.shard_id).collect();
        assert_eq!(
            ids,
            BTreeSet::from([1, 2, 3]),
            "the empty shard is reported too"
        );
        // A page holds at least one series, however small the limit.
        assert_eq!(all_pages(Pages::new(answer(), 0, 1)).len(), 9);
    }

    #[test]
    fn a_rescan_from_an_offset_continues_where_the_held_scan_would() {
        let one = json_size(&series("m,s=a0", 10));
        let mut held = Pages::new(answer(), 0, 3 * one);
        let first = held.next();
        let offset = held.offset;
        assert_eq!(offset, 3);
        let rest_held = all_pages(held);
        let rest_rescan = all_pages(Pages::new(answer(), offset, 3 * one));
        assert_eq!(flatten(&rest_held), flatten(&rest_rescan));
        let mut everything = vec![first];
        everything.extend(rest_held);
        assert_eq!(
            flatten(&everything),
            flatten(&all_pages(Pages::new(answer(), 0, usize::MAX)))
        );
        // An offset past the end gives an empty answer.
        assert!(flatten(&all_pages(Pages::new(answer(), 100, one))).is_empty());
    }

    #[test]
    fn held_scans_are_read_to_the_end_then_gone() {
        let one = json_size(&series("m,s=a0", 10));
        let mut held = Held::default();
        let (id, evicted) = held.insert(7, Pages::new(answer(), 0, 4 * one), HELD_SCAN_IDLE);
        assert_eq!(evicted, 0);
        let mut keys = 0;
        loop {
            match held.next_page(id).expect("held") {
                MapResponse::Scan {
                    shards,
                    next_offset,
                    cursor,
                } => {
                    keys += shards.iter().map(|s| s.series.len()).sum::<usize>();
                    if next_offset.is_none() {
                        assert_eq!(cursor, None);
                        break;
                    }
                    assert_eq!(cursor, Some(id));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(keys, 9);
        assert!(
            held.next_page(id).is_none(),
            "read to the end, it is dropped"
        );
    }

    #[test]
    fn held_scans_are_bounded_expire_and_drop_with_their_query() {
        let mut held = Held::default();
        let mut ids = Vec::new();
        for q in 0..MAX_HELD_SCANS as u64 {
            let (id, evicted) = held.insert(q, Pages::new(answer(), 0, 1), HELD_SCAN_IDLE);
            assert_eq!(evicted, 0);
            ids.push(id);
        }
        // Reading the first makes the second the least recently read.
        held.next_page(ids[0]).unwrap();
        let (_, evicted) = held.insert(99, Pages::new(answer(), 0, 1), HELD_SCAN_IDLE);
        assert_eq!(evicted, 1);
        assert_eq!(held.scans.len(), MAX_HELD_SCANS);
        assert!(
            held.next_page(ids[1]).is_none(),
            "the least recently read went"
        );
        assert!(held.next_page(ids[0]).is_some());

        assert_eq!(held.drop_query(99), 1);
        assert_eq!(held.drop_query(99), 0);

        let (id, _) = held.insert(5, Pages::new(answer(), 0, 1), Duration::ZERO);
        assert_eq!(held.expire(id), None, "idle past its time");
        assert!(held.next_page(id).is_none());
        let (id, _) = held.insert(5, Pages::new(answer(), 0, 1), HELD_SCAN_IDLE);
        assert!(held.expire(id).is_some());
    }

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
