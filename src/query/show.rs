//! SHOW MEASUREMENTS / TAG KEYS / TAG VALUES / FIELD KEYS / SERIES and the cardinality
//! forms, answered from the shards' indexes (merged over every shard of the database,
//! on every core and, in a cluster, one owner of each shard).

use crate::influxql::ast::{Expr, Measurement, Op, ShowSeriesData, ShowWhat, Source};
use crate::influxql::regex::RegexLit;
use crate::influxql::value::Val;
use crate::query::series::ResultSeries;
use crate::query::{QueryContext, QueryError};
use crate::tsdb::read::scan::{parse_series_key, SchemaRequest, ShardSchema};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};

/// Everything one measurement has across shards; series keys when asked for.
#[derive(Default)]
struct Merged {
    fields: BTreeMap<String, String>,
    tags: BTreeMap<String, BTreeSet<String>>,
    series: BTreeSet<String>,
    /// Series key -> shards holding it (EXACT CARDINALITY counts per shard, as InfluxDB).
    shard_counts: BTreeMap<String, usize>,
}

/// The schema of every shard of `database`, of every policy and time.
fn whole_database(database: &str, with_series: bool) -> SchemaRequest {
    SchemaRequest {
        database: database.to_string(),
        retention_policy: None,
        start_ns: i64::MIN + 2,
        end_ns: i64::MAX - 1,
        with_series,
        shard_ids: None,
        keys_only: false,
    }
}

fn compile(re: &RegexLit) -> Result<&Regex, QueryError> {
    re.regex().map_err(|e| QueryError::msg(re.error_text(e)))
}

