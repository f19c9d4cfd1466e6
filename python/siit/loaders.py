"""The table, Hugging Face and Amazon loaders under their old import path; they are
`Dataset`'s constructors (`siit.data`)."""

from .data.dataset import Dataset

from_amazon = Dataset.from_amazon
from_hf = Dataset.from_hf
from_interactions = Dataset.from_interactions
from_table = Dataset.from_table

__all__ = ["from_amazon", "from_hf", "from_interactions", "from_table"]
