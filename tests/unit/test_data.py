"""`siit.Dataset`: the LC-Rec/LETTER JSON loader, bad input, and the leave-one-out split."""

import json
import logging

import pytest
import siit
from shared_data import shared
from siit.data import Dataset
from synthetic import latent_groups


def write(folder, inter, items, name="Toy"):
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.inter.json").write_text(json.dumps(inter))
    (folder / f"{name}.item.json").write_text(json.dumps(items))
    return folder


ITEMS = {str(i): {"title": f"item {i}"} for i in range(6)}


def test_leave_one_out_split(tmp_path):
    folder = write(tmp_path / "toy", {"u0": [0, 1, 2, 3, 4], "u1": [5, 4, 3]}, ITEMS)
    data = Dataset.from_json(folder, max_history=2)
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 6, 8)
    train = data.train_samples()
    # u0's training part is [0, 1, 2]: samples [0] -> 1 and [0, 1] -> 2; u1's ([5]) has none.
    assert train.targets.tolist() == [1, 2]
    assert train.histories.tolist() == [[-1, 0], [0, 1]]
    valid, test = data.valid_samples(), data.test_samples()
    assert valid.targets.tolist() == [3, 4] and valid.histories.tolist() == [[1, 2], [-1, 5]]
    assert test.targets.tolist() == [4, 3] and test.histories.tolist() == [[2, 3], [5, 4]]
    assert data.item_text[5]["title"] == "item 5"


def test_short_users_are_dropped_and_counted(tmp_path, caplog):
    folder = write(tmp_path / "toy", {"u0": [0, 1, 2], "u1": [3, 4], "u2": [5]}, ITEMS)
    with caplog.at_level(logging.WARNING):
        data = Dataset.from_json(folder)
    assert data.user_ids == ["u0"]
    assert "dropped 2 of 3 users with fewer than 3 interactions (3 interactions)" in caplog.text
    only_short = write(tmp_path / "short", {"u1": [3, 4]}, ITEMS)
    with pytest.raises(ValueError, match="no user has the 3 interactions"):
        Dataset.from_json(only_short)


def test_items_without_text(tmp_path, caplog):
    folder = write(tmp_path / "toy", {"u0": [0, 1, 9, 2], "u1": [1, 2, 3]}, ITEMS)
    with pytest.raises(ValueError, match=r"Toy.inter.json: user 'u0' has item 9, which has no"):
        Dataset.from_json(folder)
    with caplog.at_level(logging.WARNING):
        data = Dataset.from_json(folder, missing_text="drop")
    assert data.sequence(0).tolist() == [0, 1, 2]
    assert "dropped 1 interactions with items that have no text" in caplog.text


def test_malformed_files_are_named(tmp_path):
    folder = write(tmp_path / "toy", {"u0": [0, 1, 2]}, ITEMS)
    (folder / "Toy.item.json").write_text('{"0": {"title": "x"},\n "1": ')
    with pytest.raises(ValueError, match=r"Toy.item.json: malformed JSON at line 2"):
        Dataset.from_json(folder)
    with pytest.raises(ValueError, match="not a folder"):
        Dataset.from_json(tmp_path / "missing")
    (folder / "Other.inter.json").write_text("{}")
    with pytest.raises(ValueError, match="expected one"):
        Dataset.from_json(folder)


def test_synthetic_is_reproducible_and_clustered():
    a, b = Dataset.synthetic(seed=3), Dataset.synthetic(seed=3)
    assert (a.items == b.items).all() and a.item_text == b.item_text
    assert Dataset.synthetic(seed=4).items[:10].tolist() != a.items[:10].tolist()
    groups = latent_groups(a)
    same = groups[a.items[1:]] == groups[a.items[:-1]]
    assert same.mean() > 0.6, "consecutive items mostly share a cluster"
    assert "synthetic-3" in repr(a)


def test_real_office_dataset():
    data = Dataset.from_json(shared("office"))
    assert (data.n_users, data.n_items, data.n_interactions) == (4905, 2420, 53258)
    assert len(data.train_samples()) == 53258 - 3 * 4905
    assert data.train_samples().histories.shape[1] == 20
    assert "4,905 users" in repr(data)


def write_movielens(folder):
    folder.mkdir()
    # user item rating timestamp; user 1 rates items 3 and 1 at the same second
    (folder / "u.data").write_text(
        "1\t2\t5\t100\n2\t1\t3\t50\n1\t3\t4\t200\n1\t1\t4\t200\n2\t3\t1\t60\n2\t2\t2\t70\n"
    )
    flags = "|".join(["0"] * 19)
    (folder / "u.item").write_text(
        "\n".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{flags[:-1]}1" for i in (1, 2, 3))
    )
    return folder


