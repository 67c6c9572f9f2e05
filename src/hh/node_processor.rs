//! Hinted handoff, network half: this core's queues per destination node, the enqueue
//! of a remote write an owner could not take, and the NodeProcessor that replays a
//! queue to its destination.
//!
//! Routing: every remote write of a series runs on the series' home core here
//! (`partition_key % cores`, PointsWriter), so one core's queue per destination holds
//! all of the series' backlog and its order is the order this node accepted the
//! writes, whatever the destination's core count.
//!
//! Ordering (issue 4): while a destination's queue is not empty, new writes for it go
//! behind the backlog (and do not count as that node's ack), so a replay never
//! overwrites a newer value with an older one.
//!
//! A record carries its shard's identity (database, policy, group bounds, precision,
//! default time) in a first line-protocol comment, `#shardcore {json}`, which every
//! parser skips: the record format stays DESIGN's `shard id | lines`.
//!
//! Replay: a window of up to `replay-max-inflight-records` records from the head goes
//! through the ShardWriter at once (see [`run_processor`]); the queue advances past
//! acknowledged records (the NEW position is persisted), a permanent rejection goes to
//! the dead-letter log,
//! anything else backs off from `retry-interval-ms` to `retry-max-interval-ms`. Bytes
//! sent per second are capped at `retry-rate-limit-bytes-per-second` so a returning
//! node keeps serving live writes.

use crate::base::shutdown::Shutdown;
use crate::cluster::shard_writer::{RemoteBatch, ShardWriter, ShardWriterError};
use crate::config::HintedHandoffConfig;
use crate::hh::{self, HhError, Limits, Position, Queue, QueueStats};
use crate::metrics::Latency;
use crate::net::wire::{Ping, Pong, WriteShardStatus};
use crate::placement::NodeId;
use crate::tsdb::shard::ShardMeta;
use futures_channel::oneshot;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The identity a record needs to be written on its destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RecordHeader {
    db: String,
    rp: String,
    start: i64,
    end: i64,
    precision: u8,
    default_time: i64,
    /// The destination's partition of the lines (replayed to its core holding it).
    #[serde(default)]
    partition: u32,
}

const HEADER_PREFIX: &[u8] = b"#shardcore ";

/// One destination's queue on this core, and the off-core work it has under way.
///
/// Blocking calls never run on the core: `fdatasync`s go to the group flusher
/// ([`QueueSlot::make_durable`]), spare segments are created by
/// [`QueueSlot::ensure_spare`], position writes by the NodeProcessor
/// ([`QueueSlot::advance`]), each on glommio's blocking thread pool.
struct QueueSlot {
    queue: RefCell<Queue>,
    /// A flusher task is running (at most one per queue).
    flushing: Cell<bool>,
    /// Enqueues waiting for a flush to finish; bounded by the callers (HTTP admission
    /// per core, one remote write per batch and owner).
    flush_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// A spare segment is being built.
    spare_building: Cell<bool>,
    /// Replay attempts that were not acknowledged (see `QueueStats::replay_failures`).
    replay_failures: Cell<u64>,
}

impl QueueSlot {
    fn new(queue: Queue) -> Rc<QueueSlot> {
        Rc::new(QueueSlot {
            queue: RefCell::new(queue),
            flushing: Cell::new(false),
            flush_waiters: RefCell::new(Vec::new()),
            spare_building: Cell::new(false),
            replay_failures: Cell::new(0),
        })
    }

    /// Waits until the record appended at `appended` is on disk: group commit, like the
    /// WAL's. One flusher task per queue runs `fdatasync` on a blocking thread and, when
    /// it returns, flushes again whatever was appended meanwhile, so concurrent
    /// enqueues share syncs. The flusher is a detached task: an enqueue that stops
    /// waiting cannot leave a flush half-done.
    async fn make_durable(self: &Rc<Self>, appended: Position) -> Result<(), HhError> {
        loop {
            {
                let queue = self.queue.borrow();
                queue.check_writable()?;
                if queue.is_durable(appended) {
                    return Ok(());
                }
            }
            let (tx, rx) = oneshot::channel();
            self.flush_waiters.borrow_mut().push(tx);
            self.ensure_flusher();
            let _ = rx.await;
        }
    }

