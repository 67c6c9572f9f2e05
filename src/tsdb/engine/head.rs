//! The head: the in-memory columns of a shard's series, what the WAL has logged and
//! no file holds yet.
//!
//! Layout: a series holds one column per field, a typed value vector each, and one
//! timestamp vector shared by the columns written together ([`Series`]; a sparse
//! field keeps its own), all chunked ([`super::chunked`]): about 8 bytes per numeric
//! value plus 8 per point, plus at most one partly filled chunk per vector. Columns
//! stay append-only; an out-of-order or repeated timestamp clears `sorted`, and the
//! next read (or the tidy task) sorts stably and keeps the last value of each
//! timestamp (last write wins).
//!
//! **Sealing:** once a column holds [`SEAL_AT`] open values, it is sorted (if writes
//! left it out of order) and its oldest [`CHUNK_LEN`] are sealed into a compressed block image (the data file block
//! format, codecs chosen by trial: ~1-2 bytes per value instead of 16), so a head
//! holds several times more values within `cache-snapshot-bytes`; the newest stay
//! uncompressed for appends and for reads of recent data. Reads decode the sealed
//! chunks they overlap and merge them with the open part.
//!
//! **Invariant:** every sealed chunk is sorted with one value per time, and holds
//! values written before every value of a later chunk and of the open part: where
//! times meet (writes out of order across a seal), the later chunk or the open part
//! wins, as the later write.

use super::chunked::{ChunkedVec, CHUNK_LEN};
use super::file::{self, Column as FileColumn};
use super::merge::{apply_limit, merge_sources, Source};
use super::{Block, Cursor, ReadRange, SeriesId, Value};
use crate::lineproto::{self, FieldType, FieldValue, ParsedBody, PointRef};

/// Values of one column.
#[derive(Debug)]
enum Values {
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

    fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Integer(v) => v.len(),
            Values::Unsigned(v) => v.len(),
            Values::Boolean(v) => v.len(),
            Values::String(v) => v.len(),
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

    /// The values at `keep` (positions), in that order.
    fn pick(&self, keep: &[usize]) -> Values {
        match self {
            Values::Float(v) => Values::Float(v.pick(keep)),
            Values::Integer(v) => Values::Integer(v.pick(keep)),
            Values::Unsigned(v) => Values::Unsigned(v.pick(keep)),
            Values::Boolean(v) => Values::Boolean(v.pick(keep)),
            Values::String(v) => Values::String(v.pick(keep)),
        }
    }
}

impl Values {
    /// Takes the first (full) chunk out, as a file column, when a later one follows.
    fn take_first_chunk(&mut self) -> Option<FileColumn> {
        Some(match self {
            Values::Float(v) => FileColumn::Float(v.take_first_chunk()?),
            Values::Integer(v) => FileColumn::Integer(v.take_first_chunk()?),
            Values::Unsigned(v) => FileColumn::Unsigned(v.take_first_chunk()?),
            Values::Boolean(v) => FileColumn::Boolean(v.take_first_chunk()?),
            Values::String(v) => FileColumn::String(
                v.take_first_chunk()?
                    .into_iter()
                    .map(|s| s.into_vec())
                    .collect(),
            ),
        })
    }
}

/// Open values of a sorted column at which its oldest [`CHUNK_LEN`] are sealed.
pub const SEAL_AT: usize = 2 * CHUNK_LEN;

/// Values of a column sealed into a block image ([`file::encode_block`]).
#[derive(Debug)]
struct Sealed {
    min_ns: i64,
    max_ns: i64,
    count: u32,
    image: Box<[u8]>,
}

impl Sealed {
    fn new(times: &[i64], values: &FileColumn) -> Sealed {
        let mut image = Vec::new();
        file::encode_block(times, values, 0, times.len(), &mut image);
        Sealed {
            min_ns: times[0],
            max_ns: times[times.len() - 1],
            count: times.len() as u32,
            image: image.into_boxed_slice(),
        }
    }

    fn overlaps(&self, start_ns: i64, end_ns: i64) -> bool {
        self.max_ns >= start_ns && self.min_ns <= end_ns
    }

    /// The times and values (an image the head made itself always decodes; were it
    /// not to, its values would be left out and logged rather than panic).
    fn decode(&self, t: FieldType) -> Option<(Vec<i64>, FileColumn)> {
        match file::decode_block(&self.image, self.count as usize, t) {
            Ok(x) => Some(x),
            Err(e) => {
                tracing::error!(error = %e, "a sealed head chunk does not decode; its values are left out");
                None
            }
        }
    }
}

/// One field of one series: sealed chunks, oldest first, then the open part: its
/// values and their timestamps, its own or its series' shared ones.
#[derive(Debug)]
struct Column {
    /// Field key, escaped as in line protocol.
    name: Box<[u8]>,
    sealed: Vec<Sealed>,
    /// `None`: the open part's timestamps are the series' shared ones.
    own: Option<ChunkedVec<i64>>,
    values: Values,
    /// With its own timestamps: the open part is sorted with one value per time.
    sorted: bool,
}

