//! SELECT ... INTO: a SELECT's result rows as points (InfluxDB's `IntoWriter`
//! conversion). Each row becomes one point of the target measurement (or, for
//! `:MEASUREMENT`, of the series' own measurement) with the series' GROUP BY tags, the
//! row's time, and every non-null column but `time` as a field; a row whose columns are
//! all null is no point. The statement executor writes the points through the
//! PointsWriter and answers `written`.

use crate::influxql::value::Val;
use crate::lineproto::{self, OwnedPoint, OwnedValue};
use crate::query::series::ResultSeries;

/// The points of `series` as line protocol (nanosecond timestamps), and how many.
/// `target`: the measurement to write, `None` for each series' own name.
pub fn line_protocol(series: &[ResultSeries], target: Option<&str>) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut points = 0;
    for s in series {
        let measurement = target.unwrap_or(&s.name).as_bytes().to_vec();
        let tags: Vec<(Vec<u8>, Vec<u8>)> = s
            .tags
            .iter()
            .flatten()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        for row in &s.values {
            let Some(Val::Int(time)) = row.first() else {
                continue;
            };
            let fields: Vec<(Vec<u8>, OwnedValue)> = s
                .columns
                .iter()
                .zip(row)
                .skip(1)
                .filter_map(|(name, v)| Some((name.as_bytes().to_vec(), owned(v)?)))
                .collect();
            if fields.is_empty() {
                continue;
            }
            let point = OwnedPoint {
                measurement: measurement.clone(),
                tags: tags.clone(),
                fields,
                timestamp: Some(*time),
            };
            lineproto::encode(&point, &mut out);
            out.push(b'\n');
            points += 1;
        }
    }
    (out, points)
}

/// A value as a field; null, NaN and the infinities are no field (line protocol and
/// InfluxDB's storage cannot hold them).
fn owned(v: &Val) -> Option<OwnedValue> {
    Some(match v {
        Val::Null => return None,
        Val::Float(x) if !x.is_finite() => return None,
        Val::Float(x) => OwnedValue::Float(*x),
        Val::Int(x) => OwnedValue::Integer(*x),
        Val::Uint(x) => OwnedValue::Unsigned(*x),
        Val::Bool(x) => OwnedValue::Boolean(*x),
        Val::Str(s) => OwnedValue::String(s.as_bytes().to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{parse, Precision};
    use std::collections::BTreeMap;

    #[test]
    fn rows_become_points_that_parse_back() {
        let series = vec![ResultSeries {
            name: "c p,u".into(),
            tags: Some(BTreeMap::from([
                ("host".to_string(), "a b".to_string()),
                ("empty".to_string(), String::new()),
            ])),
            columns: vec!["time".into(), "mean".into(), "s".into(), "n".into()],
            values: vec![
                vec![
                    Val::Int(10),
                    Val::Float(1.5),
                    Val::Str("x \"q\"\\\nnl".into()),
                    Val::Null,
                ],
                vec![Val::Int(20), Val::Null, Val::Null, Val::Null],
                vec![Val::Int(30), Val::Float(f64::NAN), Val::Null, Val::Int(-3)],
                vec![
                    Val::Int(40),
                    Val::Float(1e300),
                    Val::Bool(true),
                    Val::Uint(7),
                ],
            ],
        }];
        let (lines, n) = line_protocol(&series, None);
        assert_eq!(n, 3, "the all-null row is no point");
        let parsed = parse(bytes::Bytes::from(lines), Precision::Nanosecond, 0);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let points: Vec<OwnedPoint> = parsed
            .points
            .iter()
            .map(|p| parsed.to_owned_point(p))
            .collect();
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].measurement, b"c p,u");
        assert_eq!(points[0].tags, vec![(b"host".to_vec(), b"a b".to_vec())]);
        assert_eq!(
            points[0].fields,
            vec![
                (b"mean".to_vec(), OwnedValue::Float(1.5)),
                (b"s".to_vec(), OwnedValue::String(b"x \"q\"\\\nnl".to_vec()))
            ]
        );
        assert_eq!(points[1].timestamp, Some(30));
        assert_eq!(
            points[1].fields,
            vec![(b"n".to_vec(), OwnedValue::Integer(-3))]
        );
        assert_eq!(points[2].fields.len(), 3);
        let (_, n) = line_protocol(&series, Some("target"));
        assert_eq!(n, 3);
    }
}
