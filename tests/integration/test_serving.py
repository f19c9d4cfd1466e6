"""Serving a finished run: histories are batches of item ids, ints and strings alike;
indices only on request; ambiguous input is refused, never guessed."""

import numpy as np
import pytest
import siit
from tiny import TINY_RUN, tiny_dataset


def numbered_dataset() -> siit.Dataset:
    """The tiny data with numeric item ids that are not the items' indices (as MovieLens)."""
    base = tiny_dataset()
    sequences = [base.sequence(u) for u in range(base.n_users)]
    ids = [str(500 - 7 * i) for i in range(base.n_items)]
    return siit.Dataset(sequences, base.item_text, item_ids=ids, name="numbered")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "run"
    data = numbered_dataset()
    siit.train(data, output_dir=out, **{**TINY_RUN, "rounds": 0})
    return out


@pytest.fixture(scope="module")
def rec(run):
    return siit.load(run)


def test_int_and_string_ids_name_the_same_items(rec):
    """`1` and `"1"` are the same item id, in lists and numpy arrays (ids here are not
    indices, so reading ints as indices would answer differently)."""
    ids = np.asarray(rec.item_ids)
    as_int = [[int(i) for i in ids[[3, 7, 11]]], [int(ids[5])]]
    as_str = [[str(i) for i in h] for h in as_int]
    as_array = [np.asarray(h, dtype=np.int32) for h in as_int]
    a, sa = rec.recommend(as_int, k=5)
    b, sb = rec.recommend(as_str, k=5)
    c, sc = rec.recommend(as_array, k=5)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert np.array_equal(sa, sb) and np.array_equal(sa, sc)
    d, _ = rec.recommend(np.asarray(as_int[0])[None, :], k=5)  # a 2-D array is a batch
    assert np.array_equal(d[0], a[0])


def test_indices_are_read_only_when_asked(rec):
    ids = np.asarray(rec.item_ids)
    rows = [[3, 7, 11], [5]]
    by_index, s1 = rec.recommend(rows, k=5, indices=True)
    by_id, s2 = rec.recommend([[ids[i] for i in r] for r in rows], k=5)
    assert np.array_equal(by_index, by_id) and np.array_equal(s1, s2)
    with pytest.raises(TypeError, match="indices=True takes integer item indices"):
        rec.recommend([["3"]], indices=True)


def test_a_flat_list_is_refused_not_split(rec):
    first = rec.item_ids[0]
    for flat in ([first, rec.item_ids[1]], [int(first)], np.asarray([int(first)]), first):
        with pytest.raises(TypeError, match="histories"):
            rec.recommend(flat, k=3)
    with pytest.raises(TypeError, match="floats"):
        rec.recommend([[1.0, 2.0]])
    # a history that is not a list of ids is refused by name, not read as a scalar id
    for bad in ([None], [[first], {"a": 1}], [[[first]]]):
        with pytest.raises(TypeError, match=r"histories\[\d\] must be a list of item ids"):
            rec.recommend(bad, k=3)


def test_single_history_api_matches_the_batch(rec, run):
    history = [int(i) for i in rec.item_ids[2:6]]
    single = siit.recommend(history, k=4, run=run)
    batch, scores = rec.recommend([history], k=4)
    assert [i for i, _ in single] == batch[0].tolist()
    assert not set(map(str, history)) & {i for i, _ in single}  # serving excludes the history
    with pytest.raises(TypeError, match="siit.load"):
        siit.recommend([history], run=run)
    with pytest.raises(TypeError, match="list of item ids"):
        siit.recommend("12", run=run)


def test_a_wrong_run_directory_says_what_a_run_is(run, tmp_path):
    with pytest.raises(ValueError, match=r"nope is not a run directory: .* holds config.json"):
        siit.load(tmp_path / "nope")
    parent = run.parent
    with pytest.raises(ValueError, match=rf"holds 1 run\(s\): {run.name}"):
        siit.load(parent)
    with pytest.raises(ValueError, match="not a run directory"):
        siit.evaluate(tmp_path)
    with pytest.raises(ValueError, match="not a run directory"):
        siit.train(resume=tmp_path / "nope")
