//! Bit layout of identifiers: every identifier of `L` codes packs into one `u64` key, level 0
//! in the most significant bits, so numeric order of keys is lexicographic order of codes.

use crate::error::{bail, Result};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// The codebook sizes of an identifier space and how its codes pack into a `u64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    sizes: Vec<u64>,
    bits: Vec<u32>,
    /// `low[p]`: bits of levels `p..L`, i.e. the shift that turns a key into its depth-`p` prefix.
    low: Vec<u32>,
}

/// Bits needed for codes `0..size`.
fn bits_for(size: u64) -> u32 {
    if size <= 1 {
        0
    } else {
        64 - (size - 1).leading_zeros()
    }
}

impl Layout {
    /// Validates codebook sizes (at least one level, every size >= 1, total width <= 64 bits).
    pub fn new(codebook_sizes: &[i64]) -> Result<Self> {
        if let Some(level) = codebook_sizes.iter().position(|&s| s < 1) {
            bail!(
                Value,
                "codebook_sizes[{level}] = {}: every codebook needs at least one code",
                codebook_sizes[level]
            );
        }
        let sizes: Vec<u64> = codebook_sizes.iter().map(|&s| s as u64).collect();
        Self::from_sizes(&sizes)
    }

    /// [`Layout::new`] for sizes that may exceed `i64::MAX` (up to `2^64 - 1`).
    pub fn from_sizes(codebook_sizes: &[u64]) -> Result<Self> {
        if codebook_sizes.is_empty() {
            bail!(
                Shape,
                "codebook_sizes is empty: identifiers need at least one level (L >= 1)"
            );
        }
        if let Some(level) = codebook_sizes.iter().position(|&s| s < 1) {
            bail!(
                Value,
                "codebook_sizes[{level}] = 0: every codebook needs at least one code"
            );
        }
        let sizes = codebook_sizes.to_vec();
        let bits: Vec<u32> = sizes.iter().map(|&s| bits_for(s)).collect();
        let total: u32 = bits.iter().sum();
        if total > 64 {
            bail!(
                Value,
                "codebook_sizes {codebook_sizes:?} need {total} bits per identifier \
                 (sum of ceil(log2 size) over levels {bits:?}); at most 64 are supported"
            );
        }
        let mut low = vec![0u32; sizes.len() + 1];
        for p in (0..sizes.len()).rev() {
            low[p] = low[p + 1] + bits[p];
        }
        Ok(Self { sizes, bits, low })
    }

    /// Number of levels `L`.
    pub fn levels(&self) -> usize {
        self.sizes.len()
    }

