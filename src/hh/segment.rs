//! One hinted-handoff segment: a preallocated, append-only file of crc32c-framed
//! records, written with `pwrite` and read through a read-only map, and the reader that
//! walks its records.
//!
//! Why `pwrite` and not stores into a shared writable map (the first version): on this
//! class of disk (ext4 on a virtio disk) an `msync`/`fdatasync` of pages dirtied
//! through a shared mapping ran at 350-450 MiB/s, against 1.2-1.4 GiB/s for the same
//! bytes written with `pwrite` into the preallocated file and `fdatasync`ed (see
//! PERFORMANCE.md, "Hinted-handoff enqueue"), and a writable map has to be prefaulted
//! (every page dirtied) so appends do not fault on the core, which doubles writeback.
//! The page cache is the same for both, so the read-only map sees every `pwrite` at
//! once.
//!
//! Record (every integer big-endian, like the cluster wire protocol):
//!
//! ```text
//! length u32 | crc32c u32 | shard id u64 | enqueued_at_ns i64 | line-protocol lines
//!              \_____________ crc32c covers these, length counts them ______________/
//! ```
//!
//! `length` counts the bytes after the crc (shard id + enqueued_at_ns + lines), so a
//! record occupies `8 + length` bytes; `crc32c` is computed over the same bytes. A
//! `length` of zero marks the end of written data: the file is preallocated with zeros.
//!
//! The reader ([`read_records`]) stops cleanly at the end marker and reports anything
//! else it cannot read as a [`ReadFault`] whose [`FaultKind`] tells a torn tail (a
//! record that was being written when the process or machine died: nothing but zeros
//! follows it) from corruption (bad crc, impossible length, or written bytes after a
//! zero length).
//!
//! **API boundary:** this module knows files and bytes, not queues: it never decides
//! what to do with a fault (the queue moves bad bytes to the dead-letter log).

use memmap2::{Advice, Mmap, MmapOptions};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `length u32 | crc32c u32`.
pub const RECORD_HEADER_BYTES: usize = 8;
/// `shard id u64 | enqueued_at_ns i64`, the part of the payload before the lines.
pub const PAYLOAD_HEADER_BYTES: usize = 16;
/// The smallest record: headers and no lines.
pub const MIN_RECORD_BYTES: usize = RECORD_HEADER_BYTES + PAYLOAD_HEADER_BYTES;
/// A `length` above this is corruption, not data (see the limit).
pub const MAX_PAYLOAD_BYTES: u32 = crate::limits::HH_MAX_PAYLOAD_BYTES;
/// The smallest segment (one page).
pub const PAGE_BYTES: usize = 4096;
/// The encode buffer of [`Segment::append`] is given back to the allocator when a
/// record left it larger than this.
pub const KEEP_SCRATCH_BYTES: usize = crate::limits::HH_KEEP_SCRATCH_BYTES;

/// Bytes a record with `lines_bytes` of line protocol occupies in a segment.
pub fn record_bytes(lines_bytes: u64) -> u64 {
    MIN_RECORD_BYTES as u64 + lines_bytes
}

/// `00000001.seg`: eight digits, so a directory listing sorts in queue order for the
/// first hundred million segments (the parser accepts more digits after that).
pub fn segment_file_name(number: u64) -> String {
    format!("{number:08}.seg")
}

/// The segment number in a file name written by [`segment_file_name`], or `None`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes one record into `out`, which must be exactly
/// `record_bytes(sum of lines lengths)` long. The payload is written before the header,
/// so a reader of the same memory never sees a complete-looking header over missing
/// bytes; on disk the crc is what protects against torn writes.
pub fn encode_record(out: &mut [u8], shard_id: u64, enqueued_at_ns: i64, lines: &[&[u8]]) {
    let payload_len = out.len() - RECORD_HEADER_BYTES;
    debug_assert!(payload_len >= PAYLOAD_HEADER_BYTES);
    debug_assert!(payload_len as u64 <= MAX_PAYLOAD_BYTES as u64);
    let (header, payload) = out.split_at_mut(RECORD_HEADER_BYTES);
    payload[..8].copy_from_slice(&shard_id.to_be_bytes());
    payload[8..16].copy_from_slice(&enqueued_at_ns.to_be_bytes());
    let mut at = PAYLOAD_HEADER_BYTES;
    for line in lines {
        payload[at..at + line.len()].copy_from_slice(line);
        at += line.len();
    }
    debug_assert_eq!(
        at, payload_len,
        "out must be exactly record_bytes(lines) long"
    );
    let crc = crc32c::crc32c(payload);
    header[..4].copy_from_slice(&(payload_len as u32).to_be_bytes());
    header[4..].copy_from_slice(&crc.to_be_bytes());
}

