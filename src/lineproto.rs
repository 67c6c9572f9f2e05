//! InfluxDB 1.x line protocol: a zero-copy parser and an encoder.
//!
//! The parser reads a request body (`Bytes`) once and produces a [`ParsedBody`]: the body
//! itself plus flat arrays of spans (`u32` offsets) into it — one [`PointRef`] per point,
//! its tags and its fields. Nothing of the body is copied, except a canonical series key
//! when the tags were not written in sorted order (or used escapes that have a shorter
//! canonical form); those keys live in a small side arena.
//!
//! A shard batch for another core is then an `Arc<ParsedBody>` plus point indices: one
//! refcount per batch, not per point.
//!
//! Back of the envelope: a TSBS `cpu` line is ~250 bytes with 10 tags and 10 float fields;
//! at 500 MB/s one core parses 2 M lines/s, i.e. 500 ns a line, so the parser touches each
//! byte a small constant number of times and allocates nothing per line (the flat arrays
//! grow amortised).
//!
//! It never panics on input: every fault is a [`LineError`] with the 1-based line number
//! and InfluxDB's reason text, and the remaining lines are still parsed.

use crate::base::hash::IdentityHasher;
use crate::base::time::{MAX_TIME_NS, MIN_TIME_NS};
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::ops::Range;

/// Why a line did not parse: InfluxDB's reason text.
type Reason = Cow<'static, str>;

/// Offsets into the body (or into the key arena for [`KeyLoc::Arena`]).
pub type Span = Range<u32>;

/// Timestamp precision of a write request (`precision=` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
}

impl Precision {
    /// Parses InfluxDB's precision names. Like InfluxDB 1.x, an empty value means ns.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "" | "n" | "ns" => Precision::Nanosecond,
            "u" | "us" | "µ" | "µs" => Precision::Microsecond,
            "ms" => Precision::Millisecond,
            "s" => Precision::Second,
            "m" => Precision::Minute,
            "h" => Precision::Hour,
            _ => return None,
        })
    }

    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
        }
    }

    /// Stable one-byte code, used in WAL records and on the wire.
    pub fn code(self) -> u8 {
        match self {
            Precision::Nanosecond => 0,
            Precision::Microsecond => 1,
            Precision::Millisecond => 2,
            Precision::Second => 3,
            Precision::Minute => 4,
            Precision::Hour => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Precision> {
        Some(match code {
            0 => Precision::Nanosecond,
            1 => Precision::Microsecond,
            2 => Precision::Millisecond,
            3 => Precision::Second,
            4 => Precision::Minute,
            5 => Precision::Hour,
            _ => return None,
        })
    }
}

/// The type of a field, as InfluxDB names it in errors and `SHOW FIELD KEYS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    Boolean,
    String,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
        })
    }
}

/// A parsed field value. Strings stay in the body: `escaped` says whether the span holds
/// `\"` or `\\` escapes that [`ParsedBody::string_value`] must undo.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String { span: Span, escaped: bool },
}

impl FieldValue {
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::Float(_) => FieldType::Float,
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Unsigned(_) => FieldType::Unsigned,
            FieldValue::Boolean(_) => FieldType::Boolean,
            FieldValue::String { .. } => FieldType::String,
        }
    }
}

/// Where a point's canonical series key lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLoc {
    /// The line's own `measurement,tags` prefix is already canonical.
    Body(Span),
    /// Rebuilt (sorted / re-escaped) into [`ParsedBody::key_arena`].
    Arena(Span),
}

/// One point: spans into the body plus index ranges into the flat tag/field arrays.
#[derive(Clone, Debug)]
pub struct PointRef {
    /// The whole line as written (without the line terminator).
    pub line: Span,
    /// 1-based line number in the request body.
    pub line_number: u32,
    /// Escaped measurement name as written.
    pub measurement: Span,
    /// Range into [`ParsedBody::tags`]; sorted by (unescaped) key.
    pub tags: Range<u32>,
    /// Range into [`ParsedBody::fields`], in written order.
    pub fields: Range<u32>,
    /// Nanoseconds since the epoch (precision applied, or the default time).
    pub timestamp: i64,
    /// Whether the line carried its own timestamp.
    pub has_timestamp: bool,
    pub series_key: KeyLoc,
    /// A fast hash of the canonical series key, for in-memory maps ([`key_hash`]).
    /// Placement uses [`ParsedBody::series_hash`] instead (FNV-1a, fixed by DESIGN).
    pub key_hash: u64,
}

