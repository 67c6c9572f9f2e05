//! Queue tests on real files in temp directories. Faults are made by hand: a torn tail
//! is the end of a record zeroed in the file, a flipped bit is one XOR, an unreadable
//! segment is a directory where a segment file should be; a torn `pwrite` or a failing
//! `fdatasync` comes from a fault-injecting file behind the queue's file seam.

use super::dead_letter::{read_dead_letters, DEAD_LETTER_FILE};
use super::position::{Position, POSITION_FILE};
use super::segment::{record_bytes, segment_file_name, MIN_RECORD_BYTES};
use super::*;
use proptest::prelude::*;
use std::time::Duration;

const SMALL_SEGMENT: u64 = 4096;
const HOUR_NS: i64 = 3600 * 1_000_000_000;

fn small_limits() -> Limits {
    Limits {
        segment_size_bytes: SMALL_SEGMENT,
        ..Limits::default()
    }
}

/// A line that names its id, padded to exactly `size` bytes when it is shorter.
fn body(id: u64, size: usize) -> Vec<u8> {
    let mut line = format!("cpu,host=h{id} id={id}i {id}").into_bytes();
    if line.len() + 1 < size {
        line.resize(size - 1, b'x');
    }
    line.push(b'\n');
    line
}

fn id_of(record: &Record) -> u64 {
    let text = std::str::from_utf8(&record.lines).unwrap();
    let start = text.find(" id=").unwrap() + 4;
    let end = start + text[start..].find('i').unwrap();
    text[start..end].parse().unwrap()
}

fn open(dir: &std::path::Path, limits: Limits) -> (Queue, RecoveryReport) {
    Queue::open(dir, limits).unwrap()
}

fn append(queue: &mut Queue, id: u64, size: usize) -> Position {
    queue.append(id, &[&body(id, size)]).unwrap()
}

/// Delivers everything: head, check, advance. Returns the ids in order.
fn drain(queue: &mut Queue) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Some(record) = queue.head().unwrap() {
        assert_eq!(
            record.shard_id,
            id_of(&record),
            "shard id travels with the record"
        );
        ids.push(id_of(&record));
        queue.advance_to(record.next_position()).unwrap();
    }
    assert!(queue.is_empty());
    ids
}

fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn corrupt(path: &std::path::Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn append_read_advance_across_segment_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!(report, RecoveryReport::default());
    assert!(queue.is_empty() && queue.head().unwrap().is_none());
    for id in 1..=30 {
        append(&mut queue, id, 400);
    }
    // 424-byte records, 9 to a 4 KiB segment: four segments.
    assert_eq!(segment_files(dir.path()).len(), 4);
    let stats = queue.stats();
    assert_eq!(stats.queued_records, 30);
    assert_eq!(stats.queued_bytes, 30 * record_bytes(400));
    let first = queue.head().unwrap().unwrap();
    assert_eq!((id_of(&first), first.position.offset), (1, 0));
    assert_eq!(
        queue.head().unwrap().unwrap(),
        first,
        "head does not move by itself"
    );
    queue.advance().unwrap();
    assert_eq!(id_of(&queue.head().unwrap().unwrap()), 2);
    let rest = drain(&mut queue);
    assert_eq!(rest, (2..=30).collect::<Vec<_>>());
    // Replayed sealed segments are gone; only the tail stays for more appends.
    assert_eq!(segment_files(dir.path()), vec![segment_file_name(4)]);
    assert_eq!(queue.stats().delivered_records, 30);
    assert_eq!(queue.stats().queued_bytes, 0);
    append(&mut queue, 31, 10);
    assert_eq!(drain(&mut queue), vec![31]);
}

