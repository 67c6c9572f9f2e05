//! Prometheus remote storage, as InfluxDB 1.x serves it: `/api/v1/prom/write` and
//! `/api/v1/prom/read` (`db`, `rp` parameters), bodies snappy-compressed protobuf
//! (Prometheus's `prompb`).
//!
//! Write: each sample is a point of the measurement named by its `__name__` label
//! (`prom_metric_not_specified` without one), every label a tag (`__name__` too), the
//! value the field `value`, the millisecond timestamp its time; NaN and infinite
//! samples are dropped (the others are written), as InfluxDB's converter does. The
//! points go through the line-protocol write path, so they are placed, replicated and
//! acknowledged like any `/write`.
//!
//! Read: each query's matchers become one InfluxQL SELECT (`__name__` picks the
//! measurement; other matchers are tag conditions; Prometheus regexes are anchored),
//! run by the statement executor as the request's user, and its series come back as
//! time series with their tags as labels.
//!
//! The protobuf codec here reads only the fields these messages have and skips any
//! other; it never panics on arbitrary bytes (property tests below).

use std::fmt::Write as _;

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromError {
    #[error("snappy: {0}")]
    Snappy(String),
    #[error("proto: {0}")]
    Proto(&'static str),
    #[error("snappy body decompresses to more than max-decompressed-body-bytes ({0} bytes)")]
    TooLarge(u64),
}

/// The measurement of a time series with no `__name__` label (InfluxDB's name).
pub const NO_NAME_MEASUREMENT: &str = "prom_metric_not_specified";

/// Decompresses a snappy block (Prometheus's framing of remote storage bodies), at
/// most `limit` bytes decoded.
pub fn unsnappy(body: &[u8], limit: u64) -> Result<Vec<u8>, PromError> {
    let len = snap::raw::decompress_len(body).map_err(|e| PromError::Snappy(e.to_string()))?;
    if len as u64 > limit {
        return Err(PromError::TooLarge(limit));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| PromError::Snappy(e.to_string()))
}

/// Snappy block compression of an answer.
pub fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("snappy compresses any input that fits in memory")
}

/// A protobuf reader: fields one at a time.
struct Pb<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Pb<'a> {
    fn new(buf: &'a [u8]) -> Pb<'a> {
        Pb { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, PromError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(PromError::Proto("unexpected end of a varint"))?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(PromError::Proto("varint longer than 10 bytes"))
    }

    /// The next field's number and wire type; None at the end.
    fn field(&mut self) -> Result<Option<(u64, u8)>, PromError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        Ok(Some((key >> 3, (key & 7) as u8)))
    }

    fn bytes(&mut self) -> Result<&'a [u8], PromError> {
        let len = self.varint()?;
        let end = (self.pos as u64)
            .checked_add(len)
            .filter(|&e| e <= self.buf.len() as u64)
            .ok_or(PromError::Proto("length past the end of the message"))?
            as usize;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn fixed64(&mut self) -> Result<u64, PromError> {
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or(PromError::Proto("unexpected end of a fixed64"))?;
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn skip(&mut self, wire: u8) -> Result<(), PromError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.fixed64().map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(PromError::Proto("unexpected end of a fixed32"));
                }
                self.pos += 4;
                Ok(())
            }
            _ => Err(PromError::Proto("unknown wire type")),
        }
    }

    fn string(&mut self) -> Result<String, PromError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| PromError::Proto("string is not UTF-8"))
    }
}

/// A label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// A time series of a write request, or of a read answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimeSeries {
    pub labels: Vec<Label>,
    /// (milliseconds since the epoch, value)
    pub samples: Vec<(i64, f64)>,
}

fn label(buf: &[u8]) -> Result<Label, PromError> {
    let mut pb = Pb::new(buf);
    let mut l = Label {
        name: String::new(),
        value: String::new(),
    };
    while let Some((field, wire)) = pb.field()? {
        match (field, wire) {
            (1, 2) => l.name = pb.string()?,
            (2, 2) => l.value = pb.string()?,
            _ => pb.skip(wire)?,
        }
    }
    Ok(l)
}

