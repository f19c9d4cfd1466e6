"""`Dataset`: per-user item sequences in time order, item text, and the leave-one-out split.

Sequences are stored flat (CSR: `offsets`, `items`), so splits and training samples are
built with array operations, never a Python loop per interaction.

Split (leave-one-out): each user's last item is the test target, the one before it the
validation target, and every prefix of the rest a training sample (its next item the
target). Histories are the last `max_history` items before the target.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MIN_SEQUENCE = 3  # one training item, one validation target, one test target


@dataclass(frozen=True)
class Samples:
    """Next-item samples: histories (N, H), left-padded with -1, and targets (N,);
    `positions` (N,) locate the targets in their dataset's flat `items`."""

    users: np.ndarray
    histories: np.ndarray
    targets: np.ndarray
    positions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def lengths(self) -> np.ndarray:
        return (self.histories >= 0).sum(1)

    def subset(self, rows: np.ndarray) -> Samples:
        return Samples(
            self.users[rows],
            self.histories[rows],
            self.targets[rows],
            None if self.positions is None else self.positions[rows],
        )


@dataclass(frozen=True)
class Windows:
    """Training windows of the decoder-only layout: runs of consecutive items (N, W) of
    one user each, right-padded with -1; every item after a window's first is a target."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def lengths(self) -> np.ndarray:
        return (self.items >= 0).sum(1)


class Dataset:
    """Item sequences of users, item text fields, and leave-one-out samples.

    Args:
        sequences: per user, item indices (0 .. n_items - 1) in time order.
        item_text: per item, a mapping of text fields ("title", "description", ...).
        item_ids, user_ids: external ids (strings); default "0", "1", ...
        max_history: history length cap of every sample.
        name: shown in summaries.

    Users with fewer than 3 interactions cannot be split; they are dropped, counted and
    logged.
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        item_text: Sequence[Mapping[str, str]],
        item_ids: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
        max_history: int = 20,
        name: str = "dataset",
    ) -> None:
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {max_history}")
        n_items = len(item_text)
        users = [str(u) for u in (range(len(sequences)) if user_ids is None else user_ids)]
        if len(users) != len(sequences):
            raise ValueError(f"user_ids has {len(users)} entries for {len(sequences)} sequences")
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        keep = lengths >= MIN_SEQUENCE
        if (~keep).any():
            log.warning(
                "%s: dropped %d of %d users with fewer than %d interactions (%d interactions)",
                name,
                int((~keep).sum()),
                len(users),
                MIN_SEQUENCE,
                int(lengths[~keep].sum()),
            )
        if not keep.any():
            raise ValueError(f"{name}: no user has the {MIN_SEQUENCE} interactions a split needs")
        kept = [s for s, k in zip(sequences, keep, strict=True) if k]
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in kept])
        bad = (items < 0) | (items >= n_items)
        if bad.any():
            raise ValueError(
                f"{name}: item index {int(items[bad][0])} is outside the {n_items} items"
            )
        self.name = name
        self.max_history = max_history
        self.items = items
        self.offsets = np.concatenate([[0], np.cumsum(lengths[keep])])
        self.user_ids = [u for u, k in zip(users, keep, strict=True) if k]
        self.item_ids = [str(i) for i in (range(n_items) if item_ids is None else item_ids)]
        if len(self.item_ids) != n_items:
            raise ValueError(f"item_ids has {len(self.item_ids)} entries for {n_items} items")
        self.item_text = [dict(t) for t in item_text]
        # where item text would have come from, when a loader found none (for messages)
        self.missing_text: str | None = None

    @property
    def has_text(self) -> bool:
        return any(any(bool(v) for v in t.values()) for t in self.item_text)

    def require_text(self, purpose: str) -> None:
        """Raise ValueError when no item has text, naming `purpose` and the missing source."""
        if not self.has_text:
            where = f" ({self.missing_text})" if self.missing_text else ""
            raise ValueError(
                f"{purpose} needs item text, but dataset {self.name!r} has none{where}"
            )

    # -- sizes ---------------------------------------------------------------------------

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def __repr__(self) -> str:
        lengths = np.diff(self.offsets)
        q = np.quantile(lengths, [0.0, 0.25, 0.5, 0.75, 0.95, 1.0])
        density = self.n_interactions / (self.n_users * self.n_items)
        return (
            f"Dataset {self.name!r}: {self.n_users:,} users, {self.n_items:,} items, "
            f"{self.n_interactions:,} interactions, density {density:.5f}\n"
            f"sequence length min/25%/50%/75%/95%/max: {'/'.join(f'{x:g}' for x in q)}"
        )

    # -- samples -------------------------------------------------------------------------

    def _samples(self, users: np.ndarray, positions: np.ndarray) -> Samples:
        """The samples whose target is `items[positions]`, with histories from each user's
        sequence start."""
        starts = self.offsets[users]
        window = positions[:, None] - self.max_history + np.arange(self.max_history)
        histories = np.where(window >= starts[:, None], self.items[np.maximum(window, 0)], -1)
        return Samples(users, histories, self.items[positions], positions)

    def seen_items(self, samples: Samples) -> np.ndarray:
        """Every item of each sample's user before its target (N, longest), right-padded
        with -1: what `exclude_history` keeps out of the recommendations."""
        if samples.positions is None:
            raise ValueError("these samples do not say where their targets are (positions)")
        starts = self.offsets[samples.users]
        lengths = samples.positions - starts
        col = np.arange(max(1, int(lengths.max(initial=0))))
        pos = np.minimum(starts[:, None] + col, len(self.items) - 1)
        return np.where(col < lengths[:, None], self.items[pos], -1)

    def train_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """User and position (into `items`) of every training interaction: each user's
        sequence without its last two items, which are the validation and test targets."""
        lengths = np.diff(self.offsets) - 2
        users = np.repeat(np.arange(self.n_users), lengths)
        first_row = np.cumsum(lengths) - lengths  # each user's first row in the output
        positions = np.repeat(self.offsets[:-1] - first_row, lengths) + np.arange(len(users))
        return users, positions

    def train_samples(self) -> Samples:
        """Every prefix of each user's training part (all but the last two items)."""
        users, positions = self.train_positions()
        target = positions != self.offsets[users]  # a user's first item has no history
        return self._samples(users[target], positions[target])

    def train_windows(self, size: int) -> Windows:
        """Windows of up to `size` consecutive items of each user's training part, the
        last one ending at its end. A user's windows overlap by one item, so every training
        interaction but a user's first is a target in exactly one window, after up to
        `size - 1` items of history: one pass over the windows teaches each training
        interaction once. Users with a single training item have no target."""
        if size < 2:
            raise ValueError(f"a window needs at least 2 items, got size={size}")
        lengths = np.diff(self.offsets) - 2
        count = np.where(lengths >= 2, -(-(lengths - 1) // (size - 1)), 0)
        users = np.repeat(np.arange(self.n_users), count)
        rank = np.arange(len(users)) - np.repeat(np.cumsum(count) - count, count)
        end = lengths[users] - rank * (size - 1)  # exclusive, within the user's sequence
        start = np.maximum(end - size, 0)
        col = np.arange(size)
        pos = (self.offsets[users] + start)[:, None] + col
        items = np.where(
            col < (end - start)[:, None], self.items[np.minimum(pos, len(self.items) - 1)], -1
        )
        order = np.lexsort((-rank, users))  # each user's windows in time order
        return Windows(users[order], items[order])

    def valid_samples(self) -> Samples:
        """Each user's second to last item, after the training part."""
        return self._samples(np.arange(self.n_users), self.offsets[1:] - 2)

    def test_samples(self) -> Samples:
        """Each user's last item, after everything before it."""
        return self._samples(np.arange(self.n_users), self.offsets[1:] - 1)

    # -- loaders -------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str | Path, max_history: int = 20, **options: Any) -> Dataset:
        """A dataset by name or folder: "movielens" or "ml-100k" (MovieLens-100K from the
        recbole wheel), "synthetic" (clustered test data), a folder of MovieLens files
        (`u.data` or `ml-100k.inter`), or a folder in the LC-Rec JSON layout (`options` go to
        `from_json`)."""
        name = str(source).lower()
        if name in ("movielens", "ml-100k"):
            return cls.movielens(None, max_history)
        if name == "synthetic":
            return cls.synthetic(max_history=max_history)
        folder = Path(source)
        if (folder / "u.data").exists() or (folder / "ml-100k.inter").exists():
            return cls.movielens(folder, max_history)
        return cls.from_json(folder, max_history=max_history, **options)

    # Each format lives in its own module, which builds a `cls` and never imports this one.

    @classmethod
    def from_json(cls, path: str | Path, **options: Any) -> Dataset:
        """The LC-Rec/LETTER JSON layout of a folder; see `siit.data.lcrec.from_json`."""
        from .lcrec import from_json

        return from_json(cls, path, **options)

    @classmethod
    def movielens(cls, path: str | Path | None = None, max_history: int = 20) -> Dataset:
        """MovieLens-100K; see `siit.data.movielens.movielens`."""
        from .movielens import movielens

        return movielens(cls, path, max_history)

    @classmethod
    def from_interactions(
        cls,
        users: Any,
        items: Any,
        timestamps: Any,
        item_text: Any,
        name: str = "dataset",
        **options: Any,
    ) -> Dataset:
        """From parallel arrays of user ids, item ids and timestamps and a mapping of item
        id -> text fields; see `siit.data.tables.from_interactions` (k_core, dedup, ...)."""
        from .tables import from_interactions

        return from_interactions(cls, users, items, timestamps, item_text, name, **options)

    @classmethod
    def from_table(cls, interactions: Any, items: Any = None, **options: Any) -> Dataset:
        """From a table of interactions (user, item, timestamp columns) and an optional table
        of item text: pandas DataFrames, CSV/Parquet paths or Hugging Face datasets. See
        `siit.data.tables.from_table` for the options (column names, k_core, dedup, ...)."""
        from .tables import from_table

        return from_table(cls, interactions, items, **options)

    @classmethod
    def from_hf(cls, reviews: Any, metadata: Any = None, **options: Any) -> Dataset:
        """From Hugging Face `datasets` (Dataset or DatasetDict objects, local files or a
        name for `datasets.load_dataset`), by default in the Amazon Reviews 2023 layout,
        5-core. See `siit.data.hf.from_hf` for the column names and filters."""
        from .hf import from_hf

        return from_hf(cls, reviews, metadata, **options)

    @classmethod
    def from_amazon(cls, reviews: str | Path, metadata: str | Path, **options: Any) -> Dataset:
        """From raw Amazon review dumps (2014 or 2018 style JSON lines, gzipped or not):
        deduplicated, 5-core by default. See `siit.data.amazon.from_amazon`."""
        from .amazon import from_amazon

        return from_amazon(cls, reviews, metadata, **options)

    @classmethod
    def synthetic(
        cls,
        n_users: int = 200,
        n_items: int = 100,
        n_clusters: int = 8,
        mean_length: float = 8.0,
        seed: int = 0,
        max_history: int = 20,
    ) -> Dataset:
        """Users who mostly stay within a latent item cluster, with titles that name it:
        learnable structure for tests."""
        rng = np.random.default_rng(seed)
        cluster = rng.integers(0, n_clusters, size=n_items)
        members = [np.flatnonzero(cluster == c) for c in range(n_clusters)]
        members = [m if len(m) else np.arange(n_items) for m in members]
        sequences = []
        for _ in range(n_users):
            length = MIN_SEQUENCE + rng.poisson(max(mean_length - MIN_SEQUENCE, 0))
            home = rng.integers(0, n_clusters)
            stray = rng.random(length) < 0.1
            seq = np.where(
                stray, rng.integers(0, n_items, size=length), rng.choice(members[home], size=length)
            )
            sequences.append(seq.tolist())
        words = ["red", "blue", "green", "gold", "soft", "bold", "tiny", "grand"]
        text: list[dict[str, Any]] = [
            {
                "title": f"{words[cluster[i] % len(words)]} item {i} of group {cluster[i]}",
                "categories": f"group {cluster[i]}",
            }
            for i in range(n_items)
        ]
        return cls(sequences, text, max_history=max_history, name=f"synthetic-{seed}")
