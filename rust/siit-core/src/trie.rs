//! The prefix trie over all valid identifiers, stored level by level as CSR arrays.
//!
//! Node ids are per depth: depth `t` holds the distinct prefixes of `t` codes, numbered in
//! lexicographic order (depth 0 is the root, depth `L` the identifiers themselves). Because of
//! that order the children of a node form one contiguous run of the next depth, so a level is
//! two flat arrays: `offsets` (where each node's children start) and `codes` (the code of each
//! child). Shallow levels also get a dense `(nodes, codebook size)` child table, which makes
//! walking and masking a single indexed load there.

use crate::column::CodeColumn;
use crate::error::{bail, Result};
use crate::layout::Layout;
use crate::sort::sort_keys;
use rayon::prelude::*;

const NONE: u32 = u32::MAX;
/// Levels whose dense child table has at most this many entries get one internally (4 MiB).
const INTERNAL_DENSE_ENTRIES: u128 = 1 << 20;
/// Rows per parallel task in batched queries; below this, threads cost more than they save.
const ROWS_PER_TASK: usize = 512;
/// Rows walked down the trie together, level by level.
const WALK_BATCH: usize = 32;
/// Largest mask `allowed_mask` will allocate (entries = bytes).
const MAX_MASK_ENTRIES: u128 = 1 << 34;

/// All valid identifiers of a catalogue.
#[derive(Debug, Clone)]
pub struct IdentifierTrie {
    layout: Layout,
    /// `offsets[t]` (length `N_t + 1`): children of depth-`t` node `u` are depth-`t+1` nodes
    /// `offsets[t][u] .. offsets[t][u + 1]`.
    offsets: Vec<Vec<u32>>,
    /// `codes[t]` (length `N_{t+1}`): the level-`t` code of every depth-`t+1` node, ascending
    /// within each parent.
    codes: Vec<CodeColumn>,
    /// Dense `(N_t, size_t)` child tables for small levels: child node id or `NONE`.
    dense: Vec<Option<Vec<u32>>>,
    /// For the same levels, the `(N_t, size_t)` allowed masks, so a mask row is one copy.
    dense_masks: Vec<Option<Vec<bool>>>,
    /// Item index of every depth-`L` node.
    leaf_items: Vec<u32>,
}

/// The arrays that let a tensor library run the trie with gathers only (see `tables`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub codebook_sizes: Vec<i64>,
    /// Nodes per depth, `L + 1` entries, `num_nodes[0] = 1` (the root).
    pub num_nodes: Vec<i64>,
    /// Largest number of children of any depth-`t` node, per level.
    pub max_children: Vec<i64>,
    /// Per level `t`: CSR row pointers of the depth-`t` nodes (`N_t + 1`).
    pub offsets: Vec<Vec<i64>>,
    /// Per level `t`: level-`t` code of each depth-`t+1` node (`N_{t+1}`).
    pub codes: Vec<Vec<i64>>,
    /// Per level `t`: row-major `(N_t, size_t)` table of child node ids, -1 where no child, for
    /// the levels whose table has at most `dense_limit` entries; `None` for the others.
    pub dense: Vec<Option<Vec<i64>>>,
    /// Item index of each depth-`L` node.
    pub leaf_items: Vec<i64>,
}

