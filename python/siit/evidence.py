"""The evidence a refinement weighs: candidate identifiers for each item with their scores.

Token-level models propose from the item2id prompt (`propose`, the paper), optionally with
the seqrec log-prob of each candidate after the item's own training prefixes
(`collaborative_scores`). Item-level models propose from where the recommender itself
expects each item: the hidden states before the item's own training occurrences, whose
level log-probabilities summed over those occurrences score a candidate by the training
log-likelihood the item would have under it (`collaborative_beams`), optionally against
the same evidence at random positions (`contrast_states`).

Proposals are beam searches restricted level by level to that level's codes, not to
existing identifiers. "Diverse token generation" subtracts from each code's log-prob a
penalty proportional to how many items use that code at that level (relative to uniform
use), so crowded codes must be clearly better to win.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import Samples, Windows
from .decoding import beam_search, candidate_log_probs
from .identifiers import Identifiers
from .models import ItemRecModel, RecModel
from .progress import progress_bar
from .tasks import TaskBuilder


def fixed_levels(n_levels: int, refine_levels: int | None) -> int:
    """How many leading levels stay as they are when `refine_levels` (None: all) may move."""
    return 0 if refine_levels is None else max(0, n_levels - refine_levels)


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


@torch.no_grad()
def occurrence_states(
    model: ItemRecModel, tasks: TaskBuilder, windows: Windows, batch_size: int = 64
) -> tuple[torch.Tensor, np.ndarray]:
    """The hidden state (n_occ, d) before every training occurrence of an item (each target
    of the training windows) and that item (n_occ,), sorted by item: one pass."""
    states, owners = [], []
    with model.evaluating():
        for lo in range(0, len(windows), batch_size):
            items = windows.items[lo : lo + batch_size]
            prompt, _ = tasks.seqrec_windows(items)
            hidden = model.model.encode(torch.as_tensor(prompt, device=model.device))
            after = items[:, 1 : 1 + hidden.shape[1]]
            states.append(hidden[torch.as_tensor(after >= 0, device=hidden.device)])
            owners.append(after[after >= 0])
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    order = np.argsort(owner, kind="stable")
    return torch.cat(states)[torch.as_tensor(order, device=model.device)], owner[order]


@torch.no_grad()
def text_states(
    model: ItemRecModel, items: np.ndarray, copies: int
) -> tuple[torch.Tensor, np.ndarray]:
    """The text prior's query of each item in `items`, `copies` times each: pseudo
    occurrences that `collaborative_beams` sums with the real ones, so an item's text weighs
    as much as `copies` training occurrences (states (n * copies, d), their items)."""
    with model.evaluating():
        query = model.model.text_states(torch.as_tensor(items, device=model.device))
    return query.repeat(copies, 1), np.tile(np.asarray(items, dtype=np.int64), copies)


def with_text(
    model: ItemRecModel,
    states: torch.Tensor,
    owner: np.ndarray,
    items: np.ndarray,
    copies: int,
) -> tuple[torch.Tensor, np.ndarray]:
    """Occurrence states and owners with `text_states` of `items` added, sorted by item."""
    extra, extra_owner = text_states(model, items, copies)
    owner = np.concatenate([owner, extra_owner])
    order = np.argsort(owner, kind="stable")
    states = torch.cat([states, extra.to(states.dtype)])
    return states[torch.as_tensor(order, device=states.device)], owner[order]


@torch.no_grad()
def occurrence_log_probs(
    model: ItemRecModel,
    states: torch.Tensor,
    owner: torch.Tensor,
    prefixes: torch.Tensor,
    level: int,
    chunk: int,
) -> torch.Tensor:
    """Level-`level` log-probabilities (n, K, V_level) after each of n items' K prefixes
    (n, K, level) of global code ids, summed over the items' occurrences: hidden states
    `states` (m, d) of occurrences of items `owner` (m,) in 0..n-1, `chunk` at a time."""
    net = model.model
    n, k = prefixes.shape[:2]
    out = torch.zeros(n, k, model.codebook_sizes[level], dtype=torch.float64, device=states.device)
    cond = net.codes(prefixes).sum(2) if level and net.conditional else None  # (n, K, d)
    with model.evaluating():
        for a in range(0, len(owner), chunk):
            o = owner[a : a + chunk]
            query = states[a : a + chunk, None, :]
            query = query.expand(-1, k, -1) if cond is None else query + cond[o]
            out.index_add_(0, o, net.level_log_probs(query, level).double())
    return out


def _blocks(model: ItemRecModel, owner: np.ndarray, n_items: int, width: int, max_elements: int):
    """(first item, end item, occurrence slice, occurrences' owners relative to the block,
    chunk) of item blocks whose (items or occurrences, width, codes) tensors stay under
    `max_elements`; occurrences are sorted by item."""
    per_block = max(1, max_elements // (width * max(model.codebook_sizes)))
    starts = np.arange(0, n_items, per_block)
    bounds = np.searchsorted(owner, np.r_[starts, n_items])
    for i, lo in enumerate(starts.tolist()):
        hi, occ = min(lo + per_block, n_items), slice(int(bounds[i]), int(bounds[i + 1]))
        yield lo, hi, occ, torch.as_tensor(owner[occ] - lo, device=model.device), per_block


def _evidence(
    model: ItemRecModel,
    states: torch.Tensor,
    local: torch.Tensor,
    prefixes: torch.Tensor,
    level: int,
    chunk: int,
    contrast: torch.Tensor | None,
) -> torch.Tensor:
    """`occurrence_log_probs` of a block of items; with `contrast` (m, d), the hidden states
    of m random training positions, minus each item's occurrence count times the mean
    log-prob there: how much likelier the model finds a code at the item's occurrences than
    anywhere, so that identifiers predicted everywhere (popular items') do not win every
    item."""
    logp = occurrence_log_probs(model, states, local, prefixes, level, chunk)
    if contrast is None:
        return logp
    n, m = prefixes.shape[0], len(contrast)
    owner = torch.arange(n, device=contrast.device).repeat_interleave(m)
    anywhere = occurrence_log_probs(model, contrast.repeat(n, 1), owner, prefixes, level, chunk)
    counts = torch.bincount(local, minlength=n).double()
    return logp - counts[:, None, None] * anywhere / m


def contrast_states(states: torch.Tensor, positions: int, seed: int = 0) -> torch.Tensor | None:
    """`positions` hidden states drawn at random (seeded) among the training occurrences, the
    positions where `_evidence` measures how likely an identifier is anywhere; None for 0."""
    if positions <= 0 or len(states) == 0:
        return None
    pick = np.random.default_rng(seed).choice(len(states), min(positions, len(states)), False)
    return states[torch.as_tensor(np.sort(pick), device=states.device)]


def occurrence_scores(
    model: ItemRecModel,
    states: torch.Tensor,
    owner: np.ndarray,
    codes: np.ndarray,
    max_elements: int = 1 << 24,
    contrast: torch.Tensor | None = None,
) -> np.ndarray:
    """The training log-likelihood (n_items, K) of each item's occurrences under each of its
    K candidate identifiers (n_items, K, L): level log-probs summed over levels and
    occurrences (0 for an item that never occurs); with `contrast`, see `_evidence`."""
    n, k = codes.shape[:2]
    tokens = torch.as_tensor(model.code_tokens(codes), device=model.device)
    total = np.zeros((n, k))
    for lo, hi, occ, local, chunk in _blocks(model, owner, n, k, max_elements):
        block = tokens[lo:hi]
        score = torch.zeros(hi - lo, k, dtype=torch.float64, device=model.device)
        for level in range(model.n_levels):
            logp = _evidence(model, states[occ], local, block[:, :, :level], level, chunk, contrast)
            code = block[:, :, level] - int(model.level_offsets[level])
            score += logp.gather(2, code[..., None])[..., 0]
        total[lo:hi] = score.cpu().numpy()
    return total


def collaborative_beams(
    model: ItemRecModel,
    states: torch.Tensor,
    owner: np.ndarray,
    n_items: int,
    beams: int,
    max_elements: int = 1 << 24,
    fixed: np.ndarray | None = None,
    contrast: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `beams` identifiers (n_items, beams, L) under which each item's training
    occurrences are most likely, by beam search over levels on the summed evidence, with
    that log-likelihood (n_items, beams); any codes, not only existing identifiers. Beams
    that the codebooks cannot fill score -inf. `fixed` (n_items, F): codes every beam of an
    item keeps at its first F levels; with `contrast`, the evidence of `_evidence`."""
    levels = model.n_levels
    codes = np.zeros((n_items, beams, levels), dtype=np.int64)
    out = np.full((n_items, beams), -np.inf)
    for lo, hi, occ, local, chunk in _blocks(model, owner, n_items, beams, max_elements):
        prefixes = torch.zeros(hi - lo, 1, 0, dtype=torch.long, device=model.device)
        scores = torch.zeros(hi - lo, 1, dtype=torch.float64, device=model.device)
        for level in range(levels):
            size = model.codebook_sizes[level]
            logp = _evidence(model, states[occ], local, prefixes, level, chunk, contrast)
            if fixed is not None and level < fixed.shape[1]:
                code = torch.as_tensor(fixed[lo:hi, level], device=logp.device)
                other = torch.arange(size, device=logp.device) != code[:, None, None]
                logp = logp.masked_fill(other, float("-inf"))
            total = (scores[..., None] + logp).view(hi - lo, -1)
            scores, idx = total.topk(min(beams, total.shape[1]), dim=1)
            token = idx % size + int(model.level_offsets[level])
            kept = prefixes.gather(1, (idx // size)[..., None].expand(-1, -1, level))
            prefixes = torch.cat([kept, token[..., None]], 2)
        width = scores.shape[1]
        codes[lo:hi, :width] = prefixes.cpu().numpy() - model.level_offsets
        out[lo:hi, :width] = scores.cpu().numpy()
    return codes, out


def collaborative_proposals(
    model: ItemRecModel,
    tasks: TaskBuilder,
    windows: Windows,
    identifiers: Identifiers,
    beams: int = 20,
    keep_current: bool = True,
    batch_size: int = 64,
    refine_levels: int | None = None,
    contrast: int = 0,
    seed: int = 0,
    text_occurrences: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items that occur in training (the others keep their identifiers), their candidates
    (n, K, L) and scores (n, K): `collaborative_beams` (with `refine_levels`, only over the
    last levels, the others kept; with `contrast` > 0, against the evidence at that many
    random positions, see `_evidence`; with `text_occurrences` > 0, each item with text
    also has that many copies of its text prior's query among its occurrences, and items
    with text but no occurrence take part too) and, with `keep_current`, the current
    identifier scored the same way in the last column."""
    states, owner = occurrence_states(model, tasks, windows, batch_size)
    anywhere = contrast_states(states, contrast, seed)  # real positions only
    if text_occurrences > 0:
        items = tasks.alignment_items("item2id")
        states, owner = with_text(model, states, owner, items, text_occurrences)
    fixed = identifiers.codes[:, : fixed_levels(identifiers.n_levels, refine_levels)]
    cand, scores = collaborative_beams(
        model,
        states,
        owner,
        identifiers.n_items,
        beams,
        fixed=fixed if fixed.size else None,
        contrast=anywhere,
    )
    if keep_current:
        current = identifiers.codes[:, None, :]
        cand = np.concatenate([cand, current], 1)
        kept = occurrence_scores(model, states, owner, current, contrast=anywhere)
        scores = np.concatenate([scores, kept], 1)
    items = np.unique(owner)
    return items, cand[items], scores[items]
