"""Constrained beam search: valid distinct items, agreement with exact scoring, with
`generate` + the LogitsProcessor and with the public dict-trie baseline."""

import numpy as np
import pytest
import siit
import torch
from hypothesis import given
from hypothesis import strategies as st
from siit.decoding import (
    TrieLogitsProcessor,
    TrieTables,
    beam_search,
    candidate_log_probs,
    dict_trie_allowed_fn,
    exact_scores,
    generate,
)
from siit.tasks import TaskBuilder
from tiny import random_identifiers, tiny_dataset, tiny_model

MODELS = ["t5-tiny", "llama-tiny", "gpt-tiny"]


@pytest.fixture(scope="module", params=MODELS)
def setup(request):
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    model = tiny_model(request.param, identifiers, dataset)
    tasks = TaskBuilder(model, dataset, identifiers)
    samples = dataset.valid_samples()
    prompt, _ = tasks.seqrec(samples.histories[:12])
    return model, identifiers, prompt


@pytest.mark.parametrize("dense_limit", [0, 1 << 22])
def test_tables_match_allowed_mask(dense_limit):
    rng = np.random.default_rng(0)
    sizes = [5, 7, 3, 4]
    codes = np.unique(rng.integers(0, sizes, size=(150, 4)), axis=0)
    trie = siit.IdentifierTrie(codes, sizes)
    tables = TrieTables(trie, "cpu", dense_limit)
    for level in range(4):
        prefixes = codes[rng.integers(0, len(codes), 40), :level]
        node = tables.walk(torch.as_tensor(prefixes))
        assert (node >= 0).all()
        child = tables.children(node, level)
        assert np.array_equal((child >= 0).numpy(), trie.allowed_mask(prefixes))
    # prefixes that are not in the trie walk to -1, as does a code out of range
    assert tables.walk(torch.tensor([[sizes[0]]]))[0] == -1
    for level in (2, 3):
        grid = np.stack(np.meshgrid(*map(np.arange, sizes[:level]), indexing="ij"), -1)
        grid = grid.reshape(-1, level)
        absent = grid[~np.isin(_keys(grid, sizes), _keys(codes[:, :level], sizes))]
        assert len(absent), level  # 150 random identifiers leave these prefixes unused
        assert (tables.walk(torch.as_tensor(absent)) == -1).all()


def _keys(prefixes: np.ndarray, sizes: list[int]) -> np.ndarray:
    """One integer per prefix (mixed radix), to compare sets of prefixes."""
    key = np.zeros(len(prefixes), np.int64)
    for level in range(prefixes.shape[1]):
        key = key * sizes[level] + prefixes[:, level]
    return key


def test_beams_are_valid_distinct_items(setup):
    model, identifiers, prompt = setup
    tables = TrieTables.of(identifiers)
    found = beam_search(model, prompt, 20, tables)
    assert found.items.shape == (len(prompt), 20)
    assert (found.items >= 0).all()
    for row in found.items:
        assert len(set(row.tolist())) == 20
    # items and codes agree, scores are ranked
    assert np.array_equal(identifiers.codes[found.items], found.codes)
    assert (np.diff(found.scores, axis=1) <= 1e-6).all()


def test_beam_scores_are_exact_log_probs(setup):
    model, identifiers, prompt = setup
    found = beam_search(model, prompt, 10, TrieTables.of(identifiers))
    exact = exact_scores(model, prompt, identifiers)
    np.testing.assert_allclose(np.take_along_axis(exact, found.items, 1), found.scores, atol=1e-4)


def test_exhaustive_beam_search_is_exact_ranking(setup):
    """With as many beams as items nothing is pruned: beam search ranks every item exactly
    as teacher-forced scoring does."""
    model, identifiers, prompt = setup
    n = identifiers.n_items
    found = beam_search(model, prompt, n, TrieTables.of(identifiers))
    exact = exact_scores(model, prompt, identifiers)
    np.testing.assert_allclose(np.sort(exact, 1)[:, ::-1], found.scores, atol=1e-4)
    # every item exactly once, and each found item's exact score is the score at its rank
    # (ties may swap items, never scores)
    assert (np.sort(found.items, 1) == np.arange(n)).all()
    np.testing.assert_allclose(np.take_along_axis(exact, found.items, 1), found.scores, atol=1e-4)


