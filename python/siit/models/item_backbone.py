"""The item-level network's transformer: a Hugging Face causal LM body read through
`inputs_embeds` (GPT-2 or Llama), the CPU dropout swapped into it, and the last-position
shortcut that ranking runs GPT-2 with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import GPT2Model


class Dropout(nn.Dropout):
    """Dropout whose CPU mask is 15 random bits per element, cut at p: torch's CPU
    bernoulli draws a double per element at ~6x the cost (an eighth of an item-mini training
    step went to it). Elsewhere torch's fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        n = x.numel()
        # int64 draws have a zero sign bit: each of their four int16s keeps 15 random bits
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)
        cut = round(self.p * 32768)
        keep = (bits[:n].view(x.shape) & 0x7FFF) >= cut
        return x * keep.to(x.dtype).mul_(32768 / (32768 - cut))


def _cheap_dropout(net: nn.Module) -> None:
    """Swap every `nn.Dropout` of `net` for `Dropout` (same p; attention reads its `.p`)."""
    for module in list(net.modules()):
        for child, sub in list(module.named_children()):
            if type(sub) is nn.Dropout:
                setattr(module, child, Dropout(sub.p))


# Each architecture's activation where `activation` is "". GPT-2's is the exact (erf) GELU:
# on a CPU its kernel takes half the time of the tanh form, which had a quarter of the
# encoding time; the two differ by under 1e-3. Models saved before the option existed used
# the tanh form and load with it (`ItemRecModel.load`).
ACTIVATIONS = {"gpt2": "gelu", "llama": "silu"}
LEGACY_ACTIVATIONS = {"gpt2": "gelu_pytorch_tanh", "llama": "silu"}


def build_backbone(
    arch: str,
    hidden: int,
    layers: int,
    heads: int,
    inner: int,
    dropout: float,
    attn_dropout: float,
    max_items: int,
    activation: str,
) -> nn.Module:
    """A causal transformer that reads `inputs_embeds`; its unused token table is frozen so
    that DDP does not wait for its gradient. `activation` is a Hugging Face activation name
    ("": the architecture's, see `ACTIVATIONS`)."""
    if arch not in ACTIVATIONS:
        raise ValueError(f"item-level models take arch 'gpt2' or 'llama', got {arch!r}")
    activation = activation or ACTIVATIONS[arch]
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2Model

        gpt2 = GPT2Config(
            vocab_size=1,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=inner,
            n_positions=max_items,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=attn_dropout,
            activation_function=activation,
            bos_token_id=None,
            eos_token_id=None,
        )
        net: Any = GPT2Model(gpt2)  # HF's models, loosely typed
    else:
        from transformers import LlamaConfig, LlamaModel

        llama = LlamaConfig(
            vocab_size=1,
            hidden_size=hidden,
            intermediate_size=inner,
            hidden_act=activation,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max_items,
            attention_dropout=attn_dropout,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )
        net = LlamaModel(llama)

    net.get_input_embeddings().weight.requires_grad_(False)
    _cheap_dropout(net)
    return net


def has_last_position_shortcut(net: nn.Module) -> bool:
    """Whether `last_position_state` can run `net`: GPT-2 without cross-attention."""
    from transformers import GPT2Model

    return isinstance(net, GPT2Model) and not net.config.add_cross_attention


def last_position_state(net: GPT2Model, embeds: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """A GPT-2 backbone's final state (B, d) at the last position of input vectors (B, T, d)
    whose real positions are `real` (B, T), left-padded: its blocks but the last through
    HF's own modules, the last block for the last position only (its keys and values at
    every position). Ranking reads one state per user, and the last block's other
    positions were a third of validation. Eval mode (no dropout)."""
    x = embeds + net.wpe((real.long().cumsum(1) - 1).clamp(min=0))
    n, dtype = x.shape[1], x.dtype
    # a query sees the real keys up to itself, and itself (no row is empty: padding
    # attending to nothing would make NaNs that the masked keys' zero weights keep)
    causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
    sees = (causal & real[:, None, :]) | torch.eye(n, dtype=torch.bool, device=x.device)
    bias = torch.zeros(sees.shape, dtype=dtype, device=x.device)
    bias = bias.masked_fill(~sees, torch.finfo(dtype).min)[:, None]
    *blocks, block = list[Any](net.h)  # HF's modules, untyped
    for layer in blocks:
        out = layer(x, attention_mask=bias)
        x = out[0] if isinstance(out, tuple) else out
    cfg, heads = net.config, net.config.n_head
    d = x.shape[-1]
    scale = (d // heads) ** -0.5 if cfg.scale_attn_weights else 1.0
    if cfg.scale_attn_by_inverse_layer_idx:
        scale /= cfg.n_layer
    a, w, b = block.ln_1(x), block.attn.c_attn.weight, block.attn.c_attn.bias
    q = a[:, -1] @ w[:, :d] + b[:d]  # Conv1D weights are (in, out)
    k, v = (a @ w[:, d:] + b[d:]).split(d, -1)

    def split(t: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, heads, T, d / heads)
        return t.view(len(t), -1, heads, d // heads).transpose(1, 2)

    o = nn.functional.scaled_dot_product_attention(
        split(q[:, None]), split(k), split(v), attn_mask=real[:, None, None], scale=scale
    )
    h = x[:, -1] + block.attn.c_proj(o.reshape(len(x), d))
    return net.ln_f(h + block.mlp(block.ln_2(h)))
