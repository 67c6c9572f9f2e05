//! InfluxQL functions: aggregates and selectors per window, transformations over the
//! window sequence (or raw points), math per value, and the fill of empty windows.
//! The reducers follow InfluxDB's (`query/functions.go`, `query/call_iterator.go`):
//! the same tie-breaks, result types and defaults.

use crate::influxql::ast::{Expr, Field, Fill};
use crate::influxql::eval::{math, Evaluator};
use crate::influxql::function::Function;
use crate::influxql::value::{arith, Val};
use crate::query::merge_order::{MergeOrder, Row};
use crate::query::QueryError;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A value with its time and, for selectors, the row it came from.
#[derive(Clone, Debug)]
pub struct Point {
    pub time: i64,
    pub val: Val,
    pub row: Option<usize>,
    /// Points this one stands for: 1, or a shard's partial sum of `count` points (its
    /// `val` is their sum; see `scan::PartialSpec`).
    pub count: u64,
}

/// The calls of aggregates, selectors and transformations in an expression.
fn calls(e: &Expr) -> Vec<(Function, &[Expr])> {
    let mut out = Vec::new();
    e.walk(&mut |x| {
        if let Expr::Call {
            func: Some(func),
            args,
            ..
        } = x
        {
            if func.reads_points() {
                out.push((*func, args.as_slice()));
            }
        }
    });
    out
}

/// Checks the statement's calls as InfluxDB's compiler does.
pub fn validate(fields: &[Field], has_interval: bool) -> Result<(), QueryError> {
    // InfluxDB's compiler: the top() or bottom() seen so far, and distinct().
    let mut top_bottom: Option<&'static str> = None;
    let mut distinct = false;
    for f in fields {
        for (func, args) in calls(&f.expr) {
            let name = func.name();
            if func == Function::Distinct {
                distinct = true;
            }
            let arity_err = |n: &str| {
                QueryError::msg(format!(
                    "invalid number of arguments for {name}, expected {n}, got {}",
                    args.len()
                ))
            };
            match func {
                Function::HoltWinters | Function::HoltWintersWithFit => {
                    // InfluxDB's compileHoltWinters, in its order.
                    if args.len() != 3 {
                        return Err(arity_err("3"));
                    }
                    // An integer argument, refused (with `must`) when `bad`.
                    let integer =
                        |arg: &Expr, nth: &str, bad: fn(i64) -> bool, must: &str| match arg {
                            Expr::Integer(n) if bad(*n) => Err(QueryError::msg(format!(
                                "{nth} arg to {name} {must}, got {n}"
                            ))),
                            Expr::Integer(_) => Ok(()),
                            _ => Err(QueryError::msg(format!(
                                "expected integer argument as {nth} arg in {name}"
                            ))),
                        };
                    integer(&args[1], "second", |n| n <= 0, "must be greater than 0")?;
                    integer(&args[2], "third", |n| n < 0, "cannot be negative")?;
                    if !matches!(args[0].unparen(), Expr::Call { .. }) {
                        return Err(QueryError::msg(format!(
                            "must use aggregate function with {name}"
                        )));
                    }
                    if !has_interval {
                        return Err(QueryError::msg(format!(
                            "{name} aggregate requires a GROUP BY interval"
                        )));
                    }
                    continue;
                }
                Function::Percentile => {
                    if args.len() != 2 {
                        return Err(arity_err("2"));
                    }
                }
                Function::Top | Function::Bottom => {
                    if let Some(first) = top_bottom {
                        return Err(QueryError::msg(format!(
                            "selector function {first}() cannot be combined with other functions"
                        )));
                    }
                    top_bottom = Some(name);
                    if args.len() < 2 {
                        return Err(QueryError::msg(format!(
                            "invalid number of arguments for {name}, expected at least 2, got {}",
                            args.len()
                        )));
                    }
                    match &args[args.len() - 1] {
                        Expr::Integer(n) if *n <= 0 => {
                            return Err(QueryError::msg(format!(
                                "limit ({n}) in {name} function must be at least 1"
                            )))
                        }
                        Expr::Integer(_) => {}
                        // Go prints a number literal with three decimals.
                        Expr::Number(x) => {
                            return Err(QueryError::msg(format!(
                                "expected integer as last argument in {name}(), found {x:.3}"
                            )))
                        }
                        other => {
                            return Err(QueryError::msg(format!(
                                "expected integer as last argument in {name}(), found {other}"
                            )))
                        }
                    }
                    if !matches!(args[0], Expr::VarRef { .. }) {
                        return Err(QueryError::msg(format!(
                            "expected first argument to be a field in {name}(), found {}",
                            args[0]
                        )));
                    }
                    if let Some(bad) = args[1..args.len() - 1]
                        .iter()
                        .find(|a| !matches!(a, Expr::VarRef { .. }))
                    {
                        return Err(QueryError::msg(format!(
                            "only fields or tags are allowed in {name}(), found {bad}"
                        )));
                    }
                }
                Function::MovingAverage => {
                    if args.len() != 2 {
                        return Err(arity_err("2"));
                    }
                }
                Function::Derivative
                | Function::NonNegativeDerivative
                | Function::Elapsed
                | Function::Integral => {
                    if args.is_empty() || args.len() > 2 {
                        return Err(arity_err("1 or 2"));
                    }
                }
                Function::Sample => {
                    return Err(QueryError::msg(
                        "sample() is not supported by ShardCore yet",
                    ));
                }
                _ => {
                    if args.len() != 1 {
                        return Err(arity_err("1"));
                    }
                }
            }
            if func.is_transform() {
                let inner_is_call = matches!(args.first(), Some(Expr::Call { .. }));
                if has_interval && !inner_is_call {
                    return Err(QueryError::msg(format!(
                        "aggregate function required inside the call to {name}"
                    )));
                }
                if !has_interval && inner_is_call {
                    return Err(QueryError::msg(format!(
                        "{name} aggregate requires a GROUP BY interval"
                    )));
                }
            } else if !matches!(args.first(), Some(Expr::VarRef { .. } | Expr::Call { .. })) {
                return Err(QueryError::msg(format!(
                    "expected field argument in {name}()"
                )));
            }
        }
    }
    // Calls not nested in another call (InfluxDB's FunctionCalls).
    fn outer_calls(e: &Expr) -> usize {
        match e {
            Expr::Call { .. } => 1,
            Expr::Binary { lhs, rhs, .. } => outer_calls(lhs) + outer_calls(rhs),
            Expr::Paren(inner) => outer_calls(inner),
            _ => 0,
        }
    }
    let top_level: usize = fields.iter().map(|f| outer_calls(&f.expr)).sum();
    if let Some(name) = top_bottom.filter(|_| top_level > 1) {
        return Err(QueryError::msg(format!(
            "selector function {name}() cannot be combined with other functions"
        )));
    }
    if distinct && (top_level != 1 || fields.len() > 1) {
        return Err(QueryError::msg(
            "aggregate function distinct() cannot be combined with other functions or fields",
        ));
    }
    // A bare field beside aggregates is only allowed with a single selector.
    let bare = fields
        .iter()
        .any(|f| calls(&f.expr).is_empty() && has_var(&f.expr));
    if bare {
        let all: Vec<Function> = fields
            .iter()
            .flat_map(|f| calls(&f.expr))
            .map(|(func, _)| func)
            .collect();
        if !(all.len() == 1 && all[0].is_selector()) {
            return Err(QueryError::msg(
                "mixing aggregate and non-aggregate queries is not supported",
            ));
        }
    }
    Ok(())
}