pub async fn execute(
    q: &QueryContext<'_>,
    show: &ShowSeriesData,
) -> Result<Vec<ResultSeries>, QueryError> {
    let on_time = show.condition.as_ref().is_some_and(|c| {
        let mut on_time = false;
        c.walk(&mut |e| {
            if matches!(e, Expr::VarRef { name, .. } if name.eq_ignore_ascii_case("time")) {
                on_time = true;
            }
        });
        on_time
    });
    if matches!(show.what, ShowWhat::Measurements { .. }) && on_time {
        return Err(QueryError::msg(
            "SHOW MEASUREMENTS doesn't support time in WHERE clause",
        ));
    }
    let Some(database) = show.database.as_deref().or(q.db) else {
        return Err(QueryError::msg("database name required"));
    };
    if q.meta.database(database).is_none() {
        // InfluxDB answers SHOW MEASUREMENTS on a missing database with nothing.
        if matches!(show.what, ShowWhat::Measurements { .. }) {
            return Ok(Vec::new());
        }
        return Err(QueryError::msg(format!("database not found: {database}")));
    }
    let (range, condition) = match show.condition.as_ref() {
        Some(c) => crate::query::select::split_time(Some(c), q.now_ns)?,
        None => ((i64::MIN, i64::MAX), None),
    };
    let with_series = condition.is_some()
        || matches!(
            show.what,
            ShowWhat::Series
                | ShowWhat::SeriesCardinality { .. }
                | ShowWhat::TagValues { .. }
                | ShowWhat::TagValuesCardinality { .. }
        );
    // SHOW SERIES, TAG KEYS and TAG VALUES read only the shards a time condition
    // overlaps, as InfluxDB's (they run as queries over its system iterators).
    let mut request = whole_database(database, with_series);
    if matches!(
        show.what,
        ShowWhat::Series | ShowWhat::TagKeys | ShowWhat::TagValues { .. }
    ) {
        request.start_ns = request.start_ns.max(range.0);
        request.end_ns = request.end_ns.min(range.1);
        if request.start_ns > request.end_ns {
            return Ok(Vec::new());
        }
    }
    // The forms InfluxDB runs as SELECTs over per-shard data (field sets, series
    // cursors) read one retention policy: the one FROM names, else the database's
    // default. The others, and SHOW SERIES without time (its index is the
    // database's), read every policy.
    let as_select = match &show.what {
        ShowWhat::FieldKeys
        | ShowWhat::FieldKeyCardinality { .. }
        | ShowWhat::TagKeyCardinality { .. }
        | ShowWhat::TagValuesCardinality { .. } => true,
        // With a time condition it reads the series' data, not the index.
        ShowWhat::Series => on_time,
        ShowWhat::MeasurementCardinality { exact } | ShowWhat::SeriesCardinality { exact } => {
            *exact
                || !show.sources.is_empty()
                || show.condition.is_some()
                || show.limit > 0
                || show.offset > 0
        }
        _ => false,
    };
    if as_select {
        let named = show.sources.iter().find_map(|s| match s {
            Source::Measurement(m) => m.retention_policy.clone().filter(|p| !p.is_empty()),
            Source::Subquery(_) => None,
        });
        request.retention_policy = Some(named.unwrap_or_else(|| {
            q.meta
                .database(database)
                .map(|d| d.default_retention_policy.clone())
                .unwrap_or_default()
        }));
    }
    let schemas = q.schema(&request).await?;
    let mut merged = merge(&schemas);
    // FROM: keep the named or matching measurements.
    let sources: Vec<&Measurement> = show
        .sources
        .iter()
        .filter_map(|s| match s {
            Source::Measurement(m) => Some(m),
            Source::Subquery(_) => None,
        })
        .collect();
    if !sources.is_empty() {
        let mut keep = BTreeSet::new();
        for m in &sources {
            match (&m.name, &m.regex) {
                (Some(n), _) => {
                    keep.insert(n.clone());
                }
                (None, Some(re)) => {
                    let re = compile(re)?;
                    keep.extend(merged.keys().filter(|k| re.is_match(k)).cloned());
                }
                _ => {}
            }
        }
        merged.retain(|k, _| keep.contains(k));
    }
    // WHERE on tags: keep the matching series, and rebuild tag sets from them.
    if let Some(cond) = &condition {
        let no_slots: Vec<String> = Vec::new();
        for (name, m) in merged.iter_mut() {
            let tag_keys: BTreeSet<String> = m.tags.keys().cloned().collect();
            let ev = crate::influxql::eval::Evaluator::for_tags(&no_slots, &tag_keys);
            let mut series = BTreeSet::new();
            let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for key in &m.series {
                let (_, kv) = parse_series_key(key);
                let map: BTreeMap<String, String> = kv.into_iter().collect();
                if ev.matches(cond, &map) {
                    for (k, v) in &map {
                        tags.entry(k.clone()).or_default().insert(v.clone());
                    }
                    series.insert(key.clone());
                }
            }
            let _ = name;
            m.series = series;
            m.tags = tags;
        }
        merged.retain(|_, m| !m.series.is_empty());
    }
    let page = |v: Vec<Vec<Val>>| -> Vec<Vec<Val>> {
        let v: Vec<Vec<Val>> = v.into_iter().skip(show.offset).collect();
        if show.limit > 0 {
            v.into_iter().take(show.limit).collect()
        } else {
            v
        }
    };
    let series = |name: &str, columns: &[&str], values: Vec<Vec<Val>>| ResultSeries {
        name: name.to_string(),
        tags: None,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        values,
    };
    let count = |n: usize| vec![vec![Val::Int(n as i64)]];
    let mut out = Vec::new();
    match &show.what {
        ShowWhat::Measurements { filter } => {
            let mut names: Vec<&String> = merged.keys().collect();
            if let Some((op, e)) = filter {
                names.retain(|n| match (op, e) {
                    (Op::Eq, Expr::Str(s)) => *n == s,
                    (Op::Neq, Expr::Str(s)) => *n != s,
                    (Op::EqRegex, Expr::Regex(r)) => r.is_match(n),
                    (Op::NeqRegex, Expr::Regex(r)) => r.regex().is_ok_and(|r| !r.is_match(n)),
                    _ => true,
                });
            }
            let values = page(
                names
                    .into_iter()
                    .map(|n| vec![Val::Str(n.clone())])
                    .collect(),
            );
            if !values.is_empty() {
                out.push(series("measurements", &["name"], values));
            }
        }
        ShowWhat::TagKeys => {
            for (name, m) in &merged {
                let values = page(m.tags.keys().map(|k| vec![Val::Str(k.clone())]).collect());
                if !values.is_empty() {
                    out.push(series(name, &["tagKey"], values));
                }
            }
        }
        ShowWhat::FieldKeys => {
            for (name, m) in &merged {
                let values = page(
                    m.fields
                        .iter()
                        .map(|(k, t)| vec![Val::Str(k.clone()), Val::Str(t.clone())])
                        .collect(),
                );
                if !values.is_empty() {
                    out.push(series(name, &["fieldKey", "fieldType"], values));
                }
            }
        }
        ShowWhat::TagValues { op, keys, regex } => {
            for (name, m) in &merged {
                let values = page(tag_values(m, *op, keys, regex.as_ref())?);
                if !values.is_empty() {
                    out.push(series(name, &["key", "value"], values));
                }
            }
        }
        ShowWhat::Series => {
            // Ordered by unescaped measurement and tags, as InfluxDB's index.
            type Keyed<'a> = (String, Vec<(String, String)>, &'a String);
            let mut keys: Vec<Keyed> = merged
                .values()
                .flat_map(|m| m.series.iter())
                .map(|k| {
                    let (m, t) = parse_series_key(k);
                    (m, t, k)
                })
                .collect();
            keys.sort();
            let all: Vec<Vec<Val>> = keys
                .into_iter()
                .map(|(_, _, k)| vec![Val::Str(k.clone())])
                .collect();
            let values = page(all);
            if !values.is_empty() {
                out.push(series("", &["key"], values));
            }
        }
        ShowWhat::MeasurementCardinality { exact } => {
            let column = if *exact {
                "count"
            } else {
                "cardinality estimation"
            };
            out.push(series("", &[column], count(merged.len())));
        }
        ShowWhat::SeriesCardinality { exact } => {
            if *exact {
                for (name, m) in &merged {
                    let n: usize = m
                        .series
                        .iter()
                        .map(|k| m.shard_counts.get(k).copied().unwrap_or(1))
                        .sum();
                    out.push(series(name, &["count"], count(n)));
                }
            } else {
                let n: usize = merged.values().map(|m| m.series.len()).sum();
                out.push(series("", &["cardinality estimation"], count(n)));
            }
        }
        ShowWhat::TagKeyCardinality { .. } => {
            for (name, m) in &merged {
                out.push(series(name, &["count"], count(m.tags.len())));
            }
        }
        ShowWhat::FieldKeyCardinality { .. } => {
            for (name, m) in &merged {
                out.push(series(name, &["count"], count(m.fields.len())));
            }
        }
        ShowWhat::TagValuesCardinality {
            op, keys, regex, ..
        } => {
            for (name, m) in &merged {
                let n = tag_values(m, *op, keys, regex.as_ref())?.len();
                if n > 0 {
                    out.push(series(name, &["count"], count(n)));
                }
            }
        }
    }
    Ok(out)
}

