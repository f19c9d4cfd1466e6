//! Collision statistics over many identifiers: which rows share an identifier, and the
//! TIGER-style extra level that makes them unique. Sort-based on packed keys.

use crate::error::{bail, Result};
use crate::layout::Layout;
use crate::sort::{sort_keys, SortedKeys};
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
        bail!(Shape, "codes must have shape (n, L), got {} values for n = {n}, L = {levels}", codes.len());
    }
    if let Some(bad) = codes.par_iter().position_first(|&c| c < 0) {
        bail!(
            Value,
            "codes: code {} in row {} at level {} is negative; codes must be >= 0",
            codes[bad],
            bad / levels,
            bad % levels
        );
    }
    let sizes: Vec<i64> = (0..levels)
        .map(|l| codes.par_iter().skip(l).step_by(levels).copied().max().unwrap_or(0).saturating_add(1))
        .collect();
    let layout = Layout::new(&sizes).map_err(|_| {
        crate::Error::Value(format!(
            "codes: the largest code per level {:?} needs more than 64 bits per identifier; \
             at most 64 are supported",
            sizes.iter().map(|s| s - 1).collect::<Vec<_>>()
        ))
    })?;
    let keys = layout.pack_rows(codes, n, levels, "codes")?;
    Ok(sort_keys(&keys, layout.total_bits()))
}

/// Index (into the sorted order) where each run of equal keys starts, plus `len` at the end.
fn run_starts(keys: &[u64]) -> Vec<usize> {
    let mut starts: Vec<usize> =
        (0..keys.len()).into_par_iter().filter(|&j| j == 0 || keys[j] != keys[j - 1]).collect();
    starts.push(keys.len());
    starts
}

/// Groups rows of `codes` (row-major `(n, L)`) that hold the same identifier.
pub fn group_duplicates(codes: &[i64], n: usize, levels: usize) -> Result<Groups> {
    let sorted = sorted_rows(codes, n, levels)?;
    let starts = run_starts(&sorted.keys);
    let n_groups = starts.len() - 1;
    // Sorting is stable, so a run's first entry is its first row. Number groups by that row.
    let mut firsts: Vec<(u32, usize)> = (0..n_groups).map(|g| (sorted.rows[starts[g]], g)).collect();
    firsts.par_sort_unstable();
    let mut run_group = vec![0i64; n_groups];
    let mut counts = vec![0i64; n_groups];
    for (number, &(_, run)) in firsts.iter().enumerate() {
        run_group[run] = number as i64;
        counts[number] = (starts[run + 1] - starts[run]) as i64;
    }
    let mut group = vec![0i64; n];
    for run in 0..n_groups {
        for &row in &sorted.rows[starts[run]..starts[run + 1]] {
            group[row as usize] = run_group[run];
        }
    }
    Ok(Groups { group, counts })
}

/// Appends one level to `codes` (row-major `(n, L)` -> `(n, L + 1)`): 0 for the first row of
/// every identifier, 1, 2, ... for later rows with the same identifier.
pub fn disambiguate(codes: &[i64], n: usize, levels: usize) -> Result<Vec<i64>> {
    let sorted = sorted_rows(codes, n, levels)?;
    let starts = run_starts(&sorted.keys);
    let mut occurrence = vec![0i64; n];
    for run in 0..starts.len() - 1 {
        for (pos, &row) in sorted.rows[starts[run]..starts[run + 1]].iter().enumerate() {
            occurrence[row as usize] = pos as i64;
        }
    }
    let mut out = vec![0i64; n * (levels + 1)];
    out.par_chunks_mut(levels + 1).enumerate().for_each(|(i, row)| {
        row[..levels].copy_from_slice(&codes[i * levels..(i + 1) * levels]);
        row[levels] = occurrence[i];
    });
    Ok(out)
}