fn has_var(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if matches!(x, Expr::VarRef { .. }) {
            found = true;
        }
    });
    found
}

/// What the reduce of one group needs.
pub struct AggInput<'a> {
    pub fields: &'a [Field],
    /// The group's rows: (time, series index, values by slot), sorted by time.
    pub rows: &'a [(i64, usize, Vec<Val>)],
    pub series: &'a [&'a BTreeMap<String, String>],
    pub ev: &'a Evaluator<'a>,
    pub interval: Option<(i64, i64)>,
    pub range: (i64, i64),
    pub data_min: i64,
    pub now_ns: i64,
    pub fill: &'a Fill,
    /// `max-select-buckets`; 0: only the built-in ceiling.
    pub max_buckets: usize,
    /// ORDER BY time DESC: transformations run over descending points.
    pub desc: bool,
    /// `tz()`: windows in local time.
    pub zone: Option<&'a crate::influxql::tz::Zone>,
    /// The policy's shard group duration: float sums and means are added up per
    /// InfluxDB shard group, as its engine does (0: no grouping, e.g. subqueries).
    pub shard_group_ns: i64,
    /// By row slot: the slot holding the point counts of a partial-sum slot.
    pub weights: &'a [Option<usize>],
    /// InfluxDB's comparison of two rows at one time in its sorted merges (by the
    /// leading string values of its Aux variables).
    pub tie: &'a dyn Fn(&Row, &Row) -> Ordering,
    /// InfluxDB's merge order over this group, set once its windows are known when a
    /// call's float answer depends on it (see [`MergeOrder`]).
    pub order: std::cell::OnceCell<MergeOrder>,
}

use crate::base::time::{MAX_TIME_NS as MAX_TIME, MIN_TIME_NS as MIN_TIME};
use crate::limits::MAX_TIME_WINDOWS as MAX_BUCKETS;