#[test]
fn restart_resumes_at_the_persisted_position_without_skips_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    for id in 1..=25 {
        append(&mut queue, id, 300);
    }
    queue.flush().unwrap();
    for expected in 1..=7 {
        let record = queue.head().unwrap().unwrap();
        assert_eq!(id_of(&record), expected);
        queue.advance().unwrap();
    }
    drop(queue);
    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!(report.records, 18);
    assert!(!report.position_reset);
    assert_eq!(id_of(&queue.head().unwrap().unwrap()), 8);
    // Pipelined: deliver three, advance once.
    let window = queue.peek(3, u64::MAX).unwrap();
    assert_eq!(window.iter().map(id_of).collect::<Vec<_>>(), vec![8, 9, 10]);
    assert_eq!(queue.advance_to(window[2].next_position()).unwrap(), 3);
    assert_eq!(
        queue.advance_to(window[1].next_position()).unwrap(),
        0,
        "already past"
    );
    drop(queue);
    let (mut queue, _) = open(dir.path(), small_limits());
    // Appends after a restart go behind the backlog, into a new segment.
    append(&mut queue, 26, 300);
    assert_eq!(drain(&mut queue), (11..=26).collect::<Vec<_>>());
    drop(queue);
    let (queue, report) = open(dir.path(), small_limits());
    assert!(queue.is_empty());
    assert_eq!(report.records, 0);
    assert!(
        segment_files(dir.path()).is_empty(),
        "{:?}",
        segment_files(dir.path())
    );
}

#[test]
fn flush_makes_appends_durable_on_and_off_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    let a = append(&mut queue, 1, 10);
    assert!(!queue.is_durable(a));
    assert_eq!(
        queue.stats().unflushed_bytes,
        record_bytes(body(1, 10).len() as u64)
    );
    queue.flush().unwrap();
    assert!(queue.is_durable(a));
    assert_eq!(queue.stats().unflushed_bytes, 0);
    // Off the core: the job is Send and runs on another thread.
    let b = append(&mut queue, 2, 5000);
    let job = queue.start_flush().unwrap().expect("something to flush");
    let c = append(&mut queue, 3, 10);
    let done = std::thread::spawn(move || job.run()).join().unwrap();
    queue.finish_flush(done).unwrap();
    assert!(queue.is_durable(b));
    assert!(!queue.is_durable(c), "appended after the job was taken");
    queue.flush().unwrap();
    assert!(queue.is_durable(c));
    assert!(queue.start_flush().unwrap().is_none());
    assert_eq!(queue.stats().flushes, 3);
}

#[test]
fn a_preallocated_spare_becomes_the_next_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    let plan = queue.spare_plan().unwrap();
    let spare = std::thread::spawn(move || plan.build())
        .join()
        .unwrap()
        .unwrap();
    let spare_number = spare.number();
    assert!(queue.install_spare(spare));
    let first = append(&mut queue, 1, 10);
    assert_eq!(
        first.segment, spare_number,
        "the first append takes the spare"
    );
    assert!(queue.spare_plan().is_some(), "no spare installed now");
    // A spare whose number the tail has rolled past is refused and deleted.
    let other_dir = tempfile::tempdir().unwrap();
    let (mut other, _) = open(other_dir.path(), small_limits());
    let stale_plan = other.spare_plan().unwrap();
    let stale = stale_plan.build().unwrap();
    let stale_path = stale.path().to_path_buf();
    // No spare installed yet: this append creates the tail inline, past the reserved
    // number, so the spare arriving late is stale.
    append(&mut other, 1, 10);
    assert!(!other.install_spare(stale));
    assert!(!stale_path.exists());
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    append(&mut queue, 1, 10);
    append(&mut queue, 2, 3 * SMALL_SEGMENT as usize);
    append(&mut queue, 3, 10);
    queue.flush().unwrap();
    drop(queue);
    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!(report.records, 3);
    assert_eq!(drain(&mut queue), vec![1, 2, 3]);
}

#[test]
fn torn_tail_keeps_every_good_record_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    let mut last = Position::default();
    for id in 1..=5 {
        last = append(&mut queue, id, 200);
    }
    queue.flush().unwrap();
    drop(queue);
    // The last record's second half never reached the disk.
    let path = dir.path().join(segment_file_name(last.segment));
    let record_len = record_bytes(body(5, 200).len() as u64) as usize;
    let cut = last.offset as usize + record_len / 2;
    corrupt(&path, |bytes| {
        bytes[cut..last.offset as usize + record_len].fill(0)
    });

    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!(report.records, 4);
    assert_eq!((report.torn_tails, report.corrupt_regions), (1, 0));
    assert_eq!(report.torn_bytes, (cut - last.offset as usize) as u64);
    assert_eq!(
        queue.stats().dead_lettered_records,
        0,
        "a torn write was never acknowledged"
    );
    let saved = read_dead_letters(&dir.path().join(DEAD_LETTER_FILE)).unwrap();
    assert_eq!(saved.len(), 1, "the torn bytes are kept for inspection");
    assert!(saved[0].reason.contains("torn"));
    append(&mut queue, 6, 10);
    queue.flush().unwrap();
    drop(queue);
    // The cut is clean now: a second open finds nothing to repair.
    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!((report.records, report.torn_tails), (5, 0));
    assert_eq!(drain(&mut queue), vec![1, 2, 3, 4, 6]);
}

