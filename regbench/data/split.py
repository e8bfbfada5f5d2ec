"""Seeded stratified splits: every class keeps its share in both parts."""
from __future__ import annotations

import numpy as np
import torch


def held_out_count(class_size: int, fraction: float) -> int:
    return int(round(fraction * class_size))


def kept_counts(class_counts: tuple[int, ...], fraction: float) -> tuple[int, ...]:
    """Per-class sizes of the kept part of `stratified_split`, from the class sizes alone."""
    return tuple(n - held_out_count(n, fraction) for n in class_counts)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (kept, held_out) index tensors; held_out takes round(fraction * n_c) samples of each class c."""
    rng = np.random.default_rng(seed)
    labels_np = labels.cpu().numpy()
    kept, held = [], []
    for c in np.unique(labels_np):
        members = rng.permutation(np.flatnonzero(labels_np == c))
        n_held = held_out_count(len(members), fraction)
        held.append(members[:n_held])
        kept.append(members[n_held:])
    kept_idx, held_idx = np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))
    return torch.from_numpy(kept_idx), torch.from_numpy(held_idx)
