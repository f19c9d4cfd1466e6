"""What `TaskBuilder` promises: prompts and targets of seqrec, item2id and id2item built from
the current identifiers, padded with -1 (prompts on the left, targets on the right), and
rebuilt from new identifiers without anything else changing."""

import numpy as np
import pytest
import siit
from siit.tasks import TaskBuilder, pack_left, trim
from tiny import random_identifiers, tiny_dataset, tiny_model


@pytest.fixture(scope="module", params=["t5-tiny", "gpt-tiny"])
def built(request):
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=8, seed=4)
    model = tiny_model(request.param, identifiers, dataset)
    return dataset, identifiers, model, TaskBuilder(model, dataset, identifiers)


def _tokens(model, identifiers, item):
    return model.code_tokens(identifiers.codes[item : item + 1])[0]


def test_padding_moves_left_and_empty_columns_go():
    rows = np.array([[5, -1, 6, -1], [-1, -1, 7, -1]])
    assert pack_left(rows).tolist() == [[-1, -1, 5, 6], [-1, -1, -1, 7]]
    assert trim(pack_left(rows), left=True).tolist() == [[5, 6], [-1, 7]]
    assert trim(np.array([[1, -1, -1], [2, 3, -1]]), left=False).tolist() == [[1, -1], [2, 3]]


def test_a_seqrec_prompt_spells_the_history_and_the_target_is_the_next_identifier(built):
    dataset, identifiers, model, tasks = built
    histories = np.array([[-1, 3, 9], [4, 0, 2]])
    prompt, target = tasks.seqrec(histories, np.array([7, 1]))
    np.testing.assert_array_equal(target[0], _tokens(model, identifiers, 7))
    np.testing.assert_array_equal(target[1], _tokens(model, identifiers, 1))
    # the history's identifier tokens appear in order, after the prompt's own prefix
    row = prompt[0][prompt[0] >= 0].tolist()
    spelled = np.concatenate([_tokens(model, identifiers, 3), _tokens(model, identifiers, 9)])
    start = next(i for i in range(len(row)) if row[i : i + len(spelled)] == spelled.tolist())
    prefix = tasks.templates["seqrec"][0]
    assert row[: len(prefix)] == prefix.tolist() and start == len(prefix)
    # left padding: the shorter history's prompt starts later, both end on the same column
    assert (prompt[0] < 0).sum() == (prompt[1] < 0).sum() + model.n_levels
    assert (prompt[:, -1] >= 0).all()


def test_new_identifiers_change_the_tokens_of_every_task(built):
    dataset, identifiers, model, tasks = built
    items = np.array([0, 5])
    old_prompt, old_target = tasks.item2id(items)
    moved = random_identifiers(dataset, levels=3, codebook_size=8, seed=5)
    tasks.set_identifiers(moved)
    try:
        prompt, target = tasks.item2id(items)
        np.testing.assert_array_equal(prompt, old_prompt)  # the item's words stay
        np.testing.assert_array_equal(target, model.code_tokens(moved.codes[items]))
        assert not np.array_equal(target, old_target)
        id_prompt, _ = tasks.id2item(items)
        spelled = model.code_tokens(moved.codes[items])
        for row, tokens in zip(id_prompt, spelled, strict=True):
            assert set(tokens.tolist()) <= set(row.tolist())
    finally:
        tasks.set_identifiers(identifiers)


def test_id2item_targets_the_title_and_ends_it(built):
    dataset, identifiers, model, tasks = built
    prompt, target = tasks.id2item(np.array([2]))
    title = model.text_ids([dataset.item_text[2]["title"]], 24)[0]
    title = title[title >= 0]
    row = target[0][target[0] >= 0]
    np.testing.assert_array_equal(row[:-1], title)
    assert row[-1] == model.eos_id


def test_items_without_text_sit_out_the_alignment_tasks():
    base = tiny_dataset()
    text = [dict(t) for t in base.item_text]
    text[3], text[8] = {}, {"description": "no title here"}
    dataset = siit.Dataset([base.sequence(u) for u in range(base.n_users)], text)
    identifiers = random_identifiers(dataset, levels=3, codebook_size=8)
    tasks = TaskBuilder(tiny_model("t5-tiny", identifiers, dataset), dataset, identifiers)
    assert 3 not in tasks.alignment_items("item2id") and 8 in tasks.alignment_items("item2id")
    assert {3, 8}.isdisjoint(tasks.alignment_items("id2item"))


def test_decoder_only_windows_target_every_later_item(built):
    dataset, identifiers, model, tasks = built
    if model.kind != "causal":
        pytest.skip("windows are the decoder-only layout")
    windows = np.array([[1, 2, 3], [4, 5, -1]])
    prompt, target = tasks.seqrec_windows(windows)
    np.testing.assert_array_equal(
        target[0], np.concatenate([_tokens(model, identifiers, 2), _tokens(model, identifiers, 3)])
    )
    np.testing.assert_array_equal(target[1][: model.n_levels], _tokens(model, identifiers, 5))
    assert (target[1][model.n_levels :] == -1).all()
    np.testing.assert_array_equal(prompt[0][-model.n_levels :], _tokens(model, identifiers, 1))


def test_item_level_rows_carry_codes_then_the_item():
    dataset = tiny_dataset()
    identifiers = random_identifiers(dataset, levels=3, codebook_size=8, seed=4)
    model = tiny_model("item-tiny", identifiers, dataset)
    tasks = TaskBuilder(model, dataset, identifiers)
    rows, targets = tasks.seqrec_windows(np.array([[6, 2, -1], [1, 4, 9]]))
    assert rows.shape == (2, 2, 4) and targets.shape == (2, 2, 3)
    np.testing.assert_array_equal(rows[1, 1], [*model.code_tokens(identifiers.codes[[4]])[0], 4])
    np.testing.assert_array_equal(targets[1, 1], model.code_tokens(identifiers.codes[[9]])[0])
    np.testing.assert_array_equal(rows[0, 1], [*model.code_tokens(identifiers.codes[[2]])[0], 2])
    assert (targets[0, 1] == -1).all()  # nothing follows item 2
    assert len(tasks.alignment_items("item2id")) == 0  # item-level models read no text