fn sample(buf: &[u8]) -> Result<(i64, f64), PromError> {
    let mut pb = Pb::new(buf);
    let (mut ts, mut value) = (0i64, 0f64);
    while let Some((field, wire)) = pb.field()? {
        match (field, wire) {
            (1, 1) => value = f64::from_bits(pb.fixed64()?),
            (2, 0) => ts = pb.varint()? as i64,
            _ => pb.skip(wire)?,
        }
    }
    Ok((ts, value))
}

fn time_series(buf: &[u8]) -> Result<TimeSeries, PromError> {
    let mut pb = Pb::new(buf);
    let mut ts = TimeSeries::default();
    while let Some((field, wire)) = pb.field()? {
        match (field, wire) {
            (1, 2) => ts.labels.push(label(pb.bytes()?)?),
            (2, 2) => ts.samples.push(sample(pb.bytes()?)?),
            _ => pb.skip(wire)?,
        }
    }
    Ok(ts)
}

/// A `WriteRequest`'s time series.
pub fn decode_write_request(buf: &[u8]) -> Result<Vec<TimeSeries>, PromError> {
    let mut pb = Pb::new(buf);
    let mut out = Vec::new();
    while let Some((field, wire)) = pb.field()? {
        match (field, wire) {
            (1, 2) => out.push(time_series(pb.bytes()?)?),
            _ => pb.skip(wire)?,
        }
    }
    Ok(out)
}

/// A label matcher of a read query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One query of a `ReadRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadQuery {
    pub start_ms: i64,
    pub end_ms: i64,
    pub matchers: Vec<(Match, String, String)>,
}

