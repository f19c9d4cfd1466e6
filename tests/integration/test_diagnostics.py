"""Refinement diagnostics on hand-made cases, the refinement levers (margin gate,
collaborative evidence), and tiny SIIT runs that use them."""

import json

import numpy as np
import pytest
import siit
from siit.decoding import candidate_log_probs
from siit.diagnostics import paired_moves, regeneration, semantic_consistency, split_by_moved
from siit.evidence import collaborative_scores
from siit.refine import assign, combine_evidence, free_only, gate_by_margin
from siit.tasks import TaskBuilder
from tiny import TINY_RUN, random_identifiers, tiny_dataset, tiny_model


def test_regeneration_counts_exact_and_prefix_matches():
    current = np.array([[0, 1], [1, 0], [2, 2]])
    beams = np.array(
        [
            [[0, 1], [0, 0]],  # best beam is the identifier
            [[1, 1], [1, 0]],  # second beam is; the best shares the first code
            [[0, 2], [1, 2]],  # never, and the best shares no prefix
        ]
    )
    out = regeneration(beams, current)
    assert out["top1"] == pytest.approx(1 / 3)
    assert out["topk"] == pytest.approx(2 / 3)
    assert out["top1_prefix"] == [round(2 / 3, 4), round(1 / 3, 4)]


def test_semantic_consistency_is_the_mean_cosine_over_pairs_sharing_a_prefix():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0], [1, 1]])
    emb = np.array([[1.0, 0], [2.0, 0], [0, 1.0], [0, -3.0], [1.0, 1.0]])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)

    def brute(depth):
        sims = [
            unit[i] @ unit[j]
            for i in range(5)
            for j in range(i + 1, 5)
            if (codes[i, :depth] == codes[j, :depth]).all()
        ]
        return round(float(np.mean(sims)), 4)

    out = semantic_consistency(codes, emb)
    assert out == {"all": brute(0), "prefix1": brute(1), "prefix2": brute(2)}
    assert out["prefix2"] == -1.0  # items 2 and 3 point in opposite directions


def test_validation_split_by_moved_targets():
    ranks = np.array([0, -1, 3, 12])
    targets = np.array([0, 1, 1, 2])
    moved = np.array([True, False, True])
    out = split_by_moved(ranks, targets, moved)
    assert out["moved_share"] == 0.5
    assert out["recall@10_moved"] == 0.5  # rank 0 found, rank 12 past 10
    assert out["ndcg@10_moved"] == pytest.approx(0.5)
    assert out["recall@10_kept"] == 0.5
    assert out["ndcg@10_kept"] == pytest.approx(0.5 / np.log2(5))


def test_margin_gated_refinement_moves_only_items_that_clear_the_margin():
    identifiers = siit.Identifiers(np.array([[0, 0], [1, 1], [2, 2]]), [4, 4])
    items = np.arange(3)
    # one beam each, then the current identifier (keep_current)
    candidates = np.array([[[3, 3], [0, 0]], [[3, 2], [1, 1]], [[2, 3], [2, 2]]], dtype=np.int64)
    scores = np.array([[-1.0, -3.0], [-1.0, -1.5], [-4.0, -1.0]])
    new, report = assign(identifiers, items, candidates, gate_by_margin(scores, 1.0))
    assert new.codes.tolist() == [[3, 3], [1, 1], [2, 2]]  # only item 0 clears the margin
    assert report.changed == 1
    assert new.is_unique()
    free, _ = assign(identifiers, items, candidates, scores)
    assert free.codes.tolist() == [[3, 3], [3, 2], [2, 2]]  # without a margin item 1 moves too


def test_refine_margin_needs_the_current_identifier():
    with pytest.raises(ValueError, match="refine.margin"):
        siit.TrainConfig(refine={"margin": 0.5, "keep_current": False}).check()
    with pytest.raises(ValueError, match="refine.margin"):
        siit.TrainConfig(refine={"margin": -1.0}).check()


def test_a_siit_run_writes_its_diagnostics(tmp_path):
    settings = {**TINY_RUN, "refine.diagnostics": True, "refine.margin": 0.0}
    siit.train(tiny_dataset(), output_dir=tmp_path, **settings)
    rounds = json.loads((tmp_path / "metrics.json").read_text())["rounds"]
    regen = rounds[1]["refine"]["regeneration"]
    assert 0 <= regen["top1"] <= regen["topk"] <= 1
    assert len(regen["top1_prefix"]) == 3
    for r in rounds:
        assert set(r["consistency"]) == {"all", "prefix1", "prefix2"}
    point = rounds[1]["curve"][-1]
    assert {"moved_share", "ndcg@10_moved", "ndcg@10_kept"} <= set(point)
    assert "moved_share" not in rounds[0]["curve"][-1]
    before = siit.Identifiers.load(tmp_path / "index" / "round-0.index.json")
    after = siit.Identifiers.load(tmp_path / "index" / "round-1.index.json")
    moved = (before.codes != after.codes).any(1)
    assert moved.sum() == rounds[1]["refine"]["changed"]
    assert after.is_unique()


