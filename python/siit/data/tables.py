"""Building a `Dataset` from interaction records: generic tables (pandas DataFrames, CSV or
Parquet files, Hugging Face `datasets`) and raw Amazon review dumps (2014 and 2018 style).

All of them end in `from_interactions`: ids mapped to dense indices, optional de-duplication
of repeated (user, item) pairs, interactions with items that have no text entry rejected or
dropped, an iterative k-core filter, and each user's interactions ordered by time, ties by
their order in the input. Everything a filter removes is counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from .dataset import Dataset

log = logging.getLogger(__name__)

TEXT_FIELDS = ("title", "description", "brand", "categories")


def from_interactions(
    cls: type[Dataset],
    users: Any,
    items: Any,
    timestamps: Any,
    item_text: Mapping[str, Mapping[str, str]],
    name: str = "dataset",
    k_core: int = 0,
    dedup: bool = False,
    missing_text: Literal["error", "drop"] = "error",
    max_history: int = 20,
) -> Dataset:
    """A `cls` (a `Dataset`) from parallel arrays of user ids, item ids and timestamps."""
    users = np.asarray(users).astype(str)
    items = np.asarray(items).astype(str)
    times = np.asarray(timestamps, dtype=np.float64)
    if not len(users) == len(items) == len(times):
        raise ValueError(
            f"{name}: users, items and timestamps differ in length "
            f"({len(users)}, {len(items)}, {len(times)})"
        )
    if len(users) == 0:
        raise ValueError(f"{name}: no interactions")
    if np.isnan(times).any():
        raise ValueError(f"{name}: timestamp of interaction {int(np.isnan(times).argmax())} is NaN")
    keep = np.ones(len(users), dtype=bool)
    known = np.isin(items, np.array(list(item_text), dtype=str))
    if not known.all():
        if missing_text == "error":
            first = int((~known).argmax())
            raise ValueError(
                f"{name}: interaction {first} (user {str(users[first])!r}) names item "
                f"{str(items[first])!r}, "
                "which has no text entry (pass missing_text='drop' to drop such interactions)"
            )
        _count(name, "interactions with items that have no text", ~known)
        keep &= known
    if dedup:
        # The earliest interaction of each (user, item) pair stays.
        order = np.lexsort((np.arange(len(users)), times, items, users))
        pair_user, pair_item = users[order], items[order]
        repeat = np.zeros(len(users), dtype=bool)
        repeat[order[1:]] = (pair_user[1:] == pair_user[:-1]) & (pair_item[1:] == pair_item[:-1])
        _count(name, "repeated (user, item) interactions", repeat & keep)
        keep &= ~repeat
    users, items, times = users[keep], items[keep], times[keep]
    if k_core > 0:
        users, items, times = _k_core(users, items, times, k_core, name)
    if len(users) == 0:
        raise ValueError(f"{name}: no interactions left after filtering")

    user_ids, user_index = _dense(users)
    item_ids, item_index = _dense(items)
    order = np.lexsort((np.arange(len(users)), times, user_index))
    boundaries = np.flatnonzero(np.diff(user_index[order])) + 1
    sequences = [s.tolist() for s in np.split(item_index[order], boundaries)]
    text = [dict(item_text[i]) for i in item_ids]
    return cls(sequences, text, item_ids.tolist(), user_ids.tolist(), max_history, name)


def _dense(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ids and each entry's index among them; numeric ids sort as numbers."""
    distinct, index = np.unique(ids, return_inverse=True)
    if all(i.isdigit() for i in distinct):
        numeric = np.argsort(distinct.astype(np.int64), kind="stable")
        distinct, index = distinct[numeric], np.argsort(numeric)[index]
    return distinct, index


def _count(name: str, what: str, removed: np.ndarray) -> None:
    if removed.any():
        log.warning("%s: dropped %d %s", name, int(removed.sum()), what)


def _k_core(users, items, times, k: int, name: str):
    """Drops users and items with fewer than k interactions until none is left."""
    start = len(users)
    while True:
        _, user_of, user_counts = np.unique(users, return_inverse=True, return_counts=True)
        _, item_of, item_counts = np.unique(items, return_inverse=True, return_counts=True)
        keep = (user_counts[user_of] >= k) & (item_counts[item_of] >= k)
        if keep.all():
            break
        users, items, times = users[keep], items[keep], times[keep]
    if len(users) < start:
        log.warning(
            "%s: %d-core filter dropped %d of %d interactions", name, k, start - len(users), start
        )
    return users, items, times


def from_table(
    cls: type[Dataset],
    interactions: Any,
    items: Any = None,
    user: str = "user_id",
    item: str = "item_id",
    time: str = "timestamp",
    text_fields: tuple[str, ...] = TEXT_FIELDS,
    name: str | None = None,
    **options: Any,
) -> Dataset:
    """A `Dataset` from a table of interactions with `user`, `item` and `time` columns, plus
    an optional table of item text keyed by the same `item` column (without it, the items
    have no text, as in every text-free loader). Tables may be pandas DataFrames, CSV or
    Parquet paths, or Hugging Face `datasets.Dataset` objects. `options` go to
    `from_interactions` (k_core, dedup, ...)."""
    frame = _frame(interactions, "interactions")
    missing = [c for c in (user, item, time) if c not in frame.columns]
    if missing:
        raise ValueError(f"interactions: no column {missing} (columns: {list(frame.columns)})")
    text: dict[str, dict[str, str]]
    if items is None:
        text = {str(i): {} for i in frame[item].unique()}
    else:
        table = _frame(items, "items")
        if item not in table.columns:
            raise ValueError(f"items: no column {item!r} (columns: {list(table.columns)})")
        fields = [f for f in text_fields if f in table.columns]
        records = table[[item, *fields]].astype(str).to_dict("records")
        text = {r.pop(item): r for r in records}
    label = name or (Path(interactions).stem if isinstance(interactions, str | Path) else "table")
    return from_interactions(cls, frame[user], frame[item], frame[time], text, label, **options)


def _frame(table: Any, what: str):
    """A pandas DataFrame from a DataFrame, a CSV/Parquet path or a Hugging Face dataset."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(f"reading {what} as a table needs pandas: `pip install pandas`") from e
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, str | Path):
        path = Path(table)
        if not path.exists():
            raise ValueError(f"{what}: {path} does not exist")
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        raise ValueError(f"{what}: {path} is neither .csv, .tsv nor .parquet")
    if hasattr(table, "to_pandas"):  # Hugging Face datasets
        return table.to_pandas()
    raise ValueError(
        f"{what}: expected a DataFrame, a CSV/Parquet path or a Hugging Face "
        f"dataset, got {type(table).__name__}"
    )