impl IdentifierTrie {
    /// Builds the trie of `codes` (row-major `(n, L)`, item `i` is row `i`).
    /// Two items with the same identifier are an error that names both.
    pub fn new(codes: &[i64], n: usize, codebook_sizes: &[i64]) -> Result<Self> {
        let layout = Layout::new(codebook_sizes)?;
        let levels = layout.levels();
        if n == 0 {
            bail!(
                Shape,
                "codes has no rows: a trie needs at least one identifier"
            );
        }
        if codes.len() != n * levels {
            bail!(Shape, "codes must have shape (n, {levels}) to match codebook_sizes, got {} values for {n} rows", codes.len());
        }
        if n >= u32::MAX as usize {
            bail!(
                Capacity,
                "codes has {n} rows; at most {} items are supported",
                u32::MAX - 1
            );
        }
        let keys = layout.pack_rows(codes, n, levels, "codes")?;
        let (sorted_keys, rows) = sort_keys(&keys, layout.total_bits()).into_parts();
        if let Some(w) = sorted_keys.windows(2).position(|w| w[0] == w[1]) {
            bail!(
                Duplicate,
                "codes: items {} and {} share the identifier {}; identifiers must be unique \
                 (resolve collisions first, e.g. with assign_unique or disambiguate)",
                rows[w],
                rows[w + 1],
                layout.show(sorted_keys[w])
            );
        }

        // Walk up from the leaves: the depth-(t+1) prefixes are sorted, so their parents are too.
        let mut offsets = vec![Vec::new(); levels];
        let mut child_codes = Vec::with_capacity(levels);
        let mut prefixes: Vec<u64> = sorted_keys;
        for t in (0..levels).rev() {
            let bits = layout.bits(t);
            let code_mask = if bits == 0 {
                0
            } else {
                u64::MAX >> (64 - bits)
            };
            child_codes.push(CodeColumn::new(
                prefixes.iter().map(|&p| p & code_mask),
                layout.size(t),
            ));
            let mut parents = Vec::new();
            let mut offs = Vec::new();
            for (j, &p) in prefixes.iter().enumerate() {
                let parent = p.checked_shr(bits).unwrap_or(0);
                if parents.last() != Some(&parent) {
                    parents.push(parent);
                    offs.push(j as u32);
                }
            }
            offs.push(prefixes.len() as u32);
            offsets[t] = offs;
            prefixes = parents;
        }
        debug_assert_eq!(prefixes.len(), 1, "one root");

        let mut trie = Self {
            layout,
            offsets,
            codes: {
                child_codes.reverse();
                child_codes
            },
            dense: vec![None; levels],
            dense_masks: vec![None; levels],
            leaf_items: rows,
        };
        for t in 0..levels {
            if trie.num_nodes(t) as u128 * trie.layout.size(t) as u128 <= INTERNAL_DENSE_ENTRIES {
                trie.dense[t] = Some(trie.dense_children(t, NONE, |c| c));
                trie.dense_masks[t] = Some(trie.dense_children(t, false, |_| true));
            }
        }
        Ok(trie)
    }

    /// The identifier layout (codebook sizes, bit widths).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of items (identifiers).
    pub fn n_items(&self) -> usize {
        self.leaf_items.len()
    }

    /// Number of distinct prefixes of `depth` codes (`depth = 0`: the root alone).
    pub fn num_nodes(&self, depth: usize) -> usize {
        if depth == self.layout.levels() {
            self.leaf_items.len()
        } else {
            self.offsets[depth].len() - 1
        }
    }

    /// Row-major `(N_t, size_t)` table of child node ids, `none` where a code has no child.
    fn dense_children<T: Copy + Send>(
        &self,
        t: usize,
        none: T,
        id: impl Fn(u32) -> T + Sync,
    ) -> Vec<T> {
        let size = self.layout.size(t) as usize;
        let mut table = vec![none; self.num_nodes(t) * size];
        table.par_chunks_mut(size).enumerate().for_each(|(u, row)| {
            for j in self.offsets[t][u]..self.offsets[t][u + 1] {
                row[self.codes[t].get(j as usize) as usize] = id(j);
            }
        });
        table
    }

    /// Child of depth-`t` node `u` along code `code`.
    #[inline]
    fn child(&self, t: usize, u: u32, code: u64) -> Option<u32> {
        if let Some(table) = &self.dense[t] {
            let c = table[u as usize * self.layout.size(t) as usize + code as usize];
            return (c != NONE).then_some(c);
        }
        let (start, end) = (
            self.offsets[t][u as usize] as usize,
            self.offsets[t][u as usize + 1] as usize,
        );
        self.codes[t].find(start, end, code).map(|j| j as u32)
    }

    /// Node of each right-aligned prefix key of `depth` codes, `NONE` where the prefix does
    /// not exist. Walks a batch of rows one level at a time, so that the memory loads of
    /// different rows are independent and overlap.
    fn nodes_of(&self, keys: &[u64], depth: usize) -> Vec<u32> {
        let mut nodes = vec![0u32; keys.len()];
        nodes
            .par_chunks_mut(WALK_BATCH)
            .with_min_len(ROWS_PER_TASK / WALK_BATCH)
            .zip(
                keys.par_chunks(WALK_BATCH)
                    .with_min_len(ROWS_PER_TASK / WALK_BATCH),
            )
            .for_each(|(nodes, keys)| {
                let mut shift = self.layout.prefix_bits(depth);
                for t in 0..depth {
                    let bits = self.layout.bits(t);
                    shift -= bits;
                    let mask = if bits == 0 {
                        0
                    } else {
                        u64::MAX >> (64 - bits)
                    };
                    for (u, &key) in nodes.iter_mut().zip(keys) {
                        if *u != NONE {
                            let code = key.checked_shr(shift).unwrap_or(0) & mask;
                            *u = self.child(t, *u, code).unwrap_or(NONE);
                        }
                    }
                }
            });
        nodes
    }