/// A tag: escaped key and value spans into the body.
#[derive(Clone, Debug)]
pub struct TagRef {
    pub key: Span,
    pub value: Span,
}

/// A field: escaped key span and the value.
#[derive(Clone, Debug)]
pub struct FieldRef {
    pub key: Span,
    pub value: FieldValue,
}

/// A line that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the body.
    pub line_number: u32,
    /// The offending line, lossily decoded, as InfluxDB quotes it.
    pub line: String,
    /// InfluxDB's reason text, e.g. `missing fields`.
    pub reason: String,
}

/// InfluxDB's text, which names the line by quoting it (its number is `line_number`,
/// for logs and callers that want it).
impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unable to parse '{}': {}", self.line, self.reason)
    }
}

/// The result of parsing one body: the points that parsed and the lines that did not.
#[derive(Debug, Default)]
pub struct ParsedBody {
    pub body: Bytes,
    pub points: Vec<PointRef>,
    pub tags: Vec<TagRef>,
    pub fields: Vec<FieldRef>,
    pub key_arena: Vec<u8>,
    pub errors: Vec<LineError>,
}

impl ParsedBody {
    #[inline]
    pub fn bytes(&self, span: &Span) -> &[u8] {
        &self.body[span.start as usize..span.end as usize]
    }

    /// Zero-copy slice of the body (one refcount increment).
    pub fn slice(&self, span: &Span) -> Bytes {
        self.body.slice(span.start as usize..span.end as usize)
    }

    pub fn series_key(&self, point: &PointRef) -> &[u8] {
        match &point.series_key {
            KeyLoc::Body(s) => self.bytes(s),
            KeyLoc::Arena(s) => &self.key_arena[s.start as usize..s.end as usize],
        }
    }

    /// FNV-1a 64 of the canonical series key: the series hash placement uses (DESIGN
    /// section 2). Computed on demand ([`SeriesHashes`] computes it once per series).
    pub fn series_hash(&self, point: &PointRef) -> u64 {
        crate::base::hash::fnv1a64(self.series_key(point))
    }

    /// The series hash of each of `points`, computed once per distinct series.
    pub fn series_hashes(&self, points: &[u32]) -> Vec<u64> {
        let mut hashes = SeriesHashes::default();
        points
            .iter()
            .map(|&i| hashes.of(self, i as usize))
            .collect()
    }

    /// The byte ranges of the lines of `points` (in that order), with lines adjacent in
    /// the body (separated by exactly one '\n') joined into one range: a batch of a
    /// shard is usually a few runs, so copies and slices are per run, not per line.
    pub fn line_runs(&self, points: impl IntoIterator<Item = u32>) -> Vec<Range<usize>> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for i in points {
            let line = &self.points[i as usize].line;
            let (start, end) = (line.start as usize, line.end as usize);
            match runs.last_mut() {
                Some(run) if run.end + 1 == start && self.body[run.end] == b'\n' => run.end = end,
                _ => runs.push(start..end),
            }
        }
        runs
    }

    pub fn line(&self, point: &PointRef) -> &[u8] {
        self.bytes(&point.line)
    }

    pub fn point_tags(&self, point: &PointRef) -> &[TagRef] {
        &self.tags[point.tags.start as usize..point.tags.end as usize]
    }

    pub fn point_fields(&self, point: &PointRef) -> &[FieldRef] {
        &self.fields[point.fields.start as usize..point.fields.end as usize]
    }

    /// The unescaped value of a string field.
    pub fn string_value(&self, span: &Span, escaped: bool) -> Vec<u8> {
        let raw = self.bytes(span);
        if !escaped {
            return raw.to_vec();
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && i + 1 < raw.len() && (raw[i + 1] == b'"' || raw[i + 1] == b'\\') {
                out.push(raw[i + 1]);
                i += 2;
            } else {
                out.push(raw[i]);
                i += 1;
            }
        }
        out
    }
}

/// A fast 64-bit hash for in-memory maps keyed by series key: eight bytes per step
/// (FxHash's mixing, with a final avalanche). Not stable across versions: never store
/// it or place data by it.
#[inline]
pub fn key_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    }
    // Avalanche so the low bits (used by hash tables) depend on every input byte.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Parses a whole body. Valid points land in `points`, each bad line in `errors`.
