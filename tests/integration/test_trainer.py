"""`siit.train` end to end on tiny models: run directory, rounds, bad configurations,
Ctrl-C and kill-and-resume, two processes."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import siit
import torch
from siit.cli import main
from siit.config import TrainConfig, parse_override
from siit.metrics import ranking_metrics
from siit.models import build_model
from siit.tasks import TaskBuilder
from siit.training import Trainer
from tiny import EXACT_RUN, TINY_RUN, random_identifiers, tiny_dataset, tiny_model

REPO = Path(__file__).resolve().parents[2]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = siit.train(tiny_dataset(), output_dir=out, **TINY_RUN)
    return result, out


def test_run_directory_holds_config_metrics_identifiers_checkpoints_report(finished):
    result, out = finished
    for name in (
        "config.json",
        "metrics.json",
        "report.png",
        "train.log",
        "index/round-0.index.json",
        "index/round-1.index.json",
        "checkpoint/state.json",
        "checkpoint/trainer.pt",
        "checkpoint/identifiers.npz",
        "checkpoint/model/model.safetensors",
        "best/index.json",
        "best/model/model.safetensors",
    ):
        assert (out / name).is_file(), name
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = _metrics(out)
    assert [r["round"] for r in metrics["rounds"]] == [0, 1]
    assert metrics["rounds"][0]["refine"] is None
    refine = metrics["rounds"][1]["refine"]
    assert refine["fallback"] == 0 and refine["kept"] + refine["changed"] == 40
    assert metrics["best_round"] == result.best_round
    best = metrics["rounds"][result.best_round]["valid"]["ndcg@10"]
    assert best == max(r["valid"]["ndcg@10"] for r in metrics["rounds"])
    test = metrics["test"]
    assert test == result.test
    assert test["invalid_share"] == 0 and test["duplicate_share"] == 0
    assert 0 <= test["ndcg@10"] <= test["recall@10"] <= test["recall@20"] <= 1
    for r in (0, 1):
        ids = siit.Identifiers.load(out / "index" / f"round-{r}.index.json", [8, 8, 8])
        assert ids.is_unique()
    assert result.identifiers.is_unique()
    config = json.loads((out / "config.json").read_text())
    assert config["rounds"] == 1 and config["model"] == "t5-tiny"


def test_model_learns_the_synthetic_structure(finished):
    """Users stay within latent clusters: a trained model beats chance (20 of 40 items in
    the top 20 is 0.5 recall@20 by chance; ndcg@10 of chance is about 0.11)."""
    result, _ = finished
    assert result.rounds[result.best_round].valid["recall@20"] > 0.5


def test_evaluate_and_recommend_a_finished_run(finished):
    result, out = finished
    again = siit.evaluate(out, tiny_dataset())
    assert again == pytest.approx(result.test)
    exact = siit.evaluate(out, tiny_dataset(), mode="exact")
    assert exact["recall@20"] == pytest.approx(result.test["recall@20"])
    recs = siit.recommend(["1", "2", "3"], k=5, run=out)
    assert len(recs) == 5 and len({item for item, _ in recs}) == 5
    assert all(item in result.identifiers.item_ids for item, _ in recs)
    assert [s for _, s in recs] == sorted((s for _, s in recs), reverse=True)
    with pytest.raises(ValueError, match=r"histories\[0\]\[1\] = 'no such item' is not a known"):
        siit.recommend(["1", "no such item"], run=out)


def test_a_loaded_run_recommends_for_many_users_at_once(finished):
    """`siit.load` gives a Recommender: one batched call answers every user as the
    single-history `siit.recommend` does; serving leaves the history's items out unless
    asked to keep them."""
    result, out = finished
    rec = siit.load(out)
    assert rec.item_ids == result.identifiers.item_ids
    assert np.array_equal(rec.identifiers.codes, result.identifiers.codes)
    assert repr(rec).startswith(f"Recommender({len(rec.item_ids)} items")
    histories = [["1", "2", "3"], ["7"], [4, 5, 6, 7, 8], ["3", "3", "9"]]
    items, scores = rec.recommend(histories, k=5, batch_size=3, exclude_history=False)
    assert items.shape == scores.shape == (4, 5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    for row, history in enumerate(histories):
        single = siit.recommend(history, k=5, run=out, exclude_history=False)
        assert [i for i, _ in single] == items[row].tolist()
        assert [s for _, s in single] == pytest.approx(scores[row].tolist(), abs=1e-5)
    fresh, _ = rec.recommend(histories, k=5)
    for row, history in enumerate(histories):
        assert not {str(h) for h in history} & set(fresh[row].tolist())
    with pytest.raises(ValueError, match=r"histories\[1\] is empty"):
        rec.recommend([["1"], []])
    with pytest.raises(ValueError, match=r"histories\[0\]\[0\] = '99' is not a known item id"):
        rec.recommend([[99]])
    with pytest.raises(ValueError, match=r"histories\[0\]\[0\] = 99 is not an item index"):
        rec.recommend([[99]], indices=True)


def test_new_items_get_identifiers_without_retraining(finished, tmp_path, capsys):
    """add_items: the run's item2id beams, placed uniquely around every existing
    identifier; the catalogue grows for serving while evaluation keeps the trained index."""
    result, trained = finished
    out = tmp_path / "run"  # a copy: the other tests read the run as trained
    shutil.copytree(trained, out)
    before = siit.evaluate(out, tiny_dataset())
    new = {
        f"new-{i}": {"title": f"red item {i} of group 1", "categories": "group 1"} for i in range(5)
    }
    added = siit.add_items(out, new)
    assert added.item_ids == list(new)
    grown = added.identifiers
    assert grown.n_items == result.identifiers.n_items + 5 and grown.is_unique()
    assert np.array_equal(grown.codes[:-5], result.identifiers.codes)
    assert np.array_equal(grown.codes[-5:], added.codes)
    # a beam the model proposes may be an existing item's identifier (reserved): then the
    # nearest free identifier to the best beam (rank -1)
    assert ((added.rank >= -1) & (added.rank < 20)).all()
    rec = siit.load(out)
    assert rec.item_ids[-5:] == list(new)
    assert (rec.tables.walk(torch.as_tensor(added.codes)) >= 0).all()
    assert siit.evaluate(out, tiny_dataset()) == pytest.approx(before)
    with pytest.raises(ValueError, match="'new-0' is already in the run's catalogue"):
        siit.add_items(out, {"new-0": {"title": "again"}})
    with pytest.raises(ValueError, match="'blank' has no text"):
        siit.add_items(out, {"blank": {"title": ""}})
    (tmp_path / "more.json").write_text(json.dumps({"more-1": {"title": "blue item"}}))
    assert main(["add-items", str(out), str(tmp_path / "more.json")]) == 0
    assert capsys.readouterr().out.startswith("added 1 items: ")
    assert siit.load(out).item_ids[-1] == "more-1"


def test_add_items_without_item2id_fits_a_text_mapper_once(tmp_path):
    """A seqrec-only run maps new items' text with a mapper fitted on its catalogue at the
    first call and kept in the run; a run on a Dataset object needs that dataset again."""
    settings = {**TINY_RUN, "rounds": 0}  # seqrec alone
    data = tiny_dataset()
    siit.train(data, output_dir=tmp_path, **settings)
    with pytest.raises(ValueError, match="trained on a Dataset object"):
        siit.add_items(tmp_path, {"x": {"title": "red item"}})
    added = siit.add_items(tmp_path, {"x": {"title": "red item"}}, dataset=data)
    mapper = tmp_path / "best" / "text_mapper"
    assert mapper.is_dir() and added.identifiers.is_unique()
    assert added.identifiers.n_items == data.n_items + 1
    stamp = {p.name: p.stat().st_mtime_ns for p in mapper.iterdir()}
    again = siit.add_items(tmp_path, {"y": {"title": "blue item"}})  # the kept mapper
    assert {p.name: p.stat().st_mtime_ns for p in mapper.iterdir()} == stamp
    assert again.identifiers.n_items == data.n_items + 2 and again.identifiers.is_unique()
    with pytest.raises(ValueError, match="'z' has no text"):
        siit.add_items(tmp_path, {"z": {"title": " "}})


def split_keys() -> set[str]:
    return {f"{m}@10_{part}" for m in ("recall", "ndcg") for part in ("moved", "kept")}


def test_evaluate_the_last_checkpoint(finished):
    """`at="last"` evaluates the final round's model and identifiers: its validation
    metrics are the ones the run recorded for that round."""
    result, out = finished
    last = siit.evaluate(out, tiny_dataset(), split="valid", at="last")
    recorded = result.rounds[-1].valid  # also splits refined rounds by moved targets
    assert last == pytest.approx({k: recorded[k] for k in last})
    assert set(recorded) - set(last) == {"moved_share", *split_keys()}
    if result.best_round == len(result.rounds) - 1:
        assert siit.evaluate(out, tiny_dataset(), at="last") == pytest.approx(result.test)
    with pytest.raises(ValueError, match="at must be"):
        siit.evaluate(out, tiny_dataset(), at="final")


def test_baseline_is_rounds_zero(tmp_path):
    result = siit.train(tiny_dataset(), output_dir=tmp_path, **{**TINY_RUN, "rounds": 0})
    assert [r.round for r in result.rounds] == [0] and result.best_round == 0
    assert not (tmp_path / "index" / "round-1.index.json").exists()
    initial = siit.Identifiers.load(tmp_path / "index" / "round-0.index.json", [8, 8, 8])
    assert np.array_equal(initial.codes, result.identifiers.codes)


def test_decoder_only_model_trains(tmp_path):
    result = siit.train(tiny_dataset(), output_dir=tmp_path, **{**TINY_RUN, "model": "llama-tiny"})
    assert result.model.kind == "causal"
    assert result.test["invalid_share"] == 0


def test_all_position_loss_is_the_mean_of_prefix_losses():
    """One pass over a window scores every item after the first exactly as the prefix
    samples would, one at a time."""
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset)
    model = tiny_model("gpt-tiny", identifiers, dataset)
    tasks = TaskBuilder(model, dataset, identifiers)
    windows = dataset.train_windows(6).items[:8]
    with model.evaluating(), torch.no_grad():
        prompt, target = tasks.seqrec_windows(windows)
        losses = model.token_losses(model.model, prompt, target)
        all_positions = float(losses.sum() / (target >= 0).sum())
        prefix_losses = []
        for window in windows:
            items = window[window >= 0]
            for j in range(1, len(items)):
                p, t = tasks.seqrec(items[None, :j], items[j : j + 1])
                prefix_losses.append(float(model.token_losses(model.model, p, t).mean()))
    assert len(prefix_losses) == int((windows >= 0).sum()) - len(windows)
    assert all_positions == pytest.approx(np.mean(prefix_losses), rel=1e-5)


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path, monkeypatch):
    """Scripted validation scores: the second evaluation is the best, two more without
    improvement stop the round (patience 2), and the round ends with the weights it had
    after its second epoch."""
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9, 0.9])
    snapshots = []

    def scripted(self, samples, desc):
        snapshots.append({k: v.clone() for k, v in self.rec.model.state_dict().items()})
        return {**ranking_metrics(np.array([-1])), "ndcg@10": next(scores)}

    monkeypatch.setattr(Trainer, "evaluate", scripted)
    settings = {
        **TINY_RUN,
        "rounds": 0,
        "schedule.max_epochs_per_round": 10,
        "schedule.patience": 2,
    }
    result = siit.train(tiny_dataset(), output_dir=tmp_path, **settings)
    round_ = result.rounds[0]
    assert (round_.epochs, round_.best_epoch, len(round_.curve)) == (4, 2, 4)
    assert [c["ndcg@10"] for c in round_.curve] == [0.1, 0.3, 0.2, 0.25]
    assert round_.valid["ndcg@10"] == 0.3
    kept = result.model.model.state_dict()
    assert all(torch.equal(kept[k], snapshots[1][k]) for k in snapshots[1])
    assert not all(torch.equal(kept[k], snapshots[3][k]) for k in snapshots[3])


def test_a_second_cycle_restarts_from_the_best_weights(tmp_path, monkeypatch):
    """cycles=2: after early stopping the round restarts from its best weights (epoch 2)
    with a fresh optimizer and trains until `patience` validations of the new cycle fail
    to beat the round's best; the best of both cycles is kept."""
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.2, 0.35, 0.3, 0.1, 0.9])
    snapshots, starts = [], []
    original = Trainer._next_cycle

    def scripted(self, samples, desc):
        snapshots.append({k: v.clone() for k, v in self.rec.model.state_dict().items()})
        return {**ranking_metrics(np.array([-1])), "ndcg@10": next(scores)}

    def next_cycle(self):
        original(self)
        starts.append(
            (
                {k: v.clone() for k, v in self.rec.model.state_dict().items()},
                len(self.optimizer.state),
            )
        )

    monkeypatch.setattr(Trainer, "evaluate", scripted)
    monkeypatch.setattr(Trainer, "_next_cycle", next_cycle)
    settings = {
        **TINY_RUN,
        "rounds": 0,
        "schedule.max_epochs_per_round": 10,
        "schedule.patience": 2,
    }
    result = siit.train(tiny_dataset(), output_dir=tmp_path, schedule={"cycles": 2}, **settings)
    round_ = result.rounds[0]
    assert (round_.epochs, round_.best_epoch, len(round_.curve)) == (8, 6, 8)
    assert round_.valid["ndcg@10"] == 0.35
    ((weights, optimizer_entries),) = starts
    assert optimizer_entries == 0
    assert all(torch.equal(weights[k], snapshots[1][k]) for k in weights)
    kept = result.model.model.state_dict()
    assert all(torch.equal(kept[k], snapshots[5][k]) for k in snapshots[5])