/// (key, value) pairs of the selected tag keys, from the series that carry them.
fn tag_values(
    m: &Merged,
    op: Op,
    keys: &[String],
    regex: Option<&RegexLit>,
) -> Result<Vec<Vec<Val>>, QueryError> {
    let re = regex.map(compile).transpose()?;
    let selected = |k: &str| match op {
        Op::Eq => keys.iter().any(|x| x == k),
        Op::Neq => keys.iter().all(|x| x != k),
        Op::EqRegex => re.as_ref().is_some_and(|r| r.is_match(k)),
        Op::NeqRegex => re.as_ref().is_some_and(|r| !r.is_match(k)),
        _ => false,
    };
    let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
    for key in &m.series {
        for (k, v) in parse_series_key(key).1 {
            if selected(&k) {
                pairs.insert((k, v));
            }
        }
    }
    Ok(pairs
        .into_iter()
        .map(|(k, v)| vec![Val::Str(k), Val::Str(v)])
        .collect())
}

fn merge(schemas: &[ShardSchema]) -> BTreeMap<String, Merged> {
    let mut out: BTreeMap<String, Merged> = BTreeMap::new();
    for s in schemas {
        for (name, m) in &s.measurements {
            let e = out.entry(name.clone()).or_default();
            for (f, t) in &m.fields {
                e.fields.entry(f.clone()).or_insert_with(|| t.clone());
            }
            for (k, vs) in &m.tags {
                e.tags
                    .entry(k.clone())
                    .or_default()
                    .extend(vs.iter().cloned());
            }
            e.series.extend(m.series.iter().cloned());
            for k in &m.series {
                *e.shard_counts.entry(k.clone()).or_default() += 1;
            }
        }
    }
    out
}

