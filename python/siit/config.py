"""`TrainConfig`: every setting of a run, checked before any work starts, and read from
TOML, YAML or JSON files (as data: no code is evaluated)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import read_text
from .metrics import NDCG_KS, RECALL_KS
from .tasks import check_task_weights

TOKENIZERS = ("rqvae", "letter", "cid", "random")
# CID splits the co-occurrence graph into a few dozen clusters per level; the others
# quantize embeddings with the 256-code codebooks of TIGER and LETTER.
DEFAULT_CODEBOOK_SIZES = {"cid": 32}
PAPER_TASKS = {"seqrec": 1.0, "item2id": 1.0, "id2item": 1.0}
# Marks a dataset, tokenizer or model that was passed to `siit.train` as an object.
OBJECT = "object:"


@dataclass
class TrainConfig:
    """Settings of `siit.train`. The defaults are the embedded CPU demo: MovieLens-100K,
    CID identifiers (3 x 32), the decoder-only gpt-mini preset trained on every position of
    each user's windows until validation NDCG@10 stops improving. SIIT's refinement rounds
    are opt-in (`rounds`) until they beat this baseline at equal budget."""

    # data
    dataset: str = "movielens"  # "movielens", "synthetic" or a path for Dataset.load
    max_history: int = 50  # items of history in a prompt (decoder-only windows: + 1 target)
    # initial identifiers: a tokenizer name or an identifiers file (.index.json, .npz)
    tokenizer: str = "cid"
    levels: int = 3
    codebook_size: int | None = None  # None: 32 for CID, 256 for the others
    tokenizer_options: dict[str, Any] = field(default_factory=dict)
    # model: a preset, a Hugging Face name or a local directory
    model: str = "gpt-mini"
    model_options: dict[str, Any] = field(default_factory=dict)
    gguf_file: str | None = None
    dtype: str = "float32"  # "float32", "float64" or "bfloat16" weights
    text_vocab_size: int = 4000
    max_text_tokens: int = 64
    max_title_tokens: int = 24
    # the item2id prompt's item: "text" (its word pieces) or "embedding" (its text embedding
    # from siit.embed through a learned projection to item2id_vector_tokens input positions,
    # so that similar items get similar prompts)
    item2id_input: str = "text"
    item2id_vector_tokens: int = 4
    # tasks: weight = passes over that task's samples per epoch (fractions subsample).
    # None: seqrec alone for the baseline (rounds=0; the alignment tasks cost a small model
    # recommendation quality), the paper's mix of all three when there are rounds to refine
    tasks: dict[str, float] | None = None
    # encoder-decoder models: each user's last N prefixes as samples; None: all of them
    samples_per_user: int | None = None
    # schedule: round 0 trains on the initial identifiers, rounds 1..R after a refinement;
    # each round trains until validation NDCG@10 has not improved for `patience`
    # evaluations (every `eval_every` epochs), at most `max_epochs_per_round` epochs, and
    # keeps its best weights. patience=None trains exactly max_epochs_per_round epochs.
    rounds: int = 0
    max_epochs_per_round: int = 60
    # round 0's cap (and cosine horizon) when it differs: train on the initial identifiers
    # to convergence, then refine in short rounds; None: max_epochs_per_round
    max_epochs_first_round: int | None = None
    patience: int | None = 10
    # a round also ends (after validating) once it has run this long, refinement included
    max_minutes_per_round: float | None = None
    eval_every: int = 1
    batch_size: int = 128
    lr: float = 2e-3
    lr_schedule: str = "cosine"  # or "constant": after warmup, over max_epochs_per_round
    warmup_steps: int = 100  # at the start of every round
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # refinement
    refine_beams: int = 20
    diversity: float = 0.0
    keep_current: bool = True  # the current identifier competes with the beams
    # only items whose best beam beats their current identifier's log-prob by this much
    # move (needs keep_current); None: every item takes the assignment's choice
    refine_margin: float | None = None
    # candidate scores: "item2id" (the paper), "seqrec" (the mean log-prob of the candidate
    # after the histories of up to refine_occurrences of the item's training samples) or
    # "both" (their sum)
    refine_evidence: str = "item2id"
    # items may move only to identifiers no other item holds (no displacement cascades)
    refine_free_only: bool = False
    refine_occurrences: int = 8
    # with rounds: the semantic consistency of each round's identifiers (text embeddings)
    diagnostics: bool = True
    # evaluation
    beams: int = 20
    eval_mode: str = "beam"  # "beam" or "exact" (teacher-forced scores of every item)
    eval_batch_size: int = 64
    valid_users: int | None = None  # validate on a fixed random subset of users
    exclude_history: bool = False  # never recommend an item already in the history
    # run
    seed: int = 0
    device: str = "auto"
    output_dir: str | None = None
    threads: int | None = None
    progress: bool = True

    # -- checks --------------------------------------------------------------------------

    def check(self) -> TrainConfig:
        """Raise ValueError naming the first bad setting; return self."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"bad configuration: {message}")

        if self.codebook_size is None:
            self.codebook_size = DEFAULT_CODEBOOK_SIZES.get(self.tokenizer, 256)

        for name in (
            "max_history",
            "levels",
            "codebook_size",
            "max_epochs_per_round",
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
            self.eval_mode in ("beam", "exact"),
            f"eval_mode must be 'beam' or 'exact', got {self.eval_mode!r}",
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
        if self.tasks is None:
            self.tasks = dict(PAPER_TASKS) if self.rounds > 0 else {"seqrec": 1.0}
        try:
            self.tasks = check_task_weights(self.tasks)
        except ValueError as err:
            raise ValueError(f"bad configuration: {err}") from None
        need(
            self.rounds == 0 or self.tasks["item2id"] > 0,
            f"rounds={self.rounds} refine identifiers from the item2id prompt, but the item2id "
            "task has no weight; give it one (tasks.item2id) or set rounds=0",
        )
        need(
            self.item2id_input == "text" or self.tasks["item2id"] > 0,
            "item2id_input='embedding' feeds the item2id task, which has no weight; give it "
            "one (tasks.item2id) or leave item2id_input='text'",
        )
        return self

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
