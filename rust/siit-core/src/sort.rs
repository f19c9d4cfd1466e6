//! Sorting packed identifier keys together with their row index: the shared first step of
//! trie construction and the duplicate passes.

use rayon::prelude::*;

/// Keys in ascending order and, for each, the row it came from; equal keys keep row order.
pub struct SortedKeys {
    pub keys: Vec<u64>,
    pub rows: Vec<u32>,
}

const DIGIT_BITS: u32 = 11;

/// Sorts `keys` (each below `2^key_bits`) by `(key, row)`.
///
/// When key and row index fit together in 64 bits (the common case: 32-bit identifiers and
/// fewer than 2^32 rows) this is an LSD radix sort over the key bits only of one `u64` per row,
/// which is stable, so rows come out in order within a key without comparing them. Wider keys
/// fall back to a parallel comparison sort on `(key, row)` pairs.
pub fn sort_keys(keys: &[u64], key_bits: u32) -> SortedKeys {
    let n = keys.len();
    assert!(n <= u32::MAX as usize, "at most 2^32 - 1 rows");
    let row_bits = if n <= 1 { 1 } else { 64 - ((n - 1) as u64).leading_zeros() };
    if key_bits + row_bits > 64 {
        let mut pairs: Vec<(u64, u32)> = keys.iter().enumerate().map(|(i, &k)| (k, i as u32)).collect();
        pairs.par_sort_unstable();
        return SortedKeys {
            keys: pairs.iter().map(|p| p.0).collect(),
            rows: pairs.iter().map(|p| p.1).collect(),
        };
    }
    let row_mask = (1u64 << row_bits) - 1;
    let mut a: Vec<u64> = keys.par_iter().enumerate().map(|(i, &k)| (k << row_bits) | i as u64).collect();
    radix_sort_bits(&mut a, row_bits, row_bits + key_bits);
    SortedKeys {
        keys: a.par_iter().map(|&c| c >> row_bits).collect(),
        rows: a.par_iter().map(|&c| (c & row_mask) as u32).collect(),
    }
}

/// Stable LSD radix sort of `a` by bits `[from, to)`.
fn radix_sort_bits(a: &mut Vec<u64>, from: u32, to: u32) {
    let n = a.len();
    let mut buf = vec![0u64; n];
    let mut shift = from;
    while shift < to {
        let width = DIGIT_BITS.min(to - shift);
        let mask = (1u64 << width) - 1;
        let mut counts = vec![0usize; 1 << width];
        for &x in a.iter() {
            counts[((x >> shift) & mask) as usize] += 1;
        }
        // A digit shared by every row orders nothing: skip the pass.
        if counts.iter().any(|&c| c == n) {
            shift += width;
            continue;
        }
        let mut offset = 0usize;
        for c in counts.iter_mut() {
            let here = *c;
            *c = offset;
            offset += here;
        }
        for &x in a.iter() {
            let d = ((x >> shift) & mask) as usize;
            buf[counts[d]] = x;
            counts[d] += 1;
        }
        std::mem::swap(a, &mut buf);
        shift += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(keys: &[u64]) -> Vec<(u64, u32)> {
        let mut pairs: Vec<(u64, u32)> = keys.iter().enumerate().map(|(i, &k)| (k, i as u32)).collect();
        pairs.sort();
        pairs
    }

    proptest! {
        #[test]
        fn matches_comparison_sort(keys in prop::collection::vec(0u64..40, 0..300)) {
            let sorted = sort_keys(&keys, 6);
            let got: Vec<(u64, u32)> = sorted.keys.iter().copied().zip(sorted.rows.iter().copied()).collect();
            prop_assert_eq!(got, reference(&keys));
        }

        #[test]
        fn wide_keys_use_the_fallback(keys in prop::collection::vec(any::<u64>(), 0..100)) {
            let sorted = sort_keys(&keys, 64);
            let got: Vec<(u64, u32)> = sorted.keys.iter().copied().zip(sorted.rows.iter().copied()).collect();
            prop_assert_eq!(got, reference(&keys));
        }
    }
}
