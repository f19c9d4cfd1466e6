"""The self-improvement step: the model proposes identifiers for every item (`evidence`),
the levers gate the proposals (free-only, margin, levels that may move) and the core's
`assign_unique` keeps the identifiers unique (`refine_step`)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ._core import IdentifierTrie, assign_unique
from .data import Dataset, Samples, Windows
from .diagnostics import regeneration
from .evidence import collaborative_proposals, collaborative_scores, fixed_levels, propose
from .identifiers import Identifiers
from .models import ItemRecModel, Model, RecModel
from .tasks import TaskBuilder

if TYPE_CHECKING:
    from .config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineReport:
    """What one refinement round did."""

    changed: int  # items whose identifier changed
    rank0: int  # items that got their best candidate
    fallback: int  # items that got none of their candidates (nearest free identifier)
    kept: int  # items that kept their identifier (the model scored it best available)
    frozen: int  # items without evidence (no text; item-level: no training occurrence)
    codes_used: tuple[int, ...]  # distinct codes per level after the round
    entropy_bits: tuple[float, ...]  # code entropy per level after the round
    mean_rank0_logprob: float  # mean log-prob of the best candidate
    seconds: float
    # how the beams matched the identifiers before the round (diagnostics.regeneration)
    regeneration: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def combine_evidence(item2id: np.ndarray, seqrec: np.ndarray, evidence: str) -> np.ndarray:
    """Candidate scores from the item2id log-probs and the collaborative ones: "item2id",
    "seqrec" or "both" (their sum). Unfilled beams stay -inf; items without collaborative
    evidence keep their item2id scores."""
    if evidence == "item2id":
        return item2id
    combined = seqrec if evidence == "seqrec" else item2id + seqrec
    usable = np.isfinite(item2id) & ~np.isnan(seqrec)
    return np.where(usable, combined, item2id)


def free_only(
    identifiers: Identifiers, items: np.ndarray, candidates: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Scores where a candidate that is another item's current identifier is -inf: a move
    then never displaces another item, so one confident item cannot set off a cascade."""
    n, k, levels = candidates.shape
    trie = IdentifierTrie(identifiers.codes, identifiers.codebook_sizes)
    owner = trie.lookup(candidates.reshape(-1, levels)).reshape(n, k)
    return np.where((owner >= 0) & (owner != items[:, None]), -np.inf, scores)


def keep_levels(
    current: np.ndarray, candidates: np.ndarray, scores: np.ndarray, refine_levels: int
) -> np.ndarray:
    """Scores where a candidate that changes any of the first L - `refine_levels` codes of
    its item's `current` identifier (n, L) is -inf: only the last levels may move."""
    fixed = fixed_levels(current.shape[1], refine_levels)
    same = (candidates[:, :, :fixed] == current[:, None, :fixed]).all(-1)
    return np.where(same, scores, -np.inf)


def gate_by_margin(scores: np.ndarray, margin: float) -> np.ndarray:
    """Scores where an item whose best beam does not beat its current identifier (the last
    column, from `propose(keep_current=True)`) by `margin` can only keep it."""
    stay = scores[:, :-1].max(1, initial=-np.inf) < scores[:, -1] + margin
    gated = scores.copy()
    gated[stay, :-1] = -np.inf
    return gated


def assign(
    identifiers: Identifiers,
    items: np.ndarray,
    candidates: np.ndarray,
    scores: np.ndarray,
    seconds: float = 0.0,
) -> tuple[Identifiers, RefineReport]:
    """New unique identifiers: `items` choose among their candidates; every other item keeps
    its identifier (reserved)."""
    frozen = np.setdiff1d(np.arange(identifiers.n_items), items)
    reserved = identifiers.codes[frozen] if len(frozen) else None
    codes_sub, rank = assign_unique(candidates, scores, identifiers.codebook_sizes, reserved)
    codes = identifiers.codes.copy()
    codes[items] = codes_sub
    new = Identifiers(codes, identifiers.codebook_sizes, identifiers.item_ids, identifiers.prefixes)
    stats = new.stats()
    changed = (codes != identifiers.codes).any(1)
    report = RefineReport(
        changed=int(changed.sum()),
        kept=int((~changed[items]).sum()) if len(items) else 0,
        rank0=int((rank == 0).sum()),
        fallback=int((rank < 0).sum()),
        frozen=len(frozen),
        codes_used=stats.codes_used,
        entropy_bits=tuple(round(e, 4) for e in stats.entropy_bits),
        mean_rank0_logprob=float(scores[:, 0].mean()) if len(scores) else 0.0,
        seconds=round(seconds, 2),
    )
    return new, report


