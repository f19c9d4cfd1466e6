//! Collision statistics over many identifiers: which rows share an identifier, and the
//! TIGER-style extra level that makes them unique. Sort-based on packed keys.

use crate::error::{bail, Result};
use crate::layout::Layout;
use crate::sort::{sort_keys, DisjointWriter, SortedKeys};
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
    let keys = layout.pack_rows(codes, n, levels, "codes")?;
    Ok(sort_keys(&keys, layout.total_bits()))
}

/// Index (into the sorted order) where each run of equal keys starts, plus `len` at the end.
fn run_starts(keys: &[u64]) -> Vec<usize> {
    let mut starts: Vec<usize> = (0..keys.len())
        .into_par_iter()
        .filter(|&j| j == 0 || keys[j] != keys[j - 1])
        .collect();
    starts.push(keys.len());
    starts
}

/// Groups rows of `codes` (row-major `(n, L)`) that hold the same identifier.
pub fn group_duplicates(codes: &[i64], n: usize, levels: usize) -> Result<Groups> {
    let sorted = sorted_rows(codes, n, levels)?;
    let starts = run_starts(&sorted.keys);
    let n_groups = starts.len() - 1;
    // Sorting is stable, so a run's first entry is its first row. Groups are numbered by that
    // row: mark the first rows, and a prefix count over the marks gives the numbers.
    let mut first = vec![false; n];
    for run in 0..n_groups {
        first[sorted.rows[starts[run]] as usize] = true;
    }
    let mut number_of_first = vec![0u32; n];
    let mut seen = 0u32;
    for (row, &is_first) in first.iter().enumerate() {
        number_of_first[row] = seen;
        seen += is_first as u32;
    }
    let mut counts = vec![0i64; n_groups];
    let mut group = vec![0i64; n];
    let writer = DisjointWriter::new(&mut group);
    let count_writer = DisjointWriter::new(&mut counts);
    (0..n_groups).into_par_iter().for_each(|run| {
        let rows = &sorted.rows[starts[run]..starts[run + 1]];
        let number = number_of_first[rows[0] as usize];
        // SAFETY: every row belongs to exactly one run and every run has its own number.
        unsafe { count_writer.write(number as usize, rows.len() as i64) };
        for &row in rows {
            unsafe { writer.write(row as usize, number as i64) };
        }
    });
    Ok(Groups { group, counts })
}

/// Appends one level to `codes` (row-major `(n, L)` -> `(n, L + 1)`): 0 for the first row of
/// every identifier, 1, 2, ... for later rows with the same identifier.
pub fn disambiguate(codes: &[i64], n: usize, levels: usize) -> Result<Vec<i64>> {
    let sorted = sorted_rows(codes, n, levels)?;
    let starts = run_starts(&sorted.keys);
    let mut occurrence = vec![0i64; n];
    let writer = DisjointWriter::new(&mut occurrence);
    (0..starts.len() - 1).into_par_iter().for_each(|run| {
        for (pos, &row) in sorted.rows[starts[run]..starts[run + 1]].iter().enumerate() {
            // SAFETY: every row belongs to exactly one run.
            unsafe { writer.write(row as usize, pos as i64) };
        }
    });
    let mut out = vec![0i64; n * (levels + 1)];
    out.par_chunks_mut(levels + 1)
        .enumerate()
        .for_each(|(i, row)| {
            row[..levels].copy_from_slice(&codes[i * levels..(i + 1) * levels]);
            row[levels] = occurrence[i];
        });
    Ok(out)
}
