"""Settings: the refinement presets, how levers left at None resolve, the generated
reference and `siit settings`."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from siit.cli import main
from siit.config import BASELINE_EPOCHS, ITEM_BASELINE_EPOCHS, REFINE_PRESETS, TrainConfig
from siit.settings_doc import SECTIONS, markdown

REPO = Path(__file__).resolve().parents[1]


def test_the_settings_reference_is_current():
    """docs/settings.md is generated from TrainConfig; regenerate it with
    `python -m siit.settings_doc > docs/settings.md` when a setting changes."""
    assert (REPO / "docs" / "settings.md").read_text() == markdown()


def test_every_setting_has_a_section_and_a_description():
    names = [n for names in SECTIONS.values() for n in names]
    assert names == [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))


def test_siit_settings_lists_every_setting(capsys):
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        assert f"  {f.name} " in out


@pytest.mark.parametrize(
    "model, cap", [("item-mini", ITEM_BASELINE_EPOCHS), ("gpt-mini", BASELINE_EPOCHS)]
)
def test_a_baseline_trains_seqrec_alone_to_the_baseline_cap(model, cap):
    config = TrainConfig(model=model).check()
    assert config.tasks == {"seqrec": 1.0, "item2id": 0.0, "id2item": 0.0}
    assert config.max_epochs_per_round == cap
    assert config.max_epochs_first_round is None


@pytest.mark.parametrize("preset", list(REFINE_PRESETS))
def test_item_level_rounds_refine_from_seqrec_evidence_with_the_preset_levers(preset):
    config = TrainConfig(rounds=2, refine=preset).check()  # the default model is item-level
    assert config.tasks == {"seqrec": 1.0, "item2id": 0.0, "id2item": 0.0}
    assert config.refine_evidence == "seqrec"
    for name in ("keep_current", "refine_free_only", "max_epochs_per_round"):
        assert getattr(config, name) == REFINE_PRESETS[preset][name]


@pytest.mark.parametrize("preset", list(REFINE_PRESETS))
def test_rounds_take_every_unset_lever_from_the_preset(preset):
    config = TrainConfig(model="gpt-mini", rounds=2, refine=preset).check()
    for name, value in REFINE_PRESETS[preset].items():
        if name == "tasks":
            assert {k: v for k, v in config.tasks.items() if v} == {
                k: v for k, v in value.items() if v
            }
        else:
            assert getattr(config, name) == value, name


def test_the_default_preset_is_the_benchmarks_choice():
    config = TrainConfig(rounds=2).check()
    assert config.refine == "conservative"
    assert (config.keep_current, config.refine_free_only, config.refine_margin) == (
        True,
        True,
        0.5,
    )
    # the grid's budget: 40 epochs on the initial identifiers, 10 per refined round
    assert (config.max_epochs_first_round, config.max_epochs_per_round) == (40, 10)


def test_a_lever_set_by_the_user_beats_the_preset():
    config = TrainConfig(
        model="gpt-mini", rounds=1, refine="paper", refine_margin=1.0, keep_current=True
    ).check()
    assert (config.refine_margin, config.keep_current, config.refine_evidence) == (
        1.0,
        True,
        "item2id",
    )
    # a cap of the user's own replaces the preset's schedule, both caps
    config = TrainConfig(rounds=2, max_epochs_per_round=7).check()
    assert (config.max_epochs_first_round, config.max_epochs_per_round) == (None, 7)
    config = TrainConfig(rounds=2, max_epochs_first_round=5).check()
    assert (config.max_epochs_first_round, config.max_epochs_per_round) == (5, 10)


def test_resolving_twice_changes_nothing():
    once = TrainConfig(rounds=2).check()
    again = TrainConfig.from_dict(once.to_dict()).check()
    assert again == once


def test_an_unknown_preset_is_refused():
    with pytest.raises(ValueError, match=r"refine must be one of \['conservative', 'paper'\]"):
        TrainConfig(rounds=1, refine="best").check()


def test_a_run_recorded_before_presets_reads_as_the_paper_preset(tmp_path):
    """Such a config.json holds every lever; its margin None meant no gate, as "paper"."""
    old = TrainConfig(model="gpt-mini", rounds=1, refine="paper").check().to_dict()
    del old["refine"]
    old.update(keep_current=True, refine_margin=None)  # the old defaults
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = TrainConfig.from_run(tmp_path).check()
    assert config.refine == "paper"
    assert config.refine_margin is None and config.keep_current is True


def test_importing_the_settings_loads_no_torch():
    """`siit.config` is read by tools that never train (the CLI's help, config checks)."""
    code = "import sys, siit.config; print(sorted(m for m in sys.modules if m == 'torch'))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
