"""Seeded stratified splits of label tensors: every class keeps its share in both parts (the positions are drawn
by class_counts.stratified_indices, which the torch-free folder listing uses too)."""
from __future__ import annotations

import torch

from regbench.data.class_counts import stratified_indices


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (kept, held_out) index tensors; held_out takes round(fraction * n_c) samples of each class c."""
    kept, held = stratified_indices(labels.cpu().numpy(), fraction, seed)
    return torch.from_numpy(kept), torch.from_numpy(held)
