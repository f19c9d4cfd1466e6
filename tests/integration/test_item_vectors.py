"""item2id from text embeddings (`item2id_input="embedding"`): prompts reach each item's
vector through virtual token ids, a learned projection turns it into input positions, and
the projection trains, saves and loads with the model."""

import json

import numpy as np
import pytest
import siit
import torch
from siit.models import PROJECTION, PROJECTION_FILE, RecModel
from siit.tasks import TaskBuilder
from tiny import TINY_RUN, random_identifiers, tiny_dataset, tiny_model

DIM = 12


def _with_vectors(name, seed=0):
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset)
    rec = tiny_model(name, identifiers, dataset)
    rec.add_item_projection(DIM, 2)
    vectors = np.random.default_rng(seed).normal(size=(dataset.n_items, DIM))
    rec.set_item_vectors(vectors)
    return rec, TaskBuilder(rec, dataset, identifiers), vectors


def _item2id_log_probs(rec, tasks, items):
    prompt, target = tasks.item2id(np.asarray(items))
    with rec.evaluating():
        return rec.token_log_probs(prompt, target)


@pytest.mark.parametrize("name", ["gpt-tiny", "t5-tiny"])
def test_item2id_prompts_read_the_item_vector_not_its_words(name):
    rec, tasks, vectors = _with_vectors(name)
    prompt, _ = tasks.item2id(np.array([3, 5]))
    virtual = prompt >= rec.vector_base
    assert (virtual.sum(1) == 2).all()  # two positions per item, nothing else item-specific
    assert np.array_equal(prompt[~virtual].reshape(2, -1)[0], prompt[~virtual].reshape(2, -1)[1])
    assert np.array_equal(prompt[virtual].reshape(2, 2), rec.vector_ids(np.array([3, 5])))
    # the same identifier scored from item 3's prompt moves when item 3's vector moves,
    # and equals item 5's once both items carry the same vector
    target = np.repeat(tasks.code_tokens[3:4], 2, axis=0)
    with rec.evaluating():
        before = rec.token_log_probs(prompt, target)
        vectors[3] = vectors[5]
        rec.set_item_vectors(vectors)
        after = rec.token_log_probs(prompt, target)
    assert not torch.allclose(before[0], after[0])
    assert torch.allclose(before[1], after[1])
    assert torch.allclose(after[0], after[1], atol=1e-6)


def test_the_item2id_loss_trains_the_projection():
    rec, tasks, _ = _with_vectors("gpt-tiny")
    prompt, target = tasks.item2id(np.arange(6))
    rec.token_losses(rec.model, prompt, target).sum().backward()
    grad = getattr(rec.model, PROJECTION).weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert any(p is getattr(rec.model, PROJECTION).weight for p in rec.model.parameters())


def test_a_saved_model_keeps_its_projection(tmp_path):
    rec, tasks, vectors = _with_vectors("gpt-tiny")
    rec.save(tmp_path)
    meta = json.loads((tmp_path / "siit_model.json").read_text())
    assert (meta["vector_tokens"], meta["vector_dim"]) == (2, DIM)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if PROJECTION in k]  # not an architecture weight
    loaded = RecModel.load(tmp_path)
    loaded.set_item_vectors(vectors)
    expected = _item2id_log_probs(rec, tasks, [1, 2, 3])
    assert torch.allclose(_item2id_log_probs(loaded, tasks, [1, 2, 3]), expected)
    (tmp_path / PROJECTION_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=PROJECTION_FILE):
        RecModel.load(tmp_path)


def test_bad_item_vectors_fail_clearly():
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset)
    rec = tiny_model("gpt-tiny", identifiers, dataset)
    with pytest.raises(ValueError, match="no item vector projection"):
        rec.set_item_vectors(np.zeros((3, DIM)))
    rec.add_item_projection(DIM, 2)
    with pytest.raises(ValueError, match="already has"):
        rec.add_item_projection(DIM, 2)
    with pytest.raises(ValueError, match="not set"):
        rec.vector_ids(np.array([0]))
    with pytest.raises(ValueError, match=rf"must be \(n, {DIM}\)"):
        rec.set_item_vectors(np.zeros((3, DIM + 1)))
    rec.set_item_vectors(np.zeros((3, DIM)))
    with pytest.raises(ValueError, match="not set for these items"):
        rec.vector_ids(np.array([3]))


def test_a_run_with_embedding_input_refines_and_adds_items(tmp_path):
    settings = {**TINY_RUN, "model": "gpt-tiny", "network.item2id_input": "embedding"}
    result = siit.train(tiny_dataset(), output_dir=tmp_path, **settings)
    assert result.identifiers.is_unique() and len(result.rounds) == 2
    assert result.rounds[1].refine is not None
    assert (tmp_path / "best" / "model" / PROJECTION_FILE).is_file()
    assert result.model.vector_tokens == 4
    added = siit.add_items(tmp_path, {"new-0": {"title": "red item 0 of group 1"}})
    assert added.identifiers.is_unique() and added.identifiers.n_items == tiny_dataset().n_items + 1
