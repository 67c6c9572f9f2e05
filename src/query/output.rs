//! The other shapes of a `/query` answer: `chunked=true` (one JSON object per chunk
//! of at most `chunk_size` rows, series and results marked `partial` until their last
//! chunk, as InfluxDB writes them) and CSV for `Accept: application/csv`.

use crate::query::render::go_json;
use serde_json::{json, Map, Value};

/// The chunks of a chunked answer, each a JSON line.
pub fn chunked(results: &[Value], selects: &[bool], chunk_size: usize, pretty: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks(results, selects, chunk_size) {
        out.extend(go_json(&json!({ "results": chunk }), pretty));
    }
    out
}

/// The chunks of a chunked answer in MessagePack, one object each, back to back.
pub fn chunked_msgpack(results: &[Value], selects: &[bool], chunk_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks(results, selects, chunk_size) {
        out.extend(msgpack(&chunk));
    }
    out
}

/// A chunked answer's chunks: each the results it carries.
fn chunks(results: &[Value], selects: &[bool], chunk_size: usize) -> Vec<Vec<Value>> {
    let size = if chunk_size == 0 { 10_000 } else { chunk_size };
    let mut out = Vec::new();
    for (ri, result) in results.iter().enumerate() {
        let select = selects.get(ri).copied().unwrap_or(false);
        let id = result.get("statement_id").cloned().unwrap_or(json!(0));
        let series = result.get("series").and_then(Value::as_array);
        let Some(series) = series.filter(|s| !s.is_empty()) else {
            out.push(vec![result.clone()]);
            continue;
        };
        // (piece, whether it continues in the next chunk)
        let mut pieces: Vec<(Value, bool)> = Vec::new();
        for s in series {
            let values = s.get("values").and_then(Value::as_array);
            let rows: &[Value] = values.map(|v| v.as_slice()).unwrap_or(&[]);
            if rows.is_empty() {
                pieces.push((s.clone(), false));
                continue;
            }
            let count = rows.len().div_ceil(size);
            for (i, chunk) in rows.chunks(size).enumerate() {
                let mut piece: Map<String, Value> = Map::new();
                for (k, v) in s.as_object().into_iter().flatten() {
                    if k == "values" {
                        piece.insert(k.clone(), Value::Array(chunk.to_vec()));
                    } else if k != "partial" {
                        piece.insert(k.clone(), v.clone());
                    }
                }
                let continues = i + 1 < count;
                if continues {
                    piece.insert("partial".into(), Value::Bool(true));
                }
                pieces.push((Value::Object(piece), continues));
            }
        }
        let last = pieces.len() - 1;
        for (i, (piece, continues)) in pieces.into_iter().enumerate() {
            let mut r = Map::new();
            r.insert("statement_id".into(), id.clone());
            r.insert("series".into(), Value::Array(vec![piece]));
            // A SELECT's result is partial until its last chunk; SHOW answers each
            // series as a whole result unless the series itself continues.
            if (select && i < last) || continues {
                r.insert("partial".into(), Value::Bool(true));
            }
            out.push(vec![Value::Object(r)]);
        }
    }
    out
}

