"""LAME's output correction (Boudiaf et al., "Parameter-free Online Test-Time Adaptation", CVPR 2022, section 4):
for one batch, the assignments z minimizing the Laplacian-regularized likelihood
    sum_i KL(z_i || p_i) - sum_ij w_ij z_i^T z_j
by the paper's concave-convex iterations, each the closed form z_i ∝ p_i * exp(sum_j w_ij z_j), stopped when the
energy's relative change falls to 1e-8 or after `max_steps`. The affinity w is the kNN graph of the L2-normalized
features (w_ij = 1 when j is one of i's k nearest others), as in the official code (github.com/fiveai/LAME)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_affinity(features: torch.Tensor, knn: int) -> torch.Tensor:
    """(N, N) 0/1 matrix: row i marks i's `knn` nearest other points (all of them when fewer)."""
    distances = torch.cdist(features, features)
    distances.fill_diagonal_(float("inf"))
    neighbours = distances.topk(min(knn, len(features) - 1), dim=1, largest=False).indices
    return torch.zeros_like(distances).scatter_(1, neighbours, 1.0)


def laplacian_assignments(probabilities: torch.Tensor, affinity: torch.Tensor, max_steps: int) -> torch.Tensor:
    """The corrected class probabilities of a batch from its softmax outputs (N, K) and affinity (N, N)."""
    unary = -torch.log(probabilities + 1e-10)
    assignments = (-unary).softmax(dim=1)
    previous = float("inf")
    for step in range(max_steps):
        pairwise = affinity @ assignments
        assignments = (pairwise - unary).softmax(dim=1)
        energy = (assignments * (unary - pairwise + torch.log(assignments.clamp_min(1e-20)))).sum().item()
        if step > 1 and abs(energy - previous) <= 1e-8 * abs(previous):
            break
        previous = energy
    return assignments


def lame(probabilities: torch.Tensor, features: torch.Tensor, knn: int, max_steps: int) -> torch.Tensor:
    """LAME's corrected probabilities of one batch: the softmax outputs and the penultimate features."""
    if len(features) < 2:
        return probabilities
    return laplacian_assignments(probabilities, knn_affinity(F.normalize(features, dim=1), knn), max_steps)