/// The rows of one group of an aggregate statement.
pub fn aggregate_rows(a: &AggInput<'_>) -> Result<Vec<Vec<Val>>, QueryError> {
    if a.rows.is_empty() {
        return Ok(Vec::new());
    }
    // Raw transformations: derivative(x) etc. over the points themselves.
    if a.interval.is_none()
        && a.fields
            .iter()
            .any(|f| f.expr.function().is_some_and(Function::is_transform))
    {
        return raw_transforms(a);
    }
    let windows: Vec<(i64, i64)> = match a.interval {
        Some((every, offset)) => {
            if every <= 0 {
                return Err(QueryError::msg("GROUP BY time interval must be positive"));
            }
            let offset = if offset == i64::MIN {
                a.now_ns.rem_euclid(every)
            } else {
                offset
            };
            let start = if a.range.0 > MIN_TIME {
                a.range.0
            } else {
                a.data_min
            };
            let end = if a.range.1 < MAX_TIME {
                a.range.1
            } else {
                a.now_ns
            };
            let first = crate::base::time::window_start(start, every, offset);
            let count = ((end - first) / every + 1).max(0) as usize;
            if a.max_buckets > 0 && count > a.max_buckets {
                return Err(QueryError::msg(format!(
                    "max-select-buckets limit exceeded: ({count}/{})",
                    a.max_buckets
                )));
            }
            // Without a configured limit, an open-ended range (up to now) is cut at a
            // built-in ceiling; the answer's row limit marks it partial long before.
            let count = count.min(MAX_BUCKETS);
            match a.zone {
                // Local-time windows: each starts where the zone's truncation says.
                Some(zone) => {
                    let mut out = Vec::with_capacity(count);
                    let mut lo = zone.window_start(start, every, offset);
                    while lo <= end && out.len() < MAX_BUCKETS {
                        let next = zone.window_start(lo + every, every, offset);
                        let next = if next <= lo { lo + every } else { next };
                        out.push((lo, next - 1));
                        lo = next;
                    }
                    out
                }
                None => (0..count)
                    .map(|i| {
                        let lo = first + i as i64 * every;
                        (lo, lo + every - 1)
                    })
                    .collect(),
            }
        }
        None => vec![(a.range.0, a.range.1)],
    };
    // Without GROUP BY time, aggregates carry the range start (or the epoch).
    let shown = |lo: i64| {
        if a.interval.is_none() {
            if a.range.0 > MIN_TIME {
                a.range.0
            } else {
                0
            }
        } else {
            lo
        }
    };
    let all_calls: Vec<(Function, &[Expr])> =
        a.fields.iter().flat_map(|f| calls(&f.expr)).collect();
    let single_selector =
        a.interval.is_none() && all_calls.len() == 1 && all_calls[0].0.is_selector();
    let multi = a.fields.iter().position(|f| {
        matches!(
            f.expr.function(),
            Some(Function::Top | Function::Bottom | Function::Distinct)
        )
    });
    let has_transform = all_calls.iter().any(|(func, _)| func.is_transform());
    // Calls whose answer depends on the order InfluxDB hands them their inputs:
    // partials pushed into each series, or raw points.
    let pushed = all_calls
        .iter()
        .any(|(func, _)| matches!(func, Function::Mean | Function::Sum));
    let raw = all_calls.iter().any(|(func, _)| {
        matches!(
            func,
            Function::Stddev | Function::Mode | Function::Percentile
        )
    });
    if a.shard_group_ns > 0 && (pushed || raw) {
        let _ = a.order.set(MergeOrder::new(
            a.rows,
            &windows,
            a.shard_group_ns,
            a.desc,
            a.tie,
            pushed,
            raw,
        ));
    }

    // holt_winters(): the inner aggregate per window that has points, forecast; the
    // forecast points are the rows (InfluxDB's holt-winters iterator over the whole
    // group), other columns null.
    if let Some(hi) = a.fields.iter().position(|f| {
        matches!(
            f.expr.function(),
            Some(Function::HoltWinters | Function::HoltWintersWithFit)
        )
    }) {
        let Expr::Call {
            func: Some(func),
            args,
            ..
        } = a.fields[hi].expr.unparen()
        else {
            return Ok(Vec::new());
        };
        let (Some(Expr::Integer(h)), Some(Expr::Integer(m))) = (args.get(1), args.get(2)) else {
            return Ok(Vec::new());
        };
        let mut pts = Vec::new();
        for &(lo, hi_t) in &windows {
            let (from, to) = window_rows(a, lo, hi_t);
            if from >= to {
                continue;
            }
            if let Some(x) = eval_window(a, &args[0], from, to, lo, &mut |_| {})?.as_f64() {
                pts.push((lo, x));
            }
        }
        let interval = a.interval.map(|i| i.0).unwrap_or(0);
        let with_fit = *func == Function::HoltWintersWithFit;
        let forecast = crate::query::holt_winters::forecast(&pts, *h, *m, with_fit, interval);
        return Ok(forecast
            .into_iter()
            .map(|(t, v)| {
                let mut row = vec![Val::Int(t)];
                for i in 0..a.fields.len() {
                    row.push(if i == hi { Val::Float(v) } else { Val::Null });
                }
                row
            })
            .collect());
    }

    let mut out = Vec::new();
    if let Some(mi) = multi {
        for &(lo, hi) in &windows {
            let (from, to) = window_rows(a, lo, hi);
            let Expr::Call {
                func: Some(func),
                args,
                ..
            } = a.fields[mi].expr.unparen()
            else {
                unreachable!("multi is a call")
            };
            let pts = call_points(a, *func, args, from, to, lo)?;
            for p in pts {
                let time = if *func == Function::Distinct {
                    shown(lo)
                } else {
                    p.time
                };
                let mut row = vec![Val::Int(time)];
                for (i, f) in a.fields.iter().enumerate() {
                    if i == mi {
                        row.push(p.val.clone());
                    } else {
                        row.push(aux_value(a, &f.expr, p.row));
                    }
                }
                out.push(row);
            }
        }
        if multi.is_some() && a.interval.is_none() {
            out.sort_by_key(|r| match r[0] {
                Val::Int(t) => t,
                _ => 0,
            });
        }
        return Ok(out);
    }

    // One scalar per (field, window); transformations run over the window sequence.
    let mut columns: Vec<Vec<Val>> = Vec::with_capacity(a.fields.len());
    let mut any_point = vec![false; windows.len()];
    let mut selected_time: Vec<Option<i64>> = vec![None; windows.len()];
    let mut selected_row: Vec<Option<usize>> = vec![None; windows.len()];
    for f in a.fields {
        let mut col = Vec::with_capacity(windows.len());
        for (wi, &(lo, hi)) in windows.iter().enumerate() {
            let (from, to) = window_rows(a, lo, hi);
            if from < to {
                any_point[wi] = true;
            }
            let v = eval_window(a, &f.expr, from, to, lo, &mut |p: &Point| {
                if single_selector {
                    selected_time[wi] = Some(p.time);
                    selected_row[wi] = p.row;
                }
            })?;
            col.push(v);
        }
        // integral() carries area across window edges: computed over the whole group.
        if let Expr::Call {
            func: Some(Function::Integral),
            args,
            ..
        } = f.expr.unparen()
        {
            col = integral_windows(a, args, &windows)?;
        }
        columns.push(col);
    }
    // Aux fields beside a single selector take the selected point's row.
    if single_selector {
        for (fi, f) in a.fields.iter().enumerate() {
            if calls(&f.expr).is_empty() {
                for wi in 0..windows.len() {
                    columns[fi][wi] = aux_value(a, &f.expr, selected_row[wi]);
                }
            }
        }
    }
    for (fi, f) in a.fields.iter().enumerate() {
        if has_transform_at_top(&f.expr) {
            continue;
        }
        // count() of an empty window is 0 under the default fill, as InfluxDB.
        if matches!(a.fill, Fill::Null)
            && a.interval.is_some()
            && f.expr.function() == Some(Function::Count)
        {
            for v in columns[fi].iter_mut().filter(|v| v.is_null()) {
                *v = Val::Int(0);
            }
        }
        apply_fill(&mut columns[fi], a.fill, &windows, a.interval, a.desc);
    }
    // Transformations over the (filled) window values.
    for (fi, f) in a.fields.iter().enumerate() {
        if let Expr::Call {
            func: Some(func),
            args,
            ..
        } = f.expr.unparen()
        {
            if func.is_transform() {
                let inner: Vec<Val> = {
                    let mut c = Vec::with_capacity(windows.len());
                    for &(lo, hi) in &windows {
                        let (from, to) = window_rows(a, lo, hi);
                        c.push(eval_window(a, &args[0], from, to, lo, &mut |_| {})?);
                    }
                    apply_fill(&mut c, a.fill, &windows, a.interval, a.desc);
                    c
                };
                let pts: Vec<Point> = windows
                    .iter()
                    .zip(inner)
                    .filter(|(_, v)| !v.is_null())
                    .map(|(w, v)| Point {
                        time: w.0,
                        val: v,
                        row: None,
                        count: 1,
                    })
                    .collect();
                let default_unit = a.interval.map(|i| i.0).unwrap_or(1_000_000_000);
                let res = transform(*func, args, &pts, default_unit, a.desc)?;
                let mut col = vec![Val::Null; windows.len()];
                for p in res {
                    if let Ok(wi) = windows.binary_search_by_key(&p.time, |w| w.0) {
                        col[wi] = p.val;
                    }
                }
                columns[fi] = col;
            }
        }
    }
    for (wi, &(lo, _)) in windows.iter().enumerate() {
        let row_vals: Vec<Val> = columns.iter().map(|c| c[wi].clone()).collect();
        let all_null = row_vals.iter().all(Val::is_null);
        if a.interval.is_none() && !any_point[wi] {
            continue;
        }
        if all_null && (matches!(a.fill, Fill::None) || has_transform) {
            continue;
        }
        // integral() without GROUP BY time keeps its reducer's zero time.
        let zero_time = a.interval.is_none()
            && a.fields
                .iter()
                .any(|f| f.expr.function() == Some(Function::Integral));
        let time = if zero_time {
            0
        } else {
            selected_time[wi].unwrap_or(shown(lo))
        };
        let mut row = Vec::with_capacity(row_vals.len() + 1);
        row.push(Val::Int(time));
        row.extend(row_vals);
        out.push(row);
    }
    Ok(out)
}

