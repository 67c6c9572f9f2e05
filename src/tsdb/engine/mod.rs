//! The storage engine of one shard, behind the [`Engine`] trait: it logs and keeps the
//! values of the shard's series (the shard's [`crate::tsdb::index`] names the series);
//! reads come back through a cursor over a time range.
//!
//! The implementation, [`Storage`], is a write-ahead log ([`wal`]) in front of
//! in-memory columns ([`head`]), flushed into compressed data files ([`file`],
//! [`codec`]) named by a manifest ([`manifest`]): a write is appended to the WAL
//! buffer and applied to the head synchronously (so the WAL order is the head's
//! order), and the caller awaits the durability receiver before it acknowledges.
//! Opening reads the file indexes, then replays the WAL written since the last flush.
//!
//! **Invariant:** only the owning core touches an engine (it is `!Send`).

pub mod blocks;
pub mod chunked;
pub mod codec;
pub mod file;
pub mod head;
pub mod manifest;
pub mod merge;
pub mod storage;
pub mod wal;

use crate::base::LocalFuture;
use crate::lineproto::{ParsedBody, PointRef, Precision};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::path::Path;
use std::time::Instant;
use wal::{Wal, WalError, WalStats};

/// A series' number within its shard (assigned by the shard's index).
pub type SeriesId = u32;

/// A value as the engine stores it and reads it back.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(Vec<u8>),
}

impl Value {
    /// The value as a line-protocol field value (floats exact: Rust's shortest form
    /// that reads back to the same bits).
    pub fn to_line_protocol(&self) -> String {
        match self {
            Value::Float(v) => format!("{v:?}"),
            Value::Integer(v) => format!("{v}i"),
            Value::Unsigned(v) => format!("{v}u"),
            Value::Boolean(v) => v.to_string(),
            Value::String(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                out.push('"');
                for c in String::from_utf8_lossy(s).chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
                out
            }
        }
    }
}

/// The query engine's view of a stored value.
impl From<&Value> for crate::influxql::value::Val {
    fn from(v: &Value) -> crate::influxql::value::Val {
        use crate::influxql::value::Val;
        match v {
            Value::Float(x) => Val::Float(*x),
            Value::Integer(x) => Val::Int(*x),
            Value::Unsigned(x) => Val::Uint(*x),
            Value::Boolean(x) => Val::Bool(*x),
            Value::String(s) => Val::Str(String::from_utf8_lossy(s).into_owned()),
        }
    }
}

/// Failures of an engine, with what to do about them.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The log refuses records (a full disk, an I/O error; it says so until it resumes).
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The engine's files in `dir` cannot be read (left on disk untouched).
    #[error("cannot open the storage of {dir}: {message}")]
    Open { dir: String, message: String },
}

/// Resolves when a logged record is durable (or failed).
pub type Durable = futures_channel::oneshot::Receiver<Result<(), WalError>>;

/// A delete as the log records it: the series it matched when it ran (so a replay
/// needs no condition evaluation and matches exactly the same series) and the range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeleteRecord {
    /// Escaped series keys.
    pub keys: Vec<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Escaped measurement names whose index (field types too) goes away.
    pub drop_measurements: Vec<String>,
}

/// A write as the engine takes it: the validated points of a parsed body, each with
/// its series when the index already had it.
pub struct WriteBatch<'a> {
    pub body: &'a ParsedBody,
    pub points: &'a [(u32, Option<SeriesId>)],
    pub precision: Precision,
    pub default_time_ns: i64,
}

/// What an engine asks of its shard's index: the series of points and of deleted keys.
/// Recovery replays the log through it, so the index is rebuilt as the writes built it.
pub trait SeriesIndex {
    /// The series of `point` if it exists (in or out of the index).
    fn find(&self, body: &ParsedBody, point: &PointRef) -> Option<SeriesId>;
    /// Checks a point's field types against its measurement's and registers the new
    /// ones (so a later point of the same batch is checked against this one); the
    /// reason for a refusal, as the client sees it.
    fn check_field_types(&mut self, body: &ParsedBody, point: &PointRef) -> Result<(), String>;
    /// The series of point `point` of `body`, created, or put back in the index after a
    /// delete emptied it, as needed; `known` is what [`SeriesIndex::find`] said.
    fn resolve(&mut self, body: &ParsedBody, point: u32, known: Option<SeriesId>) -> SeriesId;
    /// The indexed series of these escaped keys.
    fn series_of_keys(&self, keys: &[String]) -> Vec<SeriesId>;
    /// Takes series a delete emptied out of the index, then the measurements listed
    /// that have no series left.
    fn remove_series(&mut self, emptied: &[SeriesId], drop_measurements: &[String]);
}

