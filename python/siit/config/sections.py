"""The sections of `TrainConfig`: each a dataclass of settings with a one-line description
per field and a `check` that names a bad setting by its dotted path (`refine.margin`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..metrics import NDCG_KS, RECALL_KS

TASKS = ("seqrec", "item2id", "id2item")
# Epochs of a run without refinement rounds (the baseline) when schedule.max_epochs_per_round
# is unset: token-level presets, and item-level ones (cheaper epochs; with text input still
# improving at 100: 150 raised MovieLens validation on each of 3 seeds, docs/results.md).
BASELINE_EPOCHS = 60
ITEM_BASELINE_EPOCHS = 150
# Training cycles of an item-level baseline: a second one restarts the schedule from the
# first's best weights (raised MovieLens validation on 2 of 3 seeds, level on the third;
# docs/results.md).
ITEM_BASELINE_CYCLES = 2
# Users per evaluation batch when eval.batch_size is unset: item-level ranking ran 25% more
# users a second in batches of 256 than of 64, and 5% more in 512 than 256 (1,024: no more;
# MovieLens, 2 threads; exact scoring chunks its own work); beam search keeps 64.
EVAL_BATCH = 64
ITEM_EVAL_BATCH = 512

Need = Callable[[bool, str], None]


def _setting(default: Any, help: str) -> Any:
    """A field with its one-line description (the settings reference and `siit settings`);
    a callable default is a factory (`dict` for an empty mapping)."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (a fresh one from its factory)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _integers(
    need: Need, section: object, prefix: str, names: str, least: int, optional: bool = False
) -> None:
    """Each field of `names` is an integer >= `least` (or None when `optional`)."""
    for name in names.split():
        value = getattr(section, name)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
        what = f"{'None or ' if optional else ''}an integer >= {least}"
        need(ok or (optional and value is None), f"{prefix}{name} must be {what}, got {value!r}")


def _one_of(need: Need, value: Any, name: str, allowed: tuple) -> None:
    need(value in allowed, f"{name} must be one of {list(allowed)}, got {value!r}")


@dataclass
class DataSettings:
    """What one sample holds."""

    max_history: int = _setting(
        50, "items of history in a prompt (decoder-only windows: + 1 target)"
    )
    samples_per_user: int | None = _setting(
        None, "encoder-decoder models: each user's last N prefixes as samples; None: all"
    )

    def check(self, need: Need) -> None:
        _integers(need, self, "data.", "max_history", 1)
        _integers(need, self, "data.", "samples_per_user", 1, optional=True)


@dataclass
class IdentifierSettings:
    """The initial identifiers' shape (the `tokenizer` setting names their method)."""

    levels: int = _setting(3, "codes per identifier")
    codebook_size: int | None = _setting(None, "codes per level; None: 32 for CID, 256 otherwise")
    options: dict[str, Any] = _setting(dict, "keyword arguments of the tokenizer")

    def check(self, need: Need) -> None:
        _integers(need, self, "identifiers.", "levels codebook_size", 1)
        need(self.levels <= 26, f"identifiers.levels ({self.levels}) must be <= 26 (a letter each)")
        bits = self.levels * math.ceil(math.log2(max(int(self.codebook_size or 0), 2)))
        need(
            bits <= 64,
            f"identifiers of {self.levels} levels x {self.codebook_size} codes need "
            f"{bits} bits; at most 64 fit the core's keys",
        )


@dataclass
class NetworkSettings:
    """The model's shape beyond its preset name (the `model` setting)."""

    options: dict[str, Any] = _setting(
        dict,
        "fields of the model preset (item-level: hidden, layers, dropout, conditional, "
        "trie_softmax, dense_head (item-mini: on), dense_residual, activation (a Hugging Face "
        "name; '': GPT-2's exact GELU, Llama's SiLU), text_input: true, false or 'auto', the "
        "item-mini default, ...)",
    )
    gguf_file: str | None = _setting(None, "the GGUF file inside a GGUF model repository")
    dtype: str = _setting("float32", 'weights: "float32", "float64" or "bfloat16"')
    text_vocab_size: int = _setting(4000, "WordPiece vocabulary of from-scratch presets")
    max_text_tokens: int = _setting(64, "item text tokens in an item2id prompt")
    max_title_tokens: int = _setting(24, "title tokens an id2item sample generates")
    item2id_input: str = _setting(
        "text",
        'the item2id prompt\'s item: "text" (word pieces) or "embedding" (its text embedding '
        "through a learned projection)",
    )
    item2id_vector_tokens: int = _setting(
        4, "input positions of the projected embedding (item2id_input='embedding')"
    )

    def check(self, need: Need) -> None:
        names = "text_vocab_size max_text_tokens max_title_tokens item2id_vector_tokens"
        _integers(need, self, "network.", names, 1)
        _one_of(need, self.dtype, "network.dtype", ("float32", "float64", "bfloat16"))
        _one_of(need, self.item2id_input, "network.item2id_input", ("text", "embedding"))
        text_input = self.options.get("text_input")
        need(  # exact: 1 == True, and "no" must not read text
            text_input is None or isinstance(text_input, bool) or text_input == "auto",
            f"network.options text_input must be true, false or 'auto', got {text_input!r}",
        )
        text_prior = self.options.get("text_prior", False)
        need(
            isinstance(text_prior, bool),
            f"network.options text_prior must be true or false, got {text_prior!r}",
        )


