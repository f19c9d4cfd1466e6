//! Collision-free identifier assignment: every item brings `k` ranked candidate identifiers
//! with scores; give as many items as possible one of their own candidates, preferring
//! higher scores, and everyone else the nearest free identifier.
//!
//! Three phases:
//! 1. Greedy best-first by score (ties: lower item, then lower rank). Run as item-proposing
//!    deferred acceptance: with preferences derived from one total order on (item, candidate)
//!    pairs the stable matching is unique and equals the greedy one, but it needs no global
//!    sort of all n*k pairs and touches each pair at most once.
//! 2. Repair: from every item still without a candidate, in item order, a breadth-first search
//!    for augmenting paths, taking the best score gain among those within a few layers of the
//!    shortest (a longer path can cost less: it may move items to near-equal choices). A failed
//!    search's tree can never be part of a later augmenting path, so it is retired for good;
//!    the result is a maximum matching, and no unassigned item is left with a free candidate.
//! 3. Fallback, in item order: the free identifier sharing the longest prefix with the item's
//!    rank-0 candidate, ties to the lexicographically smallest.

use crate::error::{bail, Result};
use crate::layout::Layout;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::hash_map::Entry;
use std::collections::BTreeSet;

/// What to do with items that cannot receive one of their own candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Give them the free identifier nearest (longest shared prefix) to their rank-0 candidate.
    Nearest,
    /// Fail, naming them.
    Error,
}

/// Unique identifiers for all items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Row-major `(n, L)` identifiers, pairwise distinct and distinct from the reserved ones.
    pub codes: Vec<i64>,
    /// Which candidate each item received, or -1 for a fallback identifier.
    pub rank: Vec<i64>,
}

/// Candidate identifiers of `n` items, `k` each, row-major: `codes` is `(n, k, L)` and
/// `scores` `(n, k)`; a score of `-inf` marks a candidate as unusable.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    pub codes: &'a [i64],
    pub scores: &'a [f64],
    pub n: usize,
    pub k: usize,
}

/// Once an augmenting path is found, the search looks this many layers further for a better one
const EXTRA_LAYERS: u32 = 2;
/// ... and for at most this many more keys.
const EXTRA_KEYS: usize = 128;
/// Items whose search found nothing are listed up to this many in error messages.
const LISTED_ITEMS: usize = 10;

/// See the module documentation. `reserved` is row-major `(m, L)`: identifiers nobody may take.
pub fn assign_unique(
    candidates: Candidates<'_>,
    codebook_sizes: &[i64],
    reserved: &[i64],
    fallback: Fallback,
) -> Result<Assignment> {
    let Candidates {
        codes,
        scores,
        n,
        k,
    } = candidates;
    let layout = Layout::new(codebook_sizes)?;
    let levels = layout.levels();
    if n == 0 {
        bail!(Shape, "candidates has no items (n = 0)");
    }
    if k == 0 {
        bail!(
            Shape,
            "candidates has no candidates per item (k = 0); every item needs at least one"
        );
    }
    if codes.len() != n * k * levels {
        bail!(Shape, "candidates must have shape (n, k, {levels}) to match codebook_sizes, got {} values for n = {n}, k = {k}", codes.len());
    }
    if scores.len() != n * k {
        bail!(
            Shape,
            "scores must have shape (n, k) = ({n}, {k}) like candidates, got {} values",
            scores.len()
        );
    }
    if reserved.len() % levels != 0 {
        bail!(
            Shape,
            "reserved must have shape (m, {levels}) to match codebook_sizes, got {} values",
            reserved.len()
        );
    }
    let m = reserved.len() / levels;
    let capacity = layout.capacity_below(0);
    if (n + m) as u128 > capacity {
        bail!(
            Capacity,
            "{n} items plus {m} reserved identifiers exceed the {capacity} identifiers that \
             codebook_sizes {codebook_sizes:?} can spell"
        );
    }
    let keys = layout.pack_rows_labelled(codes, n * k, levels, "candidates", |r| {
        format!("candidates[{}, {}]", r / k, r % k)
    })?;
    if let Some(bad) = scores
        .par_iter()
        .position_first(|s| s.is_nan() || *s == f64::INFINITY)
    {
        bail!(
            Value,
            "scores[{}, {}] is {}; scores must be finite, or -inf for an unusable candidate",
            bad / k,
            bad % k,
            scores[bad]
        );
    }
    let reserved_keys = layout.pack_rows(reserved, m, levels, "reserved")?;
    let reserved_set = distinct_reserved(&layout, &reserved_keys)?;

    let prefs = Preferences::new(&keys, scores, k, &reserved_set);
    let mut state = Matching::greedy(&keys, scores, k, &prefs);
    state.repair(&keys, scores, k, &prefs);

    let unmatched: Vec<usize> = (0..n).filter(|&i| state.rank[i] < 0).collect();
    if !unmatched.is_empty() && fallback == Fallback::Error {
        let shown: Vec<usize> = unmatched.iter().copied().take(LISTED_ITEMS).collect();
        bail!(
            Unassigned,
            "{} of {n} items cannot receive any of their candidates without a collision (items \
             {shown:?}{}); pass fallback=\"nearest\" to give them the nearest free identifier",
            unmatched.len(),
            if unmatched.len() > LISTED_ITEMS {
                ", ..."
            } else {
                ""
            }
        );
    }
    if !unmatched.is_empty() {
        let mut used: Vec<u64> = state
            .holder
            .keys()
            .copied()
            .chain(reserved_set.iter().copied())
            .collect();
        used.par_sort_unstable();
        let mut space = FreeSpace {
            layout: &layout,
            used,
            taken: BTreeSet::new(),
        };
        for &i in &unmatched {
            let key = space.nearest_free(keys[i * k]);
            space.taken.insert(key);
            state.key[i] = key;
        }
    }

    let mut out = vec![0i64; n * levels];
    out.par_chunks_mut(levels)
        .zip(state.key.par_iter())
        .for_each(|(row, &key)| layout.unpack(key, row));
    Ok(Assignment {
        codes: out,
        rank: state.rank,
    })
}

