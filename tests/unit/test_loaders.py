"""Tables and raw Amazon dumps as datasets: filters, ordering, text, bad input."""

import gzip
import json
import logging

import datasets
import pandas as pd
import pytest
from siit.data import Dataset
from siit.loaders import from_interactions

INTERACTIONS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u2", "u1"],
        "item_id": [10, 9, 11, 9, 10, 11, 9],
        "timestamp": [3, 1, 3, 5, 6, 7, 2],
    }
)
ITEMS = pd.DataFrame({"item_id": [9, 10, 11], "title": ["nine", "ten", "eleven"]})


def titles(data, user):
    return [data.item_text[i]["title"] for i in data.sequence(user)]


def test_dataframe_orders_by_time_then_input(caplog):
    data = Dataset.from_table(INTERACTIONS, ITEMS)
    assert data.item_ids == ["9", "10", "11"]  # numeric ids sort as numbers
    # u1: 9 (t=1), 9 again (t=2), then 10 and 11 at t=3 in input order
    assert titles(data, 0) == ["nine", "nine", "ten", "eleven"]
    with caplog.at_level(logging.WARNING):
        deduped = Dataset.from_table(INTERACTIONS, ITEMS, dedup=True)
    assert titles(deduped, 0) == ["nine", "ten", "eleven"]
    assert "dropped 1 repeated (user, item) interactions" in caplog.text


def test_csv_and_hugging_face_like_tables(tmp_path):
    path = tmp_path / "inter.csv"
    INTERACTIONS.rename(columns={"timestamp": "t"}).to_csv(path, index=False)
    data = Dataset.from_table(path, time="t")
    assert data.name == "inter" and data.item_text[0] == {} and not data.has_text

    hf = datasets.Dataset.from_pandas(INTERACTIONS)
    assert Dataset.from_table(hf, ITEMS).n_interactions == 7


# The Amazon Reviews 2023 layout: 4 users, items A-D, timestamps in milliseconds. u1 rates A
# twice and u4 rates D twice (repeats, dropped); u4 is then left with 1 interaction, which
# a 3-core drops, and D with it.
REVIEWS_2023 = {
    "user_id": ["u1"] * 4 + ["u2"] * 3 + ["u3"] * 3 + ["u4"] * 2,
    "parent_asin": ["A", "B", "C", "A", "B", "A", "C", "C", "B", "A", "D", "D"],
    "timestamp": [4000, 1000, 2000, 3000, 10, 30, 20, 5, 6, 7, 1, 2],
    "rating": [5.0] * 12,
}
META_2023 = {
    "parent_asin": ["A", "B", "C", "D"],
    "title": ["Stapler", "Pens", "Paper", "Desk"],
    "description": [["Heavy", "duty"], [], ["A4"], []],
    "features": [["metal"], ["blue ink", "fine"], [], []],
    "categories": [["Office", "Staplers"], ["Office"], ["Office", "Paper"], ["Furniture"]],
}


def test_hugging_face_datasets_in_the_amazon_2023_layout(tmp_path, caplog):
    reviews, meta = datasets.Dataset.from_dict(REVIEWS_2023), datasets.Dataset.from_dict(META_2023)
    with caplog.at_level(logging.WARNING):
        data = Dataset.from_hf(reviews, meta, k_core=3, name="office-2023")
    assert "dropped 2 repeated (user, item) interactions" in caplog.text
    assert "3-core filter dropped 1 of 10 interactions" in caplog.text
    assert data.user_ids == ["u1", "u2", "u3"] and data.item_ids == ["A", "B", "C"]
    assert [data.item_ids[i] for i in data.sequence(0)] == ["B", "C", "A"]  # by time
    stapler = data.item_text[0]
    assert stapler["description"] == "Heavy duty" and stapler["categories"] == "Office Staplers"
    assert data.item_text[1]["features"] == "blue ink fine"
    # a DatasetDict with the split to use, and local JSON-lines files, read the same
    split = datasets.DatasetDict({"full": reviews})
    assert Dataset.from_hf(split, meta, split="full", k_core=3).item_ids == ["A", "B", "C"]
    files = []
    for name, table in (("reviews", reviews), ("meta", meta)):
        files.append(tmp_path / f"{name}.jsonl")
        table.to_json(files[-1])
    local = Dataset.from_hf(str(files[0]), str(files[1]), k_core=3)
    assert local.item_ids == data.item_ids and local.item_text == data.item_text
    assert local.name == "reviews"
    # without metadata: interactions only, items without text
    bare = Dataset.from_hf(reviews, k_core=3)
    assert not bare.has_text and bare.n_interactions == data.n_interactions