    fn ensure_flusher(self: &Rc<Self>) {
        if self.flushing.replace(true) {
            return;
        }
        let slot = self.clone();
        glommio::spawn_local(async move {
            loop {
                let job = match slot.queue.borrow_mut().start_flush() {
                    Ok(Some(job)) => job,
                    // Nothing left to flush, or the queue failed (waiters see it).
                    Ok(None) | Err(_) => break,
                };
                let done = glommio::executor().spawn_blocking(move || job.run()).await;
                let _ = slot.queue.borrow_mut().finish_flush(done);
                slot.wake_flush_waiters();
            }
            slot.flushing.set(false);
            slot.wake_flush_waiters();
        })
        .detach();
    }

    fn wake_flush_waiters(&self) {
        for waiter in self.flush_waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Keeps a preallocated spare segment ready, built on a blocking thread, so an
    /// append that fills the tail does not create a segment on the core.
    fn ensure_spare(self: &Rc<Self>) {
        if self.spare_building.get() {
            return;
        }
        let Some(plan) = self.queue.borrow_mut().spare_plan() else {
            return;
        };
        self.spare_building.set(true);
        let slot = self.clone();
        glommio::spawn_local(async move {
            match glommio::executor().spawn_blocking(move || plan.build()).await {
                Ok(spare) => {
                    slot.queue.borrow_mut().install_spare(spare);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build a spare hinted-handoff segment; the next roll creates one inline")
                }
            }
            slot.spare_building.set(false);
        })
        .detach();
    }

    /// Every record before `to` was delivered: moves the head now and writes the NEW
    /// position on a blocking thread. Only the queue's NodeProcessor calls it, one at a
    /// time, so position writes run in order.
    async fn advance(&self, to: Position) -> Result<(), HhError> {
        let commit = self.queue.borrow_mut().advance_deferred(to)?;
        self.commit(commit).await
    }

    /// `record` was refused for good: to the dead-letter log, the NEW position written
    /// on a blocking thread (the dead-letter log's own sync stays on the core: rare).
    async fn dead_letter(&self, record: &hh::Record, reason: &str) -> Result<(), HhError> {
        let commit = self
            .queue
            .borrow_mut()
            .dead_letter_deferred(record, reason)?;
        self.commit(commit).await
    }

    /// Drops records older than max-age; the position write on a blocking thread.
    async fn purge_expired(&self) -> Result<u64, HhError> {
        let (purged, commit) = self.queue.borrow_mut().purge_expired_deferred()?;
        self.commit(commit).await?;
        Ok(purged)
    }

    /// Runs a position write on a blocking thread and records its outcome. Only the
    /// queue's NodeProcessor calls it, one at a time, so position writes run in order.
    async fn commit(&self, commit: Option<hh::queue::PositionCommit>) -> Result<(), HhError> {
        if let Some(commit) = commit {
            let result = glommio::executor()
                .spawn_blocking(move || commit.run())
                .await;
            self.queue.borrow_mut().finish_commit(result)?;
        }
        Ok(())
    }
}

/// This core's hinted handoff: its queues, one per destination node, the ShardWriter
/// that writes to the destinations, and a NodeProcessor task per queue.
pub struct HintedHandoff {
    data_dir: PathBuf,
    core: usize,
    limits: Limits,
    config: HintedHandoffConfig,
    shard_writer: Rc<ShardWriter>,
    shutdown: Arc<Shutdown>,
    queues: RefCell<HashMap<NodeId, Rc<QueueSlot>>>,
    /// Queues a core that no longer exists left behind (the node restarted with fewer
    /// cores): core `c` adopts those of cores `c + k * cores`, replays them and takes
    /// nothing new into them. Opened at start-up only, so the list is fixed.
    adopted: Vec<(NodeId, Rc<QueueSlot>)>,
    /// Remote writes in flight per (destination, shard), in arrival order.
    order: RefCell<WriteOrder>,
    /// Enqueue (append + group fdatasync) and replay round-trip latencies on this core, µs.
    enqueue_latency: RefCell<Latency>,
    replay_latency: RefCell<Latency>,
}

fn record_since(latency: &RefCell<Latency>, since: Instant) {
    latency.borrow_mut().record(since.elapsed());
}

impl HintedHandoff {
    pub fn limits(config: &HintedHandoffConfig) -> Limits {
        Limits {
            segment_size_bytes: config.segment_size_bytes,
            max_size_bytes: config.max_size_bytes,
            max_age: Duration::from_secs(config.max_age_seconds),
            ..Limits::default()
        }
    }

