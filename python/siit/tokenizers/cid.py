"""CID: collaborative-indexing identifiers from recursive spectral clustering (P5-CID).

Items that users interact with one after the other should share identifier prefixes. The
tokenizer builds a sparse co-occurrence graph from the training part of every sequence,
splits all items into `codebook_size` clusters by spectral clustering (level 0), then
splits every cluster again on its own subgraph (level 1), and so on for `levels` levels.

- Graph: items within `window` positions of each other in a user's training part (all but
  the last two items, so validation and test targets never leak), weighted by count.
- Spectral step: the top eigenvectors of the normalized adjacency plus a small uniform
  teleport term (regularized spectral clustering), applied implicitly so that nothing
  n x n is built; it keeps the eigenproblem well-posed on disconnected graphs. Then seeded
  k-means on the row-normalized embedding.
- Capacity: a level-l cluster can hold at most codebook_size ** (levels - 1 - l) items
  without two of them sharing an identifier. Co-occurrence clusters are very uneven
  (on Beauty the largest of 32 holds a fifth of the items), so each split places items in
  their nearest cluster that still has room. Leaving the overflow to the uniqueness step
  instead would move it to an unrelated prefix (the smallest free identifier).
- A cluster of at most `codebook_size` items gets codes 0, 1, ... by co-occurrence degree
  and zeros below. With the capacity rule every last-level cluster is such a cluster, so
  the raw identifiers are already unique and the uniqueness step only confirms it.
- Items without co-occurrence inside a cluster carry no signal for its split; they are
  spread over the smallest subclusters rather than piled into one.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

from siit.data import Dataset
from siit.identifiers import Identifiers
from siit.tokenizers.base import Tokenizer, UniqueMethod
from siit.tokenizers.kmeans import kmeans

log = logging.getLogger(__name__)

# Teleport weight as a fraction of the mean degree: enough to connect the graph, small
# enough to keep its clusters (on Beauty and Scientific, 0.1 kept 15-30% more co-occurrence
# weight inside shared prefixes than the common default of the full mean degree).
TELEPORT = 0.1
# Subgraphs smaller than this are decomposed densely; ARPACK is faster above (measured on
# Beauty subgraphs: equal near 256 nodes, 20x faster at 1,024).
DENSE_LIMIT = 256


def cooccurrence_graph(dataset: Dataset, window: int = 1) -> sp.csr_matrix:
    """Symmetric item graph (n_items, n_items): the weight of (i, j) counts how often i and j
    are at most `window` positions apart in a user's training part. No self-loops."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    user = np.repeat(np.arange(dataset.n_users), np.diff(dataset.offsets))
    training = np.zeros(dataset.n_interactions, dtype=bool)
    training[dataset.train_positions()[1]] = True
    rows, cols = [], []
    for gap in range(1, window + 1):
        # The later position of a pair being training implies the earlier one is too.
        pair = (user[:-gap] == user[gap:]) & training[gap:]
        rows.append(dataset.items[:-gap][pair])
        cols.append(dataset.items[gap:][pair])
    a, b = np.concatenate(rows), np.concatenate(cols)
    a, b = a[a != b], b[a != b]
    n = dataset.n_items
    graph = sp.coo_matrix(
        (np.ones(2 * len(a)), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n)
    )
    return graph.tocsr()  # sums repeated pairs


