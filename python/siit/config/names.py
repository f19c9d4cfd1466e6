"""How settings are named: a top-level field, a section's field by its dotted path
(`refine.margin`), a section as a mapping, `refine="paper"` for a preset, and the flat names
of earlier versions (`refine_margin`), which still work with a FutureWarning."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .sections import SECTIONS

# The flat names of earlier versions and where each setting lives now.
RENAMED = {
    **{n: f"data.{n}" for n in ("max_history", "samples_per_user")},
    **{n: f"identifiers.{n}" for n in ("levels", "codebook_size")},
    "tokenizer_options": "identifiers.options",
    "model_options": "network.options",
    **{
        n: f"network.{n}"
        for n in "gguf_file dtype text_vocab_size max_text_tokens max_title_tokens "
        "item2id_input item2id_vector_tokens".split()
    },
    **{
        n: f"schedule.{n}"
        for n in "tasks max_epochs_per_round max_epochs_first_round patience cycles "
        "max_minutes_per_round batch_size lr lr_schedule warmup_steps weight_decay "
        "grad_clip".split()
    },
    **{
        f"refine_{n}": f"refine.{n}"
        for n in "beams margin evidence free_only contrast levels occurrences".split()
    },  # fmt: skip
    **{n: f"refine.{n}" for n in ("diversity", "keep_current", "diagnostics")},
    **{n: f"eval.{n}" for n in ("beams", "valid_users", "exclude_history")},
    "eval_mode": "eval.mode",
    "eval_batch_size": "eval.batch_size",
    "eval_every": "eval.every",
}


_FRESH = "__fresh__"  # marks a refine section given as a preset name


def _outside_siit() -> int:
    """The stack level of the first caller outside the siit package, as `warnings.warn`
    counts from `_nest`: a warning names the user's line, not ours."""
    package = str(Path(__file__).resolve().parents[1])
    level, frame = 1, sys._getframe(2)  # _nest's caller
    while str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        if frame.f_back is None:
            break
        level, frame = level + 1, frame.f_back
    return level + 1


def _nest(values: Mapping[str, Any], warn: bool) -> dict[str, Any]:
    """Settings as given (sections as dicts or objects, dotted names, old flat names, a
    preset name for `refine`) as {top-level name: value or {field: value} of a section}."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = RENAMED.get(key, key)
        if path != key and warn:
            warnings.warn(
                f"setting {key!r} is now {path!r} (TrainConfig({path.split('.')[0]}="
                f"{{{path.split('.')[1]!r}: ...}}), {path}=... in files and on the command "
                "line); the old name will go",
                FutureWarning,
                stacklevel=_outside_siit(),
            )
        name, _, inner = path.partition(".")
        if path == "refine" and isinstance(value, str):  # a preset name: a fresh section
            out["refine"] = {**out.get("refine", {}), "preset": value, _FRESH: True}
        elif inner:
            if name not in SECTIONS or "." in inner:
                raise ValueError(f"unknown setting {key!r}; sections: {list(SECTIONS)}")
            out.setdefault(name, {})[inner] = value
        elif name in SECTIONS and isinstance(value, Mapping):
            out.setdefault(name, {}).update(value)
        else:
            out[name] = value
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """`name=value` from the command line (`rounds=2`, `refine.margin=0.5`); the value is
    read as JSON (numbers, booleans, null, lists, objects) and otherwise kept as a string."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like name=value")
    name, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip().replace("-", "_"), value