def _to_the_cap(rounds: int, epochs: int) -> dict:
    """Tiny runs that train every round to its epoch cap (no early stopping)."""
    return {
        **TINY_RUN,
        "rounds": rounds,
        "schedule.max_epochs_per_round": epochs,
        "schedule.patience": None,
    }


def test_a_round_past_its_time_limit_validates_and_stops(tmp_path):
    """A limit shorter than one epoch: each round trains one epoch, validates it, and ends."""
    settings = _to_the_cap(rounds=1, epochs=10)
    result = siit.train(
        tiny_dataset(), output_dir=tmp_path, schedule={"max_minutes_per_round": 1e-6}, **settings
    )
    assert [(r.epochs, len(r.curve)) for r in result.rounds] == [(1, 1), (1, 1)]


def test_the_first_round_can_have_its_own_epoch_cap(tmp_path):
    """max_epochs_first_round: round 0 trains to its own cap, refined rounds to theirs."""
    settings = _to_the_cap(rounds=2, epochs=1)
    result = siit.train(
        tiny_dataset(), output_dir=tmp_path, schedule={"max_epochs_first_round": 3}, **settings
    )
    assert [r.epochs for r in result.rounds] == [3, 1, 1]


def test_redirected_output_and_the_log_get_lines_not_bars(tmp_path, capfd):
    """Progress bars are for terminals: with standard error captured (not a terminal) no
    carriage-return bar reaches it, and train.log has one line per epoch and validation."""
    siit.train(tiny_dataset(), output_dir=tmp_path, **{**TINY_RUN, "rounds": 0, "progress": True})
    assert "\r" not in capfd.readouterr().err
    log = (tmp_path / "train.log").read_text()
    assert "\r" not in log
    for epoch in (1, 2):  # numbered from 1 in every line, with the round's cap
        assert f"round 0 epoch {epoch}/2: loss seqrec" in log
        assert f"round 0 epoch {epoch}/2 validation: recall@1" in log
    assert "round 0: best validation at epoch 2/2" in log
    assert "siit: done in" in log
    metrics = _metrics(tmp_path)
    assert [c["epoch"] for c in metrics["rounds"][0]["curve"]] == [1, 2]
    assert metrics["rounds"][0]["max_epochs"] == 2


