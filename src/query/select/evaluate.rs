//! From scanned columns to rows: the columns of a series merged by time into rows by
//! slot, a subquery's result turned into input series, and raw rows evaluated.

use super::*;

/// Builds per-series rows from shard scans: the same series from several shards is
/// concatenated; columns are merged by timestamp.
pub(super) fn series_rows(
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
pub(super) type SlotColumn = (usize, Vec<i64>, Vec<crate::tsdb::shard::Value>);

/// Rows of one series from its sorted columns (each `(slot, times, values)`, possibly
/// several per slot from different shards): a k-way merge by time, one row per
/// timestamp with a value (or null) per slot.
pub(super) fn merge_columns(cols: Vec<SlotColumn>, width: usize) -> Vec<(i64, Vec<Val>)> {
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
pub(super) fn from_subquery(inner: &Select, series: Vec<ResultSeries>) -> Vec<SourceData> {
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

/// Raw rows: one per stored point row, skipping rows where every selected field is null.
pub(super) fn raw_rows(
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
            let mut v = ev.eval(&f.expr, *t, vals, tags);
            // A tag column of a series without that tag is null, as InfluxDB's aux
            // cursor answers a blank tag value.
            if !is_field
                && matches!(&v, Val::Str(s) if s.is_empty())
                && matches!(f.expr.unparen(), Expr::VarRef { .. })
            {
                v = Val::Null;
            }
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

/// Orders one group's rows (per-series runs in series order, each sorted by time) as
/// InfluxDB 1.x's iterators emit them, so rows of several series at one timestamp come
/// in its order, not ours: the sorted merge of each shard group's series, Go's heap
/// replayed (`merge_order::merge_runs`, which aggregates over raw points share), ties
/// broken by `tie` (InfluxDB's comparison of its Aux values: the first pair that is
/// not two equal strings decides, and only if both are strings).
///
/// Returns the rows ascending in time (a DESC statement reverses them later), so for
/// DESC the merge's descending order is produced, then reversed.
pub(super) fn influx_merge_order(
    rows: Vec<GroupRow>,
    shard_group_ns: i64,
    desc: bool,
    tie: &dyn Fn(&GroupRow, &GroupRow) -> std::cmp::Ordering,
) -> Vec<GroupRow> {
    // Per shard group, the runs of each series in series order, as (time, row).
    let mut by_group: BTreeMap<i64, Vec<Vec<(i64, u32)>>> = BTreeMap::new();
    let mut last: Option<(i64, usize)> = None;
    for (i, row) in rows.iter().enumerate() {
        let group = crate::base::time::go_truncate(row.0, shard_group_ns);
        let runs = by_group.entry(group).or_default();
        if last != Some((group, row.1)) || runs.is_empty() {
            runs.push(Vec::new());
        }
        last = Some((group, row.1));
        runs.last_mut().expect("pushed").push((row.0, i as u32));
    }
    let groups = by_group.into_values().collect();
    let order = crate::query::merge_order::merge_runs(&rows, groups, desc, tie);
    let mut slots: Vec<Option<GroupRow>> = rows.into_iter().map(Some).collect();
    let mut out: Vec<GroupRow> = order
        .into_iter()
        .filter_map(|i| slots[i as usize].take())
        .collect();
    if desc {
        out.reverse();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: i64, series: usize) -> GroupRow {
        (t, series, vec![])
    }

    #[test]
    fn equal_times_come_out_as_gos_heap_orders_them() {
        let no_aux = |_: &GroupRow, _: &GroupRow| std::cmp::Ordering::Equal;
        // Three series with one point each at one time: Go's heap pops the first,
        // then the last, then the middle one.
        let rows = vec![row(5, 0), row(5, 1), row(5, 2)];
        let order: Vec<usize> = influx_merge_order(rows, 100, false, &no_aux)
            .iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(order, vec![0, 2, 1]);
        // Shard groups never mix; a later group's points come after.
        let rows = vec![row(5, 0), row(150, 0), row(5, 1), row(150, 1)];
        let times: Vec<(i64, usize)> = influx_merge_order(rows, 100, false, &no_aux)
            .iter()
            .map(|r| (r.0, r.1))
            .collect();
        assert_eq!(times, vec![(5, 0), (5, 1), (150, 0), (150, 1)]);
        // Leading string values decide a tie.
        let by_series = |x: &GroupRow, y: &GroupRow| ["b", "a", "c"][x.1].cmp(["b", "a", "c"][y.1]);
        let rows = vec![row(5, 0), row(5, 1), row(5, 2)];
        let order: Vec<usize> = influx_merge_order(rows, 100, false, &by_series)
            .iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(order, vec![1, 0, 2]);
    }
}
