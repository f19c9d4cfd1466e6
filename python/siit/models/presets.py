"""Model presets as data: the fields of each named size. Token-level presets (`PRESETS`) are
Hugging Face configurations built from scratch; item-level ones (`ITEM_PRESETS`, names
starting "item-") are `item_network.ItemLM` fields, with `ITEM_DEFAULTS` for the options
every item-level model has."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # TIGER / LETTER recommender size.
    "t5-small": dict(
        arch="t5",
        d_model=128,
        num_layers=4,
        num_decoder_layers=4,
        num_heads=6,
        d_kv=64,
        d_ff=1024,
        dropout_rate=0.1,
    ),
    # CPU default: a quarter of the width, half the depth.
    "t5-mini": dict(
        arch="t5",
        d_model=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        d_kv=16,
        d_ff=256,
        dropout_rate=0.1,
    ),
    # Tests.
    "t5-tiny": dict(
        arch="t5",
        d_model=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        d_kv=16,
        d_ff=64,
        dropout_rate=0.0,
    ),
    # Decoder-only, trained on every position of a user's window in one pass: the CPU
    # default, and a size for a GPU.
    "gpt-mini": dict(
        arch="gpt2",
        n_embd=64,
        n_layer=2,
        n_head=2,
        n_inner=256,
        n_positions=512,
        resid_pdrop=0.2,
        embd_pdrop=0.2,
        attn_pdrop=0.0,  # attention dropout costs step time and did not help
    ),
    "gpt-small": dict(
        arch="gpt2",
        n_embd=256,
        n_layer=4,
        n_head=4,
        n_inner=1024,
        n_positions=1024,
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.0,
    ),
    "gpt-tiny": dict(
        arch="gpt2",
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_inner=64,
        n_positions=512,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    ),
    "llama-tiny": dict(
        arch="llama",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    ),
}

# SASRec's shape (RecBole's and benches/peers.py's).
_SASREC_SHAPE: dict[str, Any] = dict(
    arch="gpt2", hidden=64, layers=2, heads=2, inner=256, head_inner=256, dropout=0.3
)
ITEM_PRESETS: dict[str, dict[str, Any]] = {
    # CPU default: SASRec's shape over identifiers, with the dense head (validation
    # NDCG@10 +5% over 5 seeds of the default, docs/results.md).
    "item-mini": {**_SASREC_SHAPE, "dense_head": True},
    # A GPU size, in the range of published item-level models (2-13M parameters with codes).
    "item-small": dict(
        arch="gpt2", hidden=256, layers=4, heads=4, inner=1024, head_inner=1024, dropout=0.3
    ),
    # Tests.
    "item-tiny": dict(
        arch="gpt2", hidden=32, layers=1, heads=2, inner=64, head_inner=64, dropout=0.0
    ),
}
# Presets whose models read item text as input unless `network.options` says otherwise:
# "auto" adds a learned projection of each item's text vector to its input where the dataset
# has item text (LIGER's input; +5% validation NDCG@10 on MovieLens, docs/results.md).
TEXT_INPUT_DEFAULTS: dict[str, bool | str] = {"item-mini": "auto", "item-small": "auto"}
# `network.options` that say what text a model reads rather than set a field of it (checked
# with the settings, `config.sections`).
TEXT_SWITCHES = ("text_input", "text_prior")
# Options every item-level model has, and their defaults where its preset sets none.
ITEM_DEFAULTS: dict[str, Any] = dict(
    conditional=True,
    max_items=512,
    attn_dropout=0.0,
    text_dim=0,
    prior_dim=0,
    trie_softmax=False,
    dense_head=False,
    dense_residual=False,
    activation="",  # the architecture's (item_backbone.ACTIVATIONS)
)


def item_params(preset: str, options: dict[str, Any]) -> dict[str, Any]:
    """The fields of item-level `preset` with `options` in place of its values; refuses an
    unknown preset, an unknown option and a value of the wrong type (a typo'd "yes" must
    not train as True)."""
    if preset not in ITEM_PRESETS:
        raise ValueError(f"unknown item-level preset {preset!r}; known: {list(ITEM_PRESETS)}")
    params = {**ITEM_DEFAULTS, **ITEM_PRESETS[preset]}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} of item-level model {preset!r}; known: {sorted(params)}"
        )
    for name, value in options.items():
        expected = bool if isinstance(params[name], bool) else type(params[name])
        if expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        if not ok:
            raise ValueError(f"item-level option {name} must be {expected.__name__}, got {value!r}")
    if options.get("activation"):
        from transformers.activations import ACT2FN  # torch: only when one is named

        if options["activation"] not in ACT2FN:
            raise ValueError(
                f"item-level option activation {options['activation']!r} is not a Hugging Face "
                f"activation; known: {sorted(ACT2FN)}"
            )
    return {**params, **options}
