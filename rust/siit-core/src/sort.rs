//! Sorting packed identifier keys together with their row index: the shared first step of
//! trie construction and the duplicate passes.

use rayon::prelude::*;

/// Keys in ascending order and, for each, the row it came from; equal keys keep row order.
pub enum SortedKeys {
    /// `key << row_bits | row` in one word per entry (the radix-sorted common case).
    Packed { entries: Vec<u64>, row_bits: u32 },
    /// `(key, row)` pairs, for keys too wide to share a word with the row.
    Pairs(Vec<(u64, u32)>),
}

impl SortedKeys {
    pub fn len(&self) -> usize {
        match self {
            Self::Packed { entries, .. } => entries.len(),
            Self::Pairs(pairs) => pairs.len(),
        }
    }

    /// Key at sorted position `j`.
    #[inline]
    pub fn key(&self, j: usize) -> u64 {
        match self {
            Self::Packed { entries, row_bits } => entries[j] >> row_bits,
            Self::Pairs(pairs) => pairs[j].0,
        }
    }

    /// Row of the key at sorted position `j`.
    #[inline]
    pub fn row(&self, j: usize) -> u32 {
        match self {
            Self::Packed { entries, row_bits } => (entries[j] & ((1u64 << row_bits) - 1)) as u32,
            Self::Pairs(pairs) => pairs[j].1,
        }
    }

    /// Sorted positions where a new key starts.
    pub fn run_starts(&self) -> Vec<usize> {
        (0..self.len())
            .into_par_iter()
            .filter(|&j| j == 0 || self.key(j) != self.key(j - 1))
            .collect()
    }

    /// The keys and their rows as two vectors.
    pub fn into_parts(self) -> (Vec<u64>, Vec<u32>) {
        let n = self.len();
        (
            (0..n).into_par_iter().map(|j| self.key(j)).collect(),
            (0..n).into_par_iter().map(|j| self.row(j)).collect(),
        )
    }
}

const DIGIT_BITS: u32 = 11;
/// Rows per parallel chunk of a radix pass.
const CHUNK: usize = 1 << 16;

/// Writes to distinct indices of one slice from several threads.
///
/// Every user must guarantee that no index is written twice and nothing reads the slice
/// until the writers are done; then the writes cannot race.
#[derive(Clone, Copy)]
pub(crate) struct DisjointWriter<T>(*mut T, usize);

// SAFETY: see the type's contract: concurrent writes go to distinct indices only.
unsafe impl<T: Send> Send for DisjointWriter<T> {}
unsafe impl<T: Send> Sync for DisjointWriter<T> {}

impl<T> DisjointWriter<T> {
    pub(crate) fn new(slice: &mut [T]) -> Self {
        Self(slice.as_mut_ptr(), slice.len())
    }

    /// # Safety
    /// `index` is written by no other call while the writer is in use.
    #[inline]
    pub(crate) unsafe fn write(&self, index: usize, value: T) {
        assert!(index < self.1, "index {index} out of bounds {}", self.1);
        unsafe { self.0.add(index).write(value) }
    }
}

/// Sorts `keys` (each below `2^key_bits`) by `(key, row)`.
///
/// When key and row index fit together in 64 bits (the common case: 32-bit identifiers and
/// fewer than 2^32 rows) this is a parallel LSD radix sort over the key bits only of one `u64`
/// per row, which is stable, so rows come out in order within a key without comparing them.
/// Wider keys fall back to a parallel comparison sort on `(key, row)` pairs.
pub fn sort_keys(keys: &[u64], key_bits: u32) -> SortedKeys {
    sort_keys_by(keys.len(), key_bits, |i| keys[i])
}

/// [`sort_keys`] for the keys `key_of(0..n)`, computed on the fly (no separate key vector).
pub fn sort_keys_by(n: usize, key_bits: u32, key_of: impl Fn(usize) -> u64 + Sync) -> SortedKeys {
    assert!(n <= u32::MAX as usize, "at most 2^32 - 1 rows");
    let row_bits = if n <= 1 {
        1
    } else {
        64 - ((n - 1) as u64).leading_zeros()
    };
    if key_bits + row_bits > 64 {
        let mut pairs: Vec<(u64, u32)> = (0..n)
            .into_par_iter()
            .map(|i| (key_of(i), i as u32))
            .collect();
        pairs.par_sort_unstable();
        return SortedKeys::Pairs(pairs);
    }
    let mut a: Vec<u64> = (0..n)
        .into_par_iter()
        .map(|i| (key_of(i) << row_bits) | i as u64)
        .collect();
    radix_sort_bits(&mut a, row_bits, row_bits + key_bits);
    SortedKeys::Packed {
        entries: a,
        row_bits,
    }
}

/// Stable LSD radix sort of `a` by bits `[from, to)`: per pass, every chunk counts its digits
/// in parallel, then scatters its rows to where the counts of the chunks before it end.
fn radix_sort_bits(a: &mut Vec<u64>, from: u32, to: u32) {
    let n = a.len();
    let mut buf = vec![0u64; n];
    let mut shift = from;
    while shift < to {
        let width = DIGIT_BITS.min(to - shift);
        let (mask, buckets) = ((1u64 << width) - 1, 1usize << width);
        let digit = |x: u64| ((x >> shift) & mask) as usize;
        let mut counts: Vec<Vec<usize>> = a
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut c = vec![0usize; buckets];
                chunk.iter().for_each(|&x| c[digit(x)] += 1);
                c
            })
            .collect();
        // A digit shared by every row orders nothing: skip the pass.
        if (0..buckets).any(|d| counts.iter().map(|c| c[d]).sum::<usize>() == n) {
            shift += width;
            continue;
        }
        // Exclusive prefix over (digit, chunk) in that order: stable across chunks.
        let mut offset = 0usize;
        for d in 0..buckets {
            for c in counts.iter_mut() {
                let here = c[d];
                c[d] = offset;
                offset += here;
            }
        }
        let out = DisjointWriter::new(&mut buf);
        a.par_chunks(CHUNK)
            .zip(counts.par_iter_mut())
            .for_each(|(chunk, next)| {
                for &x in chunk {
                    let slot = &mut next[digit(x)];
                    // SAFETY: the prefix sums give every (chunk, digit) its own range of slots.
                    unsafe { out.write(*slot, x) };
                    *slot += 1;
                }
            });
        std::mem::swap(a, &mut buf);
        shift += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(keys: &[u64]) -> Vec<(u64, u32)> {
        let mut pairs: Vec<(u64, u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| (k, i as u32))
            .collect();
        pairs.sort();
        pairs
    }

    fn check(keys: &[u64], key_bits: u32) -> Result<(), TestCaseError> {
        let (sorted, rows) = sort_keys(keys, key_bits).into_parts();
        let got: Vec<(u64, u32)> = sorted.into_iter().zip(rows).collect();
        prop_assert_eq!(got, reference(keys));
        Ok(())
    }

    proptest! {
        #[test]
        fn matches_comparison_sort(keys in prop::collection::vec(0u64..40, 0..300)) {
            check(&keys, 6)?;
        }

        #[test]
        fn wide_keys_use_the_fallback(keys in prop::collection::vec(any::<u64>(), 0..100)) {
            check(&keys, 64)?;
        }
    }

    #[test]
    fn many_chunks_stay_stable() {
        let keys: Vec<u64> = (0..3 * CHUNK as u64 + 17)
            .map(|i| (i * 7919) % 5000)
            .collect();
        check(&keys, 13).unwrap();
    }
}
