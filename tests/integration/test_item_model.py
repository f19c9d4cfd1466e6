"""Item-level models: exact catalogue scores, beam search on the same heads, the
all-position loss, exclusion, persistence, and refinement from occurrence evidence."""

import copy
import json
import logging

import numpy as np
import pytest
import siit
import torch
from siit.api import _reads_text
from siit.decoding import TrieTables, beam_search, candidate_log_probs, top_items
from siit.evidence import (
    collaborative_beams,
    collaborative_proposals,
    contrast_states,
    occurrence_scores,
    occurrence_states,
    with_text,
)
from siit.models import ItemRecModel, build_model, load_model
from siit.models.item_backbone import ACTIVATIONS, LEGACY_ACTIVATIONS, Dropout
from siit.refine import assign, free_only, gate_by_margin, refine_step
from siit.tasks import TaskBuilder
from siit.training import Trainer
from tiny import EXACT_RUN, random_identifiers, tiny_dataset


@pytest.fixture(
    scope="module",
    params=[
        dict(trie_softmax=False),
        dict(trie_softmax=False, conditional=False),
        dict(trie_softmax=False, arch="llama"),
        dict(trie_softmax=True),
        dict(trie_softmax=True, conditional=False),
        dict(trie_softmax=True, arch="llama"),
        dict(trie_softmax=False, dense_head=True),
        dict(trie_softmax=True, dense_head=True),
        dict(trie_softmax=True, dense_head=True, dense_residual=True),
    ],
    ids=[
        "codebook-softmax",
        "independent-codebook-softmax",
        "llama-codebook-softmax",
        "trie-softmax",
        "independent-trie-softmax",
        "llama-trie-softmax",
        "dense-head",
        "trie-softmax-dense-head",
        "trie-softmax-dense-residual",
    ],
)
def setup(request):
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    model = build_model(
        "item-tiny", identifiers.codebook_sizes, identifiers.prefixes, seed=3, **request.param
    )
    # untrained codes embeddings are near zero: spread them so that levels interact
    with torch.no_grad():
        model.model.codes.weight.normal_(0, 1.0)
    tasks = TaskBuilder(model, dataset, identifiers)
    if model.model.residual is not None:  # a row per item (the trie sized it), spread too
        assert model.model.residual.shape[0] == identifiers.n_items
        with torch.no_grad():
            model.model.residual.normal_(0, 1.0)
    samples = dataset.valid_samples()
    prompt, _ = tasks.seqrec(samples.histories[:9])
    return model, identifiers, tasks, prompt, dataset


def test_exact_scores_are_the_per_item_log_probs(setup):
    model, identifiers, _, prompt, _ = setup
    tables = TrieTables.of(identifiers)
    exact = model.item_log_probs(prompt, tables).numpy()
    assert exact.shape == (len(prompt), identifiers.n_items)
    tokens = torch.as_tensor(model.code_tokens(identifiers.codes))
    with torch.no_grad():
        hidden = model.last_hidden(prompt)
        dense = _dense_one_at_a_time(model, hidden, identifiers)
        for item in range(identifiers.n_items):  # one item at a time, level by level
            one = model.model.target_log_probs(hidden, tokens[item].expand(len(prompt), -1))
            one = one.sum(1) + dense[:, item]
            np.testing.assert_allclose(exact[:, item], one.numpy(), atol=1e-5)
    # a probability distribution over all identifiers: the catalogue holds part of it, or
    # all of it when every level is normalized over the trie's children (a dense head
    # multiplies it by a second one)
    total = np.exp(exact).sum(1)
    if model.model.trie_softmax and not model.model.dense_head:
        np.testing.assert_allclose(total, 1.0, atol=1e-5)
    else:
        assert (total < 1 + 1e-5).all()


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_last_state_is_the_full_encodings_last_position(arch, layers):
    """Ranking's shortcut (a GPT-2 backbone's last block at the last position only, the
    other blocks called one by one) gives the full encoding's last hidden state on
    left-padded histories of every length; Llama and training take the full encoding."""
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    model = build_model(
        "item-tiny",
        identifiers.codebook_sizes,
        identifiers.prefixes,
        seed=5,
        arch=arch,
        layers=layers,
        dropout=0.2,
    )
    net = model.model
    histories = dataset.valid_samples().histories[:9]
    tokens = torch.as_tensor(TaskBuilder(model, dataset, identifiers).seqrec(histories)[0])
    assert (tokens[:, 0, 0] < 0).any() and (tokens[:, -1, 0] >= 0).all()  # left padding
    net.eval()
    with torch.no_grad():
        full = net.encode(tokens)[:, -1]
        if arch == "gpt2":  # the shortcut never runs the backbone as a whole
            net.backbone.forward = None
        torch.testing.assert_close(net.last_state(tokens), full, rtol=1e-5, atol=1e-5)
        net.train()
        if arch == "gpt2":
            with pytest.raises(TypeError):  # training encodes in full (dropout applies)
                net.last_state(tokens)


def _dense_one_at_a_time(model, hidden, identifiers):
    """The dense head's log-probs (B, n_items) from each item's input vector built on its
    own (its codes' embeddings and its text) plus its dense residual row if any; zeros
    without a dense head."""
    if not model.model.dense_head:
        return torch.zeros(len(hidden), identifiers.n_items, dtype=hidden.dtype)
    codes = model.code_tokens(identifiers.codes)
    residual = model.model.residual
    vectors = torch.stack(
        [
            model.model.embed_items(torch.as_tensor(np.append(codes[item], item)))
            + (0 if residual is None else residual[item])
            for item in range(identifiers.n_items)
        ]
    )
    return torch.log_softmax(hidden @ vectors.T, -1)