# -- bad configuration fails at start ------------------------------------------------------


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"model": "no/such/model"}, "not a preset"),
        ({"eval.beams": 10}, r"beams \(10\) must be >= the largest k"),
        ({"identifiers.levels": 9, "identifiers.codebook_size": 256}, "72 bits"),
        ({"tokenizer": "nonsense"}, "tokenizer must be one of"),
        ({"schedule.tasks": {"seqrec": 1, "title2id": 1}}, "unknown task"),
        ({"epochs": 3}, "unknown setting"),
        ({"schedule.lr_schedule": "linear"}, "lr_schedule"),
        ({"rounds": -1}, "rounds must be"),
        ({"schedule.max_epochs_first_round": 0}, "max_epochs_first_round must be None or"),
        ({"schedule.tasks": {"seqrec": 1}}, "item2id task has no weight"),
        ({"network.item2id_input": "vectors"}, "item2id_input must be"),
        ({"network.item2id_input": "embedding", "rounds": 0}, "feeds the item2id task"),
    ],
)
def test_bad_configuration_fails_before_work(tmp_path, settings, message):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        siit.train(tiny_dataset(), output_dir=tmp_path / "run", **{**TINY_RUN, **settings})
    assert not (tmp_path / "run" / "checkpoint").exists()
    assert time.perf_counter() - start < 30  # sanity: nothing was trained


