//! Data files: the immutable, compressed files a partition's head is flushed into
//! (DESIGN section 6).
//!
//! ```text
//! header   "SCDATA01"
//! blocks   per (series, field), up to BLOCK_VALUES values each:
//!          crc32c u32 LE (of what follows) | times length u32 LE | times payload | values payload
//! index    per series: key | fields; per field: name | type | blocks; per block:
//!          offset | length | count | min time | max time - min time | stats
//!          (numbers: min, max, sum, 8 bytes each; none for booleans and strings)
//!          (lengths and integers as LEB128 varints, times zig-zag)
//! footer   index offset u64 | index length u64 | index crc32c u32 |
//!          footer crc32c u32 (of the footer's other 44 bytes) |
//!          WAL boundary u64 | file number u64 | "SCDATA01"          (48 bytes)
//! ```
//!
//! A payload is self-describing (its first byte names its codec, [`super::codec`]),
//! so each block's codec is chosen by trial when it is written. The WAL boundary is the
//! first WAL segment this file does not cover: every record in an earlier segment is
//! in this file or an older one.
//!
//! Opening a file reads only its footer and index; blocks are read when a query asks
//! for them. Nothing read from disk is trusted: every length is checked against the
//! file, and a bad crc or footer is an error (the caller moves the file aside), never
//! a panic.

use super::codec::{self, CodecError};
use super::Value;
use crate::lineproto::FieldType;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The first and last 8 bytes of every data file.
pub const MAGIC: &[u8; 8] = b"SCDATA01";
pub const FOOTER_BYTES: usize = 48;
/// Values per block at most (InfluxDB's TSM default); a block decodes in microseconds.
pub const BLOCK_VALUES: usize = 1000;
/// Values per block of a cold shard's full rewrite (fewer, larger blocks compress
/// better and answer whole-block statistics for longer ranges).
pub const COLD_BLOCK_VALUES: usize = 4000;
/// The most values a block may claim (a larger count is corrupt).
pub const MAX_BLOCK_VALUES: usize = 1 << 16;
/// A data file's index is read whole at open; a larger one is refused as corrupt.
const MAX_INDEX_BYTES: u64 = 1 << 31;

/// Failures reading a data file.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("cannot read data file {path}: {message}")]
    Io { path: String, message: String },
    #[error("data file {path} is corrupt ({what}); it is moved aside and its data is read from the WAL if the WAL still holds it")]
    Corrupt { path: String, what: String },
    #[error("data file {path}: block at {offset} does not decode: {source}")]
    Codec {
        path: String,
        offset: u64,
        #[source]
        source: CodecError,
    },
}

/// The values of one column, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Float(Vec<f64>),
    Integer(Vec<i64>),
    Unsigned(Vec<u64>),
    Boolean(Vec<bool>),
    String(Vec<Vec<u8>>),
}

impl Column {
    pub fn new(t: FieldType) -> Column {
        match t {
            FieldType::Float => Column::Float(Vec::new()),
            FieldType::Integer => Column::Integer(Vec::new()),
            FieldType::Unsigned => Column::Unsigned(Vec::new()),
            FieldType::Boolean => Column::Boolean(Vec::new()),
            FieldType::String => Column::String(Vec::new()),
        }
    }

