//! SELECT: planning over the schema, the scan of each measurement on its shards, and
//! the reduce that InfluxDB's engine does — raw rows, aggregates and selectors per
//! (group, window), transformations over windows, fill, ordering and limits.
//!
//! The scan brings back the columns the statement needs in its time range (DESIGN
//! section 7: each shard is read on its owning core, or by one of its owners remotely);
//! everything after the scan runs here, on the coordinating core.

use crate::influxql::ast::{
    CountClause, Dimension, Expr, Field, Fill, Measurement, Op, Select, Source, VarKind,
};
use crate::influxql::eval::Evaluator;
use crate::influxql::format::parse_time;
use crate::influxql::regex::RegexLit;
use crate::influxql::value::Val;
use crate::query::functions;
use crate::query::{QueryContext, QueryError};
use crate::tsdb::read::scan::{
    parse_series_key, partial_column, weight_column, PartialKind, PartialSpec, ScanRequest,
    SchemaRequest, SeriesLimit, ShardSchema,
};
use regex::Regex;

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One result series: time is column 0, as nanoseconds (`Val::Int`) until rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultSeries {
    pub name: String,
    /// Group-by tags; `None` when the statement has no GROUP BY tags.
    pub tags: Option<BTreeMap<String, String>>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Val>>,
}

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
    if sel.into.is_some() {
        return Err(QueryError::msg(
            "SELECT INTO is not supported by ShardCore yet",
        ));
    }
    let zone = match &sel.tz {
        Some(name) => Some(
            crate::influxql::tz::Zone::load(name)
                .ok_or_else(|| QueryError::msg(format!("unable to find time zone {name}")))?,
        ),
        None => None,
    };
    let sel = bind_params(sel, q)?;
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
    for d in by_name.values() {
        for (k, t) in &d.field_types {
            all_fields.entry(k.clone()).or_insert_with(|| t.clone());
        }
    }
    let mut out = Vec::new();
    for data in by_name.into_values() {
        out.extend(
            reduce(
                &sel,
                data,
                &all_fields,
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

fn interval_of(sel: &Select) -> Option<i64> {
    sel.dimensions.iter().find_map(|d| match d {
        Dimension::Time { interval, .. } => Some(*interval),
        _ => None,
    })
}

/// Windows read before the range for transformations of aggregates.
fn extra_intervals(sel: &Select) -> usize {
    let mut n = 0;
    for f in &sel.fields {
        f.expr.walk(&mut |e| {
            if let Expr::Call { name, args } = e {
                let inner_call = matches!(args.first(), Some(Expr::Call { .. }));
                match name.as_str() {
                    "derivative"
                    | "non_negative_derivative"
                    | "difference"
                    | "non_negative_difference"
                    | "elapsed"
                        if inner_call =>
                    {
                        n = n.max(1)
                    }
                    "moving_average" if inner_call => {
                        if let Some(Expr::Integer(k)) = args.get(1) {
                            n = n.max((*k - 1).max(0) as usize);
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    n
}

/// Checks that need no data: InfluxDB's compile-time field errors.
fn validate_fields(sel: &Select) -> Result<(), QueryError> {
    for f in &sel.fields {
        let mut vars = 0;
        let mut non_time = false;
        let mut unknown: Option<String> = None;
        f.expr.walk(&mut |e| match e {
            Expr::VarRef { name, .. } => {
                vars += 1;
                if !name.eq_ignore_ascii_case("time") {
                    non_time = true;
                }
            }
            Expr::Wildcard(_) | Expr::Regex(_) => {
                vars += 1;
                non_time = true;
            }
            Expr::Call { name, .. } if !functions::is_known(name) && unknown.is_none() => {
                unknown = Some(name.clone());
            }
            _ => {}
        });
        if let Some(name) = unknown {
            return Err(QueryError::msg(format!("undefined function {name}()")));
        }
        if vars == 0 {
            return Err(QueryError::msg("field must contain at least one variable"));
        }
        if !non_time {
            return Err(QueryError::msg("at least 1 non-time field must be queried"));
        }
    }
    Ok(())
}

/// Two inputs of the same measurement name (e.g. `FROM cpu, db2..cpu`) as one.
fn merge_sources(a: SourceData, b: SourceData) -> SourceData {
    let mut slots: Vec<String> = a.slots.iter().chain(b.slots.iter()).cloned().collect();
    slots.sort();
    slots.dedup();
    let remap = |data: SourceData, slots: &[String]| -> Vec<InputSeries> {
        let index: Vec<Option<usize>> = slots
            .iter()
            .map(|s| data.slots.iter().position(|x| x == s))
            .collect();
        data.series
            .into_iter()
            .map(|s| InputSeries {
                tags: s.tags,
                rows: s
                    .rows
                    .into_iter()
                    .map(|(t, vals)| {
                        let v = index
                            .iter()
                            .map(|i| i.map(|i| vals[i].clone()).unwrap_or_default())
                            .collect();
                        (t, v)
                    })
                    .collect(),
            })
            .collect()
    };
    let mut field_types = a.field_types.clone();
    for (k, t) in &b.field_types {
        field_types.entry(k.clone()).or_insert_with(|| t.clone());
    }
    let mut tag_keys = a.tag_keys.clone();
    tag_keys.extend(b.tag_keys.iter().cloned());
    let name = a.name.clone();
    let a_group = a.shard_group_ns;
    let mut series = remap(a, &slots);
    series.extend(remap(b, &slots));
    series.sort_by(|x, y| x.tags.cmp(&y.tags));
    SourceData {
        name,
        shard_group_ns: a_group,
        slots,
        tag_keys,
        field_types,
        series,
        partial: false,
    }
}

/// Replaces `$name` parameters with their values from `params`.
fn bind_params(sel: &Select, q: &QueryContext<'_>) -> Result<Select, QueryError> {
    fn bind(e: &Expr, q: &QueryContext<'_>) -> Result<Expr, QueryError> {
        Ok(match e {
            Expr::BoundParam(name) => match q.params.get(name) {
                Some(serde_json::Value::String(s)) => Expr::Str(s.clone()),
                Some(serde_json::Value::Bool(b)) => Expr::Bool(*b),
                Some(serde_json::Value::Number(n)) => match n.as_i64() {
                    Some(i) => Expr::Integer(i),
                    None => Expr::Number(n.as_f64().unwrap_or(0.0)),
                },
                _ => {
                    return Err(QueryError::msg(format!("missing parameter: {name}")));
                }
            },
            Expr::Binary { op, lhs, rhs } => Expr::binary(*op, bind(lhs, q)?, bind(rhs, q)?),
            Expr::Paren(inner) => Expr::Paren(Box::new(bind(inner, q)?)),
            Expr::Call { name, args } => Expr::Call {
                name: name.clone(),
                args: args.iter().map(|a| bind(a, q)).collect::<Result<_, _>>()?,
            },
            other => other.clone(),
        })
    }
    let mut out = sel.clone();
    if let Some(c) = &sel.condition {
        out.condition = Some(bind(c, q)?);
    }
    for (clause, name) in &sel.count_params {
        let n = match q.params.get(name) {
            Some(v) => v.as_u64().ok_or_else(|| {
                QueryError::msg(format!(
                    "{} requires a non-negative integer, got parameter {name} = {v}",
                    clause.keyword()
                ))
            })? as usize,
            None => return Err(QueryError::msg(format!("missing parameter: {name}"))),
        };
        match clause {
            CountClause::Limit => out.limit = n,
            CountClause::Offset => out.offset = n,
            CountClause::SLimit => out.slimit = n,
            CountClause::SOffset => out.soffset = n,
        }
    }
    out.count_params.clear();
    for f in &mut out.fields {
        f.expr = bind(&f.expr, q)?;
    }
    Ok(out)
}

/// Takes the time bounds out of the top-level ANDs of a condition.
pub fn split_time(
    cond: Option<&Expr>,
    now_ns: i64,
) -> Result<((i64, i64), Option<Expr>), QueryError> {
    let mut range = (MIN_TIME, MAX_TIME);
    let Some(cond) = cond else {
        return Ok((range, None));
    };
    let rest = take_time(cond, &mut range, now_ns)?;
    Ok((range, rest))
}

fn take_time(e: &Expr, range: &mut (i64, i64), now_ns: i64) -> Result<Option<Expr>, QueryError> {
    match e {
        Expr::Paren(inner) => take_time(inner, range, now_ns),
        Expr::Binary {
            op: Op::And,
            lhs,
            rhs,
        } => {
            let l = take_time(lhs, range, now_ns)?;
            let r = take_time(rhs, range, now_ns)?;
            Ok(match (l, r) {
                (Some(l), Some(r)) => Some(Expr::binary(Op::And, l, r)),
                (l, r) => l.or(r),
            })
        }
        Expr::Binary { op, lhs, rhs } if op.is_comparison() => {
            let (op, value) = if is_time_ref(lhs) {
                (*op, rhs)
            } else if is_time_ref(rhs) {
                (flip(*op), lhs)
            } else {
                return Ok(Some(e.clone()));
            };
            let t = time_value(value, now_ns)?;
            match op {
                Op::Gt => range.0 = range.0.max(t.saturating_add(1)),
                Op::Gte => range.0 = range.0.max(t),
                Op::Lt => range.1 = range.1.min(t.saturating_sub(1)),
                Op::Lte => range.1 = range.1.min(t),
                Op::Eq => {
                    range.0 = range.0.max(t);
                    range.1 = range.1.min(t);
                }
                _ => {
                    return Err(QueryError::msg(
                        "invalid time comparison operator: only =, <, <=, >, >= are allowed",
                    ))
                }
            }
            Ok(None)
        }
        _ => Ok(Some(e.clone())),
    }
}

fn flip(op: Op) -> Op {
    match op {
        Op::Gt => Op::Lt,
        Op::Gte => Op::Lte,
        Op::Lt => Op::Gt,
        Op::Lte => Op::Gte,
        o => o,
    }
}

fn is_time_ref(e: &Expr) -> bool {
    matches!(e.unparen(), Expr::VarRef { name, .. } if name.eq_ignore_ascii_case("time"))
}

/// The nanosecond value of a time literal expression: a time string, an integer of
/// nanoseconds, a duration, `now()`, and sums and differences of those.
fn time_value(e: &Expr, now_ns: i64) -> Result<i64, QueryError> {
    match e.unparen() {
        Expr::Str(s) => parse_time(s).ok_or_else(|| {
            QueryError::msg(
                "invalid operation: time and *influxql.StringLiteral are not compatible",
            )
        }),
        Expr::Integer(i) => Ok(*i),
        Expr::Number(n) => Ok(*n as i64),
        Expr::Duration(d) => Ok(*d),
        Expr::Call { name, args } if name == "now" && args.is_empty() => Ok(now_ns),
        Expr::Binary { op, lhs, rhs } if matches!(op, Op::Add | Op::Sub) => {
            let (a, b) = (time_value(lhs, now_ns)?, time_value(rhs, now_ns)?);
            Ok(if *op == Op::Add {
                a.saturating_add(b)
            } else {
                a.saturating_sub(b)
            })
        }
        other => Err(QueryError::msg(format!("invalid time value: {other}"))),
    }
}

/// Resolves a measurement source to the data of each measurement it names.
async fn load_measurements(
    q: &QueryContext<'_>,
    sel: &Select,
    m: &Measurement,
    range: (i64, i64),
    condition: Option<&Expr>,
) -> Result<Vec<SourceData>, QueryError> {
    let database = match m.database.as_deref().or(q.db) {
        Some(d) => d.to_string(),
        None => return Err(QueryError::msg("database name required")),
    };
    let snap = q.meta;
    let Some(db) = snap.database(&database) else {
        return Err(QueryError::msg(format!("database not found: {database}")));
    };
    let rp = match m.retention_policy.as_deref().or(q.rp) {
        Some(rp) => {
            if !db.retention_policies.contains_key(rp) {
                return Err(QueryError::msg(format!("retention policy not found: {rp}")));
            }
            rp.to_string()
        }
        None => db.default_retention_policy.clone(),
    };
    let schemas = q
        .schema(&SchemaRequest {
            database: database.clone(),
            retention_policy: Some(rp.clone()),
            start_ns: range.0,
            end_ns: range.1,
            with_series: false,
            shard_ids: None,
            keys_only: true,
        })
        .await?;
    let merged = merge_schemas(&schemas);
    let names: Vec<&String> = match (&m.name, &m.regex) {
        (Some(name), _) => merged.keys().filter(|k| *k == name).collect(),
        (None, Some(re)) => {
            let re = compile(re)?;
            merged.keys().filter(|k| re.is_match(k)).collect()
        }
        (None, None) => Vec::new(),
    };
    let mut out = Vec::new();
    for name in names {
        let (fields, tags) = &merged[name];
        let mut data = SourceData {
            name: name.clone(),
            shard_group_ns: db
                .retention_policies
                .get(&rp)
                .map_or(0, |p| p.shard_group_duration_ns),
            slots: Vec::new(),
            tag_keys: tags.clone(),
            field_types: fields.clone(),
            series: Vec::new(),
            partial: false,
        };
        let slots = needed_fields(sel, condition, &data);
        if slots.is_empty() {
            out.push(data);
            continue;
        }
        let starts = schemas
            .iter()
            .filter(|s| s.measurements.contains_key(name))
            .map(|s| s.start_ns);
        let shard_starts = (
            starts.clone().min().unwrap_or(i64::MIN),
            starts.max().unwrap_or(i64::MAX),
        );
        let partial = partial_spec(sel, condition, &data, q, shard_starts);
        data.slots = match &partial {
            Some(spec) => partial_slots(spec),
            None => slots.clone(),
        };
        data.partial = partial.is_some();
        if data.partial {
            crate::metrics::CoreStats::add(&q.stats.partial_scans, 1);
        }
        let scans = q
            .scan(&ScanRequest {
                database: database.clone(),
                retention_policy: rp.clone(),
                measurement: name.clone(),
                fields: Some(slots.clone()),
                start_ns: range.0,
                end_ns: range.1,
                shard_ids: None,
                tag_condition: condition
                    .and_then(|c| tag_only_part(c, &data))
                    .map(|c| c.to_string()),
                per_series_limit: per_series_limit(sel, condition, &data),
                partial,
                // Set by `QueryContext::scan` from the statement.
                max_points: 0,
                query_id: 0,
                budget_ms: None,
                deadline: Default::default(),
            })
            .await?;
        data.series = series_rows(scans, &data.slots, q.limits.max_select_point)?;
        if q.limits.max_select_series > 0 && data.series.len() > q.limits.max_select_series {
            return Err(QueryError::msg(format!(
                "max-select-series limit exceeded: ({}/{})",
                data.series.len(),
                q.limits.max_select_series
            )));
        }
        out.push(data);
    }
    Ok(out)
}

/// The conjuncts of a condition that only read tags (pushed to the shards).
/// Functions the shards can pre-aggregate (see [`PartialSpec`]) and the kind each reads.
fn partial_kind(call: &str, field_type: &str) -> Option<PartialKind> {
    Some(match call {
        "count" | "sum" => PartialKind::Sum,
        // A float field's own sum is already a float sum.
        "mean" if field_type == "float" => PartialKind::Sum,
        "mean" => PartialKind::FloatSum,
        "min" => PartialKind::Min,
        "max" => PartialKind::Max,
        "first" => PartialKind::First,
        "last" => PartialKind::Last,
        _ => return None,
    })
}

/// Whether `e` only reads supported aggregates of numeric fields (collecting the kinds
/// each field needs).
fn partial_expr(
    e: &Expr,
    data: &SourceData,
    kinds: &mut BTreeMap<String, BTreeSet<PartialKind>>,
) -> bool {
    match e {
        Expr::Paren(inner) => partial_expr(inner, data, kinds),
        Expr::Binary { lhs, rhs, .. } => {
            partial_expr(lhs, data, kinds) && partial_expr(rhs, data, kinds)
        }
        Expr::Number(_) | Expr::Integer(_) => true,
        Expr::Call { name, args } if functions::is_transform(name) => {
            matches!(args.first().map(Expr::unparen), Some(Expr::Call { .. }))
                && partial_expr(&args[0], data, kinds)
                && args[1..]
                    .iter()
                    .all(|a| matches!(a, Expr::Duration(_) | Expr::Integer(_) | Expr::Number(_)))
        }
        Expr::Call { name, args } if functions::is_aggregate_or_transform(name) => {
            let [Expr::VarRef {
                name: field,
                kind: None,
            }] = args.as_slice()
            else {
                return false;
            };
            let Some(field_type) = data.field_types.get(field) else {
                return false;
            };
            if !matches!(field_type.as_str(), "float" | "integer" | "unsigned")
                || data.tag_keys.contains(field)
            {
                return false;
            }
            match partial_kind(name, field_type) {
                Some(kind) => {
                    kinds.entry(field.clone()).or_default().insert(kind);
                    true
                }
                None => false,
            }
        }
        // Math functions over aggregates.
        Expr::Call { args, .. } => args.iter().all(|a| partial_expr(a, data, kinds)),
        _ => false,
    }
}

/// The partial-aggregation request for this source, when the statement allows it:
/// `GROUP BY time` without `tz()`, one plain measurement, no field in the WHERE
/// clause, every call a supported aggregate of a numeric field, and no
/// `max-select-point` (which counts raw points).
fn partial_spec(
    sel: &Select,
    condition: Option<&Expr>,
    data: &SourceData,
    q: &QueryContext<'_>,
    (first_shard_start, last_shard_start): (i64, i64),
) -> Option<PartialSpec> {
    // Without GROUP BY time: one window (`every` 0); transformations need windows.
    let (every, offset) = sel
        .dimensions
        .iter()
        .find_map(|d| match d {
            Dimension::Time { interval, offset } => Some((*interval, *offset)),
            _ => None,
        })
        .unwrap_or((0, 0));
    let has_transform = sel.fields.iter().any(|f| {
        let mut found = false;
        f.expr.walk(&mut |x| {
            if matches!(x, Expr::Call { name, .. } if functions::is_transform(name)) {
                found = true;
            }
        });
        found
    });
    if every < 0
        || (every == 0 && has_transform)
        || sel.tz.is_some()
        || sel.sources.len() != 1
        || q.limits.max_select_point > 0
        || data.shard_group_ns <= 0
    {
        return None;
    }
    if condition.is_some_and(|c| !reads_only_tags(c, data)) {
        return None;
    }
    let mut kinds = BTreeMap::new();
    for f in &sel.fields {
        if !partial_expr(&f.expr, data, &mut kinds) {
            return None;
        }
    }
    if kinds.is_empty() {
        return None;
    }
    let offset = if offset == i64::MIN && every > 0 {
        q.now_ns.rem_euclid(every)
    } else if every == 0 {
        0
    } else {
        offset
    };
    Some(PartialSpec {
        every,
        offset,
        group_ns: data.shard_group_ns,
        desc: sel.order_desc,
        first_shard_start,
        last_shard_start,
        fields: kinds
            .into_iter()
            .map(|(f, k)| (f, k.into_iter().collect()))
            .collect(),
    })
}

/// The row slots of a partial scan: each field's kind columns, then its weights.
fn partial_slots(spec: &PartialSpec) -> Vec<String> {
    let mut slots = Vec::new();
    for (field, kinds) in &spec.fields {
        for &k in kinds {
            slots.push(partial_column(field, k));
        }
        if kinds.iter().any(|k| k.weighted()) {
            slots.push(weight_column(field));
        }
    }
    slots
}

/// Points the calls of `e` at their partial columns (`mean(x)` reads `x`'s sums).
fn rewrite_for_partials(e: &Expr, data: &SourceData) -> Expr {
    match e {
        Expr::Paren(inner) => Expr::Paren(Box::new(rewrite_for_partials(inner, data))),
        Expr::Binary { op, lhs, rhs } => Expr::Binary {
            op: *op,
            lhs: Box::new(rewrite_for_partials(lhs, data)),
            rhs: Box::new(rewrite_for_partials(rhs, data)),
        },
        Expr::Call { name, args } => {
            if let [Expr::VarRef {
                name: field,
                kind: None,
            }] = args.as_slice()
            {
                let ty = data.field_types.get(field).map_or("float", String::as_str);
                if let Some(kind) = partial_kind(name, ty) {
                    return Expr::Call {
                        name: name.clone(),
                        args: vec![Expr::VarRef {
                            name: partial_column(field, kind),
                            kind: None,
                        }],
                    };
                }
            }
            Expr::Call {
                name: name.clone(),
                args: args.iter().map(|a| rewrite_for_partials(a, data)).collect(),
            }
        }
        other => other.clone(),
    }
}

/// The per-series limit a raw `SELECT ... LIMIT n [OFFSET o]` can push to the shards:
/// no function call in the field list (so rows are the stored rows) and no field in
/// the WHERE clause (so the limit counts the rows the shard would return).
fn per_series_limit(
    sel: &Select,
    condition: Option<&Expr>,
    data: &SourceData,
) -> Option<SeriesLimit> {
    if sel.limit == 0
        || sel
            .dimensions
            .iter()
            .any(|d| matches!(d, Dimension::Time { .. }))
    {
        return None;
    }
    let mut calls = false;
    for f in &sel.fields {
        f.expr.walk(&mut |x| {
            if matches!(x, Expr::Call { .. }) {
                calls = true;
            }
        });
    }
    if calls {
        return None;
    }
    if condition.is_some_and(|c| !reads_only_tags(c, data)) {
        return None;
    }
    Some(SeriesLimit {
        n: sel.limit.saturating_add(sel.offset),
        newest: sel.order_desc,
    })
}

/// Whether a variable of the source names a tag (`::tag`, or a tag key that is not
/// also a field).
fn is_tag_ref(name: &str, kind: Option<VarKind>, data: &SourceData) -> bool {
    kind == Some(VarKind::Tag)
        || (kind.is_none() && data.tag_keys.contains(name) && !data.field_types.contains_key(name))
}

/// Whether a condition reads tags only (no field, no function call, no parameter), so
/// the rows it keeps are decided per series.
fn reads_only_tags(cond: &Expr, data: &SourceData) -> bool {
    let mut only_tags = true;
    cond.walk(&mut |x| match x {
        Expr::VarRef { name, kind } => only_tags &= is_tag_ref(name, *kind, data),
        Expr::Call { .. } | Expr::BoundParam(_) => only_tags = false,
        _ => {}
    });
    only_tags
}

fn tag_only_part(cond: &Expr, data: &SourceData) -> Option<Expr> {
    match cond {
        Expr::Paren(inner) => tag_only_part(inner, data),
        Expr::Binary {
            op: Op::And,
            lhs,
            rhs,
        } => match (tag_only_part(lhs, data), tag_only_part(rhs, data)) {
            (Some(l), Some(r)) => Some(Expr::binary(Op::And, l, r)),
            (l, r) => l.or(r),
        },
        e => {
            let mut only_tags = true;
            let mut any_tag = false;
            e.walk(&mut |x| match x {
                Expr::VarRef { name, kind } => {
                    if is_tag_ref(name, *kind, data) {
                        any_tag = true;
                    } else {
                        only_tags = false;
                    }
                }
                Expr::Call { .. } | Expr::BoundParam(_) => only_tags = false,
                _ => {}
            });
            (only_tags && any_tag).then(|| e.clone())
        }
    }
}

type MergedSchema = BTreeMap<String, (BTreeMap<String, String>, BTreeSet<String>)>;

fn merge_schemas(schemas: &[ShardSchema]) -> MergedSchema {
    let mut out: MergedSchema = BTreeMap::new();
    for s in schemas {
        for (name, m) in &s.measurements {
            let entry = out.entry(name.clone()).or_default();
            for (f, t) in &m.fields {
                entry.0.entry(f.clone()).or_insert_with(|| t.clone());
            }
            entry.1.extend(m.tags.keys().cloned());
        }
    }
    out
}

/// Field keys the statement reads from `data` (in the select list or the condition);
/// the slot order of every row.
fn needed_fields(sel: &Select, condition: Option<&Expr>, data: &SourceData) -> Vec<String> {
    let mut names = BTreeSet::new();
    let mut visit = |e: &Expr| {
        e.walk(&mut |x| match x {
            Expr::VarRef { name, kind }
                if kind != &Some(VarKind::Tag) && data.field_types.contains_key(name) =>
            {
                names.insert(name.clone());
            }
            Expr::Wildcard(kind) if kind != &Some(VarKind::Tag) => {
                names.extend(data.field_types.keys().cloned());
            }
            Expr::Regex(re) => {
                if let Ok(re) = re.regex() {
                    names.extend(data.field_types.keys().filter(|k| re.is_match(k)).cloned());
                }
            }
            _ => {}
        })
    };
    for f in &sel.fields {
        visit(&f.expr);
    }
    if let Some(c) = condition {
        // Regexes in a condition match tag values, not field names.
        c.walk(&mut |x| {
            if let Expr::VarRef { name, kind } = x {
                if kind != &Some(VarKind::Tag) && data.field_types.contains_key(name) {
                    names.insert(name.clone());
                }
            }
        });
    }
    names.into_iter().collect()
}

/// Builds per-series rows from shard scans: the same series from several shards is
/// concatenated; columns are merged by timestamp.
fn series_rows(
    scans: Vec<crate::tsdb::read::scan::ShardScan>,
    slots: &[String],
    max_points: usize,
) -> Result<Vec<InputSeries>, QueryError> {
    let slot_of: HashMap<&str, usize> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    // Per series key, its columns from every shard (shards hold disjoint time ranges).
    let mut by_key: BTreeMap<String, Vec<SlotColumn>> = BTreeMap::new();
    let mut points = 0usize;
    for scan in scans {
        for series in scan.series {
            let cols = by_key.entry(series.key).or_default();
            for column in series.columns {
                let Some(&slot) = slot_of.get(column.field.as_str()) else {
                    continue;
                };
                points += column.times.len();
                if max_points > 0 && points > max_points {
                    return Err(QueryError::msg(format!(
                        "max-select-point limit exceeed: ({points}/{max_points})"
                    )));
                }
                cols.push((slot, column.times, column.values));
            }
        }
    }
    let by_key: BTreeMap<String, Vec<(i64, Vec<Val>)>> = by_key
        .into_iter()
        .map(|(key, cols)| (key, merge_columns(cols, slots.len())))
        .collect();
    // Series by their canonical (escaped) key: the order InfluxDB's merge gives rows
    // that share a timestamp.
    let out: Vec<InputSeries> = by_key
        .into_iter()
        .map(|(key, rows)| {
            let (_, tags) = parse_series_key(&key);
            InputSeries {
                tags: tags.into_iter().collect(),
                rows,
            }
        })
        .collect();
    Ok(out)
}

/// One scanned column of a series: its row slot, times and values.
type SlotColumn = (usize, Vec<i64>, Vec<crate::tsdb::shard::Value>);

/// Rows of one series from its sorted columns (each `(slot, times, values)`, possibly
/// several per slot from different shards): a k-way merge by time, one row per
/// timestamp with a value (or null) per slot.
fn merge_columns(cols: Vec<SlotColumn>, width: usize) -> Vec<(i64, Vec<Val>)> {
    if cols.len() == 1 {
        let (slot, times, values) = cols.into_iter().next().expect("one column");
        return times
            .into_iter()
            .zip(values.iter())
            .map(|(t, v)| {
                let mut row = vec![Val::Null; width];
                row[slot] = Val::from(v);
                (t, row)
            })
            .collect();
    }
    // The fields of one point share its timestamp: when every column holds the same
    // timestamps (the usual case), rows are the columns side by side.
    if cols.len() > 1 && cols[1..].iter().all(|c| c.1 == cols[0].1) {
        let times = &cols[0].1;
        let mut out: Vec<(i64, Vec<Val>)> = Vec::with_capacity(times.len());
        for (i, &t) in times.iter().enumerate() {
            let mut row = vec![Val::Null; width];
            for (slot, _, values) in &cols {
                row[*slot] = Val::from(&values[i]);
            }
            out.push((t, row));
        }
        return out;
    }
    let total: usize = cols.iter().map(|c| c.1.len()).sum();
    let mut at = vec![0usize; cols.len()];
    let mut out: Vec<(i64, Vec<Val>)> = Vec::with_capacity(total / cols.len().max(1));
    loop {
        let mut next: Option<i64> = None;
        for (c, col) in cols.iter().enumerate() {
            if let Some(&t) = col.1.get(at[c]) {
                next = Some(next.map_or(t, |n: i64| n.min(t)));
            }
        }
        let Some(t) = next else { break };
        let mut row = vec![Val::Null; width];
        for (c, col) in cols.iter().enumerate() {
            if col.1.get(at[c]) == Some(&t) {
                row[col.0] = Val::from(&col.2[at[c]]);
                at[c] += 1;
            }
        }
        out.push((t, row));
    }
    out
}

/// A subquery's result series become the outer statement's input series.
fn from_subquery(inner: &Select, series: Vec<ResultSeries>) -> Vec<SourceData> {
    let dims: BTreeSet<String> = inner
        .dimensions
        .iter()
        .filter_map(|d| match d {
            Dimension::Tag(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let mut by_name: BTreeMap<String, Vec<ResultSeries>> = BTreeMap::new();
    for s in series {
        by_name.entry(s.name.clone()).or_default().push(s);
    }
    let mut out = Vec::new();
    for (name, list) in by_name {
        let mut field_types: BTreeMap<String, String> = BTreeMap::new();
        let mut tag_keys = dims.clone();
        for s in &list {
            if let Some(t) = &s.tags {
                tag_keys.extend(t.keys().cloned());
            }
            for (i, c) in s.columns.iter().enumerate().skip(1) {
                let kind = s
                    .values
                    .iter()
                    .map(|r| &r[i])
                    .find(|v| !v.is_null())
                    .map(|v| match v {
                        Val::Float(_) => "float",
                        Val::Int(_) => "integer",
                        Val::Uint(_) => "unsigned",
                        Val::Bool(_) => "boolean",
                        _ => "string",
                    });
                let entry = field_types
                    .entry(c.clone())
                    .or_insert_with(|| "float".into());
                if let Some(k) = kind {
                    *entry = k.to_string();
                }
            }
        }
        let slots: Vec<String> = field_types.keys().cloned().collect();
        let series = list
            .into_iter()
            .map(|s| {
                let index: Vec<Option<usize>> = slots
                    .iter()
                    .map(|slot| s.columns.iter().position(|c| c == slot))
                    .collect();
                let rows = s
                    .values
                    .iter()
                    .map(|r| {
                        let t = match r[0] {
                            Val::Int(t) => t,
                            _ => 0,
                        };
                        let vals = index
                            .iter()
                            .map(|i| i.map(|i| r[i].clone()).unwrap_or_default())
                            .collect();
                        (t, vals)
                    })
                    .collect();
                InputSeries {
                    tags: s.tags.unwrap_or_default(),
                    rows,
                }
            })
            .collect();
        out.push(SourceData {
            name,
            shard_group_ns: 0,
            slots,
            tag_keys,
            field_types,
            series,
            partial: false,
        });
    }
    out
}

fn compile(re: &RegexLit) -> Result<&Regex, QueryError> {
    re.regex().map_err(|e| QueryError::msg(re.error_text(e)))
}

/// The fields of the statement with wildcards and field regexes expanded.
fn expand_fields(
    sel: &Select,
    data: &SourceData,
    all_fields: &BTreeMap<String, String>,
) -> Vec<Field> {
    let mut out = Vec::new();
    // Tags that are GROUP BY dimensions are not columns of `*`.
    let grouped = group_tag_keys(sel, data);
    for f in &sel.fields {
        match &f.expr {
            Expr::Wildcard(kind) => {
                let mut names: Vec<(String, VarKind)> = Vec::new();
                if *kind != Some(VarKind::Tag) {
                    names.extend(data.field_types.keys().map(|k| (k.clone(), VarKind::Field)));
                }
                if *kind != Some(VarKind::Field) {
                    names.extend(
                        data.tag_keys
                            .iter()
                            .filter(|k| !grouped.contains(k))
                            .map(|k| (k.clone(), VarKind::Tag)),
                    );
                }
                push_sorted_refs(&mut out, names);
            }
            Expr::Regex(re) => {
                if let Ok(re) = re.regex() {
                    let mut names: Vec<(String, VarKind)> = data
                        .field_types
                        .keys()
                        .filter(|k| re.is_match(k))
                        .map(|k| (k.clone(), VarKind::Field))
                        .collect();
                    names.extend(
                        data.tag_keys
                            .iter()
                            .filter(|k| re.is_match(k))
                            .map(|k| (k.clone(), VarKind::Tag)),
                    );
                    push_sorted_refs(&mut out, names);
                }
            }
            Expr::Call { name, args }
                if matches!(args.first(), Some(Expr::Wildcard(_) | Expr::Regex(_))) =>
            {
                // mean(*) -> mean_a, mean_b over every (numeric) field.
                let re = match &args[0] {
                    Expr::Regex(r) => r.regex().ok(),
                    _ => None,
                };
                for (field, t) in all_fields {
                    if re.as_ref().is_some_and(|r| !r.is_match(field)) {
                        continue;
                    }
                    if functions::needs_numbers(name)
                        && !(t == "float" || t == "integer" || t == "unsigned")
                    {
                        continue;
                    }
                    let mut new_args = args.clone();
                    new_args[0] = Expr::VarRef {
                        name: field.clone(),
                        kind: None,
                    };
                    out.push(Field {
                        expr: Expr::Call {
                            name: name.clone(),
                            args: new_args,
                        },
                        alias: Some(format!("{}_{}", f.alias.as_deref().unwrap_or(name), field)),
                    });
                }
            }
            Expr::Call { name, args } if (name == "top" || name == "bottom") && args.len() > 2 => {
                // top(f, tag, N) answers the tag beside the value, as a column.
                out.push(f.clone());
                for t in &args[1..args.len() - 1] {
                    out.push(Field {
                        expr: t.clone(),
                        alias: None,
                    });
                }
            }
            _ => out.push(f.clone()),
        }
    }
    out
}

/// Fields for `names` (fields and tags together, by name), as `*` and `/re/` expand.
fn push_sorted_refs(out: &mut Vec<Field>, mut names: Vec<(String, VarKind)>) {
    names.sort();
    for (name, kind) in names {
        out.push(Field {
            expr: Expr::VarRef {
                name,
                kind: Some(kind),
            },
            alias: None,
        });
    }
}

/// Column names with InfluxDB's `_1`, `_2` suffixes for duplicates.
fn column_names(fields: &[Field]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = vec!["time".to_string()];
    for f in fields {
        let name = f.name();
        let n = seen.entry(name.clone()).or_insert(0);
        out.push(if *n == 0 {
            name.clone()
        } else {
            format!("{name}_{n}")
        });
        *n += 1;
    }
    // A generated name may collide with a real one; InfluxDB keeps counting.
    out
}

fn has_call(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if let Expr::Call { name, .. } = x {
            if functions::is_aggregate_or_transform(name) {
                found = true;
            }
        }
    });
    found
}

fn refers_to_field(e: &Expr, data: &SourceData) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if let Expr::VarRef { name, kind } = x {
            if kind != &Some(VarKind::Tag)
                && (data.field_types.contains_key(name) || !data.tag_keys.contains(name))
            {
                found = true;
            }
        }
    });
    found
}

/// One stored row of a group: time, index of its series, values by slot.
type GroupRow = (i64, usize, Vec<Val>);

/// Groups, windows and reduces one measurement's data into result series.
async fn reduce(
    sel: &Select,
    mut data: SourceData,
    all_fields: &BTreeMap<String, String>,
    range: (i64, i64),
    condition: Option<&Expr>,
    q: &QueryContext<'_>,
    zone: Option<&crate::influxql::tz::Zone>,
) -> Result<Vec<ResultSeries>, QueryError> {
    let now_ns = q.now_ns;
    let fields = expand_fields(sel, &data, all_fields);
    for f in &fields {
        check_types(&f.expr, &data)?;
    }
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    if !fields
        .iter()
        .any(|f| refers_to_field(&f.expr, &data) || has_call(&f.expr))
    {
        // Only tags selected: InfluxDB answers with no series.
        return Ok(Vec::new());
    }
    let columns = column_names(&fields);
    let fields: Vec<Field> = if data.partial {
        fields
            .iter()
            .map(|f| Field {
                expr: rewrite_for_partials(&f.expr, &data),
                alias: f.alias.clone(),
            })
            .collect()
    } else {
        fields
    };
    let aggregate = fields.iter().any(|f| has_call(&f.expr));
    let interval = sel.dimensions.iter().find_map(|d| match d {
        Dimension::Time { interval, offset } => Some((*interval, *offset)),
        _ => None,
    });
    if interval.is_some() && !aggregate {
        return Err(QueryError::msg(
            "GROUP BY requires at least one aggregate function",
        ));
    }
    if aggregate {
        functions::validate(&fields, interval.is_some())?;
    }
    // The rows move into their groups (the series keep their tags).
    let taken: Vec<Vec<(i64, Vec<Val>)>> = data
        .series
        .iter_mut()
        .map(|s| std::mem::take(&mut s.rows))
        .collect();
    let ev = Evaluator::new(&data.slots, &data.tag_keys);
    let group_keys = group_tag_keys(sel, &data);
    // Rows before the range feed the extra windows of transformations only.
    let out_start = range.0;
    let range = match (interval, extra_intervals(sel)) {
        (Some((every, _)), n) if n > 0 && range.0 > MIN_TIME => {
            (range.0.saturating_sub(every * n as i64), range.1)
        }
        _ => range,
    };
    let mut groups: BTreeMap<Vec<String>, Vec<GroupRow>> = BTreeMap::new();
    for (si, (series, rows_of)) in data.series.iter().zip(taken).enumerate() {
        let key: Vec<String> = group_keys
            .iter()
            .map(|k| series.tags.get(k).cloned().unwrap_or_default())
            .collect();
        let rows = groups.entry(key).or_default();
        for (t, vals) in rows_of {
            if t < range.0 || t > range.1 {
                continue;
            }
            if let Some(c) = condition {
                if !ev.truthy(c, t, &vals, &series.tags) {
                    continue;
                }
            }
            rows.push((t, si, vals));
        }
    }
    // Point counts of partial sums: each weighted slot's weight slot.
    let weights: Vec<Option<usize>> = data
        .slots
        .iter()
        .map(|s| {
            let (field, kind) = s.split_once('\u{0}')?;
            matches!(kind, "sum" | "fsum")
                .then(|| data.slots.iter().position(|w| *w == weight_column(field)))
                .flatten()
        })
        .collect();
    let mut out = Vec::new();
    // Window bounds for GROUP BY time: from the range start (or the first point) to the
    // range end (or now).
    let data_min = groups.values().flat_map(|r| r.iter().map(|x| x.0)).min();
    for (key, mut rows) in groups {
        // Let the core's other work (ingest, other connections) run between groups.
        glommio::yield_if_needed().await;
        rows.sort_by_key(|r| r.0); // stable: series order within a timestamp
        let tags = if group_keys.is_empty() {
            None
        } else {
            Some(group_keys.iter().cloned().zip(key).collect())
        };
        let values = if aggregate {
            let Some(data_min) = data_min else { continue };
            functions::aggregate_rows(&functions::AggInput {
                fields: &fields,
                rows: &rows,
                series: &data.series.iter().map(|s| &s.tags).collect::<Vec<_>>(),
                ev: &ev,
                interval,
                range,
                data_min,
                now_ns,
                fill: &sel.fill,
                max_buckets: q.limits.max_select_buckets,
                desc: sel.order_desc,
                zone,
                shard_group_ns: data.shard_group_ns,
                weights: &weights,
            })?
        } else {
            raw_rows(&fields, &rows, &data, &ev)
        };
        let values: Vec<Vec<Val>> = if out_start != range.0 {
            values
                .into_iter()
                .filter(|r| matches!(r[0], Val::Int(t) if t >= out_start))
                .collect()
        } else {
            values
        };
        if values.is_empty() {
            continue;
        }
        let mut values = values;
        if sel.order_desc {
            values.reverse();
        }
        let values: Vec<Vec<Val>> = values.into_iter().skip(sel.offset).collect();
        let values = if sel.limit > 0 {
            values.into_iter().take(sel.limit).collect()
        } else {
            values
        };
        if values.is_empty() {
            continue;
        }
        out.push(ResultSeries {
            name: data.name.clone(),
            tags,
            columns: columns.clone(),
            values,
        });
    }
    Ok(out)
}

/// InfluxDB's type check of arithmetic: a string, boolean or tag operand beside a
/// number is `type error: a::string + 1: incompatible types: string and integer`.
fn check_types(e: &Expr, data: &SourceData) -> Result<(), QueryError> {
    fn kind(e: &Expr, data: &SourceData) -> Option<String> {
        match e.unparen() {
            Expr::VarRef { name, kind: k } => match k {
                Some(VarKind::Tag) => Some("tag".into()),
                _ => data
                    .field_types
                    .get(name)
                    .cloned()
                    .or_else(|| data.tag_keys.contains(name).then(|| "tag".into())),
            },
            Expr::Integer(_) => Some("integer".into()),
            Expr::Number(_) => Some("float".into()),
            Expr::Str(_) => Some("string".into()),
            Expr::Bool(_) => Some("boolean".into()),
            _ => None,
        }
    }
    fn show(e: &Expr, data: &SourceData) -> String {
        match e {
            Expr::VarRef { name, .. } => match kind(e, data) {
                Some(k) => format!("{}::{k}", crate::influxql::ast::quote_ident(name)),
                None => e.to_string(),
            },
            Expr::Binary { op, lhs, rhs } => {
                format!("{} {} {}", show(lhs, data), op.as_str(), show(rhs, data))
            }
            Expr::Paren(inner) => format!("({})", show(inner, data)),
            other => other.to_string(),
        }
    }
    let mut err = None;
    e.walk(&mut |x| {
        if err.is_some() {
            return;
        }
        if let Expr::Binary { op, lhs, rhs } = x {
            if !matches!(op, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod) {
                return;
            }
            let (Some(l), Some(r)) = (kind(lhs, data), kind(rhs, data)) else {
                return;
            };
            let numeric = |k: &str| matches!(k, "integer" | "float" | "unsigned");
            if numeric(&l) != numeric(&r) || (!numeric(&l) && l != r) {
                err = Some(format!(
                    "type error: {}: incompatible types: {l} and {r}",
                    show(x, data)
                ));
            }
        }
    });
    match err {
        Some(e) => Err(QueryError::msg(e)),
        None => Ok(()),
    }
}

fn group_tag_keys(sel: &Select, data: &SourceData) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for d in &sel.dimensions {
        match d {
            Dimension::Tag(t) => {
                keys.insert(t.clone());
            }
            Dimension::Wildcard => keys.extend(data.tag_keys.iter().cloned()),
            Dimension::Regex(re) => {
                if let Ok(re) = re.regex() {
                    keys.extend(data.tag_keys.iter().filter(|k| re.is_match(k)).cloned());
                }
            }
            Dimension::Time { .. } => {}
        }
    }
    keys.into_iter().collect()
}

/// Raw rows: one per stored point row, skipping rows where every selected field is null.
fn raw_rows(
    fields: &[Field],
    rows: &[(i64, usize, Vec<Val>)],
    data: &SourceData,
    ev: &Evaluator<'_>,
) -> Vec<Vec<Val>> {
    let field_cols: Vec<bool> = fields
        .iter()
        .map(|f| refers_to_field(&f.expr, data))
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for (t, si, vals) in rows {
        let tags = &data.series[*si].tags;
        let mut row = Vec::with_capacity(fields.len() + 1);
        row.push(Val::Int(*t));
        let mut any = false;
        for (f, is_field) in fields.iter().zip(&field_cols) {
            let v = ev.eval(&f.expr, *t, vals, tags);
            if *is_field && !v.is_null() {
                any = true;
            }
            row.push(v);
        }
        if any {
            out.push(row);
        }
    }
    out
}

/// Used by functions: evaluate a row-level expression for one stored row.
pub(crate) fn eval_row(
    ev: &Evaluator<'_>,
    e: &Expr,
    t: i64,
    vals: &[Val],
    tags: &BTreeMap<String, String>,
) -> Val {
    ev.eval(e, t, vals, tags)
}

pub(crate) fn fill_value(fill: &Fill) -> Option<Val> {
    match fill {
        Fill::Number(n) => Some(Val::Float(*n)),
        Fill::Integer(i) => Some(Val::Int(*i)),
        _ => None,
    }
}
