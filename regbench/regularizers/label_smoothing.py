"""Label smoothing (Szegedy et al., 2016): the targets mixed with the uniform distribution."""
from __future__ import annotations

import torch

from regbench.regularizers.base import Regularizer
from regbench.specs.regularizers import REGULARIZERS


def smooth_targets(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """(1 - eps) * t + eps / C (Szegedy et al., 2016, sec. 7)."""
    return (1.0 - eps) * targets + eps / targets.shape[-1]


@REGULARIZERS.register("label_smoothing")
class LabelSmoothing(Regularizer):
    name = "label_smoothing"

    def __init__(self, *, eps: float, seed: int):
        self.eps = eps

    def mix_batch(self, images, targets, index):
        return images, smooth_targets(targets, self.eps)
