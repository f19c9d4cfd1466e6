"""Whether any reassignment of identifiers raises a trained item-level model's own training
log-likelihood: the collaborative evidence (`refine.contrast=0`: each item's code heads'
log-likelihood summed over its training occurrences) of each item's 20 beams and its own
identifier, then the best free-only moves (what the refinement may do today) and the best
permutation (a maximum-weight matching of items to candidate identifiers, where an item
may take another's identifier if that one moves too: swaps and cycles).

    python benches/bench_swaps.py benches/runs/default/seed-0 [more runs]

Writes benches/results/swaps.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from harness import OUT, machine_line, provenance
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from siit._core import IdentifierTrie
from siit.refine import free_only, item_proposals
from siit.runs import load_run
from siit.tasks import TaskBuilder
from siit.training.setup import load_dataset


def best_permutation(
    frozen: np.ndarray, cand: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's identifier (n, L) and score (n,) under the unique assignment of its
    candidates (n, K, L) with the largest total score; identifiers held by items that do not
    take part (`frozen`, per candidate) are out."""
    n, k, levels = cand.shape
    keys, col = np.unique(cand.reshape(-1, levels), axis=0, return_inverse=True)
    rows = np.repeat(np.arange(n), k)
    ok = np.isfinite(scores.ravel()) & ~frozen.ravel()
    rows, col, score = rows[ok], col.ravel()[ok], scores.ravel()[ok]
    # one edge per (item, identifier), its best score; costs >= 1 (zero means no edge)
    order = np.lexsort((-score, col, rows))
    rows, col, score = rows[order], col[order], score[order]
    first = np.r_[True, (rows[1:] != rows[:-1]) | (col[1:] != col[:-1])]
    rows, col, score = rows[first], col[first], score[first]
    cost = csr_matrix((score.max() - score + 1.0, (rows, col)), shape=(n, len(keys)))
    _, match = min_weight_full_bipartite_matching(cost)
    return keys[match], score.max() + 1.0 - np.asarray(cost[np.arange(n), match]).ravel()


def measure(run: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    cfg, rec, ids = load_run(run)
    data = load_dataset(cfg.dataset, cfg.data.max_history)
    tasks = TaskBuilder(rec, data, ids, cfg.network.max_text_tokens, cfg.network.max_title_tokens)
    windows = data.train_windows(cfg.data.max_history + 1)
    config = cfg.replace(rounds=1)
    for name, value in dict(contrast=0, keep_current=True, levels=None, beams=20).items():
        setattr(config.refine, name, value)
    config = config.check()
    start = time.perf_counter()
    items, cand, scores = item_proposals(rec, tasks, windows, ids, config)
    seconds = time.perf_counter() - start
    own = scores[:, -1]
    free = np.maximum(free_only(ids, items, cand, scores).max(1) - own, 0.0)
    n, k, levels = cand.shape
    holder = IdentifierTrie(ids.codes, ids.codebook_sizes).lookup(cand.reshape(-1, levels))
    taking = np.zeros(ids.n_items, dtype=bool)
    taking[items] = True
    frozen = ((holder >= 0) & ~taking[np.maximum(holder, 0)]).reshape(n, k)
    codes, best = best_permutation(frozen, cand, scores)
    swap = best - own
    moved = (codes != ids.codes[items]).any(1)
    targets = windows.items[:, 1:]
    occurrences = np.bincount(targets[targets >= 0], minlength=ids.n_items)
    return dict(
        run=str(run),
        model=cfg.model,
        options=cfg.network.options,
        items=len(items),
        own_best_share=round(float((scores[:, :-1].max(1) <= own).mean()), 4),
        log_likelihood=round(float(own.sum()), 1),
        free_only_items=int((free > 0).sum()),
        free_only_gain=round(float(free.sum()), 2),
        permutation_items=int(moved.sum()),
        permutation_gain=round(float(swap.sum()), 2),
        permutation_losing=int((swap < -1e-6).sum()),
        movers_median_occurrences=(
            float(np.median(occurrences[items][moved])) if moved.any() else None
        ),
        median_occurrences=float(np.median(occurrences[items])),
        proposal_seconds=round(seconds, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = [measure(run, args.threads) for run in args.runs]
    info = provenance()
    OUT.mkdir(exist_ok=True)
    (OUT / "swaps.json").write_text(json.dumps(dict(provenance=info, rows=rows), indent=1))
    lines = [
        "Moves that raise a trained item-level model's own training log-likelihood (code heads, "
        "summed over each item's training occurrences; 20 beams per item and its own "
        f"identifier). {machine_line(info)}.",
        "",
        "| run | items | own identifier is the best beam | training log-likelihood (nats) "
        "| free-only moves: items, gain | best permutation: items moved (of which lose), "
        "gain | median occurrences: movers / all |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['run']).parent.name}/{Path(r['run']).name} | {r['items']} | "
            f"{r['own_best_share']:.1%} | {r['log_likelihood']:.0f} | "
            f"{r['free_only_items']}, {r['free_only_gain']:.1f} | "
            f"{r['permutation_items']} ({r['permutation_losing']}), "
            f"{r['permutation_gain']:.1f} | "
            f"{r['movers_median_occurrences']} / {r['median_occurrences']} |"
        )
    (OUT / "swaps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
