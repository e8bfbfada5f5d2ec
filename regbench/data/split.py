"""Seeded stratified splits: every class keeps its share in both parts."""
from __future__ import annotations

import numpy as np
import torch


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (kept, held_out) index tensors; held_out takes round(fraction * n_c) samples of each class c."""
    rng = np.random.default_rng(seed)
    labels_np = labels.cpu().numpy()
    kept, held = [], []
    for c in np.unique(labels_np):
        members = rng.permutation(np.flatnonzero(labels_np == c))
        n_held = int(round(fraction * len(members)))
        held.append(members[:n_held])
        kept.append(members[n_held:])
    kept_idx, held_idx = np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))
    return torch.from_numpy(kept_idx), torch.from_numpy(held_idx)
