"""Beam search over identifiers, constrained by the core's trie on the model's device.

`TrieTables` holds `IdentifierTrie.tables()` as device tensors; one decoding step of a batch
of beams is a gather (dense levels) or a gather plus a scatter (CSR levels), STATIC-style:
no Python per beam or per code. Two front ends share it:

- `beam_search`: the project's fixed-length beam search (L steps, KV cache, top-k over the
  allowed codes of each level). Without tables it searches each level's whole codebook,
  which is what refinement needs.
- `TrieLogitsProcessor`: the same masks as a `transformers.LogitsProcessor`, for users who
  call `model.generate`.

`dict_trie_allowed_fn` is the public baseline (`prefix_allowed_tokens_fn` over a nested
dict), kept for the comparison benchmark and tests; `generate` scores its beams over the
whole vocabulary, where the two front ends above use each level's softmax.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch

from ._core import IdentifierTrie
from .identifiers import Identifiers
from .models import NEG_INF, ItemRecModel, Model, RecModel
from .steps import steps_for


class TrieTables:
    """A trie's decoding tables on a device."""

    def __init__(
        self, trie: IdentifierTrie, device: str | torch.device = "cpu", dense_limit: int = 1 << 22
    ) -> None:
        raw = trie.tables(dense_limit)
        self.device = torch.device(device)
        self.sizes = [int(v) for v in raw["codebook_sizes"]]
        self.max_children = [int(v) for v in raw["max_children"]]

        def put(name: str) -> torch.Tensor:
            return torch.as_tensor(raw[name], device=self.device)

        levels = range(len(self.sizes))
        self.offsets = [put(f"offsets_{t}") for t in levels]
        self.codes = [put(f"codes_{t}") for t in levels]
        self.dense = [put(f"dense_{t}") if f"dense_{t}" in raw else None for t in levels]
        self.leaf_items = put("leaf_items")
        self._arange = [torch.arange(m, device=self.device) for m in self.max_children]

    @classmethod
    def of(cls, identifiers: Identifiers, device: str | torch.device = "cpu") -> TrieTables:
        return cls(IdentifierTrie(identifiers.codes, identifiers.codebook_sizes), device)

    @property
    def n_levels(self) -> int:
        return len(self.sizes)

    @cached_property
    def parents(self) -> list[torch.Tensor]:
        """Per level t, the depth-t parent of each depth-(t + 1) node (a position in
        `codes[t]`): the node whose `offsets[t]` range holds it."""
        return [
            torch.searchsorted(
                self.offsets[t], torch.arange(len(self.codes[t]), device=self.device), right=True
            )
            - 1
            for t in range(self.n_levels)
        ]

    @cached_property
    def item_nodes(self) -> list[torch.Tensor]:
        """Per level t, the depth-(t + 1) node on each item's identifier path (n_items,), -1
        for an item without one: a node at depth t + 1 is a position in `codes[t]`, and its
        parent is the node whose `offsets[t]` range holds it."""
        leaves = self.leaf_items
        n_items = int(leaves.max()) + 1 if len(leaves) else 0
        node = torch.full((n_items,), -1, dtype=torch.long, device=self.device)
        node[leaves] = torch.arange(len(leaves), device=self.device)
        nodes = [node]
        for t in range(self.n_levels - 1, 0, -1):
            parent = torch.searchsorted(self.offsets[t], node.clamp(min=0), right=True) - 1
            node = torch.where(node >= 0, parent, -1)
            nodes.append(node)
        return nodes[::-1]

    @cached_property
    def subtree_items(self) -> list[torch.Tensor]:
        """Per level t, how many items lie under each depth-(t + 1) node."""
        return [
            torch.bincount(nodes[nodes >= 0], minlength=len(self.codes[t]))
            for t, nodes in enumerate(self.item_nodes)
        ]

    @cached_property
    def allowed(self) -> list[torch.Tensor]:
        """Per level t, which codes (n_t, V_t) continue each depth-t node (the root alone
        for t = 0) to an identifier: the support of a trie-normalized level softmax."""
        out = []
        for t in range(self.n_levels):
            rows = 1 if t == 0 else len(self.codes[t - 1])
            mask = torch.zeros(rows, self.sizes[t], dtype=torch.bool, device=self.device)
            mask[self.parents[t], self.codes[t].long()] = True
            out.append(mask)
        return out

    def excluded_nodes(self, exclude: torch.Tensor) -> list[torch.Tensor]:
        """Per level t, the keys (row << 32) + node of the depth-(t + 1) nodes all of whose
        items `exclude` (B, S; -1 padding) bans in that row: a beam entering one could only
        end on a banned item."""
        row = torch.arange(len(exclude), device=exclude.device)[:, None].expand_as(exclude)
        pairs = ((row << 32) + exclude)[exclude >= 0].unique()  # a repeated item counts once
        rows, items = pairs >> 32, pairs & 0xFFFFFFFF
        out = []
        for nodes, counts in zip(self.item_nodes, self.subtree_items, strict=True):
            node = nodes[items]
            key, banned = ((rows << 32) + node)[node >= 0].unique(return_counts=True)
            out.append(key[banned == counts[key & 0xFFFFFFFF]])
        return out

    def children(self, node: torch.Tensor, level: int) -> torch.Tensor:
        """Child node of each depth-`level` node (B,) for every code (B, V); -1 where the
        code leads to no identifier."""
        dense = self.dense[level]
        if dense is not None:
            return dense[node]
        size = self.sizes[level]
        start = self.offsets[level][node]
        pos = start[:, None] + self._arange[level]
        valid = pos < self.offsets[level][node + 1][:, None]
        code = self.codes[level][pos.clamp(max=len(self.codes[level]) - 1)]
        slot = torch.where(valid, code, size)  # invalid positions land in a spare column
        out = torch.full((len(node), size + 1), -1, dtype=torch.long, device=node.device)
        out.scatter_(1, slot, torch.where(valid, pos, -1))
        return out[:, :size]

    def step(self, node: torch.Tensor, code: torch.Tensor, level: int) -> torch.Tensor:
        """The child (B,) of each depth-`level` node (B,) by its code (B,); -1 where the
        node is -1 or the code leads to no identifier."""
        valid = (node >= 0) & (code >= 0) & (code < self.sizes[level])
        code = code.clamp(0, self.sizes[level] - 1).long()
        child = self.children(node.clamp(min=0), level).gather(1, code[:, None])[:, 0]
        return torch.where(valid, child, -1)

    def path(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """The nodes (B,) each prefix (B, t) passes through, depth 0 (the root) to t; -1
        from where the prefix leaves the trie."""
        out = [torch.zeros(len(codes), dtype=torch.long, device=codes.device)]
        for level in range(codes.shape[1]):
            out.append(self.step(out[-1], codes[:, level], level))
        return out

    def walk(self, codes: torch.Tensor) -> torch.Tensor:
        """Node reached by each prefix (B, t); -1 where the prefix is not in the trie."""
        return self.path(codes)[-1]


class BeamResult:
    """Beams of a batch, best first: codes (B, K, L), scores (B, K) summed log-probs, items
    (B, K) or None when the search was not constrained to a trie. Beams that could not be
    filled (fewer valid identifiers than K) have score -inf and item -1."""

    def __init__(self, codes: np.ndarray, scores: np.ndarray, items: np.ndarray | None) -> None:
        self.codes, self.scores, self.items = codes, scores, items


def _score_dtype(model: Model) -> torch.dtype:
    dtype = next(model.model.parameters()).dtype
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.no_grad()
def candidate_log_probs(
    model: Model, prompt: np.ndarray, codes: np.ndarray, shared_prompt: bool = True
) -> np.ndarray:
    """Log-prob (B, K) of K candidate identifiers (B, K, L) after each prompt (B, P), scored
    level by level over that level's codes as in beam search: each prompt runs once and its
    candidates continue from it (`shared_prompt` as in `beam_search`). Candidates need not
    be items, so an item-level model's dense head takes no part."""
    b, k, levels = codes.shape
    c = torch.as_tensor(codes, device=model.device)
    with model.evaluating():
        steps = steps_for(model, prompt, shared_prompt)
        total = steps.first().gather(1, c[:, :, 0]).double()
        rows = torch.arange(b, device=model.device).repeat_interleave(k)
        for t in range(1, levels):
            logp = steps.next(rows, c[:, :, t - 1].reshape(-1), t - 1).view(b, k, -1)
            rows = torch.arange(b * k, device=model.device)
            total += logp.gather(2, c[:, :, t : t + 1])[..., 0]
    return total.cpu().numpy()


@torch.no_grad()
def beam_search(
    model: Model,
    prompt: np.ndarray,
    beams: int,
    tables: TrieTables | None = None,
    penalty: Sequence[torch.Tensor] | None = None,
    exclude: np.ndarray | None = None,
    shared_prompt: bool = True,
) -> BeamResult:
    """Fixed-length beam search of identifiers for left-padded prompts (B, P).

    At step t only level-t identifier tokens compete, scored by a log-softmax over that
    level's codes (as the model is trained); with `tables`, only codes that extend a valid
    identifier; `penalty` (one (V_t,) tensor per level) is subtracted from the log-probs;
    `exclude` (B, S) item indices (-1 padding) never end a beam: at every level, a prefix
    whose items are all excluded is masked, so the beams go to prefixes that can still end
    on an allowed item (needs `tables`). An item-level model with a dense head adds each
    final beam's item's dense log-prob (with `tables`) and ranks the beams again by the
    sum; the search itself runs on the level heads. With `shared_prompt` (GPT-2, Llama and
    T5 models) a user's beams share one copy of the prompt's keys/values; False keeps
    transformers' per-beam cache (the reference path: same beams and scores, slower).
    """
    if beams < 1:
        raise ValueError(f"beams must be >= 1, got {beams}")
    if exclude is not None and tables is None:
        raise ValueError("exclude needs trie tables: items exist only in a trie")
    with model.evaluating():
        steps = steps_for(model, prompt, shared_prompt)
        logp_next = steps.first()
        b, device = len(prompt), model.device
        row = torch.arange(b, device=device)[:, None]
        banned = None
        if exclude is not None:
            banned = tables.excluded_nodes(torch.as_tensor(exclude, device=device))
        scores = torch.zeros(b, 1, device=device, dtype=_score_dtype(model))
        node = torch.zeros(b, 1, dtype=torch.long, device=device)
        codes = torch.zeros(b, 1, 0, dtype=torch.long, device=device)
        for t in range(model.n_levels):
            k, size = scores.shape[1], model.codebook_sizes[t]
            logp = logp_next.view(b, k, size)
            if penalty is not None:
                logp = logp - penalty[t].to(logp.dtype)
            if tables is not None:
                child = tables.children(node.view(-1), t).reshape(b, k, size)
                logp = logp.masked_fill(child < 0, NEG_INF)
                if banned is not None:
                    # (row, node) pairs as one key each: a batched membership test
                    key = child.clamp(min=0) + (row << 32)[..., None]
                    logp = logp.masked_fill(torch.isin(key, banned[t]), NEG_INF)
            total = (scores[..., None] + logp).view(b, k * size)
            scores, idx = total.topk(min(beams, k * size), dim=1)
            parent, code = idx // size, idx % size
            codes = torch.cat(
                [codes.gather(1, parent[..., None].expand(-1, -1, t)), code[..., None]], 2
            )
            if tables is not None:
                node = child.reshape(b, -1).gather(1, idx).clamp(min=0)
            if t + 1 < model.n_levels:
                beam_idx = (torch.arange(b, device=device)[:, None] * k + parent).view(-1)
                logp_next = steps.next(beam_idx, code.view(-1), t)
    items = None
    if tables is not None:
        found = torch.where(torch.isfinite(scores), tables.leaf_items[node], -1)
        if model.kind == "item":
            scores, found, codes = steps.rank_items(scores, found, codes, tables)
        items = found.cpu().numpy()
    return BeamResult(codes.cpu().numpy(), scores.cpu().numpy(), items)


try:
    from transformers import LogitsProcessor
except ImportError:  # pragma: no cover - transformers is a dependency
    LogitsProcessor = object  # type: ignore[assignment,misc]


class TrieLogitsProcessor(LogitsProcessor):  # type: ignore[misc,valid-type]
    """Masks `generate`'s scores to the identifier tokens that continue a valid identifier.

    `start` is the position in `input_ids` of the first identifier token: 1 for
    encoder-decoder models (after the decoder start token), the padded prompt length for
    decoder-only models. After L identifier tokens only EOS is allowed. Pass
    `max_new_tokens=L`.
    """

    def __init__(self, tables: TrieTables, model: RecModel, start: int) -> None:
        self.tables = tables
        self.offsets = torch.as_tensor(model.level_offsets, device=tables.device)
        self.slices = [model.level_token_ids(t) for t in range(model.n_levels)]
        self.start = start
        self.eos = model.eos_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        t = input_ids.shape[1] - self.start
        out = torch.full_like(scores, NEG_INF)
        if t >= self.tables.n_levels:
            out[:, self.eos] = 0.0
            return out
        node = self.tables.walk(input_ids[:, self.start :] - self.offsets[:t]).clamp(min=0)
        child = self.tables.children(node, t)
        sl = self.slices[t]
        # generate hands over full-vocabulary log-probs: renormalized over the level's codes
        level = torch.log_softmax(scores[:, sl], -1)
        out[:, sl] = level.masked_fill(child < 0, NEG_INF)
        return out


def dict_trie_allowed_fn(
    identifiers: Identifiers, model: RecModel, start: int
) -> Callable[[int, torch.Tensor], list[int]]:
    """The public baseline: `prefix_allowed_tokens_fn` over a nested dict of token ids."""
    root: dict[int, Any] = {}
    for row in model.code_tokens(identifiers.codes).tolist():
        node = root
        for token in row:
            node = node.setdefault(token, {})
    eos = [model.eos_id]

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        node = root
        for token in input_ids[start:].tolist():
            node = node.get(token, {})
        return list(node) or eos

    return allowed


@torch.no_grad()
def generate(model: RecModel, prompt: np.ndarray, beams: int, **constraint: Any) -> BeamResult:
    """Beams from `model.generate` with a constraint (`logits_processor=[...]` or
    `prefix_allowed_tokens_fn=...`); codes are read back from the generated tokens."""
    inputs = model.inputs(prompt)
    inputs.pop("position_ids", None)
    levels = model.n_levels
    with model.evaluating():
        out = model.model.generate(
            **inputs,
            num_beams=beams,
            num_return_sequences=beams,
            max_new_tokens=levels,
            do_sample=False,
            length_penalty=0.0,
            early_stopping=True,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=model.pad_id,
            eos_token_id=model.eos_id,
            **constraint,
        )
    tokens = out.sequences[:, -levels:].cpu().numpy()
    codes = (tokens - model.level_offsets).reshape(len(prompt), beams, levels)
    scores = out.sequences_scores.double().cpu().numpy().reshape(len(prompt), beams)
    return BeamResult(codes, scores, None)


@torch.no_grad()
def exact_scores(
    model: RecModel, prompt: np.ndarray, identifiers: Identifiers, chunk: int = 4096
) -> np.ndarray:
    """Log-probability of every item's identifier for every prompt (B, n_items), by teacher
    forcing: the exhaustive reference that beam search approximates (small catalogues)."""
    targets = model.code_tokens(identifiers.codes)
    n, b = len(targets), len(prompt)
    out = np.empty((b, n), dtype=np.float64)
    per = max(1, chunk // max(b, 1))
    with model.evaluating():
        for lo in range(0, n, per):
            tgt = targets[lo : lo + per]
            c = len(tgt)
            # every prompt with every item of the chunk
            logp = model.token_log_probs(np.repeat(prompt, c, 0), np.tile(tgt, (b, 1)))
            out[:, lo : lo + c] = logp.sum(1).view(b, c).cpu().numpy()
    return out


# eval_mode="auto" scores item-level models exactly up to this many items and beam-searches
# larger catalogues (benches/results/decoding.md, "exact vs beam").
EXACT_ITEMS = 200_000


def use_exact(mode: str, model: Model, n_items: int) -> bool:
    """Whether `eval_mode` ("auto", "exact" or "beam") scores the whole catalogue: "auto"
    does for item-level models of catalogues up to `EXACT_ITEMS` items."""
    if mode == "auto":
        return model.kind == "item" and n_items <= EXACT_ITEMS
    return mode == "exact"


@torch.no_grad()
def top_items(
    model: Model,
    prompt: np.ndarray,
    k: int,
    tables: TrieTables,
    identifiers: Identifiers,
    exact: bool = False,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best items (B, k) after each prompt and their log-probabilities, best first:
    by trie-constrained beam search, or (`exact`) by scoring every item of the catalogue;
    `exclude` (B, S) item indices (-1 padding) are never returned. Slots no item fills hold
    -1 and -inf."""
    if not exact:
        found = beam_search(model, prompt, k, tables, exclude=exclude)
        return found.items, found.scores
    if isinstance(model, ItemRecModel):
        items, top = model.top_k(prompt, tables, k, exclude)
        return items.cpu().numpy(), top.double().cpu().numpy()
    scores = torch.as_tensor(exact_scores(model, prompt, identifiers), device=model.device)
    if exclude is not None:
        banned = torch.as_tensor(exclude, device=scores.device)
        rows, cols = torch.nonzero(banned >= 0, as_tuple=True)
        scores[rows, banned[rows, cols]] = NEG_INF
    top, idx = scores.topk(min(k, scores.shape[1]), dim=1)
    items = torch.where(torch.isfinite(top), idx, -1).cpu().numpy()
    out_items = np.full((len(prompt), k), -1, dtype=np.int64)
    out_scores = np.full((len(prompt), k), -np.inf)
    out_items[:, : items.shape[1]] = items
    out_scores[:, : items.shape[1]] = top.double().cpu().numpy()
    return out_items, out_scores
