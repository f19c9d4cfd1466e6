"""Full-ranking evaluation of samples: every target's first-hit rank in the top `beams`
(exact scores or beam search), sharded over processes, and the metrics of those ranks."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..config import TrainConfig
from ..data import Samples
from ..decoding import TrieTables, top_items, use_exact
from ..diagnostics import split_by_moved
from ..identifiers import Identifiers
from ..metrics import beam_validity, first_hit, ranking_metrics
from ..models import Model
from ..progress import progress_bar
from ..tasks import TaskBuilder
from .runtime import Processes

log = logging.getLogger("siit")


@torch.no_grad()
def rank_samples(
    rec: Model,
    tasks: TaskBuilder,
    identifiers: Identifiers,
    samples: Samples,
    config: TrainConfig,
    procs: Processes | None = None,
    desc: str = "evaluate",
    seen: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float]:
    """First-hit rank of every sample's target in its top `config.eval.beams` (-1: missed; rows
    sharded over processes, ranks gathered in order), and the shares of invalid and of
    repeated beams. `seen` (N, S): items per sample that may not be recommended."""
    procs = procs or Processes()
    rows = procs.shard(len(samples))
    exact = use_exact(config.eval.mode, rec, identifiers.n_items)
    tables = TrieTables.of(identifiers, rec.device)
    bs = config.eval.batch_size
    assert bs is not None, "TrainConfig.check resolves eval.batch_size"
    ranks, invalid, repeated = [], 0.0, 0.0
    for lo in progress_bar(
        range(0, len(rows), bs), desc=desc, enabled=config.progress and procs.main
    ):
        part = rows[lo : lo + bs]
        prompt, _ = tasks.seqrec(samples.histories[part])
        exclude = None if seen is None else seen[part]
        items, _ = top_items(rec, prompt, config.eval.beams, tables, identifiers, exact, exclude)
        bad, rep = beam_validity(items)
        invalid += bad * items.size
        repeated += rep * items.size
        ranks.append(first_hit(items, samples.targets[part]))
    gathered = procs.gather(
        (np.concatenate(ranks) if ranks else np.zeros(0, np.int64), invalid, repeated)
    )
    all_ranks = np.concatenate([g[0] for g in gathered])
    total = max(1, len(all_ranks) * config.eval.beams)
    return (
        all_ranks,
        sum(g[1] for g in gathered) / total,
        sum(g[2] for g in gathered) / total,
    )


def evaluate_samples(
    rec: Model,
    tasks: TaskBuilder,
    identifiers: Identifiers,
    samples: Samples,
    config: TrainConfig,
    procs: Processes | None = None,
    desc: str = "evaluate",
    seen: np.ndarray | None = None,
    moved: np.ndarray | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of samples (see `rank_samples`); with `moved` (a per-item mask),
    also the metrics of samples whose target moved and kept."""
    all_ranks, invalid, repeated = rank_samples(
        rec, tasks, identifiers, samples, config, procs, desc, seen
    )
    out = ranking_metrics(all_ranks)
    out["invalid_share"], out["duplicate_share"] = invalid, repeated
    if moved is not None:
        out.update(split_by_moved(all_ranks, samples.targets, moved))
    if (
        out["invalid_share"] or out["duplicate_share"]
    ) and identifiers.n_items >= config.eval.beams:
        log.error(
            "%s: %.4f of beams invalid, %.4f duplicate",
            desc,
            out["invalid_share"],
            out["duplicate_share"],
        )
    return out