/// `default_time_ns` is given to points without a timestamp.
pub fn parse(body: Bytes, precision: Precision, default_time_ns: i64) -> ParsedBody {
    let mut out = ParsedBody {
        body,
        ..Default::default()
    };
    // A rough guess saves reallocations on large bodies (TSBS lines are ~250 bytes).
    let guess = out.body.len() / 200;
    out.points.reserve(guess);
    let body = out.body.clone();
    let buf: &[u8] = &body;
    if buf.len() > u32::MAX as usize {
        out.errors.push(LineError {
            line_number: 1,
            line: String::new(),
            reason: "body larger than 4 GiB".into(),
        });
        return out;
    }
    let mut pos = 0usize;
    let mut line_number = 0u32;
    let mut order = TagOrder::default();
    while pos < buf.len() {
        line_number += 1;
        let (end, spans_lines) = scan_line_end(buf, pos);
        let mut line_end = end;
        if line_end > pos && buf[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        let next = if end < buf.len() { end + 1 } else { end };
        // Skip leading whitespace; blank lines and comments are not points.
        let mut start = pos;
        while start < line_end && (buf[start] == b' ' || buf[start] == b'\t') {
            start += 1;
        }
        if start < line_end && buf[start] != b'#' {
            let tags_mark = out.tags.len();
            let fields_mark = out.fields.len();
            let arena_mark = out.key_arena.len();
            match parse_line(
                &mut out,
                buf,
                (start, line_end),
                precision,
                default_time_ns,
                line_number,
                &mut order,
            ) {
                Ok(point) => out.points.push(point),
                Err(reason) => {
                    out.tags.truncate(tags_mark);
                    out.fields.truncate(fields_mark);
                    out.key_arena.truncate(arena_mark);
                    out.errors.push(LineError {
                        line_number,
                        line: String::from_utf8_lossy(&buf[start..line_end]).into_owned(),
                        reason: reason.to_string(),
                    });
                }
            }
        }
        // A quoted string may hold newlines, so count the ones we skipped over (after
        // the line is parsed: a point is numbered by the line it starts on).
        if spans_lines {
            line_number_skip(buf, pos, end, &mut line_number);
        }
        pos = next;
    }
    out
}

/// Adds the newlines inside quoted strings of a logical line to the line count.
fn line_number_skip(buf: &[u8], start: usize, end: usize, line_number: &mut u32) {
    let inner = buf[start..end].iter().filter(|&&b| b == b'\n').count();
    *line_number += inner as u32;
}

/// Finds the end of a logical line: the first `\n` that is not inside a quoted field
/// string. Quotes only count in the field section (after the first unescaped space),
/// and an unbalanced quote ends at the next newline so one bad line cannot swallow
/// the rest of the body... unless the quote really is closed later, as InfluxDB does.
/// Returns the end and whether the logical line spans several physical lines.
fn scan_line_end(buf: &[u8], start: usize) -> (usize, bool) {
    let mut i = start;
    let mut in_fields = false;
    let mut in_quote = false;
    // Like InfluxDB, a quote only counts in a field value (more `=` than `,` so far),
    // never in a field key.
    let (mut equals, mut commas) = (0u32, 0u32);
    let first_nl = memchr_nl(buf, start);
    // Fast path: no quote before the newline.
    if memchr::memchr(b'"', &buf[start..first_nl]).is_none() {
        return (first_nl, false);
    }
    // Leading whitespace is not the space that starts the field section.
    while i < first_nl && (buf[i] == b' ' || buf[i] == b'\t') {
        i += 1;
    }
    while i < buf.len() {
        let b = buf[i];
        if b == b'\\' {
            i += 2;
            continue;
        }
        if b == b'\n' && !in_quote {
            return (i, i > first_nl);
        }
        if b == b' ' && !in_quote {
            in_fields = true;
        } else if in_fields && !in_quote && b == b'=' {
            equals += 1;
        } else if in_fields && !in_quote && b == b',' {
            commas += 1;
        } else if b == b'"' && in_fields && equals > commas {
            in_quote = !in_quote;
        }
        i += 1;
    }
    if in_quote {
        // Unbalanced quote: fall back to the physical line so the error is local.
        return (first_nl, false);
    }
    (buf.len(), buf.len() > first_nl)
}

#[inline]
fn memchr_nl(buf: &[u8], start: usize) -> usize {
    memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |p| start + p)
}