fn has_transform_at_top(e: &Expr) -> bool {
    e.function().is_some_and(Function::is_transform)
}

/// Index range of rows in `[lo, hi]`.
fn window_rows(a: &AggInput<'_>, lo: i64, hi: i64) -> (usize, usize) {
    let from = a.rows.partition_point(|r| r.0 < lo);
    let to = a.rows.partition_point(|r| r.0 <= hi);
    (from, to)
}

/// Value of a non-call expression at a selected row (or null without one).
fn aux_value(a: &AggInput<'_>, e: &Expr, row: Option<usize>) -> Val {
    match row {
        Some(r) => {
            let (t, si, vals) = &a.rows[r];
            a.ev.eval(e, *t, vals, a.series[*si])
        }
        None => Val::Null,
    }
}

/// Value of a field expression over the rows `[from, to)` of one window.
fn eval_window(
    a: &AggInput<'_>,
    e: &Expr,
    from: usize,
    to: usize,
    window_start: i64,
    selected: &mut dyn FnMut(&Point),
) -> Result<Val, QueryError> {
    Ok(match e {
        Expr::Paren(inner) => eval_window(a, inner, from, to, window_start, selected)?,
        Expr::Call {
            func: Some(func),
            args,
            ..
        } if func.reads_points() => {
            if func.is_transform() {
                // Filled in afterwards over the whole window sequence.
                return Ok(Val::Null);
            }
            let pts = call_points(a, *func, args, from, to, window_start)?;
            match pts.into_iter().next() {
                Some(p) => {
                    selected(&p);
                    p.val
                }
                None => Val::Null,
            }
        }
        Expr::Call { func, args, .. } => {
            let mut vals = Vec::with_capacity(args.len());
            for x in args {
                vals.push(eval_window(a, x, from, to, window_start, selected)?);
            }
            math(*func, &vals)
        }
        Expr::Binary { op, lhs, rhs } => {
            let l = eval_window(a, lhs, from, to, window_start, selected)?;
            let r = eval_window(a, rhs, from, to, window_start, selected)?;
            arith(*op, &l, &r)
        }
        Expr::Number(n) => Val::Float(*n),
        Expr::Integer(i) => Val::Int(*i),
        // A bare field beside aggregates: filled in for single selectors, else null.
        _ => Val::Null,
    })
}

/// Non-null values of a call's field argument in rows `[from, to)`.
fn arg_points(a: &AggInput<'_>, arg: &Expr, from: usize, to: usize) -> Vec<Point> {
    let mut out = Vec::with_capacity(to - from);
    if let Some(slot) = a.ev.slot_of(arg) {
        let weight = a.weights.get(slot).copied().flatten();
        for r in from..to {
            let v = &a.rows[r].2[slot];
            if !v.is_null() {
                let count = match weight.map(|w| &a.rows[r].2[w]) {
                    Some(Val::Int(n)) => *n as u64,
                    _ => 1,
                };
                out.push(Point {
                    time: a.rows[r].0,
                    val: v.clone(),
                    row: Some(r),
                    count,
                });
            }
        }
        return out;
    }
    for r in from..to {
        let (t, si, vals) = &a.rows[r];
        let v = a.ev.eval(arg, *t, vals, a.series[*si]);
        if !v.is_null() {
            out.push(Point {
                time: *t,
                val: v,
                row: Some(r),
                count: 1,
            });
        }
    }
    out
}

fn int_arg(args: &[Expr], i: usize, name: &str) -> Result<i64, QueryError> {
    match args.get(i).map(Expr::unparen) {
        Some(Expr::Integer(n)) => Ok(*n),
        Some(Expr::Number(n)) => Ok(*n as i64),
        _ => Err(QueryError::msg(format!(
            "expected integer argument in {name}()"
        ))),
    }
}

