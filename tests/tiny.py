"""Tiny models and data shared by the decoding, refinement and trainer tests."""

from functools import cache

import siit
from siit.models import build_model


@cache
def tiny_dataset(n_users: int = 60, n_items: int = 40, seed: int = 0) -> siit.Dataset:
    return siit.Dataset.synthetic(n_users=n_users, n_items=n_items, seed=seed)


def random_identifiers(dataset, levels=3, codebook_size=8, seed=0) -> siit.Identifiers:
    return siit.RandomTokenizer(levels=levels, codebook_size=codebook_size, seed=seed).fit(dataset)


def tiny_model(name, identifiers, dataset, seed=0):
    return build_model(
        name,
        identifiers.codebook_sizes,
        identifiers.prefixes,
        siit.item_texts(dataset),
        text_vocab_size=200,
        seed=seed,
    )


# Trainer settings of a run that takes seconds on one CPU thread.
# Dotted names, so that a test's own settings merge into them field by field.
TINY_RUN = {
    "tokenizer": "random",
    "model": "t5-tiny",
    "identifiers.levels": 3,
    "identifiers.codebook_size": 8,
    "rounds": 1,
    "schedule.max_epochs_per_round": 2,
    "schedule.patience": None,
    "schedule.batch_size": 32,
    "schedule.warmup_steps": 5,
    "schedule.lr": 3e-3,
    "progress": False,
    "device": "cpu",
    "refine.diagnostics": False,  # the semantic consistency embeds item text: its own test
}

# A float64 refinement run on the synthetic dataset: bit-for-bit comparisons across runs.
EXACT_RUN = {
    **TINY_RUN,
    "rounds": 1,
    "schedule.batch_size": 16,
    "dataset": "synthetic",
    "network.dtype": "float64",
}
