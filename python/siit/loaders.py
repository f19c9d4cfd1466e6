"""The table, Hugging Face and Amazon loaders, which live in `siit.data` (`tables`, `hf`,
`amazon`); their names stay importable from here."""

from .data.amazon import from_amazon
from .data.hf import from_hf
from .data.tables import from_interactions, from_table

__all__ = ["from_amazon", "from_hf", "from_interactions", "from_table"]
