"""Settings: the refinement presets, how levers left at None resolve, the generated
reference and `siit settings`."""

import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from siit.cli import main
from siit.config import (
    BASELINE_EPOCHS,
    EVAL_BATCH,
    ITEM_BASELINE_CYCLES,
    ITEM_BASELINE_EPOCHS,
    ITEM_EVAL_BATCH,
    REFINE_PRESETS,
    RENAMED,
    SECTIONS,
    TrainConfig,
)
from siit.settings_doc import markdown, rows

REPO = Path(__file__).resolve().parents[2]


def test_the_settings_reference_is_current():
    """docs/settings.md is generated from TrainConfig; regenerate it with
    `python -m siit.settings_doc > docs/settings.md` when a setting changes."""
    assert (REPO / "docs" / "settings.md").read_text() == markdown()


def test_every_setting_has_a_section_and_a_description():
    top = [f.name for f in dataclasses.fields(TrainConfig)]
    assert len(top) <= 15 and set(SECTIONS) <= set(top)
    listed = [name for _, name, _, _ in rows()]
    assert listed == [n for n in top if n not in SECTIONS] + [
        f"{s}.{f.name}" for s, kind in SECTIONS.items() for f in dataclasses.fields(kind)
    ]
    assert all(description for _, _, _, description in rows())


def test_siit_settings_lists_every_setting(capsys):
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    for _, name, _, _ in rows():
        assert f"  {name} " in out


def _at(config: TrainConfig, path: str):
    section, _, name = path.partition(".")
    return getattr(getattr(config, section), name) if name else getattr(config, section)


@pytest.mark.parametrize(
    "model, cap, cycles",
    [("item-mini", ITEM_BASELINE_EPOCHS, ITEM_BASELINE_CYCLES), ("gpt-mini", BASELINE_EPOCHS, 1)],
)
def test_a_baseline_trains_seqrec_alone_to_the_baseline_cap(model, cap, cycles):
    config = TrainConfig(model=model).check()
    assert config.schedule.tasks == {"seqrec": 1.0, "item2id": 0.0, "id2item": 0.0}
    assert config.schedule.max_epochs_per_round == cap
    assert config.schedule.max_epochs_first_round is None
    assert config.schedule.cycles == cycles
    assert TrainConfig(model=model, schedule={"cycles": 3}).check().schedule.cycles == 3


def test_evaluation_batches_follow_the_model_family_unless_told():
    assert TrainConfig().check().eval.batch_size == ITEM_EVAL_BATCH  # exact scoring
    assert TrainConfig(model="gpt-mini").check().eval.batch_size == EVAL_BATCH  # beam search
    assert TrainConfig(eval={"batch_size": 32}).check().eval.batch_size == 32
    with pytest.raises(ValueError, match="eval.batch_size must be None or an integer >= 1"):
        TrainConfig(eval={"batch_size": 0}).check()


def test_refinement_rounds_train_one_cycle_each_unless_told():
    assert TrainConfig(rounds=2).check().schedule.cycles == 1  # the default model, item-level
    assert TrainConfig(rounds=2, schedule={"cycles": 2}).check().schedule.cycles == 2
    with pytest.raises(ValueError, match="schedule.cycles must be an integer >= 1"):
        TrainConfig(schedule={"cycles": 0}).check()


@pytest.mark.parametrize("preset", list(REFINE_PRESETS))
def test_item_level_rounds_refine_from_seqrec_evidence_with_the_preset_levers(preset):
    config = TrainConfig(rounds=2, refine=preset).check()  # the default model is item-level
    assert config.schedule.tasks == {"seqrec": 1.0, "item2id": 0.0, "id2item": 0.0}
    assert config.refine.evidence == "seqrec"
    for path in ("refine.keep_current", "refine.free_only", "schedule.max_epochs_per_round"):
        assert _at(config, path) == REFINE_PRESETS[preset][path]


@pytest.mark.parametrize(
    "model, preset",
    [("gpt-mini", "conservative"), ("gpt-mini", "paper"), ("item-mini", "collaborative")],
)
def test_rounds_take_every_unset_lever_from_the_preset(model, preset):
    config = TrainConfig(model=model, rounds=2, refine=preset).check()
    for path, value in REFINE_PRESETS[preset].items():
        if path == "schedule.tasks":
            assert {k: v for k, v in config.schedule.tasks.items() if v} == {
                k: v for k, v in value.items() if v
            }
        else:
            assert _at(config, path) == value, path


def test_the_default_preset_is_the_benchmarks_choice_per_model_family():
    config = TrainConfig(rounds=2).check()  # item-level: the item-level grid's arm
    assert config.refine.preset == "collaborative"
    refine = config.refine
    assert (refine.keep_current, refine.free_only, refine.margin) == (True, True, 0.5)
    assert (refine.contrast, refine.levels, refine.evidence) == (64, 1, "seqrec")
    # round 0 is the item-level baseline's first cycle; each refined round 40 epochs
    assert (config.schedule.max_epochs_first_round, config.schedule.max_epochs_per_round) == (
        150,
        40,
    )
    # token-level: the token-level grid's budget, 40 epochs first and 10 per refined round
    config = TrainConfig(model="gpt-mini", rounds=2).check()
    assert config.refine.preset == "conservative"
    assert (config.refine.contrast, config.refine.levels) == (0, None)
    assert (config.schedule.max_epochs_first_round, config.schedule.max_epochs_per_round) == (
        40,
        10,
    )
    # a baseline contrasts nothing; the collaborative preset is item-level's alone
    assert TrainConfig().check().refine.contrast == 0
    with pytest.raises(ValueError, match="'collaborative' refines from where an item-level"):
        TrainConfig(model="gpt-mini", rounds=1, refine="collaborative").check()