def test_small_chunks_give_the_same_scores(setup):
    model, identifiers, _, prompt, _ = setup
    tables = TrieTables.of(identifiers)
    whole = model.item_log_probs(prompt, tables)
    chunked = model.item_log_probs(prompt, tables, max_elements=1)
    torch.testing.assert_close(whole, chunked)


def test_exact_ranking_equals_a_beam_that_covers_the_catalogue(setup):
    model, identifiers, _, prompt, _ = setup
    tables = TrieTables.of(identifiers)
    n = identifiers.n_items
    items, scores = top_items(model, prompt, n, tables, identifiers, exact=True)
    found = beam_search(model, prompt, n, tables)
    np.testing.assert_array_equal(items, found.items)
    np.testing.assert_allclose(scores, found.scores, atol=1e-5)
    # and candidate_log_probs (the level heads alone) agrees with both
    again = candidate_log_probs(model, prompt, identifiers.codes[items])
    with torch.no_grad():
        dense = _dense_one_at_a_time(model, model.last_hidden(prompt), identifiers)
    dense = np.take_along_axis(dense.double().numpy(), items, 1)
    np.testing.assert_allclose(again + dense, scores, atol=1e-5)


def test_exclusion_bans_history_items_in_both_modes(setup):
    model, identifiers, _, prompt, _ = setup
    tables = TrieTables.of(identifiers)
    first, _ = top_items(model, prompt, 10, tables, identifiers, exact=True)
    exclude = np.full((len(prompt), 3), -1)
    exclude[:, :2] = first[:, :2]  # each user's two best items
    for exact in (True, False):
        items, _ = top_items(model, prompt, 10, tables, identifiers, exact, exclude)
        for row, ex in zip(items, exclude, strict=True):
            assert not set(row.tolist()) & set(ex[ex >= 0].tolist())
        if exact:  # the rest of the ranking moves up
            np.testing.assert_array_equal(items[:, :8], first[:, 2:10])


def test_all_position_loss_equals_prefix_losses_one_at_a_time(setup):
    model, identifiers, tasks, _, dataset = setup
    windows = dataset.train_windows(8).items[:5]
    prompt, target = tasks.seqrec_windows(windows)
    with torch.no_grad():
        losses = model.token_losses(model.model, prompt, target).numpy()
        for row, window in enumerate(windows):
            length = int((window >= 0).sum())
            for end in range(1, length):  # the history window[:end], the target window[end]
                hist, _ = tasks.seqrec(window[None, :end])
                hidden = model.last_hidden(hist)
                tgt = torch.as_tensor(model.code_tokens(identifiers.codes[window[end]]))[None]
                one = -model.model.target_log_probs(hidden, tgt)[0].numpy()
                dense = _dense_one_at_a_time(model, hidden, identifiers)
                one[-1] -= float(dense[0, window[end]])  # the item's, on its last code
                np.testing.assert_allclose(losses[row, end - 1], one, rtol=1e-6, atol=1e-5)
            assert (losses[row, length - 1 :] == 0).all()  # padding


def test_save_and_load_round_trip(setup, tmp_path):
    model, identifiers, _, prompt, _ = setup
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, ItemRecModel)
    assert again.options == model.options
    tables = TrieTables.of(identifiers)
    torch.testing.assert_close(
        again.item_log_probs(prompt, tables), model.item_log_probs(prompt, tables)
    )


def test_a_model_saved_before_the_activation_option_loads_with_the_tanh_gelu(setup, tmp_path):
    model, identifiers, _, prompt, _ = setup
    arch = model.model.backbone.config.model_type
    assert model.options["activation"] == ACTIVATIONS[arch]  # recorded, resolved
    model.save(tmp_path / "m")
    meta_file = tmp_path / "m" / "siit_model.json"
    meta = json.loads(meta_file.read_text())
    del meta["options"]["activation"]
    meta_file.write_text(json.dumps(meta))
    old = load_model(tmp_path / "m")
    assert old.options["activation"] == LEGACY_ACTIVATIONS[arch]
    config = old.model.backbone.config
    act = config.activation_function if arch == "gpt2" else config.hidden_act
    assert act == LEGACY_ACTIVATIONS[arch]
    tables = TrieTables.of(identifiers)
    same = torch.equal(old.item_log_probs(prompt, tables), model.item_log_probs(prompt, tables))
    assert same == (LEGACY_ACTIVATIONS[arch] == ACTIVATIONS[arch])  # GPT-2's tanh GELU differs


def test_cpu_dropout_drops_at_its_rate_keeps_the_mean_and_masks_the_gradient():
    drop = Dropout(0.3)
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the seed decides the mask
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.005
    assert abs(float(y.detach().mean()) - 1.0) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient of x * mask is the mask
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert not Dropout(1.0).train()(x).any()  # torch's kernel at the edges


def test_an_unknown_activation_is_refused_by_name():
    with pytest.raises(ValueError, match="activation 'gelu_fast_typo' is not a Hugging Face"):
        build_model("item-tiny", (4, 4), ("a", "b"), activation="gelu_fast_typo")


