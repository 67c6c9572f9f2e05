//! Write-ahead log of one shard: append-only segment files of crc32c-framed records,
//! with group commit.
//!
//! Record: `length u32 LE | crc32c(payload) u32 LE | payload`, where the payload is
//! `kind u8 | precision u8 | default time i64 LE | line-protocol lines, '\n'-terminated`.
//! Recovery re-parses the lines with the record's precision and default time, so a
//! replay stores exactly what the acknowledged request stored.
//!
//! Group commit: [`Wal::append`] copies the record into the pending buffer at once (so
//! the WAL order is the apply order) and returns a future that resolves when the record
//! is on disk. One flusher task per WAL writes the pending chunks and fdatasyncs
//! it; everything that arrived while a sync ran goes out with the next one. With
//! `wal-fsync-delay-ms` > 0 the flusher waits that long first to gather more. Each
//! commit starts in a fresh [`COMMIT_BLOCK_BYTES`] block (the last block it writes is
//! padded), so no write ever touches a block holding acknowledged records (see
//! [`SegmentFile`]).
//!
//! **Invariant:** only the owning core touches a WAL (it is `!Send`: `Rc` inside).
//!
//! After a failed write or sync (a full disk, an I/O error) the WAL refuses new records
//! and says so on every call, and a probe task tries to resume (every
//! [`RESUME_PROBE_MAX`] at most): it cuts the segment that failed back to its last
//! synced byte (what came after may be torn: it is never left behind), starts a new
//! segment and writes there what had been appended but not synced (those records are
//! already in the cache; none was acknowledged). Once that write and its fdatasync
//! succeed, the WAL takes records again. A retried fsync proves nothing after a failed
//! one (Linux may have dropped the dirty pages), so nothing is trusted that was not
//! synced in one piece after the failure.
//!
//! Back of the envelope: at 1 M lines/s of ~250-byte lines a core appends ~250 MB/s;
//! an fdatasync on this class of disk takes 0.5–5 ms, so each sync carries 125 KB–1.2 MB
//! and the sync rate, not the bytes, bounds small-request latency.

use crate::base::LocalFuture;
use crate::lineproto::Precision;
use futures_channel::oneshot;
use glommio::io::{BufferedFile, DmaFile};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

pub const RECORD_HEADER_BYTES: usize = 8;
pub const PAYLOAD_HEADER_BYTES: usize = 10;
pub const KIND_WRITE: u8 = 1;
/// A delete: the payload's "lines" are the JSON of `tsdb::shard::DeleteRecord`.
pub const KIND_DELETE: u8 = 2;
pub use crate::limits::{
    WAL_MAX_RECORD_BYTES as MAX_RECORD_BYTES, WAL_WRITE_CHUNK_BYTES as WRITE_CHUNK_BYTES,
};

/// After a failed write, the first probe to resume waits this long; each failed probe
/// doubles the wait, up to [`RESUME_PROBE_MAX`].
pub const RESUME_PROBE_MIN: Duration =
    Duration::from_millis(crate::limits::WAL_RESUME_PROBE_MIN_MS);
/// The longest wait between two probes of a failed WAL.
pub const RESUME_PROBE_MAX: Duration =
    Duration::from_millis(crate::limits::WAL_RESUME_PROBE_MAX_MS);

/// WAL failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("WAL I/O error in {dir}: {message}")]
    Io { dir: String, message: String },
    #[error("previous WAL I/O error in {dir} ({message}); writes to this shard resume on their own once the disk takes writes again (free space, or check the device)")]
    Failed { dir: String, message: String },
    #[error("WAL in {dir} is closed")]
    Closed { dir: String },
}

/// Tuning of one WAL, from `[storage]`.
#[derive(Clone, Copy, Debug)]
pub struct WalConfig {
    pub fsync_delay: Duration,
    pub segment_size_bytes: u64,
    pub max_pending_bytes: u64,
}

/// The open segment: O_DIRECT when the filesystem supports it (no page-cache copy; the
/// kernel's copy into the page cache cost ~15-20% of a core at 250 MB/s), buffered
/// otherwise (tmpfs and friends refuse O_DIRECT).
///
/// **Invariant:** a write never touches a block that holds acknowledged records. Each
/// group commit starts at a multiple of [`COMMIT_BLOCK_BYTES`] and the last block it
/// writes is zero-padded (O_DIRECT) or left as a hole (buffered), so the next commit
/// starts in a fresh block: a torn write on power loss can garble only the commit
/// being written, never one already acknowledged (rewriting a partly filled block in
/// place is safe only where the device writes blocks atomically). Padding costs bytes,
/// not safety; recovery skips it ([`decode_records`]).
enum SegmentFile {
    Direct(DmaFile),
    Buffered(BufferedFile),
}

/// Every group commit starts at a multiple of this many bytes (the WAL's block).
pub const COMMIT_BLOCK_BYTES: usize = 4096;

/// The file operations a WAL segment's writes go through: the segment file itself, or
/// in tests one that tears a chosen write or fails a sync (STYLE: seams for testing
/// faults; hinted handoff's segments have the same). Recovery reads plain files.
pub trait WalFile {
    /// Writes `chunks`, in order, at `offset` (the segment's end); returns the new end.
    /// An error leaves the bytes from `offset` on unknown.
    fn write_chunks<'a>(
        &'a self,
        offset: u64,
        chunks: &'a [Vec<u8>],
    ) -> LocalFuture<'a, std::io::Result<u64>>;
    /// `fdatasync`.
    fn sync(&self) -> LocalFuture<'_, std::io::Result<()>>;
}

impl WalFile for SegmentFile {
    fn write_chunks<'a>(
        &'a self,
        offset: u64,
        chunks: &'a [Vec<u8>],
    ) -> LocalFuture<'a, std::io::Result<u64>> {
        Box::pin(async move {
            match self {
                SegmentFile::Buffered(file) => write_buffered(file, offset, chunks).await,
                SegmentFile::Direct(file) => write_direct(file, offset, chunks).await,
            }
        })
    }

    fn sync(&self) -> LocalFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            match self {
                SegmentFile::Buffered(f) => f.fdatasync().await,
                SegmentFile::Direct(file) => file.fdatasync().await,
            }
            .map_err(glommio_error)
        })
    }
}

