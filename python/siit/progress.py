"""Progress bars for people at a terminal: a bar redraws itself with carriage returns, which
fills log files and redirected output with noise, so bars show only when standard error is
a terminal. Long work also logs one readable line per epoch, evaluation and refinement."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Any = None, *, enabled: bool = True, **options: Any) -> Any:
    """A transient tqdm bar, shown when `enabled` and standard error is a terminal."""
    # disable=None is tqdm's "off unless the output is a terminal"
    return tqdm(iterable, disable=None if enabled else True, leave=False, **options)
