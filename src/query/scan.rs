//! What a query asks of the shards: a scan of one measurement's series in a time range,
//! or the schema (measurements, tags, fields, series) of a database. Both run on the
//! core that owns the shard — over the mesh for other cores of this node, through the
//! cluster service's MapShard for shards only other nodes own — and both are plain
//! serde values so they cross either boundary the same way.

use crate::lineproto::{self, FieldType};
use crate::tsdb::shard::SeriesData;
use crate::tsdb::store::Store;
use serde::{Deserialize, Serialize};
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
}

/// See [`ScanRequest::per_series_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesLimit {
    pub n: usize,
    pub newest: bool,
}

/// The series of one shard that matched a scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
pub fn parse_tag_condition(text: &str) -> Option<crate::query::ast::Expr> {
    match crate::query::parser::parse_query(&format!("SELECT x FROM m WHERE {text}"))
        .ok()?
        .into_iter()
        .next()?
    {
        crate::query::parser::Statement::Select(s) => s.condition,
        _ => None,
    }
}

/// Runs a scan over this core's shards.
pub fn scan_local(store: &mut Store, r: &ScanRequest) -> Vec<ShardScan> {
    let measurement = escape_measurement(&r.measurement);
    let condition = r.tag_condition.as_deref().and_then(parse_tag_condition);
    let no_slots: Vec<String> = Vec::new();
    let tag_keys: BTreeSet<String> = BTreeSet::new();
    let ev = crate::query::select::Evaluator::for_tags(&no_slots, &tag_keys);
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
    let mut out = Vec::new();
    for shard in store.shards_mut() {
        let m = &shard.meta;
        if m.database != r.database
            || m.retention_policy != r.retention_policy
            || m.end_ns <= r.start_ns
            || m.start_ns > r.end_ns
            || r.shard_ids.as_ref().is_some_and(|ids| !ids.contains(&m.id))
        {
            continue;
        }
        let (shard_id, start_ns) = (m.id, m.start_ns);
        let limit = r.per_series_limit.map(|l| (l.n, l.newest));
        let series = shard.scan(
            &measurement,
            fields.as_deref(),
            (r.start_ns, r.end_ns),
            limit,
            keep,
        );
        out.push(ShardScan {
            shard_id,
            start_ns,
            series,
        });
    }
    out
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
        for (name, index) in shard.measurements() {
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
                    .map(|&id| String::from_utf8_lossy(shard.series_key(id)).into_owned())
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
}
