"""Raw Amazon review dumps (2014 and 2018 style JSON lines, gzipped or not)."""

from __future__ import annotations

import ast
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tables import from_interactions

if TYPE_CHECKING:
    from .dataset import Dataset


def from_amazon(
    cls: type[Dataset],
    reviews: str | Path,
    metadata: str | Path,
    k_core: int = 5,
    name: str | None = None,
    max_history: int = 20,
) -> Dataset:
    """Raw Amazon review dumps: gzipped (or plain) JSON lines of reviews (`reviewerID`,
    `asin`, `unixReviewTime`) and of product metadata (2014 dumps write Python literals,
    read safely with `ast.literal_eval`; 2018 dumps write JSON). Repeated user-item pairs
    keep their first review, the k-core filter runs until stable, items without metadata
    are dropped, each counted."""
    users, asins, times = [], [], []
    for number, record in _records(Path(reviews)):
        try:
            users.append(record["reviewerID"])
            asins.append(record["asin"])
            times.append(float(record["unixReviewTime"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{reviews}: line {number} lacks reviewerID/asin/unixReviewTime ({e})"
            ) from e
    text = {}
    for number, record in _records(Path(metadata)):
        if "asin" not in record:
            raise ValueError(f"{metadata}: line {number} has no asin")
        text[record["asin"]] = _amazon_text(record)
    label = name or Path(reviews).name.split(".")[0]
    return from_interactions(
        cls,
        users,
        asins,
        times,
        text,
        label,
        k_core=k_core,
        dedup=True,
        missing_text="drop",
        max_history=max_history,
    )


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """Numbered records of a JSON-lines file, gzipped or not; Python-literal lines (the 2014
    metadata) are parsed with `ast.literal_eval`, which evaluates no code."""
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                try:
                    record = ast.literal_eval(line)
                except (ValueError, SyntaxError) as e:
                    raise ValueError(f"{path}: line {number} is neither JSON nor a literal") from e
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number} is not an object")
            yield number, record


def _amazon_text(record: dict) -> dict[str, str]:
    """title, description, brand, categories as strings, from either dump's layout."""

    def flat(value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            return [s for v in value for s in flat(v)]
        return [str(value)] if value not in (None, "") else []

    categories = record.get("categories", record.get("category", []))
    return {
        "title": " ".join(flat(record.get("title"))),
        "description": " ".join(flat(record.get("description"))),
        "brand": " ".join(flat(record.get("brand"))),
        "categories": ", ".join(dict.fromkeys(flat(categories))),
    }
