//! One hinted-handoff queue: the segments, replay position and dead-letter log of one
//! (destination node, core) directory. See the `hh` module doc for the layout,
//! invariants, blocking calls and limits.
//!
//! In memory the queue is a list of segment metadata, head first. At most three
//! segments are open: the replay head, the append tail (which may be the same) and a
//! preallocated spare. Every sealed segment in the list holds at least one record not
//! yet delivered; a sealed segment the head has passed is deleted once the position
//! that says so is on disk.

use super::dead_letter::{DeadLetterEntry, DeadLetterLog, Written};
use super::position::{read_position, write_position, StoredPosition, POSITION_TMP_FILE};
use super::segment::{
    self, decode_at, FileSeam, ReadFault, Segment, MAX_PAYLOAD_BYTES, PAYLOAD_HEADER_BYTES,
};
use super::{now_ns, HhError, Limits, Position};
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A record at the replay head, copied out of its segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where the record starts; pass it back to [`Queue::dead_letter`].
    pub position: Position,
    pub shard_id: u64,
    pub enqueued_at_ns: i64,
    /// The line-protocol lines as appended.
    pub lines: Bytes,
}

impl Record {
    /// Bytes the record occupies in its segment, headers included.
    pub fn stored_bytes(&self) -> u64 {
        segment::record_bytes(self.lines.len() as u64)
    }

    /// The position just after the record: pass it to [`Queue::advance_to`] once this
    /// record and every one before it are delivered.
    pub fn next_position(&self) -> Position {
        Position {
            segment: self.position.segment,
            offset: self.position.offset + self.stored_bytes(),
        }
    }
}

/// What [`Queue::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments kept: each holds records still to replay.
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    /// Segments deleted: wholly before the replay position, or with nothing to replay.
    pub deleted_segments: u64,
    /// Segments that ended in a torn record (cut; the bytes are copied to the
    /// dead-letter log for inspection, and were never acknowledged).
    pub torn_tails: u64,
    pub torn_bytes: u64,
    /// Corrupt records: each one and everything after it in its segment was moved to
    /// the dead-letter log.
    pub corrupt_regions: u64,
    pub corrupt_bytes: u64,
    /// Segments that could not be opened or mapped, renamed to `*.seg.bad`.
    pub bad_segments: u64,
    /// The position file was missing (with segments present) or corrupt: replay starts
    /// at the first segment (records may be delivered twice, none is lost).
    pub position_reset: bool,
}

pub use crate::metrics::QueueStats;

#[derive(Clone, Copy, Debug)]
struct SegmentMeta {
    number: u64,
    /// File length.
    len: u64,
    /// Logical end of data: the append offset of the tail.
    end: u64,
    /// Records in the segment not yet delivered.
    records: u64,
    /// Newest enqueue time in the segment: max-age drops a whole segment on it.
    last_enqueued_at_ns: i64,
}

/// Appended bytes not yet flushed, per segment.
struct DirtyRange {
    number: u64,
    file: Arc<dyn segment::SegmentFile>,
    start: u64,
    end: u64,
}

/// A flush that runs off the core: `fdatasync` of every segment with appended bytes.
pub struct FlushJob {
    dir: String,
    ranges: Vec<DirtyRange>,
    upto: Position,
}

/// The result of a [`FlushJob`]: everything before `upto` is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushDone {
    pub upto: Position,
}

impl FlushJob {
    /// Blocking: one `fdatasync` per segment touched since the last flush.
    pub fn run(self) -> Result<FlushDone, HhError> {
        for range in &self.ranges {
            range.file.sync_data().map_err(|e| HhError::Failed {
                dir: self.dir.clone(),
                cause: format!("fdatasync of segment {}: {e}", range.number),
            })?;
        }
        Ok(FlushDone { upto: self.upto })
    }

    /// Appends this job makes durable end before this position.
    pub fn upto(&self) -> Position {
        self.upto
    }
}

/// A position write that runs off the core, then the unlink of the segments it makes
/// obsolete. Run commits one at a time, in the order they were taken.
#[derive(Debug)]
pub struct PositionCommit {
    dir: PathBuf,
    position: Position,
    delete: Vec<PathBuf>,
}

impl PositionCommit {
    pub fn position(&self) -> Position {
        self.position
    }

    /// Blocking: writes the position file (two `fsync`s), then unlinks replayed
    /// segments. An unlink that fails is only logged: the next open deletes segments
    /// before the position.
    pub fn run(self) -> Result<(), HhError> {
        write_position(&self.dir, self.position).map_err(|e| HhError::Failed {
            dir: self.dir.display().to_string(),
            cause: format!("writing the replay position: {e}"),
        })?;
        for path in &self.delete {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(segment = %path.display(), error = %e, "cannot delete a replayed hinted-handoff segment; the next open retries")
                }
            }
        }
        Ok(())
    }
}

/// A spare segment to create off the core; see [`Queue::spare_plan`].
pub struct SparePlan {
    seam: FileSeam,
    path: PathBuf,
    number: u64,
    size_bytes: u64,
}

