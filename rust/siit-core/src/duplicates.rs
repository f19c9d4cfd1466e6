//! Collision statistics over many identifiers: which rows share an identifier, and the
//! TIGER-style extra level that makes them unique. Sort-based on packed keys.

use crate::error::{bail, Result};
use crate::layout::Layout;
use crate::sort::{sort_keys, sort_keys_by, DisjointWriter, SortedKeys};
use rayon::prelude::*;

/// Rows grouped by identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    /// Group of every row; groups are numbered in order of their first row.
    pub group: Vec<i64>,
    /// Rows per group.
    pub counts: Vec<i64>,
}

/// Packs `codes` (row-major `(n, L)`, non-negative) with codebooks as wide as the data needs.
fn sorted_rows(codes: &[i64], n: usize, levels: usize) -> Result<SortedKeys> {
    if n == 0 {
        bail!(Shape, "codes has no rows (n = 0)");
    }
    if levels == 0 {
        bail!(Shape, "codes has no levels (L = 0)");
    }
    if codes.len() != n * levels {
        bail!(
            Shape,
            "codes must have shape (n, L), got {} values for n = {n}, L = {levels}",
            codes.len()
        );
    }
    // One pass for both checks: the smallest and the largest code of every level.
    let (lows, highs) = codes
        .par_chunks_exact(levels)
        .fold(
            || (vec![i64::MAX; levels], vec![i64::MIN; levels]),
            |(mut lo, mut hi), row| {
                for (l, &c) in row.iter().enumerate() {
                    lo[l] = lo[l].min(c);
                    hi[l] = hi[l].max(c);
                }
                (lo, hi)
            },
        )
        .reduce(
            || (vec![i64::MAX; levels], vec![i64::MIN; levels]),
            |(a, b), (c, d)| {
                (
                    a.iter().zip(&c).map(|(x, y)| *x.min(y)).collect(),
                    b.iter().zip(&d).map(|(x, y)| *x.max(y)).collect(),
                )
            },
        );
    if lows.iter().any(|&c| c < 0) {
        let bad = codes.iter().position(|&c| c < 0).expect("a negative code");
        bail!(
            Value,
            "codes: code {} in row {} at level {} is negative; codes must be >= 0",
            codes[bad],
            bad / levels,
            bad % levels
        );
    }
    // Codes are >= 0 here, so `max + 1` fits in a u64 even for i64::MAX.
    let sizes: Vec<u64> = highs.iter().map(|&h| h as u64 + 1).collect();
    let layout = Layout::from_sizes(&sizes).map_err(|_| {
        crate::Error::Value(format!(
            "codes: the largest code per level {highs:?} needs more than 64 bits per identifier; \
             at most 64 are supported"
        ))
    })?;
    // Every code lies in its data-sized codebook by construction, so packing cannot fail.
    let key_of = |i: usize| {
        layout
            .pack_prefix(&codes[i * levels..(i + 1) * levels])
            .unwrap_or(0)
    };
    Ok(sort_keys_by(n, layout.total_bits(), key_of))
}

/// Groups rows of `codes` (row-major `(n, L)`) that hold the same identifier.
pub fn group_duplicates(codes: &[i64], n: usize, levels: usize) -> Result<Groups> {
    let sorted = sorted_rows(codes, n, levels)?;
    let starts = sorted.run_starts();
    let n_groups = starts.len();
    let run_end = |run: usize| starts.get(run + 1).copied().unwrap_or(n);
    // Sorting is stable, so a run's first entry is its first row. Groups are numbered in the
    // order of those rows: sort them (radix, in parallel), and number the runs in that order.
    let first_rows: Vec<u64> = starts.par_iter().map(|&j| sorted.row(j) as u64).collect();
    let row_bits = 64 - (n as u64).leading_zeros();
    let by_first_row = sort_keys(&first_rows, row_bits);
    let mut number = vec![0u32; n_groups];
    let writer = DisjointWriter::new(&mut number);
    let counts = (0..n_groups)
        .into_par_iter()
        .map(|g| {
            let run = by_first_row.row(g) as usize;
            // SAFETY: `row` is a permutation of the runs.
            unsafe { writer.write(run, g as u32) };
            (run_end(run) - starts[run]) as i64
        })
        .collect();
    // Scatter 4-byte numbers (half the random writes of 8-byte ones), then widen in order.
    let mut group32 = vec![0u32; n];
    let writer = DisjointWriter::new(&mut group32);
    (0..n_groups).into_par_iter().for_each(|run| {
        for j in starts[run]..run_end(run) {
            // SAFETY: every row belongs to exactly one run.
            unsafe { writer.write(sorted.row(j) as usize, number[run]) };
        }
    });
    let group = group32.par_iter().map(|&g| g as i64).collect();
    Ok(Groups { group, counts })
}

/// Appends one level to `codes` (row-major `(n, L)` -> `(n, L + 1)`): 0 for the first row of
/// every identifier, 1, 2, ... for later rows with the same identifier.
pub fn disambiguate(codes: &[i64], n: usize, levels: usize) -> Result<Vec<i64>> {
    let sorted = sorted_rows(codes, n, levels)?;
    let starts = sorted.run_starts();
    let mut occurrence = vec![0u32; n];
    let writer = DisjointWriter::new(&mut occurrence);
    (0..starts.len()).into_par_iter().for_each(|run| {
        let (start, end) = (starts[run], starts.get(run + 1).copied().unwrap_or(n));
        for j in start..end {
            // SAFETY: every row belongs to exactly one run.
            unsafe { writer.write(sorted.row(j) as usize, (j - start) as u32) };
        }
    });
    let mut out = vec![0i64; n * (levels + 1)];
    out.par_chunks_mut(levels + 1)
        .enumerate()
        .for_each(|(i, row)| {
            row[..levels].copy_from_slice(&codes[i * levels..(i + 1) * levels]);
            row[levels] = occurrence[i] as i64;
        });
    Ok(out)
}