def test_collaborative_scores_average_the_items_training_occurrences():
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset)
    model = tiny_model("gpt-tiny", identifiers, dataset)
    tasks = TaskBuilder(model, dataset, identifiers)
    samples = dataset.train_samples()
    items = np.array([3, 7, 11])
    rng = np.random.default_rng(1)
    candidates = identifiers.codes[rng.integers(0, identifiers.n_items, (3, 4))]
    found = collaborative_scores(model, tasks, samples, items, candidates, per_item=1000)
    for i, item in enumerate(items):
        rows = np.flatnonzero(samples.targets == item)
        prompt, _ = tasks.seqrec(samples.histories[rows])
        each = candidate_log_probs(model, prompt, np.repeat(candidates[i : i + 1], len(rows), 0))
        np.testing.assert_allclose(found[i], each.mean(0), atol=1e-5)
    capped = collaborative_scores(model, tasks, samples, items, candidates, per_item=2)
    assert np.isfinite(capped).all() and not np.allclose(capped, found)


def test_combine_evidence_keeps_unfilled_beams_and_items_without_occurrences():
    item2id = np.array([[-1.0, -np.inf], [-2.0, -3.0]])
    seqrec = np.array([[-5.0, -4.0], [np.nan, np.nan]])
    assert combine_evidence(item2id, seqrec, "item2id") is item2id
    both = combine_evidence(item2id, seqrec, "both")
    assert both[0].tolist() == [-6.0, -np.inf] and both[1].tolist() == [-2.0, -3.0]
    assert combine_evidence(item2id, seqrec, "seqrec")[0].tolist() == [-5.0, -np.inf]


def test_a_run_with_collaborative_evidence_keeps_identifiers_unique(tmp_path):
    settings = {
        **TINY_RUN,
        "model": "gpt-tiny",
        "refine.evidence": "both",
        "refine.free_only": True,
        "refine.margin": 0.1,
    }
    result = siit.train(tiny_dataset(), output_dir=tmp_path, **settings)
    assert result.identifiers.is_unique()
    assert len(result.rounds) == 2 and result.rounds[1].refine["regeneration"]
    # the levers took effect: free-only moves land on identifiers nobody held before
    before = siit.Identifiers.load(tmp_path / "index" / "round-0.index.json")
    after = siit.Identifiers.load(tmp_path / "index" / "round-1.index.json")
    moved = np.flatnonzero((before.codes != after.codes).any(1))
    assert len(moved) == result.rounds[1].refine["changed"] > 0
    held = {tuple(c) for c in before.codes.tolist()}
    assert not {tuple(c) for c in after.codes[moved].tolist()} & held


def test_free_only_refinement_never_displaces_another_item():
    """Item 0's best beam is item 1's identifier: by default it takes it and item 1 must
    move; with free_only, item 0 takes a free identifier and item 1 keeps its own."""
    identifiers = siit.Identifiers(np.array([[0, 0], [1, 1], [2, 2]]), [4, 4])
    items = np.arange(3)
    candidates = np.array(
        [[[1, 1], [3, 3], [0, 0]], [[1, 2], [1, 3], [1, 1]], [[0, 3], [0, 2], [2, 2]]],
        dtype=np.int64,
    )
    scores = np.array([[-0.1, -0.5, -2.0], [-3.0, -3.5, -1.0], [-5.0, -5.0, -0.5]])
    greedy, _ = assign(identifiers, items, candidates, scores)
    assert greedy.codes[0].tolist() == [1, 1] and greedy.codes[1].tolist() != [1, 1]
    gated = free_only(identifiers, items, candidates, scores)
    assert np.isneginf(gated[0, 0]) and gated[0, 2] == -2.0  # its own identifier stays
    safe, report = assign(identifiers, items, candidates, gated)
    assert safe.codes.tolist() == [[3, 3], [1, 1], [2, 2]]
    assert report.changed == 1 and safe.is_unique()


def test_paired_moves_scores_the_same_targets_before_and_after():
    targets = np.array([0, 1, 2, 3, 1])
    moved = np.array([True, False, True, False])
    cold = np.array([False, False, True, True])
    before = np.array([0, -1, 3, 12, 1])  # first-hit ranks, -1: missed
    after = np.array([-1, 0, 0, 12, 1])
    out = paired_moves(before, after, targets, moved, cold)

    def ndcg(ranks):
        return np.mean([1 / np.log2(r + 2) if 0 <= r < 10 else 0.0 for r in ranks])

    expected = {
        "all": [0, 1, 2, 3, 4],
        "moved": [0, 2],
        "kept": [1, 3, 4],
        "cold": [2, 3],
        "cold_moved": [2],
    }
    for name, rows in expected.items():
        assert out[name]["n"] == len(rows)
        assert out[name]["ndcg@10_before"] == pytest.approx(ndcg(before[rows]), abs=1e-5)
        assert out[name]["ndcg@10_after"] == pytest.approx(ndcg(after[rows]), abs=1e-5)
    assert out["moved"]["recall@10_before"] == 1.0 and out["moved"]["recall@10_after"] == 0.5
