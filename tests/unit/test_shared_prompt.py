"""The shared-prompt beam steps (one copy of the prompt's keys/values per user) against
transformers' per-beam cache: the same beams, items and scores, on every architecture that
has them, including grouped-query attention."""

import numpy as np
import pytest
import siit
from siit.decoding import TrieTables, beam_search, candidate_log_probs
from siit.models import build_model
from siit.tasks import TaskBuilder
from tiny import random_identifiers, tiny_dataset

ARCHS = {
    "gpt-tiny": {},
    "llama-tiny": {},
    "llama-gqa": {"num_attention_heads": 4, "num_key_value_heads": 2},
    "t5-tiny": {},
}


@pytest.fixture(scope="module", params=list(ARCHS))
def setup(request):
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=6, seed=1)
    name = "llama-tiny" if request.param == "llama-gqa" else request.param
    model = build_model(
        name,
        identifiers.codebook_sizes,
        identifiers.prefixes,
        siit.item_texts(dataset),
        text_vocab_size=200,
        seed=3,
        **ARCHS[request.param],
    )
    model.model.double()  # float64: the two paths differ only by summation order
    tasks = TaskBuilder(model, dataset, identifiers)
    # prompts of different lengths: left padding is masked in the shared keys too
    prompt, _ = tasks.seqrec(dataset.valid_samples().histories[:12])
    assert (prompt < 0).any()
    return model, identifiers, prompt


@pytest.mark.parametrize("beams", [1, 7, 40])
def test_shared_prompt_beams_equal_the_per_beam_cache(setup, beams):
    model, identifiers, prompt = setup
    tables = TrieTables.of(identifiers)
    shared = beam_search(model, prompt, beams, tables)
    copied = beam_search(model, prompt, beams, tables, shared_prompt=False)
    assert np.array_equal(shared.items, copied.items)
    assert np.array_equal(shared.codes, copied.codes)
    np.testing.assert_allclose(shared.scores, copied.scores, rtol=0, atol=1e-10)


def test_unconstrained_shared_search_equals_the_per_beam_cache(setup):
    model, _, prompt = setup
    shared = beam_search(model, prompt, 9)
    copied = beam_search(model, prompt, 9, shared_prompt=False)
    assert np.array_equal(shared.codes, copied.codes)
    np.testing.assert_allclose(shared.scores, copied.scores, rtol=0, atol=1e-10)


def test_shared_candidate_scores_equal_the_per_beam_cache(setup):
    model, identifiers, prompt = setup
    rng = np.random.default_rng(0)
    codes = identifiers.codes[rng.integers(0, identifiers.n_items, (len(prompt), 5))]
    shared = candidate_log_probs(model, prompt, codes)
    copied = candidate_log_probs(model, prompt, codes, shared_prompt=False)
    np.testing.assert_allclose(shared, copied, rtol=0, atol=1e-10)
