//! Counters and latency histograms: kept per core without locks, merged on demand.
//!
//! Every core owns a [`CoreStats`] (counters in `Cell`s) and a [`CoreTimers`] (one
//! hdrhistogram per [`Timer`] in a `RefCell`); the hot path only bumps its own core's
//! cells. A reader (`/debug/vars`, `/metrics`, `SHOW STATS`, `shardcore stats`) asks
//! every core over the mesh for a [`CoreSnapshot`] — plain owned data, `Send` — and
//! folds them with [`CoreSnapshot::merge`]. Histograms merge exactly (hdrhistogram
//! adds bucket counts), so node-wide percentiles are true percentiles, not averages
//! of per-core ones.
//!
//! Latencies are recorded in microseconds from 1 µs to 1 hour with 3 significant
//! digits (values outside are clamped into the range, never dropped); each timer also
//! keeps the exact sum, which Prometheus' `_sum` wants.

use crate::placement::NodeId;
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::limits::LATENCY_MAX_US as MAX_MICROS;

/// One latency distribution: an hdrhistogram of µs plus the exact sum.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
    sum_micros: u64,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
            sum_micros: 0,
        }
    }
}

impl Latency {
    pub fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(micros);
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.hist.saturating_record(micros.clamp(1, MAX_MICROS));
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.hist.add(&other.hist);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// The value at quantile `q` (0..=1), µs; 0 when empty.
    pub fn quantile_micros(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }

    pub fn max_micros(&self) -> u64 {
        self.hist.max()
    }

    /// `{count, p50, p90, p99, p999, max, mean}` in µs, for JSON readers.
    pub fn summary_json(&self) -> serde_json::Value {
        let mean = if self.count() == 0 {
            0.0
        } else {
            self.sum_micros as f64 / self.count() as f64
        };
        serde_json::json!({
            "count": self.count(),
            "p50": self.quantile_micros(0.5),
            "p90": self.quantile_micros(0.9),
            "p99": self.quantile_micros(0.99),
            "p999": self.quantile_micros(0.999),
            "max": self.max_micros(),
            "mean": (mean * 10.0).round() / 10.0,
        })
    }
}

/// Counters of the ShardWriter's remote requests on one core.
#[derive(Default, Debug, Clone, Copy)]
pub struct ShardWriterStats {
    /// Remote shard writes, and the bytes of their lines.
    pub requests: u64,
    pub bytes: u64,
    /// Requests that failed after they were sent (timeout, connection failure, bad answer).
    pub failures: u64,
    /// Requests that found every connection of their pool full and had to wait.
    pub pool_waits: u64,
    pub dials: u64,
    /// Connections closed by a failure (each failed all its requests in flight).
    pub connections_failed: u64,
    /// Answers that came after their caller had given up (dropped).
    pub late_replies: u64,
    /// The most requests seen in flight on one connection at once.
    pub peak_in_flight: u64,
}

impl ShardWriterStats {
    /// Adds another core's counters (the peak is the higher of the two).
    pub fn add(&mut self, other: &ShardWriterStats) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.failures += other.failures;
        self.pool_waits += other.pool_waits;
        self.dials += other.dials;
        self.connections_failed += other.connections_failed;
        self.late_replies += other.late_replies;
        self.peak_in_flight = self.peak_in_flight.max(other.peak_in_flight);
    }
}

/// Gauges and counters of one hinted-handoff queue. Counters count since the queue
/// was opened
/// (recovery's dead-letters included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Bytes of records not yet delivered, headers included (what max-size bounds).
    pub queued_bytes: u64,
    pub queued_records: u64,
    /// Segment files, spare included, and their size on disk (preallocated).
    pub segment_files: u64,
    pub disk_bytes: u64,
    /// Enqueue time of the record at the replay head.
    pub oldest_enqueued_at_ns: Option<i64>,
    /// Appended bytes not yet flushed.
    pub unflushed_bytes: u64,
    pub appended_records: u64,
    pub appended_bytes: u64,
    pub full_rejections: u64,
    pub flushes: u64,
    pub delivered_records: u64,
    pub delivered_bytes: u64,
    /// Records moved to the dead-letter log (a corrupt region found at recovery counts
    /// as one: how many records it held cannot be known).
    pub dead_lettered_records: u64,
    pub dead_lettered_bytes: u64,
    /// Dead-letter entries not written (log at max-dead-letter-size, or I/O error).
    pub dead_letter_dropped: u64,
    pub dead_letter_file_bytes: u64,
    pub purged_records: u64,
    pub purged_bytes: u64,
    /// Segments set aside as `.bad` and the records known to be in them.
    pub bad_segments: u64,
    pub lost_records: u64,
    pub failed: bool,
    /// Replay attempts the destination did not acknowledge (unreachable, timed out,
    /// or a retryable answer); counted by the NodeProcessor.
    pub replay_failures: u64,
}

