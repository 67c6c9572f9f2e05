//! A partition's manifest: which data files hold its values, which WAL segments those
//! files cover, and the deletes (tombstones) that apply to them. Written whole to
//! `manifest.json.tmp`, synced, renamed over `manifest.json`, directory synced: a
//! crash leaves the old manifest or the new one, never a mix.
//!
//! **Invariant:** a data file is read at start only if the manifest names it; a WAL
//! segment is removed only after a manifest naming files that cover it is durable.

use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MANIFEST: &str = "manifest.json";

/// A delete that applies to the data files numbered below `below_file`: the values of
/// `keys` (escaped series keys) in `[start_ns, end_ns]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TombstoneRecord {
    pub keys: Vec<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub below_file: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Data file numbers, oldest first (a newer file's values win).
    pub files: Vec<u64>,
    /// The first WAL segment the files do not cover.
    pub wal_boundary: u64,
    /// The number the next data file gets.
    pub next_file: u64,
    #[serde(default)]
    pub tombstones: Vec<TombstoneRecord>,
}

impl Manifest {
    /// Reads `dir`'s manifest; none yet is an empty one.
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("cannot parse {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes it durably over `dir`'s manifest (blocking: run off the core).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("manifest.json.tmp");
        let bytes = serde_json::to_vec(self).expect("manifests serialise");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(MANIFEST))?;
        std::fs::File::open(dir)?.sync_all()
    }
}