fn distinct_reserved(layout: &Layout, reserved_keys: &[u64]) -> Result<FxHashSet<u64>> {
    let mut set = FxHashSet::with_capacity_and_hasher(reserved_keys.len(), Default::default());
    let mut first_row: FxHashMap<u64, usize> = FxHashMap::default();
    for (row, &key) in reserved_keys.iter().enumerate() {
        if !set.insert(key) {
            bail!(
                Duplicate,
                "reserved rows {} and {row} are the same identifier {}; reserved identifiers must be distinct",
                first_row[&key],
                layout.show(key)
            );
        }
        first_row.insert(key, row);
    }
    Ok(set)
}

/// Each item's usable candidates (finite score, not reserved, first occurrence of an
/// identifier), best first: score descending, then rank ascending.
struct Preferences {
    /// `(n, k)`: candidate ranks in preference order; the first `len[i]` of row `i` are valid.
    order: Vec<u32>,
    len: Vec<u32>,
    k: usize,
}

impl Preferences {
    fn new(keys: &[u64], scores: &[f64], k: usize, reserved: &FxHashSet<u64>) -> Self {
        let n = scores.len() / k;
        let mut order = vec![0u32; n * k];
        let len: Vec<u32> = order
            .par_chunks_mut(k)
            .enumerate()
            .map(|(i, row)| {
                let (keys, scores) = (&keys[i * k..(i + 1) * k], &scores[i * k..(i + 1) * k]);
                let mut len = 0;
                for j in 0..k {
                    if scores[j] > f64::NEG_INFINITY && !reserved.contains(&keys[j]) {
                        row[len] = j as u32;
                        len += 1;
                    }
                }
                let row = &mut row[..len];
                // Scores hold no NaN (checked), so partial_cmp is total here.
                row.sort_by(|&a, &b| {
                    scores[b as usize]
                        .partial_cmp(&scores[a as usize])
                        .unwrap()
                        .then(a.cmp(&b))
                });
                // Keep the best occurrence of an identifier listed twice by the same item.
                let mut kept = 0;
                for p in 0..row.len() {
                    let key = keys[row[p] as usize];
                    if !row[..kept].iter().any(|&q| keys[q as usize] == key) {
                        row[kept] = row[p];
                        kept += 1;
                    }
                }
                kept as u32
            })
            .collect();
        Self { order, len, k }
    }

    fn of(&self, item: usize) -> &[u32] {
        &self.order[item * self.k..item * self.k + self.len[item] as usize]
    }
}

