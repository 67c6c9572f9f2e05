//! What a query asks of the shards: a scan of one measurement's series in a time range,
//! or the schema (measurements, tags, fields, series) of a database. Both run on the
//! core that owns the shard — over the mesh for other cores of this node, through the
//! cluster service's MapShard for shards only other nodes own — and both are plain
//! serde values so they cross either boundary the same way.

use crate::influxql::value::Val;
use crate::lineproto::{self, FieldType};
use crate::tsdb::engine::blocks::LazyBlock;
use crate::tsdb::engine::file::Stats;
use crate::tsdb::engine::merge::merge_sources;
use crate::tsdb::read::cancel::{Deadline, ScanBudget, ScanStop};
use crate::tsdb::shard::SeriesData;
use crate::tsdb::shard::Value;
use crate::tsdb::store::{PartitionKey, Store};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// Scan of one measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanRequest {
    pub database: String,
    pub retention_policy: String,
    /// Unescaped measurement name.
    pub measurement: String,
    /// Unescaped field keys to return; `None` returns every field.
    pub fields: Option<Vec<String>>,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Only these shards (a remote map names the shards it wants); `None`: every
    /// local shard of the database and policy that overlaps the range.
    pub shard_ids: Option<Vec<u64>>,
    /// The tag-only part of the WHERE clause (InfluxQL text), applied to series keys
    /// where the shard is, so series that cannot match are never copied.
    #[serde(default)]
    pub tag_condition: Option<String>,
    /// Only the first (or, `newest`, the last) `n` values of each field of each
    /// series: a raw `SELECT ... LIMIT n` whose WHERE reads no field needs no more
    /// (the group's first n rows are among its series' first n rows of each field).
    #[serde(default)]
    pub per_series_limit: Option<SeriesLimit>,
    /// Aggregate on the shard: instead of every point, one partial per (series,
    /// window, InfluxDB shard group) for the kinds asked (see [`PartialSpec`]).
    #[serde(default)]
    pub partial: Option<PartialSpec>,
    /// Stop with an error once more values than this were read (`max-select-point`;
    /// 0: no limit), so no core or peer builds an answer the coordinator would refuse.
    #[serde(default)]
    pub max_points: usize,
    /// The statement this scan serves, unique in the cluster: a peer files its running
    /// scan and held pages under it, which a MapShard `Cancel` names.
    #[serde(default)]
    pub query_id: u64,
    /// Milliseconds the statement may still run, set as the request leaves for another
    /// node (the peer's own [`Deadline`] starts from it); `None`: no time limit.
    #[serde(default)]
    pub budget_ms: Option<u64>,
    /// This node's view of the same limit, shared with the scans on its cores.
    #[serde(skip)]
    pub deadline: Deadline,
}

/// What a shard computes for a `GROUP BY time` aggregate whose calls are all count,
/// sum, mean, min, max, first or last of plain numeric fields.
///
/// The points of one series are cut into segments: one window of the query intersected
/// with one InfluxDB shard group (`group_ns`; the coordinator adds float sums per
/// (group, series) to reproduce InfluxDB's rounding, see `functions::float_sum`). A
/// segment that lies wholly inside this shard's time range becomes one entry per kind,
/// added up in the order the coordinator would add them (newest first for DESC); a
/// segment cut by this shard's edge is sent as raw points (in every kind's column), so
/// no two shards ever hold partials of one segment and the arithmetic stays exact.
///
/// Columns come back named [`partial_column`]`(field, kind)`, with the point counts
/// of the sum kinds in [`weight_column`]`(field)` at the same timestamps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialSpec {
    pub every: i64,
    pub offset: i64,
    pub group_ns: i64,
    pub desc: bool,
    /// The earliest and latest start of the shards that hold the measurement in the
    /// range: the earliest shards (latest, DESC) hold the first part of every segment
    /// that has points, wherever the segment begins.
    pub first_shard_start: i64,
    pub last_shard_start: i64,
    /// Unescaped field name and the kinds wanted of it.
    pub fields: Vec<(String, Vec<PartialKind>)>,
}

/// One kind of partial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PartialKind {
    /// The count alone (its value is the count too): count().
    Count,
    /// Sum in the field's own type (integers wrap) and the count: sum().
    Sum,
    /// Sum as floats and the count: mean().
    FloatSum,
    Min,
    Max,
    First,
    Last,
}

impl PartialKind {
    fn tag(self) -> &'static str {
        match self {
            PartialKind::Count => "count",
            PartialKind::Sum => "sum",
            PartialKind::FloatSum => "fsum",
            PartialKind::Min => "min",
            PartialKind::Max => "max",
            PartialKind::First => "first",
            PartialKind::Last => "last",
        }
    }

    /// Whether entries of this kind carry a point count (in the weight column).
    pub fn weighted(self) -> bool {
        matches!(
            self,
            PartialKind::Count | PartialKind::Sum | PartialKind::FloatSum
        )
    }
}

/// The column (and query slot) name of `field`'s partials of `kind`; NUL cannot occur
/// in a field name, so it never collides with a real field.
pub fn partial_column(field: &str, kind: PartialKind) -> String {
    format!("{field}\u{0}{}", kind.tag())
}

/// The column of `field`'s point counts (for its weighted kinds).
pub fn weight_column(field: &str) -> String {
    format!("{field}\u{0}n")
}

