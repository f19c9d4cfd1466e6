"""Initial item tokenizers: everything that turns a `Dataset` into unique `Identifiers`.

`base` holds the interface, the uniqueness step and the simple tokenizers (random,
sequential, from a file); one module per learned method: `rqvae` (TIGER's residual
quantization), `letter` (RQ-VAE plus collaborative and diversity losses), `cid` (spectral
clustering of the co-occurrence graph); `kmeans` is the clustering they share. The learned
ones import torch or scipy, so they are imported from their modules (or as
`siit.RQVAETokenizer`, `siit.LETTERTokenizer`, `siit.CIDTokenizer`, loaded on first use).
"""

from siit.tokenizers.base import (
    FileTokenizer,
    FitReport,
    RandomTokenizer,
    SequentialTokenizer,
    Tokenizer,
    UniqueMethod,
)

__all__ = [
    "FileTokenizer",
    "FitReport",
    "RandomTokenizer",
    "SequentialTokenizer",
    "Tokenizer",
    "UniqueMethod",
]
