"""Subpopulations defined by a spurious attribute (Liang, Mao, Kwon, Yang & Zou, "Accuracy on the Curve", ICML
2023): each image gets a colour; class y's majority colour is colour y, and a `correlation` share of each class
wears it (the majority subpopulation), the rest one of the other colours drawn uniformly (the minority). A group is
a (label, colour) pair; accuracy is reported per group, on the majority and on the minority subpopulation, and on
the worst group."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

# RGB of each colour on the [0, 255] scale; colour c is class c's majority colour. The binary task uses the first
# two, red and green, as the coloured MNIST of Arjovsky et al. (2019) does.
PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0),
           (128, 0, 255), (255, 255, 255), (128, 128, 128))
COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple", "white", "grey")


def majority_count(class_size: int, correlation: float) -> int:
    """Images of a class of `class_size` that wear the class's own colour."""
    return int(round(correlation * class_size))


def assign_colors(labels: torch.Tensor, num_colors: int, correlation: float, rng: np.random.Generator) -> torch.Tensor:
    """Each image's colour: in every class y, exactly round(correlation * n_y) images, chosen at random, get colour
    y; each of the others gets one of the remaining num_colors - 1 colours, uniformly."""
    labels_np = labels.numpy()
    colors = np.empty(len(labels_np), dtype=np.int64)
    for y in range(num_colors):
        members = rng.permutation(np.flatnonzero(labels_np == y))
        n_major = majority_count(len(members), correlation)
        colors[members[:n_major]] = y
        # An offset of 1..K-1 from y reaches every other colour exactly once.
        offsets = rng.integers(1, num_colors, size=len(members) - n_major)
        colors[members[n_major:]] = (y + offsets) % num_colors
    return torch.from_numpy(colors)


def colorize(images: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) uint8 grey images -> (N, 3, H, W) uint8: each pixel's intensity times its image's colour."""
    rgb = torch.tensor(PALETTE, dtype=torch.float32)[colors] / 255  # (N, 3)
    return (images.float() * rgb[:, :, None, None]).round().to(torch.uint8)


def group_accuracy(predictions: torch.Tensor, labels: torch.Tensor, colors: torch.Tensor,
                   num_classes: int) -> dict[str, Any]:
    """metrics.json's per-model `groups` entry: accuracy and size of every non-empty (label, colour) group, the
    accuracy over all majority-colour images and over all minority-colour ones (None when a subpopulation is
    empty), and the lowest group accuracy."""
    correct = (predictions.cpu() == labels.cpu()).double()
    labels, colors = labels.cpu(), colors.cpu()
    group = labels * num_classes + colors
    counts = torch.bincount(group, minlength=num_classes * num_classes)
    hits = torch.bincount(group, weights=correct, minlength=num_classes * num_classes)
    per_group = [{"label": g // num_classes, "color": g % num_classes, "count": int(counts[g]),
                  "acc": float(hits[g] / counts[g])} for g in range(num_classes * num_classes) if counts[g] > 0]
    majority = labels == colors

    def mean_where(mask: torch.Tensor) -> float | None:
        return float(correct[mask].mean()) if bool(mask.any()) else None

    return {"per_group": per_group, "majority_acc": mean_where(majority), "minority_acc": mean_where(~majority),
            "worst_group_acc": min(entry["acc"] for entry in per_group)}