/// Replaces a scanned column by its partials per [`PartialSpec`] (`shard`: this
/// shard's `[start, end)`); `unread` are data file blocks of the column the cursor did
/// not read (see [`crate::tsdb::engine::ReadRange::whole_blocks`]): one that lies in a
/// segment a partial stands for is answered from its statistics where they give
/// exactly what adding its values would (count; integer sums; a float sum that starts
/// the segment, as its values are added from 0.0 oldest first; min and max, reading
/// only the block that holds the winner for its time; first and last read one block),
/// every other one is read.
fn partial_columns(
    column: crate::tsdb::shard::ColumnData,
    unread: Vec<LazyBlock>,
    kinds: &[PartialKind],
    spec: &PartialSpec,
    shard: (i64, i64),
) -> Vec<crate::tsdb::shard::ColumnData> {
    use crate::tsdb::shard::ColumnData;
    if kinds.is_empty() {
        return Vec::new();
    }
    let field = column.field.clone();
    let mut out: Vec<ColumnData> = kinds
        .iter()
        .map(|&k| ColumnData {
            field: partial_column(&field, k),
            times: Vec::new(),
            values: Vec::new(),
        })
        .collect();
    let mut weights = ColumnData {
        field: weight_column(&field),
        times: Vec::new(),
        values: Vec::new(),
    };
    // `every` 0: no GROUP BY time, one window spanning everything. A segment: its
    // first time, last time, and whether a partial may stand for it (see below).
    let segment_of = |t: i64| {
        let window = if spec.every > 0 {
            crate::base::time::window_start(t, spec.every, spec.offset)
        } else {
            i64::MIN
        };
        let group = crate::base::time::go_truncate(t, spec.group_ns);
        // The segment ends at the next window or group edge, whichever comes first.
        let window_end = if spec.every > 0 {
            window.saturating_add(spec.every)
        } else {
            i64::MAX
        };
        let edge = window_end.min(group.saturating_add(spec.group_ns));
        let lo = window.max(group);
        let hi = edge.saturating_sub(1);
        // The coordinator adds a segment's values in order (oldest first, or newest
        // first for DESC); a partial can stand for the part it would add first — the
        // segment's start (end, DESC) lies in this shard — and the rest of the segment,
        // in the next shard, comes raw and is added after it, as it would be anyway.
        let first_part = if spec.desc {
            hi < shard.1 || shard.0 >= spec.last_shard_start
        } else {
            lo >= shard.0 || shard.0 <= spec.first_shard_start
        };
        (edge, hi, first_part)
    };
    // Blocks across a segment edge, or in a segment sent raw, are read.
    let (blocks, read): (Vec<LazyBlock>, Vec<LazyBlock>) = unread.into_iter().partition(|b| {
        let (_, hi, first_part) = segment_of(b.meta.min_ns);
        first_part && b.meta.max_ns <= hi
    });
    // The cursor's sources never share a time, so their order does not matter.
    let mut sources = vec![(column.times, column.values)];
    sources.extend(read.iter().map(LazyBlock::values));
    let (times, values) = merge_sources(sources);
    let numeric = |v: &Value| matches!(v, Value::Float(_) | Value::Integer(_) | Value::Unsigned(_));
    let (mut i, mut l) = (0, 0);
    while i < times.len() || l < blocks.len() {
        let t0 = match (times.get(i), blocks.get(l)) {
            (Some(&t), Some(b)) => t.min(b.meta.min_ns),
            (Some(&t), None) => t,
            (None, Some(b)) => b.meta.min_ns,
            (None, None) => unreachable!("loop condition"),
        };
        let (edge, _, first_part) = segment_of(t0);
        // One binary search instead of a division per point.
        let j = i + times[i..].partition_point(|&t| t < edge);
        let m = l + blocks[l..].partition_point(|b| b.meta.min_ns < edge);
        let whole = first_part && values[i..j].iter().all(numeric);
        if !whole {
            // (Blocks only lie in segments a partial stands for.)
            for k in i..j {
                for col in &mut out {
                    col.times.push(times[k]);
                    col.values.push(values[k].clone());
                }
            }
            i = j;
            continue;
        }
        let segment = Segment::new(&times[i..j], &values[i..j], &blocks[l..m]);
        for (&kind, col) in kinds.iter().zip(out.iter_mut()) {
            let (t, v) = segment.partial(kind, spec.desc);
            col.times.push(t);
            col.values.push(v);
        }
        if kinds.iter().any(|k| k.weighted()) {
            weights.times.push(segment.first_time());
            weights.values.push(Value::Integer(segment.count() as i64));
        }
        i = j;
        l = m;
    }
    // Every entry lies inside its segment and segments come in time order: each
    // column stays sorted by time.
    out.retain(|c| !c.times.is_empty());
    if !weights.times.is_empty() {
        out.push(weights);
    }
    out
}

/// A run of one segment: raw points (a range of the segment's) or an unread block.
#[derive(Clone, Copy)]
enum Run<'a> {
    Points(usize, usize),
    Block(&'a LazyBlock),
}

/// One segment of a column: its raw points and unread blocks (disjoint), as runs in
/// time order.
struct Segment<'a> {
    times: &'a [i64],
    values: &'a [Value],
    runs: Vec<Run<'a>>,
}

