"""Nested dropout on the penultimate features (Chen et al., 2022, after Rippel et al., 2014): per batch keep
only the first k channels, k drawn from the paper's distribution, so the leading channels carry the most."""
from __future__ import annotations

import math
import random
from typing import Any, Iterable

import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.regularizers.base import Regularizer, evaluated_network
from regbench.regularizers.dropout import wrap_head
from regbench.specs.regularizers import REGULARIZERS


def keep_distribution(num_features: int, mu: float, sigma: float) -> list[float]:
    """P(k) proportional to exp(-((k - mu) / sigma)^2) for k = 1..D (the official code's `GaussianDist`)."""
    weights = [math.exp(-(((k - mu) / sigma) ** 2)) for k in range(1, num_features + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def keep_first(features: torch.Tensor, k: int) -> torch.Tensor:
    """Zero channels k, k+1, ... of (B, D) features (0-based), without rescaling, as the paper does."""
    keep = torch.arange(features.shape[-1], device=features.device) < k
    return features * keep


def eval_widths(num_features: int) -> list[int]:
    """Powers of two up to D, and D itself: a cheap accuracy-vs-k curve."""
    return sorted({2 ** i for i in range(int(math.log2(num_features)) + 1)} | {num_features})


class NestedDropoutLayer(nn.Module):
    """Training: draws k once per batch and keeps the first k channels. Evaluation: identity, unless
    `eval_keep` is set (used to measure accuracy as a function of k)."""

    def __init__(self, num_features: int, mu: float, sigma: float, seed: int):
        super().__init__()
        self.probs = keep_distribution(num_features, mu, sigma)
        self.reseed(seed)
        self.eval_keep: int | None = None

    def reseed(self, seed: int) -> None:
        """A stream of its own (co-teaching's second network draws its k apart from the first)."""
        self.rng = random.Random(seed)

    def draw_keep(self) -> int:
        return self.rng.choices(range(1, len(self.probs) + 1), weights=self.probs)[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training:
            return keep_first(features, self.draw_keep())
        return features if self.eval_keep is None else keep_first(features, self.eval_keep)


@REGULARIZERS.register("nested_dropout")
class NestedDropout(Regularizer):
    name = "nested_dropout"

    def __init__(self, *, mu: float, sigma: float, seed: int):
        self.mu, self.sigma, self.seed = mu, sigma, seed

    def wrap_model(self, model: nn.Module) -> nn.Module:
        if not hasattr(model, "num_features"):
            raise UserError(f"regularizer=nested_dropout needs a backbone with `num_features`; "
                            f"{type(model).__name__} has none")
        layer = NestedDropoutLayer(model.num_features, self.mu, self.sigma, self.seed)
        return wrap_head(model, self.name, lambda head: nn.Sequential(layer, head))

    @torch.no_grad()
    def test_report(self, model: nn.Module, test_batches: Iterable, val_batches: Iterable) -> dict[str, Any]:
        """Test accuracy keeping only the first k channels, for k in `eval_widths`; and K, the width the official
        code reports: the best validation accuracy over every k = 1..D, ties to the smaller k."""
        net = evaluated_network(model)
        num_features = net.num_features
        val_acc = accuracy_by_width(net, val_batches, range(1, num_features + 1))
        best_k = max(range(1, num_features + 1), key=lambda k: (val_acc[k], -k))
        widths = sorted(set(eval_widths(num_features)) | {best_k})
        test_acc = accuracy_by_width(net, test_batches, widths)
        return {"nested_dropout_acc_by_k": {str(k): test_acc[k] for k in eval_widths(num_features)},
                "nested_dropout_k": best_k, "nested_dropout_val_acc_at_k": val_acc[best_k],
                "nested_dropout_test_acc_at_k": test_acc[best_k]}


def accuracy_by_width(net: nn.Module, batches: Iterable, widths: Iterable[int]) -> dict[int, float]:
    """Accuracy of `net` keeping only the first k penultimate channels, for each k: features once per batch, the
    head once per k."""
    layer = next(m for m in net.modules() if isinstance(m, NestedDropoutLayer))
    widths = list(widths)
    device = next(net.parameters()).device
    correct, seen = torch.zeros(len(widths), device=device), 0
    was_training = net.training
    net.eval()
    try:
        for images, labels, _ in batches:
            images, labels = images.to(device), labels.to(device)
            features = net.forward_features(images)
            for i, k in enumerate(widths):
                layer.eval_keep = k
                correct[i] += (net.head(features).argmax(dim=-1) == labels).sum()
            seen += labels.shape[0]
    finally:
        layer.eval_keep = None
        net.train(was_training)
    return {k: float(c) / max(seen, 1) for k, c in zip(widths, correct.tolist())}