/// A record read in place from a segment's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Offset of the record's first byte in the segment.
    pub offset: u64,
    pub shard_id: u64,
    pub enqueued_at_ns: i64,
    /// The line-protocol lines, exactly as appended (concatenated).
    pub lines: &'a [u8],
}

impl RecordRef<'_> {
    /// Bytes the record occupies in the segment, headers included.
    pub fn stored_bytes(&self) -> u64 {
        record_bytes(self.lines.len() as u64)
    }

    /// Offset just past the record: where the next one starts.
    pub fn end(&self) -> u64 {
        self.offset + self.stored_bytes()
    }
}

/// Why a reader could not read a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A plausible record whose crc does not match, followed by nothing but zeros: a
    /// write that did not reach the disk whole before a crash.
    TornTail,
    /// A crc mismatch with written bytes after the record: corruption.
    BadCrc,
    /// A length that cannot be (below the headers, above [`MAX_PAYLOAD_BYTES`], or past
    /// the end of the segment): corruption, or a torn length field.
    BadLength,
    /// A zero length (the end marker) with written bytes after it: corruption of a
    /// length field, or a lost page in the middle of the data.
    DataAfterEndMarker,
}

/// A record the reader could not read. The bytes `offset..data_end` are everything from
/// the fault to the last non-zero byte of the segment: what the queue moves aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFault {
    pub offset: u64,
    pub kind: FaultKind,
    /// One past the last non-zero byte of the segment (at least `offset + 1`).
    pub data_end: u64,
}

impl ReadFault {
    /// Words for logs and the dead-letter log.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            FaultKind::TornTail => "torn tail (a write that did not finish before a crash)",
            FaultKind::BadCrc => "crc32c mismatch (corrupt record)",
            FaultKind::BadLength => "impossible record length (corrupt record)",
            FaultKind::DataAfterEndMarker => "zero length followed by data (corrupt record)",
        }
    }
}

/// One past the last non-zero byte of `bytes` at or after `from`, or `from` when every
/// byte from there on is zero.
pub fn data_end(bytes: &[u8], from: usize) -> usize {
    let from = from.min(bytes.len());
    match bytes[from..].iter().rposition(|&b| b != 0) {
        Some(last) => from + last + 1,
        None => from,
    }
}

/// Decodes the record at `offset`. `Ok(None)` is the end of data: a zero length with
/// only zeros after it, or fewer than four bytes left.
pub fn decode_at(bytes: &[u8], offset: u64) -> Result<Option<RecordRef<'_>>, ReadFault> {
    let at = usize::try_from(offset).unwrap_or(usize::MAX);
    if at >= bytes.len() || bytes.len() - at < 4 {
        return if data_end(bytes, at) > at {
            Err(fault(bytes, at, FaultKind::BadLength))
        } else {
            Ok(None)
        };
    }
    let length = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if length == 0 {
        return if data_end(bytes, at) > at {
            Err(fault(bytes, at, FaultKind::DataAfterEndMarker))
        } else {
            Ok(None)
        };
    }
    let end = at as u64 + RECORD_HEADER_BYTES as u64 + length as u64;
    if (length as usize) < PAYLOAD_HEADER_BYTES
        || length > MAX_PAYLOAD_BYTES
        || end > bytes.len() as u64
    {
        return Err(fault(bytes, at, FaultKind::BadLength));
    }
    let end = end as usize;
    let stored_crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
    let payload = &bytes[at + RECORD_HEADER_BYTES..end];
    if crc32c::crc32c(payload) != stored_crc {
        let kind = if data_end(bytes, end) == end {
            FaultKind::TornTail
        } else {
            FaultKind::BadCrc
        };
        return Err(fault(bytes, at, kind));
    }
    Ok(Some(RecordRef {
        offset,
        shard_id: u64::from_be_bytes(payload[..8].try_into().expect("8 bytes")),
        enqueued_at_ns: i64::from_be_bytes(payload[8..16].try_into().expect("8 bytes")),
        lines: &payload[PAYLOAD_HEADER_BYTES..],
    }))
}