impl std::fmt::Debug for SparePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparePlan")
            .field("path", &self.path)
            .field("size_bytes", &self.size_bytes)
            .finish()
    }
}

impl SparePlan {
    /// Blocking: creates, preallocates (`fallocate`) and maps the segment.
    pub fn build(self) -> Result<Segment, HhError> {
        Segment::create_with(&self.path, self.number, self.size_bytes, &self.seam)
            .map_err(|e| HhError::io("create segment", &self.path, e))
    }
}

/// One (destination node, core) hinted-handoff queue.
pub struct Queue {
    dir: PathBuf,
    limits: Limits,
    segments: VecDeque<SegmentMeta>,
    /// The first record not yet delivered. With no segments: the end of the last one
    /// deleted (or the stored position), which every future segment number passes.
    head: Position,
    /// The head segment when it is not the tail.
    head_map: Option<Segment>,
    /// The append target; its metadata is `segments.back()`.
    tail: Option<Segment>,
    spare: Option<Segment>,
    next_number: u64,
    queued_bytes: u64,
    queued_records: u64,
    last_enqueued_at_ns: i64,
    dirty: Vec<DirtyRange>,
    durable: Position,
    /// The in-memory head is ahead of the position file.
    position_dirty: bool,
    pending_deletes: Vec<PathBuf>,
    dead_letter: DeadLetterLog,
    stats: QueueStats,
    failed: Option<String>,
    /// Where [`Segment::append`] encodes a record before its `pwrite` (kept between
    /// appends up to [`segment::KEEP_SCRATCH_BYTES`]).
    scratch: Vec<u8>,
    /// Wraps the files of segments this queue creates (tests inject faults here).
    seam: FileSeam,
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir` and recovers it: every segment is
    /// scanned; torn tails are cut, corrupt records and what follows them in their
    /// segment go to the dead-letter log, unreadable segments are set aside. Never
    /// refuses to open over bad segments; it fails only when the directory itself is
    /// unusable. Blocking (see the module doc's estimate).
    pub fn open(dir: &Path, limits: Limits) -> Result<(Queue, RecoveryReport), HhError> {
        limits.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| HhError::io("create directory", dir, e))?;
        let _ = std::fs::remove_file(dir.join(POSITION_TMP_FILE));
        let stored = read_position(dir).unwrap_or_else(|error| {
            tracing::warn!(dir = %dir.display(), %error, "cannot read the hinted-handoff position file");
            StoredPosition::Corrupt
        });
        let (numbers, highest_seen) = list_segments(dir)?;
        let mut report = RecoveryReport::default();
        let start = match stored {
            StoredPosition::Found(position) => position,
            StoredPosition::Corrupt => {
                tracing::warn!(dir = %dir.display(), "hinted-handoff position is corrupt or unreadable; replaying from the first segment (records may be delivered twice)");
                report.position_reset = true;
                Position::default()
            }
            StoredPosition::Missing => {
                report.position_reset = !numbers.is_empty();
                Position::default()
            }
        };
        let mut queue = Queue::empty(dir, limits, start, highest_seen.max(start.segment) + 1);
        for number in numbers {
            if number < start.segment {
                queue.delete_file(&segment_path(dir, number));
                report.deleted_segments += 1;
                continue;
            }
            let offset = if number == start.segment {
                start.offset
            } else {
                0
            };
            queue.recover_segment(number, offset, &mut report);
        }
        queue.normalize_head();
        if stored != StoredPosition::Found(queue.head) {
            queue.position_dirty = true;
            // A failure leaves the queue failed (it says so on every write), not unopened.
            let _ = queue.persist();
        }
        queue.log_recovery(&report);
        Ok((queue, report))
    }

    fn empty(dir: &Path, limits: Limits, head: Position, next_number: u64) -> Queue {
        Queue {
            dir: dir.to_path_buf(),
            limits,
            segments: VecDeque::new(),
            head,
            head_map: None,
            tail: None,
            spare: None,
            next_number,
            queued_bytes: 0,
            queued_records: 0,
            last_enqueued_at_ns: i64::MIN,
            dirty: Vec::new(),
            durable: Position {
                segment: next_number,
                offset: 0,
            },
            position_dirty: false,
            pending_deletes: Vec::new(),
            dead_letter: DeadLetterLog::new(dir, limits.max_dead_letter_bytes),
            stats: QueueStats::default(),
            failed: None,
            scratch: Vec::new(),
            seam: segment::real_files(),
        }
    }

    /// Scans one segment from `offset`, handles a fault, and keeps the segment if it
    /// holds records to replay. The first kept segment stays mapped: it is the head.
    fn recover_segment(&mut self, number: u64, offset: u64, report: &mut RecoveryReport) {
        let path = segment_path(&self.dir, number);
        let mut segment = match Segment::open(&path, number) {
            Ok(segment) => segment,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.delete_file(&path);
                report.deleted_segments += 1;
                return;
            }
            Err(error) => {
                self.set_aside(&path, &error);
                report.bad_segments += 1;
                return;
            }
        };
        let mut meta = SegmentMeta {
            number,
            len: segment.len(),
            end: offset,
            records: 0,
            last_enqueued_at_ns: i64::MIN,
        };
        let mut fault = None;
        for item in segment.records_from(offset) {
            match item {
                Ok(record) => {
                    meta.records += 1;
                    meta.end = record.end();
                    meta.last_enqueued_at_ns = meta.last_enqueued_at_ns.max(record.enqueued_at_ns);
                }
                Err(found) => fault = Some(found),
            }
        }
        if let Some(fault) = fault {
            self.recover_fault(&mut segment, fault, report);
        }
        if meta.records == 0 {
            drop(segment);
            self.delete_file(&path);
            report.deleted_segments += 1;
            return;
        }
        report.segments += 1;
        report.records += meta.records;
        report.bytes += meta.end - offset;
        self.queued_records += meta.records;
        self.queued_bytes += meta.end - offset;
        self.last_enqueued_at_ns = self.last_enqueued_at_ns.max(meta.last_enqueued_at_ns);
        if self.segments.is_empty() {
            self.head = Position {
                segment: number,
                offset,
            };
            segment.advise_sequential_read();
            self.head_map = Some(segment);
        }
        self.segments.push_back(meta);
    }

    /// Moves the faulty bytes to the dead-letter log and zeroes them in the segment, so
    /// the next open finds a clean end there. If the dead-letter write failed, the bytes
    /// stay (the next open tries again); the queue moves on either way.
    fn recover_fault(
        &mut self,
        segment: &mut Segment,
        fault: ReadFault,
        report: &mut RecoveryReport,
    ) {
        let region = &segment.bytes()[fault.offset as usize..fault.data_end as usize];
        let bytes = region.len() as u64;
        let torn = fault.kind == segment::FaultKind::TornTail;
        tracing::warn!(segment = %segment.path().display(), offset = fault.offset, bytes, kind = ?fault.kind, "hinted-handoff recovery: {}; moving it to the dead-letter log", fault.describe());
        let entry = DeadLetterEntry {
            at_ns: now_ns(),
            segment: segment.number(),
            offset: fault.offset,
            shard_id: None,
            enqueued_at_ns: None,
            reason: fault.describe(),
            bytes: region,
        };
        let saved = self.save_dead_letter(&entry);
        if torn {
            report.torn_tails += 1;
            report.torn_bytes += bytes;
        } else {
            report.corrupt_regions += 1;
            report.corrupt_bytes += bytes;
            self.stats.dead_lettered_records += 1;
            self.stats.dead_lettered_bytes += bytes;
        }
        if saved {
            if let Err(error) = segment.zero_range(fault.offset, fault.data_end) {
                tracing::warn!(segment = %segment.path().display(), %error, "cannot zero moved-aside bytes; the next open moves them again");
            }
        }
    }

    /// Writes a dead-letter entry. True when the bytes may be dropped from the segment:
    /// saved, or deliberately not saved because the log is at its limit.
    fn save_dead_letter(&mut self, entry: &DeadLetterEntry<'_>) -> bool {
        match self.dead_letter.write(entry) {
            Ok(Written::Saved) => true,
            Ok(Written::OverLimit) => {
                self.stats.dead_letter_dropped += 1;
                tracing::error!(log = %self.dead_letter.path().display(), bytes = entry.bytes.len(), max_dead_letter_bytes = self.limits.max_dead_letter_bytes, "dead-letter log is full; dropping the entry");
                true
            }
            Err(error) => {
                self.stats.dead_letter_dropped += 1;
                tracing::error!(log = %self.dead_letter.path().display(), %error, "cannot write the dead-letter log; dropping the entry");
                false
            }
        }
    }

    fn log_recovery(&self, report: &RecoveryReport) {
        if report.records > 0
            || report.bad_segments + report.corrupt_regions + report.torn_tails > 0
        {
            tracing::info!(dir = %self.dir.display(), ?report, "hinted-handoff queue recovered");
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Routes the appends and syncs of every segment created from now on through
    /// `seam` (tests: a file that fails or tears a chosen write).
    pub fn set_file_seam(&mut self, seam: FileSeam) {
        self.seam = seam;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// True when no record waits for delivery.
    pub fn is_empty(&self) -> bool {
        self.queued_records == 0
    }

    /// The replay head: the first record not yet delivered.
    pub fn head_position(&self) -> Position {
        self.head
    }

    /// Everything appended before this position is on disk.
    pub fn durable_position(&self) -> Position {
        self.durable
    }

    /// True once the record [`Queue::append`] placed at `appended` is on disk.
    pub fn is_durable(&self, appended: Position) -> bool {
        appended < self.durable
    }

    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    pub(crate) fn check_writable(&self) -> Result<(), HhError> {
        match &self.failed {
            Some(cause) => Err(HhError::Failed {
                dir: self.dir_string(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&mut self, error: HhError) -> HhError {
        let cause = match &error {
            HhError::Failed { cause, .. } => cause.clone(),
            other => other.to_string(),
        };
        tracing::error!(dir = %self.dir.display(), %cause, "hinted-handoff queue failed; it takes no writes until the node restarts");
        self.failed.get_or_insert(cause);
        error
    }

    fn dir_string(&self) -> String {
        self.dir.display().to_string()
    }

    // ---- append and flush ----

    /// Appends one record of `lines` (concatenated as given) for `shard_id`, enqueued
    /// now. Returns where it starts; it is durable once [`Queue::is_durable`] says so
    /// (after the next flush). [`HhError::Full`] past max-size, and nothing changes.
    pub fn append(&mut self, shard_id: u64, lines: &[&[u8]]) -> Result<Position, HhError> {
        self.append_at(shard_id, lines, now_ns())
    }

    /// [`Queue::append`] with an explicit enqueue time. Times never go backwards within
    /// a queue: an earlier time is raised to the newest one (so age order is queue
    /// order even when the wall clock steps back).
    pub fn append_at(
        &mut self,
        shard_id: u64,
        lines: &[&[u8]],
        enqueued_at_ns: i64,
    ) -> Result<Position, HhError> {
        self.check_writable()?;
        let lines_bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();
        let record_bytes = segment::record_bytes(lines_bytes);
        if lines_bytes + PAYLOAD_HEADER_BYTES as u64 > MAX_PAYLOAD_BYTES as u64 {
            return Err(HhError::RecordTooLarge {
                record_bytes,
                max_record_bytes: segment::record_bytes(
                    MAX_PAYLOAD_BYTES as u64 - PAYLOAD_HEADER_BYTES as u64,
                ),
            });
        }
        if self.queued_bytes + record_bytes > self.limits.max_size_bytes {
            self.stats.full_rejections += 1;
            return Err(HhError::Full {
                dir: self.dir_string(),
                queued_bytes: self.queued_bytes,
                record_bytes,
                max_size_bytes: self.limits.max_size_bytes,
            });
        }
        self.make_room(record_bytes)?;
        let enqueued_at_ns = enqueued_at_ns.max(self.last_enqueued_at_ns);
        let tail = self.tail.as_mut().expect("make_room installs a tail");
        let meta = self.segments.back_mut().expect("the tail has metadata");
        debug_assert_eq!(meta.number, tail.number());
        let start = meta.end;
        let end = match tail.append(start, shard_id, enqueued_at_ns, lines, &mut self.scratch) {
            Ok(end) => end,
            Err(e) => {
                let cause = format!("pwrite to segment {}: {e}", meta.number);
                return Err(self.fail(HhError::Failed {
                    dir: self.dir_string(),
                    cause,
                }));
            }
        };
        meta.end = end;
        meta.records += 1;
        meta.last_enqueued_at_ns = enqueued_at_ns;
        self.note_dirty(start, end);
        self.last_enqueued_at_ns = enqueued_at_ns;
        self.queued_records += 1;
        self.queued_bytes += record_bytes;
        self.stats.appended_records += 1;
        self.stats.appended_bytes += record_bytes;
        Ok(Position {
            segment: self.segments.back().expect("tail").number,
            offset: start,
        })
    }

    fn note_dirty(&mut self, start: u64, end: u64) {
        let tail = self.tail.as_ref().expect("appended to the tail");
        match self.dirty.last_mut() {
            Some(range) if range.number == tail.number() => range.end = end,
            _ => self.dirty.push(DirtyRange {
                number: tail.number(),
                file: tail.file(),
                start,
                end,
            }),
        }
        self.stats.unflushed_bytes += end - start;
    }

    /// Makes sure the tail has `record_bytes` free: rolls to the spare, or creates a
    /// segment inline (blocking) when there is no fitting spare.
    fn make_room(&mut self, record_bytes: u64) -> Result<(), HhError> {
        if let Some(meta) = self.tail.as_ref().and(self.segments.back()) {
            if meta.len - meta.end >= record_bytes {
                return Ok(());
            }
        }
        let newest = self.newest_number();
        let next = match self.spare.take() {
            Some(spare) if spare.len() >= record_bytes && spare.number() > newest => spare,
            other => {
                if let Some(unfit) = other {
                    self.discard(unfit);
                }
                self.create_segment_inline(record_bytes)?
            }
        };
        self.roll_to(next);
        Ok(())
    }

    fn create_segment_inline(&mut self, record_bytes: u64) -> Result<Segment, HhError> {
        let number = self.next_number;
        self.next_number += 1;
        let path = segment_path(&self.dir, number);
        let size = self.limits.segment_size_bytes.max(record_bytes);
        tracing::debug!(segment = %path.display(), size, "creating a hinted-handoff segment inline (no spare ready)");
        Segment::create_with(&path, number, size, &self.seam)
            .map_err(|e| HhError::io("create segment", &path, e))
    }

    /// Seals the tail and makes `next` the append target.
    fn roll_to(&mut self, next: Segment) {
        if let Some(old) = self.tail.take() {
            let is_head = self
                .segments
                .front()
                .is_some_and(|m| m.number == old.number());
            if is_head {
                self.head_map = Some(old);
            }
        }
        debug_assert!(
            next.number() > self.newest_number(),
            "segment numbers only grow"
        );
        if self.segments.is_empty() {
            self.head = Position {
                segment: next.number(),
                offset: 0,
            };
        }
        self.segments.push_back(SegmentMeta {
            number: next.number(),
            len: next.len(),
            end: 0,
            records: 0,
            last_enqueued_at_ns: i64::MIN,
        });
        self.tail = Some(next);
        self.normalize_head();
    }

    /// A new tail must carry a higher number than this: the newest segment, or the
    /// head's segment (a position on disk may name it after its file was deleted, and
    /// the next open deletes every segment below the stored position).
    fn newest_number(&self) -> u64 {
        self.segments
            .back()
            .map_or(self.head.segment, |m| m.number.max(self.head.segment))
    }

    fn discard(&mut self, segment: Segment) {
        let path = segment.path().to_path_buf();
        drop(segment);
        self.delete_file(&path);
    }

    /// `fdatasync`s every segment appended to since the last flush, on this thread
    /// (blocking; see [`Queue::start_flush`]). After it returns, every appended record
    /// is durable. A failure fails the queue.
    pub fn flush(&mut self) -> Result<(), HhError> {
        match self.start_flush()? {
            Some(job) => {
                let done = job.run();
                self.finish_flush(done)
            }
            None => Ok(()),
        }
    }

    /// Takes everything appended since the last flush into a job to run on a blocking
    /// thread; `None` when nothing is waiting. Pass the job's result to
    /// [`Queue::finish_flush`].
    pub fn start_flush(&mut self) -> Result<Option<FlushJob>, HhError> {
        self.check_writable()?;
        if self.dirty.is_empty() {
            return Ok(None);
        }
        Ok(Some(FlushJob {
            dir: self.dir_string(),
            ranges: std::mem::take(&mut self.dirty),
            upto: self.append_position(),
        }))
    }

    /// Records a flush's outcome: on success the durable position moves up; on failure
    /// the queue fails (what reached the disk is unknown).
    pub fn finish_flush(&mut self, result: Result<FlushDone, HhError>) -> Result<(), HhError> {
        match result {
            Ok(done) => {
                self.durable = self.durable.max(done.upto);
                self.stats.flushes += 1;
                self.stats.unflushed_bytes = self.dirty.iter().map(|r| r.end - r.start).sum();
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Where the next append lands (or the durable mark when there is no tail).
    fn append_position(&self) -> Position {
        match (self.tail.as_ref(), self.segments.back()) {
            (Some(_), Some(meta)) => Position {
                segment: meta.number,
                offset: meta.end,
            },
            _ => self.durable,
        }
    }

    /// A spare segment to build on a blocking thread, when none is installed. Reserves
    /// its segment number. Keep one ready so appends never create a segment inline.
    pub fn spare_plan(&mut self) -> Option<SparePlan> {
        if self.spare.is_some() || self.failed.is_some() {
            return None;
        }
        let number = self.next_number;
        self.next_number += 1;
        Some(SparePlan {
            seam: self.seam.clone(),
            path: segment_path(&self.dir, number),
            number,
            size_bytes: self.limits.segment_size_bytes,
        })
    }

    /// Installs a built spare. Returns false (and deletes its file) when it is no longer
    /// usable: a spare is installed already, or the tail rolled past its number.
    pub fn install_spare(&mut self, spare: Segment) -> bool {
        if self.spare.is_some() || self.failed.is_some() || spare.number() <= self.newest_number() {
            self.discard(spare);
            return false;
        }
        self.spare = Some(spare);
        true
    }

    // ---- replay ----

    /// The record at the replay head, copied out; `None` when the queue is empty. A
    /// record that fails its crc here (the disk changed under us) is moved to the
    /// dead-letter log with the rest of its segment, and the next one is returned.
    pub fn head(&mut self) -> Result<Option<Record>, HhError> {
        Ok(self.peek(1, 0)?.pop())
    }

    /// Up to `max_records` records from the head, in order, while their total stays
    /// within `max_bytes` (at least one record is returned when the queue is not
    /// empty), for a pipelined send. Never crosses into the next segment.
    pub fn peek(&mut self, max_records: usize, max_bytes: u64) -> Result<Vec<Record>, HhError> {
        self.peek_from(self.head, max_records, max_bytes)
    }

    /// [`Queue::peek`] from `from` (a [`Record::next_position`] of a record already
    /// taken, so a pipelined replay copies each record once); from the head when the
    /// head has passed `from`. Empty when `from` is past the head segment's records:
    /// the window reaches into the next segment once the head does.
    pub fn peek_from(
        &mut self,
        from: Position,
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Vec<Record>, HhError> {
        let mut records = Vec::new();
        if max_records == 0 || !self.ensure_head_readable()? {
            return Ok(records);
        }
        let start = from.max(self.head);
        let (bytes, number) = self
            .head_bytes()
            .expect("ensure_head_readable maps the head");
        if start.segment != number {
            return Ok(records);
        }
        let mut taken_bytes = 0;
        for item in segment::read_records(bytes, start.offset) {
            let Ok(found) = item else { break };
            taken_bytes += found.stored_bytes();
            if !records.is_empty() && taken_bytes > max_bytes {
                break;
            }
            records.push(Record {
                position: Position {
                    segment: number,
                    offset: found.offset,
                },
                shard_id: found.shard_id,
                enqueued_at_ns: found.enqueued_at_ns,
                lines: Bytes::copy_from_slice(found.lines),
            });
            if records.len() == max_records {
                break;
            }
        }
        Ok(records)
    }

    /// Makes sure a good record sits at the head (moving corrupt bytes aside);
    /// false when the queue is empty.
    fn ensure_head_readable(&mut self) -> Result<bool, HhError> {
        loop {
            if self.is_empty() {
                return Ok(false);
            }
            let (bytes, _) = self
                .head_bytes()
                .expect("a non-empty queue has its head mapped");
            match decode_at(bytes, self.head.offset) {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => self.quarantine_head(None)?,
                Err(fault) => self.quarantine_head(Some(fault))?,
            }
        }
    }

    /// The head segment's bytes up to its logical end, and its number.
    fn head_bytes(&self) -> Option<(&[u8], u64)> {
        let meta = self.segments.front()?;
        let segment = match self.tail.as_ref() {
            Some(tail) if tail.number() == meta.number => tail,
            _ => self
                .head_map
                .as_ref()
                .filter(|s| s.number() == meta.number)?,
        };
        Some((&segment.bytes()[..meta.end as usize], meta.number))
    }

    /// Moves everything from the head to the end of the head segment to the dead-letter
    /// log and continues with the next segment (the queue never wedges).
    fn quarantine_head(&mut self, fault: Option<ReadFault>) -> Result<(), HhError> {
        let (bytes, number) = self.head_bytes().expect("head mapped");
        let region = bytes[self.head.offset as usize..].to_vec();
        let reason = fault.map_or("record missing before the segment's end (corrupt)", |f| {
            f.describe()
        });
        tracing::error!(dir = %self.dir.display(), segment = number, offset = self.head.offset, bytes = region.len(), "hinted-handoff replay: {reason}; moving the rest of the segment to the dead-letter log");
        let entry = DeadLetterEntry {
            at_ns: now_ns(),
            segment: number,
            offset: self.head.offset,
            shard_id: None,
            enqueued_at_ns: None,
            reason,
            bytes: &region,
        };
        let region_bytes = region.len() as u64;
        self.save_dead_letter(&entry);
        let meta = self.segments.front_mut().expect("head segment");
        self.stats.dead_lettered_records += meta.records;
        self.stats.dead_lettered_bytes += region_bytes;
        self.queued_records -= meta.records;
        self.queued_bytes -= region_bytes;
        meta.records = 0;
        self.head.offset = meta.end;
        self.position_dirty = true;
        self.normalize_head();
        self.persist()
    }

    /// Restores the head invariant after the head moved: a sealed head segment with
    /// nothing left is dropped (its file deleted after the next position write) and the
    /// head moves to the next segment, which gets mapped; one that cannot be mapped is
    /// set aside and its records counted as lost.
    fn normalize_head(&mut self) {
        while let Some(&front) = self.segments.front() {
            if self
                .tail
                .as_ref()
                .is_some_and(|t| t.number() == front.number)
            {
                self.head_map = None;
                return;
            }
            if front.records > 0 && self.head.offset < front.end {
                if self
                    .head_map
                    .as_ref()
                    .is_some_and(|s| s.number() == front.number)
                {
                    return;
                }
                let path = segment_path(&self.dir, front.number);
                match Segment::open(&path, front.number) {
                    Ok(segment) => {
                        segment.advise_sequential_read();
                        self.head_map = Some(segment);
                        return;
                    }
                    Err(error) => {
                        self.set_aside(&path, &error);
                        self.stats.lost_records += front.records;
                        self.queued_records -= front.records;
                        self.queued_bytes -= front.end - self.head.offset;
                    }
                }
            } else {
                self.pending_deletes
                    .push(segment_path(&self.dir, front.number));
            }
            self.segments.pop_front();
            self.head_map = None;
            self.head = match self.segments.front() {
                Some(next) => Position {
                    segment: next.number,
                    offset: 0,
                },
                None => Position {
                    segment: front.number,
                    offset: front.end,
                },
            };
            self.position_dirty = true;
        }
    }

    /// Moves the head past records until it reaches `to` or `limit` records were
    /// skipped (or, when purging, a record young enough to keep); returns how many.
    fn skip(&mut self, to: Position, limit: u64, why: Skip) -> Result<u64, HhError> {
        let mut skipped = 0;
        while skipped < limit && self.head < to && self.ensure_head_readable()? {
            let (bytes, _) = self.head_bytes().expect("readable head");
            let Ok(Some(record)) = decode_at(bytes, self.head.offset) else {
                unreachable!("ensure_head_readable checked the record")
            };
            if matches!(why, Skip::Purged { cutoff_ns } if record.enqueued_at_ns >= cutoff_ns) {
                break;
            }
            let (stored, end) = (record.stored_bytes(), record.end());
            let (records, bytes) = match why {
                Skip::Delivered => (
                    &mut self.stats.delivered_records,
                    &mut self.stats.delivered_bytes,
                ),
                Skip::Purged { .. } => {
                    (&mut self.stats.purged_records, &mut self.stats.purged_bytes)
                }
                Skip::DeadLettered => (
                    &mut self.stats.dead_lettered_records,
                    &mut self.stats.dead_lettered_bytes,
                ),
            };
            *records += 1;
            *bytes += stored;
            self.head.offset = end;
            self.segments.front_mut().expect("head segment").records -= 1;
            self.queued_records -= 1;
            self.queued_bytes -= stored;
            self.position_dirty = true;
            self.normalize_head();
            skipped += 1;
        }
        Ok(skipped)
    }

    /// The head record was delivered: moves past it and persists the new position
    /// (blocking; see [`Queue::advance_deferred`]). Only right after [`Queue::head`]
    /// with nothing moving the head in between (a purge, a dead-letter); a replay loop
    /// that interleaves those should use [`Queue::advance_to`], which cannot skip an
    /// undelivered record.
    pub fn advance(&mut self) -> Result<(), HhError> {
        self.check_writable()?;
        self.skip(far_end(), 1, Skip::Delivered)?;
        self.persist()
    }

    /// Every record before `to` was delivered (pipelined replay: pass the last
    /// delivered record's [`Record::next_position`]). Persists once. Returns how many
    /// records it moved past; a `to` the head has passed already moves nothing.
    pub fn advance_to(&mut self, to: Position) -> Result<u64, HhError> {
        self.check_writable()?;
        let skipped = self.skip(to, u64::MAX, Skip::Delivered)?;
        self.persist()?;
        Ok(skipped)
    }

    /// [`Queue::advance_to`] without the blocking position write: the head moves now
    /// and the returned commit (if any) writes the position on a blocking thread; pass
    /// its result to [`Queue::finish_commit`]. Until it ran, a crash replays these
    /// records again (never loses them).
    pub fn advance_deferred(&mut self, to: Position) -> Result<Option<PositionCommit>, HhError> {
        self.check_writable()?;
        self.skip(to, u64::MAX, Skip::Delivered)?;
        Ok(self.take_commit())
    }

    /// Records a deferred position write's outcome; a failure fails the queue.
    pub fn finish_commit(&mut self, result: Result<(), HhError>) -> Result<(), HhError> {
        result.map_err(|error| self.fail(error))
    }

    fn take_commit(&mut self) -> Option<PositionCommit> {
        if !self.position_dirty && self.pending_deletes.is_empty() {
            return None;
        }
        self.position_dirty = false;
        Some(PositionCommit {
            dir: self.dir.clone(),
            position: self.head,
            delete: std::mem::take(&mut self.pending_deletes),
        })
    }

    fn persist(&mut self) -> Result<(), HhError> {
        self.check_writable()?;
        match self.take_commit() {
            Some(commit) => {
                let result = commit.run();
                self.finish_commit(result)
            }
            None => Ok(()),
        }
    }

    /// The destination rejected `record` (the head) for good: it goes to the
    /// dead-letter log with `reason`, is counted and logged, and the head moves past it.
    /// A record the head has passed already (purged meanwhile) is left alone.
    pub fn dead_letter(&mut self, record: &Record, reason: &str) -> Result<(), HhError> {
        match self.dead_letter_deferred(record, reason)? {
            Some(commit) => {
                let result = commit.run();
                self.finish_commit(result)
            }
            None => Ok(()),
        }
    }

    /// [`Queue::dead_letter`] without the position write: the head moves now and the
    /// returned commit (if any) writes the position on a blocking thread (pass its
    /// result to [`Queue::finish_commit`]). The dead-letter log entry itself is still
    /// written (and synced) here: rare, and it must be on disk before the record leaves.
    pub fn dead_letter_deferred(
        &mut self,
        record: &Record,
        reason: &str,
    ) -> Result<Option<PositionCommit>, HhError> {
        self.check_writable()?;
        if record.position < self.head {
            return Ok(None);
        }
        if record.position != self.head {
            return Err(HhError::NotHead {
                dir: self.dir_string(),
                record: record.position,
                head: self.head,
            });
        }
        tracing::warn!(dir = %self.dir.display(), shard = record.shard_id, bytes = record.lines.len(), reason, "hinted-handoff record rejected for good; moving it to the dead-letter log");
        self.save_dead_letter(&DeadLetterEntry {
            at_ns: now_ns(),
            segment: record.position.segment,
            offset: record.position.offset,
            shard_id: Some(record.shard_id),
            enqueued_at_ns: Some(record.enqueued_at_ns),
            reason,
            bytes: &record.lines,
        });
        self.skip(record.next_position(), 1, Skip::DeadLettered)?;
        Ok(self.take_commit())
    }

    /// Drops the records enqueued longer than the limits' `max_age` ago.
    pub fn purge_expired(&mut self) -> Result<u64, HhError> {
        self.purge_older_than(self.limits.max_age)
    }

    /// Drops (and counts) the records enqueued more than `age` ago. Returns how many.
    pub fn purge_older_than(&mut self, age: Duration) -> Result<u64, HhError> {
        let age_ns = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
        self.purge_enqueued_before(now_ns().saturating_sub(age_ns))
    }

    /// Drops (and counts) the records enqueued before `cutoff_ns`. Whole segments
    /// older than the cutoff go without being read.
    pub fn purge_enqueued_before(&mut self, cutoff_ns: i64) -> Result<u64, HhError> {
        let purged = self.purge_moving_head(cutoff_ns)?;
        self.persist()?;
        Ok(purged)
    }

    /// [`Queue::purge_expired`] without the position write: returns how many records
    /// were purged and the commit to run on a blocking thread (pass its result to
    /// [`Queue::finish_commit`]).
    pub fn purge_expired_deferred(&mut self) -> Result<(u64, Option<PositionCommit>), HhError> {
        let age_ns = i64::try_from(self.limits.max_age.as_nanos()).unwrap_or(i64::MAX);
        let purged = self.purge_moving_head(now_ns().saturating_sub(age_ns))?;
        Ok((purged, self.take_commit()))
    }

    fn purge_moving_head(&mut self, cutoff_ns: i64) -> Result<u64, HhError> {
        self.check_writable()?;
        let mut purged = 0;
        while let Some(&front) = self.segments.front() {
            if front.records == 0 || front.last_enqueued_at_ns >= cutoff_ns {
                break;
            }
            let bytes = front.end - self.head.offset;
            self.stats.purged_records += front.records;
            self.stats.purged_bytes += bytes;
            self.queued_records -= front.records;
            self.queued_bytes -= bytes;
            purged += front.records;
            self.segments.front_mut().expect("front").records = 0;
            self.head.offset = front.end;
            self.position_dirty = true;
            self.normalize_head();
        }
        purged += self.skip(far_end(), u64::MAX, Skip::Purged { cutoff_ns })?;
        if purged > 0 {
            tracing::warn!(dir = %self.dir.display(), purged, cutoff_ns, "hinted-handoff records older than max-age purged");
        }
        Ok(purged)
    }

    /// Gauges and counters.
    pub fn stats(&self) -> QueueStats {
        let mut stats = self.stats.clone();
        stats.queued_bytes = self.queued_bytes;
        stats.queued_records = self.queued_records;
        stats.segment_files = self.segments.len() as u64 + self.spare.is_some() as u64;
        stats.disk_bytes = self.segments.iter().map(|m| m.len).sum::<u64>()
            + self.spare.as_ref().map_or(0, |s| s.len());
        stats.oldest_enqueued_at_ns = self.oldest_enqueued_at_ns();
        stats.dead_letter_file_bytes = self.dead_letter.bytes();
        stats.failed = self.failed.is_some();
        stats
    }

    /// Age of the record at the replay head.
    pub fn oldest_age(&self) -> Option<Duration> {
        self.stats().oldest_age_at(now_ns())
    }

    fn oldest_enqueued_at_ns(&self) -> Option<i64> {
        if self.is_empty() {
            return None;
        }
        let (bytes, _) = self.head_bytes()?;
        let at = self.head.offset as usize + segment::RECORD_HEADER_BYTES + 8;
        let field = bytes.get(at..at + 8)?;
        Some(i64::from_be_bytes(field.try_into().expect("8 bytes")))
    }

    fn set_aside(&mut self, path: &Path, error: &std::io::Error) {
        let mut bad = path.as_os_str().to_owned();
        bad.push(".bad");
        self.stats.bad_segments += 1;
        match std::fs::rename(path, &bad) {
            Ok(()) => {
                tracing::error!(segment = %path.display(), %error, "hinted-handoff segment cannot be read; set aside as .bad")
            }
            Err(rename) => {
                tracing::error!(segment = %path.display(), %error, %rename, "hinted-handoff segment cannot be read nor renamed; skipping it")
            }
        }
    }

    fn delete_file(&self, path: &Path) {
        if let Err(error) = std::fs::remove_file(path) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %path.display(), %error, "cannot delete a hinted-handoff file");
            }
        }
    }
}

/// Why records leave the head, for the counters.
#[derive(Clone, Copy, Debug)]
enum Skip {
    Delivered,
    Purged { cutoff_ns: i64 },
    DeadLettered,
}

fn far_end() -> Position {
    Position {
        segment: u64::MAX,
        offset: u64::MAX,
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(segment::segment_file_name(number))
}

/// Segment numbers in `dir`, sorted, and the highest number any segment file (set-aside
/// ones included) carries, so new segments never reuse a name.
fn list_segments(dir: &Path) -> Result<(Vec<u64>, u64), HhError> {
    let entries = std::fs::read_dir(dir).map_err(|e| HhError::io("list", dir, e))?;
    let mut numbers = Vec::new();
    let mut highest = 0;
    for entry in entries {
        let entry = entry.map_err(|e| HhError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = segment::parse_segment_file_name(name) {
            numbers.push(number);
            highest = highest.max(number);
        } else if let Some(number) = name
            .split_once(".seg.")
            .and_then(|(n, _)| n.parse::<u64>().ok())
        {
            highest = highest.max(number);
        }
    }
    numbers.sort_unstable();
    Ok((numbers, highest))
}
