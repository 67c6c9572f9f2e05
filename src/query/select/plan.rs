//! Planning a SELECT: bound parameters, the time range out of WHERE, the fields and
//! tags each source needs, wildcard and regex expansion, and the scans to ask for
//! (with what can be pushed to the shards: tag conditions, per-series limits).

use super::*;

pub(super) fn interval_of(sel: &Select) -> Option<i64> {
    sel.dimensions.iter().find_map(|d| match d {
        Dimension::Time { interval, .. } => Some(*interval),
        _ => None,
    })
}

/// Windows read before the range for transformations of aggregates.
pub(super) fn extra_intervals(sel: &Select) -> usize {
    let mut n = 0;
    for f in &sel.fields {
        f.expr.walk(&mut |e| {
            if let Expr::Call {
                func: Some(func),
                args,
                ..
            } = e
            {
                let inner_call = matches!(args.first(), Some(Expr::Call { .. }));
                match func {
                    Function::Derivative
                    | Function::NonNegativeDerivative
                    | Function::Difference
                    | Function::NonNegativeDifference
                    | Function::Elapsed
                        if inner_call =>
                    {
                        n = n.max(1)
                    }
                    Function::MovingAverage if inner_call => {
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
pub(super) fn validate_fields(sel: &Select) -> Result<(), QueryError> {
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
            Expr::Call {
                func: None, name, ..
            } if unknown.is_none() => {
                unknown = Some(name.clone());
            }
            _ => {}
        });
        if let Some(name) = unknown {
            return Err(QueryError::msg(format!("undefined function {name}()")));
        }
        if vars == 0 {
            // A call with too few arguments (`count()`) is named as such first, as
            // InfluxDB's compiler checks each call's arity before the field's variables.
            if let Err(e) = crate::query::functions::validate(std::slice::from_ref(f), true) {
                if e.to_string().starts_with("invalid number of arguments") {
                    return Err(e);
                }
            }
            return Err(QueryError::msg("field must contain at least one variable"));
        }
        if !non_time {
            return Err(QueryError::msg("at least 1 non-time field must be queried"));
        }
    }
    Ok(())
}

/// Two inputs of the same measurement name (e.g. `FROM cpu, db2..cpu`) as one.
pub(super) fn merge_sources(a: SourceData, b: SourceData) -> SourceData {
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
pub(super) fn bind_params(sel: &Select, q: &QueryContext<'_>) -> Result<Select, QueryError> {
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
            Expr::Call { name, args, .. } => Expr::call(
                name.clone(),
                args.iter().map(|a| bind(a, q)).collect::<Result<_, _>>()?,
            ),
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

pub(super) fn take_time(
    e: &Expr,
    range: &mut (i64, i64),
    now_ns: i64,
) -> Result<Option<Expr>, QueryError> {
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

pub(super) fn flip(op: Op) -> Op {
    match op {
        Op::Gt => Op::Lt,
        Op::Gte => Op::Lte,
        Op::Lt => Op::Gt,
        Op::Lte => Op::Gte,
        o => o,
    }
}

pub(super) fn is_time_ref(e: &Expr) -> bool {
    matches!(e.unparen(), Expr::VarRef { name, .. } if name.eq_ignore_ascii_case("time"))
}

/// The nanosecond value of a time literal expression: a time string, an integer of
/// nanoseconds, a duration, `now()`, and sums and differences of those.
pub(super) fn time_value(e: &Expr, now_ns: i64) -> Result<i64, QueryError> {
    match e.unparen() {
        Expr::Str(s) => parse_time(s).ok_or_else(|| {
            // InfluxDB tries a string shaped as a date (`YYYY-MM-DD...`) as a time and
            // fails it as such; any other string is no time at all.
            let b = s.as_bytes();
            let dated = b.len() >= 10
                && b[..4].iter().all(u8::is_ascii_digit)
                && b[4] == b'-'
                && b[5..7].iter().all(u8::is_ascii_digit)
                && b[7] == b'-'
                && b[8..10].iter().all(u8::is_ascii_digit);
            QueryError::msg(if dated {
                "invalid timestamp string"
            } else {
                "invalid operation: time and *influxql.StringLiteral are not compatible"
            })
        }),
        Expr::Integer(i) => Ok(*i),
        Expr::Number(n) => Ok(*n as i64),
        Expr::Duration(d) => Ok(*d),
        Expr::Call {
            func: Some(Function::Now),
            args,
            ..
        } if args.is_empty() => Ok(now_ns),
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
pub(super) async fn load_measurements(
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

/// The per-series limit a raw `SELECT ... LIMIT n [OFFSET o]` can push to the shards:
/// no function call in the field list (so rows are the stored rows) and no field in
/// the WHERE clause (so the limit counts the rows the shard would return). Or, for
/// `first()`/`last()` alone, one value per field ([`selector_limit`]).
pub(super) fn per_series_limit(
    sel: &Select,
    condition: Option<&Expr>,
    data: &SourceData,
) -> Option<SeriesLimit> {
    if sel
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
    if condition.is_some_and(|c| !reads_only_tags(c, data)) {
        return None;
    }
    if calls {
        return selector_limit(sel);
    }
    if sel.limit == 0 {
        return None;
    }
    Some(SeriesLimit {
        n: sel.limit.saturating_add(sel.offset),
        newest: sel.order_desc,
    })
}

/// `SELECT last(a), last(b) ...` (or all `first`) with no GROUP BY time: each series
/// needs only its newest (oldest) value of each field, so the shards read one value
/// per field (from the newest or oldest block) instead of the series' whole range.
fn selector_limit(sel: &Select) -> Option<SeriesLimit> {
    let mut newest = None;
    for f in &sel.fields {
        let Expr::Call {
            func: Some(func),
            args,
            ..
        } = &f.expr
        else {
            return None;
        };
        let last = match func {
            Function::Last => true,
            Function::First => false,
            _ => return None,
        };
        let one_field = matches!(
            args.as_slice(),
            [Expr::VarRef { .. } | Expr::Wildcard(_) | Expr::Regex(_)]
        );
        if !one_field || newest.is_some_and(|n| n != last) {
            return None;
        }
        newest = Some(last);
    }
    Some(SeriesLimit {
        n: 1,
        newest: newest?,
    })
}

/// Whether a variable of a condition names a tag (`::tag`, or a key that is not a
/// field of the source). A key the source has neither as tag nor as field is a tag
/// with no value, as InfluxDB's index reads it: `nosuchtag = ''` holds for every series.
pub(super) fn is_tag_ref(name: &str, kind: Option<VarKind>, data: &SourceData) -> bool {
    kind == Some(VarKind::Tag) || (kind.is_none() && !data.field_types.contains_key(name))
}

/// Whether a condition reads tags only (no field, no function call, no parameter), so
/// the rows it keeps are decided per series.
pub(super) fn reads_only_tags(cond: &Expr, data: &SourceData) -> bool {
    let mut only_tags = true;
    cond.walk(&mut |x| match x {
        Expr::VarRef { name, kind } => only_tags &= is_tag_ref(name, *kind, data),
        Expr::Call { .. } | Expr::BoundParam(_) => only_tags = false,
        _ => {}
    });
    only_tags
}

pub(super) fn tag_only_part(cond: &Expr, data: &SourceData) -> Option<Expr> {
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

pub(super) type MergedSchema = BTreeMap<String, (BTreeMap<String, String>, BTreeSet<String>)>;

pub(super) fn merge_schemas(schemas: &[ShardSchema]) -> MergedSchema {
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
pub(super) fn needed_fields(
    sel: &Select,
    condition: Option<&Expr>,
    data: &SourceData,
) -> Vec<String> {
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

pub(super) fn compile(re: &RegexLit) -> Result<&Regex, QueryError> {
    re.regex().map_err(|e| QueryError::msg(re.error_text(e)))
}

/// The fields of the statement with wildcards and field regexes expanded. As
/// InfluxDB rewrites them once for the whole statement, `*` and `/re/` expand over the
/// fields and tags of every source (`all_fields`, `all_tags`): a measurement lacking
/// one answers null in its column.
pub(super) fn expand_fields(
    sel: &Select,
    data: &SourceData,
    all_fields: &BTreeMap<String, String>,
    all_tags: &BTreeSet<String>,
) -> Vec<Field> {
    let mut out = Vec::new();
    // Tags that are GROUP BY dimensions are not columns of `*`.
    let grouped = statement_group_keys(sel, data, all_tags);
    for f in &sel.fields {
        match &f.expr {
            Expr::Wildcard(kind) => {
                let mut names: Vec<(String, VarKind)> = Vec::new();
                if *kind != Some(VarKind::Tag) {
                    names.extend(all_fields.keys().map(|k| (k.clone(), VarKind::Field)));
                }
                if *kind != Some(VarKind::Field) {
                    names.extend(
                        all_tags
                            .iter()
                            .filter(|k| !grouped.contains(*k))
                            .map(|k| (k.clone(), VarKind::Tag)),
                    );
                }
                push_sorted_refs(&mut out, names);
            }
            Expr::Regex(re) => {
                if let Ok(re) = re.regex() {
                    let mut names: Vec<(String, VarKind)> = all_fields
                        .keys()
                        .filter(|k| re.is_match(k))
                        .map(|k| (k.clone(), VarKind::Field))
                        .collect();
                    names.extend(
                        all_tags
                            .iter()
                            .filter(|k| re.is_match(k))
                            .map(|k| (k.clone(), VarKind::Tag)),
                    );
                    push_sorted_refs(&mut out, names);
                }
            }
            Expr::Call {
                name, func, args, ..
            } if matches!(args.first(), Some(Expr::Wildcard(_) | Expr::Regex(_))) => {
                // mean(*) -> mean_a, mean_b over every (numeric) field.
                let re = match &args[0] {
                    Expr::Regex(r) => r.regex().ok(),
                    _ => None,
                };
                for (field, t) in all_fields {
                    if re.as_ref().is_some_and(|r| !r.is_match(field)) {
                        continue;
                    }
                    if func.is_some_and(Function::needs_numbers)
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
                        expr: Expr::call(name.clone(), new_args),
                        alias: Some(format!("{}_{}", f.alias.as_deref().unwrap_or(name), field)),
                    });
                }
            }
            Expr::Call {
                func: Some(Function::Top | Function::Bottom),
                args,
                ..
            } if args.len() > 2 => {
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
pub(super) fn push_sorted_refs(out: &mut Vec<Field>, mut names: Vec<(String, VarKind)>) {
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
pub(super) fn column_names(fields: &[Field]) -> Vec<String> {
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

pub(super) fn has_call(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if x.function_here().is_some_and(Function::reads_points) {
            found = true;
        }
    });
    found
}

pub(super) fn refers_to_field(e: &Expr, data: &SourceData) -> bool {
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
