"""`siit.Identifiers`: files, statistics and the uniqueness step."""

import json

import numpy as np
import pytest
from shared_data import shared
from siit.identifiers import Identifiers


def test_letter_beauty_index_has_its_11_collisions_and_resolves_them():
    ids = Identifiers.load(shared("beauty", "Beauty.index.json"), codebook_sizes=[256] * 4)
    stats = ids.stats()
    assert (stats.n_items, stats.shared_identifiers, stats.colliding_items) == (12101, 11, 24)
    assert stats.largest_collision == 3
    assert ids.tokens(0) == ["<a_183>", "<b_70>", "<c_232>", "<d_6>"]

    nearest = ids.make_unique()
    assert nearest.identifiers.is_unique() and not ids.is_unique()
    assert nearest.moved == 24 - 11 and nearest.fallback == 13
    # Only the later items of each collision move, and they stay under their old prefix.
    changed = (nearest.identifiers.codes != ids.codes).any(axis=1)
    assert (nearest.identifiers.codes[changed, :3] == ids.codes[changed, :3]).all()

    suffix = ids.make_unique("suffix")
    assert suffix.identifiers.is_unique() and suffix.moved == 13
    assert suffix.identifiers.codebook_sizes == (256, 256, 256, 256, 3)
    assert suffix.identifiers.tokens(0)[-1] == "<e_0>"


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    ids = Identifiers([[1, 2], [3, 0], [1, 1]], codebook_sizes=[4, 3], item_ids=["x", "y", "z"])
    back = Identifiers.load(ids.save(tmp_path / f"ids{suffix}"), codebook_sizes=[4, 3])
    assert back.item_ids == ["x", "y", "z"]
    assert back.codebook_sizes == (4, 3) and (back.codes == ids.codes).all()
    if suffix == ".json":
        assert json.loads((tmp_path / "ids.json").read_text())["y"] == ["<a_3>", "<b_0>"]


def test_npy_and_vocabulary(tmp_path):
    np.save(tmp_path / "codes.npy", np.array([[0, 1], [1, 0]]))
    ids = Identifiers.load(tmp_path / "codes.npy")
    assert ids.codebook_sizes == (2, 2)
    assert ids.vocabulary() == ["<a_0>", "<a_1>", "<b_0>", "<b_1>"]


def test_stats_per_level():
    ids = Identifiers([[0, 0], [0, 1], [1, 1], [1, 1]], codebook_sizes=[2, 4])
    stats = ids.stats()
    assert stats.codes_used == (2, 2)
    assert stats.entropy_bits == pytest.approx((1.0, 0.811278), abs=1e-6)
    assert stats.largest_prefix_group == (2, 2)
    assert (stats.distinct, stats.shared_identifiers, stats.colliding_items) == (3, 1, 2)


def test_make_unique_takes_ranked_candidates():
    ids = Identifiers([[0, 0], [0, 0]], codebook_sizes=[2, 2])
    candidates = np.array([[[0, 0], [0, 1]], [[0, 0], [1, 1]]])
    scores = np.array([[-1.0, -2.0], [-0.5, -3.0]])
    result = ids.make_unique(candidates=candidates, scores=scores)
    assert result.identifiers.codes.tolist() == [[0, 1], [0, 0]]
    assert (result.moved, result.fallback) == (1, 0)
    with pytest.raises(ValueError, match="scores are required"):
        ids.make_unique(candidates=candidates)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"0": ["<a_1>", "<b_2>"', "malformed JSON at line 1"),
        ('{"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<c_2>"]}', "item '1' spells levels"),
        ('{"0": ["a1", "b2"]}', "item '0' has"),
        ('{"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", 2]}', "item '1' has"),
        ('{"0": ["<a_1>", "<b_2>"], "1": ["<a_1>"]}', "item '1' spells levels"),
        ('{"0": ["<a_1>", "<b_2>"], "1": "<a_1><b_2>"}', "item '1' has"),
        ("[]", "expected a non-empty object"),
    ],
)
def test_bad_index_files_name_file_and_item(tmp_path, text, message):
    path = tmp_path / "bad.index.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        Identifiers.load(path)
    assert "bad.index.json" in str(info.value)


def test_an_index_file_reads_the_same_by_whole_file_and_token_by_token(tmp_path):
    """The whole-file parse of a well-formed index equals the per-token one it stands in for."""
    rng = np.random.default_rng(0)
    ids = Identifiers(rng.integers(0, 300, (500, 3)), [300] * 3, [f"i{i}" for i in range(500)])
    path = ids.save(tmp_path / "x.index.json")
    raw = json.loads(path.read_text())
    fast = Identifiers._parse_well_formed(raw, None)
    assert fast is not None
    assert Identifiers._parse_well_formed({**raw, "i0": raw["i0"][:2]}, None) is None
    for read in (fast, Identifiers.load(path)):
        np.testing.assert_array_equal(read.codes, ids.codes)
        assert read.item_ids == ids.item_ids and read.prefixes == ids.prefixes


def test_bad_codes():
    with pytest.raises(ValueError, match=r"codes\[1, 0\] = 5 is outside codebook 0 of size 4"):
        Identifiers([[0, 0], [5, 0]], codebook_sizes=[4, 4])
    with pytest.raises(ValueError, match="item_ids must be distinct"):
        Identifiers([[0], [1]], item_ids=["a", "a"])
    with pytest.raises(ValueError, match="unknown identifiers format"):
        Identifiers.load("ids.txt")