    /// Opens this core's existing queues, and those it adopts from cores the node no
    /// longer runs (start-up, blocking), and purges the queues of destinations no
    /// longer in the cluster. Returns the service and the destinations with a queue of
    /// this core's own, whose processors [`HintedHandoff::start_processors`] starts
    /// (with the adopted queues').
    pub fn open(
        data_dir: PathBuf,
        (core, cores): (usize, usize),
        config: &HintedHandoffConfig,
        members: &[NodeId],
        shard_writer: Rc<ShardWriter>,
        shutdown: Arc<Shutdown>,
    ) -> (HintedHandoff, Vec<NodeId>) {
        let mut hh = HintedHandoff {
            data_dir,
            core,
            limits: Self::limits(config),
            config: config.clone(),
            shard_writer,
            shutdown,
            queues: RefCell::new(HashMap::new()),
            adopted: Vec::new(),
            order: RefCell::new(WriteOrder::default()),
            enqueue_latency: RefCell::new(Latency::default()),
            replay_latency: RefCell::new(Latency::default()),
        };
        let mut found = Vec::new();
        for (node, queue_core, dir) in hh::list_queue_dirs(&hh.data_dir).unwrap_or_default() {
            if !members.contains(&node) {
                if queue_core == core {
                    let gone = hh::destination_dir(&hh.data_dir, node);
                    match hh::purge_destination(&gone) {
                        Ok(p) => tracing::warn!(
                            node,
                            ?p,
                            "purged the hinted-handoff queues of a node no longer in the cluster"
                        ),
                        Err(e) => {
                            tracing::warn!(node, error = %e, "cannot purge a removed node's queues")
                        }
                    }
                }
                continue;
            }
            if queue_core != core {
                let orphan = queue_core >= cores && queue_core % cores.max(1) == core;
                if orphan {
                    match Queue::open(&dir, hh.limits) {
                        Ok((queue, report)) if !queue.is_empty() => {
                            tracing::warn!(node, core, from_core = queue_core, ?report, "adopted the hinted-handoff queue of a core this node no longer runs; replaying it");
                            hh.adopted.push((node, QueueSlot::new(queue)));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(node, core, from_core = queue_core, error = %e, "cannot open an orphaned hinted-handoff queue")
                        }
                    }
                }
                continue;
            }
            match Queue::open(&dir, hh.limits) {
                Ok((queue, report)) => {
                    tracing::info!(node, core, ?report, "hinted-handoff queue opened");
                    hh.queues.borrow_mut().insert(node, QueueSlot::new(queue));
                    found.push(node);
                }
                Err(e) => {
                    tracing::error!(node, core, error = %e, "cannot open a hinted-handoff queue")
                }
            }
        }
        (hh, found)
    }

    /// Whether writes for `node` must go behind a backlog (this core's queue, or one
    /// it adopted, not empty).
    pub fn has_backlog(&self, node: NodeId) -> bool {
        let empty = |q: &QueueSlot| q.queue.borrow().is_empty();
        self.queues.borrow().get(&node).is_some_and(|q| !empty(q))
            || self.adopted.iter().any(|(n, q)| *n == node && !empty(q))
    }

    /// The queue for `node`, opened on first use (blocking, once per destination and
    /// core: a directory and an empty position file); `true` when it was just created
    /// (its processor must be started).
    fn queue(&self, node: NodeId) -> Result<(Rc<QueueSlot>, bool), HhError> {
        if let Some(q) = self.queues.borrow().get(&node) {
            return Ok((q.clone(), false));
        }
        let dir = hh::queue_dir(&self.data_dir, node, self.core);
        let (queue, _) = Queue::open(&dir, self.limits)?;
        let slot = QueueSlot::new(queue);
        self.queues.borrow_mut().insert(node, slot.clone());
        Ok((slot, true))
    }

