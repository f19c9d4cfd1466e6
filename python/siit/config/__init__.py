"""`TrainConfig`: every setting of a run in sections (data, identifiers, network, schedule,
refine, eval) under a dozen everyday fields, checked before any work starts, and read from
TOML, YAML or JSON files (as data: no code is evaluated)."""

from .names import RENAMED, parse_override
from .sections import (
    BASELINE_EPOCHS,
    EVAL_BATCH,
    ITEM_BASELINE_CYCLES,
    ITEM_BASELINE_EPOCHS,
    ITEM_EVAL_BATCH,
    SECTIONS,
    TASKS,
    DataSettings,
    EvalSettings,
    IdentifierSettings,
    NetworkSettings,
    RefineSettings,
    ScheduleSettings,
    check_task_weights,
)
from .train_config import (
    DEFAULT_CODEBOOK_SIZES,
    ITEM_LEVEL,
    OBJECT,
    REFINE_PRESETS,
    TOKENIZERS,
    TrainConfig,
    is_item_level,
)

__all__ = [
    "BASELINE_EPOCHS",
    "DEFAULT_CODEBOOK_SIZES",
    "EVAL_BATCH",
    "ITEM_BASELINE_CYCLES",
    "ITEM_BASELINE_EPOCHS",
    "ITEM_EVAL_BATCH",
    "ITEM_LEVEL",
    "OBJECT",
    "REFINE_PRESETS",
    "RENAMED",
    "SECTIONS",
    "TASKS",
    "TOKENIZERS",
    "DataSettings",
    "EvalSettings",
    "IdentifierSettings",
    "NetworkSettings",
    "RefineSettings",
    "ScheduleSettings",
    "TrainConfig",
    "check_task_weights",
    "is_item_level",
    "parse_override",
]
