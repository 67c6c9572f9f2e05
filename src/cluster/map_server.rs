//! The map server: the peer's side of the query path, one per core, owned by the
//! cluster service. It answers a coordinator's MapShard requests (scan, schema, delete,
//! cancel) over every core of this node.
//!
//! A scan is answered in pages of about `map-page-bytes` of series: it scans once,
//! sends the first page and holds the rest (a *held scan*, named by a cursor id in the
//! answer) until the coordinator asks for the next page, so every frame is bounded and
//! the coordinator pulls at its own pace. Held scans are limited per core
//! ([`MAX_HELD_SCANS`], the least recently read is dropped at the limit) and expire
//! [`HELD_SCAN_IDLE`] after their last page or at the query's deadline. A page whose
//! held scan is gone is served by scanning again and skipping to its offset: slower,
//! never wrong.
//!
//! Remote work ends with the query: each request carries the milliseconds the statement
//! may still run (the scan stops there by itself), and a `Cancel` with the query id
//! stops the scans of that query running here and drops what is held for it.

use crate::cluster::local::LocalNode;
use crate::cluster::map_wire::{
    MapRequest, MapResponse, MapShard, MapShardResponse, WireSeries, WireShardScan,
};
use crate::metrics::CoreStats;
use crate::query::QueryError;
use crate::tsdb::read::cancel::Deadline;
use crate::tsdb::read::scan::{ScanRequest, ShardScan};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

pub use crate::limits::MAX_HELD_SCANS;

/// A held scan not read for this long is dropped.
pub const HELD_SCAN_IDLE: Duration = Duration::from_millis(crate::limits::HELD_SCAN_IDLE_MS);

/// This core's map server.
pub struct MapServer {
    local: Rc<dyn LocalNode>,
    stats: Rc<CoreStats>,
    /// `[cluster] map-page-bytes`.
    page_bytes: usize,
    held: RefCell<Held>,
    /// Deadlines of the scans running for peers on this core, by query id.
    running: RefCell<HashMap<u64, Vec<(u64, Deadline)>>>,
    running_seq: Cell<u64>,
}

impl MapServer {
    pub fn new(local: Rc<dyn LocalNode>, stats: Rc<CoreStats>, page_bytes: usize) -> Rc<MapServer> {
        Rc::new(MapServer {
            local,
            stats,
            page_bytes,
            held: RefCell::new(Held::default()),
            running: RefCell::new(HashMap::new()),
            running_seq: Cell::new(0),
        })
    }

    /// Answers a peer's MapShard on this node (every core, over the mesh).
    pub async fn serve(self: &Rc<Self>, request: &MapShard) -> MapShardResponse {
        let response = match serde_json::from_slice::<MapRequest>(&request.json) {
            Err(e) => MapResponse::Error {
                message: format!("bad MapShard request: {e}"),
            },
            Ok(MapRequest::Scan {
                scan,
                exclude,
                offset,
                cursor,
            }) => self.serve_scan(scan, exclude, offset, cursor).await,
            Ok(MapRequest::Delete { delete }) => match self.local.delete(&delete).await {
                Ok(values) => MapResponse::Deleted { values },
                Err(e) => MapResponse::Error {
                    message: e.to_string(),
                },
            },
            Ok(MapRequest::Schema { schema, exclude }) => match self.local.schema(&schema).await {
                Err(e) => MapResponse::Error {
                    message: e.to_string(),
                },
                Ok(mut shards) => {
                    shards.retain(|s| !exclude.contains(&s.shard_id));
                    MapResponse::Schema { shards }
                }
            },
            Ok(MapRequest::Cancel { query_id }) => {
                CoreStats::add(&self.stats.map_cancels_received, 1);
                let scans = self
                    .running
                    .borrow()
                    .get(&query_id)
                    .map_or(0, |ds| ds.iter().inspect(|(_, d)| d.cancel()).count());
                let held = self.held.borrow_mut().drop_query(query_id);
                tracing::debug!(query_id, scans, held, "MapShard cancel");
                MapResponse::Cancelled { scans, held }
            }
        };
        MapShardResponse {
            json: Bytes::from(serde_json::to_vec(&response).expect("map responses serialise")),
        }
    }

