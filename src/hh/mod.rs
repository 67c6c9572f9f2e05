//! Hinted handoff, storage half: durable per-(destination node, core) queues of writes
//! that an owner could not take, kept until it can (DESIGN section 5, issue 4).
//!
//! The network half (enqueue of a remote write, the NodeProcessor that replays a
//! queue) is [`node_processor`]. The storage types here are synchronous and know no
//! runtime; the processor drives them on the core and sends the blocking steps listed
//! below to glommio's blocking thread pool.
//!
//! # What it owns
//!
//! Everything under `DATA_DIR/hh/`:
//!
//! ```text
//! DATA_DIR/hh/<destination node id>/<core>/
//!     00000001.seg       segment: preallocated to segment-size, append-only (pwrite),
//!                        read through a read-only map
//!     00000002.seg       ... numbered in queue order; replayed ones are deleted
//!     position           replay head (segment, offset), replaced atomically
//!     dead-letter.log    rejected or unreadable records, moved aside (text headers)
//!     00000007.seg.bad   a segment that could not be opened or mapped, set aside
//! ```
//!
//! - [`segment`]: the record format, one segment file (`pwrite` to append, a read-only
//!   map to read), the record reader that tells the end marker, a torn tail and
//!   corruption apart.
//! - [`queue`]: [`Queue`]: append, group flush, replay head, advance, dead-letter,
//!   max-size and max-age, and recovery at open.
//! - [`position`]: the `position` file.
//! - [`dead_letter`]: the `dead-letter.log` format, writer and reader.
//!
//! Record layout (all integers big-endian, like the wire protocol):
//! `length u32 | crc32c u32 | shard id u64 | enqueued_at_ns i64 | line-protocol lines`.
//! `length` counts and `crc32c` covers everything after the crc. **Deviation from
//! DESIGN section 5:** `enqueued_at_ns` (nanoseconds since the Unix epoch, clamped to
//! never go backwards within a queue) is added after the shard id, so max-age purges
//! exactly the records older than the limit and `oldest age` is exact, instead of
//! approximating age per 10 MiB segment from file times.
//!
//! **Invariant:** only the owning core touches a queue directory. A queue is one
//! destination's writes from one core, so replay order per (destination, shard) is the
//! order that core accepted them; no locks, no cross-core I/O. [`Queue`] is `Send` (it
//! may be opened on a blocking thread and moved to its core) but never shared.
//!
//! **Invariant:** a record leaves the queue only by being delivered ([`Queue::advance`]),
//! purged by age, moved to the dead-letter log, or lost with a segment file that can no
//! longer be opened (set aside as `.bad`); each is counted. The persisted
//! position is the first record not yet delivered, so a restart neither skips nor
//! repeats a delivered record (a crash between a send and its position write repeats
//! that one send: at-least-once at that single point, exactly-once otherwise).
//!
//! # Blocking, and what to do about it
//!
//! - [`Queue::open`]: scans every segment (crc of every record). Start-up, blocking.
//! - [`Queue::append`]: encode + crc into a scratch buffer and one `pwrite` into the
//!   page cache (a memory copy in the kernel; it can wait only under dirty-page
//!   throttling). Blocks longer only when the tail is full and no spare segment was
//!   installed (create + `fallocate` + mmap inline). Keep a spare ready:
//!   [`Queue::spare_plan`] -> [`queue::SparePlan::build`] on a blocking thread ->
//!   [`Queue::install_spare`].
//! - [`Queue::flush`]: `fdatasync` on the calling thread. The non-blocking form:
//!   [`Queue::start_flush`] -> [`queue::FlushJob::run`] (Send, on a blocking thread)
//!   -> [`Queue::finish_flush`]; the processor's group flusher does that.
//! - [`Queue::head`] / [`Queue::peek`]: a copy out of the map; may fault pages of a cold
//!   segment in from disk (the head segment is `madvise`d sequential + willneed).
//! - [`Queue::advance`], [`Queue::advance_to`], [`Queue::dead_letter`],
//!   [`Queue::purge_older_than`]: write the position file (two `fsync`s) and unlink
//!   replayed segments. The non-blocking forms: [`Queue::advance_deferred`],
//!   [`Queue::dead_letter_deferred`], [`Queue::purge_expired_deferred`] ->
//!   [`queue::PositionCommit::run`] on a blocking thread -> [`Queue::finish_commit`]
//!   (what the NodeProcessor uses). Dead-lettering still `fdatasync`s the dead-letter
//!   log inline (rare).
//!
//! # Back of the envelope
//!
//! A 5000-line batch is ~1.8 MB, one record. Appending it copies 1.8 MB twice (into
//! the scratch buffer, then by `pwrite` into the page cache: ~0.4-0.8 ms at 5-10 GB/s)
//! and crcs it (~0.1 ms with SSE4.2); a 10 MiB segment holds five, so a write-heavy
//! outage rolls a segment every five batches, and the spare must be ready by then
//! (`fallocate` of 10 MiB is well under a millisecond on a blocking thread).
//! `fdatasync` of 1.8 MB writes 440 dirty pages and flushes the device cache: 1-5 ms
//! on an SSD, so group flushes (one per batch of appends, like the WAL's group commit)
//! bound latency, not bytes. Replay: one position write (2 `fsync`s, 1-10 ms) per advance
//! caps single-record advances at 100-1000/s = 180 MB/s-1.8 GB/s of 1.8 MB records,
//! above any sane `retry-rate-limit`; for small records, [`Queue::advance_to`] after a
//! pipelined window pays one position write per window. Recovery reads and crcs every
//! queued byte: a full 10 GiB queue is 5-10 s at 1-2 GB/s, once, at start-up. Memory:
//! ~48 bytes of metadata per segment (1024 segments at max-size), and at most three
//! segments mapped (head, tail, spare) = three file descriptors per queue.
//!
//! # Limits, and what happens at each
//!
//! - `segment_size_bytes` (10 MiB): the tail rolls to a new segment when a record does
//!   not fit. A record larger than a segment gets a segment of its own, sized to fit.
//!   A record over 1 GiB ([`segment::MAX_PAYLOAD_BYTES`]) is refused:
//!   [`HhError::RecordTooLarge`].
//! - `max_size_bytes` (10 GiB) of queued records (headers included, replayed bytes
//!   not): past it [`Queue::append`] fails with [`HhError::Full`] and nothing else
//!   changes; the caller's consistency level decides the client's answer. Disk use is
//!   at most max-size + three segments (partly replayed head, partly filled tail, spare)
//!   + the dead-letter log.
//! - `max_age` (168 h): [`Queue::purge_expired`] (run every `purge-interval`, 1 min)
//!   drops records enqueued longer ago, counts them (`purged_records`/`purged_bytes`)
//!   and logs the count.
//! - `max_dead_letter_bytes` (1 GiB): past it, dead-lettered records are not written,
//!   the queue still moves on, and `dead_letter_dropped` counts them (logged at error).
//!
//! Errors after which the queue's on-disk state is unknown (a failed flush or position
//! write) make the queue failed: every write says so ([`HhError::Failed`]) until the
//! node restarts and recovery sorts out what reached the disk.

