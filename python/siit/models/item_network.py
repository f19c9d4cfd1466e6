"""The item-level network (`ItemLM`): code embeddings summed into one input per item, a
causal transformer over the history (GPT-2 or Llama blocks through `inputs_embeds`), and
one light head per level, conditioned on the codes above, whose output is tied to the code
embeddings. `item_level.ItemRecModel` wraps it with the identifier layout, exact ranking
and files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .item_backbone import (
    Dropout,
    build_backbone,
    has_last_position_shortcut,
    last_position_state,
)

if TYPE_CHECKING:
    from ..decoding import TrieTables


class LevelHead(nn.Module):
    """The query of one level: a residual MLP over (hidden state + codes above), normed."""

    def __init__(self, hidden: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden), Dropout(dropout)
        )
        self.out = nn.LayerNorm(hidden)

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        return self.out(query + self.mlp(self.norm(query)))


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
        prior_dim: int,
        trie_softmax: bool,
        dense_head: bool = False,
        dense_residual: bool = False,
        activation: str = "",
    ) -> None:
        super().__init__()
        self.sizes = tuple(int(s) for s in codebook_sizes)
        self.offsets = tuple(int(o) for o in np.cumsum([0, *self.sizes[:-1]]))
        self.conditional = conditional
        # each level's softmax over the codes that continue a real identifier (the trie's
        # children) rather than the whole codebook: the loss and the ranking are then a
        # distribution over the catalogue's identifiers, and no capacity goes to learning
        # which codes exist; the trie is the identifiers in use (`ItemRecModel.use_trie`)
        self.trie_softmax = trie_softmax
        self.trie: TrieTables | None = None
        self.codes = nn.Embedding(sum(self.sizes), hidden)
        nn.init.normal_(self.codes.weight, std=0.02)
        self.backbone = build_backbone(
            arch, hidden, layers, heads, inner, dropout, attn_dropout, max_items, activation
        )
        self.heads = nn.ModuleList(LevelHead(hidden, head_inner, dropout) for _ in self.sizes)
        # text input (LIGER's): a learned projection of each item's text vector is added to
        # its code sum; the vectors are data, set with `ItemRecModel.set_item_text`
        self.text = nn.Linear(text_dim, hidden) if text_dim else None
        # text prior: a learned query from each item's text vector, read by the same level
        # heads (the item-level item2id task), so that items with little collaborative
        # evidence can be placed by their text (`evidence.text_states`)
        self.text_query = nn.Linear(prior_dim, hidden) if prior_dim else None
        if text_dim and prior_dim and text_dim != prior_dim:
            raise ValueError(f"text_dim {text_dim} and prior_dim {prior_dim} read one vector")
        dim = text_dim or prior_dim
        self.register_buffer("item_text", torch.zeros(0, dim), persistent=False)
        # dense head (SASRec's output, LIGER's dense half): a softmax over the catalogue's
        # items whose logits are the hidden state's dot products with their input vectors
        # (codes summed, text added), so still built from the identifiers; an item's
        # log-prob is the code-by-code one plus this one, in the loss and the ranking
        self.dense_head = dense_head
        # dense residual: a free vector per item added to its output vector in the dense
        # head only, zero at first, so that an item seen often can fit what its shared codes
        # cannot (office's gap to SASRec lies on such items) while its input and the level
        # heads stay identifier-built; one row per catalogue item (`fit_catalogue`)
        if dense_residual and not dense_head:
            raise ValueError("dense_residual needs dense_head=True")
        self.residual = nn.Parameter(torch.zeros(0, hidden)) if dense_residual else None

    @property
    def needs_trie(self) -> bool:
        """Whether the model reads the identifiers in use: the trie softmax normalizes over
        them, the dense head scores the catalogue they make."""
        return self.trie_softmax or self.dense_head

    def dense_log_probs(
        self,
        hidden: torch.Tensor,
        tables: TrieTables | None = None,
        vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The dense head's log-probabilities (..., n_items) of every item of a catalogue
        (`tables`; default the trie in use) after hidden states (..., d); `vectors`: its
        `item_vectors`, where a caller scores many batches."""
        return torch.log_softmax(self._dense_logits(hidden, tables, vectors), -1)

    def item_vectors(self, tables: TrieTables | None = None) -> torch.Tensor:
        """The dense head's output vector (n_items, d) of every item of a catalogue
        (`tables`; default the trie in use): codes summed, text added, its residual."""
        trie = tables or self.require_trie()
        rows = [  # each item's row: its global code ids, then its index
            torch.where(node >= 0, trie.codes[t][node.clamp(min=0)].long() + self.offsets[t], -1)
            for t, node in enumerate(trie.item_nodes)
        ]
        rows.append(torch.arange(len(rows[0]), device=rows[0].device))
        vectors = self.embed_items(torch.stack(rows, 1))
        if self.residual is not None:
            vectors = vectors + self.residual[: len(vectors)]
        return vectors

    def _dense_logits(
        self,
        hidden: torch.Tensor,
        tables: TrieTables | None,
        vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logits = hidden @ (self.item_vectors(tables) if vectors is None else vectors).T
        return logits.float() if logits.dtype == torch.bfloat16 else logits

    def fit_catalogue(self, n_items: int) -> None:
        """Give the dense residual a row per item of a catalogue of `n_items`: new items
        start at zero (their identifier-built vector alone); rows are never dropped."""
        if self.residual is None or n_items <= len(self.residual):
            return
        grown = torch.zeros(n_items, self.residual.shape[1]).to(self.residual)
        grown[: len(self.residual)] = self.residual.detach()
        self.residual = nn.Parameter(grown)

    def dense_target_log_probs(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The dense head's log-prob (N,) of target identifiers (N, L) of global ids after
        hidden states (N, d). Targets are catalogue items, no padding."""
        trie = self.require_trie()
        local = (target - torch.as_tensor(self.offsets, device=target.device)).clamp(min=0)
        item = trie.leaf_items[trie.walk(local).clamp(min=0)]
        # through the fused cross-entropy: the (positions x items) matrix is the head's cost
        return -nn.functional.cross_entropy(
            self._dense_logits(hidden, None), item, reduction="none"
        )

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
        # projected once per distinct item, then gathered: a batch repeats its items (the
        # projection of every position was a third of MovieLens's encoding time)
        distinct, where = torch.unique(item.clamp(min=0), return_inverse=True)
        text = self.text(self.item_text[distinct].to(out.dtype))[where]
        return out + text * (item >= 0)[..., None]

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

    def last_state(self, tokens: torch.Tensor) -> torch.Tensor:
        """The hidden state (B, d) after the last position of item sequences (B, T, L)
        left-padded with -1 (each ends with an item): `encode(tokens)[:, -1]`, by
        `last_position_state` in eval mode where the backbone allows (ranking reads no
        other position)."""
        if self.training or not has_last_position_shortcut(self.backbone):
            return self.encode(tokens)[:, -1]
        return last_position_state(self.backbone, self.embed_items(tokens), tokens[..., 0] >= 0)

    def level_log_probs(
        self, query: torch.Tensor, level: int, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log-probabilities (..., V_l) of level l's codes for queries (..., d); with
        `allowed` (a bool mask broadcastable to (..., V_l)), normalized over those codes
        only (-inf elsewhere; the result takes the broadcast shape)."""
        if allowed is not None and not torch.is_grad_enabled():
            # a row that allows one code gives it log-prob 0 whatever the head says, so in
            # scoring, where most rows do, the head runs on the others only: most deep trie
            # nodes have a single child (office's 3 x 256 codes: 1,600 of 1,904 last-level
            # nodes); a query shared by rows, as without conditioning, runs once. Training
            # keeps every row: there the copies cost what the skipped rows save (office)
            shape = query.shape[:-1]
            # counted on the mask as given: broadcasting repeats its rows evenly
            several = allowed.sum(-1) > 1
            full = torch.broadcast_shapes(shape, allowed.shape[:-1]) == shape
            if full and 2 * int(several.sum()) < several.numel():  # else copies cost more
                mask, several = allowed.expand(*shape, allowed.shape[-1]), several.expand(shape)
                dtype = torch.float32 if query.dtype == torch.bfloat16 else query.dtype
                out = torch.zeros(mask.shape, dtype=dtype, device=query.device)
                out = out.masked_fill(~mask, float("-inf"))
                rows = self._masked_log_softmax(query[several], level, mask[several])
                out[several] = rows.to(dtype)
                return out
        return self._masked_log_softmax(query, level, allowed)

    def child_log_probs(
        self, query: torch.Tensor, level: int, parent: torch.Tensor, code: torch.Tensor
    ) -> torch.Tensor:
        """Under the trie softmax, the log-probs (B, C) of level `level`'s trie children:
        child c is code `code[c]` under the node whose query is `query[:, parent[c]]`
        (queries (B, N, d), or (B, 1, d) shared by every node). The values
        `level_log_probs` gives at those places, without the logits of the codes no child
        takes (office's second level: 1,904 children of 256 x 256 node-code pairs)."""
        out = self.heads[level](query)
        out = out.expand(-1, int(parent.max()) + 1, -1) if out.shape[1] == 1 else out
        weight = self.codes.weight[self.offsets[level] + code]
        logits = torch.einsum("bcd,cd->bc", out[:, parent], weight)
        if logits.dtype == torch.bfloat16:
            logits = logits.float()
        # normalized over each child's siblings: a log-softmax per parent, by scatters
        group = parent.expand(len(logits), -1)
        top = torch.full(out.shape[:2], float("-inf"), dtype=logits.dtype, device=logits.device)
        top = top.scatter_reduce(1, group, logits, "amax")
        shifted = logits - top.gather(1, group)
        total = torch.zeros_like(top).scatter_add_(1, group, shifted.exp())
        return shifted - total.log().gather(1, group)

    def _masked_log_softmax(
        self, query: torch.Tensor, level: int, allowed: torch.Tensor | None
    ) -> torch.Tensor:
        lo = self.offsets[level]
        weight = self.codes.weight[lo : lo + self.sizes[level]]
        logits = self.heads[level](query) @ weight.T
        if logits.dtype == torch.bfloat16:
            logits = logits.float()
        if allowed is not None:
            logits = torch.where(allowed, logits, float("-inf"))
        return torch.log_softmax(logits, -1)

    def allowed(self, level: int, nodes: torch.Tensor | None = None) -> torch.Tensor | None:
        """The trie softmax's mask of level `level` under depth-`level` trie nodes (any
        shape; None: every node of that depth, (n, V_l)); None without a trie softmax. A
        node of -1 (a prefix off the trie) allows every code."""
        if not self.trie_softmax:
            return None
        mask = self.require_trie().allowed[level]
        if nodes is None:
            return mask
        return torch.where(nodes[..., None] >= 0, mask[nodes.clamp(min=0)], True)

    def require_trie(self) -> TrieTables:
        """The trie of the identifiers in use, which a trie softmax cannot do without."""
        if self.trie is None:
            raise ValueError(
                "a model with trie_softmax or dense_head needs its identifiers' trie: use_trie"
            )
        return self.trie

    def condition(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The query of the next level after the codes `tokens` (global ids, same shape as
        the query without its last axis)."""
        return query + self.codes(tokens) if self.conditional else query

    def target_log_probs(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-prob (..., L) of each code of target identifiers (..., L) of global ids after
        hidden states (..., d), by teacher forcing, from the level heads; 0 at padding."""
        query, out = hidden, []
        nodes = self._target_nodes(target)
        for level in range(len(self.sizes)):
            token = torch.where(target[..., level] >= 0, target[..., level], self.offsets[level])
            allowed = None if nodes is None else self.allowed(level, nodes[level])
            logp = self.level_log_probs(query, level, allowed)
            out.append(logp.gather(-1, (token - self.offsets[level])[..., None])[..., 0])
            if level + 1 < len(self.sizes):
                query = self.condition(query, token)
        return torch.stack(out, -1).masked_fill(target < 0, 0.0)

    def _target_nodes(self, target: torch.Tensor) -> list[torch.Tensor] | None:
        """Per level, the trie node (...,) above each target identifier's code there (the
        root for level 0); None without a trie softmax. Padding walks as code 0."""
        if not self.trie_softmax:
            return None
        local = (target - torch.as_tensor(self.offsets, device=target.device)).clamp(min=0)
        path = self.require_trie().path(local.reshape(-1, local.shape[-1])[:, :-1])
        return [node.view(target.shape[:-1]) for node in path]

    def text_states(self, items: torch.Tensor) -> torch.Tensor:
        """The text prior's queries (..., d) of item indices (...)."""
        if self.text_query is None:
            raise ValueError("this model has no text prior (network.options text_prior)")
        if items.numel() and int(items.max()) >= len(self.item_text):
            raise ValueError(f"item {int(items.max())} has no text vector; set_item_text first")
        return self.text_query(self.item_text[items].to(self.codes.weight.dtype))

    def forward(self, history: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-prob (B, T, L) of each position's next identifier: `target[:, j]` follows
        `history[:, : j + 1]` (both (B, T, L), -1 padded). Item indices (B,) as history:
        the log-prob (B, L) of each item's identifier after its text (the item2id task).
        With a dense head, the last column adds the dense log-prob of the target item, so
        that a row sums to the item's log-prob, as `item_log_probs` ranks it."""
        if history.dim() == 1:
            return self.target_log_probs(self.text_states(history), target)
        # the heads read real positions only: padding is a fifth of MovieLens's window
        # positions and three quarters of office's
        real = target[..., 0] >= 0
        hidden, real_target = self.encode(history)[real], target[real]
        out = self.target_log_probs(hidden, real_target)
        if self.dense_head:
            dense = self.dense_target_log_probs(hidden, real_target)
            out = torch.cat([out[:, :-1], out[:, -1:] + dense[:, None]], -1)
        return out.new_zeros(target.shape).index_put((real,), out)