    pub fn field_type(&self) -> FieldType {
        match self {
            Column::Float(_) => FieldType::Float,
            Column::Integer(_) => FieldType::Integer,
            Column::Unsigned(_) => FieldType::Unsigned,
            Column::Boolean(_) => FieldType::Boolean,
            Column::String(_) => FieldType::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Float(v) => v.len(),
            Column::Integer(v) => v.len(),
            Column::Unsigned(v) => v.len(),
            Column::Boolean(v) => v.len(),
            Column::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A column of type `t` from engine values (values of another type are left out:
    /// one type per field and shard, so there are none).
    pub fn from_values(t: FieldType, values: Vec<Value>) -> Column {
        let mut c = Column::new(t);
        for v in values {
            match (&mut c, v) {
                (Column::Float(c), Value::Float(x)) => c.push(x),
                (Column::Integer(c), Value::Integer(x)) => c.push(x),
                (Column::Unsigned(c), Value::Unsigned(x)) => c.push(x),
                (Column::Boolean(c), Value::Boolean(x)) => c.push(x),
                (Column::String(c), Value::String(x)) => c.push(x),
                _ => {}
            }
        }
        c
    }

    /// The values at positions `keep`, in that order.
    pub fn pick(&self, keep: &[usize]) -> Column {
        match self {
            Column::Float(v) => Column::Float(keep.iter().map(|&i| v[i]).collect()),
            Column::Integer(v) => Column::Integer(keep.iter().map(|&i| v[i]).collect()),
            Column::Unsigned(v) => Column::Unsigned(keep.iter().map(|&i| v[i]).collect()),
            Column::Boolean(v) => Column::Boolean(keep.iter().map(|&i| v[i]).collect()),
            Column::String(v) => Column::String(keep.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    /// Heap bytes of the values.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Column::Float(v) => v.len() * 8,
            Column::Integer(v) => v.len() * 8,
            Column::Unsigned(v) => v.len() * 8,
            Column::Boolean(v) => v.len(),
            Column::String(v) => v.iter().map(|s| s.len() + 24).sum(),
        }
    }

    /// Value `i` as the engine's [`Value`] (`i < len`).
    pub fn value(&self, i: usize) -> Value {
        match self {
            Column::Float(v) => Value::Float(v[i]),
            Column::Integer(v) => Value::Integer(v[i]),
            Column::Unsigned(v) => Value::Unsigned(v[i]),
            Column::Boolean(v) => Value::Boolean(v[i]),
            Column::String(v) => Value::String(v[i].clone()),
        }
    }

    /// The values as the engine's [`Value`]s.
    pub fn into_values(self) -> Vec<Value> {
        match self {
            Column::Float(v) => v.into_iter().map(Value::Float).collect(),
            Column::Integer(v) => v.into_iter().map(Value::Integer).collect(),
            Column::Unsigned(v) => v.into_iter().map(Value::Unsigned).collect(),
            Column::Boolean(v) => v.into_iter().map(Value::Boolean).collect(),
            Column::String(v) => v.into_iter().map(Value::String).collect(),
        }
    }

    fn encode(&self, from: usize, to: usize, out: &mut Vec<u8>) {
        match self {
            Column::Float(v) => codec::encode_floats(&v[from..to], out),
            Column::Integer(v) => codec::encode_integers(&v[from..to], out),
            Column::Unsigned(v) => codec::encode_unsigned(&v[from..to], out),
            Column::Boolean(v) => codec::encode_booleans(&v[from..to], out),
            Column::String(v) => codec::encode_strings(v[from..to].iter().map(|s| &s[..]), out),
        }
    }

    fn stats(&self, from: usize, to: usize) -> Stats {
        match self {
            Column::Float(v) => {
                let v = &v[from..to];
                // In the order reads compare floats (total: -0.0 < 0.0), and the sum
                // as a read adds the values, oldest first from 0.0 (aggregates use
                // it in place of the values).
                Stats::Float {
                    min: v.iter().copied().min_by(f64::total_cmp).unwrap_or(0.0),
                    max: v.iter().copied().max_by(f64::total_cmp).unwrap_or(0.0),
                    sum: v.iter().fold(0.0, |a, &x| a + x),
                }
            }
            Column::Integer(v) => {
                let v = &v[from..to];
                Stats::Integer {
                    min: v.iter().copied().min().unwrap_or(0),
                    max: v.iter().copied().max().unwrap_or(0),
                    sum: v.iter().fold(0i64, |a, &x| a.wrapping_add(x)),
                }
            }
            Column::Unsigned(v) => {
                let v = &v[from..to];
                Stats::Unsigned {
                    min: v.iter().copied().min().unwrap_or(0),
                    max: v.iter().copied().max().unwrap_or(0),
                    sum: v.iter().fold(0u64, |a, &x| a.wrapping_add(x)),
                }
            }
            Column::Boolean(_) | Column::String(_) => Stats::None,
        }
    }
}

/// Statistics of a block's values (sums wrap as InfluxDB's integer sums do).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stats {
    None,
    Float { min: f64, max: f64, sum: f64 },
    Integer { min: i64, max: i64, sum: i64 },
    Unsigned { min: u64, max: u64, sum: u64 },
}

/// Where a block is and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockMeta {
    pub offset: u64,
    pub len: u32,
    pub count: u32,
    pub min_ns: i64,
    pub max_ns: i64,
    pub stats: Stats,
}

/// One field of one series in a file: its blocks in time order, not overlapping.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldMeta {
    /// Field key, escaped as in line protocol.
    pub name: Box<[u8]>,
    pub field_type: FieldType,
    pub blocks: Vec<BlockMeta>,
}

/// One series in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesMeta {
    /// Series key, escaped as in line protocol.
    pub key: Box<[u8]>,
    pub fields: Vec<FieldMeta>,
}