impl Column {
    /// Appends a value (its timestamp is pushed by the caller); returns the heap bytes
    /// that took (see [`Head::heap_bytes`]).
    fn push_value(&mut self, value: &FieldValue, body: &ParsedBody) -> usize {
        match (&mut self.values, value) {
            (Values::Float(v), FieldValue::Float(x)) => v.push(*x),
            (Values::Integer(v), FieldValue::Integer(x)) => v.push(*x),
            (Values::Unsigned(v), FieldValue::Unsigned(x)) => v.push(*x),
            (Values::Boolean(v), FieldValue::Boolean(x)) => v.push(*x),
            (Values::String(v), FieldValue::String { span, escaped }) => {
                let s = body.string_value(span, *escaped).into_boxed_slice();
                s.len() + v.push(s)
            }
            // Field types are validated before apply, so this is never reached; a
            // zero of the column's type keeps timestamps and values in step rather
            // than panic on the write path.
            (values, _) => {
                debug_assert!(false, "field type mismatch in apply");
                match values {
                    Values::Float(v) => v.push(0.0),
                    Values::Integer(v) => v.push(0),
                    Values::Unsigned(v) => v.push(0),
                    Values::Boolean(v) => v.push(false),
                    Values::String(v) => v.push(Box::default()),
                }
            }
        }
    }

    /// Appends a value with its own timestamp.
    fn push_own(&mut self, ts: i64, value: &FieldValue, body: &ParsedBody) -> usize {
        let own = self.own.as_mut().expect("a column with its own timestamps");
        if own.last().is_some_and(|&last| ts <= last) {
            self.sorted = false;
        }
        own.push(ts) + self.push_value(value, body)
    }

    /// The open part's timestamps: its own, or `shared`.
    fn stamps<'a>(&'a self, shared: &'a ChunkedVec<i64>) -> &'a ChunkedVec<i64> {
        self.own.as_ref().unwrap_or(shared)
    }

    fn open_len(&self) -> usize {
        self.values.len()
    }

    fn heap_bytes(&self) -> usize {
        self.own.as_ref().map_or(0, ChunkedVec::heap_bytes)
            + self.values.heap_bytes()
            + self.name.len()
            + self.sealed.capacity() * std::mem::size_of::<Sealed>()
            + self.sealed.iter().map(|s| s.image.len()).sum::<usize>()
    }

    fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.open_len() == 0
    }

    /// Seals the oldest [`CHUNK_LEN`] open values while its own timestamps are sorted
    /// and it holds [`SEAL_AT`].
    fn seal_own(&mut self) {
        while self.sorted && self.values.len() >= SEAL_AT {
            let Some(own) = self.own.as_mut() else {
                return;
            };
            // Timestamps and values are pushed in step: their chunks are the same.
            let (Some(times), Some(values)) =
                (own.take_first_chunk(), self.values.take_first_chunk())
            else {
                return;
            };
            self.sealed.push(Sealed::new(&times, &values));
        }
    }

    /// Every value of the (sorted) column in `[start_ns, end_ns]`: sealed chunks
    /// merged with the open part.
    fn merged(&self, shared: &ChunkedVec<i64>, start_ns: i64, end_ns: i64) -> Source {
        let stamps = self.stamps(shared);
        let ty = self.values.field_type();
        let mut sources: Vec<Source> = self
            .sealed
            .iter()
            .filter(|s| s.overlaps(start_ns, end_ns))
            .filter_map(|s| s.decode(ty))
            .map(|(t, c)| in_range(t, c.into_values(), start_ns, end_ns))
            .collect();
        let from = stamps.partition_point(|&t| t < start_ns);
        let to = stamps.partition_point(|&t| t <= end_ns);
        sources.push((
            stamps.range(from, to).copied().collect(),
            self.values_in(from, to),
        ));
        merge_sources(sources)
    }

    /// Removes the sealed values in `[start_ns, end_ns]`; returns how many went.
    fn delete_sealed(&mut self, start_ns: i64, end_ns: i64) -> u64 {
        let mut removed = 0u64;
        let ty = self.values.field_type();
        let mut sealed = Vec::with_capacity(self.sealed.len());
        for s in std::mem::take(&mut self.sealed) {
            if !s.overlaps(start_ns, end_ns) {
                sealed.push(s);
                continue;
            }
            let Some((times, values)) = s.decode(ty) else {
                continue;
            };
            let keep: Vec<usize> = (0..times.len())
                .filter(|&i| times[i] < start_ns || times[i] > end_ns)
                .collect();
            removed += (times.len() - keep.len()) as u64;
            if !keep.is_empty() {
                let kept: Vec<i64> = keep.iter().map(|&i| times[i]).collect();
                sealed.push(Sealed::new(&kept, &values.pick(&keep)));
            }
        }
        self.sealed = sealed;
        removed
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

    /// This (sorted) column's block for `range`, if it has values there.
    fn block<'a>(
        &'a self,
        shared: &'a ChunkedVec<i64>,
        range: &ReadRange<'_>,
    ) -> Option<Block<'a>> {
        let stamps = self.stamps(shared);
        let mut from = stamps.partition_point(|&t| t < range.start_ns);
        let mut to = stamps.partition_point(|&t| t <= range.end_ns);
        let sealed: Vec<&Sealed> = self
            .sealed
            .iter()
            .filter(|s| s.overlaps(range.start_ns, range.end_ns))
            .collect();
        // "The newest n" that the open part holds, newer than every sealed value.
        let open_suffices = match range.limit {
            Some((n, true)) => {
                n > 0 && to - from >= n && sealed.iter().all(|s| s.max_ns < *stamps.get(to - n))
            }
            _ => false,
        };
        if !sealed.is_empty() && !open_suffices {
            let (mut times, mut values) = self.merged(shared, range.start_ns, range.end_ns);
            apply_limit(&mut times, &mut values, range.limit);
            return (!times.is_empty()).then(|| Block {
                field: std::borrow::Cow::Borrowed(&self.name),
                times,
                values,
                lazy: Vec::new(),
            });
        }
        match range.limit {
            Some((n, true)) => from = from.max(to.saturating_sub(n)),
            Some((n, false)) => to = to.min(from.saturating_add(n)),
            None => {}
        }
        (from < to).then(|| Block {
            field: std::borrow::Cow::Borrowed(&self.name),
            times: stamps.range(from, to).copied().collect(),
            values: self.values_in(from, to),
            lazy: Vec::new(),
        })
    }
}