#[test]
fn flipped_bits_dead_letter_the_bad_record_and_the_rest_of_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    let mut positions = Vec::new();
    for id in 1..=16 {
        positions.push(append(&mut queue, id, 400));
    }
    queue.flush().unwrap();
    drop(queue);
    // Records 1..=9 are in segment 1. Flip a bit in the lines of record 3.
    assert_eq!((positions[8].segment, positions[9].segment), (1, 2));
    let path = dir.path().join(segment_file_name(1));
    let at = positions[2].offset as usize + MIN_RECORD_BYTES + 30;
    corrupt(&path, |bytes| bytes[at] ^= 0x04);

    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!((report.corrupt_regions, report.torn_tails), (1, 0));
    assert_eq!(report.records, 2 + 7);
    let stats = queue.stats();
    assert_eq!(stats.dead_lettered_records, 1);
    assert_eq!(stats.dead_lettered_bytes, report.corrupt_bytes);
    let saved = read_dead_letters(&dir.path().join(DEAD_LETTER_FILE)).unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        (saved[0].segment, saved[0].offset),
        (1, positions[2].offset)
    );
    assert_eq!(saved[0].bytes.len() as u64, report.corrupt_bytes);
    assert!(saved[0].reason.contains("crc"));
    assert_eq!(
        drain(&mut queue),
        [1, 2].into_iter().chain(10..=16).collect::<Vec<_>>()
    );
    drop(queue);
    let (_, report) = open(dir.path(), small_limits());
    assert_eq!(report.corrupt_regions, 0, "moved bytes are not moved twice");
}

#[test]
fn a_bit_flip_in_a_length_or_after_the_end_marker_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    let a = append(&mut queue, 1, 100);
    let b = append(&mut queue, 2, 100);
    append(&mut queue, 3, 100);
    queue.flush().unwrap();
    drop(queue);
    let path = dir.path().join(segment_file_name(a.segment));
    corrupt(&path, |bytes| bytes[b.offset as usize] ^= 0x40);
    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!((report.records, report.corrupt_regions), (1, 1));
    assert_eq!(drain(&mut queue), vec![1]);
}

#[test]
fn a_record_corrupted_after_open_is_moved_aside_at_replay() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    let positions: Vec<Position> = (1..=12).map(|id| append(&mut queue, id, 400)).collect();
    queue.flush().unwrap();
    assert_eq!(id_of(&queue.head().unwrap().unwrap()), 1);
    queue.advance().unwrap();
    // The disk changes under the mapping: a bit of record 2 flips.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join(segment_file_name(1)))
        .unwrap();
    let at = positions[1].offset + MIN_RECORD_BYTES as u64 + 7;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 1], at).unwrap();
    // Records 2..=9 (the rest of segment 1) go to the dead-letter log; replay goes on.
    assert_eq!(id_of(&queue.head().unwrap().unwrap()), 10);
    let stats = queue.stats();
    assert_eq!((stats.dead_lettered_records, stats.queued_records), (8, 3));
    assert_eq!(stats.dead_lettered_bytes, 8 * record_bytes(400));
    let saved = read_dead_letters(&dir.path().join(DEAD_LETTER_FILE)).unwrap();
    assert_eq!((saved.len(), saved[0].offset), (1, positions[1].offset));
    assert_eq!(drain(&mut queue), vec![10, 11, 12]);
    drop(queue);
    let (queue, report) = open(dir.path(), small_limits());
    assert!(queue.is_empty() && report.corrupt_regions == 0);
}

