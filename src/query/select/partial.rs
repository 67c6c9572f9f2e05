//! The partial-aggregate rewrite: when a GROUP BY time statement's calls can be
//! folded from per-shard partials (count, sum, mean, min, max, first, last of numeric
//! fields), the scan asks the shards for partials and the calls are rewritten to read
//! them (see `tsdb::read::scan::PartialSpec`).

use super::*;

/// Functions the shards can pre-aggregate (see [`PartialSpec`]) and the kind each reads.
pub(super) fn partial_kind(func: Function, field_type: &str) -> Option<PartialKind> {
    Some(match func {
        Function::Count => PartialKind::Count,
        Function::Sum => PartialKind::Sum,
        // A float field's own sum is already a float sum.
        Function::Mean if field_type == "float" => PartialKind::Sum,
        Function::Mean => PartialKind::FloatSum,
        Function::Min => PartialKind::Min,
        Function::Max => PartialKind::Max,
        Function::First => PartialKind::First,
        Function::Last => PartialKind::Last,
        _ => return None,
    })
}

/// Whether `e` only reads supported aggregates of numeric fields (collecting the kinds
/// each field needs).
pub(super) fn partial_expr(
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
        Expr::Call {
            func: Some(func),
            args,
            ..
        } if func.is_transform() => {
            matches!(args.first().map(Expr::unparen), Some(Expr::Call { .. }))
                && partial_expr(&args[0], data, kinds)
                && args[1..]
                    .iter()
                    .all(|a| matches!(a, Expr::Duration(_) | Expr::Integer(_) | Expr::Number(_)))
        }
        Expr::Call {
            func: Some(func),
            name,
            args,
        } if func.reads_points() => {
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
            match partial_kind(*func, field_type) {
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
pub(super) fn partial_spec(
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
            if x.function().is_some_and(Function::is_transform) {
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
pub(super) fn partial_slots(spec: &PartialSpec) -> Vec<String> {
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
pub(super) fn rewrite_for_partials(e: &Expr, data: &SourceData) -> Expr {
    match e {
        Expr::Paren(inner) => Expr::Paren(Box::new(rewrite_for_partials(inner, data))),
        Expr::Binary { op, lhs, rhs } => Expr::Binary {
            op: *op,
            lhs: Box::new(rewrite_for_partials(lhs, data)),
            rhs: Box::new(rewrite_for_partials(rhs, data)),
        },
        Expr::Call { name, func, args } => {
            if let [Expr::VarRef {
                name: field,
                kind: None,
            }] = args.as_slice()
            {
                let ty = data.field_types.get(field).map_or("float", String::as_str);
                if let Some(kind) = func.and_then(|f| partial_kind(f, ty)) {
                    return Expr::call(
                        name.clone(),
                        vec![Expr::VarRef {
                            name: partial_column(field, kind),
                            kind: None,
                        }],
                    );
                }
            }
            Expr::call(
                name.clone(),
                args.iter().map(|a| rewrite_for_partials(a, data)).collect(),
            )
        }
        other => other.clone(),
    }
}