/// A matching between items and identifiers (packed keys).
struct Matching {
    /// Identifier key -> the item holding it.
    holder: FxHashMap<u64, u32>,
    /// Rank of the candidate each item holds, -1 if none.
    rank: Vec<i64>,
    /// Key each item holds (meaningful where `rank >= 0`, or after the fallback).
    key: Vec<u64>,
}

impl Matching {
    /// Phase 1: the greedy matching, by item-proposing deferred acceptance.
    fn greedy(keys: &[u64], scores: &[f64], k: usize, prefs: &Preferences) -> Self {
        let n = scores.len() / k;
        let mut state = Self {
            holder: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            rank: vec![-1; n],
            key: vec![0; n],
        };
        let mut next = vec![0usize; n];
        for first in 0..n {
            let mut i = first;
            while let Some(&j) = prefs.of(i).get(next[i]) {
                let (key, score) = (keys[i * k + j as usize], scores[i * k + j as usize]);
                match state.holder.entry(key) {
                    Entry::Vacant(slot) => {
                        slot.insert(i as u32);
                        state.rank[i] = j as i64;
                        state.key[i] = key;
                        break;
                    }
                    Entry::Occupied(mut slot) => {
                        let h = *slot.get() as usize;
                        let held = scores[h * k + state.rank[h] as usize];
                        if score > held || (score == held && i < h) {
                            slot.insert(i as u32);
                            state.rank[i] = j as i64;
                            state.key[i] = key;
                            state.rank[h] = -1;
                            next[h] += 1;
                            i = h; // the displaced item proposes next
                        } else {
                            next[i] += 1;
                        }
                    }
                }
            }
        }
        state
    }

    /// Phase 2: augmenting paths from every unmatched item that has usable candidates.
    fn repair(&mut self, keys: &[u64], scores: &[f64], k: usize, prefs: &Preferences) {
        let n = self.rank.len();
        let mut retired_keys: FxHashSet<u64> = FxHashSet::default();
        let mut search = Search::default();
        for root in 0..n {
            if self.rank[root] >= 0 || prefs.len[root] == 0 {
                continue;
            }
            if !search.augment_from(root, self, keys, scores, k, prefs, &retired_keys) {
                // A failed search's alternating tree is closed: no later augmenting path can
                // enter it, so its keys (and with them their holders) are retired for good.
                retired_keys.extend(search.reached.iter().map(|r| r.key));
            }
        }
    }
}

/// How a key was reached in a search: from which item, by which of its candidates, with what
/// total score gain along the path, in which layer.
#[derive(Clone, Copy)]
struct Reached {
    key: u64,
    from: u32,
    rank: u32,
    layer: u32,
    gain: f64,
}

/// Scratch space of the augmenting-path searches, reused between searches.
#[derive(Default)]
struct Search {
    /// Where each key reached by the current search sits in `reached`.
    index: FxHashMap<u64, u32>,
    reached: Vec<Reached>,
    /// Items of the current search and the path gain at each.
    items: Vec<(u32, f64)>,
}