    /// Codebook sizes.
    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }

    /// Size of level `level`'s codebook.
    pub fn size(&self, level: usize) -> u64 {
        self.sizes[level]
    }

    /// Total bits of one packed identifier.
    pub fn total_bits(&self) -> u32 {
        self.low[0]
    }

    /// Bits of a prefix of `depth` codes.
    pub fn prefix_bits(&self, depth: usize) -> u32 {
        self.low[0] - self.low[depth]
    }

    /// Number of identifiers sharing any one prefix of `depth` codes: product of the remaining
    /// sizes (`depth = 0`: the whole space). Exact, since it is at most 2^64.
    pub fn capacity_below(&self, depth: usize) -> u128 {
        self.sizes[depth..].iter().map(|&s| s as u128).product()
    }

    /// The depth-`depth` prefix of `key`, right-aligned.
    #[inline]
    pub fn prefix(&self, key: u64, depth: usize) -> u64 {
        let shift = self.low[depth];
        if shift >= 64 {
            0
        } else {
            key >> shift
        }
    }

    /// The inclusive key range `[lo, hi]` of all keys that share `key`'s depth-`depth` prefix.
    #[inline]
    pub fn prefix_range(&self, key: u64, depth: usize) -> (u64, u64) {
        let shift = self.low[depth];
        if shift >= 64 {
            return (0, u64::MAX);
        }
        let span = (1u64 << shift) - 1;
        let lo = key & !span;
        (lo, lo | span)
    }

    /// Code of `key` at `level`.
    #[inline]
    pub fn code(&self, key: u64, level: usize) -> u64 {
        let mask = if self.bits[level] == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits[level]) - 1
        };
        (key >> self.low[level + 1]) & mask
    }

    /// Bits of level `level`.
    pub fn bits(&self, level: usize) -> u32 {
        self.bits[level]
    }

    /// Checks and packs the first `row.len()` levels of one identifier into a right-aligned
    /// prefix key. `Err((level, value))` names the first code outside its codebook.
    #[inline]
    pub fn pack_prefix(&self, row: &[i64]) -> std::result::Result<u64, (usize, i64)> {
        let mut key = 0u64;
        for (level, &code) in row.iter().enumerate() {
            if code < 0 || code as u64 >= self.sizes[level] {
                return Err((level, code));
            }
            // `checked_shl` keeps 64-bit single-level layouts well defined.
            key = key.checked_shl(self.bits[level]).unwrap_or(0) | code as u64;
        }
        Ok(key)
    }

    /// Writes the `L` codes of `key` into `out`.
    #[inline]
    pub fn unpack(&self, key: u64, out: &mut [i64]) {
        for (level, slot) in out.iter_mut().enumerate() {
            *slot = self.code(key, level) as i64;
        }
    }

    /// Packs a row-major `(rows, width)` matrix of codes (`width <= L`, the first `width` levels)
    /// into right-aligned keys, in parallel. The error names `arg`, the first bad row in row
    /// order (as `label(row)` spells it) and its level, whatever the thread count.
    pub fn pack_rows_labelled(
        &self,
        data: &[i64],
        rows: usize,
        width: usize,
        arg: &str,
        label: impl Fn(usize) -> String,
    ) -> Result<Vec<u64>> {
        debug_assert!(width <= self.levels() && data.len() == rows * width);
        if width == 0 {
            return Ok(vec![0; rows]);
        }
        let failed = AtomicBool::new(false);
        let keys: Vec<u64> = data
            .par_chunks_exact(width)
            .map(|codes| {
                self.pack_prefix(codes).unwrap_or_else(|_| {
                    failed.store(true, Ordering::Relaxed);
                    0
                })
            })
            .collect();
        if !failed.into_inner() {
            return Ok(keys);
        }
        // Error path only: find the first bad row sequentially, so the message is deterministic.
        let (row, (level, code)) = data
            .chunks_exact(width)
            .enumerate()
            .find_map(|(row, codes)| self.pack_prefix(codes).err().map(|e| (row, e)))
            .expect("some row failed to pack");
        bail!(
            Value,
            "{arg}: code {code} in {} at level {level} is outside codebook {level} of size {} \
             (valid codes are 0..={})",
            label(row),
            self.sizes[level],
            self.sizes[level] - 1
        )
    }

    /// [`Layout::pack_rows_labelled`] with rows named `row {i}`.
    pub fn pack_rows(
        &self,
        data: &[i64],
        rows: usize,
        width: usize,
        arg: &str,
    ) -> Result<Vec<u64>> {
        self.pack_rows_labelled(data, rows, width, arg, |r| format!("row {r}"))
    }

    /// `key` (whose level-`level` bits are zero) with code `code` at `level`.
    #[inline]
    pub fn with_code(&self, key: u64, level: usize, code: u64) -> u64 {
        key | code.checked_shl(self.low[level + 1]).unwrap_or(0)
    }

    /// Renders the codes of `key` for messages, e.g. `[3, 0, 17]`.
    pub fn show(&self, key: u64) -> String {
        let mut codes = vec![0i64; self.levels()];
        self.unpack(key, &mut codes);
        format!("{codes:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_and_order() {
        let layout = Layout::new(&[256, 256, 100, 1]).unwrap();
        assert_eq!(layout.total_bits(), 8 + 8 + 7);
        let a = layout.pack_prefix(&[1, 2, 3, 0]).unwrap();
        let b = layout.pack_prefix(&[1, 3, 0, 0]).unwrap();
        assert!(a < b, "numeric order is lexicographic order");
        let mut back = [0i64; 4];
        layout.unpack(a, &mut back);
        assert_eq!(back, [1, 2, 3, 0]);
        assert_eq!(layout.prefix(a, 2), layout.pack_prefix(&[1, 2]).unwrap());
        assert_eq!(layout.capacity_below(0), 256 * 256 * 100);
    }

    #[test]
    fn full_64_bit_layouts() {
        let layout = Layout::new(&[1 << 32, 1 << 32]).unwrap();
        assert_eq!(layout.total_bits(), 64);
        let key = layout.pack_prefix(&[5, 7]).unwrap();
        assert_eq!(layout.code(key, 0), 5);
        assert_eq!(layout.code(key, 1), 7);
        assert_eq!(layout.prefix_range(key, 0), (0, u64::MAX));
        let single = Layout::new(&[i64::MAX]).unwrap();
        assert_eq!(single.total_bits(), 63);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(Layout::new(&[]), Err(crate::Error::Shape(_))));
        assert!(Layout::new(&[256, 0])
            .unwrap_err()
            .to_string()
            .contains("codebook_sizes[1] = 0"));
        let wide = Layout::new(&[1 << 40, 1 << 30]).unwrap_err().to_string();
        assert!(wide.contains("70 bits"), "{wide}");
    }

    #[test]
    fn pack_rows_reports_first_bad_row() {
        let layout = Layout::new(&[4, 4]).unwrap();
        let err = layout
            .pack_rows(&[0, 1, 2, 9, -1, 0], 3, 2, "codes")
            .unwrap_err()
            .to_string();
        assert!(err.contains("code 9 in row 1 at level 1"), "{err}");
    }
}
