"""Non-generative peers on the same leave-one-out split as `siit.train`: recommending the
most popular training items, and a compact SASRec over item ids (causal self-attention,
trained on every position of the same windows, full softmax over the items, early
stopping on validation NDCG@10). Both report test metrics with and without the user's
history excluded from the ranking.

Its MovieLens-100K figure is checked against RecBole 1.2.1's SASRec (test NDCG@10 0.0584,
`../shared/data/README.md`) in benches/results/recommenders.md.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import siit
import torch
from siit.metrics import first_hit, ranking_metrics
from torch import nn

K = 20  # the longest ranked list any metric reads


def _ranked(scores: torch.Tensor, seen: np.ndarray | None) -> np.ndarray:
    """Top-K item indices of score rows (B, n_items), with `seen` items (B, S; -1 padding)
    masked out."""
    if seen is not None:
        rows, cols = np.nonzero(seen >= 0)
        scores[torch.as_tensor(rows), torch.as_tensor(seen[rows, cols])] = -math.inf
    return scores.topk(K, dim=1).indices.numpy()


def _metrics(ranked: np.ndarray, samples: siit.Samples) -> dict[str, float]:
    return ranking_metrics(first_hit(ranked, samples.targets))


def popularity(dataset: siit.Dataset, exclude_history: bool = False) -> dict[str, float]:
    """Test metrics of ranking items by their count in the training part."""
    _, positions = dataset.train_positions()
    counts = np.bincount(dataset.items[positions], minlength=dataset.n_items)
    test = dataset.test_samples()
    scores = torch.as_tensor(np.tile(counts.astype(np.float64), (len(test), 1)))
    seen = dataset.seen_items(test) if exclude_history else None
    return _metrics(_ranked(scores, seen), test)


class SASRec(nn.Module):
    """Item and position embeddings, pre-LayerNorm causal transformer blocks, output tied to
    the item embeddings. Item 0 is padding; item i is row i + 1."""

    def __init__(
        self, n_items: int, length: int, hidden: int, layers: int, heads: int, dropout: float
    ):
        super().__init__()
        self.items = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.positions = nn.Embedding(length, hidden)
        block = nn.TransformerEncoderLayer(
            hidden, heads, 4 * hidden, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, H) of right-aligned or left-aligned item rows (0: padding)."""
        t = seq.shape[1]
        pos = torch.arange(t, device=seq.device)
        h = self.dropout(self.items(seq) + self.positions(pos))
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=seq.device), 1)
        h = self.blocks(h, mask=causal, src_key_padding_mask=seq == 0, is_causal=True)
        return self.norm(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.items.weight[1:].T


def scores(model: SASRec, samples: siit.Samples, batch: int = 256) -> torch.Tensor:
    """Scores of every item after each sample's history (left-padded, as prompts are)."""
    out = []
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(samples), batch):
            hist = samples.histories[lo : lo + batch]
            # right-align into rows starting at position 0, like the training windows
            length = (hist >= 0).sum(1)
            seq = np.zeros_like(hist)
            for_cols = np.arange(hist.shape[1])
            src = hist.shape[1] - length[:, None] + for_cols
            valid = for_cols < length[:, None]
            seq[valid] = hist[np.nonzero(valid)[0], src[valid]] + 1
            h = model(torch.as_tensor(seq))
            last = h[torch.arange(len(seq)), torch.as_tensor(length) - 1]
            out.append(model.logits(last))
    return torch.cat(out)


def fit_sasrec(
    dataset: siit.Dataset,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    dropout: float = 0.2,
    lr: float = 2e-3,
    batch_size: int = 128,
    max_epochs: int = 200,
    patience: int = 10,
    log=print,
) -> tuple[SASRec, dict]:
    """Train on every position of `Dataset.train_windows(max_history + 1)` with early stopping
    on validation NDCG@10; the model with its best weights, and its epochs, best epoch,
    seconds and validation curve."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    length = dataset.max_history + 1
    windows = dataset.train_windows(length).items
    model = SASRec(dataset.n_items, length, hidden, layers, heads, dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    valid = dataset.valid_samples()
    best, best_state, best_epoch, since, curve = -1.0, None, 0, 0, []
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = rng.permutation(len(windows))
        for lo in range(0, len(order), batch_size):
            w = windows[order[lo : lo + batch_size]]
            seq = torch.as_tensor(np.where(w[:, :-1] >= 0, w[:, :-1] + 1, 0))
            target = torch.as_tensor(w[:, 1:])
            h = model(seq)
            mask = target >= 0
            loss = nn.functional.cross_entropy(model.logits(h[mask]), target[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
        ndcg = _metrics(_ranked(scores(model, valid), None), valid)["ndcg@10"]
        curve.append(ndcg)
        if ndcg > best:
            best, best_state, best_epoch, since = ndcg, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            since += 1
        log(f"sasrec seed {seed} epoch {epoch}: valid ndcg@10 {ndcg:.4f} (best {best:.4f})")
        if since >= patience:
            break
    model.load_state_dict(best_state)
    info = {
        "epochs": epoch,
        "best_epoch": best_epoch,
        "seconds": round(time.perf_counter() - start, 1),
        "curve": curve,
    }
    return model, info


def sasrec(dataset: siit.Dataset, seed: int = 0, log=print, **settings) -> dict:
    """`fit_sasrec`, then validation and test metrics (test also with history excluded)."""
    model, info = fit_sasrec(dataset, seed, log=log, **settings)
    valid, test = dataset.valid_samples(), dataset.test_samples()
    test_scores = scores(model, test)
    return {
        "valid": _metrics(_ranked(scores(model, valid), None), valid),
        "test": _metrics(_ranked(test_scores.clone(), None), test),
        "test_exclude_history": _metrics(_ranked(test_scores, dataset.seen_items(test)), test),
        **info,
    }
