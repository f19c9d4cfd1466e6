"""k-means, shared by the tokenizers (codebook initialisation, code clusters, spectral
clusters): k-means++ seeds, then Lloyd's iterations until the labels stop changing. Runs on
whatever device and dtype the points have."""

from __future__ import annotations

import torch


def kmeans(
    points: torch.Tensor, k: int, iterations: int = 50, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Centroids (k, d) of `points` (n, d). An empty cluster keeps its centroid; duplicate
    points are fine. `generator` (a CPU generator) makes the seeding reproducible."""
    n = points.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [points[first]]
    closest = ((points - points[first]) ** 2).sum(1)
    for _ in range(1, k):
        # k-means++: the next seed is drawn in proportion to the squared distance.
        total = closest.sum()
        weights = closest / total if total > 0 else torch.full_like(closest, 1.0 / n)
        pick = int(torch.multinomial(weights.cpu().float(), 1, generator=generator))
        centroids.append(points[pick])
        closest = torch.minimum(closest, ((points - points[pick]) ** 2).sum(1))
    c = torch.stack(centroids)
    labels = None
    for _ in range(iterations):
        new = torch.cdist(points, c).argmin(1)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(c).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=k).unsqueeze(1)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
    return c
