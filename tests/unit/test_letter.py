"""LETTER: training pairs without leakage, BPR factors, the two regularizers, end to end."""

import numpy as np
import pytest
import torch
from siit.data import Dataset
from siit.tokenizers.letter import LETTERTokenizer, collaborative_embeddings, training_pairs
from siit.tokenizers.rqvae import RQVAE
from synthetic import TINY_RQVAE, latent_groups


@pytest.fixture(scope="module")
def data():
    return Dataset.synthetic(n_users=300, n_items=120, n_clusters=4, seed=1)


def group_consistency(codes, groups):
    """Share of items on their group's most common code."""
    return sum(np.bincount(codes[groups == g]).max() for g in np.unique(groups)) / len(groups)


OPTIONS = TINY_RQVAE | {"epochs": 10, "diversity_clusters": 4}


def test_training_pairs_leave_out_validation_and_test():
    data = Dataset([[0, 1, 2, 3], [4, 5, 6]], [{"title": str(i)} for i in range(7)])
    users, items = training_pairs(data)
    assert users.tolist() == [0, 0, 1] and items.tolist() == [0, 1, 4]


def test_bpr_factors_reflect_co_consumption(data):
    factors = collaborative_embeddings(data, dim=16, epochs=10, batch_size=512, progress=False)
    factors = factors.numpy()
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    groups = latent_groups(data)
    same = groups[:, None] == groups[None, :]
    sim = unit @ unit.T
    assert sim[same].mean() > sim[~same].mean() + 0.05


def test_alignment_shapes_the_codes(data):
    """Text vectors are pure noise; the collaborative vectors know the groups: aligning
    with them puts each group's items on fewer first-level codes."""
    rng = np.random.default_rng(0)
    groups = latent_groups(data)
    noise = rng.normal(size=(data.n_items, 32)).astype(np.float32)
    cf = (np.eye(4)[groups] * 3 + rng.normal(size=(data.n_items, 4)) * 0.3).astype(np.float32)
    options = OPTIONS | {"epochs": 40, "collaborative": cf}
    plain = LETTERTokenizer(noise, alignment_weight=0.0, **options).fit(data)
    aligned = LETTERTokenizer(noise, alignment_weight=5.0, **options).fit(data)
    assert aligned.is_unique()
    gain = group_consistency(aligned.codes[:, 0], groups) - group_consistency(
        plain.codes[:, 0], groups
    )
    assert gain > 0.08


def test_diversity_loss_reaches_the_codebooks(data):
    tokenizer = LETTERTokenizer(np.zeros((data.n_items, 4), np.float32), **OPTIONS)
    torch.manual_seed(0)
    model = RQVAE(4, [8, 8], latent_dim=3, hidden=(8,))
    generator = torch.Generator().manual_seed(0)
    tokenizer._generator = generator
    tokenizer._start_epoch(model, generator)
    out = model(torch.randn(16, 4))
    loss = tokenizer.diversity_loss(model, out)
    loss.backward()
    assert torch.isfinite(loss) and model.codebooks[0].grad.abs().sum() > 0


def test_reproducible_and_validated(data):
    vectors = np.random.default_rng(1).normal(size=(data.n_items, 16)).astype(np.float32)
    options = OPTIONS | {"epochs": 3, "cf_epochs": 3, "cf_dim": 8}
    a = LETTERTokenizer(vectors, **options).fit(data)
    b = LETTERTokenizer(vectors, **options).fit(data)
    assert (a.codes == b.codes).all()
    with pytest.raises(ValueError, match="diversity_clusters must be in 1..codebook_size"):
        LETTERTokenizer(vectors, **(OPTIONS | {"diversity_clusters": 9}))
    with pytest.raises(ValueError, match=r"collaborative must have shape \(120, d\)"):
        LETTERTokenizer(vectors, collaborative=np.zeros((3, 2)), **OPTIONS).fit(data)