/// The write positions of `stamps` to keep, in time order: the last written value of
/// each timestamp. A stable sort of (time, position): timestamps that went out of
/// order are mostly a few sorted runs (batches applied out of turn), which it merges
/// in about linear time.
fn sort_plan(stamps: &ChunkedVec<i64>) -> Vec<usize> {
    let mut order: Vec<(i64, usize)> = stamps
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

/// The part of sorted `times` and `values` in `[start_ns, end_ns]`.
fn in_range(mut times: Vec<i64>, mut values: Vec<Value>, start_ns: i64, end_ns: i64) -> Source {
    let to = times.partition_point(|&t| t <= end_ns);
    times.truncate(to);
    values.truncate(to);
    let from = times.partition_point(|&t| t < start_ns);
    times.drain(..from);
    values.drain(..from);
    (times, values)
}

/// The column of `key` among `columns`, trying position `hint` first: points of a
/// series usually list their fields in the same order, so the first comparison
/// usually hits.
#[inline]
fn column_index(columns: &[Column], key: &[u8], hint: usize) -> Option<usize> {
    if let Some(c) = columns.get(hint) {
        if lineproto::short_eq(&c.name, key) {
            return Some(hint);
        }
    }
    columns
        .iter()
        .position(|c| lineproto::short_eq(&c.name, key))
}

/// A series' columns, and the timestamps its *shared* columns (`own` is `None`) hold
/// in common: the fields written together, in every point since the shared
/// timestamps were last empty, store one timestamp column between them.
///
/// **Invariant:** every shared column's open part has exactly `stamps.len()` values,
/// position for position; with no shared column, `stamps` is empty. A shared column
/// a point leaves out, or names twice, first takes a copy of the timestamps as its
/// own (sparse fields pay for their own timestamps, as before).
#[derive(Debug)]
struct Series {
    stamps: ChunkedVec<i64>,
    /// The shared timestamps are sorted with one value per time.
    sorted: bool,
    columns: Vec<Column>,
}

impl Default for Series {
    fn default() -> Series {
        Series {
            stamps: ChunkedVec::new(),
            sorted: true,
            columns: Vec::new(),
        }
    }
}

impl Series {
    fn bytes(&self) -> usize {
        self.stamps.heap_bytes()
            + self.columns.iter().map(Column::heap_bytes).sum::<usize>()
            + self.columns.capacity() * std::mem::size_of::<Column>()
    }

    fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Gives column `i` its own copy of the shared timestamps.
    fn detach(&mut self, i: usize) {
        let c = &mut self.columns[i];
        if c.own.is_none() {
            c.own = Some(self.stamps.clone());
            c.sorted = self.sorted;
        }
        if self.columns.iter().all(|c| c.own.is_some()) {
            self.stamps = ChunkedVec::new();
            self.sorted = true;
        }
    }

    /// Sorts what is out of order (the shared part, and the columns `wanted` picks
    /// with their own timestamps), keeping the last written value of each time;
    /// returns the values it sorted. Columns with their own timestamps that equal
    /// each other's share one sort plan.
    fn normalise(&mut self, wanted: impl Fn(&Column) -> bool) -> usize {
        let mut values = 0;
        if !self.sorted {
            let keep = sort_plan(&self.stamps);
            for c in self.columns.iter_mut().filter(|c| c.own.is_none()) {
                values += c.open_len();
                c.values = c.values.pick(&keep);
            }
            self.stamps = self.stamps.pick(&keep);
            self.sorted = true;
        }
        let mut plan: Option<(Vec<i64>, Vec<usize>)> = None;
        for c in self.columns.iter_mut() {
            let Some(own) = &c.own else { continue };
            if c.sorted || !wanted(c) {
                continue;
            }
            values += own.len();
            let same = plan.as_ref().is_some_and(|(stamps, _)| {
                stamps.len() == own.len() && stamps.iter().eq(own.iter())
            });
            if !same {
                plan = Some((own.iter().copied().collect(), sort_plan(own)));
            }
            let (_, keep) = plan.as_ref().expect("set above");
            c.own = Some(own.pick(keep));
            c.values = c.values.pick(keep);
            c.sorted = true;
        }
        values
    }

    /// Seals what is due: the shared part's oldest [`CHUNK_LEN`] (every shared column
    /// at once) and each own-timestamp column's, sorting them first.
    fn seal_due(&mut self) {
        self.normalise(|c| c.open_len() >= SEAL_AT);
        while self.sorted && self.stamps.len() >= SEAL_AT {
            let Some(times) = self.stamps.take_first_chunk() else {
                break;
            };
            for c in self.columns.iter_mut().filter(|c| c.own.is_none()) {
                if let Some(values) = c.values.take_first_chunk() {
                    c.sealed.push(Sealed::new(&times, &values));
                }
            }
        }
        for c in &mut self.columns {
            c.seal_own();
        }
    }

    /// Removes the values in `[start_ns, end_ns]`; columns left empty go. Returns
    /// the values removed.
    fn delete(&mut self, start_ns: i64, end_ns: i64) -> u64 {
        self.normalise(|_| true);
        let mut removed = 0u64;
        let outside = |stamps: &ChunkedVec<i64>| -> Vec<usize> {
            (0..stamps.len())
                .filter(|&i| {
                    let t = *stamps.get(i);
                    t < start_ns || t > end_ns
                })
                .collect()
        };
        let keep = outside(&self.stamps);
        let shared_changed = keep.len() < self.stamps.len();
        for c in &mut self.columns {
            removed += c.delete_sealed(start_ns, end_ns);
            match &c.own {
                None if shared_changed => {
                    removed += (c.open_len() - keep.len()) as u64;
                    c.values = c.values.pick(&keep);
                }
                None => {}
                Some(own) => {
                    let keep = outside(own);
                    if keep.len() < own.len() {
                        removed += (own.len() - keep.len()) as u64;
                        c.own = Some(own.pick(&keep));
                        c.values = c.values.pick(&keep);
                    }
                }
            }
        }
        if shared_changed {
            self.stamps = self.stamps.pick(&keep);
        }
        self.columns.retain(|c| !c.is_empty());
        if self.columns.iter().all(|c| c.own.is_some()) {
            self.stamps = ChunkedVec::new();
            self.sorted = true;
        }
        removed
    }
}

/// The columns of every series of a shard, by series id.
#[derive(Debug, Default)]
pub struct Head {
    series: Vec<Series>,
    /// Values held (up with every write, down with deletes).
    values: u64,
    /// Series with timestamps that a write left out of time order, for the tidy task
    /// to sort ([`Head::tidy`]) before a query has to. At most one entry per column
    /// (or shared part) that turned unsorted since it was last sorted.
    unsorted: Vec<SeriesId>,
    /// Heap bytes of the columns, kept as they change (see [`Head::heap_bytes`]).
    bytes: usize,
    /// The column of each field of the point being applied (kept between points so
    /// applying one allocates nothing).
    scratch: Vec<usize>,
}

impl Head {
    /// Whether series `sid` has a column of the same type for every field of `point`
    /// (then the point's field types need no other check: column types always agree
    /// with the measurement's field types).
    pub fn knows_fields(&self, sid: SeriesId, body: &ParsedBody, point: &PointRef) -> bool {
        let Some(series) = self.series.get(sid as usize) else {
            return false;
        };
        let columns = &series.columns;
        !columns.is_empty()
            && body.point_fields(point).iter().enumerate().all(|(j, f)| {
                column_index(columns, body.bytes(&f.key), j)
                    .is_some_and(|c| columns[c].values.field_type() == f.value.field_type())
            })
    }

    /// Adds a validated point's fields to the columns of series `sid`.
    pub fn apply(&mut self, sid: SeriesId, body: &ParsedBody, point: &PointRef) {
        let at = sid as usize;
        if self.series.len() <= at {
            self.series.resize_with(at + 1, Series::default);
        }
        let mut cols = std::mem::take(&mut self.scratch);
        cols.clear();
        let series = &mut self.series[at];
        let fields = body.point_fields(point);
        // The point's columns, made as needed: a new one shares the series'
        // timestamps when there are none yet.
        for (j, f) in fields.iter().enumerate() {
            let key = body.bytes(&f.key);
            let col = match column_index(&series.columns, key, j) {
                Some(c) => c,
                None => {
                    let capacity = series.columns.capacity();
                    let shared = series.stamps.is_empty();
                    series.columns.push(Column {
                        name: key.into(),
                        sealed: Vec::new(),
                        own: (!shared).then(ChunkedVec::new),
                        values: Values::new(f.value.field_type()),
                        sorted: true,
                    });
                    self.bytes += key.len();
                    self.bytes +=
                        (series.columns.capacity() - capacity) * std::mem::size_of::<Column>();
                    series.columns.len() - 1
                }
            };
            cols.push(col);
        }
        // A point usually names each field once, in column order.
        let in_order = cols.iter().enumerate().all(|(k, &c)| k == c);
        let first_time = |k: usize| in_order || !cols[..k].contains(&cols[k]);
        // Shared columns this point leaves out take their own timestamps first.
        let shared_total = series.columns.iter().filter(|c| c.own.is_none()).count();
        let shared_here = (0..cols.len())
            .filter(|&k| first_time(k) && series.columns[cols[k]].own.is_none())
            .count();
        if shared_here < shared_total {
            for i in 0..series.columns.len() {
                if series.columns[i].own.is_none() && !cols.contains(&i) {
                    // (The last shared column going frees the shared timestamps.)
                    let before = series.bytes();
                    series.detach(i);
                    self.bytes = (self.bytes + series.bytes()).saturating_sub(before);
                }
            }
        }
        let ts = point.timestamp;
        if shared_here > 0 {
            if series.stamps.last().is_some_and(|&last| ts <= last) && series.sorted {
                series.sorted = false;
                self.unsorted.push(sid);
            }
            self.bytes += series.stamps.push(ts);
        }
        for (k, f) in fields.iter().enumerate() {
            let c = cols[k];
            if series.columns[c].own.is_none() && first_time(k) {
                self.bytes += series.columns[c].push_value(&f.value, body);
            } else {
                // Its own timestamps (or a field named twice in one point: the
                // second value needs a timestamp of its own).
                if series.columns[c].own.is_none() {
                    let before = series.bytes();
                    series.detach(c);
                    self.bytes = (self.bytes + series.bytes()).saturating_sub(before);
                }
                let column = &mut series.columns[c];
                let was_sorted = column.sorted;
                self.bytes += column.push_own(ts, &f.value, body);
                if was_sorted && !column.sorted {
                    self.unsorted.push(sid);
                }
            }
            self.values += 1;
        }
        // Due for sealing: sorted first (concurrent writers interleave batches, so
        // timestamps are seldom sorted while a load runs; they are mostly a few
        // sorted runs, which the stable sort merges in about linear time).
        // Only the point's columns grew.
        if series.stamps.len() >= SEAL_AT
            || cols
                .iter()
                .any(|&c| series.columns[c].open_len() >= SEAL_AT)
        {
            let before = series.bytes();
            series.seal_due();
            self.bytes = (self.bytes + series.bytes()).saturating_sub(before);
        }
        self.scratch = cols;
    }

    /// Removes the values of `series` in `[start_ns, end_ns]`; a column left empty
    /// goes. Returns the values removed and the series left with no column.
    pub fn delete(
        &mut self,
        series: &[SeriesId],
        start_ns: i64,
        end_ns: i64,
    ) -> (u64, Vec<SeriesId>) {
        let mut removed = 0u64;
        let mut emptied = Vec::new();
        for &sid in series {
            let Some(s) = self.series.get_mut(sid as usize) else {
                continue;
            };
            let before = s.bytes();
            removed += s.delete(start_ns, end_ns);
            if s.is_empty() {
                emptied.push(sid);
            }
            self.bytes = (self.bytes + s.bytes()).saturating_sub(before);
        }
        self.values = self.values.saturating_sub(removed);
        (removed, emptied)
    }

    /// The blocks of series `sid` in `range`: one per wanted field with values there,
    /// in column order.
    pub fn cursor<'a>(&'a mut self, sid: SeriesId, range: &ReadRange<'a>) -> Cursor<'a> {
        let Some(series) = self.series.get_mut(sid as usize) else {
            return Box::new(std::iter::empty());
        };
        let fields = range.fields;
        let wanted = move |c: &Column| fields.is_none_or(|f| f.iter().any(|n| **n == *c.name));
        if !series.sorted || series.columns.iter().any(|c| !c.sorted && wanted(c)) {
            let before = series.bytes();
            series.normalise(wanted);
            self.bytes = (self.bytes + series.bytes()).saturating_sub(before);
        }
        let range = *range;
        let Series {
            stamps, columns, ..
        } = &*series;
        Box::new(
            columns
                .iter()
                .filter(move |c| wanted(c))
                .filter_map(move |c| c.block(stamps, &range)),
        )
    }

    /// Values held, written minus deleted (before last-write-wins folds repeats).
    pub fn values(&self) -> u64 {
        self.values
    }

    /// Sorts the timestamps writes left out of time order, series by series, until
    /// `go_on` (told the values each series held) says stop; whether some are left.
    pub fn tidy(&mut self, go_on: &mut dyn FnMut(usize) -> bool) -> bool {
        while let Some(sid) = self.unsorted.pop() {
            let Some(series) = self.series.get_mut(sid as usize) else {
                continue;
            };
            let before = series.bytes();
            let values = series.normalise(|_| true);
            self.bytes = (self.bytes + series.bytes()).saturating_sub(before);
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
        for series in &mut self.series {
            let before = series.bytes();
            series.normalise(|_| true);
            self.bytes = (self.bytes + series.bytes()).saturating_sub(before);
            for c in &series.columns {
                n += if c.sealed.is_empty() {
                    c.open_len() as u64
                } else {
                    c.merged(&series.stamps, i64::MIN, i64::MAX).0.len() as u64
                };
            }
        }
        n
    }

    /// Heap bytes held by columns (timestamps, values, names, with vector slack),
    /// kept up to date as writes, sorts and deletes change them: O(1).
    pub fn heap_bytes(&self) -> usize {
        self.bytes + self.series.capacity() * std::mem::size_of::<Series>()
    }

    /// Whether the head holds no value.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(Series::is_empty)
    }

    /// Whether series `sid` has a value here.
    pub fn has_series(&self, sid: SeriesId) -> bool {
        self.series.get(sid as usize).is_some_and(|s| !s.is_empty())
    }

    /// The series with a value here, in id order.
    pub fn series_ids(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(sid, _)| sid as SeriesId)
    }

    /// The columns of series `sid`, sorted with one value per timestamp (last write
    /// wins), as a flush writes them: (escaped field key, times, values).
    pub fn export(&mut self, sid: SeriesId) -> Vec<(Box<[u8]>, Vec<i64>, FileColumn)> {
        let Some(series) = self.series.get_mut(sid as usize) else {
            return Vec::new();
        };
        let before = series.bytes();
        series.normalise(|_| true);
        self.bytes = (self.bytes + series.bytes()).saturating_sub(before);
        series
            .columns
            .iter()
            .map(|c| {
                let ty = c.values.field_type();
                if !c.sealed.is_empty() {
                    let (times, values) = c.merged(&series.stamps, i64::MIN, i64::MAX);
                    return (c.name.clone(), times, FileColumn::from_values(ty, values));
                }
                let stamps = c.stamps(&series.stamps);
                let n = c.open_len();
                let values = match &c.values {
                    Values::Float(v) => FileColumn::Float(v.range(0, n).copied().collect()),
                    Values::Integer(v) => FileColumn::Integer(v.range(0, n).copied().collect()),
                    Values::Unsigned(v) => FileColumn::Unsigned(v.range(0, n).copied().collect()),
                    Values::Boolean(v) => FileColumn::Boolean(v.range(0, n).copied().collect()),
                    Values::String(v) => {
                        FileColumn::String(v.range(0, n).map(|s| s.to_vec()).collect())
                    }
                };
                (
                    c.name.clone(),
                    stamps.range(0, n).copied().collect(),
                    values,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::Precision;
    use bytes::Bytes;

    /// Applies `lines` to `head`, series `host=a` as 0 and `host=b` as 1.
    fn write(head: &mut Head, lines: &'static [u8]) {
        let body = crate::lineproto::parse(Bytes::from_static(lines), Precision::Nanosecond, 0);
        for point in &body.points {
            let sid = if body.series_key(point).ends_with(b"host=a") {
                0
            } else {
                1
            };
            head.apply(sid, &body, point);
        }
    }

    /// The running byte count agrees with a walk over every column.
    fn check_bytes(head: &Head) {
        let walked: usize = head.series.iter().map(Series::bytes).sum();
        assert_eq!(head.bytes, walked);
    }

    fn all(head: &mut Head, sid: SeriesId) -> Vec<(Vec<u8>, Vec<i64>, Vec<Value>)> {
        let range = ReadRange {
            start_ns: i64::MIN,
            end_ns: i64::MAX,
            fields: None,
            limit: None,
            whole_blocks: false,
        };
        head.cursor(sid, &range)
            .map(|b| (b.field.to_vec(), b.times, b.values))
            .collect()
    }

    #[test]
    fn tidy_sorts_what_writes_left_out_of_order_keeping_the_last_write() {
        let mut head = Head::default();
        write(&mut head, b"cpu,host=a v=3,w=1i 30\ncpu,host=b v=1 10\n");
        write(
            &mut head,
            b"cpu,host=a v=1,w=2i 10\ncpu,host=a v=2 20\ncpu,host=a v=9 10\n",
        );
        // Host a's shared timestamps went out of order (listed once; w, left out of a
        // point, took its own copy, unsorted too), b's did not.
        assert_eq!(head.unsorted, vec![0]);
        assert!(head.series[0].columns[0].own.is_none() && head.series[0].columns[1].own.is_some());
        let mut seen = Vec::new();
        assert!(!head.tidy(&mut |values| {
            seen.push(values);
            true
        }));
        assert_eq!(
            seen,
            vec![6],
            "v's 4 values and w's 2, before the duplicate goes"
        );
        assert!(head.series[0].sorted && head.series[0].columns.iter().all(|c| c.sorted));
        check_bytes(&head);
        assert_eq!(
            all(&mut head, 0),
            vec![
                (
                    b"v".to_vec(),
                    vec![10, 20, 30],
                    vec![Value::Float(9.0), Value::Float(2.0), Value::Float(3.0)]
                ),
                (
                    b"w".to_vec(),
                    vec![10, 30],
                    vec![Value::Integer(2), Value::Integer(1)]
                ),
            ]
        );
        // Nothing left; a sorted column going out of order again is listed again.
        assert!(!head.tidy(&mut |_| true));
        write(&mut head, b"cpu,host=a v=0 5\n");
        assert_eq!(head.unsorted, vec![0]);
        // `go_on` stops after the series it was told of.
        write(&mut head, b"cpu,host=b v=0 5\n");
        assert!(head.tidy(&mut |_| false));
        assert!(!head.tidy(&mut |_| false));
    }

    #[test]
    fn cursors_honour_range_fields_and_limits_and_deletes_report_emptied_series() {
        let mut head = Head::default();
        write(
            &mut head,
            b"cpu,host=a v=1,w=1i 10\ncpu,host=a v=2,w=2i 20\ncpu,host=a v=3 30\n",
        );
        write(&mut head, b"cpu,host=b v=1 10\n");
        let fields = vec![b"v".to_vec()];
        let range = ReadRange {
            start_ns: 15,
            end_ns: 30,
            fields: Some(&fields),
            limit: Some((1, true)),
            whole_blocks: false,
        };
        let blocks: Vec<_> = head
            .cursor(0, &range)
            .map(|b| (b.times, b.values))
            .collect();
        assert_eq!(blocks, vec![(vec![30], vec![Value::Float(3.0)])]);
        let known = crate::lineproto::parse(
            Bytes::from_static(b"cpu,host=a v=1 1\ncpu,host=a v=1i 1\ncpu,host=a x=1 1"),
            Precision::Nanosecond,
            0,
        );
        let knows: Vec<bool> = known
            .points
            .iter()
            .map(|p| head.knows_fields(0, &known, p))
            .collect();
        assert_eq!(
            knows,
            vec![true, false, false],
            "same type; another type; a new field"
        );
        assert_eq!(head.values(), 6);
        let (removed, emptied) = head.delete(&[0, 1], 0, 10);
        assert_eq!((removed, emptied), (3, vec![1]));
        assert_eq!(head.values(), 3);
        check_bytes(&head);
        assert_eq!(head.count_values(), 3);
        check_bytes(&head);
        let exported = head.export(0);
        assert_eq!(exported.len(), 2);
        assert_eq!(exported[0].1, vec![20, 30]);
        assert_eq!(exported[0].2, FileColumn::Float(vec![2.0, 3.0]));
        assert_eq!(head.series_ids().collect::<Vec<_>>(), vec![0]);
        assert!(head.has_series(0) && !head.has_series(1) && !head.is_empty());
        assert!(all(&mut head, 1).is_empty());
    }

    /// Applies owned `lines` (all series 0).
    fn write_owned(head: &mut Head, lines: String) {
        let body = crate::lineproto::parse(Bytes::from(lines), Precision::Nanosecond, 0);
        assert!(body.errors.is_empty(), "{:?}", body.errors);
        for point in &body.points {
            head.apply(0, &body, point);
        }
    }

    #[test]
    fn sorted_columns_seal_their_oldest_values_compressed_and_read_back_whole() {
        let mut head = Head::default();
        let n = 4 * CHUNK_LEN as i64 + 10;
        let mut lines = String::new();
        for i in 0..n {
            lines.push_str(&format!(
                "cpu,host=a v={}.5,s=\"x{}\" {}\n",
                i % 100,
                i % 3,
                i * 10
            ));
        }
        write_owned(&mut head, lines);
        check_bytes(&head);
        let v = &head.series[0].columns[0];
        assert_eq!(v.sealed.len(), 3, "all but the newest SEAL_AT - 1 at most");
        assert!(
            v.open_len() < SEAL_AT && v.own.is_none(),
            "v and s share their timestamps"
        );
        assert!(v.sealed.iter().all(|s| s.image.len() < CHUNK_LEN * 3));
        // 16 bytes per open value; sealed ones take a fraction (~2 bytes).
        let v_bytes = head.series[0].columns[0].heap_bytes() + head.series[0].stamps.heap_bytes();
        assert!(v_bytes < (n as usize) * 16 * 2 / 3, "{v_bytes}");
        let got = all(&mut head, 0);
        assert_eq!(got[0].1, (0..n).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(
            got[0].2[CHUNK_LEN + 7],
            Value::Float(((CHUNK_LEN + 7) % 100) as f64 + 0.5)
        );
        assert_eq!(got[1].2[5], Value::String(b"x2".to_vec()));
        // Later writes over sealed times win; a delete across chunks; limits.
        write_owned(
            &mut head,
            "cpu,host=a v=-1 50\ncpu,host=a v=-2 20470\n".into(),
        );
        let range = |start_ns, end_ns, limit| ReadRange {
            start_ns,
            end_ns,
            fields: None,
            limit,
            whole_blocks: false,
        };
        let block = |head: &mut Head, r: ReadRange<'static>| {
            head.cursor(0, &r)
                .next()
                .map(|b| (b.times, b.values))
                .unwrap()
        };
        assert_eq!(
            block(&mut head, range(40, 60, None)),
            (
                vec![40, 50, 60],
                vec![Value::Float(4.5), Value::Float(-1.0), Value::Float(6.5)]
            )
        );
        assert_eq!(
            block(&mut head, range(0, 30_000, Some((1, true)))).0,
            vec![30_000]
        );
        // The newest in a sealed range: the later write over it.
        assert_eq!(
            block(&mut head, range(0, 20_470, Some((1, true)))),
            (vec![20_470], vec![Value::Float(-2.0)])
        );
        assert_eq!(
            block(&mut head, range(0, i64::MAX, Some((2, false)))).0,
            vec![0, 10]
        );
        let (removed, _) = head.delete(&[0], 30, 15_000);
        // v and s at 1,498 times each, and v's sealed value at 50 that the later write
        // hid (removed counts what was written, as `values` does).
        assert_eq!(removed, 2 * 1498 + 1);
        check_bytes(&head);
        assert_eq!(head.count_values(), 2 * (n as u64 - 1498));
        let exported = head.export(0);
        assert_eq!(exported[0].1.len(), n as usize - 1498);
        assert_eq!(&exported[0].1[..4], &[0, 10, 20, 15_010]);
        check_bytes(&head);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]

        /// Whatever the order of writes, repeats, deletes and sorts, reads give the
        /// last value written for each time, sealed or not.
        #[test]
        fn reads_match_a_last_write_wins_model(
            ops in proptest::collection::vec(
                {
                use proptest::strategy::Strategy;
                proptest::prop_oneof![
                    // A batch of in-order writes from a time, step 1..3.
                    (0i64..6000, 1usize..3000, 1i64..3).prop_map(|(t, n, step)| (0u8, t, n as i64, step)),
                    // A few writes back in time.
                    (0i64..6000, 1usize..20, 1i64..3).prop_map(|(t, n, step)| (1u8, t, n as i64, step)),
                    (0i64..6000, 0i64..2000).prop_map(|(t, len)| (2u8, t, len, 0)),
                    proptest::strategy::Just((3u8, 0, 0, 0)),
                ]
                },
                1..12,
            ),
        ) {
            use proptest::prop_assert_eq;
            let mut head = Head::default();
            let mut model = std::collections::BTreeMap::new();
            let mut model_w = std::collections::BTreeMap::new();
            for (k, (op, t, n, step)) in ops.into_iter().enumerate() {
                match op {
                    0 | 1 => {
                        let mut lines = String::new();
                        for j in 0..n {
                            let time = t + j * step;
                            let v = (k as i64) * 100_000 + time;
                            // w is sparse (left out of some points); now and then v
                            // is named twice (the second value wins).
                            let line = match (time + k as i64) % 7 {
                                0 => format!("cpu,host=a v={v}i {time}"),
                                1 => format!("cpu,host=a v=-1i,w={v}i,v={v}i {time}"),
                                _ => format!("cpu,host=a v={v}i,w={v}i {time}"),
                            };
                            lines.push_str(&line);
                            lines.push('\n');
                            model.insert(time, v);
                            if (time + k as i64) % 7 != 0 {
                                model_w.insert(time, v);
                            }
                        }
                        write_owned(&mut head, lines);
                    }
                    2 => {
                        head.delete(&[0], t, t + n);
                        for m in [&mut model, &mut model_w] {
                            let gone: Vec<i64> = m.range(t..=t + n).map(|(k, _)| *k).collect();
                            for g in gone {
                                m.remove(&g);
                            }
                        }
                    }
                    _ => {
                        head.tidy(&mut |_| true);
                    }
                }
                check_bytes(&head);
            }
            let got = all(&mut head, 0);
            for (name, m) in [(&b"v"[..], &model), (&b"w"[..], &model_w)] {
                let (times, values) = got
                    .iter()
                    .find(|(f, _, _)| f == name)
                    .map(|(_, t, v)| (t.clone(), v.clone()))
                    .unwrap_or_default();
                prop_assert_eq!(times, m.keys().copied().collect::<Vec<_>>());
                prop_assert_eq!(values, m.values().map(|&v| Value::Integer(v)).collect::<Vec<_>>());
            }
            prop_assert_eq!(head.count_values(), (model.len() + model_w.len()) as u64);
            let exported = head.export(0);
            for (name, times, _) in &exported {
                let m = if &name[..] == b"v" { &model } else { &model_w };
                prop_assert_eq!(times, &m.keys().copied().collect::<Vec<_>>());
            }
            let v_only = vec![b"v".to_vec()];
            let newest = ReadRange { start_ns: 0, end_ns: 4000, fields: Some(&v_only), limit: Some((3, true)), whole_blocks: false };
            let mut want: Vec<i64> = model.range(0..=4000).rev().take(3).map(|(k, _)| *k).collect();
            want.reverse();
            let got: Vec<i64> = head.cursor(0, &newest).flat_map(|b| b.times).collect();
            prop_assert_eq!(got, want);
        }
    }
}