/// SHOW SHARDS (one series per database) or SHOW SHARD GROUPS, from the shards that
/// exist on any node, with owners from placement.
pub async fn shards(q: &QueryContext<'_>, groups: bool) -> Result<Vec<ResultSeries>, QueryError> {
    use crate::influxql::format::rfc3339_nano;
    let snap = q.meta;
    let mut by_db: Vec<ResultSeries> = Vec::new();
    let mut group_rows: Vec<Vec<Val>> = Vec::new();
    for (name, db) in &snap.databases {
        let schemas = q.schema(&whole_database(name, false)).await?;
        let mut seen: BTreeSet<(String, i64)> = BTreeSet::new();
        for s in &schemas {
            seen.insert((s.retention_policy.clone(), s.start_ns));
        }
        let mut rows = Vec::new();
        for (rp, start) in seen {
            let Some(policy) = db.retention_policies.get(&rp) else {
                continue;
            };
            let group = crate::placement::place_group(
                name,
                &rp,
                start,
                policy.shard_group_duration_ns,
                policy.replication,
                q.membership,
            );
            let group_id = group.shards.first().map(|s| s.id).unwrap_or(0);
            let expiry = group.end_ns.saturating_add(policy.duration_ns);
            if groups {
                group_rows.push(vec![
                    Val::Uint(group_id),
                    Val::Str(name.clone()),
                    Val::Str(rp.clone()),
                    Val::Str(rfc3339_nano(group.start_ns)),
                    Val::Str(rfc3339_nano(group.end_ns)),
                    Val::Str(rfc3339_nano(expiry)),
                ]);
                continue;
            }
            for shard in &group.shards {
                let owners = shard
                    .owners
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                rows.push(vec![
                    Val::Uint(shard.id),
                    Val::Str(name.clone()),
                    Val::Str(rp.clone()),
                    Val::Uint(group_id),
                    Val::Str(rfc3339_nano(group.start_ns)),
                    Val::Str(rfc3339_nano(group.end_ns)),
                    Val::Str(rfc3339_nano(expiry)),
                    Val::Str(owners),
                ]);
            }
        }
        if !groups {
            by_db.push(ResultSeries {
                name: name.clone(),
                tags: None,
                columns: [
                    "id",
                    "database",
                    "retention_policy",
                    "shard_group",
                    "start_time",
                    "end_time",
                    "expiry_time",
                    "owners",
                ]
                .iter()
                .map(|c| c.to_string())
                .collect(),
                values: rows,
            });
        }
    }
    if groups {
        return Ok(vec![ResultSeries {
            name: "shard groups".into(),
            tags: None,
            columns: [
                "id",
                "database",
                "retention_policy",
                "start_time",
                "end_time",
                "expiry_time",
            ]
            .iter()
            .map(|c| c.to_string())
            .collect(),
            values: group_rows,
        }]);
    }
    Ok(by_db)
}
