"""A run directory's layout in one place, and how its folders are replaced: written under
a temporary name and swapped in by rename, so an interrupted write leaves the previous
version (see docs/runs.md for what each entry holds)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..files import atomic_write

CHECKPOINT, BEST, ROUND_BEST = "checkpoint", "best", "round-best"


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def index(self, round_: int) -> Path:
        """The identifiers of round `round_`."""
        return self.path / "index" / f"round-{round_}.index.json"

    def ranks(self, round_: int) -> Path:
        """The first-hit ranks of the validation targets under round `round_`'s best model."""
        return self.path / "diagnostics" / f"valid-ranks-round-{round_}.npy"

    def replace(self, name: str, write: Callable[[Path], None]) -> None:
        """Folder `name` replaced by what `write(folder)` puts in a fresh one: written as
        `name.tmp`, the old one moved aside, the new one renamed into place."""
        tmp, final, old = (self.path / f"{name}{suffix}" for suffix in (".tmp", "", ".old"))
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def write_json(self, name: str, payload: Any) -> None:
        text = json.dumps(payload, indent=1, default=float)
        atomic_write(self.path / name, lambda f: f.write(text.encode()))