def test_occurrence_evidence_is_the_sum_of_per_occurrence_log_probs(setup):
    model, identifiers, tasks, _, dataset = setup
    windows = dataset.train_windows(6)
    states, owner = occurrence_states(model, tasks, windows, batch_size=7)
    assert len(owner) == int((windows.lengths() - 1).sum())  # every target, once
    rng = np.random.default_rng(0)
    cand = rng.integers(0, 6, size=(identifiers.n_items, 4, 3))
    summed = occurrence_scores(model, states, owner, cand, max_elements=50)
    # one occurrence at a time: the history before it through the model, its candidates.
    # The evidence scores identifiers off the trie too (a move goes to a free one), so a
    # trie-softmax model's evidence is its codebook-wide softmax.
    ref = np.zeros_like(summed)
    items = windows.items
    trie_softmax, model.model.trie_softmax = model.model.trie_softmax, False
    try:
        for w in range(len(items)):
            for end in range(1, int((items[w] >= 0).sum())):
                hist, _ = tasks.seqrec(items[w][None, :end])
                item = items[w, end]
                ref[item] += candidate_log_probs(model, hist, cand[item][None])[0]
    finally:
        model.model.trie_softmax = trie_softmax
    np.testing.assert_allclose(summed, ref, atol=1e-4)
    # the beams are the identifiers under which the occurrences are most likely
    beams, scores = collaborative_beams(model, states, owner, identifiers.n_items, 5, 50)
    np.testing.assert_allclose(occurrence_scores(model, states, owner, beams), scores, atol=1e-4)
    # with beams covering every prefix above the last level, the search is exhaustive
    _, full = collaborative_beams(model, states, owner, identifiers.n_items, 36, 50)
    grid = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    best_item = int(np.bincount(owner).argmax())
    everything = occurrence_scores(
        model,
        states[owner == best_item],
        np.zeros((owner == best_item).sum(), np.int64),
        grid[None],
    )[0]
    assert full[best_item, 0] == pytest.approx(everything.max(), abs=1e-4)


def test_contrasted_evidence_subtracts_the_likelihood_anywhere(setup):
    """Per item: the summed log-likelihood at its occurrences minus its occurrence count
    times the candidate's mean log-likelihood at the sampled positions, with the beams
    searched on that same objective."""
    model, identifiers, tasks, _, dataset = setup
    windows = dataset.train_windows(6)
    states, owner = occurrence_states(model, tasks, windows)
    anywhere = contrast_states(states, 7, seed=1)
    assert anywhere.shape == (7, states.shape[1]) and contrast_states(states, 0) is None
    rng = np.random.default_rng(0)
    cand = rng.integers(0, 6, size=(identifiers.n_items, 4, 3))
    plain = occurrence_scores(model, states, owner, cand, max_elements=50)
    contrasted = occurrence_scores(model, states, owner, cand, 50, contrast=anywhere)
    # the candidates' mean log-likelihood at the 7 positions, as if one item occurred there
    at = occurrence_scores(
        model,
        anywhere.repeat(identifiers.n_items, 1),
        np.repeat(np.arange(identifiers.n_items), 7),
        cand,
    )
    counts = np.bincount(owner, minlength=identifiers.n_items)
    np.testing.assert_allclose(contrasted, plain - counts[:, None] * at / 7, atol=1e-4)
    beams, scores = collaborative_beams(
        model, states, owner, identifiers.n_items, 5, 50, contrast=anywhere
    )
    again = occurrence_scores(model, states, owner, beams, contrast=anywhere)
    np.testing.assert_allclose(again, scores, atol=1e-4)


def test_a_collaborative_move_never_lowers_the_training_likelihood(setup):
    model, identifiers, tasks, _, dataset = setup
    windows = dataset.train_windows(6)
    items, cand, scores = collaborative_proposals(model, tasks, windows, identifiers, 5)
    assert (scores[:, :-1].max(1) >= scores[:, -1] - 1e-9).all()  # the beams include the best
    scores = gate_by_margin(free_only(identifiers, items, cand, scores), 0.0)
    new, report = assign(identifiers, items, cand, scores)
    assert new.is_unique() and report.changed > 0
    states, owner = occurrence_states(model, tasks, windows)
    before = occurrence_scores(model, states, owner, identifiers.codes[:, None])[:, 0]
    after = occurrence_scores(model, states, owner, new.codes[:, None])[:, 0]
    assert (after >= before - 1e-9).all()
    assert after.sum() > before.sum() + 1.0
    # items that never occur in training keep their identifiers
    absent = np.setdiff1d(np.arange(identifiers.n_items), owner)
    np.testing.assert_array_equal(new.codes[absent], identifiers.codes[absent])


@pytest.mark.parametrize("moving", [1, 2])
def test_the_level_restriction_moves_only_the_last_levels(setup, moving):
    model, identifiers, tasks, _, dataset = setup
    windows = dataset.train_windows(6)
    items, cand, scores = collaborative_proposals(
        model, tasks, windows, identifiers, 5, refine_levels=moving
    )
    fixed = identifiers.n_levels - moving
    current = identifiers.codes[items]
    proposed = np.isfinite(scores)
    assert proposed[:, :-1].any()  # the beams search the levels that may move
    same = (cand[:, :, :fixed] == current[:, None, :fixed]).all(-1)
    assert same[proposed].all()
    config = siit.TrainConfig(rounds=1, refine={"levels": moving}).check()
    new, report = refine_step(identifiers, items, cand, scores, config)
    assert new.is_unique() and report.changed > 0
    np.testing.assert_array_equal(new.codes[:, :fixed], identifiers.codes[:, :fixed])