pub mod dead_letter;
pub mod node_processor;
pub mod position;
pub mod queue;
pub mod segment;

pub use position::Position;
pub use queue::{Queue, QueueStats, Record, RecoveryReport};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// `hh` under the data directory.
pub const HH_DIR: &str = "hh";

/// Hinted-handoff failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HhError {
    #[error("hinted-handoff queue {dir} is full: {queued_bytes} bytes queued + {record_bytes} for this record would pass max-size {max_size_bytes}; the write's consistency level decides (bring the destination back or raise hinted-handoff max-size)")]
    Full {
        dir: String,
        queued_bytes: u64,
        record_bytes: u64,
        max_size_bytes: u64,
    },
    #[error("hinted-handoff record of {record_bytes} bytes is over the {max_record_bytes}-byte record limit; send smaller write batches")]
    RecordTooLarge {
        record_bytes: u64,
        max_record_bytes: u64,
    },
    #[error("hinted-handoff I/O error: cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("previous hinted-handoff I/O error in {dir} ({cause}); the queue takes no writes until the node restarts and recovers it")]
    Failed { dir: String, cause: String },
    #[error("record at {record:?} is not the replay head {head:?} of {dir}; dead-letter only the record head() returned")]
    NotHead {
        dir: String,
        record: Position,
        head: Position,
    },
    #[error("invalid hinted-handoff limits: {0}; fix the hinted-handoff settings in the config")]
    InvalidLimits(String),
}