#[inline]
fn span(a: usize, b: usize) -> Span {
    a as u32..b as u32
}

/// Scans an escaped name up to one of the stop bytes (unescaped). Returns the end index.
#[inline]
fn scan_until(buf: &[u8], mut i: usize, end: usize, stops: &[u8], escaped: &mut bool) -> usize {
    while i < end {
        let b = buf[i];
        if b == b'\\' && i + 1 < end {
            *escaped = true;
            i += 2;
            continue;
        }
        if stops.contains(&b) {
            return i;
        }
        i += 1;
    }
    end
}

fn parse_line(
    out: &mut ParsedBody,
    buf: &[u8],
    (start, end): (usize, usize),
    precision: Precision,
    default_time_ns: i64,
    line_number: u32,
    order: &mut TagOrder,
) -> Result<PointRef, Reason> {
    let mut needs_canonical = false;
    // Measurement.
    let m_end = scan_until(buf, start, end, b", ", &mut needs_canonical);
    if m_end == start {
        return Err(Cow::Borrowed("missing measurement"));
    }
    if m_end == end {
        return Err(Cow::Borrowed("missing fields"));
    }
    let measurement = span(start, m_end);
    // Tags.
    let tags_start = out.tags.len() as u32;
    let mut i = m_end;
    let mut sorted = true;
    while i < end && buf[i] == b',' {
        i += 1;
        let k_start = i;
        let k_end = scan_until(buf, i, end, b"=, ", &mut needs_canonical);
        if k_end == k_start {
            return Err(Cow::Borrowed("missing tag key"));
        }
        if k_end == end || buf[k_end] != b'=' {
            return Err(Cow::Borrowed("missing tag value"));
        }
        let v_start = k_end + 1;
        let v_end = scan_until(buf, v_start, end, b", =", &mut needs_canonical);
        if v_end < end && buf[v_end] == b'=' {
            return Err(Cow::Borrowed("invalid tag format"));
        }
        if v_end == v_start {
            return Err(Cow::Borrowed("missing tag value"));
        }
        if let Some(prev) = out
            .tags
            .last()
            .filter(|_| out.tags.len() as u32 > tags_start)
        {
            let prev = &buf[prev.key.start as usize..prev.key.end as usize];
            let order = if needs_canonical {
                unescape_cmp(&buf[k_start..k_end], prev)
            } else {
                raw_key_cmp(&buf[k_start..k_end], prev)
            };
            if order != std::cmp::Ordering::Greater {
                sorted = false;
            }
        }
        out.tags.push(TagRef {
            key: span(k_start, k_end),
            value: span(v_start, v_end),
        });
        i = v_end;
    }
    let key_end = i;
    if i >= end {
        return Err(Cow::Borrowed("missing fields"));
    }
    // One or more spaces separate the key from the fields.
    while i < end && buf[i] == b' ' {
        i += 1;
    }
    if i >= end {
        // `m ` (a separator but no fields), as InfluxDB words it.
        return Err(Cow::Borrowed("invalid field format"));
    }
    let tags_end = out.tags.len() as u32;
    if !sorted {
        let tags = &mut out.tags[tags_start as usize..tags_end as usize];
        let key = |t: &TagRef| &buf[t.key.start as usize..t.key.end as usize];
        if needs_canonical {
            tags.sort_by(|a, b| unescape_cmp(key(a), key(b)));
        } else if order.reorder(buf, tags) {
            // Same keys in the same written order as the previous line: already checked
            // for duplicates then.
        } else {
            // No escapes anywhere in the key: raw bytes order as unescaped ones.
            order.sort(buf, tags);
        }
        for w in tags.windows(2) {
            if buf[w[0].key.start as usize..w[0].key.end as usize]
                == buf[w[1].key.start as usize..w[1].key.end as usize]
            {
                return Err(Cow::Borrowed("duplicate tags"));
            }
        }
    }
    // Fields.
    let fields_start = out.fields.len() as u32;
    loop {
        let k_start = i;
        let mut key_escaped = false;
        let k_end = scan_until(buf, i, end, b"=, ", &mut key_escaped);
        // InfluxDB's wording: a key without `=` is a bad format, `=v` a missing key.
        if k_end == end || buf[k_end] != b'=' {
            return Err(Cow::Borrowed("invalid field format"));
        }
        if k_end == k_start {
            return Err(Cow::Borrowed("missing field key"));
        }
        let v_start = k_end + 1;
        let (value, v_end) = parse_field_value(buf, v_start, end)?;
        out.fields.push(FieldRef {
            key: span(k_start, k_end),
            value,
        });
        i = v_end;
        if i < end && buf[i] == b',' {
            i += 1;
            continue;
        }
        break;
    }
    let fields_end = out.fields.len() as u32;
    // Optional timestamp.
    while i < end && (buf[i] == b' ' || buf[i] == b'\t') {
        i += 1;
    }
    let (timestamp, has_timestamp) = if i < end {
        let ts_start = i;
        while i < end && buf[i] != b' ' && buf[i] != b'\t' {
            i += 1;
        }
        let raw = parse_i64(&buf[ts_start..i]).ok_or(Cow::Borrowed("bad timestamp"))?;
        while i < end && (buf[i] == b' ' || buf[i] == b'\t') {
            i += 1;
        }
        if i < end {
            return Err(Cow::Borrowed("point is invalid"));
        }
        let ns = raw
            .checked_mul(precision.nanos_per_unit())
            .filter(|ns| (MIN_TIME_NS..=MAX_TIME_NS).contains(ns))
            .ok_or(Cow::Borrowed("time outside range"))?;
        (ns, true)
    } else {
        (default_time_ns, false)
    };
    // Canonical series key: measurement then tags sorted by key, escaped as in line
    // protocol. When the line already wrote it that way, it is a slice of the line.
    let series_key = if sorted && !needs_canonical {
        KeyLoc::Body(span(start, key_end))
    } else if !needs_canonical {
        // Unsorted tags without escapes (TSBS writes tags unsorted): copy them in order.
        let a = out.key_arena.len();
        out.key_arena.extend_from_slice(&buf[start..m_end]);
        for t in &out.tags[tags_start as usize..tags_end as usize] {
            out.key_arena.push(b',');
            out.key_arena
                .extend_from_slice(&buf[t.key.start as usize..t.value.end as usize]);
        }
        KeyLoc::Arena(span(a, out.key_arena.len()))
    } else {
        let a = out.key_arena.len();
        canonical_escape(&buf[start..m_end], b", ", &mut out.key_arena);
        for t in &out.tags[tags_start as usize..tags_end as usize] {
            out.key_arena.push(b',');
            canonical_escape(
                &buf[t.key.start as usize..t.key.end as usize],
                b",= ",
                &mut out.key_arena,
            );
            out.key_arena.push(b'=');
            canonical_escape(
                &buf[t.value.start as usize..t.value.end as usize],
                b",= ",
                &mut out.key_arena,
            );
        }
        KeyLoc::Arena(span(a, out.key_arena.len()))
    };
    let key_hash = match &series_key {
        KeyLoc::Body(s) => key_hash(&buf[s.start as usize..s.end as usize]),
        KeyLoc::Arena(s) => key_hash(&out.key_arena[s.start as usize..s.end as usize]),
    };
    Ok(PointRef {
        line: span(start, end),
        line_number,
        measurement,
        tags: tags_start..tags_end,
        fields: fields_start..fields_end,
        timestamp,
        has_timestamp,
        series_key,
        key_hash,
    })
}