    /// Appends a batch for `node`, settles `turn` as soon as the record is in the queue
    /// (so the next write of the shard may append behind it), then waits until it is
    /// durable (group flush off the core). `earlier_queued` is what the turn passes on
    /// if this append fails. Returns whether a processor must be started for a new
    /// queue, and the outcome.
    async fn enqueue(
        &self,
        node: NodeId,
        batch: &RemoteBatch,
        turn: WriteTurn,
        earlier_queued: bool,
    ) -> (bool, Result<(), HhError>) {
        let started = Instant::now();
        let (queue, created) = match self.queue(node) {
            Ok(found) => found,
            Err(e) => {
                turn.settle(earlier_queued);
                return (false, Err(e));
            }
        };
        let header = RecordHeader {
            db: batch.shard.database.clone(),
            rp: batch.shard.retention_policy.clone(),
            start: batch.shard.start_ns,
            end: batch.shard.end_ns,
            precision: batch.precision,
            default_time: batch.default_time_ns,
            partition: batch.partition,
        };
        let mut first = HEADER_PREFIX.to_vec();
        first.extend_from_slice(&serde_json::to_vec(&header).expect("header serialises"));
        first.push(b'\n');
        let mut parts: Vec<&[u8]> = Vec::with_capacity(batch.lines.len() * 2 + 1);
        parts.push(&first);
        for line in &batch.lines {
            parts.push(line);
            parts.push(b"\n");
        }
        let appended = queue.queue.borrow_mut().append(batch.shard.id, &parts);
        let appended = match appended {
            Ok(at) => at,
            Err(e) => {
                turn.settle(earlier_queued);
                return (created, Err(e));
            }
        };
        turn.settle(true);
        queue.ensure_spare();
        let durable = queue.make_durable(appended).await;
        if durable.is_ok() {
            record_since(&self.enqueue_latency, started);
        }
        (created, durable)
    }

    /// `node`'s core count, once a handshake with it said it.
    pub fn peer_cores(&self, node: NodeId) -> Option<u16> {
        self.shard_writer.peer_cores(node)
    }

    /// The place of a remote write of `shard` to `node` among those in flight.
    fn turn(&self, node: NodeId, shard: u64) -> WriteTurn {
        self.order.borrow_mut().turn((node, shard))
    }

    /// Per destination: its queue's counters (an adopted queue's beside, under the
    /// same destination).
    pub fn stats(&self) -> Vec<(NodeId, QueueStats)> {
        let stats_of = |n: NodeId, q: &QueueSlot| {
            let mut stats = q.queue.borrow().stats();
            stats.replay_failures = q.replay_failures.get();
            (n, stats)
        };
        let mut v: Vec<_> = self
            .queues
            .borrow()
            .iter()
            .map(|(n, q)| stats_of(*n, q))
            .chain(self.adopted.iter().map(|(n, q)| stats_of(*n, q)))
            .collect();
        v.sort_by_key(|(n, _)| *n);
        v
    }

    /// Enqueue (append + group fdatasync) and replay round-trip latencies on this core.
    pub fn latencies(&self) -> (Latency, Latency) {
        (
            self.enqueue_latency.borrow().clone(),
            self.replay_latency.borrow().clone(),
        )
    }

    fn queue_of(&self, node: NodeId) -> Option<Rc<QueueSlot>> {
        self.queues.borrow().get(&node).cloned()
    }
}

/// Rebuilds the remote batch of a record.
fn batch_of(record: &hh::Record) -> Result<RemoteBatch, String> {
    let lines = &record.lines;
    let end = memchr::memchr(b'\n', lines).ok_or("record without a header line")?;
    let header: RecordHeader = lines[..end]
        .strip_prefix(HEADER_PREFIX)
        .ok_or("record without a #shardcore header")
        .and_then(|json| serde_json::from_slice(json).map_err(|_| "bad record header"))?;
    Ok(RemoteBatch {
        shard: ShardMeta {
            id: record.shard_id,
            database: header.db,
            retention_policy: header.rp,
            start_ns: header.start,
            end_ns: header.end,
        },
        partition: header.partition,
        precision: header.precision,
        default_time_ns: header.default_time,
        // The header is a comment: the destination's parser skips it.
        lines: vec![lines.clone()],
    })
}

/// The answer to one replayed record: the destination's, a failure to reach it, or a
/// record that could not even be turned into a request.
enum Sent {
    Answer(Result<WriteShardStatus, ShardWriterError>),
    Unreadable(String),
}

/// A record of the replay window: sent (or refused before sending), not yet settled.
struct InFlight {
    record: hh::Record,
    sent_at: Instant,
    answer: Option<glommio::Task<Sent>>,
    /// The answer, once taken from the task.
    settled: Option<Sent>,
}

impl InFlight {
    async fn settle(&mut self) -> Sent {
        if let Some(sent) = self.settled.take() {
            return sent;
        }
        match self.answer.take() {
            Some(task) => task.await,
            None => Sent::Unreadable("replay answer taken twice".into()),
        }
    }

