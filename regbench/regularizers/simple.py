"""Dropout before the classifier and label smoothing."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.errors import UserError, check
from regbench.regularizers.base import Regularizer
from regbench.regularizers.dropout import FEATURE_DROPOUT
from regbench.regularizers.registry import REGULARIZERS
from regbench.runshape import Inactive, RunShape

LABEL_SMOOTHING = "label smoothing"


@REGULARIZERS.register("dropout")
class Dropout(Regularizer):
    """Dropout on the penultimate features (Srivastava et al., 2014)."""

    name = "dropout"
    exclusive = FEATURE_DROPOUT

    def __init__(self, *, rate: float, seed: int):
        check(isinstance(rate, (int, float)) and 0.0 <= rate < 1.0, "rate", rate, "must be in [0, 1)")
        self.rate = rate

    def wrap_model(self, model: nn.Module) -> nn.Module:
        if not hasattr(model, "head"):
            raise UserError(f"regularizer=dropout needs a backbone with a `head`; {type(model).__name__} has none")
        model.head = nn.Sequential(nn.Dropout(self.rate), model.head)
        return model

    def check_run(self, shape: RunShape) -> list[Inactive]:
        return [Inactive("rate", self.rate, "never drops a unit")] if self.rate == 0 else []


def check_smoothing(key: str, eps) -> None:
    check(isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0.0 <= eps < 1.0, key, eps,
          "must be in [0, 1) (1 would make every target uniform, leaving nothing to learn)")


def smooth_targets(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """(1 - eps) * t + eps / C (Szegedy et al., 2016, sec. 7)."""
    return (1.0 - eps) * targets + eps / targets.shape[-1]


@REGULARIZERS.register("label_smoothing")
class LabelSmoothing(Regularizer):
    name = "label_smoothing"
    exclusive = LABEL_SMOOTHING

    def __init__(self, *, eps: float, seed: int):
        check_smoothing("eps", eps)
        self.eps = eps

    def check_run(self, shape: RunShape) -> list[Inactive]:
        return [Inactive("eps", self.eps, "leaves the targets one-hot")] if self.eps == 0 else []

    def mix_batch(self, images, targets, index):
        return images, smooth_targets(targets, self.eps)