impl QueueStats {
    /// Adds another queue's figures (gauges and counters summed, the oldest record the
    /// older of the two).
    pub fn add(&mut self, other: &QueueStats) {
        self.queued_bytes += other.queued_bytes;
        self.queued_records += other.queued_records;
        self.segment_files += other.segment_files;
        self.disk_bytes += other.disk_bytes;
        self.oldest_enqueued_at_ns = match (self.oldest_enqueued_at_ns, other.oldest_enqueued_at_ns)
        {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.unflushed_bytes += other.unflushed_bytes;
        self.appended_records += other.appended_records;
        self.appended_bytes += other.appended_bytes;
        self.full_rejections += other.full_rejections;
        self.flushes += other.flushes;
        self.delivered_records += other.delivered_records;
        self.delivered_bytes += other.delivered_bytes;
        self.dead_lettered_records += other.dead_lettered_records;
        self.dead_lettered_bytes += other.dead_lettered_bytes;
        self.dead_letter_dropped += other.dead_letter_dropped;
        self.dead_letter_file_bytes += other.dead_letter_file_bytes;
        self.purged_records += other.purged_records;
        self.purged_bytes += other.purged_bytes;
        self.failed |= other.failed;
        self.replay_failures += other.replay_failures;
    }

    /// Age of the oldest queued record at `now_ns`.
    pub fn oldest_age_at(&self, now_ns: i64) -> Option<Duration> {
        let oldest = self.oldest_enqueued_at_ns?;
        Some(Duration::from_nanos(
            now_ns.saturating_sub(oldest).max(0) as u64
        ))
    }
}

/// What a histogram times. The first [`Timer::OWNED`] are kept in [`CoreTimers`]; the
/// rest are kept by their modules (ShardWriter, hinted handoff) and copied into a
/// snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A `/write` request, from its first byte read to its answer, by consistency.
    WriteAny,
    WriteOne,
    WriteQuorum,
    WriteAll,
    /// A batch written to a local shard: WAL room wait, append and group-commit sync.
    WalWrite,
    /// Waiting for a `/write` body to arrive (apart from the write itself: a slow
    /// client's time shows here, not in the write timers).
    WriteBodyRead,
    /// One InfluxQL statement, by kind.
    QuerySelect,
    QueryShow,
    QueryDelete,
    QueryOther,
    /// A head flushed into a data file, freeze to WAL segments removed.
    Flush,
    /// A compaction, planned to inputs removed.
    Compaction,
    /// A remote shard write, sent to answered (ShardWriter).
    ShardWriteRtt,
    /// Hinted handoff: an enqueue until durable, and a replayed record's round trip.
    HhEnqueue,
    HhReplay,
}

/// Prometheus name, label, help, and the `/debug/vars` key of a timer.
struct TimerInfo {
    metric: &'static str,
    label: Option<(&'static str, &'static str)>,
    help: &'static str,
    key: &'static str,
}

impl Timer {
    pub const ALL: [Timer; 15] = [
        Timer::WriteAny,
        Timer::WriteOne,
        Timer::WriteQuorum,
        Timer::WriteAll,
        Timer::WalWrite,
        Timer::WriteBodyRead,
        Timer::QuerySelect,
        Timer::QueryShow,
        Timer::QueryDelete,
        Timer::QueryOther,
        Timer::Flush,
        Timer::Compaction,
        Timer::ShardWriteRtt,
        Timer::HhEnqueue,
        Timer::HhReplay,
    ];

    /// Timers kept in [`CoreTimers`] (a prefix of `ALL`).
    const OWNED: usize = 12;

    fn info(self) -> TimerInfo {
        let write = "HTTP /write requests, body received to answer, by consistency level.";
        let query = "InfluxQL statements, parse excluded, by statement kind.";
        let (metric, label, help, key) = match self {
            Timer::WriteAny => (
                "write_request",
                Some(("consistency", "any")),
                write,
                "writeAny",
            ),
            Timer::WriteOne => (
                "write_request",
                Some(("consistency", "one")),
                write,
                "writeOne",
            ),
            Timer::WriteQuorum => (
                "write_request",
                Some(("consistency", "quorum")),
                write,
                "writeQuorum",
            ),
            Timer::WriteAll => (
                "write_request",
                Some(("consistency", "all")),
                write,
                "writeAll",
            ),
            Timer::WalWrite => (
                "wal_write",
                None,
                "Batches written to a local shard: WAL room wait, append and fsync.",
                "walWrite",
            ),
            Timer::WriteBodyRead => (
                "write_body_read",
                None,
                "HTTP /write bodies, request head parsed to body received (and decompressed).",
                "writeBodyRead",
            ),
            Timer::QuerySelect => (
                "query_statement",
                Some(("statement", "select")),
                query,
                "querySelect",
            ),
            Timer::QueryShow => (
                "query_statement",
                Some(("statement", "show")),
                query,
                "queryShow",
            ),
            Timer::QueryDelete => (
                "query_statement",
                Some(("statement", "delete")),
                query,
                "queryDelete",
            ),
            Timer::QueryOther => (
                "query_statement",
                Some(("statement", "other")),
                query,
                "queryOther",
            ),
            Timer::Flush => (
                "flush",
                None,
                "Heads flushed into data files, freeze to covered WAL segments removed.",
                "flush",
            ),
            Timer::Compaction => (
                "compaction",
                None,
                "Compactions of data files, planned to inputs removed (throttled by compaction-throughput-bytes-per-second).",
                "compaction",
            ),
            Timer::ShardWriteRtt => (
                "cluster_shard_write_rtt",
                None,
                "Remote shard writes, request sent to answer received.",
                "shardWriteRtt",
            ),
            Timer::HhEnqueue => (
                "hh_enqueue",
                None,
                "Hinted-handoff enqueues, until the record is durable.",
                "hhEnqueue",
            ),
            Timer::HhReplay => (
                "hh_replay_rtt",
                None,
                "Hinted-handoff replays, record sent to answer received.",
                "hhReplayRtt",
            ),
        };
        TimerInfo {
            metric,
            label,
            help,
            key,
        }
    }

