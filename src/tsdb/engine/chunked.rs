//! An append-only vector stored in fixed-size chunks.
//!
//! Why: the cache holds one column per (series, field), and time-ordered data makes all
//! columns grow in step. With plain `Vec`s every column doubles in the same request — a
//! 1000-column shard at 16 K values per column copies 256 MB at once and stalls the
//! core for hundreds of milliseconds (measured with the load tool). Here a column's
//! first chunk grows by doubling up to [`CHUNK_LEN`] and every later chunk is allocated
//! full-size once, so an append never copies more than one chunk, and the slack is at
//! most one partly filled chunk per column.
//!
//! **Invariant:** every chunk but the last holds exactly `CHUNK_LEN` items, so item `i`
//! lives in chunk `i / CHUNK_LEN` at `i % CHUNK_LEN`.

/// Items per full chunk (an 8 KB chunk of 8-byte values; also the head's unit of
/// sealing, see [`super::head`]).
pub const CHUNK_LEN: usize = 1024;
const FIRST_CAPACITY: usize = 4;

#[derive(Debug, Clone)]
pub struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> ChunkedVec<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `item`; returns the heap bytes this allocated (0 for most pushes), so a
    /// caller can keep a running total without walking the chunks.
    #[inline]
    pub fn push(&mut self, item: T) -> usize {
        let size = std::mem::size_of::<T>();
        let mut grown = 0;
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK_LEN => {
                if chunk.len() == chunk.capacity() {
                    let target = (chunk.capacity() * 2).clamp(FIRST_CAPACITY, CHUNK_LEN);
                    grown = (target - chunk.capacity()) * size;
                    chunk.reserve_exact(target - chunk.len());
                }
                chunk.push(item);
            }
            _ => {
                let capacity = if self.chunks.is_empty() {
                    FIRST_CAPACITY
                } else {
                    CHUNK_LEN
                };
                let mut chunk = Vec::with_capacity(capacity);
                chunk.push(item);
                grown = capacity * size;
                let pointers = self.chunks.capacity();
                if self.chunks.is_empty() {
                    // Most series are small: one chunk pointer, not Vec's default four.
                    self.chunks.reserve_exact(1);
                }
                self.chunks.push(chunk);
                grown += (self.chunks.capacity() - pointers) * std::mem::size_of::<Vec<T>>();
            }
        }
        self.len += 1;
        grown
    }

    #[inline]
    pub fn get(&self, i: usize) -> &T {
        debug_assert!(i < self.len);
        &self.chunks[i / CHUNK_LEN][i % CHUNK_LEN]
    }

    /// Items `from..to`, a chunk slice at a time (no index arithmetic per item).
    pub fn range(&self, from: usize, to: usize) -> impl Iterator<Item = &T> + '_ {
        debug_assert!(from <= to && to <= self.len);
        let first = from / CHUNK_LEN;
        self.chunks[first.min(self.chunks.len())..]
            .iter()
            .enumerate()
            .flat_map(move |(n, chunk)| {
                let base = (first + n) * CHUNK_LEN;
                let lo = from.saturating_sub(base).min(chunk.len());
                let hi = to.saturating_sub(base).min(chunk.len());
                chunk[lo..hi].iter()
            })
            .take(to - from)
    }

    pub fn pop(&mut self) -> Option<T> {
        let chunk = self.chunks.last_mut()?;
        let item = chunk.pop();
        if chunk.is_empty() {
            self.chunks.pop();
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }

    pub fn last(&self) -> Option<&T> {
        self.chunks.last().and_then(|c| c.last())
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Heap bytes held, slack included.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
            + self
                .chunks
                .iter()
                .map(|c| c.capacity() * std::mem::size_of::<T>())
                .sum::<usize>()
    }

    /// The first index whose item fails `pred` (items must be partitioned by it).
    pub fn partition_point(&self, pred: impl Fn(&T) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Takes the first chunk out when a later one follows (so it is full, and the
    /// invariant holds for the rest).
    pub fn take_first_chunk(&mut self) -> Option<Vec<T>> {
        if self.chunks.len() < 2 {
            return None;
        }
        let first = self.chunks.remove(0);
        self.len -= first.len();
        Some(first)
    }

    /// Rebuilds from the items at `indices`, in that order.
    pub fn pick(&self, indices: &[usize]) -> ChunkedVec<T> {
        let mut out = ChunkedVec::new();
        for &i in indices {
            out.push(self.get(i).clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_the_first_chunk_keeps_indexes_right() {
        let mut v = ChunkedVec::new();
        for i in 0..(CHUNK_LEN + 3) as u64 {
            v.push(i);
        }
        let first = v.take_first_chunk().unwrap();
        assert_eq!(first.len(), CHUNK_LEN);
        assert_eq!(first[CHUNK_LEN - 1], CHUNK_LEN as u64 - 1);
        assert_eq!(v.len(), 3);
        assert_eq!(*v.get(0), CHUNK_LEN as u64);
        assert_eq!(
            v.range(1, 3).copied().collect::<Vec<_>>(),
            vec![CHUNK_LEN as u64 + 1, CHUNK_LEN as u64 + 2]
        );
        assert!(v.take_first_chunk().is_none(), "the last chunk stays");
        v.push(7);
        assert_eq!(*v.last().unwrap(), 7);
    }

    #[test]
    fn ranges_cross_chunk_edges() {
        let mut v = ChunkedVec::new();
        let n = 3 * CHUNK_LEN + 5;
        for i in 0..n {
            v.push(i as u64);
        }
        let edges = [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            2 * CHUNK_LEN,
            n - 1,
            n,
        ];
        for &from in &edges {
            for &to in edges.iter().filter(|&&t| t >= from) {
                let got: Vec<u64> = v.range(from, to).copied().collect();
                let want: Vec<u64> = (from as u64..to as u64).collect();
                assert_eq!(got, want, "{from}..{to}");
            }
        }
        let empty: ChunkedVec<u64> = ChunkedVec::new();
        assert_eq!(empty.range(0, 0).count(), 0);
        let mut exact = ChunkedVec::new();
        for i in 0..CHUNK_LEN {
            exact.push(i);
        }
        assert_eq!(exact.range(CHUNK_LEN, CHUNK_LEN).count(), 0);
    }

    #[test]
    fn indexes_across_chunks_and_bounds_slack() {
        let mut v = ChunkedVec::new();
        for i in 0..(3 * CHUNK_LEN + 5) {
            v.push(i as u64);
        }
        assert_eq!(v.len(), 3 * CHUNK_LEN + 5);
        for i in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            2 * CHUNK_LEN + 7,
            3 * CHUNK_LEN + 4,
        ] {
            assert_eq!(*v.get(i), i as u64);
        }
        assert_eq!(v.iter().count(), v.len());
        assert_eq!(*v.last().unwrap(), (3 * CHUNK_LEN + 4) as u64);
        // At most one chunk of slack (plus the chunk list itself).
        assert!(v.heap_bytes() <= (4 * CHUNK_LEN) * 8 + 4 * 24);
        // What pushes report adds up to what the vector holds.
        let mut w = ChunkedVec::new();
        let reported: usize = (0..(2 * CHUNK_LEN + 3)).map(|i| w.push(i as u64)).sum();
        assert_eq!(reported, w.heap_bytes());
        let mid = 2 * CHUNK_LEN as u64 + 1;
        assert_eq!(v.partition_point(|&x| x < mid), mid as usize);
        let picked = v.pick(&[3, 1]);
        assert_eq!(picked.iter().copied().collect::<Vec<_>>(), vec![3, 1]);
    }

    #[test]
    fn small_columns_stay_small() {
        let mut v = ChunkedVec::new();
        v.push(1u64);
        assert!(v.heap_bytes() <= 4 * 8 + 24);
    }
}