/// A CSV field as Go's encoding/csv writes it.
fn csv_field(out: &mut String, field: &str) {
    let needs = !field.is_empty()
        && (field == "\\."
            || field.contains([',', '"', '\r', '\n'])
            || field.starts_with(|c: char| c.is_whitespace()));
    if !needs {
        out.push_str(field);
        return;
    }
    out.push('"');
    for c in field.chars() {
        if c == '"' {
            out.push_str("\"\"");
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The CSV answer: `name,tags,<columns>` headers (again when the columns change), a
/// blank line between statements; statement errors are left out, as InfluxDB does.
pub fn csv(results: &[Value]) -> Vec<u8> {
    let mut out = String::new();
    let mut columns: Option<Vec<Value>> = None;
    let mut first_statement = true;
    for result in results {
        let Some(series) = result.get("series").and_then(Value::as_array) else {
            continue;
        };
        if !first_statement {
            out.push('\n');
            columns = None;
        }
        first_statement = false;
        for s in series {
            let cols: Vec<Value> = s
                .get("columns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if columns.as_ref() != Some(&cols) {
                let mut line = String::from("name,tags");
                for c in &cols {
                    line.push(',');
                    csv_field(&mut line, &csv_value(c));
                }
                out.push_str(&line);
                out.push('\n');
                columns = Some(cols.clone());
            }
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            let tags = s
                .get("tags")
                .and_then(Value::as_object)
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            for row in s
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut line = String::new();
                csv_field(&mut line, name);
                line.push(',');
                csv_field(&mut line, &tags);
                for v in row.as_array().into_iter().flatten() {
                    line.push(',');
                    csv_field(&mut line, &csv_value(v));
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out.into_bytes()
}

/// A parse error in CSV: `error` header and the quoted message.
pub fn csv_error(message: &str) -> Vec<u8> {
    let mut out = String::from("error\n");
    csv_field(&mut out, message);
    out.push('\n');
    out.into_bytes()
}

/// The answer in MessagePack for `Accept: application/x-msgpack`, as InfluxDB's
/// msgpack formatter writes it: the same maps as the JSON answer, except that a
/// result always has `series` (empty when none) and a series always has `values`;
/// `name`, `tags`, `messages` and `partial` only when set; times of the `time` column
/// (RFC 3339 strings here) as msgpack's timestamp extension of Go's `time.Time`
/// (type 5: seconds u64, nanoseconds u32, big-endian); integers in their shortest
/// form, floats as float64.
pub fn msgpack(results: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    mp_map(&mut out, 1);
    mp_str(&mut out, "results");
    mp_array(&mut out, results.len());
    for result in results {
        let id = result.get("statement_id").cloned().unwrap_or(json!(0));
        if let Some(error) = result.get("error").and_then(Value::as_str) {
            mp_map(&mut out, 2);
            mp_str(&mut out, "statement_id");
            mp_value(&mut out, &id);
            mp_str(&mut out, "error");
            mp_str(&mut out, error);
            continue;
        }
        let messages = result.get("messages").and_then(Value::as_array);
        let partial = result.get("partial").and_then(Value::as_bool) == Some(true);
        mp_map(
            &mut out,
            2 + messages.is_some_and(|m| !m.is_empty()) as usize + partial as usize,
        );
        mp_str(&mut out, "statement_id");
        mp_value(&mut out, &id);
        if let Some(messages) = messages.filter(|m| !m.is_empty()) {
            mp_str(&mut out, "messages");
            mp_array(&mut out, messages.len());
            for m in messages {
                mp_map(&mut out, 2);
                for key in ["level", "text"] {
                    mp_str(&mut out, key);
                    mp_str(&mut out, m.get(key).and_then(Value::as_str).unwrap_or(""));
                }
            }
        }
        let series: &[Value] = result
            .get("series")
            .and_then(Value::as_array)
            .map_or(&[], |s| s.as_slice());
        mp_str(&mut out, "series");
        mp_array(&mut out, series.len());
        for s in series {
            mp_series(&mut out, s);
        }
        if partial {
            mp_str(&mut out, "partial");
            out.push(0xc3);
        }
    }
    out
}

/// `{"error": message}` in MessagePack.
pub fn msgpack_error(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mp_map(&mut out, 1);
    mp_str(&mut out, "error");
    mp_str(&mut out, message);
    out
}

fn mp_series(out: &mut Vec<u8>, s: &Value) {
    let name = s
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let tags = s
        .get("tags")
        .and_then(Value::as_object)
        .filter(|t| !t.is_empty());
    let partial = s.get("partial").and_then(Value::as_bool) == Some(true);
    mp_map(
        out,
        2 + name.is_some() as usize + tags.is_some() as usize + partial as usize,
    );
    if let Some(name) = name {
        mp_str(out, "name");
        mp_str(out, name);
    }
    if let Some(tags) = tags {
        mp_str(out, "tags");
        mp_map(out, tags.len());
        for (k, v) in tags {
            mp_str(out, k);
            mp_str(out, v.as_str().unwrap_or(""));
        }
    }
    let columns: &[Value] = s
        .get("columns")
        .and_then(Value::as_array)
        .map_or(&[], |c| c.as_slice());
    mp_str(out, "columns");
    mp_array(out, columns.len());
    for c in columns {
        mp_str(out, c.as_str().unwrap_or(""));
    }
    let time_column = columns.iter().position(|c| c == "time");
    let rows: &[Value] = s
        .get("values")
        .and_then(Value::as_array)
        .map_or(&[], |v| v.as_slice());
    mp_str(out, "values");
    mp_array(out, rows.len());
    for row in rows {
        let row: &[Value] = row.as_array().map_or(&[], |r| r.as_slice());
        mp_array(out, row.len());
        for (i, v) in row.iter().enumerate() {
            match (Some(i) == time_column, v.as_str().and_then(parse_rfc3339)) {
                (true, Some((secs, nanos))) => {
                    out.extend_from_slice(&[0xc7, 12, 5]);
                    out.extend_from_slice(&(secs as u64).to_be_bytes());
                    out.extend_from_slice(&nanos.to_be_bytes());
                }
                _ => mp_value(out, v),
            }
        }
    }
    if partial {
        mp_str(out, "partial");
        out.push(0xc3);
    }
}

fn mp_map(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn mp_array(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn mp_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// An integer in its shortest form, as Go's msgp `WriteInt64` / `WriteUint64`.
fn mp_int(out: &mut Vec<u8>, i: i64) {
    match i {
        0..=127 => out.push(i as u8),
        -32..=-1 => out.push(i as i8 as u8),
        -128..=127 => out.extend_from_slice(&[0xd0, i as i8 as u8]),
        -32768..=32767 => {
            out.push(0xd1);
            out.extend_from_slice(&(i as i16).to_be_bytes());
        }
        -2_147_483_648..=2_147_483_647 => {
            out.push(0xd2);
            out.extend_from_slice(&(i as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
    }
}

fn mp_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                mp_int(out, i);
            } else if let Some(u) = n.as_u64() {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_be_bytes());
            }
        }
        Value::String(s) => mp_str(out, s),
        Value::Array(a) => {
            mp_array(out, a.len());
            for x in a {
                mp_value(out, x);
            }
        }
        Value::Object(m) => {
            mp_map(out, m.len());
            for (k, x) in m {
                mp_str(out, k);
                mp_value(out, x);
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (Go's RFC3339Nano): (seconds since the
/// epoch, nanoseconds); None for anything else.
pub fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let t = s.get(from..to)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut at = 19;
    let mut nanos: u32 = 0;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        let digits = num(start, end)? as u32;
        nanos = digits * 10u32.pow(9 - (end - start) as u32);
        at = end;
    }
    let offset = match b.get(at..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = num(at + 1, at + 3)?;
            let om = num(at + 4, at + 6)?;
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = crate::influxql::format::days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset, nanos))
}

#[cfg(test)]
mod msgpack_tests {
    use super::*;

    #[test]
    fn answers_as_influxdb_1_6_7_writes_them() {
        // Captured from influxd 1.6.7 (`Accept: application/x-msgpack`) for
        // `SELECT * FROM cpu; SHOW DATABASES; SELECT * FROM nope; SHOW USERS` over
        // cpu,host=a v=1.5,i=2i,s="x",b=true 1000000000 and cpu,host=b v=2 2000000000.
        let results = vec![
            json!({"statement_id": 0, "series": [{"name": "cpu",
                "columns": ["time", "b", "host", "i", "s", "v"],
                "values": [["1970-01-01T00:00:01Z", true, "a", 2, "x", 1.5],
                           ["1970-01-01T00:00:02Z", null, "b", null, null, 2.0]]}]}),
            json!({"statement_id": 1, "series": [{"name": "databases", "columns": ["name"], "values": [["db"]]}]}),
            json!({"statement_id": 2}),
            json!({"statement_id": 3, "series": [{"columns": ["user", "admin"]}]}),
        ];
        let influxd: &[u8] = b"\x81\xa7results\x94\x82\xacstatement_id\x00\xa6series\x91\x83\xa4name\xa3cpu\xa7columns\x96\xa4time\xa1b\xa4host\xa1i\xa1s\xa1v\xa6values\x92\x96\xc7\x0c\x05\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\xc3\xa1a\x02\xa1x\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\x96\xc7\x0c\x05\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\xc0\xa1b\xc0\xc0\xcb\x40\x00\x00\x00\x00\x00\x00\x00\x82\xacstatement_id\x01\xa6series\x91\x83\xa4name\xa9databases\xa7columns\x91\xa4name\xa6values\x91\x91\xa2db\x82\xacstatement_id\x02\xa6series\x90\x82\xacstatement_id\x03\xa6series\x91\x82\xa7columns\x92\xa4user\xa5admin\xa6values\x90";
        assert_eq!(msgpack(&results), influxd);
        assert_eq!(
            parse_rfc3339("2020-01-01T00:00:00.5-06:00"),
            Some((1_577_858_400, 500_000_000))
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.999999999Z"),
            Some((-1, 999_999_999))
        );
        assert_eq!(parse_rfc3339("not a time"), None);
    }

    proptest::proptest! {
        /// Time strings come from our own answers, but no string may panic the parse.
        #[test]
        fn arbitrary_time_strings_never_panic(s in ".{0,40}") {
            let _ = parse_rfc3339(&s);
        }
    }
}
