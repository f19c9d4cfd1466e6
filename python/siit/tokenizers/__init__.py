"""Initial item tokenizers: everything that turns a `Dataset` into unique `Identifiers`.

`base` holds the interface, the uniqueness step and the simple tokenizers (random,
sequential, from a file); one module per learned method: `rqvae` (TIGER's residual
quantization), `letter` (RQ-VAE plus collaborative and diversity losses), `cid` (spectral
clustering of the co-occurrence graph); `kmeans` is the clustering they share. The learned
ones import torch or scipy and load on first use.
"""

from typing import Any

from siit.tokenizers.base import (
    FileTokenizer,
    FitReport,
    RandomTokenizer,
    SequentialTokenizer,
    Tokenizer,
    UniqueMethod,
)

_LAZY = {
    "RQVAETokenizer": "siit.tokenizers.rqvae",
    "LETTERTokenizer": "siit.tokenizers.letter",
    "CIDTokenizer": "siit.tokenizers.cid",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'siit.tokenizers' has no attribute {name!r}")


__all__ = [
    "CIDTokenizer",
    "FileTokenizer",
    "FitReport",
    "LETTERTokenizer",
    "RQVAETokenizer",
    "RandomTokenizer",
    "SequentialTokenizer",
    "Tokenizer",
    "UniqueMethod",
]