    /// Item index of each identifier in `codes` (row-major `(b, L)`), or -1 where it is not in
    /// the trie.
    pub fn lookup(&self, codes: &[i64], rows: usize) -> Result<Vec<i64>> {
        let levels = self.layout.levels();
        if codes.len() != rows * levels {
            bail!(
                Shape,
                "codes must have shape (b, {levels}), got {} values for {rows} rows",
                codes.len()
            );
        }
        let keys = self.layout.pack_rows(codes, rows, levels, "codes")?;
        let leaves = self.nodes_of(&keys, levels);
        Ok(leaves
            .par_iter()
            .with_min_len(ROWS_PER_TASK)
            .map(|&leaf| {
                if leaf == NONE {
                    -1
                } else {
                    self.leaf_items[leaf as usize] as i64
                }
            })
            .collect())
    }

    /// For each prefix in `prefixes` (row-major `(b, t)`, `t < L`), which level-`t` codes
    /// continue it to a valid identifier: a row-major `(b, size_t)` mask. Prefixes that are
    /// not in the trie get an all-false row.
    pub fn allowed_mask(&self, prefixes: &[i64], rows: usize, t: usize) -> Result<Vec<bool>> {
        let levels = self.layout.levels();
        if t >= levels {
            bail!(
                Shape,
                "prefixes has {t} columns, but identifiers have {levels} levels: a prefix to \
                 extend must be shorter than an identifier (0 <= t < {levels})"
            );
        }
        if prefixes.len() != rows * t {
            bail!(
                Shape,
                "prefixes must have shape (b, {t}), got {} values for {rows} rows",
                prefixes.len()
            );
        }
        let keys = self.layout.pack_rows(prefixes, rows, t, "prefixes")?;
        let size = self.layout.size(t);
        let entries = rows as u128 * size as u128;
        if entries > MAX_MASK_ENTRIES {
            bail!(Capacity, "a mask of {rows} prefixes x {size} codes has {entries} entries; at most {MAX_MASK_ENTRIES} are supported (query fewer prefixes at once)");
        }
        let size = size as usize;
        let nodes = self.nodes_of(&keys, t);
        let mut mask = vec![false; rows * size];
        mask.par_chunks_mut(size)
            .with_min_len(ROWS_PER_TASK)
            .zip(nodes.par_iter().with_min_len(ROWS_PER_TASK))
            .for_each(|(row, &u)| {
                if u == NONE {
                    return;
                }
                if let Some(masks) = &self.dense_masks[t] {
                    row.copy_from_slice(&masks[u as usize * size..(u as usize + 1) * size]);
                } else {
                    let (start, end) = (
                        self.offsets[t][u as usize] as usize,
                        self.offsets[t][u as usize + 1] as usize,
                    );
                    self.codes[t].for_each(start, end, |code| row[code as usize] = true);
                }
            });
        Ok(mask)
    }

    /// Exports the trie as flat arrays for gather-based decoding on any device. Levels whose
    /// dense child table has at most `dense_limit` entries get one.
    pub fn tables(&self, dense_limit: u64) -> Tables {
        let levels = self.layout.levels();
        let widen = |v: &[u32]| v.par_iter().map(|&x| x as i64).collect::<Vec<i64>>();
        Tables {
            codebook_sizes: self.layout.sizes().iter().map(|&s| s as i64).collect(),
            num_nodes: (0..=levels).map(|d| self.num_nodes(d) as i64).collect(),
            max_children: (0..levels)
                .map(|t| {
                    self.offsets[t]
                        .windows(2)
                        .map(|w| w[1] - w[0])
                        .max()
                        .unwrap_or(0) as i64
                })
                .collect(),
            offsets: self.offsets.iter().map(|o| widen(o)).collect(),
            codes: self
                .codes
                .iter()
                .map(|c| {
                    (0..c.len())
                        .into_par_iter()
                        .map(|j| c.get(j) as i64)
                        .collect()
                })
                .collect(),
            dense: (0..levels)
                .map(|t| {
                    let entries = self.num_nodes(t) as u128 * self.layout.size(t) as u128;
                    (entries <= dense_limit as u128)
                        .then(|| self.dense_children(t, -1i64, |c| c as i64))
                })
                .collect(),
            leaf_items: widen(&self.leaf_items),
        }
    }
}