impl HhError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> HhError {
        HhError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}

/// The bounds of one queue. Defaults are InfluxDB Enterprise's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub segment_size_bytes: u64,
    pub max_size_bytes: u64,
    pub max_age: Duration,
    pub max_dead_letter_bytes: u64,
}

pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 10 << 20;
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 10 << 30;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(168 * 3600);
pub const DEFAULT_MAX_DEAD_LETTER_BYTES: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            max_size_bytes: DEFAULT_MAX_SIZE_BYTES,
            max_age: DEFAULT_MAX_AGE,
            max_dead_letter_bytes: DEFAULT_MAX_DEAD_LETTER_BYTES,
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), HhError> {
        let page = segment::PAGE_BYTES as u64;
        let max_segment = segment::MAX_PAYLOAD_BYTES as u64;
        if self.segment_size_bytes < page || self.segment_size_bytes > max_segment {
            return Err(HhError::InvalidLimits(format!(
                "segment-size {} must be between {page} and {max_segment} bytes",
                self.segment_size_bytes
            )));
        }
        if self.max_size_bytes == 0 {
            return Err(HhError::InvalidLimits("max-size must be above zero".into()));
        }
        Ok(())
    }
}

/// `DATA_DIR/hh/<node id>`: every queue of one destination.
pub fn destination_dir(data_dir: &Path, node_id: u64) -> PathBuf {
    data_dir.join(HH_DIR).join(node_id.to_string())
}

/// `DATA_DIR/hh/<node id>/<core>`: one queue.
pub fn queue_dir(data_dir: &Path, node_id: u64, core: usize) -> PathBuf {
    destination_dir(data_dir, node_id).join(core.to_string())
}

/// Every queue directory under `DATA_DIR/hh` as `(node id, core, path)`, sorted, so
/// start-up can open each on its core. Names that are not numbers are skipped.
pub fn list_queue_dirs(data_dir: &Path) -> Result<Vec<(u64, usize, PathBuf)>, HhError> {
    let root = data_dir.join(HH_DIR);
    let mut queues = Vec::new();
    for (node_id, node_path) in numbered_entries(&root)? {
        for (core, path) in numbered_entries(&node_path)? {
            queues.push((node_id, core as usize, path));
        }
    }
    queues.sort();
    Ok(queues)
}

fn numbered_entries(dir: &Path) -> Result<Vec<(u64, PathBuf)>, HhError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(HhError::io("list", dir, error)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HhError::io("list", dir, e))?;
        let number = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number.filter(|_| entry.path().is_dir()) {
            found.push((number, entry.path()));
        }
    }
    Ok(found)
}

/// What [`purge_destination`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgedDestination {
    pub files: u64,
    pub bytes: u64,
}

/// Removes every queue of a destination that left the cluster (`destination_dir`).
/// The cores must have dropped their [`Queue`]s of it first. Blocking. A missing
/// directory is not an error (nothing to purge).
pub fn purge_destination(dir: &Path) -> Result<PurgedDestination, HhError> {
    let mut purged = PurgedDestination::default();
    match count_files(dir, &mut purged) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(purged),
        Err(error) => return Err(HhError::io("measure", dir, error)),
    }
    std::fs::remove_dir_all(dir).map_err(|e| HhError::io("remove", dir, e))?;
    tracing::info!(dir = %dir.display(), files = purged.files, bytes = purged.bytes, "purged the hinted-handoff queues of a removed node");
    Ok(purged)
}

fn count_files(dir: &Path, purged: &mut PurgedDestination) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            count_files(&entry.path(), purged)?;
        } else {
            purged.files += 1;
            purged.bytes += meta.len();
        }
    }
    Ok(())
}

pub use crate::base::time::now_ns;

#[cfg(test)]
mod tests;
