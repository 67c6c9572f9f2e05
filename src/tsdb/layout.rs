//! The data directory's shape: its format version, where a (shard, partition) lives,
//! and the partition count of every shard already on disk.
//!
//! ```text
//! DATA_DIR/FORMAT                       "shardcore data format 2" (written once)
//! DATA_DIR/meta.json                    databases and policies (meta)
//! DATA_DIR/shards/<shard id, 16 hex>/<partition>/
//!     shard.json                        identity: shard, group bounds, partition of P
//!     wal/                              the partition's WAL segments (engine::wal)
//! DATA_DIR/hh/<node>/<core>/            hinted-handoff queues (hh)
//! ```
//!
//! **Invariant:** every partition of a shard on this node has the same count `P`: the
//! node's core count when the shard was first created here. A node learns the `P` of
//! the shards on disk before its cores start ([`scan`]); a shard created while it
//! runs gets the current core count, which every core computes alike, so no core asks
//! another. (A dropped shard written again keeps the `P` found at start: still the same
//! on every core.)
//!
//! Format 1 (before partitions: `shards/<id>/shard.json` with 64-bit ids and weekly
//! groups from Thursdays) is refused with what to do, never read as format 2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The data format this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "shardcore data format ";

/// Why a data directory cannot be used as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    #[error(
        "{dir} holds data in ShardCore's format 1 (before per-core partitions: 64-bit \
         shard ids, weekly shard groups starting on Thursdays), which this version does \
         not read in place. To keep the data: with the node stopped, export it with \
         `shardcore inspect {dir} --export > dump.lp` (this version reads format 1 for \
         that), move {dir} aside, start the node on an empty data directory, create the \
         databases again and import the dump (`influx -import -path=dump.lp \
         -precision=ns`, or POST each database's lines to /write?precision=ns). Let \
         hinted handoff drain first in a cluster. Found: {found}"
    )]
    FormatOne { dir: String, found: String },
    #[error("{dir} was written by a ShardCore with data format {found}; this version reads format {FORMAT_VERSION}")]
    OtherFormat { dir: String, found: String },
    #[error("cannot read or prepare {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The directory of partition `partition` of shard `id`.
pub fn partition_dir(data_dir: &Path, id: u64, partition: u32) -> PathBuf {
    shard_dir(data_dir, id).join(partition.to_string())
}

/// The directory holding every partition of shard `id` on this node.
pub fn shard_dir(data_dir: &Path, id: u64) -> PathBuf {
    data_dir.join("shards").join(format!("{id:016x}"))
}

/// A partition directory found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundPartition {
    pub shard_id: u64,
    pub partition: u32,
    pub dir: PathBuf,
}

/// Every `shards/<id>/<partition>` directory, sorted by (shard, partition). Names that
/// are not a hex shard id or a partition number are skipped.
pub fn partitions_on_disk(data_dir: &Path) -> std::io::Result<Vec<FoundPartition>> {
    let shards = data_dir.join("shards");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&shards) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(shard_id) = u64::from_str_radix(&entry.file_name().to_string_lossy(), 16) else {
            continue;
        };
        if !entry.file_type()?.is_dir() {
            continue;
        }
        for part in std::fs::read_dir(entry.path())? {
            let part = part?;
            let Ok(partition) = part.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if part.file_type()?.is_dir() {
                out.push(FoundPartition {
                    shard_id,
                    partition,
                    dir: part.path(),
                });
            }
        }
    }
    out.sort_by_key(|p| (p.shard_id, p.partition));
    Ok(out)
}

/// Format-1 shard directories (`shards/<id>/shard.json`, or its `wal/`, directly in the
/// shard's directory), for `shardcore inspect`.
pub fn format_one_shards(data_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(data_dir.join("shards"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.join("shard.json").exists()
                || p.join("shard.json.tmp").exists()
                || p.join("wal").is_dir()
        })
        .collect();
    out.sort();
    out
}