/// The points of `points` a write accepts, each with its series if it exists: field
/// types checked against the series' stored fields (`knows`, the fast path) or else the
/// index; a reason per refused point goes to `rejected`.
pub fn validate(
    index: &mut dyn SeriesIndex,
    knows: &dyn Fn(SeriesId, &ParsedBody, &PointRef) -> bool,
    body: &ParsedBody,
    points: &[u32],
    rejected: &mut Vec<String>,
) -> Vec<(u32, Option<SeriesId>)> {
    let mut accepted = Vec::with_capacity(points.len());
    for &i in points {
        let point = &body.points[i as usize];
        let sid = index.find(body, point);
        if sid.is_some_and(|sid| knows(sid, body, point)) {
            accepted.push((i, sid));
            continue;
        }
        match index.check_field_types(body, point) {
            Ok(()) => accepted.push((i, sid)),
            Err(reason) => rejected.push(reason),
        }
    }
    accepted
}

/// A read of one series: a time range (inclusive), the fields wanted (escaped; all
/// when `None`), and `limit` `(n, newest)`: only the first n (or the last n) values of
/// each field.
#[derive(Clone, Copy, Debug)]
pub struct ReadRange<'a> {
    pub start_ns: i64,
    pub end_ns: i64,
    pub fields: Option<&'a [Vec<u8>]>,
    pub limit: Option<(usize, bool)>,
    /// A data file block of a numeric field that lies wholly in the range and that no
    /// other source (another file, a head) overlaps in time and no tombstone touches
    /// comes back unread, as a [`blocks::LazyBlock`] in [`Block::lazy`]: its
    /// statistics are exactly its values' (an aggregate reads them, or decodes it).
    /// Without a limit only.
    pub whole_blocks: bool,
}

/// Values of one field of a series, oldest first, one per timestamp (last write wins).
#[derive(Debug)]
pub struct Block<'a> {
    /// Field key, escaped as in line protocol.
    pub field: Cow<'a, [u8]>,
    pub times: Vec<i64>,
    pub values: Vec<Value>,
    /// Blocks not read (see [`ReadRange::whole_blocks`]), oldest first; no time of
    /// `times` falls in one of them.
    pub lazy: Vec<blocks::LazyBlock>,
}

/// A cursor over a series' values in a time range: its blocks, field by field (a
/// field's blocks in time order, not overlapping).
pub type Cursor<'a> = Box<dyn Iterator<Item = Block<'a>> + 'a>;

/// Counts of one engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineStats {
    /// Values held (written minus deleted).
    pub values: u64,
    /// Heap bytes of the in-memory part.
    pub heap_bytes: usize,
    pub wal: WalStats,
}

/// What recovery found.
pub type RecoveryReport = wal::RecoveryReport;

/// The storage of one shard's values.
pub trait Engine {
    /// Fails fast when the engine cannot take writes (before any index change).
    fn check_writable(&self) -> Result<(), EngineError>;

    /// Whether series `sid` already stores every field of `point` with its type.
    fn knows_fields(&self, sid: SeriesId, body: &ParsedBody, point: &PointRef) -> bool;

    /// Logs a write and applies its points, naming their series through `index` once
    /// the log took the record. Returns the durability receiver.
    fn write(
        &mut self,
        batch: &WriteBatch<'_>,
        index: &mut dyn SeriesIndex,
    ) -> Result<Durable, EngineError>;

    /// Logs a delete and removes the values of its series in its range (series left
    /// empty go out of `index`). Returns the values removed and the receiver.
    fn delete(
        &mut self,
        record: &DeleteRecord,
        index: &mut dyn SeriesIndex,
    ) -> Result<(u64, Durable), EngineError>;

    /// A cursor over series `sid`'s values in `range`.
    fn cursor<'a>(&'a mut self, sid: SeriesId, range: &ReadRange<'a>) -> Cursor<'a>;

    /// Background upkeep in slices (today: sorting what writes left out of order):
    /// works until `go_on`, told the values each step touched, says stop; whether work
    /// is left.
    fn tidy(&mut self, go_on: &mut dyn FnMut(usize) -> bool) -> bool;

    /// Number of distinct stored (series, field, time) values.
    fn count_values(&mut self) -> u64;