impl<'a> Segment<'a> {
    fn new(times: &'a [i64], values: &'a [Value], blocks: &'a [LazyBlock]) -> Segment<'a> {
        let mut runs = Vec::with_capacity(2 * blocks.len() + 1);
        let mut at = 0;
        for b in blocks {
            let to = at + times[at..].partition_point(|&t| t < b.meta.min_ns);
            if to > at {
                runs.push(Run::Points(at, to));
            }
            runs.push(Run::Block(b));
            at = to;
        }
        if at < times.len() {
            runs.push(Run::Points(at, times.len()));
        }
        Segment {
            times,
            values,
            runs,
        }
    }

    fn first_time(&self) -> i64 {
        match self.runs[0] {
            Run::Points(a, _) => self.times[a],
            Run::Block(b) => b.meta.min_ns,
        }
    }

    fn count(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| match r {
                Run::Points(a, b) => (b - a) as u64,
                Run::Block(b) => b.count(),
            })
            .sum()
    }

    /// Every value of the segment (its blocks read), in time order.
    fn expanded(&self) -> (Vec<i64>, Vec<Value>) {
        let (mut times, mut values) = (Vec::new(), Vec::new());
        for run in &self.runs {
            match *run {
                Run::Points(a, b) => {
                    times.extend_from_slice(&self.times[a..b]);
                    values.extend_from_slice(&self.values[a..b]);
                }
                Run::Block(b) => {
                    let (t, v) = b.values();
                    times.extend(t);
                    values.extend(v);
                }
            }
        }
        (times, values)
    }

    /// The segment's partial of `kind`: (time, value).
    fn partial(&self, kind: PartialKind, desc: bool) -> (i64, Value) {
        let blocks = self.runs.iter().any(|r| matches!(r, Run::Block(_)));
        if !blocks {
            return point_partial(kind, self.times, self.values, desc);
        }
        let ty = self.runs.iter().find_map(|r| match r {
            Run::Block(b) => Some(b.field_type),
            Run::Points(..) => None,
        });
        let from_stats = match (kind, ty) {
            (PartialKind::Sum, Some(t @ (FieldType::Integer | FieldType::Unsigned))) => {
                self.int_sum(t)
            }
            (PartialKind::Sum | PartialKind::FloatSum, Some(FieldType::Float)) if !desc => {
                self.float_sum()
            }
            (PartialKind::FloatSum, Some(FieldType::Integer | FieldType::Unsigned)) => {
                self.exact_float_sum()
            }
            (PartialKind::Count, _) => {
                Some((self.first_time(), Value::Integer(self.count() as i64)))
            }
            (PartialKind::Min, _) => self.selector(std::cmp::Ordering::Less),
            (PartialKind::Max, _) => self.selector(std::cmp::Ordering::Greater),
            (PartialKind::First, _) => self.edge(true),
            (PartialKind::Last, _) => self.edge(false),
            _ => None,
        };
        from_stats.unwrap_or_else(|| {
            let (times, values) = self.expanded();
            point_partial(kind, &times, &values, desc)
        })
    }

    /// Sum of an integer (or unsigned, `ty`) field: wrapping, in any order.
    fn int_sum(&self, ty: FieldType) -> Option<(i64, Value)> {
        let (mut int, mut uint) = (0i64, 0u64);
        for run in &self.runs {
            match *run {
                Run::Points(a, b) => {
                    for v in &self.values[a..b] {
                        match v {
                            Value::Integer(x) => int = int.wrapping_add(*x),
                            Value::Unsigned(x) => uint = uint.wrapping_add(*x),
                            _ => return None,
                        }
                    }
                }
                Run::Block(b) => match b.meta.stats {
                    Stats::Integer { sum, .. } => int = int.wrapping_add(sum),
                    Stats::Unsigned { sum, .. } => uint = uint.wrapping_add(sum),
                    _ => return None,
                },
            }
        }
        let value = match ty {
            FieldType::Unsigned => Value::Unsigned(uint),
            _ => Value::Integer(int),
        };
        Some((self.first_time(), value))
    }

    /// Sum of a float field, oldest first from 0.0: the first run's block sum stands
    /// for its values (the same additions); later blocks are read.
    fn float_sum(&self) -> Option<(i64, Value)> {
        let mut sum = 0.0f64;
        for (k, run) in self.runs.iter().enumerate() {
            match *run {
                Run::Points(a, b) => {
                    for v in &self.values[a..b] {
                        let Value::Float(x) = v else { return None };
                        sum += x;
                    }
                }
                Run::Block(b) => match (k, b.meta.stats) {
                    (0, Stats::Float { sum: s, .. }) => sum = s,
                    _ => {
                        for v in b.values().1 {
                            let Value::Float(x) = v else { return None };
                            sum += x;
                        }
                    }
                },
            }
        }
        Some((self.first_time(), Value::Float(sum)))
    }

    /// The float sum of an integer (or unsigned) field when every partial sum is an
    /// integer a float holds exactly (|value| x count <= 2^53): then adding as floats
    /// in any order gives the exact sum.
    fn exact_float_sum(&self) -> Option<(i64, Value)> {
        const EXACT: u128 = 1 << 53;
        let (mut sum, mut bound, mut count) = (0i128, 0u128, 0u128);
        for run in &self.runs {
            match *run {
                Run::Points(a, b) => {
                    for v in &self.values[a..b] {
                        let x = match v {
                            Value::Integer(x) => *x as i128,
                            Value::Unsigned(x) => *x as i128,
                            _ => return None,
                        };
                        sum += x;
                        bound = bound.max(x.unsigned_abs());
                        count += 1;
                    }
                }
                Run::Block(b) => {
                    let (min, max, s) = match b.meta.stats {
                        Stats::Integer { min, max, sum } => (min as i128, max as i128, sum as i128),
                        Stats::Unsigned { min, max, sum } => {
                            (min as i128, max as i128, sum as i128)
                        }
                        _ => return None,
                    };
                    bound = bound.max(min.unsigned_abs()).max(max.unsigned_abs());
                    count += b.count() as u128;
                    // Within the bound checked below, the block's sum did not wrap.
                    sum += s;
                }
            }
        }
        (bound.saturating_mul(count) <= EXACT)
            .then(|| (self.first_time(), Value::Float(sum as f64)))
    }