    /// The `/debug/vars` key (`writeOne`, `walWrite`, ...).
    pub fn key(self) -> &'static str {
        self.info().key
    }
}

/// A core's own histograms (the first [`Timer::OWNED`] timers).
pub struct CoreTimers {
    slots: RefCell<Vec<Latency>>,
}

impl Default for CoreTimers {
    fn default() -> CoreTimers {
        CoreTimers {
            slots: RefCell::new((0..Timer::OWNED).map(|_| Latency::default()).collect()),
        }
    }
}

impl CoreTimers {
    /// Records the time since `start` under `timer` (a timer kept elsewhere is ignored).
    pub fn record(&self, timer: Timer, start: Instant) {
        if let Some(slot) = self.slots.borrow_mut().get_mut(timer as usize) {
            slot.record(start.elapsed());
        }
    }

    fn snapshot(&self) -> Vec<(Timer, Latency)> {
        Timer::ALL
            .iter()
            .zip(self.slots.borrow().iter())
            .map(|(t, l)| (*t, l.clone()))
            .collect()
    }
}

/// Declares the per-core counters once: the `Cell` struct, its plain snapshot, and
/// each counter's Prometheus name and help.
macro_rules! counters {
    ($($field:ident => $metric:literal, $help:literal;)*) => {
        /// This core's counters (`Cell`s: only this core's tasks touch them).
        #[derive(Default)]
        pub struct CoreStats {
            $(pub $field: Cell<u64>,)*
        }

        /// Counter values, one core's or merged.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $(pub $field: u64,)*
        }

        impl CoreStats {
            pub fn add(cell: &Cell<u64>, n: u64) {
                cell.set(cell.get().wrapping_add(n));
            }

            pub fn snapshot(&self) -> Counters {
                Counters { $($field: self.$field.get(),)* }
            }
        }

        impl Counters {
            pub fn merge(&mut self, other: &Counters) {
                $(self.$field = self.$field.wrapping_add(other.$field);)*
            }

            /// (Prometheus name without prefix, help, value) of every counter.
            pub fn each(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$(($metric, $help, self.$field),)*]
            }
        }
    };
}

counters! {
    write_requests => "http_write_requests_total", "HTTP /write requests received.";
    write_ok => "http_write_ok_total", "/write requests answered 204.";
    write_errors => "http_write_errors_total", "/write requests answered with an error (4xx/5xx), partial writes included.";
    write_partial => "http_write_partial_total", "/write requests that met consistency on some shards only.";
    write_timeouts => "http_write_timeouts_total", "/write requests that timed out waiting for owners.";
    write_rejected_busy => "http_write_busy_total", "/write requests refused with 503 (too many in progress on the core).";
    write_body_bytes => "http_write_body_bytes_total", "Bytes of /write bodies after gzip decoding.";
    points_written => "points_written_total", "Points accepted by /write.";
    points_dropped => "points_dropped_total", "Points of /write requests that were not stored (rejected, beyond retention, failed owners).";
    lines_unparsed => "lines_unparsed_total", "Lines of /write bodies that did not parse.";
    query_requests => "http_query_requests_total", "HTTP /query requests received.";
    query_statements => "query_statements_total", "InfluxQL statements executed.";
    query_errors => "query_statement_errors_total", "InfluxQL statements that ended in an error.";
    partial_scans => "query_partial_scans_total", "Measurement scans the shards answered with partial aggregates instead of raw points.";
    scans_stopped => "query_scans_stopped_total", "Core scans stopped early: the statement's deadline passed, it was cancelled, or max-select-point was reached.";
    map_requests_served => "cluster_map_requests_total", "MapShard scan requests (first pages) served for peers.";
    map_pages_from_cursor => "cluster_map_cursor_pages_total", "MapShard pages served from a held scan (no rescan).";
    map_rescans => "cluster_map_rescans_total", "MapShard pages that had to scan again (the held scan was gone: evicted, expired or on another core).";
    map_cancels_received => "cluster_map_cancels_total", "MapShard cancels received from coordinators.";
    map_cursors_evicted => "cluster_map_cursors_evicted_total", "Held MapShard scans dropped at the per-core limit before their coordinator read them.";
    mesh_writes_served => "mesh_writes_total", "Shard batches written for another core of this node.";
    remote_writes_served => "cluster_writes_served_total", "Shard writes received from peers.";
    writes_rerouted => "writes_rerouted_total", "Parts of shard writes from peers that arrived on a core not holding their partition (a shard's partition count, or the sender's idea of this node's core count, differs from the cores now) and were forwarded over the mesh.";
    auth_failures => "http_auth_failures_total", "Requests answered 401: no, unparsable or wrong credentials (InfluxDB's authFail).";
    auth_forbidden => "http_auth_forbidden_total", "Requests answered 403: authenticated, but lacking a privilege a statement or write needs.";
    auth_password_checks => "http_auth_password_checks_total", "Passwords checked with bcrypt (the others matched a password this core had checked).";
    auth_delayed => "http_auth_delayed_total", "Login attempts held back because their (source address, user) failed several times recently (brute-force back-off).";
    auth_backoff_refused => "http_auth_backoff_refused_total", "Login attempts answered 401 unchecked: their (source address, user) would have waited longer than auth-failure-delay-max-ms.";
    tls_handshakes => "http_tls_handshakes_total", "TLS handshakes completed on the HTTPS API.";
    tls_handshake_failures => "http_tls_handshake_failures_total", "Connections to the HTTPS API whose TLS handshake failed (not TLS, refused certificate, protocol error).";
    connections_steered => "http_connections_steered_total", "Client connections moved to the core that holds the database their first /query reads.";
    connections_header_timeouts => "http_connections_header_timeouts_total", "Client connections closed because a request head did not arrive within header-read-timeout-ms.";
    connections_idle_timeouts => "http_connections_idle_timeouts_total", "Keep-alive client connections closed after idle-timeout-ms without a request.";
    connections_evicted => "http_connections_evicted_total", "Idle client connections closed to make room for a new one at max-connections-per-core.";
    connections_refused => "http_connections_refused_total", "New client connections refused at max-connections-per-core (every open one busy in a request).";
    body_read_timeouts => "http_body_read_timeouts_total", "Requests answered 408 because their body did not arrive within body-read-timeout-ms.";
    cluster_rejected_connections => "cluster_rejected_connections_total", "Cluster connections refused (bad handshake, secret or limit).";
    wal_truncated_segments => "wal_truncated_segments_total", "WAL segments whose torn tail was cut at start-up.";
    retention_partitions_dropped => "retention_partitions_dropped_total", "Shard partitions dropped because their group ended before now minus their retention policy's duration.";
    retention_bytes_dropped => "retention_bytes_dropped_total", "Bytes on disk of the shard partitions retention dropped.";
    cq_query_ok => "cq_query_ok_total", "Continuous query runs this node made that succeeded.";
    cq_query_fail => "cq_query_fail_total", "Continuous query runs this node made that failed.";
    cq_points_written => "cq_points_written_total", "Points continuous query runs on this node wrote.";
}