fn fault(bytes: &[u8], at: usize, kind: FaultKind) -> ReadFault {
    ReadFault {
        offset: at as u64,
        kind,
        data_end: data_end(bytes, at).max(at + 1) as u64,
    }
}

/// Walks the records of `bytes` from `offset`: yields each good record, then stops at
/// the end marker, or yields one [`ReadFault`] and stops.
pub fn read_records(bytes: &[u8], offset: u64) -> RecordIter<'_> {
    RecordIter {
        bytes,
        offset,
        done: false,
    }
}

/// See [`read_records`].
pub struct RecordIter<'a> {
    bytes: &'a [u8],
    offset: u64,
    done: bool,
}

impl RecordIter<'_> {
    /// Offset after the last good record read so far: the logical end of data once the
    /// iterator is exhausted, or the fault's offset after a fault.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordRef<'a>, ReadFault>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match decode_at(self.bytes, self.offset) {
            Ok(Some(record)) => {
                self.offset = record.end();
                Some(Ok(record))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(fault) => {
                self.done = true;
                Some(Err(fault))
            }
        }
    }
}

/// The two file operations a segment's appends and flushes go through: the real file,
/// or in tests one that fails or tears a chosen write or sync (STYLE: seams for
/// testing faults). Reads go through the map, recovery through the real file.
pub trait SegmentFile: Send + Sync {
    /// `pwrite` of all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
}

impl SegmentFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// Wraps the file of each segment a queue creates: the identity in production
/// ([`real_files`]); a fault-injecting file in tests.
pub type FileSeam = Arc<dyn Fn(File) -> Arc<dyn SegmentFile> + Send + Sync>;

/// The production [`FileSeam`]: the file itself.
pub fn real_files() -> FileSeam {
    Arc::new(|file| Arc::new(file))
}

/// A segment file: written with `pwrite`, read through a read-only map.
///
/// The file handle is shared (`Arc`) so a flush can `fdatasync` it from another
/// thread while the owning core keeps appending (see the queue's `FlushJob`).
pub struct Segment {
    path: PathBuf,
    number: u64,
    file: Arc<dyn SegmentFile>,
    map: Mmap,
}

impl Segment {
    /// Creates `path` (which must not exist), preallocates `size_bytes` and maps it.
    /// Blocking: `fallocate` of 10 MiB takes well under a millisecond on ext4/xfs, but
    /// it is still a syscall into the filesystem, so call it from a blocking thread.
    ///
    /// `fallocate` reserves the blocks now, so a full disk is an error here and not on a
    /// later append, and `fdatasync` after a `pwrite` into reserved blocks only flips
    /// their extents to written (appending to a sparse file also allocates, and
    /// measured 3-4x slower on the first pass). Filesystems without `fallocate` get a
    /// sparse `set_len`, and a warning.
    pub fn create(path: &Path, number: u64, size_bytes: u64) -> io::Result<Segment> {
        Self::create_with(path, number, size_bytes, &real_files())
    }

