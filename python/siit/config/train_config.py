"""`TrainConfig`: every setting of a run in sections (data, identifiers, network, schedule,
refine, eval) under a dozen everyday fields, checked before any work starts, and read from
TOML, YAML or JSON files (as data: no code is evaluated).

A setting is named by its section and field (`refine.margin`): keyword arguments take a
section as a dict (`TrainConfig(refine={"margin": 0.5})`), files as a table and the command
line as a dotted name (`siit train refine.margin=0.5`). The flat names of earlier versions
(`refine_margin`) still work with a FutureWarning that gives the new name."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import read_text
from .names import _FRESH, _nest
from .sections import (
    BASELINE_EPOCHS,
    EVAL_BATCH,
    ITEM_BASELINE_CYCLES,
    ITEM_BASELINE_EPOCHS,
    ITEM_EVAL_BATCH,
    SECTIONS,
    DataSettings,
    EvalSettings,
    IdentifierSettings,
    NetworkSettings,
    RefineSettings,
    ScheduleSettings,
    _integers,
    _one_of,
    _setting,
    field_default,
)

TOKENIZERS = ("rqvae", "letter", "cid", "random")
# CID splits the co-occurrence graph into a few dozen clusters per level; the others
# quantize embeddings with the 256-code codebooks of TIGER and LETTER.
DEFAULT_CODEBOOK_SIZES = {"cid": 32}
# Refinement presets: the values that a run with rounds > 0 takes for every setting left at
# None. "conservative" is the best arm of the token-level equal-budget grid
# (benches/results/siit_token.md, "conservative uneven"; 60 epochs in all with rounds=2);
# "paper" is the method as published; "collaborative" is the item-level arm that validation
# preferred (benches/results/siit_item.md, siit_collaborative.md, siit_text_free.md: occurrence
# evidence contrasted with random positions, the last level only; refining after the
# baseline's own first cycle, then 40 epochs per round, validated above refining after 60
# epochs in 4 of siit_collaborative.md's 6 cells). "auto", the default, is "collaborative" for
# item-level models and "conservative" for token-level ones. The epoch caps apply only when
# neither schedule cap is set.
REFINE_PRESETS: dict[str, dict[str, Any]] = {
    "conservative": {
        "schedule.tasks": {"seqrec": 1.0, "item2id": 0.25, "id2item": 0.0},
        "refine.keep_current": True,
        "refine.evidence": "both",
        "refine.free_only": True,
        "refine.margin": 0.5,
        "schedule.max_epochs_first_round": 40,
        "schedule.max_epochs_per_round": 10,
        "refine.contrast": 0,
        "refine.levels": None,
    },
    "paper": {
        "schedule.tasks": {"seqrec": 1.0, "item2id": 1.0, "id2item": 1.0},
        "refine.keep_current": False,
        "refine.evidence": "item2id",
        "refine.free_only": False,
        "refine.margin": None,
        "schedule.max_epochs_first_round": None,
        "schedule.max_epochs_per_round": 20,
        "refine.contrast": 0,
        "refine.levels": None,
    },
    "collaborative": {
        "schedule.tasks": {"seqrec": 1.0, "item2id": 0.0, "id2item": 0.0},
        "refine.keep_current": True,
        "refine.evidence": "seqrec",
        "refine.free_only": True,
        "refine.margin": 0.5,
        "schedule.max_epochs_first_round": ITEM_BASELINE_EPOCHS,
        "schedule.max_epochs_per_round": 40,
        "refine.contrast": 64,
        "refine.levels": 1,
    },
}
AUTO = "auto"
# The share of an item-level model's batches that train its text prior, when the tasks are
# left at None: a quarter pass over the items with text per epoch, as the conservative
# preset weighs item2id for token-level models.
TEXT_PRIOR_WEIGHT = 0.25
# Item-level presets (one position per item; siit.models.item_level) are named "item-...".
ITEM_LEVEL = "item-"


def is_item_level(model: str) -> bool:
    """Whether a model setting names an item-level preset."""
    return model.startswith(ITEM_LEVEL)


# Marks a dataset, tokenizer or model that was passed to `siit.train` as an object.
OBJECT = "object:"


@dataclass(init=False)
class TrainConfig:
    """Settings of `siit.train`. The defaults are the embedded CPU demo: MovieLens-100K,
    CID identifiers (3 x 32), the item-level item-mini preset trained on every position of
    each user's windows until validation NDCG@10 stops improving. SIIT's refinement rounds
    are opt-in (`rounds`); with rounds, every `refine` lever left at None takes the
    preset's value.

    `TrainConfig(**settings)` and `replace(**settings)` take top-level fields, sections as
    dicts (merged into the current section) or objects, dotted names (`**{"refine.margin":
    0.5}`) and `refine="paper"` (a fresh refine section with that preset)."""

    dataset: str = _setting(
        "movielens", '"movielens", "synthetic" or a dataset path for Dataset.load'
    )
    tokenizer: str = _setting(
        "cid", 'initial identifiers: "cid", "rqvae", "letter", "random" or an identifiers file'
    )
    model: str = _setting(
        "item-mini",
        "a preset (item-mini, gpt-mini, t5-mini, ...), a Hugging Face name or a directory",
    )
    rounds: int = _setting(
        0, "refinement rounds after round 0 (0: the baseline on the initial identifiers)"
    )
    seed: int = _setting(0, "seed of the tokenizer, model, batches and validation subset")
    device: str = _setting("auto", '"auto" (cuda if any), "cpu", "cuda", "cuda:1", ...')
    threads: int | None = _setting(None, "torch CPU threads; None: torch's default")
    output_dir: str | None = _setting(
        None, "the run directory; None: runs/<dataset>-<tokenizer>-r<rounds>-s<seed>-<time>"
    )
    progress: bool = _setting(True, "progress bars on a terminal")
    data: DataSettings = _setting(DataSettings, "what one sample holds")
    identifiers: IdentifierSettings = _setting(IdentifierSettings, "the initial identifiers")
    network: NetworkSettings = _setting(NetworkSettings, "the model beyond its preset")
    schedule: ScheduleSettings = _setting(ScheduleSettings, "tasks, epochs and optimizer")
    refine: RefineSettings = _setting(RefineSettings, "SIIT's refinement levers")
    eval: EvalSettings = _setting(EvalSettings, "validation and test")

    def __init__(self, **settings: Any) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, field_default(f))
        self._apply(_nest(settings, warn=True))

    def _apply(self, nested: dict[str, Any]) -> None:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(nested) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(known)}")
        for name, value in nested.items():
            kind = SECTIONS.get(name)
            if kind is None or isinstance(value, kind):
                setattr(self, name, value)
                continue
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} must be a table of settings, got {value!r}")
            value = dict(value)
            base = kind() if value.pop(_FRESH, False) else getattr(self, name)
            fields = {f.name for f in dataclasses.fields(kind)}
            bad = sorted(set(value) - fields)
            if bad:
                raise ValueError(
                    f"unknown setting(s) {[f'{name}.{b}' for b in bad]}; the {name} section "
                    f"has {sorted(fields)}"
                )
            setattr(self, name, dataclasses.replace(base, **value))

    # -- checks --------------------------------------------------------------------------

    def check(self) -> TrainConfig:
        """Resolve the preset, then raise ValueError naming the first bad setting; return
        self."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"bad configuration: {message}")

        ids, sched, refine, item = self.identifiers, self.schedule, self.refine, self.item_level
        if ids.codebook_size is None:
            ids.codebook_size = DEFAULT_CODEBOOK_SIZES.get(self.tokenizer, 256)
        if refine.preset == AUTO:
            refine.preset = "collaborative" if item else "conservative"
        _one_of(need, refine.preset, "refine.preset", (AUTO, *REFINE_PRESETS))
        need(
            refine.preset != "collaborative" or item,
            "refine.preset 'collaborative' refines from where an item-level model expects each "
            f"item; {self.model} is token-level (use 'conservative' or 'paper')",
        )
        self._resolve_preset()
        _integers(need, self, "", "rounds seed", 0)
        _integers(need, self, "", "threads", 1, optional=True)
        self.data.check(need)
        ids.check(need)
        self.network.check(need)
        sched.check(need)
        refine.check(need, item)
        self.eval.check(need)
        need(
            self.tokenizer in TOKENIZERS
            or self.tokenizer.startswith(OBJECT)
            or Path(self.tokenizer).is_file(),
            f"tokenizer must be one of {list(TOKENIZERS)} or an identifiers file, "
            f"got {self.tokenizer!r}",
        )
        tasks = sched.tasks
        assert tasks is not None  # ScheduleSettings.check filled it
        if item:
            need(
                (tasks["item2id"] == 0 or self.text_prior) and tasks["id2item"] == 0,
                f"item-level models ({self.model}) train seqrec alone, and item2id with a text "
                "prior (network.options text_prior); set schedule.tasks.id2item to 0 and "
                "schedule.tasks.item2id to 0 or give the model its text prior",
            )
            need(
                refine.evidence == "seqrec",
                f"item-level models ({self.model}) refine from seqrec evidence (where the model "
                f"expects each item), got refine.evidence={refine.evidence!r}",
            )
            need(
                self.network.item2id_input == "text",
                "network.item2id_input='embedding' needs a token-level model with item2id",
            )
        need(
            refine.text_occurrences == 0 or (self.text_prior and tasks["item2id"] > 0),
            "refine.text_occurrences needs an item-level model with a text prior "
            "(network.options text_prior) that trains it (schedule.tasks.item2id > 0)",
        )
        need(
            item or self.rounds == 0 or tasks["item2id"] > 0,
            f"rounds={self.rounds} refine identifiers from the item2id prompt, but the item2id "
            "task has no weight; give it one (schedule.tasks.item2id) or set rounds=0",
        )
        need(
            self.network.item2id_input == "text" or tasks["item2id"] > 0,
            "network.item2id_input='embedding' feeds the item2id task, which has no weight; "
            "give it one (schedule.tasks.item2id) or leave item2id_input='text'",
        )
        return self

    @property
    def item_level(self) -> bool:
        return is_item_level(self.model)

    @property
    def text_prior(self) -> bool:
        """An item-level model that maps item text to identifiers (network.options)."""
        return self.item_level and bool(self.network.options.get("text_prior"))

    def _resolve_preset(self) -> None:
        """Fill the settings left at None: from the refine preset for a run with rounds,
        and seqrec alone with the baseline's epoch cap for a run without."""
        preset = REFINE_PRESETS[self.refine.preset]
        sched, refine = self.schedule, self.refine
        if self.rounds == 0:
            if sched.tasks is None:
                sched.tasks = {"seqrec": 1.0}
            if sched.max_epochs_per_round is None:
                sched.max_epochs_per_round = (
                    ITEM_BASELINE_EPOCHS if self.item_level else BASELINE_EPOCHS
                )
        elif sched.max_epochs_per_round is None and sched.max_epochs_first_round is None:
            sched.max_epochs_per_round = preset["schedule.max_epochs_per_round"]
            sched.max_epochs_first_round = preset["schedule.max_epochs_first_round"]
        elif sched.max_epochs_per_round is None:
            sched.max_epochs_per_round = preset["schedule.max_epochs_per_round"]
        if self.eval.batch_size is None:
            self.eval.batch_size = ITEM_EVAL_BATCH if self.item_level else EVAL_BATCH
        if sched.cycles is None:  # rounds restart anyway: one cycle each
            sched.cycles = ITEM_BASELINE_CYCLES if self.item_level and self.rounds == 0 else 1
        if self.item_level:  # seqrec (and the text prior's item2id), and seqrec evidence
            if sched.tasks is None:
                sched.tasks = {
                    "seqrec": 1.0,
                    "item2id": TEXT_PRIOR_WEIGHT if self.text_prior else 0.0,
                }
            if refine.evidence is None:
                refine.evidence = "seqrec"
        if self.rounds > 0 and refine.contrast is None:
            refine.contrast = preset["refine.contrast"]
        if self.rounds > 0 and refine.levels is None:  # None in a preset: every level
            refine.levels = preset["refine.levels"]
        if refine.contrast is None:  # a baseline refines nothing
            refine.contrast = 0
        for path in ("schedule.tasks", "refine.keep_current", "refine.evidence",
                     "refine.free_only"):  # fmt: skip
            section, name = path.split(".")
            if getattr(getattr(self, section), name) is None:
                setattr(getattr(self, section), name, copy.deepcopy(preset[path]))
        # a baseline keeps no margin, so that keep_current=False alone stays valid there
        if refine.margin is None and self.rounds > 0:
            refine.margin = preset["refine.margin"]

    # -- files ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], warn: bool = True) -> TrainConfig:
        """Settings as `to_dict` writes them, or in any form `TrainConfig()` takes; `warn`
        False reads the flat names of older run directories without a warning."""
        config = cls()
        config._apply(_nest(values, warn))
        return config

    @classmethod
    def from_run(cls, path: str | Path) -> TrainConfig:
        """The settings a run directory's config.json recorded (flat names before the
        sections). Runs written before the refinement presets recorded every lever, a
        margin of None meaning no gate: they read as the "paper" preset, whose margin is
        None too."""
        values = json.loads(read_text(Path(path) / "config.json"))
        values.setdefault("refine", {})
        if isinstance(values["refine"], Mapping):
            values["refine"] = {"preset": "paper", **values["refine"]}
        return cls.from_dict(values, warn=False)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """A `.toml`, `.yaml`/`.yml` or `.json` file of settings (a `[train]` table or the
        top level; sections as tables or dotted keys)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = read_text(path)
        try:
            if path.suffix == ".toml":
                try:
                    import tomllib
                except ImportError:  # Python 3.10
                    import tomli as tomllib  # type: ignore[no-redef]

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
        """A copy with `changes` applied (in any form `TrainConfig()` takes)."""
        out = copy.deepcopy(self)
        out._apply(_nest(changes, warn=True))
        return out
