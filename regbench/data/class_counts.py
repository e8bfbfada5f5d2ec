"""Per-class image counts from the class sizes alone (no torch), shared by the code that draws the images and by
the config checks that plan a run's shape before torch loads: the parts of the seeded stratified split (drawn here
too, in numpy, so its sizes and its positions cannot disagree), the long-tailed profiles (see imbalance.py) and
SMOTE's top-up (see smote.py)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np


def held_out_count(class_size: int, fraction: float) -> int:
    return int(round(fraction * class_size))


def kept_counts(class_counts: tuple[int, ...], fraction: float) -> tuple[int, ...]:
    """Per-class sizes of the kept part of `stratified_indices`, from the class sizes alone."""
    return tuple(n - held_out_count(n, fraction) for n in class_counts)


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (kept, held_out) positions; held_out takes round(fraction * n_c) samples of each class c, drawn
    with `seed`: every class keeps its share in both parts."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_held = held_out_count(len(members), fraction)
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def exponential_counts(n_max: int, num_classes: int, factor: float) -> list[int]:
    if num_classes == 1:
        return [n_max]
    return [math.floor(n_max * factor ** (-c / (num_classes - 1))) for c in range(num_classes)]


def step_counts(n_max: int, num_classes: int, factor: float, minority_fraction: float) -> list[int]:
    first_minority = num_classes - round(minority_fraction * num_classes)
    return [n_max if c < first_minority else math.floor(n_max / factor) for c in range(num_classes)]


def profile_counts(cfg: Mapping[str, Any], available: list[int]) -> list[int]:
    """Per-class target counts; n_max is the smallest class available, so every class can supply its count."""
    n_max, num_classes = min(available), len(available)
    if cfg["type"] == "exponential":
        return exponential_counts(n_max, num_classes, cfg["factor"])
    return step_counts(n_max, num_classes, cfg["factor"], cfg["minority_fraction"])


def smote_deficits(counts: list[int]) -> list[int]:
    """Synthetic samples each class needs to reach the largest class."""
    largest = max(counts)
    return [largest - n for n in counts]


def minority_shortfall(counts: list[int], k: int) -> tuple[int, int] | None:
    """(class, count) of the first class that needs synthetic samples but has no k neighbours of its own."""
    for c, (n, deficit) in enumerate(zip(counts, smote_deficits(counts))):
        if deficit > 0 and n <= k:
            return c, n
    return None