/// A glommio I/O error as a `std::io::Error` (its text kept).
fn glommio_error<T>(e: glommio::GlommioError<T>) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Wraps the file of each segment a WAL opens for writing: none in production; a
/// fault-injecting file in tests ([`Wal::set_file_seam`]).
pub type WalFileSeam = Rc<dyn Fn(Rc<dyn WalFile>) -> Rc<dyn WalFile>>;

struct WalState {
    file: Option<Rc<dyn WalFile>>,
    seam: Option<WalFileSeam>,
    segment_number: u64,
    offset: u64,
    pending: Vec<u8>,
    /// Full chunks waiting for the next flush, in order, before `pending`.
    full_chunks: Vec<Vec<u8>>,
    /// Bytes in `full_chunks` and `pending`.
    pending_bytes: usize,
    waiters: Vec<oneshot::Sender<Result<(), WalError>>>,
    room_waiters: Vec<oneshot::Sender<()>>,
    flushing: bool,
    /// Set by a failed write or sync, until a probe resumes the WAL.
    failed: Option<String>,
    /// Records appended (and applied) but not synced when the WAL failed: the probe
    /// writes them to a new segment before the WAL takes records again.
    unsynced: Vec<Vec<u8>>,
    closed: bool,
    stats: WalStats,
    /// Segment ends asked for ([`Wal::roll`]), oldest first: how many of
    /// `full_chunks` and `waiters` come before each, and who hears the boundary.
    rolls: Vec<(usize, usize, oneshot::Sender<u64>)>,
}

/// Counters of one WAL.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalStats {
    pub records: u64,
    pub bytes: u64,
    pub syncs: u64,
    /// Write or sync failures, and resumptions after them.
    pub failures: u64,
    pub resumes: u64,
    /// Bytes of this WAL's segments on disk (padding included; what recovery found,
    /// plus what was written since, minus what flushes removed).
    pub disk_bytes: u64,
}

/// The WAL of one shard. Cheap to clone (shared state on one core).
#[derive(Clone)]
pub struct Wal {
    dir: Rc<PathBuf>,
    config: WalConfig,
    state: Rc<RefCell<WalState>>,
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    /// Segments whose tail was cut at the last good record.
    pub truncated_segments: u64,
    pub truncated_bytes: u64,
}

/// A record read back during recovery.
pub struct RecoveredRecord<'a> {
    pub kind: u8,
    pub precision: Precision,
    pub default_time_ns: i64,
    pub lines: &'a [u8],
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}.wal"))
}

/// Segment numbers in `dir`, ascending.
fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Encodes one record into `out`: header, then the payload `write_lines` appends.
pub fn encode_record(
    out: &mut Vec<u8>,
    precision: Precision,
    default_time_ns: i64,
    write_lines: impl FnOnce(&mut Vec<u8>),
) {
    encode_record_kind(out, KIND_WRITE, precision, default_time_ns, write_lines)
}

