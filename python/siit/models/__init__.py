"""Recommendation models: presets, the two model families and the factory.

- `presets`: the named sizes of both families, as data.
- `token_level`: Hugging Face language models (encoder-decoder or decoder-only) that read and
  write identifiers as tokens, L per item (`RecModel`; the paper's shape), with the
  item-vector input of the item2id prompt; `token_build` makes them (from scratch with a
  WordPiece vocabulary, or from the hub).
- `item_level`: one position per item, the identifier's codes summed in and scored level by
  level out (`ItemRecModel`).

`build_model` makes either from a preset name (or a Hugging Face model), `load_model` reads
either back from a directory written by its `save`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .item_level import ItemRecModel, build_item_model
from .presets import ITEM_PRESETS, PRESETS, TEXT_INPUT_DEFAULTS, TEXT_SWITCHES, item_params
from .token_build import build_token_model, smollm2_gguf, train_text_tokenizer
from .token_level import DTYPES, NEG_INF, PROJECTION, PROJECTION_FILE, RecModel, full_precision

__all__ = [
    "DTYPES",
    "ITEM_PRESETS",
    "NEG_INF",
    "PRESETS",
    "PROJECTION",
    "PROJECTION_FILE",
    "TEXT_INPUT_DEFAULTS",
    "ItemRecModel",
    "RecModel",
    "build_model",
    "check_model",
    "full_precision",
    "is_preset",
    "load_model",
    "smollm2_gguf",
    "train_text_tokenizer",
]

Model = RecModel | ItemRecModel


def is_preset(name: str) -> bool:
    return name in PRESETS or name in ITEM_PRESETS


def check_model(name: str, gguf_file: str | None = None, options: dict | None = None) -> None:
    """Fail early, before identifiers are fitted, on a model that is neither a preset, a
    local directory nor a hub name that is cached or reachable (the error lists the
    presets), and on item-level options the model would refuse."""
    if name in ITEM_PRESETS:
        item_params(name, {k: v for k, v in (options or {}).items() if k not in TEXT_SWITCHES})
        return
    if is_preset(name) or Path(name).is_dir():
        return
    if gguf_file is not None:
        return  # a GGUF checkpoint is checked when it loads
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except Exception as err:  # noqa: BLE001 - any failure means the name is unusable
        raise ValueError(
            f"model {name!r} is not a preset ({', '.join([*PRESETS, *ITEM_PRESETS])}), a local "
            f"directory or a loadable Hugging Face model: {err}"
        ) from None


def build_model(
    name: str,
    codebook_sizes: Sequence[int],
    prefixes: Sequence[str],
    texts: Sequence[str] = (),
    text_vocab_size: int = 4000,
    gguf_file: str | None = None,
    seed: int = 0,
    **overrides: Any,
) -> Model:
    """A model by preset name (token-level or item-level, built from scratch) or a
    pretrained token-level model by Hugging Face name or path; `overrides` change preset
    fields. Token-level models learn a text vocabulary from `texts`; item-level models read
    no text."""
    if name in ITEM_PRESETS:
        return build_item_model(codebook_sizes, prefixes, seed, preset=name, **overrides)
    return build_token_model(
        name, codebook_sizes, prefixes, texts, text_vocab_size, gguf_file, seed, **overrides
    )


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> Model:
    """A model saved by `RecModel.save` or `ItemRecModel.save`."""
    directory = Path(directory)
    meta = directory / "siit_model.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{directory} is not a saved siit model (no siit_model.json)")
    if json.loads(meta.read_text()).get("kind") == "item":
        return ItemRecModel.load(directory, device)
    return RecModel.load(directory, device)