@dataclass
class ScheduleSettings:
    """What one round trains and for how long."""

    tasks: dict[str, float] | None = _setting(
        None,
        "task weights {seqrec, item2id, id2item} (passes over that task's samples per epoch); "
        "None: seqrec alone for rounds=0, the refine preset's mix with rounds",
    )
    max_epochs_per_round: int | None = _setting(
        None,
        f"epoch cap of each round; None: {BASELINE_EPOCHS} without rounds ({ITEM_BASELINE_EPOCHS} "
        "for item-level models), the refine preset's with rounds",
    )
    max_epochs_first_round: int | None = _setting(
        None, "round 0's own epoch cap (and cosine horizon); None: max_epochs_per_round"
    )
    patience: int | None = _setting(
        20, "validations without improvement before a round stops; None: train to the cap"
    )
    cycles: int | None = _setting(
        None,
        "training cycles per round: after early stopping, another cycle restarts warmup and "
        "schedule from the round's best weights with a fresh optimizer; None: "
        f"{ITEM_BASELINE_CYCLES} for item-level models without rounds, else 1",
    )
    max_minutes_per_round: float | None = _setting(
        None, "a round also ends (after validating) once it has run this long"
    )
    batch_size: int = _setting(128, "samples per optimizer step")
    lr: float = _setting(2e-3, "peak learning rate (AdamW)")
    lr_schedule: str = _setting(
        "cosine", '"cosine" (over the round\'s epoch cap) or "constant", after warmup'
    )
    warmup_steps: int = _setting(100, "linear warmup steps at the start of every round")
    weight_decay: float = _setting(0.01, "AdamW weight decay of matrices")
    grad_clip: float = _setting(1.0, "gradient norm clip")

    def check(self, need: Need) -> None:
        _integers(need, self, "schedule.", "max_epochs_per_round cycles batch_size", 1)
        _integers(need, self, "schedule.", "warmup_steps", 0)
        _integers(need, self, "schedule.", "patience max_epochs_first_round", 1, optional=True)
        minutes = self.max_minutes_per_round
        need(
            minutes is None or minutes > 0,
            f"schedule.max_minutes_per_round must be None or > 0, got {minutes!r}",
        )
        need(self.lr > 0, f"schedule.lr must be > 0, got {self.lr}")
        need(self.weight_decay >= 0, f"schedule.weight_decay must be >= 0, got {self.weight_decay}")
        need(self.grad_clip > 0, f"schedule.grad_clip must be > 0, got {self.grad_clip}")
        _one_of(need, self.lr_schedule, "schedule.lr_schedule", ("constant", "cosine"))
        try:
            self.tasks = check_task_weights(self.tasks or {})
        except ValueError as err:
            need(False, f"schedule.tasks: {err}")