/// The sorted order of the previous line's tag keys. Consecutive lines usually carry the
/// same tag keys in the same written order (TSBS writes them unsorted), so the
/// permutation is reused instead of sorting each line again.
#[derive(Default)]
struct TagOrder {
    /// The previous unsorted line's keys, in written order (spans into the same body).
    keys: Vec<Span>,
    /// Sorted position -> written index.
    perm: Vec<usize>,
    scratch: Vec<TagRef>,
}

impl TagOrder {
    /// Puts `tags` in sorted order with the cached permutation if their keys match the
    /// previous line's; returns false (leaving `tags` alone) otherwise.
    fn reorder(&mut self, buf: &[u8], tags: &mut [TagRef]) -> bool {
        if self.keys.len() != tags.len()
            || !tags.iter().zip(&self.keys).all(|(t, k)| {
                short_eq(
                    &buf[t.key.start as usize..t.key.end as usize],
                    &buf[k.start as usize..k.end as usize],
                )
            })
        {
            return false;
        }
        self.scratch.clear();
        self.scratch
            .extend(self.perm.iter().map(|&p| tags[p].clone()));
        tags.clone_from_slice(&self.scratch);
        true
    }

    /// Sorts `tags` by raw key bytes and remembers the permutation.
    fn sort(&mut self, buf: &[u8], tags: &mut [TagRef]) {
        let key = |t: &TagRef| &buf[t.key.start as usize..t.key.end as usize];
        self.keys.clear();
        self.keys.extend(tags.iter().map(|t| t.key.clone()));
        self.perm.clear();
        self.perm.extend(0..tags.len());
        self.perm
            .sort_unstable_by(|&a, &b| raw_key_cmp(key(&tags[a]), key(&tags[b])));
        self.scratch.clear();
        self.scratch
            .extend(self.perm.iter().map(|&p| tags[p].clone()));
        tags.clone_from_slice(&self.scratch);
    }
}