/// A core's hinted-handoff queues and its enqueue and replay latencies.
pub type HintedHandoffView = (Vec<(NodeId, QueueStats)>, Latency, Latency);

/// Everything one core reports; merged across cores with [`CoreSnapshot::merge`].
#[derive(Clone, Debug, Default)]
pub struct CoreSnapshot {
    pub counters: Counters,
    /// Every timer of [`Timer::ALL`], in that order, after a merge.
    pub timers: Vec<(Timer, Latency)>,
    /// Hinted-handoff queues: (core, destination, stats).
    pub hinted_handoff: Vec<(usize, NodeId, QueueStats)>,
    pub shard_writer: Option<ShardWriterStats>,
    pub shard_writer_in_flight: u64,
}

impl CoreSnapshot {
    /// One core's view: its counters and histograms, and copies of those its modules keep.
    pub fn capture(
        core: usize,
        stats: &CoreStats,
        timers: &CoreTimers,
        shard_writer: Option<(ShardWriterStats, u64, Latency)>,
        hinted_handoff: Option<HintedHandoffView>,
    ) -> CoreSnapshot {
        let mut out = CoreSnapshot {
            counters: stats.snapshot(),
            timers: timers.snapshot(),
            ..CoreSnapshot::default()
        };
        let mut rtt = Latency::default();
        if let Some((s, in_flight, latency)) = shard_writer {
            out.shard_writer = Some(s);
            out.shard_writer_in_flight = in_flight;
            rtt = latency;
        }
        out.timers.push((Timer::ShardWriteRtt, rtt));
        let (mut enqueue, mut replay) = (Latency::default(), Latency::default());
        if let Some((queues, e, r)) = hinted_handoff {
            out.hinted_handoff = queues.into_iter().map(|(n, q)| (core, n, q)).collect();
            enqueue = e;
            replay = r;
        }
        out.timers.push((Timer::HhEnqueue, enqueue));
        out.timers.push((Timer::HhReplay, replay));
        out
    }

    /// Adds another core's snapshot into this one.
    pub fn merge(&mut self, other: CoreSnapshot) {
        self.counters.merge(&other.counters);
        if self.timers.is_empty() {
            self.timers = other.timers;
        } else {
            for ((_, mine), (_, theirs)) in self.timers.iter_mut().zip(other.timers.iter()) {
                mine.merge(theirs);
            }
        }
        self.hinted_handoff.extend(other.hinted_handoff);
        self.hinted_handoff
            .sort_by_key(|(core, node, _)| (*node, *core));
        if let Some(theirs) = other.shard_writer {
            let mine = self.shard_writer.get_or_insert_with(Default::default);
            mine.add(&theirs);
        }
        self.shard_writer_in_flight += other.shard_writer_in_flight;
    }

    pub fn timer(&self, timer: Timer) -> Option<&Latency> {
        self.timers
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|(_, l)| l)
    }

    /// Hinted-handoff queues summed per destination over cores.
    pub fn queues_by_destination(&self) -> Vec<(NodeId, QueueStats)> {
        let mut out: Vec<(NodeId, QueueStats)> = Vec::new();
        for (_, node, q) in &self.hinted_handoff {
            match out.iter_mut().find(|(n, _)| n == node) {
                Some((_, sum)) => sum.add(q),
                None => out.push((*node, q.clone())),
            }
        }
        out
    }
}