/// [`encode_record`] with an explicit record kind.
pub fn encode_record_kind(
    out: &mut Vec<u8>,
    kind: u8,
    precision: Precision,
    default_time_ns: i64,
    write_lines: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    out.push(kind);
    out.push(precision.code());
    out.extend_from_slice(&default_time_ns.to_le_bytes());
    write_lines(out);
    let payload = &out[start + RECORD_HEADER_BYTES..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the records of one segment image. Returns the length of the valid prefix
/// (up to the end of the last good record).
///
/// Where no good record starts, zero bytes are a commit's padding (as short as one
/// byte: it may end inside where a record header would be): the next commit starts at
/// the last block boundary (a multiple of [`COMMIT_BLOCK_BYTES`]) at or before the
/// next nonzero byte; zeros to the end are a clean end. Anything else that is not a
/// good record ends the valid prefix.
pub fn decode_records(bytes: &[u8], mut each: impl FnMut(RecoveredRecord<'_>)) -> usize {
    let mut pos = 0usize;
    let mut valid = 0usize;
    while pos < bytes.len() {
        if let Some((record, end)) = record_at(bytes, pos) {
            each(record);
            pos = end;
            valid = end;
            continue;
        }
        // Not a record here: padding after a commit (zeros up to the next commit
        // block; it can be shorter than a record header, so it is told from a record
        // by its zeros, not by a zero length), a hole a failed commit left, or the
        // end. The next commit starts at the block boundary at or before the next
        // nonzero byte; garbage before that boundary ends the log.
        let Some(nonzero) = bytes[pos..].iter().position(|&b| b != 0) else {
            break;
        };
        let next = (pos + nonzero) / COMMIT_BLOCK_BYTES * COMMIT_BLOCK_BYTES;
        if next <= pos {
            break;
        }
        pos = next;
    }
    valid
}

/// The record starting at `pos`, whole and with a good crc, and where it ends.
fn record_at(bytes: &[u8], pos: usize) -> Option<(RecoveredRecord<'_>, usize)> {
    let header = bytes.get(pos..pos.checked_add(RECORD_HEADER_BYTES)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len < PAYLOAD_HEADER_BYTES as u32 || len > MAX_RECORD_BYTES {
        return None;
    }
    let end = pos + RECORD_HEADER_BYTES + len as usize;
    let payload = bytes.get(pos + RECORD_HEADER_BYTES..end)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let precision = Precision::from_code(payload[1])?;
    Some((
        RecoveredRecord {
            kind: payload[0],
            precision,
            default_time_ns: i64::from_le_bytes(payload[2..10].try_into().ok()?),
            lines: &payload[PAYLOAD_HEADER_BYTES..],
        },
        end,
    ))
}

/// Replays every segment in `dir` in order, cutting a torn or corrupt tail at the last
/// good record (logged and counted, never a panic). Runs at start-up, before the core
/// serves anything, so plain blocking reads are fine here. Returns the report and the
/// number for the next segment.
pub fn recover(
    dir: &Path,
    truncate: bool,
    apply: impl FnMut(RecoveredRecord<'_>),
) -> std::io::Result<(RecoveryReport, u64)> {
    recover_from(dir, truncate, 0, apply)
}

/// [`recover`], from segment `first` on: the segments before it are covered by data
/// files (a flush that was cut short before it removed them); they are removed
/// (`truncate`) or skipped. The next segment number is never below `first`.
pub fn recover_from(
    dir: &Path,
    truncate: bool,
    first: u64,
    mut apply: impl FnMut(RecoveredRecord<'_>),
) -> std::io::Result<(RecoveryReport, u64)> {
    if truncate {
        std::fs::create_dir_all(dir)?;
    } else if !dir.exists() {
        return Ok((RecoveryReport::default(), first.max(1)));
    }
    let mut report = RecoveryReport::default();
    let mut segments = list_segments(dir)?;
    let covered = segments.partition_point(|&n| n < first);
    if truncate && covered > 0 {
        for &number in &segments[..covered] {
            std::fs::remove_file(segment_path(dir, number))?;
        }
        std::fs::File::open(dir)?.sync_all()?;
    }
    segments.drain(..covered);
    for &number in &segments {
        let path = segment_path(dir, number);
        let bytes = std::fs::read(&path)?;
        report.segments += 1;
        let mut records = 0u64;
        let valid = decode_records(&bytes, |r| {
            records += 1;
            apply(r)
        });
        report.records += records;
        report.bytes += valid as u64;
        if valid < bytes.len() && bytes[valid..].iter().all(|&b| b == 0) {
            // Zero padding after the last record (O_DIRECT writes whole blocks): a
            // clean end, not corruption.
            if truncate {
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.set_len(valid as u64)?;
            }
        } else if valid < bytes.len() && !truncate {
            let cut = (bytes.len() - valid) as u64;
            tracing::warn!(segment = %path.display(), valid_bytes = valid, bad_bytes = cut, "WAL segment has a torn or corrupt tail (read-only: left as is)");
            report.truncated_segments += 1;
            report.truncated_bytes += cut;
        } else if valid < bytes.len() {
            let cut = bytes.len() - valid;
            tracing::warn!(
                segment = %path.display(),
                valid_bytes = valid,
                cut_bytes = cut,
                "WAL segment has a torn or corrupt tail; truncating it at the last good record"
            );
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(valid as u64)?;
            file.sync_all()?;
            report.truncated_segments += 1;
            report.truncated_bytes += cut as u64;
        }
    }
    let next = segments.last().map_or(1, |n| n + 1).max(first);
    Ok((report, next))
}

impl Wal {
    /// A WAL that appends to new segments in `dir` starting at `next_segment` (from
    /// [`recover`]). The first segment file is created by the first flush.
    pub fn new(dir: PathBuf, next_segment: u64, config: WalConfig) -> Wal {
        Wal {
            dir: Rc::new(dir),
            config,
            state: Rc::new(RefCell::new(WalState {
                file: None,
                seam: None,
                segment_number: next_segment,
                offset: 0,
                pending: Vec::new(),
                full_chunks: Vec::new(),
                pending_bytes: 0,
                waiters: Vec::new(),
                room_waiters: Vec::new(),
                flushing: false,
                failed: None,
                unsynced: Vec::new(),
                closed: false,
                stats: WalStats::default(),
                rolls: Vec::new(),
            })),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sends the writes and syncs of every segment opened from now on through `seam`
    /// (tests: tear a write, fail a sync).
    pub fn set_file_seam(&self, seam: WalFileSeam) {
        self.state.borrow_mut().seam = Some(seam);
    }

    pub fn stats(&self) -> WalStats {
        self.state.borrow().stats
    }

    /// Fails fast if the WAL cannot take records.
    pub fn check_writable(&self) -> Result<(), WalError> {
        let s = self.state.borrow();
        if let Some(message) = &s.failed {
            return Err(WalError::Failed {
                dir: self.dir.display().to_string(),
                message: message.clone(),
            });
        }
        if s.closed {
            return Err(WalError::Closed {
                dir: self.dir.display().to_string(),
            });
        }
        Ok(())
    }

    /// Waits while the pending buffer is over its bound (a sync is then in progress).
    pub async fn wait_for_room(&self) {
        loop {
            let rx = {
                let mut s = self.state.borrow_mut();
                if (s.pending_bytes as u64) < self.config.max_pending_bytes || !s.flushing {
                    return;
                }
                let (tx, rx) = oneshot::channel();
                s.room_waiters.push(tx);
                rx
            };
            let _ = rx.await;
        }
    }

    /// Appends one record now (synchronously, so WAL order is call order) and returns a
    /// future that resolves once it is durable.
    pub fn append(
        &self,
        precision: Precision,
        default_time_ns: i64,
        write_lines: impl FnOnce(&mut Vec<u8>),
    ) -> Result<oneshot::Receiver<Result<(), WalError>>, WalError> {
        self.append_kind(KIND_WRITE, precision, default_time_ns, write_lines)
    }

    /// Appends a record of `kind` (see [`KIND_DELETE`]) with the same group commit.
    pub fn append_kind(
        &self,
        kind: u8,
        precision: Precision,
        default_time_ns: i64,
        write_lines: impl FnOnce(&mut Vec<u8>),
    ) -> Result<oneshot::Receiver<Result<(), WalError>>, WalError> {
        self.check_writable()?;
        let (tx, rx) = oneshot::channel();
        let start_flusher = {
            let mut s = self.state.borrow_mut();
            if s.pending.len() >= WRITE_CHUNK_BYTES {
                let chunk = std::mem::take(&mut s.pending);
                s.full_chunks.push(chunk);
            }
            let before = s.pending.len();
            encode_record_kind(
                &mut s.pending,
                kind,
                precision,
                default_time_ns,
                write_lines,
            );
            let added = s.pending.len() - before;
            s.stats.records += 1;
            s.stats.bytes += added as u64;
            s.pending_bytes += added;
            s.waiters.push(tx);
            !std::mem::replace(&mut s.flushing, true)
        };
        if start_flusher {
            let wal = self.clone();
            glommio::spawn_local(async move { wal.flush_loop().await }).detach();
        }
        Ok(rx)
    }

    /// Ends the current segment after the records appended so far. Resolves, once
    /// they are durable, to the number of the first segment that holds none of them
    /// (every later record goes there or later): a flush of what the engine held at
    /// this call may then remove the segments before it ([`Wal::remove_below`]).
    /// Fails when the WAL fails first.
    pub fn roll(&self) -> LocalFuture<'static, Result<u64, WalError>> {
        let dir = self.dir.display().to_string();
        if let Err(e) = self.check_writable() {
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = oneshot::channel();
        let start_flusher = {
            let mut s = self.state.borrow_mut();
            if !s.pending.is_empty() {
                let chunk = std::mem::take(&mut s.pending);
                s.full_chunks.push(chunk);
            }
            let at = (s.full_chunks.len(), s.waiters.len(), tx);
            s.rolls.push(at);
            !std::mem::replace(&mut s.flushing, true)
        };
        if start_flusher {
            let wal = self.clone();
            glommio::spawn_local(async move { wal.flush_loop().await }).detach();
        }
        Box::pin(async move {
            rx.await.map_err(|_| WalError::Failed {
                dir,
                message: "the WAL failed before the segment could be ended".into(),
            })
        })
    }

    /// Removes the segments numbered below `first` (their records are in durable data
    /// files) and syncs the directory; off the core.
    pub async fn remove_below(&self, first: u64) -> std::io::Result<u64> {
        let dir = self.dir.to_path_buf();
        let removed = glommio::executor()
            .spawn_blocking(move || -> std::io::Result<u64> {
                let mut removed = 0;
                for number in list_segments(&dir)?.into_iter().filter(|&n| n < first) {
                    let path = segment_path(&dir, number);
                    removed += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    std::fs::remove_file(&path)?;
                }
                if removed > 0 {
                    std::fs::File::open(&dir)?.sync_all()?;
                }
                Ok(removed)
            })
            .await?;
        let mut s = self.state.borrow_mut();
        s.stats.disk_bytes = s.stats.disk_bytes.saturating_sub(removed);
        Ok(removed)
    }

    /// Sets the on-disk byte count recovery found (see [`WalStats::disk_bytes`]).
    pub fn set_disk_bytes(&self, bytes: u64) {
        self.state.borrow_mut().stats.disk_bytes = bytes;
    }

    async fn flush_loop(self) {
        loop {
            if !self.config.fsync_delay.is_zero() {
                glommio::timer::sleep(self.config.fsync_delay).await;
            }
            let (buf, waiters, roll) = {
                let mut s = self.state.borrow_mut();
                if s.pending_bytes == 0 && s.rolls.is_empty() {
                    s.flushing = false;
                    for w in s.room_waiters.drain(..) {
                        let _ = w.send(());
                    }
                    return;
                }
                if s.rolls.is_empty() {
                    let mut chunks = std::mem::take(&mut s.full_chunks);
                    chunks.push(std::mem::take(&mut s.pending));
                    s.pending_bytes = 0;
                    (chunks, std::mem::take(&mut s.waiters), None)
                } else {
                    // Up to the first segment end asked for, then end the segment.
                    let (chunks_before, waiters_before, tx) = s.rolls.remove(0);
                    let chunks: Vec<Vec<u8>> = s.full_chunks.drain(..chunks_before).collect();
                    let waiters: Vec<_> = s.waiters.drain(..waiters_before).collect();
                    for roll in &mut s.rolls {
                        roll.0 -= chunks_before;
                        roll.1 -= waiters_before;
                    }
                    s.pending_bytes -= chunks.iter().map(Vec::len).sum::<usize>();
                    (chunks, waiters, Some(tx))
                }
            };
            let result = if buf.iter().all(|c| c.is_empty()) {
                Ok(())
            } else {
                self.write_and_sync(&buf).await
            };
            let mut s = self.state.borrow_mut();
            if let (Ok(()), Some(tx)) = (&result, roll) {
                if s.file.take().is_some() {
                    s.segment_number += 1;
                    s.offset = 0;
                }
                let _ = tx.send(s.segment_number);
            }
            for w in s.room_waiters.drain(..) {
                let _ = w.send(());
            }
            match result {
                Ok(()) => {
                    s.stats.syncs += 1;
                    for w in waiters {
                        let _ = w.send(Ok(()));
                    }
                }
                Err(message) => {
                    tracing::error!(dir = %self.dir.display(), %message, "WAL write failed; refusing writes to this shard until the disk takes writes again");
                    let err = WalError::Io {
                        dir: self.dir.display().to_string(),
                        message: message.clone(),
                    };
                    s.failed = Some(message);
                    s.stats.failures += 1;
                    // Segment ends asked for fail with the WAL (their senders go).
                    s.rolls.clear();
                    for w in waiters.into_iter().chain(s.waiters.drain(..)) {
                        let _ = w.send(Err(err.clone()));
                    }
                    // What failed, then what arrived meanwhile, in WAL order.
                    let mut unsynced = buf;
                    unsynced.append(&mut s.full_chunks);
                    unsynced.push(std::mem::take(&mut s.pending));
                    unsynced.retain(|c| !c.is_empty());
                    s.unsynced = unsynced;
                    s.pending_bytes = 0;
                    s.flushing = false;
                    drop(s);
                    let wal = self.clone();
                    glommio::spawn_local(async move { wal.resume_loop().await }).detach();
                    return;
                }
            }
        }
    }

    /// Probes a failed WAL until it takes writes again (see the module doc).
    async fn resume_loop(self) {
        let mut wait = RESUME_PROBE_MIN;
        loop {
            glommio::timer::sleep(wait).await;
            if self.state.borrow().closed {
                return;
            }
            match self.try_resume().await {
                Ok(()) => {
                    let mut s = self.state.borrow_mut();
                    s.failed = None;
                    s.stats.resumes += 1;
                    for w in s.room_waiters.drain(..) {
                        let _ = w.send(());
                    }
                    tracing::warn!(dir = %self.dir.display(), "WAL resumed: the disk takes writes again");
                    return;
                }
                Err(message) => {
                    tracing::debug!(dir = %self.dir.display(), %message, "WAL still cannot write");
                    self.state.borrow_mut().failed = Some(message);
                    wait = (wait * 2).min(RESUME_PROBE_MAX);
                }
            }
        }
    }

    /// One probe: cut the segment that failed back to its synced end (removed if that
    /// is nothing), then write and sync the unsynced records in a new segment.
    async fn try_resume(&self) -> Result<(), String> {
        let (file, number, synced) = {
            let mut s = self.state.borrow_mut();
            (s.file.take(), s.segment_number, s.offset)
        };
        if file.is_some() {
            drop(file);
            let path = segment_path(&self.dir, number);
            let dir = self.dir.to_path_buf();
            glommio::executor()
                .spawn_blocking(move || cut_segment(&dir, &path, synced))
                .await
                .map_err(|e| format!("cannot cut the failed segment: {e}"))?;
            let mut s = self.state.borrow_mut();
            s.segment_number = number + 1;
            s.offset = 0;
        }
        let unsynced = std::mem::take(&mut self.state.borrow_mut().unsynced);
        match self.write_and_sync(&unsynced).await {
            Ok(()) => Ok(()),
            Err(message) => {
                self.state.borrow_mut().unsynced = unsynced;
                Err(message)
            }
        }
    }

    /// Writes `buf` at the end of the current segment and fdatasyncs it, rolling to a
    /// new segment first when the current one is full.
    async fn write_and_sync(&self, chunks: &[Vec<u8>]) -> Result<(), String> {
        let (file, offset) = self.current_segment().await?;
        let end = file
            .write_chunks(offset, chunks)
            .await
            .map_err(|e| e.to_string())?;
        file.sync().await.map_err(|e| e.to_string())?;
        let mut s = self.state.borrow_mut();
        s.stats.disk_bytes += end.saturating_sub(offset);
        s.offset = end;
        Ok(())
    }

    async fn current_segment(&self) -> Result<(Rc<dyn WalFile>, u64), String> {
        let (file, offset, number) = {
            let s = self.state.borrow();
            (s.file.clone(), s.offset, s.segment_number)
        };
        if let Some(file) = file {
            if offset < self.config.segment_size_bytes {
                return Ok((file, offset));
            }
        }
        let next = if self.state.borrow().file.is_some() {
            number + 1
        } else {
            number
        };
        let path = segment_path(&self.dir, next);
        let file = match DmaFile::create(&path).await {
            // Whole commit blocks must be whole DMA blocks.
            Ok(file) if COMMIT_BLOCK_BYTES % (file.alignment().max(1) as usize) == 0 => {
                SegmentFile::Direct(file)
            }
            Ok(file) => {
                let align = file.alignment();
                drop(file);
                tracing::debug!(
                    align,
                    "O_DIRECT alignment above the WAL's commit block; WAL uses buffered writes"
                );
                SegmentFile::Buffered(
                    BufferedFile::create(&path)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            Err(direct_error) => {
                tracing::debug!(error = %direct_error, "O_DIRECT unavailable; WAL uses buffered writes");
                SegmentFile::Buffered(
                    BufferedFile::create(&path)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        // The new name must survive a crash too (a blocking fsync: off the core).
        let dir = self.dir.to_path_buf();
        glommio::executor()
            .spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
            .await
            .map_err(|e| format!("fsync of {}: {e}", self.dir.display()))?;
        let mut file: Rc<dyn WalFile> = Rc::new(file);
        if let Some(seam) = self.state.borrow().seam.clone() {
            file = seam(file);
        }
        let mut s = self.state.borrow_mut();
        s.file = Some(file.clone());
        s.segment_number = next;
        s.offset = 0;
        Ok((file, 0))
    }

    /// Waits until everything appended so far has been written and synced, or has
    /// failed (then the error).
    pub async fn flush(&self) -> Result<(), WalError> {
        loop {
            let busy = {
                let s = self.state.borrow();
                s.failed.is_none() && (s.flushing || s.pending_bytes > 0)
            };
            if !busy {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        match &self.state.borrow().failed {
            Some(message) => Err(WalError::Failed {
                dir: self.dir.display().to_string(),
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Waits until everything appended so far is durable (or failed), then refuses new
    /// records.
    pub async fn close(&self) {
        let _ = self.flush().await;
        self.state.borrow_mut().closed = true;
    }
}

/// Cuts a segment back to `synced` bytes (removes it when that is none) and syncs the
/// change, so no torn record stays after the last synced one. Blocking: runs off the
/// core.
fn cut_segment(dir: &Path, path: &Path, synced: u64) -> std::io::Result<()> {
    if synced == 0 {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    } else {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(synced)?;
        file.sync_all()?;
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `chunks` at `offset` through the page cache. Returns the new end. (glommio's
/// buffered write takes the buffer, so each chunk is copied: the WAL keeps its own
/// until the sync succeeds. Only filesystems without O_DIRECT take this path.)
async fn write_buffered(
    file: &BufferedFile,
    offset: u64,
    chunks: &[Vec<u8>],
) -> std::io::Result<u64> {
    let mut position = offset;
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        let len = chunk.len() as u64;
        let written = file
            .write_at(chunk.clone(), position)
            .await
            .map_err(glommio_error)? as u64;
        // A regular file only writes short when the disk is full or a limit is hit;
        // the rest is then unknown on disk, so this is a failure, not a retry.
        if written != len {
            return Err(short_write(written, len));
        }
        position += len;
    }
    // The next commit starts in a fresh block; the gap stays a hole (reads as zeros).
    Ok(commit_end(position))
}

/// Where the commit after one ending at `end` starts: the next block boundary.
fn commit_end(end: u64) -> u64 {
    end.div_ceil(COMMIT_BLOCK_BYTES as u64) * COMMIT_BLOCK_BYTES as u64
}

/// Writes `chunks` at `offset` (a commit block boundary) with O_DIRECT, in aligned
/// buffers of at most [`WRITE_CHUNK_BYTES`], the last one zero-padded to a whole commit
/// block. Returns where the next commit starts.
async fn write_direct(file: &DmaFile, offset: u64, chunks: &[Vec<u8>]) -> std::io::Result<u64> {
    debug_assert_eq!(offset % COMMIT_BLOCK_BYTES as u64, 0);
    let sources: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    let total: usize = sources.iter().map(|s| s.len()).sum();
    let mut cursor = SliceCursor::new(&sources);
    let mut position = offset;
    let mut done = 0usize;
    while done < total {
        let n = (total - done).min(WRITE_CHUNK_BYTES);
        let padded = n.div_ceil(COMMIT_BLOCK_BYTES) * COMMIT_BLOCK_BYTES;
        let mut buf = file.alloc_dma_buffer(padded);
        let bytes = buf.as_bytes_mut();
        cursor.copy_to(&mut bytes[..n]);
        bytes[n..].fill(0);
        let written = file.write_at(buf, position).await.map_err(glommio_error)?;
        if written != padded {
            return Err(short_write(written as u64, padded as u64));
        }
        position += padded as u64;
        done += n;
    }
    Ok(position)
}

fn short_write(written: u64, len: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::WriteZero,
        format!("short write: {written} of {len} bytes (disk full?)"),
    )
}

/// Reads consecutively from a list of slices.
struct SliceCursor<'a> {
    slices: &'a [&'a [u8]],
    index: usize,
    offset: usize,
}

impl<'a> SliceCursor<'a> {
    fn new(slices: &'a [&'a [u8]]) -> Self {
        SliceCursor {
            slices,
            index: 0,
            offset: 0,
        }
    }

    fn copy_to(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            let src = &self.slices[self.index][self.offset..];
            let n = src.len().min(out.len());
            out[..n].copy_from_slice(&src[..n]);
            out = &mut out[n..];
            self.offset += n;
            if self.offset == self.slices[self.index].len() {
                self.index += 1;
                self.offset = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_executor() -> glommio::LocalExecutor {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .make()
            .unwrap()
    }

    fn record(lines: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(&mut out, Precision::Second, 42, |b| {
            b.extend_from_slice(lines)
        });
        out
    }

    proptest::proptest! {
        /// Recovery reads bytes from the disk: any bytes decode to a valid prefix (what
        /// it returns) without a panic, and good records before garbage are all kept.
        #[test]
        fn arbitrary_bytes_decode_to_a_valid_prefix(
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            good in 0usize..4,
        ) {
            let mut seg = Vec::new();
            for i in 0..good {
                seg.extend(record(format!("m v={i} {i}\n").as_bytes()));
            }
            let prefix = seg.len();
            seg.extend_from_slice(&garbage);
            let mut seen = 0;
            let valid = decode_records(&seg, |_| seen += 1);
            proptest::prop_assert!(valid >= prefix && valid <= seg.len());
            proptest::prop_assert!(seen >= good);
            let valid = decode_records(&garbage, |_| {});
            proptest::prop_assert!(valid <= garbage.len());
        }
    }

    #[test]
    fn decode_stops_at_torn_or_corrupt_tail() {
        let mut seg = record(b"cpu v=1 1\n");
        seg.extend(record(b"cpu v=2 2\n"));
        let good = seg.len();
        let third = record(b"cpu v=3 3\n");
        seg.extend_from_slice(&third[..third.len() - 3]);
        let mut seen = Vec::new();
        let valid = decode_records(&seg, |r| {
            assert_eq!(r.precision, Precision::Second);
            assert_eq!(r.default_time_ns, 42);
            seen.push(r.lines.to_vec())
        });
        assert_eq!(valid, good);
        assert_eq!(seen, vec![b"cpu v=1 1\n".to_vec(), b"cpu v=2 2\n".to_vec()]);

        let mut flipped = record(b"cpu v=1 1\n");
        let first = flipped.len();
        flipped.extend(record(b"cpu v=2 2\n"));
        let last = flipped.len() - 2;
        flipped[last] ^= 0x40;
        assert_eq!(decode_records(&flipped, |_| {}), first);
    }

    #[test]
    fn recover_truncates_file_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = record(b"a v=1 1\n");
        seg.extend_from_slice(b"\x05\x00\x00\x00garbage");
        std::fs::write(segment_path(dir.path(), 3), &seg).unwrap();
        let mut n = 0;
        let (report, next) = recover(dir.path(), true, |_| n += 1).unwrap();
        assert_eq!(n, 1);
        assert_eq!(next, 4);
        assert_eq!(report.truncated_segments, 1);
        assert_eq!(report.truncated_bytes, 11);
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 3))
                .unwrap()
                .len() as usize,
            seg.len() - 11
        );
    }

    #[test]
    fn many_flushes_with_partial_blocks_recover_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let ex = test_executor();
        let mut expected = Vec::new();
        for i in 0..40usize {
            // Sizes that leave every kind of partial block, and one record larger than
            // a write chunk.
            let len = if i == 20 {
                WRITE_CHUNK_BYTES + 12_345
            } else {
                1 + i * 997
            };
            let mut line = format!("m v={i} ").into_bytes();
            line.resize(len, b'x');
            line.push(b'\n');
            expected.push(line);
        }
        let lines = expected.clone();
        ex.run(async move {
            let wal = Wal::new(
                path,
                1,
                WalConfig {
                    fsync_delay: Duration::ZERO,
                    segment_size_bytes: 1 << 30,
                    max_pending_bytes: 1 << 30,
                },
            );
            for (i, line) in lines.iter().enumerate() {
                let ack = wal
                    .append(Precision::Nanosecond, i as i64, |b| {
                        b.extend_from_slice(line)
                    })
                    .unwrap();
                // Await every other record alone: flushes of one and of two records.
                if i % 2 == 0 {
                    ack.await.unwrap().unwrap();
                }
            }
            wal.close().await;
        });
        let mut got = Vec::new();
        let (report, _) = recover(dir.path(), true, |r| got.push(r.lines.to_vec())).unwrap();
        assert_eq!(
            report.truncated_segments, 0,
            "zero padding is not corruption"
        );
        assert_eq!(got, expected);
    }

    #[test]
    fn append_is_durable_and_recoverable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let ex = test_executor();
        ex.run(async move {
            let wal = Wal::new(
                path.clone(),
                1,
                WalConfig {
                    fsync_delay: Duration::ZERO,
                    segment_size_bytes: 64,
                    max_pending_bytes: 1 << 20,
                },
            );
            let mut acks = Vec::new();
            for i in 0..10 {
                let line = format!("m v={i} {i}\n");
                acks.push(
                    wal.append(Precision::Nanosecond, 0, |b| {
                        b.extend_from_slice(line.as_bytes())
                    })
                    .unwrap(),
                );
            }
            for ack in acks {
                ack.await.unwrap().unwrap();
            }
            assert!(wal.stats().syncs >= 1);
            wal.close().await;
            assert!(wal.append(Precision::Nanosecond, 0, |_| {}).is_err());
        });
        let mut lines = Vec::new();
        let (report, _) = recover(dir.path(), true, |r| lines.push(r.lines.to_vec())).unwrap();
        assert_eq!(report.records, 10);
        assert_eq!(lines[9], b"m v=9 9\n".to_vec());
        assert_eq!(report.truncated_segments, 0);
    }

    /// Faults a test injects through the file seam.
    #[derive(Default)]
    struct Faults {
        /// The next write stores half its bytes, then fails.
        tear_next_write: std::cell::Cell<bool>,
        /// The next write garbles the whole block its offset falls in, in this segment
        /// file (as a device tearing a block write may leave it), then fails.
        garble_next_block: RefCell<Option<PathBuf>>,
        /// Syncs fail while set.
        fail_syncs: std::cell::Cell<bool>,
    }

    struct FaultyFile {
        inner: Rc<dyn WalFile>,
        faults: Rc<Faults>,
    }

    impl WalFile for FaultyFile {
        fn write_chunks<'a>(
            &'a self,
            offset: u64,
            chunks: &'a [Vec<u8>],
        ) -> LocalFuture<'a, std::io::Result<u64>> {
            Box::pin(async move {
                if let Some(path) = self.faults.garble_next_block.borrow_mut().take() {
                    use std::os::unix::fs::FileExt;
                    let block = offset / COMMIT_BLOCK_BYTES as u64 * COMMIT_BLOCK_BYTES as u64;
                    let file = std::fs::OpenOptions::new().write(true).open(path)?;
                    file.write_all_at(&[0xa5; COMMIT_BLOCK_BYTES], block)?;
                    return Err(std::io::Error::other("power lost mid-write"));
                }
                if !self.faults.tear_next_write.replace(false) {
                    return self.inner.write_chunks(offset, chunks).await;
                }
                let mut half = chunks.concat();
                half.truncate(half.len() / 2);
                self.inner.write_chunks(offset, &[half]).await?;
                Err(std::io::Error::other("injected torn write"))
            })
        }

        fn sync(&self) -> LocalFuture<'_, std::io::Result<()>> {
            Box::pin(async move {
                if self.faults.fail_syncs.get() {
                    return Err(std::io::Error::other("injected EIO on fdatasync"));
                }
                self.inner.sync().await
            })
        }
    }

    fn faulty(faults: &Rc<Faults>) -> WalFileSeam {
        let faults = faults.clone();
        Rc::new(move |inner| {
            Rc::new(FaultyFile {
                inner,
                faults: faults.clone(),
            })
        })
    }

    fn line(wal: &Wal, i: u32) -> Result<oneshot::Receiver<Result<(), WalError>>, WalError> {
        let line = format!("m v={i} {i}\n");
        wal.append(Precision::Nanosecond, 0, |b| {
            b.extend_from_slice(line.as_bytes())
        })
    }

    async fn resumed(wal: &Wal) {
        for _ in 0..500 {
            if wal.check_writable().is_ok() {
                return;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        panic!("the WAL did not resume");
    }

    /// Arms a fault (`arm`) between an acknowledged record and one that fails, clears
    /// it (`heal`), lets the WAL resume and takes a third; returns what recovery reads.
    fn fail_then_resume(
        arm: impl Fn(&Faults) + 'static,
        heal: impl Fn(&Faults) + 'static,
    ) -> (Vec<Vec<u8>>, RecoveryReport) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        test_executor().run(async move {
            let config = WalConfig {
                fsync_delay: Duration::ZERO,
                segment_size_bytes: 1 << 20,
                max_pending_bytes: 1 << 20,
            };
            let wal = Wal::new(path, 1, config);
            let faults = Rc::new(Faults::default());
            wal.set_file_seam(faulty(&faults));
            line(&wal, 1).unwrap().await.unwrap().unwrap();
            arm(&faults);
            let failed = line(&wal, 2).unwrap().await.unwrap();
            assert!(matches!(failed, Err(WalError::Io { .. })), "{failed:?}");
            // Refused, and said why, until the disk takes writes again.
            let refused = line(&wal, 9).unwrap_err();
            assert!(refused.to_string().contains("injected"), "{refused}");
            assert!(wal.flush().await.is_err());
            heal(&faults);
            resumed(&wal).await;
            let stats = wal.stats();
            assert_eq!((stats.failures, stats.resumes), (1, 1));
            line(&wal, 3).unwrap().await.unwrap().unwrap();
            wal.close().await;
        });
        let mut lines = Vec::new();
        let (report, _) = recover(dir.path(), true, |r| lines.push(r.lines.to_vec())).unwrap();
        (lines, report)
    }

    /// What recovery reads after [`fail_then_resume`]: each record once, in order.
    fn three_lines() -> Vec<Vec<u8>> {
        (1..=3)
            .map(|i| format!("m v={i} {i}\n").into_bytes())
            .collect()
    }

    #[test]
    fn a_torn_write_fails_the_wal_and_the_resume_leaves_no_torn_bytes_behind() {
        let (lines, report) = fail_then_resume(|f| f.tear_next_write.set(true), |_| {});
        // Record 2 was never acknowledged but is in the head: the resume wrote it to a
        // new segment, after cutting the torn half from the old one.
        assert_eq!(lines, three_lines());
        assert_eq!(report.truncated_segments, 0, "{report:?}");
        assert_eq!(report.segments, 2, "{report:?}");
    }

    /// A torn commit on power loss garbles the blocks it was writing, worst case its
    /// whole first block: every record acknowledged before it is still read back, and
    /// recovery cuts the torn commit.
    #[test]
    fn a_torn_commit_never_takes_acknowledged_records_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let segment = segment_path(dir.path(), 1);
        test_executor().run(async move {
            let wal = Wal::new(
                path,
                1,
                WalConfig {
                    fsync_delay: Duration::ZERO,
                    segment_size_bytes: 1 << 20,
                    max_pending_bytes: 1 << 20,
                },
            );
            let faults = Rc::new(Faults::default());
            wal.set_file_seam(faulty(&faults));
            // Three commits of small records, each acknowledged: they share no block
            // with the next commit, though each fills only part of one.
            for i in 1..=3 {
                line(&wal, i).unwrap().await.unwrap().unwrap();
            }
            *faults.garble_next_block.borrow_mut() = Some(segment);
            let torn = line(&wal, 4).unwrap().await.unwrap();
            assert!(torn.is_err(), "{torn:?}");
        });
        let mut lines = Vec::new();
        recover(dir.path(), true, |r| lines.push(r.lines.to_vec())).unwrap();
        let acknowledged: Vec<Vec<u8>> = (1..=3)
            .map(|i| format!("m v={i} {i}\n").into_bytes())
            .collect();
        assert_eq!(lines, acknowledged);
    }

    #[test]
    fn commits_start_in_fresh_blocks_and_padding_is_skipped() {
        let mut seg = record(b"a v=1 1\n");
        seg.resize(COMMIT_BLOCK_BYTES, 0);
        seg.extend(record(b"b v=2 2\n"));
        seg.extend(record(b"c v=3 3\n"));
        let end = seg.len();
        seg.resize(3 * COMMIT_BLOCK_BYTES, 0);
        let mut seen = Vec::new();
        assert_eq!(decode_records(&seg, |r| seen.push(r.lines.to_vec())), end);
        assert_eq!(seen.len(), 3);
        // A record whose length starts with a zero byte (256) after padding.
        let mut long = record(b"a v=1 1\n");
        long.resize(COMMIT_BLOCK_BYTES, 0);
        let mut line = b"d v=4 4 ".to_vec();
        line.resize(256 - 10 - 1, b'x');
        line.push(b'\n');
        long.extend(record(&line));
        assert_eq!(
            long[COMMIT_BLOCK_BYTES], 0,
            "length 256 starts with a zero byte"
        );
        let mut seen = 0;
        assert_eq!(decode_records(&long, |_| seen += 1), long.len());
        assert_eq!(seen, 2);
        // Padding shorter than a record header (1 to 7 bytes before the boundary):
        // the bytes where a length would be run into the next commit's record.
        for short in 1..=8 {
            let mut seg = Vec::new();
            let filler = COMMIT_BLOCK_BYTES - short - RECORD_HEADER_BYTES - PAYLOAD_HEADER_BYTES;
            let mut line = vec![b'x'; filler - 1];
            line.push(b'\n');
            seg.extend(record(&line));
            assert_eq!(seg.len(), COMMIT_BLOCK_BYTES - short);
            seg.resize(COMMIT_BLOCK_BYTES, 0);
            seg.extend(record(b"b v=2 2\n"));
            let mut seen = 0;
            assert_eq!(decode_records(&seg, |_| seen += 1), seg.len(), "{short}");
            assert_eq!(seen, 2, "padding of {short} bytes");
        }
        // Garbage inside the padded block is corruption, not a commit.
        let mut bad = record(b"a v=1 1\n");
        let first = bad.len();
        bad.resize(100, 0);
        bad.push(7);
        assert_eq!(decode_records(&bad, |_| {}), first);
    }

    proptest::proptest! {
        /// Commits of records of any sizes, each starting at a block boundary with
        /// zero padding before it (as the writers lay them out), decode whole.
        #[test]
        fn padded_commits_of_any_sizes_decode_whole(
            commits in proptest::collection::vec(
                proptest::collection::vec(0usize..9000, 1..4), 1..6)
        ) {
            let mut seg = Vec::new();
            let mut want = 0;
            for commit in &commits {
                for &size in commit {
                    let mut line = vec![b'y'; size];
                    line.push(b'\n');
                    seg.extend(record(&line));
                    want += 1;
                }
                let end = seg.len();
                seg.resize(commit_end(end as u64) as usize, 0);
            }
            let mut seen = 0;
            decode_records(&seg, |_| seen += 1);
            proptest::prop_assert_eq!(seen, want);
        }
    }

    #[test]
    fn a_failed_fdatasync_acknowledges_nothing_and_the_resume_rewrites_what_it_covered() {
        let (lines, report) =
            fail_then_resume(|f| f.fail_syncs.set(true), |f| f.fail_syncs.set(false));
        // Nothing after the last good sync is trusted: record 2's bytes in the old
        // segment were cut, and it was written again, once, in the new one.
        assert_eq!(lines, three_lines());
        assert_eq!(report.truncated_segments, 0, "{report:?}");
    }
}