def token_proposals(
    model: RecModel,
    tasks: TaskBuilder,
    items: np.ndarray,
    identifiers: Identifiers,
    config: TrainConfig,
    prefix_samples: Samples | None = None,
    round_: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates and scores of a token-level model for `items`: item2id beams, with the
    seqrec evidence of `prefix_samples` as `config.refine.evidence` asks."""
    cand, scores = propose(
        model,
        tasks,
        items,
        identifiers,
        config.refine.beams,
        config.refine.diversity,
        config.eval.batch_size,
        bool(config.refine.keep_current),
        progress=progress,
    )
    if config.refine.evidence != "item2id":
        if prefix_samples is None:
            raise ValueError(f"refine_evidence={config.refine.evidence!r} needs prefix samples")
        seqrec = collaborative_scores(
            model,
            tasks,
            prefix_samples,
            items,
            cand,
            config.refine.occurrences,
            config.eval.batch_size,
            seed=[config.seed, round_],
        )
        scores = combine_evidence(scores, seqrec, config.refine.evidence)
    return cand, scores


def item_proposals(
    model: ItemRecModel,
    tasks: TaskBuilder,
    windows: Windows,
    identifiers: Identifiers,
    config: TrainConfig,
    round_: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items, candidates and scores of an item-level model: `collaborative_proposals` with
    `config`'s levers (seeded by the round, so a resumed run proposes alike)."""
    refine = config.refine
    return collaborative_proposals(
        model,
        tasks,
        windows,
        identifiers,
        refine.beams,
        bool(refine.keep_current),
        config.eval.batch_size,
        refine.levels,
        refine.contrast,
        config.seed + round_,
        refine.text_occurrences,
    )


def refine_step(
    identifiers: Identifiers,
    items: np.ndarray,
    candidates: np.ndarray,
    scores: np.ndarray,
    config: TrainConfig,
    seconds: float = 0.0,
) -> tuple[Identifiers, RefineReport]:
    """The levers of `config` on the proposals (free-only, margin), then `assign`; the
    report says how often the proposals regenerated the current identifiers."""
    regen = regeneration(candidates[:, : config.refine.beams], identifiers.codes[items])
    if config.refine.levels is not None:
        scores = keep_levels(identifiers.codes[items], candidates, scores, config.refine.levels)
    if config.refine.free_only:
        scores = free_only(identifiers, items, candidates, scores)
    if config.refine.margin is not None:
        scores = gate_by_margin(scores, config.refine.margin)
    new, report = assign(identifiers, items, candidates, scores, seconds)
    return new, replace(report, regeneration=regen)


def refine(
    model: Model,
    tasks: TaskBuilder,
    identifiers: Identifiers,
    dataset: Dataset,
    config: TrainConfig,
    round_: int = 0,
) -> tuple[Identifiers, RefineReport]:
    """One refinement of every item in one process, as the training loop does it with
    `config`'s evidence and levers (the loop shares the proposals out over its processes)."""
    start = time.perf_counter()
    if model.kind == "item":
        windows = dataset.train_windows(config.data.max_history + 1)
        items, cand, scores = item_proposals(model, tasks, windows, identifiers, config, round_)
    else:
        items = tasks.alignment_items("item2id")
        prefix = dataset.train_samples() if config.refine.evidence != "item2id" else None
        cand, scores = token_proposals(model, tasks, items, identifiers, config, prefix, round_)
    return refine_step(identifiers, items, cand, scores, config, time.perf_counter() - start)
