"""`TextMapper`: identifiers for new items from their text, without the item2id task.

A run trained on seqrec alone has no model path from item text to identifiers, so
`add_items` has nothing to beam-search. The mapper learns that path from the run's own
catalogue instead: for every level l, a small MLP reads the item's text vector and learned
embeddings of its codes at levels < l and scores level l's codes. All levels train jointly
by teacher forcing; `propose` beam-searches level by level, not limited to existing
identifiers, and the caller's `assign_unique` (existing identifiers reserved) makes the
proposals unique.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from siit.files import read_json

log = logging.getLogger(__name__)

WEIGHTS = "mapper.safetensors"
META = "mapper.json"
FORMAT = 1
# `propose` scores items x beams x codes of a level at once: larger inputs go in chunks.
_SCORES_PER_CHUNK = 1 << 22


class _Net(nn.Module):
    """Per level l: logits_l = head_l(gelu(text_l(x) + sum_{j<l} prefix_l[j][c_j])), which is
    an MLP over [x, one-hot codes above l] with one hidden layer, without the concatenation."""

    mean: torch.Tensor
    scale: torch.Tensor
    offsets: torch.Tensor

    def __init__(self, dim: int, codebook_sizes: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.sizes = tuple(codebook_sizes)
        self.hidden = hidden
        levels = len(self.sizes)
        # Standardization of the training vectors (sentence embeddings are small numbers).
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("offsets", torch.tensor(np.cumsum([0, *self.sizes[:-1]])))
        self.text = nn.Linear(dim, levels * hidden)  # every level's text part in one matmul
        # prefix[l - 1]: the codes of levels < l, each level's codes at their own offset.
        self.prefix = nn.ModuleList(
            nn.Embedding(sum(self.sizes[:level]), hidden) for level in range(1, levels)
        )
        self.heads = nn.ModuleList(nn.Linear(hidden, size) for size in self.sizes)

    def text_parts(self, x: torch.Tensor) -> torch.Tensor:
        """(b, L, hidden): every level's contribution from the text vector."""
        z = (x - self.mean) / self.scale
        return self.text(z).view(len(x), len(self.sizes), self.hidden)

    def level_logits(
        self, text: torch.Tensor, prefix: torch.Tensor, level: int, dropout: float = 0.0
    ) -> torch.Tensor:
        """Logits over level `level`'s codes (..., K_l) from its text part (..., hidden) and
        the codes above it (..., level)."""
        h = text
        if level:
            h = h + self.prefix[level - 1](prefix + self.offsets[:level]).sum(-2)
        return self.heads[level](F.dropout(F.gelu(h), dropout, self.training))


