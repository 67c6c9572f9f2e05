//! One shard on its owning core: the WAL, the in-memory cache of columns per series and
//! field, and the inverted tag index.
//!
//! Applying a batch is synchronous (validate field types, append to the WAL buffer,
//! apply to the cache) so that the WAL order is the cache order; the caller then awaits
//! durability before it acknowledges.
//!
//! Cache layout: a series holds one column per field; a column holds a timestamp vector
//! and a typed value vector, both chunked (`tsdb::chunked`): 16 bytes per numeric
//! value, plus at most one partly filled chunk per column. Columns stay
//! append-only; an out-of-order or repeated timestamp clears `sorted`, and the next read
//! sorts stably and keeps the last value of each timestamp (last write wins).

use crate::base::hash::HashMapById;
use crate::lineproto::{self, FieldType, FieldValue, ParsedBody, Precision};
use crate::tsdb::chunked::ChunkedVec;
use crate::tsdb::wal::{self, Wal, WalConfig, WalError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Identity of a shard: what its directory's `shard.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: u64,
    pub database: String,
    pub retention_policy: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Errors of a shard write as a whole (per-point rejections are in [`ApplyOutcome`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("cannot create shard {id} in {dir}: {message}")]
    Create {
        id: u64,
        dir: String,
        message: String,
    },
}

/// Values of one column.
#[derive(Debug)]
pub enum Values {
    Float(ChunkedVec<f64>),
    Integer(ChunkedVec<i64>),
    Unsigned(ChunkedVec<u64>),
    Boolean(ChunkedVec<bool>),
    String(ChunkedVec<Box<[u8]>>),
}

impl Values {
    fn new(t: FieldType) -> Values {
        match t {
            FieldType::Float => Values::Float(ChunkedVec::new()),
            FieldType::Integer => Values::Integer(ChunkedVec::new()),
            FieldType::Unsigned => Values::Unsigned(ChunkedVec::new()),
            FieldType::Boolean => Values::Boolean(ChunkedVec::new()),
            FieldType::String => Values::String(ChunkedVec::new()),
        }
    }

    fn field_type(&self) -> FieldType {
        match self {
            Values::Float(_) => FieldType::Float,
            Values::Integer(_) => FieldType::Integer,
            Values::Unsigned(_) => FieldType::Unsigned,
            Values::Boolean(_) => FieldType::Boolean,
            Values::String(_) => FieldType::String,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Values::Float(v) => v.heap_bytes(),
            Values::Integer(v) => v.heap_bytes(),
            Values::Unsigned(v) => v.heap_bytes(),
            Values::Boolean(v) => v.heap_bytes(),
            Values::String(v) => v.heap_bytes() + v.iter().map(|s| s.len()).sum::<usize>(),
        }
    }
}

/// A value read back from the cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(Vec<u8>),
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

/// One field of one series.
#[derive(Debug)]
pub struct Column {
    /// Field key, escaped as in line protocol.
    pub name: Box<[u8]>,
    pub timestamps: ChunkedVec<i64>,
    pub values: Values,
    sorted: bool,
}

impl Column {
    fn push(&mut self, ts: i64, value: &FieldValue, body: &ParsedBody) {
        if let Some(&last) = self.timestamps.last() {
            if ts <= last {
                self.sorted = false;
            }
        }
        self.timestamps.push(ts);
        match (&mut self.values, value) {
            (Values::Float(v), FieldValue::Float(x)) => v.push(*x),
            (Values::Integer(v), FieldValue::Integer(x)) => v.push(*x),
            (Values::Unsigned(v), FieldValue::Unsigned(x)) => v.push(*x),
            (Values::Boolean(v), FieldValue::Boolean(x)) => v.push(*x),
            (Values::String(v), FieldValue::String { span, escaped }) => {
                v.push(body.string_value(span, *escaped).into_boxed_slice())
            }
            _ => {
                // Field types are validated before apply; never reached. Undo the
                // timestamp rather than panic on the write path.
                debug_assert!(false, "field type mismatch in apply");
                self.timestamps.pop();
            }
        }
    }

    /// Sorts by time and keeps the last written value of each timestamp.
    fn normalise(&mut self) {
        if self.sorted {
            return;
        }
        let keep = self.sort_plan();
        self.apply_plan(&keep);
    }

    /// The write positions to keep, in time order: the last written value of each
    /// timestamp. A stable sort of (time, position): columns that went out of order
    /// are mostly a few sorted runs (batches applied out of turn), which it merges in
    /// about linear time.
    fn sort_plan(&self) -> Vec<usize> {
        let mut order: Vec<(i64, usize)> = self
            .timestamps
            .iter()
            .copied()
            .enumerate()
            .map(|(i, t)| (t, i))
            .collect();
        order.sort_by_key(|&(t, _)| t); // stable: equal stamps keep write order
        let mut keep: Vec<usize> = Vec::with_capacity(order.len());
        let mut last_ts = None;
        for (t, i) in order {
            match keep.last_mut() {
                Some(j) if last_ts == Some(t) => *j = i,
                _ => keep.push(i),
            }
            last_ts = Some(t);
        }
        keep
    }

    fn apply_plan(&mut self, keep: &[usize]) {
        self.timestamps = self.timestamps.pick(keep);
        self.values = match &self.values {
            Values::Float(v) => Values::Float(v.pick(keep)),
            Values::Integer(v) => Values::Integer(v.pick(keep)),
            Values::Unsigned(v) => Values::Unsigned(v.pick(keep)),
            Values::Boolean(v) => Values::Boolean(v.pick(keep)),
            Values::String(v) => Values::String(v.pick(keep)),
        };
        self.sorted = true;
    }

    /// Values `from..to` (one match on the type, then a copy per chunk).
    fn values_in(&self, from: usize, to: usize) -> Vec<Value> {
        match &self.values {
            Values::Float(v) => v.range(from, to).map(|&x| Value::Float(x)).collect(),
            Values::Integer(v) => v.range(from, to).map(|&x| Value::Integer(x)).collect(),
            Values::Unsigned(v) => v.range(from, to).map(|&x| Value::Unsigned(x)).collect(),
            Values::Boolean(v) => v.range(from, to).map(|&x| Value::Boolean(x)).collect(),
            Values::String(v) => v
                .range(from, to)
                .map(|x| Value::String(x.to_vec()))
                .collect(),
        }
    }

    fn value_at(&self, i: usize) -> Value {
        match &self.values {
            Values::Float(v) => Value::Float(*v.get(i)),
            Values::Integer(v) => Value::Integer(*v.get(i)),
            Values::Unsigned(v) => Value::Unsigned(*v.get(i)),
            Values::Boolean(v) => Value::Boolean(*v.get(i)),
            Values::String(v) => Value::String(v.get(i).to_vec()),
        }
    }
}

/// Sorts the unsorted columns `wanted` picks (see [`Column::normalise`]) and returns
/// the values they hold. The fields of one point share its timestamp, so a series'
/// columns usually hold the same timestamps in the same write order: one sort plan
/// serves every column whose timestamps equal those of the column it was made for.
fn normalise_columns(columns: &mut [Column], wanted: impl Fn(&Column) -> bool) -> usize {
    let mut shared: Option<(Vec<i64>, Vec<usize>)> = None;
    let mut values = 0;
    for column in columns.iter_mut() {
        if column.sorted || !wanted(column) {
            continue;
        }
        values += column.timestamps.len();
        let same = shared.as_ref().is_some_and(|(stamps, _)| {
            stamps.len() == column.timestamps.len() && stamps.iter().eq(column.timestamps.iter())
        });
        if !same {
            let keep = column.sort_plan();
            shared = Some((column.timestamps.iter().copied().collect(), keep));
        }
        let (_, keep) = shared.as_ref().expect("set above");
        column.apply_plan(keep);
    }
    values
}

/// The column of `key`, trying position `hint` first: points of a series usually list
/// their fields in the same order, so the first comparison usually hits.
#[inline]
fn column_index(series: &Series, key: &[u8], hint: usize) -> Option<usize> {
    if let Some(c) = series.columns.get(hint) {
        if lineproto::short_eq(&c.name, key) {
            return Some(hint);
        }
    }
    series
        .columns
        .iter()
        .position(|c| lineproto::short_eq(&c.name, key))
}

/// One series: its canonical key and its columns.
#[derive(Debug)]
pub struct Series {
    pub key: Box<[u8]>,
    pub measurement: Box<[u8]>,
    pub columns: Vec<Column>,
    /// Deleted: out of the measurement index, no columns; a new point re-indexes it.
    pub dropped: bool,
}

/// A delete as the WAL records it: the series it matched when it ran (so a replay
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

/// Tag value -> ids of the series carrying it.
pub type TagValues = HashMap<Box<[u8]>, Vec<u32>>;

/// Resolves when a WAL record is durable (or failed).
pub type Durable = futures_channel::oneshot::Receiver<Result<(), WalError>>;

/// Index of one measurement: field types and tag key -> tag value -> series.
#[derive(Debug, Default)]
pub struct MeasurementIndex {
    pub field_types: HashMap<Box<[u8]>, FieldType>,
    pub tags: HashMap<Box<[u8]>, TagValues>,
    pub series: Vec<u32>,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesData {
    /// Canonical series key, escaped as in line protocol.
    pub key: String,
    pub columns: Vec<ColumnData>,
}

/// One field's values of a series, sorted by time, one value per timestamp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    pub database: String,
    pub retention_policy: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub series: usize,
    pub values: u64,
    pub cache_heap_bytes: usize,
    pub wal_records: u64,
    pub wal_syncs: u64,
    /// WAL write or sync failures (a full disk), and the times it resumed after them.
    pub wal_failures: u64,
    pub wal_resumes: u64,
}

/// A shard.
pub struct Shard {
    pub meta: ShardMeta,
    wal: Wal,
    series_by_hash: HashMapById<Vec<u32>>,
    series: Vec<Series>,
    measurements: HashMap<Box<[u8]>, MeasurementIndex>,
    values: u64,
    /// Series with a column that a write left out of time order, for the core's tidy
    /// task to sort ([`Shard::tidy`]) before a query has to. At most one entry per
    /// column that turned unsorted since it was last sorted.
    unsorted: Vec<u32>,
}

impl Shard {
    pub fn dir(data_dir: &Path, id: u64) -> PathBuf {
        data_dir.join("shards").join(format!("{id:016x}"))
    }

    /// Creates a new, empty shard on disk.
    pub fn create(
        data_dir: &Path,
        meta: ShardMeta,
        wal_config: WalConfig,
    ) -> Result<Shard, ShardError> {
        let dir = Self::dir(data_dir, meta.id);
        let make = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir.join("wal"))?;
            let tmp = dir.join("shard.json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&meta).expect("serialises"))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, dir.join("shard.json"))?;
            std::fs::File::open(&dir)?.sync_all()?;
            std::fs::File::open(dir.parent().expect("shards dir"))?.sync_all()?;
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
        Ok(Shard::empty(meta, Wal::new(dir.join("wal"), 1, wal_config)))
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
            .and_then(|b| serde_json::from_slice::<ShardMeta>(&b).ok())
            .is_some_and(|m| m.id == id);
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

    fn empty(meta: ShardMeta, wal: Wal) -> Shard {
        Shard {
            meta,
            wal,
            series_by_hash: HashMapById::default(),
            series: Vec::new(),
            measurements: HashMap::new(),
            values: 0,
            unsorted: Vec::new(),
        }
    }

    /// Opens an existing shard directory and replays its WAL, cutting a torn tail.
    pub fn open(dir: &Path, wal_config: WalConfig) -> Result<(Shard, wal::RecoveryReport), String> {
        Self::open_with(dir, wal_config, true)
    }

    /// Opens a shard without changing any file (for `shardcore inspect`).
    pub fn open_read_only(
        dir: &Path,
        wal_config: WalConfig,
    ) -> Result<(Shard, wal::RecoveryReport), String> {
        Self::open_with(dir, wal_config, false)
    }

    fn open_with(
        dir: &Path,
        wal_config: WalConfig,
        truncate: bool,
    ) -> Result<(Shard, wal::RecoveryReport), String> {
        let meta: ShardMeta = std::fs::read(dir.join("shard.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))?;
        let mut shard = Shard::empty(meta, Wal::new(dir.join("wal"), 1, wal_config));
        let (report, next) = wal::recover(&dir.join("wal"), truncate, |record| {
            if record.kind == wal::KIND_DELETE {
                match serde_json::from_slice::<DeleteRecord>(record.lines) {
                    Ok(delete) => {
                        shard.apply_delete(&delete);
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
            let accepted = shard.validate(&parsed, &all, &mut rejected);
            shard.apply(&parsed, &accepted);
        })
        .map_err(|e| e.to_string())?;
        shard.wal = Wal::new(dir.join("wal"), next, wal_config);
        Ok((shard, report))
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Validates, logs and applies the points `indices` of `body`. Returns the outcome and
    /// a receiver that resolves when the WAL record is durable (None if nothing was
    /// written).
    pub fn write(
        &mut self,
        body: &Arc<ParsedBody>,
        indices: &[u32],
        precision: Precision,
        default_time_ns: i64,
    ) -> Result<(ApplyOutcome, Option<Durable>), ShardError> {
        self.wal.check_writable()?;
        let mut outcome = ApplyOutcome::default();
        let accepted = self.validate(body, indices, &mut outcome.rejected);
        if accepted.is_empty() {
            return Ok((outcome, None));
        }
        let durable = self.wal.append(precision, default_time_ns, |out| {
            // One copy per run of adjacent lines, each run '\n'-terminated.
            for run in body.line_runs(accepted.iter().map(|a| a.0)) {
                out.extend_from_slice(&body.body[run]);
                out.push(b'\n');
            }
        })?;
        self.apply(body, &accepted);
        outcome.written = accepted.len();
        Ok((outcome, Some(durable)))
    }

    /// Checks the points' field types; returns the accepted points with their series
    /// (if it exists yet) and adds a reason per rejected point to `rejected`.
    fn validate(
        &mut self,
        body: &ParsedBody,
        indices: &[u32],
        rejected: &mut Vec<String>,
    ) -> Vec<(u32, Option<u32>)> {
        let mut accepted = Vec::with_capacity(indices.len());
        for &i in indices {
            let point = &body.points[i as usize];
            let sid = self.find_series(body, point);
            match self.check_field_types(body, point, sid) {
                Ok(()) => accepted.push((i, sid)),
                Err(reason) => rejected.push(reason),
            }
        }
        accepted
    }

    /// Checks a point's field types against the shard and registers new fields, so a
    /// later point of the same batch is checked against this one.
    fn check_field_types(
        &mut self,
        body: &ParsedBody,
        point: &lineproto::PointRef,
        sid: Option<u32>,
    ) -> Result<(), String> {
        // Fast path: the series already has a column of the same type for every field
        // (column types always agree with the measurement's field types).
        if let Some(sid) = sid {
            let series = &self.series[sid as usize];
            let known = body.point_fields(point).iter().enumerate().all(|(j, f)| {
                column_index(series, body.bytes(&f.key), j)
                    .is_some_and(|c| series.columns[c].values.field_type() == f.value.field_type())
            });
            if known {
                return Ok(());
            }
        }
        let m_raw = body.bytes(&point.measurement);
        if !self.measurements.contains_key(m_raw) {
            self.measurements
                .insert(m_raw.into(), MeasurementIndex::default());
        }
        let index = self.measurements.get_mut(m_raw).expect("inserted above");
        for f in body.point_fields(point) {
            let key = body.bytes(&f.key);
            let t = f.value.field_type();
            if let Some(&existing) = index.field_types.get(key) {
                if existing != t {
                    return Err(format!(
                        "field type conflict: input field \"{}\" on measurement \"{}\" is type {}, already exists as type {}",
                        String::from_utf8_lossy(&lineproto::unescape(key)),
                        String::from_utf8_lossy(&lineproto::unescape(m_raw)),
                        t,
                        existing
                    ));
                }
            }
        }
        for f in body.point_fields(point) {
            let key = body.bytes(&f.key);
            if !index.field_types.contains_key(key) {
                index.field_types.insert(key.into(), f.value.field_type());
            }
        }
        Ok(())
    }

    /// Applies validated points to the cache (creating series as needed).
    fn apply(&mut self, body: &ParsedBody, accepted: &[(u32, Option<u32>)]) {
        for &(i, sid) in accepted {
            let point = &body.points[i as usize];
            let sid = match sid {
                Some(s) => s,
                // Created by an earlier point of this batch, or new.
                None => self.series_id(body, point),
            };
            if self.series[sid as usize].dropped {
                self.reindex(sid, body, point);
            }
            let series = &mut self.series[sid as usize];
            for (j, f) in body.point_fields(point).iter().enumerate() {
                let key = body.bytes(&f.key);
                let col = match column_index(series, key, j) {
                    Some(c) => c,
                    None => {
                        series.columns.push(Column {
                            name: key.into(),
                            timestamps: ChunkedVec::new(),
                            values: Values::new(f.value.field_type()),
                            sorted: true,
                        });
                        series.columns.len() - 1
                    }
                };
                let column = &mut series.columns[col];
                let was_sorted = column.sorted;
                column.push(point.timestamp, &f.value, body);
                if was_sorted && !column.sorted {
                    self.unsorted.push(sid);
                }
                self.values += 1;
            }
        }
    }

    /// Puts a deleted series back into its measurement's index (it got a new point).
    fn reindex(&mut self, sid: u32, body: &ParsedBody, point: &lineproto::PointRef) {
        self.index_series(sid, body, point);
        self.series[sid as usize].dropped = false;
    }

    /// Adds series `sid` (of `point`'s key) to its measurement's series and tag index.
    fn index_series(&mut self, sid: u32, body: &ParsedBody, point: &lineproto::PointRef) {
        let measurement: Box<[u8]> = body.bytes(&point.measurement).into();
        let index = self.measurements.entry(measurement).or_default();
        index.series.push(sid);
        for t in body.point_tags(point) {
            index
                .tags
                .entry(body.bytes(&t.key).into())
                .or_default()
                .entry(body.bytes(&t.value).into())
                .or_default()
                .push(sid);
        }
    }

    /// Series ids of a measurement (escaped name) whose key satisfies `matches`.
    pub fn matching_series(
        &self,
        measurement: &[u8],
        matches: impl Fn(&[u8]) -> bool,
    ) -> Vec<String> {
        let Some(index) = self.measurements.get(measurement) else {
            return Vec::new();
        };
        index
            .series
            .iter()
            .map(|&id| &self.series[id as usize].key)
            .filter(|k| matches(k))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    /// Logs and applies a delete; returns the values removed and a receiver that
    /// resolves when the record is durable.
    pub fn delete(&mut self, record: &DeleteRecord) -> Result<(u64, Durable), ShardError> {
        self.wal.check_writable()?;
        let json = serde_json::to_vec(record).expect("delete records serialise");
        let durable = self
            .wal
            .append_kind(wal::KIND_DELETE, Precision::Nanosecond, 0, |out| {
                out.extend_from_slice(&json)
            })?;
        Ok((self.apply_delete(record), durable))
    }

    /// Removes the values of `record.keys` in its range; a series left with nothing is
    /// taken out of the index; dropped measurements lose their index and field types.
    fn apply_delete(&mut self, record: &DeleteRecord) -> u64 {
        let mut removed = 0u64;
        let keys: std::collections::HashSet<&[u8]> =
            record.keys.iter().map(|k| k.as_bytes()).collect();
        let mut emptied: Vec<u32> = Vec::new();
        for (id, series) in self.series.iter_mut().enumerate() {
            if series.dropped || !keys.contains(&*series.key) {
                continue;
            }
            for column in &mut series.columns {
                column.normalise();
                let n = column.timestamps.len();
                let keep: Vec<usize> = (0..n)
                    .filter(|&i| {
                        let t = *column.timestamps.get(i);
                        t < record.start_ns || t > record.end_ns
                    })
                    .collect();
                if keep.len() == n {
                    continue;
                }
                removed += (n - keep.len()) as u64;
                column.timestamps = column.timestamps.pick(&keep);
                column.values = match &column.values {
                    Values::Float(v) => Values::Float(v.pick(&keep)),
                    Values::Integer(v) => Values::Integer(v.pick(&keep)),
                    Values::Unsigned(v) => Values::Unsigned(v.pick(&keep)),
                    Values::Boolean(v) => Values::Boolean(v.pick(&keep)),
                    Values::String(v) => Values::String(v.pick(&keep)),
                };
            }
            series.columns.retain(|c| !c.timestamps.is_empty());
            if series.columns.is_empty() {
                series.dropped = true;
                emptied.push(id as u32);
            }
        }
        if !emptied.is_empty() {
            let gone: std::collections::HashSet<u32> = emptied.into_iter().collect();
            for index in self.measurements.values_mut() {
                index.series.retain(|id| !gone.contains(id));
                for values in index.tags.values_mut() {
                    for ids in values.values_mut() {
                        ids.retain(|id| !gone.contains(id));
                    }
                    values.retain(|_, ids| !ids.is_empty());
                }
                index.tags.retain(|_, v| !v.is_empty());
            }
        }
        for m in &record.drop_measurements {
            if self
                .measurements
                .get(m.as_bytes())
                .is_some_and(|i| i.series.is_empty())
            {
                self.measurements.remove(m.as_bytes());
            }
        }
        self.values = self.values.saturating_sub(removed);
        removed
    }

    /// The series of a point, if it exists.
    fn find_series(&self, body: &ParsedBody, point: &lineproto::PointRef) -> Option<u32> {
        let key = body.series_key(point);
        self.series_by_hash
            .get(&point.key_hash)?
            .iter()
            .copied()
            .find(|&id| &*self.series[id as usize].key == key)
    }

    /// Finds or creates the series of a point, indexing a new one.
    fn series_id(&mut self, body: &ParsedBody, point: &lineproto::PointRef) -> u32 {
        let key = body.series_key(point);
        if let Some(ids) = self.series_by_hash.get(&point.key_hash) {
            for &id in ids {
                if &*self.series[id as usize].key == key {
                    return id;
                }
            }
        }
        let id = self.series.len() as u32;
        let measurement: Box<[u8]> = body.bytes(&point.measurement).into();
        self.index_series(id, body, point);
        self.series.push(Series {
            key: key.into(),
            measurement,
            columns: Vec::new(),
            dropped: false,
        });
        self.series_by_hash
            .entry(point.key_hash)
            .or_default()
            .push(id);
        id
    }

    pub fn stats(&self) -> ShardStats {
        let wal = self.wal.stats();
        ShardStats {
            id: self.meta.id,
            database: self.meta.database.clone(),
            retention_policy: self.meta.retention_policy.clone(),
            start_ns: self.meta.start_ns,
            end_ns: self.meta.end_ns,
            series: self.series.iter().filter(|s| !s.dropped).count(),
            values: self.values,
            cache_heap_bytes: self.cache_heap_bytes(),
            wal_records: wal.records,
            wal_syncs: wal.syncs,
            wal_failures: wal.failures,
            wal_resumes: wal.resumes,
        }
    }

    /// Heap bytes held by cached columns (timestamps and values, with vector slack).
    pub fn cache_heap_bytes(&self) -> usize {
        self.series
            .iter()
            .flat_map(|s| s.columns.iter())
            .map(|c| c.timestamps.heap_bytes() + c.values.heap_bytes())
            .sum()
    }

    /// Stored points of matching series in `[start_ns, end_ns]`, sorted by series key,
    /// field and time. `measurement` and `series_key` are unescaped-insensitive exact
    /// matches on the escaped forms as stored.
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
                .measurements
                .get(m)
                .map(|i| i.series.clone())
                .unwrap_or_default(),
            None => (0..self.series.len() as u32).collect(),
        };
        ids.sort_by(|a, b| {
            self.series[*a as usize]
                .key
                .cmp(&self.series[*b as usize].key)
        });
        for id in ids {
            let series = &mut self.series[id as usize];
            if series_key.is_some_and(|k| k != &*series.key) {
                continue;
            }
            let key = String::from_utf8_lossy(&series.key).into_owned();
            series.columns.sort_by(|a, b| a.name.cmp(&b.name));
            for column in &mut series.columns {
                column.normalise();
                let field =
                    String::from_utf8_lossy(&lineproto::unescape(&column.name)).into_owned();
                let from = column.timestamps.partition_point(|&t| t < start_ns);
                let to = column.timestamps.partition_point(|&t| t <= end_ns);
                for i in from..to {
                    out.push(StoredPoint {
                        series_key: key.clone(),
                        field: field.clone(),
                        timestamp: *column.timestamps.get(i),
                        value: column.value_at(i),
                    });
                }
            }
        }
        out
    }

    /// The measurement index (escaped names as keys).
    pub fn measurements(&self) -> &HashMap<Box<[u8]>, MeasurementIndex> {
        &self.measurements
    }

    /// The canonical (escaped) key of series `id`.
    pub fn series_key(&self, id: u32) -> &[u8] {
        &self.series[id as usize].key
    }

    /// The ids of the series of `measurement` a scan must look at: every series of it,
    /// or, with `required_tags` (tag key, value, as stored), the shortest posting list
    /// of the inverted index among those pairs (none when a pair has no series).
    pub fn scan_candidates(
        &self,
        measurement: &[u8],
        required_tags: &[(Vec<u8>, Vec<u8>)],
    ) -> Vec<u32> {
        let Some(index) = self.measurements.get(measurement) else {
            return Vec::new();
        };
        let mut candidates: &[u32] = &index.series;
        for (key, value) in required_tags {
            match index.tags.get(&key[..]).and_then(|v| v.get(&value[..])) {
                Some(ids) if ids.len() < candidates.len() => candidates = ids,
                Some(_) => {}
                None => return Vec::new(),
            }
        }
        candidates.to_vec()
    }

    /// Appends to `out` the series of `ids` (from [`Self::scan_candidates`]) that pass
    /// `series_filter`, with the values of `fields` (all when `None`) in
    /// `[start, end]`; `limit` `(n, newest)` keeps only the first n (or the last n) of
    /// each field. Series with nothing in range are left out. `go_on` hears the number
    /// of values each series gave (0 for one the filter drops) and pauses or ends the
    /// scan by returning false; the number of ids done is returned (a later call goes
    /// on from there).
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
    ) -> usize {
        let mut done = 0;
        for &id in ids {
            done += 1;
            let Some(series) = self.series.get_mut(id as usize) else {
                continue;
            };
            if !series_filter(&series.key) {
                if !go_on(0) {
                    break;
                }
                continue;
            }
            let mut columns = Vec::new();
            let wanted = |c: &Column| fields.is_none_or(|f| f.iter().any(|n| **n == *c.name));
            normalise_columns(&mut series.columns, wanted);
            for column in &mut series.columns {
                if !wanted(column) {
                    continue;
                }
                let mut from = column.timestamps.partition_point(|&t| t < start_ns);
                let mut to = column.timestamps.partition_point(|&t| t <= end_ns);
                match limit {
                    Some((n, true)) => from = from.max(to.saturating_sub(n)),
                    Some((n, false)) => to = to.min(from.saturating_add(n)),
                    None => {}
                }
                if from == to {
                    continue;
                }
                columns.push(ColumnData {
                    field: String::from_utf8_lossy(&lineproto::unescape(&column.name)).into_owned(),
                    times: column.timestamps.range(from, to).copied().collect(),
                    values: column.values_in(from, to),
                });
            }
            let values = columns.iter().map(|c| c.times.len()).sum();
            if !columns.is_empty() {
                out.push(SeriesData {
                    key: String::from_utf8_lossy(&series.key).into_owned(),
                    columns,
                });
            }
            if !go_on(values) {
                break;
            }
        }
        done
    }

    /// The values in the cache (up with every write, down with deletes): what the tidy
    /// task watches to see whether writes are still arriving.
    pub fn values_written(&self) -> u64 {
        self.values
    }

    /// Sorts the columns writes left out of time order, series by series, until
    /// `go_on` (told the values each series holds) says stop; whether some are left.
    pub fn tidy(&mut self, mut go_on: impl FnMut(usize) -> bool) -> bool {
        while let Some(sid) = self.unsorted.pop() {
            let Some(series) = self.series.get_mut(sid as usize) else {
                continue;
            };
            let values = normalise_columns(&mut series.columns, |_| true);
            // Listed again for another column, or sorted by a query meanwhile.
            if values > 0 && !go_on(values) {
                break;
            }
        }
        !self.unsorted.is_empty()
    }

    /// Number of distinct stored (series, field, time) values, after last-write-wins.
    pub fn count_values(&mut self) -> u64 {
        let mut n = 0;
        for s in &mut self.series {
            normalise_columns(&mut s.columns, |_| true);
            n += s
                .columns
                .iter()
                .map(|c| c.timestamps.len() as u64)
                .sum::<u64>();
        }
        n
    }

    /// Series ids carrying `tag key = value` in `measurement` (escaped forms).
    pub fn series_with_tag(&self, measurement: &[u8], key: &[u8], value: &[u8]) -> &[u32] {
        self.measurements
            .get(measurement)
            .and_then(|m| m.tags.get(key))
            .and_then(|v| v.get(value))
            .map_or(&[], |v| v.as_slice())
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
            let mut shard = Shard::create(&dd, meta(7), config()).unwrap();
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
            assert_eq!(shard.series_with_tag(b"cpu", b"host", b"b").len(), 1);
            shard.wal().close().await;
        });
        let (mut shard, report) = Shard::open(&Shard::dir(&data_dir, 7), config()).unwrap();
        assert_eq!(report.records, 1);
        assert_eq!(shard.count_values(), 3);
        let pts = shard.read(None, None, i64::MIN, i64::MAX);
        assert_eq!(pts.last().unwrap().value, Value::String(b"s".to_vec()));
        assert_eq!(
            shard.read(Some(b"cpu"), Some(b"cpu,host=a"), 0, 100)[0].value,
            Value::Float(9.0)
        );
    }

    #[test]
    fn tidy_sorts_what_writes_left_out_of_order_keeping_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let dd = dir.path().to_path_buf();
        run(move || async move {
            let mut shard = Shard::create(&dd, meta(8), config()).unwrap();
            fn write(shard: &mut Shard, lines: &'static [u8]) {
                let body = Arc::new(lineproto::parse(
                    Bytes::from_static(lines),
                    Precision::Nanosecond,
                    0,
                ));
                let all: Vec<u32> = (0..body.points.len() as u32).collect();
                shard.write(&body, &all, Precision::Nanosecond, 0).unwrap();
            }
            write(&mut shard, b"cpu,host=a v=3,w=1i 30\ncpu,host=b v=1 10\n");
            write(
                &mut shard,
                b"cpu,host=a v=1,w=2i 10\ncpu,host=a v=2 20\ncpu,host=a v=9 10\n",
            );
            // Host a's two columns went out of order (listed once each), b's did not.
            assert_eq!(shard.unsorted, vec![0, 0]);
            let mut seen = Vec::new();
            assert!(!shard.tidy(|values| {
                seen.push(values);
                true
            }));
            assert_eq!(
                seen,
                vec![6],
                "v's 4 values and w's 2, before the duplicate goes"
            );
            let a = &shard.series[0];
            assert!(a.columns.iter().all(|c| c.sorted));
            let v = &a.columns[0];
            assert_eq!(
                v.timestamps.iter().copied().collect::<Vec<_>>(),
                vec![10, 20, 30]
            );
            assert_eq!(
                v.values_in(0, 3),
                vec![Value::Float(9.0), Value::Float(2.0), Value::Float(3.0)]
            );
            let w = &a.columns[1];
            assert_eq!(
                w.timestamps.iter().copied().collect::<Vec<_>>(),
                vec![10, 30]
            );
            // Nothing left; a sorted column going out of order again is listed again.
            assert!(!shard.tidy(|_| true));
            write(&mut shard, b"cpu,host=a v=0 5\n");
            assert_eq!(shard.unsorted, vec![0]);
            // `go_on` stops after the series it was told of.
            write(&mut shard, b"cpu,host=b v=0 5\n");
            assert!(shard.tidy(|_| false));
            assert!(!shard.tidy(|_| false));
            shard.wal().close().await;
        });
    }
}
