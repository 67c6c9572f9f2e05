//! The order in which InfluxDB 1.x's iterators hand an aggregate its inputs, where
//! the last bits of a float answer depend on it (`mean`, `sum` and `stddev` over
//! several series or shards).
//!
//! InfluxDB reads each shard (one per shard group on a single node) per tag set, one
//! iterator per series, in series-key order (reversed for ORDER BY time DESC).
//!
//! - A `mean` or `sum` is pushed into each series; the series' partials are merged in
//!   two halves (`NewParallelMergeIterator` with GOMAXPROCS inputs; 2 on the 2-core
//!   machines we compare on), then the halves, then reduced per shard, then over the
//!   shards, then over the sources. These merges are unsorted: Go's `container/heap`
//!   keyed by the window of each input's next point; popped, an input gives every
//!   point it has in that window before it is pushed back ([`window_merge`]).
//! - A reducer over raw points (`stddev`) reads the series through sorted merges (the
//!   top-level iterators are always ordered): by time, then as the heap leaves equal
//!   times ([`sorted_merge`]), shard after shard.
//!
//! Inputs tied on a key come out in whatever order the heap's history leaves them,
//! which is why the order is replayed here step by step rather than sorted.
//!
//! What this does not see: series of a shard that have no point in the query's range
//! (InfluxDB counts them when it halves the series), and other groups' effect on the
//! heap of the shard merge (only matters for a window that spans three shards or
//! more).

use crate::influxql::value::Val;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A group's row: time, series index, values by slot.
pub type Row = (i64, usize, Vec<Val>);

/// GOMAXPROCS of the InfluxDB whose answers we reproduce: the halves of
/// `NewParallelMergeIterator`.
const INFLUX_PARALLELISM: usize = 2;

/// Go's `container/heap` (Init, Pop, Push as Go writes them) over item indices, with
/// the order given at each call (the items' keys change between calls).
pub(crate) struct GoHeap {
    items: Vec<usize>,
}

impl GoHeap {
    pub(crate) fn init(items: Vec<usize>, less: &dyn Fn(usize, usize) -> bool) -> Self {
        let mut h = GoHeap { items };
        let n = h.items.len();
        for i in (0..n / 2).rev() {
            h.down(i, n, less);
        }
        h
    }

    /// heap.Pop: swap the top with the last, sift down over the rest, take the last.
    pub(crate) fn pop(&mut self, less: &dyn Fn(usize, usize) -> bool) -> Option<usize> {
        let n = self.items.len().checked_sub(1)?;
        self.items.swap(0, n);
        self.down(0, n, less);
        self.items.pop()
    }

