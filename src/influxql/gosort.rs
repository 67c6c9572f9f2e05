//! Go's `sort.Sort` (Go 1.19 and later: pattern-defeating quicksort), step for step,
//! for answers where InfluxDB's unstable sort decides between equal elements (`mode()`
//! picks among values seen equally often by where the sort leaves them). InfluxDB
//! 1.6.7 as Debian ships it is built with Go 1.19.
//!
//! The same comparisons and swaps in the same order as Go's, so equal elements end up
//! where Go leaves them; any other algorithm would sort correctly but differently.

/// Sorts `v` by `less` exactly as Go's `sort.Sort` would.
pub fn sort<T>(v: &mut [T], less: &dyn Fn(&T, &T) -> bool) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let limit = bits_len(n);
    let mut s = Sorter { v, less };
    s.pdqsort(0, n, limit);
}

/// Go's `bits.Len`: the number of bits needed to represent `x`.
fn bits_len(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Hint {
    Unknown,
    Increasing,
    Decreasing,
}

struct Sorter<'a, 'l, T> {
    v: &'a mut [T],
    less: &'l dyn Fn(&T, &T) -> bool,
}

impl<T> Sorter<'_, '_, T> {
    fn less(&self, i: usize, j: usize) -> bool {
        (self.less)(&self.v[i], &self.v[j])
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.v.swap(i, j);
    }

    fn insertion_sort(&mut self, a: usize, b: usize) {
        for i in a + 1..b {
            let mut j = i;
            while j > a && self.less(j, j - 1) {
                self.swap(j, j - 1);
                j -= 1;
            }
        }
    }

    fn sift_down(&mut self, lo: usize, hi: usize, first: usize) {
        let mut root = lo;
        loop {
            let mut child = 2 * root + 1;
            if child >= hi {
                return;
            }
            if child + 1 < hi && self.less(first + child, first + child + 1) {
                child += 1;
            }
            if !self.less(first + root, first + child) {
                return;
            }
            self.swap(first + root, first + child);
            root = child;
        }
    }

    fn heap_sort(&mut self, a: usize, b: usize) {
        let first = a;
        let hi = b - a;
        for i in (0..=(hi - 1) / 2).rev() {
            self.sift_down(i, hi, first);
        }
        for i in (0..hi).rev() {
            self.swap(first, first + i);
            self.sift_down(0, i, first);
        }
    }

    fn pdqsort(&mut self, mut a: usize, mut b: usize, mut limit: usize) {
        const MAX_INSERTION: usize = 12;
        let mut was_balanced = true;
        let mut was_partitioned = true;
        loop {
            let length = b - a;
            if length <= MAX_INSERTION {
                self.insertion_sort(a, b);
                return;
            }
            // Too many bad pivots: heapsort.
            if limit == 0 {
                self.heap_sort(a, b);
                return;
            }
            if !was_balanced {
                self.break_patterns(a, b);
                limit -= 1;
            }
            let (mut pivot, mut hint) = self.choose_pivot(a, b);
            if hint == Hint::Decreasing {
                self.reverse_range(a, b);
                pivot = (b - 1) - (pivot - a);
                hint = Hint::Increasing;
            }
            // Likely sorted already.
            if was_balanced
                && was_partitioned
                && hint == Hint::Increasing
                && self.partial_insertion_sort(a, b)
            {
                return;
            }
            // Many equal elements: split off those equal to the pivot.
            if a > 0 && !self.less(a - 1, pivot) {
                a = self.partition_equal(a, b, pivot);
                continue;
            }
            let (mid, already) = self.partition(a, b, pivot);
            was_partitioned = already;
            let (left, right) = (mid - a, b - mid);
            let balance = length / 8;
            if left < right {
                was_balanced = left >= balance;
                self.pdqsort(a, mid, limit);
                a = mid + 1;
            } else {
                was_balanced = right >= balance;
                self.pdqsort(mid + 1, b, limit);
                b = mid;
            }
        }
    }

    /// Go's partition scans: from both ends inward, `i` past what `left` keeps and `j`
    /// past what `right` keeps, swapping the two that stop them, until they cross.
    /// Returns where they crossed and whether nothing had to move.
    fn cross(
        &mut self,
        mut i: isize,
        mut j: isize,
        left: &dyn Fn(&Self, usize) -> bool,
        right: &dyn Fn(&Self, usize) -> bool,
    ) -> (isize, isize, bool) {
        let mut untouched = true;
        loop {
            while i <= j && left(self, i as usize) {
                i += 1;
            }
            while i <= j && right(self, j as usize) {
                j -= 1;
            }
            if i > j {
                return (i, j, untouched);
            }
            self.swap(i as usize, j as usize);
            untouched = false;
            i += 1;
            j -= 1;
        }
    }

    fn partition(&mut self, a: usize, b: usize, pivot: usize) -> (usize, bool) {
        self.swap(a, pivot);
        // i and j are inclusive bounds of what is left; j may step below a + 1.
        let (_, j, untouched) = self.cross(
            a as isize + 1,
            b as isize - 1,
            &|s, i| s.less(i, a),
            &|s, j| !s.less(j, a),
        );
        self.swap(j as usize, a);
        (j as usize, untouched)
    }

    fn partition_equal(&mut self, a: usize, b: usize, pivot: usize) -> usize {
        self.swap(a, pivot);
        let (i, _, _) = self.cross(
            a as isize + 1,
            b as isize - 1,
            &|s, i| !s.less(a, i),
            &|s, j| s.less(a, j),
        );
        i as usize
    }

    fn partial_insertion_sort(&mut self, a: usize, b: usize) -> bool {
        const MAX_STEPS: usize = 5;
        const SHORTEST_SHIFTING: usize = 50;
        let mut i = a + 1;
        for _ in 0..MAX_STEPS {
            while i < b && !self.less(i, i - 1) {
                i += 1;
            }
            if i == b {
                return true;
            }
            if b - a < SHORTEST_SHIFTING {
                return false;
            }
            self.swap(i, i - 1);
            // The smaller one to the left (Go's loop runs down to index 1, not a + 1).
            if i - a >= 2 {
                let mut j = i - 1;
                while j >= 1 {
                    if !self.less(j, j - 1) {
                        break;
                    }
                    self.swap(j, j - 1);
                    j -= 1;
                }
            }
            // The greater one to the right.
            if b - i >= 2 {
                for j in i + 1..b {
                    if !self.less(j, j - 1) {
                        break;
                    }
                    self.swap(j, j - 1);
                }
            }
        }
        false
    }

    fn break_patterns(&mut self, a: usize, b: usize) {
        let length = b - a;
        if length >= 8 {
            let mut random = length as u64;
            let modulus = 1u64 << bits_len(length);
            let start = a + (length / 4) * 2 - 1;
            for idx in start..=a + (length / 4) * 2 + 1 {
                // Go 1.19's xorshift (later releases shift by 13, 7, 17).
                random ^= random << 13;
                random ^= random >> 17;
                random ^= random << 5;
                let mut other = (random & (modulus - 1)) as usize;
                if other >= length {
                    other -= length;
                }
                self.swap(idx, a + other);
            }
        }
    }

    fn choose_pivot(&mut self, a: usize, b: usize) -> (usize, Hint) {
        const SHORTEST_NINTHER: usize = 50;
        const MAX_SWAPS: usize = 4 * 3;
        let l = b - a;
        let mut swaps = 0;
        let mut i = a + l / 4;
        let mut j = a + l / 4 * 2;
        let mut k = a + l / 4 * 3;
        if l >= 8 {
            if l >= SHORTEST_NINTHER {
                i = self.median(i - 1, i, i + 1, &mut swaps);
                j = self.median(j - 1, j, j + 1, &mut swaps);
                k = self.median(k - 1, k, k + 1, &mut swaps);
            }
            j = self.median(i, j, k, &mut swaps);
        }
        match swaps {
            0 => (j, Hint::Increasing),
            MAX_SWAPS => (j, Hint::Decreasing),
            _ => (j, Hint::Unknown),
        }
    }

    fn order2(&self, a: usize, b: usize, swaps: &mut usize) -> (usize, usize) {
        if self.less(b, a) {
            *swaps += 1;
            (b, a)
        } else {
            (a, b)
        }
    }

    fn median(&self, a: usize, b: usize, c: usize, swaps: &mut usize) -> usize {
        let (a, b) = self.order2(a, b, swaps);
        let (b, c) = self.order2(b, c, swaps);
        let _ = c;
        let (_, b) = self.order2(a, b, swaps);
        b
    }

    fn reverse_range(&mut self, a: usize, b: usize) {
        let (mut i, mut j) = (a, b - 1);
        while i < j {
            self.swap(i, j);
            i += 1;
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_like_a_sort(mut v in proptest::collection::vec(0u8..20, 0..400)) {
            let mut want = v.clone();
            want.sort_unstable();
            sort(&mut v, &|a, b| a < b);
            prop_assert_eq!(v, want);
        }
    }

    /// The order of the original indices after sorting `keys` by key alone.
    fn permutation(keys: &[u64]) -> Vec<usize> {
        let mut v: Vec<(u64, usize)> = keys.iter().copied().zip(0..).collect();
        sort(&mut v, &|a, b| a.0 < b.0);
        v.into_iter().map(|x| x.1).collect()
    }

    fn fnv(v: &[usize]) -> u64 {
        v.iter().fold(0xcbf2_9ce4_8422_2325, |h, &i| {
            (h ^ i as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[test]
    fn equal_keys_end_where_go_1_19_leaves_them() {
        // Expected orders printed by a Go 1.19.8 program sorting the same keys with
        // sort.Sort (Less on the key only).
        let keys: Vec<u64> = (0..40).map(|i| (i * 7) % 5).collect();
        assert_eq!(
            permutation(&keys),
            vec![
                20, 10, 35, 30, 25, 5, 0, 15, 28, 3, 8, 38, 33, 13, 23, 18, 26, 11, 6, 36, 16, 21,
                31, 1, 19, 34, 24, 39, 14, 29, 9, 4, 22, 12, 17, 2, 32, 37, 7, 27
            ]
        );
        // Long enough for the ninther, the equal-elements partition and the patterns'
        // breaking (its xorshift).
        let keys: Vec<u64> = (0..300).map(|i| (i * 7919 + 13) % 17).collect();
        assert_eq!(fnv(&permutation(&keys)), 0x6e11_4310_6868_e11d);
        // Nearly sorted: the partial insertion sort.
        let mut keys: Vec<u64> = (0..120).map(|i| (i * 37) % 50).collect();
        keys.sort_unstable();
        keys.swap(10, 90);
        assert_eq!(fnv(&permutation(&keys)), 0x9977_9523_37fa_56b9);
    }

    #[test]
    fn equal_elements_end_where_gos_sort_leaves_them() {
        // Pairs (key, original index) sorted by key only; the indices show where the
        // algorithm moved equal keys. Short slices are insertion-sorted: stable.
        let mut v: Vec<(u8, usize)> = [3u8, 1, 3, 1, 2].iter().copied().zip(0..).collect();
        sort(&mut v, &|a, b| a.0 < b.0);
        assert_eq!(v, vec![(1, 1), (1, 3), (2, 4), (3, 0), (3, 2)]);
    }
}