@dataclass
class RefineSettings:
    """SIIT's refinement levers; with rounds, every one left at None takes the preset's."""

    preset: str = _setting(
        "auto",
        'the levers left at None: "collaborative" (item-level models), "conservative" '
        '(token-level), "paper" (as published) or "auto" (the first two by model family)',
    )
    beams: int = _setting(20, "identifiers proposed per item by beam search")
    diversity: float = _setting(0.0, "penalty on crowded codes in refinement beams")
    keep_current: bool | None = _setting(
        None, "the current identifier competes with the beams; None: the preset's"
    )
    margin: float | None = _setting(
        None,
        "an item moves only if its best beam beats its current identifier by this much "
        "(needs keep_current); None: the preset's",
    )
    evidence: str | None = _setting(
        None,
        'candidate scores: "item2id" (the paper), "seqrec" (where the recommender expects the '
        'item) or "both"; None: the preset\'s',
    )
    free_only: bool | None = _setting(
        None, "moves only to identifiers no other item holds; None: the preset's"
    )
    contrast: int | None = _setting(
        None,
        "item-level collaborative evidence: subtract, per occurrence, a candidate's mean "
        "log-prob at this many random training positions, so identifiers predicted everywhere "
        "(popular items') do not win every item; 0: off; None: the preset's",
    )
    levels: int | None = _setting(
        None,
        "how many levels, from the last, a refinement may change (1: the last code only; 0: "
        "none, the no-move control of a SIIT arm: same rounds and restarts, nobody moves; "
        "needs keep_current; at most the identifiers' levels); None: the preset's (every "
        "level but for collaborative)",
    )
    occurrences: int = _setting(8, "training samples per item for seqrec evidence")
    text_occurrences: int = _setting(
        0,
        "item-level models with a text prior: an item's text counts as this many training "
        "occurrences in its collaborative evidence, so items seen rarely are placed mostly "
        "by their text and often-seen ones by the data; 0: off",
    )
    diagnostics: bool = _setting(
        True, "with rounds: semantic consistency of each round's identifiers"
    )

    def check(self, need: Need, item_level: bool) -> None:
        _integers(need, self, "refine.", "beams occurrences", 1)
        _integers(need, self, "refine.", "contrast text_occurrences", 0)
        _integers(need, self, "refine.", "levels", 0, optional=True)
        need(self.diversity >= 0, f"refine.diversity must be >= 0, got {self.diversity}")
        _one_of(need, self.evidence, "refine.evidence", ("item2id", "seqrec", "both"))
        need(
            isinstance(self.keep_current, bool) and isinstance(self.free_only, bool),
            "refine.keep_current and refine.free_only must be true or false",
        )
        need(
            self.margin is None or (self.margin >= 0 and bool(self.keep_current)),
            "refine.margin must be None or >= 0, and needs refine.keep_current (the margin is "
            f"over the current identifier's score), got {self.margin!r}",
        )
        need(
            self.contrast == 0 or item_level,
            f"refine.contrast must be 0 but for item-level models (their collaborative "
            f"evidence), got {self.contrast!r}",
        )
        need(
            self.levels is None or bool(self.keep_current),
            "refine.levels needs refine.keep_current (an item that may not move keeps its "
            f"identifier), got {self.levels!r}",
        )


@dataclass
class EvalSettings:
    """Validation during training and the final test."""

    beams: int = _setting(20, "beams of evaluation's constrained beam search")
    mode: str = _setting(
        "auto",
        '"auto" (exact for item-level models up to 200k items, else beam), "beam" or "exact" '
        "(every item of the catalogue scored)",
    )
    batch_size: int | None = _setting(
        None,
        f"users per evaluation batch; None: {ITEM_EVAL_BATCH} for item-level models (exact "
        f"scoring chunks its own work), {EVAL_BATCH} for token-level ones (beam search)",
    )
    every: int = _setting(1, "validate every N epochs")
    valid_users: int | None = _setting(
        None, "validate on a fixed random subset of users; None: all"
    )
    exclude_history: bool = _setting(
        False,
        "metrics never count an item of the history (off: comparable with the literature)",
    )

    def check(self, need: Need) -> None:
        _integers(need, self, "eval.", "beams every", 1)
        _integers(need, self, "eval.", "batch_size valid_users", 1, optional=True)
        _one_of(need, self.mode, "eval.mode", ("auto", "beam", "exact"))
        largest_k = max(*RECALL_KS, *NDCG_KS)
        need(
            self.beams >= largest_k,
            f"eval.beams ({self.beams}) must be >= the largest k reported ({largest_k})",
        )
        need(
            isinstance(self.exclude_history, bool),
            f"eval.exclude_history must be true or false, got {self.exclude_history!r}",
        )


SECTIONS: dict[str, type] = {
    "data": DataSettings,
    "identifiers": IdentifierSettings,
    "network": NetworkSettings,
    "schedule": ScheduleSettings,
    "refine": RefineSettings,
    "eval": EvalSettings,
}


def check_task_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} in tasks; known: {list(TASKS)}")
    bad = {k: v for k, v in weights.items() if not (float(v) >= 0)}
    if bad:
        raise ValueError(f"task weights must be >= 0, got {bad}")
    out = {task: float(weights.get(task, 0.0)) for task in TASKS}
    if out["seqrec"] <= 0:
        raise ValueError("tasks: seqrec must have a positive weight")
    return out