/// The points an aggregate or selector produces for one window.
fn call_points(
    a: &AggInput<'_>,
    func: Function,
    args: &[Expr],
    from: usize,
    to: usize,
    window_start: i64,
) -> Result<Vec<Point>, QueryError> {
    let name = func.name();
    let arg = &args[0];
    // count(distinct(x))
    if let Expr::Call {
        func: inner,
        args: inner_args,
        ..
    } = arg.unparen()
    {
        if func == Function::Count && *inner == Some(Function::Distinct) {
            let pts = arg_points(a, &inner_args[0], from, to);
            let d = distinct(&pts);
            return Ok(vec![scalar(window_start, Val::Int(d.len() as i64))]);
        }
        return Err(QueryError::msg(format!(
            "expected field argument in {name}()"
        )));
    }
    let pts = arg_points(a, arg, from, to);
    if pts.is_empty() {
        return Ok(Vec::new());
    }
    if func.needs_numbers() && func != Function::Percentile && !pts[0].val.is_numeric() {
        return Err(QueryError::msg(format!(
            "unsupported {name} iterator type: {}",
            type_word(&pts[0].val)
        )));
    }
    let w = window_start;
    Ok(match func {
        Function::Count => vec![scalar(
            w,
            Val::Int(pts.iter().map(|p| p.count as i64).sum()),
        )],
        Function::Sum => match &pts[0].val {
            Val::Float(_) => vec![scalar(w, Val::Float(float_sum(a, &pts)))],
            _ => vec![scalar(w, sum(&pts))],
        },
        Function::Mean => vec![scalar(w, Val::Float(float_mean(a, &pts)))],
        Function::Median => {
            let mut v: Vec<f64> = pts.iter().filter_map(|p| p.val.as_f64()).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let m = if n % 2 == 1 {
                v[n / 2]
            } else {
                v[n / 2 - 1] + (v[n / 2] - v[n / 2 - 1]) / 2.0
            };
            vec![scalar(w, Val::Float(m))]
        }
        Function::Mode => vec![scalar(w, mode(a, &pts))],
        Function::Spread => {
            let min = pts
                .iter()
                .map(|p| &p.val)
                .min_by(|x, y| x.cmp_total(y))
                .expect("non-empty");
            let max = pts
                .iter()
                .map(|p| &p.val)
                .max_by(|x, y| x.cmp_total(y))
                .expect("non-empty");
            vec![scalar(w, arith(crate::influxql::ast::Op::Sub, max, min))]
        }
        Function::Stddev => {
            if pts.len() < 2 {
                vec![scalar(w, Val::Null)]
            } else {
                // InfluxDB's reducer: a running mean, then Go's Pow of each deviation,
                // over the values in its merge order (the last bits depend on both).
                let v: Vec<f64> = merge_ordered(a, &pts)
                    .filter_map(|p| p.val.as_f64())
                    .filter(|x| !x.is_nan())
                    .collect();
                let mut mean = 0.0;
                for (i, x) in v.iter().enumerate() {
                    mean += (x - mean) / (i + 1) as f64;
                }
                let var: f64 = v
                    .iter()
                    .fold(0.0, |s, x| s + crate::influxql::gomath::pow(x - mean, 2.0));
                vec![scalar(w, Val::Float((var / (v.len() as f64 - 1.0)).sqrt()))]
            }
        }
        Function::Integral => {
            let unit = match args.get(1).map(Expr::unparen) {
                Some(Expr::Duration(d)) => *d,
                None => 1_000_000_000,
                _ => {
                    return Err(QueryError::msg(
                        "second argument to integral must be a duration",
                    ))
                }
            };
            let mut area = 0.0;
            for p in pts.windows(2) {
                let (x0, x1) = (
                    p[0].val.as_f64().unwrap_or(0.0),
                    p[1].val.as_f64().unwrap_or(0.0),
                );
                let dt = (p[1].time - p[0].time) as f64 / unit as f64;
                area += (x0 + x1) / 2.0 * dt;
            }
            vec![scalar(w, Val::Float(area))]
        }
        Function::Distinct => distinct(&pts).into_iter().map(|v| scalar(w, v)).collect(),
        Function::First => {
            let mut best = &pts[0];
            for p in &pts[1..] {
                if p.time < best.time || (p.time == best.time && p.val.cmp_total(&best.val).is_gt())
                {
                    best = p;
                }
            }
            vec![best.clone()]
        }
        Function::Last => {
            let mut best = &pts[0];
            for p in &pts[1..] {
                if p.time > best.time || (p.time == best.time && p.val.cmp_total(&best.val).is_gt())
                {
                    best = p;
                }
            }
            vec![best.clone()]
        }
        Function::Min | Function::Max => {
            let want = if func == Function::Min {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let mut best = &pts[0];
            for p in &pts[1..] {
                let c = p.val.cmp_total(&best.val);
                if c == want || (c.is_eq() && p.time < best.time) {
                    best = p;
                }
            }
            vec![best.clone()]
        }
        Function::Percentile => {
            let q = match args.get(1).map(Expr::unparen) {
                Some(Expr::Integer(n)) => *n as f64,
                Some(Expr::Number(n)) => *n,
                _ => return Err(QueryError::msg("expected float argument in percentile()")),
            };
            // Go's (unstable) sort by value over the points in InfluxDB's merge order
            // decides which of equal values (and so which time) is picked.
            let mut v: Vec<&Point> = merge_ordered(a, &pts).collect();
            crate::influxql::gosort::sort(&mut v, &|x, y| go_less(&x.val, &y.val));
            let i = ((v.len() as f64 * q / 100.0 + 0.5).floor() as i64) - 1;
            if i < 0 || i as usize >= v.len() {
                Vec::new()
            } else {
                vec![v[i as usize].clone()]
            }
        }
        Function::Top | Function::Bottom => {
            let n = int_arg(args, args.len() - 1, name)?;
            if n <= 0 {
                return Err(QueryError::msg(format!(
                    "limit ({n}) in {name} function must be at least 1"
                )));
            }
            let better = |x: &Point, y: &Point| {
                let c = if func == Function::Top {
                    y.val.cmp_total(&x.val)
                } else {
                    x.val.cmp_total(&y.val)
                };
                c.then(x.time.cmp(&y.time))
            };
            let mut v = pts.clone();
            if args.len() > 2 {
                // top(f, tag, ..., N): the best point of each tag combination first.
                let mut best: BTreeMap<Vec<String>, Point> = BTreeMap::new();
                for p in v {
                    let tags = a.series[a.rows[p.row.expect("stored row")].1];
                    let key: Vec<String> = args[1..args.len() - 1]
                        .iter()
                        .map(|t| match t {
                            Expr::VarRef { name, .. } => {
                                tags.get(name).cloned().unwrap_or_default()
                            }
                            _ => String::new(),
                        })
                        .collect();
                    match best.get(&key) {
                        Some(b) if better(b, &p) != Ordering::Greater => {}
                        _ => {
                            best.insert(key, p);
                        }
                    }
                }
                v = best.into_values().collect();
            }
            v.sort_by(better);
            v.truncate(n as usize);
            v.sort_by_key(|p| p.time);
            v
        }
        other => {
            return Err(QueryError::msg(format!(
                "undefined function {}()",
                other.name()
            )));
        }
    })
}

/// The iterator type InfluxDB names when a function gets the wrong kind of values.
fn type_word(v: &Val) -> &'static str {
    match v {
        Val::Str(_) => "*query.stringInterruptIterator",
        Val::Bool(_) => "*query.booleanInterruptIterator",
        Val::Int(_) => "*query.integerInterruptIterator",
        Val::Uint(_) => "*query.unsignedInterruptIterator",
        _ => "*query.floatInterruptIterator",
    }
}

fn scalar(time: i64, val: Val) -> Point {
    Point {
        time,
        val,
        row: None,
        count: 1,
    }
}