    fn stats(&self) -> EngineStats;

    /// Resolves once the engine has room for more writes (its log's pending buffer
    /// under its bound). Holds no borrow of the engine.
    fn wait_for_room(&self) -> LocalFuture<'static, ()>;

    /// Resolves once everything logged so far is durable (or the log failed).
    fn flush(&self) -> LocalFuture<'static, Result<(), EngineError>>;

    /// Flushes, then refuses new writes.
    fn close(&self) -> LocalFuture<'static, ()>;

    // A flush of the head into a data file, in steps (see [`storage`]; the core's
    // flush task drives them): freeze, await the ticket's roll, encode, write the
    // image, install, write the manifest, remove covered WAL segments, done.

    /// Moves the head aside and ends the WAL segment (`None`: nothing to flush, or a
    /// flush in progress).
    fn freeze(&mut self) -> Option<FlushTicket>;
    /// Gives up a flush before install (the moved heads go with the next one).
    fn abandon_flush(&mut self);
    /// Plans the data file of the moved heads (`None`: they hold no value; the flush
    /// then only writes the manifest).
    fn encode_frozen(
        &mut self,
        wal_boundary: u64,
        key_of: &dyn Fn(SeriesId) -> Vec<u8>,
    ) -> Option<FlushImage>;
    /// Encodes about `budget` more values of the planned file.
    fn encode_step(&mut self, image: &mut FlushImage, budget: usize);
    /// The manifest describing the files in use now.
    fn manifest(&self) -> manifest::Manifest;
    /// Whether the head or the WAL holds something no file or manifest does.
    fn needs_flush(&self) -> bool;
    /// Puts the written file in use; returns the manifest to write.
    fn install(&mut self, image: FlushImage, file: std::fs::File) -> manifest::Manifest;
    /// Ends a flush.
    fn flush_done(&mut self);
    /// The partition directory.
    fn dir(&self) -> &Path;
    /// The WAL.
    fn wal(&self) -> &Wal;
    /// When the last write arrived.
    fn last_write(&self) -> Instant;
    /// Heap bytes of the in-memory part (O(1)).
    fn head_bytes(&self) -> usize;
    /// Counters of the data files.
    fn file_stats(&self) -> FileStats;

    // A compaction, in steps (see [`storage`]; the core's flush task drives them):
    // plan, merge in slices while the output's bytes are written, install, write the
    // manifest, remove the inputs, done.

    /// Starts a compaction (`full`: every file of a cold shard into large blocks).
    fn plan_compaction(&mut self, full: bool) -> Option<CompactionJob>;
    /// Merges about `budget` more values of the job.
    fn compact_step(&mut self, job: &mut CompactionJob, budget: usize) -> Result<(), String>;
    /// Puts the written output in place of its inputs; the manifest to write.
    fn install_compaction(
        &mut self,
        done: FinishedCompaction,
        file: std::fs::File,
        size: u64,
    ) -> Result<manifest::Manifest, String>;
    /// Ends a compaction.
    fn compaction_done(&mut self);
    /// Data files in use.
    fn file_count(&self) -> usize;

    /// Reads data file blocks for queries through the core's `cache` from now on.
    fn set_block_cache(&mut self, cache: std::rc::Rc<blocks::BlockCache>);
}

pub use storage::{CompactionJob, FileStats, FinishedCompaction, FlushImage, FlushTicket, Storage};

fn apply_write(
    head: &mut head::Head,
    body: &ParsedBody,
    points: &[(u32, Option<SeriesId>)],
    index: &mut dyn SeriesIndex,
) {
    for &(i, known) in points {
        let sid = index.resolve(body, i, known);
        head.apply(sid, body, &body.points[i as usize]);
    }
}

/// Removes a delete's values from `head` and `frozen`; `matched` hears the series it
/// matched (the caller records a tombstone for its files and takes emptied series
/// out of the index). Returns the values removed and the series matched.
fn apply_delete_to(
    head: &mut head::Head,
    frozen: &mut [head::Head],
    record: &DeleteRecord,
    index: &mut dyn SeriesIndex,
    matched: impl FnOnce(&[SeriesId]),
) -> (u64, Vec<SeriesId>) {
    let series = index.series_of_keys(&record.keys);
    let (mut removed, _) = head.delete(&series, record.start_ns, record.end_ns);
    for h in frozen {
        removed += h.delete(&series, record.start_ns, record.end_ns).0;
    }
    matched(&series);
    (removed, series)
}