class TextMapper:
    """Item text embeddings -> identifier codes, level by level (level l conditioned on the
    codes above), so that runs trained without the item2id task can place new items."""

    def __init__(self, net: _Net) -> None:
        self._net = net.eval()

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self._net.sizes

    @property
    def dim(self) -> int:
        return int(self._net.mean.shape[0])

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        codes: np.ndarray,
        codebook_sizes: Sequence[int],
        seed: int = 0,
        hidden: int = 256,
        steps: int = 300,
        batch_size: int = 512,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        dropout: float = 0.2,
    ) -> TextMapper:
        """Fits the mapper to a catalogue: `vectors` (n, d) item text embeddings and `codes`
        (n, L) their identifiers with `codebook_sizes` (L,). `steps` Adam steps on batches
        of `batch_size` items (the whole catalogue if smaller), the levels' cross-entropies
        summed: a budget in steps rather than epochs, so a 12k-item catalogue fits in
        seconds too. The same seed gives the same weights on CPU."""
        sizes = _check_sizes(codebook_sizes)
        x = _check_vectors(vectors, "vectors")
        y = np.asarray(codes)
        if y.ndim != 2 or y.shape != (len(x), len(sizes)):
            raise ValueError(
                f"codes must have shape ({len(x)}, {len(sizes)}) (one row per vector, one "
                f"column per codebook), got {y.shape}"
            )
        if y.dtype.kind not in "iu":
            raise ValueError(f"codes must be integers, got dtype {y.dtype}")
        if len(x) == 0:
            raise ValueError("vectors is empty: nothing to fit")
        bad = np.flatnonzero(((y < 0) | (y >= np.asarray(sizes))).any(1))
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"codes[{i}] = {y[i].tolist()} is out of range for codebook_sizes {list(sizes)}"
            )
        for name, value in (("hidden", hidden), ("steps", steps), ("batch_size", batch_size)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        started = time.perf_counter()
        xt = torch.from_numpy(x)
        yt = torch.from_numpy(y.astype(np.int64))
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            torch.manual_seed(seed)
            net = _Net(x.shape[1], sizes, int(hidden))
            net.mean.copy_(xt.mean(0))
            net.scale.copy_(xt.std(0, unbiased=False).clamp_min(1e-6))
            optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
            net.train()
            # Shuffled passes over the catalogue, end to end, cut into `steps` batches.
            batch = min(int(batch_size), len(xt))
            epochs = -(-steps * batch // len(xt))
            order = torch.cat([torch.randperm(len(xt)) for _ in range(epochs)])
            for rows in order[: steps * batch].split(batch):
                text = net.text_parts(xt[rows])
                target = yt[rows]
                loss = torch.stack(
                    [
                        F.cross_entropy(
                            net.level_logits(text[:, level], target[:, :level], level, dropout),
                            target[:, level],
                        )
                        for level in range(len(sizes))
                    ]
                ).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        mapper = cls(net)
        accuracy = mapper._accuracy(xt, yt)
        log.info(
            "text mapper: %d items, %d steps (%.1f epochs), train accuracy per level %s, %.1f s",
            len(x),
            steps,
            steps * batch / len(xt),
            " ".join(f"{a:.3f}" for a in accuracy),
            time.perf_counter() - started,
        )
        return mapper

    @torch.no_grad()
    def _accuracy(self, x: torch.Tensor, y: torch.Tensor) -> list[float]:
        """Teacher-forced top-1 accuracy of every level (the true codes above it given)."""
        text = self._net.text_parts(x)
        hits = [
            self._net.level_logits(text[:, level], y[:, :level], level).argmax(-1) == y[:, level]
            for level in range(len(self.codebook_sizes))
        ]
        return [float(h.float().mean()) for h in hits]

    @torch.no_grad()
    def propose(self, vectors: np.ndarray, beams: int) -> tuple[np.ndarray, np.ndarray]:
        """The `beams` most likely identifiers of each item: candidates (m, beams, L) int64
        and their log-probabilities (m, beams) float64, best first. Not limited to existing
        identifiers. Where fewer identifiers can be spelt than `beams`, the extra slots hold
        codes 0 and score -inf (which `assign_unique` skips)."""
        x = _check_vectors(vectors, "vectors")
        if x.shape[1] != self.dim:
            raise ValueError(f"vectors must have {self.dim} columns, got {x.shape[1]}")
        if not isinstance(beams, (int, np.integer)) or beams < 1:
            raise ValueError(f"beams must be a positive integer, got {beams!r}")
        levels = len(self.codebook_sizes)
        candidates = np.zeros((len(x), beams, levels), dtype=np.int64)
        scores = np.full((len(x), beams), -np.inf)
        step = max(1, _SCORES_PER_CHUNK // (beams * max(self.codebook_sizes)))
        for lo in range(0, len(x), step):
            found, score = self._beam_search(torch.from_numpy(x[lo : lo + step]), beams)
            candidates[lo : lo + step, : found.shape[1]] = found.numpy()
            scores[lo : lo + step, : score.shape[1]] = score.numpy()
        return candidates, scores

    def _beam_search(self, x: torch.Tensor, beams: int) -> tuple[torch.Tensor, torch.Tensor]:
        text = self._net.text_parts(x)  # (m, L, hidden)
        m = len(x)
        score = torch.zeros(m, 1, dtype=torch.float64)
        codes = torch.zeros(m, 1, 0, dtype=torch.int64)
        for level, size in enumerate(self.codebook_sizes):
            width = codes.shape[1]
            part = text[:, level, None].expand(m, width, -1)
            logp = F.log_softmax(self._net.level_logits(part, codes, level), -1)
            total = (score[..., None] + logp.double()).reshape(m, width * size)
            score, flat = total.topk(min(beams, width * size), dim=1)  # sorted, best first
            parent = (flat // size)[..., None].expand(-1, -1, level)
            codes = torch.cat([codes.gather(1, parent), (flat % size)[..., None]], -1)
        return codes, score

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Weights as safetensors and shapes as JSON in `directory`, written to a temporary
        folder beside it and renamed into place, so a reader never sees half a mapper."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        state = {k: v.detach().contiguous() for k, v in self._net.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        meta = dict(
            format=FORMAT,
            dim=self.dim,
            hidden=self._net.hidden,
            codebook_sizes=list(self.codebook_sizes),
        )
        (tmp / META).write_text(json.dumps(meta, indent=1))
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TextMapper:
        """A mapper written by `save`; a missing or malformed file raises ValueError naming
        it. Weights load from safetensors only (no pickle)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        meta_path, weights = directory / META, directory / WEIGHTS
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: not a text mapper's description (format {FORMAT})")
        try:
            with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten
                net = _Net(
                    int(meta["dim"]), _check_sizes(meta["codebook_sizes"]), int(meta["hidden"])
                )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{meta_path}: not a text mapper's description ({e!r})") from None
        if not weights.is_file():
            raise ValueError(f"{weights}: file not found")
        try:
            state = load_file(str(weights))
            net.load_state_dict(state)
        except (SafetensorError, RuntimeError, OSError) as e:
            raise ValueError(f"{weights}: not this mapper's weights ({e})") from None
        return cls(net)


def _check_sizes(codebook_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(np.asarray(codebook_sizes).reshape(-1).tolist())
    if not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(
            f"codebook_sizes must be one or more positive integers, got {codebook_sizes!r}"
        )
    return sizes


def _check_vectors(vectors: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (items, dim), got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(x).all(1))
    if len(bad):
        raise ValueError(f"{name}[{bad[0]}] is not finite (NaN or inf)")
    return x
