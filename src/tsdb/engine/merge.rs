//! Merging a field's values from several sources (data files, heads, a head's sealed
//! chunks and its open part), newest source winning a time they share.

use super::Value;

/// One source's values of a field: times and values, sorted, one per time.
pub type Source = (Vec<i64>, Vec<Value>);

/// Merges sorted sources, oldest first, into one sorted column: for a time in more
/// than one source, the newest source's value wins.
pub fn merge_sources(mut sources: Vec<Source>) -> Source {
    sources.retain(|(t, _)| !t.is_empty());
    if sources.len() <= 1 {
        return sources.pop().unwrap_or_default();
    }
    let disjoint = sources.windows(2).all(|w| w[0].0.last() < w[1].0.first());
    if disjoint {
        let n = sources.iter().map(|s| s.0.len()).sum();
        let (mut times, mut values) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (t, v) in sources {
            times.extend(t);
            values.extend(v);
        }
        return (times, values);
    }
    let mut order: Vec<(i64, usize, usize)> = sources
        .iter()
        .enumerate()
        .flat_map(|(s, (t, _))| t.iter().enumerate().map(move |(i, &t)| (t, s, i)))
        .collect();
    order.sort_unstable();
    let mut keep: Vec<(i64, usize, usize)> = Vec::with_capacity(order.len());
    for e in order {
        match keep.last_mut() {
            Some(last) if last.0 == e.0 => *last = e,
            _ => keep.push(e),
        }
    }
    let mut slots: Vec<Vec<Option<Value>>> = sources
        .into_iter()
        .map(|(_, v)| v.into_iter().map(Some).collect())
        .collect();
    let times = keep.iter().map(|e| e.0).collect();
    let values = keep
        .iter()
        .map(|&(_, s, i)| slots[s][i].take().expect("each value taken once"))
        .collect();
    (times, values)
}

/// Keeps only the last n (`newest`) or the first n of sorted `times` and `values`.
pub fn apply_limit(times: &mut Vec<i64>, values: &mut Vec<Value>, limit: Option<(usize, bool)>) {
    match limit {
        Some((n, true)) if times.len() > n => {
            let cut = times.len() - n;
            times.drain(..cut);
            values.drain(..cut);
        }
        Some((n, false)) => {
            times.truncate(n);
            values.truncate(n);
        }
        _ => {}
    }
}
