//! Reducing a source's rows to result series: the WHERE filter on rows, grouping by
//! tags, and per group either raw rows or aggregates per window (`functions`), with
//! InfluxDB's types and tie-breaks.

use super::*;

/// One stored row of a group: time, index of its series, values by slot.
pub(super) type GroupRow = (i64, usize, Vec<Val>);

/// Groups, windows and reduces one measurement's data into result series.
#[allow(clippy::too_many_arguments)]
pub(super) async fn reduce(
    sel: &Select,
    mut data: SourceData,
    all_fields: &BTreeMap<String, String>,
    all_tags: &BTreeSet<String>,
    range: (i64, i64),
    condition: Option<&Expr>,
    q: &QueryContext<'_>,
    zone: Option<&crate::influxql::tz::Zone>,
) -> Result<Vec<ResultSeries>, QueryError> {
    let now_ns = q.now_ns;
    let fields = expand_fields(sel, &data, all_fields, all_tags);
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
    let group_keys: Vec<String> = statement_group_keys(sel, &data, all_tags)
        .into_iter()
        .collect();
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
            matches!(kind, "count" | "sum" | "fsum")
                .then(|| data.slots.iter().position(|w| *w == weight_column(field)))
                .flatten()
        })
        .collect();
    let mut out = Vec::new();
    // Window bounds for GROUP BY time: from the range start (or the first point) to the
    // range end (or now).
    let data_min = groups.values().flat_map(|r| r.iter().map(|x| x.0)).min();
    // Raw rows, and raw points into transformations, come in InfluxDB's merge order
    // (`influx_merge_order`); ties on time look at the statement's variables sorted by
    // name (InfluxDB's Aux), only for raw rows.
    let raw_transforms = fields.iter().all(|f| {
        matches!(f.expr.unparen(), Expr::Call { func: Some(func), args, .. }
            if func.is_transform() && !matches!(args.first(), Some(Expr::Call { .. })))
    });
    let merge_order = data.shard_group_ns > 0 && (!aggregate || raw_transforms);
    // InfluxDB's Aux: a raw statement's variables; beside aggregates, the variables
    // outside the calls (what a selector carries along).
    let mut aux_vars: Vec<(String, Option<usize>)> = Vec::new();
    {
        fn outside_calls<'e>(e: &'e Expr, out: &mut Vec<(&'e String, &'e Option<VarKind>)>) {
            match e {
                Expr::VarRef { name, kind } => out.push((name, kind)),
                Expr::Call { .. } => {}
                Expr::Paren(inner) => outside_calls(inner, out),
                Expr::Binary { lhs, rhs, .. } => {
                    outside_calls(lhs, out);
                    outside_calls(rhs, out);
                }
                _ => {}
            }
        }
        let mut refs = Vec::new();
        for f in &fields {
            if aggregate {
                outside_calls(&f.expr, &mut refs);
            } else {
                f.expr.walk(&mut |e| {
                    if let Expr::VarRef { name, kind } = e {
                        refs.push((name, kind));
                    }
                });
            }
        }
        let mut names = BTreeSet::new();
        for (name, kind) in refs {
            // A field of any source is a field (absent here: no value).
            let tag = *kind == Some(VarKind::Tag)
                || (*kind != Some(VarKind::Field) && !all_fields.contains_key(name));
            names.insert((name.clone(), tag));
        }
        for (name, tag) in names {
            let slot = if tag {
                None
            } else {
                data.slots.iter().position(|s| *s == name)
            };
            aux_vars.push((name, slot));
        }
    }
    // InfluxDB's tie-break: the first variable that is not two equal strings decides,
    // and only if both are strings.
    let tie = |x: &GroupRow, y: &GroupRow| -> std::cmp::Ordering {
        for (name, slot) in &aux_vars {
            match (
                aux_str(&data, x, name, *slot),
                aux_str(&data, y, name, *slot),
            ) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(a), Some(b)) => return a.cmp(b),
                _ => return std::cmp::Ordering::Equal,
            }
        }
        std::cmp::Ordering::Equal
    };
    for (key, mut rows) in groups {
        // Let the core's other work (ingest, other connections) run between groups.
        glommio::yield_if_needed().await;
        if merge_order {
            rows = influx_merge_order(rows, data.shard_group_ns, sel.order_desc, &tie);
        } else {
            rows.sort_by_key(|r| r.0); // stable: series order within a timestamp
        }
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
                tie: &tie,
                order: Default::default(),
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

/// One variable's value as InfluxDB's aux cursor holds it, for the merge order's
/// tie-break: a string, or not one (numbers, null; a blank tag is a null).
fn aux_str<'a>(
    data: &'a SourceData,
    row: &'a GroupRow,
    name: &str,
    slot: Option<usize>,
) -> Option<&'a str> {
    match slot {
        Some(i) => match row.2.get(i) {
            Some(Val::Str(s)) => Some(s.as_str()),
            _ => None,
        },
        None => data.series[row.1]
            .tags
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty()),
    }
}

/// InfluxDB's type check of arithmetic: a string, boolean or tag operand beside a
/// number is `type error: a::string + 1: incompatible types: string and integer`.
pub(super) fn check_types(e: &Expr, data: &SourceData) -> Result<(), QueryError> {
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

/// The tag keys a statement groups one source by: its GROUP BY tags, and for `*` and
/// `/re/` the matching keys of every source (`all_tags`), as InfluxDB: a series
/// without one has it empty.
pub(super) fn statement_group_keys(
    sel: &Select,
    data: &SourceData,
    all_tags: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = group_tag_keys(sel, data).into_iter().collect();
    for d in &sel.dimensions {
        match d {
            Dimension::Wildcard => keys.extend(all_tags.iter().cloned()),
            Dimension::Regex(re) => {
                if let Ok(re) = re.regex() {
                    keys.extend(all_tags.iter().filter(|k| re.is_match(k)).cloned());
                }
            }
            _ => {}
        }
    }
    keys
}

pub(super) fn group_tag_keys(sel: &Select, data: &SourceData) -> Vec<String> {
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
