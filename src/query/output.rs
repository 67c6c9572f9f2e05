//! The other shapes of a `/query` answer: `chunked=true` (one JSON object per chunk
//! of at most `chunk_size` rows, series and results marked `partial` until their last
//! chunk, as InfluxDB writes them) and CSV for `Accept: application/csv`.

use crate::query::render::go_json;
use serde_json::{json, Map, Value};

/// The chunks of a chunked answer, each a JSON line.
pub fn chunked(results: &[Value], selects: &[bool], chunk_size: usize, pretty: bool) -> Vec<u8> {
    let size = if chunk_size == 0 { 10_000 } else { chunk_size };
    let mut out = Vec::new();
    for (ri, result) in results.iter().enumerate() {
        let select = selects.get(ri).copied().unwrap_or(false);
        let id = result.get("statement_id").cloned().unwrap_or(json!(0));
        let series = result.get("series").and_then(Value::as_array);
        let Some(series) = series.filter(|s| !s.is_empty()) else {
            out.extend(go_json(&json!({ "results": [result] }), pretty));
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
            out.extend(go_json(&json!({ "results": [Value::Object(r)] }), pretty));
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
