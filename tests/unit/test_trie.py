"""Properties of `IdentifierTrie` against brute-force set computations on tiny spaces."""

import re

import numpy as np
import pytest
import siit
from hypothesis import given
from hypothesis import strategies as st
from siit import IdentifierTrie, SiitError
from strategies import all_identifiers, identifier_sets, layouts, unravel


def item_of(codes: np.ndarray) -> dict[tuple[int, ...], int]:
    return {tuple(row): i for i, row in enumerate(codes.tolist())}


@given(identifier_sets())
def test_lookup_inverts_construction(data):
    codes, sizes = data
    trie = IdentifierTrie(codes, sizes)
    assert len(trie) == trie.n_items == len(codes)
    assert trie.n_levels == len(sizes)
    assert trie.codebook_sizes.dtype == np.int64
    np.testing.assert_array_equal(trie.codebook_sizes, sizes)
    items = trie.lookup(codes)
    assert items.dtype == np.int64
    np.testing.assert_array_equal(items, np.arange(len(codes)))


@given(identifier_sets())
def test_lookup_whole_space_in_any_layout(data):
    codes, sizes = data
    trie = IdentifierTrie(codes, sizes)
    space = all_identifiers(sizes)
    index = item_of(codes)
    expected = np.array([index.get(row, -1) for row in map(tuple, space.tolist())])
    np.testing.assert_array_equal(trie.lookup(space), expected)
    for name, variant in layouts(space).items():
        np.testing.assert_array_equal(trie.lookup(variant), expected, err_msg=name)
    # Construction from other layouts gives the same trie.
    for name, variant in layouts(codes).items():
        np.testing.assert_array_equal(
            IdentifierTrie(variant, sizes).lookup(space), expected, err_msg=name
        )
    assert trie.lookup(np.zeros((0, len(sizes)), dtype=np.int64)).shape == (0,)


@given(identifier_sets())
def test_allowed_mask_matches_brute_force(data):
    codes, sizes = data
    trie = IdentifierTrie(codes, sizes)
    rows = codes.tolist()
    for t in range(len(sizes)):
        # Every prefix of length t, most of them not in the trie.
        prefixes = all_identifiers(sizes[:t])
        continued = {tuple(row[: t + 1]) for row in rows}
        expected = np.array(
            [[(*p, c) in continued for c in range(sizes[t])] for p in prefixes.tolist()],
            dtype=bool,
        ).reshape(len(prefixes), sizes[t])
        mask = trie.allowed_mask(prefixes)
        assert mask.dtype == np.bool_
        np.testing.assert_array_equal(mask, expected)
        for name, variant in layouts(prefixes).items():
            np.testing.assert_array_equal(trie.allowed_mask(variant), expected, err_msg=name)
        empty = trie.allowed_mask(np.zeros((0, t), dtype=np.int64))
        assert empty.dtype == np.bool_
        assert empty.shape == (0, sizes[t])


# --- tables(): exact expected arrays, and a numpy decoder that walks them with gathers ---


def expected_tables(codes: np.ndarray, sizes, dense_limit: int) -> dict[str, np.ndarray]:
    """The tables of `_core.pyi`, computed from sorted distinct prefixes per depth."""
    levels = len(sizes)
    rows = codes.tolist()
    prefixes = [sorted({tuple(row[:t]) for row in rows}) for t in range(levels + 1)]
    node = [{p: u for u, p in enumerate(depth)} for depth in prefixes]
    out = {
        "codebook_sizes": np.array(sizes),
        "num_nodes": np.array([len(depth) for depth in prefixes]),
        "leaf_items": np.array([item_of(codes)[p] for p in prefixes[levels]]),
    }
    max_children = []
    for t in range(levels):
        parents = [node[t][p[:-1]] for p in prefixes[t + 1]]
        offsets = np.searchsorted(parents, np.arange(len(prefixes[t]) + 1))
        out[f"offsets_{t}"] = offsets
        out[f"codes_{t}"] = np.array([p[-1] for p in prefixes[t + 1]])
        max_children.append(np.diff(offsets).max())
        if len(prefixes[t]) * sizes[t] <= dense_limit:
            out[f"dense_{t}"] = np.array(
                [[node[t + 1].get((*p, c), -1) for c in range(sizes[t])] for p in prefixes[t]]
            ).reshape(len(prefixes[t]), sizes[t])
    out["max_children"] = np.array(max_children)
    return out


def children(tables, t: int, node: np.ndarray) -> np.ndarray:
    """(b, V_t) child node ids of depth-t nodes `node` by code, -1 where none: one gather at a
    dense level; at a CSR level, gathers over max_children positions then a scatter by code."""
    if f"dense_{t}" in tables:
        return tables[f"dense_{t}"][node]
    offsets, codes = tables[f"offsets_{t}"], tables[f"codes_{t}"]
    start, end = offsets[node], offsets[node + 1]
    position = start[:, None] + np.arange(tables["max_children"][t])
    valid = position < end[:, None]
    child_codes = codes[np.where(valid, position, 0)]
    child = np.full((len(node), tables["codebook_sizes"][t]), -1, dtype=np.int64)
    beam = np.broadcast_to(np.arange(len(node))[:, None], valid.shape)
    child[beam[valid], child_codes[valid]] = position[valid]
    return child


