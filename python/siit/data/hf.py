"""Hugging Face `datasets` (objects, local files or hub names), by default in the Amazon
Reviews 2023 layout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tables import from_interactions

if TYPE_CHECKING:
    from .dataset import Dataset

# The Amazon Reviews 2023 layout (McAuley Lab on the Hugging Face hub): reviews carry
# user_id, parent_asin and a millisecond timestamp; metadata carries parent_asin and text
# fields, some of them lists of strings.
HF_TEXT_FIELDS = ("title", "description", "features", "categories")


def from_hf(
    cls: type[Dataset],
    reviews: Any,
    metadata: Any = None,
    *,
    user: str = "user_id",
    item: str = "parent_asin",
    time: str = "timestamp",
    text_fields: tuple[str, ...] = HF_TEXT_FIELDS,
    split: str = "train",
    k_core: int = 5,
    dedup: bool = True,
    name: str | None = None,
    max_history: int = 20,
    **load_options: Any,
) -> Dataset:
    """A `Dataset` from Hugging Face `datasets`: `reviews` (and optional `metadata`) are each a
    `datasets.Dataset`, a `DatasetDict` (its `split` is used), local files (.json/.jsonl,
    .csv, .parquet, or a list of them) or a name for `datasets.load_dataset` (with
    `load_options`, e.g. a configuration name; only a hub name reaches the network).

    Defaults read the Amazon Reviews 2023 layout. Repeated (user, item) pairs keep their
    first interaction (`dedup`), the k-core filter runs until stable, and with `metadata`
    items that have no metadata row are dropped, each counted. List fields (description,
    features, categories) are joined into text. Without `metadata` the items have no text."""
    table = _hf_table(reviews, split, "reviews", load_options)
    _need_columns(table, (user, item, time), "reviews")
    # list(): a plain column whatever datasets returns (a list, or a lazy Column in 4.x)
    users, items, times = (list(table[c]) for c in (user, item, time))
    if metadata is None:
        text: dict[str, dict[str, str]] = {str(i): {} for i in dict.fromkeys(items)}
        missing = "error"
    else:
        meta = _hf_table(metadata, split, "metadata", load_options)
        _need_columns(meta, (item,), "metadata")
        fields = [f for f in text_fields if f in meta.column_names]
        columns = {f: list(meta[f]) for f in fields}
        text = {
            str(key): {f: _joined(columns[f][row]) for f in fields}
            for row, key in enumerate(meta[item])
        }
        missing = "drop"
    label = name or (reviews if isinstance(reviews, str) else "hf")
    return from_interactions(
        cls,
        users,
        items,
        times,
        text,
        Path(str(label)).name.split(".")[0],
        k_core=k_core,
        dedup=dedup,
        missing_text=missing,
        max_history=max_history,
    )


def _hf_table(source: Any, split: str, what: str, options: Mapping[str, Any]) -> Any:
    """A `datasets.Dataset` from a Dataset, a DatasetDict, local files or a hub name."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"reading {what} from Hugging Face datasets: pip install datasets") from e
    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ValueError(f"{what}: no split {split!r} (splits: {list(source)})")
        return source[split]
    if isinstance(source, datasets.Dataset):
        return source
    files = [source] if isinstance(source, str | Path) else source
    if isinstance(files, list) and files and all(Path(str(f)).exists() for f in files):
        suffix = Path(str(files[0])).suffix.lstrip(".")
        builder = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}.get(suffix)
        if builder is None:
            raise ValueError(f"{what}: {files[0]} is not .json, .jsonl, .csv or .parquet")
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    if isinstance(source, str | Path):
        return datasets.load_dataset(str(source), split=split, **options)
    raise ValueError(
        f"{what}: expected a datasets.Dataset, a DatasetDict, local files or a dataset name, "
        f"got {type(source).__name__}"
    )


def _need_columns(table: Any, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{what}: no column {missing} (columns: {table.column_names})")


def _joined(value: Any) -> str:
    """Text of a field that may be a string, a number, None or a (nested) list of them."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(p for p in (_joined(v) for v in value) if p)
    return str(value)