/// Per (InfluxDB shard group, series) partials of a window's points, each added up in
/// time order (newest first for DESC), in InfluxDB's merge order: shard by shard, the
/// series of each in its order (see [`MergeOrder`]; series order without one).
fn partials(a: &AggInput<'_>, pts: &[Point]) -> Vec<Vec<(f64, u64)>> {
    // (group, series) -> (sum, count, a time of it): one map step per point; the
    // merge order is looked up once per partial.
    let mut acc: BTreeMap<(i64, usize), (f64, u64, i64)> = BTreeMap::new();
    // Descending queries read (and so add up) newest first.
    let ordered: Box<dyn Iterator<Item = &Point>> = if a.desc {
        Box::new(pts.iter().rev())
    } else {
        Box::new(pts.iter())
    };
    for p in ordered {
        let series = p.row.map(|r| a.rows[r].1).unwrap_or(0);
        let g = crate::base::time::go_truncate(p.time, a.shard_group_ns);
        let e = acc.entry((g, series)).or_insert((0.0, 0, p.time));
        e.0 += p.val.as_f64().unwrap_or(0.0);
        e.1 += p.count;
    }
    let mut keyed: Vec<_> = acc
        .into_iter()
        .map(|((g, series), (sum, n, t))| {
            let (shard, _, rank) = match a.order.get() {
                Some(order) => order.key(t, series),
                None => (0, g, 0),
            };
            ((shard, g, rank, series), (sum, n))
        })
        .collect();
    keyed.sort_unstable_by_key(|(k, _)| *k);
    let mut shards: Vec<Vec<(f64, u64)>> = Vec::new();
    let mut last = None;
    for ((shard, g, _, _), partial) in keyed {
        if last != Some((shard, g)) {
            shards.push(Vec::new());
            last = Some((shard, g));
        }
        shards.last_mut().expect("pushed").push(partial);
    }
    shards
}

/// The points of one window in the order InfluxDB's sorted merges hand a reducer over
/// raw points (`stddev`; see [`MergeOrder`]).
fn merge_ordered<'p>(a: &AggInput<'_>, pts: &'p [Point]) -> impl Iterator<Item = &'p Point> {
    let mut v: Vec<&Point> = pts.iter().collect();
    if a.desc {
        v.reverse();
    }
    if let Some(order) = a.order.get() {
        v.sort_by_key(|p| p.row.and_then(|r| order.raw_rank(r)));
    }
    v.into_iter()
}

/// A float sum added up as InfluxDB's iterators do: each series within a shard, then
/// the series of a shard, then the shards; the last bits of the answer depend on it.
fn float_sum(a: &AggInput<'_>, pts: &[Point]) -> f64 {
    if a.shard_group_ns == 0 {
        return pts.iter().filter_map(|p| p.val.as_f64()).sum();
    }
    partials(a, pts)
        .into_iter()
        .map(|series| series.into_iter().fold(0.0, |acc, (s, _)| acc + s))
        .fold(0.0, |acc, s| acc + s)
}

/// InfluxDB's mean reducer, applied per series, then per shard, over the shards, and
/// once more over the (one) source: a partial of n >= 2 points contributes mean * n,
/// a single point its value.
fn float_mean(a: &AggInput<'_>, pts: &[Point]) -> f64 {
    fn reduce(items: impl Iterator<Item = (f64, u64)>) -> (f64, u64) {
        let (mut sum, mut count) = (0.0, 0u64);
        for (v, n) in items {
            if n >= 2 {
                sum += v * n as f64;
                count += n;
            } else {
                sum += v;
                count += 1;
            }
        }
        (sum / count as f64, count)
    }
    if a.shard_group_ns == 0 {
        let s: f64 = pts.iter().filter_map(|p| p.val.as_f64()).sum();
        return s / pts.iter().map(|p| p.count).sum::<u64>() as f64;
    }
    let shards: Vec<(f64, u64)> = partials(a, pts)
        .into_iter()
        .map(|series| reduce(series.into_iter().map(|(s, n)| (s / n as f64, n))))
        .collect();
    let over_shards = reduce(shards.into_iter());
    reduce(std::iter::once(over_shards)).0
}

/// InfluxDB's mode reducer over the points in its merge order: booleans by count (true
/// on a tie); other values sorted by Go's (unstable) sort, then each run of equal
/// values counted from its second element on, a later run winning a tie unless it
/// started later in time (so a value seen once never wins, except the first run).
fn mode(a: &AggInput<'_>, pts: &[Point]) -> Val {
    let mut v: Vec<&Point> = merge_ordered(a, pts).collect();
    if v.len() == 1 {
        return v[0].val.clone();
    }
    if matches!(v[0].val, Val::Bool(_)) {
        let trues = v.iter().filter(|p| p.val == Val::Bool(true)).count();
        return Val::Bool(trues >= v.len() - trues);
    }
    crate::influxql::gosort::sort(&mut v, &|x, y| go_less(&x.val, &y.val));
    let same = |x: &Val, y: &Val| match (x, y) {
        (Val::Float(a), Val::Float(b)) => a == b,
        _ => x.cmp_total(y) == Ordering::Equal,
    };
    let (mut most_freq, mut curr_freq) = (0usize, 0usize);
    let (mut curr_mode, mut most_mode) = (&v[0].val, &v[0].val);
    let (mut curr_time, mut most_time) = (v[0].time, v[0].time);
    for p in &v {
        if !same(&p.val, curr_mode) {
            curr_freq = 1;
            curr_mode = &p.val;
            curr_time = p.time;
            continue;
        }
        curr_freq += 1;
        if most_freq > curr_freq || (most_freq == curr_freq && curr_time > most_time) {
            continue;
        }
        most_freq = curr_freq;
        most_mode = &p.val;
        most_time = p.time;
    }
    most_mode.clone()
}

/// Go's `<` between two values of one type (InfluxDB's `PointsByValue`); values of
/// different types (a field whose type differs between shards) by our total order.
fn go_less(x: &Val, y: &Val) -> bool {
    match (x, y) {
        (Val::Float(a), Val::Float(b)) => a < b,
        (Val::Int(a), Val::Int(b)) => a < b,
        (Val::Uint(a), Val::Uint(b)) => a < b,
        (Val::Str(a), Val::Str(b)) => a < b,
        (Val::Bool(a), Val::Bool(_)) => !a,
        (a, b) => a.cmp_total(b) == Ordering::Less,
    }
}

fn sum(pts: &[Point]) -> Val {
    match &pts[0].val {
        Val::Int(_) => Val::Int(pts.iter().fold(0i64, |s, p| match p.val {
            Val::Int(i) => s.wrapping_add(i),
            _ => s,
        })),
        Val::Uint(_) => Val::Uint(pts.iter().fold(0u64, |s, p| match p.val {
            Val::Uint(i) => s.wrapping_add(i),
            _ => s,
        })),
        _ => Val::Float(pts.iter().filter_map(|p| p.val.as_f64()).sum()),
    }
}