/// Partition counts of the shards on this node.
#[derive(Clone, Debug)]
pub struct PartitionCounts {
    /// Shards found on disk at start, with their `P`.
    on_disk: HashMap<u64, u32>,
    /// The node's core count: the `P` of every shard created from now on.
    cores: u32,
    /// The largest `P` of all (fixed once built).
    max: u32,
}

impl PartitionCounts {
    pub fn new(on_disk: HashMap<u64, u32>, cores: usize) -> PartitionCounts {
        let cores = cores.max(1) as u32;
        let max = on_disk.values().copied().fold(cores, u32::max);
        PartitionCounts {
            on_disk,
            cores,
            max,
        }
    }

    /// The partition count of shard `id` on this node.
    pub fn of(&self, id: u64) -> u32 {
        self.on_disk.get(&id).copied().unwrap_or(self.cores)
    }

    /// The largest partition count of any shard here, now or made from now on: 1
    /// means no write needs its points' partition keys.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Shards on disk whose `P` differs from the core count (their writes are
    /// re-routed between cores).
    pub fn rehomed(&self) -> usize {
        self.on_disk.values().filter(|&&p| p != self.cores).count()
    }
}

/// Checks the data directory's format (writing `FORMAT` into a new or empty one) and
/// reads the partition count of every shard on disk. Runs once at start, before the
/// cores.
pub fn prepare(data_dir: &Path, cores: usize) -> Result<PartitionCounts, LayoutError> {
    check_format(data_dir)?;
    let found = partitions_on_disk(data_dir).map_err(io(&data_dir.join("shards")))?;
    let mut on_disk: HashMap<u64, u32> = HashMap::new();
    for p in &found {
        let Some(file) = read_partition_file(&p.dir) else {
            continue;
        };
        let count = file.partitions.max(1);
        match on_disk.get(&p.shard_id) {
            Some(&seen) if seen != count => {
                tracing::error!(shard = p.shard_id, seen, count, dir = %p.dir.display(), "partitions of one shard disagree on their count; keeping the first");
            }
            Some(_) => {}
            None => {
                on_disk.insert(p.shard_id, count);
            }
        }
    }
    Ok(PartitionCounts::new(on_disk, cores))
}

/// What a partition's `shard.json` says about its partitioning.
#[derive(serde::Deserialize)]
struct PartitionFile {
    partitions: u32,
}

