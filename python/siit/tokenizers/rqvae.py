"""RQ-VAE item tokenizer (TIGER): an MLP autoencoder over item text embeddings whose latent
is quantized by L residual codebooks; an item's identifier is its code at every level.

Training follows TIGER: reconstruction loss plus, per level, the codebook and commitment
losses of VQ-VAE with a straight-through estimator; codebooks start from k-means on the
residuals, and codes left unused after an epoch are re-seeded from residuals of the data,
so that no code dies. `RQVAE` is the torch module; `RQVAETokenizer` fits it to a dataset
and ends in the uniqueness step with each item's nearest last-level codes as candidates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from siit.data import Dataset
from siit.progress import progress_bar
from siit.tokenizers.base import Tokenizer, UniqueMethod
from siit.tokenizers.kmeans import kmeans

log = logging.getLogger(__name__)


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class Output(NamedTuple):
    codes: torch.Tensor  # (b, L)
    quantized: torch.Tensor  # (b, latent), straight-through
    recon_loss: torch.Tensor
    vq_loss: torch.Tensor


class RQVAE(nn.Module):
    """Encoder MLP, L residual codebooks, decoder MLP."""

    def __init__(
        self,
        input_dim: int,
        codebook_sizes: Sequence[int],
        latent_dim: int = 32,
        hidden: Sequence[int] = (512, 256, 128),
        beta: float = 0.25,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = mlp([input_dim, *hidden, latent_dim], dropout)
        self.decoder = mlp([latent_dim, *reversed(hidden), input_dim], dropout)
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.randn(size, latent_dim) * 0.1) for size in codebook_sizes
        )
        self.beta = beta

    def quantize(self, z: torch.Tensor):
        """Codes (b, L), the quantized latent (b, latent) and the residual at every level."""
        residual, quantized, codes, residuals = z, torch.zeros_like(z), [], []
        for book in self.codebooks:
            residuals.append(residual)
            code = torch.cdist(residual, book).argmin(1)
            chosen = book[code]
            quantized = quantized + chosen
            residual = residual - chosen
            codes.append(code)
        return torch.stack(codes, 1), quantized, residuals

    def forward(self, x: torch.Tensor) -> Output:
        z = self.encoder(x)
        codes, quantized, residuals = self.quantize(z)
        vq = sum(
            ((r.detach() - book[c]) ** 2).sum(1).mean()
            + self.beta * ((r - book[c].detach()) ** 2).sum(1).mean()
            for r, book, c in zip(residuals, self.codebooks, codes.unbind(1), strict=True)
        )
        # Straight-through: the decoder sees the quantized latent, gradients reach the encoder.
        quantized_st = z + (quantized - z).detach()
        recon = self.decoder(quantized_st)
        return Output(codes, quantized_st, ((recon - x) ** 2).sum(1).mean(), vq)

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """k-means on each level's residuals, level by level."""
        residual = self.encoder(x)
        for book in self.codebooks:
            book.copy_(kmeans(residual, book.shape[0], generator=generator))
            residual = residual - book[torch.cdist(residual, book).argmin(1)]

    @torch.no_grad()
    def reseed_dead_codes(self, x: torch.Tensor, generator: torch.Generator) -> int:
        """Moves codes that no item uses onto residuals of random items; returns how many."""
        codes, _, residuals = self.quantize(self.encoder(x))
        dead_total = 0
        for level, book in enumerate(self.codebooks):
            used = torch.bincount(codes[:, level], minlength=book.shape[0]) > 0
            dead = (~used).nonzero().squeeze(1)
            if len(dead):
                pick = torch.randint(len(x), (len(dead),), generator=generator).to(x.device)
                book[dead] = residuals[level][pick]
                dead_total += len(dead)
        return dead_total