/// Node-wide gauges that are not per-core counters.
#[derive(Debug, Default)]
pub struct Gauges {
    pub uptime_seconds: f64,
    pub cores: usize,
    pub connections: u64,
    pub series: u64,
    pub cached_values: u64,
    pub cache_bytes: u64,
    pub shards: u64,
    pub databases: u64,
    /// Data files of the storage engine, their bytes and values.
    pub files: u64,
    pub file_bytes: u64,
    pub file_values: u64,
    /// Data files that did not open at start (moved aside).
    pub bad_files: u64,
    /// Bytes of WAL segments on disk (written since the flushes that cover the rest).
    pub wal_bytes: u64,
    /// Flushes of heads into files (count, file bytes, failures) since start.
    pub flushes: u64,
    pub flush_bytes: u64,
    pub flush_failures: u64,
    /// Writes refused past cache-max-bytes since start.
    pub cache_rejections: u64,
    /// Compactions (count, output bytes, failures) since start.
    pub compactions: u64,
    pub compaction_bytes: u64,
    pub compaction_failures: u64,
    /// Every core's cache of decoded blocks: hits, misses, evictions since start,
    /// bytes held now.
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    pub block_cache_evictions: u64,
    pub block_cache_bytes: u64,
}

/// When this process started (first call wins; `serve` calls it at start-up).
pub fn started() -> (Instant, std::time::SystemTime) {
    static STARTED: std::sync::OnceLock<(Instant, std::time::SystemTime)> =
        std::sync::OnceLock::new();
    *STARTED.get_or_init(|| (Instant::now(), std::time::SystemTime::now()))
}

/// One statistics group as InfluxDB's monitor reports it: `/debug/vars` entries
/// (`{"name", "tags", "values"}`) and `SHOW STATS` series.
#[derive(Debug)]
pub struct StatsGroup {
    pub name: &'static str,
    pub tags: Vec<(&'static str, String)>,
    /// Sorted by column name, as InfluxDB sorts them.
    pub values: Vec<(String, serde_json::Value)>,
}

impl StatsGroup {
    fn new(
        name: &'static str,
        tags: Vec<(&'static str, String)>,
        values: Vec<(&str, serde_json::Value)>,
    ) -> StatsGroup {
        let mut values: Vec<(String, serde_json::Value)> = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        StatsGroup { name, tags, values }
    }

    /// The `/debug/vars` key: the name, then the tag values (InfluxDB: `httpd:host:port`).
    pub fn key(&self) -> String {
        let mut key = self.name.to_string();
        for (_, v) in &self.tags {
            key.push(':');
            key.push_str(v);
        }
        key
    }

    pub fn tags_json(&self) -> serde_json::Value {
        if self.tags.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::Value::Object(
            self.tags
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect(),
        )
    }

    /// `{"name", "tags", "values"}` as in InfluxDB's `/debug/vars`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "tags": self.tags_json(),
            "values": serde_json::Value::Object(self.values.iter().cloned().collect()),
        })
    }
}

