"""The training loop's former module: everything lives in `siit.training` now; these names
stay importable from here."""

from .training import (
    Trainer,
    evaluate_samples,
    load_dataset,
    make_tokenizer,
    rank_samples,
)
from .training.results import RoundResult, TrainResult

__all__ = [
    "RoundResult",
    "TrainResult",
    "Trainer",
    "evaluate_samples",
    "load_dataset",
    "make_tokenizer",
    "rank_samples",
]