def test_dataset_without_text_with_alignment_tasks_fails(tmp_path):
    base = tiny_dataset()
    bare = siit.Dataset([base.sequence(u) for u in range(base.n_users)], [{}] * base.n_items)
    with pytest.raises(ValueError, match="item2id task is on but dataset"):
        siit.train(bare, output_dir=tmp_path, **TINY_RUN)
    seqrec_only = {**TINY_RUN, "schedule.tasks": {"seqrec": 1.0}}
    assert (
        siit.train(bare, output_dir=tmp_path / "ok", **{**seqrec_only, "rounds": 0}).best_round == 0
    )


def test_interactions_only_dataset_trains_seqrec_and_refuses_alignment(tmp_path):
    """A folder without item text: CID identifiers and seqrec train; asking for
    refinement (which decodes from item text) fails at start, naming the missing file."""
    base = tiny_dataset()
    folder = tmp_path / "bare"
    folder.mkdir()
    inter = {str(u): [int(i) for i in base.sequence(u)] for u in range(base.n_users)}
    (folder / "bare.inter.json").write_text(json.dumps(inter))
    settings = {
        **TINY_RUN,
        "dataset": str(folder),
        "tokenizer": "cid",
        "identifiers.codebook_size": 4,
    }
    with pytest.raises(ValueError, match=r"item2id task is on .*bare.item.json: file not found"):
        siit.train(output_dir=tmp_path / "siit", **settings)
    result = siit.train(output_dir=tmp_path / "run", **{**settings, "rounds": 0})
    assert result.best_round == 0 and result.test["invalid_share"] == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["schedule"]["tasks"] == {"seqrec": 1.0, "item2id": 0.0, "id2item": 0.0}