def decode(tables, codes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Walks identifiers `codes` (b, L) down the tables as a constrained beam search would:
    the allowed mask before every level (all False once a beam left the trie), and the item
    reached after L steps (-1 if none)."""
    beams, levels = codes.shape
    node = np.zeros(beams, dtype=np.int64)
    alive = np.ones(beams, dtype=bool)
    masks = []
    for t in range(levels):
        child = children(tables, t, node)
        masks.append((child >= 0) & alive[:, None])
        nxt = child[np.arange(beams), codes[:, t]]
        alive &= nxt >= 0
        node = np.where(alive, nxt, 0)
    return masks, np.where(alive, tables["leaf_items"][node], -1)


@pytest.mark.parametrize("dense", ["none", "default", "some", "all"])
@given(identifier_sets())
def test_tables_reproduce_lookup_and_mask(dense, data):
    codes, sizes = data
    trie = IdentifierTrie(codes, sizes)
    entries = sorted(
        len({tuple(row[:t]) for row in codes.tolist()}) * sizes[t] for t in range(len(sizes))
    )
    limit = {"none": 0, "default": 4194304, "some": entries[len(entries) // 2], "all": 2**62}[dense]
    tables = trie.tables() if dense == "default" else trie.tables(dense_limit=limit)

    expected = expected_tables(codes, sizes, limit)
    assert set(tables) == set(expected)
    for key, value in expected.items():
        assert tables[key].dtype == np.int64, key
        np.testing.assert_array_equal(tables[key], value, err_msg=key)
    assert tables["num_nodes"][0] == 1
    assert tables["num_nodes"][-1] == len(codes)

    space = all_identifiers(sizes)
    masks, items = decode(tables, space)
    np.testing.assert_array_equal(items, trie.lookup(space))
    for t, mask in enumerate(masks):
        np.testing.assert_array_equal(mask, trie.allowed_mask(space[:, :t]), err_msg=f"t={t}")


def test_tables_small_example():
    # Items: 0 = (1, 0), 1 = (0, 2), 2 = (1, 1).
    trie = siit.IdentifierTrie(np.array([[1, 0], [0, 2], [1, 1]]), [2, 3])
    tables = trie.tables(dense_limit=0)
    np.testing.assert_array_equal(tables["num_nodes"], [1, 2, 3])
    np.testing.assert_array_equal(tables["max_children"], [2, 2])
    np.testing.assert_array_equal(tables["offsets_0"], [0, 2])
    np.testing.assert_array_equal(tables["codes_0"], [0, 1])
    np.testing.assert_array_equal(tables["offsets_1"], [0, 1, 3])
    np.testing.assert_array_equal(tables["codes_1"], [2, 0, 1])
    np.testing.assert_array_equal(tables["leaf_items"], [1, 0, 2])
    dense = trie.tables(dense_limit=6)
    np.testing.assert_array_equal(dense["dense_0"], [[0, 1]])
    np.testing.assert_array_equal(dense["dense_1"], [[-1, -1, 0], [1, 2, -1]])


@given(identifier_sets(max_items=20), st.data())
def test_duplicate_identifiers_are_rejected_naming_both_items(data, draw):
    codes, sizes = data
    source = draw.draw(st.integers(0, len(codes) - 1), label="source")
    at = draw.draw(st.integers(0, len(codes)), label="insert at")
    duplicated = np.insert(codes, at, codes[source], axis=0)
    first, second = sorted((source if source < at else source + 1, at))
    with pytest.raises(SiitError) as info:
        IdentifierTrie(duplicated, sizes)
    message = str(info.value)
    assert "codes" in message
    assert re.search(rf"\b{first}\b\D+\b{second}\b", message), message


def test_full_64_bit_layout():
    top = 2**32 - 1  # two levels of 2**32 codes: exactly 64 bits per identifier
    trie = IdentifierTrie(np.array([[top, top], [0, 0], [top, 0]]), [2**32, 2**32])
    np.testing.assert_array_equal(
        trie.lookup([[top, top], [0, 0], [top, 0], [0, top]]), [0, 1, 2, -1]
    )
    tables = trie.tables(dense_limit=0)
    np.testing.assert_array_equal(tables["codes_0"], [0, top])
    np.testing.assert_array_equal(tables["codes_1"], [0, 0, top])
    np.testing.assert_array_equal(tables["leaf_items"], [1, 2, 0])


def test_tables_accept_a_dense_limit_beyond_int64():
    # A Python int of any size is a valid "no limit"; it must not escape as OverflowError.
    trie = IdentifierTrie(np.array([[1, 0], [0, 2]]), [2, 3])
    expected = trie.tables(dense_limit=2**62)
    try:
        tables = trie.tables(dense_limit=2**64)
    except SiitError:  # rejecting it as invalid input is acceptable too
        return
    assert set(tables) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(tables[key], value, err_msg=key)


def test_large_catalogue_matches_numpy():
    # Enough items for the parallel sort and batched-query paths; reference via searchsorted.
    rng = np.random.default_rng(0)
    sizes = (256, 128, 16)
    flat = rng.choice(np.prod(sizes), size=200_000, replace=False)
    trie = IdentifierTrie(unravel(flat, sizes), sizes)
    queries = rng.integers(0, np.prod(sizes), size=100_000)
    order = np.argsort(flat)
    position = np.minimum(np.searchsorted(flat[order], queries), len(flat) - 1)
    expected = np.where(flat[order][position] == queries, order[position], -1)
    np.testing.assert_array_equal(trie.lookup(unravel(queries, sizes)), expected)

    prefixes = unravel(rng.integers(0, 256 * 128, size=5_000), sizes[:2])
    expected_mask = np.zeros((len(prefixes), sizes[2]), dtype=bool)
    present = set(flat.tolist())
    base = (prefixes[:, 0] * 128 + prefixes[:, 1]) * 16
    for c in range(sizes[2]):
        expected_mask[:, c] = [key in present for key in (base + c).tolist()]
    np.testing.assert_array_equal(trie.allowed_mask(prefixes), expected_mask)
