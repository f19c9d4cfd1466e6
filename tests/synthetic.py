"""Helpers for tests on `Dataset.synthetic` data, whose item titles name a latent group."""

import numpy as np

# A tiny RQ-VAE: enough to learn 4 well-separated groups in a few epochs on CPU.
TINY_RQVAE = dict(
    levels=3,
    codebook_size=8,
    batch_size=64,
    hidden=(64, 32),
    latent_dim=8,
    progress=False,
    device="cpu",
)


def latent_groups(dataset) -> np.ndarray:
    """The latent group of every item ("categories" is "group <g>")."""
    return np.array([int(t["categories"].split()[-1]) for t in dataset.item_text])
