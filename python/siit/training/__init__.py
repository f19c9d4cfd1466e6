"""Training: the loop (`loop.Trainer`: rounds, epochs, early stopping, refinement,
checkpoints), the run directory's layout (`rundir`), where it runs (`runtime`), what it
needs first (`setup`), how it evaluates (`evaluation`) and what it returns (`results`)."""

from .evaluation import evaluate_samples, rank_samples
from .loop import Trainer
from .results import RoundResult, TrainResult
from .rundir import BEST, CHECKPOINT, ROUND_BEST, RunDir
from .runtime import Processes, device_for
from .setup import check_dataset, check_fits, load_dataset, make_tokenizer

__all__ = [
    "BEST",
    "CHECKPOINT",
    "ROUND_BEST",
    "Processes",
    "RoundResult",
    "RunDir",
    "TrainResult",
    "Trainer",
    "check_dataset",
    "check_fits",
    "device_for",
    "evaluate_samples",
    "load_dataset",
    "make_tokenizer",
    "rank_samples",
]