    async fn serve_scan(
        self: &Rc<Self>,
        mut scan: ScanRequest,
        exclude: Vec<u64>,
        offset: usize,
        cursor: Option<u64>,
    ) -> MapResponse {
        if let Some(id) = cursor {
            let page = self.held.borrow_mut().next_page(id);
            if let Some(page) = page {
                CoreStats::add(&self.stats.map_pages_from_cursor, 1);
                return page;
            }
            CoreStats::add(&self.stats.map_rescans, 1);
        } else {
            CoreStats::add(&self.stats.map_requests_served, 1);
        }
        scan.deadline = Deadline::after(scan.budget_ms.map(Duration::from_millis));
        let _running = Running::enter(self, scan.query_id, &scan.deadline);
        let mut shards = match self.local.scan(&scan).await {
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
        let mut rest = Pages::new(shards, offset, self.page_bytes);
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
        let id = self.hold(scan.query_id, rest, expires);
        MapResponse::Scan {
            shards: page,
            next_offset,
            cursor: Some(id),
        }
    }

    /// Holds `pages` on this core and starts the timer that drops them when idle.
    fn hold(self: &Rc<Self>, query_id: u64, pages: Pages, idle: Duration) -> u64 {
        let (id, evicted) = self.held.borrow_mut().insert(query_id, pages, idle);
        if evicted > 0 {
            CoreStats::add(&self.stats.map_cursors_evicted, evicted as u64);
            tracing::debug!(evicted, "held MapShard scans dropped at the per-core limit");
        }
        let server: Weak<MapServer> = Rc::downgrade(self);
        glommio::spawn_local(async move {
            let mut wait = idle;
            loop {
                glommio::timer::sleep(wait).await;
                let Some(server) = server.upgrade() else {
                    break;
                };
                let expires = server.held.borrow_mut().expire(id);
                match expires {
                    Some(at) => wait = at.saturating_duration_since(Instant::now()),
                    None => break,
                }
            }
        })
        .detach();
        id
    }
}

/// What is left of a scan answer, page by page.
struct Pages {
    shards: VecDeque<WireShardScan>,
    /// About how many bytes of series (as JSON) a page carries.
    page_bytes: usize,
    /// Index of the next series to send, counted across shards in order.
    offset: usize,
}

impl Pages {
    /// The answer from series `skip` on.
    fn new(shards: Vec<ShardScan>, skip: usize, page_bytes: usize) -> Pages {
        let mut shards: VecDeque<WireShardScan> =
            shards.into_iter().map(WireShardScan::from).collect();
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
    fn next(&mut self) -> Vec<WireShardScan> {
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
            let taken: Vec<WireSeries> = front.series.drain(..n).collect();
            self.offset += n;
            if !front.series.is_empty() {
                if !taken.is_empty() {
                    out.push(WireShardScan {
                        shard_id: front.shard_id,
                        start_ns: front.start_ns,
                        series: taken,
                    });
                }
                return out;
            }
            let shard = self.shards.pop_front().expect("front exists");
            out.push(WireShardScan {
                shard_id: shard.shard_id,
                start_ns: shard.start_ns,
                series: taken,
            });
        }
        out
    }
}

/// Bytes of a series as JSON, without building the JSON.
fn json_size(series: &WireSeries) -> usize {
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

/// A scan running here for a peer, findable by its query id while it runs.
struct Running<'a> {
    server: &'a MapServer,
    query_id: u64,
    seq: u64,
}

impl<'a> Running<'a> {
    fn enter(server: &'a MapServer, query_id: u64, deadline: &Deadline) -> Option<Running<'a>> {
        if query_id == 0 {
            return None;
        }
        let seq = server.running_seq.get() + 1;
        server.running_seq.set(seq);
        server
            .running
            .borrow_mut()
            .entry(query_id)
            .or_default()
            .push((seq, deadline.clone()));
        Some(Running {
            server,
            query_id,
            seq,
        })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = self.server.running.borrow_mut();
        if let Some(list) = running.get_mut(&self.query_id) {
            list.retain(|(seq, _)| *seq != self.seq);
            if list.is_empty() {
                running.remove(&self.query_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::shard::{ColumnData, SeriesData, Value};
    use std::collections::BTreeSet;

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
    fn flatten(pages: &[Vec<WireShardScan>]) -> Vec<(u64, String)> {
        pages
            .iter()
            .flatten()
            .flat_map(|s| s.series.iter().map(move |x| (s.shard_id, x.key.clone())))
            .collect()
    }

    fn all_pages(mut pages: Pages) -> Vec<Vec<WireShardScan>> {
        let mut out = Vec::new();
        while !pages.is_done() {
            out.push(pages.next());
        }
        out
    }

    #[test]
    fn pages_carry_every_series_once_in_order_and_every_shard_id() {
        let one = json_size(&WireSeries::from(series("m,s=a0", 10)));
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
        let one = json_size(&WireSeries::from(series("m,s=a0", 10)));
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
        let one = json_size(&WireSeries::from(series("m,s=a0", 10)));
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
}
