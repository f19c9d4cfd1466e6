"""What `siit.models` promises: presets of both families build the kind they name, identifier
tokens are spelled as `Identifiers` spells them, with consecutive ids per level, a saved
model loads back to the same scores, and bad names or options fail with the alternatives."""

import json

import numpy as np
import pytest
import siit
import torch
from siit.config import is_item_level
from siit.decoding import TrieTables
from siit.models import (
    ITEM_PRESETS,
    PRESETS,
    ItemRecModel,
    RecModel,
    build_model,
    check_model,
    is_preset,
    load_model,
)
from siit.tasks import TaskBuilder
from tiny import random_identifiers, tiny_dataset, tiny_model


@pytest.fixture(scope="module")
def identifiers():
    return random_identifiers(tiny_dataset(), levels=3, codebook_size=6, seed=2)


def test_presets_are_named_by_their_family():
    assert all(is_item_level(name) for name in ITEM_PRESETS)
    assert not any(is_item_level(name) for name in PRESETS)
    assert is_preset("gpt-mini") and is_preset("item-mini") and not is_preset("gpt-huge")


@pytest.mark.parametrize(
    "name, cls, kind",
    [
        ("t5-tiny", RecModel, "seq2seq"),
        ("gpt-tiny", RecModel, "causal"),
        ("llama-tiny", RecModel, "causal"),
        ("item-tiny", ItemRecModel, "item"),
    ],
)
def test_a_preset_builds_its_family(name, cls, kind, identifiers):
    model = tiny_model(name, identifiers, tiny_dataset())
    assert isinstance(model, cls) and model.kind == kind
    assert model.codebook_sizes == identifiers.codebook_sizes
    assert model.n_levels == identifiers.n_levels


def test_identifier_tokens_are_the_identifiers_spelling(identifiers):
    model = tiny_model("gpt-tiny", identifiers, tiny_dataset())
    ids = model.code_tokens(identifiers.codes[:5])
    for item, row in enumerate(ids):
        assert model.tokenizer.convert_ids_to_tokens(row.tolist()) == identifiers.tokens(item)
    # consecutive ids per level: level l's code c is level_offsets[l] + c
    every = model.tokenizer.convert_tokens_to_ids(identifiers.vocabulary())
    offsets = np.cumsum([0, *identifiers.codebook_sizes[:-1]])
    expected = np.repeat(model.level_offsets - offsets, identifiers.codebook_sizes)
    np.testing.assert_array_equal(every, expected + np.arange(len(every)))


@pytest.mark.parametrize("name", ["t5-tiny", "gpt-tiny", "item-tiny"])
def test_a_saved_model_loads_to_the_same_scores(name, identifiers, tmp_path):
    dataset = tiny_dataset()
    model = tiny_model(name, identifiers, dataset, seed=3)
    tasks = TaskBuilder(model, dataset, identifiers)
    # each family's training layout: windows (decoder-only, item-level) or prefix samples
    samples = dataset.train_samples() if model.kind == "seq2seq" else dataset.train_windows(8)
    prompt, target = tasks.batch("seqrec", np.arange(6), samples)
    model.save(tmp_path)
    again = load_model(tmp_path)
    assert type(again) is type(model)
    if isinstance(again, ItemRecModel):  # its softmax runs over the identifiers in use
        again.use_trie(TrieTables.of(identifiers))
    with torch.no_grad(), model.evaluating(), again.evaluating():
        mine = model.token_losses(model.model, prompt, target)
        theirs = again.token_losses(again.model, prompt, target)
    torch.testing.assert_close(mine, theirs)


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved siit model"):
        load_model(tmp_path)


def test_item_mini_has_a_dense_head_and_older_saved_models_load_without_one(identifiers, tmp_path):
    sizes, prefixes = identifiers.codebook_sizes, identifiers.prefixes
    assert build_model("item-mini", sizes, prefixes).model.dense_head
    assert not build_model("item-small", sizes, prefixes).model.dense_head
    assert not build_model("item-mini", sizes, prefixes, dense_head=False).model.dense_head
    # a model saved before item-mini had the head records no dense_head: it loads as trained
    model = build_model("item-mini", sizes, prefixes, dense_head=False)
    model.save(tmp_path)
    meta_file = tmp_path / "siit_model.json"
    meta = json.loads(meta_file.read_text())
    assert meta["options"]["dense_head"] is False
    del meta["options"]["dense_head"]
    meta_file.write_text(json.dumps(meta))
    assert not load_model(tmp_path).model.dense_head


def test_unknown_item_level_options_are_named(identifiers):
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden'\].*known: .*'hidden'"):
        build_model("item-tiny", identifiers.codebook_sizes, identifiers.prefixes, hiden=8)


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(dense_head="yes"), "dense_head must be bool, got 'yes'"),
        (dict(trie_softmax=1), "trie_softmax must be bool, got 1"),
        (dict(hidden=64.0), "hidden must be int, got 64.0"),
        (dict(hidden=True), "hidden must be int, got True"),
        (dict(dropout="0.3"), "dropout must be float, got '0.3'"),
    ],
)
def test_item_level_options_of_the_wrong_type_are_refused(identifiers, option, message):
    with pytest.raises(ValueError, match=message):
        build_model("item-tiny", identifiers.codebook_sizes, identifiers.prefixes, **option)
    # an int where a float is expected is a number all the same
    build_model("item-tiny", identifiers.codebook_sizes, identifiers.prefixes, dropout=0)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(dense_head="no"), "dense_head must be bool, got 'no'"),
        (dict(text_input="no"), "text_input must be true, false or 'auto', got 'no'"),
        (dict(text_input=1), "text_input must be true, false or 'auto', got 1"),
        (dict(text_prior="false"), "text_prior must be true or false, got 'false'"),
    ],
)
def test_train_refuses_bad_model_options_before_fitting_identifiers(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        siit.train(
            dataset="synthetic",
            model="item-tiny",
            network={"options": options},
            output_dir=tmp_path / "run",
            progress=False,
        )
    assert not (tmp_path / "run").exists()  # refused before the run directory and the tokenizer


def test_an_unknown_model_name_lists_the_presets(monkeypatch):
    import transformers

    def offline(name, *args, **kwargs):
        raise OSError(f"{name} is not on this machine")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(ValueError, match=r"'no/such-model' is not a preset \(t5-small.*item-mini"):
        check_model("no/such-model")
    check_model("item-mini")  # presets and directories pass without the hub
    check_model(str(siit.__path__[0]))
