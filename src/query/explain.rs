//! EXPLAIN and EXPLAIN ANALYZE: our plan of a SELECT, one line per row of a `QUERY
//! PLAN` column (InfluxDB prints its own engine's plan the same way).
//!
//! Both run the statement's planning and scans through a [`Recording`] mapper that
//! notes every scan the engine asks for — measurement, policy, time range, fields,
//! whether the shards aggregate (partial aggregates) or send raw points, the
//! tag-condition pushed down — and what came back: shards, their groups and owners
//! (placement), series and values. EXPLAIN reports what it would read; EXPLAIN ANALYZE
//! also reduces the points and reports the time each phase took and the rows made.
//! EXPLAIN reads the shards too (planning needs the schema, and series counts need the
//! scan): it costs what the SELECT's scans cost, not more.

use crate::influxql::ast::Select;
use crate::influxql::format::{go_duration, rfc3339_nano};
use crate::query::select::ResultSeries;
use crate::query::{QueryContext, QueryError, ShardMapper};
use crate::tsdb::read::delete::DeleteRequest;
use crate::tsdb::read::scan::{ScanRequest, SchemaRequest, ShardScan, ShardSchema};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

/// One scan the engine asked for, and what came back.
struct ScanRecord {
    request: ScanRequest,
    shards: Vec<(u64, i64, usize, usize)>,
    elapsed_ns: u64,
}

/// A mapper that notes every scan it forwards.
pub struct Recording<'a> {
    inner: &'a dyn ShardMapper,
    scans: RefCell<Vec<ScanRecord>>,
    schema_requests: RefCell<usize>,
}

impl ShardMapper for Recording<'_> {
    fn scan<'a>(
        &'a self,
        request: &'a ScanRequest,
    ) -> crate::base::LocalFuture<'a, Result<Vec<ShardScan>, QueryError>> {
        Box::pin(async move {
            let started = Instant::now();
            let out = self.inner.scan(request).await?;
            let shards = out
                .iter()
                .map(|s| {
                    let values = s
                        .series
                        .iter()
                        .flat_map(|series| series.columns.iter().map(|c| c.values.len()))
                        .sum();
                    (s.shard_id, s.start_ns, s.series.len(), values)
                })
                .collect();
            self.scans.borrow_mut().push(ScanRecord {
                request: request.clone(),
                shards,
                elapsed_ns: started.elapsed().as_nanos() as u64,
            });
            Ok(out)
        })
    }

    fn schema<'a>(
        &'a self,
        request: &'a SchemaRequest,
    ) -> crate::base::LocalFuture<'a, Result<Vec<ShardSchema>, QueryError>> {
        *self.schema_requests.borrow_mut() += 1;
        self.inner.schema(request)
    }

    fn delete<'a>(
        &'a self,
        request: &'a DeleteRequest,
    ) -> crate::base::LocalFuture<'a, Result<u64, QueryError>> {
        self.inner.delete(request)
    }
}