fn read_partition_file(dir: &Path) -> Option<PartitionFile> {
    let bytes = std::fs::read(dir.join("shard.json"))
        .or_else(|_| std::fs::read(dir.join("shard.json.tmp")))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn check_format(data_dir: &Path) -> Result<(), LayoutError> {
    let dir = data_dir.display().to_string();
    let path = data_dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text
                .trim()
                .strip_prefix(FORMAT_PREFIX)
                .unwrap_or(text.trim());
            if found == FORMAT_VERSION.to_string() {
                Ok(())
            } else {
                Err(LayoutError::OtherFormat {
                    dir,
                    found: found.chars().take(40).collect(),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(found) = format_one_evidence(data_dir) {
                return Err(LayoutError::FormatOne { dir, found });
            }
            std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
            let tmp = data_dir.join("FORMAT.tmp");
            std::fs::write(&tmp, format!("{FORMAT_PREFIX}{FORMAT_VERSION}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
                .map_err(io(&path))
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// What shows that a data directory without `FORMAT` was written in format 1: a shard
/// directory or a hinted-handoff queue segment. (Only `meta.json`, whose format did not
/// change, is no evidence: such a directory is simply adopted.)
fn format_one_evidence(data_dir: &Path) -> Option<String> {
    // A shard directory (a hex id); other names (`lost+found`) are no evidence.
    if let Some(shard) = std::fs::read_dir(data_dir.join("shards"))
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| u64::from_str_radix(&e.file_name().to_string_lossy(), 16).is_ok())
    {
        return Some(shard.path().display().to_string());
    }
    let hh = data_dir.join("hh");
    for node in std::fs::read_dir(&hh).into_iter().flatten().flatten() {
        for core in std::fs::read_dir(node.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for file in std::fs::read_dir(core.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = file.file_name();
                if name.to_string_lossy().ends_with(".seg") {
                    return Some(file.path().display().to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_format_two_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // A filesystem's own directory in shards/ is no sign of an old format.
        std::fs::create_dir_all(data.join("shards/lost+found")).unwrap();
        let counts = prepare(&data, 4).unwrap();
        assert_eq!(counts.of(7), 4);
        assert!(std::fs::read_to_string(data.join("FORMAT"))
            .unwrap()
            .contains("format 2"));
        prepare(&data, 2).unwrap();
    }

    #[test]
    fn partition_counts_come_from_disk_for_known_shards() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), 2).unwrap();
        for p in 0..3u32 {
            let d = partition_dir(dir.path(), 0xab, p);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("shard.json"), br#"{"id":171,"partitions":3}"#).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("shards/junk/0")).unwrap();
        let counts = prepare(dir.path(), 2).unwrap();
        assert_eq!(counts.of(0xab), 3);
        assert_eq!(counts.of(0xac), 2);
        assert_eq!(counts.rehomed(), 1);
        let found = partitions_on_disk(dir.path()).unwrap();
        assert_eq!(
            found
                .iter()
                .map(|p| (p.shard_id, p.partition))
                .collect::<Vec<_>>(),
            vec![(0xab, 0), (0xab, 1), (0xab, 2)]
        );
    }

    #[test]
    fn format_one_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("shards/fba0938578413cb0");
        std::fs::create_dir_all(old.join("wal")).unwrap();
        std::fs::write(old.join("shard.json"), b"{}").unwrap();
        let e = prepare(dir.path(), 2).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, LayoutError::FormatOne { .. }), "{text}");
        assert!(
            text.contains("--export") && text.contains("fba0938578413cb0"),
            "{text}"
        );
        assert!(!dir.path().join("FORMAT").exists(), "nothing is written");
        assert_eq!(format_one_shards(dir.path()), vec![old]);

        // A queue segment alone is evidence too; meta.json alone is not.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meta.json"), b"{}").unwrap();
        std::fs::create_dir_all(dir.path().join("hh/2/0")).unwrap();
        std::fs::write(dir.path().join("hh/2/0/00000001.seg"), b"x").unwrap();
        assert!(matches!(
            prepare(dir.path(), 1),
            Err(LayoutError::FormatOne { .. })
        ));
        std::fs::remove_dir_all(dir.path().join("hh")).unwrap();
        prepare(dir.path(), 1).unwrap();
    }

    proptest::proptest! {
        /// Whatever bytes `FORMAT` or a partition's `shard.json` hold, start-up answers
        /// (format 2, or an error naming the file); it never panics.
        #[test]
        fn arbitrary_format_and_shard_files_never_panic(
            format in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            shard_json in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("FORMAT"), &format).unwrap();
            let part = partition_dir(dir.path(), 1, 0);
            std::fs::create_dir_all(&part).unwrap();
            std::fs::write(part.join("shard.json"), &shard_json).unwrap();
            if let Ok(counts) = prepare(dir.path(), 2) {
                proptest::prop_assert!(counts.of(1) >= 1);
            }
            let _ = crate::tsdb::shard::Shard::open_read_only(
                &part,
                crate::tsdb::engine::wal::WalConfig {
                    fsync_delay: std::time::Duration::ZERO,
                    segment_size_bytes: 1 << 20,
                    max_pending_bytes: 1 << 20,
                },
            );
        }
    }

    #[test]
    fn another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("FORMAT"), "shardcore data format 3\n").unwrap();
        let e = prepare(dir.path(), 1).unwrap_err();
        assert!(e.to_string().contains("format 3"), "{e}");
    }
}
