"""One decoding step per identifier level: the log-probs of level l + 1 for the beams that
continue from level l. `TokenSteps` runs a token-level model on its KV cache,
`SharedPromptSteps` the same with the prompt's keys/values read once per user
(`shared_prompt`), `ItemSteps` an item-level model's heads; `steps_for` picks one. Beam
search, candidate scoring and refinement (`decoding`) drive them."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .models import ItemRecModel, Model, RecModel
from .shared_prompt import ATTENTION, SharedPrompt, attention_implementation, register
from .shared_prompt import supports as supports_shared_prompt

if TYPE_CHECKING:
    from .decoding import TrieTables


def _cache_of(out: Any) -> Any:
    """The KV cache of a model output (`cache` in recent transformers, `past_key_values`
    before)."""
    cache = out.get("cache")
    return out.get("past_key_values") if cache is None else cache


def _cache_arg(net: Any) -> str:
    params = inspect.signature(net.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _first_step(model: RecModel, prompt: np.ndarray) -> tuple[Any, dict[str, torch.Tensor]]:
    """Run the prompt; return the model output and what later steps need."""
    net = model.model
    inputs = model.inputs(prompt)
    if model.kind == "seq2seq":
        encoder = net.get_encoder()(**inputs)  # input ids or embeddings, and the mask
        state = {"hidden": encoder.last_hidden_state, "mask": inputs["attention_mask"]}
        start = torch.full(
            (len(prompt), 1), int(net.config.decoder_start_token_id), device=model.device
        )
        out = net(
            encoder_outputs=(state["hidden"],),
            attention_mask=state["mask"],
            decoder_input_ids=start,
            use_cache=True,
        )
    else:
        state = {"mask": inputs["attention_mask"], "pos": inputs["position_ids"][:, -1:]}
        out = net(**inputs, use_cache=True, logits_to_keep=1)
    return out, state


def _next_step(
    model: RecModel,
    state: dict[str, torch.Tensor],
    past: Any,
    beam_idx: torch.Tensor,
    tokens: torch.Tensor,
    step: int,
) -> Any:
    """Feed the chosen tokens (B*K, 1) of step `step` (0-based) to the reordered beams."""
    net = model.model
    past.reorder_cache(beam_idx)
    cache = {_cache_arg(net): past}
    state["mask"] = state["mask"][beam_idx]
    if model.kind == "seq2seq":
        state["hidden"] = state["hidden"][beam_idx]
        return net(
            encoder_outputs=(state["hidden"],),
            attention_mask=state["mask"],
            decoder_input_ids=tokens,
            use_cache=True,
            **cache,
        )
    state["pos"] = state["pos"][beam_idx]
    state["mask"] = torch.cat([state["mask"], torch.ones_like(tokens)], dim=1)
    return net(
        input_ids=tokens,
        attention_mask=state["mask"],
        position_ids=state["pos"] + step + 1,
        use_cache=True,
        **cache,
    )


class TokenSteps:
    """Level log-probs of a token-level model, one identifier token at a time on its KV
    cache."""

    def __init__(self, model: RecModel, prompt: np.ndarray) -> None:
        self.model = model
        self.out, self.state = _first_step(model, prompt)

    def first(self) -> torch.Tensor:
        """Level 0's log-probs (B, V_0) after each prompt."""
        return self.model.level_log_probs(self.out.logits[:, -1], 0)

    def next(self, beam_idx: torch.Tensor, codes: torch.Tensor, level: int) -> torch.Tensor:
        """Level `level + 1`'s log-probs (B', V) of the beams that continue row `beam_idx`
        (B',) of the previous step with level `level`'s `codes` (B',)."""
        tokens = (codes + int(self.model.level_offsets[level])).view(-1, 1)
        self.out = _next_step(self.model, self.state, _cache_of(self.out), beam_idx, tokens, level)
        return self.model.level_log_probs(self.out.logits[:, -1], level + 1)