def test_no_levels_to_move_is_the_no_move_control(setup):
    model, identifiers, tasks, _, dataset = setup
    windows = dataset.train_windows(6)
    items, cand, scores = collaborative_proposals(model, tasks, windows, identifiers, 5)
    config = siit.TrainConfig(rounds=1, refine={"levels": 0}).check()
    new, report = refine_step(identifiers, items, cand, scores, config)
    assert report.changed == 0
    np.testing.assert_array_equal(new.codes, identifiers.codes)
    with pytest.raises(ValueError, match="refine.levels"):
        siit.TrainConfig(
            rounds=1, refine={"preset": "paper", "levels": 0}
        ).check()  # no keep_current


ITEM_RUN = {
    **EXACT_RUN,
    "model": "item-tiny",
    "schedule.max_epochs_per_round": 2,
}


@pytest.fixture(scope="module")
def item_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("item-run")
    return siit.train(output_dir=out, **ITEM_RUN), out


def test_an_item_level_run_refines_to_unique_identifiers(item_run):
    result, out = item_run
    assert result.model.kind == "item"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["schedule"]["tasks"] == {"seqrec": 1.0, "item2id": 0.0, "id2item": 0.0}
    assert metrics["config"]["refine"]["evidence"] == "seqrec"
    refine = metrics["rounds"][1]["refine"]
    assert refine["changed"] > 0
    for r in (0, 1):
        index = siit.Identifiers.load(out / "index" / f"round-{r}.index.json", [8, 8, 8])
        assert index.is_unique()
    assert result.test["invalid_share"] == 0 and result.test["ndcg@10"] > 0
    # paired diagnostics: the same validation targets, scored by round 0's best model on the
    # old identifiers and by round 1's on the new ones, are the rounds' own validations
    rounds = metrics["rounds"]
    paired = rounds[1]["paired"]
    users = tiny_synthetic_users()
    assert paired["all"]["n"] == users == paired["moved"]["n"] + paired["kept"]["n"]
    assert paired["all"]["ndcg@10_before"] == pytest.approx(rounds[0]["valid"]["ndcg@10"], 1e-4)
    assert paired["all"]["ndcg@10_after"] == pytest.approx(rounds[1]["valid"]["ndcg@10"], 1e-4)
    assert paired["moved"]["n"] > 0
    assert rounds[0]["paired"] is None and rounds[0]["cold"]["n"] <= users
    for r in (0, 1):
        assert np.load(out / "diagnostics" / f"valid-ranks-round-{r}.npy").shape == (users,)
    # a loaded run ranks exactly (eval_mode auto) and agrees with the run's test metrics
    assert siit.evaluate(out)["ndcg@10"] == pytest.approx(result.test["ndcg@10"], abs=1e-9)
    items, scores = siit.load(out).recommend([["1", "2", "3"]], k=5)
    assert items.shape == (1, 5) and (np.diff(scores[0]) <= 0).all()


def test_the_no_move_control_runs_the_same_rounds_with_nobody_moving(tmp_path):
    result = siit.train(output_dir=tmp_path, **{**ITEM_RUN, "refine.levels": 0})
    assert len(result.rounds) == 2 and result.rounds[1].refine["changed"] == 0
    before, after = (tmp_path / "index" / f"round-{r}.index.json" for r in (0, 1))
    assert before.read_text() == after.read_text()
    assert result.rounds[1].paired["moved"]["n"] == 0


def test_a_finished_baseline_extended_with_a_round_equals_a_run_started_with_it(item_run, tmp_path):
    result, reference = item_run
    base = {**ITEM_RUN, "rounds": 0, "schedule.cycles": 1}  # the reference's round 0
    baseline = siit.train(output_dir=tmp_path, **base)
    assert len(baseline.rounds) == 1
    for wrong, match in (
        ({"rounds": 1, "seed": 5}, r"changes to \['seed'\]"),
        ({"rounds": 1, "schedule.max_epochs_first_round": 5}, "round 0 has trained"),
        ({"refine.margin": 1.0}, r"changes to \['refine'\]"),  # no new rounds: nothing to refine
    ):
        with pytest.raises(ValueError, match=match):
            siit.train(resume=tmp_path, **wrong)
    round_cap = {"schedule.max_epochs_per_round": 2}  # else the refine preset's
    extended = siit.train(resume=tmp_path, rounds=1, progress=False, **round_cap)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rounds"] == 1 and config["schedule"]["max_epochs_first_round"] == 2
    # the refine levers the baseline left unused come from the preset, as for a fresh run
    assert config["refine"] == json.loads((reference / "config.json").read_text())["refine"]
    assert extended.rounds[0].valid == baseline.rounds[0].valid
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (tmp_path, reference))

    def untimed(report: dict | None) -> dict | None:  # a refinement report but its timing
        return report and {**report, "seconds": 0}

    for ra, rb in zip(a["rounds"], b["rounds"], strict=True):
        assert ra["valid"] == pytest.approx(rb["valid"], abs=1e-12)
        assert untimed(ra["refine"]) == untimed(rb["refine"])
    assert a["test"] == pytest.approx(b["test"], abs=1e-12)
    name = "index/round-1.index.json"
    assert (tmp_path / name).read_text() == (reference / name).read_text()
    with pytest.raises(ValueError, match="only a finished run without rounds"):
        siit.train(resume=tmp_path, rounds=2)
    # a finished run resumed with its own settings repeated is already done
    again = siit.train(resume=tmp_path, rounds=1, seed=0, progress=False, **round_cap)
    assert again.test == pytest.approx(extended.test, abs=1e-12)


def tiny_synthetic_users() -> int:
    return siit.Dataset.synthetic().n_users