    /// Min (`want` Less) or max: the earliest point holding the smallest (largest)
    /// value, blocks compared by their statistics and only the winner read.
    fn selector(&self, want: std::cmp::Ordering) -> Option<(i64, Value)> {
        let order = |a: &Value, b: &Value| match (a, b) {
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (a, b) => Val::from(a).cmp_total(&Val::from(b)),
        };
        // (value, point index or the block)
        let mut best: Option<(Value, Result<usize, &LazyBlock>)> = None;
        for run in &self.runs {
            match *run {
                Run::Points(a, b) => {
                    for k in a..b {
                        if best
                            .as_ref()
                            .is_none_or(|(v, _)| order(&self.values[k], v) == want)
                        {
                            best = Some((self.values[k].clone(), Ok(k)));
                        }
                    }
                }
                Run::Block(b) => {
                    let (min, max) = b.min_max()?;
                    let v = if want == std::cmp::Ordering::Less {
                        min
                    } else {
                        max
                    };
                    if best.as_ref().is_none_or(|(x, _)| order(&v, x) == want) {
                        best = Some((v, Err(b)));
                    }
                }
            }
        }
        match best? {
            (v, Ok(k)) => Some((self.times[k], v)),
            (v, Err(b)) => {
                let (times, values) = b.values();
                // The statistic must be the block's own extreme (else read them all).
                let first = values.iter().position(|x| order(x, &v).is_eq())?;
                let beaten = values.iter().any(|x| order(x, &v) == want);
                (!beaten).then(|| (times[first], v))
            }
        }
    }

    /// The first (oldest) or last point: one run read at most.
    fn edge(&self, first: bool) -> Option<(i64, Value)> {
        let run = if first {
            self.runs.first()
        } else {
            self.runs.last()
        };
        match *run? {
            Run::Points(a, b) => {
                let k = if first { a } else { b - 1 };
                Some((self.times[k], self.values[k].clone()))
            }
            Run::Block(b) => {
                let (t, v) = b.values();
                let k = if first { 0 } else { t.len().checked_sub(1)? };
                Some((*t.get(k)?, v.get(k)?.clone()))
            }
        }
    }
}

/// A segment's partial of `kind` from its points (`times`, `values`: in time order,
/// not empty, numeric), added in the order the coordinator would add them.
fn point_partial(kind: PartialKind, times: &[i64], values: &[Value], desc: bool) -> (i64, Value) {
    let order: Vec<usize> = if desc {
        (0..times.len()).rev().collect()
    } else {
        (0..times.len()).collect()
    };
    match kind {
        PartialKind::Count => (times[0], Value::Integer(times.len() as i64)),
        PartialKind::Sum => (
            times[0],
            match &values[0] {
                Value::Integer(_) => {
                    Value::Integer(order.iter().fold(0i64, |s, &k| match values[k] {
                        Value::Integer(x) => s.wrapping_add(x),
                        _ => s,
                    }))
                }
                Value::Unsigned(_) => {
                    Value::Unsigned(order.iter().fold(0u64, |s, &k| match values[k] {
                        Value::Unsigned(x) => s.wrapping_add(x),
                        _ => s,
                    }))
                }
                _ => Value::Float(order.iter().fold(0.0, |s, &k| {
                    s + Val::from(&values[k]).as_f64().unwrap_or(0.0)
                })),
            },
        ),
        PartialKind::FloatSum => (
            times[0],
            Value::Float(order.iter().fold(0.0, |s, &k| {
                s + Val::from(&values[k]).as_f64().unwrap_or(0.0)
            })),
        ),
        // The coordinator's tie-breaks: min/max keep the earliest of equal values;
        // first/last are unique within one series.
        PartialKind::Min | PartialKind::Max => {
            let want = if kind == PartialKind::Min {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            };
            let mut best = 0;
            for k in 1..values.len() {
                // Val::cmp_total's order; floats (the common case) directly.
                let order = match (&values[k], &values[best]) {
                    (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
                    (a, b) => Val::from(a).cmp_total(&Val::from(b)),
                };
                if order == want {
                    best = k;
                }
            }
            (times[best], values[best].clone())
        }
        PartialKind::First => (times[0], values[0].clone()),
        PartialKind::Last => (times[times.len() - 1], values[values.len() - 1].clone()),
    }
}

/// See [`ScanRequest::per_series_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesLimit {
    pub n: usize,
    pub newest: bool,
}

/// The series of one shard that matched a scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardScan {
    pub shard_id: u64,
    /// Start of the shard's group (placement finds the group's other shards from it).
    pub start_ns: i64,
    pub series: Vec<SeriesData>,
}

