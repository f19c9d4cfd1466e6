"""`group_duplicates` and `disambiguate` against a dict-based reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from siit import disambiguate, group_duplicates
from strategies import INT_DTYPES, layouts


@st.composite
def code_arrays(draw) -> np.ndarray:
    """(n, L) codes with many repeated rows, values up to 2**20, in any integer dtype that
    holds them (at most 63 bits per identifier)."""
    max_code = draw(st.sampled_from([0, 3, 255, 2**20]))
    levels = draw(st.integers(1, 3 if max_code == 2**20 else 4))
    row = st.lists(st.integers(0, max_code), min_size=levels, max_size=levels)
    pool = draw(st.lists(row, min_size=1, max_size=8))
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=40))
    dtype = draw(st.sampled_from([d for d in INT_DTYPES if np.iinfo(d).max >= max_code]))
    return np.array([pool[p] for p in picks], dtype=dtype)


def reference(codes: np.ndarray) -> tuple[list[int], list[int], list[int]]:
    """(group per row, counts per group, occurrence per row), by first appearance."""
    first: dict[tuple[int, ...], int] = {}
    group, counts, occurrence = [], [], []
    for row in map(tuple, codes.tolist()):
        g = first.setdefault(row, len(first))
        if g == len(counts):
            counts.append(0)
        occurrence.append(counts[g])
        counts[g] += 1
        group.append(g)
    return group, counts, occurrence


@given(code_arrays())
def test_group_duplicates_matches_reference(codes):
    group, counts = group_duplicates(codes)
    expected_group, expected_counts, _ = reference(codes)
    assert group.dtype == np.int64 and counts.dtype == np.int64
    np.testing.assert_array_equal(group, expected_group)
    np.testing.assert_array_equal(counts, expected_counts)


@given(code_arrays())
def test_disambiguate_matches_reference_and_is_unique(codes):
    out = disambiguate(codes)
    _, _, occurrence = reference(codes)
    assert out.dtype == np.int64
    assert out.shape == (codes.shape[0], codes.shape[1] + 1)
    np.testing.assert_array_equal(out[:, :-1], codes.astype(np.int64))
    np.testing.assert_array_equal(out[:, -1], occurrence)
    assert len(np.unique(out, axis=0)) == len(out)


@given(code_arrays())
def test_any_layout_gives_the_same_answer(codes):
    codes = codes.astype(np.int64)
    group, counts = group_duplicates(codes)
    extended = disambiguate(codes)
    for name, variant in layouts(codes).items():
        again_group, again_counts = group_duplicates(variant)
        np.testing.assert_array_equal(again_group, group, err_msg=name)
        np.testing.assert_array_equal(again_counts, counts, err_msg=name)
        np.testing.assert_array_equal(disambiguate(variant), extended, err_msg=name)


def test_small_example():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 1]])
    group, counts = group_duplicates(codes)
    assert group.tolist() == [0, 1, 0, 0, 1, 2]
    assert counts.tolist() == [3, 2, 1]
    assert disambiguate(codes)[:, 2].tolist() == [0, 0, 1, 2, 1, 0]


@pytest.mark.parametrize(
    "rows",
    [
        [[2**32 - 1, 2**32 - 1], [0, 0], [2**32 - 1, 2**32 - 1]],  # exactly 64 bits
        [[2**62], [5], [2**62]],
        [[2**63 - 2], [5], [2**63 - 2]],
        [[2**63 - 1], [5], [2**63 - 1]],  # the largest int64: still a valid code (>= 0)
    ],
    ids=["2x32-bits", "2**62", "2**63-2", "int64-max"],
)
def test_wide_codes(rows):
    codes = np.array(rows, dtype=np.int64)
    group, counts = group_duplicates(codes)
    assert group.tolist() == [0, 1, 0] and counts.tolist() == [2, 1]
    np.testing.assert_array_equal(disambiguate(codes)[:, -1], [0, 0, 1])


def test_large_input_matches_numpy():
    # Enough rows for the parallel, multi-chunk sort paths; reference via np.unique.
    rng = np.random.default_rng(0)
    codes = rng.integers(0, [64, 50, 3], size=(300_000, 3))
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    number = np.empty_like(first)
    number[np.argsort(first)] = np.arange(len(first))
    expected_group = number[inverse.ravel()]
    expected_counts = np.bincount(expected_group)
    by_group = np.argsort(expected_group, kind="stable")
    starts = np.repeat(np.cumsum(expected_counts) - expected_counts, expected_counts)
    expected_occurrence = np.empty(len(codes), dtype=np.int64)
    expected_occurrence[by_group] = np.arange(len(codes)) - starts

    group, counts = group_duplicates(codes)
    np.testing.assert_array_equal(group, expected_group)
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_array_equal(disambiguate(codes)[:, -1], expected_occurrence)
