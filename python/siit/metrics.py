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
