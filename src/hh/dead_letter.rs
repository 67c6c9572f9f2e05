//! The dead-letter log of one queue: records the destination rejected for good, and
//! bytes recovery or replay could not read, moved aside so the queue never wedges.
//!
//! `dead-letter.log` is append-only. Each entry is one text header line followed by the
//! raw bytes it announces and a newline, so `less` shows the line protocol of a rejected
//! record as it was written, and a tool can still split entries exactly:
//!
//! ```text
//! # hh-dead-letter v1 at_ns=1700000000000000000 segment=3 offset=4096 shard=17 enqueued_at_ns=1699999999000000000 bytes=42 reason="partial write: field type conflict"
//! cpu,host=a usage=1 1699999999000000000
//! ...
//! ```
//!
//! `shard` and `enqueued_at_ns` are `-` for corrupt bytes (their header cannot be
//! trusted). Every entry is `fdatasync`ed before the queue moves past it: dead-lettering
//! is rare, and a record is not dropped from the queue before it is safe here.
//!
//! Limit: `max_dead_letter_bytes`. Past it, entries are not written; the queue still
//! moves on, and the entry counts as dropped (and is logged at error level).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const DEAD_LETTER_FILE: &str = "dead-letter.log";
const HEADER_PREFIX: &str = "# hh-dead-letter v1 ";

/// One entry to write.
#[derive(Clone, Copy, Debug)]
pub struct DeadLetterEntry<'a> {
    pub at_ns: i64,
    pub segment: u64,
    pub offset: u64,
    /// `None` for bytes whose record header is not trustworthy.
    pub shard_id: Option<u64>,
    pub enqueued_at_ns: Option<i64>,
    pub reason: &'a str,
    pub bytes: &'a [u8],
}

/// An entry read back by [`read_dead_letters`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub at_ns: i64,
    pub segment: u64,
    pub offset: u64,
    pub shard_id: Option<u64>,
    pub enqueued_at_ns: Option<i64>,
    pub reason: String,
    pub bytes: Vec<u8>,
}

/// What happened to an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Saved,
    /// The log is at `max_dead_letter_bytes`: the entry was not written.
    OverLimit,
}

/// The append side of a queue's dead-letter log. Opened on first use: most queues never
/// dead-letter anything and get no file.
pub struct DeadLetterLog {
    path: PathBuf,
    file: Option<File>,
    bytes: u64,
    max_bytes: u64,
}

impl DeadLetterLog {
    pub fn new(dir: &Path, max_bytes: u64) -> DeadLetterLog {
        let path = dir.join(DEAD_LETTER_FILE);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        DeadLetterLog {
            path,
            file: None,
            bytes,
            max_bytes,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the log file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends one entry and `fdatasync`s it. Blocking.
    pub fn write(&mut self, entry: &DeadLetterEntry<'_>) -> io::Result<Written> {
        let header = format_header(entry);
        let total = (header.len() + entry.bytes.len() + 1) as u64;
        if self.bytes + total > self.max_bytes {
            return Ok(Written::OverLimit);
        }
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.bytes = file.metadata()?.len();
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        let mut buffer = Vec::with_capacity(total as usize);
        buffer.extend_from_slice(header.as_bytes());
        buffer.extend_from_slice(entry.bytes);
        buffer.push(b'\n');
        let result = file.write_all(&buffer).and_then(|()| file.sync_data());
        if result.is_err() {
            // What reached the file is unknown: reopen (and re-read the size) next time.
            self.file = None;
        } else {
            self.bytes += total;
        }
        result.map(|()| Written::Saved)
    }
}

fn format_header(entry: &DeadLetterEntry<'_>) -> String {
    let optional = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    // One line, and a quote cannot end the reason early.
    let reason: String = entry
        .reason
        .chars()
        .map(|c| {
            if c == '\n' || c == '\r' || c == '"' {
                ' '
            } else {
                c
            }
        })
        .collect();
    format!(
        "{HEADER_PREFIX}at_ns={} segment={} offset={} shard={} enqueued_at_ns={} bytes={} reason=\"{}\"\n",
        entry.at_ns,
        entry.segment,
        entry.offset,
        optional(entry.shard_id.map(|v| v.to_string())),
        optional(entry.enqueued_at_ns.map(|v| v.to_string())),
        entry.bytes.len(),
        reason,
    )
}

/// Reads every complete entry of a dead-letter log (for `shardcore hh` tooling and
/// tests). Stops at the first entry it cannot parse, e.g. one torn by a crash.
pub fn read_dead_letters(path: &Path) -> io::Result<Vec<DeadLetter>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some((entry, next)) = parse_entry(&bytes, at) {
        entries.push(entry);
        at = next;
    }
    Ok(entries)
}

fn parse_entry(bytes: &[u8], at: usize) -> Option<(DeadLetter, usize)> {
    let line_end = at + bytes.get(at..)?.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&bytes[at..line_end]).ok()?;
    let fields = line.strip_prefix(HEADER_PREFIX)?;
    let (fields, reason) = fields.split_once(" reason=\"")?;
    let reason = reason.strip_suffix('"')?.to_string();
    let mut entry = DeadLetter {
        at_ns: 0,
        segment: 0,
        offset: 0,
        shard_id: None,
        enqueued_at_ns: None,
        reason,
        bytes: Vec::new(),
    };
    let mut length = None;
    for field in fields.split(' ') {
        let (key, value) = field.split_once('=')?;
        match key {
            "at_ns" => entry.at_ns = value.parse().ok()?,
            "segment" => entry.segment = value.parse().ok()?,
            "offset" => entry.offset = value.parse().ok()?,
            "shard" if value != "-" => entry.shard_id = Some(value.parse().ok()?),
            "enqueued_at_ns" if value != "-" => entry.enqueued_at_ns = Some(value.parse().ok()?),
            "bytes" => length = Some(value.parse::<usize>().ok()?),
            _ => {}
        }
    }
    let start = line_end + 1;
    let end = start.checked_add(length?)?;
    if bytes.get(end) != Some(&b'\n') {
        return None;
    }
    entry.bytes = bytes[start..end].to_vec();
    Some((entry, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_the_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DeadLetterLog::new(dir.path(), 400);
        let entry = DeadLetterEntry {
            at_ns: 5,
            segment: 2,
            offset: 64,
            shard_id: Some(17),
            enqueued_at_ns: Some(-1),
            reason: "field type \"conflict\"\nsecond line",
            bytes: b"cpu v=1 1\n\0binary\n",
        };
        assert_eq!(log.write(&entry).unwrap(), Written::Saved);
        let corrupt = DeadLetterEntry {
            shard_id: None,
            enqueued_at_ns: None,
            reason: "crc",
            ..entry
        };
        assert_eq!(log.write(&corrupt).unwrap(), Written::Saved);
        assert_eq!(log.write(&entry).unwrap(), Written::OverLimit);
        let read = read_dead_letters(log.path()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].shard_id, Some(17));
        assert_eq!(read[0].enqueued_at_ns, Some(-1));
        assert_eq!(read[0].reason, "field type  conflict  second line");
        assert_eq!(read[0].bytes, entry.bytes);
        assert_eq!(
            (read[1].shard_id, read[1].segment, read[1].offset),
            (None, 2, 64)
        );
        assert_eq!(log.bytes(), std::fs::metadata(log.path()).unwrap().len());
        // A reopened log knows its size.
        assert_eq!(DeadLetterLog::new(dir.path(), 400).bytes(), log.bytes());
    }
}