/// Equality for short names without a libc `memcmp` call (its call overhead showed in
/// profiles of the parse and apply paths, where names are 2–20 bytes).
#[inline]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        if u64::from_ne_bytes(x.try_into().expect("8"))
            != u64::from_ne_bytes(y.try_into().expect("8"))
        {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

/// Byte-wise order of two tag keys, comparing an 8-byte prefix as one integer first:
/// sorting ~10 tags a line made the libc `memcmp` call overhead visible.
#[inline]
fn raw_key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    #[inline]
    fn prefix(s: &[u8]) -> u64 {
        let mut buf = [0u8; 8];
        let n = s.len().min(8);
        buf[..n].copy_from_slice(&s[..n]);
        u64::from_be_bytes(buf)
    }
    match prefix(a).cmp(&prefix(b)) {
        std::cmp::Ordering::Equal if a.len() > 8 && b.len() > 8 => a[8..].cmp(&b[8..]),
        // Equal zero-padded prefixes and one side within 8 bytes: it is a prefix of the
        // other (or equal), so the shorter sorts first.
        std::cmp::Ordering::Equal => a.len().cmp(&b.len()),
        other => other,
    }
}

/// Compares two escaped names by their unescaped bytes.
fn unescape_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if !a.contains(&b'\\') && !b.contains(&b'\\') {
        return a.cmp(b);
    }
    unescape(a).cmp(&unescape(b))
}

/// Undoes line-protocol escaping of names (`\,` `\ ` `\=`). A backslash before any other
/// byte is kept with that byte, as InfluxDB does; escapes pair up left to right, the same
/// way the scanner reads them.
pub fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            if !matches!(raw[i + 1], b',' | b' ' | b'=') {
                out.push(b'\\');
            }
            out.push(raw[i + 1]);
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// Writes `raw` (escaped as written) in its canonical escaping: unescape, then escape
/// exactly the bytes in `specials`.
fn canonical_escape(raw: &[u8], specials: &[u8], out: &mut Vec<u8>) {
    let plain = unescape(raw);
    escape_into(&plain, specials, out);
}