/// What a file's footer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    pub index_offset: u64,
    pub index_len: u64,
    pub index_crc: u32,
    pub wal_boundary: u64,
    pub number: u64,
}

/// Builds a data file's image, series by series (in key order). The bytes built so
/// far can be taken at any time ([`FileBuilder::take_bytes`]) to be written while the
/// rest is built, so a large file never sits in memory whole; only its index does.
pub struct FileBuilder {
    buf: Vec<u8>,
    /// Bytes already taken (the offset of `buf[0]` in the file).
    taken: u64,
    series: Vec<SeriesMeta>,
    number: u64,
    block_values: usize,
}

impl FileBuilder {
    pub fn new(number: u64) -> FileBuilder {
        FileBuilder::with_block_values(number, BLOCK_VALUES)
    }

    /// A builder whose blocks hold up to `block_values` values (a cold rewrite makes
    /// larger ones).
    pub fn with_block_values(number: u64, block_values: usize) -> FileBuilder {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(MAGIC);
        FileBuilder {
            buf,
            taken: 0,
            series: Vec::new(),
            number,
            block_values: block_values.clamp(1, MAX_BLOCK_VALUES),
        }
    }

    /// The bytes built since the last call, to be written in order.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        self.taken += self.buf.len() as u64;
        std::mem::take(&mut self.buf)
    }

    /// Bytes built and not taken yet.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of the file so far (taken or not).
    pub fn len(&self) -> u64 {
        self.taken + self.buf.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Series added so far.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Adds a series: its columns as (escaped field key, sorted unique times, values).
    /// Columns with no value are left out; a series with none is not added.
    pub fn add_series<'c>(
        &mut self,
        key: &[u8],
        columns: impl IntoIterator<Item = (&'c [u8], &'c [i64], &'c Column)>,
    ) {
        let mut fields = Vec::new();
        for (name, times, values) in columns {
            debug_assert_eq!(times.len(), values.len());
            if times.is_empty() {
                continue;
            }
            let mut blocks = Vec::with_capacity(times.len().div_ceil(self.block_values));
            let mut from = 0;
            while from < times.len() {
                let to = (from + self.block_values).min(times.len());
                blocks.push(self.add_block(&times[from..to], values, from, to));
                from = to;
            }
            fields.push(FieldMeta {
                name: name.into(),
                field_type: values.field_type(),
                blocks,
            });
        }
        if !fields.is_empty() {
            self.series.push(SeriesMeta {
                key: key.into(),
                fields,
            });
        }
    }

    fn add_block(&mut self, times: &[i64], values: &Column, from: usize, to: usize) -> BlockMeta {
        let start = self.buf.len();
        let offset = self.taken + start as u64;
        encode_block(times, values, from, to, &mut self.buf);
        BlockMeta {
            offset,
            len: (self.buf.len() - start) as u32,
            count: times.len() as u32,
            min_ns: times[0],
            max_ns: times[times.len() - 1],
            stats: values.stats(from, to),
        }
    }

    /// The rest of the image (index and footer appended; all of it if nothing was
    /// taken), the index, and the footer.
    pub fn finish(mut self, wal_boundary: u64) -> (Vec<u8>, Vec<SeriesMeta>, Footer) {
        let index_start = self.buf.len();
        let index_offset = self.taken + index_start as u64;
        encode_index(&self.series, &mut self.buf);
        let index_len = (self.buf.len() - index_start) as u64;
        let index_crc = crc32c::crc32c(&self.buf[index_start..]);
        let footer = Footer {
            index_offset,
            index_len,
            index_crc,
            wal_boundary,
            number: self.number,
        };
        self.buf.extend_from_slice(&encode_footer(&footer));
        (self.buf, self.series, footer)
    }
}

