"""The self-improvement step: the model proposes identifiers for every item from its
item2id prompt, and the core's `assign_unique` keeps them unique.

Proposals are beam searches restricted level by level to that level's codes, not to
existing identifiers. "Diverse token generation" subtracts from each code's log-prob a
penalty proportional to how many items use that code at that level (relative to uniform
use), so crowded codes must be clearly better to win.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ._core import IdentifierTrie, assign_unique
from .data import Samples
from .decoding import beam_search, candidate_log_probs
from .identifiers import Identifiers
from .models import RecModel
from .progress import progress_bar
from .tasks import TaskBuilder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineReport:
    """What one refinement round did."""

    changed: int  # items whose identifier changed
    rank0: int  # items that got their best candidate
    fallback: int  # items that got none of their candidates (nearest free identifier)
    kept: int  # items that kept their identifier (the model scored it best available)
    frozen: int  # items without text, which keep their identifier
    codes_used: tuple[int, ...]  # distinct codes per level after the round
    entropy_bits: tuple[float, ...]  # code entropy per level after the round
    mean_rank0_logprob: float  # mean log-prob of the best candidate
    seconds: float
    # how the beams matched the identifiers before the round (diagnostics.regeneration)
    regeneration: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def usage_penalty(
    identifiers: Identifiers, weight: float, device: torch.device
) -> list[torch.Tensor]:
    """Per level (V_t,): `weight` x (items using the code) / (items per code if uniform)."""
    out = []
    for level, size in enumerate(identifiers.codebook_sizes):
        counts = np.bincount(identifiers.codes[:, level], minlength=size)
        out.append(torch.as_tensor(weight * counts * size / identifiers.n_items, device=device))
    return out


@torch.no_grad()
def current_scores(
    model: RecModel, prompt: np.ndarray, target: np.ndarray, penalty: list[torch.Tensor] | None
) -> np.ndarray:
    """Log-prob (minus the penalty) of each prompt's current identifier tokens (B, L)."""
    with model.evaluating():
        score = model.token_log_probs(prompt, target)
    if penalty is not None:
        codes = torch.as_tensor(target - model.level_offsets, device=score.device)
        score = score - torch.stack([penalty[i][codes[:, i]] for i in range(codes.shape[1])], 1)
    return score.sum(1).cpu().numpy()


def propose(
    model: RecModel,
    tasks: TaskBuilder,
    items: np.ndarray,
    identifiers: Identifiers,
    beams: int = 20,
    diversity: float = 0.0,
    batch_size: int = 64,
    keep_current: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (len(items), k, L) and their scores for `items`: the top `beams` of a
    level-restricted beam search and, with `keep_current`, the item's current identifier
    scored by the model (so an item moves only when the model prefers another identifier,
    and a collision-free assignment always exists)."""
    penalty = usage_penalty(identifiers, diversity, model.device) if diversity > 0 else None
    levels = identifiers.n_levels
    k = beams + int(keep_current)
    candidates = np.zeros((len(items), k, levels), dtype=np.int64)
    scores = np.full((len(items), k), -np.inf)
    with model.evaluating():
        for lo in progress_bar(range(0, len(items), batch_size), desc="refine", enabled=progress):
            prompt, target = tasks.item2id(items[lo : lo + batch_size])
            found = beam_search(model, prompt, beams, penalty=penalty)
            width = found.codes.shape[1]
            candidates[lo : lo + batch_size, :width] = found.codes
            scores[lo : lo + batch_size, :width] = found.scores
            if keep_current:
                candidates[lo : lo + batch_size, -1] = identifiers.codes[
                    items[lo : lo + batch_size]
                ]
                scores[lo : lo + batch_size, -1] = current_scores(model, prompt, target, penalty)
    return candidates, scores


def collaborative_scores(
    model: RecModel,
    tasks: TaskBuilder,
    samples: Samples,
    items: np.ndarray,
    candidates: np.ndarray,
    per_item: int = 8,
    batch_size: int = 64,
    seed: int | list[int] = 0,
) -> np.ndarray:
    """Where the recommender expects each item: the mean seqrec log-prob (n, K) of the
    item's candidates (n, K, L) after the histories of up to `per_item` of its training
    samples (a seeded random choice); NaN for an item that is never a training target."""
    slot = np.full(tasks.n_items, -1)
    slot[items] = np.arange(len(items))
    owner = slot[samples.targets]
    rows = np.flatnonzero(owner >= 0)
    # one random key per training sample, so that the choice does not depend on which
    # items this process holds (a torchrun job picks what one process would)
    keys = np.random.default_rng(seed).random(len(samples.targets))
    rows = rows[np.lexsort((keys[rows], owner[rows]))]
    group = owner[rows]
    first = np.r_[True, group[1:] != group[:-1]] if len(rows) else np.zeros(0, bool)
    rank = np.arange(len(rows)) - np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
    keep = rows[rank < per_item]
    sums = np.zeros(candidates.shape[:2])
    for lo in range(0, len(keep), batch_size):
        part = keep[lo : lo + batch_size]
        prompt, _ = tasks.seqrec(samples.histories[part])
        np.add.at(sums, owner[part], candidate_log_probs(model, prompt, candidates[owner[part]]))
    counts = np.bincount(owner[keep], minlength=len(items))[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


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


def refine(
    model: RecModel,
    tasks: TaskBuilder,
    identifiers: Identifiers,
    beams: int = 20,
    diversity: float = 0.0,
    batch_size: int = 64,
    keep_current: bool = True,
) -> tuple[Identifiers, RefineReport]:
    """One refinement round over all items with text (single process)."""
    start = time.perf_counter()
    items = tasks.alignment_items("item2id")
    candidates, scores = propose(
        model, tasks, items, identifiers, beams, diversity, batch_size, keep_current, progress=False
    )
    return assign(identifiers, items, candidates, scores, time.perf_counter() - start)