#[test]
fn an_unreadable_segment_is_set_aside_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    for id in 1..=20 {
        append(&mut queue, id, 400);
    }
    queue.flush().unwrap();
    drop(queue);
    // Segment 2 (records 10..=18) cannot be opened: a directory stands in its place.
    let path = dir.path().join(segment_file_name(2));
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!(report.bad_segments, 1);
    assert!(dir.path().join("00000002.seg.bad").exists());
    assert_eq!(
        drain(&mut queue),
        (1..=9).chain(19..=20).collect::<Vec<_>>()
    );
    // New segments never reuse the set-aside number.
    append(&mut queue, 21, 10);
    assert!(queue.head_position().segment > 3);
}

#[test]
fn a_corrupt_position_file_replays_from_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    for id in 1..=3 {
        append(&mut queue, id, 10);
    }
    queue.advance().unwrap();
    drop(queue);
    corrupt(&dir.path().join(POSITION_FILE), |bytes| bytes[0] ^= 1);
    let (mut queue, report) = open(dir.path(), small_limits());
    assert!(report.position_reset);
    assert_eq!(
        drain(&mut queue),
        vec![1, 2, 3],
        "at-least-once: nothing lost"
    );
}

#[test]
fn max_size_returns_full_and_nothing_else_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let record = record_bytes(body(1, 100).len() as u64);
    let limits = Limits {
        max_size_bytes: 10 * record,
        ..small_limits()
    };
    let (mut queue, _) = open(dir.path(), limits);
    for id in 1..=10 {
        append(&mut queue, id, 100);
    }
    let before = queue.stats();
    let error = queue.append(11, &[&body(11, 100)]).unwrap_err();
    assert!(
        matches!(error, HhError::Full { queued_bytes, max_size_bytes, .. }
        if queued_bytes == 10 * record && max_size_bytes == 10 * record)
    );
    assert!(error.to_string().contains("consistency level"), "{error}");
    let after = queue.stats();
    assert_eq!(after.full_rejections, 1);
    assert_eq!(
        (after.queued_records, after.queued_bytes),
        (before.queued_records, before.queued_bytes)
    );
    // Even an empty record does not fit a full queue.
    assert!(queue.append(12, &[]).is_err());
    queue.flush().unwrap();
    // Delivering one makes room again.
    queue.advance().unwrap();
    append(&mut queue, 13, 100);
    queue.flush().unwrap();
    drop(queue);
    let (mut queue, _) = open(dir.path(), limits);
    assert_eq!(drain(&mut queue), (2..=10).chain([13]).collect::<Vec<_>>());
}

#[test]
fn max_age_purge_drops_old_records_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    let now = now_ns();
    // 20 old records (two whole segments and part of a third), then 5 fresh ones.
    for id in 1..=20 {
        queue
            .append_at(id, &[&body(id, 400)], now - 200 * HOUR_NS + id as i64)
            .unwrap();
    }
    for id in 21..=25 {
        queue
            .append_at(id, &[&body(id, 400)], now - HOUR_NS)
            .unwrap();
    }
    let stats = queue.stats();
    assert_eq!(stats.oldest_enqueued_at_ns, Some(now - 200 * HOUR_NS + 1));
    assert!(queue.oldest_age().unwrap() >= Duration::from_secs(200 * 3600));
    let purged = queue.purge_expired().unwrap();
    assert_eq!(purged, 20);
    let stats = queue.stats();
    assert_eq!(stats.purged_records, 20);
    assert_eq!(stats.purged_bytes, 20 * record_bytes(400));
    assert_eq!(stats.queued_records, 5);
    assert_eq!(stats.delivered_records, 0);
    assert!(queue.oldest_age().unwrap() < Duration::from_secs(2 * 3600));
    assert_eq!(
        queue.purge_older_than(Duration::from_secs(7200)).unwrap(),
        0
    );
    drop(queue);
    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!(report.records, 5, "the purge is persisted");
    assert_eq!(drain(&mut queue), (21..=25).collect::<Vec<_>>());
}

#[test]
fn enqueue_times_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    queue.append_at(1, &[b"a v=1\n"], 1_000).unwrap();
    queue.append_at(2, &[b"a v=2\n"], 500).unwrap();
    queue.advance().unwrap();
    assert_eq!(queue.head().unwrap().unwrap().enqueued_at_ns, 1_000);
}

