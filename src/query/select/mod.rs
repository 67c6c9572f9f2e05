//! SELECT: planning over the schema, the scan of each measurement on its shards, and
//! the reduce that InfluxDB's engine does — raw rows, aggregates and selectors per
//! (group, window), transformations over windows, fill, ordering and limits.
//!
//! The scan brings back the columns the statement needs in its time range (DESIGN
//! section 7: each shard is read on its owning core, or by one of its owners remotely);
//! everything after the scan runs here, on the coordinating core.

mod evaluate;
mod partial;
mod plan;
mod reduce;

use crate::influxql::ast::{
    CountClause, Dimension, Expr, Field, Measurement, Op, Select, Source, VarKind,
};
use crate::influxql::eval::Evaluator;
use crate::influxql::format::parse_time;
use crate::influxql::function::Function;
use crate::influxql::regex::RegexLit;
use crate::influxql::value::Val;
use crate::query::functions;
pub use crate::query::series::ResultSeries;
use crate::query::{QueryContext, QueryError};
use crate::tsdb::read::scan::{
    parse_series_key, partial_column, weight_column, PartialKind, PartialSpec, ScanRequest,
    SchemaRequest, SeriesLimit, ShardSchema,
};
use evaluate::*;
use partial::*;
pub use plan::split_time;
use plan::*;
use reduce::*;
use regex::Regex;

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The data of one source measurement as the statement needs it.
struct SourceData {
    name: String,
    /// Shard group duration of the source's policy (0 for subquery results).
    shard_group_ns: i64,
    /// Field keys in row slot order.
    slots: Vec<String>,
    tag_keys: BTreeSet<String>,
    field_types: BTreeMap<String, String>,
    series: Vec<InputSeries>,
    /// The shards sent partial aggregates (`ScanRequest::partial`): the slots are
    /// `scan::partial_column`s and `scan::weight_column`s, and the statement's calls
    /// are rewritten to read them.
    partial: bool,
}

struct InputSeries {
    tags: BTreeMap<String, String>,
    /// (time, values by slot), sorted by time.
    rows: Vec<(i64, Vec<Val>)>,
}

use crate::base::time::{MAX_TIME_NS as MAX_TIME, MIN_TIME_NS as MIN_TIME};

pub async fn execute(q: &QueryContext<'_>, sel: &Select) -> Result<Vec<ResultSeries>, QueryError> {
    let zone = match &sel.tz {
        Some(name) => Some(
            crate::influxql::tz::Zone::load(name)
                .ok_or_else(|| QueryError::msg(format!("unable to find time zone {name}")))?,
        ),
        None => None,
    };
    let mut sel = bind_params(sel, q)?;
    // GROUP BY time(0s), or a negative interval: InfluxDB groups by no time at all.
    sel.dimensions
        .retain(|d| !matches!(d, Dimension::Time { interval, .. } if *interval <= 0));
    validate_fields(&sel)?;
    let (time_range, condition) = split_time(sel.condition.as_ref(), q.now_ns)?;
    // Transformations over windows read extra windows before the range
    // (InfluxDB's ExtraIntervals), so the first window has a predecessor.
    let scan_range = match (interval_of(&sel), extra_intervals(&sel)) {
        (Some(every), n) if n > 0 && time_range.0 > MIN_TIME => {
            (time_range.0.saturating_sub(every * n as i64), time_range.1)
        }
        _ => time_range,
    };
    let mut inputs: Vec<SourceData> = Vec::new();
    for source in &sel.sources {
        match source {
            Source::Measurement(m) => {
                inputs.extend(load_measurements(q, &sel, m, scan_range, condition.as_ref()).await?);
            }
            Source::Subquery(inner) => {
                // A raw inner query keeps each series' tags for the outer one.
                let mut inner = (**inner).clone();
                if !inner.fields.iter().any(|f| has_call(&f.expr)) {
                    inner.dimensions.push(Dimension::Wildcard);
                }
                let inner_series = Box::pin(execute(q, &inner)).await?;
                inputs.extend(from_subquery(&inner, inner_series));
            }
        }
    }
    // The same measurement named by several sources is one input.
    let mut by_name: BTreeMap<String, SourceData> = BTreeMap::new();
    for data in inputs {
        match by_name.remove(&data.name) {
            Some(existing) => {
                let merged = merge_sources(existing, data);
                by_name.insert(merged.name.clone(), merged);
            }
            None => {
                by_name.insert(data.name.clone(), data);
            }
        }
    }
    // `*` and `count(*)` expand over the fields of every source together.
    let mut all_fields: BTreeMap<String, String> = BTreeMap::new();
    let mut all_tags: BTreeSet<String> = BTreeSet::new();
    for d in by_name.values() {
        for (k, t) in &d.field_types {
            all_fields.entry(k.clone()).or_insert_with(|| t.clone());
        }
        all_tags.extend(d.tag_keys.iter().cloned());
    }
    let mut out = Vec::new();
    for data in by_name.into_values() {
        out.extend(
            reduce(
                &sel,
                data,
                &all_fields,
                &all_tags,
                time_range,
                condition.as_ref(),
                q,
                zone.as_ref(),
            )
            .await?,
        );
    }
    // InfluxDB picks SOFFSET/SLIMIT series in ascending (measurement, tags) order, then
    // emits them in descending order for ORDER BY time DESC (raw rows and aggregates).
    out.sort_by(|a, b| (&a.name, &a.tags).cmp(&(&b.name, &b.tags)));
    let mut out: Vec<ResultSeries> = out
        .into_iter()
        .skip(sel.soffset)
        .take(if sel.slimit > 0 {
            sel.slimit
        } else {
            usize::MAX
        })
        .collect();
    if sel.order_desc {
        out.reverse();
    }
    Ok(out)
}
