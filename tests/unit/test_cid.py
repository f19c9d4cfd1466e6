"""`siit.tokenizers.cid`: the co-occurrence graph, recursive spectral clustering, CIDTokenizer."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from siit.data import Dataset
from siit.tokenizers import cid
from siit.tokenizers.cid import CIDTokenizer, capped_labels, cooccurrence_graph, spectral_embedding
from synthetic import latent_groups


@pytest.fixture(scope="module")
def data():
    return Dataset.synthetic(n_users=300, n_items=120, n_clusters=4, seed=0)


def purity(labels, group):
    """Share of items in their cluster's majority group."""
    return sum(np.bincount(group[labels == c]).max() for c in np.unique(labels)) / len(labels)


def test_identifiers_are_unique_with_the_right_shape(data):
    ids = CIDTokenizer(levels=3, codebook_size=8).fit(data)
    assert ids.is_unique()
    assert ids.codes.shape == (120, 3) and ids.codebook_sizes == (8, 8, 8)
    assert ids.item_ids == data.item_ids


def test_same_seed_same_identifiers(data):
    a = CIDTokenizer(codebook_size=4, levels=4, seed=7).fit(data)
    b = CIDTokenizer(codebook_size=4, levels=4, seed=7).fit(data)
    assert np.array_equal(a.codes, b.codes)


@pytest.mark.parametrize("dense_limit", [cid.DENSE_LIMIT, 0])  # 0: the sparse eigensolver
def test_first_code_follows_the_latent_groups(data, monkeypatch, dense_limit):
    monkeypatch.setattr(cid, "DENSE_LIMIT", dense_limit)
    group = latent_groups(data)
    first = CIDTokenizer(levels=4, codebook_size=4).fit(data).codes[:, 0]
    rng = np.random.default_rng(0)
    chance = np.mean([purity(rng.permutation(first), group) for _ in range(20)])
    assert chance < 0.5
    assert purity(first, group) >= 0.9
    # Pairs of one latent group share their first code far more often than other pairs.
    same_group = group[:, None] == group[None, :]
    same_code = first[:, None] == first[None, :]
    off_diagonal = ~np.eye(len(group), dtype=bool)
    assert same_code[same_group & off_diagonal].mean() > 0.8
    assert same_code[~same_group].mean() < 0.2


def test_dense_and_sparse_eigensolvers_agree(data, monkeypatch):
    graph = cooccurrence_graph(data)
    dense = spectral_embedding(graph, 4, np.random.default_rng(0))
    monkeypatch.setattr(cid, "DENSE_LIMIT", 0)
    sparse = spectral_embedding(graph, 4, np.random.default_rng(0))
    # Same subspace, so the same geometry up to a rotation: equal Gram matrices.
    np.testing.assert_allclose(dense @ dense.T, sparse @ sparse.T, atol=1e-6)


def test_graph_uses_training_items_only():
    # Training parts: user 0 [0, 1, 2], user 1 [1, 2]; items 3 and 5 are only validation
    # targets, 4 and 6 only test targets, 7 never occurs.
    sequences = [[0, 1, 2, 3, 4], [1, 2, 5, 6], [2, 1, 1, 3, 4]]
    data = Dataset(sequences, [{"title": str(i)} for i in range(8)])
    graph = cooccurrence_graph(data).toarray()
    assert np.array_equal(graph, graph.T) and (np.diag(graph) == 0).all()
    assert graph[0, 1] == 1 and graph[1, 2] == 3 and graph[0, 2] == 0
    assert graph[3:].sum() == 0  # no edge to a validation or test target
    wide = cooccurrence_graph(data, window=2).toarray()
    assert wide[0, 2] == 1 and wide[1, 2] == 4 and wide[3:].sum() == 0


def test_items_without_cooccurrence_get_spread_codes():
    # 40 items in two co-occurring blocks; 24 more appear only as targets or never.
    rng = np.random.default_rng(0)
    sequences = [list(rng.integers(20 * (u % 2), 20 * (u % 2) + 20, size=6)) for u in range(60)]
    sequences += [[u % 40, 40 + u % 12, 52 + u % 6] for u in range(12)]
    data = Dataset(sequences, [{"title": str(i)} for i in range(64)])
    tokenizer = CIDTokenizer(levels=3, codebook_size=4)
    ids = tokenizer.fit(data)
    assert ids.is_unique() and tokenizer.report_.extra["isolated_items"] == 24
    assert tokenizer.report_.unique.moved == 0  # the clustering respects every capacity
    # No first code mixes the blocks, and the isolated items even out the first-level
    # clusters (64 items fill all 4 * 16 identifiers) instead of piling into one.
    first = ids.codes[:, 0]
    assert not set(first[:20]) & set(first[20:40])
    assert np.bincount(first, minlength=4).tolist() == [16] * 4


def test_capacity_and_argument_errors(data):
    with pytest.raises(ValueError, match=r"codebook_size 2 \*\* levels 6 = 64"):
        CIDTokenizer(levels=6, codebook_size=2).fit(data)
    for bad, name in [
        ({"levels": 0}, "levels"),
        ({"codebook_size": 1}, "codebook_size"),
        ({"window": 0}, "window"),
        ({"levels": 2.5}, "levels"),
        ({"unique": "exact"}, "unique"),
        ({"levels": 9, "codebook_size": 256}, "64"),
    ]:
        with pytest.raises(ValueError, match=name):
            CIDTokenizer(**bad)


def test_suffix_adds_a_level(data):
    nearest = CIDTokenizer(levels=3, codebook_size=8).fit(data)
    suffix = CIDTokenizer(levels=3, codebook_size=8, unique="suffix").fit(data)
    assert suffix.codes.shape == (120, 4) and suffix.codebook_sizes[:3] == (8, 8, 8)
    assert np.array_equal(suffix.codes[:, :3], nearest.codes) and suffix.is_unique()


@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 60),
    k=st.integers(1, 8),
    spare=st.integers(0, 20),
)
def test_capped_labels_place_everyone_within_capacity(seed, m, k, spare):
    capacity = -(-m // k) + spare
    distances = np.random.default_rng(seed).random((m, k))
    labels = capped_labels(distances, capacity)
    assert np.bincount(labels, minlength=k).max() <= capacity and labels.min() >= 0
    if capacity >= m:  # no cap binds: the nearest cluster
        assert np.array_equal(labels, distances.argmin(axis=1))