/// Escapes `plain` for line protocol: each byte in `specials` gets a backslash.
pub fn escape_into(plain: &[u8], specials: &[u8], out: &mut Vec<u8>) {
    for &b in plain {
        if specials.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn parse_field_value(buf: &[u8], start: usize, end: usize) -> Result<(FieldValue, usize), Reason> {
    if start >= end {
        return Err(Cow::Borrowed("missing field value"));
    }
    if buf[start] == b'"' {
        let mut i = start + 1;
        let mut escaped = false;
        while i < end {
            match buf[i] {
                b'\\' if i + 1 < end && (buf[i + 1] == b'"' || buf[i + 1] == b'\\') => {
                    escaped = true;
                    i += 2;
                }
                b'"' => {
                    let v_end = i + 1;
                    if v_end < end && buf[v_end] != b',' && buf[v_end] != b' ' {
                        return Err(Cow::Borrowed("invalid field format"));
                    }
                    return Ok((
                        FieldValue::String {
                            span: span(start + 1, i),
                            escaped,
                        },
                        v_end,
                    ));
                }
                _ => i += 1,
            }
        }
        return Err(Cow::Borrowed("unbalanced quotes"));
    }
    let mut v_end = start;
    while v_end < end && buf[v_end] != b',' && buf[v_end] != b' ' {
        v_end += 1;
    }
    let raw = &buf[start..v_end];
    if raw.is_empty() {
        return Err(Cow::Borrowed("missing field value"));
    }
    let value = match raw[0] {
        b't' | b'T' | b'f' | b'F' => match raw {
            b"t" | b"T" | b"true" | b"True" | b"TRUE" => FieldValue::Boolean(true),
            b"f" | b"F" | b"false" | b"False" | b"FALSE" => FieldValue::Boolean(false),
            _ => return Err(Cow::Borrowed("invalid boolean")),
        },
        b'-' | b'.' | b'0'..=b'9' => parse_number(raw)?,
        // Like InfluxDB: `n`/`N` (NaN) fail as numbers, anything else as a boolean.
        b'n' | b'N' => return Err(Cow::Borrowed("invalid number")),
        _ => return Err(Cow::Borrowed("invalid boolean")),
    };
    Ok((value, v_end))
}

fn parse_number(raw: &[u8]) -> Result<FieldValue, Reason> {
    let last = raw[raw.len() - 1];
    if last == b'i' {
        let digits = &raw[..raw.len() - 1];
        if !is_integer_text(digits) {
            return Err(Cow::Borrowed("invalid number"));
        }
        return parse_i64(digits).map(FieldValue::Integer).ok_or_else(|| {
            let d = String::from_utf8_lossy(digits);
            Cow::Owned(format!(
                "unable to parse integer {d}: strconv.ParseInt: parsing \"{d}\": value out of range"
            ))
        });
    }
    if last == b'u' {
        let digits = &raw[..raw.len() - 1];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Cow::Borrowed("invalid number"));
        }
        return parse_u64(digits).map(FieldValue::Unsigned).ok_or_else(|| {
            let d = String::from_utf8_lossy(digits);
            Cow::Owned(format!(
                "unable to parse unsigned {d}: strconv.ParseUint: parsing \"{d}\": value out of range"
            ))
        });
    }
    if let Some(v) = parse_simple_float(raw) {
        return Ok(FieldValue::Float(v));
    }
    if !is_float_text(raw) {
        return Err(Cow::Borrowed("invalid number"));
    }
    // SAFETY: is_float_text admits only ASCII digits, signs, '.', 'e' and 'E'.
    let text = unsafe { std::str::from_utf8_unchecked(raw) };
    let v: f64 = text.parse().map_err(|_| Cow::Borrowed("invalid number"))?;
    if !v.is_finite() {
        // Finite text that overflows f64, as strconv.ParseFloat's range error.
        return Err(Cow::Borrowed("invalid float"));
    }
    Ok(FieldValue::Float(v))
}

/// Clinger's fast path for the common case (`-?digits[.digits]`, at most 15 digits, no
/// exponent): the digits as an exact integer divided by an exact power of ten is one
/// correctly rounded IEEE division, so the result equals the full parser's. Anything
/// else returns `None` and takes the full path.
#[inline]
fn parse_simple_float(raw: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, text) = match raw.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (mut mantissa, mut digits, mut fraction) = (0u64, 0usize, 0usize);
    let mut seen_dot = false;
    for &b in text {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + (b - b'0') as u64;
                digits += 1;
                fraction += seen_dot as usize;
                if digits > 15 {
                    return None;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    let value = mantissa as f64 / POW10[fraction];
    Some(if negative { -value } else { value })
}

fn is_integer_text(d: &[u8]) -> bool {
    let digits = d.strip_prefix(b"-").unwrap_or(d);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// `-?digits[.digits][e[+-]digits]`, also `.5` and `5.` as InfluxDB accepts.
fn is_float_text(raw: &[u8]) -> bool {
    let s = raw.strip_prefix(b"-").unwrap_or(raw);
    let mut i = 0;
    let mut mantissa_digits = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
        mantissa_digits += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
            mantissa_digits += 1;
        }
    }
    if mantissa_digits == 0 {
        return false;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == s.len()
}

fn parse_i64(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, raw),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        // Leading zeros are fine; stop as soon as the value cannot fit.
        v = v * 10 + (b - b'0') as i128;
        if v > u64::MAX as i128 {
            return None;
        }
    }
    if neg {
        v = -v;
    }
    i64::try_from(v).ok()
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    let mut v: u128 = 0;
    for &b in digits {
        v = v * 10 + (b - b'0') as u128;
        if v > u64::MAX as u128 {
            return None;
        }
    }
    u64::try_from(v).ok()
}

/// An owned point, for encoding and for tests: names unescaped.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedPoint {
    pub measurement: Vec<u8>,
    pub tags: Vec<(Vec<u8>, Vec<u8>)>,
    pub fields: Vec<(Vec<u8>, OwnedValue)>,
    pub timestamp: Option<i64>,
}

