//! The replay position of one queue, in the small `position` file.
//!
//! 20 bytes: `segment u64 | offset u64 | crc32c u32`, big-endian, crc over the first
//! 16. Written whole to `position.tmp`, `fsync`ed, renamed over `position`, and the
//! directory `fsync`ed, so after a crash the file holds either the old or the new
//! position, never a mix. The position is the NEW one: the first record not yet
//! delivered (InfluxDB 0.9 saved the old one and replayed a record twice).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

pub const POSITION_FILE: &str = "position";
pub const POSITION_TMP_FILE: &str = "position.tmp";
const POSITION_BYTES: usize = 20;

/// A place in a queue: a segment number and a byte offset in it. Orders as the queue
/// does: segment numbers only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// What the position file held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredPosition {
    Missing,
    /// Wrong size or crc: the queue replays from its first segment (at-least-once).
    Corrupt,
    Found(Position),
}

fn encode(position: Position) -> [u8; POSITION_BYTES] {
    let mut out = [0u8; POSITION_BYTES];
    out[..8].copy_from_slice(&position.segment.to_be_bytes());
    out[8..16].copy_from_slice(&position.offset.to_be_bytes());
    let crc = crc32c::crc32c(&out[..16]);
    out[16..].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads `dir/position`. Blocking.
pub fn read_position(dir: &Path) -> io::Result<StoredPosition> {
    let bytes = match std::fs::read(dir.join(POSITION_FILE)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(StoredPosition::Missing)
        }
        Err(error) => return Err(error),
    };
    if bytes.len() != POSITION_BYTES {
        return Ok(StoredPosition::Corrupt);
    }
    let crc = u32::from_be_bytes(bytes[16..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..16]) != crc {
        return Ok(StoredPosition::Corrupt);
    }
    Ok(StoredPosition::Found(Position {
        segment: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
        offset: u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
    }))
}

/// Replaces `dir/position` atomically and durably. Blocking: two `fsync`s (file and
/// directory), 1-10 ms on a disk with a volatile cache, far less on NVMe with PLP.
pub fn write_position(dir: &Path, position: Position) -> io::Result<()> {
    let tmp = dir.join(POSITION_TMP_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&encode(position))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(POSITION_FILE))?;
    sync_dir(dir)
}

/// `fsync` of a directory, so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_round_trips_and_corruption_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_position(dir.path()).unwrap(), StoredPosition::Missing);
        let position = Position {
            segment: 7,
            offset: 1 << 33,
        };
        write_position(dir.path(), position).unwrap();
        assert_eq!(
            read_position(dir.path()).unwrap(),
            StoredPosition::Found(position)
        );
        assert!(!dir.path().join(POSITION_TMP_FILE).exists());
        let path = dir.path().join(POSITION_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_position(dir.path()).unwrap(), StoredPosition::Corrupt);
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert_eq!(read_position(dir.path()).unwrap(), StoredPosition::Corrupt);
    }
}