def test_identifiers_that_do_not_fit_the_model_fail(tmp_path):
    dataset = tiny_dataset()
    model = build_model("t5-tiny", [4, 4, 4], "abc", siit.item_texts(dataset))
    with pytest.raises(ValueError, match="do not fit the model's identifier tokens"):
        siit.train(
            dataset,
            model=model,
            output_dir=tmp_path,
            **{k: v for k, v in TINY_RUN.items() if k != "model"},
        )


def test_prompt_longer_than_the_model_fails(tmp_path):
    with pytest.raises(ValueError, match="positions"):
        siit.train(
            tiny_dataset(),
            output_dir=tmp_path,
            **{
                **TINY_RUN,
                "model": "llama-tiny",
                "network.options": {"max_position_embeddings": 32},
            },
        )


# -- config files and the command line -----------------------------------------------------


def test_config_files_and_overrides(tmp_path):
    (tmp_path / "a.toml").write_text(
        '[train]\nrounds = 2\nmodel = "t5-tiny"\nrefine.margin = 1.5\n'
        "[train.schedule.tasks]\nseqrec = 1.0\nitem2id = 2\n"
    )
    (tmp_path / "a.yaml").write_text(
        "rounds: 2\nmodel: t5-tiny\nrefine: {margin: 1.5}\n"
        "schedule: {tasks: {seqrec: 1.0, item2id: 2}}\n"
    )
    (tmp_path / "a.json").write_text(
        '{"rounds": 2, "model": "t5-tiny", "refine.margin": 1.5,'
        ' "schedule.tasks": {"seqrec": 1.0, "item2id": 2}}'
    )
    for name in ("a.toml", "a.yaml", "a.json"):
        config = TrainConfig.from_file(tmp_path / name).check()
        assert config.rounds == 2 and config.model == "t5-tiny"
        assert config.schedule.tasks == {"seqrec": 1.0, "item2id": 2.0, "id2item": 0.0}
        assert config.refine.margin == 1.5 and config.refine.preset == "conservative"
    (tmp_path / "bad.toml").write_text("roundz = 2\n")
    with pytest.raises(ValueError, match=r"bad.toml: unknown setting\(s\) \['roundz'\]"):
        TrainConfig.from_file(tmp_path / "bad.toml")
    (tmp_path / "broken.yaml").write_text("rounds: [\n")
    with pytest.raises(ValueError, match="broken.yaml"):
        TrainConfig.from_file(tmp_path / "broken.yaml")
    assert parse_override('tasks={"seqrec": 1}') == ("tasks", {"seqrec": 1})
    assert parse_override("model=t5-tiny") == ("model", "t5-tiny")
    assert parse_override("valid-users=null") == ("valid_users", None)
    assert parse_override("refine.margin=0.5") == ("refine.margin", 0.5)


