"""What a refinement did and whether it helped: how well the model regenerates the current
identifiers from the item2id prompt, validation split by targets that moved or kept their
identifier, and the semantic consistency of the identifiers (items sharing a prefix should
have similar text)."""

from __future__ import annotations

import numpy as np

from .metrics import ranking_metrics


def regeneration(candidates: np.ndarray, current: np.ndarray) -> dict[str, object]:
    """How the model's item2id beams (n, K, L), best first, match the current identifiers
    (n, L): top-1 and top-K exact match, and per level the share whose best beam agrees
    with the current identifier on the first 1..L codes."""
    if len(current) == 0:
        return {"top1": 0.0, "topk": 0.0, "top1_prefix": [0.0] * current.shape[1]}
    same = candidates == current[:, None, :]
    prefix = np.cumprod(same[:, 0, :], axis=1).astype(bool)
    return {
        "top1": float(same[:, 0].all(1).mean()),
        "topk": float(same.all(2).any(1).mean()),
        "top1_prefix": [round(float(v), 4) for v in prefix.mean(0)],
    }


def split_by_moved(ranks: np.ndarray, targets: np.ndarray, moved: np.ndarray) -> dict[str, float]:
    """Recall@10 and NDCG@10 of the samples whose target item `moved` (a per-item mask) and
    of those whose target kept its identifier, and the moved share of samples."""
    hit = moved[targets]
    out = {"moved_share": float(hit.mean()) if len(hit) else 0.0}
    for name, part in (("moved", hit), ("kept", ~hit)):
        metrics = ranking_metrics(ranks[part], recall_ks=(10,), ndcg_ks=(10,))
        out.update({f"{k}_{name}": v for k, v in metrics.items()})
    return out


# A target is cold-start when its item occurs at most this often as a training target.
COLD_OCCURRENCES = 5


def paired_moves(
    before: np.ndarray,
    after: np.ndarray,
    targets: np.ndarray,
    moved: np.ndarray,
    cold: np.ndarray,
) -> dict[str, dict[str, float]]:
    """The same validation targets scored twice: first-hit ranks `before` a refinement (the
    previous round's model on the old identifiers) and `after` it (the next round's model on
    the new ones), per slice: all targets, those whose item `moved` (a per-item mask), those
    whose item kept its identifier, the `cold` ones (a per-item mask) and the cold ones that
    moved. Each slice: its size and Recall@10 / NDCG@10 before and after, so the cost or gain
    of moving is read on the same items."""
    hit, frozen = moved[targets], cold[targets]
    slices = {
        "all": np.ones(len(targets), dtype=bool),
        "moved": hit,
        "kept": ~hit,
        "cold": frozen,
        "cold_moved": frozen & hit,
    }
    out = {}
    for name, part in slices.items():
        row: dict[str, float] = {"n": int(part.sum())}
        for when, ranks in (("before", before), ("after", after)):
            metrics = ranking_metrics(ranks[part], recall_ks=(10,), ndcg_ks=(10,))
            row.update({f"{k}_{when}": round(v, 5) for k, v in metrics.items()})
        out[name] = row
    return out


def cold_slice(ranks: np.ndarray, targets: np.ndarray, cold: np.ndarray) -> dict[str, float]:
    """Size, Recall@10 and NDCG@10 of the targets whose item is `cold` (a per-item mask)."""
    part = cold[targets]
    metrics = ranking_metrics(ranks[part], recall_ks=(10,), ndcg_ks=(10,))
    return {"n": int(part.sum()), **{k: round(v, 5) for k, v in metrics.items()}}


def semantic_consistency(
    codes: np.ndarray, embeddings: np.ndarray, depths: tuple[int, ...] = (1, 2)
) -> dict[str, float]:
    """Mean cosine similarity of the embeddings of item pairs that share their first `d`
    codes, over all such pairs, for each depth d; `all` is the mean over all item pairs
    (the level a random grouping would reach). Sums per group make it O(n d): the pairs of
    a group with unit vectors e_i sum to (|sum e_i|^2 - n) / 2."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    out = {}
    for depth in (0, *depths):
        if depth == 0:
            group = np.zeros(len(codes), dtype=np.int64)
        else:
            group = np.unique(codes[:, :depth], axis=0, return_inverse=True)[1].reshape(-1)
        sums = np.zeros((group.max() + 1 if len(group) else 0, unit.shape[1]))
        np.add.at(sums, group, unit)
        sizes = np.bincount(group)
        pairs = float((sizes * (sizes - 1)).sum())
        value = float(((sums**2).sum(1) - sizes).sum() / pairs) if pairs else float("nan")
        out["all" if depth == 0 else f"prefix{depth}"] = round(value, 4)
    return out
