"""RQ-VAE tokenizer: learns cluster structure, ends unique, reproducible; its pieces."""

import numpy as np
import pytest
import torch
from siit.data import Dataset
from siit.tokenizers.kmeans import kmeans
from siit.tokenizers.rqvae import RQVAE, RQVAETokenizer
from synthetic import TINY_RQVAE, latent_groups


@pytest.fixture(scope="module")
def clustered():
    """A synthetic dataset and item vectors that carry its latent groups."""
    data = Dataset.synthetic(n_users=100, n_items=160, n_clusters=4, seed=1)
    groups = latent_groups(data)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32)) * 4
    vectors = (centers[groups] + rng.normal(size=(len(groups), 32))).astype(np.float32)
    return data, groups, vectors


def fit(vectors, data, **options):
    settings = TINY_RQVAE | {"epochs": 8}
    tokenizer = RQVAETokenizer(vectors, **(settings | options))
    return tokenizer, tokenizer.fit(data)


def test_codes_follow_clusters_and_end_unique(clustered):
    data, groups, vectors = clustered
    tokenizer, ids = fit(vectors, data)
    assert ids.is_unique() and ids.codes.shape == (160, 3) and ids.codebook_sizes == (8,) * 3
    # Items of one latent group share their first code.
    for g in range(4):
        first = ids.codes[groups == g, 0]
        assert np.bincount(first).max() / len(first) > 0.9
    report = tokenizer.report_
    assert report.before.n_items == 160 and report.unique.identifiers is ids
    # At least every item beyond the first on a shared identifier had to move.
    before = report.before
    assert report.unique.moved >= before.colliding_items - before.shared_identifiers


def test_reproducible_with_a_seed(clustered):
    data, _, vectors = clustered
    _, a = fit(vectors, data, seed=3)
    _, b = fit(vectors, data, seed=3)
    assert (a.codes == b.codes).all()


def test_suffix_uniqueness(clustered):
    data, _, vectors = clustered
    _, ids = fit(vectors, data, unique="suffix")
    assert ids.is_unique() and ids.n_levels == 4


def test_kmeans_finds_separated_centers():
    gen = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(50, 2) * 0.1 + c for c in (torch.tensor([5.0, 0]), torch.tensor([-5.0, 0]))]
    )
    centers = kmeans(x, 2, generator=gen)
    assert sorted(centers[:, 0].round().tolist()) == [-5.0, 5.0]


def test_dead_codes_are_reseeded():
    torch.manual_seed(0)
    model = RQVAE(4, [6, 6], latent_dim=3, hidden=(8,))
    x = torch.randn(40, 4)
    with torch.no_grad():
        model.codebooks[0][1:] = 1e6  # only code 0 is reachable
    gen = torch.Generator().manual_seed(0)
    assert model.reseed_dead_codes(x, gen) >= 5
    codes, _, _ = model.quantize(model.encoder(x))
    assert len(codes[:, 0].unique()) > 1


def test_bad_embeddings(clustered):
    data, _, vectors = clustered
    with pytest.raises(ValueError, match=r"embeddings must have shape \(160, d\)"):
        RQVAETokenizer(vectors[:10], progress=False).fit(data)
    bad = vectors.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RQVAETokenizer(bad, progress=False).fit(data)
    with pytest.raises(ValueError, match="codebook_size must be >= 1"):
        RQVAETokenizer(vectors, codebook_size=0)
