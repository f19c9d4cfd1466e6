"""Progress bars for people at a terminal: a bar redraws itself with carriage returns, which
fills log files and redirected output with noise, so bars show only when standard error is
a terminal. Long work also logs one readable line per epoch, evaluation and refinement."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Any = None, *, enabled: bool = True, **options: Any) -> Any:
    """A transient tqdm bar, shown when `enabled` and standard error is a terminal."""
    # disable=None is tqdm's "off unless the output is a terminal"
    return tqdm(iterable, disable=None if enabled else True, leave=False, **options)


@contextmanager
def quiet_transformers(keep_at_terminal: bool = False) -> Iterator[None]:
    """No Hugging Face progress bars (weight loading, checkpoint shards) inside the block;
    with `keep_at_terminal`, they stay where standard error is a terminal."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    if not (keep_at_terminal and sys.stderr.isatty()):
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
