"""The first hour of a new user, as the README tells it, on MovieLens-100K (the copy inside
the recbole wheel that the README installs) with tiny settings: the Quick start and where
its results land, recommending by integer and string ids, the documented SIIT recipe, a
new item added to the default run, and a wrong run directory."""

import json
from pathlib import Path

import numpy as np
import pytest
import siit
from siit.cli import main

REPO = Path(__file__).resolve().parents[2]
# Seconds instead of minutes: a tiny model, one epoch a round, a sample of validation users.
TINY = {
    "model": "item-tiny",  # the default's family
    "data.max_history": 20,
    "eval.valid_users": 100,
    "schedule.patience": None,
    "progress": False,
    "device": "cpu",
    "refine.diagnostics": False,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("walk") / "runs"


@pytest.fixture(scope="module")
def quick_start(runs):
    """`siit.train()` with the defaults but the budget: MovieLens-100K, CID identifiers."""
    result = siit.train(output_dir=runs / "default", **TINY, **{"schedule.max_epochs_per_round": 1})
    return result


def test_the_readme_documents_the_cpu_install_and_the_test_command():
    readme = (REPO / "README.md").read_text()
    assert "download.pytorch.org/whl/cpu" in readme
    assert 'pip install ".[test]"' in readme


def test_quick_start_says_what_happened_and_where(quick_start):
    result = quick_start
    line = str(result)
    assert line.startswith("siit: done in") and f"run: {result.output_dir}" in line
    assert "most popular" in line and result.most_popular["ndcg@10"] > 0
    for name in ("metrics.json", "report.png", "train.log", "config.json", "best/index.json"):
        assert (result.output_dir / name).is_file(), name
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "ml-100k" or metrics["dataset"]["items"] == 1682
    assert metrics["most_popular"]["test"]["ndcg@10"] == pytest.approx(
        result.most_popular["ndcg@10"]
    )
    assert line in (result.output_dir / "train.log").read_text()


def test_integer_and_string_ids_recommend_the_same(quick_start, capsys):
    rec = siit.load(quick_start.output_dir)
    by_int, s_int = rec.recommend([[1, 50, 181]], k=10)
    by_str, s_str = rec.recommend([["1", "50", "181"]], k=10)
    assert np.array_equal(by_int, by_str) and np.array_equal(s_int, s_str)
    assert not {"1", "50", "181"} & set(by_int[0])  # serving leaves the history out
    assert main(["recommend", str(quick_start.output_dir), "1", "50", "181"]) == 0
    cli = [row.split("\t")[0] for row in capsys.readouterr().out.strip().splitlines()]
    assert cli == by_int[0].tolist()
    with pytest.raises(TypeError, match="histories"):
        rec.recommend(["1", "50", "181"])


@pytest.mark.slow
def test_the_documented_siit_recipe_runs(runs):
    """`siit.train(rounds=2)`: the collaborative preset (item-level), two refinements."""
    result = siit.train(
        rounds=2,
        output_dir=runs / "siit",
        schedule={"max_epochs_first_round": 1, "max_epochs_per_round": 1},
        **TINY,
    )
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["refine"]["preset"] == "collaborative" and config["refine"]["free_only"] is True
    assert (config["refine"]["contrast"], config["refine"]["levels"]) == (64, 1)
    assert [r.round for r in result.rounds] == [0, 1, 2]
    assert all(r.refine is not None for r in result.rounds[1:])
    assert result.identifiers.is_unique()


def test_a_new_item_joins_the_default_run(quick_start, tmp_path):
    """The default run learned no item2id task: its text mapper places the new item."""
    added = siit.add_items(
        quick_start.output_dir,
        {"new-1": {"title": "Toy Story 4 (2019)", "categories": "Animation, Children's"}},
    )
    assert added.item_ids == ["new-1"] and added.identifiers.is_unique()
    rec = siit.load(quick_start.output_dir)
    assert "new-1" in rec.item_ids and len(rec.item_ids) == 1683


def test_a_wrong_run_directory_is_a_clear_error(runs, capsys):
    with pytest.raises(ValueError, match="is not a run directory"):
        siit.load(runs / "nope")
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(runs)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{runs} is not a run directory" in err and "default" in err