    /// heap.Push: append, sift up.
    pub(crate) fn push(&mut self, x: usize, less: &dyn Fn(usize, usize) -> bool) {
        self.items.push(x);
        let mut j = self.items.len() - 1;
        while j > 0 {
            let i = (j - 1) / 2;
            if !less(self.items[j], self.items[i]) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    fn down(&mut self, i0: usize, n: usize, less: &dyn Fn(usize, usize) -> bool) {
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            let j2 = j1 + 1;
            if j2 < n && less(self.items[j2], self.items[j1]) {
                j = j2;
            }
            if !less(self.items[j], self.items[i]) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
    }
}

/// InfluxDB's (unsorted) merge iterator over inputs of `(window key, item)`, each in
/// its own order: the heap pops the input whose next window key is least, which gives
/// all of its points in that window, and is pushed back with its next.
pub(crate) fn window_merge<T>(inputs: Vec<Vec<(i64, T)>>) -> Vec<(i64, T)> {
    let total = inputs.iter().map(Vec::len).sum();
    let mut runs: Vec<VecDeque<(i64, T)>> = inputs
        .into_iter()
        .filter(|r| !r.is_empty())
        .map(VecDeque::from)
        .collect();
    let less = |runs: &[VecDeque<(i64, T)>], i: usize, j: usize| runs[i][0].0 < runs[j][0].0;
    let mut heap = GoHeap::init((0..runs.len()).collect(), &|i, j| less(&runs, i, j));
    let mut out = Vec::with_capacity(total);
    while let Some(top) = heap.pop(&|i, j| less(&runs, i, j)) {
        let key = runs[top][0].0;
        while runs[top].front().is_some_and(|x| x.0 == key) {
            out.extend(runs[top].pop_front());
        }
        if !runs[top].is_empty() {
            heap.push(top, &|i, j| less(&runs, i, j));
        }
    }
    out
}

/// Go's sorted merge (InfluxDB's sortedMergeIterator) of `runs`, each in its own
/// order, by `less` over their next items.
fn sorted_merge<T>(runs: Vec<Vec<T>>, less: &dyn Fn(&T, &T) -> bool) -> Vec<T> {
    if runs.len() == 1 {
        return runs.into_iter().next().unwrap_or_default();
    }
    let total = runs.iter().map(Vec::len).sum();
    let mut runs: Vec<VecDeque<T>> = runs
        .into_iter()
        .filter(|r| !r.is_empty())
        .map(VecDeque::from)
        .collect();
    let front_less = |runs: &[VecDeque<T>], i: usize, j: usize| less(&runs[i][0], &runs[j][0]);
    let mut heap = GoHeap::init((0..runs.len()).collect(), &|i, j| front_less(&runs, i, j));
    let mut out = Vec::with_capacity(total);
    while let Some(top) = heap.pop(&|i, j| front_less(&runs, i, j)) {
        out.extend(runs[top].pop_front());
        if !runs[top].is_empty() {
            heap.push(top, &|i, j| front_less(&runs, i, j));
        }
    }
    out
}

/// One group's merge order: for every window, the order of the shards, and within a
/// shard the order of the series' partials; or the order of its raw points.
#[derive(Debug, Default)]
pub struct MergeOrder {
    /// The statement's windows (start, end inclusive), ascending.
    windows: Vec<(i64, i64)>,
    group_ns: i64,
    /// (shard group, window start, series) → rank among the shard's series in that
    /// window, for partials pushed into each series (halved, then merged).
    call: HashMap<(i64, i64, usize), u32>,
    /// (window start, shard group) → rank among the shards with points in the window.
    shards: HashMap<(i64, i64), u32>,
    /// By row: its place in the sorted merge of the raw points (empty: not asked).
    raw: Vec<u32>,
}

impl MergeOrder {
    /// The order over a group's `rows` (time, series, values), sorted by time (series
    /// order within a time): of pushed partials (`pushed`), of raw points (`raw`).
    pub fn new(
        rows: &[Row],
        windows: &[(i64, i64)],
        group_ns: i64,
        desc: bool,
        tie: &dyn Fn(&Row, &Row) -> Ordering,
        pushed: bool,
        raw: bool,
    ) -> Self {
        let mut order = MergeOrder {
            windows: windows.to_vec(),
            group_ns,
            ..MergeOrder::default()
        };
        if raw {
            order.raw = raw_ranks(rows, group_ns, desc, tie);
        }
        if !pushed {
            return order;
        }
        // Per shard group, per series: the windows it has points in, ascending. Rows
        // come in time order, so each series' (group, window) changes rarely: the
        // maps are touched only when it does. (Series indices are the statement's,
        // so a group's are sparse: a map, not a vector as long as the largest.)
        let mut present: BTreeMap<i64, BTreeMap<usize, Vec<i64>>> = BTreeMap::new();
        let mut last: HashMap<usize, (i64, i64)> = HashMap::new();
        let mut wi = 0;
        for &(t, series, _) in rows {
            while wi < windows.len() && windows[wi].1 < t {
                wi += 1;
            }
            let Some(&(w, _)) = windows.get(wi).filter(|w| w.0 <= t) else {
                continue;
            };
            let g = crate::base::time::go_truncate(t, group_ns);
            if last.insert(series, (g, w)) == Some((g, w)) {
                continue;
            }
            let ws = present.entry(g).or_default().entry(series).or_default();
            if ws.last() != Some(&w) {
                ws.push(w);
            }
        }
        // The heap's key: the window, latest first for DESC.
        let key = |w: i64| if desc { w.wrapping_neg() } else { w };
        let mut shard_streams = Vec::with_capacity(present.len());
        for (&g, by_series) in &present {
            let mut items: Vec<Vec<(i64, (i64, usize))>> = by_series
                .iter()
                .map(|(&s, ws)| {
                    let mut v: Vec<(i64, (i64, usize))> =
                        ws.iter().map(|&w| (key(w), (w, s))).collect();
                    if desc {
                        v.reverse();
                    }
                    v
                })
                .collect();
            if desc {
                items.reverse();
            }
            // NewParallelMergeIterator: the first len/p inputs, ... the rest, each
            // merged, then the halves merged.
            let p = INFLUX_PARALLELISM.min(items.len()).max(1);
            let n = items.len() / p;
            let mut halves = Vec::with_capacity(p);
            for _ in 0..p - 1 {
                let tail = items.split_off(n);
                halves.push(window_merge(items));
                items = tail;
            }
            halves.push(window_merge(items));
            let mut next: HashMap<i64, u32> = HashMap::new();
            for (_, (w, s)) in window_merge(halves) {
                let r = next.entry(w).or_default();
                order.call.insert((g, w, s), *r);
                *r += 1;
            }

            let mut windows: Vec<i64> = by_series.values().flatten().copied().collect();
            windows.sort_unstable();
            windows.dedup();
            if desc {
                windows.reverse();
            }
            shard_streams.push(windows.into_iter().map(|w| (key(w), (w, g))).collect());
        }
        let mut next: HashMap<i64, u32> = HashMap::new();
        for (_, (w, g)) in window_merge(shard_streams) {
            let r = next.entry(w).or_default();
            order.shards.insert((w, g), *r);
            *r += 1;
        }
        order
    }

    /// The start of the window holding `t`.
    fn window_of(&self, t: i64) -> Option<i64> {
        let i = self.windows.partition_point(|w| w.1 < t);
        self.windows.get(i).filter(|w| w.0 <= t).map(|w| w.0)
    }

    /// The sort key of a pushed partial of `series` at `t`, among those of its window:
    /// its shard's rank, the shard, its series' rank in that shard.
    pub fn key(&self, t: i64, series: usize) -> (u32, i64, u32) {
        let g = crate::base::time::go_truncate(t, self.group_ns);
        let Some(w) = self.window_of(t) else {
            return (u32::MAX, g, u32::MAX);
        };
        (
            self.shards.get(&(w, g)).copied().unwrap_or(u32::MAX),
            g,
            self.call.get(&(g, w, series)).copied().unwrap_or(u32::MAX),
        )
    }

    /// The place of raw row `row` in InfluxDB's order (`None`: not computed).
    pub fn raw_rank(&self, row: usize) -> Option<u32> {
        self.raw.get(row).copied()
    }
}

/// By row (`rows` sorted by time, series order within a time): its place in
/// InfluxDB's sorted merge of the group's raw points ([`merge_runs`]).
pub(crate) fn raw_ranks(
    rows: &[Row],
    group_ns: i64,
    desc: bool,
    tie: &dyn Fn(&Row, &Row) -> Ordering,
) -> Vec<u32> {
    let n = rows.len() as u32;
    // Without two points at one time, the merge order is time order.
    if rows.windows(2).all(|w| w[0].0 != w[1].0) {
        return if desc {
            (0..n).rev().collect()
        } else {
            (0..n).collect()
        };
    }
    // Each series' points within a shard group, in time order (a stable sort of the
    // time-ordered rows), groups ascending.
    let key = |i: u32| {
        let (t, series, _) = &rows[i as usize];
        (crate::base::time::go_truncate(*t, group_ns), *series)
    };
    let mut idx: Vec<u32> = (0..n).collect();
    idx.sort_by_cached_key(|&i| key(i));
    let mut groups: Vec<Vec<Vec<(i64, u32)>>> = Vec::new();
    let mut last: Option<(i64, usize)> = None;
    for &i in &idx {
        let k = key(i);
        if last.map(|l| l.0) != Some(k.0) {
            groups.push(Vec::new());
        }
        let runs = groups.last_mut().expect("pushed");
        if last != Some(k) {
            runs.push(Vec::new());
        }
        last = Some(k);
        runs.last_mut()
            .expect("pushed")
            .push((rows[i as usize].0, i));
    }
    let mut ranks = vec![u32::MAX; rows.len()];
    for (pos, i) in merge_runs(rows, groups, desc, tie).into_iter().enumerate() {
        ranks[i as usize] = pos as u32;
    }
    ranks
}

/// The rows, by index, in InfluxDB's sorted merge: `groups` are the shard groups
/// ascending, each the runs of its series in series order, each run `(time, row)`
/// ascending in time. Group after group (latest first for DESC, series and runs
/// reversed as its tag sets are), each merged by time, then — at one time — by `tie`,
/// as Go's heap leaves equal points.
pub(crate) fn merge_runs(
    rows: &[Row],
    mut groups: Vec<Vec<Vec<(i64, u32)>>>,
    desc: bool,
    tie: &dyn Fn(&Row, &Row) -> Ordering,
) -> Vec<u32> {
    let less = |x: &(i64, u32), y: &(i64, u32)| {
        if x.0 != y.0 {
            return if desc { x.0 > y.0 } else { x.0 < y.0 };
        }
        match tie(&rows[x.1 as usize], &rows[y.1 as usize]) {
            Ordering::Less => !desc,
            Ordering::Greater => desc,
            Ordering::Equal => false,
        }
    };
    if desc {
        groups.reverse();
    }
    let mut order = Vec::with_capacity(rows.len());
    for mut runs in groups {
        if desc {
            runs.reverse();
            for r in &mut runs {
                r.reverse();
            }
        }
        order.extend(sorted_merge(runs, &less).into_iter().map(|(_, i)| i));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_come_out_in_the_heaps_order() {
        // Three inputs tied on one window: Go's heap pops the first, then the last,
        // then the middle one.
        let out = window_merge(vec![vec![(0, 'a')], vec![(0, 'b')], vec![(0, 'c')]]);
        assert_eq!(out.iter().map(|x| x.1).collect::<String>(), "acb");
        // An input gives all its points of a window before the next input.
        let out = window_merge(vec![
            vec![(0, 'a'), (0, 'A'), (1, 'x')],
            vec![(0, 'b'), (1, 'y')],
        ]);
        assert_eq!(out.iter().map(|x| x.1).collect::<String>(), "aAbxy");
    }

    #[test]
    fn four_series_are_merged_in_halves() {
        // One window, series 0..4 in one shard: halves {0,1} and {2,3}, each merged
        // (first, then the other), then the halves.
        let rows: Vec<Row> = (0..4).map(|s| (5, s, vec![])).collect();
        let no_aux = |_: &Row, _: &Row| Ordering::Equal;
        let order = MergeOrder::new(&rows, &[(0, 9)], 100, false, &no_aux, true, true);
        let mut series: Vec<usize> = (0..4).collect();
        series.sort_by_key(|&s| order.key(5, s));
        assert_eq!(series, vec![0, 1, 2, 3]);
        // Raw points at one time in a sorted merge: first, last, then as the heap
        // leaves them.
        series.sort_by_key(|&s| order.raw_rank(s));
        assert_eq!(series, vec![0, 3, 2, 1]);
        // Without ties, time order (latest first for DESC), across shard groups too.
        let rows: Vec<Row> = [(5, 1), (7, 0), (150, 1), (160, 0)]
            .iter()
            .map(|&(t, s)| (t, s, vec![]))
            .collect();
        let windows = [(0, 999)];
        let asc = MergeOrder::new(&rows, &windows, 100, false, &no_aux, false, true);
        let desc = MergeOrder::new(&rows, &windows, 100, true, &no_aux, false, true);
        let ranks = |o: &MergeOrder| (0..4).map(|i| o.raw_rank(i).unwrap()).collect::<Vec<_>>();
        assert_eq!(ranks(&asc), vec![0, 1, 2, 3]);
        assert_eq!(ranks(&desc), vec![3, 2, 1, 0]);
        // Ties in the later shard group only: the earlier group comes first whole.
        let rows: Vec<Row> = [(5, 1), (150, 0), (150, 1)]
            .iter()
            .map(|&(t, s)| (t, s, vec![]))
            .collect();
        let asc = MergeOrder::new(&rows, &windows, 100, false, &no_aux, false, true);
        assert_eq!(
            (0..3).map(|i| asc.raw_rank(i).unwrap()).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn sorted_merge_orders_by_time_then_by_the_heap() {
        let less = |x: &(i64, char), y: &(i64, char)| x.0 < y.0;
        let out = sorted_merge(
            vec![
                vec![(1, 'a'), (3, 'A')],
                vec![(1, 'b'), (2, 'B')],
                vec![(1, 'c')],
            ],
            &less,
        );
        assert_eq!(out.iter().map(|x| x.1).collect::<String>(), "acbBA");
    }
}
