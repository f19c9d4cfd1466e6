"""Serving a finished run: `Recommender` (a run loaded once, many users ranked per call),
`siit.load` and `siit.recommend`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .decoding import TrieTables, top_items, use_exact
from .identifiers import Identifiers
from .models import Model
from .runs import load_run
from .tasks import TaskBuilder

log = logging.getLogger("siit")


class Recommender:
    """A finished run loaded once for serving: its model, identifiers and the trie's decoding
    tables on a device. `recommend` takes many users' histories at once and ranks them in
    batches of `batch_size` users: by trie-constrained beam search, or for item-level models
    by exact scores of the whole catalogue (the run's `eval_mode`)."""

    def __init__(self, config: TrainConfig, model: Model, identifiers: Identifiers) -> None:
        self.config, self.model, self.identifiers = config, model, identifiers
        self.tables = TrieTables.of(identifiers, model.device)
        self.exact = use_exact(config.eval.mode, model, identifiers.n_items)
        self._tasks = TaskBuilder(model, None, identifiers)
        ids = np.asarray(identifiers.item_ids, dtype=str)
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]

    @classmethod
    def load(cls, run: str | Path | None = None, device: str = "cpu", at: str = "best"):
        """The run's best round (`at="best"`) or last checkpoint (`at="last"`); default: the
        newest finished run under ./runs."""
        return cls(*load_run(run, device, at, catalog=True))

    def __repr__(self) -> str:
        return (
            f"Recommender({self.identifiers.n_items} items, identifiers "
            f"{self.identifiers.n_levels} x {list(self.identifiers.codebook_sizes)}, "
            f"model {self.config.model!r} on {self.model.device}, "
            f"history up to {self.config.data.max_history} items)"
        )

    @property
    def item_ids(self) -> list[str]:
        return list(self.identifiers.item_ids)

    def indices(
        self, histories: Sequence[Sequence[str | int]], indices: bool = False
    ) -> list[np.ndarray]:
        """Item indices of each history in a batch. Items are item ids: `1` and `"1"` name
        the same item. With `indices=True` they are 0-based item indices instead (ints).
        A flat sequence of ids, an unknown id and an empty history raise, naming it."""
        histories = _batch(histories)
        out = []
        n = self.identifiers.n_items
        for user, history in enumerate(histories):
            items = np.asarray(history)
            if items.ndim != 1:  # None, a dict, a nested list: not a list of ids
                shown = repr(history)[:80]
                raise TypeError(
                    f"histories[{user}] must be a list of item ids, got "
                    f"{type(history).__name__} {shown}"
                )
            if items.size == 0:
                raise ValueError(f"histories[{user}] is empty")
            if indices:
                if items.dtype.kind not in "iu":
                    raise TypeError(
                        f"histories[{user}]: indices=True takes integer item indices, got "
                        f"{items.dtype} values"
                    )
                bad = np.flatnonzero((items < 0) | (items >= n))
                if len(bad):
                    raise ValueError(
                        f"histories[{user}][{bad[0]}] = {int(items[bad[0]])} is not an item "
                        f"index (0..{n - 1})"
                    )
                out.append(items.astype(np.int64))
                continue
            if items.dtype.kind == "f":
                raise TypeError(f"histories[{user}] holds floats; item ids are strings or integers")
            items = items.astype(str)
            pos = np.minimum(np.searchsorted(self._sorted, items), n - 1)
            bad = np.flatnonzero(self._sorted[pos] != items)
            if len(bad):
                raise ValueError(
                    f"histories[{user}][{bad[0]}] = {str(items[bad[0]])!r} is not a known item id"
                )
            out.append(self._order[pos])
        return out

    def recommend(
        self,
        histories: Sequence[Sequence[str | int]],
        k: int = 10,
        exclude_history: bool = True,
        batch_size: int | None = None,
        indices: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-k next items of every history in a batch (a list of histories, each a
        list of item ids oldest first; `1` and `"1"` are the same id, `indices=True` reads
        ints as 0-based item indices): item ids (n, k) and their log-probabilities (n, k),
        best first. Each history is its last `max_history` items. Serving leaves the
        history's own items out (`exclude_history=True`); the run's metrics keep them, as
        the literature does. Slots that no valid item fills hold "" and -inf."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        rows = self.indices(histories, indices)
        width = self.config.data.max_history
        hist = np.full((len(rows), width), -1, dtype=np.int64)
        seen = np.full((len(rows), max((len(r) for r in rows), default=1)), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            kept = r[-width:]
            hist[i, width - len(kept) :] = kept
            seen[i, : len(r)] = r
        beams = max(k, self.config.eval.beams)
        step = batch_size or self.config.eval.batch_size
        items = np.full((len(rows), k), -1, dtype=np.int64)
        scores = np.full((len(rows), k), -np.inf)
        for lo in range(0, len(rows), step):
            prompt, _ = self._tasks.seqrec(hist[lo : lo + step])
            exclude = seen[lo : lo + step] if exclude_history else None
            top, score = top_items(
                self.model, prompt, beams, self.tables, self.identifiers, self.exact, exclude
            )
            items[lo : lo + step] = top[:, :k]
            scores[lo : lo + step] = score[:, :k]
        ids = np.asarray(self.identifiers.item_ids, dtype=object)[np.maximum(items, 0)]
        return np.where(items >= 0, ids, ""), scores


def _is_id(value: Any) -> bool:
    """One item id (or index), as opposed to a sequence of them."""
    return isinstance(value, str | bytes | int | np.integer)


def _batch(histories: Any) -> Sequence[Any]:
    """`histories` as a batch of histories; a flat sequence of ids (or a string) is refused,
    since reading each id as a history would be a silent wrong answer."""
    if _is_id(histories):
        raise TypeError(
            "histories must be a batch: a list of histories, each a list of item ids; "
            f"got {type(histories).__name__} {histories!r}"
        )
    batch = list(histories)  # a 1-D array or a flat list yields ids, refused below
    flat = [i for i, h in enumerate(batch) if _is_id(h)]
    if flat:
        raise TypeError(
            f"histories[{flat[0]}] is a single item id ({batch[flat[0]]!r}), not a history: "
            "histories is a list of histories, so one user's history is [[id, id, ...]] "
            "(or call siit.recommend(history, run=...))"
        )
    return batch


def load(run: str | Path | None = None, device: str = "cpu", at: str = "best") -> Recommender:
    """A finished run as a `Recommender` (default: the newest run under ./runs)."""
    return Recommender.load(run, device, at)


def recommend(
    history: Sequence[str | int],
    k: int = 10,
    run: str | Path | None = None,
    device: str = "cpu",
    exclude_history: bool = True,
    indices: bool = False,
) -> list[tuple[str, float]]:
    """The top-k next items (item id, log-probability) after ONE history of item ids, oldest
    first (`1` and `"1"` are the same id; `indices=True` reads ints as 0-based indices), from
    a finished run's best model; the history's own items are left out unless
    `exclude_history=False`. For many users, load the run once with `siit.load` and call its
    `recommend` with a batch."""
    if _is_id(history):
        raise TypeError(f"history must be a list of item ids, got {history!r}")
    if any(not _is_id(h) for h in history):
        raise TypeError(
            "history must be one list of item ids; for a batch of histories use "
            "siit.load(run).recommend(histories)"
        )
    items, scores = load(run, device).recommend([history], k, exclude_history, indices=indices)
    return [(str(i), float(s)) for i, s in zip(items[0], scores[0], strict=True) if i != ""]