/// An owned field value.
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(Vec<u8>),
}

impl OwnedValue {
    pub fn field_type(&self) -> FieldType {
        match self {
            OwnedValue::Float(_) => FieldType::Float,
            OwnedValue::Integer(_) => FieldType::Integer,
            OwnedValue::Unsigned(_) => FieldType::Unsigned,
            OwnedValue::Boolean(_) => FieldType::Boolean,
            OwnedValue::String(_) => FieldType::String,
        }
    }
}

impl ParsedBody {
    /// Decodes a parsed point into owned, unescaped parts (tags in canonical order).
    pub fn to_owned_point(&self, p: &PointRef) -> OwnedPoint {
        OwnedPoint {
            measurement: unescape(self.bytes(&p.measurement)),
            tags: self
                .point_tags(p)
                .iter()
                .map(|t| (unescape(self.bytes(&t.key)), unescape(self.bytes(&t.value))))
                .collect(),
            fields: self
                .point_fields(p)
                .iter()
                .map(|f| (unescape(self.bytes(&f.key)), self.owned_value(&f.value)))
                .collect(),
            timestamp: Some(p.timestamp),
        }
    }

    pub fn owned_value(&self, v: &FieldValue) -> OwnedValue {
        match v {
            FieldValue::Float(x) => OwnedValue::Float(*x),
            FieldValue::Integer(x) => OwnedValue::Integer(*x),
            FieldValue::Unsigned(x) => OwnedValue::Unsigned(*x),
            FieldValue::Boolean(x) => OwnedValue::Boolean(*x),
            FieldValue::String { span, escaped } => {
                OwnedValue::String(self.string_value(span, *escaped))
            }
        }
    }
}

/// Encodes a point as one line of line protocol (no trailing newline).
pub fn encode(p: &OwnedPoint, out: &mut Vec<u8>) {
    escape_into(&p.measurement, b", ", out);
    for (k, v) in &p.tags {
        out.push(b',');
        escape_into(k, b",= ", out);
        out.push(b'=');
        escape_into(v, b",= ", out);
    }
    out.push(b' ');
    for (i, (k, v)) in p.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escape_into(k, b",= ", out);
        out.push(b'=');
        encode_value(v, out);
    }
    if let Some(ts) = p.timestamp {
        out.push(b' ');
        out.extend_from_slice(ts.to_string().as_bytes());
    }
}

/// Encodes one field value in line-protocol syntax.
pub fn encode_value(v: &OwnedValue, out: &mut Vec<u8>) {
    match v {
        OwnedValue::Float(x) => {
            // `{:?}` prints the shortest text that round-trips, with a `.0` for integers.
            out.extend_from_slice(format!("{x:?}").as_bytes())
        }
        OwnedValue::Integer(x) => {
            out.extend_from_slice(x.to_string().as_bytes());
            out.push(b'i');
        }
        OwnedValue::Unsigned(x) => {
            out.extend_from_slice(x.to_string().as_bytes());
            out.push(b'u');
        }
        OwnedValue::Boolean(x) => out.extend_from_slice(if *x { b"true" } else { b"false" }),
        OwnedValue::String(s) => {
            out.push(b'"');
            for &b in s {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
        }
    }
}

#[cfg(test)]
mod tests;

/// The FNV-1a series hashes of one body, computed once per distinct series. FNV reads
/// a byte at a time (~150 bytes for a TSBS series key), and it was 12% of the
/// coordinating node's CPU under the cluster ingest load when computed per point; a
/// 5000-line TSBS batch has only 100 series. Keyed by the parser's fast key hash, each
/// hit confirmed by comparing the series keys.
#[derive(Default)]
pub struct SeriesHashes(HashMap<u64, (u32, u64), BuildHasherDefault<IdentityHasher>>);

impl SeriesHashes {
    /// The series hash of point `i` of `body`.
    pub fn of(&mut self, body: &ParsedBody, i: usize) -> u64 {
        let point = &body.points[i];
        match self.0.entry(point.key_hash) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let (first, hash) = *e.get();
                if body.series_key(&body.points[first as usize]) == body.series_key(point) {
                    hash
                } else {
                    body.series_hash(point)
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let hash = body.series_hash(point);
                e.insert((i as u32, hash));
                hash
            }
        }
    }
}