#[test]
fn dead_letter_moves_the_head_record_aside_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    for id in 1..=3 {
        append(&mut queue, id, 10);
    }
    let first = queue.head().unwrap().unwrap();
    let second = queue.peek(2, u64::MAX).unwrap().pop().unwrap();
    assert!(matches!(
        queue.dead_letter(&second, "x").unwrap_err(),
        HhError::NotHead { .. }
    ));
    queue
        .dead_letter(&first, "partial write: field type conflict")
        .unwrap();
    queue.dead_letter(&first, "again").unwrap();
    let stats = queue.stats();
    assert_eq!(
        (stats.dead_lettered_records, stats.delivered_records),
        (1, 0)
    );
    assert_eq!(stats.dead_lettered_bytes, first.stored_bytes());
    let saved = read_dead_letters(&dir.path().join(DEAD_LETTER_FILE)).unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].shard_id, Some(1));
    assert_eq!(saved[0].bytes, first.lines.to_vec());
    assert_eq!(saved[0].reason, "partial write: field type conflict");
    drop(queue);
    let (mut queue, _) = open(dir.path(), small_limits());
    assert_eq!(drain(&mut queue), vec![2, 3]);
}

#[test]
fn a_deferred_position_write_runs_off_the_core_and_a_lost_one_replays() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    for id in 1..=12 {
        append(&mut queue, id, 400);
    }
    let records = queue.peek(2, u64::MAX).unwrap();
    let commit = queue
        .advance_deferred(records[1].next_position())
        .unwrap()
        .unwrap();
    let result = std::thread::spawn(move || commit.run()).join().unwrap();
    queue.finish_commit(result).unwrap();
    // The rest of segment 1, delivered, but its position write is lost in a crash.
    let rest = queue.peek(100, u64::MAX).unwrap();
    assert_eq!(
        rest.iter().map(id_of).collect::<Vec<_>>(),
        (3..=9).collect::<Vec<_>>()
    );
    let lost = queue.advance_deferred(rest[6].next_position()).unwrap();
    assert!(lost.is_some());
    assert_eq!(id_of(&queue.head().unwrap().unwrap()), 10);
    drop(queue);
    let (mut queue, _) = open(dir.path(), small_limits());
    assert_eq!(drain(&mut queue), (3..=12).collect::<Vec<_>>());
}

#[test]
fn dead_letter_and_purge_position_writes_can_run_off_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_age: Duration::from_secs(3600),
        ..small_limits()
    };
    let (mut queue, _) = open(dir.path(), limits);
    for id in 1..=3 {
        append(&mut queue, id, 100);
    }
    queue.flush().unwrap();
    // Dead-letter the head; the position write runs on another thread.
    let head = queue.head().unwrap().unwrap();
    let commit = queue
        .dead_letter_deferred(&head, "refused for good")
        .unwrap()
        .expect("the head moved");
    assert_eq!(commit.position(), head.next_position());
    let result = std::thread::spawn(move || commit.run()).join().unwrap();
    queue.finish_commit(result).unwrap();
    assert_eq!(queue.stats().dead_lettered_records, 1);
    // A record the head has passed is left alone, and nothing is written.
    assert!(queue
        .dead_letter_deferred(&head, "again")
        .unwrap()
        .is_none());
    // Nothing is older than max-age: no purge, no position write.
    let (purged, commit) = queue.purge_expired_deferred().unwrap();
    assert_eq!((purged, commit.is_none()), (0, true));
    drop(queue);
    // After a restart the dead-lettered record stays gone; 2 and 3 remain.
    let (mut queue, _) = open(dir.path(), limits);
    assert_eq!(drain(&mut queue), vec![2, 3]);
    // Everything older than a zero max-age goes, with one deferred position write.
    let zero = Limits {
        max_age: Duration::ZERO,
        ..small_limits()
    };
    let other = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(other.path(), zero);
    for id in 1..=3 {
        append(&mut queue, id, 100);
    }
    std::thread::sleep(Duration::from_millis(2));
    let (purged, commit) = queue.purge_expired_deferred().unwrap();
    assert_eq!(purged, 3);
    queue
        .finish_commit(commit.expect("head moved").run())
        .unwrap();
    assert!(queue.is_empty());
    assert_eq!(queue.stats().purged_records, 3);
}