/// A `ReadRequest`'s queries.
pub fn decode_read_request(buf: &[u8]) -> Result<Vec<ReadQuery>, PromError> {
    let mut pb = Pb::new(buf);
    let mut out = Vec::new();
    while let Some((field, wire)) = pb.field()? {
        match (field, wire) {
            (1, 2) => {
                let mut q = Pb::new(pb.bytes()?);
                let mut query = ReadQuery {
                    start_ms: 0,
                    end_ms: 0,
                    matchers: Vec::new(),
                };
                while let Some((field, wire)) = q.field()? {
                    match (field, wire) {
                        (1, 0) => query.start_ms = q.varint()? as i64,
                        (2, 0) => query.end_ms = q.varint()? as i64,
                        (3, 2) => {
                            let mut m = Pb::new(q.bytes()?);
                            let (mut kind, mut name, mut value) =
                                (0u64, String::new(), String::new());
                            while let Some((field, wire)) = m.field()? {
                                match (field, wire) {
                                    (1, 0) => kind = m.varint()?,
                                    (2, 2) => name = m.string()?,
                                    (3, 2) => value = m.string()?,
                                    _ => m.skip(wire)?,
                                }
                            }
                            let kind = match kind {
                                0 => Match::Equal,
                                1 => Match::NotEqual,
                                2 => Match::Regex,
                                3 => Match::NotRegex,
                                _ => return Err(PromError::Proto("unknown matcher type")),
                            };
                            query.matchers.push((kind, name, value));
                        }
                        _ => q.skip(wire)?,
                    }
                }
                out.push(query);
            }
            _ => pb.skip(wire)?,
        }
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn encode_series(ts: &TimeSeries) -> Vec<u8> {
    let mut out = Vec::new();
    for l in &ts.labels {
        let mut lb = Vec::new();
        put_bytes(&mut lb, 1, l.name.as_bytes());
        put_bytes(&mut lb, 2, l.value.as_bytes());
        put_bytes(&mut out, 1, &lb);
    }
    for &(ms, v) in &ts.samples {
        let mut sb = Vec::with_capacity(20);
        sb.push(0x09);
        sb.extend_from_slice(&v.to_bits().to_le_bytes());
        sb.push(0x10);
        put_varint(&mut sb, ms as u64);
        put_bytes(&mut out, 2, &sb);
    }
    out
}

/// A `ReadResponse`: one result per query, each with its series.
pub fn encode_read_response(results: &[Vec<TimeSeries>]) -> Vec<u8> {
    let mut out = Vec::new();
    for series in results {
        let mut qr = Vec::new();
        for ts in series {
            put_bytes(&mut qr, 1, &encode_series(ts));
        }
        put_bytes(&mut out, 1, &qr);
    }
    out
}

/// A `WriteRequest` (tests and tools: what Prometheus sends).
pub fn encode_write_request(series: &[TimeSeries]) -> Vec<u8> {
    let mut out = Vec::new();
    for ts in series {
        put_bytes(&mut out, 1, &encode_series(ts));
    }
    out
}

/// Line protocol escaping of a measurement (`,` and space) or a tag key or value
/// (`,`, `=` and space).
fn escape(out: &mut String, s: &str, also_equals: bool) {
    for c in s.chars() {
        if c == ',' || c == ' ' || (also_equals && c == '=') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The time series as line protocol with millisecond times, as InfluxDB maps them;
/// and how many samples were dropped (NaN or infinite). A label with an empty value
/// is left out (line protocol has no empty tag values; Prometheus treats an empty
/// label as absent).
pub fn to_line_protocol(series: &[TimeSeries]) -> (String, usize) {
    let mut out = String::new();
    let mut dropped = 0;
    for ts in series {
        let name = ts
            .labels
            .iter()
            .find(|l| l.name == "__name__")
            .map_or(NO_NAME_MEASUREMENT, |l| l.value.as_str());
        let mut key = String::new();
        escape(&mut key, name, false);
        let mut labels: Vec<&Label> = ts.labels.iter().filter(|l| !l.value.is_empty()).collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        for l in labels {
            key.push(',');
            escape(&mut key, &l.name, true);
            key.push('=');
            escape(&mut key, &l.value, true);
        }
        for &(ms, v) in &ts.samples {
            if !v.is_finite() {
                dropped += 1;
                continue;
            }
            // `{:?}` writes the shortest text that reads back to the same f64.
            let _ = writeln!(out, "{key} value={v:?} {ms}");
        }
    }
    (out, dropped)
}

/// An InfluxQL string or regex literal body, escaped.
fn quote_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

fn quote_regex(s: &str) -> String {
    s.replace('/', "\\/")
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The InfluxQL SELECT that answers one read query in `rp` (empty: the default).
pub fn read_query_to_influxql(q: &ReadQuery, rp: &str) -> String {
    let mut from = String::from("/.+/");
    let ns = |ms: i64| ms.saturating_mul(1_000_000);
    let mut conditions = vec![
        format!("time >= {}", ns(q.start_ms)),
        format!("time <= {}", ns(q.end_ms)),
    ];
    for (kind, name, value) in &q.matchers {
        if name == "__name__" {
            match kind {
                Match::Equal => {
                    from = quote_ident(value);
                    continue;
                }
                Match::Regex => {
                    from = format!("/^(?:{})$/", quote_regex(value));
                    continue;
                }
                // Not the measurement: filtered by its `__name__` tag below.
                _ => {}
            }
        }
        let tag = quote_ident(name);
        conditions.push(match kind {
            Match::Equal => format!("{tag} = '{}'", quote_string(value)),
            Match::NotEqual => format!("{tag} != '{}'", quote_string(value)),
            Match::Regex => format!("{tag} =~ /^(?:{})$/", quote_regex(value)),
            Match::NotRegex => format!("{tag} !~ /^(?:{})$/", quote_regex(value)),
        });
    }
    let source = if rp.is_empty() {
        from
    } else {
        format!("{}.{from}", quote_ident(rp))
    };
    format!(
        "SELECT value FROM {source} WHERE {} GROUP BY *",
        conditions.join(" AND ")
    )
}

/// The time series of a SELECT's JSON answer (`epoch=ms`): tags as labels, the
/// measurement as `__name__` when no tag carries it.
pub fn series_from_answer(results: &[serde_json::Value]) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for result in results {
        for s in result
            .get("series")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
        {
            let mut labels: Vec<Label> = s
                .get("tags")
                .and_then(|t| t.as_object())
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    let value = v.as_str().unwrap_or("");
                    (!value.is_empty()).then(|| Label {
                        name: k.clone(),
                        value: value.to_string(),
                    })
                })
                .collect();
            if !labels.iter().any(|l| l.name == "__name__") {
                if let Some(name) = s.get("name").and_then(|n| n.as_str()) {
                    labels.push(Label {
                        name: "__name__".into(),
                        value: name.to_string(),
                    });
                }
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            let samples = s
                .get("values")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|row| {
                    let row = row.as_array()?;
                    Some((row.first()?.as_i64()?, row.get(1)?.as_f64()?))
                })
                .collect();
            out.push(TimeSeries { labels, samples });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<TimeSeries> {
        vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "up".into(),
                },
                Label {
                    name: "job".into(),
                    value: "a b,c=d".into(),
                },
            ],
            samples: vec![
                (1_600_000_000_000, 1.0),
                (1_600_000_001_000, f64::NAN),
                (1_600_000_002_000, 1e300),
            ],
        }]
    }

    #[test]
    fn write_requests_map_as_influxdb_maps_them() {
        let bytes = encode_write_request(&series());
        assert_eq!(
            decode_write_request(&bytes).unwrap()[0].labels,
            series()[0].labels
        );
        let (lines, dropped) = to_line_protocol(&decode_write_request(&bytes).unwrap());
        assert_eq!(dropped, 1);
        assert_eq!(
            lines,
            "up,__name__=up,job=a\\ b\\,c\\=d value=1.0 1600000000000\nup,__name__=up,job=a\\ b\\,c\\=d value=1e300 1600000002000\n"
        );
        let compressed = snappy(&bytes);
        assert_eq!(unsnappy(&compressed, 1 << 20).unwrap(), bytes);
        assert_eq!(unsnappy(&compressed, 4), Err(PromError::TooLarge(4)));
    }

    #[test]
    fn read_queries_become_influxql() {
        let q = ReadQuery {
            start_ms: 1,
            end_ms: 2,
            matchers: vec![
                (Match::Equal, "__name__".into(), "up".into()),
                (Match::Regex, "job".into(), "pro.*/x".into()),
                (Match::NotEqual, "instance".into(), "it's".into()),
            ],
        };
        assert_eq!(
            read_query_to_influxql(&q, ""),
            "SELECT value FROM \"up\" WHERE time >= 1000000 AND time <= 2000000 AND \"job\" =~ /^(?:pro.*\\/x)$/ AND \"instance\" != 'it\\'s' GROUP BY *"
        );
    }

    proptest::proptest! {
        /// Bodies come from the network: no bytes panic the decoders.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_write_request(&bytes);
            let _ = decode_read_request(&bytes);
            let _ = unsnappy(&bytes, 1 << 20);
        }

        /// What we encode decodes to the same series.
        #[test]
        fn series_round_trip(
            names in proptest::collection::vec("[a-z_]{1,8}", 0..4),
            samples in proptest::collection::vec((proptest::prelude::any::<i64>(), proptest::prelude::any::<f64>()), 0..6),
        ) {
            let ts = TimeSeries {
                labels: names.iter().map(|n| Label { name: n.clone(), value: "v".into() }).collect(),
                samples: samples.clone(),
            };
            let back = decode_write_request(&encode_write_request(std::slice::from_ref(&ts))).unwrap();
            proptest::prop_assert_eq!(&back[0].labels, &ts.labels);
            for (a, b) in back[0].samples.iter().zip(&samples) {
                proptest::prop_assert_eq!(a.0, b.0);
                proptest::prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }
    }
}