    /// [`Segment::create`] with the appends and syncs going through `seam`.
    pub fn create_with(
        path: &Path,
        number: u64,
        size_bytes: u64,
        seam: &FileSeam,
    ) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let result = preallocate(&file, size_bytes, path).and_then(|()| Self::map(file));
        match result {
            Ok((file, map)) => Ok(Self::from_parts(path, number, (seam(file), map))),
            Err(error) => {
                let _ = std::fs::remove_file(path);
                Err(error)
            }
        }
    }

    /// Opens and maps an existing segment (recovery, or a segment becoming the replay
    /// head). Blocking: open + mmap; the pages fault in when they are read.
    pub fn open(path: &Path, number: u64) -> io::Result<Segment> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if file.metadata()?.len() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "empty segment file",
            ));
        }
        let (file, map) = Self::map(file)?;
        Ok(Self::from_parts(path, number, (Arc::new(file), map)))
    }

    fn map(file: File) -> io::Result<(File, Mmap)> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "segment too large to map"))?;
        // SAFETY: memmap2's contract is that nobody truncates the file while it is
        // mapped (writes through `pwrite` are fine: the map is the page cache, and
        // readers only look at bytes the queue has written). Invariant: only the owning
        // core touches a queue directory, and it never truncates a mapped segment.
        let map = unsafe { MmapOptions::new().len(len).map(&file)? };
        Ok((file, map))
    }

    fn from_parts(path: &Path, number: u64, (file, map): (Arc<dyn SegmentFile>, Mmap)) -> Segment {
        Segment {
            path: path.to_path_buf(),
            number,
            file,
            map,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    /// The file length (the mapped length).
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The whole mapped file, data and zero padding.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// A handle on the file for `fdatasync` from another thread.
    pub fn file(&self) -> Arc<dyn SegmentFile> {
        Arc::clone(&self.file)
    }

    /// Hints the kernel that the segment is about to be read front to back (replay).
    pub fn advise_sequential_read(&self) {
        let _ = self.map.advise(Advice::Sequential);
        let _ = self.map.advise(Advice::WillNeed);
    }

    /// Encodes a record into `scratch` and writes it at `offset` with one `pwrite`;
    /// returns the offset after it. The caller checked that it fits
    /// (`offset + record_bytes <= len`). Not durable until [`Segment::sync`]. A failed
    /// write leaves the bytes at `offset..` unknown: the caller must stop appending.
    pub fn append(
        &mut self,
        offset: u64,
        shard_id: u64,
        enqueued_at_ns: i64,
        lines: &[&[u8]],
        scratch: &mut Vec<u8>,
    ) -> io::Result<u64> {
        let lines_bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();
        let record = record_bytes(lines_bytes);
        let end = offset + record;
        assert!(
            end <= self.len(),
            "record does not fit the segment: the queue checks room"
        );
        scratch.clear();
        scratch.resize(record as usize, 0);
        encode_record(scratch, shard_id, enqueued_at_ns, lines);
        let written = self.file.write_all_at(scratch, offset);
        if scratch.capacity() > KEEP_SCRATCH_BYTES {
            *scratch = Vec::new();
        }
        written.map(|()| end)
    }

    /// `fdatasync`: blocks until every byte written so far is on disk. The durability
    /// point of an append; the caller batches appends into one sync.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Overwrites `start..end` with zeros and syncs them: how recovery cuts a torn tail
    /// or removes a region it has moved to the dead-letter log, so the next open sees a
    /// clean end marker there.
    pub fn zero_range(&mut self, start: u64, end: u64) -> io::Result<()> {
        let end = end.min(self.len());
        if end <= start {
            return Ok(());
        }
        let zeros = vec![0u8; (end - start).min(1 << 20) as usize];
        let mut at = start;
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.sync()
    }

    /// Records from `offset`; see [`read_records`].
    pub fn records_from(&self, offset: u64) -> RecordIter<'_> {
        read_records(&self.map, offset)
    }
}