/// A segment file that tears its `tear_write`-th write (1-based: only the first half
/// reaches the file, then an error) and fails every sync once `fail_syncs` is set.
struct FaultyFile {
    inner: std::fs::File,
    writes: std::sync::atomic::AtomicUsize,
    tear_write: usize,
    fail_syncs: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl segment::SegmentFile for FaultyFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let n = self
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if n == self.tear_write {
            FileExt::write_all_at(&self.inner, &buf[..buf.len() / 2], offset)?;
            return Err(std::io::Error::other("injected torn write"));
        }
        FileExt::write_all_at(&self.inner, buf, offset)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        if self.fail_syncs.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO on fdatasync"));
        }
        self.inner.sync_data()
    }
}

fn faulty_seam(
    tear_write: usize,
    fail_syncs: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> segment::FileSeam {
    std::sync::Arc::new(move |file| {
        std::sync::Arc::new(FaultyFile {
            inner: file,
            writes: Default::default(),
            tear_write,
            fail_syncs: fail_syncs.clone(),
        })
    })
}

#[test]
fn a_torn_append_fails_the_queue_and_recovery_keeps_every_record_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    queue.set_file_seam(faulty_seam(3, Default::default()));
    append(&mut queue, 1, 300);
    append(&mut queue, 2, 300);
    queue.flush().unwrap();
    let error = queue.append(3, &[&body(3, 300)]).unwrap_err();
    assert!(
        matches!(&error, HhError::Failed { cause, .. } if cause.contains("injected torn write")),
        "{error}"
    );
    // The queue says so on every write after, and still reads what it has.
    assert!(queue.append(4, &[&body(4, 10)]).is_err());
    assert!(queue.flush().is_err());
    assert!(queue.stats().failed);
    assert_eq!(id_of(&queue.head().unwrap().unwrap()), 1);
    drop(queue);
    // A restart: the half-written record is a torn tail, cut; 1 and 2 replay.
    let (mut queue, report) = open(dir.path(), small_limits());
    assert_eq!((report.records, report.torn_tails), (2, 1), "{report:?}");
    assert!(!queue.is_failed());
    assert_eq!(drain(&mut queue), vec![1, 2]);
}

#[test]
fn a_failed_fdatasync_fails_the_queue_and_nothing_counts_as_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    let fail_syncs = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    queue.set_file_seam(faulty_seam(usize::MAX, fail_syncs.clone()));
    let first = append(&mut queue, 1, 100);
    queue.flush().unwrap();
    assert!(queue.is_durable(first));
    fail_syncs.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = append(&mut queue, 2, 100);
    // The off-core form, as the processor's group flusher runs it.
    let job = queue.start_flush().unwrap().expect("something to flush");
    let done = std::thread::spawn(move || job.run()).join().unwrap();
    let error = queue.finish_flush(done).unwrap_err();
    assert!(error.to_string().contains("injected EIO"), "{error}");
    assert!(!queue.is_durable(second));
    assert!(queue.append(3, &[&body(3, 10)]).is_err());
    assert!(queue.advance_to(first).is_err(), "no position write either");
    drop(queue);
    // A restart finds whatever reached the disk (here the page cache kept record 2).
    let (mut queue, _) = open(dir.path(), small_limits());
    assert_eq!(drain(&mut queue), vec![1, 2]);
}

#[test]
fn failed_flush_state_is_reported_on_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut queue, _) = open(dir.path(), small_limits());
    append(&mut queue, 1, 10);
    queue
        .finish_flush(Err(HhError::Failed {
            dir: "x".into(),
            cause: "fdatasync: EIO".into(),
        }))
        .unwrap_err();
    let error = queue.append(2, &[b"a v=1\n"]).unwrap_err();
    assert!(
        error.to_string().contains("fdatasync: EIO") && error.to_string().contains("restart"),
        "{error}"
    );
    assert!(queue.flush().is_err() && queue.advance().is_err());
    assert!(queue.stats().failed);
    // Reading still works.
    assert_eq!(id_of(&queue.head().unwrap().unwrap()), 1);
}

