"""TextMapper: learns codes that are a function of the vectors, proposes exact beams, saves
and loads through safetensors, rejects bad input naming the argument."""

import json
import logging

import numpy as np
import pytest
import torch
from siit import assign_unique
from siit.mapper import META, WEIGHTS, TextMapper

SIZES = (6, 4, 4)


def clustered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors that are a sum of one center per level plus noise; the codes name the
    centers. The centers come from a fixed generator, so every call shares them."""
    fixed = np.random.default_rng(0)
    scales = (4, 2, 1.5)
    parts = [fixed.normal(size=(size, 32)) * s for size, s in zip(SIZES, scales, strict=True)]
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(size, size=n) for size in SIZES], 1)
    vectors = sum(part[codes[:, level]] for level, part in enumerate(parts))
    return (vectors + 0.3 * rng.normal(size=vectors.shape)).astype(np.float32), codes


@pytest.fixture(scope="module")
def fitted():
    vectors, codes = clustered(300, seed=1)
    return TextMapper.fit(vectors, codes, SIZES, seed=0), vectors, codes


def test_top_beam_recovers_training_and_held_out_identifiers(fitted):
    mapper, vectors, codes = fitted
    assert mapper.codebook_sizes == SIZES
    top = mapper.propose(vectors, 3)[0][:, 0]
    assert (top == codes).all(1).mean() > 0.95
    new_vectors, new_codes = clustered(100, seed=2)
    top = mapper.propose(new_vectors, 3)[0][:, 0]
    assert (top[:, 0] == new_codes[:, 0]).mean() > 0.95
    assert (top == new_codes).all(1).mean() > 0.8


def test_proposals_are_distinct_sorted_and_in_range(fitted):
    mapper, vectors, _ = fitted
    candidates, scores = mapper.propose(vectors[:20], 8)
    assert candidates.shape == (20, 8, 3) and candidates.dtype == np.int64
    assert scores.shape == (20, 8) and scores.dtype == np.float64
    assert np.isfinite(scores).all() and (scores <= 0).all()
    assert (np.diff(scores, axis=1) <= 0).all()
    assert ((candidates >= 0) & (candidates < np.array(SIZES))).all()
    keys = (candidates * [16, 4, 1]).sum(-1)
    assert all(len(set(row)) == 8 for row in keys.tolist())


def test_every_identifier_when_beams_cover_them_and_padding_beyond():
    vectors, codes = clustered(60, seed=3)
    sizes = (3, 2)
    mapper = TextMapper.fit(vectors, codes[:, :2] % sizes, sizes, steps=100)
    candidates, scores = mapper.propose(vectors[:5], 9)
    # All 6 identifiers, each once, scored with its exact log-probability (they sum to 1).
    keys = np.sort(candidates[:, :6, 0] * 2 + candidates[:, :6, 1], 1)
    assert (keys == np.arange(6)).all()
    np.testing.assert_allclose(np.exp(scores[:, :6]).sum(1), 1.0, rtol=1e-5)
    # The 3 slots no identifier fills: score -inf, codes 0.
    assert np.isneginf(scores[:, 6:]).all() and (candidates[:, 6:] == 0).all()


def test_fit_is_deterministic_and_leaves_the_global_random_state(fitted):
    mapper, vectors, codes = fitted
    torch.manual_seed(5)
    before = torch.get_rng_state()
    again = TextMapper.fit(vectors, codes, SIZES, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    a, b = mapper.propose(vectors[:30], 4), again.propose(vectors[:30], 4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_fit_logs_one_line(caplog):
    vectors, codes = clustered(40, seed=4)
    with caplog.at_level(logging.INFO, logger="siit"):
        TextMapper.fit(vectors, codes, SIZES, steps=2)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("siit")]
    assert len(lines) == 1
    assert "40 items, 2 steps (2.0 epochs), train accuracy per level" in lines[0]


def test_proposals_feed_assign_unique(fitted):
    mapper, vectors, codes = fitted
    existing = np.unique(codes[:40], axis=0)  # 96 identifiers: room for the new items
    new_vectors, _ = clustered(30, seed=5)
    candidates, scores = mapper.propose(new_vectors, 20)
    placed, rank = assign_unique(candidates, scores, SIZES, reserved=existing)
    assert len(np.unique(placed, axis=0)) == 30
    assert not (placed[:, None] == existing[None]).all(-1).any()
    own = rank >= 0
    assert own.mean() > 0.9
    assert (placed[own] == candidates[np.flatnonzero(own), rank[own]]).all()


def test_save_load_round_trip(fitted, tmp_path):
    mapper, vectors, _ = fitted
    path = mapper.save(tmp_path / "best" / "text_mapper")
    assert sorted(p.name for p in path.iterdir()) == sorted([META, WEIGHTS])
    loaded = TextMapper.load(path)
    assert loaded.codebook_sizes == SIZES
    a, b = mapper.propose(vectors, 5), loaded.propose(vectors, 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # Saving over an existing mapper replaces it and leaves nothing else behind.
    other = TextMapper.fit(*clustered(50, seed=6), SIZES, seed=1, steps=10)
    other.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["text_mapper"]
    c = TextMapper.load(path).propose(vectors, 5)
    assert np.array_equal(c[1], other.propose(vectors, 5)[1])


def test_load_errors_name_the_file(fitted, tmp_path):
    mapper, _, _ = fitted
    with pytest.raises(ValueError, match=f"{tmp_path / 'nothing' / META}: file not found"):
        TextMapper.load(tmp_path / "nothing")
    path = mapper.save(tmp_path / "m")
    (path / WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=f"{path / WEIGHTS}: not this mapper's weights"):
        TextMapper.load(path)
    (path / WEIGHTS).unlink()
    with pytest.raises(ValueError, match=f"{path / WEIGHTS}: file not found"):
        TextMapper.load(path)
    # Weights of a mapper with other codebook sizes.
    TextMapper.fit(*clustered(20, seed=7), SIZES, steps=1).save(tmp_path / "other")
    meta = json.loads((tmp_path / "other" / META).read_text())
    (tmp_path / "other" / META).write_text(json.dumps(meta | {"codebook_sizes": [6, 4, 5]}))
    with pytest.raises(ValueError, match="not this mapper's weights"):
        TextMapper.load(tmp_path / "other")
    for bad in ({"format": 1}, meta | {"format": 2}, [1]):
        (tmp_path / "other" / META).write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=f"{tmp_path / 'other' / META}: not a text mapper"):
            TextMapper.load(tmp_path / "other")
    (tmp_path / "other" / META).write_text("{")
    with pytest.raises(ValueError, match="malformed JSON"):
        TextMapper.load(tmp_path / "other")


def test_bad_inputs_name_the_argument(fitted):
    mapper, vectors, codes = fitted
    nan = vectors.copy()
    nan[3, 1] = np.nan
    cases = [
        ((nan, codes, SIZES), r"vectors\[3\] is not finite"),
        ((vectors[0], codes, SIZES), "vectors must be a 2-D array"),
        ((vectors, codes[:-1], SIZES), r"codes must have shape \(300, 3\)"),
        ((vectors, codes[:, :2], SIZES), r"codes must have shape \(300, 3\)"),
        ((vectors, codes.astype(float), SIZES), "codes must be integers"),
        ((vectors, np.where(codes == 5, 6, codes), SIZES), r"codes\[\d+\] = .* out of range"),
        ((vectors, -codes, SIZES), r"codes\[\d+\] = .* out of range"),
        ((vectors, codes, (6, 4, 0)), "codebook_sizes must be"),
        ((vectors, codes, ()), "codebook_sizes must be"),
        ((vectors[:0], codes[:0], SIZES), "vectors is empty"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            TextMapper.fit(*args)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TextMapper.fit(vectors, codes, SIZES, steps=0)
    with pytest.raises(ValueError, match="vectors must have 32 columns, got 31"):
        mapper.propose(vectors[:, :31], 3)
    with pytest.raises(ValueError, match=r"vectors\[3\] is not finite"):
        mapper.propose(nan, 3)
    with pytest.raises(ValueError, match="beams must be a positive integer"):
        mapper.propose(vectors, 0)


def test_propose_nothing(fitted):
    mapper, vectors, _ = fitted
    candidates, scores = mapper.propose(vectors[:0], 4)
    assert candidates.shape == (0, 4, 3) and scores.shape == (0, 4)
