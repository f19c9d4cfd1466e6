"""`Identifiers`: the item identifiers that move between every stage of siit.

An identifier is a row of L integer codes, one per level, spelled as tokens such as
``<a_183><b_70><c_232>`` (one letter per level). Files in the ``NAME.index.json`` layout of
LC-Rec/LETTER (``{"item_id": ["<a_183>", "<b_70>", ...]}``) load and save as they are; ``.npz``
is the compact binary form. Collision statistics and the uniqueness step run in the core.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from siit._core import assign_unique, disambiguate, group_duplicates
from siit.files import atomic_write, read_json

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"<([A-Za-z]+)_(\d+)>")
# a whole file's tokens joined by spaces, and its levels and codes in order
_TOKENS = re.compile(r"<[A-Za-z]+_[0-9]+>(?: <[A-Za-z]+_[0-9]+>)*")
_LETTERS = re.compile(r"<([A-Za-z]+)_")
_CODES = re.compile(r"_([0-9]+)>")


def token(prefix: str, code: int) -> str:
    """The spelling of one code: level prefix and code, `<a_183>` (parsed back by `_TOKEN`)."""
    return f"<{prefix}_{code}>"


def vocabulary(codebook_sizes: Sequence[int], prefixes: Sequence[str]) -> list[str]:
    """Every token of an identifier space, level by level."""
    return [
        token(p, c) for p, size in zip(prefixes, codebook_sizes, strict=True) for c in range(size)
    ]


@dataclass(frozen=True)
class IdentifierStats:
    """Summary of a set of identifiers."""

    n_items: int
    codebook_sizes: tuple[int, ...]
    distinct: int
    shared_identifiers: int  # identifiers held by more than one item
    colliding_items: int  # items that share their identifier with another item
    largest_collision: int  # most items on one identifier
    codes_used: tuple[int, ...]  # distinct codes per level
    entropy_bits: tuple[float, ...]  # entropy of each level's code distribution
    largest_prefix_group: tuple[int, ...]  # most items sharing a prefix of 1..L codes

    def __str__(self) -> str:
        per_level = ", ".join(
            f"{used}/{size} ({bits:.2f} bits)"
            for used, size, bits in zip(
                self.codes_used, self.codebook_sizes, self.entropy_bits, strict=True
            )
        )
        return (
            f"{self.n_items:,} items, {self.distinct:,} distinct identifiers; "
            f"{self.shared_identifiers:,} shared by {self.colliding_items:,} items "
            f"(at most {self.largest_collision} on one)\n"
            f"codes used per level: {per_level}\n"
            f"largest group sharing a prefix of 1..L codes: {list(self.largest_prefix_group)}"
        )


@dataclass(frozen=True)
class UniqueResult:
    """Outcome of `Identifiers.make_unique`."""

    identifiers: Identifiers
    moved: int  # items whose identifier changed
    fallback: int  # items that got no candidate of their own (nearest free identifier)


class Identifiers:
    """Identifiers of n items: codes (n, L), codebook sizes, item ids and token spelling.

    Args:
        codes: integer array (n, L).
        codebook_sizes: codes per level; by default the largest code per level plus one.
        item_ids: external id of each row (strings); by default "0" .. "n-1".
        prefixes: the token letter of each level; by default "a", "b", "c", ...
    """

    def __init__(
        self,
        codes: npt.ArrayLike,
        codebook_sizes: Sequence[int] | None = None,
        item_ids: Sequence[str] | None = None,
        prefixes: Sequence[str] | None = None,
    ) -> None:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] == 0 or codes.shape[0] == 0:
            raise ValueError(f"codes must be a non-empty (n, L) array, got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64, copy=False)
        n, levels = codes.shape
        if codebook_sizes is None:
            codebook_sizes = (codes.max(axis=0) + 1).tolist()
        sizes = tuple(int(s) for s in codebook_sizes)
        if len(sizes) != levels:
            raise ValueError(f"codebook_sizes has {len(sizes)} levels but codes have {levels}")
        bad = (codes < 0) | (codes >= np.asarray(sizes))
        if bad.any():
            row, level = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"codes[{row}, {level}] = {codes[row, level]} is outside codebook {level} "
                f"of size {sizes[level]}"
            )
        ids = [str(i) for i in range(n)] if item_ids is None else [str(i) for i in item_ids]
        if len(ids) != n:
            raise ValueError(f"item_ids has {len(ids)} entries for {n} identifiers")
        if len(set(ids)) != n:
            raise ValueError("item_ids must be distinct")
        letters = tuple(string.ascii_lowercase[:levels] if prefixes is None else prefixes)
        if len(letters) != levels or len(set(letters)) != levels:
            raise ValueError(f"prefixes must name each of the {levels} levels once, got {letters}")
        self.codes = codes
        self.codebook_sizes = sizes
        self.item_ids = ids
        self.prefixes = letters

    @property
    def n_items(self) -> int:
        return self.codes.shape[0]

    @property
    def n_levels(self) -> int:
        return self.codes.shape[1]

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        return f"Identifiers(n_items={self.n_items}, codebook_sizes={list(self.codebook_sizes)})"

    def tokens(self, item: int) -> list[str]:
        """The tokens of item `item`, e.g. ['<a_183>', '<b_70>', '<c_232>']."""
        return [token(p, c) for p, c in zip(self.prefixes, self.codes[item].tolist(), strict=True)]

    def vocabulary(self) -> list[str]:
        """Every token of the identifier space, level by level."""
        return vocabulary(self.codebook_sizes, self.prefixes)

    # -- files ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, codebook_sizes: Sequence[int] | None = None) -> Identifiers:
        """Reads `NAME.index.json` (LC-Rec/LETTER layout), `.npz` (from `save`) or `.npy`."""
        path = Path(path)
        if path.suffix == ".json":
            return cls._from_index_json(path, codebook_sizes)
        if path.suffix == ".npy":
            return cls(np.load(path, allow_pickle=False), codebook_sizes)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                missing = {"codes", "codebook_sizes", "item_ids", "prefixes"} - set(f.files)
                if missing:
                    raise ValueError(f"{path}: not an identifiers file, missing {sorted(missing)}")
                return cls(
                    f["codes"],
                    f["codebook_sizes"].tolist(),
                    f["item_ids"].tolist(),
                    f["prefixes"].tolist(),
                )
        raise ValueError(f"{path}: unknown identifiers format (use .json, .npz or .npy)")

    @classmethod
    def _from_index_json(cls, path: Path, codebook_sizes: Sequence[int] | None) -> Identifiers:
        raw = read_json(path)
        if not isinstance(raw, dict) or not raw:
            raise ValueError(f"{path}: expected a non-empty object of item id -> token list")
        fast = cls._parse_well_formed(raw, codebook_sizes)
        if fast is not None:
            return fast
        # the slow way finds and names the first item that is not well formed
        rows, letters = [], None
        for item, tokens in raw.items():
            parsed = (
                [_TOKEN.fullmatch(t) if isinstance(t, str) else None for t in tokens]
                if isinstance(tokens, list)
                else [None]
            )
            matches = [m for m in parsed if m is not None]
            if not parsed or len(matches) < len(parsed):
                raise ValueError(
                    f"{path}: item {item!r} has {tokens!r}; expected tokens "
                    "like ['<a_183>', '<b_70>']"
                )
            these = tuple(m.group(1) for m in matches)
            if letters is None:
                letters = these
            elif these != letters:
                raise ValueError(
                    f"{path}: item {item!r} spells levels {these}, the first item {letters}"
                )
            rows.append([int(m.group(2)) for m in matches])
        return cls(np.array(rows, dtype=np.int64), codebook_sizes, list(raw), letters)

    @classmethod
    def _parse_well_formed(
        cls, raw: dict[str, Any], codebook_sizes: Sequence[int] | None
    ) -> Identifiers | None:
        """`raw` parsed by whole-file regex passes when every item is a list of the same
        number of tokens spelling the same levels (a file of a million items in seconds,
        not a Python match per token); None when it is not, or not that simply."""
        values = list(raw.values())
        if not all(type(v) is list for v in values):
            return None
        width = len(values[0])
        if not width or any(len(v) != width for v in values):
            return None
        try:
            joined = " ".join(itertools.chain.from_iterable(values))
        except TypeError:  # a token that is not a string
            return None
        if not _TOKENS.fullmatch(joined):
            return None
        letters = _LETTERS.findall(joined)
        if letters != letters[:width] * len(values):
            return None
        codes = np.array(_CODES.findall(joined), dtype=np.int64).reshape(len(values), width)
        return cls(codes, codebook_sizes, list(raw), tuple(letters[:width]))

    def save(self, path: str | Path) -> Path:
        """Writes `.json` (the index.json layout) or `.npz`, atomically (creating the
        directory)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            mapping = {item: self.tokens(i) for i, item in enumerate(self.item_ids)}
            text = json.dumps(mapping)
            atomic_write(path, lambda f: f.write(text.encode()))
        elif path.suffix == ".npz":
            arrays = dict(
                codes=self.codes,
                codebook_sizes=np.array(self.codebook_sizes),
                item_ids=np.array(self.item_ids),
                prefixes=np.array(self.prefixes),
            )
            atomic_write(path, lambda f: np.savez_compressed(f, **arrays))  # type: ignore[arg-type]
        else:
            raise ValueError(f"{path}: unknown identifiers format (use .json or .npz)")
        return path

    # -- collisions ----------------------------------------------------------------------

    def is_unique(self) -> bool:
        _, counts = group_duplicates(self.codes)
        return len(counts) == self.n_items

    def stats(self) -> IdentifierStats:
        _, counts = group_duplicates(self.codes)
        used, entropy, largest_prefix = [], [], []
        for level in range(self.n_levels):
            freq = np.bincount(self.codes[:, level], minlength=self.codebook_sizes[level])
            p = freq[freq > 0] / self.n_items
            used.append(int((freq > 0).sum()))
            entropy.append(float(-(p * np.log2(p)).sum()))
            _, prefix_counts = group_duplicates(self.codes[:, : level + 1])
            largest_prefix.append(int(prefix_counts.max()))
        return IdentifierStats(
            n_items=self.n_items,
            codebook_sizes=self.codebook_sizes,
            distinct=len(counts),
            shared_identifiers=int((counts > 1).sum()),
            colliding_items=int(counts[counts > 1].sum()),
            largest_collision=int(counts.max()),
            codes_used=tuple(used),
            entropy_bits=tuple(entropy),
            largest_prefix_group=tuple(largest_prefix),
        )

    def make_unique(
        self,
        method: Literal["nearest", "suffix"] = "nearest",
        candidates: npt.ArrayLike | None = None,
        scores: npt.ArrayLike | None = None,
    ) -> UniqueResult:
        """One uniqueness step through the core.

        "nearest": `assign_unique` over ranked candidates (n, k, L) with scores (n, k), by
        default each item's own identifier alone; items that cannot keep a candidate get the
        free identifier sharing the longest prefix with their best one. "suffix": TIGER's
        extra level (0, 1, 2, ... among items sharing an identifier).
        """
        if method == "suffix":
            codes = disambiguate(self.codes)
            extra = int(codes[:, -1].max()) + 1
            letter = next(c for c in string.ascii_lowercase if c not in self.prefixes)
            result = Identifiers(
                codes, (*self.codebook_sizes, extra), self.item_ids, (*self.prefixes, letter)
            )
            moved, fallback = int((codes[:, -1] > 0).sum()), 0
        elif method == "nearest":
            if candidates is None:
                candidates = self.codes[:, None, :]
                scores = np.zeros((self.n_items, 1))
            elif scores is None:
                raise ValueError("scores are required with candidates")
            codes, rank = assign_unique(candidates, scores, self.codebook_sizes)
            result = Identifiers(codes, self.codebook_sizes, self.item_ids, self.prefixes)
            moved = int((codes != self.codes).any(axis=1).sum())
            fallback = int((rank < 0).sum())
        else:
            raise ValueError(f"method must be 'nearest' or 'suffix', got {method!r}")
        log.info(
            "uniqueness step (%s): %d of %d items moved, %d to a fallback identifier",
            method,
            moved,
            self.n_items,
            fallback,
        )
        return UniqueResult(result, moved, fallback)
