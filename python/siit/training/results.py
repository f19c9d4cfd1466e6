"""What a run returns and records: one `RoundResult` per round, the `TrainResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..identifiers import Identifiers
from ..models import Model


@dataclass
class RoundResult:
    round: int
    valid: dict[str, float]  # at the round's best evaluation
    train_loss: dict[str, float]  # of the round's last epoch
    refine: dict[str, Any] | None
    seconds: float
    epochs: int = 0  # trained in this round
    best_epoch: int = 0  # whose weights the round kept (epochs count from 1)
    max_epochs: int = 0  # the round's epoch cap
    curve: list[dict[str, float]] = field(default_factory=list)  # every validation
    # semantic consistency of the round's identifiers (diagnostics, runs with rounds)
    consistency: dict[str, float] | None = None
    # codes used and entropy per level of the round's identifiers
    usage: dict[str, list] | None = None
    # validation of the round's best model on the cold-start targets (diagnostics.cold_slice)
    cold: dict[str, float] | None = None
    # the same validation targets before the refinement that opened the round and after
    # it (diagnostics.paired_moves); rounds > 0
    paired: dict[str, dict[str, float]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainResult:
    """What `siit.train` returns: the best round's model and identifiers, every round's
    results, the test metrics of the best round and of the most-popular baseline on the
    same split, and where the run lies. `print(result)` gives the one-line summary."""

    model: Model
    identifiers: Identifiers  # the best round's
    rounds: list[RoundResult]
    best_round: int
    test: dict[str, float]
    output_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    most_popular: dict[str, float] = field(default_factory=dict)  # test metrics
    seconds: float = 0.0  # the whole call, tokenizer and test included

    def summary(self) -> str:
        best = self.rounds[self.best_round]
        popular = self.most_popular.get("ndcg@10")
        return (
            f"siit: done in {self.seconds / 60:.1f} min: best round {self.best_round} "
            f"(epoch {best.best_epoch}/{best.max_epochs}), valid NDCG@10 "
            f"{best.valid.get('ndcg@10', 0):.4f}, test NDCG@10 {self.test.get('ndcg@10', 0):.4f} "
            f"Recall@10 {self.test.get('recall@10', 0):.4f}"
            + (f" (most popular: {popular:.4f})" if popular is not None else "")
            + f"; run: {self.output_dir}"
        )

    def __repr__(self) -> str:
        def at10(metrics: dict[str, float]) -> dict[str, float]:
            return {k: round(v, 4) for k, v in metrics.items() if k.endswith("@10")}

        return (
            f"TrainResult(best_round={self.best_round} of {len(self.rounds)}, "
            f"test={at10(self.test)}, most_popular={at10(self.most_popular)}, "
            f"output_dir='{self.output_dir}')"
        )

    def __str__(self) -> str:
        return self.summary()
