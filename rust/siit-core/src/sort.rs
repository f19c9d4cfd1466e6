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

/// Below this many rows a sort is LSD passes over the whole array.
const MSD_MIN_ROWS: usize = 1 << 18;
/// Below this many rows a bucket is sorted by comparison (counting 2^11 digits costs more).
const SMALL_BUCKET: usize = 256;

/// Stable radix sort of `a` by bits `[from, to)`, where no entry has bits at or above `to`.
/// Large arrays take one parallel pass on the top digit, which cuts them into buckets that
/// fit in cache, then each bucket is sorted by the remaining bits on its own (buckets in
/// parallel): one pass over main memory instead of one per digit. Small arrays are LSD
/// passes over the whole array.
fn radix_sort_bits(a: &mut Vec<u64>, from: u32, mut to: u32) {
    let mut buf = vec![0u64; a.len()];
    while a.len() >= MSD_MIN_ROWS && to - from > DIGIT_BITS {
        let top = to - DIGIT_BITS;
        let Some(starts) = scatter_pass(a, &mut buf, top, DIGIT_BITS, CHUNK) else {
            to = top; // every entry has the same top digit
            continue;
        };
        std::mem::swap(a, &mut buf);
        let mut buckets = Vec::with_capacity(starts.len());
        let (mut rest, mut scratch) = (a.as_mut_slice(), buf.as_mut_slice());
        for w in starts.windows(2) {
            let (bucket, tail) = rest.split_at_mut(w[1] - w[0]);
            let (space, scratch_tail) = scratch.split_at_mut(w[1] - w[0]);
            buckets.push((bucket, space));
            (rest, scratch) = (tail, scratch_tail);
        }
        buckets.into_par_iter().for_each(|(bucket, space)| {
            if bucket.len() < SMALL_BUCKET {
                // entries are distinct (their low bits are the row), so this is stable
                bucket.sort_unstable();
            } else if lsd_passes(bucket, space, from, top, usize::MAX) {
                bucket.copy_from_slice(space);
            }
        });
        return;
    }
    if lsd_passes(a, &mut buf, from, to, CHUNK) {
        std::mem::swap(a, &mut buf);
    }
}

/// Stable LSD passes of `a` by bits `[from, to)` with `buf` (same length) as scratch, chunks
/// of `chunk` rows in parallel. Returns whether the result ended in `buf`.
fn lsd_passes(a: &mut [u64], buf: &mut [u64], from: u32, to: u32, chunk: usize) -> bool {
    let (mut src, mut dst) = (a, buf);
    let mut in_buf = false;
    let mut shift = from;
    while shift < to {
        let width = DIGIT_BITS.min(to - shift);
        if scatter_pass(src, dst, shift, width, chunk).is_some() {
            std::mem::swap(&mut src, &mut dst);
            in_buf = !in_buf;
        }
        shift += width;
    }
    in_buf
}

/// One stable counting-sort pass of `a` into `buf` by the digit at `[shift, shift + width)`:
/// every chunk of `chunk` rows counts its digits in parallel, then scatters its rows to where
/// the counts of the chunks before it end. Returns where each digit's rows start in `buf`
/// (and `a.len()` last), or `None`, writing nothing, when every row has the same digit.
fn scatter_pass(
    a: &[u64],
    buf: &mut [u64],
    shift: u32,
    width: u32,
    chunk: usize,
) -> Option<Vec<usize>> {
    let n = a.len();
    let (mask, buckets) = ((1u64 << width) - 1, 1usize << width);
    let digit = |x: u64| ((x >> shift) & mask) as usize;
    let chunk = chunk.min(n.max(1));
    let mut counts: Vec<Vec<usize>> = a
        .par_chunks(chunk)
        .map(|c| {
            let mut count = vec![0usize; buckets];
            c.iter().for_each(|&x| count[digit(x)] += 1);
            count
        })
        .collect();
    let totals: Vec<usize> = (0..buckets)
        .map(|d| counts.iter().map(|c| c[d]).sum())
        .collect();
    if totals.contains(&n) {
        return None;
    }
    // Exclusive prefix over (digit, chunk) in that order: stable across chunks.
    let mut starts = Vec::with_capacity(buckets + 1);
    let mut offset = 0usize;
    for d in 0..buckets {
        starts.push(offset);
        for c in counts.iter_mut() {
            let here = c[d];
            c[d] = offset;
            offset += here;
        }
    }
    starts.push(n);
    let out = DisjointWriter::new(buf);
    a.par_chunks(chunk)
        .zip(counts.par_iter_mut())
        .for_each(|(c, next)| {
            for &x in c {
                let slot = &mut next[digit(x)];
                // SAFETY: the prefix sums give every (chunk, digit) its own range of slots.
                unsafe { out.write(*slot, x) };
                *slot += 1;
            }
        });
    Some(starts)
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
    fn bucketed_sort_matches_comparison_sort() {
        // Past MSD_MIN_ROWS: buckets of every size (one hot key fills a large one, sparse
        // keys leave small ones), duplicates kept in row order.
        let n = MSD_MIN_ROWS as u64 + 12_345;
        let keys: Vec<u64> = (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    777
                } else {
                    (i * 2_654_435_761) % (1 << 22)
                }
            })
            .collect();
        check(&keys, 22).unwrap();
        // Keys far below 2^key_bits: the top digits are shared by every row and skipped.
        let narrow: Vec<u64> = keys.iter().map(|k| k % 5_000).collect();
        check(&narrow, 40).unwrap();
    }

    #[test]
    fn many_chunks_stay_stable() {
        let keys: Vec<u64> = (0..3 * CHUNK as u64 + 17)
            .map(|i| (i * 7919) % 5000)
            .collect();
        check(&keys, 13).unwrap();
    }
}
