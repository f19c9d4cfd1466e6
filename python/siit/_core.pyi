"""Stubs of the Rust extension `siit._core` (hand-written; checked with mypy.stubtest).

Identifiers are rows of integer codes, one codebook per level: an array of shape (n, L) whose
column l holds codes in ``range(codebook_sizes[l])``. Integer inputs may have any integer
dtype and need not be contiguous; integer outputs are int64. Every invalid input raises
`SiitError` (a `ValueError`) whose message names the argument and the offending row.
Identifiers must pack into 64 bits: sum(ceil(log2(size))) over the levels <= 64.
"""

from typing import final

import numpy as np
import numpy.typing as npt
from typing_extensions import Self

__all__ = [
    "IdentifierTrie",
    "SiitError",
    "__version__",
    "assign_unique",
    "disambiguate",
    "group_duplicates",
]
__version__: str

class SiitError(ValueError):
    """Invalid input to the siit core."""

@final
class IdentifierTrie:
    """All valid identifiers of a catalogue, as a prefix trie.

    Nodes are numbered per depth: depth t (0 <= t <= L) holds the distinct prefixes of t
    codes in lexicographic order; depth 0 is the root, depth L the identifiers themselves.
    """

    def __new__(cls, codes: npt.ArrayLike, codebook_sizes: npt.ArrayLike) -> Self:
        """Builds the trie of `codes` (n, L); item i is row i.

        Raises SiitError when two items share an identifier (the message names both), when a
        code lies outside its codebook, or when n = 0.
        """

    @property
    def n_items(self) -> int: ...
    @property
    def n_levels(self) -> int: ...
    @property
    def codebook_sizes(self) -> npt.NDArray[np.int64]: ...
    def __len__(self) -> int: ...
    def lookup(self, codes: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Item index of each identifier in `codes` (b, L), or -1 where it is none."""

    def allowed_mask(self, prefixes: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """For prefixes (b, t) of one length t < L: the bool mask (b, codebook_sizes[t]) of
        the level-t codes that continue each prefix towards a valid identifier. A prefix that
        is not in the trie gets an all-False row."""

    def tables(self, dense_limit: int = 4194304) -> dict[str, npt.NDArray[np.int64]]:
        """The trie as flat int64 arrays, for constrained decoding with gathers on any device.

        Keys (L levels, N_t nodes at depth t, V_t = codebook_sizes[t]):

        - ``codebook_sizes`` (L,); ``num_nodes`` (L+1,), N_0 = 1; ``max_children`` (L,):
          the most children of any depth-t node.
        - ``offsets_{t}`` (N_t + 1,), for every level t: the children of depth-t node u are
          the depth-(t+1) nodes ``offsets_t[u] .. offsets_t[u+1] - 1`` (CSR).
        - ``codes_{t}`` (N_{t+1},): the level-t code of each depth-(t+1) node, ascending
          among siblings.
        - ``dense_{t}`` (N_t, V_t), only for levels with N_t * V_t <= dense_limit: the child
          node reached from node u by code c, or -1.
        - ``leaf_items`` (N_L,): the item index of each depth-L node.

        Beam state is one node id per beam, starting at the root (0). At a dense level the
        allowed mask is ``dense_t[node] >= 0`` and the next node ``dense_t[node, code]``; at a
        CSR level gather ``codes_t[offsets_t[node] + arange(max_children[t])]`` (valid where
        the position is below ``offsets_t[node+1]``), and the next node is
        ``offsets_t[node] + position``. After L steps ``leaf_items[node]`` is the item.
        """

def assign_unique(
    candidates: npt.ArrayLike,
    scores: npt.ArrayLike,
    codebook_sizes: npt.ArrayLike,
    reserved: npt.ArrayLike | None = None,
    fallback: str = "nearest",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Unique identifiers for n items from k ranked candidates each.

    candidates (n, k, L) and scores (n, k): a score of -inf marks an unusable candidate;
    NaN and +inf are errors. reserved (m, L): identifiers nobody may take (distinct rows).

    Returns (codes (n, L), rank (n,)). Codes are pairwise distinct and not reserved. As many
    items as a maximum bipartite matching allows receive one of their own candidates
    (``codes[i] == candidates[i, rank[i]]``), chosen greedily best score first (ties: lower
    item index, then lower rank) and completed by augmenting paths. With fallback="nearest"
    every other item gets, in item order, the free identifier that shares the longest prefix
    with its rank-0 candidate (ties: lexicographically smallest) and rank -1; with
    fallback="error" such items raise SiitError. Deterministic for any thread count.
    n + m above the number of spellable identifiers raises before any work.
    """

def group_duplicates(codes: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows of `codes` (n, L) grouped by identifier: (group (n,), counts (n_groups,)).

    Groups are numbered in order of their first row; counts[g] rows hold group g's
    identifier. Codes must be >= 0."""

def disambiguate(codes: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """`codes` (n, L) with one level appended (n, L+1): 0 for the first row holding each
    identifier, then 1, 2, ... for later rows with the same identifier (TIGER's suffix)."""