/// Schema of a database's shards in a time range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaRequest {
    pub database: String,
    /// `None`: every policy.
    pub retention_policy: Option<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Also list every series key (SHOW SERIES); otherwise only counts.
    pub with_series: bool,
    pub shard_ids: Option<Vec<u64>>,
    /// Tag keys without their values (what planning a SELECT needs): the values of a
    /// high-cardinality tag are not copied for every query.
    #[serde(default)]
    pub keys_only: bool,
}

/// One measurement as one shard knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasurementSchema {
    /// Field key -> type name (`float`, `integer`, ...).
    pub fields: BTreeMap<String, String>,
    /// Tag key -> values (unescaped).
    pub tags: BTreeMap<String, BTreeSet<String>>,
    /// Series keys (escaped, canonical) when asked for.
    pub series: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardSchema {
    pub shard_id: u64,
    pub retention_policy: String,
    pub start_ns: i64,
    /// Unescaped measurement name -> schema.
    pub measurements: BTreeMap<String, MeasurementSchema>,
}

/// Escapes a measurement name as series keys store it.
pub fn escape_measurement(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    lineproto::escape_into(name.as_bytes(), b", ", &mut out);
    out
}

fn escape_field(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    lineproto::escape_into(name.as_bytes(), b",= ", &mut out);
    out
}

fn unescaped(raw: &[u8]) -> String {
    String::from_utf8_lossy(&lineproto::unescape(raw)).into_owned()
}

pub fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::Float => "float",
        FieldType::Integer => "integer",
        FieldType::Unsigned => "unsigned",
        FieldType::Boolean => "boolean",
        FieldType::String => "string",
    }
}

