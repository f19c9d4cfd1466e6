"""Before the loop: the dataset and the initial tokenizer a run names, and the checks that
the run's settings fit its data and model."""

from __future__ import annotations

import logging
from typing import Any

from ..config import OBJECT, TrainConfig
from ..data import Dataset, load
from ..identifiers import Identifiers
from ..models import Model

log = logging.getLogger("siit")


def load_dataset(spec: str, max_history: int) -> Dataset:
    if spec.startswith(OBJECT):
        raise ValueError(
            f"this run was trained on a Dataset object ({spec[len(OBJECT) :]!r}); pass it again, "
            "e.g. siit.train(dataset=data, resume=run_dir) or siit.evaluate(run_dir, data)"
        )
    return load(spec, max_history)


def make_tokenizer(name: str, levels: int, codebook_size: int, seed: int, **options: Any) -> Any:
    """The initial tokenizer `name` ("rqvae", "letter", "cid", "random"), or a
    `FileTokenizer` when `name` is an identifiers file; `options` go to its constructor."""
    from .. import tokenizers

    if name not in ("rqvae", "letter", "cid", "random"):
        return tokenizers.FileTokenizer(name, **options)
    sized = dict(levels=levels, codebook_size=codebook_size, seed=seed)
    if name == "rqvae":
        from ..tokenizers.rqvae import RQVAETokenizer

        return RQVAETokenizer(**sized, **options)
    if name == "letter":
        from ..tokenizers.letter import LETTERTokenizer

        return LETTERTokenizer(**sized, **options)
    if name == "cid":
        from ..tokenizers.cid import CIDTokenizer

        return CIDTokenizer(**sized, **options)
    return tokenizers.RandomTokenizer(**sized, **options)


def check_dataset(config: TrainConfig, dataset: Dataset) -> None:
    alignment = [t for t in ("item2id", "id2item") if config.schedule.tasks.get(t, 0) > 0]
    if not alignment:
        return
    fields = {"item2id": None, "id2item": "title"}
    for task in alignment:
        key = fields[task]
        has = [
            bool(t.get(key)) if key else any(bool(v) for v in t.values()) for t in dataset.item_text
        ]
        if not any(has):
            what = "titles" if key else "text"
            where = f" ({dataset.missing_text})" if dataset.missing_text else ""
            raise ValueError(
                f"bad configuration: the {task} task is on but dataset {dataset.name!r} has no "
                f"item {what}{where}; set tasks.{task} = 0 (and rounds = 0) or load item text"
            )
        missing = len(has) - sum(has)
        if missing:
            log.warning(
                "%s: %d of %d items have no %s; the %s task skips them",
                dataset.name,
                missing,
                len(has),
                key or "text",
                task,
            )


def check_fits(model: Model, identifiers: Identifiers, config: TrainConfig) -> None:
    """The identifiers must match the model's identifier tokens, and the longest prompt must
    fit the model's positions; a refinement may not move more levels than there are."""
    moving = config.refine.levels
    if config.rounds > 0 and moving is not None and moving > identifiers.n_levels:
        raise ValueError(
            f"bad configuration: refine.levels={moving} moves more levels than the "
            f"identifiers have ({identifiers.n_levels}); None moves every level"
        )
    if model.kind == "item":
        limit = model.model.backbone.config.max_position_embeddings
        if (
            tuple(identifiers.codebook_sizes) != model.codebook_sizes
            or config.data.max_history >= limit
        ):
            raise ValueError(
                f"bad configuration: an item-level model of codebook sizes "
                f"{list(model.codebook_sizes)} and {limit} positions cannot read identifiers of "
                f"sizes {list(identifiers.codebook_sizes)} after {config.data.max_history} "
                "items of history (network.options.max_items)"
            )
        if model.model.trie_softmax and config.rounds > 0:
            log.warning(
                "trie_softmax with %d refinement round(s): the evidence scores free codes "
                "with logits the trie softmax never trains, so most items move (in "
                "benches/results/siit_item_trie.md, 99%% of the last codes) for no gain "
                "over the same rounds without moves",
                config.rounds,
            )
        return
    if tuple(identifiers.codebook_sizes) != model.codebook_sizes:
        raise ValueError(
            f"bad configuration: identifiers of codebook sizes {list(identifiers.codebook_sizes)} "
            f"do not fit the model's identifier tokens {list(model.codebook_sizes)}"
        )
    limit = getattr(model.model.config, "max_position_embeddings", None)
    longest = (config.data.max_history + 1) * identifiers.n_levels + 64
    if limit is not None and longest > limit:
        raise ValueError(
            f"bad configuration: a history of {config.data.max_history} items x "
            f"{identifiers.n_levels} tokens needs about {longest} positions, the model has {limit}"
        )
