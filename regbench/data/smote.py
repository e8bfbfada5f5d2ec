"""SMOTE (Chawla, Bowyer, Hall & Kegelmeyer, "SMOTE: Synthetic Minority Over-sampling Technique", JAIR 2002),
in pixel space on the training split.

For each minority class c, every synthetic sample is x + u * (x_nn - x) with x an image of class c, x_nn one of
the k nearest images of class c to x (Euclidean distance over all pixel values, x itself excluded) and
u ~ U(0, 1). The paper gives each minority sample N/100 synthetic samples (N% oversampling); here N is chosen so
that every class reaches the largest class's count: each sample of class c seeds floor(G / n_c) synthetic samples
and a seeded random G mod n_c of them one more, G = n_max - n_c.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from regbench.data.class_counts import minority_shortfall, smote_deficits


@dataclass
class Synthesis:
    """One class's synthetic samples and how each was made (positions within the class's own samples)."""

    samples: torch.Tensor  # (G, D) float64, before any rounding to the images' dtype
    base: torch.Tensor  # (G,) the sample x each one starts from
    neighbour: torch.Tensor  # (G,) the neighbour x_nn it moves towards
    step: torch.Tensor  # (G,) u in [0, 1)


def nearest_neighbours(points: torch.Tensor, k: int) -> torch.Tensor:
    """(n, k) positions of each row's k nearest other rows, nearest first (ties by position)."""
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(float("inf"))
    return torch.sort(distances, dim=1, stable=True).indices[:, :k]


def synthesize_class(points: torch.Tensor, count: int, k: int, gen: torch.Generator) -> Synthesis:
    """`count` synthetic samples from one class's flattened images `points` (n, D), n > k."""
    points = points.double()
    n = len(points)
    neighbours = nearest_neighbours(points, k)
    extra = torch.randperm(n, generator=gen)[:count % n]
    base = torch.cat([torch.arange(n).repeat(count // n), extra.sort().values])
    neighbour = neighbours[base, torch.randint(0, k, (count,), generator=gen)]
    step = torch.rand(count, generator=gen, dtype=torch.float64)
    samples = points[base] + step[:, None] * (points[neighbour] - points[base])
    return Synthesis(samples, base, neighbour, step)


def smote_oversample(images: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The training images and labels with every class raised to the largest class's count by SMOTE, the synthetic
    samples appended after the real ones (rounded to the images' dtype), and how many each class received."""
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    shortfall = minority_shortfall(counts, k)
    if shortfall is not None:  # the config checks refuse this first (shape.check_smote_counts)
        raise ValueError(f"SMOTE with k={k}: class {shortfall[0]} has only {shortfall[1]} samples")
    new_images, new_labels = [images], [labels]
    added = smote_deficits(counts)
    for c, deficit in enumerate(added):
        if deficit == 0:
            continue
        members = torch.nonzero(labels == c).squeeze(1)
        samples = synthesize_class(images[members].flatten(1), deficit, k, gen).samples
        if not images.dtype.is_floating_point:
            samples = samples.round()
        new_images.append(samples.to(images.dtype).view(deficit, *images.shape[1:]))
        new_labels.append(torch.full((deficit,), c, dtype=labels.dtype))
    return torch.cat(new_images), torch.cat(new_labels), added