/// The statistics groups of a merged snapshot: InfluxDB's familiar `httpd`, `write`
/// and `queryExecutor` (with the keys we can count exactly), then ours.
pub fn stats_groups(snapshot: &CoreSnapshot, gauges: &Gauges, bind: &str) -> Vec<StatsGroup> {
    use serde_json::json;
    let c = &snapshot.counters;
    let ns = |t: Timer| snapshot.timer(t).map_or(0, |l| l.sum_micros()) * 1000;
    let write_ns =
        ns(Timer::WriteAny) + ns(Timer::WriteOne) + ns(Timer::WriteQuorum) + ns(Timer::WriteAll);
    let query_ns = ns(Timer::QuerySelect)
        + ns(Timer::QueryShow)
        + ns(Timer::QueryDelete)
        + ns(Timer::QueryOther);
    let mut groups = vec![
        StatsGroup::new(
            "httpd",
            vec![("bind", bind.to_string())],
            vec![
                ("writeReq", json!(c.write_requests)),
                ("writeReqBytes", json!(c.write_body_bytes)),
                ("writeReqDurationNs", json!(write_ns)),
                ("queryReq", json!(c.query_requests)),
                ("pointsWrittenOK", json!(c.points_written)),
                ("pointsWrittenDropped", json!(c.points_dropped)),
                ("clientError", json!(c.write_errors)),
                ("connections", json!(gauges.connections)),
                ("connectionsSteered", json!(c.connections_steered)),
                ("authFail", json!(c.auth_failures)),
                ("authForbidden", json!(c.auth_forbidden)),
                ("authPasswordChecks", json!(c.auth_password_checks)),
                ("authDelayed", json!(c.auth_delayed)),
                ("authBackoffRefused", json!(c.auth_backoff_refused)),
            ],
        ),
        StatsGroup::new(
            "write",
            Vec::new(),
            vec![
                ("req", json!(c.write_requests)),
                ("pointReq", json!(c.points_written + c.points_dropped)),
                ("writeOk", json!(c.write_ok)),
                ("writeError", json!(c.write_errors)),
                ("writePartial", json!(c.write_partial)),
                ("writeTimeout", json!(c.write_timeouts)),
                ("writeBusy", json!(c.write_rejected_busy)),
                ("pointsDropped", json!(c.points_dropped)),
                ("linesUnparsed", json!(c.lines_unparsed)),
            ],
        ),
        StatsGroup::new(
            "queryExecutor",
            Vec::new(),
            vec![
                ("queriesExecuted", json!(c.query_statements)),
                ("queriesFinished", json!(c.query_statements)),
                ("queryErrors", json!(c.query_errors)),
                ("partialScans", json!(c.partial_scans)),
                ("scansStopped", json!(c.scans_stopped)),
                ("queryDurationNs", json!(query_ns)),
            ],
        ),
        StatsGroup::new(
            "cq",
            Vec::new(),
            vec![
                ("queryOk", json!(c.cq_query_ok)),
                ("queryFail", json!(c.cq_query_fail)),
                ("pointsWritten", json!(c.cq_points_written)),
            ],
        ),
        StatsGroup::new(
            "store",
            Vec::new(),
            vec![
                ("numSeries", json!(gauges.series)),
                ("cachedValues", json!(gauges.cached_values)),
                ("cacheBytes", json!(gauges.cache_bytes)),
                ("numShards", json!(gauges.shards)),
                ("numDatabases", json!(gauges.databases)),
                ("walTruncatedSegments", json!(c.wal_truncated_segments)),
                ("meshWritesServed", json!(c.mesh_writes_served)),
            ],
        ),
        StatsGroup::new(
            "storage",
            Vec::new(),
            vec![
                ("headBytes", json!(gauges.cache_bytes)),
                ("headValues", json!(gauges.cached_values)),
                ("files", json!(gauges.files)),
                ("fileBytes", json!(gauges.file_bytes)),
                ("fileValues", json!(gauges.file_values)),
                (
                    "fileBytesPerValue",
                    json!(if gauges.file_values == 0 {
                        0.0
                    } else {
                        gauges.file_bytes as f64 / gauges.file_values as f64
                    }),
                ),
                ("badFiles", json!(gauges.bad_files)),
                ("walBytes", json!(gauges.wal_bytes)),
                ("flushes", json!(gauges.flushes)),
                ("flushBytes", json!(gauges.flush_bytes)),
                ("flushFailures", json!(gauges.flush_failures)),
                ("cacheFullRejections", json!(gauges.cache_rejections)),
                ("compactions", json!(gauges.compactions)),
                ("compactionBytes", json!(gauges.compaction_bytes)),
                ("compactionFailures", json!(gauges.compaction_failures)),
                ("blockCacheHits", json!(gauges.block_cache_hits)),
                ("blockCacheMisses", json!(gauges.block_cache_misses)),
                ("blockCacheEvictions", json!(gauges.block_cache_evictions)),
                ("blockCacheBytes", json!(gauges.block_cache_bytes)),
            ],
        ),
        StatsGroup::new(
            "retention",
            Vec::new(),
            vec![
                ("partitionsDropped", json!(c.retention_partitions_dropped)),
                ("bytesDropped", json!(c.retention_bytes_dropped)),
            ],
        ),
    ];
    if let Some(w) = &snapshot.shard_writer {
        groups.push(StatsGroup::new(
            "cluster",
            Vec::new(),
            vec![
                ("writeShardReq", json!(w.requests)),
                ("writeShardReqBytes", json!(w.bytes)),
                ("writeShardFail", json!(w.failures)),
                ("poolWaits", json!(w.pool_waits)),
                ("dials", json!(w.dials)),
                ("connectionsFailed", json!(w.connections_failed)),
                ("lateReplies", json!(w.late_replies)),
                ("inFlight", json!(snapshot.shard_writer_in_flight)),
                ("peakInFlight", json!(w.peak_in_flight)),
                ("remoteWritesServed", json!(c.remote_writes_served)),
                ("writesRerouted", json!(c.writes_rerouted)),
                ("mapReq", json!(c.map_requests_served)),
                ("mapCursorPages", json!(c.map_pages_from_cursor)),
                ("mapRescans", json!(c.map_rescans)),
                ("mapCancels", json!(c.map_cancels_received)),
                ("mapCursorsEvicted", json!(c.map_cursors_evicted)),
                ("rejectedConnections", json!(c.cluster_rejected_connections)),
            ],
        ));
    }
    let now = crate::base::time::now_ns();
    for (node, q) in snapshot.queues_by_destination() {
        groups.push(StatsGroup::new(
            "hh_processor",
            vec![("node", node.to_string())],
            vec![
                ("queueBytes", json!(q.queued_bytes)),
                ("queueDepth", json!(q.queued_records)),
                (
                    "oldestAgeSeconds",
                    json!(q
                        .oldest_enqueued_at_ns
                        .map_or(0.0, |t| (now - t).max(0) as f64 / 1e9)),
                ),
                ("writeShardReq", json!(q.appended_records)),
                ("bytesWritten", json!(q.appended_bytes)),
                ("writeNodeReqOK", json!(q.delivered_records)),
                ("bytesRead", json!(q.delivered_bytes)),
                ("failed", json!(q.failed)),
                ("writeNodeReqFail", json!(q.replay_failures)),
                ("writeBlocked", json!(q.full_rejections)),
                ("deadLettered", json!(q.dead_lettered_records)),
                ("purged", json!(q.purged_records)),
            ],
        ));
    }
    for (timer, l) in &snapshot.timers {
        groups.push(StatsGroup::new(
            "latency",
            vec![("timer", timer.key().to_string())],
            vec![
                ("count", json!(l.count())),
                ("p50Micros", json!(l.quantile_micros(0.5))),
                ("p90Micros", json!(l.quantile_micros(0.9))),
                ("p99Micros", json!(l.quantile_micros(0.99))),
                ("p999Micros", json!(l.quantile_micros(0.999))),
                ("maxMicros", json!(l.max_micros())),
                ("sumMicros", json!(l.sum_micros())),
            ],
        ));
    }
    groups
}