def test_movielens_original_files_sort_by_time_with_stable_ties(tmp_path):
    data = Dataset.load(write_movielens(tmp_path / "ml"))
    assert data.name == "ml-100k" and data.user_ids == ["1", "2"]
    # user 1: item 2 at t=100, then items 3 and 1 at t=200 in file order
    assert [data.item_ids[i] for i in data.sequence(0)] == ["2", "3", "1"]
    assert [data.item_ids[i] for i in data.sequence(1)] == ["1", "3", "2"]
    assert data.item_text[0] == {"title": "Movie 1 (1995)", "categories": "Western"}


def test_movielens_recbole_copy():
    try:
        data = Dataset.load("ml-100k")
    except ValueError as e:
        assert "pip install --no-deps recbole==1.2.1" in str(e)
        pytest.skip("recbole's MovieLens copy is not installed")
    assert (data.n_users, data.n_items, data.n_interactions) == (943, 1682, 100000)
    assert data.item_text[0]["title"] == "Toy Story"


def test_movielens_missing_points_to_the_download(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="files.grouplens.org"):
        Dataset.movielens()


def test_cli_data_stats(tmp_path, capsys):
    from siit.cli import main

    folder = write(tmp_path / "toy", {"u0": [0, 1, 2, 3]}, ITEMS)
    assert main(["data", "stats", str(folder)]) == 0
    assert "1 users, 6 items, 4 interactions" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "stats", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "not a folder" in capsys.readouterr().err


def test_training_windows_teach_every_training_interaction_once():
    """Windows overlap by one item: every training item but a user's first is a target
    (not the first of its window) exactly once, after the items right before it."""
    data = Dataset.synthetic(n_users=30, n_items=20, mean_length=12, seed=3)
    for size in (2, 3, 5, 50):
        windows = data.train_windows(size)
        assert windows.items.shape[1] == size
        for user in range(data.n_users):
            train = data.sequence(user)[:-2].tolist()
            rows = windows.items[windows.users == user]
            targets = [w[w >= 0].tolist() for w in rows]
            assert all(2 <= len(t) <= size for t in targets)
            # in time order, consecutive windows share one item, and they spell the sequence
            spelled = targets[0] if targets else train[:1]
            for w in targets[1:]:
                assert w[0] == spelled[-1]
                spelled += w[1:]
            assert spelled == train if len(train) >= 2 else not targets
    with pytest.raises(ValueError, match="at least 2 items"):
        data.train_windows(1)


def test_seen_items_are_everything_before_the_target():
    data = Dataset.synthetic(n_users=10, n_items=20, seed=1)
    test, valid = data.test_samples(), data.valid_samples()
    for samples, drop in ((test, 1), (valid, 2)):
        seen = data.seen_items(samples)
        for row, user in zip(seen, samples.users, strict=True):
            assert row[row >= 0].tolist() == data.sequence(user)[:-drop].tolist()


def test_unreadable_files_are_named(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "shop.inter.json").write_bytes(b'{"u1": ["a", "b", "c"]}')
    (folder / "shop.item.json").write_bytes(b'{"a": {"title": "caf\xe9"}}')  # latin-1, not utf-8
    with pytest.raises(ValueError, match=r"shop.item.json: not utf-8 text"):
        Dataset.from_json(folder)


def test_interactions_only_folder(tmp_path, caplog):
    """Without NAME.item.json the items come from the interactions, in numeric id order,
    without text; whatever needs text fails naming the missing file."""
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "Bare.inter.json").write_text(json.dumps({"u0": [10, 2, 7, 2], "u1": [7, 10, 3]}))
    with caplog.at_level(logging.INFO):
        data = Dataset.load(folder)
    assert "no Bare.item.json" in caplog.text
    assert data.item_ids == ["2", "3", "7", "10"]
    assert data.sequence(0).tolist() == [3, 0, 2, 0] and not data.has_text
    assert data.missing_text.endswith("Bare.item.json: file not found")
    with pytest.raises(ValueError, match=r"RQVAETokenizer .* needs item text.*Bare.item.json"):
        siit.RQVAETokenizer(levels=2, codebook_size=4).fit(data)
    assert siit.RandomTokenizer(levels=2, codebook_size=4).fit(data).n_items == 4
