"""LETTER tokenizer (Wang et al., CIKM 2024): RQ-VAE plus two regularizers.

- Collaborative alignment: the quantized item latent is pulled towards the item's
  collaborative embedding (learned here by BPR matrix factorization on the training
  interactions) with an in-batch contrastive loss, weight `alignment_weight` (LETTER's
  alpha, 0.02).
- Code diversity: every epoch the codes of each level are clustered (k-means, LETTER's K =
  10 clusters) and each item's code embedding is pulled towards a code of its own cluster and
  away from the codes of the others, so that items spread over the codebook, weight
  `diversity_weight` (LETTER's beta, 1e-4).

LETTER balances the code clusters with constrained k-means; plain k-means is used here.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from siit.data import Dataset
from siit.progress import progress_bar
from siit.tokenizers.kmeans import kmeans
from siit.tokenizers.rqvae import RQVAE, Output, RQVAETokenizer

log = logging.getLogger(__name__)


def training_pairs(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) of every training interaction: each sequence without its last two."""
    users, positions = dataset.train_positions()
    return users, dataset.items[positions]


def collaborative_embeddings(
    dataset: Dataset,
    dim: int = 64,
    epochs: int = 30,
    batch_size: int = 4096,
    lr: float = 5e-3,
    weight_decay: float = 1e-6,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """Item factors (n_items, dim) of BPR matrix factorization on the training
    interactions (uniform negative items)."""
    users, items = (torch.from_numpy(a).to(device) for a in training_pairs(dataset))
    generator = torch.Generator().manual_seed(seed)
    user_emb = nn.Embedding(dataset.n_users, dim).to(device)
    item_emb = nn.Embedding(dataset.n_items, dim).to(device)
    for table in (user_emb, item_emb):
        nn.init.normal_(table.weight, std=0.1, generator=generator)
    params = [*user_emb.parameters(), *item_emb.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    for _ in progress_bar(range(epochs), desc="BPR", enabled=progress):
        order = torch.randperm(len(users), generator=generator).to(device)
        for batch in order.split(batch_size):
            u, pos = user_emb(users[batch]), item_emb(items[batch])
            negatives = torch.randint(dataset.n_items, (len(batch),), generator=generator)
            neg = item_emb(negatives.to(device))
            loss = -F.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return item_emb.weight.detach()


class LETTERTokenizer(RQVAETokenizer):
    """RQ-VAE with LETTER's collaborative alignment and code diversity losses.

    Args (besides those of `RQVAETokenizer`):
        alignment_weight: weight of the collaborative contrastive loss (LETTER's alpha).
        diversity_weight: weight of the code diversity loss (LETTER's beta).
        diversity_clusters: clusters of codes per level (LETTER's K).
        temperature: of both contrastive losses.
        collaborative: (n_items, d) collaborative item embeddings; by default BPR factors
            trained on the dataset's training interactions (`cf_dim`, `cf_epochs`).
    """

    def __init__(
        self,
        embeddings=None,
        *,
        alignment_weight: float = 0.02,
        diversity_weight: float = 1e-4,
        diversity_clusters: int = 10,
        temperature: float = 0.1,
        collaborative: np.ndarray | None = None,
        cf_dim: int = 64,
        cf_epochs: int = 30,
        **options,
    ) -> None:
        super().__init__(embeddings, **options)
        if diversity_clusters < 1 or diversity_clusters > self.codebook_size:
            raise ValueError(
                f"diversity_clusters must be in 1..codebook_size ({self.codebook_size}), "
                f"got {diversity_clusters}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.alignment_weight, self.diversity_weight = alignment_weight, diversity_weight
        self.diversity_clusters, self.temperature = diversity_clusters, temperature
        self.collaborative, self.cf_dim, self.cf_epochs = collaborative, cf_dim, cf_epochs

    def _prepare(self, model: RQVAE, dataset: Dataset, generator: torch.Generator) -> None:
        if self.collaborative is None:
            cf = collaborative_embeddings(
                dataset,
                self.cf_dim,
                self.cf_epochs,
                seed=self.seed,
                device=self.device,
                progress=self.progress,
            )
        else:
            cf = torch.as_tensor(np.asarray(self.collaborative, dtype=np.float32))
            if cf.ndim != 2 or len(cf) != dataset.n_items:
                raise ValueError(
                    f"collaborative must have shape ({dataset.n_items}, d), got {tuple(cf.shape)}"
                )
        self._cf = cf.to(self.device)
        self._generator = generator
        # Part of the model, so that the optimizer trains it with everything else.
        model.cf_projection = nn.Linear(cf.shape[1], self.latent_dim).to(self.device)

    def _start_epoch(self, model: RQVAE, generator: torch.Generator) -> None:
        with torch.no_grad():
            self._clusters = []
            for book in model.codebooks:
                centers = kmeans(
                    book.detach(), self.diversity_clusters, iterations=10, generator=generator
                )
                self._clusters.append(torch.cdist(book.detach(), centers).argmin(1))

    def _extra_loss(self, model: RQVAE, batch: torch.Tensor, out: Output) -> torch.Tensor:
        return self.alignment_weight * self.alignment_loss(
            model, batch, out
        ) + self.diversity_weight * self.diversity_loss(model, out)

    def alignment_loss(self, model: RQVAE, batch: torch.Tensor, out: Output) -> torch.Tensor:
        """In-batch InfoNCE between quantized latents and projected collaborative vectors."""
        z = F.normalize(out.quantized, dim=1)
        h = F.normalize(model.cf_projection(self._cf[batch]), dim=1)
        logits = z @ h.T / self.temperature
        target = torch.arange(len(batch), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    def diversity_loss(self, model: RQVAE, out: Output) -> torch.Tensor:
        """Per level: each item's code embedding against one code of its cluster (positive)
        and every code of the other clusters (negatives)."""
        total = torch.zeros((), device=out.codes.device)
        for book, labels, codes in zip(
            model.codebooks, self._clusters, out.codes.unbind(1), strict=True
        ):
            mine = labels[codes]  # (b,) cluster of each item's code
            # A random code of the same cluster: sort codes by cluster, pick an offset.
            order = torch.argsort(labels, stable=True)
            counts = torch.bincount(labels, minlength=self.diversity_clusters)
            starts = torch.cumsum(counts, 0) - counts
            offset = (
                torch.rand(len(codes), generator=self._generator).to(codes.device) * counts[mine]
            ).long()
            positive = order[starts[mine] + offset]
            normed = F.normalize(book, dim=1)
            logits = normed[codes] @ normed.T / self.temperature  # (b, K)
            same = labels[None, :] == mine[:, None]
            keep = ~same | (
                torch.arange(len(book), device=codes.device)[None, :] == positive[:, None]
            )
            total = total + F.cross_entropy(logits.masked_fill(~keep, float("-inf")), positive)
        return total / len(model.codebooks)