def test_excluded_items_never_come_back_and_the_rest_keep_their_order(setup):
    """With as many beams as items, excluding items gives the exact ranking of the rest; a
    repeated excluded item counts once."""
    model, identifiers, prompt = setup
    tables = TrieTables.of(identifiers)
    n = identifiers.n_items
    free = beam_search(model, prompt, n, tables)
    exclude = np.concatenate(
        [free.items[:, :3], free.items[:, :1], np.full((len(prompt), 2), -1)], 1
    )
    found = beam_search(model, prompt, n, tables, exclude=exclude)
    for row, banned in zip(found.items, exclude, strict=True):
        assert not set(row.tolist()) & set(banned[banned >= 0].tolist())
    assert np.array_equal(found.items[:, : n - 3], free.items[:, 3:])
    assert (found.items[:, n - 3 :] == -1).all()
    with pytest.raises(ValueError, match="exclude needs trie tables"):
        beam_search(model, prompt, 10, exclude=exclude)


def test_excluding_a_whole_prefix_leaves_no_beam_empty(setup):
    """Exclude every item but K: the prefixes whose items are all excluded are pruned at
    every level, so K beams find exactly the K allowed items."""
    model, identifiers, prompt = setup
    tables = TrieTables.of(identifiers)
    k = 5
    rng = np.random.default_rng(0)
    allowed = np.stack([rng.choice(identifiers.n_items, k, replace=False) for _ in prompt])
    exclude = np.stack([np.setdiff1d(np.arange(identifiers.n_items), row) for row in allowed])
    found = beam_search(model, prompt, k, tables, exclude=exclude)
    assert np.isfinite(found.scores).all()
    assert [set(r) for r in found.items.tolist()] == [set(r) for r in allowed.tolist()]
    nodes = tables.item_nodes
    assert [int(tables.subtree_items[t].sum()) for t in range(len(nodes))] == [
        identifiers.n_items
    ] * len(nodes)
    assert np.array_equal(tables.leaf_items[nodes[-1]].numpy(), np.arange(identifiers.n_items))


def test_fewer_items_than_beams_pads_with_invalid():
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=2, codebook_size=8, seed=3)
    few = siit.Identifiers(identifiers.codes[:5], identifiers.codebook_sizes)
    model = tiny_model("t5-tiny", identifiers, dataset)
    prompt = np.array([[3, 4, 5]])
    found = beam_search(model, prompt, 8, TrieTables.of(few))
    assert sorted(found.items[0, :5].tolist()) == list(range(5))
    assert (found.items[0, 5:] == -1).all() and np.isneginf(found.scores[0, 5:]).all()


def test_logits_processor_and_dict_baseline_agree_with_beam_search(setup):
    model, identifiers, prompt = setup
    tables = TrieTables.of(identifiers)
    start = 1 if model.kind == "seq2seq" else prompt.shape[1]
    ours = beam_search(model, prompt, 10, tables)
    processed = generate(
        model, prompt, 10, logits_processor=[TrieLogitsProcessor(tables, model, start)]
    )
    baseline = generate(
        model, prompt, 10, prefix_allowed_tokens_fn=dict_trie_allowed_fn(identifiers, model, start)
    )
    np.testing.assert_allclose(processed.scores, ours.scores, atol=1e-4)
    assert np.array_equal(processed.codes, ours.codes)
    # the public baseline normalizes over the whole vocabulary, so its ranking may differ
    # from the level softmax; its beams are still distinct valid identifiers
    trie = siit.IdentifierTrie(identifiers.codes, identifiers.codebook_sizes)
    items = trie.lookup(baseline.codes.reshape(-1, 3)).reshape(len(prompt), -1)
    assert (items >= 0).all()
    assert all(len(set(row)) == row.size for row in items)


