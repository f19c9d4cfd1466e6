"""siit: self-improving item tokenization (SIIT) for generative recommendation.

Items are identified by short sequences of discrete codes; a language model learns to
generate the next item's identifier and, during training, re-tokenizes the items. The Rust
core (`siit._core`) owns the identifier trie, collision-free identifier assignment and the
duplicate passes.
"""

from siit._core import (
    IdentifierTrie,
    SiitError,
    assign_unique,
    disambiguate,
    group_duplicates,
)
from siit._core import __version__ as __version__

__all__ = [
    "IdentifierTrie",
    "SiitError",
    "assign_unique",
    "disambiguate",
    "group_duplicates",
]
