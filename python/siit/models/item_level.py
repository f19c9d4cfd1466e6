"""Item-level recommendation models: one position per item (the RPG / MARIUS shape).

An item's input vector is the sum of its identifier's code embeddings, never a free
per-item embedding, so the identifier carries the item and refinement has something to
change. A causal transformer (GPT-2 or Llama blocks through `inputs_embeds`) reads the
history; the next item's identifier is scored code by code: level l over level l's codes,
conditioned on the codes above it by a light head (query = hidden state + embeddings of the
codes above, a residual MLP) whose output is tied to the code embeddings. With
`conditional=False` the levels are independent heads of the hidden state.

Codes are addressed as global ids, `level_offsets[l] + code`, the same arithmetic as the
identifier tokens of token-level models, so `TaskBuilder` lays out both. An L-level
identifier costs one position instead of L, and every item of a catalogue can be scored
exactly (`item_log_probs`): each level runs once per trie node above it, not once per item.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from .item_backbone import ACTIVATIONS, LEGACY_ACTIVATIONS
from .item_network import ItemLM
from .presets import item_params
from .token_level import ModelBase

if TYPE_CHECKING:
    from ..decoding import TrieTables

# Per level, the summed code embeddings above each trie node, and (dense head) the item
# vectors: what scoring reads of a catalogue (`ItemRecModel._catalogue`).
Catalogue = tuple[list[torch.Tensor], torch.Tensor | None]

WEIGHTS = "item_model.safetensors"
TEXT = "item_text.safetensors"  # the item text vectors of a model with text input
META = "siit_model.json"
# Users per chunk of exact scoring: (users, nodes, codes) tensors of 4 MB stay in cache,
# where 64 MB ones made full scoring 1.6x slower (office, 3 x 256 codes, one thread).
CHUNK_ELEMENTS = 1 << 20
# Last-level parents scored per user in top_k's first pass (exact whatever it is: the bound
# widens the rest): 32 ranked MovieLens and office faster than 64 or 16.
TOP_K_CANDIDATES = 32


@dataclass
class ItemRecModel(ModelBase):
    """An item-level model and its identifier layout; the counterpart of `RecModel`."""

    model: ItemLM
    codebook_sizes: tuple[int, ...]
    prefixes: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)  # architecture, for save/load
    kind: str = "item"
    style: str = "plain"
    vector_tokens: int = 0  # no item2id prompt to project text vectors into

    @property
    def level_offsets(self) -> np.ndarray:
        return np.asarray(self.model.offsets, dtype=np.int64)

    def code_tokens(self, codes: np.ndarray) -> np.ndarray:
        """Global code ids of identifiers (..., L)."""
        return self.level_offsets + np.asarray(codes, dtype=np.int64)

    @property
    def text_dim(self) -> int:
        """The size of the item text vectors the model reads (input or text prior); 0: none."""
        return int(self.model.item_text.shape[1])

    @property
    def text_prior(self) -> bool:
        return self.model.text_query is not None

    def set_item_text(self, vectors: np.ndarray) -> None:
        """The text vectors (n_items, text_dim) that a model with text input adds to each
        item's code sum; row i is item i's."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if not self.text_dim:
            raise ValueError("this model reads no text (network.options text_input or text_prior)")
        if vectors.ndim != 2 or vectors.shape[1] != self.text_dim:
            raise ValueError(f"item text vectors must be (n, {self.text_dim}), got {vectors.shape}")
        self.model.item_text = torch.as_tensor(vectors, device=self.device)

    def use_trie(self, tables: TrieTables) -> None:
        """The identifiers in use, as trie tables: a model with `trie_softmax` normalizes
        each level over the codes that continue them, one with `dense_head` scores their
        items in training (others never read them), with a dense residual row for each."""
        self.model.trie = tables
        self.model.fit_catalogue(len(tables.leaf_items))

    def token_losses(self, net: Any, prompt: np.ndarray, target: np.ndarray) -> torch.Tensor:
        """Cross-entropy (B, T, L) of every code of every target item; 0 at padding. `net`
        is the model or its DDP wrapper."""
        device = self.device
        return -net(torch.as_tensor(prompt, device=device), torch.as_tensor(target, device=device))

    def last_hidden(self, prompt: np.ndarray) -> torch.Tensor:
        """The hidden state (B, d) after each left-padded history (B, H, L)."""
        return self.model.last_state(torch.as_tensor(prompt, device=self.device))

    @torch.no_grad()
    def item_log_probs(
        self, prompt: np.ndarray, tables: TrieTables, max_elements: int = CHUNK_ELEMENTS
    ) -> torch.Tensor:
        """Exact log-probability (B, n_items) of every item's identifier after each
        left-padded history (B, H, L), plus its dense log-prob with a dense head. Level l
        is scored once per depth-l trie node (each distinct prefix) and gathered per item;
        users are chunked so that no level's (users, nodes, codes) tensor exceeds
        `max_elements`."""
        with self.evaluating():
            hidden = self.last_hidden(prompt)
            return self._scores(hidden, tables, self._catalogue(tables), max_elements)

    def _scores(
        self,
        hidden: torch.Tensor,
        tables: TrieTables,
        catalogue: Catalogue,
        max_elements: int,
    ) -> torch.Tensor:
        """`item_log_probs` after hidden states (B, d)."""
        net = self.model
        queries, vectors = catalogue
        nodes, codes = tables.item_nodes, tables.codes
        dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        total = torch.zeros(len(hidden), len(nodes[0]), device=hidden.device, dtype=dtype)
        for level in range(self.n_levels):
            cond = queries[level]  # (N_l, d): codes above each depth-l node
            size = self.codebook_sizes[level]
            allowed = tables.allowed[level] if net.trie_softmax else None
            per_node = level > 0 and (net.conditional or allowed is not None)
            above = nodes[level - 1] if per_node else None
            code = codes[level][nodes[level]]  # each item's code at this level
            scored = None  # the items whose node above is scored (None: every item)
            if above is not None and allowed is not None:
                # under a node with one child an item's log-prob here is 0: score the
                # nodes with several only (most deep ones have one)
                several = torch.nonzero(allowed.sum(-1) > 1).view(-1)
                row = torch.full((len(cond),), -1, dtype=torch.long, device=cond.device)
                row[several] = torch.arange(len(several), device=cond.device)
                cond, allowed, above = cond[several], allowed[several], row[above]
                scored = torch.nonzero(above >= 0).view(-1)
                above, code = above[scored], code[scored]
                if not len(scored):
                    continue
            n_nodes = 1 if above is None else len(cond)
            step = max(1, max_elements // (n_nodes * size))
            for lo in range(0, len(hidden), step):
                h = hidden[lo : lo + step, None, :]
                query = h + cond if net.conditional and above is not None else h
                logp = net.level_log_probs(query, level, allowed)
                flat = logp.reshape(len(h), -1)
                idx = code if above is None else above * size + code
                if scored is None:
                    total[lo : lo + step] += flat[:, idx]
                else:
                    total[lo : lo + step, scored] += flat[:, idx]
        if net.dense_head:
            total += net.dense_log_probs(hidden, tables, vectors).to(total.dtype)
        return total

    @torch.no_grad()
    def top_k(
        self,
        prompt: np.ndarray,
        tables: TrieTables,
        k: int,
        exclude: np.ndarray | None = None,
        candidates: int = TOP_K_CANDIDATES,
        max_elements: int = CHUNK_ELEMENTS,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact k best items (B, k) after each history and their log-probs, as the top
        k of `item_log_probs`, at a fraction of its cost: every level but the last is
        scored at every trie node, the last only under each user's `candidates` most
        likely nodes above it. A prefix's log-prob bounds every item below it, so a user
        whose k-th item an unscored node could still beat is scored again under up to 8x
        as many nodes until none could (in full once that is an eighth of the trie).
        `exclude` (B, S) item indices (-1 padding) are never returned. Slots that no item
        fills hold -1 and -inf. Users are chunked as in `item_log_probs`."""
        widest = max(
            [len(tables.codes[t - 1]) * self.codebook_sizes[t] for t in range(1, self.n_levels - 1)]
            + [candidates * self.codebook_sizes[-1], 1]
        )
        step = max(1, max_elements // widest)
        catalogue = self._catalogue(tables)
        # one encoding of the whole batch, scoring in chunks (office's are 16 users: encoding
        # them one chunk at a time cost a fifth of its ranking)
        with self.evaluating():
            hidden = self.last_hidden(prompt)
            parts = [
                self._top_k(
                    hidden[lo : lo + step],
                    tables,
                    k,
                    None if exclude is None else exclude[lo : lo + step],
                    candidates,
                    max_elements,
                    catalogue,
                )
                for lo in range(0, len(prompt), step)
            ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _top_k(
        self,
        hidden: torch.Tensor,
        tables: TrieTables,
        k: int,
        exclude: np.ndarray | None,
        candidates: int,
        max_elements: int,
        catalogue: Catalogue,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`top_k` after hidden states (B, d), in eval mode."""
        net, last, neg = self.model, self.n_levels - 1, float("-inf")
        b, device = len(hidden), hidden.device
        queries, vectors = catalogue
        prefix = torch.zeros(b, 1, dtype=hidden.dtype, device=device)
        for level in range(last):  # log-prob of every node's prefix, level by level
            parent = tables.parents[level]
            query = hidden[:, None] + queries[level] if net.conditional else hidden[:, None]
            if net.trie_softmax:  # the children's logits only
                logp = net.child_log_probs(query, level, parent, tables.codes[level])
            else:
                logp = net.level_log_probs(query, level).expand(-1, len(queries[level]), -1)
                logp = logp[:, parent, tables.codes[level]]
            prefix = prefix[:, parent] + logp.to(prefix.dtype)
        # a dense head adds each item's dense log-prob (<= 0) to its score: a node's
        # bound is then its prefix plus the best dense log-prob of the items below it
        upper, dense = prefix, None
        if net.dense_head:
            dense = net.dense_log_probs(hidden, tables, vectors).to(prefix.dtype)
            above = tables.item_nodes[last - 1] if last else torch.zeros_like(tables.leaf_items)
            best = torch.full_like(prefix, neg).scatter_reduce(
                1, above.clamp(min=0).expand(b, -1), dense, "amax"
            )
            upper = prefix + best
        banned = None
        if exclude is not None:  # (B, n_items + 1): the padding lands in the last column
            ex = torch.as_tensor(exclude, device=device)
            banned = torch.zeros(b, len(tables.leaf_items) + 1, dtype=torch.bool, device=device)
            banned[torch.arange(b, device=device)[:, None].expand_as(ex), ex] = True
            banned = banned[:, :-1]

        def top_padded(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Columns and values (rows, k) of each row's top k, -inf past its width."""
            top, idx = scores.topk(min(k, scores.shape[1]), dim=1)
            pad = k - top.shape[1]
            return F.pad(idx, (0, pad), value=-1), F.pad(top, (0, pad), value=neg)

        def best_under(rows: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
            """The k best items (and log-probs) under each row's m likeliest nodes."""
            nodes = upper[rows].topk(m, dim=1)[1]
            bound = prefix[rows].gather(1, nodes)
            h = hidden[rows, None]
            query = h + queries[last][nodes] if net.conditional else h
            allowed = tables.allowed[last][nodes] if net.trie_softmax else None
            logp = net.level_log_probs(query, last, allowed).expand(-1, m, -1)
            child = tables.children(nodes.reshape(-1), last).view(len(rows), m, -1)
            items = torch.where(child >= 0, tables.leaf_items[child.clamp(min=0)], -1)
            items = items.view(len(rows), -1)
            scores = (bound[..., None] + logp).masked_fill(child < 0, neg)
            scores = scores.view(len(rows), -1)
            if dense is not None:
                scores = scores + dense[rows].gather(1, items.clamp(min=0))
            if banned is not None:
                scores = scores.masked_fill(banned[rows].gather(1, items.clamp(min=0)), neg)
            idx, top = top_padded(scores)
            return items.gather(1, idx.clamp(min=0)), top  # padding: -inf, -1 at the end

        n = upper.shape[1]
        width = torch.full((b,), min(candidates, n), device=device)
        out_items, out_scores = best_under(torch.arange(b, device=device), min(candidates, n))
        while True:
            # the nodes whose prefix could still beat a user's k-th item; a user with
            # more than it has scored is scored again under up to 8x as many (the k-th
            # item improves as it goes), in full once that is an eighth of the trie,
            # where a wider pass would save little and may be wasted
            need = (upper >= out_scores[:, -1:]).sum(1)
            again = need > width
            if not again.any():
                break
            target = torch.minimum(need, 8 * width)
            full = torch.nonzero(again & (8 * target > n)).view(-1)
            if len(full):
                every = self._scores(hidden[full], tables, catalogue, max_elements)
                if banned is not None:
                    every = every.masked_fill(banned[full], neg)
                idx, top = top_padded(every)
                out_items[full], out_scores[full] = idx, top.to(out_scores.dtype)
                width[full] = n
            wider = torch.nonzero(again & (8 * target <= n)).view(-1)
            # grouped by the power of two of their target, so none scores over twice it
            octave = torch.ceil(torch.log2(target[wider].double())).long()
            for group in torch.unique(octave).tolist():
                users = wider[octave == group]
                wide = int(target[users].max())
                chunk = max(1, max_elements // (wide * self.codebook_sizes[-1]))
                for lo in range(0, len(users), chunk):
                    rows = users[lo : lo + chunk]
                    out_items[rows], out_scores[rows] = best_under(rows, wide)
                width[users] = wide
        return out_items.masked_fill(~torch.isfinite(out_scores), -1), out_scores

    def _catalogue(self, tables: TrieTables) -> Catalogue:
        """What scoring reads of a catalogue whoever the users are, computed once per call
        rather than per chunk of users (office's chunks are 16 users): each level's node
        queries and, with a dense head, the item vectors (neither depends on dropout)."""
        vectors = self.model.item_vectors(tables) if self.model.dense_head else None
        return self._node_queries(tables), vectors

    def _node_queries(self, tables: TrieTables) -> list[torch.Tensor]:
        """Per level l, the summed embeddings of the codes above each depth-l trie node
        (the root alone for level 0), built level by level with gathers."""
        emb = self.model.codes.weight
        out = [torch.zeros(1, emb.shape[1], device=emb.device, dtype=emb.dtype)]
        for t in range(self.n_levels - 1):
            out.append(out[-1][tables.parents[t]] + emb[self.model.offsets[t] + tables.codes[t]])
        return out

    # -- persistence ---------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Weights as safetensors and `siit_model.json` (layout and architecture)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / WEIGHTS))
        if self.text_dim:
            save_file({"item_text": self.model.item_text.contiguous()}, str(directory / TEXT))
        meta = dict(
            kind=self.kind,
            codebook_sizes=list(self.codebook_sizes),
            prefixes=list(self.prefixes),
            options=self.options,
            dtype=str(next(self.model.parameters()).dtype).removeprefix("torch."),
        )
        (directory / META).write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> ItemRecModel:
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / META).read_text())
        options = {"trie_softmax": False, "dense_head": False, "dense_residual": False}
        options.update(meta["options"])
        if "activation" not in options:  # saved before the option: the tanh GELU then
            arch = (
                options.get("arch") or item_params(options.get("preset", "item-mini"), {})["arch"]
            )
            options["activation"] = LEGACY_ACTIVATIONS[arch]
        rec = build_item_model(meta["codebook_sizes"], meta["prefixes"], **options)
        rec.model.to(getattr(torch, meta.get("dtype", "float32")))
        weights = load_file(str(directory / WEIGHTS))
        if "residual" in weights:  # as many rows as the catalogue it was saved with
            rec.model.fit_catalogue(len(weights["residual"]))
        rec.model.load_state_dict(weights)
        rec.model.to(device)
        if rec.text_dim:
            rec.set_item_text(load_file(str(directory / TEXT))["item_text"].numpy())
        return rec


def build_item_model(
    codebook_sizes: Sequence[int], prefixes: Sequence[str], seed: int = 0, **options: Any
) -> ItemRecModel:
    """An item-level model from an `ITEM_PRESETS` entry (`preset=`) with `options` changing
    its fields (hidden, layers, heads, inner, head_inner, dropout, arch, conditional,
    max_items, attn_dropout, activation, text_dim: the size of item text vectors added to
    the input, prior_dim: the size of those read by the text prior; 0 for none)."""
    options = dict(options)
    preset = options.pop("preset", "item-mini")
    params = item_params(preset, options)
    torch.manual_seed(seed)
    net = ItemLM(codebook_sizes, **params)
    return ItemRecModel(
        net,
        tuple(int(s) for s in codebook_sizes),
        tuple(prefixes),
        # the softmax and the dense head are recorded even when default: models saved
        # before an option existed (or before item-mini had the head) load without it,
        # as they were trained
        options={
            "preset": preset,
            **options,
            "trie_softmax": params["trie_softmax"],
            "dense_head": params["dense_head"],
            "dense_residual": params["dense_residual"],
            "activation": params["activation"] or ACTIVATIONS[params["arch"]],
        },
    )
