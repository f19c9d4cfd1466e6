"""Finished runs on disk: a run directory checked (`check_run_dir`), the newest under
./runs, and a run's configuration, model and identifiers loaded (`load_run`)."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import TrainConfig
from .identifiers import Identifiers
from .models import Model, load_model
from .training import (
    BEST,
    CHECKPOINT,
)

log = logging.getLogger("siit")

RUNS = Path("runs")
# Beside best/index.json: the identifiers of every item, those added after training included.
CATALOG = "catalog.index.json"
# Beside it: the text -> identifier mapper of a run without the item2id task (add_items).
MAPPER = "text_mapper"


def load_run(
    run: str | Path | None = None, device: str = "cpu", at: str = "best", catalog: bool = False
) -> tuple[TrainConfig, Model, Identifiers]:
    """A run's configuration, model and identifiers (default: the newest run under ./runs):
    `at="best"` the best round's, `at="last"` the last checkpoint's (the final round of a
    finished run, so a fixed schedule can be compared without selection on validation).
    `catalog=True` includes the items added after training (`add_items`)."""
    if at not in ("best", "last"):
        raise ValueError(f"at must be 'best' or 'last', got {at!r}")
    run_dir = check_run_dir(run) if run is not None else _latest_run()
    cfg = TrainConfig.from_run(run_dir)
    if at == "best":
        best = run_dir / BEST
        if not (best / "model").is_dir():
            raise FileNotFoundError(f"{run_dir} has no finished round ({best} is missing)")
        rec = load_model(best / "model", device)
        index = best / CATALOG if catalog and (best / CATALOG).is_file() else best / "index.json"
        identifiers = Identifiers.load(index, rec.codebook_sizes)
    else:
        checkpoint = run_dir / CHECKPOINT
        if not (checkpoint / "state.json").is_file():
            raise FileNotFoundError(f"{run_dir} has no checkpoint ({checkpoint} is missing)")
        rec = load_model(checkpoint / "model", device)
        identifiers = Identifiers.load(checkpoint / "identifiers.npz")
    return cfg, rec, identifiers


def check_run_dir(path: str | Path) -> Path:
    """`path` if it is a run directory; else a ValueError that names it, says what a run
    directory holds and, for a folder of runs, lists them."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    what = (
        f"{path} is not a run directory: a run directory (made by siit.train) holds "
        "config.json, metrics.json, train.log, report.png and best/"
    )
    if not path.exists():
        raise ValueError(f"{what}; {path} does not exist")
    runs = sorted(p.parent.name for p in path.glob("*/config.json"))
    if runs:
        shown = ", ".join(runs[-10:]) + (f" (and {len(runs) - 10} more)" if len(runs) > 10 else "")
        raise ValueError(f"{what}; it holds {len(runs)} run(s): {shown}")
    raise ValueError(what)


def _latest_run() -> Path:
    runs = sorted(
        (p for p in RUNS.glob("*") if (p / BEST).is_dir()), key=lambda p: p.stat().st_mtime
    )
    if not runs:
        raise FileNotFoundError(f"no finished run under {RUNS.resolve()}; pass run=DIR")
    return runs[-1]