impl Search {
    /// Breadth-first search from `root` for an augmenting path. Applies the one with the best
    /// score gain among those found and returns true; or returns false, leaving the explored
    /// tree in `reached`. After the first free key the search goes on a little (bounded),
    /// since a longer path can cost less: it may move items to near-equal choices.
    #[allow(clippy::too_many_arguments)]
    fn augment_from(
        &mut self,
        root: usize,
        m: &mut Matching,
        keys: &[u64],
        scores: &[f64],
        k: usize,
        prefs: &Preferences,
        retired_keys: &FxHashSet<u64>,
    ) -> bool {
        self.index.clear();
        self.reached.clear();
        self.items.clear();
        self.items.push((root as u32, 0.0));
        let (mut layer_start, mut layer) = (0, 0u32);
        // Best free key so far: (index into reached, layer found), and how many keys had been
        // reached when the first free one turned up.
        let mut best: Option<(usize, u32)> = None;
        let mut found_at = usize::MAX;
        loop {
            let (layer_end, first_new) = (self.items.len(), self.reached.len());
            let mut enough = false;
            for idx in layer_start..layer_end {
                let (u, base) = self.items[idx];
                let u = u as usize;
                let before = self.reached.len();
                for &j in prefs.of(u) {
                    let key = keys[u * k + j as usize];
                    if (m.rank[u] >= 0 && key == m.key[u]) || retired_keys.contains(&key) {
                        continue;
                    }
                    let gain = base + scores[u * k + j as usize];
                    let here = Reached {
                        key,
                        from: u as u32,
                        rank: j,
                        layer,
                        gain,
                    };
                    match self.index.entry(key) {
                        Entry::Vacant(slot) => {
                            slot.insert(self.reached.len() as u32);
                            self.reached.push(here);
                        }
                        Entry::Occupied(slot) => {
                            let seen = &mut self.reached[*slot.get() as usize];
                            if seen.layer == layer && gain > seen.gain {
                                *seen = here;
                            }
                        }
                    }
                }
                if found_at == usize::MAX
                    && self.reached[before..]
                        .iter()
                        .any(|r| !m.holder.contains_key(&r.key))
                {
                    found_at = self.reached.len();
                }
                // Stop mid-layer once a free key is in hand and the search has looked a little
                // further: finishing a wide layer is where breadth-first search spends its time.
                if self.reached.len() >= found_at.saturating_add(EXTRA_KEYS) {
                    enough = true;
                    break;
                }
            }
            for r in first_new..self.reached.len() {
                if !m.holder.contains_key(&self.reached[r].key)
                    && best.is_none_or(|(b, _)| self.reached[r].gain > self.reached[b].gain)
                {
                    best = Some((r, layer));
                }
            }
            let exhausted = first_new == self.reached.len();
            if enough || exhausted || best.is_some_and(|(_, found)| layer >= found + EXTRA_LAYERS) {
                if let Some((r, _)) = best {
                    self.flip(r, m);
                }
                return best.is_some();
            }
            for r in first_new..self.reached.len() {
                let Reached { key, gain, .. } = self.reached[r];
                if let Some(&h) = m.holder.get(&key) {
                    let held = scores[h as usize * k + m.rank[h as usize] as usize];
                    self.items.push((h, gain - held));
                }
            }
            layer_start = layer_end;
            layer += 1;
        }
    }

    /// Shifts every item on the path that ends at `reached[r]` (a free key) to the key it
    /// reached; the root, which held nothing, ends the path.
    fn flip(&self, mut r: usize, m: &mut Matching) {
        loop {
            let Reached {
                key, from, rank, ..
            } = self.reached[r];
            let u = from as usize;
            let previous = (m.rank[u] >= 0).then_some(m.key[u]);
            m.holder.insert(key, from);
            m.key[u] = key;
            m.rank[u] = rank as i64;
            match previous {
                Some(prev) => r = self.index[&prev] as usize,
                None => return,
            }
        }
    }
}

/// The identifier space with some identifiers taken: `used` (sorted, fixed) plus `taken`
/// (handed out by the fallback so far).
struct FreeSpace<'a> {
    layout: &'a Layout,
    used: Vec<u64>,
    taken: BTreeSet<u64>,
}

impl FreeSpace<'_> {
    fn used_in(&self, lo: u64, hi: u64) -> u128 {
        let fixed =
            self.used.partition_point(|&x| x <= hi) - self.used.partition_point(|&x| x < lo);
        (fixed + self.taken.range(lo..=hi).count()) as u128
    }

    fn has_free(&self, key: u64, depth: usize) -> bool {
        let (lo, hi) = self.layout.prefix_range(key, depth);
        self.used_in(lo, hi) < self.layout.capacity_below(depth)
    }

    /// The free identifier sharing the longest prefix with `target`, lexicographically
    /// smallest among those. The capacity check up front guarantees one exists.
    fn nearest_free(&self, target: u64) -> u64 {
        let levels = self.layout.levels();
        let depth = (0..=levels)
            .rev()
            .find(|&d| self.has_free(target, d))
            .expect("capacity checked");
        // Every free identifier under this prefix shares exactly `depth` codes with the target:
        // take the smallest by descending into the first child that still has room.
        let (mut key, _) = self.layout.prefix_range(target, depth);
        for level in depth..levels {
            let code = (0..self.layout.size(level))
                .find(|&c| self.has_free(self.layout.with_code(key, level, c), level + 1))
                .expect("a prefix with room has a child with room");
            key = self.layout.with_code(key, level, code);
        }
        key
    }
}
