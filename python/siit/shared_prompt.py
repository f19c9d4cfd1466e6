"""Beam steps of token-level models with the prompt computed once per user.

Beam search runs the prompt once (B rows) and then extends K beams per user by one identifier
token at a time. Transformers' caches hold the prompt's keys and values per *beam*, so every
step copies them K times (`reorder_cache`) and attends over B x K prompt copies; for a
150-token prompt and three identifier tokens that copying is most of the search. Here the
prompt's keys/values (decoder-only) or the encoder's cross-attention keys/values (T5) stay
one per user, and only the generated tokens (at most L per beam) are kept and reordered per
beam. One attention function, registered with transformers' `AttentionInterface`, reads both:
the model's own modules do everything else (norms, rotary, relative bias, MLPs), so the
steps are the same network, not a re-implementation of it.

Beam rows are user-major: rows `u * K ... u * K + K - 1` belong to user u, as both callers
(`beam_search`, `candidate_log_probs`) lay them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .models import RecModel

ATTENTION = "siit_shared_prompt"
# Architectures whose attention modules are known to go through the attention interface with
# the per-layer `layer_idx` this needs (and are tested against the per-beam-copy path).
SUPPORTED = frozenset({"gpt2", "llama", "t5"})


class SharedPrompt:
    """Per-user keys/values of every layer (B, H_kv, P, d), their additive padding mask
    (B, 1, 1, P), and which attention modules read only them (T5's cross-attention)."""

    def __init__(
        self,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        mask: torch.Tensor,
        cross: frozenset[int] = frozenset(),
    ) -> None:
        self.keys, self.values, self.cross = keys, values, cross
        self.bias = torch.zeros(mask.shape, dtype=keys[0].dtype, device=mask.device)
        self.bias = self.bias.masked_fill(mask == 0, torch.finfo(keys[0].dtype).min)
        self.bias = self.bias[:, None, None, :]

    @property
    def users(self) -> int:
        return self.keys[0].shape[0]


def _attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    siit_prompt: SharedPrompt | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of one new token per beam (B*K, H, 1, d). Decoder-only: over its user's
    prompt keys and its beam's own generated keys `key`/`value` (B*K, H_kv, t, d). T5: the
    cross-attention reads the user's encoder keys only, the self-attention the beam's own
    tokens only. A new token sees every generated token of its beam and none is padding,
    so `attention_mask` is not needed."""
    if siit_prompt is None:
        raise RuntimeError(f"{ATTENTION} attention needs the shared prompt (siit_prompt=...)")
    rows, heads, q_len, dim = query.shape
    if q_len != 1:
        raise RuntimeError(f"{ATTENTION} attention decodes one token per beam, got {q_len}")
    scale = dim**-0.5 if scaling is None else scaling
    wide = torch.promote_types(query.dtype, torch.float32)  # half-precision models: fp32
    reads_prompt = not siit_prompt.cross or id(module) in siit_prompt.cross
    reads_own = not siit_prompt.cross
    if not reads_prompt:  # T5's decoder self-attention: an ordinary attention
        scores = (query @ key.transpose(-1, -2)) * scale
        if position_bias is not None:
            scores = scores + position_bias[..., -1:, :]
        probs = torch.softmax(scores, -1, dtype=wide).to(query.dtype)
        return (probs @ value).transpose(1, 2), None
    layer = module.layer_idx
    pk, pv = siit_prompt.keys[layer], siit_prompt.values[layer]
    b, kv_heads, p = pk.shape[0], pk.shape[1], pk.shape[2]
    k, groups = rows // b, heads // kv_heads
    # query head h reads kv head h // groups: group the queries, never repeat the prompt
    q = query.view(b, k, kv_heads, groups, dim).permute(0, 2, 3, 1, 4).reshape(b, kv_heads, -1, dim)
    scores = (q @ pk.transpose(-1, -2)) * scale  # (B, H_kv, groups * K, P)
    scores = scores.view(b, heads, k, p) + siit_prompt.bias
    if reads_own:
        own_key = key.repeat_interleave(groups, dim=1) if groups > 1 else key
        own_value = value.repeat_interleave(groups, dim=1) if groups > 1 else value
        own = (query @ own_key.transpose(-1, -2)) * scale  # (B*K, H, 1, t)
        own = own.view(b, k, heads, -1).transpose(1, 2)  # (B, H, K, t)
        scores = torch.cat([scores, own], -1)
    probs = torch.softmax(scores, -1, dtype=wide).to(query.dtype)
    prompt_probs = probs[..., :p].reshape(b, kv_heads, groups * k, p)
    out = (prompt_probs @ pv).view(b, kv_heads, groups, k, dim)
    out = out.permute(0, 3, 1, 2, 4).reshape(rows, 1, heads, dim)  # HF's (B*K, q_len, H, d)
    if reads_own:
        own_probs = probs[..., p:].transpose(1, 2).reshape(rows, heads, 1, -1)
        out = out + (own_probs @ own_value).transpose(1, 2)
    return out, None


@cache
def register() -> None:
    """Registers the attention function, on first use: importing transformers' modeling
    code costs seconds that `siit evaluate` of an item-level run should not pay."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, _attention)


@contextmanager
def attention_implementation(configs: list[Any], name: str) -> Iterator[None]:
    """The `configs` of a model set to attention `name` for the block."""
    before = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = name
        yield
    finally:
        for c, old in zip(configs, before, strict=True):
            c._attn_implementation = old


def supports(model: RecModel) -> bool:
    """Whether `model`'s architecture has the shared-prompt steps."""
    return getattr(model.model.config, "model_type", None) in SUPPORTED
