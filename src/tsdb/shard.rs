//! One partition of a shard on its owning core (DESIGN section 2: a shard is stored
//! on each owner node as `P` partitions by series hash): its identity ([`ShardMeta`]
//! and [`Partition`], `shard.json`), its index ([`crate::tsdb::index`]: series,
//! measurements, field types, tags) and its storage engine ([`crate::tsdb::engine`]:
//! the values, logged and kept). A series lives in exactly one partition of its shard.
//!
//! A write is synchronous once it starts: the points are validated (field types),
//! logged and applied, so the log's order is the engine's order; the caller then
//! awaits durability before it acknowledges.

use crate::lineproto::{self, ParsedBody, Precision};
use crate::tsdb::engine::blocks::LazyBlock;
use crate::tsdb::engine::wal::{WalConfig, WalError};
use crate::tsdb::engine::{
    self, DeleteRecord, Durable, Engine, EngineError, ReadRange, RecoveryReport, Storage,
    WriteBatch,
};
use crate::tsdb::index::Index;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::tsdb::engine::Value;

/// Identity of a shard: what its directory's `shard.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: u64,
    pub database: String,
    pub retention_policy: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Which partition of its shard a [`Shard`] is, of how many on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
}

impl Partition {
    /// The only partition of a shard stored whole (format 1, tests).
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };
}

/// What `shard.json` holds: the shard's identity and which partition this is. Format 1
/// files (no partition fields) read as the whole shard.
#[derive(Serialize, Deserialize)]
struct ShardFile {
    #[serde(flatten)]
    meta: ShardMeta,
    #[serde(default)]
    partition: u32,
    #[serde(default = "one")]
    partitions: u32,
}

fn one() -> u32 {
    1
}

/// Errors of a shard as a whole (per-point rejections are in [`ApplyOutcome`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot create shard {id} in {dir}: {message}")]
    Create {
        id: u64,
        dir: String,
        message: String,
    },
    /// `shard.json` is missing or unreadable: the directory is left as it is.
    #[error("cannot read {path}: {message}")]
    Meta { path: String, message: String },
    /// The core's head is past `cache-max-bytes`: no write until a flush frees room.
    #[error("cache-max-memory-size exceeded: ({bytes}/{limit})")]
    CacheFull { bytes: usize, limit: usize },
    /// Two shards hash to one id (2^-53 odds per pair): the write is refused rather
    /// than mixed into the other shard.
    #[error(
        "shard id {id} of {wanted} is already taken by {taken} on this node; the write is refused"
    )]
    IdTaken {
        id: u64,
        wanted: String,
        taken: String,
    },
}

impl From<WalError> for ShardError {
    fn from(e: WalError) -> ShardError {
        ShardError::Engine(EngineError::Wal(e))
    }
}

/// What applying a batch did: points stored, and points rejected with a reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub written: usize,
    pub rejected: Vec<String>,
}

/// A stored point, as the read API returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPoint {
    pub series_key: String,
    pub field: String,
    pub timestamp: i64,
    pub value: Value,
}

/// One series' columns in a time range, as a query scan returns them.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesData {
    /// Canonical series key, escaped as in line protocol.
    pub key: String,
    pub columns: Vec<ColumnData>,
}

/// One field's values of a series, sorted by time, one value per timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnData {
    /// Field key, unescaped.
    pub field: String,
    pub times: Vec<i64>,
    pub values: Vec<Value>,
}

/// Counts of one shard.
#[derive(Clone, Debug, Serialize)]
pub struct ShardStats {
    pub id: u64,
    pub partition: u32,
    pub partitions: u32,
    pub database: String,
    pub retention_policy: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub series: usize,
    pub values: u64,
    pub cache_heap_bytes: usize,
    pub files: u64,
    pub file_bytes: u64,
    pub file_values: u64,
    pub flushes: u64,
    pub bad_files: u64,
    /// Data file blocks queries read (decoded) since start.
    pub block_reads: u64,
    pub wal_records: u64,
    pub wal_syncs: u64,
    /// Bytes of the partition's WAL segments on disk.
    pub wal_disk_bytes: u64,
    /// WAL write or sync failures (a full disk), and the times it resumed after them.
    pub wal_failures: u64,
    pub wal_resumes: u64,
}

/// One partition of a shard (see the module's documentation).
pub struct Shard {
    pub meta: ShardMeta,
    pub partition: Partition,
    index: Index,
    engine: Box<dyn Engine>,
}

impl Shard {
    /// The directory of partition `partition` of shard `id`.
    pub fn dir(data_dir: &Path, id: u64, partition: u32) -> PathBuf {
        crate::tsdb::layout::partition_dir(data_dir, id, partition)
    }