    /// Takes the answer if it has come, without waiting.
    fn poll_settled(&mut self) -> bool {
        if self.settled.is_none() {
            if let Some(task) = self.answer.as_mut() {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                if let std::task::Poll::Ready(sent) = std::pin::Pin::new(task).poll(&mut cx) {
                    self.answer = None;
                    self.settled = Some(sent);
                }
            }
        }
        self.settled.is_some()
    }
}

/// Paces sends to `limit` bytes/s (0 = none): each send starts no earlier than the
/// previous sends' bytes allow. No burst: a queue that was idle starts at the cap.
struct Pacer {
    limit: u64,
    next_at: Instant,
}

impl Pacer {
    async fn wait(&mut self, bytes: u64) {
        if self.limit == 0 {
            return;
        }
        let now = Instant::now();
        if self.next_at > now {
            glommio::timer::sleep(self.next_at - now).await;
        }
        self.next_at =
            self.next_at.max(now) + Duration::from_secs_f64(bytes as f64 / self.limit as f64);
    }
}

/// Replays `node`'s queue on this core until shutdown.
///
/// A window of up to `replay-max-inflight-records` records from the head is in flight
/// at once; answers are taken in queue order. Records of one shard share a connection
/// (the ShardWriter's lane), where the destination applies them in the order sent.
/// The position moves past a record only when it and every record before it are
/// acknowledged (one position write for every run of acknowledged records). A
/// retryable failure or an unreachable destination settles the whole window (every
/// request answered or timed out, so nothing sent earlier can land after a re-send),
/// backs off and re-sends from the first unacknowledged record, in order: records
/// after it that were applied are applied again, after it, so the destination ends
/// with the newest values (writes are idempotent per series and timestamp).
async fn run_processor(hh: Rc<HintedHandoff>, node: NodeId) {
    let Some(slot) = hh.queue_of(node) else {
        return;
    };
    replay(hh, node, slot).await
}

/// Replays one queue to `node` until shutdown (see [`run_processor`]).
async fn replay(hh: Rc<HintedHandoff>, node: NodeId, slot: Rc<QueueSlot>) {
    let config = hh.config.clone();
    let min_backoff = Duration::from_millis(config.retry_interval_ms);
    let max_backoff = Duration::from_millis(config.retry_max_interval_ms).max(min_backoff);
    let purge_every = Duration::from_secs(config.purge_interval_seconds.max(1));
    let max_inflight = config.replay_max_inflight_records.max(1);
    let mut backoff = min_backoff;
    let mut last_purge = Instant::now();
    let mut pacer = Pacer {
        limit: config.retry_rate_limit_bytes_per_second,
        next_at: Instant::now(),
    };
    let queue = &slot.queue;
    let mut window: VecDeque<InFlight> = VecDeque::with_capacity(max_inflight);
    while !hh.shutdown.is_requested() {
        if window.is_empty() && last_purge.elapsed() >= purge_every {
            last_purge = Instant::now();
            if let Err(e) = slot.purge_expired().await {
                tracing::warn!(node, error = %e, "hinted-handoff purge failed");
            }
        }
        if window.len() < max_inflight {
            let from = window
                .back()
                .map_or(queue.borrow().head_position(), |f| f.record.next_position());
            let wanted = max_inflight - window.len();
            let peeked = queue.borrow_mut().peek_from(from, wanted, u64::MAX);
            match peeked {
                Ok(records) => {
                    for record in records {
                        pacer.wait(record.lines.len() as u64).await;
                        window.push_back(send_record(&hh, node, record));
                    }
                }
                Err(e) if window.is_empty() => {
                    tracing::warn!(node, error = %e, "hinted-handoff queue unreadable; retrying");
                    glommio::timer::sleep(backoff).await;
                    continue;
                }
                Err(_) => {}
            }
        }
        let Some(front) = window.front_mut() else {
            backoff = min_backoff;
            glommio::timer::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let sent = front.settle().await;
        match sent {
            Sent::Answer(Ok(WriteShardStatus::Ok { .. })) => {
                record_since(&hh.replay_latency, front.sent_at);
                let mut to = front.record.next_position();
                window.pop_front();
                // Every acknowledged record right behind it goes with one position write.
                while let Some(next) = window.front_mut() {
                    if !next.poll_settled()
                        || !matches!(
                            next.settled,
                            Some(Sent::Answer(Ok(WriteShardStatus::Ok { .. })))
                        )
                    {
                        break;
                    }
                    record_since(&hh.replay_latency, next.sent_at);
                    to = next.record.next_position();
                    window.pop_front();
                }
                if let Err(e) = slot.advance(to).await {
                    tracing::error!(node, error = %e, "cannot persist the hinted-handoff position");
                    drain(&mut window).await;
                    glommio::timer::sleep(backoff).await;
                    continue;
                }
                backoff = min_backoff;
            }
            Sent::Answer(Ok(WriteShardStatus::Permanent { message }))
            | Sent::Unreadable(message) => {
                let record = window.pop_front().expect("front").record;
                let moved = slot.dead_letter(&record, &message).await;
                if let Err(e) = moved {
                    tracing::error!(node, error = %e, "cannot dead-letter a hinted-handoff record");
                    drain(&mut window).await;
                    glommio::timer::sleep(backoff).await;
                }
            }
            Sent::Answer(Ok(WriteShardStatus::Retryable { message })) => {
                slot.replay_failures.set(slot.replay_failures.get() + 1);
                tracing::debug!(node, %message, "hinted-handoff replay deferred");
                drain(&mut window).await;
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
            Sent::Answer(Err(e)) => {
                slot.replay_failures.set(slot.replay_failures.get() + 1);
                tracing::debug!(node, error = %e, "hinted-handoff destination not reachable");
                drain(&mut window).await;
                wait_for_peer(&hh, node, backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
    drain(&mut window).await;
}

/// Sends one record through the ShardWriter in its own task (so the window's requests
/// are in flight together).
fn send_record(hh: &HintedHandoff, node: NodeId, record: hh::Record) -> InFlight {
    let sent_at = Instant::now();
    let answer = match batch_of(&record) {
        Ok(batch) => {
            let writer = hh.shard_writer.clone();
            glommio::spawn_local(async move { Sent::Answer(writer.write(node, &batch).await) })
        }
        Err(reason) => glommio::spawn_local(async move { Sent::Unreadable(reason) }),
    };
    InFlight {
        record,
        sent_at,
        answer: Some(answer),
        settled: None,
    }
}

/// Waits until every request of the window is answered or timed out, and empties it:
/// after a failure, nothing sent before may land after the re-sends.
async fn drain(window: &mut VecDeque<InFlight>) {
    for mut entry in window.drain(..) {
        let _ = entry.settle().await;
    }
}

/// Waits out a back-off after the destination could not be reached, but pings it every
/// [`PING_EVERY`] and returns early once it answers: a node that comes back is replayed
/// to at once, not after a back-off that grew while it was down.
async fn wait_for_peer(hh: &HintedHandoff, node: NodeId, backoff: Duration) {
    let until = Instant::now() + backoff;
    while !hh.shutdown.is_requested() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        glommio::timer::sleep(left.min(PING_EVERY)).await;
        let pong: Result<Pong, _> = hh.shard_writer.request(node, 0, &Ping).await;
        if pong.is_ok() {
            return;
        }
    }
}

/// How often a waiting NodeProcessor pings its destination.
const PING_EVERY: Duration = Duration::from_millis(crate::limits::HH_PING_EVERY_MS);

/// Per (destination, shard), the remote writes in flight on this core as a chain of
/// oneshots in arrival order: each write learns from its predecessor whether it, or a
/// write before it, ended in the hinted-handoff queue.
///
/// Why (the reorder race of issue 4): writes W1 then W2 of a shard are in flight to
/// an owner together; W1 fails (retryable, timeout) and is queued, W2 is applied. The
/// queued W1 would replay after W2 and overwrite W2's values. So a write settles only
/// after its predecessor: if anything before it was queued, it is queued too, behind
/// it (even when the owner applied it: the replay applies it again, after W1), and it
/// does not count as that owner's ack. Writes behind a backlog append in this order
/// too. The ShardWriter's lanes keep writes of a shard in flight together on one
/// connection, so the owner applies them in send order.
///
/// Bounded by the writes in flight: an entry whose write settled is swept out when
/// the map has doubled since the last sweep.
#[derive(Default)]
struct WriteOrder {
    last: HashMap<(NodeId, u64), oneshot::Receiver<bool>>,
    sweep_at: usize,
}

impl WriteOrder {
    fn turn(&mut self, key: (NodeId, u64)) -> WriteTurn {
        if self.last.len() >= self.sweep_at.max(64) {
            self.last.retain(|_, rx| matches!(rx.try_recv(), Ok(None)));
            self.sweep_at = 2 * self.last.len();
        }
        let (done, rx) = oneshot::channel();
        // A predecessor that settled already does not matter: if it was queued and is
        // still in the queue, the caller sees the backlog (checked right after, with
        // no await between) and goes behind it; if the queue is empty, its record was
        // replayed before this write was sent.
        let after = self
            .last
            .insert(key, rx)
            .and_then(|mut previous| matches!(previous.try_recv(), Ok(None)).then_some(previous));
        WriteTurn { after, done }
    }
}

/// One remote write's place in its (destination, shard) chain.
struct WriteTurn {
    after: Option<oneshot::Receiver<bool>>,
    done: oneshot::Sender<bool>,
}

impl WriteTurn {
    /// Waits until the previous write of the chain settled: true when it or a write
    /// before it was queued (or it vanished without saying: assume queued, the safe
    /// side — the cost is one more replay).
    async fn earlier_queued(&mut self) -> bool {
        match self.after.take() {
            Some(rx) => rx.await.unwrap_or(true),
            None => false,
        }
    }

    /// Passes on whether this write or one before it is in the queue.
    fn settle(self, queued: bool) {
        let _ = self.done.send(queued);
    }
}

impl HintedHandoff {
    /// Starts the NodeProcessor of each destination whose queue [`HintedHandoff::open`]
    /// found.
    pub fn start_processors(self: &Rc<Self>, nodes: Vec<NodeId>) {
        for node in nodes {
            glommio::spawn_local(run_processor(self.clone(), node)).detach();
        }
        for (node, slot) in &self.adopted {
            glommio::spawn_local(replay(self.clone(), *node, slot.clone())).detach();
        }
    }

    /// A remote write on the shard's home core: behind the backlog if there is one,
    /// else direct, queued when the owner cannot take it now, or when an earlier write
    /// of the shard to that owner was queued meanwhile (see [`WriteOrder`]).
    pub async fn remote_write(self: &Rc<Self>, node: NodeId, batch: RemoteBatch) -> RemoteOutcome {
        remote_write(self, node, batch).await
    }
}

async fn remote_write(hh: &Rc<HintedHandoff>, node: NodeId, batch: RemoteBatch) -> RemoteOutcome {
    // No await between taking the turn and looking at the backlog (see WriteOrder::turn).
    let mut turn = hh.turn(node, batch.shard.id);
    if hh.has_backlog(node) {
        let earlier_queued = turn.earlier_queued().await;
        let why = "behind the hinted-handoff backlog".to_string();
        return enqueue(hh, node, &batch, why, false, turn, earlier_queued).await;
    }
    let sent = hh.shard_writer.write(node, &batch).await;
    let earlier_queued = turn.earlier_queued().await;
    match sent {
        Ok(WriteShardStatus::Ok { points_written }) if !earlier_queued => {
            turn.settle(false);
            RemoteOutcome::Applied(points_written as usize)
        }
        Ok(WriteShardStatus::Ok { .. }) => {
            let why = "applied, but an earlier write of this shard to this node was queued; \
                       queued behind it so its replay cannot overwrite this one"
                .to_string();
            enqueue(hh, node, &batch, why, false, turn, true).await
        }
        Ok(WriteShardStatus::Permanent { message }) => {
            turn.settle(earlier_queued);
            RemoteOutcome::Rejected(message)
        }
        Ok(WriteShardStatus::Retryable { message }) => {
            enqueue(hh, node, &batch, message, false, turn, earlier_queued).await
        }
        Err(e) => {
            let timeout = e.is_timeout();
            enqueue(
                hh,
                node,
                &batch,
                e.to_string(),
                timeout,
                turn,
                earlier_queued,
            )
            .await
        }
    }
}

async fn enqueue(
    hh: &Rc<HintedHandoff>,
    node: NodeId,
    batch: &RemoteBatch,
    why: String,
    timeout: bool,
    turn: WriteTurn,
    earlier_queued: bool,
) -> RemoteOutcome {
    let (created, result) = hh.enqueue(node, batch, turn, earlier_queued).await;
    if created {
        glommio::spawn_local(run_processor(hh.clone(), node)).detach();
    }
    match result {
        Ok(()) => RemoteOutcome::Hinted(why, timeout),
        Err(e) => RemoteOutcome::Failed(format!("{why}; hinted handoff refused it: {e}"), timeout),
    }
}

/// What became of a remote write.
#[derive(Debug)]
pub enum RemoteOutcome {
    /// The owner applied it (points written).
    Applied(usize),
    /// The owner refused it for good (e.g. a field type conflict).
    Rejected(String),
    /// Queued in hinted handoff (why it was not written directly; whether a timeout).
    Hinted(String, bool),
    /// Neither written nor queued.
    Failed(String, bool),
}

/// Per-destination queue counters as `/debug/vars` shows them.
pub fn stats_json(stats: &[(NodeId, QueueStats)]) -> serde_json::Value {
    let now = crate::base::time::now_ns();
    serde_json::Value::Array(
        stats
            .iter()
            .map(|(node, s)| {
                serde_json::json!({
                    "node": node,
                    "queueBytes": s.queued_bytes,
                    "queueRecords": s.queued_records,
                    "oldestAgeSeconds": s.oldest_age_at(now).map(|d| d.as_secs_f64()),
                    "delivered": s.delivered_records,
                    "deliveredBytes": s.delivered_bytes,
                    "deadLettered": s.dead_lettered_records,
                    "purged": s.purged_records,
                    "fullRejections": s.full_rejections,
                    "failed": s.failed,
                    "replayFailures": s.replay_failures,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor() -> glommio::LocalExecutor {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .expect("executor")
    }

    #[test]
    fn concurrent_enqueues_share_off_core_flushes_and_all_wait_for_durability() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            segment_size_bytes: 64 << 10,
            ..Limits::default()
        };
        let (queue, _) = Queue::open(dir.path(), limits).unwrap();
        let slot = QueueSlot::new(queue);
        executor().run(async move {
            let mut tasks = Vec::new();
            for i in 0..32u64 {
                let slot = slot.clone();
                tasks.push(glommio::spawn_local(async move {
                    let line = format!("cpu v={i} {i}\n");
                    let at = slot.queue.borrow_mut().append(i, &[line.as_bytes()]);
                    let at = at.unwrap();
                    slot.ensure_spare();
                    slot.make_durable(at).await.unwrap();
                    assert!(slot.queue.borrow().is_durable(at));
                }));
            }
            for task in tasks {
                task.await;
            }
            let stats = slot.queue.borrow().stats();
            assert_eq!(stats.appended_records, 32);
            assert_eq!(stats.unflushed_bytes, 0);
            assert!(
                (1..32).contains(&stats.flushes),
                "appends made while a sync ran share the next one: {} flushes",
                stats.flushes
            );
            // Replay advances write the NEW position off the core.
            let head = slot.queue.borrow_mut().peek(4, u64::MAX).unwrap();
            slot.advance(head[3].next_position()).await.unwrap();
            assert_eq!(slot.queue.borrow().stats().delivered_records, 4);
            assert_eq!(
                hh::position::read_position(slot.queue.borrow().dir()).unwrap(),
                hh::position::StoredPosition::Found(head[3].next_position())
            );
        });
    }
}
