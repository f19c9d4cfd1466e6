"""The LC-Rec / LETTER JSON layout: `NAME.inter.json` ({user: [item, ...]} in time order)
and optionally `NAME.item.json` ({item: {field: text}}) in one folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from siit.files import read_json

if TYPE_CHECKING:
    from .dataset import Dataset

log = logging.getLogger(__name__)


def from_json(
    cls: type[Dataset],
    path: str | Path,
    name: str | None = None,
    missing_text: Literal["error", "drop"] = "error",
    max_history: int = 20,
) -> Dataset:
    """Loads the LC-Rec/LETTER layout: `NAME.inter.json` ({user: [item, ...]} in time
    order) and `NAME.item.json` ({item: {field: text}}) from a folder.

    Without `NAME.item.json` the items are those of the interactions (numeric ids in
    numeric order), without text: CID, random or file identifiers and seqrec training
    need none. Interactions with items that have no text entry raise, or with
    `missing_text="drop"` are dropped and counted.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder with NAME.inter.json and NAME.item.json")
    if name is None:
        found = sorted(folder.glob("*.inter.json"))
        if len(found) != 1:
            raise ValueError(
                f"{folder}: expected one *.inter.json, found {[f.name for f in found]}; pass name="
            )
        name = found[0].name[: -len(".inter.json")]
    inter = read_json(folder / f"{name}.inter.json")
    if not isinstance(inter, dict):
        raise ValueError(f"{folder / f'{name}.inter.json'}: must be an object of user -> items")
    text_file = folder / f"{name}.item.json"
    if text_file.exists():
        texts = read_json(text_file)
        if not isinstance(texts, dict):
            raise ValueError(f"{text_file}: must be an object of item -> text fields")
    else:  # interactions only: the items are those the users interacted with
        seen = {str(item) for seq in inter.values() if isinstance(seq, list) for item in seq}
        texts = {item: {} for item in sorted(seen, key=_id_order)}
        log.info("%s: no %s, so %d items without text", name, text_file.name, len(texts))
    item_ids = list(texts)
    index = {item: i for i, item in enumerate(item_ids)}
    for item, fields in texts.items():
        if not isinstance(fields, dict):
            raise ValueError(f"{text_file}: item {item!r} is not an object")
    sequences, dropped = [], 0
    for user, seq in inter.items():
        if not isinstance(seq, list):
            raise ValueError(f"{folder / f'{name}.inter.json'}: user {user!r} is not a list")
        known = [index.get(str(item)) for item in seq]
        if None in known:
            if missing_text == "error":
                item = seq[known.index(None)]
                raise ValueError(
                    f"{folder / f'{name}.inter.json'}: user {user!r} has item {item!r}, "
                    f"which has no entry in {name}.item.json (pass missing_text='drop' "
                    "to drop such interactions)"
                )
            dropped += known.count(None)
            known = [i for i in known if i is not None]
        sequences.append(known)
    if dropped:
        log.warning("%s: dropped %d interactions with items that have no text", name, dropped)
    text = [{k: "" if v is None else str(v) for k, v in texts[i].items()} for i in item_ids]
    dataset = cls(sequences, text, item_ids, list(inter), max_history, name)
    if not text_file.exists():
        dataset.missing_text = f"{text_file}: file not found"
    return dataset


def _id_order(item: str) -> tuple[bool, int, str]:
    """Numeric ids in numeric order, then the others as strings."""
    return (not item.isdigit(), int(item) if item.isdigit() else 0, item)
