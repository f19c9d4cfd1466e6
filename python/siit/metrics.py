"""Ranking metrics of leave-one-out evaluation (one target per user, first-hit semantics)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_KS = (1, 5, 10, 20)
NDCG_KS = (5, 10, 20)


def first_hit(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each target in its ranked list (N, K); -1 when absent. A list
    that repeats an item counts its first occurrence."""
    hit = ranked == np.asarray(targets)[:, None]
    return np.where(hit.any(1), hit.argmax(1), -1)


def ranking_metrics(
    ranks: np.ndarray, recall_ks: Sequence[int] = RECALL_KS, ndcg_ks: Sequence[int] = NDCG_KS
) -> dict[str, float]:
    """Recall@k and NDCG@k of first-hit ranks (-1: not retrieved)."""
    ranks = np.asarray(ranks)
    found = ranks >= 0
    gain = np.where(found, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    out: dict[str, float] = {}
    for k in recall_ks:
        out[f"recall@{k}"] = float((found & (ranks < k)).mean()) if len(ranks) else 0.0
    for k in ndcg_ks:
        out[f"ndcg@{k}"] = float(np.where(ranks < k, gain, 0.0).mean()) if len(ranks) else 0.0
    return out


def beam_validity(items: np.ndarray) -> tuple[float, float]:
    """Share of invalid (-1) beams and of beams repeating an earlier beam's item."""
    items = np.asarray(items)
    if items.size == 0:
        return 0.0, 0.0
    ordered = np.sort(items, axis=1)
    repeats = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    return float((items < 0).mean()), float(repeats.sum() / items.size)


def most_popular_ranks(
    counts: np.ndarray, targets: np.ndarray, seen: np.ndarray | None = None, k: int = 20
) -> np.ndarray:
    """First-hit ranks (as `first_hit`) of recommending every user the `k` items with the
    highest training `counts` (ties: lower index first), skipping each user's `seen` items
    (N, S; -1 padding) when given. Chunks of rows keep memory at (chunk, n_items)."""
    targets = np.asarray(targets)
    order = np.argsort(-np.asarray(counts), kind="stable")
    n = len(order)
    if seen is None:
        return first_hit(np.broadcast_to(order[:k], (len(targets), min(k, n))), targets)
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    ranks = np.empty(len(targets), np.int64)
    step = max(1, 2**22 // max(1, n))
    for lo in range(0, len(targets), step):
        part = seen[lo : lo + step]
        hidden = np.zeros((len(part), n), bool)
        rows, cols = np.nonzero(part >= 0)
        hidden[rows, position[part[rows, cols]]] = True
        # popularity positions of the items left, the first k of them
        kept = np.sort(np.where(hidden, n, np.arange(n)), axis=1)[:, :k]
        ranked = np.where(kept < n, order[np.minimum(kept, n - 1)], -1)
        ranks[lo : lo + step] = first_hit(ranked, targets[lo : lo + step])
    return ranks