#[test]
fn queue_directories_are_listed_and_a_removed_destination_is_purged() {
    let data = tempfile::tempdir().unwrap();
    for (node, core) in [(2, 0), (2, 1), (5, 0)] {
        let (mut queue, _) = open(&queue_dir(data.path(), node, core), small_limits());
        append(&mut queue, 1, 10);
        queue.flush().unwrap();
    }
    std::fs::create_dir_all(data.path().join(HH_DIR).join("not-a-node")).unwrap();
    let listed: Vec<(u64, usize)> = list_queue_dirs(data.path())
        .unwrap()
        .into_iter()
        .map(|(n, c, _)| (n, c))
        .collect();
    assert_eq!(listed, vec![(2, 0), (2, 1), (5, 0)]);
    let purged = purge_destination(&destination_dir(data.path(), 2)).unwrap();
    assert_eq!(purged.files, 4, "two segments, two position files");
    assert_eq!(purged.bytes, 2 * SMALL_SEGMENT + 2 * 20);
    assert!(!destination_dir(data.path(), 2).exists());
    assert_eq!(
        purge_destination(&destination_dir(data.path(), 9)).unwrap(),
        PurgedDestination::default()
    );
    assert_eq!(list_queue_dirs(data.path()).unwrap().len(), 1);
}

#[test]
fn the_pieces_that_cross_threads_are_send() {
    fn send<T: Send>() {}
    send::<Queue>();
    send::<queue::FlushJob>();
    send::<queue::PositionCommit>();
    send::<queue::SparePlan>();
    send::<segment::Segment>();
}

#[test]
fn invalid_limits_are_refused_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        segment_size_bytes: 100,
        ..Limits::default()
    };
    let error = Queue::open(dir.path(), limits).err().unwrap();
    assert!(error.to_string().contains("segment-size"), "{error}");
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        size: usize,
    },
    /// Deliver up to this many records one at a time.
    Deliver(usize),
    /// Deliver a pipelined window of this many, advance once.
    DeliverWindow(usize),
    Flush,
    /// Build and install a preallocated spare segment.
    Spare,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..1500).prop_map(|size| Op::Append { size }),
        3 => (1usize..6).prop_map(Op::Deliver),
        2 => (1usize..6).prop_map(Op::DeliverWindow),
        1 => Just(Op::Flush),
        1 => Just(Op::Spare),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any mix of appends, deliveries and restarts delivers every record exactly once,
    /// in append order.
    #[test]
    fn fifo_and_exactly_once_across_restarts(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut queue, _) = open(dir.path(), small_limits());
        let mut next_id = 1u64;
        let mut delivered = Vec::new();
        let deliver = |queue: &mut Queue, delivered: &mut Vec<u64>, window: usize, pipelined: bool| {
            if pipelined {
                let records = queue.peek(window, u64::MAX).unwrap();
                if let Some(last) = records.last() {
                    delivered.extend(records.iter().map(id_of));
                    queue.advance_to(last.next_position()).unwrap();
                }
            } else {
                for _ in 0..window {
                    let Some(record) = queue.head().unwrap() else { break };
                    delivered.push(id_of(&record));
                    queue.advance().unwrap();
                }
            }
        };
        for op in ops {
            match op {
                Op::Append { size } => {
                    append(&mut queue, next_id, size);
                    next_id += 1;
                }
                Op::Deliver(n) => deliver(&mut queue, &mut delivered, n, false),
                Op::DeliverWindow(n) => deliver(&mut queue, &mut delivered, n, true),
                Op::Flush => queue.flush().unwrap(),
                Op::Spare => {
                    if let Some(plan) = queue.spare_plan() {
                        prop_assert!(queue.install_spare(plan.build().unwrap()));
                    }
                }
                Op::Reopen => {
                    drop(queue);
                    let (reopened, report) = open(dir.path(), small_limits());
                    prop_assert_eq!(report.records, next_id - 1 - delivered.len() as u64);
                    prop_assert_eq!(report.torn_tails + report.corrupt_regions + report.bad_segments, 0);
                    queue = reopened;
                }
            }
            let stats = queue.stats();
            prop_assert_eq!(stats.queued_records, next_id - 1 - delivered.len() as u64);
        }
        delivered.extend(drain(&mut queue));
        prop_assert_eq!(delivered, (1..next_id).collect::<Vec<_>>());
        drop(queue);
        let (queue, _) = open(dir.path(), small_limits());
        prop_assert!(queue.is_empty());
        prop_assert!(segment_files(dir.path()).is_empty());
    }
}
