"""The tokenizer interface, the uniqueness step and the simple tokenizers.

Every tokenizer computes raw codes (n, L), possibly with ranked alternative identifiers per
item, then ends in one uniqueness step through the core (`Identifiers.make_unique`): either
"nearest" (`assign_unique` over the ranked candidates, fallback to the nearest free
identifier) or "suffix" (TIGER's extra level). `fit` returns the unique identifiers and
keeps a `FitReport` in `report_`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from siit.data import Dataset
from siit.identifiers import Identifiers, IdentifierStats, UniqueResult

log = logging.getLogger(__name__)

UniqueMethod = Literal["nearest", "suffix"]


@dataclass(frozen=True)
class FitReport:
    """What a tokenizer did: statistics before the uniqueness step, what that step moved,
    and how long fitting took."""

    before: IdentifierStats
    unique: UniqueResult
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.before}\nuniqueness step: {self.unique.moved:,} items moved "
            f"({self.unique.fallback:,} to the nearest free identifier); "
            f"fit in {self.seconds:.1f} s"
        )


class Tokenizer:
    """Base of the tokenizers: subclasses implement `_codes`."""

    unique: UniqueMethod = "nearest"
    report_: FitReport | None = None

    def _codes(
        self, dataset: Dataset
    ) -> tuple[np.ndarray, tuple[int, ...], np.ndarray | None, np.ndarray | None]:
        """Raw codes (n, L), codebook sizes, and optionally ranked candidates (n, k, L) with
        their scores (n, k) for the uniqueness step."""
        raise NotImplementedError

    def fit(self, dataset: Dataset) -> Identifiers:
        start = time.perf_counter()
        codes, sizes, candidates, scores = self._codes(dataset)
        raw = Identifiers(codes, sizes, dataset.item_ids)
        before = raw.stats()
        result = raw.make_unique(self.unique, candidates, scores)
        self.report_ = FitReport(before, result, time.perf_counter() - start)
        log.info("%s on %s:\n%s", type(self).__name__, dataset.name, self.report_)
        return result.identifiers


class RandomTokenizer(Tokenizer):
    """Uniformly random codes: the floor any learned tokenizer must beat."""

    def __init__(
        self,
        levels: int = 3,
        codebook_size: int = 256,
        seed: int = 0,
        unique: UniqueMethod = "nearest",
    ) -> None:
        self.levels, self.codebook_size, self.seed, self.unique = (
            levels,
            codebook_size,
            seed,
            unique,
        )

    def _codes(self, dataset: Dataset):
        rng = np.random.default_rng(self.seed)
        codes = rng.integers(0, self.codebook_size, size=(dataset.n_items, self.levels))
        return codes, (self.codebook_size,) * self.levels, None, None


class SequentialTokenizer(Tokenizer):
    """Item index written in base `codebook_size`: unique by construction, no semantics."""

    def __init__(self, levels: int = 3, codebook_size: int = 256) -> None:
        self.levels, self.codebook_size = levels, codebook_size

    def _codes(self, dataset: Dataset):
        if dataset.n_items > self.codebook_size**self.levels:
            raise ValueError(
                f"{dataset.n_items} items do not fit in {self.levels} levels of "
                f"{self.codebook_size} codes"
            )
        index = np.arange(dataset.n_items)
        powers = self.codebook_size ** np.arange(self.levels - 1, -1, -1)
        codes = (index[:, None] // powers) % self.codebook_size
        return codes, (self.codebook_size,) * self.levels, None, None


class FileTokenizer(Tokenizer):
    """Identifiers from a file (`NAME.index.json`, `.npz`, `.npy`), matched to the dataset's
    items by id (`.npy` rows by position)."""

    def __init__(
        self,
        path: str | Path,
        codebook_sizes: tuple[int, ...] | None = None,
        unique: UniqueMethod = "nearest",
    ) -> None:
        self.path, self.codebook_sizes, self.unique = Path(path), codebook_sizes, unique

    def _codes(self, dataset: Dataset):
        loaded = Identifiers.load(self.path, self.codebook_sizes)
        if self.path.suffix == ".npy":
            order = np.arange(loaded.n_items)
        else:
            position = {item: i for i, item in enumerate(loaded.item_ids)}
            missing = [item for item in dataset.item_ids if item not in position]
            if missing:
                raise ValueError(
                    f"{self.path}: no identifier for {len(missing)} items of "
                    f"{dataset.name}, e.g. {missing[:5]}"
                )
            order = np.array([position[item] for item in dataset.item_ids])
        if len(order) != dataset.n_items:
            raise ValueError(
                f"{self.path}: {loaded.n_items} identifiers for "
                f"{dataset.n_items} items of {dataset.name}"
            )
        return loaded.codes[order], loaded.codebook_sizes, None, None