def _toml(path: Path, **settings) -> Path:
    lines = []
    for key, value in settings.items():
        if value is None:  # TOML has no null: the setting keeps its default
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_train_evaluate_recommend(tmp_path, capsys):
    config = _toml(tmp_path / "run.toml", **{**TINY_RUN, "dataset": "synthetic", "rounds": 0})
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                f"output_dir={out}",
                "schedule.max_epochs_per_round=1",
            ]
        )
        == 0
    )
    assert "siit: done in" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["schedule"]["max_epochs_per_round"] == 1
    assert main(["evaluate", str(out), "--split", "valid", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["recall@10"] == pytest.approx(_metrics(out)["rounds"][0]["valid"]["recall@10"])
    assert main(["evaluate", str(out), "--at", "last", "--json"]) == 0  # a baseline's last: best
    assert json.loads(capsys.readouterr().out) == pytest.approx(_metrics(out)["test"])
    assert main(["evaluate", str(out)]) == 0  # one line for a person
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and f"test: NDCG@10 {_metrics(out)['test']['ndcg@10']:.4f}" in line
    assert main(["recommend", str(out), "1", "2", "-k", "3"]) == 0
    by_id = capsys.readouterr().out.strip().splitlines()
    assert len(by_id) == 3 and not {"1", "2"} & {row.split("\t")[0] for row in by_id}
    assert main(["recommend", str(out), "1", "2", "-k", "3", "--indices"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", str(config), "eval.beams=5"])
    assert exit_.value.code == 2


# -- faults ----------------------------------------------------------------------------------

# float64 and one refinement: the two-process run sums gradients in another order, and Adam
# amplifies that rounding (float32: about 1e-4 relative after 300 steps) until a near-tie in
# some user's beams flips.
FAULT_RUN = {
    **EXACT_RUN,
    "schedule.max_epochs_per_round": 3,
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run the fault tests compare against."""
    out = tmp_path_factory.mktemp("reference")
    siit.train(output_dir=out, **FAULT_RUN)
    return out


def _without_time(refine: dict | None) -> dict | None:
    return None if refine is None else {k: v for k, v in refine.items() if k != "seconds"}


def _same_run(a: Path, b: Path) -> None:
    ma, mb = _metrics(a), _metrics(b)
    assert ma["best_round"] == mb["best_round"]
    for ra, rb in zip(ma["rounds"], mb["rounds"], strict=True):
        assert ra["valid"] == pytest.approx(rb["valid"], abs=1e-9)
        assert _without_time(ra["refine"]) == _without_time(rb["refine"])
    assert ma["test"] == pytest.approx(mb["test"], abs=1e-9)
    for r in range(len(ma["rounds"])):
        name = f"index/round-{r}.index.json"
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text())


def test_ctrl_c_writes_a_checkpoint_and_resume_finishes_the_same(tmp_path, monkeypatch, reference):
    original = Trainer.train_step

    def interrupted(self, task, rows):
        if self.state["round"] == 1 and self.state["epoch"] == 1 and self.state["step"] == 5:
            raise KeyboardInterrupt  # after the refinement, mid-epoch
        return original(self, task, rows)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        siit.train(output_dir=tmp_path, **FAULT_RUN)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert (state["round"], state["epoch"], state["step"]) == (1, 1, 5)
    monkeypatch.setattr(Trainer, "train_step", original)
    siit.train(resume=tmp_path, progress=False)
    _same_run(tmp_path, reference)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    """Against an uninterrupted run in a subprocess too: pytest's process may pick other
    kernels than a fresh one, which differ in the last bits."""
    config = _toml(tmp_path / "run.toml", **{**FAULT_RUN, "output_dir": str(tmp_path / "run")})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "siit", "train", "--config", str(config), "threads=1"]
    reference = tmp_path / "reference"
    subprocess.run(
        [*cmd, f"output_dir={reference}"], env=env, check=True, capture_output=True, timeout=600
    )
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = tmp_path / "run" / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (
        not (tmp_path / "run" / "metrics.json").exists()
        or _metrics(tmp_path / "run")["test"] is None
    )
    done = subprocess.run(
        [sys.executable, "-m", "siit", "train", "--resume", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _same_run(tmp_path / "run", reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["t5-tiny", "item-tiny"])
def test_two_processes_match_one(tmp_path, model):
    """torchrun with 2 gloo processes and the same global batch ends with the same
    identifiers and metrics as one process. One epoch per round: Adam amplifies the
    different summation order of the two processes' gradients by about 1e4 per epoch here,
    so longer runs drift beyond float64 tolerance."""
    settings = {**FAULT_RUN, "schedule.max_epochs_per_round": 1, "model": model}
    reference = tmp_path / "single"
    siit.train(output_dir=reference, **settings)
    config = _toml(tmp_path / "run.toml", **{**settings, "output_dir": str(tmp_path / "ddp")})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "siit",
        "train",
        "--config",
        str(config),
        "threads=1",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp, single = _metrics(tmp_path / "ddp"), _metrics(reference)
    assert ddp["processes"] == 2 and single["processes"] == 1
    for ra, rb in zip(ddp["rounds"], single["rounds"], strict=True):
        assert ra["valid"] == pytest.approx(rb["valid"], abs=1e-6)
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
    assert ddp["test"] == pytest.approx(single["test"], abs=1e-6)
    for r in range(len(single["rounds"])):
        name = f"index/round-{r}.index.json"
        assert json.loads((tmp_path / "ddp" / name).read_text()) == json.loads(
            (reference / name).read_text()
        )


def test_objects_are_recorded_and_must_be_passed_again(finished):
    _, out = finished
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "object:synthetic-0"
    with pytest.raises(ValueError, match="trained on a Dataset object"):
        siit.train(resume=out)
    with pytest.raises(ValueError, match="trained on a Dataset object"):
        siit.evaluate(out)