/// `EXPLAIN [ANALYZE] SELECT ...`: the plan as one `QUERY PLAN` (or `EXPLAIN ANALYZE`)
/// column.
pub async fn explain(
    q: &QueryContext<'_>,
    select: &Select,
    analyze: bool,
) -> Result<Vec<ResultSeries>, QueryError> {
    let recording = Recording {
        inner: q.mapper,
        scans: RefCell::new(Vec::new()),
        schema_requests: RefCell::new(0),
    };
    let inner = QueryContext {
        mapper: &recording,
        meta: q.meta,
        membership: q.membership,
        stats: q.stats,
        db: q.db,
        rp: q.rp,
        params: q.params,
        now_ns: q.now_ns,
        limits: q.limits,
        deadline: q.deadline.clone(),
        query_id: q.query_id,
    };
    let mut plain = select.clone();
    plain.into = None;
    let started = Instant::now();
    let series = crate::query::select::execute(&inner, &plain).await?;
    let total_ns = started.elapsed().as_nanos() as u64;
    let scans = recording.scans.into_inner();
    let mut lines = vec![format!("STATEMENT: {plain}")];
    for (i, f) in plain.fields.iter().enumerate() {
        lines.push(format!("EXPRESSION {}: {}", i + 1, f.expr));
    }
    lines.push(format!("SCANS: {}", scans.len()));
    let (mut shards_total, mut series_total, mut values_total) = (0, 0, 0);
    for scan in &scans {
        let r = &scan.request;
        lines.push(format!(
            "SCAN {}.{}.{} from {} to {}",
            r.database,
            r.retention_policy,
            r.measurement,
            rfc3339_nano(r.start_ns),
            rfc3339_nano(r.end_ns)
        ));
        lines.push(format!(
            "  FIELDS: {}",
            r.fields
                .as_ref()
                .map_or("every field".to_string(), |f| f.join(", "))
        ));
        if let Some(c) = &r.tag_condition {
            lines.push(format!("  TAG CONDITION ON THE SHARDS: {c}"));
        }
        match &r.partial {
            Some(p) => lines.push(format!(
                "  AGGREGATION: partial aggregates on the shards ({}) per {} window",
                p.fields
                    .iter()
                    .map(|(f, kinds)| format!("{f}: {kinds:?}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                if p.every > 0 {
                    go_duration(p.every)
                } else {
                    "whole-range".to_string()
                }
            )),
            None => lines.push("  AGGREGATION: raw points to the coordinator".into()),
        }
        if let Some(limit) = &r.per_series_limit {
            lines.push(format!("  PER-SERIES LIMIT ON THE SHARDS: {limit:?}"));
        }
        let policy = q
            .meta
            .database(&r.database)
            .and_then(|d| d.retention_policies.get(&r.retention_policy));
        let mut by_shard: BTreeMap<u64, (i64, usize, usize)> = BTreeMap::new();
        for &(id, start, series, values) in &scan.shards {
            let e = by_shard.entry(id).or_insert((start, 0, 0));
            e.1 += series;
            e.2 += values;
        }
        lines.push(format!("  SHARDS: {}", by_shard.len()));
        for (id, (start, series, values)) in &by_shard {
            let owners = policy
                .map(|p| {
                    let group = crate::placement::place_group(
                        &r.database,
                        &r.retention_policy,
                        *start,
                        p.shard_group_duration_ns,
                        p.replication,
                        q.membership,
                    );
                    group
                        .shards
                        .iter()
                        .find(|s| s.id == *id)
                        .map(|s| {
                            s.owners
                                .iter()
                                .map(|o| o.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let mut line = format!(
                "    SHARD {id}: group {}, owners {owners}",
                rfc3339_nano(*start)
            );
            if analyze {
                line.push_str(&format!(", {series} series, {values} values"));
            }
            lines.push(line);
            series_total += series;
            values_total += values;
        }
        shards_total += by_shard.len();
        if analyze {
            lines.push(format!(
                "  SCAN TIME: {}",
                go_duration(scan.elapsed_ns as i64)
            ));
        }
    }
    lines.push(format!("NUMBER OF SHARDS: {shards_total}"));
    lines.push(format!("NUMBER OF SERIES: {series_total}"));
    if analyze {
        let scan_ns: u64 = scans.iter().map(|s| s.elapsed_ns).sum();
        let rows: usize = series.iter().map(|s| s.values.len()).sum();
        lines.push(format!("VALUES READ: {values_total}"));
        lines.push(format!(
            "SCHEMA REQUESTS: {}",
            recording.schema_requests.into_inner()
        ));
        lines.push(format!("RESULT: {} series, {rows} rows", series.len()));
        lines.push(format!("SCAN TIME: {}", go_duration(scan_ns as i64)));
        lines.push(format!(
            "PLAN AND REDUCE TIME: {}",
            go_duration(total_ns.saturating_sub(scan_ns) as i64)
        ));
        lines.push(format!("TOTAL TIME: {}", go_duration(total_ns as i64)));
    }
    Ok(vec![ResultSeries {
        name: String::new(),
        tags: None,
        columns: vec![if analyze {
            "EXPLAIN ANALYZE"
        } else {
            "QUERY PLAN"
        }
        .into()],
        values: lines
            .into_iter()
            .map(|l| vec![crate::influxql::value::Val::Str(l)])
            .collect(),
    }])
}