    /// Creates a new, empty partition of a shard on disk.
    pub fn create(
        data_dir: &Path,
        meta: ShardMeta,
        partition: Partition,
        wal_config: WalConfig,
    ) -> Result<Shard, ShardError> {
        let dir = Self::dir(data_dir, meta.id, partition.index);
        let file = ShardFile {
            meta: meta.clone(),
            partition: partition.index,
            partitions: partition.count,
        };
        let make = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir.join("wal"))?;
            let tmp = dir.join("shard.json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&file).expect("serialises"))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, dir.join("shard.json"))?;
            std::fs::File::open(&dir)?.sync_all()?;
            let shard_dir = dir.parent().expect("shard dir");
            std::fs::File::open(shard_dir)?.sync_all()?;
            std::fs::File::open(shard_dir.parent().expect("shards dir"))?.sync_all()?;
            Ok(())
        };
        make().map_err(|e| {
            // Leave nothing half made behind (a full disk fails here): the next write
            // tries again from scratch.
            let _ = std::fs::remove_dir_all(&dir);
            ShardError::Create {
                id: meta.id,
                dir: dir.display().to_string(),
                message: e.to_string(),
            }
        })?;
        Ok(Shard {
            meta,
            partition,
            index: Index::default(),
            engine: Box::new(Storage::create(&dir, wal_config)),
        })
    }

    /// Finishes or undoes a shard creation that a crash interrupted (a directory with
    /// no `shard.json`): a complete `shard.json.tmp` of this shard is renamed into
    /// place; a directory with no `shard.json` and no WAL record cannot hold an
    /// acknowledged point (the first write comes after the rename), so it is removed.
    /// Anything else is left as it is. Returns what it did, for the log.
    pub fn repair_interrupted_create(dir: &Path, id: u64) -> std::io::Result<Option<&'static str>> {
        if dir.join("shard.json").exists() {
            let tmp = dir.join("shard.json.tmp");
            if tmp.exists() {
                std::fs::remove_file(&tmp)?;
                return Ok(Some("removed a stale shard.json.tmp"));
            }
            return Ok(None);
        }
        let tmp = dir.join("shard.json.tmp");
        let complete = std::fs::read(&tmp)
            .ok()
            .and_then(|b| serde_json::from_slice::<ShardFile>(&b).ok())
            .is_some_and(|f| f.meta.id == id);
        if complete {
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, dir.join("shard.json"))?;
            std::fs::File::open(dir)?.sync_all()?;
            return Ok(Some("finished an interrupted shard creation"));
        }
        let wal_has_data = std::fs::read_dir(dir.join("wal"))
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(true))
            })
            .unwrap_or(false);
        if wal_has_data {
            return Ok(None);
        }
        std::fs::remove_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(Some("removed a half-created shard directory"))
    }

    /// Opens an existing shard directory and replays its log, cutting a torn tail.
    pub fn open(dir: &Path, wal_config: WalConfig) -> Result<(Shard, RecoveryReport), ShardError> {
        Self::open_with(dir, wal_config, true)
    }

    /// Opens a shard without changing any file (for `shardcore inspect`).
    pub fn open_read_only(
        dir: &Path,
        wal_config: WalConfig,
    ) -> Result<(Shard, RecoveryReport), ShardError> {
        Self::open_with(dir, wal_config, false)
    }

    fn open_with(
        dir: &Path,
        wal_config: WalConfig,
        truncate: bool,
    ) -> Result<(Shard, RecoveryReport), ShardError> {
        let path = dir.join("shard.json");
        let file: ShardFile = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|message| ShardError::Meta {
                path: path.display().to_string(),
                message,
            })?;
        let mut index = Index::default();
        let (engine, report) = Storage::open(dir, wal_config, truncate, &mut index)?;
        let shard = Shard {
            meta: file.meta,
            partition: Partition {
                index: file.partition,
                count: file.partitions.max(1),
            },
            index,
            engine: Box::new(engine),
        };
        Ok((shard, report))
    }

    /// Joins the field types the shard's other partitions on this node see (see
    /// [`Index::share_field_types`]); done once the partition is open.
    pub fn share_field_types(&mut self, shared: Arc<crate::tsdb::index::SharedFieldTypes>) {
        self.index.share_field_types(shared);
    }

    /// The shard's index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The shard's storage engine.
    pub fn engine(&self) -> &dyn Engine {
        &*self.engine
    }

    /// The shard's storage engine, to drive a flush ([`crate::tsdb::flush`]).
    pub fn engine_mut(&mut self) -> &mut dyn Engine {
        &mut *self.engine
    }

    /// Plans the data file of the heads a flush froze (series keys from the index).
    pub fn encode_flush(&mut self, wal_boundary: u64) -> Option<engine::FlushImage> {
        let index = &self.index;
        self.engine
            .encode_frozen(wal_boundary, &|sid| index.series_key(sid).to_vec())
    }

    /// Validates, logs and applies the points `indices` of `body`. Returns the outcome
    /// and a receiver that resolves when the log record is durable (None if nothing
    /// was written).
    pub fn write(
        &mut self,
        body: &Arc<ParsedBody>,
        indices: &[u32],
        precision: Precision,
        default_time_ns: i64,
    ) -> Result<(ApplyOutcome, Option<Durable>), ShardError> {
        self.engine.check_writable()?;
        let mut outcome = ApplyOutcome::default();
        let engine = &self.engine;
        let knows = |sid, body: &ParsedBody, point: &lineproto::PointRef| {
            engine.knows_fields(sid, body, point)
        };
        let accepted = engine::validate(
            &mut self.index,
            &knows,
            body,
            indices,
            &mut outcome.rejected,
        );
        if accepted.is_empty() {
            return Ok((outcome, None));
        }
        let batch = WriteBatch {
            body,
            points: &accepted,
            precision,
            default_time_ns,
        };
        let durable = self.engine.write(&batch, &mut self.index)?;
        outcome.written = accepted.len();
        Ok((outcome, Some(durable)))
    }

    /// Logs and applies a delete; returns the values removed and a receiver that
    /// resolves when the record is durable.
    pub fn delete(&mut self, record: &DeleteRecord) -> Result<(u64, Durable), ShardError> {
        self.engine.check_writable()?;
        Ok(self.engine.delete(record, &mut self.index)?)
    }

    pub fn stats(&self) -> ShardStats {
        let engine = self.engine.stats();
        let files = self.engine.file_stats();
        ShardStats {
            id: self.meta.id,
            partition: self.partition.index,
            partitions: self.partition.count,
            database: self.meta.database.clone(),
            retention_policy: self.meta.retention_policy.clone(),
            start_ns: self.meta.start_ns,
            end_ns: self.meta.end_ns,
            series: self.index.live_series(),
            values: engine.values,
            cache_heap_bytes: engine.heap_bytes,
            files: files.files,
            file_bytes: files.file_bytes,
            file_values: files.file_values,
            flushes: files.flushes,
            bad_files: files.bad_files,
            block_reads: files.block_reads,
            wal_records: engine.wal.records,
            wal_syncs: engine.wal.syncs,
            wal_disk_bytes: engine.wal.disk_bytes,
            wal_failures: engine.wal.failures,
            wal_resumes: engine.wal.resumes,
        }
    }

    /// Stored points of matching series in `[start_ns, end_ns]`, sorted by series key,
    /// field and time. `measurement` and `series_key` are exact matches on the escaped
    /// forms as stored.
    pub fn read(
        &mut self,
        measurement: Option<&[u8]>,
        series_key: Option<&[u8]>,
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<StoredPoint> {
        let mut out = Vec::new();
        let mut ids: Vec<u32> = match measurement {
            Some(m) => self
                .index
                .measurements()
                .get(m)
                .map(|i| i.series.clone())
                .unwrap_or_default(),
            None => self.index.all_series().collect(),
        };
        ids.sort_by(|a, b| self.index.series_key(*a).cmp(self.index.series_key(*b)));
        let range = ReadRange {
            start_ns,
            end_ns,
            fields: None,
            limit: None,
            whole_blocks: false,
        };
        for id in ids {
            let key = self.index.series_key(id);
            if series_key.is_some_and(|k| k != key) {
                continue;
            }
            let key = String::from_utf8_lossy(key).into_owned();
            let mut blocks: Vec<_> = self.engine.cursor(id, &range).collect();
            blocks.sort_by(|a, b| a.field.cmp(&b.field));
            for block in blocks {
                let field =
                    String::from_utf8_lossy(&lineproto::unescape(&block.field)).into_owned();
                for (timestamp, value) in block.times.into_iter().zip(block.values) {
                    out.push(StoredPoint {
                        series_key: key.clone(),
                        field: field.clone(),
                        timestamp,
                        value,
                    });
                }
            }
        }
        out
    }

    /// Appends to `out` the series of `ids` (from [`Index::scan_candidates`]) that pass
    /// `series_filter`, with the values of `fields` (all when `None`) in
    /// `[start, end]`; `limit` `(n, newest)` keeps only the first n (or the last n) of
    /// each field. Series with nothing in range are left out. `go_on` hears the number
    /// of values each series gave (0 for one the filter drops) and pauses or ends the
    /// scan by returning false; the number of ids done is returned (a later call goes
    /// on from there). With `aggregate`, every column goes through it with the data file
    /// blocks it may answer from their statistics (see [`ReadRange::whole_blocks`]),
    /// and what it returns is kept instead.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_series(
        &mut self,
        ids: &[u32],
        fields: Option<&[Vec<u8>]>,
        (start_ns, end_ns): (i64, i64),
        limit: Option<(usize, bool)>,
        series_filter: impl Fn(&[u8]) -> bool,
        out: &mut Vec<SeriesData>,
        mut go_on: impl FnMut(usize) -> bool,
        mut aggregate: Option<&mut dyn FnMut(ColumnData, Vec<LazyBlock>) -> Vec<ColumnData>>,
    ) -> usize {
        let range = ReadRange {
            start_ns,
            end_ns,
            fields,
            limit,
            whole_blocks: aggregate.is_some(),
        };
        let mut done = 0;
        for &id in ids {
            done += 1;
            if id as usize >= self.index.all_series().len() {
                continue;
            }
            let key = self.index.series_key(id);
            if !series_filter(key) {
                if !go_on(0) {
                    break;
                }
                continue;
            }
            let mut values = 0;
            let mut columns: Vec<ColumnData> = Vec::new();
            for block in self.engine.cursor(id, &range) {
                values += block.times.len()
                    + block.lazy.iter().map(|b| b.count() as usize).sum::<usize>();
                let column = ColumnData {
                    field: String::from_utf8_lossy(&lineproto::unescape(&block.field)).into_owned(),
                    times: block.times,
                    values: block.values,
                };
                match aggregate.as_mut() {
                    Some(aggregate) => columns.extend(aggregate(column, block.lazy)),
                    None => columns.push(column),
                }
            }
            if !columns.is_empty() {
                out.push(SeriesData {
                    key: String::from_utf8_lossy(key).into_owned(),
                    columns,
                });
            }
            if !go_on(values) {
                break;
            }
        }
        done
    }

    /// The values the engine holds (up with every write, down with deletes): what the
    /// tidy task watches to see whether writes are still arriving.
    pub fn values_written(&self) -> u64 {
        self.engine.stats().values
    }

    /// The engine's background upkeep, in slices (see [`Engine::tidy`]).
    pub fn tidy(&mut self, mut go_on: impl FnMut(usize) -> bool) -> bool {
        self.engine.tidy(&mut go_on)
    }

    /// Number of distinct stored (series, field, time) values, after last-write-wins.
    pub fn count_values(&mut self) -> u64 {
        self.engine.count_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(move || async move { f().await })
            .unwrap()
            .join()
            .unwrap();
    }

    fn config() -> WalConfig {
        WalConfig {
            fsync_delay: std::time::Duration::ZERO,
            segment_size_bytes: 1 << 20,
            max_pending_bytes: 1 << 20,
        }
    }

    fn meta(id: u64) -> ShardMeta {
        ShardMeta {
            id,
            database: "db".into(),
            retention_policy: "autogen".into(),
            start_ns: 0,
            end_ns: 1 << 60,
        }
    }

    #[test]
    fn write_rejects_type_conflicts_keeps_last_value_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let dd = data_dir.clone();
        run(move || async move {
            let mut shard = Shard::create(&dd, meta(7), Partition::WHOLE, config()).unwrap();
            let body = Arc::new(lineproto::parse(
                Bytes::from_static(
                    b"cpu,host=a v=1 10\ncpu,host=a v=2i 20\ncpu,host=b v=3 10\ncpu,host=a v=9 10\nmem x=\"s\" 5",
                ),
                Precision::Nanosecond,
                0,
            ));
            let all: Vec<u32> = (0..body.points.len() as u32).collect();
            let (outcome, durable) = shard.write(&body, &all, Precision::Nanosecond, 0).unwrap();
            assert_eq!(outcome.written, 4);
            assert_eq!(outcome.rejected.len(), 1);
            assert!(outcome.rejected[0].contains("input field \"v\" on measurement \"cpu\" is type integer, already exists as type float"));
            durable.unwrap().await.unwrap().unwrap();
            let points = shard.read(Some(b"cpu"), Some(b"cpu,host=a"), 0, 100);
            assert_eq!(points.len(), 1);
            assert_eq!(points[0].value, Value::Float(9.0));
            assert_eq!(
                shard.index().series_with_tag(b"cpu", b"host", b"b").len(),
                1
            );
            shard.engine().close().await;
        });
        let (mut shard, report) = Shard::open(&Shard::dir(&data_dir, 7, 0), config()).unwrap();
        assert_eq!(shard.partition, Partition::WHOLE);
        assert_eq!(report.records, 1);
        assert_eq!(shard.count_values(), 3);
        let pts = shard.read(None, None, i64::MIN, i64::MAX);
        assert_eq!(pts.last().unwrap().value, Value::String(b"s".to_vec()));
        assert_eq!(
            shard.read(Some(b"cpu"), Some(b"cpu,host=a"), 0, 100)[0].value,
            Value::Float(9.0)
        );
    }
}