fn preallocate(file: &File, size_bytes: u64, path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(size_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment size too large"))?;
    // SAFETY: a plain syscall on a file descriptor we own.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            tracing::warn!(segment = %path.display(), "filesystem has no fallocate: hinted-handoff segment is sparse; a full disk fails appends (the queue then takes no writes until a restart) instead of refusing the new segment");
            file.set_len(size_bytes)
        }
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(shard_id: u64, ts: i64, lines: &[&[u8]]) -> Vec<u8> {
        let len: u64 = lines.iter().map(|l| l.len() as u64).sum();
        let mut out = vec![0u8; record_bytes(len) as usize];
        encode_record(&mut out, shard_id, ts, lines);
        out
    }

    /// Two records then zero padding, as a fresh segment looks after two appends.
    fn two_records() -> (Vec<u8>, usize) {
        let mut bytes = encode(7, 100, &[b"cpu v=1 1\n", b"cpu v=2 2\n"]);
        let first = bytes.len();
        bytes.extend(encode(8, 200, &[b"mem v=3 3\n"]));
        bytes.resize(4096, 0);
        (bytes, first)
    }

    #[test]
    fn record_layout_is_big_endian_and_length_covers_shard_time_and_lines() {
        let record = encode(0x0102_0304_0506_0708, -2, &[b"ab", b"c"]);
        assert_eq!(record.len(), MIN_RECORD_BYTES + 3);
        assert_eq!(&record[..4], &19u32.to_be_bytes());
        assert_eq!(&record[4..8], &crc32c::crc32c(&record[8..]).to_be_bytes());
        assert_eq!(&record[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&record[16..24], &(-2i64).to_be_bytes());
        assert_eq!(&record[24..], b"abc");
    }

    #[test]
    fn reader_yields_records_then_stops_at_end_marker() {
        let (bytes, first) = two_records();
        let mut iter = read_records(&bytes, 0);
        let a = iter.next().unwrap().unwrap();
        assert_eq!(
            (a.shard_id, a.enqueued_at_ns, a.lines),
            (7, 100, &b"cpu v=1 1\ncpu v=2 2\n"[..])
        );
        let b = iter.next().unwrap().unwrap();
        assert_eq!(
            (b.offset, b.shard_id, b.lines),
            (first as u64, 8, &b"mem v=3 3\n"[..])
        );
        assert!(iter.next().is_none());
        assert_eq!(iter.offset(), b.end());
        // From the second record's offset, and from the end.
        assert_eq!(read_records(&bytes, first as u64).count(), 1);
        assert_eq!(read_records(&bytes, b.end()).count(), 0);
        assert_eq!(read_records(&bytes, 1 << 20).count(), 0);
    }

    #[test]
    fn torn_tail_is_told_from_corruption() {
        let (clean, first) = two_records();
        // Tear the second record: its last bytes never reached the disk.
        let mut torn = clean.clone();
        let second_end = first + MIN_RECORD_BYTES + 10;
        torn[second_end - 4..second_end].fill(0);
        let faults: Vec<_> = read_records(&torn, 0).collect();
        assert_eq!(faults.len(), 2);
        assert!(faults[0].is_ok());
        let fault = faults[1].unwrap_err();
        assert_eq!(
            (fault.offset, fault.kind),
            (first as u64, FaultKind::TornTail)
        );

        // A flipped bit in the first record, with the second behind it: corruption.
        let mut flipped = clean.clone();
        flipped[MIN_RECORD_BYTES + 2] ^= 0x10;
        let fault = read_records(&flipped, 0).next().unwrap().unwrap_err();
        assert_eq!((fault.offset, fault.kind), (0, FaultKind::BadCrc));
        assert_eq!(fault.data_end, (first + MIN_RECORD_BYTES + 10) as u64);

        // A flipped high bit in a length: impossible length.
        let mut long = clean.clone();
        long[first] ^= 0x80;
        let fault = read_records(&long, 0).nth(1).unwrap().unwrap_err();
        assert_eq!(fault.kind, FaultKind::BadLength);

        // A zeroed length with data after it is not the end.
        let mut zeroed = clean;
        zeroed[..4].fill(0);
        let fault = read_records(&zeroed, 0).next().unwrap().unwrap_err();
        assert_eq!(fault.kind, FaultKind::DataAfterEndMarker);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let (clean, _) = two_records();
        let data = data_end(&clean, 0);
        for byte in 0..data {
            for bit in 0..8 {
                let mut bytes = clean.clone();
                bytes[byte] ^= 1 << bit;
                let results: Vec<_> = read_records(&bytes, 0).collect();
                let good = results.iter().filter(|r| r.is_ok()).count();
                assert!(
                    results.last().is_some_and(|r| r.is_err()) && good < 2,
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn segment_file_names_round_trip() {
        assert_eq!(segment_file_name(1), "00000001.seg");
        assert_eq!(parse_segment_file_name("00000001.seg"), Some(1));
        assert_eq!(parse_segment_file_name("123456789.seg"), Some(123_456_789));
        for bad in [
            "position",
            "00000001.seg.bad",
            ".seg",
            "0x1.seg",
            "dead-letter.log",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn create_preallocates_maps_appends_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_file_name(1));
        let mut segment = Segment::create(&path, 1, 64 * 1024).unwrap();
        assert!(
            Segment::create(&path, 1, 64 * 1024).is_err(),
            "create never overwrites"
        );
        assert_eq!(segment.len(), 64 * 1024);
        let mut scratch = Vec::new();
        let end = segment
            .append(0, 3, 42, &[b"cpu v=1 1\n"], &mut scratch)
            .unwrap();
        assert_eq!(
            segment.records_from(0).count(),
            1,
            "the map sees a pwrite at once"
        );
        segment
            .append(end, 4, 43, &[b"cpu v=2 2\n"], &mut scratch)
            .unwrap();
        segment.sync().unwrap();
        drop(segment);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 * 1024);
        let segment = Segment::open(&path, 1).unwrap();
        let records: Vec<_> = segment.records_from(0).map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!((records[1].shard_id, records[1].enqueued_at_ns), (4, 43));
    }
}