/// Distinct values in the order of their first occurrence in time.
fn distinct(pts: &[Point]) -> Vec<Val> {
    let mut v: Vec<&Point> = pts.iter().collect();
    v.sort_by(|x, y| x.val.cmp_total(&y.val).then(x.time.cmp(&y.time)));
    v.dedup_by(|x, y| x.val.cmp_total(&y.val).is_eq());
    v.sort_by_key(|p| p.time);
    v.into_iter().map(|p| p.val.clone()).collect()
}

/// Fill of empty windows in one field's column (ascending windows). `fill(previous)`
/// takes the value before in output order, as InfluxDB's fill iterator: with ORDER BY
/// time DESC, the later window's; so does `fill(linear)`'s line, drawn as InfluxDB's
/// `linearFloat` draws it, in units of the interval.
fn apply_fill(
    col: &mut [Val],
    fill: &Fill,
    windows: &[(i64, i64)],
    interval: Option<(i64, i64)>,
    desc: bool,
) {
    match fill {
        Fill::Null | Fill::None => {}
        Fill::Number(_) | Fill::Integer(_) => {
            let kind = col.iter().find(|v| !v.is_null()).cloned();
            let f = fill_value(fill).expect("numeric fill");
            for v in col.iter_mut().filter(|v| v.is_null()) {
                *v = match (&kind, &f) {
                    (Some(Val::Int(_)), Val::Float(x)) => Val::Int(*x as i64),
                    (Some(Val::Float(_)), Val::Int(i)) => Val::Float(*i as f64),
                    _ => f.clone(),
                };
            }
        }
        Fill::Previous => {
            let mut prev = Val::Null;
            let order: Box<dyn Iterator<Item = &mut Val>> = if desc {
                Box::new(col.iter_mut().rev())
            } else {
                Box::new(col.iter_mut())
            };
            for v in order {
                if v.is_null() {
                    *v = prev.clone();
                } else {
                    prev = v.clone();
                }
            }
        }
        Fill::Linear => {
            let Some(every) = interval.map(|i| i.0).filter(|&e| e > 0) else {
                return;
            };
            let known: Vec<usize> = (0..col.len()).filter(|&i| !col[i].is_null()).collect();
            for pair in known.windows(2) {
                let (i, j) = (pair[0], pair[1]);
                // The fill iterator's previous point is the one before in output order.
                let (p, n) = if desc { (j, i) } else { (i, j) };
                // Times in intervals, truncated as Go divides.
                let (pt, nt) = (windows[p].0 / every, windows[n].0 / every);
                let span = (nt - pt) as f64;
                for k in i + 1..j {
                    let x = (windows[k].0 / every - pt) as f64;
                    col[k] = match (&col[p], &col[n]) {
                        (Val::Int(pv), Val::Int(nv)) => {
                            let m = nv.wrapping_sub(*pv) as f64 / span;
                            Val::Int((m * x + *pv as f64) as i64)
                        }
                        (Val::Uint(pv), Val::Uint(nv)) => {
                            let m = nv.wrapping_sub(*pv) as f64 / span;
                            Val::Uint((m * x + *pv as f64) as u64)
                        }
                        (pv, nv) => match (pv.as_f64(), nv.as_f64()) {
                            (Some(pv), Some(nv)) => Val::Float((nv - pv) / span * x + pv),
                            _ => continue,
                        },
                    };
                }
            }
        }
    }
}

/// integral() over the group's points as InfluxDB's streaming reducer computes it: the
/// area up to a window's end is interpolated towards the next point, and the next
/// window starts from that edge (or from the last window's end across empty windows).
/// Without GROUP BY time the single result carries time zero.
fn integral_windows(
    a: &AggInput<'_>,
    args: &[Expr],
    windows: &[(i64, i64)],
) -> Result<Vec<Val>, QueryError> {
    let unit = match args.get(1).map(Expr::unparen) {
        Some(Expr::Duration(d)) if *d > 0 => *d,
        None => 1_000_000_000,
        _ => {
            return Err(QueryError::msg(
                "second argument to integral must be a duration",
            ))
        }
    } as f64;
    let pts = arg_points(a, &args[0], 0, a.rows.len());
    let mut out = vec![Val::Null; windows.len()];
    if let Some(p) = pts.first() {
        if !p.val.is_numeric() {
            return Err(QueryError::msg(format!(
                "unsupported integral iterator type: {}",
                type_word(&p.val)
            )));
        }
    }
    let window_of = |t: i64| -> Option<usize> {
        match a.interval {
            None => Some(0),
            Some(_) => {
                let i = windows.partition_point(|w| w.1 < t);
                (i < windows.len() && windows[i].0 <= t).then_some(i)
            }
        }
    };
    let mut prev: Option<(i64, f64)> = None;
    let mut current: Option<usize> = None;
    let mut sum = 0.0;
    for p in &pts {
        let v = p.val.as_f64().unwrap_or(0.0);
        let Some((pt, pv)) = prev else {
            prev = Some((p.time, v));
            current = window_of(p.time);
            continue;
        };
        if pt == p.time {
            prev = Some((p.time, v));
            continue;
        }
        let mut start = (pt, pv);
        if let (Some(_), Some(wi)) = (a.interval, current) {
            let end = windows[wi].1 + 1;
            if p.time >= end {
                if pt != end {
                    let value = pv + (v - pv) * ((end - pt) as f64 / (p.time - pt) as f64);
                    let elapsed = (end - pt) as f64 / unit;
                    sum += 0.5 * (value + pv) * elapsed;
                    start = (end, value);
                }
                out[wi] = Val::Float(sum);
                sum = 0.0;
                current = window_of(p.time);
            }
        }
        let elapsed = (p.time - start.0) as f64 / unit;
        sum += 0.5 * (v + start.1) * elapsed;
        prev = Some((p.time, v));
    }
    if let (Some(_), Some(wi)) = (prev, current) {
        out[wi] = Val::Float(sum);
    }
    Ok(out)
}