/// Quantiles each summary reports.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

/// The Prometheus text exposition format (version 0.0.4) of a merged snapshot.
/// Every metric is prefixed `shardcore_`; latencies are summaries in seconds.
pub fn prometheus_text(snapshot: &CoreSnapshot, gauges: &Gauges) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP shardcore_{name} {help}");
        let _ = writeln!(out, "# TYPE shardcore_{name} {kind}");
    };
    head(
        &mut out,
        "build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    let _ = writeln!(
        out,
        "shardcore_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let plain_gauges: [(&str, &str, f64); 24] = [
        (
            "uptime_seconds",
            "Seconds since the node started.",
            gauges.uptime_seconds,
        ),
        ("cores", "Executor threads (cores).", gauges.cores as f64),
        (
            "http_connections",
            "Open client connections.",
            gauges.connections as f64,
        ),
        (
            "series",
            "Series in the in-memory index.",
            gauges.series as f64,
        ),
        (
            "cached_values",
            "Field values held in shard caches.",
            gauges.cached_values as f64,
        ),
        (
            "cache_bytes",
            "Heap bytes of shard caches.",
            gauges.cache_bytes as f64,
        ),
        ("shards", "Shards open on this node.", gauges.shards as f64),
        (
            "data_files",
            "Data files of the storage engine.",
            gauges.files as f64,
        ),
        (
            "data_file_bytes",
            "Bytes on disk of the data files.",
            gauges.file_bytes as f64,
        ),
        (
            "data_file_values",
            "Values held in data files.",
            gauges.file_values as f64,
        ),
        (
            "data_files_bad",
            "Data files that did not open at start (moved aside to bad/).",
            gauges.bad_files as f64,
        ),
        (
            "wal_bytes",
            "Bytes of WAL segments on disk (those no flush covers yet).",
            gauges.wal_bytes as f64,
        ),
        (
            "flushes",
            "Heads flushed into data files since start.",
            gauges.flushes as f64,
        ),
        (
            "flush_bytes",
            "Bytes of data files written by flushes since start.",
            gauges.flush_bytes as f64,
        ),
        (
            "flush_failures",
            "Flushes that failed since start (retried; the WAL keeps the records).",
            gauges.flush_failures as f64,
        ),
        (
            "compactions",
            "Compactions of data files since start.",
            gauges.compactions as f64,
        ),
        (
            "compaction_bytes",
            "Bytes of data files written by compactions since start.",
            gauges.compaction_bytes as f64,
        ),
        (
            "compaction_failures",
            "Compactions that failed since start (their inputs stay in use).",
            gauges.compaction_failures as f64,
        ),
        (
            "cache_full_rejections",
            "Writes refused (503) because a core's heads were past cache-max-bytes.",
            gauges.cache_rejections as f64,
        ),
        (
            "block_cache_hits",
            "Data file blocks queries found decoded in the block cache since start.",
            gauges.block_cache_hits as f64,
        ),
        (
            "block_cache_misses",
            "Data file blocks queries read and decoded since start.",
            gauges.block_cache_misses as f64,
        ),
        (
            "block_cache_evictions",
            "Blocks the block cache let go at its limit since start.",
            gauges.block_cache_evictions as f64,
        ),
        (
            "block_cache_bytes",
            "Bytes of decoded blocks held by the block caches (block-cache-bytes per core).",
            gauges.block_cache_bytes as f64,
        ),
        (
            "databases",
            "Databases in the catalog.",
            gauges.databases as f64,
        ),
    ];
    for (name, help, value) in plain_gauges {
        head(&mut out, name, "gauge", help);
        let _ = writeln!(out, "shardcore_{name} {value}");
    }
    for (name, help, value) in snapshot.counters.each() {
        head(&mut out, name, "counter", help);
        let _ = writeln!(out, "shardcore_{name} {value}");
    }
    if let Some(w) = &snapshot.shard_writer {
        let counters = [
            (
                "cluster_shard_writes_total",
                "Remote shard writes sent.",
                w.requests,
            ),
            (
                "cluster_shard_write_bytes_total",
                "Line bytes of remote shard writes.",
                w.bytes,
            ),
            (
                "cluster_shard_write_failures_total",
                "Remote shard writes that failed after being sent.",
                w.failures,
            ),
            (
                "cluster_dials_total",
                "Connections opened to peers.",
                w.dials,
            ),
            (
                "cluster_connections_failed_total",
                "Peer connections closed by a failure.",
                w.connections_failed,
            ),
        ];
        for (name, help, value) in counters {
            head(&mut out, name, "counter", help);
            let _ = writeln!(out, "shardcore_{name} {value}");
        }
        head(
            &mut out,
            "cluster_shard_writes_in_flight",
            "gauge",
            "Remote shard writes waiting for an answer.",
        );
        let _ = writeln!(
            out,
            "shardcore_cluster_shard_writes_in_flight {}",
            snapshot.shard_writer_in_flight
        );
    }
    let queues = snapshot.queues_by_destination();
    if !queues.is_empty() {
        let now = crate::base::time::now_ns();
        type QueueField = fn(&QueueStats, i64) -> f64;
        let series: [(&str, &str, &str, QueueField); 8] = [
            (
                "hh_replay_failures_total",
                "counter",
                "Hinted-handoff replay attempts the destination did not acknowledge.",
                |q, _| q.replay_failures as f64,
            ),
            (
                "hh_queue_bytes",
                "gauge",
                "Hinted-handoff bytes waiting, per destination.",
                |q, _| q.queued_bytes as f64,
            ),
            (
                "hh_queue_records",
                "gauge",
                "Hinted-handoff records waiting, per destination.",
                |q, _| q.queued_records as f64,
            ),
            (
                "hh_oldest_record_age_seconds",
                "gauge",
                "Age of the oldest waiting hinted-handoff record (0 when empty).",
                |q, now| {
                    q.oldest_enqueued_at_ns
                        .map_or(0.0, |t| (now - t).max(0) as f64 / 1e9)
                },
            ),
            (
                "hh_delivered_records_total",
                "counter",
                "Hinted-handoff records replayed.",
                |q, _| q.delivered_records as f64,
            ),
            (
                "hh_dead_lettered_records_total",
                "counter",
                "Hinted-handoff records moved to the dead-letter file.",
                |q, _| q.dead_lettered_records as f64,
            ),
            (
                "hh_purged_records_total",
                "counter",
                "Hinted-handoff records dropped by max-age.",
                |q, _| q.purged_records as f64,
            ),
            (
                "hh_full_rejections_total",
                "counter",
                "Enqueues refused because the queue was at max-size.",
                |q, _| q.full_rejections as f64,
            ),
        ];
        for (name, kind, help, field) in series {
            head(&mut out, name, kind, help);
            for (node, q) in &queues {
                let _ = writeln!(out, "shardcore_{name}{{node=\"{node}\"}} {}", field(q, now));
            }
        }
    }
    let mut last_metric = "";
    for (timer, latency) in &snapshot.timers {
        let info = timer.info();
        let name = format!("{}_duration_seconds", info.metric);
        if info.metric != last_metric {
            head(&mut out, &name, "summary", info.help);
            last_metric = info.metric;
        }
        let label = info
            .label
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .unwrap_or_default();
        let sep = if label.is_empty() { "" } else { "," };
        for (q, text) in QUANTILES {
            let _ = writeln!(
                out,
                "shardcore_{name}{{{label}{sep}quantile=\"{text}\"}} {}",
                latency.quantile_micros(q) as f64 / 1e6
            );
        }
        let braces = if label.is_empty() {
            String::new()
        } else {
            format!("{{{label}}}")
        };
        let _ = writeln!(
            out,
            "shardcore_{name}_sum{braces} {}",
            latency.sum_micros() as f64 / 1e6
        );
        let _ = writeln!(out, "shardcore_{name}_count{braces} {}", latency.count());
    }
    out
}

