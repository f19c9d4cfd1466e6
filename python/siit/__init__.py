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
from siit.data import Dataset, Samples
from siit.identifiers import Identifiers, IdentifierStats, UniqueResult

__all__ = [
    "Dataset",
    "IdentifierStats",
    "IdentifierTrie",
    "Identifiers",
    "Samples",
    "UniqueResult",
    "SiitError",
    "assign_unique",
    "disambiguate",
    "group_duplicates",
]