class RQVAETokenizer(Tokenizer):
    """TIGER's RQ-VAE tokenizer over item text embeddings.

    Args:
        embeddings: (n_items, d) item vectors, or a function of the dataset that returns
            them; by default the item texts embedded with `siit.embed`.
        levels, codebook_size: identifier shape (TIGER: 3 levels of 256 codes).
        candidates: last-level codes offered per item to the uniqueness step.
        epochs, batch_size, lr, latent_dim, hidden, beta: training settings.
        device: "cpu", "cuda", ...; by default CUDA when available.
    """

    def __init__(
        self,
        embeddings: np.ndarray | Callable[[Dataset], np.ndarray] | None = None,
        levels: int = 3,
        codebook_size: int = 256,
        candidates: int = 20,
        epochs: int = 200,
        batch_size: int = 1024,
        lr: float = 1e-3,
        latent_dim: int = 32,
        hidden: Sequence[int] = (512, 256, 128),
        beta: float = 0.25,
        seed: int = 0,
        device: str | None = None,
        unique: UniqueMethod = "nearest",
        progress: bool = True,
    ) -> None:
        for name, value in (
            ("levels", levels),
            ("codebook_size", codebook_size),
            ("candidates", candidates),
            ("epochs", epochs),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.embeddings, self.levels, self.codebook_size = embeddings, levels, codebook_size
        self.candidates, self.epochs, self.batch_size, self.lr = candidates, epochs, batch_size, lr
        self.latent_dim, self.hidden, self.beta, self.seed = latent_dim, tuple(hidden), beta, seed
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.unique, self.progress = unique, progress
        self.model_: RQVAE | None = None

    def _vectors(self, dataset: Dataset) -> np.ndarray:
        if self.embeddings is None:
            from siit.data import item_texts
            from siit.embed import embed

            dataset.require_text(f"{type(self).__name__} (without embeddings=)")
            return embed(item_texts(dataset))
        vectors = self.embeddings(dataset) if callable(self.embeddings) else self.embeddings
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != dataset.n_items:
            raise ValueError(
                f"embeddings must have shape ({dataset.n_items}, d), got {vectors.shape}"
            )
        if not np.isfinite(vectors).all():
            raise ValueError("embeddings contain NaN or infinite values")
        return vectors

    def _train(self, x: torch.Tensor, dataset: Dataset) -> RQVAE:
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        sizes = [self.codebook_size] * self.levels
        model = RQVAE(x.shape[1], sizes, self.latent_dim, self.hidden, self.beta).to(x.device)
        model.init_codebooks(x, generator)
        self._prepare(model, dataset, generator)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        bar = progress_bar(range(self.epochs), desc=type(self).__name__, enabled=self.progress)
        for _ in bar:
            model.train()
            self._start_epoch(model, generator)
            order = torch.randperm(len(x), generator=generator).to(x.device)
            total = 0.0
            for batch in order.split(self.batch_size):
                out = model(x[batch])
                loss = out.recon_loss + out.vq_loss + self._extra_loss(model, batch, out)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            model.eval()
            dead = model.reseed_dead_codes(x, generator)
            bar.set_postfix(loss=f"{total / len(x):.4f}", reseeded=dead)
        return model

    # Hooks for tokenizers that add objectives to RQ-VAE training (LETTER).
    def _prepare(self, model: RQVAE, dataset: Dataset, generator: torch.Generator) -> None:
        """Called once before training; may add modules to `model`."""

    def _start_epoch(self, model: RQVAE, generator: torch.Generator) -> None:
        """Called at the start of every epoch."""

    def _extra_loss(self, model: RQVAE, batch: torch.Tensor, out: Output) -> torch.Tensor | float:
        """Added to the loss of every batch (`batch`: item indices)."""
        return 0.0

    def _codes(self, dataset: Dataset):
        x = torch.from_numpy(self._vectors(dataset)).to(self.device)
        model = self._train(x, dataset)
        self.model_ = model
        with torch.no_grad():
            z = model.encoder(x)
            codes, _, residuals = model.quantize(z)
            # Candidates: the item's own prefix with its nearest last-level codes, by distance.
            dist = torch.cdist(residuals[-1], model.codebooks[-1])
            k = min(self.candidates, self.codebook_size)
            neg, last = (-dist).topk(k, dim=1)
        candidates = codes[:, None, :].repeat(1, k, 1)
        candidates[:, :, -1] = last
        return (
            codes.cpu().numpy(),
            (self.codebook_size,) * self.levels,
            candidates.cpu().numpy(),
            neg.double().cpu().numpy(),
        )
