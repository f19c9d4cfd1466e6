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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..progress import quiet_transformers

if TYPE_CHECKING:
    from ..decoding import TrieTables

WEIGHTS = "item_model.safetensors"
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
    "item-tiny": dict(arch="gpt2", hidden=32, layers=1, heads=2, inner=64, head_inner=64, dropout=0.0),
}
# Options every item-level model has, and their defaults.
DEFAULTS: dict[str, Any] = dict(conditional=True, max_items=512, attn_dropout=0.0)


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


def _backbone(arch: str, hidden: int, layers: int, heads: int, inner: int, dropout: float,
              attn_dropout: float, max_items: int) -> nn.Module:
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

    def embed_items(self, tokens: torch.Tensor) -> torch.Tensor:
        """Item vectors (..., d) of global code ids (..., L); -1 padding gives zeros."""
        return (self.codes(tokens.clamp(min=0)) * (tokens >= 0)[..., None]).sum(-2)

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
class ItemRecModel:
    """An item-level model and its identifier layout; the counterpart of `RecModel`."""

    model: ItemLM
    codebook_sizes: tuple[int, ...]
    prefixes: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)  # architecture, for save/load
    kind: str = "item"
    style: str = "plain"
    vector_tokens: int = 0  # no item2id prompt to project text vectors into

    @property
    def n_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def level_offsets(self) -> np.ndarray:
        return np.asarray(self.model.offsets, dtype=np.int64)

    def code_tokens(self, codes: np.ndarray) -> np.ndarray:
        """Global code ids of identifiers (..., L)."""
        return self.level_offsets + np.asarray(codes, dtype=np.int64)

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact k best items (B, k) after each history and their log-probs, as the top
        k of `item_log_probs`, at a fraction of its cost: every level but the last is
        scored at every trie node, the last only under each user's `candidates` most
        likely nodes above it. A prefix's log-prob bounds every item below it, so a user
        whose k-th item could still be beaten by an unscored node is scored in full.
        `exclude` (B, S) item indices (-1 padding) are never returned. Slots that no item
        fills hold -1 and -inf."""
        net, levels = self.model, self.n_levels
        with self.evaluating():
            hidden = self.last_hidden(prompt)
            queries = self._node_queries(tables)
            prefix = torch.zeros(len(hidden), 1, dtype=hidden.dtype, device=hidden.device)
            for level in range(levels - 1):  # log-prob of every node's prefix, level by level
                node = torch.arange(len(tables.codes[level]), device=hidden.device)
                parent = torch.searchsorted(tables.offsets[level], node, right=True) - 1
                query = hidden[:, None] + queries[level] if net.conditional else hidden[:, None]
                logp = net.level_log_probs(query, level)
                logp = logp.expand(-1, len(queries[level]), -1)
                prefix = prefix[:, parent] + logp[:, parent, tables.codes[level]]
            last = levels - 1
            m = min(candidates, prefix.shape[1])
            bound, nodes = prefix.topk(m, dim=1)
            query = hidden[:, None] + queries[last][nodes] if net.conditional else hidden[:, None]
            logp = net.level_log_probs(query, last).expand(-1, m, -1)
            child = tables.children(nodes.reshape(-1), last).view(len(hidden), m, -1)
            items = torch.where(child >= 0, tables.leaf_items[child.clamp(min=0)], -1)
            scores = (bound[..., None] + logp).masked_fill(child < 0, float("-inf"))
            banned = None
            if exclude is not None:
                banned = torch.zeros(len(hidden), len(tables.leaf_items) + 1, dtype=torch.bool,
                                     device=hidden.device)
                ex = torch.as_tensor(exclude, device=hidden.device)
                banned[torch.arange(len(ex), device=ex.device)[:, None].expand_as(ex), ex] = True
                banned = banned[:, :-1]  # column -1 took the padding
                scores = scores.masked_fill(banned.gather(1, items.clamp(min=0).view(len(hidden), -1)).view_as(items), float("-inf"))
            top, idx = scores.view(len(hidden), -1).topk(min(k, scores[0].numel()), dim=1)
            found = items.view(len(hidden), -1).gather(1, idx)
            unscored = prefix.topk(m + 1, dim=1).values[:, -1] if m < prefix.shape[1] else None
            out_items = torch.full((len(hidden), k), -1, dtype=torch.long, device=hidden.device)
            out_scores = torch.full((len(hidden), k), float("-inf"), dtype=top.dtype, device=hidden.device)
            out_items[:, : top.shape[1]], out_scores[:, : top.shape[1]] = found, top
            if unscored is not None:  # users whose k-th item an unscored prefix may beat
                full = torch.nonzero(unscored >= out_scores[:, -1]).view(-1)
                if len(full):
                    every = self.item_log_probs(prompt[full.cpu().numpy()], tables)
                    if banned is not None:
                        every = every.masked_fill(banned[full], float("-inf"))
                    top, idx = every.topk(min(k, every.shape[1]), dim=1)
                    out_scores[full, : top.shape[1]] = top.to(out_scores.dtype)
                    out_items[full, : top.shape[1]] = idx
            out_items = out_items.masked_fill(~torch.isfinite(out_scores), -1)
        return out_items, out_scores

    def _node_queries(self, tables: TrieTables) -> list[torch.Tensor]:
        """Per level l, the summed embeddings of the codes above each depth-l trie node
        (the root alone for level 0), built level by level with gathers."""
        emb = self.model.codes.weight
        out = [torch.zeros(1, emb.shape[1], device=emb.device, dtype=emb.dtype)]
        for t in range(self.n_levels - 1):
            node = torch.arange(len(tables.codes[t]), device=emb.device)
            parent = torch.searchsorted(tables.offsets[t], node, right=True) - 1
            out.append(out[-1][parent] + emb[self.model.offsets[t] + tables.codes[t]])
        return out

    # -- persistence ---------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Weights as safetensors and `siit_model.json` (layout and architecture)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / WEIGHTS))
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
        return rec


def build_item_model(
    codebook_sizes: Sequence[int], prefixes: Sequence[str], seed: int = 0, **options: Any
) -> ItemRecModel:
    """An item-level model from an `ITEM_PRESETS` entry (`preset=`) with `options` changing
    its fields (hidden, layers, heads, inner, head_inner, dropout, arch, conditional,
    max_items, attn_dropout)."""
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
