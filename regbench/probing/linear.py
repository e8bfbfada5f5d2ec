"""The linear probe: multinomial logistic regression with an L2 penalty on the weights (not the bias), on
standardized features, fitted full-batch by L-BFGS. The objective is convex and starts from zero weights, so the fit
is deterministic. Objective: mean cross-entropy + l2 / 2 * ||W||^2, i.e. scikit-learn's LogisticRegression with
C = 1 / (l2 * n) for n training samples."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# A feature that is constant on the training split is centred and left unscaled.
MIN_STD = 1e-8


@dataclass
class LinearProbe:
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (num_classes, num_features)
    bias: torch.Tensor

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return standardized(features.double(), self.mean, self.std) @ self.weight.T + self.bias

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return (self.logits(features).argmax(1) == labels).double().mean().item()


def standardized(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (features - mean) / std


def fit_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float,
              max_iter: int) -> LinearProbe:
    x = features.double()
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(MIN_STD)
    x = standardized(x, mean, std)
    weight = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, labels) + l2 / 2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LinearProbe(mean, std, weight.detach(), bias.detach())


def concatenated(features: list[torch.Tensor], k: int) -> torch.Tensor:
    """The first `k` runs' features side by side: run 1's columns first."""
    return torch.cat(features[:k], dim=1)
