"""Baseline tokenizers and the shared fit/report path."""

import numpy as np
import pytest
from shared_data import shared
from siit.data import Dataset
from siit.identifiers import Identifiers
from siit.tokenizers import FileTokenizer, RandomTokenizer, SequentialTokenizer


@pytest.fixture(scope="module")
def data():
    return Dataset.synthetic(n_users=50, n_items=60, seed=2)


def test_random_is_unique_and_seeded(data):
    tokenizer = RandomTokenizer(levels=2, codebook_size=8, seed=5)
    ids = tokenizer.fit(data)
    assert ids.is_unique() and ids.codebook_sizes == (8, 8)
    assert (ids.codes == RandomTokenizer(levels=2, codebook_size=8, seed=5).fit(data).codes).all()
    report = tokenizer.report_
    assert report.unique.fallback == report.unique.moved  # no candidates: moved items fall back
    assert "uniqueness step" in str(report)


def test_sequential_spells_the_index(data):
    ids = SequentialTokenizer(levels=2, codebook_size=8).fit(data)
    assert (ids.codes[:, 0] * 8 + ids.codes[:, 1] == np.arange(60)).all()
    with pytest.raises(ValueError, match="60 items do not fit in 1 levels of 8 codes"):
        SequentialTokenizer(levels=1, codebook_size=8).fit(data)


def test_file_matches_items_by_id(data, tmp_path):
    codes = np.stack([np.arange(60) % 7, np.arange(60) // 7], axis=1)
    reversed_ids = Identifiers(codes[::-1], (7, 9), data.item_ids[::-1])
    path = reversed_ids.save(tmp_path / "ids.index.json")
    ids = FileTokenizer(path, (7, 9)).fit(data)
    assert (ids.codes == codes).all()
    short = Identifiers(codes[:10], (7, 9), data.item_ids[:10]).save(tmp_path / "short.npz")
    with pytest.raises(ValueError, match="no identifier for 50 items"):
        FileTokenizer(short).fit(data)


def test_file_on_letter_beauty():
    data = Dataset.from_json(shared("beauty"))
    tokenizer = FileTokenizer(shared("beauty", "Beauty.index.json"), (256,) * 4)
    ids = tokenizer.fit(data)
    assert ids.is_unique()
    assert tokenizer.report_.before.shared_identifiers == 11
    assert tokenizer.report_.unique.moved == 13


def test_cli_tokenize(data, tmp_path, caplog):
    import json
    import logging

    from siit.cli import main

    folder = tmp_path / "toy"
    folder.mkdir()
    users = {str(u): data.sequence(u).tolist() for u in range(data.n_users)}
    (folder / "Toy.inter.json").write_text(json.dumps(users))
    (folder / "Toy.item.json").write_text(json.dumps(dict(enumerate(data.item_text))))
    out = tmp_path / "ids.json"
    with caplog.at_level(logging.INFO):
        code = main(
            [
                "tokenize",
                "--data",
                str(folder),
                "--method",
                "random",
                "--levels",
                "2",
                "--codebook-size",
                "16",
                "--out",
                str(out),
            ]
        )
    assert code == 0 and "uniqueness step" in caplog.text
    ids = Identifiers.load(out, (16, 16))
    assert ids.is_unique() and ids.item_ids == [str(i) for i in range(60)]
    again = tmp_path / "again.npz"
    assert (
        main(
            [
                "tokenize",
                "--data",
                str(folder),
                "--method",
                "file",
                "--index",
                str(out),
                "--out",
                str(again),
            ]
        )
        == 0
    )
    assert (Identifiers.load(again).codes == ids.codes).all()
    with pytest.raises(SystemExit):
        main(["tokenize", "--data", str(folder), "--method", "file", "--out", str(again)])
