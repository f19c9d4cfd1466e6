"""Item text as one string per item, the input of text embeddings and text tokenizers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_FIELDS = ("title", "description", "brand", "categories")


def item_texts(
    dataset: Any,
    fields: Sequence[str] = DEFAULT_FIELDS,
    max_chars: int | None = 500,
    sep: str = ". ",
) -> list[str]:
    """One string per item: the non-empty `fields` of each item, in the order given, joined
    with `sep` ("title. description. brand. categories").

    `dataset` is a `siit.Dataset` or a sequence of mappings (field -> text). Whitespace runs
    collapse to one space; a field longer than `max_chars` characters (typically a
    description) is cut at the last word boundary before the limit (None: no limit). A field
    holding a list (e.g. categories) is joined with ", ". An item with none of the fields
    gives "". Raises ValueError when no item has any of the fields (a misspelt field name).
    """
    records = list(getattr(dataset, "item_text", dataset))
    if isinstance(fields, str):
        fields = (fields,)
    if not fields:
        raise ValueError("fields is empty: name at least one text field, e.g. ('title',)")
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"max_chars must be >= 1 or None, got {max_chars}")
    out, seen = [], set()
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"item {index}: expected a mapping of text fields, got {type(record)}")
        parts = []
        for field in fields:
            value = record.get(field)
            if value is None:
                continue
            seen.add(field)
            text = _clean(value, max_chars)
            if text:
                parts.append(text)
        out.append(_join(parts, sep))
    if out and not seen:
        available = sorted({f for r in records for f in r})
        raise ValueError(f"no item has any of the fields {list(fields)}; available: {available}")
    return out


def _clean(value: Any, max_chars: int | None) -> str:
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value if v is not None and str(v).strip())
    text = " ".join(str(value).split())
    if max_chars is not None and len(text) > max_chars:
        cut = text[: max_chars + 1]
        space = cut.rfind(" ")
        text = (cut[:space] if space > max_chars // 2 else cut[:max_chars]).rstrip(" ,;:-")
    return text


def _join(parts: list[str], sep: str) -> str:
    """Joins with `sep`, without doubling a period when a part already ends a sentence."""
    end = sep.rstrip()
    out = ""
    for part in parts:
        if out:
            out += (sep[len(end) :] if end and out.endswith((".", "!", "?")) else sep) + part
        else:
            out = part
    return out


# -- embeddings ---------------------------------------------------------------------------
