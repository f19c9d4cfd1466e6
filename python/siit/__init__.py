"""siit: self-improving item tokenization (SIIT) for generative recommendation.

Items are identified by short sequences of discrete codes; a language model learns to
generate the next item's identifier and, during training, re-tokenizes the items. The Rust
core (`siit._core`) owns the identifier trie, collision-free identifier assignment and the
duplicate passes.
"""

from typing import Any

from siit._core import (
    IdentifierTrie,
    SiitError,
    assign_unique,
    disambiguate,
    group_duplicates,
)
from siit._core import __version__ as __version__
from siit.data import Dataset, Samples, item_texts
from siit.embed import embed
from siit.identifiers import Identifiers, IdentifierStats, UniqueResult
from siit.tokenizers import (
    FileTokenizer,
    FitReport,
    RandomTokenizer,
    SequentialTokenizer,
    Tokenizer,
)

# Names whose modules import torch or other heavy libraries load on first use, so that
# `import siit` stays fast.
_LAZY = {
    "CIDTokenizer": "siit.tokenizers.cid",
    "LETTERTokenizer": "siit.tokenizers.letter",
    "RQVAETokenizer": "siit.tokenizers.rqvae",
    "train": "siit.api",
    "evaluate": "siit.api",
    "recommend": "siit.serving",
    "load": "siit.serving",
    "add_items": "siit.new_items",
    "Recommender": "siit.serving",
    "TrainConfig": "siit.config",
    "TrainResult": "siit.training",
    "RecModel": "siit.models",
    "build_model": "siit.models",
    "TrieTables": "siit.decoding",
    "TrieLogitsProcessor": "siit.decoding",
    "beam_search": "siit.decoding",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'siit' has no attribute {name!r}")


__all__ = [
    "CIDTokenizer",
    "Dataset",
    "FileTokenizer",
    "FitReport",
    "IdentifierStats",
    "IdentifierTrie",
    "Identifiers",
    "LETTERTokenizer",
    "RQVAETokenizer",
    "RandomTokenizer",
    "Samples",
    "SequentialTokenizer",
    "SiitError",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "RecModel",
    "Recommender",
    "TrieLogitsProcessor",
    "TrieTables",
    "UniqueResult",
    "add_items",
    "assign_unique",
    "beam_search",
    "build_model",
    "disambiguate",
    "embed",
    "group_duplicates",
    "evaluate",
    "item_texts",
    "load",
    "recommend",
    "train",
]