def test_a_lever_set_by_the_user_beats_the_preset():
    config = TrainConfig(
        model="gpt-mini", rounds=1, refine={"preset": "paper", "margin": 1.0, "keep_current": True}
    ).check()
    assert (config.refine.margin, config.refine.keep_current, config.refine.evidence) == (
        1.0,
        True,
        "item2id",
    )
    # a cap of the user's own replaces the preset's schedule, both caps
    config = TrainConfig(model="gpt-mini", rounds=2, schedule={"max_epochs_per_round": 7}).check()
    assert (config.schedule.max_epochs_first_round, config.schedule.max_epochs_per_round) == (
        None,
        7,
    )
    config = TrainConfig(model="gpt-mini", rounds=2, schedule={"max_epochs_first_round": 5}).check()
    assert (config.schedule.max_epochs_first_round, config.schedule.max_epochs_per_round) == (5, 10)


def test_resolving_twice_changes_nothing():
    once = TrainConfig(rounds=2).check()
    again = TrainConfig.from_dict(once.to_dict()).check()
    assert again == once


def test_an_unknown_preset_is_refused():
    with pytest.raises(
        ValueError,
        match=r"refine.preset must be one of \['auto', 'conservative', 'paper', 'collaborative'\]",
    ):
        TrainConfig(rounds=1, refine="best").check()


def test_a_run_recorded_before_presets_reads_as_the_paper_preset(tmp_path):
    """Such a config.json holds every lever; its margin None meant no gate, as "paper"."""
    old = _flat(TrainConfig(model="gpt-mini", rounds=1, refine="paper").check())
    del old["refine"]
    old.update(keep_current=True, refine_margin=None)  # the old defaults
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = TrainConfig.from_run(tmp_path).check()
    assert config.refine.preset == "paper"
    assert config.refine.margin is None and config.refine.keep_current is True


@pytest.mark.slow
def test_importing_the_settings_loads_no_torch():
    """`siit.config` is read by tools that never train (the CLI's help, config checks)."""
    code = "import sys, siit.config; print(sorted(m for m in sys.modules if m == 'torch'))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def _flat(config: TrainConfig) -> dict:
    """The config.json of a run written before the sections: every setting at the top, by
    its old name."""
    new_to_old = {new: old for old, new in RENAMED.items()}
    out = {}
    for key, value in config.to_dict().items():
        if key in SECTIONS:
            for name, inner in value.items():
                if f"{key}.{name}" in new_to_old:  # settings added since have no flat name
                    out[new_to_old[f"{key}.{name}"]] = inner
        else:
            out[key] = value
    out["refine"] = config.refine.preset
    return out


def test_a_run_recorded_with_flat_names_reads_the_same_without_warnings(tmp_path):
    config = TrainConfig(
        rounds=2, refine={"margin": 1.0, "levels": 1}, schedule={"patience": 3}
    ).check()
    (tmp_path / "config.json").write_text(json.dumps(_flat(config)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainConfig.from_run(tmp_path).check() == config


@pytest.mark.parametrize("old, new", sorted(RENAMED.items()))
def test_an_old_flat_name_still_works_and_names_its_successor(old, new):
    value = {"tasks": {"seqrec": 1.0}, "dtype": "float64", "eval_mode": "beam"}.get(old, 7)
    if old in ("keep_current", "diagnostics", "exclude_history", "refine_free_only"):
        value = True
    if old in ("tokenizer_options", "model_options"):
        value = {"x": 1}
    if old in ("refine_evidence",):
        value = "seqrec"
    if old in ("item2id_input", "lr_schedule"):
        value = {"item2id_input": "text", "lr_schedule": "constant"}[old]
    with pytest.warns(FutureWarning, match=rf"'{old}' is now '{new}'") as caught:
        config = TrainConfig(**{old: value})
    assert caught[0].filename == __file__  # the warning names the caller's line
    assert _at(config, new) == value
    with pytest.warns(FutureWarning):
        assert TrainConfig().replace(**{old: value}) == config


def test_sections_take_dicts_dotted_names_and_a_preset_name():
    by_dict = TrainConfig(rounds=1, refine={"preset": "paper", "margin": 2.0})
    by_dots = TrainConfig(rounds=1, **{"refine": "paper", "refine.margin": 2.0})
    assert by_dict == by_dots and by_dict.refine.preset == "paper"
    # a dict merges into the section; a preset name starts a fresh one
    merged = by_dict.replace(refine={"beams": 5})
    assert (merged.refine.preset, merged.refine.margin, merged.refine.beams) == ("paper", 2.0, 5)
    fresh = TrainConfig(rounds=1).check().replace(refine="paper").check()
    assert fresh.refine == TrainConfig(rounds=1, refine="paper").check().refine
    # replace copies: checking the copy leaves the original's sections alone
    base = TrainConfig(rounds=1)
    base.replace(refine={"beams": 3}).check()
    assert base.refine.keep_current is None and base.refine.beams == 20


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"refine": {"marginn": 1}}, r"unknown setting\(s\) \['refine.marginn'\]; the refine"),
        ({"refine.margin.x": 1}, "unknown setting 'refine.margin.x'"),
        ({"schedule": 3}, "schedule must be a table of settings"),
        ({"roundz": 1}, r"unknown setting\(s\) \['roundz'\]"),
    ],
)
def test_a_misspelt_setting_is_named(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_a_bad_value_is_named_by_its_dotted_path():
    with pytest.raises(ValueError, match=r"schedule.patience must be None or an integer >= 1"):
        TrainConfig(schedule={"patience": 0}).check()
    with pytest.raises(ValueError, match=r"refine.levels needs refine.keep_current"):
        TrainConfig(rounds=1, refine={"preset": "paper", "levels": 1}).check()
