"""A refinement round: unique identifiers, real changes, the report's bookkeeping."""

import numpy as np
import siit
from siit.evidence import propose, usage_penalty
from siit.refine import assign, refine
from siit.tasks import TaskBuilder
from tiny import random_identifiers, tiny_dataset, tiny_model


def _config(**levers):
    """The paper's refinement (item2id evidence, no free-only rule, no margin) with `levers`."""
    return siit.TrainConfig(model="t5-tiny", rounds=1, refine={"preset": "paper", **levers}).check()


def _setup(seed=0):
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=seed)
    model = tiny_model("t5-tiny", identifiers, dataset, seed=seed)
    return dataset, identifiers, model, TaskBuilder(model, dataset, identifiers)


def test_refinement_keeps_identifiers_unique_and_changes_them():
    dataset, identifiers, model, tasks = _setup()
    new, report = refine(model, tasks, identifiers, dataset, _config(beams=8))
    assert new.is_unique()
    assert new.codebook_sizes == identifiers.codebook_sizes
    changed = (new.codes != identifiers.codes).any(1)
    assert report.changed == changed.sum() > 0
    assert report.rank0 + report.fallback <= dataset.n_items
    assert report.codes_used == new.stats().codes_used
    assert report.frozen == 0


def test_keeping_the_current_identifier_never_falls_back():
    dataset, identifiers, model, tasks = _setup(seed=1)
    config = _config(beams=4, keep_current=True)
    new, report = refine(model, tasks, identifiers, dataset, config)
    assert new.is_unique()
    assert report.fallback == 0
    assert report.kept + report.changed == identifiers.n_items


def test_items_without_text_keep_their_identifier():
    base = tiny_dataset()
    text = [dict(t) for t in base.item_text]
    text[3] = {}
    text[7] = {}
    sequences = [base.sequence(u) for u in range(base.n_users)]
    dataset = siit.Dataset(sequences, text)
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=2)
    model = tiny_model("t5-tiny", identifiers, dataset)
    tasks = TaskBuilder(model, dataset, identifiers)
    new, report = refine(model, tasks, identifiers, dataset, _config(beams=6))
    assert report.frozen == 2
    assert np.array_equal(new.codes[[3, 7]], identifiers.codes[[3, 7]])
    assert new.is_unique()


def test_candidates_are_scored_and_ranked():
    _, identifiers, model, tasks = _setup()
    items = np.arange(10)
    cand, scores = propose(
        model, tasks, items, identifiers, beams=5, keep_current=True, progress=False
    )
    assert cand.shape == (10, 6, 3) and scores.shape == (10, 6)
    assert (np.diff(scores[:, :5], axis=1) <= 1e-6).all()
    assert np.array_equal(cand[:, -1], identifiers.codes[items])
    assert np.isfinite(scores).all() and (scores <= 0).all()


def test_usage_penalty_is_relative_to_uniform_use():
    ids = siit.Identifiers(np.array([[0, 0], [0, 1], [0, 2], [1, 3]]), [2, 4])
    penalty = usage_penalty(ids, 0.5, "cpu")
    np.testing.assert_allclose(penalty[0].numpy(), [0.5 * 3 * 2 / 4, 0.5 * 1 * 2 / 4])
    np.testing.assert_allclose(penalty[1].numpy(), [0.5] * 4)


def test_diversity_penalty_spreads_codes():
    """A heavy penalty on the code every item uses moves all proposals off it."""
    dataset, identifiers, model, tasks = _setup()
    items = np.arange(identifiers.n_items)
    plain, _ = propose(model, tasks, items, identifiers, 3, keep_current=False, progress=False)
    popular = int(np.bincount(plain[:, 0, 0]).argmax())
    crowded = (
        siit.Identifiers(
            np.c_[np.full(identifiers.n_items, popular), identifiers.codes[:, 1:]],
            identifiers.codebook_sizes,
        )
        .make_unique()
        .identifiers
    )
    spread, _ = propose(
        model, tasks, items, crowded, 3, diversity=50.0, keep_current=False, progress=False
    )
    assert (plain[:, 0, 0] == popular).any()
    assert (spread[:, :, 0] != popular).all()


def test_assign_reports_fallbacks():
    ids = siit.Identifiers(np.array([[0, 0], [0, 1], [1, 0]]), [2, 2])
    # all three items want the same identifier: one gets it, two fall back
    cand = np.array([[[1, 1]], [[1, 1]], [[1, 1]]])
    new, report = assign(ids, np.arange(3), cand, np.zeros((3, 1)))
    assert new.is_unique()
    assert report.rank0 == 1 and report.fallback == 2