class ItemSteps:
    """The same steps for an item-level model: one hidden state per history, and a query
    that takes in the codes chosen so far."""

    def __init__(self, model: ItemRecModel, prompt: np.ndarray) -> None:
        self.net = model.model
        self.hidden = self.query = model.last_hidden(prompt)
        # with a trie softmax, the trie node each row's codes reached (-1: off the trie)
        self.node = torch.zeros(len(self.query), dtype=torch.long, device=self.query.device)

    def first(self) -> torch.Tensor:
        return self.net.level_log_probs(self.query, 0, self.net.allowed(0, self.node))

    def next(self, beam_idx: torch.Tensor, codes: torch.Tensor, level: int) -> torch.Tensor:
        self.query = self.net.condition(self.query[beam_idx], codes + self.net.offsets[level])
        allowed = None
        if self.net.trie_softmax:
            self.node = self.net.require_trie().step(self.node[beam_idx], codes, level)
            allowed = self.net.allowed(level + 1, self.node)
        return self.net.level_log_probs(self.query, level + 1, allowed)

    def rank_items(
        self, scores: torch.Tensor, items: torch.Tensor, codes: torch.Tensor, tables: TrieTables
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Final beams (B, K) as they are, or with a dense head, their items' dense
        log-probs added and the beams ranked again by the sum (codes (B, K, L) follow)."""
        if not self.net.dense_head:
            return scores, items, codes
        dense = self.net.dense_log_probs(self.hidden, tables).to(scores.dtype)
        scores, order = (scores + dense.gather(1, items.clamp(min=0))).sort(1, descending=True)
        return scores, items.gather(1, order), codes.gather(1, order[..., None].expand_as(codes))


def steps_for(model: Model, prompt: np.ndarray, shared_prompt: bool) -> Any:
    """The step interface of `model`: item-level, token-level with the prompt's keys/values
    shared by a user's beams (`SharedPromptSteps`, where the architecture has
    it), or token-level on transformers' per-beam cache."""
    if model.kind == "item":
        return ItemSteps(model, prompt)
    if shared_prompt and supports_shared_prompt(model):
        return SharedPromptSteps(model, prompt)
    return TokenSteps(model, prompt)


class SharedPromptSteps:
    """`TokenSteps` with the prompt's keys/values once per user."""

    def __init__(self, model: RecModel, prompt: np.ndarray) -> None:
        from transformers import DynamicCache

        register()
        self.model, self.net = model, model.model
        # every config of the network (T5 stacks hold copies), found once, not every step
        self.configs = list(
            {id(m.config): m.config for m in self.net.modules() if hasattr(m, "config")}.values()
        )
        out, state = _first_step(model, prompt)
        self.logits = out.logits[:, -1]
        cache = _cache_of(out)
        if model.kind == "seq2seq":
            # the decoder's start token stays in the per-beam cache; the cross-attention
            # keys/values are the shared part
            cross = cache.cross_attention_cache
            self.prompt = SharedPrompt(
                [layer.keys for layer in cross.layers],
                [layer.values for layer in cross.layers],
                state["mask"],
                frozenset(id(block.layer[1].EncDecAttention) for block in self.net.decoder.block),
            )
            self.cache = cache
            self.beams = cache.self_attention_cache
            # stands in for the encoder output the decoder no longer reads: its keys and
            # values come from the cache (marked as computed), one row broadcast per beam
            self.encoder = state["hidden"][:1, :1]
        else:
            self.prompt = SharedPrompt(
                [layer.keys for layer in cache.layers],
                [layer.values for layer in cache.layers],
                state["mask"],
            )
            self.cache = self.beams = DynamicCache()
            self.pos = state["pos"]  # (B, 1) position of each prompt's last token
        self.rows = self.prompt.users  # beam rows of the previous step
        self.cache_arg = _cache_arg(self.net)

    def first(self) -> torch.Tensor:
        return self.model.level_log_probs(self.logits, 0)

    def next(self, beam_idx: torch.Tensor, codes: torch.Tensor, level: int) -> torch.Tensor:
        model, b = self.model, self.prompt.users
        rows = len(beam_idx)
        k_old, k = self.rows // b, rows // b
        user = torch.arange(rows, device=beam_idx.device) // k
        if rows % b or not bool(torch.equal(beam_idx // k_old, user)):
            raise RuntimeError("shared-prompt beams must be user-major, K rows per user")
        if self.beams.get_seq_length() > 0:
            self.beams.reorder_cache(beam_idx)
        self.rows = rows
        tokens = (codes + int(model.level_offsets[level])).view(-1, 1)
        with attention_implementation(self.configs, ATTENTION):
            if model.kind == "seq2seq":
                out = self.net(
                    encoder_outputs=(self.encoder.expand(rows, -1, -1),),
                    decoder_input_ids=tokens,
                    **{self.cache_arg: self.cache},
                    use_cache=True,
                    siit_prompt=self.prompt,
                )
            else:
                out = self.net(
                    input_ids=tokens,
                    position_ids=self.pos[user] + level + 1,
                    **{self.cache_arg: self.cache},
                    use_cache=True,
                    siit_prompt=self.prompt,
                )
        return model.level_log_probs(out.logits[:, -1], level + 1)