/// A transformation over a sequence of points.
fn transform(
    func: Function,
    args: &[Expr],
    pts: &[Point],
    default_unit: i64,
    desc: bool,
) -> Result<Vec<Point>, QueryError> {
    let name = func.name();
    // Descending order runs the transformation over the points newest first.
    let reversed: Vec<Point>;
    let pts = if desc {
        reversed = pts.iter().rev().cloned().collect();
        &reversed[..]
    } else {
        pts
    };
    let unit = |default: i64| -> Result<i64, QueryError> {
        match args.get(1).map(Expr::unparen) {
            Some(Expr::Duration(d)) if *d > 0 => Ok(*d),
            Some(Expr::Duration(d)) => Err(QueryError::msg(format!(
                "duration argument must be positive, got {}",
                crate::influxql::format::influx_duration(*d)
            ))),
            None => Ok(default),
            _ => Err(QueryError::msg(format!(
                "second argument to {name} must be a duration"
            ))),
        }
    };
    if let Some(p) = pts.first() {
        if func != Function::Elapsed && !p.val.is_numeric() {
            return Err(QueryError::msg(format!(
                "unsupported {name} iterator type: {}",
                type_word(&p.val)
            )));
        }
    }
    // InfluxDB's derivative and difference reducers skip a point at the time of the
    // one before it (several series merged into one stream): the first one counts.
    let first_per_time: Vec<Point>;
    let pts = if matches!(
        func,
        Function::Derivative
            | Function::NonNegativeDerivative
            | Function::Difference
            | Function::NonNegativeDifference
    ) {
        let mut kept: Vec<Point> = Vec::with_capacity(pts.len());
        for p in pts {
            if kept.last().is_none_or(|last| last.time != p.time) {
                kept.push(p.clone());
            }
        }
        first_per_time = kept;
        &first_per_time[..]
    } else {
        pts
    };
    let mut out = Vec::new();
    match func {
        Function::Derivative | Function::NonNegativeDerivative => {
            let unit = unit(default_unit)? as f64;
            for w in pts.windows(2) {
                let mut dt = (w[1].time - w[0].time) as f64;
                if desc {
                    dt = -dt;
                }
                if dt == 0.0 {
                    continue;
                }
                let dv = w[1].val.as_f64().unwrap_or(0.0) - w[0].val.as_f64().unwrap_or(0.0);
                let d = dv / (dt / unit);
                if func == Function::NonNegativeDerivative && d < 0.0 {
                    continue;
                }
                out.push(scalar(w[1].time, Val::Float(d)));
            }
        }
        Function::Difference | Function::NonNegativeDifference => {
            for w in pts.windows(2) {
                let d = arith(crate::influxql::ast::Op::Sub, &w[1].val, &w[0].val);
                if func == Function::NonNegativeDifference && d.as_f64().is_some_and(|x| x < 0.0) {
                    continue;
                }
                out.push(scalar(w[1].time, d));
            }
        }
        Function::MovingAverage => {
            let n = int_arg(args, 1, name)?;
            if n < 1 {
                return Err(QueryError::msg(format!(
                    "moving_average window must be greater than 1, got {n}"
                )));
            }
            // InfluxDB's reducer keeps a running sum: once the window is full the
            // oldest value is taken out, then the new one added.
            let n = n as usize;
            let mut sum = 0.0;
            for (i, p) in pts.iter().enumerate() {
                if i >= n {
                    sum -= pts[i - n].val.as_f64().unwrap_or(0.0);
                }
                sum += p.val.as_f64().unwrap_or(0.0);
                if i + 1 >= n {
                    out.push(scalar(p.time, Val::Float(sum / n as f64)));
                }
            }
        }
        Function::CumulativeSum => {
            let mut acc: Option<Val> = None;
            for p in pts {
                let next = match &acc {
                    None => p.val.clone(),
                    Some(a) => arith(crate::influxql::ast::Op::Add, a, &p.val),
                };
                out.push(scalar(p.time, next.clone()));
                acc = Some(next);
            }
        }
        Function::Elapsed => {
            let unit = unit(1)?;
            for w in pts.windows(2) {
                out.push(scalar(w[1].time, Val::Int((w[1].time - w[0].time) / unit)));
            }
        }
        other => {
            return Err(QueryError::msg(format!(
                "undefined function {}()",
                other.name()
            )))
        }
    }
    out.sort_by_key(|p| p.time);
    Ok(out)
}

/// `SELECT derivative(x) FROM m` without GROUP BY time: over the raw points.
fn raw_transforms(a: &AggInput<'_>) -> Result<Vec<Vec<Val>>, QueryError> {
    let mut columns: Vec<Vec<Point>> = Vec::new();
    for f in a.fields {
        let Expr::Call {
            func: Some(func),
            args,
            ..
        } = f.expr.unparen()
        else {
            return Err(QueryError::msg(
                "mixing aggregate and non-aggregate queries is not supported",
            ));
        };
        if !func.is_transform() {
            return Err(QueryError::msg(
                "mixing aggregate and non-aggregate queries is not supported",
            ));
        }
        let pts = arg_points(a, &args[0], 0, a.rows.len());
        columns.push(transform(*func, args, &pts, 1_000_000_000, a.desc)?);
    }
    // Rows by time; points of several series at one time each make a row (InfluxDB
    // keeps them: cumulative_sum over two series at one time gives two rows), the
    // columns' n-th points at that time sharing the n-th row.
    for c in &mut columns {
        // Descending: the transformation ran newest first; reversed here, the rows at
        // one time keep that order once the answer is reversed back.
        if a.desc {
            c.reverse();
        }
        c.sort_by_key(|p| p.time);
    }
    let mut times: Vec<i64> = columns
        .iter()
        .flat_map(|c| c.iter().map(|p| p.time))
        .collect();
    times.sort_unstable();
    times.dedup();
    let mut out = Vec::with_capacity(times.len());
    let mut next = vec![0usize; columns.len()];
    for t in times {
        let counts: Vec<usize> = columns
            .iter()
            .zip(&next)
            .map(|(c, &i)| c[i..].iter().take_while(|p| p.time == t).count())
            .collect();
        let rows = counts.iter().copied().max().unwrap_or(0);
        for n in 0..rows {
            let mut row = vec![Val::Int(t)];
            for (ci, c) in columns.iter().enumerate() {
                row.push(if n < counts[ci] {
                    c[next[ci] + n].val.clone()
                } else {
                    Val::default()
                });
            }
            out.push(row);
        }
        for (i, count) in next.iter_mut().zip(&counts) {
            *i += count;
        }
    }
    Ok(out)
}

pub(crate) fn fill_value(fill: &Fill) -> Option<Val> {
    match fill {
        Fill::Number(n) => Some(Val::Float(*n)),
        Fill::Integer(i) => Some(Val::Int(*i)),
        _ => None,
    }
}