def spectral_embedding(adjacency: sp.csr_matrix, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Row-normalized top `dim` eigenvectors (m, dim) of the regularized normalized adjacency
    D_t^-1/2 (A + t/m 11^T) D_t^-1/2, with t = TELEPORT * mean degree and D_t = D + t I.

    The teleport term connects the graph, so the leading eigenvector is positive and no row
    of the embedding is zero."""
    m = adjacency.shape[0]
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    teleport = TELEPORT * degree.mean()
    s = 1.0 / np.sqrt(degree + teleport)
    if m < max(DENSE_LIMIT, 2 * dim + 2):
        dense = s[:, None] * (adjacency.toarray() + teleport / m) * s[None, :]
        vectors = np.linalg.eigh(dense)[1][:, -dim:]
    else:

        def matvec(x: np.ndarray) -> np.ndarray:
            x = x.ravel()
            return s * (adjacency @ (s * x)) + (teleport / m) * s * (s @ x)

        operator = LinearOperator((m, m), matvec=matvec, dtype=np.float64)
        vectors = eigsh(operator, k=dim, which="LA", v0=rng.random(m))[1]
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d = (points**2).sum(1)[:, None] - 2 * points @ centroids.T + (centroids**2).sum(1)[None, :]
    return np.maximum(d, 0.0)


def capped_labels(distances: np.ndarray, capacity: int) -> np.ndarray:
    """Labels (m,) from distances (m, k) to k clusters with at most `capacity` items each
    (m <= k * capacity): in round r every unplaced item asks for its r-th nearest cluster,
    and each cluster takes the closest askers while it has room. Every cluster that turns an
    item away is full, so all items are placed after k rounds."""
    m, k = distances.shape
    ranked = np.argsort(distances, axis=1, kind="stable")
    labels = np.full(m, -1)
    room = np.full(k, capacity)
    for r in range(k):
        todo = np.flatnonzero(labels < 0)
        if len(todo) == 0:
            break
        choice = ranked[todo, r]
        order = np.lexsort((distances[todo, choice], choice))
        asked = choice[order]
        place = np.arange(len(asked)) - np.searchsorted(asked, asked)  # rank among askers
        taken = place < room[asked]
        labels[todo[order[taken]]] = asked[taken]
        room -= np.bincount(asked[taken], minlength=k)
    return labels


def _spread(counts: np.ndarray, n: int) -> np.ndarray:
    """Labels for n more items that even out cluster sizes `counts` (water filling): each
    goes to the currently smallest cluster, ties to the lower label."""
    k = len(counts)
    # The water ends at most at the mean size (rounded up): a bound on any cluster's extras.
    depth = min(n, -(-(n + int(counts.sum())) // k) - int(counts.min()) + 1)
    slots = (counts[:, None] + np.arange(depth)[None, :]).ravel()  # size after each extra
    owner = np.repeat(np.arange(k), depth)
    return owner[np.lexsort((owner, slots))[:n]]


def _by_degree(degree: np.ndarray) -> np.ndarray:
    """Codes 0, 1, ... in order of decreasing degree (ties: lower index)."""
    codes = np.empty(len(degree), dtype=np.int64)
    codes[np.argsort(-degree, kind="stable")] = np.arange(len(degree))
    return codes


def split_cluster(
    adjacency: sp.csr_matrix,
    degree: np.ndarray,
    k: int,
    capacity: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Labels (m,) in 0..k-1 that split the m > k items of one cluster, given its induced
    subgraph, into subclusters of at most `capacity` items (m <= k * capacity). `degree`
    (the items' co-occurrence degree) orders the labels when there is nothing to cluster."""
    m = adjacency.shape[0]
    labels = np.empty(m, dtype=np.int64)
    linked = np.flatnonzero(adjacency.getnnz(axis=1) > 0)
    if len(linked) > k:
        embedding = spectral_embedding(adjacency[linked][:, linked], k, rng)
        seed = torch.Generator().manual_seed(int(rng.integers(2**62)))
        centroids = kmeans(torch.from_numpy(embedding), k, iterations=100, generator=seed)
        distances = _squared_distances(embedding, centroids.numpy())
        labels[linked] = capped_labels(distances, capacity)
    else:
        labels[linked] = _by_degree(degree[linked])
    isolated = np.setdiff1d(np.arange(m), linked, assume_unique=True)
    labels[isolated] = _spread(np.bincount(labels[linked], minlength=k), len(isolated))
    return labels


def hierarchical_codes(graph: sp.csr_matrix, levels: int, k: int, seed: int = 0) -> np.ndarray:
    """Codes (n, levels), unique rows, from recursive spectral clustering of `graph` with k
    clusters per split."""
    n = graph.shape[0]
    if n > k**levels:
        raise ValueError(
            f"{n:,} items do not fit in codebook_size {k} ** levels {levels} = "
            f"{k**levels:,} identifiers; raise codebook_size or levels"
        )
    degree = np.asarray(graph.sum(axis=1)).ravel()
    codes = np.zeros((n, levels), dtype=np.int64)
    groups = [np.arange(n)]  # clusters to split at this level
    for level in range(levels):
        start, children = time.perf_counter(), []
        for number, members in enumerate(groups):
            if len(members) <= k:
                codes[members, level] = _by_degree(degree[members])
                continue  # unique within the parent; zeros below
            rng = np.random.default_rng([seed, level, number])
            capacity = k ** (levels - 1 - level)
            labels = split_cluster(graph[members][:, members], degree[members], k, capacity, rng)
            codes[members, level] = labels
            order = np.argsort(labels, kind="stable")
            bounds = np.flatnonzero(np.diff(labels[order])) + 1
            children.extend(np.split(members[order], bounds))
        log.info(
            "CID level %d: %d clusters split, %d small ones numbered, %.2f s",
            level,
            sum(len(g) > k for g in groups),
            sum(len(g) <= k for g in groups),
            time.perf_counter() - start,
        )
        groups = children
    return codes


class CIDTokenizer(Tokenizer):
    """Collaborative indexing (P5-CID): identifiers of `levels` codes from recursive spectral
    clustering of the item co-occurrence graph, `codebook_size` clusters per split.

    Args:
        levels: codes per identifier (before a "suffix" uniqueness level).
        codebook_size: clusters per split, the size of every codebook.
        window: items at most this many positions apart in a user's training part
            co-occur (1: consecutive items).
        seed: seeds the eigensolver start and k-means; same seed, same identifiers.
        unique: the uniqueness step, "nearest" or "suffix" (TIGER's extra level). The
            clustering already yields unique identifiers, so neither moves an item; "suffix"
            adds a level of zeros for layouts that expect one.
    """

    def __init__(
        self,
        levels: int = 3,
        codebook_size: int = 32,
        window: int = 1,
        seed: int = 0,
        unique: UniqueMethod = "nearest",
    ) -> None:
        for name, value, least in (
            ("levels", levels, 1),
            ("codebook_size", codebook_size, 2),
            ("window", window, 1),
        ):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        bits = levels * int(np.ceil(np.log2(codebook_size)))
        if bits > 64:
            raise ValueError(
                f"levels * ceil(log2(codebook_size)) must be <= 64 (identifiers pack into 64 "
                f"bits), got levels {levels} of codebook_size {codebook_size}: {bits} bits"
            )
        if unique not in ("nearest", "suffix"):
            raise ValueError(f"unique must be 'nearest' or 'suffix', got {unique!r}")
        self.levels, self.codebook_size, self.window = levels, codebook_size, window
        self.seed, self.unique = seed, unique

    def fit(self, dataset: Dataset) -> Identifiers:
        """Unique identifiers of the dataset's items. `report_` holds the statistics, and
        in `report_.extra` the graph size and the seconds of each step."""
        identifiers = super().fit(dataset)
        assert self.report_ is not None
        self.report_ = dataclasses.replace(self.report_, extra=self._extra)
        return identifiers

    def _codes(self, dataset: Dataset):
        start = time.perf_counter()
        graph = cooccurrence_graph(dataset, self.window)
        isolated = int((graph.getnnz(axis=1) == 0).sum())
        graph_seconds = time.perf_counter() - start
        log.info(
            "CID graph of %s: %d items, %d edges, %d without co-occurrence, %.2f s",
            dataset.name,
            dataset.n_items,
            graph.nnz // 2,
            isolated,
            graph_seconds,
        )
        codes = hierarchical_codes(graph, self.levels, self.codebook_size, self.seed)
        self._extra = dict(
            edges=graph.nnz // 2,
            isolated_items=isolated,
            graph_seconds=graph_seconds,
            clustering_seconds=time.perf_counter() - start - graph_seconds,
        )
        return codes, (self.codebook_size,) * self.levels, None, None
