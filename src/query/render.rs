//! InfluxDB's JSON: result series as `{"name","tags","columns","values"}` with times as
//! RFC3339 strings or epoch integers, written the way Go's `encoding/json` writes them
//! (floats' shortest form, `<>&` escaped, four-space indent when pretty).

use crate::influxql::format::{go_float, rfc3339_nano};
use crate::influxql::value::Val;
use crate::query::series::ResultSeries;
use serde_json::{Map, Value};

/// Divisor of the `epoch` parameter's unit; `None` for an unknown unit (RFC3339 then).
fn epoch_divisor(epoch: &str) -> Option<i64> {
    Some(match epoch {
        "ns" | "n" => 1,
        "u" | "µ" | "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// The `"series"` array of a statement result; `None` when there is none. Past
/// `row_limit` rows (0: none) the rest is cut and the last series marked partial.
pub fn series_json(
    series: &[ResultSeries],
    epoch: Option<&str>,
    row_limit: usize,
    zone: Option<&crate::influxql::tz::Zone>,
) -> Option<Value> {
    if series.is_empty() {
        return None;
    }
    // Any epoch value asks for integers; an unknown unit means nanoseconds.
    let div = epoch.map(|e| epoch_divisor(e).unwrap_or(1));
    let mut left = if row_limit == 0 {
        usize::MAX
    } else {
        row_limit
    };
    let out: Vec<Value> = series
        .iter()
        .map_while(|s| {
            if left == 0 {
                return None;
            }
            let partial = s.values.len() > left;
            let rows = &s.values[..s.values.len().min(left)];
            left -= rows.len();
            let mut obj = Map::new();
            if !s.name.is_empty() {
                obj.insert("name".into(), Value::String(s.name.clone()));
            }
            if let Some(tags) = &s.tags {
                if !tags.is_empty() {
                    obj.insert(
                        "tags".into(),
                        Value::Object(
                            tags.iter()
                                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                                .collect(),
                        ),
                    );
                }
            }
            obj.insert(
                "columns".into(),
                Value::Array(s.columns.iter().cloned().map(Value::String).collect()),
            );
            let time_col = s.columns.first().is_some_and(|c| c == "time");
            let values: Vec<Value> = rows
                .iter()
                .map(|row| {
                    Value::Array(
                        row.iter()
                            .enumerate()
                            .map(|(i, v)| match (i, v, time_col) {
                                (0, Val::Int(t), true) => match div {
                                    Some(d) => Value::from(t / d),
                                    None => Value::String(match zone {
                                        Some(z) => z.format(*t),
                                        None => rfc3339_nano(*t),
                                    }),
                                },
                                _ => v.to_json(),
                            })
                            .collect(),
                    )
                })
                .collect();
            if !values.is_empty() {
                obj.insert("values".into(), Value::Array(values));
            }
            if partial {
                obj.insert("partial".into(), Value::Bool(true));
            }
            Some(Value::Object(obj))
        })
        .collect();
    Some(Value::Array(out))
}

/// Serialises as Go's `json.Marshal` (or `MarshalIndent` with four spaces), plus the
/// trailing newline InfluxDB writes.
pub fn go_json(value: &Value, pretty: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value, pretty, 0);
    out.push(b'\n');
    out
}

fn indent(out: &mut Vec<u8>, pretty: bool, depth: usize) {
    if pretty {
        out.push(b'\n');
        for _ in 0..depth {
            out.extend_from_slice(b"    ");
        }
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value, pretty: bool, depth: usize) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if n.is_f64() {
                out.extend_from_slice(go_float(n.as_f64().unwrap_or(0.0)).as_bytes());
            } else {
                out.extend_from_slice(n.to_string().as_bytes());
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            if a.is_empty() {
                out.extend_from_slice(b"[]");
                return;
            }
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                indent(out, pretty, depth + 1);
                write_value(out, x, pretty, depth + 1);
            }
            indent(out, pretty, depth);
            out.push(b']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.extend_from_slice(b"{}");
                return;
            }
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                indent(out, pretty, depth + 1);
                write_string(out, k);
                out.push(b':');
                if pretty {
                    out.push(b' ');
                }
                write_value(out, x, pretty, depth + 1);
            }
            indent(out, pretty, depth);
            out.push(b'}');
        }
    }
}

/// A JSON string as Go escapes it: `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_as_go() {
        let v = json!({"a": [1.0, 2.5, -3], "s": "<&>\u{1}", "e": [], "o": {}});
        assert_eq!(
            String::from_utf8(go_json(&v, false)).unwrap(),
            "{\"a\":[1,2.5,-3],\"s\":\"\\u003c\\u0026\\u003e\\u0001\",\"e\":[],\"o\":{}}\n"
        );
        let v = json!({"results": [{"statement_id": 0}]});
        assert_eq!(
            String::from_utf8(go_json(&v, true)).unwrap(),
            "{\n    \"results\": [\n        {\n            \"statement_id\": 0\n        }\n    ]\n}\n"
        );
    }
}
