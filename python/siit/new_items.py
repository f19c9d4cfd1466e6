"""`siit.add_items`: identifiers for items that arrive after training, from their text,
unique beside every existing one, without retraining."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._core import assign_unique
from .config import TrainConfig
from .data import Dataset, item_texts
from .decoding import beam_search
from .embed import embed
from .evidence import collaborative_beams, text_states
from .files import atomic_write
from .identifiers import Identifiers
from .mapper import TextMapper
from .models import ItemRecModel, RecModel
from .runs import CATALOG, MAPPER, check_run_dir, load_run
from .tasks import TaskBuilder
from .training import (
    BEST,
    load_dataset,
)

log = logging.getLogger("siit")


@dataclass
class AddedItems:
    """What `add_items` did: the grown identifiers (every item), the new items' codes, and
    for each new item the rank of the beam it got (-1: none was free, so the nearest free
    identifier to its best beam)."""

    identifiers: Identifiers
    item_ids: list[str]
    codes: np.ndarray
    rank: np.ndarray
    path: Path


def add_items(
    run: str | Path,
    items: Mapping[str, Mapping[str, Any]],
    device: str = "cpu",
    beams: int | None = None,
    dataset: Dataset | None = None,
) -> AddedItems:
    """Identifiers for items that arrived after training, without retraining, from each new
    item's text: a run that learned the item2id task beam-searches them with its own model;
    any other run uses a text mapper (item text embedding -> codes level by level) fitted on
    the run's catalogue at the first call and kept in `best/text_mapper/`. The core's
    `assign_unique` places them with every existing identifier reserved. The run's catalogue
    (`best/catalog.index.json`) grows, so `siit.load(run).recommend` can return the new
    items; the run's own index and its evaluation stay as trained.

    `items` maps new item ids to text records ({"title": ..., "description": ...}).
    `dataset`: the run's dataset, needed only to fit the mapper of a run trained on a
    `Dataset` object (a named or file dataset is loaded again)."""
    run_dir = check_run_dir(run)
    cfg, rec, identifiers = load_run(run_dir, device, catalog=True)
    ids = [str(i) for i in items]
    known = set(identifiers.item_ids)
    clash = [i for i in ids if i in known]
    if clash:
        raise ValueError(f"item {clash[0]!r} is already in the run's catalogue")
    records = []
    for item, record in zip(ids, items.values(), strict=True):
        if not isinstance(record, Mapping):
            raise ValueError(f"item {item!r}: expected a mapping of text fields")
        records.append({k: "" if v is None else v for k, v in record.items()})
    if not records:
        raise ValueError("items is empty")
    texts = item_texts(records)
    empty = [i for i, t in zip(ids, texts, strict=True) if not t.strip()]
    if empty:
        raise ValueError(f"item {empty[0]!r} has no text to map to an identifier")
    width = beams or cfg.refine.beams
    reads_text = isinstance(rec, ItemRecModel) and rec.text_dim > 0
    if reads_text:  # new items' text joins the model's item vectors
        old = rec.model.item_text.cpu().numpy()
        rec.set_item_text(np.concatenate([old, embed(texts, progress=False)]))
    if isinstance(rec, ItemRecModel) and rec.text_prior:
        new = np.arange(identifiers.n_items, identifiers.n_items + len(ids))
        states, owner = text_states(rec, new, 1)
        candidates, scores = collaborative_beams(
            rec, states, owner - identifiers.n_items, len(ids), width
        )
        how = "the run's text prior"
    elif cfg.schedule.tasks.get("item2id", 0) > 0:
        candidates, scores = _item2id_beams(rec, cfg, identifiers, records, width)
        how = "the run's item2id model"
    else:
        mapper = _text_mapper(run_dir, cfg, identifiers.codebook_sizes, dataset)
        candidates, scores = mapper.propose(embed(texts, progress=False), width)
        how = "the run's text mapper"
    codes, rank = assign_unique(
        candidates, scores, identifiers.codebook_sizes, reserved=identifiers.codes
    )
    if reads_text:
        _save_item_text(rec, run_dir / BEST / "model")
    grown = Identifiers(
        np.concatenate([identifiers.codes, codes]),
        identifiers.codebook_sizes,
        [*identifiers.item_ids, *ids],
        identifiers.prefixes,
    )
    path = grown.save(run_dir / BEST / CATALOG)
    log.info(
        "added %d items to %s with %s: %d got one of their own beams (%d their best), %d the "
        "nearest free identifier",
        len(ids),
        path,
        how,
        int((rank >= 0).sum()),
        int((rank == 0).sum()),
        int((rank < 0).sum()),
    )
    return AddedItems(grown, ids, codes, rank, path)


def _save_item_text(rec: ItemRecModel, directory: Path) -> None:
    """The model's item text vectors, written atomically beside its weights."""
    from safetensors.torch import save

    from .models.item_level import TEXT

    data = save({"item_text": rec.model.item_text.contiguous()})
    atomic_write(directory / TEXT, lambda f: f.write(data))


def _item2id_beams(
    rec: RecModel,
    cfg: TrainConfig,
    identifiers: Identifiers,
    records: list[dict[str, Any]],
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (n, width, L) and scores from the model's item2id prompt of each record."""
    tasks = TaskBuilder(
        rec, None, identifiers, cfg.network.max_text_tokens, cfg.network.max_title_tokens
    )
    middle = tasks.text_ids(records)  # the item2id prompt's item: its words...
    empty = np.flatnonzero(~(middle >= 0).any(1))
    if len(empty):
        raise ValueError(f"new item {empty[0]} has no word the model's vocabulary knows")
    if rec.vector_tokens:  # ...or its text embedding
        rec.set_item_vectors(embed(item_texts(records), progress=False))
        middle = rec.vector_ids(np.arange(len(records)))
    candidates = np.zeros((len(records), width, identifiers.n_levels), dtype=np.int64)
    scores = np.full((len(records), width), -np.inf)
    step = cfg.eval.batch_size
    for lo in range(0, len(records), step):
        found = beam_search(rec, tasks.item2id_prompts(middle[lo : lo + step]), width)
        candidates[lo : lo + step, : found.codes.shape[1]] = found.codes
        scores[lo : lo + step, : found.scores.shape[1]] = found.scores
    return candidates, scores


def _text_mapper(
    run_dir: Path, cfg: TrainConfig, sizes: Sequence[int], dataset: Dataset | None
) -> TextMapper:
    """The run's text mapper, fitted on its trained catalogue at the first use."""
    path = run_dir / BEST / MAPPER
    if path.is_dir():
        return TextMapper.load(path)
    trained = Identifiers.load(run_dir / BEST / "index.json", sizes)
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data.max_history)
    if list(data.item_ids) != list(trained.item_ids):
        raise ValueError(
            f"dataset {data.name!r} has other items than the run {run_dir} was trained on; "
            "pass the run's own dataset"
        )
    texts = item_texts(data)
    keep = np.flatnonzero([bool(t.strip()) for t in texts])
    missing = len(texts) - len(keep)
    if missing == len(texts):
        raise ValueError(
            f"{run_dir}: its dataset has no item text, so no mapper from text to identifiers "
            "can be fitted"
        )
    if missing:
        log.warning(
            "text mapper: %d of %d items have no text and are left out", missing, len(texts)
        )
    vectors = embed([texts[i] for i in keep], progress=cfg.progress)
    mapper = TextMapper.fit(vectors, trained.codes[keep], trained.codebook_sizes, seed=cfg.seed)
    mapper.save(path)
    log.info("text mapper fitted on %d items of %s, saved in %s", len(keep), run_dir, path)
    return mapper
