"""Datasets: `Dataset` (sequences, item text, the leave-one-out split), `item_texts`, one
module per input format, and `load`, the one dispatcher from a name or folder.

    dataset.py    Dataset, Samples, Windows
    text.py       item_texts
    tables.py     from_interactions (every format but LC-Rec ends here), from_table
    lcrec.py      the LC-Rec / LETTER JSON layout
    movielens.py  MovieLens-100K
    hf.py         Hugging Face `datasets`
    amazon.py     raw Amazon review dumps

`Dataset`'s constructors call the format modules, which build the class they are given
and import `Dataset` for type checking only, so nothing here imports in a circle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .dataset import MIN_SEQUENCE, Dataset, Samples, Windows
from .text import DEFAULT_FIELDS, item_texts

__all__ = [
    "DEFAULT_FIELDS",
    "MIN_SEQUENCE",
    "Dataset",
    "Samples",
    "Windows",
    "item_texts",
    "load",
]


def load(source: str | Path, max_history: int = 20, **options: Any) -> Dataset:
    """A dataset by name or folder; see `Dataset.load`."""
    return Dataset.load(source, max_history, **options)