def test_hugging_face_bad_input():
    reviews = datasets.Dataset.from_dict(REVIEWS_2023)
    with pytest.raises(ValueError, match=r"reviews: no column \['timestamp'\]"):
        Dataset.from_hf(reviews.remove_columns("timestamp"))
    with pytest.raises(ValueError, match=r"no split 'train' \(splits: \['full'\]\)"):
        Dataset.from_hf(datasets.DatasetDict({"full": reviews}))
    with pytest.raises(ValueError, match="expected a datasets.Dataset"):
        Dataset.from_hf(42)


def test_k_core_is_iterative(caplog):
    # With k = 3: item 12 has 1 interaction; dropping it leaves u3 with 2, so u3 goes, and
    # then item 11 (2 left) goes too... until everything left has >= 3.
    frame = pd.DataFrame(
        {
            "user_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["u3"] * 3,
            "item_id": [1, 2, 3, 1, 2, 3, 1, 2, 3, 11, 12, 11],
            "timestamp": range(12),
        }
    )
    with caplog.at_level(logging.WARNING):
        data = Dataset.from_table(frame, k_core=3)
    assert data.user_ids == ["a", "b", "c"] and data.item_ids == ["1", "2", "3"]
    assert "3-core filter dropped 3 of 12 interactions" in caplog.text


def test_bad_tables():
    with pytest.raises(ValueError, match=r"interactions: no column \['timestamp'\]"):
        Dataset.from_table(INTERACTIONS.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="names item '11', which has no text entry"):
        Dataset.from_table(INTERACTIONS, ITEMS[ITEMS.item_id != 11])
    with pytest.raises(ValueError, match="neither .csv, .tsv nor .parquet"):
        Dataset.from_table(__file__)
    with pytest.raises(ValueError, match="no interactions left"):
        from_interactions(["u"], ["i"], [0], {"i": {"title": "x"}}, k_core=2)


def write_lines(path, records, literal=False):
    with gzip.open(path, "wt") as f:
        for r in records:
            f.write((repr(r) if literal else json.dumps(r)) + "\n")
    return path


def test_amazon_dumps(tmp_path, caplog):
    reviews = [
        {"reviewerID": u, "asin": a, "unixReviewTime": t, "overall": 5.0}
        for u, a, t in [
            ("A", "x", 1),
            ("A", "y", 2),
            ("A", "x", 3),
            ("A", "z", 2),
            ("B", "x", 1),
            ("B", "y", 1),
            ("B", "z", 4),
            ("B", "w", 5),
        ]
    ]
    meta = [  # 2014 style: Python literals, nested categories; "w" has no metadata
        {"asin": "x", "title": "Ex", "categories": [["Beauty", "Nails"], ["Beauty"]]},
        {"asin": "y", "title": "Why", "description": "d", "brand": "B"},
        {"asin": "z", "title": "Zed"},
    ]
    r = write_lines(tmp_path / "reviews_Toy.json.gz", reviews)
    m = write_lines(tmp_path / "meta_Toy.json.gz", meta, literal=True)
    with caplog.at_level(logging.WARNING):
        data = Dataset.from_amazon(r, m, k_core=2)
    assert data.name == "reviews_Toy"
    assert titles(data, 0) == ["Ex", "Why", "Zed"]  # A: x@1, then y and z at t=2, repeat x gone
    assert titles(data, 1) == ["Ex", "Why", "Zed"]
    assert data.item_text[0] == {
        "title": "Ex",
        "description": "",
        "brand": "",
        "categories": "Beauty, Nails",
    }
    assert "dropped 1 interactions with items that have no text" in caplog.text
    assert "dropped 1 repeated (user, item) interactions" in caplog.text


def test_amazon_bad_lines(tmp_path):
    r = tmp_path / "r.json"
    r.write_text('{"reviewerID": "A", "asin": "x", "unixReviewTime": 1}\n{"asin": "y"}\n')
    m = write_lines(tmp_path / "m.json.gz", [{"asin": "x"}])
    with pytest.raises(ValueError, match="r.json: line 2 lacks reviewerID"):
        Dataset.from_amazon(r, m)
    m.write_bytes(gzip.compress(b"not a record\n"))
    r.write_text('{"reviewerID": "A", "asin": "x", "unixReviewTime": 1}\n')
    with pytest.raises(ValueError, match="m.json.gz: line 1 is neither JSON nor a literal"):
        Dataset.from_amazon(r, m)