def test_unconstrained_search_stays_in_each_level(setup):
    model, identifiers, prompt = setup
    found = beam_search(model, prompt, 15)
    assert found.items is None
    assert ((found.codes >= 0) & (found.codes < np.array(identifiers.codebook_sizes))).all()
    for row in found.codes:
        assert len({tuple(c) for c in row.tolist()}) == 15


def test_penalty_moves_beams_off_penalized_codes(setup):
    model, identifiers, prompt = setup
    plain = beam_search(model, prompt, 5)
    top = int(plain.codes[0, 0, 0])
    penalty = [torch.zeros(s) for s in identifiers.codebook_sizes]
    penalty[0][top] = 1e4
    moved = beam_search(model, prompt, 5, penalty=penalty)
    assert (moved.codes[:, :, 0] != top).all()


@given(st.integers(1, 4), st.integers(2, 9), st.integers(0, 1000))
def test_any_trie_gives_valid_distinct_items(levels, size, seed):
    rng = np.random.default_rng(seed)
    n = int(min(size**levels, rng.integers(1, 30)))
    space = np.stack(
        np.unravel_index(rng.choice(size**levels, n, replace=False), [size] * levels), 1
    )
    model = _model_for(levels, size)
    prompt = rng.integers(3, 20, size=(3, 4))
    k = int(rng.integers(1, 12))
    found = beam_search(
        model,
        prompt,
        k,
        TrieTables(siit.IdentifierTrie(space, [size] * levels), "cpu", int(rng.integers(0, 64))),
    )
    width = min(k, n)
    assert (found.items[:, :width] >= 0).all() and (found.items[:, width:] < 0).all()
    for row in found.items:
        valid = row[row >= 0]
        assert len(set(valid.tolist())) == len(valid)


_MODELS: dict = {}


def _model_for(levels, size):
    if (levels, size) not in _MODELS:
        ids = siit.Identifiers(np.zeros((1, levels), np.int64), [size] * levels)
        _MODELS[levels, size] = tiny_model("t5-tiny", ids, tiny_dataset())
    return _MODELS[levels, size]


def test_identifier_scores_are_the_level_softmax_of_the_full_logits(setup):
    """Decoder-only models score identifier targets from the last hidden states and the
    identifier rows of the output layer only; that must equal the level softmax of the
    model's own full-vocabulary logits (for every model kind)."""
    model, identifiers, prompt = setup
    target = model.code_tokens(identifiers.codes[: len(prompt)])
    fast = model.token_log_probs(prompt, target)
    with model.evaluating(), torch.no_grad():
        inputs = model.inputs(prompt, target)
        if model.kind == "seq2seq":
            logits = model.model(**inputs).logits
        else:
            logits = model.model(**inputs).logits[:, -target.shape[1] - 1 : -1]
        expected = torch.stack(
            [
                model.level_log_probs(logits[:, t], t).gather(
                    1, torch.as_tensor(identifiers.codes[: len(prompt), t : t + 1])
                )[:, 0]
                for t in range(3)
            ],
            1,
        )
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)


def test_candidate_log_probs_equal_teacher_forcing(setup):
    """Scoring K candidates on copies of one prompt's cache gives the same log-probs as
    teacher forcing each candidate after its own copy of the prompt."""
    model, identifiers, prompt = setup
    rng = np.random.default_rng(0)
    k = 4
    codes = identifiers.codes[rng.integers(0, identifiers.n_items, (len(prompt), k))]
    found = candidate_log_probs(model, prompt, codes)
    target = model.code_tokens(codes.reshape(-1, codes.shape[-1]))
    with model.evaluating(), torch.no_grad():
        forced = model.token_log_probs(np.repeat(prompt, k, 0), target).sum(1)
    np.testing.assert_allclose(found, forced.view(len(prompt), k).cpu().numpy(), atol=1e-4)