/// Splits a canonical series key into its measurement and (key, value) tags, unescaped.
pub fn parse_series_key(key: &str) -> (String, Vec<(String, String)>) {
    let b = key.as_bytes();
    let mut parts: Vec<&[u8]> = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b',' => {
                parts.push(&b[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    parts.push(&b[start..b.len().min(i)]);
    let measurement = unescaped(parts[0]);
    let tags = parts[1..]
        .iter()
        .map(|p| {
            let mut j = 0;
            while j < p.len() && p[j] != b'=' {
                j += if p[j] == b'\\' { 2 } else { 1 };
            }
            let j = j.min(p.len());
            (unescaped(&p[..j]), unescaped(p.get(j + 1..).unwrap_or(&[])))
        })
        .collect();
    (measurement, tags)
}

/// The condition of a `tag_condition` text (a WHERE clause of tags only).
/// The `tag = 'value'` conjuncts of a tag condition that the inverted index can answer:
/// top-level ANDs only, non-empty values, and keys and values without a character line
/// protocol escapes (so the stored bytes are the plain text).
fn required_tags(cond: &crate::influxql::ast::Expr) -> Vec<(Vec<u8>, Vec<u8>)> {
    use crate::influxql::ast::{Expr, Op, VarKind};
    let plain = |s: &str| {
        !s.is_empty()
            && !s
                .bytes()
                .any(|b| matches!(b, b'\\' | b',' | b'=' | b' ' | b'"'))
    };
    let mut out = Vec::new();
    let mut stack = vec![cond];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Paren(inner) => stack.push(inner),
            Expr::Binary {
                op: Op::And,
                lhs,
                rhs,
            } => {
                stack.push(lhs);
                stack.push(rhs);
            }
            Expr::Binary {
                op: Op::Eq,
                lhs,
                rhs,
            } => {
                let pair = match (lhs.unparen(), rhs.unparen()) {
                    (Expr::VarRef { name, kind }, Expr::Str(v))
                    | (Expr::Str(v), Expr::VarRef { name, kind })
                        if matches!(kind, None | Some(VarKind::Tag)) =>
                    {
                        Some((name, v))
                    }
                    _ => None,
                };
                if let Some((k, v)) = pair {
                    if plain(k) && plain(v) {
                        out.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

pub fn parse_tag_condition(text: &str) -> Option<crate::influxql::ast::Expr> {
    match crate::influxql::parser::parse_query(&format!("SELECT x FROM m WHERE {text}"))
        .ok()?
        .into_iter()
        .next()?
    {
        crate::influxql::parser::Statement::Select(s) => s.condition,
        _ => None,
    }
}

/// Runs a scan over this core's shards; stops early when the request's deadline passes
/// or it read more than `max_points` values. It runs in slices of
/// [`SCAN_SLICE`](crate::tsdb::read::cancel::SCAN_SLICE) and lets the core's other work run
/// between them (the store is borrowed only within a slice): writes, cluster frames and
/// the cancel that may end this very scan are not held up by a large one.
pub async fn scan_local(
    store: &RefCell<Store>,
    r: &ScanRequest,
) -> Result<Vec<ShardScan>, ScanStop> {
    let mut budget = ScanBudget::new(&r.deadline, r.max_points);
    if !budget.check() {
        return Err(ScanStop::Cancelled);
    }
    let slow_scan = injected_scan_delay(r);
    let measurement = escape_measurement(&r.measurement);
    let condition = r.tag_condition.as_deref().and_then(parse_tag_condition);
    if let Some(c) = &condition {
        // Checked where the statement was parsed; a regex that fails here matches nothing.
        let _ = crate::influxql::regex::prepare(c.regexes()).await;
    }
    let no_slots: Vec<String> = Vec::new();
    let tag_keys: BTreeSet<String> = BTreeSet::new();
    let ev = crate::influxql::eval::Evaluator::for_tags(&no_slots, &tag_keys);
    let keep = |key: &[u8]| match &condition {
        None => true,
        Some(c) => {
            let (_, tags) = parse_series_key(&String::from_utf8_lossy(key));
            let tags: BTreeMap<String, String> = tags.into_iter().collect();
            ev.matches(c, &tags)
        }
    };
    let fields: Option<Vec<Vec<u8>>> = r
        .fields
        .as_ref()
        .map(|f| f.iter().map(|n| escape_field(n)).collect());
    let limit = r.per_series_limit.map(|l| (l.n, l.newest));
    let required = condition.as_ref().map(required_tags).unwrap_or_default();
    // The partitions to read, and the series of each, as they are now.
    let targets: Vec<(PartitionKey, i64, i64, Vec<u32>)> = store
        .borrow()
        .shards()
        .filter(|shard| {
            let m = &shard.meta;
            m.database == r.database
                && m.retention_policy == r.retention_policy
                && m.end_ns > r.start_ns
                && m.start_ns <= r.end_ns
                && r.shard_ids.as_ref().is_none_or(|ids| ids.contains(&m.id))
        })
        .map(|shard| {
            let m = &shard.meta;
            let ids = shard.index().scan_candidates(&measurement, &required);
            ((m.id, shard.partition.index), m.start_ns, m.end_ns, ids)
        })
        .collect();
    let mut targets = targets;
    targets.sort_by_key(|t| t.0);
    let mut out = Vec::new();
    for (key, start_ns, end_ns, ids) in targets {
        let shard_id = key.0;
        let mut series = Vec::new();
        let mut done = 0;
        while done < ids.len() {
            if done > 0 {
                glommio::timer::sleep(crate::tsdb::read::cancel::SCAN_PAUSE).await;
            }
            budget.start_slice();
            let mut store = store.borrow_mut();
            // A shard dropped while the scan paused has nothing more to give.
            let Some(shard) = store.shard_mut(key) else {
                break;
            };
            let mut partials = |column: crate::tsdb::shard::ColumnData, unread| {
                let spec = r.partial.as_ref().expect("only with a partial spec");
                let kinds = spec
                    .fields
                    .iter()
                    .find(|(f, _)| *f == column.field)
                    .map(|(_, k)| k.as_slice())
                    .unwrap_or(&[]);
                partial_columns(column, unread, kinds, spec, (start_ns, end_ns))
            };
            done += shard.scan_series(
                &ids[done..],
                fields.as_deref(),
                (r.start_ns, r.end_ns),
                limit,
                keep,
                &mut series,
                |values| {
                    if let Some(delay) = slow_scan {
                        std::thread::sleep(delay);
                    }
                    budget.spend(values)
                },
                r.partial.is_some().then_some(&mut partials as _),
            );
            if let Some(stop) = budget.stopped() {
                return Err(stop.clone());
            }
        }
        out.push(ShardScan {
            shard_id,
            start_ns,
            series,
        });
    }
    Ok(merge_partitions(out))
}

/// One [`ShardScan`] per shard, in shard id order: the scans of a shard's partitions
/// (from one core or several) merged, their series sorted by key (a series lives in
/// one partition, so no key repeats). Callers see shards, never partitions, and a
/// rescan gives the same order (MapShard pages count series by offset).
pub fn merge_partitions(mut scans: Vec<ShardScan>) -> Vec<ShardScan> {
    scans.sort_by_key(|s| s.shard_id);
    let mut out: Vec<ShardScan> = Vec::with_capacity(scans.len());
    let mut merged_last = false;
    for scan in scans {
        match out.last_mut() {
            Some(last) if last.shard_id == scan.shard_id => {
                last.series.extend(scan.series);
                merged_last = true;
            }
            _ => {
                if merged_last {
                    sort_series(out.last_mut().expect("merged"));
                }
                merged_last = false;
                out.push(scan);
            }
        }
    }
    if merged_last {
        sort_series(out.last_mut().expect("merged"));
    }
    out
}

fn sort_series(scan: &mut ShardScan) {
    scan.series.sort_by(|a, b| a.key.cmp(&b.key));
}

/// One [`ShardSchema`] per shard: the schemas of its partitions united (series in no
/// particular order: every reader of a schema treats them as a set).
pub fn merge_partition_schemas(mut schemas: Vec<ShardSchema>) -> Vec<ShardSchema> {
    schemas.sort_by_key(|s| s.shard_id);
    let mut out: Vec<ShardSchema> = Vec::with_capacity(schemas.len());
    for schema in schemas {
        match out.last_mut() {
            Some(last) if last.shard_id == schema.shard_id => {
                for (name, m) in schema.measurements {
                    let into = last.measurements.entry(name).or_default();
                    for (field, t) in m.fields {
                        into.fields.entry(field).or_insert(t);
                    }
                    for (key, values) in m.tags {
                        into.tags.entry(key).or_default().extend(values);
                    }
                    into.series.extend(m.series);
                }
            }
            _ => out.push(schema),
        }
    }
    out
}

/// Fault seam for tests of remote cancellation (STYLE: seams for testing faults): with
/// `SHARDCORE_FAULT_SLOW_SCAN=measurement,ms` in the environment, a scan of that
/// measurement that a peer asked for with a time limit (`budget_ms`) spends `ms` per
/// series, blocking its core as a CPU-bound scan does. Read once; unset, it costs one
/// load of a static per scan.
fn injected_scan_delay(r: &ScanRequest) -> Option<std::time::Duration> {
    use std::sync::OnceLock;
    static FAULT: OnceLock<Option<(String, std::time::Duration)>> = OnceLock::new();
    let (measurement, delay) = FAULT
        .get_or_init(|| {
            let spec = std::env::var("SHARDCORE_FAULT_SLOW_SCAN").ok()?;
            let (m, ms) = spec.split_once(',')?;
            let delay = std::time::Duration::from_millis(ms.parse().ok()?);
            tracing::warn!(
                spec,
                "slow-scan fault injection is on (SHARDCORE_FAULT_SLOW_SCAN)"
            );
            Some((m.to_string(), delay))
        })
        .as_ref()?;
    (r.budget_ms.is_some() && *measurement == r.measurement).then_some(*delay)
}

/// The schema of this core's shards.
pub fn schema_local(store: &Store, r: &SchemaRequest) -> Vec<ShardSchema> {
    let mut out = Vec::new();
    for shard in store.shards() {
        let m = &shard.meta;
        if m.database != r.database
            || r.retention_policy
                .as_ref()
                .is_some_and(|rp| *rp != m.retention_policy)
            || m.end_ns <= r.start_ns
            || m.start_ns > r.end_ns
            || r.shard_ids.as_ref().is_some_and(|ids| !ids.contains(&m.id))
        {
            continue;
        }
        let mut measurements = BTreeMap::new();
        for (name, index) in shard.index().measurements() {
            if index.series.is_empty() {
                continue;
            }
            let mut schema = MeasurementSchema::default();
            for (field, t) in &index.field_types {
                schema
                    .fields
                    .insert(unescaped(field), type_name(*t).to_string());
            }
            for (key, values) in &index.tags {
                let set = schema.tags.entry(unescaped(key)).or_default();
                if r.keys_only {
                    continue;
                }
                for (v, ids) in values {
                    if !ids.is_empty() {
                        set.insert(unescaped(v));
                    }
                }
            }
            if r.with_series {
                schema.series = index
                    .series
                    .iter()
                    .map(|&id| String::from_utf8_lossy(shard.index().series_key(id)).into_owned())
                    .collect();
            }
            measurements.insert(unescaped(name), schema);
        }
        out.push(ShardSchema {
            shard_id: m.id,
            retention_policy: m.retention_policy.clone(),
            start_ns: m.start_ns,
            measurements,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_split_with_escapes() {
        let (m, tags) = parse_series_key(r"my\ cpu,host=a\,b,re\=gion=x\ y");
        assert_eq!(m, "my cpu");
        assert_eq!(
            tags,
            vec![
                ("host".to_string(), "a,b".to_string()),
                ("re=gion".to_string(), "x y".to_string())
            ]
        );
        assert_eq!(parse_series_key("cpu").1, vec![]);
    }

    /// Points of one float, integer or unsigned field: strictly increasing times.
    fn arb_points() -> impl proptest::strategy::Strategy<Value = (u8, Vec<(i64, i64)>)> {
        use proptest::prelude::*;
        (
            0u8..3,
            proptest::collection::vec((1i64..40, -6i64..6), 1..300),
        )
            .prop_map(|(ty, gaps)| {
                let mut t = -500;
                let points = gaps
                    .into_iter()
                    .map(|(gap, v)| {
                        t += gap;
                        (t, v)
                    })
                    .collect();
                (ty, points)
            })
    }

    /// The stored value of a generated one: floats with signed zeros, repeats and
    /// sums that round; integers with repeats and sums that wrap.
    fn value_of(ty: u8, v: i64) -> Value {
        match ty {
            0 => Value::Float(match v {
                0 => -0.0,
                1 => 0.0,
                2 => 0.1,
                3 => 1e16,
                _ => v as f64 / 3.0,
            }),
            1 => Value::Integer(match v {
                5 => i64::MAX - 3,
                -6 => i64::MIN + 2,
                4 => 1 << 52,
                _ => v,
            }),
            _ => Value::Unsigned(match v {
                5 => u64::MAX - 1,
                4 => 1 << 53,
                _ => v.unsigned_abs(),
            }),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Partials answered partly from block statistics equal partials over every
        /// value, bit for bit (float sums, signed zeros, wrapping sums, ties of min and
        /// max, DESC, segments cut by windows, groups and the shard's edges).
        #[test]
        fn partials_from_block_statistics_equal_partials_from_the_values(
            (ty, points) in arb_points(),
            block_values in 1usize..50,
            raw_every in 0usize..4,
            every in proptest::prop_oneof![proptest::strategy::Just(0i64), 1i64..400],
            offset in 0i64..50,
            group_ns in 50i64..3000,
            desc: bool,
            shard_cut in 0i64..3,
        ) {
            use crate::tsdb::engine::blocks::ReadCounts;
            use crate::tsdb::engine::file::{Column, DataFile, FileBuilder};
            use crate::tsdb::shard::ColumnData;
            use std::rc::Rc;
            let values: Vec<Value> = points.iter().map(|&(_, v)| value_of(ty, v)).collect();
            let times: Vec<i64> = points.iter().map(|&(t, _)| t).collect();
            let column = match ty {
                0 => Column::Float(values.iter().map(|v| match v { Value::Float(x) => *x, _ => 0.0 }).collect()),
                1 => Column::Integer(values.iter().map(|v| match v { Value::Integer(x) => *x, _ => 0 }).collect()),
                _ => Column::Unsigned(values.iter().map(|v| match v { Value::Unsigned(x) => *x, _ => 0 }).collect()),
            };
            let mut builder = FileBuilder::with_block_values(1, block_values);
            builder.add_series(b"m", [(&b"x"[..], &times[..], &column)]);
            let (image, series, _) = builder.finish(0);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.scd");
            std::fs::write(&path, image).unwrap();
            let file = Rc::new(DataFile::open(&path).unwrap());
            let counts = Rc::new(ReadCounts::default());
            // Every `raw_every`-th block comes as values (as if another source
            // overlapped it), the others unread.
            let (mut raw_t, mut raw_v, mut unread) = (Vec::new(), Vec::new(), Vec::new());
            for (k, meta) in series[0].fields[0].blocks.iter().enumerate() {
                let block = LazyBlock::new(file.clone(), meta.clone(), column.field_type(), None, counts.clone());
                if raw_every > 0 && k % raw_every == 0 {
                    let (t, v) = block.values();
                    raw_t.extend(t);
                    raw_v.extend(v);
                } else {
                    unread.push(block);
                }
            }
            // The shard: the middle of the points, or all of them.
            let (lo, hi) = (times[0], times[times.len() - 1] + 1);
            let shard = match shard_cut {
                0 => (lo, hi),
                1 => (lo + (hi - lo) / 3, hi),
                _ => (lo, hi - (hi - lo) / 3),
            };
            let kinds = [PartialKind::Count, PartialKind::Sum, PartialKind::FloatSum, PartialKind::Min, PartialKind::Max, PartialKind::First, PartialKind::Last];
            let spec = PartialSpec {
                every,
                offset: if every > 0 { offset % every } else { 0 },
                group_ns,
                desc,
                first_shard_start: lo - 1000,
                last_shard_start: hi + 1000,
                fields: vec![("x".into(), kinds.to_vec())],
            };
            let all = ColumnData { field: "x".into(), times: times.clone(), values: values.clone() };
            let want = partial_columns(all, Vec::new(), &kinds, &spec, shard);
            let part = ColumnData { field: "x".into(), times: raw_t, values: raw_v };
            let got = partial_columns(part, unread, &kinds, &spec, shard);
            proptest::prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
        }
    }

    #[test]
    fn partials_cover_segments_that_start_here_and_send_the_rest_raw() {
        use crate::tsdb::shard::{ColumnData, Value};
        // Windows of 10 ns, one InfluxDB group of 100 ns; this shard holds [5, 25).
        let spec = PartialSpec {
            every: 10,
            offset: 0,
            group_ns: 100,
            desc: false,
            // Earlier and later shards exist: only segments that begin (end, DESC) here
            // can be partials.
            first_shard_start: -100,
            last_shard_start: 100,
            fields: vec![("x".into(), vec![PartialKind::Sum, PartialKind::Max])],
        };
        let column = || ColumnData {
            field: "x".into(),
            times: vec![6, 7, 11, 12, 13, 21, 22],
            values: [0.5, 0.25, 0.1, 0.2, 0.3, 7.0, 1.0]
                .into_iter()
                .map(Value::Float)
                .collect(),
        };
        let kinds = [PartialKind::Sum, PartialKind::Max];
        let by_name =
            |out: &[ColumnData], n: &str| out.iter().find(|c| c.field == n).expect(n).clone();
        let out = partial_columns(column(), Vec::new(), &kinds, &spec, (5, 25));
        let sum = by_name(&out, &partial_column("x", PartialKind::Sum));
        // [0,10) began in the shard before this one: raw, added after that shard's
        // partial. [10,20) and [20,30) begin here: partials (the rest of [20,30), in the
        // next shard, comes raw and is added after).
        assert_eq!(sum.times, vec![6, 7, 11, 21]);
        assert_eq!(
            sum.values,
            vec![
                Value::Float(0.5),
                Value::Float(0.25),
                Value::Float(0.1 + 0.2 + 0.3),
                Value::Float(8.0)
            ]
        );
        let max = by_name(&out, &partial_column("x", PartialKind::Max));
        assert_eq!(max.times, vec![6, 7, 13, 21]);
        let weights = by_name(&out, &weight_column("x"));
        assert_eq!(weights.times, vec![11, 21]);
        assert_eq!(weights.values, vec![Value::Integer(3), Value::Integer(2)]);

        // DESC adds newest first: a partial stands for a segment's newest part, so
        // [20,30), which ends past this shard, goes raw, and [0,10) becomes a partial.
        let desc = PartialSpec { desc: true, ..spec };
        let out = partial_columns(column(), Vec::new(), &[PartialKind::Sum], &desc, (5, 25));
        let sum = by_name(&out, &partial_column("x", PartialKind::Sum));
        assert_eq!(sum.times, vec![6, 11, 21, 22]);
        assert_eq!(sum.values[1], Value::Float(0.3 + 0.2 + 0.1));
    }

    #[test]
    fn only_plain_top_level_tag_equalities_seed_the_index() {
        let cond = parse_tag_condition(
            "host = 'a' AND ('x' = dc) AND (z = 'p' OR z = 'q') AND r =~ /re/ AND e = '' AND s = 'a b'",
        )
        .unwrap();
        let mut got = required_tags(&cond);
        got.sort();
        assert_eq!(
            got,
            vec![
                (b"dc".to_vec(), b"x".to_vec()),
                (b"host".to_vec(), b"a".to_vec())
            ]
        );
    }
}