/// `count` rounded summaries of every timer, keyed by [`Timer::key`], for JSON readers.
pub fn timers_json(snapshot: &CoreSnapshot) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (timer, latency) in &snapshot.timers {
        map.insert(timer.key().to_string(), latency.summary_json());
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_merge_exactly_and_clamp() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for us in 1..=100 {
            a.record_micros(us);
        }
        for us in 901..=1000 {
            b.record_micros(us);
        }
        b.record_micros(u64::MAX);
        a.merge(&b);
        assert_eq!(a.count(), 201);
        // The median of 1..=100 ∪ 901..=1000 (+ one clamped outlier) is in the upper half.
        assert!((900..=910).contains(&a.quantile_micros(0.5)));
        assert!(a.max_micros() >= MAX_MICROS);
        assert_eq!(Latency::default().quantile_micros(0.99), 0);
    }

    #[test]
    fn snapshots_merge_counters_timers_and_queues() {
        let stats = CoreStats::default();
        CoreStats::add(&stats.write_requests, 3);
        let timers = CoreTimers::default();
        timers.record(Timer::WriteOne, Instant::now());
        let q = QueueStats {
            queued_bytes: 10,
            oldest_enqueued_at_ns: Some(5),
            replay_failures: 2,
            ..QueueStats::default()
        };
        let one = CoreSnapshot::capture(
            0,
            &stats,
            &timers,
            None,
            Some((vec![(2, q.clone())], Latency::default(), Latency::default())),
        );
        let two = CoreSnapshot::capture(
            1,
            &stats,
            &timers,
            None,
            Some((vec![(2, q)], Latency::default(), Latency::default())),
        );
        let mut merged = CoreSnapshot::default();
        merged.merge(one);
        merged.merge(two);
        assert_eq!(merged.counters.write_requests, 6);
        assert_eq!(merged.timer(Timer::WriteOne).unwrap().count(), 2);
        assert_eq!(merged.timers.len(), Timer::ALL.len());
        let by_node = merged.queues_by_destination();
        assert_eq!(by_node.len(), 1);
        assert_eq!(by_node[0].1.queued_bytes, 20);
        let text = prometheus_text(&merged, &Gauges::default());
        assert!(text.contains("shardcore_http_write_requests_total 6\n"));
        assert!(text
            .contains("shardcore_write_request_duration_seconds_count{consistency=\"one\"} 2\n"));
        assert!(text.contains("shardcore_hh_queue_bytes{node=\"2\"} 20\n"));
        assert!(text.contains("shardcore_hh_replay_failures_total{node=\"2\"} 4\n"));
    }
}
