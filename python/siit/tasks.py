"""Training tasks as token arrays: seqrec (history -> next identifier), item2id (item text ->
identifier) and id2item (identifier -> title).

Prompts are built from item indices at batch time through the current identifier tokens,
so nothing needs rebuilding when refinement changes the identifiers. Arrays are padded
with -1: prompts on the left (so their last token lines up), targets on the right.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from .data import Dataset, Samples, Windows, item_texts
from .decoding import TrieTables
from .identifiers import Identifiers
from .models import ItemRecModel, RecModel

log = logging.getLogger(__name__)


# (prefix, suffix) around the variable part of each prompt, per style.
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "plain": {
        "seqrec": ("<seqrec>", "</s>"),
        "item2id": ("<item2id>", "</s>"),
        "id2item": ("<id2item>", "</s>"),
    },
    "natural": {
        "seqrec": (
            "Here are the items a user interacted with, in order:",
            ". Which item will the user interact with next? Answer:",
        ),
        "item2id": ("Which item is described as follows?", " Answer:"),
        "id2item": ("What is the title of item", "? Answer:"),
    },
}


def pack_left(tokens: np.ndarray) -> np.ndarray:
    """Move the -1 padding of every row to the left, keeping token order."""
    order = np.argsort(tokens >= 0, axis=1, kind="stable")
    return np.take_along_axis(tokens, order, axis=1)


def trim(tokens: np.ndarray, left: bool) -> np.ndarray:
    """Drop columns that are padding in every row."""
    used = (tokens >= 0).any(0)
    if not used.any():
        return tokens[:, :1]
    idx = np.flatnonzero(used)
    return tokens[:, idx[0] :] if left else tokens[:, : idx[-1] + 1]


class TaskBuilder:
    """Prompts and targets of the three tasks for one model, dataset and identifiers
    (without a dataset: seqrec prompts only)."""

    def __init__(
        self,
        model: RecModel,
        dataset: Dataset | None,
        identifiers: Identifiers,
        max_text_tokens: int = 64,
        max_title_tokens: int = 24,
    ) -> None:
        self.model = model
        self.max_text_tokens = max_text_tokens
        self.n_items = identifiers.n_items if dataset is None else dataset.n_items
        self.text_items: np.ndarray
        self.title_items: np.ndarray
        if model.kind == "item":  # seqrec, and item2id from text vectors with a text prior
            self.text_items = self.title_items = np.zeros(0, dtype=np.int64)
            if getattr(model, "text_prior", False) and dataset is not None:
                self.text_items = np.flatnonzero([any(t.values()) for t in dataset.item_text])
            self.set_identifiers(identifiers)
            return
        records = [{}] * self.n_items if dataset is None else dataset.item_text
        self.text = self.text_ids(records)
        titles = [str(t.get("title") or "") for t in records]
        self.title = model.text_ids(self._spaced(titles), max_title_tokens)
        self.text_items = np.flatnonzero((self.text >= 0).any(1))
        self.title_items = np.flatnonzero((self.title >= 0).any(1))
        self.templates = {
            task: (model.prompt_ids(prefix), model.prompt_ids(suffix))
            for task, (prefix, suffix) in TEMPLATES[model.style].items()
        }
        if model.kind == "causal":  # the history runs straight into the next identifier
            self.templates["seqrec"] = (self.templates["seqrec"][0], np.zeros(0, np.int64))
        self.set_identifiers(identifiers)

    def _spaced(self, texts: list[str]) -> list[str]:
        if self.model.style == "natural":  # byte-level BPE spells the space inside the next word
            return [f" {t}" if t else t for t in texts]
        return texts

    def text_ids(self, records: Sequence[Mapping[str, str]]) -> np.ndarray:
        """Token ids (n, max_text_tokens), -1 padded, of item text records: the item2id input."""
        texts = item_texts(records) if any(records) else [""] * len(records)
        return self.model.text_ids(self._spaced(texts), self.max_text_tokens)

    def item2id_prompts(self, text: np.ndarray) -> np.ndarray:
        """item2id prompts of text token ids (n, T) from `text_ids` (or of the model's
        `vector_ids`), for items in or out of the dataset."""
        return self._prompt("item2id", text)

    def set_identifiers(self, identifiers: Identifiers) -> None:
        if identifiers.n_items != self.n_items:
            raise ValueError(
                f"identifiers cover {identifiers.n_items} items, the dataset {self.n_items}"
            )
        if tuple(identifiers.codebook_sizes) != self.model.codebook_sizes:
            raise ValueError(
                f"identifier codebook sizes {list(identifiers.codebook_sizes)} do not match the "
                f"model's identifier tokens {list(self.model.codebook_sizes)}"
            )
        self.code_tokens = self.model.code_tokens(identifiers.codes)
        if isinstance(self.model, ItemRecModel) and self.model.model.needs_trie:
            # the trie its level softmaxes normalize over and its dense head scores follows
            # the identifiers in use
            self.model.use_trie(TrieTables.of(identifiers, self.model.device))

    def alignment_items(self, task: str) -> np.ndarray:
        """Items a task can use: item2id needs text, id2item a title."""
        return self.text_items if task == "item2id" else self.title_items

    def _prompt(self, task: str, middle: np.ndarray) -> np.ndarray:
        prefix, suffix = self.templates[task]
        b = len(middle)
        parts = [
            np.broadcast_to(prefix, (b, len(prefix))),
            middle,
            np.broadcast_to(suffix, (b, len(suffix))),
        ]
        return trim(pack_left(np.concatenate(parts, axis=1)), left=True)

    def seqrec(self, histories: np.ndarray, targets: np.ndarray | None = None):
        """Prompts of histories (B, H) of item indices padded with -1, and the targets'
        identifier tokens (item-level models: histories (B, H', L + 1) of item rows,
        `_item_rows`)."""
        if self.model.kind == "item":
            hist = self._item_rows(histories)
            used = (hist[..., 0] >= 0).any(0)
            first = int(np.argmax(used)) if used.any() else hist.shape[1] - 1
            return hist[:, first:], None if targets is None else self.code_tokens[targets]
        hist = np.where(
            histories[..., None] >= 0, self.code_tokens[np.maximum(histories, 0)], -1
        ).reshape(len(histories), -1)
        prompt = self._prompt("seqrec", hist)
        return prompt, None if targets is None else self.code_tokens[targets]

    def seqrec_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The decoder-only layout of windows (B, W) of item indices, right-padded with -1:
        prompt = the seqrec prefix and the first item's identifier tokens, target = the
        identifier tokens of every later item, so one pass scores each of them after the
        items before it. Item-level models read each window's item rows (B, W-1, L + 1) and
        predict the next item's codes at every position (B, W-1, L)."""
        if self.model.kind == "item":
            rows = self._item_rows(windows[:, : max(2, int((windows >= 0).sum(1).max()))])
            return rows[:, :-1], rows[:, 1:, :-1]
        first = self.code_tokens[windows[:, 0]]
        rest = windows[:, 1:]
        target = np.where(rest[..., None] >= 0, self.code_tokens[np.maximum(rest, 0)], -1).reshape(
            len(windows), -1
        )
        prefix = self.templates["seqrec"][0]
        prompt = np.concatenate([np.broadcast_to(prefix, (len(windows), len(prefix))), first], 1)
        return prompt, trim(target, left=False)

    def _item_rows(self, items: np.ndarray) -> np.ndarray:
        """Item rows (..., L + 1) of item indices (...): the global code ids, then the index
        (which a model with text input reads); -1 rows at -1."""
        rows = np.concatenate([self.code_tokens[np.maximum(items, 0)], items[..., None]], -1)
        return np.where(items[..., None] >= 0, rows, -1)

    def item2id(self, items: np.ndarray):
        if self.model.kind == "item":  # the text prior reads the item's index (its vector)
            return np.asarray(items, dtype=np.int64), self.code_tokens[items]
        # a model with an item vector projection reads the item's embedding, not its words
        middle = self.model.vector_ids(items) if self.model.vector_tokens else self.text[items]
        return self.item2id_prompts(middle), self.code_tokens[items]

    def id2item(self, items: np.ndarray):
        title = self.title[items]
        lengths = (title >= 0).sum(1)
        target = np.concatenate([title, np.full((len(items), 1), -1)], axis=1)
        target[np.arange(len(items)), lengths] = self.model.eos_id
        return self._prompt("id2item", self.code_tokens[items]), trim(target, left=False)

    def batch(
        self, task: str, rows: np.ndarray, samples: Samples | Windows
    ) -> tuple[np.ndarray, np.ndarray]:
        """Prompt and target of sample rows of a task (seqrec rows index `samples`: prefix
        samples or, for decoder-only models, windows)."""
        if task == "seqrec":
            if isinstance(samples, Windows):
                return self.seqrec_windows(samples.items[rows])
            return self.seqrec(samples.histories[rows], samples.targets[rows])
        return getattr(self, task)(rows)
