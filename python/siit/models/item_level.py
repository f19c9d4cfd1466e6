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
from torch import nn

from .token_level import ModelBase

if TYPE_CHECKING:
    from ..decoding import TrieTables

WEIGHTS = "item_model.safetensors"
TEXT = "item_text.safetensors"  # the item text vectors of a model with text input
META = "siit_model.json"

ITEM_PRESETS: dict[str, dict[str, Any]] = {
    # CPU default: SASRec's shape (RecBole's and benches/peers.py's) over identifiers.
    "item-mini": dict(
        arch="gpt2", hidden=64, layers=2, heads=2, inner=256, head_inner=256, dropout=0.3
    ),
    # A GPU size, in the range of published item-level models (2-13M parameters with codes).
    "item-small": dict(
        arch="gpt2", hidden=256, layers=4, heads=4, inner=1024, head_inner=1024, dropout=0.3
    ),
    # Tests.
    "item-tiny": dict(
        arch="gpt2", hidden=32, layers=1, heads=2, inner=64, head_inner=64, dropout=0.0
    ),
}
# Options every item-level model has, and their defaults.
DEFAULTS: dict[str, Any] = dict(conditional=True, max_items=512, attn_dropout=0.0, text_dim=0)


class LevelHead(nn.Module):
    """The query of one level: a residual MLP over (hidden state + codes above), normed."""

    def __init__(self, hidden: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden), nn.Dropout(dropout)
        )
        self.out = nn.LayerNorm(hidden)

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        return self.out(query + self.mlp(self.norm(query)))


def _backbone(
    arch: str,
    hidden: int,
    layers: int,
    heads: int,
    inner: int,
    dropout: float,
    attn_dropout: float,
    max_items: int,
) -> nn.Module:
    """A causal transformer that reads `inputs_embeds`; its unused token table is frozen so
    that DDP does not wait for its gradient."""
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2Model

        config = GPT2Config(
            vocab_size=1,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=inner,
            n_positions=max_items,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=attn_dropout,
            bos_token_id=None,
            eos_token_id=None,
        )
        net = GPT2Model(config)
    elif arch == "llama":
        from transformers import LlamaConfig, LlamaModel

        config = LlamaConfig(
            vocab_size=1,
            hidden_size=hidden,
            intermediate_size=inner,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max_items,
            attention_dropout=attn_dropout,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )
        net = LlamaModel(config)
    else:
        raise ValueError(f"item-level models take arch 'gpt2' or 'llama', got {arch!r}")
    net.get_input_embeddings().weight.requires_grad_(False)
    return net