def test_an_interrupted_item_level_run_resumes_to_the_same_result(item_run, tmp_path, monkeypatch):
    _, reference = item_run
    original = Trainer.train_step

    def interrupted(self, task, rows):
        if self.state["round"] == 1 and self.state["epoch"] == 1 and self.state["step"] == 3:
            raise KeyboardInterrupt
        return original(self, task, rows)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        siit.train(output_dir=tmp_path, **ITEM_RUN)
    monkeypatch.setattr(Trainer, "train_step", original)
    siit.train(resume=tmp_path, progress=False)
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (tmp_path, reference))
    for ra, rb in zip(a["rounds"], b["rounds"], strict=True):
        assert ra["valid"] == pytest.approx(rb["valid"], abs=1e-12)
    assert a["test"] == pytest.approx(b["test"], abs=1e-12)
    for r in (0, 1):
        name = f"index/round-{r}.index.json"
        assert (tmp_path / name).read_text() == (reference / name).read_text()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"schedule.tasks": {"seqrec": 1, "item2id": 0.5}}, "train seqrec alone"),
        ({"rounds": 1, "refine.evidence": "item2id"}, "refine from seqrec evidence"),
        (
            {"rounds": 1, "refine.levels": 4},
            r"refine.levels=4 moves more levels than the identifiers have \(3\)",
        ),
    ],
)
def test_item_level_models_refuse_bad_refinement_settings(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        siit.train(output_dir=tmp_path, **{**ITEM_RUN, **settings})


@pytest.mark.parametrize("candidates", [1, 3, 64])
def test_pruned_top_k_equals_the_top_of_every_score(setup, candidates):
    """Scoring the last level under a few nodes per user, with the full fallback where the
    bound says so, gives exactly the top of the full scores, with exclusion too."""
    model, identifiers, _, prompt, _ = setup
    tables = TrieTables.of(identifiers)
    every = model.item_log_probs(prompt, tables)
    exclude = np.full((len(prompt), 4), -1)
    exclude[:, :3] = np.argsort(-every.numpy(), 1)[:, [0, 2, 5]]
    for ban in (None, exclude):
        items, scores = model.top_k(prompt, tables, 10, ban, candidates=candidates)
        ref = every.clone()
        if ban is not None:
            for row, ex in enumerate(ban):
                ref[row, ex[ex >= 0]] = float("-inf")
        top, idx = ref.topk(10, dim=1)
        torch.testing.assert_close(scores, top)
        np.testing.assert_array_equal(items.numpy(), idx.numpy())
        chunked = model.top_k(prompt, tables, 10, ban, candidates=candidates, max_elements=1)
        np.testing.assert_array_equal(chunked[0].numpy(), idx.numpy())
    # a k beyond the catalogue leaves -1 / -inf slots
    items, scores = model.top_k(prompt, tables, identifiers.n_items + 5, candidates=candidates)
    assert (items[:, -5:] == -1).all() and torch.isinf(scores[:, -5:]).all()
    assert sorted(items[0, :-5].tolist()) == list(range(identifiers.n_items))


@pytest.mark.parametrize("spread", [0.02, 0.3, 1.0])
def test_pruned_top_k_widens_to_the_exact_top_on_a_larger_trie(spread):
    """On 1,500 items under 3 x 16 codes, weights from flat (initial) to peaked send users
    through several widenings and to full scoring; the top k stay those of every score."""
    rng = np.random.default_rng(0)
    keys = rng.choice(16**3, 1500, replace=False)
    identifiers = siit.Identifiers(np.stack([keys // 256, keys // 16 % 16, keys % 16], 1), [16] * 3)
    torch.manual_seed(0)
    model = build_model("item-tiny", identifiers.codebook_sizes, identifiers.prefixes)
    with torch.no_grad():
        model.model.codes.weight.normal_(0, spread)
    tables = TrieTables.of(identifiers)
    prompt = model.code_tokens(identifiers.codes[rng.integers(0, 1500, size=(40, 6))])
    top, idx = model.item_log_probs(prompt, tables).topk(20, dim=1)
    items, scores = model.top_k(prompt, tables, 20, candidates=2)
    torch.testing.assert_close(scores, top)
    np.testing.assert_array_equal(items.numpy(), idx.numpy())


def test_text_input_trains_saves_serves_and_grows_with_new_items(tmp_path):
    settings = {**ITEM_RUN, "rounds": 0, "network.options": {"text_input": True}}
    result = siit.train(output_dir=tmp_path, **settings)
    assert result.model.text_dim == 384
    assert result.model.model.item_text.shape == (result.identifiers.n_items, 384)
    loaded = load_model(tmp_path / "best" / "model")
    torch.testing.assert_close(loaded.model.item_text, result.model.model.item_text.float())
    assert siit.evaluate(tmp_path)["ndcg@10"] == pytest.approx(result.test["ndcg@10"], abs=1e-9)
    # the text changes what the model reads: without it the scores differ
    tables = TrieTables.of(result.identifiers)
    tasks = TaskBuilder(loaded, None, result.identifiers)
    prompt, _ = tasks.seqrec(np.array([[0, 1, 2]]))
    with_text = loaded.item_log_probs(prompt, tables)
    loaded.model.item_text.zero_()
    assert not torch.allclose(with_text, loaded.item_log_probs(prompt, tables))
    added = siit.add_items(tmp_path, {"new-1": {"title": "a new thing"}})
    rec = siit.load(tmp_path)
    assert rec.model.model.item_text.shape[0] == result.identifiers.n_items + 1
    items, _ = rec.recommend([["new-1"]], k=3)
    assert items.shape == (1, 3) and added.item_ids == ["new-1"]


def test_text_input_needs_item_text(tmp_path):
    base = tiny_dataset()
    folder = tmp_path / "bare"
    folder.mkdir()
    inter = {str(u): [int(i) for i in base.sequence(u)] for u in range(base.n_users)}
    (folder / "bare.inter.json").write_text(json.dumps(inter))
    settings = {**ITEM_RUN, "dataset": str(folder), "rounds": 0}
    with pytest.raises(ValueError, match="text_input needs item text"):
        siit.train(
            output_dir=tmp_path / "run", network={"options": {"text_input": True}}, **settings
        )
    # without text input, an item-level model trains and refines on interactions alone
    result = siit.train(output_dir=tmp_path / "plain", **{**settings, "rounds": 1})
    assert result.rounds[1].refine["changed"] >= 0 and result.identifiers.is_unique()


def test_text_input_defaults_to_the_datasets_text(caplog):
    """item-mini and item-small read item text where the dataset has some ("auto"); other
    presets, text-free datasets and text_input=False do not; a bad value is refused."""
    texty = tiny_dataset()
    bare = copy.copy(texty)
    bare.item_text = [{} for _ in texty.item_text]
    with caplog.at_level(logging.INFO, logger="siit"):
        assert _reads_text("item-mini", None, texty) and _reads_text("item-small", None, texty)
        assert not _reads_text("item-mini", None, bare)
    assert "reads no item text" in caplog.text and "reads item text as input" in caplog.text
    assert not _reads_text("item-mini", False, texty) and not _reads_text("item-tiny", None, texty)
    assert _reads_text("item-tiny", "auto", texty) and _reads_text("item-tiny", True, bare)
    with pytest.raises(ValueError, match="network.options text_input must be true, false or"):
        siit.TrainConfig(**{"network.options": {"text_input": "yes"}}).check()


# -- the text prior: text -> identifier through the same heads ------------------------------


def _text_prior_model(dataset, identifiers, seed=3, **options):
    """An item-level model with a text prior over random 12-d item text vectors."""
    model = build_model(
        "item-tiny",
        identifiers.codebook_sizes,
        identifiers.prefixes,
        seed=seed,
        prior_dim=12,
        **options,
    )
    with torch.no_grad():
        model.model.codes.weight.normal_(0, 1.0)
    model.set_item_text(np.random.default_rng(seed).normal(size=(dataset.n_items, 12)))
    return model


def test_the_text_prior_is_the_item2id_task_of_an_item_level_model():
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    model = _text_prior_model(dataset, identifiers)
    tasks = TaskBuilder(model, dataset, identifiers)
    assert model.text_prior and model.text_dim == 12
    np.testing.assert_array_equal(tasks.alignment_items("item2id"), np.arange(dataset.n_items))
    items, target = tasks.item2id(np.array([4, 0]))
    np.testing.assert_array_equal(target, model.code_tokens(identifiers.codes[[4, 0]]))
    losses = model.token_losses(model.model, items, target)
    with torch.no_grad():  # the loss is the identifier's log-prob after the item's text query
        query = model.model.text_query(model.model.item_text[torch.as_tensor([4, 0])])
        expected = -model.model.target_log_probs(query, torch.as_tensor(target))
    torch.testing.assert_close(losses.detach(), expected)
    # a model without a text prior says so
    plain = build_model("item-tiny", identifiers.codebook_sizes, identifiers.prefixes)
    with pytest.raises(ValueError, match="no text prior"):
        plain.model.text_states(torch.as_tensor([0]))


def test_text_counts_as_that_many_occurrences_in_the_evidence():
    """Evidence with text = the occurrences' summed log-likelihood + `copies` times the
    candidate's log-likelihood after the item's text query; items never seen get the text's
    alone, and the beams search that same objective."""
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    # evidence scores candidates over the whole codebook (off the trie too), as
    # target_log_probs does with the codebook-wide softmax
    model = _text_prior_model(dataset, identifiers, trie_softmax=False)
    tasks = TaskBuilder(model, dataset, identifiers)
    states, owner = occurrence_states(model, tasks, dataset.train_windows(6), batch_size=7)
    cand = np.random.default_rng(0).integers(0, 6, size=(identifiers.n_items, 4, 3))
    plain = occurrence_scores(model, states, owner, cand, max_elements=50)
    items = np.arange(dataset.n_items)
    both, both_owner = with_text(model, states, owner, items, copies=3)
    assert (np.diff(both_owner) >= 0).all() and len(both_owner) == len(owner) + 3 * len(items)
    combined = occurrence_scores(model, both, both_owner, cand, max_elements=50)
    with torch.no_grad():
        query = model.model.text_states(torch.as_tensor(items))
        tokens = torch.as_tensor(model.code_tokens(cand))
        text = torch.stack(
            [model.model.target_log_probs(query, tokens[:, k]).sum(-1) for k in range(4)], 1
        ).numpy()
    np.testing.assert_allclose(combined, plain + 3 * text, atol=1e-4)
    beams, scores = collaborative_beams(model, both, both_owner, identifiers.n_items, 5, 50)
    np.testing.assert_allclose(occurrence_scores(model, both, both_owner, beams), scores, atol=1e-4)


def test_a_text_prior_run_refines_from_text_and_places_new_items(tmp_path, caplog):
    settings = {
        **ITEM_RUN,
        "network.options": {"text_prior": True},
        "refine.text_occurrences": 2,
        "refine.levels": 1,
    }
    result = siit.train(output_dir=tmp_path, **settings)
    config = siit.TrainConfig.from_run(tmp_path)
    assert config.schedule.tasks["item2id"] == 0.25  # the text prior trains by default
    assert "item2id" in result.rounds[0].train_loss
    assert result.identifiers.is_unique() and result.rounds[1].refine is not None
    again = load_model(tmp_path / "best" / "model")
    assert again.text_prior and again.model.item_text.shape == (result.identifiers.n_items, 384)
    with caplog.at_level(logging.INFO, logger="siit"):
        added = siit.add_items(tmp_path, {"new-1": {"title": "red item of group 1"}})
    assert "with the run's text prior" in caplog.text and added.identifiers.is_unique()


def test_text_occurrences_need_a_trained_text_prior():
    with pytest.raises(ValueError, match="refine.text_occurrences needs an item-level model"):
        siit.TrainConfig(rounds=1, refine={"text_occurrences": 2}).check()
    with pytest.raises(ValueError, match="item2id with a text prior"):
        siit.TrainConfig(schedule={"tasks": {"seqrec": 1, "item2id": 0.5}}).check()
    config = siit.TrainConfig(
        rounds=1, network={"options": {"text_prior": True}}, refine={"text_occurrences": 2}
    ).check()
    assert config.schedule.tasks["item2id"] > 0


def test_the_trie_softmax_follows_the_identifiers_in_use():
    """A trie-softmax model normalizes over the trie of the identifiers its task builder
    holds: after new identifiers, its loss and its catalogue distribution are theirs, and a
    model without the trie refuses to train rather than normalize over nothing."""
    dataset = tiny_dataset()
    old = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    new = random_identifiers(dataset, levels=3, codebook_size=6, seed=2)
    model = build_model("item-tiny", old.codebook_sizes, old.prefixes, seed=3, trie_softmax=True)
    history = torch.as_tensor(model.code_tokens(old.codes[:4]))[None]
    with pytest.raises(ValueError, match="use_trie"):
        model.model(history, history)
    tasks = TaskBuilder(model, dataset, old)
    tasks.set_identifiers(new)
    prompt, _ = tasks.seqrec(dataset.valid_samples().histories[:5])
    exact = model.item_log_probs(prompt, TrieTables.of(new))
    torch.testing.assert_close(exact.exp().sum(1), torch.ones(5), atol=1e-5, rtol=0)
    with torch.no_grad():
        hidden = model.last_hidden(prompt)
        target = torch.as_tensor(model.code_tokens(new.codes[7]))[None].expand(5, -1)
        one = model.model.target_log_probs(hidden, target).sum(1)
    torch.testing.assert_close(one, exact[:, 7].to(one.dtype), atol=1e-5, rtol=0)


def test_scoring_skips_the_head_on_single_child_rows_with_the_same_values():
    """In scoring, the trie softmax runs a level's head only on rows that allow several
    codes (a lone code's log-prob is 0): the values equal the head run on every row."""
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    model = build_model(
        "item-tiny", identifiers.codebook_sizes, identifiers.prefixes, seed=3, trie_softmax=True
    )
    net = model.model
    rng = np.random.default_rng(0)
    query = torch.as_tensor(rng.normal(size=(4, 5, net.codes.weight.shape[1])), dtype=torch.float32)
    allowed = torch.zeros(4, 5, 6, dtype=torch.bool)
    allowed[..., 1] = True  # one code per row, and several on a few rows
    allowed[0, :2] = allowed[2, 3] = torch.as_tensor(rng.random(6) < 0.7)
    allowed[0, :2, 1] = allowed[2, 3, 1] = allowed[2, 3, 4] = True
    several = allowed.sum(-1) > 1
    seen = []
    hook = net.heads[2].register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    with torch.no_grad():
        skipped = net.level_log_probs(query, 2, allowed)
        every = net._masked_log_softmax(query, 2, allowed)
    hook.remove()
    assert seen[0] == int(several.sum()) == 3  # the head ran on those rows only
    torch.testing.assert_close(skipped, every, atol=1e-6, rtol=0)
    assert (skipped[~several].max(-1).values == 0).all()


@pytest.mark.parametrize("conditional", [True, False])
def test_child_log_probs_are_the_trie_softmax_at_the_children(conditional):
    """Ranking's per-child log-softmax (siblings' logits only) gives the values of the
    masked softmax over the whole codebook at every child of every trie node, per user."""
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    model = build_model(
        "item-tiny",
        identifiers.codebook_sizes,
        identifiers.prefixes,
        seed=3,
        trie_softmax=True,
        conditional=conditional,
    )
    net, tables = model.model, TrieTables.of(identifiers)
    with torch.no_grad():
        net.codes.weight.normal_(0, 1.0)
        hidden = torch.randn(4, net.codes.weight.shape[1])
        queries = model._node_queries(tables)
        for level in range(identifiers.n_levels):
            parent, code = tables.parents[level], tables.codes[level]
            query = hidden[:, None] + queries[level] if conditional else hidden[:, None]
            child = net.child_log_probs(query, level, parent, code)
            every = net._masked_log_softmax(query, level, tables.allowed[level])
            every = every.expand(-1, len(queries[level]), -1)[:, parent, code]
            torch.testing.assert_close(child, every, atol=1e-6, rtol=1e-6)
            sums = torch.zeros(4, len(queries[level])).index_add_(1, parent, child.exp())
            torch.testing.assert_close(sums, torch.ones_like(sums))  # each node's children


def test_a_trie_softmax_run_refines_serves_and_grows(tmp_path, caplog):
    """Through a refinement round, evaluation, loading, beam-search serving and new items,
    the model's distribution stays over the catalogue's identifiers of the moment; the run
    warns that refinement's evidence is not what this softmax trains."""
    settings = {**ITEM_RUN, "rounds": 1, "network.options": {"trie_softmax": True}}
    with caplog.at_level(logging.WARNING):
        result = siit.train(output_dir=tmp_path, **settings)
    assert "logits the trie softmax never trains" in caplog.text
    assert result.identifiers.is_unique()
    assert siit.evaluate(tmp_path)["ndcg@10"] == pytest.approx(result.test["ndcg@10"], abs=1e-9)
    rec = siit.load(tmp_path)
    assert rec.model.model.trie_softmax
    prompt, _ = rec._tasks.seqrec(np.array([[0, 1, 2]]))
    total = rec.model.item_log_probs(prompt, rec.tables).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-6)
    siit.add_items(tmp_path, {"new-1": {"title": "a new thing"}})
    grown = siit.load(tmp_path)
    prompt, _ = grown._tasks.seqrec(np.array([[0, 1, 2]]))
    total = grown.model.item_log_probs(prompt, grown.tables).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-6)
    assert grown.model.item_log_probs(prompt, grown.tables).shape[1] == len(grown.item_ids)


def test_the_dense_residual_needs_the_dense_head_and_grows_with_the_catalogue(tmp_path):
    """A residual row per item, sized by the trie in use: a grown catalogue adds zero rows
    (new items start from their identifier-built vectors) and keeps the trained ones, a
    saved model loads with its rows and grows again with the catalogue."""
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    with pytest.raises(ValueError, match="dense_residual needs dense_head"):
        build_model(
            "item-tiny", identifiers.codebook_sizes, identifiers.prefixes, dense_residual=True
        )
    model = build_model(
        "item-tiny",
        identifiers.codebook_sizes,
        identifiers.prefixes,
        dense_head=True,
        dense_residual=True,
    )
    model.use_trie(TrieTables.of(identifiers))
    trained = torch.randn(identifiers.n_items, model.model.residual.shape[1])
    with torch.no_grad():
        model.model.residual.copy_(trained)
    model.save(tmp_path)
    loaded = load_model(tmp_path)
    torch.testing.assert_close(loaded.model.residual.detach(), trained)
    free = np.setdiff1d(np.arange(216), identifiers.codes @ [36, 6, 1])[:2]
    grown = siit.Identifiers(
        np.concatenate([identifiers.codes, np.stack([free // 36, free // 6 % 6, free % 6], 1)]),
        identifiers.codebook_sizes,
        [*identifiers.item_ids, "new-1", "new-2"],
        identifiers.prefixes,
    )
    loaded.use_trie(TrieTables.of(grown))
    rows = loaded.model.residual.detach()
    assert rows.shape[0] == identifiers.n_items + 2
    torch.testing.assert_close(rows[: identifiers.n_items], trained)
    assert (rows[identifiers.n_items :] == 0).all()
    assert loaded.model.residual.requires_grad


@pytest.mark.parametrize("residual", [False, True], ids=["dense-head", "dense-residual"])
def test_a_dense_head_run_refines_serves_and_grows(tmp_path, residual):
    """A dense head (with or without its residual) trains through a refinement round to
    unique identifiers; evaluation repeats the run's test figures; served by beam search,
    the beams' items are ranked by their code and dense log-probs together, as exact
    scoring ranks them; new items join its catalogue."""
    options = {"dense_head": True, "dense_residual": residual}
    settings = {**ITEM_RUN, "rounds": 1, "network.options": options}
    result = siit.train(output_dir=tmp_path, **settings)
    assert result.identifiers.is_unique()
    assert siit.evaluate(tmp_path)["ndcg@10"] == pytest.approx(result.test["ndcg@10"], abs=1e-9)
    rec = siit.load(tmp_path)
    assert rec.model.model.dense_head
    histories = [[0, 1, 2], [3, 4]]
    rec.exact = True
    exact_items, exact_scores = rec.recommend(histories, k=5)
    rec.exact = False
    beam_items, beam_scores = rec.recommend(histories, k=5, batch_size=1)
    np.testing.assert_allclose(np.sort(beam_scores, 1)[:, ::-1], beam_scores)  # ranked again
    prompt, _ = rec._tasks.seqrec(np.array([[0, 1, 2]]))
    every = rec.model.item_log_probs(prompt, rec.tables)[0].double().numpy()
    ids = np.asarray(rec.item_ids)
    for items, scores in ((exact_items[0], exact_scores[0]), (beam_items[0], beam_scores[0])):
        index = [int(np.flatnonzero(ids == item)[0]) for item in items]
        np.testing.assert_allclose(scores, every[index], atol=1e-5)
    siit.add_items(tmp_path, {"new-1": {"title": "a new thing"}})
    grown = siit.load(tmp_path)
    prompt, _ = grown._tasks.seqrec(np.array([[0, 1, 2]]))
    assert grown.model.item_log_probs(prompt, grown.tables).shape[1] == len(grown.item_ids)
    if residual:  # trained rows for the run's items, a zero one for the new item
        rows = grown.model.model.residual.detach()
        assert len(rows) == len(grown.item_ids) and (rows[-1] == 0).all() and rows.any()