fn encode_footer(f: &Footer) -> [u8; FOOTER_BYTES] {
    let mut out = [0u8; FOOTER_BYTES];
    out[0..8].copy_from_slice(&f.index_offset.to_le_bytes());
    out[8..16].copy_from_slice(&f.index_len.to_le_bytes());
    out[16..20].copy_from_slice(&f.index_crc.to_le_bytes());
    out[24..32].copy_from_slice(&f.wal_boundary.to_le_bytes());
    out[32..40].copy_from_slice(&f.number.to_le_bytes());
    out[40..48].copy_from_slice(MAGIC);
    let crc = footer_crc(&out);
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The footer's own crc32c: of every byte but its crc field.
fn footer_crc(b: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&b[0..20]), &b[24..FOOTER_BYTES])
}

/// Parses a footer; `None` when it is not one (magic, or its crc).
pub fn decode_footer(b: &[u8]) -> Option<Footer> {
    if b.len() != FOOTER_BYTES || &b[40..48] != MAGIC {
        return None;
    }
    if u32::from_le_bytes(b[20..24].try_into().expect("4 bytes")) != footer_crc(b) {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Some(Footer {
        index_offset: u64_at(0),
        index_len: u64_at(8),
        index_crc: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
        wal_boundary: u64_at(24),
        number: u64_at(32),
    })
}

fn type_code(t: FieldType) -> u8 {
    match t {
        FieldType::Float => 1,
        FieldType::Integer => 2,
        FieldType::Unsigned => 3,
        FieldType::Boolean => 4,
        FieldType::String => 5,
    }
}

fn type_of(code: u8) -> Option<FieldType> {
    Some(match code {
        1 => FieldType::Float,
        2 => FieldType::Integer,
        3 => FieldType::Unsigned,
        4 => FieldType::Boolean,
        5 => FieldType::String,
        _ => return None,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

fn encode_index(series: &[SeriesMeta], out: &mut Vec<u8>) {
    put_varint(out, series.len() as u64);
    for s in series {
        put_varint(out, s.key.len() as u64);
        out.extend_from_slice(&s.key);
        put_varint(out, s.fields.len() as u64);
        for f in &s.fields {
            put_varint(out, f.name.len() as u64);
            out.extend_from_slice(&f.name);
            out.push(type_code(f.field_type));
            put_varint(out, f.blocks.len() as u64);
            for b in &f.blocks {
                put_varint(out, b.offset);
                put_varint(out, b.len as u64);
                put_varint(out, b.count as u64);
                put_varint(out, zigzag(b.min_ns));
                put_varint(out, b.max_ns.wrapping_sub(b.min_ns) as u64);
                match b.stats {
                    Stats::None => {}
                    Stats::Float { min, max, sum } => {
                        for x in [min, max, sum] {
                            out.extend_from_slice(&x.to_bits().to_le_bytes());
                        }
                    }
                    Stats::Integer { min, max, sum } => {
                        for x in [min, max, sum] {
                            out.extend_from_slice(&x.to_le_bytes());
                        }
                    }
                    Stats::Unsigned { min, max, sum } => {
                        for x in [min, max, sum] {
                            out.extend_from_slice(&x.to_le_bytes());
                        }
                    }
                }
            }
        }
    }
}

/// A bounds-checked reader over bytes from disk.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.at.checked_add(n)?;
        let out = self.b.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// A count of items that each take at least `min_bytes`: refused when the rest
    /// cannot hold them (so a corrupt count never sizes an allocation).
    fn count(&mut self, min_bytes: usize) -> Option<usize> {
        let n = usize::try_from(self.varint()?).ok()?;
        (n.checked_mul(min_bytes)? <= self.b.len() - self.at).then_some(n)
    }
}

/// Parses an index image; `file_len` bounds block offsets. `None` when it is corrupt.
pub fn decode_index(b: &[u8], file_len: u64) -> Option<Vec<SeriesMeta>> {
    let mut r = Reader { b, at: 0 };
    let n = r.count(3)?;
    let mut series = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.varint()?;
        let key: Box<[u8]> = r.bytes(len)?.into();
        let nf = r.count(3)?;
        let mut fields = Vec::with_capacity(nf);
        for _ in 0..nf {
            let len = r.varint()?;
            let name: Box<[u8]> = r.bytes(len)?.into();
            let field_type = type_of(*r.bytes(1)?.first()?)?;
            let nb = r.count(5)?;
            let mut blocks = Vec::with_capacity(nb);
            let mut last_max: Option<i64> = None;
            for _ in 0..nb {
                let offset = r.varint()?;
                let len = u32::try_from(r.varint()?).ok()?;
                let count = u32::try_from(r.varint()?).ok()?;
                let min_ns = unzigzag(r.varint()?);
                let max_ns = min_ns.checked_add_unsigned(r.varint()?)?;
                let stats = match field_type {
                    FieldType::Float => Stats::Float {
                        min: f64::from_bits(r.u64()?),
                        max: f64::from_bits(r.u64()?),
                        sum: f64::from_bits(r.u64()?),
                    },
                    FieldType::Integer => Stats::Integer {
                        min: r.u64()? as i64,
                        max: r.u64()? as i64,
                        sum: r.u64()? as i64,
                    },
                    FieldType::Unsigned => Stats::Unsigned {
                        min: r.u64()?,
                        max: r.u64()?,
                        sum: r.u64()?,
                    },
                    FieldType::Boolean | FieldType::String => Stats::None,
                };
                let end = offset.checked_add(len as u64)?;
                let sane = count > 0
                    && count as usize <= MAX_BLOCK_VALUES
                    && len >= 8
                    && offset >= MAGIC.len() as u64
                    && end <= file_len
                    && last_max.is_none_or(|m| m < min_ns);
                if !sane {
                    return None;
                }
                last_max = Some(max_ns);
                blocks.push(BlockMeta {
                    offset,
                    len,
                    count,
                    min_ns,
                    max_ns,
                    stats,
                });
            }
            fields.push(FieldMeta {
                name,
                field_type,
                blocks,
            });
        }
        series.push(SeriesMeta { key, fields });
    }
    (r.at == b.len()).then_some(series)
}

/// Decodes a block image (crc checked) into times and values of `field_type`.
pub fn decode_block(
    b: &[u8],
    count: usize,
    field_type: FieldType,
) -> Result<(Vec<i64>, Column), BlockError> {
    if b.len() < 8 {
        return Err(BlockError::Corrupt("shorter than its header"));
    }
    let crc = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&b[4..]) != crc {
        return Err(BlockError::Corrupt("crc mismatch"));
    }
    let ts_len = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as usize;
    let rest = &b[8..];
    if ts_len > rest.len() {
        return Err(BlockError::Corrupt("times longer than the block"));
    }
    let (ts, vs) = rest.split_at(ts_len);
    let mut times = Vec::new();
    codec::decode_times(ts, count, &mut times)?;
    macro_rules! values {
        ($decode:path, $variant:ident) => {{
            let mut v = Vec::new();
            $decode(vs, count, &mut v)?;
            Column::$variant(v)
        }};
    }
    let column = match field_type {
        FieldType::Float => values!(codec::decode_floats, Float),
        FieldType::Integer => values!(codec::decode_integers, Integer),
        FieldType::Unsigned => values!(codec::decode_unsigned, Unsigned),
        FieldType::Boolean => values!(codec::decode_booleans, Boolean),
        FieldType::String => values!(codec::decode_strings, String),
    };
    Ok((times, column))
}

/// Appends the block image of `times` and `values[from..to]` (the same length) to
/// `out`: crc32c | times length | times payload | values payload (see the module
/// documentation; [`decode_block`] reads it back).
pub fn encode_block(times: &[i64], values: &Column, from: usize, to: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    let ts_start = out.len();
    codec::encode_times(times, out);
    let ts_len = (out.len() - ts_start) as u32;
    values.encode(from, to, out);
    out[start + 4..start + 8].copy_from_slice(&ts_len.to_le_bytes());
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Why a block image does not decode.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BlockError {
    #[error("{0}")]
    Corrupt(&'static str),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// An open data file: its index in memory, its blocks on disk.
#[derive(Debug)]
pub struct DataFile {
    pub path: PathBuf,
    pub footer: Footer,
    pub series: Vec<SeriesMeta>,
    /// Bytes on disk.
    pub size: u64,
    values: u64,
    /// Unique in this process: the block cache's key for the file.
    uid: u64,
    file: std::fs::File,
    /// The same file opened with O_DIRECT for block reads (`None`: the filesystem
    /// refuses it, and blocks are read through the page cache).
    direct: Option<std::fs::File>,
}

/// The next [`DataFile::uid`].
static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_uid() -> u64 {
    NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `path` opened for reads with O_DIRECT, if the filesystem allows it.
fn open_direct(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

/// Alignment of O_DIRECT reads (a multiple of every device's logical block size).
const DIRECT_ALIGN: usize = 4096;

/// Reads `len` bytes at `offset` with O_DIRECT: the aligned span around them into an
/// aligned buffer.
fn read_direct(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let align = DIRECT_ALIGN as u64;
    let start = offset & !(align - 1);
    let skip = (offset - start) as usize;
    let need = skip + len;
    let span = need.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
    let mut buf = vec![0u8; span + DIRECT_ALIGN];
    let shift = buf.as_ptr().align_offset(DIRECT_ALIGN);
    let region = &mut buf[shift..shift + span];
    let mut got = 0;
    while got < need {
        // Only the read that reaches the end of the file comes back short.
        let n = file.read_at(&mut region[got..], start + got as u64)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(region[skip..need].to_vec())
}

impl DataFile {
    /// Opens `path`: reads and checks its footer and index.
    pub fn open(path: &Path) -> Result<DataFile, FileError> {
        let io = |e: std::io::Error| FileError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let corrupt = |what: &str| FileError::Corrupt {
            path: path.display().to_string(),
            what: what.to_string(),
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size < (MAGIC.len() + FOOTER_BYTES) as u64 {
            return Err(corrupt("shorter than a header and a footer"));
        }
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        if &head != MAGIC {
            return Err(corrupt("no data file header"));
        }
        let mut fb = [0u8; FOOTER_BYTES];
        file.read_exact_at(&mut fb, size - FOOTER_BYTES as u64)
            .map_err(io)?;
        let footer = decode_footer(&fb).ok_or_else(|| corrupt("bad footer"))?;
        let index_end = footer.index_offset.checked_add(footer.index_len);
        if footer.index_offset < MAGIC.len() as u64
            || index_end != Some(size - FOOTER_BYTES as u64)
            || footer.index_len > MAX_INDEX_BYTES
        {
            return Err(corrupt("footer points outside the file"));
        }
        let mut index = vec![0u8; footer.index_len as usize];
        file.read_exact_at(&mut index, footer.index_offset)
            .map_err(io)?;
        if crc32c::crc32c(&index) != footer.index_crc {
            return Err(corrupt("index crc mismatch"));
        }
        let series =
            decode_index(&index, footer.index_offset).ok_or_else(|| corrupt("bad index"))?;
        Ok(DataFile {
            path: path.to_path_buf(),
            footer,
            values: count_values(&series),
            series,
            size,
            uid: next_uid(),
            file,
            direct: open_direct(path),
        })
    }

    /// A file just written from `parts` of its image (no need to read its index back).
    pub fn from_parts(
        path: PathBuf,
        footer: Footer,
        series: Vec<SeriesMeta>,
        size: u64,
        file: std::fs::File,
    ) -> DataFile {
        DataFile {
            direct: open_direct(&path),
            path,
            footer,
            values: count_values(&series),
            series,
            size,
            uid: next_uid(),
            file,
        }
    }

    /// Reads one block's bytes, undecoded (for `shardcore inspect`).
    pub fn read_block_bytes(&self, block: &BlockMeta) -> Result<Vec<u8>, FileError> {
        let io = |e: std::io::Error| FileError::Io {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(direct) = &self.direct {
            match read_direct(direct, block.offset, block.len as usize) {
                Ok(buf) => return Ok(buf),
                // A device whose blocks are larger than DIRECT_ALIGN: read buffered.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(io(e)),
            }
        }
        let mut buf = vec![0u8; block.len as usize];
        self.file
            .read_exact_at(&mut buf, block.offset)
            .map_err(io)?;
        Ok(buf)
    }

    /// The file's id in this process (see [`super::blocks`]).
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// Whether blocks are read with O_DIRECT.
    pub fn reads_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The codec tags of a block image: (times, values); `None` when too short.
    pub fn block_codecs(image: &[u8]) -> Option<(u8, u8)> {
        let ts_len = u32::from_le_bytes(image.get(4..8)?.try_into().ok()?) as usize;
        Some((*image.get(8)?, *image.get(8usize.checked_add(ts_len)?)?))
    }

    /// Reads and decodes one block.
    pub fn read_block(
        &self,
        block: &BlockMeta,
        field_type: FieldType,
    ) -> Result<(Vec<i64>, Column), FileError> {
        let buf = self.read_block_bytes(block)?;
        let (times, column) =
            decode_block(&buf, block.count as usize, field_type).map_err(|e| match e {
                BlockError::Corrupt(what) => FileError::Corrupt {
                    path: self.path.display().to_string(),
                    what: format!("block at {}: {what}", block.offset),
                },
                BlockError::Codec(source) => FileError::Codec {
                    path: self.path.display().to_string(),
                    offset: block.offset,
                    source,
                },
            })?;
        let sane = times.len() == block.count as usize
            && times.first() == Some(&block.min_ns)
            && times.last() == Some(&block.max_ns)
            && times.windows(2).all(|w| w[0] < w[1]);
        if !sane {
            return Err(FileError::Corrupt {
                path: self.path.display().to_string(),
                what: format!("block at {}: times disagree with the index", block.offset),
            });
        }
        Ok((times, column))
    }

    /// Values in the file (counted once, when it was opened or written).
    pub fn values(&self) -> u64 {
        self.values
    }
}

/// Values of the blocks of `series`.
fn count_values(series: &[SeriesMeta]) -> u64 {
    series
        .iter()
        .flat_map(|s| &s.fields)
        .flat_map(|f| &f.blocks)
        .map(|b| b.count as u64)
        .sum()
}

/// The path of data file `number` in a partition's `data` directory.
pub fn file_path(data_dir: &Path, number: u64) -> PathBuf {
    data_dir.join(format!("{number:016x}.scd"))
}

/// The number of a data file name (`<16 hex>.scd`).
pub fn file_number(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".scd")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> (Vec<u8>, Vec<SeriesMeta>, Footer) {
        let mut b = FileBuilder::new(7);
        let times: Vec<i64> = (0..2500)
            .map(|i| 1_600_000_000_000_000_000 + i * 10_000_000_000)
            .collect();
        let floats = Column::Float((0..2500).map(|i| (i % 100) as f64 / 10.0).collect());
        let ints = Column::Integer((0..2500).map(|i| i * 3 - 7).collect());
        b.add_series(
            b"cpu,host=a",
            [
                (&b"usage"[..], &times[..], &floats),
                (&b"n"[..], &times[..], &ints),
            ],
        );
        let strs = Column::String(vec![b"ok".to_vec(), b"".to_vec()]);
        let bools = Column::Boolean(vec![true, false]);
        b.add_series(
            b"st,host=b",
            [
                (&b"s"[..], &[-5i64, 5][..], &strs),
                (&b"b"[..], &[i64::MIN, i64::MAX][..], &bools),
            ],
        );
        b.add_series(b"empty", []);
        b.finish(42)
    }

    #[test]
    fn direct_reads_return_the_same_bytes_as_buffered_ones_anywhere_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (image, series, _) = sample();
        let path = file_path(dir.path(), 8);
        std::fs::write(&path, &image).unwrap();
        let file = DataFile::open(&path).unwrap();
        if file.direct.is_none() {
            eprintln!("skipped: {} refuses O_DIRECT", dir.path().display());
            return;
        }
        assert!(file.reads_direct());
        for b in series
            .iter()
            .flat_map(|s| &s.fields)
            .flat_map(|f| &f.blocks)
        {
            let want = &image[b.offset as usize..(b.offset + b.len as u64) as usize];
            assert_eq!(file.read_block_bytes(b).unwrap(), want);
        }
        // Spans that cross alignment edges and end at the end of the file.
        let bytes: Vec<u8> = (0..3 * 4096 + 123u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, &bytes).unwrap();
        let direct = open_direct(&raw).unwrap();
        let n = bytes.len();
        for (offset, len) in [(0, 1), (4095, 2), (4096, 4096), (n - 5, 5), (1, n - 1)] {
            let got = read_direct(&direct, offset as u64, len).unwrap();
            assert_eq!(got, &bytes[offset..offset + len], "{offset}+{len}");
        }
        assert!(
            read_direct(&direct, (n - 5) as u64, 6).is_err(),
            "past the end"
        );
    }

    #[test]
    fn a_file_reads_back_exactly_and_checks_its_crcs() {
        let dir = tempfile::tempdir().unwrap();
        let (image, series, footer) = sample();
        assert_eq!(series.len(), 2, "a series with no values is left out");
        assert_eq!(series[0].fields[0].blocks.len(), 3, "1000 values per block");
        let path = file_path(dir.path(), 7);
        std::fs::write(&path, &image).unwrap();
        let file = DataFile::open(&path).unwrap();
        assert_eq!(file.footer, footer);
        assert_eq!(file.footer.wal_boundary, 42);
        assert_eq!(file.series, series);
        assert_eq!(file.values(), 5004);
        let f = &file.series[0].fields[0];
        let mut all = Vec::new();
        for b in &f.blocks {
            let (times, col) = file.read_block(b, f.field_type).unwrap();
            assert_eq!(times.len(), b.count as usize);
            if let Column::Float(v) = col {
                all.extend(v);
            }
        }
        assert_eq!(all.len(), 2500);
        assert_eq!(all[123], 2.3);
        assert_eq!(
            f.blocks[0].stats,
            Stats::Float {
                min: 0.0,
                max: 9.9,
                sum: (0..1000).map(|i| (i % 100) as f64 / 10.0).sum()
            }
        );
        let s = &file.series[1];
        let (times, col) = file
            .read_block(&s.fields[1].blocks[0], FieldType::Boolean)
            .unwrap();
        assert_eq!(
            (times, col),
            (vec![i64::MIN, i64::MAX], Column::Boolean(vec![true, false]))
        );
        // A flipped bit in a block: that block's read fails, nothing panics.
        let mut bad = image.clone();
        bad[f.blocks[1].offset as usize + 20] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let file = DataFile::open(&path).unwrap();
        assert!(matches!(
            file.read_block(&f.blocks[1], f.field_type),
            Err(FileError::Corrupt { .. })
        ));
        assert!(file.read_block(&f.blocks[0], f.field_type).is_ok());
        // A flipped bit in the index or the footer: the file does not open.
        for at in [
            footer.index_offset as usize + 3,
            image.len() - 10,
            image.len() - 45,
            2,
        ] {
            let mut bad = image.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(DataFile::open(&path), Err(FileError::Corrupt { .. })),
                "byte {at}"
            );
        }
        std::fs::write(&path, &image[..image.len() - 1]).unwrap();
        assert!(DataFile::open(&path).is_err());
        assert_eq!(file_number("00000000000000ff.scd"), Some(255));
        assert_eq!(file_number("ff.scd"), None);
    }

    #[test]
    fn a_file_built_in_pieces_is_the_same_file() {
        let (whole, _, _) = sample();
        let mut b = FileBuilder::new(7);
        let times: Vec<i64> = (0..2500)
            .map(|i| 1_600_000_000_000_000_000 + i * 10_000_000_000)
            .collect();
        let floats = Column::Float((0..2500).map(|i| (i % 100) as f64 / 10.0).collect());
        let ints = Column::Integer((0..2500).map(|i| i * 3 - 7).collect());
        let mut pieces = b.take_bytes();
        b.add_series(
            b"cpu,host=a",
            [
                (&b"usage"[..], &times[..], &floats),
                (&b"n"[..], &times[..], &ints),
            ],
        );
        pieces.extend(b.take_bytes());
        let strs = Column::String(vec![b"ok".to_vec(), b"".to_vec()]);
        let bools = Column::Boolean(vec![true, false]);
        b.add_series(
            b"st,host=b",
            [
                (&b"s"[..], &[-5i64, 5][..], &strs),
                (&b"b"[..], &[i64::MIN, i64::MAX][..], &bools),
            ],
        );
        let (rest, _, _) = b.finish(42);
        pieces.extend(rest);
        assert_eq!(pieces, whole);
    }

    proptest! {
        #[test]
        fn no_index_or_footer_or_block_bytes_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), count in 0usize..3000, t in 1u8..6) {
            let _ = decode_index(&bytes, 1 << 20);
            if bytes.len() >= FOOTER_BYTES {
                let _ = decode_footer(&bytes[..FOOTER_BYTES]);
            }
            let _ = decode_block(&bytes, count, type_of(t).unwrap());
        }

        #[test]
        fn a_corrupted_sample_index_never_panics(at in 0usize..10_000, xor in 1u8..=255) {
            let (image, _, footer) = sample();
            let mut index = image[footer.index_offset as usize..image.len() - FOOTER_BYTES].to_vec();
            let at = at % index.len();
            index[at] ^= xor;
            let _ = decode_index(&index, footer.index_offset);
        }
    }
}
