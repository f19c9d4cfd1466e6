"""`TrainConfig`: every setting of a run, checked before any work starts, and read from
TOML, YAML or JSON files (as data: no code is evaluated)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import read_text
from .metrics import NDCG_KS, RECALL_KS

TOKENIZERS = ("rqvae", "letter", "cid", "random")
TASKS = ("seqrec", "item2id", "id2item")
# CID splits the co-occurrence graph into a few dozen clusters per level; the others
# quantize embeddings with the 256-code codebooks of TIGER and LETTER.
DEFAULT_CODEBOOK_SIZES = {"cid": 32}
# Epochs of a run without refinement rounds (the baseline) when max_epochs_per_round is unset:
# token-level presets, and item-level ones (cheaper epochs, still improving at 60 on MovieLens).
BASELINE_EPOCHS = 60
ITEM_BASELINE_EPOCHS = 100
# Refinement presets: the values that a run with rounds > 0 takes for every lever left at
# None. "conservative" is the best arm of the equal-budget grid (benches/results/siit.md,
# "conservative uneven"); "paper" is the method as published. The epoch caps apply only
# when neither max_epochs_per_round nor max_epochs_first_round is set: with rounds=2 both
# presets train at most 60 epochs in all, as in the grid.
REFINE_PRESETS: dict[str, dict[str, Any]] = {
    "conservative": dict(
        tasks={"seqrec": 1.0, "item2id": 0.25, "id2item": 0.0},
        keep_current=True,
        refine_evidence="both",
        refine_free_only=True,
        refine_margin=0.5,
        max_epochs_first_round=40,
        max_epochs_per_round=10,
    ),
    "paper": dict(
        tasks={"seqrec": 1.0, "item2id": 1.0, "id2item": 1.0},
        keep_current=False,
        refine_evidence="item2id",
        refine_free_only=False,
        refine_margin=None,
        max_epochs_first_round=None,
        max_epochs_per_round=20,
    ),
}
# Item-level presets (one position per item; siit.models.item_level) are named "item-...".
ITEM_LEVEL = "item-"


def is_item_level(model: str) -> bool:
    """Whether a model setting names an item-level preset."""
    return model.startswith(ITEM_LEVEL)


# Marks a dataset, tokenizer or model that was passed to `siit.train` as an object.
OBJECT = "object:"


def _setting(default: Any, help: str) -> Any:
    """A field with its one-line description (the settings reference and `siit settings`);
    a callable default is a factory (`dict` for an empty mapping)."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Settings of `siit.train`. The defaults are the embedded CPU demo: MovieLens-100K,
    CID identifiers (3 x 32), the item-level item-mini preset trained on every position of
    each user's windows until validation NDCG@10 stops improving. SIIT's refinement rounds
    are opt-in (`rounds`); with rounds, every lever left at None takes the `refine` preset's
    value."""

    # data
    dataset: str = _setting(
        "movielens", '"movielens", "synthetic" or a dataset path for Dataset.load'
    )
    max_history: int = _setting(
        50, "items of history in a prompt (decoder-only windows: + 1 target)"
    )
    # initial identifiers
    tokenizer: str = _setting(
        "cid", 'initial identifiers: "cid", "rqvae", "letter", "random" or an identifiers file'
    )
    levels: int = _setting(3, "codes per identifier")
    codebook_size: int | None = _setting(None, "codes per level; None: 32 for CID, 256 otherwise")
    tokenizer_options: dict[str, Any] = _setting(dict, "keyword arguments of the tokenizer")
    # model
    model: str = _setting(
        "item-mini",
        "a preset (item-mini, gpt-mini, t5-mini, ...), a Hugging Face name or a directory",
    )
    model_options: dict[str, Any] = _setting(
        dict,
        "fields of the model preset (item-level: hidden, layers, dropout, conditional, "
        "text_input, ...)",
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
    # tasks: weight = passes over that task's samples per epoch (fractions subsample)
    tasks: dict[str, float] | None = _setting(
        None,
        "task weights {seqrec, item2id, id2item}; None: seqrec alone for rounds=0, the refine "
        "preset's mix with rounds",
    )
    samples_per_user: int | None = _setting(
        None, "encoder-decoder models: each user's last N prefixes as samples; None: all"
    )
    # schedule
    rounds: int = _setting(
        0, "refinement rounds after round 0 (0: the baseline on the initial identifiers)"
    )
    refine: str = _setting(
        "conservative",
        'refinement preset for levers left at None: "conservative" (the benchmark\'s best) or '
        '"paper"',
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
        20,
        "validations without improvement before a round stops; None: train to the epoch cap",
    )
    cycles: int = _setting(
        1,
        "training cycles per round: after early stopping, another cycle restarts warmup and "
        "schedule from the round's best weights with a fresh optimizer",
    )
    max_minutes_per_round: float | None = _setting(
        None, "a round also ends (after validating) once it has run this long"
    )
    eval_every: int = _setting(1, "validate every N epochs")
    batch_size: int = _setting(128, "samples per optimizer step")
    lr: float = _setting(2e-3, "peak learning rate (AdamW)")
    lr_schedule: str = _setting(
        "cosine", '"cosine" (over the round\'s epoch cap) or "constant", after warmup'
    )
    warmup_steps: int = _setting(100, "linear warmup steps at the start of every round")
    weight_decay: float = _setting(0.01, "AdamW weight decay of matrices")
    grad_clip: float = _setting(1.0, "gradient norm clip")
    # refinement levers (None: the refine preset's)
    refine_beams: int = _setting(20, "identifiers proposed per item by beam search")
    diversity: float = _setting(0.0, "penalty on crowded codes in refinement beams")
    keep_current: bool | None = _setting(
        None, "the current identifier competes with the beams; None: the preset's"
    )
    refine_margin: float | None = _setting(
        None,
        "an item moves only if its best beam beats its current identifier by this much "
        "(needs keep_current; -inf: no gate); None: the preset's",
    )
    refine_evidence: str | None = _setting(
        None,
        'candidate scores: "item2id" (the paper), "seqrec" (where the recommender expects the '
        'item) or "both"; None: the preset\'s',
    )
    refine_free_only: bool | None = _setting(
        None, "moves only to identifiers no other item holds; None: the preset's"
    )
    refine_contrast: int = _setting(
        0,
        "item-level collaborative evidence: subtract, per occurrence, a candidate's mean "
        "log-prob at this many random training positions, so identifiers predicted everywhere "
        "(popular items') do not win every item; 0: off",
    )
    refine_levels: int | None = _setting(
        None,
        "how many levels, from the last, a refinement may change (1: the last code only; 0: "
        "none, the no-move control of a SIIT arm: same rounds and restarts, nobody moves; "
        "needs keep_current); None: all",
    )
    refine_occurrences: int = _setting(8, "training samples per item for seqrec evidence")
    diagnostics: bool = _setting(
        True, "with rounds: semantic consistency of each round's identifiers"
    )
    # evaluation
    beams: int = _setting(20, "beams of evaluation's constrained beam search")
    eval_mode: str = _setting(
        "auto",
        '"auto" (exact for item-level models up to 200k items, else beam), "beam" or "exact" '
        "(every item of the catalogue scored)",
    )
    eval_batch_size: int = _setting(64, "users per evaluation batch")
    valid_users: int | None = _setting(
        None, "validate on a fixed random subset of users; None: all"
    )
    exclude_history: bool = _setting(
        False,
        "metrics never count an item of the history (off: comparable with the literature)",
    )
    # run
    seed: int = _setting(0, "seed of the tokenizer, model, batches and validation subset")
    device: str = _setting("auto", '"auto" (cuda if any), "cpu", "cuda", "cuda:1", ...')
    output_dir: str | None = _setting(
        None, "the run directory; None: runs/<dataset>-<tokenizer>-r<rounds>-s<seed>-<time>"
    )
    threads: int | None = _setting(None, "torch CPU threads; None: torch's default")
    progress: bool = _setting(True, "progress bars on a terminal")

    # -- checks --------------------------------------------------------------------------

    def check(self) -> TrainConfig:
        """Raise ValueError naming the first bad setting; return self."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"bad configuration: {message}")

        if self.codebook_size is None:
            self.codebook_size = DEFAULT_CODEBOOK_SIZES.get(self.tokenizer, 256)
        need(
            self.refine in REFINE_PRESETS,
            f"refine must be one of {list(REFINE_PRESETS)}, got {self.refine!r}",
        )
        self._resolve_preset()

        for name in (
            "max_history",
            "levels",
            "codebook_size",
            "max_epochs_per_round",
            "cycles",
            "eval_every",
            "batch_size",
            "refine_beams",
            "refine_occurrences",
            "beams",
            "eval_batch_size",
            "text_vocab_size",
            "max_text_tokens",
            "max_title_tokens",
            "item2id_vector_tokens",
        ):
            value = getattr(self, name)
            need(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be an integer >= 1, got {value!r}",
            )
        for name in ("rounds", "warmup_steps", "seed"):
            value = getattr(self, name)
            need(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                f"{name} must be an integer >= 0, got {value!r}",
            )
        for name in (
            "samples_per_user",
            "valid_users",
            "threads",
            "patience",
            "max_epochs_first_round",
        ):
            value = getattr(self, name)
            need(
                value is None or (isinstance(value, int) and value >= 1),
                f"{name} must be None or an integer >= 1, got {value!r}",
            )
        need(
            self.max_minutes_per_round is None or self.max_minutes_per_round > 0,
            f"max_minutes_per_round must be None or > 0, got {self.max_minutes_per_round!r}",
        )
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        need(self.diversity >= 0, f"diversity must be >= 0, got {self.diversity}")
        need(
            self.refine_evidence in ("item2id", "seqrec", "both"),
            f"refine_evidence must be 'item2id', 'seqrec' or 'both', got {self.refine_evidence!r}",
        )
        need(
            self.refine_margin is None or (self.refine_margin >= 0 and self.keep_current),
            "refine_margin must be None or >= 0, and needs keep_current=True (the margin is "
            f"over the current identifier's score), got {self.refine_margin!r}",
        )
        need(
            isinstance(self.refine_contrast, int)
            and not isinstance(self.refine_contrast, bool)
            and self.refine_contrast >= 0
            and (self.refine_contrast == 0 or is_item_level(self.model)),
            "refine_contrast must be an integer >= 0, and > 0 only for item-level models "
            f"(their collaborative evidence), got {self.refine_contrast!r}",
        )
        need(
            self.refine_levels is None
            or (
                isinstance(self.refine_levels, int)
                and not isinstance(self.refine_levels, bool)
                and self.refine_levels >= 0
                and self.keep_current
            ),
            "refine_levels must be None or an integer >= 0, and needs keep_current=True (an "
            f"item that may not move keeps its identifier), got {self.refine_levels!r}",
        )
        need(
            self.item2id_input in ("text", "embedding"),
            f"item2id_input must be 'text' or 'embedding', got {self.item2id_input!r}",
        )
        need(
            self.lr_schedule in ("constant", "cosine"),
            f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}",
        )
        need(
            isinstance(self.exclude_history, bool),
            f"exclude_history must be true or false, got {self.exclude_history!r}",
        )
        need(
            self.dtype in ("float32", "float64", "bfloat16"),
            f"dtype must be 'float32', 'float64' or 'bfloat16', got {self.dtype!r}",
        )
        need(
            self.eval_mode in ("auto", "beam", "exact"),
            f"eval_mode must be 'auto', 'beam' or 'exact', got {self.eval_mode!r}",
        )
        largest_k = max(*RECALL_KS, *NDCG_KS)
        need(
            self.beams >= largest_k,
            f"beams ({self.beams}) must be >= the largest k reported ({largest_k})",
        )
        need(
            self.tokenizer in TOKENIZERS
            or self.tokenizer.startswith(OBJECT)
            or Path(self.tokenizer).is_file(),
            f"tokenizer must be one of {list(TOKENIZERS)} or an identifiers file, "
            f"got {self.tokenizer!r}",
        )
        need(self.levels <= 26, f"levels ({self.levels}) must be <= 26 (one letter each)")
        bits = self.levels * math.ceil(math.log2(max(self.codebook_size, 2)))
        need(
            bits <= 64,
            f"identifiers of {self.levels} levels x {self.codebook_size} codes need "
            f"{bits} bits; at most 64 fit the core's keys",
        )
        need(
            isinstance(self.keep_current, bool) and isinstance(self.refine_free_only, bool),
            "keep_current and refine_free_only must be true or false",
        )
        try:
            self.tasks = check_task_weights(self.tasks)
        except ValueError as err:
            raise ValueError(f"bad configuration: {err}") from None
        if is_item_level(self.model):
            need(
                self.tasks["item2id"] == 0 and self.tasks["id2item"] == 0,
                f"item-level models ({self.model}) train seqrec alone; set tasks.item2id and "
                "tasks.id2item to 0",
            )
            need(
                self.refine_evidence == "seqrec",
                f"item-level models ({self.model}) refine from seqrec evidence (where the model "
                f"expects each item), got refine_evidence={self.refine_evidence!r}",
            )
            need(
                self.item2id_input == "text",
                "item2id_input='embedding' needs a token-level model with the item2id task",
            )
        need(
            is_item_level(self.model) or self.rounds == 0 or self.tasks["item2id"] > 0,
            f"rounds={self.rounds} refine identifiers from the item2id prompt, but the item2id "
            "task has no weight; give it one (tasks.item2id) or set rounds=0",
        )
        need(
            self.item2id_input == "text" or self.tasks["item2id"] > 0,
            "item2id_input='embedding' feeds the item2id task, which has no weight; give it "
            "one (tasks.item2id) or leave item2id_input='text'",
        )
        return self

    def _resolve_preset(self) -> None:
        """Fill the levers left at None: from the `refine` preset for a run with rounds, and
        seqrec alone with the baseline's epoch cap for a run without."""
        preset = REFINE_PRESETS[self.refine]
        schedule_set = self.max_epochs_per_round is not None or (
            self.max_epochs_first_round is not None
        )
        if self.rounds == 0:
            if self.tasks is None:
                self.tasks = {"seqrec": 1.0}
            if self.max_epochs_per_round is None:
                item = is_item_level(self.model)
                self.max_epochs_per_round = ITEM_BASELINE_EPOCHS if item else BASELINE_EPOCHS
        elif not schedule_set:
            self.max_epochs_per_round = preset["max_epochs_per_round"]
            self.max_epochs_first_round = preset["max_epochs_first_round"]
        elif self.max_epochs_per_round is None:
            self.max_epochs_per_round = preset["max_epochs_per_round"]
        if is_item_level(self.model):  # no text to align: seqrec alone, and its evidence
            if self.tasks is None:
                self.tasks = {"seqrec": 1.0}
            if self.refine_evidence is None:
                self.refine_evidence = "seqrec"
        for name in ("tasks", "keep_current", "refine_evidence", "refine_free_only"):
            if getattr(self, name) is None:  # tasks: check_task_weights copies the preset's
                setattr(self, name, preset[name])
        # a baseline keeps no margin, so that keep_current=False alone stays valid there
        if self.refine_margin is None and self.rounds > 0:
            self.refine_margin = preset["refine_margin"]

    # -- files ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown}; known settings: {', '.join(sorted(known))}"
            )
        return cls(**values)

    @classmethod
    def from_run(cls, path: str | Path) -> TrainConfig:
        """The settings a run directory's config.json recorded. Runs written before the
        refinement presets recorded every lever, a margin of None meaning no gate: they
        read as refine="paper", whose margin is None too."""
        values = json.loads(read_text(Path(path) / "config.json"))
        values.setdefault("refine", "paper")
        return cls.from_dict(values)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """A `.toml`, `.yaml`/`.yml` or `.json` file of settings (a `[train]` table or the
        top level)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = read_text(path)
        try:
            if path.suffix == ".toml":
                import tomllib

                values = tomllib.loads(text)
            elif path.suffix in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(text) or {}
            elif path.suffix == ".json":
                values = json.loads(text)
            else:
                raise ValueError("use .toml, .yaml, .yml or .json")
        except Exception as err:  # noqa: BLE001 - parse errors of three libraries
            raise ValueError(f"config file {path}: {err}") from None
        if not isinstance(values, dict):
            raise ValueError(f"config file {path}: expected a table of settings")
        values = values.get("train", values)
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"config file {path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}")
        return dataclasses.replace(self, **changes)


def parse_override(item: str) -> tuple[str, Any]:
    """`name=value` from the command line; the value is read as JSON (numbers, booleans,
    null, lists, objects) and otherwise kept as a string."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like name=value")
    name, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip().replace("-", "_"), value


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