class ItemLM(nn.Module):
    """The network: code embeddings, a causal transformer over items, one head per level."""

    def __init__(
        self,
        codebook_sizes: Sequence[int],
        arch: str,
        hidden: int,
        layers: int,
        heads: int,
        inner: int,
        head_inner: int,
        dropout: float,
        conditional: bool,
        max_items: int,
        attn_dropout: float,
        text_dim: int,
    ) -> None:
        super().__init__()
        self.sizes = tuple(int(s) for s in codebook_sizes)
        self.offsets = tuple(int(o) for o in np.cumsum([0, *self.sizes[:-1]]))
        self.conditional = conditional
        self.codes = nn.Embedding(sum(self.sizes), hidden)
        nn.init.normal_(self.codes.weight, std=0.02)
        self.backbone = _backbone(
            arch, hidden, layers, heads, inner, dropout, attn_dropout, max_items
        )
        self.heads = nn.ModuleList(LevelHead(hidden, head_inner, dropout) for _ in self.sizes)
        # text input (LIGER's): a learned projection of each item's text vector is added to
        # its code sum; the vectors are data, set with `ItemRecModel.set_item_text`
        self.text = nn.Linear(text_dim, hidden) if text_dim else None
        self.register_buffer("item_text", torch.zeros(0, text_dim), persistent=False)

    def embed_items(self, tokens: torch.Tensor) -> torch.Tensor:
        """Item vectors (..., d) of item rows (..., L or L + 1): global code ids, then
        (read by a model with text input) the item's index; -1 padding gives zeros."""
        codes = tokens[..., : len(self.sizes)]
        out = (self.codes(codes.clamp(min=0)) * (codes >= 0)[..., None]).sum(-2)
        if self.text is None:
            return out
        item = tokens[..., len(self.sizes)]
        if item.numel() and int(item.max()) >= len(self.item_text):
            raise ValueError(
                f"item {int(item.max())} has no text vector (the model holds "
                f"{len(self.item_text)}); set them with set_item_text"
            )
        vectors = self.item_text[item.clamp(min=0)].to(out.dtype)
        return out + self.text(vectors) * (item >= 0)[..., None]

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, d) of item sequences (B, T, L) padded with -1 (left or
        right); positions count from each sequence's first item."""
        mask = (tokens[..., 0] >= 0).long()
        out = self.backbone(
            inputs_embeds=self.embed_items(tokens),
            attention_mask=mask,
            position_ids=(mask.cumsum(1) - 1).clamp(min=0),
        )
        return out.last_hidden_state

    def level_log_probs(self, query: torch.Tensor, level: int) -> torch.Tensor:
        """Log-probabilities (..., V_l) of level l's codes for queries (..., d)."""
        lo = self.offsets[level]
        weight = self.codes.weight[lo : lo + self.sizes[level]]
        logits = self.heads[level](query) @ weight.T
        return torch.log_softmax(logits.float() if logits.dtype == torch.bfloat16 else logits, -1)

    def condition(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The query of the next level after the codes `tokens` (global ids, same shape as
        the query without its last axis)."""
        return query + self.codes(tokens) if self.conditional else query

    def target_log_probs(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-prob (..., L) of each code of target identifiers (..., L) of global ids after
        hidden states (..., d), by teacher forcing; 0 at padding."""
        query, out = hidden, []
        for level in range(len(self.sizes)):
            token = torch.where(target[..., level] >= 0, target[..., level], self.offsets[level])
            logp = self.level_log_probs(query, level)
            out.append(logp.gather(-1, (token - self.offsets[level])[..., None])[..., 0])
            if level + 1 < len(self.sizes):
                query = self.condition(query, token)
        return torch.stack(out, -1).masked_fill(target < 0, 0.0)

    def forward(self, history: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-prob (B, T, L) of each position's next identifier: `target[:, j]` follows
        `history[:, : j + 1]` (both (B, T, L), -1 padded)."""
        return self.target_log_probs(self.encode(history), target)


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
        return 0 if self.model.text is None else self.model.text.in_features

    def set_item_text(self, vectors: np.ndarray) -> None:
        """The text vectors (n_items, text_dim) that a model with text input adds to each
        item's code sum; row i is item i's."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if not self.text_dim:
            raise ValueError("this model has no text input (model_options text_input=True)")
        if vectors.ndim != 2 or vectors.shape[1] != self.text_dim:
            raise ValueError(f"item text vectors must be (n, {self.text_dim}), got {vectors.shape}")
        self.model.item_text = torch.as_tensor(vectors, device=self.device)

    def token_losses(self, net: Any, prompt: np.ndarray, target: np.ndarray) -> torch.Tensor:
        """Cross-entropy (B, T, L) of every code of every target item; 0 at padding. `net`
        is the model or its DDP wrapper."""
        device = self.device
        return -net(torch.as_tensor(prompt, device=device), torch.as_tensor(target, device=device))

    def last_hidden(self, prompt: np.ndarray) -> torch.Tensor:
        """The hidden state (B, d) after each left-padded history (B, H, L)."""
        return self.model.encode(torch.as_tensor(prompt, device=self.device))[:, -1]

    @torch.no_grad()
    def item_log_probs(
        self, prompt: np.ndarray, tables: TrieTables, max_elements: int = 1 << 24
    ) -> torch.Tensor:
        """Exact log-probability (B, n_items) of every item's identifier after each
        left-padded history (B, H, L). Level l is scored once per depth-l trie node (each
        distinct prefix) and gathered per item; users are chunked so that no level's
        (users, nodes, codes) tensor exceeds `max_elements`."""
        net = self.model
        with self.evaluating():
            hidden = self.last_hidden(prompt)
            nodes, codes, queries = tables.item_nodes, tables.codes, self._node_queries(tables)
            dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
            total = torch.zeros(len(hidden), len(nodes[0]), device=hidden.device, dtype=dtype)
            for level in range(self.n_levels):
                cond = queries[level]  # (N_l, d): codes above each depth-l node
                size = self.codebook_sizes[level]
                above = nodes[level - 1] if level and net.conditional else None
                code = codes[level][nodes[level]]  # each item's code at this level
                n_nodes = 1 if above is None else len(cond)
                step = max(1, max_elements // (n_nodes * size))
                for lo in range(0, len(hidden), step):
                    h = hidden[lo : lo + step, None, :]
                    logp = net.level_log_probs(h if above is None else h + cond, level)
                    flat = logp.reshape(len(h), -1)
                    idx = code if above is None else above * size + code
                    total[lo : lo + step] += flat[:, idx]
        return total

    @torch.no_grad()
    def top_k(
        self,
        prompt: np.ndarray,
        tables: TrieTables,
        k: int,
        exclude: np.ndarray | None = None,
        candidates: int = 64,
        max_elements: int = 1 << 24,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact k best items (B, k) after each history and their log-probs, as the top
        k of `item_log_probs`, at a fraction of its cost: every level but the last is
        scored at every trie node, the last only under each user's `candidates` most
        likely nodes above it. A prefix's log-prob bounds every item below it, so a user
        whose k-th item could still be beaten by an unscored node is scored again under 8x
        as many nodes, and in full once that would reach most of them.
        `exclude` (B, S) item indices (-1 padding) are never returned. Slots that no item
        fills hold -1 and -inf. Users are chunked as in `item_log_probs`."""
        widest = max(
            [len(tables.codes[t - 1]) * self.codebook_sizes[t] for t in range(1, self.n_levels - 1)]
            + [candidates * self.codebook_sizes[-1], 1]
        )
        step = max(1, max_elements // widest)
        parts = [
            self._top_k(
                prompt[lo : lo + step],
                tables,
                k,
                None if exclude is None else exclude[lo : lo + step],
                candidates,
            )
            for lo in range(0, len(prompt), step)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _top_k(
        self,
        prompt: np.ndarray,
        tables: TrieTables,
        k: int,
        exclude: np.ndarray | None,
        candidates: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        net, levels, neg = self.model, self.n_levels, float("-inf")
        with self.evaluating():
            hidden = self.last_hidden(prompt)
            b, device = len(hidden), hidden.device
            queries = self._node_queries(tables)
            prefix = torch.zeros(b, 1, dtype=hidden.dtype, device=device)
            for level in range(levels - 1):  # log-prob of every node's prefix, level by level
                parent = tables.parents[level]
                query = hidden[:, None] + queries[level] if net.conditional else hidden[:, None]
                logp = net.level_log_probs(query, level).expand(-1, len(queries[level]), -1)
                prefix = prefix[:, parent] + logp[:, parent, tables.codes[level]]
            last = levels - 1
            m = min(candidates, prefix.shape[1])
            bound, nodes = prefix.topk(m, dim=1)
            query = hidden[:, None] + queries[last][nodes] if net.conditional else hidden[:, None]
            logp = net.level_log_probs(query, last).expand(-1, m, -1)
            child = tables.children(nodes.reshape(-1), last).view(b, m, -1)
            items = torch.where(child >= 0, tables.leaf_items[child.clamp(min=0)], -1).view(b, -1)
            scores = (bound[..., None] + logp).masked_fill(child < 0, neg).view(b, -1)
            banned = None
            if exclude is not None:  # (B, n_items + 1): the padding lands in the last column
                ex = torch.as_tensor(exclude, device=device)
                banned = torch.zeros(b, len(tables.leaf_items) + 1, dtype=torch.bool, device=device)
                banned[torch.arange(b, device=device)[:, None].expand_as(ex), ex] = True
                banned = banned[:, :-1]
                scores = scores.masked_fill(banned.gather(1, items.clamp(min=0)), neg)
            top, idx = scores.topk(min(k, scores.shape[1]), dim=1)
            out_items = torch.full((b, k), -1, dtype=torch.long, device=device)
            out_scores = torch.full((b, k), neg, dtype=top.dtype, device=device)
            out_items[:, : top.shape[1]] = items.gather(1, idx)
            out_scores[:, : top.shape[1]] = top
            if m < prefix.shape[1]:  # users whose k-th item an unscored prefix may beat
                unscored = prefix.topk(m + 1, dim=1).values[:, -1]
                again = torch.nonzero(unscored >= out_scores[:, -1]).view(-1)
                if len(again):  # widen for them (8x the nodes, then every item)
                    rows = again.cpu().numpy()
                    part = None if exclude is None else exclude[rows]
                    if 8 * m < prefix.shape[1]:
                        items_, scores_ = self._top_k(prompt[rows], tables, k, part, 8 * m)
                    else:
                        every = self.item_log_probs(prompt[rows], tables)
                        if banned is not None:
                            every = every.masked_fill(banned[again], neg)
                        scores_, items_ = every.topk(min(k, every.shape[1]), dim=1)
                    out_scores[again] = neg
                    out_scores[again, : scores_.shape[1]] = scores_.to(out_scores.dtype)
                    out_items[again, : items_.shape[1]] = items_
        return out_items.masked_fill(~torch.isfinite(out_scores), -1), out_scores

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
        rec = build_item_model(meta["codebook_sizes"], meta["prefixes"], **meta["options"])
        rec.model.to(getattr(torch, meta.get("dtype", "float32")))
        rec.model.load_state_dict(load_file(str(directory / WEIGHTS)))
        rec.model.to(device)
        if rec.text_dim:
            rec.set_item_text(load_file(str(directory / TEXT))["item_text"].numpy())
        return rec


def build_item_model(
    codebook_sizes: Sequence[int], prefixes: Sequence[str], seed: int = 0, **options: Any
) -> ItemRecModel:
    """An item-level model from an `ITEM_PRESETS` entry (`preset=`) with `options` changing
    its fields (hidden, layers, heads, inner, head_inner, dropout, arch, conditional,
    max_items, attn_dropout, text_dim: the size of item text vectors added to the input,
    0 for none)."""
    options = dict(options)
    preset = options.pop("preset", "item-mini")
    if preset not in ITEM_PRESETS:
        raise ValueError(f"unknown item-level preset {preset!r}; known: {list(ITEM_PRESETS)}")
    params = {**ITEM_PRESETS[preset], **DEFAULTS}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} of item-level model {preset!r}; known: {sorted(params)}"
        )
    params.update(options)
    torch.manual_seed(seed)
    net = ItemLM(codebook_sizes, **params)
    return ItemRecModel(
        net,
        tuple(int(s) for s in codebook_sizes),
        tuple(prefixes),
        options={"preset": preset, **options},
    )
