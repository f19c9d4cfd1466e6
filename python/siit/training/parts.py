"""The attributes `Trainer` sets up and its mixins (checkpoints, round diagnostics,
refinement) read: one declaration of the state they share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..config import TrainConfig
    from ..data import Dataset, Samples, Windows
    from ..identifiers import Identifiers
    from ..models import Model
    from ..tasks import TaskBuilder
    from .rundir import RunDir
    from .runtime import Processes


class TrainerParts:
    """Declarations only; `Trainer.__init__` assigns them."""

    config: TrainConfig
    dataset: Dataset
    identifiers: Identifiers
    rec: Model
    tasks: TaskBuilder
    samples: Samples | Windows
    valid: Samples
    optimizer: torch.optim.Optimizer
    state: dict[str, Any]
    procs: Processes
    device: torch.device
    dir: Path
    run_dir: RunDir
    _moved: tuple[int, np.ndarray] | None
    _embeddings: np.ndarray | None
