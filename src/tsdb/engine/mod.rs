//! The storage engine of one shard, behind the [`Engine`] trait: it logs and keeps the
//! values of the shard's series (the shard's [`crate::tsdb::index`] names the series);
//! reads come back through a cursor over a time range.
//!
//! The first implementation, [`WalHead`], is a write-ahead log ([`wal`]) in front of
//! in-memory columns ([`head`]): a write is appended to the WAL buffer and applied to
//! the head synchronously (so the WAL order is the head's order), and the caller awaits
//! the durability receiver before it acknowledges. Opening replays the WAL into the
//! head through the index. An engine with compressed files slots in behind the same
//! trait: the head then holds only what no file holds yet.
//!
//! **Invariant:** only the owning core touches an engine (it is `!Send`).

pub mod chunked;
pub mod head;
pub mod wal;

use crate::base::LocalFuture;
use crate::lineproto::{self, ParsedBody, PointRef, Precision};
use serde::{Deserialize, Serialize};
use std::path::Path;
use wal::{Wal, WalConfig, WalError, WalStats};

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
}

/// Values of one field of a series, oldest first, one per timestamp (last write wins).
#[derive(Debug)]
pub struct Block<'a> {
    /// Field key, escaped as in line protocol.
    pub field: &'a [u8],
    pub times: Vec<i64>,
    pub values: Vec<Value>,
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
}

/// Today's engine: a WAL in front of the in-memory head.
pub struct WalHead {
    wal: Wal,
    head: head::Head,
}

impl WalHead {
    /// A new, empty engine logging to `dir` (which exists).
    pub fn create(dir: &Path, config: WalConfig) -> WalHead {
        WalHead {
            wal: Wal::new(dir.to_path_buf(), 1, config),
            head: head::Head::default(),
        }
    }

    /// Opens the engine in `dir`: replays the WAL (cutting a torn tail when `truncate`)
    /// through `index` into the head.
    pub fn open(
        dir: &Path,
        config: WalConfig,
        truncate: bool,
        index: &mut dyn SeriesIndex,
    ) -> Result<(WalHead, RecoveryReport), EngineError> {
        let mut head = head::Head::default();
        let (report, next) = wal::recover(dir, truncate, |record| {
            if record.kind == wal::KIND_DELETE {
                match serde_json::from_slice::<DeleteRecord>(record.lines) {
                    Ok(delete) => {
                        apply_delete(&mut head, &delete, index);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable delete record in WAL; skipped")
                    }
                }
                return;
            }
            if record.kind != wal::KIND_WRITE {
                return;
            }
            let body = bytes::Bytes::copy_from_slice(record.lines);
            let parsed = lineproto::parse(body, record.precision, record.default_time_ns);
            let all: Vec<u32> = (0..parsed.points.len() as u32).collect();
            // The same checks as a live write, so field types are known after a restart.
            let mut rejected = Vec::new();
            let knows =
                |sid, body: &ParsedBody, point: &PointRef| head.knows_fields(sid, body, point);
            let accepted = validate(index, &knows, &parsed, &all, &mut rejected);
            apply_write(&mut head, &parsed, &accepted, index);
        })
        .map_err(|e| EngineError::Open {
            dir: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let engine = WalHead {
            wal: Wal::new(dir.to_path_buf(), next, config),
            head,
        };
        Ok((engine, report))
    }

    /// The WAL (tests reach its file seam through it).
    pub fn wal(&self) -> &Wal {
        &self.wal
    }
}

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

fn apply_delete(head: &mut head::Head, record: &DeleteRecord, index: &mut dyn SeriesIndex) -> u64 {
    let series = index.series_of_keys(&record.keys);
    let (removed, emptied) = head.delete(&series, record.start_ns, record.end_ns);
    index.remove_series(&emptied, &record.drop_measurements);
    removed
}

impl Engine for WalHead {
    fn check_writable(&self) -> Result<(), EngineError> {
        Ok(self.wal.check_writable()?)
    }

    fn knows_fields(&self, sid: SeriesId, body: &ParsedBody, point: &PointRef) -> bool {
        self.head.knows_fields(sid, body, point)
    }

    fn write(
        &mut self,
        batch: &WriteBatch<'_>,
        index: &mut dyn SeriesIndex,
    ) -> Result<Durable, EngineError> {
        let body = batch.body;
        let durable = self
            .wal
            .append(batch.precision, batch.default_time_ns, |out| {
                // One copy per run of adjacent lines, each run '\n'-terminated.
                for run in body.line_runs(batch.points.iter().map(|p| p.0)) {
                    out.extend_from_slice(&body.body[run]);
                    out.push(b'\n');
                }
            })?;
        apply_write(&mut self.head, body, batch.points, index);
        Ok(durable)
    }

    fn delete(
        &mut self,
        record: &DeleteRecord,
        index: &mut dyn SeriesIndex,
    ) -> Result<(u64, Durable), EngineError> {
        let json = serde_json::to_vec(record).expect("delete records serialise");
        let durable = self
            .wal
            .append_kind(wal::KIND_DELETE, Precision::Nanosecond, 0, |out| {
                out.extend_from_slice(&json)
            })?;
        Ok((apply_delete(&mut self.head, record, index), durable))
    }

    fn cursor<'a>(&'a mut self, sid: SeriesId, range: &ReadRange<'a>) -> Cursor<'a> {
        self.head.cursor(sid, range)
    }

    fn tidy(&mut self, go_on: &mut dyn FnMut(usize) -> bool) -> bool {
        self.head.tidy(go_on)
    }

    fn count_values(&mut self) -> u64 {
        self.head.count_values()
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            values: self.head.values(),
            heap_bytes: self.head.heap_bytes(),
            wal: self.wal.stats(),
        }
    }

    fn wait_for_room(&self) -> LocalFuture<'static, ()> {
        let wal = self.wal.clone();
        Box::pin(async move { wal.wait_for_room().await })
    }

    fn flush(&self) -> LocalFuture<'static, Result<(), EngineError>> {
        let wal = self.wal.clone();
        Box::pin(async move { Ok(wal.flush().await?) })
    }

    fn close(&self) -> LocalFuture<'static, ()> {
        let wal = self.wal.clone();
        Box::pin(async move { wal.close().await })
    }
}
